//! No stranded process: a worker stuck in one long poll does not hold the
//! process it just woke (its next slot) nor the rest of its queue; long
//! polls are counted and reported with the pid and label.
//!
//! The stalls asserted against here are a whole blocked poll (200 ms); the
//! bound allowed (100 ms) is many times the monitor's few milliseconds, so
//! a loaded machine does not make these flaky. No test asserts on speed.
//!
//! The tests run one at a time ([`serial`]): each holds a core for 200 ms,
//! and on a small machine several at once would measure the OS's time
//! slicing rather than the runtime.

mod support;

use rusm_otp::{ExitReason, Received, Runtime};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::{log_capture, run};

/// Runs the tests of this binary one at a time.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// How long the stuck process holds its worker.
const STUCK: Duration = Duration::from_millis(200);
/// A stall at least this long means the woken process waited for the
/// stuck poll to end.
const STALL: Duration = Duration::from_millis(100);

/// Holds the thread for `d` without yielding (CPU-bound, as a heavy
/// computation would).
fn spin_for(d: Duration) {
    let end = Instant::now() + d;
    while Instant::now() < end {
        std::hint::spin_loop();
    }
}

/// The probe of the issue: process X wakes P (which lands in X's worker's
/// next slot), then blocks in the same poll. P runs on the other worker
/// well before X's poll ends.
#[test]
fn a_process_woken_by_a_stuck_poll_runs_on_another_worker() {
    let _serial = serial();
    let rt = support::runtime(2);
    let (tx, rx) = std::sync::mpsc::channel();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let p = rt.spawn(move |mut ctx| async move {
        ready_tx.send(()).unwrap();
        let sent: Instant = *ctx
            .recv()
            .await
            .message()
            .unwrap()
            .downcast_ref::<Instant>()
            .unwrap();
        tx.send(sent.elapsed()).unwrap();
    });
    let pid = p.pid();
    // P must be parked in its receive before X wakes it (else X's send
    // wakes nothing and P runs wherever it was queued): it has started,
    // and both workers have since gone to sleep.
    ready_rx.recv_timeout(support::TIMEOUT).expect("P started");
    support::wait_until("P to park", || rt.metrics().sleeping_workers == 2);
    let x = rt.spawn(move |ctx| async move {
        ctx.runtime().send(pid, Instant::now());
        spin_for(STUCK);
    });
    let waited = rx.recv_timeout(support::TIMEOUT).expect("P ran");
    assert!(
        waited < STALL,
        "the woken process waited {waited:?} for its waker's poll to end"
    );
    run(&rt, async {
        assert_eq!(x.join().await, ExitReason::Normal);
        assert_eq!(p.join().await, ExitReason::Normal);
    });
    assert!(rt.metrics().rescued >= 1);
}

/// A ping-pong pair keeps going while a process that woke one of them
/// spins for 200 ms: the longest gap between two of its round trips is
/// far below the spin.
#[test]
fn a_spinning_process_does_not_stall_a_ping_pong_pair() {
    let _serial = serial();
    let rt = support::runtime(2);
    let done = Arc::new(AtomicU64::new(0));
    // The ponger answers every ball until told to stop.
    let ponger = rt.spawn(|mut ctx| async move {
        loop {
            match ctx.recv().await {
                Received::Message(m) => match m.downcast::<(rusm_otp::Pid, u64)>() {
                    Ok((from, i)) => {
                        ctx.runtime().send(from, i + 1);
                    }
                    Err(_) => return,
                },
                other => panic!("unexpected {other:?}"),
            }
        }
    });
    let pong = ponger.pid();
    let d = done.clone();
    // The pinger starts on a `start` message and plays until the spinner
    // is done, recording the longest gap between round trips.
    let pinger = rt.spawn(move |mut ctx| async move {
        ctx.recv().await;
        let me = ctx.pid();
        let mut last = Instant::now();
        let mut worst = Duration::ZERO;
        let mut i = 0u64;
        while d.load(Ordering::SeqCst) == 0 {
            ctx.runtime().send(pong, (me, i));
            let back = ctx
                .recv()
                .await
                .message()
                .unwrap()
                .downcast::<u64>()
                .unwrap();
            assert_eq!(back, i + 1);
            i += 2;
            let now = Instant::now();
            worst = worst.max(now - last);
            last = now;
        }
        ctx.runtime().send(pong, "stop");
        assert!(i > 0);
        assert!(worst < STALL, "the pair stalled for {worst:?}");
    });
    let ping = pinger.pid();
    let d = done.clone();
    // Wakes the pinger (into its own worker's next slot), then spins.
    let spinner = rt.spawn(move |ctx| async move {
        ctx.runtime().send(ping, "start");
        spin_for(STUCK);
        d.store(1, Ordering::SeqCst);
    });
    run(&rt, async {
        assert_eq!(spinner.join().await, ExitReason::Normal);
        assert_eq!(pinger.join().await, ExitReason::Normal);
        assert_eq!(ponger.join().await, ExitReason::Normal);
    });
}

