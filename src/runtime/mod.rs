//! The runtime: [`Runtime`] and [`Builder`], the entry point, over one
//! [`Shared`] state per runtime.
//!
//! | file | what |
//! | --- | --- |
//! | `mod.rs` | [`Shared`], the state every handle and worker of one runtime shares, and its operations: teardown bookkeeping, the send path, counters, stop |
//! | `builder.rs` | [`Builder`]: configuration and starting the threads |
//! | `handle.rs` | [`Runtime`], the handle; the owner token whose last drop stops the runtime |
//! | `context.rs` | where this thread is: the runtime it serves and the process it runs |
//! | `metrics.rs` | [`Metrics`], [`ProcessInfo`]: snapshots for operators |
//!
//! A runtime is an `Arc` of [`Shared`] state plus, for the handles its owner
//! holds, a shared *owner token*. Dropping the last owner token stops the
//! workers, joins them, and ends every process still alive (reason
//! `Killed`), dropping its future. Handles reached from inside a process
//! ([`Context::runtime`](crate::Context::runtime)) carry no token: a
//! process's own handle on its runtime does not keep the runtime running,
//! which is what lets dropping the owner's last clone end it even while
//! processes that refer to it are parked.

mod builder;
pub(crate) mod context;
mod handle;
mod metrics;
mod schedule;

pub use builder::Builder;
pub use handle::Runtime;
pub use metrics::{Metrics, ProcessInfo, WorkerMetrics};

pub(crate) use context::{current, enter};

pub(crate) use schedule::RtRef;

/// The task types as this runtime instantiates them: each header holds an
/// [`RtRef`], the task's [`Schedule`](crate::process::task::Schedule).
pub(crate) type Header = crate::process::task::Header<RtRef>;
/// A counted reference to a process of this runtime.
pub(crate) type TaskRef = crate::process::task::TaskRef<RtRef>;
/// A run-queue entry of this runtime.
pub(crate) type Notified = crate::process::task::Notified<RtRef>;
/// A borrowed process of this runtime, as the table stores it.
pub(crate) type TaskPtr = crate::process::task::TaskPtr<RtRef>;
/// The table's reference to a process of this runtime.
pub(crate) type OwnedTask = crate::process::task::OwnedTask<RtRef>;
/// A process's aux data in this runtime.
pub(crate) type Aux = crate::process::task::Aux<Held>;

/// What the runtime keeps for a process in its aux data: everything its
/// teardown releases. Each addition goes through
/// [`Table::lock_alive`](crate::process::table::Table::lock_alive).
#[derive(Default)]
pub(crate) struct Held {
    /// Processes linked to this one (symmetric; at most one entry per pair).
    pub(crate) links: crate::signal::SmallSet<Pid>,
    /// Monitors placed on this process.
    pub(crate) monitors: crate::signal::SmallSet<crate::MonitorRef>,
    /// Monitors this process placed on others.
    pub(crate) monitoring: crate::signal::SmallSet<crate::MonitorRef>,
    /// Registered names.
    pub(crate) names: Vec<String>,
    /// Tags (group memberships).
    pub(crate) tags: Vec<String>,
    /// Calls waiting on this process (see `crate::call`).
    pub(crate) calls: crate::call::Watchers,
    /// The `send_after` timers aimed at this process, cancelled with it
    /// (see `time::owned`).
    pub(crate) timers: crate::time::owned::Timers,
}

