//! Timers at the edges: `Duration::MAX` (Erlang's `infinity`), timers whose
//! target ends, bounded mailboxes, panicking timer messages, wakers that
//! change between polls, and handles that outlive their runtime.
//!
//! Every wait is bounded (see `support`); no assertion is on speed.

mod support;

use rusm_otp::{ExitReason, Received, Runtime, TimerRef, sleep};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use support::{
    DropCounter, EXPECTED_PANIC, ended_pid, inner_handle, run, run_for, runtime,
    silence_expected_panics, wait_until,
};

/// A bound on waits that succeed at once when the runtime is healthy.
const BOUND: Duration = Duration::from_secs(20);

/// A message whose destructor panics.
struct PanicOnDrop;

impl Drop for PanicOnDrop {
    fn drop(&mut self) {
        panic!("{EXPECTED_PANIC} a timer message's destructor");
    }
}

/// A process that parks until killed, receiving nothing it is sent (a
/// selective receive for a type nobody sends).
fn spawn_parked(rt: &Runtime) -> rusm_otp::ProcessHandle {
    struct Never;
    rt.spawn(|mut ctx| async move {
        let _ = ctx
            .recv_match(|r| matches!(r, Received::Message(m) if m.is::<Never>()))
            .await;
    })
}

/// Every worker ends up asleep: nothing (such as a timer that never fires)
/// keeps them spinning.
fn wait_all_workers_asleep(rt: &Runtime) {
    wait_until("every worker to park", || {
        rt.metrics().sleeping_workers == rt.workers()
    });
}

#[test]
fn send_after_duration_max_never_fires_and_lets_workers_park() {
    let rt = runtime(2);
    let p = spawn_parked(&rt);
    let drops = Arc::new(AtomicUsize::new(0));
    let t = rt.send_after(p.pid(), Duration::MAX, DropCounter(drops.clone()));
    assert_eq!(rt.pending_timers(), 1);
    wait_all_workers_asleep(&rt);
    assert_eq!(rt.info(p.pid()).unwrap().mailbox_depth, 0);
    assert!(t.cancel(), "a timer that never fires is pending");
    assert!(!t.cancel());
    assert_eq!(drops.load(Ordering::SeqCst), 1);
    assert_eq!(rt.pending_timers(), 0);
}

#[test]
fn recv_timeout_duration_max_waits_for_a_message() {
    let rt = runtime(2);
    let (tx, rx) = mpsc::channel();
    let p = rt.spawn(move |mut ctx| async move {
        tx.send(()).unwrap();
        let got = ctx.recv_timeout(Duration::MAX).await;
        let got = got
            .and_then(Received::message)
            .and_then(|m| m.downcast::<u32>().ok());
        assert_eq!(got, Some(7));
        // The selective form too, and a sleep "forever" that a kill ends.
        let got = ctx
            .recv_match_timeout(|_| true, Duration::MAX)
            .await
            .and_then(Received::message)
            .and_then(|m| m.downcast::<u32>().ok());
        assert_eq!(got, Some(8));
        sleep(Duration::MAX).await;
    });
    rx.recv_timeout(BOUND).unwrap();
    wait_all_workers_asleep(&rt);
    assert!(rt.send(p.pid(), 7u32));
    assert!(rt.send(p.pid(), 8u32));
    wait_until("the process to sleep forever", || {
        rt.info(p.pid()).is_some_and(|i| i.mailbox_depth == 0)
    });
    wait_all_workers_asleep(&rt);
    assert!(rt.is_alive(p.pid()));
    assert_eq!(
        rt.pending_timers(),
        0,
        "a deadline that never comes takes no slot"
    );
    p.kill();
    assert_eq!(run(&rt, p.join()), ExitReason::Killed);
}

#[test]
fn sleep_duration_max_in_block_on_is_pending_not_a_panic() {
    let rt = runtime(1);
    let mut s = sleep(Duration::MAX);
    let polled = run(
        &rt,
        std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut s).poll(cx).is_pending())),
    );
    assert!(polled);
    assert_eq!(rt.pending_timers(), 0);
}

#[test]
fn timers_aimed_at_a_killed_process_are_cancelled_and_freed() {
    const N: usize = 10_000;
    let rt = runtime(2);
    let p = spawn_parked(&rt);
    let drops = Arc::new(AtomicUsize::new(0));
    let refs: Vec<TimerRef> = (0..N)
        .map(|_| {
            rt.send_after(
                p.pid(),
                Duration::from_secs(3600),
                DropCounter(drops.clone()),
            )
        })
        .collect();
    assert_eq!(rt.pending_timers(), N);
    p.kill();
    assert_eq!(run(&rt, p.join()), ExitReason::Killed);
    assert_eq!(rt.pending_timers(), 0);
    assert_eq!(drops.load(Ordering::SeqCst), N, "every message freed");
    assert!(
        refs.iter().all(|t| !t.cancel()),
        "cancelled with its target"
    );
}

