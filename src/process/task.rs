//! The process task: one heap allocation holding the header (state word,
//! pid, mailbox, exit bookkeeping) and the future.
//!
//! A `Task<F, S>` is shared as [`TaskRef`] (`Arc<dyn Runnable<S>>`): wakers,
//! the process's own [`Context`](super::Context) and every
//! [`ProcessHandle`](super::ProcessHandle) hold one, and the process table
//! holds one as a thin pointer ([`OwnedTask`]: made only from an `Arc`). Run
//! queues hold [`Notified`] entries, which
//! own no reference (see its docs for why the process outlives them), so
//! waking and running a process touch no reference count. The future is
//! touched only by the thread holding `RUNNING` in the state word (see
//! [`super::state`]); it is dropped in place exactly once, by
//! [`Task::finish`], which also breaks the reference cycle future → Context →
//! task.
//!
//! # The scheduler seam
//!
//! The task sees the runtime that runs it only through [`Schedule`] (where
//! a woken process goes, the runtime's part of teardown, the counters, the
//! "which process runs here" mark, and the type of what the runtime keeps
//! in aux data). The runtime implements it for its handle, which each
//! [`Header`] holds as `rt: S`; every call is static. So this module names
//! neither the runtime nor the scheduler, signals, calls or timers: the
//! runtime instantiates it (`runtime::{Header, TaskRef, Notified}`).
//!
//! # Fields
//!
//! Which field may be touched by whom, and under which state bit (see
//! [`super::state`] for the bits):
//!
//! | field | who | when |
//! | --- | --- | --- |
//! | `Task::stage` (the future) | the thread holding `RUNNING` | only: the spawner from birth to [`Task::launch`], a worker from `start_poll` to `end_poll`/`finish`, the runtime's stop after `claim` |
//! | `Header::state` | anyone | atomically, by its transitions |
//! | `Header::fns`, `pid`, `rt` | anyone | immutable after birth |
//! | `Header::mailbox` | producers: anyone; the consumer side: the process's `Context` | the queue's own protocol (`mailbox::queue`); closed by `finish` holding `RUNNING` |
//! | `Header::aux` | anyone | under its lock; additions of what teardown releases only with the process found alive under that lock (`Table::lock_alive`); teardown takes the lists after leaving the table |
//! | `Header::spawn_monitor` | the spawner, before launch (holding `RUNNING`); teardown; `demonitor` | `swap`, see `signal::spawn` |
//!
//! A run-queue entry ([`Notified`]) is made only by the transitions that
//! allow one: a wake or exit request that set `NOTIFIED` on an idle process,
//! the launch, and a poll that ends owing a requeue.
//!
//! # Spawning
//!
//! A task is born holding `RUNNING` for its spawner ([`State::new_spawning`]),
//! and is in the process table before the spawn closure runs, so the closure
//! can use the pid. Until [`Task::launch`] no one else touches the stage: a
//! wake or kill meanwhile only sets flags, which `launch` reads in the CAS
//! that hands the process to the run queues. A panicking closure ends the
//! process through [`Task::abandon`] (a full teardown with no future).
//!
//! # User code outside the body
//!
//! The body's polls run under `catch_unwind`. Every other piece of user code
//! this module runs goes through [`crate::guard`], so that the worst it can
//! do is crash its own process:
//!
//! * a panic payload (its destructor may panic too): `guard::drop_payload`;
//! * the future's destructor in `finish`: a panic there ends the process
//!   `Crashed` (payload dropped under the guard);
//! * the joiner's waker, woken at the end of `finish`: a panic is counted as
//!   unowned (the process is over);
//! * `Task::drop`, which runs wherever the last reference goes (a deferred
//!   release on a worker, a dropped handle): a never-run future and the
//!   wakers left in the aux data, a panic counted as unowned.
//!
//! Queued messages dropped when the mailbox closes are the mailbox's to
//! guard; timer payloads the timer wheel's.

