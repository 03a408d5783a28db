//! [`Runtime`], the handle, and the owner token whose last drop stops the
//! runtime (see the module docs of [`crate::runtime`]).

use super::context;
use super::{Builder, Shared};
use super::{RtRef, TaskRef};
use crate::coop;
use crate::loom::thread;
use crate::mailbox::Message;
use crate::process::task::Spawning;
use crate::process::{Context, ExitReason, Pid, ProcessHandle};
use crate::scheduler::worker;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Poll;

/// Ends the runtime when the last owner handle goes.
pub(super) struct Owner {
    pub(super) shared: Arc<Shared>,
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
    pub(super) owner: Option<Arc<Owner>>,
}

impl fmt::Debug for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runtime")
            .field("workers", &self.shared.scheduler.num_workers())
            .field("processes", &self.process_count())
            .finish()
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
        let _current = context::enter(self);
        let waiter = Arc::new(ThreadWaker {
            thread: thread::current(),
            notified: AtomicBool::new(false),
        });
        let waker = std::task::Waker::from(waiter.clone());
        let mut cx = std::task::Context::from_waker(&waker);
        let mut future = std::pin::pin!(future);
        loop {
            coop::reset();
            if let Poll::Ready(v) = future.as_mut().poll(&mut cx) {
                return v;
            }
            // Acquire: pairs with the waker's Release store, so the next poll sees
            // what was done before the wake.
            while !waiter.notified.swap(false, Ordering::Acquire) {
                // A handle can outlive its runtime: with no worker left to
                // keep the time, this thread keeps it for its own timers
                // (the stop wakes every waiting timer, so this is seen).
                if self.shared.scheduler.is_shutdown() {
                    crate::time::drive_stopped(&self.shared);
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
        let task = Spawning::<Fut, RtRef>::new(pid, RtRef(shared.clone()));
        shared.table.insert(pid, task.to_ref().into_owned());
        // A panicking spawn closure ends the process it was setting up:
        // teardown releases whatever it registered and counts it finished.
        struct Unwinding<'a, Fut: Future<Output = ()> + Send + 'static>(&'a Spawning<Fut, RtRef>);
        impl<Fut: Future<Output = ()> + Send + 'static> Drop for Unwinding<'_, Fut> {
            fn drop(&mut self) {
                self.0.abandon();
            }
        }
        let guard = Unwinding(&task);
        // SAFETY: the task was made just above; this is its one context.
        let future = f(unsafe { Context::new(task.to_ref()) });
        std::mem::forget(guard);
        // A supervisor starting a child monitors it here, before it can run.
        crate::supervisor::on_spawn(self, task.header());
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
        // SAFETY: called once; we hold RUNNING since `Spawning::new`.
        let task: TaskRef = unsafe { task.launch(future, stopped) };
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
        self.shared.send_or_shed(pid, Message::new(msg))
    }

    /// User messages shed so far because a bounded mailbox was full.
    pub fn dropped_messages(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
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
}

/// Wakes a thread blocked in `block_on`.
struct ThreadWaker {
    thread: thread::Thread,
    notified: AtomicBool,
}

impl std::task::Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        // Release: pairs with the Acquire swap in `block_on`.
        self.notified.store(true, Ordering::Release);
        self.thread.unpark();
    }
}
