//! Supervisors: OTP's restart strategies, written against the public API
//! only. A supervisor is an ordinary process; the scheduler knows nothing
//! of it.
//!
//! A supervisor **monitors** each child (a child's `Down` drives restarts)
//! and also **links** to it while trapping exits, as OTP supervisors do, so
//! that a supervisor that dies (killed, or giving up) takes its children
//! with it and no orphan is left. `Exit` signals from its own children are
//! ignored (their `Down` is the restart trigger); an `Exit` from anyone else
//! (an owner linked to it, or `send_exit`) makes it terminate its children
//! and exit with that reason.
//!
//! Restart intensity: at most `max_restarts` restarts within `within` (or
//! over the supervisor's lifetime); over budget it kills its children and
//! exits `Crashed`, so a parent supervisor sees the failure. The window is
//! a queue of restart instants from which expired ones are popped from the
//! front, so each restart costs amortised O(1); with `max_restarts(0)`
//! (unlimited) nothing is recorded at all. Children are found by pid in a
//! hash map, so a restart storm stays linear in the number of restarts.

use crate::mailbox::Received;
use crate::process::{Context, ExitReason, Pid, ProcessHandle};
use crate::runtime::Runtime;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

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
/// [`Children`] message listing their pids, in start order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WhichChildren(pub Pid);

/// A supervisor's reply to [`WhichChildren`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Children(pub Vec<Pid>);

/// Starts one child; called again on every restart.
type ChildFn = Arc<dyn Fn(&Runtime) -> ProcessHandle + Send + Sync>;

/// Builder for a supervisor process: [`Runtime::supervisor`], then
/// [`child`](Supervisor::child) for each child, then
/// [`start`](Supervisor::start).
pub struct Supervisor {
    rt: Runtime,
    strategy: Strategy,
    children: Vec<ChildFn>,
    max_restarts: u32,
    within: Option<Duration>,
}

impl fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Supervisor")
            .field("strategy", &self.strategy)
            .field("children", &self.children.len())
            .field("max_restarts", &self.max_restarts)
            .field("within", &self.within)
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
            children: Vec::new(),
            max_restarts: 3,
            within: Some(Duration::from_secs(5)),
        }
    }
}

impl Supervisor {
    /// Adds a child: a factory that spawns it and returns its handle. It
    /// runs again on every restart.
    pub fn child<F>(mut self, start: F) -> Self
    where
        F: Fn(&Runtime) -> ProcessHandle + Send + Sync + 'static,
    {
        self.children.push(Arc::new(start));
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

    /// Starts the supervisor process: it starts every child in order, then
    /// restarts them per its strategy as they die.
    pub fn start(self) -> ProcessHandle {
        let Supervisor {
            rt,
            strategy,
            children,
            max_restarts,
            within,
        } = self;
        rt.spawn(move |ctx| async move {
            let me = ctx.pid();
            ctx.runtime().set_trap_exit(me, true);
            let mut sup = Running {
                ctx,
                children,
                pids: Vec::new(),
                index: HashMap::new(),
                gone: HashMap::new(),
                budget: Budget {
                    max_restarts,
                    within,
                    window: VecDeque::new(),
                    lifetime: 0,
                },
            };
            for i in 0..sup.children.len() {
                sup.start_child(i);
            }
            sup.run(strategy).await;
        })
    }
}

/// Restart-intensity bookkeeping.
struct Budget {
    max_restarts: u32,
    within: Option<Duration>,
    /// Instants of the restarts inside the window, oldest first.
    window: VecDeque<Instant>,
    /// Restarts so far (lifetime counting).
    lifetime: u64,
}

impl Budget {
    /// Records one restart; true when it blows the budget.
    fn over(&mut self) -> bool {
        if self.max_restarts == 0 {
            return false;
        }
        match self.within {
            Some(span) => {
                let now = Instant::now();
                while self
                    .window
                    .front()
                    .is_some_and(|t| now.duration_since(*t) > span)
                {
                    self.window.pop_front();
                }
                self.window.push_back(now);
                self.window.len() > self.max_restarts as usize
            }
            None => {
                self.lifetime += 1;
                self.lifetime > u64::from(self.max_restarts)
            }
        }
    }
}

/// A running supervisor's state.
struct Running {
    ctx: Context,
    children: Vec<ChildFn>,
    /// Current pid of child `i`.
    pids: Vec<Pid>,
    /// pid → child index, for the current pids only.
    index: HashMap<Pid, usize>,
    /// Former children → signals (`Down`, `Exit`) still to come from them.
    gone: HashMap<Pid, u8>,
    budget: Budget,
}

impl Running {
    fn rt(&self) -> &Runtime {
        self.ctx.runtime()
    }

