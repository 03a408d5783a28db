//! No stranded process: the stall monitor.
//!
//! A worker runs one poll at a time and regains control only when the poll
//! returns. A process that blocks inside its poll (a `std::fs` read, a
//! CPU-heavy call, a `thread::sleep`) therefore holds its worker, and with
//! it whatever only that worker would run:
//!
//! * its local and yielded deques: no problem, other workers steal from
//!   them (every push there that another worker could take wakes one, see
//!   `idle`; for the pushes that wake no one, see step 2 below);
//! * its **next slot**: the process the blocked one woke last. Searching
//!   workers do not steal from next slots (that would split every
//!   ping-pong pair across cores), so without help it waits for the poll
//!   to end. tokio's LIFO slot has the same hazard; its stop-gap is an
//!   option to disable the slot. Ours is to make the slot stealable
//!   ([`super::next`]) and let a monitor steal from it only when its owner
//!   is stuck.
//!
//! # The monitor
//!
//! One thread per runtime (`rusm-monitor`) wakes every [`ACTIVE_PERIOD`]
//! while any worker is awake, backing off to [`IDLE_PERIOD`] while all of
//! them sleep. Each time it reads, per worker, the poll counter and the pid
//! last polled (both stored by the worker before every poll with relaxed
//! stores, the only cost on the run path; the pid is cleared before the
//! worker parks). A worker
//! whose counter has not moved since the previous look, with a process
//! being polled, has been in the same poll for at least one period:
//!
//! 1. its next slot is emptied (one `swap`, so the entry goes to exactly one
//!    taker even if the owner's poll ends at this instant) and the process
//!    is scheduled on the injector, which wakes a sleeping worker by the
//!    posting protocol of `idle`. So a runnable process waits for a stuck
//!    worker at most about two periods after the runtime was last idle
//!    (an [`IDLE_PERIOD`] and an [`ACTIVE_PERIOD`]); nothing in this relies
//!    on a wake reaching the monitor, since it polls on a timer;
//! 2. if its deques hold tasks, a sleeping worker is woken to steal them
//!    (pushes that another worker would take wake one, but a task that
//!    yielded, or one moved off the next slot at the LIFO cap, wakes no
//!    one: its worker was expected to get back to it);
//! 3. once the same poll has been seen running for the long-poll threshold
//!    ([`Builder::long_poll`](crate::Builder::long_poll), default
//!    [`DEFAULT_LONG_POLL`]), it is counted in
//!    [`Metrics::long_polls`](crate::Metrics::long_polls) and, when it ends,
//!    reported as a `log` warning with the pid, the label and the duration
//!    (see `report`). Durations are sampled: they are accurate to about a
//!    period, and a poll just over the threshold may go unseen.
//!
//! The monitor reads the worker's state with relaxed loads: a stale read
//! only delays a rescue by a period or makes it happen for a poll that has
//! just ended (then the rescued process merely runs on another worker).
//! Correctness rests on the slot's swap alone.

// Loom builds never start the monitor (see `Builder::try_build`).
#![cfg_attr(loom, allow(dead_code))]

use crate::process::Pid;
use crate::runtime::Shared;
use crate::scheduler::park::Parker;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The monitor's period while some worker is awake.
pub(crate) const ACTIVE_PERIOD: Duration = Duration::from_millis(2);
/// The longest period it backs off to while every worker sleeps.
pub(crate) const IDLE_PERIOD: Duration = Duration::from_millis(32);
/// A poll at least this long is a long poll, unless the builder says
/// otherwise.
pub(crate) const DEFAULT_LONG_POLL: Duration = Duration::from_millis(10);

/// The monitor's settings, counters and parker, in the scheduler.
#[derive(Debug)]
pub(crate) struct Monitor {
    /// Where the monitor thread waits between looks; unparked at shutdown.
    pub(crate) parker: Parker,
    /// The long-poll threshold in nanoseconds.
    long_poll_ns: AtomicU64,
    /// Long polls seen.
    pub(crate) long_polls: AtomicU64,
    /// Processes moved out of a stuck worker's next slot.
    pub(crate) rescued: AtomicU64,
}

