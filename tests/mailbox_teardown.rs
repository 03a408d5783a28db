//! The mailbox at the end of a process: a `Context` moved out of its
//! process racing the teardown, receives on the context of an ended process,
//! and message destructors that panic while the mailbox is closed.

mod support;

use rusm_otp::{Context, ExitReason, Received, Runtime};
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;
use support::{EXPECTED_PANIC, poll_once_foreign, run, run_for, runtime, wait_until};

/// Bound for a wait that hangs on the unfixed code: long enough for a loaded
/// machine, short enough that a hang fails the test quickly.
const HANG: Duration = Duration::from_secs(20);

/// A message whose destructor panics.
struct PanicOnDrop;

impl Drop for PanicOnDrop {
    fn drop(&mut self) {
        panic!("{EXPECTED_PANIC} a message's destructor");
    }
}

/// Spawns a process whose body gives its `Context` away and then waits
/// forever; returns the process and its context.
fn spawn_escaping(rt: &Runtime) -> (rusm_otp::ProcessHandle, Context) {
    let (tx, rx) = mpsc::channel();
    let h = rt.spawn(move |ctx| {
        tx.send(ctx).unwrap();
        std::future::pending::<()>()
    });
    (h, rx.recv().unwrap())
}

/// Kills `h`'s process and waits for its teardown.
fn kill_and_join(rt: &Runtime, h: rusm_otp::ProcessHandle) -> ExitReason {
    assert!(h.kill());
    run_for(rt, HANG, h.join())
}

/// One thread drains moved-out contexts with `try_recv` while the main
/// thread floods their processes with sends and kills them, round after
/// round (the draining thread persists, so a round is short and many fit
/// in the test). The close must take the incoming messages from under the
/// draining consumer without either side walking the other's: no crash,
/// nothing received twice or out of order, the consumer gets nothing once
/// the process has ended, and the dead process's mailbox stays closed.
#[test]
fn a_context_drained_on_another_thread_races_the_teardown() {
    const ROUNDS: usize = 300;
    /// Processes killed per round.
    const PER_ROUND: usize = 8;
    /// Sends to each process before the kills.
    const BURST: u64 = 16;
    /// Sends after the kill that may still land before the close; a
    /// mailbox that keeps accepting past this has been reopened.
    const MAX_LATE: u64 = 10_000_000;
    let rt = runtime(1);
    // Set by the main thread once the round's processes have ended.
    let ended = Arc::new(AtomicBool::new(false));
    let (to_drainer, contexts) = mpsc::channel::<Vec<Context>>();
    let (back, returned) = mpsc::channel::<Vec<Context>>();
    let drainer = {
        let ended = ended.clone();
        thread::spawn(move || {
            for mut ctxs in contexts {
                let mut next = vec![0u64; ctxs.len()];
                while !ended.load(Ordering::Acquire) {
                    for (ctx, next) in ctxs.iter_mut().zip(&mut next) {
                        if let Some(r) = ctx.try_recv() {
                            let v = r.message().unwrap().downcast::<u64>().unwrap();
                            assert_eq!(v, *next, "each message once, in order");
                            *next += 1;
                        }
                    }
                }
                for ctx in &mut ctxs {
                    assert!(ctx.try_recv().is_none(), "the process has ended");
                }
                back.send(ctxs).unwrap();
            }
        })
    };
    for _ in 0..ROUNDS {
        let (handles, ctxs): (Vec<_>, Vec<_>) = (0..PER_ROUND).map(|_| spawn_escaping(&rt)).unzip();
        let pids: Vec<_> = handles.iter().map(|h| h.pid()).collect();
        ended.store(false, Ordering::Release);
        to_drainer.send(ctxs).unwrap();
        for i in 0..BURST {
            for &pid in &pids {
                assert!(rt.send(pid, i));
            }
        }
        for h in &handles {
            assert!(h.kill());
        }
        for &pid in &pids {
            let mut i = BURST;
            while rt.send(pid, i) {
                i += 1;
                assert!(i < BURST + MAX_LATE, "sends succeed into a killed process");
            }
        }
        run_for(&rt, HANG, async {
            for h in handles {
                assert_eq!(h.join().await, ExitReason::Killed);
            }
        });
        ended.store(true, Ordering::Release);
        let mut ctxs = returned.recv().unwrap();
        for (ctx, &pid) in ctxs.iter_mut().zip(&pids) {
            assert!(!rt.send(pid, 0u64), "a send to an ended process fails");
            assert!(ctx.try_recv().is_none());
        }
        drop(ctxs);
    }
    drop(to_drainer);
    drainer.join().unwrap();
    assert_eq!(rt.metrics().unowned_panics, 0);
}