use super::state::{EndPoll, StartPoll, State};
use super::{ExitReason, Pid};
use crate::loom::lock::Mutex;
use crate::loom::sync::atomic::AtomicU64;
use crate::mailbox::Received;
use crate::mailbox::queue::{Queue, Wake};
use std::cell::UnsafeCell;
use std::future::Future;
use std::mem::ManuallyDrop;
use std::panic::{self, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Poll, Waker};

/// What a task needs of the runtime that runs it: the one seam between
/// tasks and the scheduler. The task never names the runtime; the runtime
/// implements this for its handle, which each header holds, and every call
/// is static.
pub(crate) trait Schedule: Send + Sync + Sized + 'static {
    /// Queues a process a wake (or exit request) made runnable.
    fn schedule(&self, task: Notified<Self>);
    /// Queues a process just launched.
    fn spawn(&self, task: Notified<Self>);
    /// Queues a process woken during its own poll again, behind the work
    /// already queued.
    fn yield_now(&self, task: Notified<Self>);
    /// The runtime's part of teardown, after the future is dropped: close
    /// the mailbox, leave the table, release what the process held (names,
    /// links, monitors, timers, calls), count it. Returns the exit reason,
    /// which a panicking message destructor turns into `Crashed`.
    fn release(&self, task: &TaskRef<Self>, reason: ExitReason) -> ExitReason;
    /// Counts a process that ended by panicking.
    fn note_panic(&self);
    /// Counts a panic in user code no process owns any more.
    fn note_unowned_panic(&self);
    /// Runs `f` with `pid` marked as the process this thread runs.
    fn run_as<R>(&self, pid: Pid, f: impl FnOnce() -> R) -> R;
    /// What the runtime keeps for a process in its aux data (links,
    /// monitors, names, ...), released by [`release`](Self::release).
    type Held: Default + Send + 'static;
}

/// A process behind a type-erased reference.
pub(crate) trait Runnable<S: Schedule>: Send + Sync + 'static {
    /// The type-independent part of the process.
    fn header(&self) -> &Header<S>;
    /// Drops the future from outside a worker (runtime teardown), if no
    /// worker runs it; a running one is killed instead.
    fn shut_down(self: Arc<Self>);
}

/// A shared reference to a process.
pub(crate) type TaskRef<S> = Arc<dyn Runnable<S>>;

/// Rarely used per-process data, allocated on first use: the task's own
/// part, and what the runtime keeps for the process ([`Schedule::Held`]),
/// reached through `Deref`.
#[derive(Default)]
pub(crate) struct Aux<E> {
    /// The waker of a `join` waiting for the process to end.
    pub(crate) join_waker: Option<Waker>,
    /// A receive parked under a waker that is not the process's own.
    pub(crate) foreign_waker: Option<Waker>,
    /// The panic message, when the body panicked.
    pub(crate) panic: Option<String>,
    /// Whether exit signals arrive as `Received::Exit` messages.
    pub(crate) trap_exit: bool,
    /// A free-form label, for observability.
    pub(crate) label: Option<String>,
    /// The runtime's part.
    pub(crate) held: E,
}

impl<E> std::ops::Deref for Aux<E> {
    type Target = E;
    fn deref(&self) -> &E {
        &self.held
    }
}

impl<E> std::ops::DerefMut for Aux<E> {
    fn deref_mut(&mut self) -> &mut E {
        &mut self.held
    }
}

/// Type-specific operations reachable from a thin pointer to a header.
pub(crate) struct TaskFns<S: Schedule> {
    /// Takes a new strong reference to the process.
    revive: unsafe fn(*const Header<S>) -> TaskRef<S>,
    /// Gives up one strong reference (one made by `Arc::into_raw`).
    release: unsafe fn(*const Header<S>),
    /// Runs the process once off a run queue (see [`Notified`]).
    run: unsafe fn(*const Header<S>),
}

