//! The call future, the callee's side ([`Request`], [`ReplyTo`]) and the
//! exit watches (see the parent module for the protocol).

use super::slot::Slot;
use crate::process::task::TaskRef;
use crate::process::{ExitReason, Pid, current};
use crate::runtime::{Runtime, Shared};
use crate::send_error::SendError;
use crate::time::wheel::{Action, Entry};
use std::cell::RefCell;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

/// Why a [`Runtime::call`] returned no reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallError {
    /// No reply within the timeout. A reply that comes later is dropped.
    Timeout,
    /// The callee was not alive when the call was made.
    NoProc,
    /// The callee ended during the call, with this reason.
    Exited(ExitReason),
    /// The callee dropped the request (or its [`ReplyTo`]) unanswered.
    NoReply,
    /// A process called itself.
    SelfCall,
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::Timeout => f.write_str("call timed out"),
            CallError::NoProc => f.write_str("call failed: the callee is not alive"),
            CallError::Exited(r) => write!(f, "call failed: the callee exited ({r})"),
            CallError::NoReply => f.write_str("call failed: the request was dropped unanswered"),
            CallError::SelfCall => f.write_str("call failed: a process called itself"),
        }
    }
}

impl std::error::Error for CallError {}

/// What a call's slot carries.
type Outcome<R> = Result<R, CallError>;

/// A slot seen from the callee's teardown and from deferred drops, without
/// its reply type.
pub(crate) trait Watch: Send + Sync {
    /// The callee ended with `reason`.
    fn exited(&self, reason: ExitReason);
    /// The `ReplyTo` was dropped unanswered.
    fn no_reply(&self);
    /// Answered or given up: nobody needs this watch any more.
    fn is_settled(&self) -> bool;
}

impl<R: Send> Watch for Slot<Outcome<R>> {
    fn exited(&self, reason: ExitReason) {
        let _ = self.complete(Err(CallError::Exited(reason)));
    }

    fn no_reply(&self) {
        let _ = self.complete(Err(CallError::NoReply));
    }

    fn is_settled(&self) -> bool {
        Slot::is_settled(self)
    }
}

/// The calls watching one process (in its aux data).
#[derive(Default)]
pub(crate) struct Watchers {
    /// Placed watches; some may be settled already.
    list: Vec<Arc<dyn Watch>>,
    /// The length at which settled entries are dropped next.
    prune_at: usize,
}

impl fmt::Debug for Watchers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Watchers")
            .field("len", &self.list.len())
            .finish()
    }
}

impl Watchers {
    /// Adds `w`. Returns the settled watches it pruned, for the caller to
    /// drop after releasing the aux lock (a waker's drop may run anything).
    fn push(&mut self, w: Arc<dyn Watch>) -> Vec<Arc<dyn Watch>> {
        let mut pruned = Vec::new();
        if self.list.len() >= self.prune_at {
            // Amortised O(1) per push: the list is scanned only once it has
            // doubled since the last scan.
            let (keep, settled) = std::mem::take(&mut self.list)
                .into_iter()
                .partition(|w| !w.is_settled());
            self.list = keep;
            pruned = settled;
            self.prune_at = (self.list.len() * 2).max(8);
        }
        self.list.push(w);
        pruned
    }
}

/// Places a watch for `slot` on `pid`; false when `pid` is not alive.
fn place_watch(shared: &Shared, pid: Pid, watch: Arc<dyn Watch>) -> bool {
    let pruned = shared.table.with(pid, |t| {
        t.header().with_aux(|a| {
            // Checked under the aux lock: teardown leaves the table before
            // it takes this list, so either it sees the watch or we see it
            // gone.
            shared.table.contains(pid).then(|| a.calls.push(watch))
        })
    });
    match pruned.flatten() {
        Some(pruned) => {
            drop(pruned);
            true
        }
        None => false,
    }
}

/// Teardown: completes every call waiting on the process with `reason`.
/// Runs after the process left the table and released its names.
pub(crate) fn release_watchers(task: &TaskRef, reason: ExitReason) {
    let list = task
        .header()
        .aux
        .lock()
        .as_mut()
        .map(|a| std::mem::take(&mut a.calls.list));
    for w in list.into_iter().flatten() {
        w.exited(reason);
    }
}

thread_local! {
    /// `ReplyTo`s dropped unanswered during the current process run.
    static DEFERRED: RefCell<Vec<Arc<dyn Watch>>> = const { RefCell::new(Vec::new()) };
}

