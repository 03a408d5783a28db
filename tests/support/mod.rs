//! Helpers shared by the integration tests.
//!
//! Every wait in these tests is bounded: a `block_on` goes through [`run`],
//! which gives up (and fails the test) after [`TIMEOUT`]; polling loops go
//! through [`wait_until`] / [`wait_until_async`], which panic on their
//! deadline. Wall-clock time is only ever used as such a bound, never
//! asserted on. Helpers for tests written as processes (bounded receives,
//! a tester process, a ping-answering actor) are in [`actors`]; a logger
//! that keeps every record is in [`log_capture`]; children for supervisor
//! tests are in [`supervision`].

// Each test binary uses its own subset of these helpers.
#![allow(dead_code)]

mod actors;
pub(crate) mod counting;
pub(crate) mod log_capture;
pub(crate) mod supervision;
#[allow(unused_imports)] // each test binary uses its own subset
pub(crate) use actors::*;

use rusm_otp::{ExitReason, Pid, ProcessHandle, Runtime};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::task::{Context, Poll, Waker};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// How long any single wait may take before the test is declared hung.
/// Generous, because debug builds on a loaded machine are slow; a healthy
/// run never comes near it.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(120);

/// A runtime with `workers` worker threads.
pub(crate) fn runtime(workers: usize) -> Runtime {
    Runtime::builder().workers(workers).build()
}

/// `rt.block_on(fut)`, failing the test instead of hanging if `fut` does not
/// complete within [`TIMEOUT`] (a lost message or a lost wake-up).
pub(crate) fn run<F: Future>(rt: &Runtime, fut: F) -> F::Output {
    run_for(rt, TIMEOUT, fut)
}

/// [`run`] with an explicit bound.
pub(crate) fn run_for<F: Future>(rt: &Runtime, limit: Duration, fut: F) -> F::Output {
    match rt.block_on(Timeout::new(fut, limit)) {
        Ok(v) => v,
        Err(Elapsed) => panic!(
            "block_on did not complete within {limit:?}: a message or a wake-up was lost, \
             or a process never ended"
        ),
    }
}

/// The error of a [`Timeout`] whose deadline passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Elapsed;

/// Shared between a [`Timeout`] and its watchdog thread.
struct WatchdogShared {
    waker: Mutex<Option<Waker>>,
    done: AtomicBool,
}

/// A future that resolves to `Err(Elapsed)` once `deadline` has passed.
/// A watchdog thread wakes it at the deadline, so it works under any waker
/// (`block_on`'s or a process's).
pub(crate) struct Timeout<F> {
    fut: Pin<Box<F>>,
    deadline: Instant,
    shared: Arc<WatchdogShared>,
    watchdog: Option<JoinHandle<()>>,
}

impl<F: Future> Timeout<F> {
    pub(crate) fn new(fut: F, limit: Duration) -> Self {
        Timeout {
            fut: Box::pin(fut),
            deadline: Instant::now() + limit,
            shared: Arc::new(WatchdogShared {
                waker: Mutex::new(None),
                done: AtomicBool::new(false),
            }),
            watchdog: None,
        }
    }
}

impl<F: Future> Future for Timeout<F> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if let Poll::Ready(v) = this.fut.as_mut().poll(cx) {
            return Poll::Ready(Ok(v));
        }
        if Instant::now() >= this.deadline {
            return Poll::Ready(Err(Elapsed));
        }
        *this.shared.waker.lock().unwrap() = Some(cx.waker().clone());
        if this.watchdog.is_none() {
            let shared = this.shared.clone();
            let deadline = this.deadline;
            this.watchdog = Some(thread::spawn(move || {
                loop {
                    if shared.done.load(Ordering::Acquire) {
                        return;
                    }
                    let now = Instant::now();
                    if now >= deadline {
                        if let Some(w) = shared.waker.lock().unwrap().take() {
                            w.wake();
                        }
                        return;
                    }
                    thread::park_timeout(deadline - now);
                }
            }));
        }
        Poll::Pending
    }
}

