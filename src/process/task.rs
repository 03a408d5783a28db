//! The process task: one heap allocation holding the header (state word,
//! pid, mailbox, exit bookkeeping) and the future.
//!
//! # One raw task, one typed harness
//!
//! A `Task<F, S>` is `repr(C)` with its [`Header`] first, so one thin
//! pointer to the header reaches all of it. The header carries a
//! `&'static` [`Vtable`] of the operations that need the future's type
//! (run once, shut down, free), implemented once per future type by
//! [`Harness`]; everything else (waking, delivering, teardown
//! bookkeeping) works on the header alone. Every handle on a process is
//! that one pointer:
//!
//! * [`TaskRef`]: a counted reference (handles, the `Context`, `finish`'s
//!   own). `Clone` and `Drop` adjust the count kept in the state word (see
//!   [`super::state`]); the last drop frees the task through the vtable;
//! * a [`Waker`](std::task::Waker) of the process: a `RawWaker` over the
//!   same pointer with one vtable per runtime type ([`Header`]'s `WAKER`),
//!   counting as a `TaskRef` does; the poll lends one without counting;
//! * [`OwnedTask`] / [`TaskPtr`]: the table's reference, made only from a
//!   `TaskRef`, and its borrowed view;
//! * [`Notified`]: a run-queue entry, which owns no reference (see its docs
//!   for why the process outlives it), so waking and running a process
//!   touch no count.
//!
//! The future is touched only by the thread holding `RUNNING` in the state
//! word (see [`super::state`]); it is dropped in place exactly once, by
//! [`Harness::finish`], which also breaks the reference cycle future →
//! Context → task. A freed task's block goes back through
//! [`super::recycle`], which may hand it to the next spawn on this worker.
//!
//! # The scheduler seam
//!
//! The task sees the runtime that runs it only through [`Schedule`] (where
//! a woken process goes, the runtime's part of teardown, the counters, the
//! "which process runs here" mark, and the type of what the runtime keeps
//! in aux data). The runtime implements it for its handle, which each
//! [`Header`] holds as `rt: S` (one word: `runtime::RtRef`); every call is
//! static. So this module names neither the runtime nor the scheduler,
//! signals, calls or timers: the runtime instantiates it
//! (`runtime::{Header, TaskRef, Notified, OwnedTask}`).
//!
//! # Fields
//!
//! Which field may be touched by whom, and under which state bit (see
//! [`super::state`] for the bits):
//!
//! | field | who | when |
//! | --- | --- | --- |
//! | `Task::stage` (the future) | the thread holding `RUNNING` | only: the spawner from birth to [`Spawning::launch`], a worker from `start_poll` to `end_poll`/`finish`, the runtime's stop after `claim`; present from the launch until `finish`, which the state word tells (no tag of its own) |
//! | `Header::state` | anyone | atomically, by its transitions |
//! | `Header::vtable`, `pid`, `rt` | anyone | immutable after birth |
//! | the reference count (in `Header::state`) | holders of a reference | `ref_inc` from a held reference, `ref_dec` giving one up; the holder of the last one frees the task |
//! | `Header::mailbox` | producers: anyone; the consumer side: the process's `Context` | the queue's own protocol (`mailbox::queue`); closed by `finish` holding `RUNNING` |
//! | `Header::aux` (the aux data and the spawn monitor) | anyone | under its lock; additions of what teardown releases only with the process found alive under that lock (`Table::lock_alive`); teardown takes the lists after leaving the table; the spawn monitor is placed by the spawner before launch and taken by teardown or `demonitor`, each by one swap of the word under the lock (`signal::spawn`) |
//!
//! A run-queue entry ([`Notified`]) is made only by the transitions that
//! allow one: a wake or exit request that set `NOTIFIED` on an idle process,
//! the launch, and a poll that ends owing a requeue.
//!
//! # Spawning
//!
//! A task is born holding `RUNNING` for its spawner ([`State::new_spawning`]),
//! and is in the process table before the spawn closure runs, so the closure
//! can use the pid. Until [`Spawning::launch`] no one else touches the stage: a
//! wake or kill meanwhile only sets flags, which `launch` reads in the CAS
//! that hands the process to the run queues. A panicking closure ends the
//! process through [`Spawning::abandon`] (a full teardown with no future).
//!
//! # User code outside the body
//!
//! The body's polls run under `catch_unwind`. Every other piece of user code
//! this module runs goes through [`crate::guard`], so that the worst it can
//! do is crash its own process:
//!
//! * a panic payload (its destructor may panic too): `guard::drop_payload`;
//! * the future's destructor in `Harness::finish`: a panic there ends the process
//!   `Crashed` (payload dropped under the guard);
//! * the joiner's waker, woken at the end of `finish`: a panic is counted as
//!   unowned (the process is over);
//! * `Task::drop`, which runs wherever the last reference goes (a deferred
//!   release on a worker, a dropped handle): a never-run future and the
//!   wakers left in the aux data, a panic counted as unowned.
//!
//! Queued messages dropped when the mailbox closes are the mailbox's to
//! guard; timer payloads the timer wheel's.

