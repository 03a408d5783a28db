//! The blocking pool behind [`Runtime::spawn_blocking`]: threads apart from
//! the workers for calls that block (file I/O, CPU-heavy work), as the
//! BEAM's dirty schedulers are apart from its schedulers.
//!
//! # The pool
//!
//! One mutex guards the queue of jobs and the thread counts; one condvar
//! wakes idle threads. A job is queued, then an idle thread is woken, or a
//! new thread started while fewer than the bound run, or (all busy, at the
//! bound) the job waits its turn. A thread idle for [`KEEP_ALIVE`] exits, so
//! a burst leaves no threads behind. Every state change is made under the
//! mutex, and an idle thread re-checks the queue under it before waiting on
//! the condvar, so no job is missed between "queue empty" and "wait".
//!
//! # A job and its future
//!
//! A job and the [`Blocking`] future awaiting it share one `Slot` (see `slot`: a
//! mutex around the outcome, the waker and whether the future is gone):
//!
//! * the job runs the closure under `catch_unwind`, stores the outcome and
//!   wakes the waker it finds; a panic is stored as the payload, and the
//!   pool thread goes on to its next job;
//! * polling the future takes the outcome, or leaves its waker: the
//!   outcome is written and the waker read under the same lock, so a
//!   completion between a poll's check and its waker store cannot be
//!   missed. A panicking closure re-raises its panic in the awaiting code
//!   (`resume_unwind`): a process awaiting it crashes (`Crashed`, with the
//!   panic's message in its crash report), a `block_on` caller panics;
//! * dropping the future marks the slot abandoned: a job that has not
//!   started is skipped, and the outcome of one that has is dropped by the
//!   pool thread under [`guard`](crate::guard). A panic nobody awaits any
//!   more (or a panicking destructor of an abandoned result) is counted in
//!   [`Metrics::unowned_panics`](crate::Metrics::unowned_panics).
//!
//! # Shutdown
//!
//! When the runtime stops (after its processes ended, so their futures are
//! gone and their jobs abandoned), every pool thread not running a job
//! (idle, or between two jobs) is woken and joined. A thread busy in a job
//! cannot be interrupted: it is detached, finishes that job and whatever
//! is still queued, and exits. A thread counts as busy only while it runs
//! user code of a job (the closure, an abandoned result's destructor): it
//! leaves the busy count before it publishes the outcome, so a caller that
//! has seen a job's result and then drops the runtime finds that thread
//! between jobs, and the drop joins it (thread-locals destroyed and all). Later
//! `spawn_blocking` calls still run (on threads that exit as soon as the
//! queue is empty), so nothing awaiting a job hangs.

use super::slot::Slot;
use parking_lot::{Condvar, Mutex};
use std::any::Any;
use std::cell::Cell;
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// How long a pool thread waits for a job before it exits.
pub(crate) const KEEP_ALIVE: Duration = Duration::from_secs(10);

/// A queued closure, its result type erased.
type Job = Box<dyn FnOnce() + Send + 'static>;

crate::loom::thread_local! {
    /// Set while this pool thread counts in `State::busy`: from taking a
    /// job until the job, before it publishes the outcome, leaves the count
    /// (see the module docs, "Shutdown"), or else until the job returns.
    static BUSY: Cell<bool> = const { Cell::new(false) };
    /// Set while this pool thread runs a job but is out of the busy count
    /// (publishing the outcome): a stop made here must not wait for itself.
    static PUBLISHING: Cell<bool> = const { Cell::new(false) };
}

/// The blocking pool of one runtime.
#[derive(Debug)]
pub(crate) struct Pool {
    /// Shared with the pool threads, which outlive the runtime only while
    /// they finish a job.
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Jobs, thread counts, join handles.
    state: Mutex<State>,
    /// Wakes an idle thread (a job was queued, or shutdown).
    work: Condvar,
    /// Signalled at shutdown when a thread exits or starts a job.
    exited: Condvar,
    /// At most this many pool threads at once.
    max_threads: usize,
    /// Thread name prefix (`<prefix>-<n>`).
    name: String,
    /// Whether the runtime keeps panics off stderr (see `report`).
    quiet_panics: bool,
    /// Panics of jobs whose future was gone, and panicking destructors of
    /// abandoned results.
    unowned_panics: AtomicU64,
}

