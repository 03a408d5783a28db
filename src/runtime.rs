//! [`Runtime`] and [`Builder`]: the entry point.
//!
//! A runtime is an `Arc` of [`Shared`] state (scheduler, process table,
//! counters) plus, for the handles its owner holds, a shared *owner token*.
//! Dropping the last owner token stops the workers, joins them, and ends
//! every process still alive (reason `Killed`), dropping its future.
//! Handles reached from inside a process ([`Context::runtime`]) carry no
//! token: a process's own handle on its runtime does not keep the runtime
//! running, which is what lets dropping the owner's last clone end it even
//! while processes that refer to it are parked.

use crate::coop;
use crate::mailbox::{Message, Received};
use crate::process::table::Table;
use crate::process::task::{Task, TaskRef};
use crate::process::{Context, ExitReason, Pid, ProcessHandle};
use crate::scheduler::{Scheduler, worker};
use crossbeam_utils::CachePadded;
use parking_lot::Mutex;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::Poll;
use std::thread::{self, JoinHandle};

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
    /// Teardown, run by whoever finishes a process after its future is
    /// dropped: the process leaves the table and is counted as finished.
    pub(crate) fn process_exited(&self, task: &TaskRef, reason: ExitReason) {
        let h = task.header();
        self.table.remove(h.pid);
        // Timers, names, links, monitors and calls all live in the aux
        // data, and each is added under the aux lock only after checking
        // that the process is in the table, which it has left; the spawn
        // monitor is in the header, placed before launch. With neither now
        // (most short-lived processes), there is nothing to release and
        // nothing can come.
        if h.aux.lock().is_some() || h.spawn_monitor.load(Ordering::Acquire) != 0 {
            self.cancel_timers_of(h);
            self.release_signals(task, reason);
            crate::call::release_watchers(task, reason);
        }
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
    pub(crate) fn is_full(&self, h: &crate::process::task::Header) -> bool {
        self.mailbox_capacity != usize::MAX && h.mailbox.len() >= self.mailbox_capacity
    }

    /// Whether a user message to `h` must be shed because its bounded
    /// mailbox is full; counts it when so.
    pub(crate) fn shed_if_full(&self, h: &crate::process::task::Header) -> bool {
        let full = self.is_full(h);
        if full {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
        full
    }

    /// Whether a timer is due now.
    pub(crate) fn timers_due(&self) -> bool {
        self.timers.pending() > 0 && self.timers.is_due(std::time::Instant::now())
    }

    /// Stops the workers, joins them (all but the calling thread, if it is
    /// one of them), and ends every live process.
    fn stop(&self) {
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
        self.stop_timers();
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
            crossbeam_epoch::pin().flush();
        }
    }
}

/// Ends the runtime when the last owner handle goes.
struct Owner {
    shared: Arc<Shared>,
}

impl Drop for Owner {
    fn drop(&mut self) {
        self.shared.stop();
    }
}

/// A runtime: worker threads that run processes. Cheap to clone; every
/// clone drives the same scheduler.
///
/// Dropping the last clone made from the one `build`/`new` returned stops
/// and joins the worker threads and drops every remaining process future.
///
/// # Examples
///
/// ```
/// use rusm_otp::{ExitReason, Runtime};
///
/// let rt = Runtime::new();
/// let h = rt.spawn(|ctx| async move {
///     println!("hello from {}", ctx.pid());
/// });
/// assert_eq!(rt.block_on(h.join()), ExitReason::Normal);
/// // A clone drives the same scheduler.
/// let other = rt.clone();
/// assert_eq!(other.finished(), 1);
/// ```
#[derive(Clone)]
pub struct Runtime {
    pub(crate) shared: Arc<Shared>,
    /// Present on the owner's handles; see the module docs. Never read:
    /// its drop is what ends the runtime.
    #[allow(dead_code)]
    owner: Option<Arc<Owner>>,
}

impl fmt::Debug for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runtime")
            .field("workers", &self.shared.scheduler.num_workers())
            .field("processes", &self.process_count())
            .finish()
    }
}

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
    /// holds its worker longer is counted in [`Metrics::long_polls`] and
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
        let shared = Arc::new(Shared {
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
        });
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
            match spawn(builder, Box::new(main)) {
                Ok(t) => shared.threads.lock().push(t),
                Err(e) => {
                    // Stops and joins the workers started so far.
                    shared.stop();
                    return Err(e);
                }
            }
        }
        let s = shared.clone();
        let monitor = thread::Builder::new().name("rusm-monitor".to_string());
        match spawn(
            monitor,
            Box::new(move || crate::scheduler::stranded::run(&s)),
        ) {
            Ok(t) => shared.threads.lock().push(t),
            Err(e) => {
                shared.stop();
                return Err(e);
            }
        }
        Ok(Runtime {
            owner: Some(Arc::new(Owner {
                shared: shared.clone(),
            })),
            shared,
        })
    }
}