/// Answers `NoReply` for the `ReplyTo`s dropped during the run that just
/// ended on this thread (see the parent module).
pub(crate) fn run_deferred() {
    loop {
        let batch = DEFERRED
            .try_with(|d| std::mem::take(&mut *d.borrow_mut()))
            .unwrap_or_default();
        if batch.is_empty() {
            return;
        }
        for w in batch {
            w.no_reply();
        }
    }
}

/// The right to answer one call. `Send + 'static`: it may be stored and
/// answered later, from any process or thread. Dropping it unanswered
/// fails the call with [`CallError::NoReply`].
pub struct ReplyTo<R: Send + 'static> {
    /// `None` once answered (or disarmed).
    slot: Option<Arc<Slot<Outcome<R>>>>,
}

impl<R: Send + 'static> fmt::Debug for ReplyTo<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplyTo")
            .field("answered", &self.slot.is_none())
            .finish()
    }
}

impl<R: Send + 'static> ReplyTo<R> {
    /// Answers the call. False when the caller no longer waits (it timed
    /// out, was dropped, or the callee's exit was reported first); `reply`
    /// is then dropped here.
    pub fn reply(mut self, reply: R) -> bool {
        let slot = self.slot.take().expect("a ReplyTo is answered once");
        slot.complete(Ok(reply)).is_ok()
    }

    /// Whether the caller still waits for this answer.
    pub fn is_waiting(&self) -> bool {
        self.slot.as_ref().is_some_and(|s| !s.is_settled())
    }

    /// Forgets the call without answering it (used when the request never
    /// reached the callee: the call reports that itself).
    fn disarm(&mut self) {
        self.slot = None;
    }
}

impl<R: Send + 'static> Drop for ReplyTo<R> {
    fn drop(&mut self) {
        let Some(slot) = self.slot.take() else {
            return;
        };
        let watch: Arc<dyn Watch> = slot;
        if current::in_process() {
            // Answered when this run ends, after any exit it causes.
            if let Ok(()) = DEFERRED.try_with(|d| d.borrow_mut().push(watch.clone())) {
                return;
            }
        }
        watch.no_reply();
    }
}

/// A call as the callee receives it: a user message of this type.
///
/// Answer it with [`reply`](Self::reply), or take it apart with
/// [`into_parts`](Self::into_parts) to keep the [`ReplyTo`] and answer
/// later. Dropping it unanswered fails the call with
/// [`CallError::NoReply`].
pub struct Request<Q, R: Send + 'static> {
    /// Dropped first: if `Q`'s destructor panics, the call is still
    /// answered (as `NoReply`, or with the exit that panic causes).
    reply: ReplyTo<R>,
    /// The request itself.
    body: Q,
    /// The calling process, if the call came from one.
    caller: Option<Pid>,
}

impl<Q, R: Send + 'static> fmt::Debug for Request<Q, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request")
            .field("body", &std::any::type_name::<Q>())
            .field("caller", &self.caller)
            .finish()
    }
}

impl<Q, R: Send + 'static> Request<Q, R> {
    /// The request.
    pub fn body(&self) -> &Q {
        &self.body
    }

    /// The calling process, or `None` when the call came from outside any
    /// process (`block_on`).
    pub fn caller(&self) -> Option<Pid> {
        self.caller
    }

    /// The request and the right to answer it, to be answered later.
    pub fn into_parts(self) -> (Q, ReplyTo<R>) {
        (self.body, self.reply)
    }

    /// Answers the call; false when the caller no longer waits.
    pub fn reply(self, reply: R) -> bool {
        self.reply.reply(reply)
    }
}

impl Runtime {
    /// Sends `request` to `pid` as a [`Request<Q, R>`] and waits for its
    /// reply, at most `timeout` (`Duration::MAX`: as long as it takes).
    /// Usable from a process or from [`block_on`](Self::block_on).
    ///
    /// Fails with [`CallError::NoProc`] at once when `pid` is not alive,
    /// [`CallError::Exited`] when it ends before answering,
    /// [`CallError::NoReply`] when the request is dropped unanswered,
    /// [`CallError::SelfCall`] when a process calls itself, and
    /// [`CallError::Timeout`]. Nothing of the call ever reaches the
    /// caller's mailbox, also when the reply comes too late. See the
    /// [`call`](crate::call) module for the protocol.
    pub fn call<Q, R>(&self, pid: Pid, request: Q, timeout: Duration) -> Call<Q, R>
    where
        Q: Send + 'static,
        R: Send + 'static,
    {
        Call {
            rt: self.weak_handle(),
            pid,
            stage: Stage::Start { request, timeout },
        }
    }
}