impl<F> Drop for Timeout<F> {
    fn drop(&mut self) {
        self.shared.done.store(true, Ordering::Release);
        if let Some(t) = self.watchdog.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

/// Waits for each of `handles`, in order, requiring each to end with
/// `reason`.
pub(crate) fn join_all(
    rt: &Runtime,
    handles: impl IntoIterator<Item = ProcessHandle>,
    reason: ExitReason,
) {
    run(rt, async {
        for h in handles {
            assert_eq!(h.join().await, reason);
        }
    });
}

/// The pid of a process that has ended `Normal`.
pub(crate) fn ended_pid(rt: &Runtime) -> Pid {
    let p = rt.spawn(|_ctx| async {});
    let pid = p.pid();
    assert_eq!(run(rt, p.join()), ExitReason::Normal);
    pid
}

/// A handle on `rt` taken inside a process: unlike a clone of the owner's,
/// it does not keep the runtime running once the owner is dropped.
pub(crate) fn inner_handle(rt: &Runtime) -> Runtime {
    let mut handle = None;
    // `spawn` calls the closure at once, on this thread.
    rt.spawn(|ctx| {
        handle = Some(ctx.runtime().clone());
        async {}
    });
    handle.expect("spawn calls its closure at once")
}

/// Polls until `cond` holds, sleeping a millisecond between checks; panics
/// with `what` after [`TIMEOUT`]. For use on an ordinary thread (not inside
/// a process).
pub(crate) fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + TIMEOUT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(1));
    }
}

/// Polls until `cond` holds, yielding to other processes between checks;
/// panics with `what` after [`TIMEOUT`]. For use inside a process.
pub(crate) async fn wait_until_async(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + TIMEOUT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        rusm_otp::yield_now().await;
    }
}

/// Polls `fut` exactly once under the current task's waker and returns the
/// result, leaving `fut` in place (so the caller decides whether to drop it).
pub(crate) async fn poll_once<F: Future + Unpin>(fut: &mut F) -> Poll<F::Output> {
    std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut *fut).poll(cx))).await
}

/// Polls `fut` once under a waker that is not the current task's (a no-op
/// waker), the way a combinator that gives children their own wakers would.
pub(crate) fn poll_once_foreign<F: Future + Unpin>(fut: &mut F) -> Poll<F::Output> {
    let mut cx = Context::from_waker(Waker::noop());
    Pin::new(fut).poll(&mut cx)
}

/// A value that counts its drops.
#[derive(Debug)]
pub(crate) struct DropCounter(pub(crate) Arc<AtomicUsize>);

impl Drop for DropCounter {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// The number of this process's threads whose name starts with `prefix`
/// (read from `/proc/self/task/*/comm`, which holds at most 15 bytes of it).
pub(crate) fn threads_named(prefix: &str) -> usize {
    let dir = std::fs::read_dir("/proc/self/task").expect("/proc/self/task is readable");
    dir.filter_map(|e| e.ok())
        .filter_map(|e| std::fs::read_to_string(e.path().join("comm")).ok())
        .filter(|comm| comm.trim_end().starts_with(prefix))
        .count()
}

/// Tells a ponger to stop.
#[derive(Debug)]
pub(crate) struct Stop;

/// Spawns a ping-pong pair: the pinger sends `(its pid, 2i)` and expects
/// `2i + 1` back, `rounds` times, then stops the ponger. Both end `Normal`
/// only if every round trip completed with the right value.
/// Returns (pinger, ponger).
pub(crate) fn spawn_ping_pong(rt: &Runtime, rounds: u64) -> (ProcessHandle, ProcessHandle) {
    let pong = rt.spawn(|mut ctx| async move {
        loop {
            let m = ctx.recv().await.message().expect("ponger: a user message");
            match m.downcast::<(Pid, u64)>() {
                Ok((from, n)) => assert!(ctx.runtime().send(from, n + 1), "pinger is alive"),
                Err(m) => {
                    assert!(m.is::<Stop>(), "ponger: unexpected message {m:?}");
                    return;
                }
            }
        }
    });
    let pong_pid = pong.pid();
    let ping = rt.spawn(move |mut ctx| async move {
        let me = ctx.pid();
        for i in 0..rounds {
            assert!(ctx.runtime().send(pong_pid, (me, 2 * i)), "ponger is alive");
            let reply = ctx.recv().await.message().expect("pinger: a user message");
            assert_eq!(reply.downcast::<u64>().ok(), Some(2 * i + 1), "round {i}");
        }
        assert!(ctx.runtime().send(pong_pid, Stop));
    });
    (ping, pong)
}

/// Runs a ping-pong of `rounds` round trips to completion.
pub(crate) async fn ping_pong(rt: &Runtime, rounds: u64) {
    let (ping, pong) = spawn_ping_pong(rt, rounds);
    assert_eq!(ping.join().await, ExitReason::Normal, "pinger");
    assert_eq!(pong.join().await, ExitReason::Normal, "ponger");
}

/// Panics whose message contains this are expected; see
/// [`silence_expected_panics`].
pub(crate) const EXPECTED_PANIC: &str = "[expected panic]";

/// Installs (once per test binary) a panic hook that prints nothing for
/// panics whose message contains [`EXPECTED_PANIC`] and defers to the
/// previous hook for every other panic, so real failures still print.
pub(crate) fn silence_expected_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let payload = info.payload();
            let msg = payload
                .downcast_ref::<&str>()
                .copied()
                .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
                .unwrap_or("");
            if !msg.contains(EXPECTED_PANIC) {
                previous(info);
            }
        }));
    });
}

