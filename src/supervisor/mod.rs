//! Supervisors: OTP's `supervisor` (and Elixir's `DynamicSupervisor`),
//! written against the runtime's process API. A supervisor is an ordinary
//! process that traps exits; the scheduler knows nothing of it.
//!
//! # Starting
//!
//! [`Supervisor::start`] spawns the supervisor process and, before that
//! process can first run (inside the spawn, on the caller's thread), sets
//! it to trap exits and starts the static children in order. So `start`
//! returns with every static child started, without waiting on anything:
//! it is as valid from a process as from a plain thread. A factory that
//! panics (or returns a process of another runtime, whose pid would name
//! an unrelated process of this one) stops the starting there; the supervisor's first act is then to
//! stop what it started (in order, below) and panic with a message naming
//! the child and quoting the factory's panic, so it ends `Crashed` with that
//! message in [`ProcessHandle::panic_message`].
//!
//! # One ending signal per child
//!
//! A supervisor **monitors** each child and does **not** link to it. The
//! monitor is placed inside the child's spawn, before the child can run
//! (see `hook`), so no child ends unseen and none is judged `NoProc`; a
//! child cannot remove a monitor it does not hold, so unlinking or trapping
//! exits changes nothing. Each death is one `Down`: no second signal to
//! match, no table of former children. The link's other job, taking the
//! children down with a supervisor that dies, is done by the supervisor's
//! own state: whoever drops it (the supervisor's teardown, however it
//! ends) kills every child still running, untrappably. A child that traps
//! exits therefore never outlives its supervisor, and `Killed` is what the
//! children of a killed supervisor see. An orderly stop (below) comes
//! first whenever the supervisor ends on its own.
//!
//! Exit signals: from a process that is not a child, `Normal` is ignored
//! and any other reason ends the tree (*ending*, below). A child that links
//! itself to its supervisor is no owner: its `Exit` is ignored while it is
//! a child, and after its death too (its `Exit` comes right behind its
//! `Down`, from the same teardown; the last 1,024 children to end are
//! remembered for that).
//!
//! A dynamic supervisor's children need not have unique ids, so its
//! requests by id (`terminate_child`, `restart_child`, `delete_child`)
//! answer `NotFound`: its children are stopped by pid.
//!
//! # States
//!
//! The supervisor is in one of these states:
//!
//! 1. **Serving**: waiting in `recv` for a child's `Down`, an exit signal
//!    or a request. A request is answered at once, except the stop of a
//!    child, which passes through *stopping*.
//! 2. **Stopping** a child `c` per its [`Shutdown`]: `kill`, or
//!    `send_exit(supervisor, c, Shutdown)` then a selective receive of
//!    `c`'s `Down` (bounded by the timeout for `Timeout(d)`, after which
//!    `c` is killed and its `Down` awaited). Everything else stays queued
//!    in arrival order, so no request and no other child's `Down` is lost.
//! 3. **Restarting** after child `c` ended with a reason its [`Restart`]
//!    restarts on: one charge to the intensity (none for a temporary child;
//!    over budget: *ending* with `Crashed`); under `OneForOne`, `c` is
//!    started again; under `OneForAll` (every child) or `RestForOne` (`c`
//!    and the children started after it) the affected running siblings are
//!    *stopped* one at a time, last started first (temporary ones are then
//!    dropped), and every affected child is started again in start order.
//!    A factory that fails here is that child crashing again: it stays
//!    restarting, and the supervisor goes back to *serving*, where, once
//!    its mailbox is empty, it yields to the worker and tries again from
//!    the charge to the budget (OTP's `try_again_restart`). So requests and
//!    exit signals are still handled between attempts, a request that
//!    stops the child ends the attempts, and a factory that always fails
//!    under an unlimited budget neither holds a worker nor makes the
//!    supervisor deaf.
//! 4. **Ending** with reason R (an abnormal exit signal from a process that
//!    is not a child, the budget exhausted, a static child's factory
//!    failing): every running child is *stopped*, last started first; then
//!    the supervisor exits with R.
//!
//! # Cost
//!
//! Children live in a slab threaded in start order, found by pid through a
//! hash map (see `children`); every lookup, start, stop and removal is
//! O(1). A restart is: one `Down` received, one map lookup, one budget
//! charge (with a window, a queue of at most `max_restarts + 1` instants
//! from which expired ones are popped: amortised O(1); unlimited, nothing),
//! one spawn with its monitor. So a storm of n restarts costs O(n) whatever
//! the number of children, and 100,000 dynamic children start and stop in
//! time linear in their number.
//!
//! # Requests
//!
//! [`SupervisorRef`]'s requests are [`Runtime::call`]s of a private request
//! type with no timeout: the supervisor answers each one when it is done
//! with it (a `terminate_*` after the child's `Down`), and a supervisor
//! that is not alive, or ends before answering, fails the call at once,
//! which the ref reports as `NoProc`.

