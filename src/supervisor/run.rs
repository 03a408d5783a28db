//! The supervisor process: its receive loop and its state machine (see the
//! module docs of [`super`] for the states).

use super::children::{Children, State};
use super::hook;
use super::{
    Answer, Children as ChildrenMsg, Op, Restart, Shutdown, Strategy, SupRequest, SupervisorError,
};
use super::{ChildSpec, WhichChildren};
use crate::mailbox::{MonitorRef, Received};
use crate::process::{Context, ExitReason, Pid};
use crate::report;
use crate::runtime::Runtime;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How many recently ended children are remembered, so that an `Exit` from
/// one of them (a child that linked itself to its supervisor) is not taken
/// for an owner's exit signal. Such an `Exit` is delivered right after the
/// child's `Down` by the same teardown, so it is never far behind.
const RECENT: usize = 1024;

/// What `start` hands the process: its children, started before it first
/// runs.
pub(super) struct Init {
    pub(super) strategy: Strategy,
    pub(super) dynamic: bool,
    pub(super) max_children: usize,
    pub(super) budget: Budget,
    pub(super) children: Children,
    /// The panic message of a static child's factory that failed.
    pub(super) failed: Option<String>,
}

/// Why the supervisor ends.
enum End {
    /// With this reason.
    Exit(ExitReason),
    /// `Crashed`, with this panic message (a factory failed at start).
    Panic(String),
}

/// Restart-intensity bookkeeping.
pub(super) struct Budget {
    pub(super) max_restarts: u32,
    pub(super) within: Option<Duration>,
    /// Instants of the restarts inside the window, oldest first; never
    /// longer than `max_restarts + 1`, so each restart is O(1).
    pub(super) window: VecDeque<Instant>,
    /// Restarts so far (lifetime counting).
    pub(super) lifetime: u64,
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

/// A running supervisor.
struct Sup {
    ctx: Context,
    strategy: Strategy,
    dynamic: bool,
    max_children: usize,
    budget: Budget,
    children: Children,
    /// Children that ended lately, oldest first (see [`RECENT`]).
    recent: VecDeque<Pid>,
    /// Children whose restart failed, to try again once the mailbox has
    /// been looked at (OTP's `try_again_restart`).
    retry: VecDeque<u32>,
}

/// The supervisor process's body.
pub(super) async fn run(ctx: Context, init: Init) {
    let Init {
        strategy,
        dynamic,
        max_children,
        budget,
        children,
        failed,
    } = init;
    let mut sup = Sup {
        ctx,
        strategy,
        dynamic,
        max_children,
        budget,
        children,
        recent: VecDeque::new(),
        retry: VecDeque::new(),
    };
    let end = match failed {
        Some(msg) => End::Panic(msg),
        None => sup.serve().await,
    };
    sup.stop_all().await;
    let me = sup.ctx.pid();
    match end {
        End::Exit(reason) => {
            sup.ctx.runtime().exit(me, reason);
        }
        End::Panic(msg) => {
            // The children's specs are user data: dropped while this panic
            // unwinds, a panicking destructor would abort the program. They
            // go first; the supervisor ends `Crashed` either way.
            let _ = crate::guard::drop_caught(sup);
            panic!("{msg}")
        }
    }
}

impl Sup {
    fn rt(&self) -> &Runtime {
        self.ctx.runtime()
    }

    /// The receive loop; returns why the supervisor must end.
    async fn serve(&mut self) -> End {
        loop {
            let received = if self.retry.is_empty() {
                self.ctx.recv().await
            } else if let Some(r) = self.ctx.try_recv() {
                r
            } else {
                // Nothing queued: give the worker away once, then try the
                // failed restart again, unless a request stopped the child
                // meanwhile.
                crate::yield_now().await;
                let Some(i) = self.retry.pop_front() else {
                    continue;
                };
                if self
                    .slot(i)
                    .is_some_and(|c| matches!(c.state, State::Restarting))
                {
                    if let Err(end) = self.restart(i, None).await {
                        return end;
                    }
                }
                continue;
            };
            let step = match received {
                Received::Down {
                    reference,
                    pid,
                    reason,
                } => self.on_down(reference, pid, reason).await,
                Received::Exit { from, reason } => self.on_exit(from, reason),
                Received::Message(m) => match m.downcast::<SupRequest>() {
                    Ok(req) => {
                        let (op, reply) = req.into_parts();
                        let answer = self.on_request(op).await;
                        // false: the caller gave up; nothing to do.
                        let _ = reply.reply(answer);
                        Ok(())
                    }
                    Err(m) => {
                        if let Some(WhichChildren(to)) = m.downcast_ref::<WhichChildren>() {
                            let pids = self.children.running_pids();
                            self.rt().send(*to, ChildrenMsg(pids));
                        }
                        Ok(())
                    }
                },
            };
            if let Err(end) = step {
                return end;
            }
        }
    }