    /// Starts child `i`, linked and monitored.
    fn start_child(&mut self, i: usize) {
        let rt = self.ctx.runtime();
        let me = self.ctx.pid();
        let pid = (self.children[i])(rt).pid();
        rt.link(me, pid);
        rt.monitor(me, pid);
        if i < self.pids.len() {
            self.index.remove(&self.pids[i]);
            self.pids[i] = pid;
        } else {
            self.pids.push(pid);
        }
        self.index.insert(pid, i);
    }

    /// Counts one ending signal from a former child; true if `pid` was one.
    fn note_gone(&mut self, pid: Pid) -> bool {
        match self.gone.get_mut(&pid) {
            Some(left) => {
                *left -= 1;
                if *left == 0 {
                    self.gone.remove(&pid);
                }
                true
            }
            None => false,
        }
    }

    async fn run(&mut self, strategy: Strategy) {
        loop {
            let dead = match self.ctx.recv().await {
                Received::Down { pid, .. } => pid,
                Received::Exit { from, reason } => {
                    if self.index.contains_key(&from) {
                        from
                    } else if self.note_gone(from) {
                        continue;
                    } else {
                        // Told to stop by whoever owns us.
                        self.terminate_all().await;
                        let me = self.ctx.pid();
                        self.rt().exit(me, reason);
                        return;
                    }
                }
                Received::Message(m) => {
                    if let Some(WhichChildren(reply_to)) = m.downcast_ref::<WhichChildren>() {
                        self.rt().send(*reply_to, Children(self.pids.clone()));
                    }
                    continue;
                }
            };
            // The first of a current child's two ending signals restarts it;
            // anything else is the second signal of a former child, or stale.
            let Some(i) = self.index.remove(&dead) else {
                self.note_gone(dead);
                continue;
            };
            self.gone.insert(dead, 1);
            if self.budget.over() {
                for &p in &self.pids {
                    self.rt().kill(p);
                }
                let me = self.ctx.pid();
                self.rt().exit(me, ExitReason::Crashed);
                return;
            }
            match strategy {
                Strategy::OneForOne => self.start_child(i),
                Strategy::OneForAll => {
                    let survivors: Vec<Pid> = (0..self.pids.len())
                        .filter(|&j| j != i)
                        .map(|j| self.pids[j])
                        .collect();
                    self.terminate(survivors).await;
                    for j in 0..self.children.len() {
                        self.start_child(j);
                    }
                }
                Strategy::RestForOne => {
                    let later = self.pids[i + 1..].to_vec();
                    self.terminate(later).await;
                    for j in i..self.children.len() {
                        self.start_child(j);
                    }
                }
            }
        }
    }

    /// Kills `targets` and waits for each one's `Down`, so their names and
    /// resources are released before any restart.
    async fn terminate(&mut self, mut targets: Vec<Pid>) {
        for &p in &targets {
            self.index.remove(&p);
            self.gone.insert(p, 2);
            self.rt().kill(p);
        }
        while !targets.is_empty() {
            let down = self
                .ctx
                .recv_match(|r| matches!(r, Received::Down { pid, .. } if targets.contains(pid)))
                .await;
            if let Received::Down { pid, .. } = down {
                self.note_gone(pid);
                targets.retain(|&p| p != pid);
            }
        }
    }

    async fn terminate_all(&mut self) {
        let all = self.pids.clone();
        self.terminate(all).await;
    }
}
