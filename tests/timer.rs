//! Timers: `send_after` and `TimerRef::cancel`, receive timeouts
//! (`recv_timeout`, `recv_match_timeout`), `sleep`, and the wheel under
//! 100,000 timers.
//!
//! The only assertions on time are "did not fire early", which every timer
//! guarantees; every wait is bounded (see `support`).

mod support;

use rusm_otp::{ExitReason, Received, TimerRef, sleep, yield_now};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use support::{check, on_workers, recv_msg, run, runtime, wait_until_timed};

/// A tiny xorshift64 generator: deterministic, no dependency.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

/// A value that counts its drops.
struct DropCounter(Arc<AtomicUsize>);

impl Drop for DropCounter {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Marker;

fn send_after_delivers_after_delay(workers: usize) {
    let rt = runtime(workers);
    check(&rt, |mut ctx| async move {
        let rt = ctx.runtime().clone();
        let me = ctx.pid();
        for ms in [0u64, 1, 5, 20, 50] {
            let delay = Duration::from_millis(ms);
            let before = Instant::now();
            let _t = rt.send_after(me, delay, ms);
            assert_eq!(recv_msg::<u64>(&mut ctx, "the timed message").await, ms);
            let elapsed = before.elapsed();
            assert!(
                elapsed >= delay,
                "a {delay:?} timer fired early, after {elapsed:?}"
            );
        }
        assert_eq!(rt.pending_timers(), 0);
    });
}

fn send_after_from_outside_a_process(workers: usize) {
    let rt = runtime(workers);
    let p = rt.spawn(|mut ctx| async move {
        assert_eq!(
            recv_msg::<&str>(&mut ctx, "the timed message").await,
            "tick"
        );
    });
    let before = Instant::now();
    let _t = rt.send_after(p.pid(), Duration::from_millis(10), "tick");
    assert_eq!(run(&rt, p.join()), ExitReason::Normal);
    assert!(before.elapsed() >= Duration::from_millis(10), "not early");
}

fn cancelled_timer_never_fires(workers: usize) {
    let rt = runtime(workers);
    check(&rt, |mut ctx| async move {
        let rt = ctx.runtime().clone();
        let me = ctx.pid();
        let cancelled = rt.send_after(me, Duration::from_millis(10), "cancelled");
        assert!(cancelled.cancel(), "it had not fired");
        assert!(!cancelled.cancel(), "cancelling twice");
        let _marker = rt.send_after(me, Duration::from_millis(60), "marker");
        assert_eq!(
            recv_msg::<&str>(&mut ctx, "the marker").await,
            "marker",
            "the cancelled timer never fired, though its deadline came first"
        );
        assert!(ctx.try_recv().is_none());
        assert_eq!(rt.pending_timers(), 0);
    });
}

fn cancel_frees_the_message_at_once(workers: usize) {
    let rt = runtime(workers);
    let p = support::spawn_actor(&rt);
    let drops = Arc::new(AtomicUsize::new(0));
    let t = rt.send_after(p.pid(), Duration::from_secs(30), DropCounter(drops.clone()));
    assert_eq!(rt.pending_timers(), 1);
    assert_eq!(drops.load(Ordering::SeqCst), 0);
    assert!(t.cancel());
    assert_eq!(
        drops.load(Ordering::SeqCst),
        1,
        "the message is dropped now"
    );
    assert_eq!(rt.pending_timers(), 0);
    rt.kill(p.pid());
}

fn cancel_after_firing_returns_false(workers: usize) {
    let rt = runtime(workers);
    check(&rt, |mut ctx| async move {
        let rt = ctx.runtime().clone();
        let me = ctx.pid();
        let t = rt.send_after(me, Duration::from_millis(1), 5u8);
        assert_eq!(recv_msg::<u8>(&mut ctx, "the timed message").await, 5);
        assert!(!t.cancel(), "it already fired");
        assert!(ctx.try_recv().is_none());
    });
}

fn dropping_the_timer_ref_does_not_cancel(workers: usize) {
    let rt = runtime(workers);
    check(&rt, |mut ctx| async move {
        let rt = ctx.runtime().clone();
        let me = ctx.pid();
        drop(rt.send_after(me, Duration::from_millis(5), 9u8));
        assert_eq!(rt.pending_timers(), 1);
        assert_eq!(recv_msg::<u8>(&mut ctx, "the timed message").await, 9);
    });
}

fn send_after_to_a_process_that_ended_drops_the_message(workers: usize) {
    let rt = runtime(workers);
    let p = support::spawn_actor(&rt);
    let drops = Arc::new(AtomicUsize::new(0));
    let t = rt.send_after(
        p.pid(),
        Duration::from_millis(5),
        DropCounter(drops.clone()),
    );
    rt.kill(p.pid());
    run(&rt, p.join());
    run(
        &rt,
        wait_until_timed("the timer's message to be dropped", || {
            drops.load(Ordering::SeqCst) == 1
        }),
    );
    assert!(!t.cancel(), "it fired (into nothing)");
    assert_eq!(rt.pending_timers(), 0);
}

fn recv_timeout_times_out_with_none(workers: usize) {
    let rt = runtime(workers);
    check(&rt, |mut ctx| async move {
        for ms in [1u64, 10, 30] {
            let timeout = Duration::from_millis(ms);
            let before = Instant::now();
            assert!(ctx.recv_timeout(timeout).await.is_none());
            let elapsed = before.elapsed();
            assert!(
                elapsed >= timeout,
                "a {timeout:?} receive timed out early, after {elapsed:?}"
            );
        }
        // A receive that got something leaves no timer behind.
        let rt = ctx.runtime().clone();
        rt.send(ctx.pid(), 1u8);
        assert!(ctx.recv_timeout(Duration::from_secs(30)).await.is_some());
        wait_until_timed("the receive's timer to be cancelled", || {
            rt.pending_timers() == 0
        })
        .await;
    });
}

fn recv_timeout_zero_checks_once(workers: usize) {
    let rt = runtime(workers);
    check(&rt, |mut ctx| async move {
        let rt = ctx.runtime().clone();
        let me = ctx.pid();
        assert!(ctx.recv_timeout(Duration::ZERO).await.is_none(), "empty");
        assert_eq!(rt.pending_timers(), 0, "no timer for a zero timeout");
        rt.send(me, 3u32);
        rt.send(me, 4u32);
        let got = ctx.recv_timeout(Duration::ZERO).await.expect("a message");
        assert_eq!(got.message().unwrap().downcast::<u32>().ok(), Some(3));
        let got = ctx.recv_timeout(Duration::ZERO).await.expect("a message");
        assert_eq!(got.message().unwrap().downcast::<u32>().ok(), Some(4));
        assert!(ctx.recv_timeout(Duration::ZERO).await.is_none());
    });
}

fn message_arriving_after_timeout_stays_in_mailbox(workers: usize) {
    let rt = runtime(workers);
    check(&rt, |mut ctx| async move {
        let rt = ctx.runtime().clone();
        let me = ctx.pid();
        let _late = rt.send_after(me, Duration::from_millis(40), "late");
        assert!(
            ctx.recv_timeout(Duration::from_millis(1)).await.is_none(),
            "timed out before the message came"
        );
        wait_until_timed("the late message to arrive", || {
            rt.info(me).unwrap().mailbox_depth == 1
        })
        .await;
        assert_eq!(recv_msg::<&str>(&mut ctx, "the late message").await, "late");

        // A selective receive that times out leaves what it skipped, too.
        rt.send(me, 1u8);
        assert!(
            ctx.recv_match_timeout(
                |r| matches!(r, Received::Exit { .. }),
                Duration::from_millis(1)
            )
            .await
            .is_none()
        );
        assert_eq!(recv_msg::<u8>(&mut ctx, "the skipped message").await, 1);
    });
}

fn recv_match_timeout(workers: usize) {
    let rt = runtime(workers);
    check(&rt, |mut ctx| async move {
        let rt = ctx.runtime().clone();
        let me = ctx.pid();
        fn is(n: u32) -> impl FnMut(&Received) -> bool {
            move |r| matches!(r, Received::Message(m) if m.downcast_ref::<u32>() == Some(&n))
        }
        rt.send(me, 1u32);
        rt.send(me, 2u32);
        let before = Instant::now();
        assert!(
            ctx.recv_match_timeout(is(3), Duration::from_millis(10))
                .await
                .is_none(),
            "no 3 in the mailbox"
        );
        assert!(before.elapsed() >= Duration::from_millis(10), "not early");
        assert_eq!(rt.info(me).unwrap().mailbox_depth, 2, "both stay queued");

        let got = ctx
            .recv_match_timeout(is(2), Duration::from_millis(10))
            .await
            .expect("the 2 is there");
        assert_eq!(got.message().unwrap().downcast::<u32>().ok(), Some(2));

        // A match that arrives within the timeout is taken.
        let _t = rt.send_after(me, Duration::from_millis(20), 3u32);
        let got = ctx
            .recv_match_timeout(is(3), support::TIMEOUT)
            .await
            .expect("the 3 arrives in time");
        assert_eq!(got.message().unwrap().downcast::<u32>().ok(), Some(3));

        // Zero timeout: one look.
        assert!(
            ctx.recv_match_timeout(is(9), Duration::ZERO)
                .await
                .is_none()
        );
        // The 1 is still there, first in line.
        assert_eq!(recv_msg::<u32>(&mut ctx, "the 1").await, 1);
        assert!(ctx.try_recv().is_none());
    });
}

fn sleep_waits(workers: usize) {
    let rt = runtime(workers);
    // Inside a process.
    check(&rt, |_ctx| async move {
        for ms in [0u64, 1, 15] {
            let d = Duration::from_millis(ms);
            let before = Instant::now();
            sleep(d).await;
            let elapsed = before.elapsed();
            assert!(elapsed >= d, "slept {elapsed:?} < {d:?}");
        }
    });
    // Inside block_on.
    for ms in [0u64, 1, 15] {
        let d = Duration::from_millis(ms);
        let elapsed = run(&rt, async move {
            let before = Instant::now();
            sleep(d).await;
            before.elapsed()
        });
        assert!(elapsed >= d, "slept {elapsed:?} < {d:?} in block_on");
    }
    assert_eq!(rt.pending_timers(), 0);
}

fn a_sleeping_process_still_receives_afterwards(workers: usize) {
    let rt = runtime(workers);
    check(&rt, |mut ctx| async move {
        let rt = ctx.runtime().clone();
        let me = ctx.pid();
        rt.send(me, 1u8);
        sleep(Duration::from_millis(5)).await;
        assert_eq!(recv_msg::<u8>(&mut ctx, "the message").await, 1);
    });
}

/// Schedules `n` `send_after`s to the calling process with random delays
/// below `max_delay_us` and requires each to arrive once, never before its
/// deadline, and in deadline order within the wheel's tolerance.
async fn timers_arrive_in_deadline_order(
    ctx: &mut rusm_otp::Context,
    n: usize,
    max_delay_us: u64,
    seed: u64,
) {
    const TOLERANCE: Duration = Duration::from_millis(2);
    let rt = ctx.runtime().clone();
    let me = ctx.pid();
    let mut rng = XorShift(seed);
    // Each timer's true deadline lies between `lo` (carried in the
    // message) and `hi[i]` (taken right after scheduling it).
    let mut hi = Vec::with_capacity(n);
    for i in 0..n {
        let delay = Duration::from_micros(rng.next() % max_delay_us);
        let lo = Instant::now() + delay;
        let _ = rt.send_after(me, delay, (i as u32, lo));
        hi.push(Instant::now() + delay);
    }
    let mut seen = vec![false; n];
    let mut max_lo: Option<Instant> = None;
    for _ in 0..n {
        let (i, lo) = recv_msg::<(u32, Instant)>(ctx, "a timer").await;
        let i = i as usize;
        assert!(Instant::now() >= lo, "timer {i} fired before its deadline");
        assert!(!seen[i], "timer {i} fired twice");
        seen[i] = true;
        if let Some(max) = max_lo {
            assert!(
                hi[i] + TOLERANCE >= max,
                "timer {i} arrived {:?} after a later-deadline timer",
                max - hi[i]
            );
        }
        max_lo = Some(max_lo.map_or(lo, |m| m.max(lo)));
    }
    assert!(seen.iter().all(|&s| s));
}

fn hundred_thousand_timers_fire_once_in_deadline_order(workers: usize) {
    const N: usize = 100_000;
    let rt = runtime(workers);
    check(&rt, |mut ctx| async move {
        let rt = ctx.runtime().clone();
        let me = ctx.pid();
        timers_arrive_in_deadline_order(&mut ctx, N, 500_000, 0x9E37_79B9_7F4A_7C15).await;
        // Nothing else comes: a marker sent now is next.
        wait_until_timed("every timer to be done", || rt.pending_timers() == 0).await;
        let _m = rt.send_after(me, Duration::from_millis(5), Marker);
        assert_eq!(recv_msg::<Marker>(&mut ctx, "the marker").await, Marker);
        assert!(ctx.try_recv().is_none());
    });
}

fn timers_fire_in_deadline_order_while_workers_are_busy(workers: usize) {
    // Busy workers look at the wheel rarely, so each advance fires a large
    // batch spanning many ticks: the batch must still go out in deadline
    // order.
    const N: usize = 10_000;
    let rt = runtime(workers);
    let done = Arc::new(AtomicBool::new(false));
    let hogs: Vec<_> = (0..2)
        .map(|_| {
            let done = done.clone();
            rt.spawn(move |_ctx| async move {
                while !done.load(Ordering::SeqCst) {
                    // Hold the worker for a few milliseconds, then let
                    // others run.
                    let until = Instant::now() + Duration::from_millis(3);
                    while Instant::now() < until {
                        std::hint::spin_loop();
                    }
                    yield_now().await;
                }
            })
        })
        .collect();
    let done2 = done.clone();
    check(&rt, move |mut ctx| async move {
        timers_arrive_in_deadline_order(&mut ctx, N, 200_000, 0xD1B5_4A32_D192_ED03).await;
        done2.store(true, Ordering::SeqCst);
    });
    done.store(true, Ordering::SeqCst);
    for h in hogs {
        assert_eq!(run(&rt, h.join()), ExitReason::Normal);
    }
}

fn timer_bursts_never_stall_the_wheel(workers: usize) {
    // Rounds of a burst of timers, each on a fresh runtime, several
    // runtimes at once (more workers than cores, so a worker can be
    // preempted anywhere). Every burst must drain: a worker that parks
    // without the earliest deadline while another is recomputing it, with
    // no later insert to wake it, would leave the wheel stalled with timers
    // overdue, and the round would hang.
    const THREADS: u64 = 4;
    const ROUNDS: u64 = 6;
    const N: usize = 50_000;
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            std::thread::spawn(move || {
                for round in 0..ROUNDS {
                    let rt = runtime(workers);
                    check(&rt, move |mut ctx| async move {
                        let rt = ctx.runtime().clone();
                        let me = ctx.pid();
                        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15 ^ (t << 32 | round));
                        for i in 0..N {
                            let delay = Duration::from_micros(rng.next() % 300_000);
                            let _ = rt.send_after(me, delay, i as u32);
                        }
                        let mut seen = vec![false; N];
                        for _ in 0..N {
                            let i = recv_msg::<u32>(&mut ctx, "a timer").await as usize;
                            assert!(!seen[i], "timer {i} fired twice");
                            seen[i] = true;
                        }
                    });
                    assert_eq!(rt.pending_timers(), 0);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("a round failed");
    }
}

fn hundred_thousand_cancelled_timers_never_fire_and_are_freed(workers: usize) {
    const N: usize = 100_000;
    let rt = runtime(workers);
    let receiver = rt.spawn(|mut ctx| async move {
        // The first thing to arrive must be the marker, scheduled after
        // (and due after) every cancelled timer. A plain `recv` (bounded by
        // the test's `run` on the join) keeps the pending-timer count exact.
        match ctx.recv().await {
            Received::Message(m) => assert!(m.is::<Marker>(), "got {m:?} before the marker"),
            other => panic!("got {other:?} before the marker"),
        }
        assert!(ctx.try_recv().is_none(), "nothing after the marker either");
    });
    let rpid = receiver.pid();
    let drops = Arc::new(AtomicUsize::new(0));
    let mut rng = XorShift(0x2545_F491_4F6C_DD1D);
    // Far enough out that scheduling all of them (slow in debug builds)
    // cannot outlast the earliest deadline.
    let base = Duration::from_millis(2_000);
    let timers: Vec<TimerRef> = (0..N)
        .map(|_| {
            let delay = base + Duration::from_micros(rng.next() % 500_000);
            rt.send_after(rpid, delay, DropCounter(drops.clone()))
        })
        .collect();
    assert_eq!(rt.pending_timers(), N);
    for (i, t) in timers.iter().enumerate() {
        assert!(t.cancel(), "timer {i} had not fired");
    }
    assert_eq!(rt.pending_timers(), 0);
    assert_eq!(
        drops.load(Ordering::SeqCst),
        N,
        "every cancelled timer's message is freed at once"
    );
    drop(timers);
    let _marker = rt.send_after(rpid, base + Duration::from_millis(600), Marker);
    assert_eq!(run(&rt, receiver.join()), ExitReason::Normal);
    assert_eq!(drops.load(Ordering::SeqCst), N);
}

on_workers!(
    send_after_delivers_after_delay,
    send_after_from_outside_a_process,
    cancelled_timer_never_fires,
    cancel_frees_the_message_at_once,
    cancel_after_firing_returns_false,
    dropping_the_timer_ref_does_not_cancel,
    send_after_to_a_process_that_ended_drops_the_message,
    recv_timeout_times_out_with_none,
    recv_timeout_zero_checks_once,
    message_arriving_after_timeout_stays_in_mailbox,
    recv_match_timeout,
    sleep_waits,
    a_sleeping_process_still_receives_afterwards,
    hundred_thousand_timers_fire_once_in_deadline_order,
    timers_fire_in_deadline_order_while_workers_are_busy,
    timer_bursts_never_stall_the_wheel,
    hundred_thousand_cancelled_timers_never_fire_and_are_freed,
);