/// After its process ended, a moved-out context receives nothing, not even
/// messages it had already collected before the end.
#[test]
fn try_recv_on_an_ended_process_returns_none() {
    let rt = runtime(1);
    let (h, mut ctx) = spawn_escaping(&rt);
    for i in 0..3u64 {
        assert!(rt.send(h.pid(), i));
    }
    let first = ctx.try_recv().unwrap().message().unwrap();
    assert_eq!(first.downcast::<u64>().ok(), Some(0));
    assert_eq!(kill_and_join(&rt, h), ExitReason::Killed);
    assert!(ctx.try_recv().is_none());
}

/// `recv_timeout` on an ended process's context returns `None` at once,
/// however long its timeout.
#[test]
fn recv_timeout_on_an_ended_process_returns_none_at_once() {
    let rt = runtime(1);
    let (h, mut ctx) = spawn_escaping(&rt);
    assert_eq!(kill_and_join(&rt, h), ExitReason::Killed);
    let got = run_for(&rt, HANG, ctx.recv_timeout(Duration::from_secs(3600)));
    assert!(got.is_none());
    let got = run_for(
        &rt,
        HANG,
        ctx.recv_match_timeout(|_| true, Duration::from_secs(3600)),
    );
    assert!(got.is_none());
}

/// The panic message of `f`, which must panic.
fn panic_of(f: impl FnOnce()) -> String {
    let payload = catch_unwind(AssertUnwindSafe(f)).expect_err("it panics");
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

/// `recv` and `recv_match`, which cannot return "nothing", panic with a
/// clear message on an ended process's context instead of hanging.
#[test]
fn recv_and_recv_match_on_an_ended_process_panic() {
    let rt = runtime(1);
    let (h, mut ctx) = spawn_escaping(&rt);
    assert_eq!(kill_and_join(&rt, h), ExitReason::Killed);
    let msg = panic_of(|| {
        run_for(&rt, HANG, ctx.recv());
    });
    assert!(msg.contains("process has ended"), "{msg}");
    let msg = panic_of(|| {
        run_for(&rt, HANG, ctx.recv_match(|_| true));
    });
    assert!(msg.contains("process has ended"), "{msg}");
}

/// Starts a receive on `ctx` on a new thread, waits until it has parked
/// once, and returns the thread.
fn parked_receiver<T: Send + 'static>(
    rt: &Runtime,
    mut ctx: Context,
    receive: impl FnOnce(&Runtime, &mut Context, &mpsc::Sender<()>) -> T + Send + 'static,
) -> thread::JoinHandle<T> {
    let rt = rt.clone();
    let (tx, rx) = mpsc::channel();
    let t = thread::spawn(move || receive(&rt, &mut ctx, &tx));
    rx.recv().unwrap();
    t
}

/// A receive parked on a moved-out context (under a foreign waker) when the
/// process ends is woken by the teardown and ends: `recv_timeout` with
/// `None`, `recv` with its panic.
#[test]
fn a_receive_parked_when_the_process_ends_is_woken() {
    let rt = runtime(1);
    let (h, ctx) = spawn_escaping(&rt);
    let t = parked_receiver(&rt, ctx, |rt, ctx, parked| {
        let mut fut = ctx.recv_timeout(Duration::from_secs(3600));
        assert!(poll_once_foreign(&mut fut).is_pending());
        parked.send(()).unwrap();
        run_for(rt, HANG, fut).is_none()
    });
    assert_eq!(kill_and_join(&rt, h), ExitReason::Killed);
    assert!(t.join().unwrap(), "recv_timeout ends with None");

    let (h, ctx) = spawn_escaping(&rt);
    let t = parked_receiver(&rt, ctx, |rt, ctx, parked| {
        let mut fut = ctx.recv();
        assert!(poll_once_foreign(&mut fut).is_pending());
        parked.send(()).unwrap();
        panic_of(|| {
            run_for(rt, HANG, fut);
        })
    });
    assert_eq!(kill_and_join(&rt, h), ExitReason::Killed);
    let msg = t.join().unwrap();
    assert!(msg.contains("process has ended"), "{msg}");
}