    /// An exit signal. From a child (which linked itself to us) it is
    /// ignored: its `Down` is what counts. From anyone else, an abnormal
    /// one ends the tree.
    fn on_exit(&mut self, from: Pid, reason: ExitReason) -> Result<(), End> {
        if reason == ExitReason::Normal
            || self.children.by_pid(from).is_some()
            || self.recent.contains(&from)
        {
            return Ok(());
        }
        Err(End::Exit(reason))
    }

    /// A child's `Down`: restart it or record its end.
    async fn on_down(
        &mut self,
        reference: MonitorRef,
        pid: Pid,
        reason: ExitReason,
    ) -> Result<(), End> {
        let Some(i) = self.children.by_pid(pid) else {
            return Ok(());
        };
        let handle = match &mut self.children.get_mut(i).state {
            State::Running {
                monitor, handle, ..
            } if *monitor == reference => handle.take(),
            _ => return Ok(()),
        };
        let mut reason = reason;
        if reason == ExitReason::NoProc {
            // Ended before its monitor was placed: its handle knows why.
            if let Some(h) = handle {
                reason = h.join().await;
            }
        }
        self.note_gone(pid);
        let restart = self.children.get(i).spec.restart;
        if !Children::restarts(restart, reason) {
            self.children.set_not_running(i, State::Stopped);
            if restart == Restart::Temporary || self.dynamic {
                self.children.remove(i);
            }
            return Ok(());
        }
        self.children.set_not_running(i, State::Restarting);
        if self.strategy == Strategy::OneForOne {
            // Nothing to stop and nothing to wait for: restarted in place,
            // without the future of the general case.
            return self.restart_one(i, Some(pid));
        }
        self.restart(i, Some(pid)).await
    }

    fn note_gone(&mut self, pid: Pid) {
        if self.recent.len() == RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back(pid);
    }

    /// Restarts child `i` (in `Restarting`) per the strategy, charging the
    /// budget once per attempt. A factory that fails is that child crashing
    /// again: it stays `Restarting` and is queued for another attempt from
    /// the receive loop, so what is in the mailbox (a request, an exit
    /// signal) is seen between attempts.
    async fn restart(&mut self, i: u32, old: Option<Pid>) -> Result<(), End> {
        let affected = match self.strategy {
            Strategy::OneForOne => return self.restart_one(i, old),
            Strategy::OneForAll => {
                self.charge(i)?;
                self.children.all()
            }
            Strategy::RestForOne => {
                self.charge(i)?;
                self.children.from(i)
            }
        };
        let olds: Vec<Option<Pid>> = affected
            .iter()
            .map(|&j| {
                if j == i {
                    old
                } else {
                    self.children.get(j).pid()
                }
            })
            .collect();
        // Stop the affected siblings, last started first.
        for &j in affected.iter().rev() {
            if self.children.get(j).pid().is_some() {
                self.stop(j).await;
                if self.children.get(j).spec.restart == Restart::Temporary {
                    self.children.set_not_running(j, State::Stopped);
                    self.children.remove(j);
                } else {
                    self.children.set_not_running(j, State::Restarting);
                }
            }
        }
        // Start them again, first started first; stop at a failure,
        // which is that child crashing again.
        let mut failed = None;
        for (&j, &old_j) in affected.iter().zip(&olds) {
            let Some(c) = self.slot(j) else { continue };
            if matches!(c.state, State::Restarting) {
                match self.start(j) {
                    Ok(new) => self.restarted(j, old_j, new),
                    Err(_) => {
                        failed = Some(j);
                        break;
                    }
                }
            }
        }
        if let Some(j) = failed {
            self.retry.push_back(j);
        }
        Ok(())
    }

    /// Charges the budget for restarting child `i`; `Err` when that blows
    /// it (a temporary child costs nothing).
    fn charge(&mut self, i: u32) -> Result<(), End> {
        if self.budget.max_restarts == 0 {
            // Unlimited: nothing to count.
            return Ok(());
        }
        if self.children.get(i).spec.restart != Restart::Temporary && self.budget.over() {
            let reason = ExitReason::Crashed;
            report::escalated(self.ctx.pid(), &self.children.get(i).spec.id, reason);
            return Err(End::Exit(reason));
        }
        Ok(())
    }

    /// [`restart`](Self::restart) for `OneForOne`: only child `i` starts
    /// again, so nothing is awaited.
    fn restart_one(&mut self, i: u32, old: Option<Pid>) -> Result<(), End> {
        self.charge(i)?;
        match self.start(i) {
            Ok(new) => self.restarted(i, old, new),
            Err(_) => self.retry.push_back(i),
        }
        Ok(())
    }

    /// Reports the restart of child `i`.
    fn restarted(&self, i: u32, old: Option<Pid>, new: Pid) {
        report::restarted(self.ctx.pid(), &self.children.get(i).spec.id, old, new);
    }