#[test]
fn a_timer_aimed_at_a_dead_process_is_cancelled_at_once() {
    let rt = runtime(1);
    let pid = ended_pid(&rt);
    let drops = Arc::new(AtomicUsize::new(0));
    let t = rt.send_after(pid, Duration::from_secs(3600), DropCounter(drops.clone()));
    let never = rt.send_after(pid, Duration::MAX, DropCounter(drops.clone()));
    assert_eq!(rt.pending_timers(), 0);
    assert_eq!(drops.load(Ordering::SeqCst), 2);
    assert!(!t.cancel());
    assert!(!never.cancel());
}

#[test]
fn a_process_ending_normally_cancels_its_timers_but_fired_ones_are_delivered() {
    let rt = runtime(2);
    let drops = Arc::new(AtomicUsize::new(0));
    let d = drops.clone();
    let p = rt.spawn(move |mut ctx| async move {
        let rt = ctx.runtime().clone();
        let me = ctx.pid();
        let _later = rt.send_after(me, Duration::from_secs(3600), DropCounter(d.clone()));
        let _soon = rt.send_after(me, Duration::from_millis(1), 5u32);
        let got = ctx
            .recv()
            .await
            .message()
            .and_then(|m| m.downcast::<u32>().ok());
        assert_eq!(got, Some(5));
    });
    assert_eq!(run(&rt, p.join()), ExitReason::Normal);
    assert_eq!(rt.pending_timers(), 0);
    assert_eq!(drops.load(Ordering::SeqCst), 1);
}

#[test]
fn send_after_respects_a_bounded_mailbox() {
    let rt = Runtime::builder().workers(2).mailbox_capacity(1).build();
    let p = spawn_parked(&rt);
    let timers: Vec<TimerRef> = (0..3u32)
        .map(|i| rt.send_after(p.pid(), Duration::from_millis(1), i))
        .collect();
    wait_until("the timers to fire", || rt.pending_timers() == 0);
    assert!(timers.iter().all(|t| !t.cancel()));
    assert_eq!(rt.info(p.pid()).unwrap().mailbox_depth, 1);
    assert_eq!(rt.dropped_messages(), 2);
    p.kill();
}

#[test]
fn a_shed_timer_message_that_panics_in_drop_is_counted_not_fatal() {
    silence_expected_panics();
    let rt = Runtime::builder().workers(1).mailbox_capacity(1).build();
    let p = spawn_parked(&rt);
    assert!(rt.send(p.pid(), 0u8));
    let _t = rt.send_after(p.pid(), Duration::from_millis(1), PanicOnDrop);
    wait_until("the panic to be counted", || {
        rt.metrics().unowned_panics == 1
    });
    assert_eq!(rt.dropped_messages(), 1);
    // The one worker is still there.
    worker_still_runs(&rt);
    p.kill();
}

#[test]
fn a_timer_message_that_panics_in_drop_at_its_targets_end_is_counted_not_fatal() {
    silence_expected_panics();
    let rt = runtime(1);
    let p = spawn_parked(&rt);
    let _t = rt.send_after(p.pid(), Duration::from_secs(3600), PanicOnDrop);
    p.kill();
    wait_until("the panic to be counted", || {
        rt.metrics().unowned_panics == 1
    });
    assert_eq!(rt.pending_timers(), 0);
    worker_still_runs(&rt);
}

/// The runtime's one worker is still there: processes run to their end.
fn worker_still_runs(rt: &Runtime) {
    for _ in 0..20 {
        assert_eq!(run(rt, rt.spawn(|_| async {}).join()), ExitReason::Normal);
    }
}

/// Polls `inner` first under a waker of its own, then again under the
/// caller's: only the second may be needed for it to make progress.
struct RepollWithNewWaker<F> {
    inner: F,
    first: bool,
}

impl<F: Future + Unpin> Future for RepollWithNewWaker<F> {
    type Output = F::Output;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        if std::mem::take(&mut self.first) {
            let mut other = Context::from_waker(Waker::noop());
            if let Poll::Ready(v) = Pin::new(&mut self.inner).poll(&mut other) {
                return Poll::Ready(v);
            }
        }
        Pin::new(&mut self.inner).poll(cx)
    }
}

#[test]
fn an_armed_sleep_wakes_the_waker_of_its_latest_poll() {
    let rt = runtime(1);
    run_for(
        &rt,
        BOUND,
        RepollWithNewWaker {
            inner: sleep(Duration::from_millis(5)),
            first: true,
        },
    );
    let p = rt.spawn(|_| async {
        RepollWithNewWaker {
            inner: sleep(Duration::from_millis(5)),
            first: true,
        }
        .await;
    });
    assert_eq!(run_for(&rt, BOUND, p.join()), ExitReason::Normal);
}