/// # Safety
/// As for [`Notified::run`].
unsafe fn run<F, S>(p: *const Header<S>)
where
    F: Future<Output = ()> + Send + 'static,
    S: Schedule,
{
    // SAFETY: `p` is the data pointer of a live `Arc<Task<F>>` (`repr(C)`,
    // header first); the `ManuallyDrop` borrows it without owning a count.
    let task = ManuallyDrop::new(unsafe { Arc::from_raw(p.cast::<Task<F, S>>()) });
    task.run_once();
}

/// A run-queue entry: a process owed one run. It owns no reference count.
///
/// **Why the process outlives its entry.** An entry exists only for a
/// process whose state word has `NOTIFIED` set by the wake that made it, and
/// the only ways a process ends are (a) a worker running this very entry and
/// finishing the process, or (b) the runtime's stop claiming it after every
/// other worker has been joined, when no entry is run any more. Until then
/// the process table holds a strong reference. When (a) finishes the
/// process, the table's reference is released only after the epoch pin the
/// worker holds across the run, and `finish` keeps a reference of its own.
///
/// **Why an entry is never made twice.** Entries are made only here, by
/// the transitions that allow one ([`Header::wake`], an exit request, the
/// launch, a poll that ends owing a requeue), each of which has just set
/// `NOTIFIED` from clear or cleared `RUNNING` with it set: so a process has
/// at most one entry at a time.
pub(crate) struct Notified<S: Schedule>(std::ptr::NonNull<Header<S>>);

// SAFETY: a thin pointer to a `Send + Sync` process, alive as argued above.
unsafe impl<S: Schedule> Send for Notified<S> {}

impl<S: Schedule> std::fmt::Debug for Notified<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Notified").field(&self.header().pid).finish()
    }
}

impl<S: Schedule> Notified<S> {
    /// An entry for the process of `h`. Private: only the transitions of
    /// this module that allow an entry make one (type docs).
    fn of(h: &Header<S>) -> Notified<S> {
        Notified(std::ptr::NonNull::from(h))
    }

    fn header(&self) -> &Header<S> {
        // SAFETY: the process outlives its entry (type docs).
        unsafe { self.0.as_ref() }
    }

    /// The process this entry runs.
    pub(crate) fn pid(&self) -> crate::process::Pid {
        self.header().pid
    }

    /// The entry as a pointer, to keep in an atomic slot (the next slot).
    pub(crate) fn into_raw(self) -> std::ptr::NonNull<Header<S>> {
        self.0
    }

    /// # Safety
    /// `p` came from [`into_raw`](Self::into_raw) and is turned back into
    /// an entry once.
    pub(crate) unsafe fn from_raw(p: std::ptr::NonNull<Header<S>>) -> Notified<S> {
        Notified(p)
    }

    /// Runs the process once: poll, or drop if killed. Called by a worker,
    /// pinned in the epoch.
    pub(crate) fn run(self) {
        let h = self.header();
        // SAFETY: the process outlives its entry (type docs), and the entry
        // is consumed by this run.
        unsafe { (h.fns.run)(self.0.as_ptr()) }
    }
}

/// # Safety
/// `p` points at the header of a live `Task<F>` inside an `Arc`.
unsafe fn revive<F, S>(p: *const Header<S>) -> TaskRef<S>
where
    F: Future<Output = ()> + Send + 'static,
    S: Schedule,
{
    let t = p.cast::<Task<F, S>>();
    // SAFETY: `Task<F>` is `repr(C)` with the header first, so `t` is the
    // `Arc`'s data pointer; the caller guarantees a strong count of one or more.
    unsafe {
        Arc::increment_strong_count(t);
        Arc::from_raw(t)
    }
}

/// # Safety
/// `p` carries a strong reference made by `Arc::into_raw`, released once.
unsafe fn release<F, S: Schedule>(p: *const Header<S>) {
    // SAFETY: as for `revive`; the caller owns the reference given up here.
    // The last reference keeps its block for the next spawn on this worker.
    super::recycle::release(unsafe { Arc::from_raw(p.cast::<Task<F, S>>()) });
}

/// A borrowed process: a thin pointer to its header, as the process table
/// stores it.
pub(crate) struct TaskPtr<S: Schedule>(std::ptr::NonNull<Header<S>>);