pub(crate) use super::aux::{Aux, AuxSlot};
use super::state::{COMPLETE, EndPoll, RUNNING, StartPoll, State};
use super::{ExitReason, Pid};
use crate::loom::lock::Mutex;
use crate::mailbox::Received;
use crate::mailbox::queue::{Queue, Wake};
use std::cell::UnsafeCell;
use std::future::Future;
use std::marker::PhantomData;
use std::mem::{ManuallyDrop, MaybeUninit};
use std::panic::{self, AssertUnwindSafe};
use std::pin::Pin;
use std::ptr::NonNull;
use std::task::{Poll, RawWaker, RawWakerVTable, Waker};

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

/// The operations on a process that need its future's type, reached from
/// the thin header pointer; one per future type, implemented by
/// [`Harness`].
pub(crate) struct Vtable<S: Schedule> {
    /// Runs the process once off a run queue (see [`Notified::run`]).
    run: unsafe fn(NonNull<Header<S>>),
    /// Ends the process from outside a worker (see [`TaskRef::shut_down`]).
    shut_down: unsafe fn(NonNull<Header<S>>),
    /// Drops the task and frees its block; the last reference is gone.
    dealloc: unsafe fn(NonNull<Header<S>>),
}

/// A run-queue entry: a process owed one run. It owns no reference count.
///
/// **Why the process outlives its entry.** An entry exists only for a
/// process whose state word has `NOTIFIED` set by the wake that made it, and
/// the only ways a process ends are (a) a worker running this very entry and
/// finishing the process, or (b) the runtime's stop claiming it after every
/// other worker has been joined, when no entry is run any more. Until then
/// the process table holds a reference. When (a) finishes the process, the
/// table's reference is released only after the epoch pin the worker holds
/// across the run, and `finish` keeps a reference of its own.
///
/// **Why an entry is never made twice.** Entries are made only here, by
/// the transitions that allow one ([`Header::wake`], an exit request, the
/// launch, a poll that ends owing a requeue), each of which has just set
/// `NOTIFIED` from clear or cleared `RUNNING` with it set: so a process has
/// at most one entry at a time.
pub(crate) struct Notified<S: Schedule>(NonNull<Header<S>>);

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
        Notified(NonNull::from(h))
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
    pub(crate) fn into_raw(self) -> NonNull<Header<S>> {
        self.0
    }

    /// # Safety
    /// `p` came from [`into_raw`](Self::into_raw) and is turned back into
    /// an entry once.
    pub(crate) unsafe fn from_raw(p: NonNull<Header<S>>) -> Notified<S> {
        Notified(p)
    }

    /// Runs the process once: poll, or drop if killed. Called by a worker,
    /// pinned in the epoch.
    pub(crate) fn run(self) {
        let run = self.header().vtable.run;
        // SAFETY: the process outlives its entry (type docs), and the entry
        // is consumed by this run.
        unsafe { run(self.0) }
    }
}

