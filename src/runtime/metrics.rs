//! Snapshots for operators: [`Metrics`] (the runtime's counters) and
//! [`ProcessInfo`] (one process).

use super::Runtime;
use crate::process::Pid;
use std::sync::atomic::Ordering;

impl Runtime {
    /// A snapshot of `pid`'s state, or `None` if it is not alive.
    ///
    /// # Examples
    ///
    /// ```
    /// use rusm_otp::Runtime;
    ///
    /// let rt = Runtime::builder().workers(2).build();
    /// let h = rt.spawn(|mut ctx| async move {
    ///     ctx.recv().await;
    /// });
    /// let pid = h.pid();
    /// rt.set_label(pid, "cache");
    /// rt.register("cache", pid);
    /// let info = rt.info(pid).unwrap();
    /// assert_eq!(info.label.as_deref(), Some("cache"));
    /// assert_eq!(info.names, ["cache"]);
    /// h.kill();
    /// rt.block_on(h.join());
    /// assert!(rt.info(pid).is_none());
    /// ```
    pub fn info(&self, pid: Pid) -> Option<ProcessInfo> {
        let t = self.shared.table.get(pid)?;
        let h = t.header();
        let aux = h.aux.lock();
        let mut info = ProcessInfo {
            pid,
            links: 0,
            monitors: 0,
            names: Vec::new(),
            label: None,
            mailbox_depth: h.mailbox.len(),
            trap_exit: false,
        };
        info.monitors = usize::from(aux.spawn_monitor() != 0);
        if let Some(a) = aux.as_ref() {
            info.links = a.links.len();
            info.monitors += a.monitors.len();
            info.names = a.names.clone();
            info.label = a.label.clone();
            info.trap_exit = a.trap_exit;
        }
        drop(aux);
        self.shared.table.contains(pid).then_some(info)
    }

    /// Scheduler and process counters, for operators.
    pub fn metrics(&self) -> Metrics {
        let sched = &self.shared.scheduler;
        let (injector_len, lens) = sched.queue_lengths();
        Metrics {
            workers: sched
                .stats
                .iter()
                .zip(lens)
                .map(|(s, queue_len)| WorkerMetrics {
                    polls: s.polls.load(Ordering::Relaxed),
                    steals: s.steals.load(Ordering::Relaxed),
                    parks: s.parks.load(Ordering::Relaxed),
                    queue_len,
                    cached_bytes: s.cached_bytes.load(Ordering::Relaxed) as usize,
                })
                .collect(),
            injector_len,
            sleeping_workers: sched.idle.num_sleeping(),
            processes: self.process_count(),
            spawned: self.spawned(),
            finished: self.finished(),
            panics: self.shared.panics.load(Ordering::Relaxed),
            unowned_panics: self.shared.unowned_panics.load(Ordering::Relaxed)
                + self.shared.blocking.unowned_panics()
                + self.shared.scheduler.io.unowned_panics(),
            blocking_threads: self.shared.blocking.threads(),
            long_polls: sched.monitor.long_polls.load(Ordering::Relaxed),
            rescued: sched.monitor.rescued.load(Ordering::Relaxed),
        }
    }
}

/// A snapshot of one process, for observability.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessInfo {
    /// The process.
    pub pid: Pid,
    /// Processes linked to it.
    pub links: usize,
    /// Monitors placed on it.
    pub monitors: usize,
    /// Its registered names.
    pub names: Vec<String>,
    /// Its label, if set.
    pub label: Option<String>,
    /// Items in its mailbox, including those deferred by selective receive.
    pub mailbox_depth: usize,
    /// Whether it traps exits.
    pub trap_exit: bool,
}

/// A snapshot of the runtime's counters.
///
/// # Examples
///
/// ```
/// use rusm_otp::Runtime;
///
/// let rt = Runtime::builder().workers(2).build();
/// rt.block_on(rt.spawn(|_ctx| async {}).join());
/// let m = rt.metrics();
/// assert_eq!(m.workers.len(), 2);
/// assert_eq!((m.spawned, m.finished, m.processes), (1, 1, 0));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metrics {
    /// Per worker, by index.
    pub workers: Vec<WorkerMetrics>,
    /// Tasks waiting in the shared injector queue.
    pub injector_len: usize,
    /// Workers asleep now.
    pub sleeping_workers: usize,
    /// Processes alive.
    pub processes: usize,
    /// Processes spawned so far.
    pub spawned: u64,
    /// Processes finished so far.
    pub finished: u64,
    /// Processes that ended by panicking.
    pub panics: u64,
    /// Panics in user code that no process owned, caught by the runtime:
    /// for example the destructor of a timer's message whose target had
    /// ended. They end nothing; they are counted here. A panic of a
    /// [`Runtime::spawn_blocking`] closure whose future was dropped counts
    /// here too.
    pub unowned_panics: u64,
    /// Threads of the blocking pool alive now.
    pub blocking_threads: usize,
    /// Polls seen holding their worker past the long-poll threshold (see
    /// [`Builder::long_poll`](super::Builder::long_poll)).
    pub long_polls: u64,
    /// Processes moved off a worker stuck in a long poll, out of its next
    /// slot, so they ran elsewhere.
    pub rescued: u64,
}

/// Counters of one worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerMetrics {
    /// Process polls run (kills and teardowns included).
    pub polls: u64,
    /// Tasks taken by searching (from the injector or another worker).
    pub steals: u64,
    /// Times the worker went to sleep.
    pub parks: u64,
    /// Tasks in its local queue now.
    pub queue_len: usize,
    /// Bytes of ended processes' memory the worker keeps to reuse for the
    /// next spawns, as of when it last went to sleep: at most 256 KiB, and
    /// at most 16 KiB once it has slept a few milliseconds (it gives the
    /// rest back to the allocator then).
    pub cached_bytes: usize,
}