impl Default for Runtime {
    fn default() -> Self {
        Runtime::new()
    }
}

impl Runtime {
    /// A runtime with one worker thread per available core.
    pub fn new() -> Runtime {
        Builder::default().build()
    }

    /// Configures a runtime.
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// A handle on `shared` that does not keep the runtime running.
    pub(crate) fn from_shared(shared: Arc<Shared>) -> Runtime {
        Runtime {
            shared,
            owner: None,
        }
    }

    /// A handle that does not keep the runtime running.
    pub(crate) fn weak_handle(&self) -> Runtime {
        Runtime {
            shared: self.shared.clone(),
            owner: None,
        }
    }

    /// The number of worker threads.
    pub fn workers(&self) -> usize {
        self.shared.scheduler.num_workers()
    }

    /// Runs `future` to completion on the calling thread while processes run
    /// on the workers. May be called from several threads at once. On a
    /// handle whose runtime has stopped, it still runs `future`, keeping
    /// the time for its timers itself.
    ///
    /// # Panics
    /// When called from inside a process (a worker thread): blocking a
    /// worker on work that may need that same worker would deadlock.
    ///
    /// # Examples
    ///
    /// ```
    /// use rusm_otp::Runtime;
    ///
    /// let rt = Runtime::builder().workers(2).build();
    /// let h = rt.spawn(|_ctx| async {});
    /// // Any future: here a process's join, then a plain `async` block.
    /// rt.block_on(h.join());
    /// assert_eq!(rt.block_on(async { 6 * 7 }), 42);
    /// ```
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        assert!(
            !worker::on_worker_thread(),
            "Runtime::block_on called from inside a process: a process must .await \
             instead of blocking its worker thread"
        );
        let _current = enter(self);
        let waiter = Arc::new(ThreadWaker {
            thread: thread::current(),
            notified: AtomicBool::new(false),
        });
        let waker = futures_task::waker(waiter.clone());
        let mut cx = std::task::Context::from_waker(&waker);
        let mut future = std::pin::pin!(future);
        loop {
            coop::reset();
            if let Poll::Ready(v) = future.as_mut().poll(&mut cx) {
                return v;
            }
            while !waiter.notified.swap(false, Ordering::Acquire) {
                // A handle can outlive its runtime: with no worker left to
                // keep the time, this thread keeps it for its own timers
                // (the stop wakes every waiting timer, so this is seen).
                if self.shared.scheduler.is_shutdown() {
                    self.shared.drive_timers_stopped();
                } else {
                    thread::park();
                }
            }
        }
    }

    /// Spawns a process. `f` is called at once, on the calling thread, with
    /// the new process's [`Context`]; the future it returns runs as the
    /// process. Callable from anywhere.
    ///
    /// The process exists while `f` runs: its pid can be registered, made
    /// to trap exits, linked, monitored and sent to (messages wait in its
    /// mailbox), and a kill ends it before it first runs. If `f` panics,
    /// the process ends `Crashed` (names released, links and monitors
    /// notified) and the panic goes on to the caller.
    ///
    /// # Examples
    ///
    /// ```
    /// use rusm_otp::{ExitReason, Runtime};
    ///
    /// let rt = Runtime::builder().workers(2).build();
    /// let h = rt.spawn(|mut ctx| async move {
    ///     let m = ctx.recv().await.message().unwrap();
    ///     assert_eq!(m.downcast::<u32>().unwrap(), 7);
    /// });
    /// // The process exists as soon as `spawn` returns: messages wait for it.
    /// assert!(rt.send(h.pid(), 7u32));
    /// assert_eq!(rt.block_on(h.join()), ExitReason::Normal);
    /// ```
    pub fn spawn<F, Fut>(&self, f: F) -> ProcessHandle
    where
        F: FnOnce(Context) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.spawn_inner(f, |_| {})
    }

    /// Spawns with `before_run` applied to the new pid before the process
    /// can first run (links, monitors).
    pub(crate) fn spawn_inner<F, Fut>(&self, f: F, before_run: impl FnOnce(Pid)) -> ProcessHandle
    where
        F: FnOnce(Context) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let shared = &self.shared;
        let pid = Pid::from_raw(shared.next_pid.fetch_add(1, Ordering::Relaxed) + 1);
        // The process is in the table, alive, before the closure runs, so the
        // closure can use its pid (register it, link it, send to it). The
        // spawner holds RUNNING until `launch`, so no one else can poll or
        // finish it meanwhile: a kill only marks it, and messages queue up.
        let task: Arc<Task<Fut>> =
            crate::process::recycle::arc_with(|| Task::new(pid, self.weak_handle()));
        shared.table.insert(
            pid,
            Arc::into_raw(task.clone()).cast::<crate::process::task::Header>(),
        );
        // A panicking spawn closure ends the process it was setting up:
        // teardown releases whatever it registered and counts it finished.
        struct Unwinding<'a, Fut: Future<Output = ()> + Send + 'static>(&'a Arc<Task<Fut>>);
        impl<Fut: Future<Output = ()> + Send + 'static> Drop for Unwinding<'_, Fut> {
            fn drop(&mut self) {
                self.0.abandon();
            }
        }
        let guard = Unwinding(&task);
        // SAFETY: the task was made just above; this is its one context.
        let future = f(unsafe { Context::new(task.clone()) });
        std::mem::forget(guard);
        // A supervisor starting a child monitors it here, before it can run.
        crate::supervisor::on_spawn(self, crate::process::task::Runnable::header(&*task));
        before_run(pid);
        // Spawn against stop: we insert, then load the flag; stop stores the
        // flag, then scans the table and kills what it finds (a kill of a
        // process still held here only marks it, and `launch` ends it). With
        // a SeqCst fence between store and load on both sides (stop's is in
        // `Scheduler::begin_shutdown`), the two fences are ordered: either
        // stop's scan sees our insert, or our load sees the flag. Plain
        // Release/Acquire would let both miss, leaving a process no one ends.
        std::sync::atomic::fence(Ordering::SeqCst);
        let stopped = shared.scheduler.is_shutdown();
        // SAFETY: called once; we hold RUNNING since `Task::new`.
        unsafe { task.launch(future, stopped) };
        let task: TaskRef = task;
        ProcessHandle { task }
    }

    /// Sends `msg` to `pid`. Never blocks; false when `pid` is not alive.
    /// A [`Message`] is sent as itself.
    /// With a bounded mailbox ([`Builder::mailbox_capacity`]), false also
    /// when the message was shed because the mailbox is full.
    ///
    /// # Examples
    ///
    /// ```
    /// use rusm_otp::{ExitReason, Runtime};
    ///
    /// let rt = Runtime::builder().workers(2).build();
    /// let h = rt.spawn(|mut ctx| async move {
    ///     let m = ctx.recv().await.message().unwrap();
    ///     assert_eq!(m.downcast_ref::<&str>(), Some(&"hello"));
    /// });
    /// let pid = h.pid();
    /// assert!(rt.send(pid, "hello"));
    /// assert_eq!(rt.block_on(h.join()), ExitReason::Normal);
    /// // Sending to a process that has ended is no error, just false.
    /// assert!(!rt.send(pid, "anyone there?"));
    /// ```
    pub fn send<M: Send + 'static>(&self, pid: Pid, msg: M) -> bool {
        let shared = &self.shared;
        if shared.mailbox_capacity != usize::MAX
            && shared.table.with(pid, |t| shared.shed_if_full(t.header())) == Some(true)
        {
            return false;
        }
        shared.deliver(pid, Received::Message(Message::new(msg)))
    }

    /// User messages shed so far because a bounded mailbox was full.
    pub fn dropped_messages(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

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
        info.monitors = usize::from(h.spawn_monitor.load(Ordering::Relaxed) != 0);
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

    /// Sets `pid`'s label (shown by [`info`](Self::info)); false if it is
    /// not alive.
    pub fn set_label(&self, pid: Pid, label: impl Into<String>) -> bool {
        let Some(t) = self.shared.table.get(pid) else {
            return false;
        };
        let label = label.into();
        t.header().with_aux(|a| a.label = Some(label));
        true
    }

    /// Kills `pid`: untrappable; it exits `Killed` at its next suspension
    /// point. False if it is not alive.
    ///
    /// # Examples
    ///
    /// ```
    /// use rusm_otp::{ExitReason, Runtime};
    ///
    /// let rt = Runtime::builder().workers(2).build();
    /// let h = rt.spawn(|mut ctx| async move {
    ///     ctx.recv().await;
    /// });
    /// assert!(rt.kill(h.pid()));
    /// let pid = h.pid();
    /// assert_eq!(rt.block_on(h.join()), ExitReason::Killed);
    /// assert!(!rt.kill(pid));
    /// ```
    pub fn kill(&self, pid: Pid) -> bool {
        self.exit(pid, ExitReason::Killed)
    }

    /// Ends `pid` with `reason`, whether or not it traps exits. A process may
    /// do this to itself and then return. The first exit requested wins.
    /// False if it is not alive.
    pub fn exit(&self, pid: Pid, reason: ExitReason) -> bool {
        self.shared
            .table
            .with(pid, |task| task.header().exit(reason))
            .is_some()
    }

    /// Kills every process (reason `Killed`); returns how many there were.
    /// The runtime stays usable.
    pub fn shutdown(&self) -> usize {
        let tasks = self.shared.table.tasks();
        for t in &tasks {
            t.header().exit(ExitReason::Killed);
        }
        tasks.len()
    }

    /// Processes alive now.
    pub fn process_count(&self) -> usize {
        let finished = self.shared.finished.load(Ordering::Acquire);
        (self.spawned().saturating_sub(finished)) as usize
    }

    /// Processes spawned so far.
    pub fn spawned(&self) -> u64 {
        self.shared.next_pid.load(Ordering::Acquire)
    }

    /// Processes whose teardown is complete.
    pub fn finished(&self) -> u64 {
        self.shared.finished.load(Ordering::Acquire)
    }

    /// Whether `pid` is alive.
    pub fn is_alive(&self, pid: Pid) -> bool {
        self.shared.table.contains(pid)
    }

    /// Every live pid, ascending.
    pub fn list(&self) -> Vec<Pid> {
        self.shared.table.pids()
    }

    /// Runs `f` on a thread of the runtime's blocking pool, never on a
    /// worker, and returns a future of its result: for calls that block
    /// (file I/O, `thread::sleep`, a CPU-heavy computation), which would
    /// otherwise stall a worker and every process queued on it. Awaitable
    /// from a process or from [`block_on`](Self::block_on).
    ///
    /// If `f` panics, awaiting the future re-raises the panic: a process
    /// awaiting it crashes (`Crashed`), as if it had panicked itself; the
    /// pool thread carries on. Dropping the future before `f` started means
    /// `f` never runs; a running `f` cannot be interrupted, and its result
    /// is dropped on the pool thread. See [`Builder::blocking_threads`] for
    /// the pool's size.
    ///
    /// # Examples
    ///
    /// ```
    /// let rt = rusm_otp::Runtime::new();
    /// let len = rt.block_on(rt.spawn_blocking(|| {
    ///     std::fs::read_to_string("Cargo.toml").map(|s| s.len())
    /// }));
    /// assert!(len.unwrap() > 0);
    /// ```
    pub fn spawn_blocking<F, T>(&self, f: F) -> crate::blocking::Blocking<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.shared.blocking.spawn(f)
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

thread_local! {
    /// The runtime whose worker (or `block_on`) is on this thread.
    static CURRENT: std::cell::RefCell<Option<Runtime>> = const { std::cell::RefCell::new(None) };
}

/// Restores the previous current runtime when dropped.
pub(crate) struct EnterGuard(Option<Runtime>);

impl Drop for EnterGuard {
    fn drop(&mut self) {
        let prev = self.0.take();
        let _ = CURRENT.try_with(|c| *c.borrow_mut() = prev);
    }
}

/// Makes `rt` the current runtime of this thread until the guard drops.
pub(crate) fn enter(rt: &Runtime) -> EnterGuard {
    let prev = CURRENT.with(|c| c.borrow_mut().replace(rt.weak_handle()));
    EnterGuard(prev)
}

/// The current runtime of this thread (a worker's, or `block_on`'s).
pub(crate) fn current() -> Option<Runtime> {
    CURRENT.try_with(|c| c.borrow().clone()).ok().flatten()
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
    /// [`Builder::long_poll`]).
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
}

/// Wakes a thread blocked in `block_on`.
struct ThreadWaker {
    thread: thread::Thread,
    notified: AtomicBool,
}

impl futures_task::ArcWake for ThreadWaker {
    fn wake_by_ref(arc_self: &Arc<Self>) {
        arc_self.notified.store(true, Ordering::Release);
        arc_self.thread.unpark();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

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