impl<S: Schedule> TaskPtr<S> {
    /// # Safety
    /// `p` points at the header of a live process in an `Arc`, and stays
    /// valid as long as the `TaskPtr` is used.
    pub(crate) unsafe fn from_raw(p: *const Header<S>) -> TaskPtr<S> {
        // SAFETY: the caller guarantees a valid (so non-null) pointer.
        TaskPtr(unsafe { std::ptr::NonNull::new_unchecked(p.cast_mut()) })
    }

    pub(crate) fn header(&self) -> &Header<S> {
        // SAFETY: valid for as long as `self` (constructor contract).
        unsafe { self.0.as_ref() }
    }

    /// A new strong reference.
    pub(crate) fn to_ref(&self) -> TaskRef<S> {
        self.header().to_ref()
    }

    /// Gives up the strong reference this pointer carries.
    ///
    /// # Safety
    /// The pointer came from `Arc::into_raw` and is released only once.
    pub(crate) unsafe fn release(self) {
        let h = self.header();
        // SAFETY: forwarded contract.
        unsafe { (h.fns.release)(self.0.as_ptr()) }
    }
}

/// A strong reference to a process as a thin pointer to its header: what
/// the process table owns. Made only from an `Arc` of the task, so the
/// table cannot be handed a pointer that carries no reference.
pub(crate) struct OwnedTask<S: Schedule>(std::ptr::NonNull<Header<S>>);

impl<S: Schedule> OwnedTask<S> {
    /// The pointer, carrying the strong reference (released by
    /// [`TaskPtr::release`]).
    pub(crate) fn into_raw(self) -> *mut Header<S> {
        self.0.as_ptr()
    }
}

/// The type-independent part of a process.
pub(crate) struct Header<S: Schedule> {
    /// Type-specific operations for thin pointers.
    fns: &'static TaskFns<S>,
    /// The state word.
    pub(crate) state: State,
    /// The process's pid.
    pub(crate) pid: Pid,
    /// The mailbox.
    pub(crate) mailbox: Queue<Received>,
    /// The runtime (a handle that does not keep it running), seen through
    /// [`Schedule`].
    pub(crate) rt: S,
    /// Rarely used data.
    pub(crate) aux: Mutex<Option<Box<Aux<S::Held>>>>,
    /// The watcher (a pid) of the monitor its spawner placed on it before
    /// it ran (0: none), kept here rather than in the aux data or the
    /// monitor table so that a supervised child needs neither (see
    /// `crate::signal::spawn`).
    pub(crate) spawn_monitor: AtomicU64,
}

impl<S: Schedule> std::fmt::Debug for Header<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Process")
            .field("pid", &self.pid)
            .field("state", &self.state.load())
            .finish()
    }
}

impl<S: Schedule> Header<S> {
    /// A new strong reference to the process this header belongs to.
    pub(crate) fn to_ref(&self) -> TaskRef<S> {
        // SAFETY: every header lives inside an `Arc<Task<F>>` whose strong
        // count is at least one while anyone can borrow the header.
        unsafe { (self.fns.revive)(self) }
    }

    /// Runs `f` on the aux data, allocating it if needed.
    pub(crate) fn with_aux<R>(&self, f: impl FnOnce(&mut Aux<S::Held>) -> R) -> R {
        let mut aux = self.aux.lock();
        f(aux.get_or_insert_with(Default::default))
    }

    /// Runs `f` on the aux data if there is any: reads, and removals
    /// (nothing to remove from a process that never had aux data).
    pub(crate) fn aux_if_any<R>(&self, f: impl FnOnce(&mut Aux<S::Held>) -> R) -> Option<R> {
        self.aux.lock().as_deref_mut().map(f)
    }

    /// Whether the process traps exits.
    pub(crate) fn traps_exit(&self) -> bool {
        self.aux_if_any(|a| a.trap_exit) == Some(true)
    }

    fn kill_reason(&self) -> Option<ExitReason> {
        ExitReason::from_u8(self.state.kill_reason())
    }