mod children;
mod hook;
mod run;

#[allow(unused_imports)]
pub(crate) use hook::current_parent;
pub(crate) use hook::on_spawn;

use crate::process::{Pid, ProcessHandle};
use crate::runtime::Runtime;
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// How a supervisor reacts when one child dies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strategy {
    /// Restart only the child that died.
    OneForOne,
    /// Terminate and restart every child.
    OneForAll,
    /// Restart the dead child and every child started after it.
    RestForOne,
}

/// Ask a supervisor for its children: it replies to `0` with a
/// [`Children`] message listing its running children's pids, in start
/// order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WhichChildren(pub Pid);

/// A supervisor's reply to [`WhichChildren`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Children(pub Vec<Pid>);

/// Starts one child; called again on every restart.
type ChildFn = Arc<dyn Fn(&Runtime) -> ProcessHandle + Send + Sync>;

/// When a child is restarted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Restart {
    /// Always.
    #[default]
    Permanent,
    /// Only when it ended with a reason other than `Normal` or `Shutdown`.
    Transient,
    /// Never, not even when a sibling's failure stops it; its restarts
    /// never count against the intensity, and its spec is removed as soon
    /// as it ends.
    Temporary,
}

/// How a child is stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shutdown {
    /// `kill` it.
    BrutalKill,
    /// `send_exit(supervisor, child, Shutdown)`, then `kill` if it has not
    /// ended within the duration.
    Timeout(Duration),
    /// `send_exit(supervisor, child, Shutdown)`, and wait as long as it
    /// takes.
    Infinity,
}

/// One child's specification: an id, a factory, and how it is restarted
/// and stopped.
///
/// # Examples
///
/// ```
/// use rusm_otp::supervisor::{ChildSpec, Restart, Shutdown, SupervisorRef};
/// use rusm_otp::{Runtime, Strategy};
/// use std::time::Duration;
///
/// let cache = ChildSpec::new("cache", |rt: &Runtime| {
///     rt.spawn(|mut ctx| async move {
///         ctx.recv().await;
///     })
/// })
/// .restart(Restart::Transient)
/// .shutdown(Shutdown::Timeout(Duration::from_millis(500)));
/// assert_eq!(cache.id(), "cache");
///
/// let rt = Runtime::builder().workers(2).build();
/// let sup = rt.supervisor(Strategy::OneForOne).child_spec(cache).start();
/// let sup = SupervisorRef::new(&rt, sup.pid());
/// let children = rt.block_on(sup.which_children()).unwrap();
/// assert_eq!(children[0].id, "cache");
/// assert_eq!(children[0].restart, Restart::Transient);
/// ```
#[derive(Clone)]
pub struct ChildSpec {
    id: String,
    start: ChildFn,
    restart: Restart,
    /// `None`: the default for the child's kind.
    shutdown_set: Option<Shutdown>,
    shutdown: Shutdown,
    supervisor: bool,
}