use crate::loom::lock::Mutex;
use crate::loom::thread::{self, JoinHandle};
use crate::mailbox::{Message, Received};
use crate::process::table::Table;
use crate::process::{ExitReason, Pid};
use crate::scheduler::Scheduler;
use crossbeam_utils::CachePadded;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// State shared by every handle and worker of one runtime.
pub(crate) struct Shared {
    /// Run queues, idle workers, parkers.
    pub(crate) scheduler: Scheduler,
    /// pid → live process.
    pub(crate) table: Table,
    /// The last pid given out (pids start at 1); also the spawn count.
    next_pid: CachePadded<AtomicU64>,
    /// Processes whose teardown is complete.
    finished: CachePadded<AtomicU64>,
    /// Processes that ended by panicking.
    panics: AtomicU64,
    /// Panics in user code no process owned (see `guard`).
    unowned_panics: AtomicU64,
    /// The worker threads, until they are joined.
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// Names and tags.
    pub(crate) registry: crate::registry::Registry,
    /// Every live monitor.
    pub(crate) monitors: crate::signal::Monitors,
    /// The timer wheel.
    pub(crate) timers: crate::time::wheel::Wheel,
    /// Per-process mailbox capacity for user messages (`usize::MAX`: unbounded).
    mailbox_capacity: usize,
    /// User messages shed because a mailbox was full.
    dropped: AtomicU64,
    /// The threads of `spawn_blocking`.
    pub(crate) blocking: crate::blocking::Pool,
    /// A handle on this runtime that counts no reference (it is never
    /// dropped, and lives exactly as long as the state it points at): what
    /// a process's `&Runtime` borrows ([`RtRef`]). Set once by the builder,
    /// before the state is shared.
    handle: Option<std::mem::ManuallyDrop<Runtime>>,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("workers", &self.scheduler.num_workers())
            .field("processes", &self.table.len())
            .finish()
    }
}

impl Shared {
    /// This runtime's own uncounted handle (see the field).
    #[inline]
    pub(crate) fn handle(&self) -> &Runtime {
        self.handle.as_deref().expect("set by the builder")
    }

    /// Fills in [`handle`](Self::handle) on a state no one else holds yet.
    pub(crate) fn set_handle(this: &mut Arc<Shared>) {
        // A second reference made and given back at once: the handle's
        // pointer is one `Arc::into_raw` made, and it counts nothing.
        let raw = Arc::into_raw(Arc::clone(this));
        // SAFETY: `raw` carries the reference just made, given up here; the
        // builder's own keeps the state alive, and the `Arc` rebuilt from
        // `raw` is never dropped (`ManuallyDrop`), so it never gives up a
        // reference it does not hold. Every clone of the handle counts as
        // usual.
        let uncounted = unsafe {
            Arc::decrement_strong_count(raw);
            Arc::from_raw(raw)
        };
        let handle = std::mem::ManuallyDrop::new(Runtime::from_shared(uncounted));
        Arc::get_mut(this).expect("not shared yet").handle = Some(handle);
    }

    /// Teardown, run by whoever finishes a process after its future is
    /// dropped and its mailbox closed: the process leaves the table, what
    /// it held is released, and it is counted as finished.
    pub(crate) fn process_exited(&self, task: &TaskRef, reason: ExitReason) {
        let h = task.header();
        self.table.remove(h.pid);
        // Timers, names, links, monitors and calls all live in the aux
        // data, and each is added under the aux lock only after checking
        // that the process is in the table, which it has left; the spawn
        // monitor is in the aux slot's word, placed before launch. With
        // neither now (most short-lived processes), there is nothing to
        // release and nothing can come; a supervised child often has only
        // the spawn monitor, taken under this same lock and fired without
        // looking at the aux slot again.
        let mut slot = h.aux.lock();
        if slot.is_empty() {
            drop(slot);
        } else if slot.as_ref().is_some() {
            drop(slot);
            crate::time::owned::cancel_all(self, h);
            crate::signal::release(self, task, reason);
            crate::call::release_watchers(task, reason);
        } else {
            let watcher = crate::signal::take_spawn_monitor(&mut slot);
            drop(slot);
            if let Some(watcher) = watcher {
                crate::signal::fire_spawn_monitor(self, h, watcher, reason);
            }
        }
        // Release: whoever reads the count (Acquire) sees the teardown before it.
        self.finished.fetch_add(1, Ordering::Release);
    }

