//! [`Builder`]: a runtime's configuration, and the start of its threads.

use super::handle::Owner;
use super::{Runtime, Shared};
use crate::loom::lock::Mutex;
use crate::loom::thread::{self, JoinHandle};
use crate::process::table::Table;
use crate::scheduler::{Scheduler, worker};
use crossbeam_utils::CachePadded;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

/// What `build` makes of `try_build`'s result.
fn started(r: std::io::Result<Runtime>) -> Runtime {
    r.unwrap_or_else(|e| panic!("failed to start a worker thread: {e}"))
}

/// The body of one worker thread.
type WorkerMain = Box<dyn FnOnce() + Send + 'static>;

/// Configures and builds a [`Runtime`].
///
/// # Examples
///
/// ```
/// use rusm_otp::Runtime;
///
/// let rt = Runtime::builder()
///     .workers(2)
///     .thread_name("my-app")
///     .mailbox_capacity(10_000)
///     .build();
/// assert_eq!(rt.workers(), 2);
/// ```
#[derive(Debug, Clone)]
pub struct Builder {
    workers: usize,
    thread_name: String,
    mailbox_capacity: usize,
    quiet_panics: bool,
    blocking_threads: usize,
    long_poll: std::time::Duration,
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            workers: thread::available_parallelism().map_or(1, |n| n.get()),
            thread_name: "rusm-worker".to_string(),
            mailbox_capacity: usize::MAX,
            quiet_panics: false,
            blocking_threads: 512,
            long_poll: crate::scheduler::stranded::DEFAULT_LONG_POLL,
        }
    }
}

impl Builder {
    /// The number of worker threads (at least 1; 0 is taken as 1).
    pub fn workers(mut self, n: usize) -> Builder {
        self.workers = n.max(1);
        self
    }

    /// The worker threads' name prefix (`<prefix>-<index>`).
    pub fn thread_name(mut self, prefix: impl Into<String>) -> Builder {
        self.thread_name = prefix.into();
        self
    }

    /// Bounds every mailbox to `n` queued items. When a mailbox is full,
    /// user messages sent to it are shed (`send` returns false) and counted
    /// in [`Runtime::dropped_messages`]; `Down` and `Exit` signals are never
    /// shed. The default is unbounded.
    pub fn mailbox_capacity(mut self, n: usize) -> Builder {
        self.mailbox_capacity = n;
        self
    }

    /// Keeps the panics of this runtime's processes off stderr: the crash
    /// report (a `log` record, target `rusm_otp::process`, see the crate
    /// docs) is then their only trace, as in Erlang, so a storm of crashes
    /// does not flood the terminal. The default (`false`) leaves them to
    /// the program's panic hook, which prints each one as usual.
    ///
    /// When on, building the runtime installs, once per program, a panic
    /// hook chained before the one in place: it stays silent for panics on
    /// the worker threads of runtimes built with this option, and hands
    /// every other panic to the previous hook. A hook the program sets
    /// afterwards replaces it (and sees every panic again).
    pub fn quiet_panics(mut self, quiet: bool) -> Builder {
        self.quiet_panics = quiet;
        self
    }

    /// The most threads [`Runtime::spawn_blocking`] runs at once (at least
    /// 1; default 512). Threads are started as jobs arrive, named
    /// `rusm-blocking-<n>`, and exit after 10 s without a job; past the
    /// bound, jobs queue for the first free thread.
    ///
    /// # Examples
    ///
    /// ```
    /// let rt = rusm_otp::Runtime::builder()
    ///     .workers(2)
    ///     .blocking_threads(4)
    ///     .long_poll(std::time::Duration::from_millis(50))
    ///     .build();
    /// let name = rt.block_on(rt.spawn_blocking(|| {
    ///     std::thread::current().name().map(str::to_string)
    /// }));
    /// assert!(name.unwrap().starts_with("rusm-blocking-"));
    /// ```
    pub fn blocking_threads(mut self, n: usize) -> Builder {
        self.blocking_threads = n.max(1);
        self
    }

    /// The long-poll threshold (default 10 ms): a process whose one poll
    /// holds its worker longer is counted in [`Metrics::long_polls`](super::Metrics::long_polls) and
    /// reported (a `log` warning, target `rusm_otp::process`, with its pid,
    /// label and the duration). Polls are sampled every few milliseconds,
    /// so one just over the threshold may go unseen. Whatever the
    /// threshold, a process woken by a stuck poll is moved to another
    /// worker within a few milliseconds. See
    /// [`blocking_threads`](Self::blocking_threads) for an example.
    pub fn long_poll(mut self, threshold: std::time::Duration) -> Builder {
        self.long_poll = threshold;
        self
    }