impl fmt::Debug for ChildSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChildSpec")
            .field("id", &self.id)
            .field("restart", &self.restart)
            .field("shutdown", &self.shutdown)
            .field("supervisor", &self.supervisor)
            .finish_non_exhaustive()
    }
}

impl ChildSpec {
    /// A permanent worker child named `id`, started by `f` (which spawns it
    /// and returns its handle, and runs again on every restart), stopped
    /// with `Timeout(5 s)`.
    pub fn new<F>(id: impl Into<String>, f: F) -> ChildSpec
    where
        F: Fn(&Runtime) -> ProcessHandle + Send + Sync + 'static,
    {
        ChildSpec {
            id: id.into(),
            start: Arc::new(f),
            restart: Restart::Permanent,
            shutdown_set: None,
            shutdown: Shutdown::Timeout(Duration::from_secs(5)),
            supervisor: false,
        }
    }

    /// When it is restarted (default `Permanent`).
    pub fn restart(mut self, restart: Restart) -> ChildSpec {
        self.restart = restart;
        self
    }

    /// How it is stopped (default `Timeout(5 s)`, or `Infinity` for a
    /// supervisor).
    pub fn shutdown(mut self, shutdown: Shutdown) -> ChildSpec {
        self.shutdown_set = Some(shutdown);
        self.shutdown = shutdown;
        self
    }

    /// Marks the child as a supervisor itself.
    pub fn supervisor(mut self) -> ChildSpec {
        self.supervisor = true;
        if self.shutdown_set.is_none() {
            self.shutdown = Shutdown::Infinity;
        }
        self
    }

    /// Its id.
    pub fn id(&self) -> &str {
        &self.id
    }
}

/// What `which_children` reports of one child.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChildInfo {
    /// Its id.
    pub id: String,
    /// Its pid while it runs; `None` when stopped or being restarted.
    pub pid: Option<Pid>,
    /// Its restart type.
    pub restart: Restart,
    /// Whether it is a supervisor.
    pub supervisor: bool,
}

/// What `count_children` reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ChildCount {
    /// Child specs, running or not.
    pub specs: usize,
    /// Running children.
    pub active: usize,
    /// Specs of supervisors, running or not.
    pub supervisors: usize,
    /// Specs of workers, running or not.
    pub workers: usize,
}

/// Why a supervisor request failed (OTP's error cases).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SupervisorError {
    /// No child with that id (or pid).
    NotFound,
    /// A stopped child with that id exists.
    AlreadyPresent,
    /// A running child with that id exists.
    AlreadyStarted(Pid),
    /// The child is running (or being restarted).
    Running,
    /// The supervisor has `max_children` children already.
    MaxChildren,
    /// The child's factory panicked, with this message (or returned a
    /// process of another runtime).
    StartFailed(String),
    /// The supervisor is not alive, or ended before answering.
    NoProc,
}

impl fmt::Display for SupervisorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SupervisorError::NotFound => f.write_str("no such child"),
            SupervisorError::AlreadyPresent => f.write_str("a stopped child has that id"),
            SupervisorError::AlreadyStarted(pid) => {
                write!(f, "a child with that id is already running as {pid}")
            }
            SupervisorError::Running => f.write_str("the child is running"),
            SupervisorError::MaxChildren => f.write_str("the supervisor has max_children children"),
            SupervisorError::StartFailed(msg) => write!(f, "the child failed to start: {msg}"),
            SupervisorError::NoProc => f.write_str("the supervisor is not alive"),
        }
    }
}

impl std::error::Error for SupervisorError {}