    /// Child `j` if its entry still holds one (a temporary one may be gone).
    fn slot(&self, j: u32) -> Option<&super::children::Child> {
        // Entries removed above are never reused within one restart: the
        // free list only grows there.
        self.children.try_get(j)
    }

    /// Runs child `i`'s factory; on success the child is running.
    fn start(&mut self, i: u32) -> Result<Pid, String> {
        let me = self.ctx.pid();
        let started = hook::start(self.ctx.runtime(), me, &self.children.get(i).spec)?;
        let pid = started.pid;
        self.children.set_running(i, started);
        Ok(pid)
    }

    /// Stops running child `i` per its `Shutdown` and waits for its `Down`
    /// (other messages stay queued). It is still marked running.
    async fn stop(&mut self, i: u32) -> ExitReason {
        let me = self.ctx.pid();
        let c = self.children.get(i);
        let State::Running { pid, monitor, .. } = c.state else {
            unreachable!("only a running child is stopped");
        };
        let shutdown = c.spec.shutdown;
        let is_down = move |r: &Received| matches!(r, Received::Down { reference, .. } if *reference == monitor);
        let rt = self.ctx.runtime().clone();
        let down = match shutdown {
            Shutdown::BrutalKill => {
                rt.kill(pid);
                self.ctx.recv_match(is_down).await
            }
            Shutdown::Infinity => {
                rt.send_exit(me, pid, ExitReason::Shutdown);
                self.ctx.recv_match(is_down).await
            }
            Shutdown::Timeout(d) => {
                rt.send_exit(me, pid, ExitReason::Shutdown);
                match self.ctx.recv_match_timeout(is_down, d).await {
                    Some(down) => down,
                    None => {
                        rt.kill(pid);
                        self.ctx.recv_match(is_down).await
                    }
                }
            }
        };
        self.note_gone(pid);
        match down {
            Received::Down { reason, .. } => reason,
            _ => unreachable!("matched a Down"),
        }
    }

    /// Stops every running child, last started first.
    async fn stop_all(&mut self) {
        for i in self.children.all().into_iter().rev() {
            if self.children.get(i).pid().is_some() {
                self.stop(i).await;
                self.children.set_not_running(i, State::Stopped);
            }
        }
    }

    /// Stops child `i` if it runs; then drops its spec if it is temporary
    /// or dynamic, else keeps it stopped.
    async fn terminate(&mut self, i: u32) {
        if self.children.get(i).pid().is_some() {
            self.stop(i).await;
        }
        self.children.set_not_running(i, State::Stopped);
        if self.dynamic || self.children.get(i).spec.restart == Restart::Temporary {
            self.children.remove(i);
        }
    }

    async fn on_request(&mut self, op: Op) -> Answer {
        match op {
            Op::Start(spec) => Answer::Pid(self.start_child(spec)),
            Op::TerminateChild(id) => Answer::Done(match self.children.by_id(&id) {
                Some(i) => {
                    self.terminate(i).await;
                    Ok(())
                }
                None => Err(SupervisorError::NotFound),
            }),
            Op::TerminatePid(pid) => Answer::Done(match self.children.by_pid(pid) {
                Some(i) => {
                    self.terminate(i).await;
                    Ok(())
                }
                None => Err(SupervisorError::NotFound),
            }),
            Op::Restart(id) => Answer::Pid(match self.children.by_id(&id) {
                None => Err(SupervisorError::NotFound),
                Some(i) => match self.children.get(i).state {
                    State::Stopped => match self.start(i) {
                        Ok(pid) => Ok(pid),
                        Err(msg) => Err(SupervisorError::StartFailed(msg)),
                    },
                    _ => Err(SupervisorError::Running),
                },
            }),
            Op::Delete(id) => Answer::Done(match self.children.by_id(&id) {
                None => Err(SupervisorError::NotFound),
                Some(i) => match self.children.get(i).state {
                    State::Stopped => {
                        self.children.remove(i);
                        Ok(())
                    }
                    _ => Err(SupervisorError::Running),
                },
            }),
            Op::Which => Answer::Which(self.children.which()),
            Op::Count => Answer::Count(self.children.count()),
        }
    }

    fn start_child(&mut self, spec: ChildSpec) -> Result<Pid, SupervisorError> {
        if !self.dynamic {
            if let Some(i) = self.children.by_id(&spec.id) {
                return Err(match self.children.get(i).state {
                    State::Running { pid, .. } => SupervisorError::AlreadyStarted(pid),
                    State::Restarting => SupervisorError::Running,
                    State::Stopped => SupervisorError::AlreadyPresent,
                });
            }
        }
        if self.children.len() >= self.max_children {
            return Err(SupervisorError::MaxChildren);
        }
        let i = self.children.push(spec);
        match self.start(i) {
            Ok(pid) => Ok(pid),
            Err(msg) => {
                self.children.remove(i);
                Err(SupervisorError::StartFailed(msg))
            }
        }
    }
}