/// A counted reference to a process: one thin pointer to its header. `Clone`
/// counts one more in the state word; `Drop` gives one up, and the last
/// frees the task through its vtable.
pub(crate) struct TaskRef<S: Schedule>(NonNull<Header<S>>);

// SAFETY: the header is `Sync` (atomics and locks), the future is touched
// only under `RUNNING`, and the count is atomic: a reference may move to and
// be shared with any thread, as an `Arc` of the task could.
unsafe impl<S: Schedule> Send for TaskRef<S> {}
// SAFETY: as above.
unsafe impl<S: Schedule> Sync for TaskRef<S> {}

impl<S: Schedule> TaskRef<S> {
    /// # Safety
    /// `p` points at the header of a live task and carries one counted
    /// reference, which the new `TaskRef` takes over.
    unsafe fn from_raw(p: NonNull<Header<S>>) -> TaskRef<S> {
        TaskRef(p)
    }

    /// The type-independent part of the process.
    pub(crate) fn header(&self) -> &Header<S> {
        // SAFETY: our reference keeps the task allocated.
        unsafe { self.0.as_ref() }
    }

    /// Gives this reference up as the thin pointer the table stores.
    pub(crate) fn into_owned(self) -> OwnedTask<S> {
        OwnedTask(ManuallyDrop::new(self).0)
    }

    /// Drops the future from outside a worker (runtime teardown), if no
    /// worker runs it; a running one is killed instead.
    pub(crate) fn shut_down(self) {
        let shut_down = self.header().vtable.shut_down;
        // SAFETY: our reference keeps the task alive through the call.
        unsafe { shut_down(self.0) }
    }
}

impl<S: Schedule> Clone for TaskRef<S> {
    fn clone(&self) -> TaskRef<S> {
        self.header().state.ref_inc();
        // SAFETY: we hold a reference, and just counted the new one. The
        // pointer is copied rather than made again from the header, so that
        // it keeps the allocation's own provenance.
        unsafe { TaskRef::from_raw(self.0) }
    }
}

impl<S: Schedule> Drop for TaskRef<S> {
    fn drop(&mut self) {
        let h = self.header();
        if h.state.ref_dec() {
            let dealloc = h.vtable.dealloc;
            // SAFETY: that was the last reference: no one else can reach the
            // task (a run-queue entry exists only while the table holds
            // one), and `ref_dec`'s fence made every holder's writes visible.
            unsafe { dealloc(self.0) }
        }
    }
}

/// A borrowed process: a thin pointer to its header, as the process table
/// stores it.
pub(crate) struct TaskPtr<S: Schedule>(NonNull<Header<S>>);

impl<S: Schedule> TaskPtr<S> {
    /// # Safety
    /// `p` points at the header of a live task, and stays valid as long as
    /// the `TaskPtr` is used.
    pub(crate) unsafe fn from_raw(p: *const Header<S>) -> TaskPtr<S> {
        // SAFETY: the caller guarantees a valid (so non-null) pointer.
        TaskPtr(unsafe { NonNull::new_unchecked(p.cast_mut()) })
    }

    pub(crate) fn header(&self) -> &Header<S> {
        // SAFETY: valid for as long as `self` (constructor contract).
        unsafe { self.0.as_ref() }
    }

    /// A new counted reference.
    pub(crate) fn to_ref(&self) -> TaskRef<S> {
        self.header().state.ref_inc();
        // SAFETY: the pointer is valid (constructor contract), so the
        // process is alive, and we just counted the new reference.
        unsafe { TaskRef::from_raw(self.0) }
    }