/// Builder for a supervisor process: [`Runtime::supervisor`] or
/// [`Runtime::dynamic_supervisor`], then its children, then
/// [`start`](Supervisor::start).
///
/// # Examples
///
/// ```
/// use rusm_otp::supervisor::SupervisorRef;
/// use rusm_otp::{Runtime, Strategy};
/// use std::time::Duration;
///
/// let rt = Runtime::builder().workers(2).build();
/// let worker = |rt: &Runtime| {
///     rt.spawn(|mut ctx| async move {
///         ctx.recv().await;
///     })
/// };
/// let sup = rt
///     .supervisor(Strategy::OneForOne)
///     .max_restarts(3)
///     .within(Duration::from_secs(5))
///     .child(worker)
///     .child(worker)
///     .start();
/// // `start` returns with the children started.
/// let sup = SupervisorRef::new(&rt, sup.pid());
/// let first = rt.block_on(sup.which_children()).unwrap()[0].pid.unwrap();
/// rt.kill(first);
/// // One for one: the killed child alone is started again, under a new pid.
/// let restarted = (0..10_000).find_map(|_| {
///     let children = rt.block_on(sup.which_children()).unwrap();
///     std::thread::sleep(Duration::from_millis(1));
///     children[0].pid.filter(|&p| p != first)
/// });
/// assert!(restarted.is_some());
/// assert_eq!(rt.block_on(sup.count_children()).unwrap().active, 2);
/// ```
pub struct Supervisor {
    rt: Runtime,
    strategy: Strategy,
    dynamic: bool,
    children: Vec<ChildSpec>,
    max_restarts: u32,
    within: Option<Duration>,
    max_children: usize,
}

impl fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Supervisor")
            .field("strategy", &self.strategy)
            .field("dynamic", &self.dynamic)
            .field("children", &self.children.len())
            .field("max_restarts", &self.max_restarts)
            .field("within", &self.within)
            .field("max_children", &self.max_children)
            .finish()
    }
}

impl Runtime {
    /// Begins building a supervisor under `strategy`, with the default
    /// intensity of 3 restarts within 5 seconds.
    pub fn supervisor(&self, strategy: Strategy) -> Supervisor {
        Supervisor {
            rt: self.clone(),
            strategy,
            dynamic: false,
            children: Vec::new(),
            max_restarts: 3,
            within: Some(Duration::from_secs(5)),
            max_children: usize::MAX,
        }
    }

    /// Begins building a dynamic supervisor (one for one, no static
    /// children): children are added by [`SupervisorRef::start_child`]
    /// (ids need not be unique) and stopped by
    /// [`SupervisorRef::terminate_pid`]; a child that ends without being
    /// restarted is forgotten.
    pub fn dynamic_supervisor(&self) -> Supervisor {
        Supervisor {
            dynamic: true,
            ..self.supervisor(Strategy::OneForOne)
        }
    }
}

impl Supervisor {
    /// Adds a permanent child (id `child-N`, N counting the children added
    /// so far): a factory that spawns it and returns its handle. It runs
    /// again on every restart.
    ///
    /// # Panics
    /// On a dynamic supervisor, which has no static children.
    pub fn child<F>(self, start: F) -> Self
    where
        F: Fn(&Runtime) -> ProcessHandle + Send + Sync + 'static,
    {
        let id = format!("child-{}", self.children.len());
        self.child_spec(ChildSpec::new(id, start))
    }

    /// Adds a child by its spec.
    ///
    /// # Panics
    /// On a dynamic supervisor, which has no static children.
    pub fn child_spec(mut self, spec: ChildSpec) -> Self {
        assert!(
            !self.dynamic,
            "a dynamic supervisor has no static children: use SupervisorRef::start_child"
        );
        self.children.push(spec);
        self
    }

    /// The most restarts tolerated (within the window, if any); 0 means
    /// unlimited.
    pub fn max_restarts(mut self, n: u32) -> Self {
        self.max_restarts = n;
        self
    }

    /// The intensity window: at most `max_restarts` restarts within it.
    pub fn within(mut self, window: Duration) -> Self {
        self.within = Some(window);
        self
    }

    /// Counts restarts over the supervisor's whole lifetime instead.
    pub fn over_lifetime(mut self) -> Self {
        self.within = None;
        self
    }

    /// The most children it holds at once; `start_child` past it fails
    /// with [`SupervisorError::MaxChildren`]. Unlimited by default.
    pub fn max_children(mut self, n: usize) -> Self {
        self.max_children = n;
        self
    }