    /// The reason the process ended with, once teardown is complete.
    pub(crate) fn exit_reason(&self) -> Option<ExitReason> {
        ExitReason::from_u8(self.state.exit())
    }

    /// Wakes the process: its run-queue entry when this wake is the one
    /// that must queue it (it set `NOTIFIED` on an idle process).
    #[must_use]
    fn wake(&self) -> Option<Notified<S>> {
        self.state.wake().then(|| Notified::of(self))
    }

    /// Asks the process to exit with `reason` (the first request wins): its
    /// run-queue entry when this request must queue it.
    #[must_use]
    fn request_exit(&self, reason: ExitReason) -> Option<Notified<S>> {
        self.state
            .kill_with(reason.to_u8())
            .then(|| Notified::of(self))
    }
}

impl<S: Schedule> Header<S> {
    /// Pushes `item` into the mailbox and wakes the process if its receive
    /// is parked; false when the process is gone (its mailbox is closed).
    pub(crate) fn deliver(&self, item: Received) -> bool {
        self.try_deliver(item).is_ok()
    }

    /// [`deliver`](Self::deliver), giving `item` back when the mailbox is
    /// closed.
    pub(crate) fn try_deliver(&self, item: Received) -> Result<(), Received> {
        match self.mailbox.push(item) {
            Ok(Wake::Nobody) => {}
            Ok(Wake::Process) => {
                if let Some(me) = self.wake() {
                    self.rt.schedule(me);
                }
            }
            Ok(Wake::Foreign) => {
                // The waker is user code (whatever polls a moved-out
                // `Context`): it runs outside the aux lock, so it may itself
                // send to this process, and under the guard, so a panic in
                // it stays on the sender's side of the fence, counted.
                let waker = self.aux_if_any(|a| a.foreign_waker.clone()).flatten();
                if let Some(w) = waker {
                    if crate::guard::catch(move || w.wake()).is_none() {
                        self.rt.note_unowned_panic();
                    }
                }
            }
            Err(item) => return Err(item),
        }
        Ok(())
    }

    /// Wakes the process with an exit request.
    pub(crate) fn exit(&self, reason: ExitReason) {
        if let Some(me) = self.request_exit(reason) {
            self.rt.schedule(me);
        }
    }
}

/// Where the future lives.
enum Stage<F> {
    /// Not yet stored (between allocation and the spawn closure's return).
    Empty,
    /// Alive; dropped in place by [`Task::finish`].
    Running(ManuallyDrop<F>),
    /// Dropped.
    Done,
}

/// One process: header and future in a single allocation. `repr(C)` keeps
/// the header at offset 0, so a header pointer is also a task pointer.
#[repr(C)]
pub(crate) struct Task<F, S: Schedule> {
    /// The type-independent part.
    header: Header<S>,
    /// The future; guarded by `RUNNING` in the state word.
    stage: UnsafeCell<Stage<F>>,
}

// SAFETY: the future (`F: Send`) is only touched by the thread that holds
// RUNNING in the state word, which hands it over with Acquire/Release.
unsafe impl<F: Send, S: Schedule> Sync for Task<F, S> {}