/// Turns each named `fn name(workers: usize)` into three tests,
/// `name::one_worker`, `name::two_workers` and `name::four_workers`, so a
/// test meets the interleavings of a single worker (no stealing, the next
/// slot always taken), of two, and of more workers than cores.
///
/// ```ignore
/// fn sends_arrive(workers: usize) {
///     let rt = runtime(workers);
///     // ...
/// }
/// on_workers!(sends_arrive);
/// ```
#[allow(unused_macros)] // each test binary uses its own subset
macro_rules! on_workers {
    ($($name:ident),+ $(,)?) => {
        $(
            mod $name {
                #[test]
                fn one_worker() {
                    super::$name(1)
                }
                #[test]
                fn two_workers() {
                    super::$name(2)
                }
                #[test]
                fn four_workers() {
                    super::$name(4)
                }
            }
        )+
    };
}
#[allow(unused_imports)] // each test binary uses its own subset
pub(crate) use on_workers;

/// Races three threads, `rounds` times, on plain threads (not processes):
/// before each round the calling thread runs `before(round)`; then one
/// thread runs `first` after a spin that sweeps across the rounds (so its
/// start lands at every point of the others' span) while two threads run
/// `other`; after each round the calling thread runs `after(round)`.
/// Throughout, a fourth thread runs `probe` in a loop to widen the race
/// windows (for instance by taking a lock the racers need).
pub(crate) fn race_rounds(
    rounds: usize,
    first: impl Fn() + Send + Sync + 'static,
    other: impl Fn() + Send + Sync + 'static,
    probe: impl Fn() + Send + 'static,
    mut before: impl FnMut(usize),
    mut after: impl FnMut(usize),
) {
    use std::sync::Barrier;
    let start = Arc::new(Barrier::new(4));
    let end = Arc::new(Barrier::new(4));
    let first = Arc::new(first);
    let other = Arc::new(other);
    let racers: Vec<_> = (0..3)
        .map(|i| {
            let (start, end) = (start.clone(), end.clone());
            let (first, other) = (first.clone(), other.clone());
            thread::spawn(move || {
                for round in 0..rounds {
                    start.wait();
                    if i == 0 {
                        for _ in 0..round % 256 {
                            std::hint::spin_loop();
                        }
                        first();
                    } else {
                        other();
                    }
                    end.wait();
                }
            })
        })
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let prober = {
        let stop = stop.clone();
        thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                probe();
            }
        })
    };
    for round in 0..rounds {
        before(round);
        start.wait();
        end.wait();
        after(round);
    }
    stop.store(true, Ordering::Relaxed);
    for t in racers {
        t.join().unwrap();
    }
    prober.join().unwrap();
}

/// A process that churns: rounds of short-lived children spawned from
/// inside the runtime (so their ends and the next spawns meet on the
/// workers, where ended tasks' blocks are kept for reuse), each round
/// waited for. The children's futures are padded to a size of their own, so
/// that the blocks kept are all of this test's making.
pub(crate) fn churn(rt: &Runtime, rounds: usize, per_round: usize) {
    rt.block_on(async {
        let driver = rt.spawn(move |mut ctx| async move {
            let me = ctx.pid();
            for _ in 0..rounds {
                for _ in 0..per_round {
                    let pad = [7u8; 200];
                    ctx.runtime().spawn(move |c| async move {
                        std::hint::black_box(&pad);
                        c.runtime().send(me, ());
                    });
                }
                for _ in 0..per_round {
                    ctx.recv().await;
                }
            }
        });
        driver.join().await;
    });
}