/// The future of [`Runtime::call`]. The request is sent when it is first
/// polled; dropping it gives up the call.
#[must_use = "futures do nothing unless awaited"]
pub struct Call<Q, R> {
    rt: Runtime,
    /// The callee.
    pid: Pid,
    stage: Stage<Q, R>,
}

enum Stage<Q, R> {
    /// Not yet polled.
    Start { request: Q, timeout: Duration },
    /// Sent; waiting for the slot.
    Wait {
        slot: Arc<Slot<Outcome<R>>>,
        /// `None`: no timeout.
        deadline: Option<Instant>,
        /// The armed timeout and the waker it wakes.
        timer: Option<(Arc<Entry>, Waker)>,
    },
    /// Finished.
    Done,
}

impl<Q, R> fmt::Debug for Call<Q, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let stage = match self.stage {
            Stage::Start { .. } => "start",
            Stage::Wait { .. } => "waiting",
            Stage::Done => "done",
        };
        f.debug_struct("Call")
            .field("pid", &self.pid)
            .field("stage", &stage)
            .finish()
    }
}

// The request is never pinned: it is moved into a message on first poll.
impl<Q, R> Unpin for Call<Q, R> {}

impl<Q, R> Call<Q, R>
where
    Q: Send + 'static,
    R: Send + 'static,
{
    /// Places the watch and sends the request; `Err` ends the call at once.
    fn start(&mut self, request: Q, timeout: Duration) -> Result<Stage<Q, R>, CallError> {
        let shared = &self.rt.shared;
        let caller = current::pid_in(shared);
        if caller == Some(self.pid) {
            return Err(CallError::SelfCall);
        }
        let slot: Arc<Slot<Outcome<R>>> = Arc::new(Slot::new());
        if !place_watch(shared, self.pid, slot.clone()) {
            return Err(CallError::NoProc);
        }
        let req = Request {
            reply: ReplyTo {
                slot: Some(slot.clone()),
            },
            body: request,
            caller,
        };
        match self.rt.try_send(self.pid, req) {
            Ok(()) => {}
            // The callee is ending: its watch reports the reason.
            Err(SendError::NoProc(mut req)) => req.reply.disarm(),
            Err(SendError::Full(mut req)) => {
                req.reply.disarm();
                slot.close();
                return Err(CallError::NoReply);
            }
        }
        Ok(Stage::Wait {
            slot,
            deadline: Instant::now().checked_add(timeout),
            timer: None,
        })
    }

    fn disarm_timer(&self, timer: Option<(Arc<Entry>, Waker)>) {
        if let Some((entry, _)) = timer {
            self.rt.shared.timers.cancel(&entry);
        }
    }
}

impl<Q, R> Future for Call<Q, R>
where
    Q: Send + 'static,
    R: Send + 'static,
{
    type Output = Result<R, CallError>;

    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if let Stage::Start { .. } = this.stage {
            let Stage::Start { request, timeout } = std::mem::replace(&mut this.stage, Stage::Done)
            else {
                unreachable!()
            };
            match this.start(request, timeout) {
                Ok(stage) => this.stage = stage,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        let Stage::Wait {
            slot,
            deadline,
            timer,
        } = &mut this.stage
        else {
            panic!("Call polled after completion");
        };
        if let Poll::Ready(outcome) = slot.poll(cx.waker()) {
            let timer = timer.take();
            this.stage = Stage::Done;
            this.disarm_timer(timer);
            return Poll::Ready(outcome);
        }
        if let Some(deadline) = *deadline {
            if Instant::now() >= deadline {
                let outcome = slot.close();
                let timer = timer.take();
                this.stage = Stage::Done;
                this.disarm_timer(timer);
                return Poll::Ready(outcome.unwrap_or(Err(CallError::Timeout)));
            }
            let armed = timer
                .as_ref()
                .is_some_and(|(e, w)| !e.has_fired() && w.will_wake(cx.waker()));
            if !armed {
                if let Some((old, _)) = timer.take() {
                    this.rt.shared.timers.cancel(&old);
                }
                let entry = this
                    .rt
                    .shared
                    .add_timer(deadline, Action::Wake(cx.waker().clone()));
                *timer = Some((entry, cx.waker().clone()));
            }
        }
        Poll::Pending
    }
}

impl<Q, R> Drop for Call<Q, R> {
    fn drop(&mut self) {
        if let Stage::Wait { slot, timer, .. } = &mut self.stage {
            // A reply that already arrived is dropped here, in the caller.
            drop(slot.close());
            if let Some((entry, _)) = timer.take() {
                self.rt.shared.timers.cancel(&entry);
            }
        }
    }
}