impl<F, S> Task<F, S>
where
    F: Future<Output = ()> + Send + 'static,
    S: Schedule,
{
    const FNS: TaskFns<S> = TaskFns {
        revive: revive::<F, S>,
        release: release::<F, S>,
        run: run::<F, S>,
    };

    pub(crate) fn new(pid: Pid, rt: S) -> Task<F, S> {
        Task {
            header: Header {
                fns: &Self::FNS,
                state: State::new_spawning(),
                pid,
                mailbox: Queue::new(),
                rt,
                aux: Mutex::new(None),
                spawn_monitor: AtomicU64::new(0),
            },
            stage: UnsafeCell::new(Stage::Empty),
        }
    }

    /// Gives up `this` reference as the thin pointer the table stores.
    pub(crate) fn into_owned(this: Arc<Self>) -> OwnedTask<S> {
        // `repr(C)`, header first: the task's address is its header's.
        let p = Arc::into_raw(this).cast::<Header<S>>();
        // SAFETY: `Arc::into_raw` never returns null.
        OwnedTask(unsafe { std::ptr::NonNull::new_unchecked(p.cast_mut()) })
    }

    /// Stores the future and hands the process to the run queues; ends it
    /// instead if an exit was requested while it was being spawned.
    ///
    /// # Safety
    /// Called once, by the spawner, which holds `RUNNING` from
    /// [`State::new_spawning`] until this call.
    /// A process spawned on a stopped runtime (`stopped`) ends `Killed`.
    pub(crate) unsafe fn launch(self: &Arc<Self>, future: F, stopped: bool) {
        // SAFETY: the spawner holds RUNNING, so it alone touches the stage.
        unsafe { *self.stage.get() = Stage::Running(ManuallyDrop::new(future)) };
        let h = &self.header;
        // On a stopped runtime, keep RUNNING and end it here.
        let launched = if stopped {
            StartPoll::Kill
        } else {
            h.state.launch()
        };
        match launched {
            StartPoll::Poll => h.rt.spawn(Notified::of(h)),
            _ => {
                let reason = if stopped {
                    ExitReason::Killed
                } else {
                    h.kill_reason().unwrap_or(ExitReason::Killed)
                };
                self.finish(reason);
                // Off a worker, nothing else flushes this thread's deferred
                // release of the process.
                crate::loom::epoch::pin().flush();
            }
        }
    }

    /// Ends a process whose spawn closure panicked: no future was stored.
    /// The caller is the spawner, which holds `RUNNING`.
    pub(crate) fn abandon(self: &Arc<Self>) {
        self.finish(ExitReason::Crashed);
        crate::loom::epoch::pin().flush();
    }

    /// Runs the process once off a run queue: poll, or drop if killed.
    fn run_once(self: &Arc<Self>) {
        let h = &self.header;
        h.rt.run_as(h.pid, || self.run_marked());
    }

    /// [`run_once`](Self::run_once), with the process marked as running.
    fn run_marked(self: &Arc<Self>) {
        let h = &self.header;
        match h.state.start_poll() {
            StartPoll::Complete => {}
            StartPoll::Kill => self.finish(h.kill_reason().unwrap_or(ExitReason::Killed)),
            StartPoll::Poll => match self.poll_future() {
                Ok(Poll::Pending) => match h.state.end_poll() {
                    EndPoll::Idle => {}
                    // Woken during the poll: the wake left its entry to us.
                    EndPoll::Reschedule => h.rt.yield_now(Notified::of(h)),
                    EndPoll::Kill => self.finish(h.kill_reason().unwrap_or(ExitReason::Killed)),
                },
                // A process that asked for its own exit and then returned
                // ends with the reason it asked for.
                Ok(Poll::Ready(())) => self.finish(h.kill_reason().unwrap_or(ExitReason::Normal)),
                Err(payload) => {
                    let msg = crate::report::panic_message(&*payload);
                    // The payload is user data: its destructor may panic too.
                    crate::guard::drop_payload(payload);
                    crate::report::crashed(
                        h.pid,
                        || h.with_aux(|a| a.label.clone()),
                        ExitReason::Crashed,
                        &msg,
                    );
                    h.with_aux(|a| a.panic = Some(msg));
                    h.rt.note_panic();
                    self.finish(ExitReason::Crashed)
                }
            },
        }
    }

    fn poll_future(self: &Arc<Self>) -> std::thread::Result<Poll<()>> {
        let waker = futures_task::waker_ref(self);
        let mut cx = std::task::Context::from_waker(&waker);
        crate::coop::reset();
        panic::catch_unwind(AssertUnwindSafe(|| {
            // SAFETY: we hold RUNNING, so we have exclusive access to the stage.
            match unsafe { &mut *self.stage.get() } {
                Stage::Running(fut) => {
                    // SAFETY: the future lives inside the `Arc` allocation and
                    // is only ever dropped in place, never moved.
                    unsafe { Pin::new_unchecked(&mut **fut) }.poll(&mut cx)
                }
                _ => Poll::Ready(()),
            }
        }))
    }

    /// Ends the process: drops the future, runs the runtime's teardown, and
    /// publishes the exit reason. The caller holds RUNNING.
    fn finish(self: &Arc<Self>, reason: ExitReason) {
        // SAFETY: we hold RUNNING, so we have exclusive access to the stage.
        let stage = unsafe { &mut *self.stage.get() };
        let mut reason = reason;
        if let Stage::Running(fut) = stage {
            let fut: *mut F = &mut **fut;
            // A panic in the future's destructor must not take the worker
            // down: it crashes the process, as a panic in its body would.
            // SAFETY: the future is alive and is dropped in place exactly once:
            // the stage becomes `Done` right after, whatever happens.
            let dropped =
                panic::catch_unwind(AssertUnwindSafe(|| unsafe { std::ptr::drop_in_place(fut) }));
            if let Err(payload) = dropped {
                let msg = crate::report::panic_message(&*payload);
                crate::guard::drop_payload(payload);
                if reason != ExitReason::Crashed {
                    let h = &self.header;
                    let label = || h.with_aux(|a| a.label.clone());
                    crate::report::crashed(h.pid, label, ExitReason::Crashed, &msg);
                    self.header.with_aux(|a| a.panic = Some(msg));
                    self.header.rt.note_panic();
                    reason = ExitReason::Crashed;
                }
            }
        }
        *stage = Stage::Done;
        let h = &self.header;
        // Our own reference: `self` may be a queue entry's borrow, and the
        // table's reference goes in `release`.
        let me: TaskRef<S> = self.clone();
        let reason = h.rt.release(&me, reason);
        h.state.complete(reason.to_u8());
        let waker = h.aux.lock().as_mut().and_then(|a| a.join_waker.take());
        if let Some(w) = waker {
            // The joiner's waker may come from any executor: its `wake` is
            // user code, and the process is already over, so nobody owns a
            // panic there.
            if crate::guard::catch(|| w.wake()).is_none() {
                h.rt.note_unowned_panic();
            }
        }
    }
}

