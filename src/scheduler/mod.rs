//! The M:N work-stealing scheduler.
//!
//! Each worker thread owns two FIFO [`crossbeam_deque::Worker`]s, the
//! *local* deque (woken and spawned processes) and the *yielded* deque
//! (processes that gave their turn up: `yield_now`, an exhausted budget),
//! and a one-task *next slot*; all workers share an [`Injector`] for work
//! posted from outside (non-worker threads, other runtimes) and a
//! [`Stealer`] of each deque of every worker. See [`worker`] for the run
//! loop and the search order (woken work before yielded work), and
//! [`idle`] for the sleep/wake protocol and why no wakeup is lost.
//!
//! Where a scheduled task goes:
//!
//! | who schedules | what | where |
//! | --- | --- | --- |
//! | a worker of this runtime | a wake (a message, a signal) | the next slot; the task it displaces goes to the local deque |
//! | a worker of this runtime | a spawn | the local deque |
//! | a worker of this runtime | its own task, after it yielded (`yield_now`, budget) | the back of the yielded deque, without waking anyone |
//! | a worker of this runtime | its own task, woken during its poll otherwise | the back of the local deque, without waking anyone |
//! | anyone else | anything | the injector |
//!
//! Every push that another worker could take (local deque, injector) is
//! followed by [`Scheduler::notify`], posting steps 2-4 of [`idle`]. The
//! pushes that wake no one (a task requeued after its own poll) go to a
//! deque that is just as stealable and that every sleeper re-checks
//! ([`Scheduler::has_visible_work`] covers both deques), onto a worker that
//! is awake and will get to it: so the yielded deque needs no wake/park
//! protocol of its own, it is the local deque's, unchanged.

pub(crate) mod idle;
pub(crate) mod next;
pub(crate) mod park;
pub(crate) mod stranded;
pub(crate) mod worker;

pub(crate) use imp::*;

mod imp {
    use super::idle::Idle;
    use super::park::Parker;
    use super::worker;
    use crate::loom::deque::{Injector, Stealer};
    use crate::runtime::{Header, Notified};
    use crossbeam_utils::CachePadded;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    /// A worker's next slot, holding run-queue entries.
    #[derive(Debug)]
    pub(crate) struct TaskSlot(super::next::NextSlot<Header>);

    impl TaskSlot {
        /// Puts `task` (only the slot's worker does); returns the task it
        /// displaced.
        pub(crate) fn put(&self, task: Notified) -> Option<Notified> {
            let prev = self.0.put(task.into_raw());
            // SAFETY: the slot holds only pointers from `into_raw`, and the
            // swap that took this one out owns it.
            prev.map(|p| unsafe { Notified::from_raw(p) })
        }

        /// Takes the task: the slot's worker, or the stall monitor when the
        /// worker is stuck.
        pub(crate) fn take(&self) -> Option<Notified> {
            let p = self.0.take();
            // SAFETY: as in `put`.
            p.map(|p| unsafe { Notified::from_raw(p) })
        }
    }

    /// Counters of one worker; written only by that worker.
    #[derive(Debug, Default)]
    pub(crate) struct WorkerStats {
        /// Process polls (including kills and teardowns).
        pub(crate) polls: AtomicU64,
        /// Tasks taken from other workers or the injector by a search.
        pub(crate) steals: AtomicU64,
        /// Times the worker parked.
        pub(crate) parks: AtomicU64,
        /// Bytes of task memory the worker keeps for reuse, as of its last
        /// park or trim (see `process::recycle`).
        pub(crate) cached_bytes: AtomicU64,
        /// The pid of the process being polled now, 0 between polls (read
        /// by the stall monitor, see `stranded`).
        pub(crate) running: AtomicU64,
    }

    impl WorkerStats {
        pub(crate) fn bump(counter: &AtomicU64) {
            // Single writer: no read-modify-write needed.
            counter.store(counter.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        }
    }

    /// State shared by all workers of one runtime.
    #[derive(Debug)]
    pub(crate) struct Scheduler {
        /// Work posted from outside the workers.
        pub(crate) injector: Injector<Notified>,
        /// Each worker's local deque, by index.
        pub(crate) stealers: Vec<Stealer<Notified>>,
        /// Each worker's yielded deque, by index.
        pub(crate) yielders: Vec<Stealer<Notified>>,
        /// Sleep/wake bookkeeping.
        pub(crate) idle: Idle,
        /// One per worker, by index.
        pub(crate) parkers: Vec<Parker>,
        /// Set once, when the runtime shuts down.
        pub(crate) shutdown: AtomicBool,
        /// One per worker, by index.
        pub(crate) stats: Vec<CachePadded<WorkerStats>>,
        /// Each worker's next slot, by index (see `worker` and `next`).
        pub(crate) next: Vec<CachePadded<TaskSlot>>,
        /// The stall monitor's settings and counters (see `stranded`).
        pub(crate) monitor: super::stranded::Monitor,
        /// The reactor the duty holder parks in (see `io`).
        pub(crate) io: std::sync::Arc<crate::io::reactor::Reactor>,
        /// Tests: panics to inject into workers' loops while they search.
        #[cfg(test)]
        pub(crate) inject_panics: std::sync::atomic::AtomicUsize,
    }