    /// Gives up the reference this pointer carries.
    ///
    /// # Safety
    /// The pointer came from [`OwnedTask::into_raw`] and is released only
    /// once.
    pub(crate) unsafe fn release(self) {
        // SAFETY: forwarded contract: it carries one counted reference.
        drop(unsafe { TaskRef::from_raw(self.0) });
    }
}

/// A counted reference to a process as a thin pointer to its header: what
/// the process table owns. Made only from a [`TaskRef`], so the table
/// cannot be handed a pointer that carries no reference.
pub(crate) struct OwnedTask<S: Schedule>(NonNull<Header<S>>);

impl<S: Schedule> OwnedTask<S> {
    /// The pointer, carrying the reference (released by
    /// [`TaskPtr::release`]).
    pub(crate) fn into_raw(self) -> *mut Header<S> {
        self.0.as_ptr()
    }
}

/// The type-independent part of a process.
pub(crate) struct Header<S: Schedule> {
    /// The state word, which also counts the references.
    pub(crate) state: State,
    /// The operations that need the future's type.
    vtable: &'static Vtable<S>,
    /// The process's pid.
    pub(crate) pid: Pid,
    /// The mailbox.
    pub(crate) mailbox: Queue<Received>,
    /// The runtime (a handle that does not keep it running), seen through
    /// [`Schedule`].
    pub(crate) rt: S,
    /// Rarely used data, and the monitor its spawner placed on it before
    /// it ran (see [`super::aux`] and `crate::signal::spawn`).
    pub(crate) aux: Mutex<AuxSlot<S::Held>>,
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
    /// The process's wakers: the header pointer, counted as a [`TaskRef`].
    const WAKER: RawWakerVTable = RawWakerVTable::new(
        Self::waker_clone,
        Self::waker_wake,
        Self::waker_wake_by_ref,
        Self::waker_drop,
    );

    /// A new counted reference to the process this header belongs to.
    pub(crate) fn to_ref(&self) -> TaskRef<S> {
        self.state.ref_inc();
        // SAFETY: every header is the first field of a live task, kept alive
        // by the reference our caller borrows it through, and we just
        // counted the one the new `TaskRef` carries.
        unsafe { TaskRef::from_raw(NonNull::from(self)) }
    }

    /// # Safety
    /// `p` is the data of one of this process's wakers (a header pointer
    /// carrying a reference, or lent by a poll).
    unsafe fn waker_clone(p: *const ()) -> RawWaker {
        // SAFETY: the waker being cloned keeps the process alive.
        let h = unsafe { &*p.cast::<Header<S>>() };
        h.state.ref_inc();
        RawWaker::new(p, &Self::WAKER)
    }

    /// # Safety
    /// As for `waker_clone`; the waker's reference is given up.
    unsafe fn waker_wake(p: *const ()) {
        // SAFETY: forwarded contract; the reference is still held.
        unsafe { Self::waker_wake_by_ref(p) };
        // SAFETY: forwarded contract: this consumes the waker's reference.
        unsafe { Self::waker_drop(p) };
    }

    /// # Safety
    /// As for `waker_clone`.
    unsafe fn waker_wake_by_ref(p: *const ()) {
        // SAFETY: the waker keeps the process alive.
        let h = unsafe { &*p.cast::<Header<S>>() };
        if let Some(me) = h.wake() {
            h.rt.schedule(me);
        }
    }

    /// # Safety
    /// As for `waker_clone`, for a waker that carries a reference.
    unsafe fn waker_drop(p: *const ()) {
        // SAFETY: a header pointer carrying one reference (contract).
        drop(unsafe { TaskRef::<S>::from_raw(NonNull::new_unchecked(p.cast_mut().cast())) });
    }