    /// Starts the supervisor process and its static children, in order;
    /// returns once they are all started (see the module docs). Static
    /// child ids must be unique.
    ///
    /// # Panics
    /// When two static children share an id.
    pub fn start(self) -> ProcessHandle {
        let Supervisor {
            rt,
            strategy,
            dynamic,
            children: specs,
            max_restarts,
            within,
            max_children,
        } = self;
        let mut seen = std::collections::HashSet::new();
        for s in &specs {
            assert!(seen.insert(s.id.clone()), "duplicate child id {:?}", s.id);
        }
        let slot: Arc<Mutex<Option<run::Init>>> = Arc::new(Mutex::new(None));
        let filled = slot.clone();
        rt.spawn_inner(
            move |ctx| async move {
                // Filled before this process could first run.
                let init = filled.lock().take();
                if let Some(init) = init {
                    run::run(ctx, init).await;
                }
            },
            |me| {
                rt.set_trap_exit(me, true);
                let mut children = children::Children::new(&rt, !dynamic);
                let mut failed = None;
                for spec in specs {
                    let i = children.push(spec);
                    if failed.is_some() {
                        // Not started, but kept: the specs are user data,
                        // dropped with the supervisor (whose end owns a
                        // panic there), never here inside its spawn.
                        continue;
                    }
                    match hook::start(&rt, me, &children.get(i).spec) {
                        Ok(started) => children.set_running(i, started),
                        Err(msg) => {
                            crate::report::gave_up(me, &children.get(i).spec.id, &msg);
                            failed = Some(format!(
                                "supervisor {me}: child {:?} failed to start: {msg}",
                                children.get(i).spec.id
                            ));
                        }
                    }
                }
                // Moved in, so that the process future holds the only
                // reference once this closure returns: a supervisor killed
                // before it first runs drops its children with its future,
                // as its teardown begins, not later in the caller's hands.
                let slot = slot;
                *slot.lock() = Some(run::Init {
                    strategy,
                    dynamic,
                    max_children,
                    budget: run::Budget {
                        max_restarts,
                        within,
                        window: VecDeque::new(),
                        lifetime: 0,
                    },
                    children,
                    failed,
                });
            },
        )
    }
}

/// A supervisor request, sent by [`SupervisorRef`] with
/// [`Runtime::call`] (the caller cannot build one: the type is private).
enum Op {
    Start(ChildSpec),
    TerminateChild(String),
    TerminatePid(Pid),
    Restart(String),
    Delete(String),
    Which,
    Count,
}

/// A supervisor's answer to an [`Op`].
enum Answer {
    Pid(Result<Pid, SupervisorError>),
    Done(Result<(), SupervisorError>),
    Which(Vec<ChildInfo>),
    Count(ChildCount),
}

/// What a supervisor receives for an [`Op`].
type SupRequest = crate::Request<Op, Answer>;

/// A handle on a running supervisor, for OTP's supervisor requests. Each
/// request is answered by the supervisor process; it is usable from a
/// process or from `block_on`, and fails with `NoProc` at once when the
/// supervisor is not alive or ends before answering.
///
/// # Examples
///
/// ```
/// use rusm_otp::supervisor::{ChildSpec, SupervisorError, SupervisorRef};
/// use rusm_otp::Runtime;
///
/// let rt = Runtime::builder().workers(2).build();
/// let sup = rt.dynamic_supervisor().max_children(2).start();
/// let sup = SupervisorRef::new(&rt, sup.pid());
/// let spec = |id: &str| {
///     ChildSpec::new(id, |rt: &Runtime| {
///         rt.spawn(|mut ctx| async move {
///             ctx.recv().await;
///         })
///     })
/// };
/// let a = rt.block_on(sup.start_child(spec("a"))).unwrap();
/// rt.block_on(sup.start_child(spec("b"))).unwrap();
/// assert_eq!(
///     rt.block_on(sup.start_child(spec("c"))),
///     Err(SupervisorError::MaxChildren)
/// );
/// rt.block_on(sup.terminate_pid(a)).unwrap();
/// assert!(!rt.is_alive(a));
/// assert_eq!(rt.block_on(sup.count_children()).unwrap().active, 1);
/// ```
#[derive(Clone)]
pub struct SupervisorRef {
    rt: Runtime,
    pid: Pid,
}