struct State {
    queue: VecDeque<Job>,
    /// Threads alive.
    threads: usize,
    /// Threads waiting for a job.
    idle: usize,
    /// Threads running a job.
    busy: usize,
    /// Jobs handed to idle threads by a notify, not yet taken: so that two
    /// quick spawns do not both count on the same idle thread.
    notified: usize,
    /// Set when the runtime stops.
    shutdown: bool,
    /// Numbers the threads, for their names and `handles`.
    next_id: usize,
    /// Join handles of the live threads, by number. A thread exiting on
    /// its own (idle too long) drops its handle, detaching itself; one
    /// leaving at shutdown moves it to `leaving`, for the stop to join.
    handles: HashMap<usize, JoinHandle<()>>,
    /// See `handles`.
    leaving: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("queued", &self.queue.len())
            .field("threads", &self.threads)
            .field("idle", &self.idle)
            .finish()
    }
}

impl Pool {
    /// A pool of at most `max_threads` threads (at least 1) named
    /// `<name>-<n>`; none is started before the first job.
    pub(crate) fn new(max_threads: usize, name: String, quiet_panics: bool) -> Pool {
        Pool {
            inner: Arc::new(Inner {
                state: Mutex::new(State {
                    queue: VecDeque::new(),
                    threads: 0,
                    idle: 0,
                    busy: 0,
                    notified: 0,
                    shutdown: false,
                    next_id: 0,
                    handles: HashMap::new(),
                    leaving: Vec::new(),
                }),
                work: Condvar::new(),
                exited: Condvar::new(),
                max_threads: max_threads.max(1),
                name,
                quiet_panics,
                unowned_panics: AtomicU64::new(0),
            }),
        }
    }

    /// Panics no one awaited (see the module docs).
    pub(crate) fn unowned_panics(&self) -> u64 {
        self.inner.unowned_panics.load(Ordering::Relaxed)
    }

    /// Pool threads alive now.
    pub(crate) fn threads(&self) -> usize {
        self.inner.state.lock().threads
    }