/// The reproduction: on one worker, a process waits in `recv_match` for a
/// `u64`; it is sent a value whose destructor panics (deferred by the
/// receive) and then `1u64`. Its teardown drops the deferred message: the
/// panic crashes that process, never the worker, and the runtime goes on.
#[test]
fn a_deferred_message_whose_destructor_panics_crashes_its_process_not_the_worker() {
    support::silence_expected_panics();
    let rt = runtime(1);
    let h = rt.spawn(|mut ctx| async move {
        let r = ctx
            .recv_match(|r| matches!(r, Received::Message(m) if m.is::<u64>()))
            .await;
        assert_eq!(r.message().unwrap().downcast::<u64>().ok(), Some(1));
    });
    let pid = h.pid();
    assert!(rt.send(pid, PanicOnDrop));
    assert!(rt.send(pid, 1u64));
    wait_until("the process to end", || h.is_finished());
    let msg = h.panic_message().unwrap_or_default();
    assert_eq!(run_for(&rt, HANG, h.join()), ExitReason::Crashed);
    assert!(!rt.is_alive(pid));
    assert!(msg.contains("destructor"), "{msg}");
    let m = rt.metrics();
    assert_eq!((m.panics, m.unowned_panics), (1, 0));
    // The worker survived: another process runs.
    let next = rt.spawn(|_| async {});
    assert_eq!(run_for(&rt, HANG, next.join()), ExitReason::Normal);
}

/// A message still in the incoming queue (never collected) when the
/// process is killed: its panicking destructor makes the reason `Crashed`.
#[test]
fn a_queued_message_whose_destructor_panics_crashes_the_killed_process() {
    support::silence_expected_panics();
    let rt = runtime(1);
    let h = rt.spawn(|ctx| async move {
        let _ctx = ctx;
        std::future::pending::<()>().await
    });
    assert!(rt.send(h.pid(), PanicOnDrop));
    assert!(rt.send(h.pid(), 2u64));
    assert_eq!(kill_and_join(&rt, h), ExitReason::Crashed);
    let m = rt.metrics();
    assert_eq!((m.panics, m.unowned_panics), (1, 0));
    let next = rt.spawn(|_| async {});
    assert_eq!(run(&rt, next.join()), ExitReason::Normal);
}

/// A moved-out context that still holds a deferred message whose destructor
/// panics, dropped after its process ended: the process's fate is settled,
/// so the panic is counted as unowned and does not unwind into the thread
/// dropping the context.
#[test]
fn a_context_dropped_after_its_process_ended_counts_the_panic_as_unowned() {
    support::silence_expected_panics();
    let rt = runtime(1);
    let (h, mut ctx) = spawn_escaping(&rt);
    assert!(rt.send(h.pid(), PanicOnDrop));
    // Defer it: a selective receive that rejects everything collects it.
    let mut fut = ctx.recv_match(|_| false);
    assert!(poll_once_foreign(&mut fut).is_pending());
    drop(fut);
    assert_eq!(kill_and_join(&rt, h), ExitReason::Killed);
    drop(ctx);
    let m = rt.metrics();
    assert_eq!((m.panics, m.unowned_panics), (0, 1));
}

/// A waker that a moved-out context parks with: on its first wake it sends
/// one more message to the same process (re-entering the send path), then
/// panics.
struct ReentrantWaker {
    rt: Runtime,
    pid: rusm_otp::Pid,
    woken: AtomicBool,
}

impl std::task::Wake for ReentrantWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        if !self.woken.swap(true, Ordering::SeqCst) {
            self.rt.send(self.pid, 2u64);
            panic!("{EXPECTED_PANIC} a foreign waker");
        }
    }
}

/// The waker of a receive parked on a moved-out context is user code: the
/// send that wakes it must call it outside the process's locks (it may send
/// to the same process) and under the guard (a panic in it is counted, not
/// unwound into the sender).
#[test]
fn a_foreign_waker_may_send_to_its_process_and_may_panic() {
    support::silence_expected_panics();
    let rt = runtime(1);
    let (h, mut ctx) = spawn_escaping(&rt);
    let pid = h.pid();
    let w = Arc::new(ReentrantWaker {
        rt: rt.clone(),
        pid,
        woken: AtomicBool::new(false),
    });
    let waker = std::task::Waker::from(w.clone());
    let mut cx = std::task::Context::from_waker(&waker);
    let first = {
        let mut fut = std::pin::pin!(ctx.recv());
        assert!(fut.as_mut().poll(&mut cx).is_pending());
        // On a thread of its own, so a deadlock fails the test instead of
        // hanging it.
        let sender = {
            let rt = rt.clone();
            thread::spawn(move || rt.send(pid, 1u64))
        };
        wait_until("the send (a deadlock in the waker hangs it)", || {
            sender.is_finished()
        });
        assert!(sender.join().expect("the sender did not unwind"));
        assert!(w.woken.load(Ordering::SeqCst));
        match fut.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(r) => r.message().unwrap().downcast::<u64>().unwrap(),
            std::task::Poll::Pending => panic!("the message was not there"),
        }
    };
    assert_eq!(first, 1);
    assert_eq!(
        ctx.try_recv()
            .unwrap()
            .message()
            .unwrap()
            .downcast::<u64>()
            .unwrap(),
        2
    );
    assert_eq!(rt.metrics().unowned_panics, 1);
    assert_eq!(kill_and_join(&rt, h), ExitReason::Killed);
}