/// A long poll is counted while it runs and reported, with the process's
/// pid, label and duration, once it ends; short polls are not.
#[test]
fn a_long_poll_is_counted_and_reported_with_pid_and_label() {
    let _serial = serial();
    log_capture::install();
    let rt = Runtime::builder()
        .workers(1)
        .long_poll(Duration::from_millis(20))
        .build();
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let h = rt.spawn(move |mut ctx| async move {
        ctx.recv().await;
        // Blocks its worker until the test has seen the long poll counted.
        go_rx.recv_timeout(support::TIMEOUT).unwrap();
    });
    let pid = h.pid();
    assert!(rt.set_label(pid, "slow-one"));
    // Short polls: not long.
    let quick: Vec<_> = (0..100).map(|_| rt.spawn(|_| async {})).collect();
    run(&rt, async {
        for q in quick {
            q.join().await;
        }
    });
    assert_eq!(rt.metrics().long_polls, 0);
    rt.send(pid, ());
    support::wait_until("long poll counted", || rt.metrics().long_polls == 1);
    go_tx.send(()).unwrap();
    run(&rt, async {
        assert_eq!(h.join().await, ExitReason::Normal)
    });
    let pid_text = pid.to_string();
    support::wait_until("long poll reported", || {
        log_capture::records().iter().any(|r| {
            r.target == "rusm_otp::process"
                && r.level == log::Level::Warn
                && r.kv.get("pid") == Some(&pid_text)
        })
    });
    let recs = log_capture::records();
    let kv = &recs
        .iter()
        .find(|r| r.kv.get("pid") == Some(&pid_text))
        .unwrap()
        .kv;
    assert_eq!(kv.get("label").map(String::as_str), Some("slow-one"));
    let ms: f64 = kv["duration_ms"].parse().unwrap();
    assert!(ms >= 20.0, "reported {ms} ms, at least the threshold");
    assert_eq!(rt.metrics().long_polls, 1);
}

/// A process that yields goes to the back of its worker's deque without
/// waking anyone (its worker will get back to it). If that worker then
/// runs a process stuck in one poll, the yielder runs on the other worker.
#[test]
fn a_yielding_process_behind_a_stuck_poll_runs_on_another_worker() {
    let _serial = serial();
    let rt = support::runtime(2);
    let done = Arc::new(AtomicU64::new(0));
    let d = done.clone();
    let x = rt.spawn(move |mut ctx| async move {
        ctx.recv().await;
        spin_for(STUCK);
        d.store(1, Ordering::SeqCst);
    });
    let xp = x.pid();
    let y = rt.spawn(move |ctx| async move {
        let mut last = Instant::now();
        let mut worst = Duration::ZERO;
        let start = Instant::now();
        let mut sent = false;
        while done.load(Ordering::SeqCst) == 0 {
            // After a while, so that the other worker has gone to sleep.
            if !sent && start.elapsed() > Duration::from_millis(20) {
                sent = true;
                // X lands in this worker's next slot and runs right after
                // this poll; this process goes to the back of the deque.
                ctx.runtime().send(xp, ());
            }
            rusm_otp::yield_now().await;
            let now = Instant::now();
            worst = worst.max(now - last);
            last = now;
        }
        assert!(worst < STALL, "the yielding process stalled for {worst:?}");
    });
    run(&rt, async {
        assert_eq!(x.join().await, ExitReason::Normal);
        assert_eq!(y.join().await, ExitReason::Normal);
    });
}
