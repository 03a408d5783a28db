//! The process task: one heap allocation holding the header (state word,
//! pid, mailbox, exit bookkeeping) and the future.
//!
//! A `Task<F>` is shared as [`TaskRef`] (`Arc<dyn Runnable>`): wakers, the
//! process's own [`Context`](super::Context) and every
//! [`ProcessHandle`](super::ProcessHandle) hold one, and the process table
//! holds one as a thin pointer. Run queues hold [`Notified`] entries, which
//! own no reference (see its docs for why the process outlives them), so
//! waking and running a process touch no reference count. The future is
//! touched only by the thread holding `RUNNING` in the state word (see
//! [`super::state`]); it is dropped in place exactly once, by
//! [`Task::finish`], which also breaks the reference cycle future → Context →
//! task.
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
use crate::mailbox::Received;
use crate::mailbox::queue::{Queue, Wake};
use crate::runtime::Runtime;
use crate::scheduler::worker::Placement;
use crate::signal::SmallSet;
use std::cell::UnsafeCell;
use std::future::Future;
use std::mem::ManuallyDrop;
use std::panic::{self, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::task::{Poll, Waker};

/// A process behind a type-erased reference.
pub(crate) trait Runnable: Send + Sync + 'static {
    /// The type-independent part of the process.
    fn header(&self) -> &Header;
    /// Drops the future from outside a worker (runtime teardown), if no
    /// worker runs it; a running one is killed instead.
    fn shut_down(self: Arc<Self>);
}

/// A shared reference to a process.
pub(crate) type TaskRef = Arc<dyn Runnable>;

/// Rarely used per-process data, allocated on first use.
#[derive(Default)]
pub(crate) struct Aux {
    /// The waker of a `join` waiting for the process to end.
    pub(crate) join_waker: Option<Waker>,
    /// A receive parked under a waker that is not the process's own.
    pub(crate) foreign_waker: Option<Waker>,
    /// The panic message, when the body panicked.
    pub(crate) panic: Option<String>,
    /// Processes linked to this one (symmetric; at most one entry per pair).
    pub(crate) links: SmallSet<Pid>,
    /// Monitors placed on this process.
    pub(crate) monitors: SmallSet<crate::MonitorRef>,
    /// Monitors this process placed on others.
    pub(crate) monitoring: SmallSet<crate::MonitorRef>,
    /// Whether exit signals arrive as `Received::Exit` messages.
    pub(crate) trap_exit: bool,
    /// Registered names.
    pub(crate) names: Vec<String>,
    /// Tags (group memberships).
    pub(crate) tags: Vec<String>,
    /// A free-form label, for observability.
    pub(crate) label: Option<String>,
    /// Calls waiting on this process (see `crate::call`).
    pub(crate) calls: crate::call::Watchers,
    /// The `send_after` timers aimed at this process, cancelled with it
    /// (see `time::owned`).
    pub(crate) timers: crate::time::owned::Timers,
}

/// Type-specific operations reachable from a thin pointer to a header.
pub(crate) struct TaskFns {
    /// Takes a new strong reference to the process.
    revive: unsafe fn(*const Header) -> TaskRef,
    /// Gives up one strong reference (one made by `Arc::into_raw`).
    release: unsafe fn(*const Header),
    /// Runs the process once off a run queue (see [`Notified`]).
    run: unsafe fn(*const Header),
}

/// # Safety
/// As for [`Notified::run`].
unsafe fn run<F>(p: *const Header)
where
    F: Future<Output = ()> + Send + 'static,
{
    // SAFETY: `p` is the data pointer of a live `Arc<Task<F>>` (`repr(C)`,
    // header first); the `ManuallyDrop` borrows it without owning a count.
    let task = ManuallyDrop::new(unsafe { Arc::from_raw(p.cast::<Task<F>>()) });
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
pub(crate) struct Notified(std::ptr::NonNull<Header>);

// SAFETY: a thin pointer to a `Send + Sync` process, alive as argued above.
unsafe impl Send for Notified {}

impl std::fmt::Debug for Notified {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Notified").field(&self.header().pid).finish()
    }
}

impl Notified {
    /// An entry for the process of `h`. The caller has just set `NOTIFIED`
    /// from clear (the state word's wake protocol).
    pub(crate) fn of(h: &Header) -> Notified {
        Notified(std::ptr::NonNull::from(h))
    }

    fn header(&self) -> &Header {
        // SAFETY: the process outlives its entry (type docs).
        unsafe { self.0.as_ref() }
    }

    /// The process this entry runs.
    pub(crate) fn pid(&self) -> crate::process::Pid {
        self.header().pid
    }

    /// The entry as a pointer, to keep in an atomic slot (the next slot).
    pub(crate) fn into_raw(self) -> std::ptr::NonNull<Header> {
        self.0
    }