    /// Starts the worker threads.
    ///
    /// # Panics
    /// When a worker thread cannot be started (see
    /// [`try_build`](Self::try_build)), with that error.
    pub fn build(self) -> Runtime {
        started(self.try_build())
    }

    /// Starts the worker threads, or returns the error of the first one
    /// that could not be started. The workers already started are then
    /// stopped and joined before this returns: nothing is left running.
    pub fn try_build(self) -> std::io::Result<Runtime> {
        self.build_with(|builder, run| builder.spawn(run))
    }

    /// A runtime whose threads end at once without running anything: its
    /// table, timers and registry for unit tests, with no worker or monitor
    /// thread competing with the test (Miri runs every thread it sees).
    #[cfg(test)]
    pub(crate) fn build_threadless(self) -> Runtime {
        started(self.build_with(|builder, run| {
            drop(run);
            builder.spawn(|| {})
        }))
    }

    /// [`try_build`](Self::try_build) with the thread spawner given, so
    /// tests can make a spawn fail.
    fn build_with(
        self,
        mut spawn: impl FnMut(thread::Builder, WorkerMain) -> std::io::Result<JoinHandle<()>>,
    ) -> std::io::Result<Runtime> {
        if self.quiet_panics {
            // Before any worker runs, so no worker panic meets the old hook.
            crate::report::install_hook();
        }
        let (scheduler, locals) = Scheduler::new(self.workers)?;
        scheduler.monitor.set_long_poll(self.long_poll);
        let mut shared = Arc::new(Shared {
            scheduler,
            table: Table::new(),
            next_pid: CachePadded::new(AtomicU64::new(0)),
            finished: CachePadded::new(AtomicU64::new(0)),
            panics: AtomicU64::new(0),
            unowned_panics: AtomicU64::new(0),
            threads: Mutex::new(Vec::new()),
            registry: crate::registry::Registry::new(),
            monitors: crate::signal::Monitors::new(),
            timers: crate::time::wheel::Wheel::new(),
            mailbox_capacity: self.mailbox_capacity,
            dropped: AtomicU64::new(0),
            blocking: crate::blocking::Pool::new(
                self.blocking_threads,
                "rusm-blocking".to_string(),
                self.quiet_panics,
            ),
            handle: None,
        });
        Shared::set_handle(&mut shared);
        // A thread that cannot be started stops and joins those started so
        // far: nothing is left running.
        let mut start = |builder: thread::Builder, main: WorkerMain| match spawn(builder, main) {
            Ok(t) => {
                shared.threads.lock().push(t);
                Ok(())
            }
            Err(e) => {
                shared.stop();
                Err(e)
            }
        };
        for (index, local) in locals.into_iter().enumerate() {
            let s = shared.clone();
            let builder = thread::Builder::new().name(format!("{}-{index}", self.thread_name));
            let quiet = self.quiet_panics;
            let main = move || {
                if quiet {
                    crate::report::quiet_this_thread();
                }
                worker::run(s, index, local)
            };
            start(builder, Box::new(main))?;
        }
        // The stall monitor polls on a clock, which loom models do not
        // have; it relies on no wake, so the models lose nothing.
        #[cfg(not(loom))]
        {
            let s = shared.clone();
            let monitor = thread::Builder::new().name("rusm-monitor".to_string());
            start(
                monitor,
                Box::new(move || crate::scheduler::stranded::run(&s)),
            )?;
        }
        Ok(Runtime {
            owner: Some(Arc::new(Owner {
                shared: shared.clone(),
            })),
            shared,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// The third worker cannot be started: `try_build` returns that error,
    /// and the two started before it have been stopped and joined.
    #[test]
    fn try_build_stops_and_joins_the_started_workers_when_one_fails() {
        let started = Arc::new(AtomicUsize::new(0));
        let ended = Arc::new(AtomicUsize::new(0));
        let (s, e) = (started.clone(), ended.clone());
        let mut n = 0;
        let r = Builder::default()
            .workers(4)
            .build_with(move |builder, run| {
                n += 1;
                if n == 3 {
                    return Err(std::io::Error::other("no more threads"));
                }
                let (s, e) = (s.clone(), e.clone());
                builder.spawn(move || {
                    s.fetch_add(1, Ordering::SeqCst);
                    run();
                    e.fetch_add(1, Ordering::SeqCst);
                })
            });
        let err = r.expect_err("the third spawn failed");
        assert_eq!(err.to_string(), "no more threads");
        assert_eq!(started.load(Ordering::SeqCst), 2);
        assert_eq!(ended.load(Ordering::SeqCst), 2, "joined before returning");
    }

    #[test]
    #[should_panic(expected = "failed to start a worker thread")]
    fn build_panics_with_the_spawn_error() {
        let r = Builder::default()
            .workers(1)
            .build_with(|_, _| Err(std::io::Error::other("no threads")));
        started(r);
    }
}