impl Monitor {
    pub(crate) fn new() -> Monitor {
        Monitor {
            parker: Parker::new(),
            long_poll_ns: AtomicU64::new(DEFAULT_LONG_POLL.as_nanos() as u64),
            long_polls: AtomicU64::new(0),
            rescued: AtomicU64::new(0),
        }
    }

    pub(crate) fn set_long_poll(&self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.long_poll_ns.store(ns, Ordering::Relaxed);
    }

    fn long_poll(&self) -> Duration {
        Duration::from_nanos(self.long_poll_ns.load(Ordering::Relaxed))
    }
}

/// What the monitor last saw of one worker.
#[derive(Debug, Clone)]
struct Seen {
    /// Its poll counter.
    polls: u64,
    /// The pid it was polling (0: none).
    running: u64,
    /// When this poll was first seen.
    since: Instant,
    /// Set once this poll was counted as long: its label, for the report
    /// at its end (read while the process was surely alive).
    long: Option<Option<String>>,
}

/// The monitor thread's body, until shutdown.
pub(crate) fn run(shared: &Shared) {
    let sched = &shared.scheduler;
    let n = sched.num_workers();
    let now = Instant::now();
    let mut seen: Vec<Seen> = (0..n)
        .map(|_| Seen {
            polls: 0,
            running: 0,
            since: now,
            long: None,
        })
        .collect();
    let mut period = ACTIVE_PERIOD;
    let mut io_polls = sched.io.polls();
    while !sched.is_shutdown() {
        sched.monitor.parker.park(Some(Instant::now() + period));
        if sched.is_shutdown() {
            break;
        }
        // A report runs the program's logger: a panic there must not end
        // the monitor (it would strand processes from then on).
        if crate::guard::catch(|| look(shared, &mut seen, Instant::now())).is_none() {
            shared.note_unowned_panic();
        }
        // Nobody took the reactor's events for a whole period (every
        // awake worker is stuck, see `io`): take them here; the processes
        // woken go to the injector.
        if sched.io.polls() == io_polls {
            sched.io.poll_now();
        }
        io_polls = sched.io.polls();
        period = if sched.idle.num_sleeping() == n {
            (period * 2).min(IDLE_PERIOD)
        } else {
            ACTIVE_PERIOD
        };
    }
}

/// One look at every worker (see the module docs).
fn look(shared: &Shared, seen: &mut [Seen], now: Instant) {
    let sched = &shared.scheduler;
    let long_poll = sched.monitor.long_poll();
    for (i, s) in seen.iter_mut().enumerate() {
        let stats = &sched.stats[i];
        let polls = stats.polls.load(Ordering::Relaxed);
        let running = stats.running.load(Ordering::Relaxed);
        let same = polls == s.polls && running == s.running;
        if !same {
            if let Some(label) = s.long.take() {
                // The long poll seen before has ended by now.
                crate::report::long_poll(
                    Pid::from_raw(s.running),
                    label,
                    now.duration_since(s.since),
                );
            }
            *s = Seen {
                polls,
                running,
                since: now,
                long: None,
            };
            continue;
        }
        if running == 0 {
            continue;
        }
        // In the same poll since at least one period ago.
        if let Some(task) = sched.next[i].take() {
            sched.monitor.rescued.fetch_add(1, Ordering::Relaxed);
            // Not a worker thread: this goes to the injector and wakes a
            // sleeping worker if nobody searches.
            sched.schedule(task);
        }
        // Its deques are stealable, but a task yielded or moved there during
        // the poll woke no one (see `Placement::Yield`): wake a sleeper to
        // search, so the rest of its queues runs elsewhere too.
        if sched.has_queued(i) {
            sched.notify();
        }
        if s.long.is_none() && now.duration_since(s.since) >= long_poll {
            sched.monitor.long_polls.fetch_add(1, Ordering::Relaxed);
            let pid = Pid::from_raw(running);
            let label = shared
                .table
                .get(pid)
                .and_then(|t| t.header().with_aux(|a| a.label.clone()));
            s.long = Some(label);
        }
    }
}
