//! Latency under load: a process woken by a message runs before processes
//! that merely yield, and the yielders still progress.
//!
//! Nothing here is timed. The measure is how many yielder turns run on the
//! probe's own worker thread between a send and the receipt of its reply:
//! each yielder counts its turns in a thread-local counter, and the probe
//! reads that counter of its thread before the send and after the receipt
//! (a round trip that ended on another thread is not counted).

mod support;

use rusm_otp::{ExitReason, Received};
use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use support::{on_workers, run};

thread_local! {
    /// Yielder turns run on this thread.
    static TURNS: Cell<u64> = const { Cell::new(0) };
}

/// Yielders beside the probe: more than workers, so that every worker has
/// several queued.
const YIELDERS: u64 = 16;
/// Probe round trips.
const ROUNDS: usize = 2_000;

/// A probe pair (the tester and an echo process) does round trips while
/// yielders loop on `yield_now`. The pair is never idle, so the LIFO cap
/// sends it through the local deque every few polls: before the woken and
/// yielded work queued apart, it then waited behind every yielder of its
/// worker (as many turns as yielders queued there), now behind at most one
/// (the yielder the interval lets in). And the yielders progress while
/// the pair runs.
fn a_woken_process_runs_before_yielders(workers: usize) {
    let rt = support::runtime(workers);
    let stop = Arc::new(AtomicBool::new(false));
    let progress = Arc::new(AtomicU64::new(0));
    let yielders: Vec<_> = (0..YIELDERS)
        .map(|_| {
            let (stop, progress) = (stop.clone(), progress.clone());
            rt.spawn(move |_| async move {
                while !stop.load(Ordering::Relaxed) {
                    TURNS.with(|t| t.set(t.get() + 1));
                    progress.fetch_add(1, Ordering::Relaxed);
                    rusm_otp::yield_now().await;
                }
            })
        })
        .collect();
    let echo = rt.spawn(|mut ctx| async move {
        while let Received::Message(m) = ctx.recv().await {
            match m.downcast::<rusm_otp::Pid>() {
                Ok(from) => {
                    ctx.runtime().send(from, ());
                }
                Err(_) => return,
            }
        }
    });
    let echo_pid = echo.pid();
    let (p, s) = (progress.clone(), stop.clone());
    let (tx, rx) = std::sync::mpsc::channel();
    let probe = rt.spawn(move |mut ctx| async move {
        // Every yielder under way before the first round trip.
        while p.load(Ordering::Relaxed) < 2 * YIELDERS {
            rusm_otp::yield_now().await;
        }
        let me = ctx.pid();
        let before_rounds = p.load(Ordering::Relaxed);
        let mut between = Vec::with_capacity(ROUNDS);
        for _ in 0..ROUNDS {
            let thread = std::thread::current().id();
            let turns = TURNS.with(Cell::get);
            ctx.runtime().send(echo_pid, me);
            assert!(ctx.recv().await.message().unwrap().is::<()>());
            if std::thread::current().id() == thread {
                between.push(TURNS.with(Cell::get) - turns);
            }
        }
        let during = p.load(Ordering::Relaxed) - before_rounds;
        s.store(true, Ordering::Relaxed);
        ctx.runtime().send(echo_pid, "stop");
        tx.send((between, during)).unwrap();
    });
    run(&rt, async move {
        assert_eq!(probe.join().await, ExitReason::Normal);
        for y in yielders {
            assert_eq!(y.join().await, ExitReason::Normal);
        }
        assert_eq!(echo.join().await, ExitReason::Normal);
    });
    let (between, during) = rx.recv().unwrap();
    assert!(
        between.len() >= ROUNDS / 2,
        "too few round trips stayed on one thread: {}",
        between.len()
    );
    let worst = between.iter().copied().max().unwrap();
    let waited: usize = between.iter().filter(|&&n| n > 0).count();
    assert!(
        worst <= 2,
        "a woken probe waited for {worst} yielder turns ({waited} of {} round trips waited)",
        between.len()
    );
    assert!(during > 0, "the yielders made no progress beside the probe");
}

on_workers!(a_woken_process_runs_before_yielders);
