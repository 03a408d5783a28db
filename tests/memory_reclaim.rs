//! The memory of ended processes comes back: within a bounded number of
//! polling steps while the runtime runs, and entirely by the time the
//! owner's last handle is dropped. Measured with a counting global
//! allocator (live bytes), so the figure is exact and independent of how
//! the system allocator returns pages to the kernel.
//!
//! One test in this binary, so nothing else allocates meanwhile.

mod support;

use rusm_otp::Runtime;
use support::counting::{Counting, live, poll};

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Processes per phase, each parked in a receive until killed: 200,000
/// rather than the million of `examples/memory_waves.rs`, to keep the test
/// to about a second on a loaded machine; the per-process memory is the
/// same, and the bound below is far under one phase's worth.
const N: usize = 200_000;
/// What may stay allocated beyond the baseline: a few pages of pid table,
/// queue blocks and the epoch's bookkeeping, nothing per process (the
/// processes themselves hold about 32 MB).
const SLACK: isize = 2 << 20;
/// Polling steps (1 ms apart) allowed for the runtime to free ended
/// processes on its own once they have all ended.
const STEPS: u32 = 5_000;

fn spawn_parked(rt: &Runtime, n: usize) {
    for _ in 0..n {
        rt.spawn(|mut ctx| async move {
            ctx.recv().await;
        });
    }
}

#[test]
fn ended_processes_are_freed_while_running_and_at_drop() {
    let before_runtime = live();
    let rt = Runtime::builder().workers(2).build();
    // Warm up: the first processes allocate the worker deques, the
    // injector's blocks and the epoch's per-thread records.
    spawn_parked(&rt, 10_000);
    rt.shutdown();
    poll("warm-up processes to end", 120_000, || {
        rt.process_count() == 0
    });
    poll("warm-up memory to settle", STEPS, || {
        live() - before_runtime < SLACK
    });
    let baseline = live();

    // While running: a million end, and their memory comes back.
    spawn_parked(&rt, N);
    assert!(
        live() - baseline > (N as isize) * 64,
        "the processes are allocated"
    );
    assert_eq!(rt.shutdown(), N);
    poll("a million processes to end", 120_000, || {
        rt.process_count() == 0
    });
    poll("ended processes to be freed", STEPS, || {
        live() - baseline < SLACK
    });

    // At drop: a million parked processes, and then no runtime.
    spawn_parked(&rt, N);
    drop(rt);
    let left = live() - before_runtime;
    assert!(
        left < SLACK / 4,
        "{left} bytes still allocated after the runtime was dropped"
    );
}
