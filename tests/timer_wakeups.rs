//! Timers must wake processes on an otherwise idle runtime (every worker
//! asleep), including timers more than one turn of the wheel away.

use rusm_otp::{ExitReason, Received, Runtime};
use std::time::{Duration, Instant};

#[test]
fn a_lone_process_sleeping_in_a_loop_wakes_every_time() {
    for workers in [1, 2] {
        let rt = Runtime::builder().workers(workers).build();
        let h = rt.spawn(|_ctx| async move {
            for _ in 0..50 {
                let t = Instant::now();
                rusm_otp::sleep(Duration::from_millis(1)).await;
                assert!(t.elapsed() >= Duration::from_millis(1), "woke early");
            }
        });
        assert_eq!(rt.block_on(h.join()), ExitReason::Normal);
    }
}

#[test]
fn a_lone_receive_timeout_times_out_on_an_idle_runtime() {
    let rt = Runtime::builder().workers(2).build();
    let h = rt.spawn(|mut ctx| async move {
        for _ in 0..20 {
            assert!(ctx.recv_timeout(Duration::from_millis(2)).await.is_none());
        }
    });
    assert_eq!(rt.block_on(h.join()), ExitReason::Normal);
}

#[test]
fn a_timer_more_than_one_wheel_turn_away_fires() {
    // The wheel turns every 4.096 s; this timer is beyond the first turn.
    let rt = Runtime::builder().workers(2).build();
    let h = rt.spawn(|mut ctx| async move {
        let t = Instant::now();
        let delay = Duration::from_millis(4_500);
        ctx.runtime().send_after(ctx.pid(), delay, 7u8);
        match ctx.recv_timeout(Duration::from_secs(60)).await {
            Some(Received::Message(m)) => assert_eq!(m.downcast::<u8>().unwrap(), 7),
            other => panic!("expected the timer's message, got {other:?}"),
        }
        assert!(t.elapsed() >= delay, "fired early");
    });
    assert_eq!(rt.block_on(h.join()), ExitReason::Normal);
}

/// Waits (bounded) until every worker of `rt` is asleep.
fn until_all_asleep(rt: &Runtime) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while rt.metrics().sleeping_workers < rt.workers() {
        assert!(Instant::now() < deadline, "the workers never went idle");
        std::thread::yield_now();
    }
}

#[test]
fn a_timer_set_after_a_cancel_fires_on_an_idle_runtime() {
    // A cancel leaves the earliest-deadline hint behind; the next timer, due
    // after that stale hint, must still wake a sleeping worker.
    let rt = Runtime::builder().workers(2).build();
    let p = rt.spawn(|mut ctx| async move {
        let me = ctx.pid();
        let t = ctx.runtime().send_after(me, Duration::from_millis(50), ());
        assert!(t.cancel());
        let _ = ctx.recv().await;
    });
    until_all_asleep(&rt);
    let (tx, rx) = std::sync::mpsc::channel();
    let rt2 = rt.clone();
    std::thread::spawn(move || {
        rt2.block_on(rusm_otp::sleep(Duration::from_millis(100)));
        let _ = tx.send(());
    });
    rx.recv_timeout(Duration::from_secs(60))
        .expect("the sleep after a cancelled timer never fired");
    assert_eq!(rt.pending_timers(), 0);
    rt.kill(p.pid());
}
