//! Helpers for tests written as processes: bounded receives, a tester
//! process whose assertions are the test's ([`check`]), and a small actor
//! that answers pings and crashes or returns when told to.
//!
//! Every receive is bounded by [`TIMEOUT`](super::TIMEOUT).

use super::{EXPECTED_PANIC, TIMEOUT, run};
use rusm_otp::{Context, ExitReason, Message, MonitorRef, Pid, ProcessHandle, Received, Runtime};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::{Duration, Instant};

/// Polls until `cond` holds, sleeping a millisecond (on the runtime's
/// timers, so a `block_on` does not spin) between checks; panics with `what` after [`TIMEOUT`]. Usable
/// inside a process and inside `block_on`.
pub(crate) async fn wait_until_timed(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + TIMEOUT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        rusm_otp::sleep(Duration::from_millis(1)).await;
    }
}

/// Receives the next item, failing the test after [`TIMEOUT`].
pub(crate) async fn recv(ctx: &mut Context, what: &str) -> Received {
    match ctx.recv_timeout(TIMEOUT).await {
        Some(r) => r,
        None => panic!(
            "{}: nothing received within {TIMEOUT:?} ({what})",
            ctx.pid()
        ),
    }
}

/// Receives the oldest item `pred` accepts, failing the test after
/// [`TIMEOUT`].
pub(crate) async fn recv_match(
    ctx: &mut Context,
    what: &str,
    pred: impl FnMut(&Received) -> bool,
) -> Received {
    let me = ctx.pid();
    match ctx.recv_match_timeout(pred, TIMEOUT).await {
        Some(r) => r,
        None => panic!("{me}: no matching item within {TIMEOUT:?} ({what})"),
    }
}

/// Receives the next item and requires it to be a user message of type `T`.
pub(crate) async fn recv_msg<T: 'static>(ctx: &mut Context, what: &str) -> T {
    match recv(ctx, what).await {
        Received::Message(m) => match m.downcast::<T>() {
            Ok(v) => v,
            Err(m) => panic!(
                "{what}: expected a {}, got a {}",
                std::any::type_name::<T>(),
                m.type_name()
            ),
        },
        other => panic!("{what}: expected a user message, got {other:?}"),
    }
}

/// Receives `n` `Down`s, each with `reason` and each for a monitor not seen
/// before (one `Down` per monitor), failing the test on anything else: the
/// pid each names, by monitor.
pub(crate) async fn recv_downs(
    ctx: &mut Context,
    n: usize,
    reason: ExitReason,
) -> HashMap<MonitorRef, Pid> {
    let mut seen = HashMap::with_capacity(n);
    for _ in 0..n {
        match recv(ctx, "a Down").await {
            Received::Down {
                reference,
                pid,
                reason: r,
            } => {
                assert_eq!(r, reason, "the Down's reason");
                assert!(
                    seen.insert(reference, pid).is_none(),
                    "two Downs for one monitor"
                );
            }
            other => panic!("expected a Down, got {other:?}"),
        }
    }
    seen
}

/// Runs `f` as a process (the *tester*) and requires it to end `Normal`:
/// its assertions are the test's. Its panic message, if any, is reported.
/// (Waits by `join` only: no timer is involved, so tests may count the
/// runtime's pending timers.)
pub(crate) fn check<F, Fut>(rt: &Runtime, f: F)
where
    F: FnOnce(Context) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let panic = Arc::new(Mutex::new(None));
    let slot = panic.clone();
    let h = rt.spawn(move |ctx| RecordPanic {
        fut: Box::pin(f(ctx)),
        slot,
    });
    let pid = h.pid();
    let reason = run(rt, h.join());
    assert_eq!(
        reason,
        ExitReason::Normal,
        "tester {pid} ended {reason:?}; panic: {:?}",
        panic.lock().unwrap()
    );
}

/// [`check`] with a tester that traps exits from before its first line runs,
/// so no exit signal sent to it (or over a link it makes) can end it. The
/// body is given the runtime and the tester's pid along with its context.
pub(crate) fn check_trapping<F, Fut>(rt: &Runtime, f: F)
where
    F: FnOnce(Context, Runtime, Pid) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    check(rt, |ctx| async move {
        let (rt, me) = (ctx.runtime().clone(), ctx.pid());
        rt.set_trap_exit(me, true);
        f(ctx, rt, me).await
    })
}

/// Records the panic message of the future it wraps, then lets the panic
/// go on (so the process still ends `Crashed`).
struct RecordPanic<F> {
    fut: Pin<Box<F>>,
    slot: Arc<Mutex<Option<String>>>,
}

impl<F: Future> Future for RecordPanic<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        let fut = &mut this.fut;
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| fut.as_mut().poll(cx))) {
            Ok(p) => p,
            Err(payload) => {
                let msg = payload
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "<non-string panic>".to_string());
                *this.slot.lock().unwrap() = Some(msg);
                std::panic::resume_unwind(payload)
            }
        }
    }
}

/// What an [`spawn_actor`] process does when told to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Go {
    /// Panic (ends `Crashed`).
    Panic,
    /// Return from the body (ends `Normal`).
    Return,
}

/// Asks an actor whether it is alive: it replies `Pong(n)` to `from`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ping(pub(crate) Pid, pub(crate) u64);

/// An actor's reply to [`Ping`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Pong(pub(crate) u64);

/// Spawns an actor: it answers [`Ping`]s, obeys [`Go`], and ignores
/// everything else (including `Exit`s, should it trap exits).
pub(crate) fn spawn_actor(rt: &Runtime) -> ProcessHandle {
    rt.spawn(|mut ctx| async move {
        loop {
            let Received::Message(m) = ctx.recv().await else {
                continue;
            };
            if let Some(&Ping(from, n)) = m.downcast_ref::<Ping>() {
                ctx.runtime().send(from, Pong(n));
            } else if let Some(go) = m.downcast_ref::<Go>() {
                match go {
                    Go::Panic => panic!("{EXPECTED_PANIC} told to crash"),
                    Go::Return => return,
                }
            }
        }
    })
}

/// The pid of an actor that has been killed (and has ended `Killed`).
pub(crate) fn killed_pid(rt: &Runtime) -> Pid {
    let p = spawn_actor(rt);
    let pid = p.pid();
    rt.kill(pid);
    assert_eq!(run(rt, p.join()), ExitReason::Killed);
    pid
}

/// Whether `pid` is alive *and running*: it answers a [`Ping`] before it
/// goes down. A process that has been told to exit never answers. Leaves
/// nothing behind in the caller's mailbox.
pub(crate) async fn responds(ctx: &mut Context, pid: Pid) -> bool {
    static NONCE: AtomicU64 = AtomicU64::new(0);
    let n = NONCE.fetch_add(1, Ordering::Relaxed);
    let rt = ctx.runtime().clone();
    let me = ctx.pid();
    let r = rt.monitor(me, pid);
    rt.send(pid, Ping(me, n));
    let got = recv_match(ctx, "a Pong or a Down", |item| match item {
        Received::Message(m) => m.downcast_ref::<Pong>() == Some(&Pong(n)),
        Received::Down { reference, .. } => *reference == r,
        Received::Exit { .. } => false,
    })
    .await;
    match got {
        Received::Message(_) => {
            assert!(rt.demonitor(r), "the monitor had not fired");
            true
        }
        _ => false,
    }
}

/// A user message's payload, for assertions on mixed mailboxes.
pub(crate) fn payload<T: Clone + 'static>(m: &Message) -> Option<T> {
    m.downcast_ref::<T>().cloned()
}
