//! Restart storms on one child: the supervisor must tell a child's two
//! ending signals (`Down` and `Exit`, which may arrive in either order) from
//! an owner's `Exit`, however the child's death races with its link and
//! monitor being placed.

use rusm_otp::supervisor::{Children, WhichChildren};
use rusm_otp::{ExitReason, Runtime, Strategy};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// One child that exits abnormally on each of its first `crashes` starts,
/// then idles. Returns the number of starts once it idles, and checks that
/// the supervisor is alive and reports exactly that child.
fn storm(workers: usize, crashes: u32) -> u32 {
    let rt = Runtime::builder().workers(workers).build();
    let starts = Arc::new(AtomicU32::new(0));
    let s = starts.clone();
    let sup = rt
        .supervisor(Strategy::OneForOne)
        .max_restarts(0)
        .child(move |rt: &Runtime| {
            let s = s.clone();
            rt.spawn(move |mut ctx| async move {
                let n = s.fetch_add(1, Ordering::SeqCst) + 1;
                if n <= crashes {
                    let me = ctx.pid();
                    ctx.runtime().exit(me, ExitReason::Crashed);
                    return;
                }
                loop {
                    ctx.recv().await;
                }
            })
        })
        .start();
    let deadline = Instant::now() + Duration::from_secs(60);
    while starts.load(Ordering::SeqCst) <= crashes {
        assert!(
            rt.is_alive(sup.pid()),
            "the supervisor died after {} starts",
            starts.load(Ordering::SeqCst)
        );
        assert!(Instant::now() < deadline, "the storm did not finish");
        std::thread::yield_now();
    }
    let sup_pid = sup.pid();
    let asker = rt.spawn(move |mut ctx| async move {
        ctx.runtime().send(sup_pid, WhichChildren(ctx.pid()));
        let reply = ctx
            .recv_timeout(Duration::from_secs(60))
            .await
            .and_then(|r| r.message())
            .expect("no reply from the supervisor");
        let Children(pids) = reply.downcast::<Children>().unwrap();
        assert_eq!(pids.len(), 1);
        assert!(ctx.runtime().is_alive(pids[0]));
    });
    assert_eq!(rt.block_on(asker.join()), ExitReason::Normal);
    assert!(rt.is_alive(sup.pid()));
    starts.load(Ordering::SeqCst)
}

#[test]
fn a_child_crashing_at_once_a_thousand_times_is_restarted_every_time() {
    for workers in [1, 2, 4] {
        assert_eq!(storm(workers, 1_000), 1_001, "on {workers} workers");
    }
}