impl fmt::Debug for SupervisorRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SupervisorRef")
            .field("pid", &self.pid)
            .finish()
    }
}

impl SupervisorRef {
    /// A handle on supervisor `pid`.
    pub fn new(rt: &Runtime, pid: Pid) -> SupervisorRef {
        SupervisorRef {
            rt: rt.weak_handle(),
            pid,
        }
    }

    /// The supervisor's pid.
    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// One request, by `call` with no timeout: a supervisor answers each
    /// request once it is done with it (a stop may take as long as the
    /// child's `Shutdown`). A call that fails means the supervisor was not
    /// alive, or ended before answering.
    async fn ask(&self, op: Op) -> Result<Answer, SupervisorError> {
        self.rt
            .call::<Op, Answer>(self.pid, op, Duration::MAX)
            .await
            .map_err(|_| SupervisorError::NoProc)
    }

    async fn done(&self, op: Op) -> Result<(), SupervisorError> {
        match self.ask(op).await? {
            Answer::Done(r) => r,
            _ => unreachable!("answered with a result"),
        }
    }

    /// Adds `spec` and starts it. `AlreadyStarted(pid)` if a running child
    /// has that id, `AlreadyPresent` if a stopped one has (never on a
    /// dynamic supervisor), `MaxChildren`, `StartFailed` if the factory
    /// panicked (the spec is then not kept).
    pub async fn start_child(&self, spec: ChildSpec) -> Result<Pid, SupervisorError> {
        match self.ask(Op::Start(spec)).await? {
            Answer::Pid(r) => r,
            _ => unreachable!("a start answers a pid"),
        }
    }

    /// Stops child `id` per its `Shutdown` and answers once it is down; the
    /// spec stays (but a temporary child's). `Ok` if it was already
    /// stopped; `NotFound`.
    pub async fn terminate_child(&self, id: &str) -> Result<(), SupervisorError> {
        let id = id.to_string();
        self.done(Op::TerminateChild(id)).await
    }

    /// [`terminate_child`](Self::terminate_child) by the child's pid; how a
    /// dynamic supervisor's children are stopped (their spec goes too).
    pub async fn terminate_pid(&self, pid: Pid) -> Result<(), SupervisorError> {
        self.done(Op::TerminatePid(pid)).await
    }

    /// Starts stopped child `id` again. `Running` (also while the
    /// supervisor is restarting it), `NotFound`, `StartFailed`.
    pub async fn restart_child(&self, id: &str) -> Result<Pid, SupervisorError> {
        let id = id.to_string();
        match self.ask(Op::Restart(id)).await? {
            Answer::Pid(r) => r,
            _ => unreachable!("a restart answers a pid"),
        }
    }

    /// Removes stopped child `id`'s spec. `Running`, `NotFound`.
    pub async fn delete_child(&self, id: &str) -> Result<(), SupervisorError> {
        let id = id.to_string();
        self.done(Op::Delete(id)).await
    }

    /// Every child, in start order.
    pub async fn which_children(&self) -> Result<Vec<ChildInfo>, SupervisorError> {
        match self.ask(Op::Which).await? {
            Answer::Which(v) => Ok(v),
            _ => unreachable!("which answers children"),
        }
    }

    /// Counts of its children.
    pub async fn count_children(&self) -> Result<ChildCount, SupervisorError> {
        match self.ask(Op::Count).await? {
            Answer::Count(c) => Ok(c),
            _ => unreachable!("count answers counts"),
        }
    }
}