    /// # Safety
    /// `p` came from [`into_raw`](Self::into_raw) and is turned back into
    /// an entry once.
    pub(crate) unsafe fn from_raw(p: std::ptr::NonNull<Header>) -> Notified {
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
unsafe fn revive<F>(p: *const Header) -> TaskRef
where
    F: Future<Output = ()> + Send + 'static,
{
    let t = p.cast::<Task<F>>();
    // SAFETY: `Task<F>` is `repr(C)` with the header first, so `t` is the
    // `Arc`'s data pointer; the caller guarantees a strong count of one or more.
    unsafe {
        Arc::increment_strong_count(t);
        Arc::from_raw(t)
    }
}

/// # Safety
/// `p` carries a strong reference made by `Arc::into_raw`, released once.
unsafe fn release<F>(p: *const Header) {
    // SAFETY: as for `revive`; the caller owns the reference given up here.
    // The last reference keeps its block for the next spawn on this worker.
    super::recycle::release(unsafe { Arc::from_raw(p.cast::<Task<F>>()) });
}

/// A borrowed process: a thin pointer to its header, as the process table
/// stores it.
pub(crate) struct TaskPtr(std::ptr::NonNull<Header>);

impl TaskPtr {
    /// # Safety
    /// `p` points at the header of a live process in an `Arc`, and stays
    /// valid as long as the `TaskPtr` is used.
    pub(crate) unsafe fn from_raw(p: *const Header) -> TaskPtr {
        // SAFETY: the caller guarantees a valid (so non-null) pointer.
        TaskPtr(unsafe { std::ptr::NonNull::new_unchecked(p.cast_mut()) })
    }

    pub(crate) fn header(&self) -> &Header {
        // SAFETY: valid for as long as `self` (constructor contract).
        unsafe { self.0.as_ref() }
    }

    /// A new strong reference.
    pub(crate) fn to_ref(&self) -> TaskRef {
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

/// The type-independent part of a process.
pub(crate) struct Header {
    /// Type-specific operations for thin pointers.
    fns: &'static TaskFns,
    /// The state word.
    pub(crate) state: State,
    /// The process's pid.
    pub(crate) pid: Pid,
    /// The mailbox.
    pub(crate) mailbox: Queue<Received>,
    /// The runtime (a handle that does not keep it running).
    pub(crate) rt: Runtime,
    /// Rarely used data.
    pub(crate) aux: Mutex<Option<Box<Aux>>>,
    /// The monitor its spawner placed on it before it ran (0: none), kept
    /// here rather than in the aux data so that a supervised child needs
    /// none (see `crate::signal::spawn`).
    pub(crate) spawn_monitor: AtomicU64,
}

impl std::fmt::Debug for Header {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Process")
            .field("pid", &self.pid)
            .field("state", &self.state.load())
            .finish()
    }
}

impl Header {
    /// A new strong reference to the process this header belongs to.
    pub(crate) fn to_ref(&self) -> TaskRef {
        // SAFETY: every header lives inside an `Arc<Task<F>>` whose strong
        // count is at least one while anyone can borrow the header.
        unsafe { (self.fns.revive)(self) }
    }

    /// Runs `f` on the aux data, allocating it if needed.
    pub(crate) fn with_aux<R>(&self, f: impl FnOnce(&mut Aux) -> R) -> R {
        let mut aux = self.aux.lock();
        f(aux.get_or_insert_with(Default::default))
    }

    /// Asks the process to exit with `reason` (the first request wins);
    /// true when the caller must schedule it.
    #[must_use]
    pub(crate) fn request_exit(&self, reason: ExitReason) -> bool {
        self.state.kill_with(reason.to_u8())
    }

    fn kill_reason(&self) -> Option<ExitReason> {
        ExitReason::from_u8(self.state.kill_reason())
    }

    /// The reason the process ended with, once teardown is complete.
    pub(crate) fn exit_reason(&self) -> Option<ExitReason> {
        ExitReason::from_u8(self.state.exit())
    }

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
                if self.state.wake() {
                    self.rt.shared.scheduler.schedule(Notified::of(self));
                }
            }
            Ok(Wake::Foreign) => {
                // The waker is user code (whatever polls a moved-out
                // `Context`): it runs outside the aux lock, so it may itself
                // send to this process, and under the guard, so a panic in
                // it stays on the sender's side of the fence, counted.
                let waker = self
                    .aux
                    .lock()
                    .as_ref()
                    .and_then(|a| a.foreign_waker.clone());
                if let Some(w) = waker {
                    if crate::guard::catch(move || w.wake()).is_none() {
                        self.rt.shared.note_unowned_panic();
                    }
                }
            }
            Err(item) => return Err(item),
        }
        Ok(())
    }

