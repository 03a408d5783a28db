//! Message nodes that workers keep for reuse go back to the system when the
//! runtime stops. Measured with a counting global allocator (live bytes),
//! one test in this binary, so nothing else allocates meanwhile.

mod support;

use rusm_otp::{Received, Runtime};
use support::counting::{Counting, live};

#[global_allocator]
static GLOBAL: Counting = Counting;

/// The last message of a burst.
struct Go;

#[test]
fn message_nodes_kept_for_reuse_are_freed_with_the_runtime() {
    const N: u64 = 20_000;
    let before = live();
    let rt = Runtime::builder().workers(2).build();
    // The receiver waits for `Go` (the last message) before taking any, so
    // every node is allocated here first and all are freed on a worker,
    // whose full magazines fill the shared depot.
    let h = rt.spawn(|mut ctx| async move {
        ctx.recv_match(|r| matches!(r, Received::Message(m) if m.is::<Go>()))
            .await;
        for _ in 0..N {
            ctx.recv().await;
        }
    });
    for i in 0..N {
        assert!(rt.send(h.pid(), i));
    }
    assert!(rt.send(h.pid(), Go));
    rt.block_on(h.join());
    drop(rt);
    let left = live() - before;
    // The pid table's directory and the epoch's own records: a few
    // kilobytes. The depot alone holds up to 2,048 nodes (about 100 KB).
    assert!(
        left < 32 << 10,
        "{left} bytes still allocated after the runtime was dropped"
    );
}