    /// Queues `f` and returns the future of its result.
    pub(crate) fn spawn<F, T>(&self, f: F) -> Blocking<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let slot = Arc::new(Slot::new());
        let job_slot = slot.clone();
        let inner = self.inner.clone();
        let job: Job = Box::new(move || {
            if job_slot.is_abandoned() {
                return;
            }
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
            // Idle before the outcome is seen: an awaiter that drops the
            // runtime next finds this thread joinable, not detached.
            inner.leave_busy();
            if let Err(outcome) = job_slot.complete(outcome) {
                // The future is gone: its owner will never see this. Its
                // destructor is user code (it may even drop the runtime),
                // so it runs as a job, counted busy.
                inner.enter_busy();
                let panicked = match outcome {
                    Ok(v) => !crate::guard::drop_caught(v),
                    Err(payload) => {
                        crate::guard::drop_payload(payload);
                        true
                    }
                };
                if panicked {
                    inner.unowned_panics.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        self.inner.submit(job);
        Blocking { slot }
    }

    /// Wakes the threads not in a job and joins them; busy ones are
    /// detached (see the module docs).
    pub(crate) fn shutdown(&self) {
        let mut st = self.inner.state.lock();
        st.shutdown = true;
        self.inner.work.notify_all();
        // Threads not in a job (idle, or between jobs) leave at once: wait
        // for them, not for the ones running a job. A job publishing its
        // outcome is out of the busy count, and may drop the runtime (a
        // waker's wake, the last handle): then it is this thread, which
        // leaves only after this returns.
        let me = thread::current().id();
        let mine = PUBLISHING.with(Cell::get) && st.handles.values().any(|h| h.thread().id() == me);
        while st.threads > st.busy + usize::from(mine) {
            self.inner.exited.wait(&mut st);
        }
        let leaving = std::mem::take(&mut st.leaving);
        // Busy threads are detached: they end after their job.
        st.handles.clear();
        drop(st);
        for h in leaving {
            // The runtime may be dropped by a job (holding its last
            // handle): that thread is busy, never in `leaving`, but make
            // sure a thread never joins itself.
            if h.thread().id() != me {
                let _ = h.join();
            }
        }
    }
}

impl Inner {
    /// Counts this thread out of `busy`; a stop waiting for the threads
    /// not in a job now waits for this one too.
    fn leave_busy(&self) {
        if BUSY.with(|b| b.replace(false)) {
            PUBLISHING.with(|p| p.set(true));
            let mut st = self.state.lock();
            st.busy -= 1;
            if st.shutdown {
                self.exited.notify_all();
            }
        }
    }

    /// Counts this thread back into `busy` (see `leave_busy`).
    fn enter_busy(&self) {
        if !BUSY.with(|b| b.replace(true)) {
            PUBLISHING.with(|p| p.set(false));
            let mut st = self.state.lock();
            st.busy += 1;
            if st.shutdown {
                // The stop waits for the threads not in a job.
                self.exited.notify_all();
            }
        }
    }

    fn submit(self: &Arc<Self>, job: Job) {
        let mut st = self.state.lock();
        st.queue.push_back(job);
        if st.idle > st.notified {
            st.notified += 1;
            self.work.notify_one();
            return;
        }
        if st.threads >= self.max_threads {
            // Every thread is busy: the job waits for the first to finish.
            return;
        }
        let id = st.next_id;
        st.next_id += 1;
        st.threads += 1;
        let inner = self.clone();
        let spawned = thread::Builder::new()
            .name(format!("{}-{id}", self.name))
            .spawn(move || inner.thread_main(id));
        match spawned {
            Ok(h) => {
                st.handles.insert(id, h);
            }
            Err(e) => {
                st.threads -= 1;
                if st.threads == 0 {
                    // No thread will ever take the job.
                    st.queue.pop_back();
                    drop(st);
                    panic!("failed to start a blocking thread: {e}");
                }
            }
        }
    }

    fn thread_main(self: Arc<Self>, id: usize) {
        if self.quiet_panics {
            crate::report::quiet_this_thread();
        }
        let mut st = self.state.lock();
        loop {
            if let Some(job) = st.queue.pop_front() {
                st.busy += 1;
                BUSY.with(|b| b.set(true));
                if st.shutdown {
                    // The stop waits for the threads not in a job.
                    self.exited.notify_all();
                }
                drop(st);
                // Jobs catch their own closure's panic; this catches what
                // is left (an outcome's destructor, a waker's wake).
                if crate::guard::catch(job).is_none() {
                    self.unowned_panics.fetch_add(1, Ordering::Relaxed);
                }
                st = self.state.lock();
                PUBLISHING.with(|p| p.set(false));
                if BUSY.with(|b| b.replace(false)) {
                    st.busy -= 1;
                }
                continue;
            }
            if st.shutdown {
                break;
            }
            st.idle += 1;
            let timed_out = self.work.wait_for(&mut st, KEEP_ALIVE).timed_out();
            st.idle -= 1;
            if st.notified > 0 {
                st.notified -= 1;
            }
            if timed_out && st.queue.is_empty() {
                break;
            }
        }
        st.threads -= 1;
        if let Some(h) = st.handles.remove(&id) {
            if st.shutdown {
                st.leaving.push(h);
            }
        }
        if st.shutdown {
            self.exited.notify_all();
        }
    }
}

/// The result of [`Runtime::spawn_blocking`](crate::Runtime::spawn_blocking):
/// resolves to the closure's return value. If the closure panicked, awaiting
/// this re-raises the panic, so a process awaiting it crashes (`Crashed`).
/// Dropping it before the closure started means the closure never runs.
#[must_use = "the closure's result is only seen by awaiting this"]
pub struct Blocking<T> {
    slot: Arc<Slot<thread::Result<T>>>,
}

impl<T> std::fmt::Debug for Blocking<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Blocking").finish_non_exhaustive()
    }
}

impl<T> Future for Blocking<T> {
    type Output = T;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        match self.slot.poll(cx.waker()) {
            Some(Ok(v)) => Poll::Ready(v),
            Some(Err(payload)) => resume(payload),
            None => Poll::Pending,
        }
    }
}

/// Re-raises a job's panic in the awaiting code.
fn resume(payload: Box<dyn Any + Send>) -> ! {
    std::panic::resume_unwind(payload)
}

impl<T> Drop for Blocking<T> {
    fn drop(&mut self) {
        let (outcome, waker) = self.slot.abandon();
        // A result completed but never awaited: dropped here, by its owner,
        // so a panicking destructor unwinds into the code dropping us.
        drop(waker);
        match outcome {
            Some(Err(payload)) => crate::guard::drop_payload(payload),
            other => drop(other),
        }
    }
}