impl<F, S> Runnable<S> for Task<F, S>
where
    F: Future<Output = ()> + Send + 'static,
    S: Schedule,
{
    fn header(&self) -> &Header<S> {
        &self.header
    }

    fn shut_down(self: Arc<Self>) {
        let h = &self.header;
        h.rt.run_as(h.pid, || {
            if h.state.claim() {
                self.finish(ExitReason::Killed);
            } else {
                h.exit(ExitReason::Killed);
            }
        });
    }
}

impl<F, S> futures_task::ArcWake for Task<F, S>
where
    F: Future<Output = ()> + Send + 'static,
    S: Schedule,
{
    fn wake_by_ref(arc_self: &Arc<Self>) {
        let h = &arc_self.header;
        if let Some(me) = h.wake() {
            h.rt.schedule(me);
        }
    }
}

impl<F, S: Schedule> Drop for Task<F, S> {
    fn drop(&mut self) {
        // The last reference can go on any thread (a worker running a
        // deferred release, a user dropping a handle), so whatever user code
        // is left here runs under the guard: a future that was never run
        // (`finish` drops every other one), and wakers parked in the aux
        // data. The process is over, so a panic is counted, not propagated.
        let mut clean = true;
        if let Stage::Running(fut) = self.stage.get_mut() {
            // SAFETY: we own the task; the future is dropped once, here, and
            // the stage is marked `Done` right after.
            clean &= crate::guard::catch(|| unsafe { ManuallyDrop::drop(fut) }).is_some();
            *self.stage.get_mut() = Stage::Done;
        }
        if let Some(aux) = self.header.aux.get_mut().take() {
            clean &= crate::guard::drop_caught(aux);
        }
        if !clean {
            self.header.rt.note_unowned_panic();
        }
    }
}
