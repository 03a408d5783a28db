//! Loom models of the composed runtime: real processes (task, state word,
//! mailbox, signals, teardown) on a real two-worker runtime (worker loop,
//! idle protocol, parkers, next slots), with loom's threads, thread-locals
//! and locks in place of std's and two stand-ins: a `Mutex<VecDeque>` for
//! crossbeam-deque (`loom::deque`) and a mutex-guarded map for the process
//! table, whose releases wait until no other thread is pinned
//! (`process::table`, `loom::epoch`). No timers, no stall monitor, no
//! blocking pool: the models use none of them.
//!
//! Each model is named `loom_rt_*` and kept small (one or two processes, a
//! message or two). A whole runtime has many more steps than one protocol,
//! so these run with at most two preemptions (as tokio bounds its
//! multi-thread models), whatever `LOOM_MAX_PREEMPTIONS` asks: a few
//! seconds each, where three would take minutes.

use crate::{Context, ExitReason, Received, Runtime};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Poll, Waker};

/// Runs `f` under loom with at most two preemptions.
fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(b.preemption_bound.map_or(2, |n| n.min(2)));
    b.check(f);
}

/// A two-worker runtime.
fn runtime() -> Runtime {
    Runtime::builder().workers(2).build()
}

/// A value that counts its drops.
struct Counted(Arc<AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

fn counter() -> Arc<AtomicUsize> {
    Arc::new(AtomicUsize::new(0))
}

fn count(c: &AtomicUsize) -> usize {
    c.load(Ordering::Relaxed)
}

/// Spawn, then a send racing the process's first poll: the receive either
/// finds the message or parks and is woken by the send.
#[test]
fn loom_rt_spawn_send_recv() {
    model(|| {
        let rt = runtime();
        let got = counter();
        let g = got.clone();
        let h = rt.spawn(move |mut ctx| async move {
            if let Received::Message(m) = ctx.recv().await {
                g.store(m.downcast::<u32>().unwrap() as usize, Ordering::Relaxed);
            }
        });
        assert!(rt.send(h.pid(), 7u32));
        assert_eq!(rt.block_on(h.join()), ExitReason::Normal);
        assert_eq!(count(&got), 7);
        assert_eq!(rt.finished(), 1);
    });
}

/// A kill racing the poll of a receive that parks: the process ends
/// `Killed` whether the kill lands before, during or after the poll, and
/// its future is dropped once.
#[test]
fn loom_rt_kill_during_a_poll() {
    model(|| {
        let rt = runtime();
        let dropped = counter();
        let d = Counted(dropped.clone());
        let h = rt.spawn(move |mut ctx| async move {
            let _d = d;
            ctx.recv().await;
            unreachable!("nothing is sent");
        });
        assert!(rt.kill(h.pid()));
        assert_eq!(rt.block_on(h.join()), ExitReason::Killed);
        assert_eq!(count(&dropped), 1);
        assert_eq!(rt.finished(), 1);
    });
}

/// A send racing the process's exit: the send fails (the message comes
/// back and is dropped by the sender), or the message is received, or the
/// teardown drops it; in every case it is gone by the time `join` returns.
#[test]
fn loom_rt_exit_during_a_send() {
    model(|| {
        let rt = runtime();
        let h = rt.spawn(|_ctx| async {});
        let dropped = counter();
        let _sent = rt.send(h.pid(), Counted(dropped.clone()));
        assert_eq!(rt.block_on(h.join()), ExitReason::Normal);
        assert_eq!(count(&dropped), 1, "a message outlived its process");
        assert!(!rt.send(h_pid_after(&rt), 0u8));
    });
}

/// A pid that was never given out (sends to it fail).
fn h_pid_after(rt: &Runtime) -> crate::Pid {
    crate::Pid::from_raw(rt.spawned() + 1)
}

/// A future that hands its waker out on its first poll, then completes.
struct LeakWaker {
    slot: Arc<loom::sync::Mutex<Option<Waker>>>,
    /// Counts the future's drop.
    _drop: Counted,
}

impl Future for LeakWaker {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<()> {
        *self.slot.lock().unwrap() = Some(cx.waker().clone());
        Poll::Ready(())
    }
}

/// `finish` racing a wake: the process's waker, handed out by its only
/// poll, is woken while the worker finishes the process (or after). The
/// wake must not queue the process (it is running, then complete): an
/// entry queued then would be stale, and run the task again on the other
/// worker, dropping or polling its future twice.
#[test]
fn loom_rt_finish_racing_a_stale_wake() {
    model(|| {
        let rt = runtime();
        let dropped = counter();
        let slot = Arc::new(loom::sync::Mutex::new(None::<Waker>));
        let fut = LeakWaker {
            slot: slot.clone(),
            _drop: Counted(dropped.clone()),
        };
        let h = rt.spawn(move |_ctx| fut);
        let waker = slot.lock().unwrap().take();
        if let Some(w) = waker {
            w.wake();
        }
        assert_eq!(rt.block_on(h.join()), ExitReason::Normal);
        drop(rt);
        assert_eq!(count(&dropped), 1);
    });
}

/// A one-shot signal from a process to the model's main thread.
#[derive(Clone, Default)]
struct Signal(Arc<loom::sync::Mutex<(bool, Option<Waker>)>>);

impl Signal {
    fn raise(&self) {
        let waker = {
            let mut s = self.0.lock().unwrap();
            s.0 = true;
            s.1.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Waits (in `block_on`, parked) until raised.
    fn wait(&self, rt: &Runtime) {
        rt.block_on(std::future::poll_fn(|cx| {
            let mut s = self.0.lock().unwrap();
            if s.0 {
                return Poll::Ready(());
            }
            s.1 = Some(cx.waker().clone());
            Poll::Pending
        }));
    }
}

/// The owner's last handle dropped with one process parked in a receive
/// (or about to park) and one woken by a message (queued, or running),
/// while the workers run or sleep: the stop wakes and joins the workers,
/// every future is dropped once, every process ends, the message is
/// dropped once.
#[test]
fn loom_rt_drop_with_processes_parked_and_queued() {
    model(|| {
        let rt = runtime();
        let futures = counter();
        let messages = counter();
        let started = Signal::default();
        let spawn = |rt: &Runtime, started: Option<Signal>| {
            let d = Counted(futures.clone());
            rt.spawn(move |mut ctx| async move {
                let _d = d;
                if let Some(s) = started {
                    s.raise();
                }
                ctx.recv().await;
                ctx.recv().await;
            })
        };
        let parked = spawn(&rt, Some(started.clone()));
        let queued = spawn(&rt, None);
        // Main parks here, so the workers run (and go to sleep) freely.
        started.wait(&rt);
        rt.send(queued.pid(), Counted(messages.clone()));
        drop(rt);
        assert_eq!(count(&futures), 2);
        assert_eq!(count(&messages), 1);
        let mut cx = std::task::Context::from_waker(futures_task::noop_waker_ref());
        for h in [parked, queued] {
            let mut join = h.join();
            let reason = Pin::new(&mut join).poll(&mut cx);
            assert_eq!(reason, Poll::Ready(ExitReason::Killed));
        }
    });
}

/// Keeps the expected panic of a receive on an ended process off stderr
/// (every loom execution would print it); every other panic goes on.
fn quiet_ended_receives() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let msg = info
                .payload()
                .downcast_ref::<String>()
                .map(String::as_str)
                .unwrap_or("");
            if !msg.contains("its mailbox is closed") {
                previous(info);
            }
        }));
    });
}

/// A `Context` moved out of its process, receiving on another thread (the
/// model's main thread, under its `block_on` waker) while the process is
/// killed, its teardown on a worker: the teardown wakes the parked receive,
/// which then ends (a receive on an ended process panics), so the thread is
/// never left parked.
#[test]
fn loom_rt_moved_out_context_receiving_during_teardown() {
    quiet_ended_receives();
    model(|| {
        let rt = runtime();
        let slot = Arc::new(loom::sync::Mutex::new(None::<Context>));
        let s = slot.clone();
        let h = rt.spawn(move |ctx| {
            *s.lock().unwrap() = Some(ctx);
            std::future::pending::<()>()
        });
        let mut ctx = slot.lock().unwrap().take().expect("stored by the spawn");
        assert!(rt.kill(h.pid()));
        let got =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| rt.block_on(ctx.recv())));
        assert!(got.is_err(), "nothing was sent");
        assert_eq!(rt.block_on(h.join()), ExitReason::Killed);
    });
}