    /// Runs `f` with the process's waker, lent: it holds no reference of
    /// its own (clones do), so it must not outlive the borrow of `self`.
    fn with_waker<R>(&self, f: impl FnOnce(&Waker) -> R) -> R {
        let raw = RawWaker::new(std::ptr::from_ref(self).cast(), &Self::WAKER);
        // SAFETY: the vtable's functions keep `RawWakerVTable`'s contract for
        // a header pointer; `ManuallyDrop` never runs `waker_drop`, so the
        // lent waker gives up no reference, and it lives only in this call,
        // during which our caller's borrow keeps the process alive.
        let waker = ManuallyDrop::new(unsafe { Waker::from_raw(raw) });
        f(&waker)
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

/// One process: header and future in a single allocation. `repr(C)` keeps
/// the header at offset 0, so a header pointer is also a task pointer.
#[repr(C)]
pub(crate) struct Task<F, S: Schedule> {
    /// The type-independent part.
    header: Header<S>,
    /// The future; guarded by `RUNNING` in the state word. No tag of its
    /// own says whether it is there (a word per process): the state word
    /// does. It is stored by [`Spawning::launch`], before the state word
    /// lets anyone but the spawner hold `RUNNING`, and dropped in place by
    /// [`Harness::finish`], before `COMPLETE`; so it is alive exactly when
    /// the process has been launched and is not complete (see `Task::drop`
    /// for the one place that must tell from outside).
    stage: UnsafeCell<MaybeUninit<F>>,
}

/// The typed view of a process: the operations that need its future's
/// type, behind [`Vtable`]. Owns no reference: each use is covered by one
/// its caller holds (or, for a run, by the argument of [`Notified`]).
pub(crate) struct Harness<F, S: Schedule>(NonNull<Task<F, S>>);

impl<F, S> Harness<F, S>
where
    F: Future<Output = ()> + Send + 'static,
    S: Schedule,
{
    const VTABLE: Vtable<S> = Vtable {
        run: Self::run,
        shut_down: Self::shut_down,
        dealloc: Self::dealloc,
    };

    /// # Safety
    /// `p` points at the header of a live `Task<F, S>`, kept alive for as
    /// long as the harness is used.
    unsafe fn from_raw(p: NonNull<Header<S>>) -> Harness<F, S> {
        // `repr(C)`, header first: the header's address is the task's.
        Harness(p.cast())
    }

    fn task(&self) -> &Task<F, S> {
        // SAFETY: alive for as long as `self` is used (constructor contract).
        unsafe { self.0.as_ref() }
    }

    fn header(&self) -> &Header<S> {
        &self.task().header
    }

    /// `Vtable::run`.
    ///
    /// # Safety
    /// As for [`Notified::run`], whose entry this consumes.
    unsafe fn run(p: NonNull<Header<S>>) {
        // SAFETY: the entry's process is a live `Task<F, S>` (the vtable is
        // its type's) and outlives the run (`Notified`'s docs).
        let this = unsafe { Self::from_raw(p) };
        let h = this.header();
        h.rt.run_as(h.pid, || this.run_marked());
    }

    /// `Vtable::shut_down`.
    ///
    /// # Safety
    /// `p` is the header of a live `Task<F, S>` whose reference the caller
    /// holds across the call.
    unsafe fn shut_down(p: NonNull<Header<S>>) {
        // SAFETY: forwarded contract.
        let this = unsafe { Self::from_raw(p) };
        let h = this.header();
        h.rt.run_as(h.pid, || {
            if h.state.claim() {
                // Claimed: launched, not complete, so the future is there.
                this.finish(ExitReason::Killed, true);
            } else {
                h.exit(ExitReason::Killed);
            }
        });
    }

    /// `Vtable::dealloc`.
    ///
    /// # Safety
    /// `p` is the header of a `Task<F, S>` whose last reference was just
    /// given up: nothing else can reach it.
    unsafe fn dealloc(p: NonNull<Header<S>>) {
        // The pointer we were given may have been made from a `&Header`
        // (a wake, a delivery, a clone reach the process through shared
        // borrows), which grants no write to the header's plain fields; the
        // free is the one such write. So it goes through the allocation's
        // own pointer, exposed when it was made (`Spawning::new`).
        let task = std::ptr::with_exposed_provenance_mut::<Task<F, S>>(p.as_ptr().addr());
        // SAFETY: the task was allocated as a `Box<Task<F, S>>` at this
        // address (`Spawning::new`) and is ours alone now (contract). The
        // block may be kept for the next spawn on this worker.
        super::recycle::release(unsafe { Box::from_raw(task) });
    }

    /// [`run`](Self::run), with the process marked as running.
    fn run_marked(&self) {
        let h = self.header();
        match h.state.start_poll() {
            StartPoll::Complete => {}
            StartPoll::Kill => self.finish(h.kill_reason().unwrap_or(ExitReason::Killed), true),
            StartPoll::Poll => match self.poll_future() {
                Ok(Poll::Pending) => match h.state.end_poll() {
                    EndPoll::Idle => {}
                    // Woken during the poll: the wake left its entry to us.
                    EndPoll::Reschedule => h.rt.yield_now(Notified::of(h)),
                    EndPoll::Kill => {
                        self.finish(h.kill_reason().unwrap_or(ExitReason::Killed), true)
                    }
                },
                // A process that asked for its own exit and then returned
                // ends with the reason it asked for.
                Ok(Poll::Ready(())) => {
                    self.finish(h.kill_reason().unwrap_or(ExitReason::Normal), true)
                }
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
                    self.finish(ExitReason::Crashed, true)
                }
            },
        }
    }

    /// Polls the future once. The caller holds `RUNNING`.
    fn poll_future(&self) -> std::thread::Result<Poll<()>> {
        let task = self.task();
        crate::coop::reset();
        task.header.with_waker(|waker| {
            let mut cx = std::task::Context::from_waker(waker);
            panic::catch_unwind(AssertUnwindSafe(|| {
                // SAFETY: we hold RUNNING, so we have exclusive access to the
                // stage, and a process is polled only once launched and
                // before `finish`, so the future is there (`Task::stage`).
                let fut = unsafe { (*task.stage.get()).assume_init_mut() };
                // SAFETY: the future lives inside the task's block and is
                // only ever dropped in place, never moved.
                unsafe { Pin::new_unchecked(fut) }.poll(&mut cx)
            }))
        })
    }

    /// Ends the process: drops the future (`stored`: there is one, which
    /// only a spawn that failed before its launch lacks), runs the
    /// runtime's teardown, and publishes the exit reason. The caller holds
    /// RUNNING.
    fn finish(&self, reason: ExitReason, stored: bool) {
        let h = self.header();
        let mut reason = reason;
        if stored {
            // SAFETY: we hold RUNNING, so we have exclusive access to the
            // stage, where the caller says a future is.
            let fut: *mut F = unsafe { (*self.task().stage.get()).as_mut_ptr() };
            // A panic in the future's destructor must not take the worker
            // down: it crashes the process, as a panic in its body would.
            // SAFETY: the future is alive and is dropped in place exactly once:
            // `complete` below marks it gone, whatever happens.
            let dropped =
                panic::catch_unwind(AssertUnwindSafe(|| unsafe { std::ptr::drop_in_place(fut) }));
            if let Err(payload) = dropped {
                let msg = crate::report::panic_message(&*payload);
                crate::guard::drop_payload(payload);
                if reason != ExitReason::Crashed {
                    let label = || h.with_aux(|a| a.label.clone());
                    crate::report::crashed(h.pid, label, ExitReason::Crashed, &msg);
                    h.with_aux(|a| a.panic = Some(msg));
                    h.rt.note_panic();
                    reason = ExitReason::Crashed;
                }
            }
        }
        // Our own reference: we may be running a queue entry, which owns
        // none, and the table's reference goes in `release`.
        let me = h.to_ref();
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

/// The spawner's reference to a process it is setting up: typed, so that
/// it alone can store the future ([`launch`](Self::launch)) or end the
/// process without one ([`abandon`](Self::abandon)).
pub(crate) struct Spawning<F, S: Schedule> {
    task: TaskRef<S>,
    _future: PhantomData<fn(F)>,
}

impl<F, S> Spawning<F, S>
where
    F: Future<Output = ()> + Send + 'static,
    S: Schedule,
{
    /// A new process holding `RUNNING` for the caller, with one reference
    /// (this one). Its block may be one a process of the same size left on
    /// this worker.
    pub(crate) fn new(pid: Pid, rt: S) -> Spawning<F, S> {
        let task: Box<Task<F, S>> = super::recycle::boxed(|| Task {
            header: Header {
                state: State::new_spawning(),
                vtable: &Harness::<F, S>::VTABLE,
                pid,
                mailbox: Queue::new(),
                rt,
                aux: Mutex::new(AuxSlot::default()),
            },
            stage: UnsafeCell::new(MaybeUninit::uninit()),
        });
        let raw = Box::into_raw(task);
        // For the free, whatever pointer reaches it (`Harness::dealloc`).
        let _ = raw.expose_provenance();
        // `repr(C)`, header first: the task's address is its header's.
        // SAFETY: `Box::into_raw` never returns null.
        let p = unsafe { NonNull::new_unchecked(raw) }.cast::<Header<S>>();
        Spawning {
            // SAFETY: a live task, born with the one reference handed over.
            task: unsafe { TaskRef::from_raw(p) },
            _future: PhantomData,
        }
    }

    /// The type-independent part of the process.
    pub(crate) fn header(&self) -> &Header<S> {
        self.task.header()
    }

    /// A new counted reference.
    pub(crate) fn to_ref(&self) -> TaskRef<S> {
        self.task.clone()
    }

    fn harness(&self) -> Harness<F, S> {
        // SAFETY: a `Task<F, S>` (`new`), alive while we hold our reference.
        unsafe { Harness::from_raw(self.task.0) }
    }

    /// Stores the future and hands the process to the run queues; ends it
    /// instead if an exit was requested while it was being spawned. A
    /// process spawned on a stopped runtime (`stopped`) ends `Killed`.
    /// Returns the spawner's reference.
    ///
    /// # Safety
    /// The spawner holds `RUNNING` from [`State::new_spawning`] until this
    /// call: [`abandon`](Self::abandon) was not called.
    pub(crate) unsafe fn launch(self, future: F, stopped: bool) -> TaskRef<S> {
        let this = self.harness();
        // SAFETY: the spawner holds RUNNING, so it alone touches the stage.
        unsafe { (*this.task().stage.get()).write(future) };
        let h = this.header();
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
                this.finish(reason, true);
                // Off a worker, nothing else flushes this thread's deferred
                // release of the process.
                crate::loom::epoch::pin().flush();
            }
        }
        self.task
    }

    /// Ends a process whose spawn closure panicked: no future was stored.
    /// The caller is the spawner, which holds `RUNNING`.
    pub(crate) fn abandon(&self) {
        self.harness().finish(ExitReason::Crashed, false);
        crate::loom::epoch::pin().flush();
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
        // With the last reference gone, no one holds `RUNNING` but a
        // spawner that gave up before launching (every other holder keeps a
        // reference while it does): so the future is here exactly when the
        // process was launched (`RUNNING` clear) and never finished.
        if self.header.state.load() & (RUNNING | COMPLETE) == 0 {
            let fut = self.stage.get_mut().as_mut_ptr();
            // SAFETY: the future is alive (above), we own the task, and the
            // task is never touched again.
            clean &= crate::guard::catch(|| unsafe { std::ptr::drop_in_place(fut) }).is_some();
        }
        if let Some(aux) = self.header.aux.get_mut().take() {
            clean &= crate::guard::drop_caught(aux);
        }
        if !clean {
            self.header.rt.note_unowned_panic();
        }
    }
}

#[cfg(test)]
#[path = "task_tests.rs"]
mod tests;