    /// Wakes the process with an exit request.
    pub(crate) fn exit(&self, reason: ExitReason) {
        if self.request_exit(reason) {
            self.rt.shared.scheduler.schedule(Notified::of(self));
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
pub(crate) struct Task<F> {
    /// The type-independent part.
    header: Header,
    /// The future; guarded by `RUNNING` in the state word.
    stage: UnsafeCell<Stage<F>>,
}

// SAFETY: the future (`F: Send`) is only touched by the thread that holds
// RUNNING in the state word, which hands it over with Acquire/Release.
unsafe impl<F: Send> Sync for Task<F> {}

impl<F> Task<F>
where
    F: Future<Output = ()> + Send + 'static,
{
    const FNS: TaskFns = TaskFns {
        revive: revive::<F>,
        release: release::<F>,
        run: run::<F>,
    };

    pub(crate) fn new(pid: Pid, rt: Runtime) -> Task<F> {
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
            StartPoll::Poll => h.rt.shared.scheduler.spawn(Notified::of(h)),
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
        let _running = super::current::enter(h);
        match h.state.start_poll() {
            StartPoll::Complete => {}
            StartPoll::Kill => self.finish(h.kill_reason().unwrap_or(ExitReason::Killed)),
            StartPoll::Poll => match self.poll_future() {
                Ok(Poll::Pending) => match h.state.end_poll() {
                    EndPoll::Idle => {}
                    EndPoll::Reschedule => {
                        let sched = &h.rt.shared.scheduler;
                        let me = Notified::of(h);
                        if let Err(me) =
                            crate::scheduler::worker::schedule_local(sched, me, Placement::Yield)
                        {
                            sched.schedule(me);
                        }
                    }
                    EndPoll::Kill => self.finish(h.kill_reason().unwrap_or(ExitReason::Killed)),
                },
                // A process that asked for its own exit and then returned
                // ends with the reason it asked for.
                Ok(Poll::Ready(())) => self.finish(h.kill_reason().unwrap_or(ExitReason::Normal)),
                Err(payload) => {
                    let msg = panic_message(&*payload);
                    // The payload is user data: its destructor may panic too.
                    crate::guard::drop_payload(payload);
                    crate::report::crashed(
                        h.pid,
                        || h.with_aux(|a| a.label.clone()),
                        ExitReason::Crashed,
                        &msg,
                    );
                    h.with_aux(|a| a.panic = Some(msg));
                    h.rt.shared.note_panic();
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
                let msg = panic_message(&*payload);
                crate::guard::drop_payload(payload);
                if reason != ExitReason::Crashed {
                    let h = &self.header;
                    let label = || h.with_aux(|a| a.label.clone());
                    crate::report::crashed(h.pid, label, ExitReason::Crashed, &msg);
                    self.header.with_aux(|a| a.panic = Some(msg));
                    self.header.rt.shared.note_panic();
                    reason = ExitReason::Crashed;
                }
            }
        }
        *stage = Stage::Done;
        let h = &self.header;
        // A queued message whose destructor panics crashes this process.
        let reason = crate::mailbox::close_at_teardown(h, reason);
        // Our own reference: `self` may be a queue entry's borrow, and the
        // table's reference goes in `process_exited`.
        let me: TaskRef = self.clone();
        h.rt.shared.process_exited(&me, reason);
        h.state.complete(reason.to_u8());
        let waker = h.aux.lock().as_mut().and_then(|a| a.join_waker.take());
        if let Some(w) = waker {
            // The joiner's waker may come from any executor: its `wake` is
            // user code, and the process is already over, so nobody owns a
            // panic there.
            if crate::guard::catch(|| w.wake()).is_none() {
                h.rt.shared.note_unowned_panic();
            }
        }
    }
}

impl<F> Runnable for Task<F>
where
    F: Future<Output = ()> + Send + 'static,
{
    fn header(&self) -> &Header {
        &self.header
    }

    fn shut_down(self: Arc<Self>) {
        let _running = super::current::enter(&self.header);
        if self.header.state.claim() {
            self.finish(ExitReason::Killed);
        } else {
            self.header.exit(ExitReason::Killed);
        }
    }
}

impl<F> futures_task::ArcWake for Task<F>
where
    F: Future<Output = ()> + Send + 'static,
{
    fn wake_by_ref(arc_self: &Arc<Self>) {
        if arc_self.header.state.wake() {
            let h = &arc_self.header;
            h.rt.shared.scheduler.schedule(Notified::of(h));
        }
    }
}

impl<F> Drop for Task<F> {
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
            self.header.rt.shared.note_unowned_panic();
        }
    }
}

/// The text of a panic payload, as `ProcessHandle::panic_message` reports it.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "<non-string panic payload>".to_string())
}