    impl Scheduler {
        /// A scheduler for `n` workers, and the deques the workers will own.
        pub(crate) fn new(n: usize) -> std::io::Result<(Scheduler, Vec<worker::Deques>)> {
            let io = std::sync::Arc::new(crate::io::reactor::Reactor::new()?);
            let locals: Vec<_> = (0..n)
                .map(|_| worker::Deques {
                    local: crate::loom::deque::Worker::new_fifo(),
                    yielded: crate::loom::deque::Worker::new_fifo(),
                })
                .collect();
            let sched = Scheduler {
                injector: Injector::new(),
                stealers: locals.iter().map(|w| w.local.stealer()).collect(),
                yielders: locals.iter().map(|w| w.yielded.stealer()).collect(),
                idle: Idle::new(n),
                #[cfg(not(loom))]
                parkers: (0..n).map(|_| Parker::with_io(io.clone())).collect(),
                #[cfg(loom)]
                parkers: (0..n).map(|_| Parker::new()).collect(),
                shutdown: AtomicBool::new(false),
                stats: (0..n).map(|_| CachePadded::default()).collect(),
                next: (0..n)
                    .map(|_| CachePadded::new(TaskSlot(super::next::NextSlot::new())))
                    .collect(),
                monitor: super::stranded::Monitor::new(),
                io,
                #[cfg(test)]
                inject_panics: std::sync::atomic::AtomicUsize::new(0),
            };
            Ok((sched, locals))
        }

        pub(crate) fn num_workers(&self) -> usize {
            self.parkers.len()
        }

        /// Schedules a woken task (see the table in the module docs).
        pub(crate) fn schedule(&self, task: Notified) {
            if let Err(task) = worker::schedule_local(self, task, worker::Placement::Next) {
                self.inject(task);
            }
        }

        /// Schedules a freshly spawned task.
        pub(crate) fn spawn(&self, task: Notified) {
            if let Err(task) = worker::schedule_local(self, task, worker::Placement::Back) {
                self.inject(task);
            }
        }

        fn inject(&self, task: Notified) {
            self.injector.push(task);
            self.notify();
        }

        /// Posting steps 2-4: wake one sleeping worker if nobody searches.
        pub(crate) fn notify(&self) {
            if let Some(id) = self.idle.worker_to_notify() {
                self.parkers[id].unpark();
            }
        }

        /// Whether any queue another worker could take from is non-empty.
        pub(crate) fn has_visible_work(&self) -> bool {
            !self.injector.is_empty()
                || self.stealers.iter().any(|s| !s.is_empty())
                || self.yielders.iter().any(|s| !s.is_empty())
        }

        /// Whether worker `i` has tasks queued in either of its deques.
        pub(crate) fn has_queued(&self, i: usize) -> bool {
            !self.stealers[i].is_empty() || !self.yielders[i].is_empty()
        }

        pub(crate) fn is_shutdown(&self) -> bool {
            // Acquire: pairs with the store in `begin_shutdown`; the spawn path adds
            // the SeqCst fence its argument needs (see `Runtime::spawn_inner`).
            self.shutdown.load(Ordering::Acquire)
        }

        /// Tells every worker to stop after its current task.
        pub(crate) fn begin_shutdown(&self) {
            self.shutdown.store(true, Ordering::SeqCst);
            // Orders the flag before the caller's scan of the process table:
            // pairs with the fence in `Runtime::spawn_inner` (see there).
            std::sync::atomic::fence(Ordering::SeqCst);
            for p in &self.parkers {
                p.unpark();
            }
        }

        /// Run-queue lengths: (injector, per-worker deques).
        pub(crate) fn queue_lengths(&self) -> (usize, Vec<usize>) {
            (
                self.injector.len(),
                self.stealers
                    .iter()
                    .zip(&self.yielders)
                    .map(|(s, y)| s.len() + y.len())
                    .collect(),
            )
        }
    }
}