#[test]
fn an_armed_recv_timeout_wakes_the_waker_of_its_latest_poll() {
    let rt = runtime(1);
    let p = rt.spawn(|mut ctx| async move {
        let got = RepollWithNewWaker {
            inner: ctx.recv_timeout(Duration::from_millis(5)),
            first: true,
        }
        .await;
        assert!(got.is_none());
    });
    assert_eq!(run_for(&rt, BOUND, p.join()), ExitReason::Normal);
}

/// Runs `f` on a thread of its own and fails the test if it does not
/// return within [`BOUND`].
fn within_bound<R: Send + 'static>(what: &str, f: impl FnOnce() -> R + Send + 'static) -> R {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || tx.send(f()).unwrap());
    rx.recv_timeout(BOUND)
        .unwrap_or_else(|_| panic!("{what} hung on a stopped runtime"))
}

/// The owner drops the runtime; a handle taken inside a process remains.
fn orphaned_handle() -> Runtime {
    let rt = runtime(2);
    let handle = inner_handle(&rt);
    drop(rt);
    handle
}

#[test]
fn a_handle_of_a_stopped_runtime_never_hangs() {
    let handle = orphaned_handle();
    within_bound("every call", move || {
        let h = &handle;
        h.block_on(sleep(Duration::from_millis(10)));
        let p = h.spawn(|_| async {});
        assert_eq!(h.block_on(p.join()), ExitReason::Killed);
        let q = spawn_parked(h);
        assert!(!h.is_alive(q.pid()));
        assert!(!h.send(q.pid(), 1u8));
        let t = h.send_after(q.pid(), Duration::from_millis(1), 1u8);
        assert!(!t.cancel());
        assert_eq!(h.pending_timers(), 0);
        assert!(!h.kill(q.pid()));
        assert!(h.info(q.pid()).is_none());
        assert_eq!(h.shutdown(), 0);
        assert!(!h.exit(q.pid(), ExitReason::Shutdown));
        assert!(!h.set_label(q.pid(), "x"));
        assert!(!h.register("name", q.pid()));
        assert_eq!(h.whereis("name"), None);
        assert!(!h.send_named("name", 1u8));
        assert!(!h.register_tag("tag", q.pid()));
        assert_eq!(h.kill_tag("tag"), 0);
        let r = h.whereis_or_spawn("other", |_| async {});
        assert!(!h.is_alive(r));
        h.link(q.pid(), r);
        h.set_trap_exit(q.pid(), true);
        assert!(!h.send_exit(r, q.pid(), ExitReason::Killed));
        let m = h.monitor(r, q.pid());
        assert!(!h.demonitor(m));
        let l = h.spawn_link(q.pid(), |_| async {});
        assert_eq!(h.block_on(l.join()), ExitReason::Killed);
        assert_eq!(h.block_on(q.join()), ExitReason::Killed);
        assert!(h.list().is_empty());
        assert_eq!(h.process_count(), 0);
        let _ = h.metrics();
    });
}

#[test]
fn a_block_on_sleeping_while_its_runtime_stops_still_wakes() {
    let rt = runtime(2);
    let handle = inner_handle(&rt);
    let (started_tx, started_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel();
    std::thread::spawn(move || {
        handle.block_on(async {
            started_tx.send(()).unwrap();
            sleep(Duration::from_millis(300)).await;
        });
        done_tx.send(()).unwrap();
    });
    started_rx.recv_timeout(BOUND).unwrap();
    drop(rt);
    done_rx
        .recv_timeout(BOUND)
        .expect("a sleep in block_on hung after its runtime stopped");
}

#[test]
fn a_cancel_whose_message_panics_in_drop_panics_the_canceller_only() {
    silence_expected_panics();
    let rt = runtime(1);
    let p = spawn_parked(&rt);
    let t = rt.send_after(p.pid(), Duration::from_secs(3600), PanicOnDrop);
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| t.cancel()));
    assert!(
        panicked.is_err(),
        "the message is dropped on the canceller's thread"
    );
    assert_eq!(rt.pending_timers(), 0);
    assert!(!t.cancel());
    // The wheel and the target's lists are intact: timers still work.
    let soon = rt.send_after(p.pid(), Duration::from_millis(1), 1u8);
    let later = rt.send_after(p.pid(), Duration::from_secs(3600), 2u8);
    wait_until("the first timer", || {
        rt.info(p.pid()).unwrap().mailbox_depth == 1
    });
    assert!(!soon.cancel());
    assert!(later.cancel());
    assert_eq!(rt.pending_timers(), 0);
    assert_eq!(rt.metrics().unowned_panics, 0);
    p.kill();
}