    pub(crate) fn note_panic(&self) {
        self.panics.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a panic in user code that no process owned (a destructor of a
    /// value whose process is gone).
    pub(crate) fn note_unowned_panic(&self) {
        self.unowned_panics.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether `h`'s bounded mailbox is full: the one rule every path that
    /// delivers a user message (send, try_send, call, timers) applies.
    pub(crate) fn is_full(&self, h: &Header) -> bool {
        self.mailbox_capacity != usize::MAX && h.mailbox.len() >= self.mailbox_capacity
    }

    /// The send path of every user message (send, try_send, call, timers):
    /// the bounded-mailbox rule, then the push and the wake. A refused
    /// message comes back, for the caller to hand back, count or drop.
    pub(crate) fn send_message(&self, h: &Header, msg: Message) -> Result<(), Refused> {
        if self.is_full(h) {
            return Err(Refused::Full(msg));
        }
        h.try_deliver(Received::Message(msg))
            .map_err(|item| match item {
                Received::Message(m) => Refused::Closed(m),
                _ => unreachable!("a user message comes back as itself"),
            })
    }

    /// [`send_message`](Self::send_message) to `pid`, shedding (and
    /// counting) a message its full mailbox refuses: true when delivered.
    pub(crate) fn send_or_shed(&self, pid: Pid, msg: Message) -> bool {
        self.table
            .with(pid, |t| match self.send_message(t.header(), msg) {
                Ok(()) => true,
                Err(Refused::Full(_)) => {
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                    false
                }
                Err(Refused::Closed(_)) => false,
            })
            .unwrap_or(false)
    }

    /// Delivers signal `item` (`Down`, `Exit`: never shed) to `pid`'s
    /// mailbox and wakes it; false when `pid` is not alive (or its mailbox
    /// is closed).
    pub(crate) fn deliver(&self, pid: Pid, item: Received) -> bool {
        self.table
            .with(pid, |task| task.header().deliver(item))
            .unwrap_or(false)
    }

    /// Fires due timers, if any (called by workers between tasks); true
    /// when it advanced the wheel.
    pub(crate) fn poll_timers(&self) -> bool {
        crate::time::poll(self)
    }

    /// Whether a timer is due now.
    pub(crate) fn timers_due(&self) -> bool {
        self.timers.pending() > 0 && self.timers.is_due(std::time::Instant::now())
    }

    /// Stops the workers, joins them (all but the calling thread, if it is
    /// one of them), and ends every live process.
    pub(crate) fn stop(&self) {
        self.scheduler.begin_shutdown();
        self.scheduler.monitor.parker.unpark();
        let threads = std::mem::take(&mut *self.threads.lock());
        let me = thread::current().id();
        for t in threads {
            if t.thread().id() != me {
                let _ = t.join();
            }
        }
        // Processes finished here may spawn or send from their destructors;
        // spawns see the shutdown flag and end at once, so this terminates.
        loop {
            let tasks = self.table.tasks();
            let before = tasks.len();
            for t in tasks {
                t.shut_down();
            }
            if before == 0 || self.table.len() >= before {
                break;
            }
        }
        crate::time::stop(self);
        // Sockets that outlive the runtime fail rather than wait on it.
        self.scheduler.io.close();
        // After the processes ended: the jobs they awaited are abandoned.
        self.blocking.shutdown();
        while !self.scheduler.injector.is_empty() {
            let _ = self.scheduler.injector.steal();
        }
        // The table released its references to the processes ended above
        // through the epoch; with the workers gone, flushing lets the epoch
        // advance and frees them now rather than at some later pin. Only
        // another thread pinned in an old epoch (another runtime's worker
        // mid-poll) can hold this back, and only briefly, so the wait is
        // bounded: past it, that thread's own flushes free the rest.
        self.table.reclaim(|stalled| {
            thread::yield_now();
            stalled < 10_000
        });
        // Popping the epoch's queue of deferred batches defers the queue's
        // own nodes (a few per thousand frees), which more rounds free; each
        // frees a bounded batch, so a large backlog leaves a few dozen.
        for _ in 0..64 {
            crate::loom::epoch::pin().flush();
        }
        // The message nodes the workers passed on for reuse.
        #[cfg(not(loom))]
        crate::mailbox::release_message_memory();
    }
}

/// Why a user message was not delivered; it comes back inside.
pub(crate) enum Refused {
    /// The bounded mailbox is full.
    Full(Message),
    /// The process is ending: its mailbox is closed.
    Closed(Message),
}
