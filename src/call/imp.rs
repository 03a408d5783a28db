//! The call future, the callee's side ([`Request`], [`ReplyTo`]) and the
//! exit watches (see the parent module for the protocol).

use super::slot::Slot;
use crate::mailbox::Message;
use crate::process::{ExitReason, Pid};
use crate::runtime::TaskRef;
use crate::runtime::context as current;
use crate::runtime::{Refused, Runtime, Shared};
use crate::time::wheel::Entry;
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

/// One call's shared state: the reply slot, and who called (kept here
/// rather than in the [`Request`], so a request with a small body fits a
/// message inline).
struct Pending<R> {
    slot: Slot<Outcome<R>>,
    /// The calling process, if any.
    caller: Option<Pid>,
}

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

impl<R: Send> Watch for Pending<R> {
    fn exited(&self, reason: ExitReason) {
        let _ = self.slot.complete(Err(CallError::Exited(reason)));
    }

    fn no_reply(&self) {
        let _ = self.slot.complete(Err(CallError::NoReply));
    }

    fn is_settled(&self) -> bool {
        self.slot.is_settled()
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
        // A callee served one call at a time holds only the last one's
        // watch: the calls before it settled.
        while self.list.last().is_some_and(|l| l.is_settled()) {
            pruned.extend(self.list.pop());
        }
        if self.list.len() >= self.prune_at {
            // Amortised O(1) per push: the list is scanned only once it has
            // doubled since the last scan.
            let mut i = 0;
            while i < self.list.len() {
                if self.list[i].is_settled() {
                    pruned.push(self.list.swap_remove(i));
                } else {
                    i += 1;
                }
            }
            self.prune_at = (self.list.len() * 2).max(8);
        }
        self.list.push(w);
        pruned
    }
}

/// How [`send_request`] went.
enum Sent<Q, R: Send + 'static> {
    /// In the callee's mailbox, its watch placed.
    Delivered,
    /// The callee is not alive; nothing was placed.
    NoProc(Request<Q, R>),
    /// The watch is placed but the mailbox is closed: the callee is ending,
    /// and its watch will report why.
    Closing(Request<Q, R>),
    /// The watch is placed but the bounded mailbox is full.
    Full(Request<Q, R>),
}

/// Places `req`'s watch on `pid` and delivers `req`, in one table lookup.
fn send_request<Q, R>(shared: &Shared, pid: Pid, req: Request<Q, R>) -> Sent<Q, R>
where
    Q: Send + 'static,
    R: Send + 'static,
{
    let watch: Arc<dyn Watch> = req.reply.pending.clone().expect("armed");
    let mut req = Some(req);
    let sent = shared.table.with(pid, |t| {
        let h = t.header();
        let pruned = shared.table.lock_alive(h).map(|mut a| a.calls.push(watch));
        let req = req.take().expect("taken once");
        let Some(pruned) = pruned else {
            return Sent::NoProc(req);
        };
        drop(pruned);
        let back = |m: Message| match m.downcast::<Request<Q, R>>() {
            Ok(req) => req,
            Err(_) => unreachable!("the request comes back as itself"),
        };
        match shared.send_message(h, Message::new(req)) {
            Ok(()) => Sent::Delivered,
            Err(Refused::Full(m)) => Sent::Full(back(m)),
            Err(Refused::Closed(m)) => Sent::Closing(back(m)),
        }
    });
    sent.unwrap_or_else(|| Sent::NoProc(req.take().expect("not taken")))
}

/// Teardown: completes every call waiting on the process with `reason`.
/// Runs after the process left the table and released its names.
pub(crate) fn release_watchers(task: &TaskRef, reason: ExitReason) {
    let list = match task.header().aux.lock().as_mut() {
        Some(a) if !a.calls.list.is_empty() => std::mem::take(&mut a.calls.list),
        _ => return,
    };
    for w in list {
        w.exited(reason);
        // Normally the last reference to a settled call holds no value; a
        // caller that forgot its finished `Call` may have left a reply in
        // it, whose destructor is user code with no process to blame.
        if !crate::guard::drop_caught(w) {
            task.header().rt.shared.note_unowned_panic();
        }
    }
}

crate::loom::thread_local! {
    /// `ReplyTo`s dropped unanswered during the current process run; the
    /// run's end looks here only when `current` was told (`note_deferred`).
    static DEFERRED: RefCell<Vec<Arc<dyn Watch>>> = const { RefCell::new(Vec::new()) };
}

/// Answers `NoReply` for the `ReplyTo`s dropped during the run that just
/// ended on this thread (see the parent module).
#[cold]
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
///
/// # Examples
///
/// ```
/// use rusm_otp::{ReplyTo, Request, Runtime};
/// use std::time::Duration;
///
/// let rt = Runtime::builder().workers(2).build();
/// // A front process hands each request's `ReplyTo` to a worker, which answers.
/// let worker = rt.spawn(|mut ctx| async move {
///     let m = ctx.recv().await.message().unwrap();
///     let (n, reply_to) = *m.downcast::<Box<(u64, ReplyTo<u64>)>>().unwrap();
///     reply_to.reply(n * n);
/// });
/// let worker_pid = worker.pid();
/// let front = rt.spawn(move |mut ctx| async move {
///     // The front stays up: a call fails if its callee ends first.
///     while let Some(m) = ctx.recv().await.message() {
///         let (n, reply_to) = m.downcast::<Request<u64, u64>>().unwrap().into_parts();
///         ctx.runtime().send(worker_pid, Box::new((n, reply_to)));
///     }
/// });
/// let answer = rt.call::<u64, u64>(front.pid(), 12, Duration::from_secs(5));
/// assert_eq!(rt.block_on(answer), Ok(144));
/// ```
pub struct ReplyTo<R: Send + 'static> {
    /// `None` once answered (or disarmed).
    pending: Option<Arc<Pending<R>>>,
}

impl<R: Send + 'static> fmt::Debug for ReplyTo<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplyTo")
            .field("answered", &self.pending.is_none())
            .finish()
    }
}

impl<R: Send + 'static> ReplyTo<R> {
    /// Answers the call. False when the caller no longer waits (it timed
    /// out, was dropped, or the callee's exit was reported first); `reply`
    /// is then dropped here.
    pub fn reply(mut self, reply: R) -> bool {
        let pending = self.pending.take().expect("a ReplyTo is answered once");
        pending.slot.complete(Ok(reply)).is_ok()
    }

    /// Whether the caller still waits for this answer.
    pub fn is_waiting(&self) -> bool {
        self.pending.as_ref().is_some_and(|p| !p.slot.is_settled())
    }

    /// Forgets the call without answering it (used when the request never
    /// reached the callee: the call reports that itself).
    fn disarm(&mut self) {
        self.pending = None;
    }
}

impl<R: Send + 'static> Drop for ReplyTo<R> {
    fn drop(&mut self) {
        let Some(pending) = self.pending.take() else {
            return;
        };
        let watch: Arc<dyn Watch> = pending;
        if current::in_process() {
            // Answered when this run ends, after any exit it causes.
            if let Ok(()) = DEFERRED.try_with(|d| d.borrow_mut().push(watch.clone())) {
                current::note_deferred();
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
///
/// # Examples
///
/// ```
/// use rusm_otp::{Received, Request, Runtime};
/// use std::time::Duration;
///
/// let rt = Runtime::builder().workers(2).build();
/// let greeter = rt.spawn(|mut ctx| async move {
///     let m = ctx.recv().await.message().unwrap();
///     let req = m.downcast::<Request<String, String>>().unwrap();
///     // A call from outside any process has no caller pid.
///     assert_eq!(req.caller(), None);
///     let (name, reply_to) = req.into_parts();
///     reply_to.reply(format!("hello, {name}"));
/// });
/// let answer = rt.call::<String, String>(greeter.pid(), "Ada".into(), Duration::from_secs(5));
/// assert_eq!(rt.block_on(answer).unwrap(), "hello, Ada");
/// ```
pub struct Request<Q, R: Send + 'static> {
    /// Dropped first: if `Q`'s destructor panics, the call is still
    /// answered (as `NoReply`, or with the exit that panic causes).
    reply: ReplyTo<R>,
    /// The request itself.
    body: Q,
}

impl<Q, R: Send + 'static> fmt::Debug for Request<Q, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request")
            .field("body", &std::any::type_name::<Q>())
            .field("caller", &self.caller())
            .finish()
    }
}

impl<Q, R: Send + 'static> Request<Q, R> {
    fn pending(&self) -> &Pending<R> {
        self.reply
            .pending
            .as_deref()
            .expect("a request's ReplyTo is armed")
    }

    /// The request.
    pub fn body(&self) -> &Q {
        &self.body
    }

    /// The calling process, or `None` when the call came from outside any
    /// process (`block_on`).
    pub fn caller(&self) -> Option<Pid> {
        self.pending().caller
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
    ///
    /// # Examples
    ///
    /// ```
    /// use rusm_otp::{CallError, Received, Request, Runtime};
    /// use std::time::Duration;
    ///
    /// let rt = Runtime::builder().workers(2).build();
    /// let adder = rt.spawn(|mut ctx| async move {
    ///     while let Received::Message(m) = ctx.recv().await {
    ///         if let Ok(req) = m.downcast::<Request<(u32, u32), u32>>() {
    ///             let (a, b) = *req.body();
    ///             req.reply(a + b);
    ///         }
    ///     }
    /// });
    /// let t = Duration::from_secs(5);
    /// // The request's type is part of the protocol: `(u32, u32)`, not the
    /// // `(i32, i32)` that bare literals would make (dropped unanswered).
    /// assert_eq!(rt.block_on(rt.call::<(u32, u32), u32>(adder.pid(), (2, 3), t)), Ok(5));
    /// adder.kill();
    /// let pid = adder.pid();
    /// rt.block_on(adder.join());
    /// // A callee that is gone answers at once, without waiting for the timeout.
    /// let late = rt.call::<(u32, u32), u32>(pid, (2, 3), t);
    /// assert_eq!(rt.block_on(late), Err(CallError::NoProc));
    /// ```
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
///
/// The first poll sends the request and yields once (the callee, woken by
/// the request, usually runs and answers before this call is polled
/// again); only a call still waiting at its second poll registers its
/// waker and arms a timer, counting the timeout from there. So a prompt
/// call never touches the timer wheel.
#[must_use = "futures do nothing unless awaited"]
pub struct Call<Q, R: Send + 'static> {
    rt: Runtime,
    /// The callee.
    pid: Pid,
    stage: Stage<Q, R>,
}

enum Stage<Q, R: Send + 'static> {
    /// Not yet polled.
    Start { request: Q, timeout: Duration },
    /// Sent; waiting for the slot.
    Wait {
        pending: Arc<Pending<R>>,
        timeout: Timeout,
    },
    /// Finished.
    Done,
}

/// A waiting call's timeout.
enum Timeout {
    /// Not armed yet: the call has not waited, or has yielded once.
    Lazy { timeout: Duration, yielded: bool },
    /// No deadline (too far to represent).
    Never,
    /// Armed: the deadline, and its timer.
    Armed {
        deadline: Instant,
        timer: Option<Arc<Entry>>,
    },
}

impl<Q, R: Send + 'static> fmt::Debug for Call<Q, R> {
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
impl<Q, R: Send + 'static> Unpin for Call<Q, R> {}

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
        let pending = Arc::new(Pending {
            slot: Slot::new(),
            caller,
        });
        let req = Request {
            reply: ReplyTo {
                pending: Some(pending.clone()),
            },
            body: request,
        };
        match send_request(shared, self.pid, req) {
            Sent::Delivered => {}
            Sent::NoProc(mut req) => {
                req.reply.disarm();
                return Err(CallError::NoProc);
            }
            // The callee is ending: its watch reports the reason.
            Sent::Closing(mut req) => req.reply.disarm(),
            Sent::Full(mut req) => {
                req.reply.disarm();
                pending.slot.close();
                return Err(CallError::NoReply);
            }
        }
        Ok(Stage::Wait {
            pending,
            timeout: Timeout::Lazy {
                timeout,
                yielded: false,
            },
        })
    }
}

impl Timeout {
    /// Keeps the deadline watched under `waker`; true when it has passed.
    fn check(&mut self, shared: &Shared, waker: &Waker) -> bool {
        if let Timeout::Lazy { timeout, .. } = self {
            *self = match Instant::now().checked_add(*timeout) {
                Some(deadline) => Timeout::Armed {
                    deadline,
                    timer: None,
                },
                None => Timeout::Never,
            };
        }
        let Timeout::Armed { deadline, timer } = self else {
            return false;
        };
        if Instant::now() >= *deadline {
            return true;
        }
        match timer {
            // Re-polled under another waker: the timer must wake that one.
            Some(e) if e.is_pending() => e.set_waker(waker),
            _ => *timer = crate::time::add_wake(shared, Some(*deadline), waker),
        }
        false
    }

    fn disarm(&mut self, shared: &Shared) {
        if let Timeout::Armed { timer, .. } = self {
            if let Some(entry) = timer.take() {
                // The waker it held is dropped here, outside the wheel's locks.
                drop(shared.timers.cancel(&entry));
            }
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
        let Stage::Wait { pending, timeout } = &mut this.stage else {
            panic!("Call polled after completion");
        };
        let shared = &this.rt.shared;
        if let Timeout::Lazy { yielded, .. } = timeout {
            if !*yielded {
                // The first wait: no waker registered, no timer armed; the
                // callee, woken by the request, usually answers before this
                // call is polled again.
                *yielded = true;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
        }
        let outcome = match pending.slot.poll(cx.waker()) {
            Poll::Ready(outcome) => outcome,
            Poll::Pending => {
                if !timeout.check(shared, cx.waker()) {
                    return Poll::Pending;
                }
                pending.slot.close().unwrap_or(Err(CallError::Timeout))
            }
        };
        timeout.disarm(shared);
        this.stage = Stage::Done;
        Poll::Ready(outcome)
    }
}

impl<Q, R: Send + 'static> Drop for Call<Q, R> {
    fn drop(&mut self) {
        if let Stage::Wait { pending, timeout } = &mut self.stage {
            // A reply that already arrived is dropped here, in the caller.
            drop(pending.slot.close());
            timeout.disarm(&self.rt.shared);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settled() -> Arc<dyn Watch> {
        let p = Arc::new(Pending::<u8> {
            slot: Slot::new(),
            caller: None,
        });
        let _ = p.slot.complete(Ok(1));
        p
    }

    /// A long-lived callee keeps O(live calls) watches, however many calls
    /// it has answered.
    #[test]
    fn settled_watches_are_pruned_as_the_list_doubles() {
        let mut w = Watchers::default();
        let live: Arc<dyn Watch> = Arc::new(Pending::<u8> {
            slot: Slot::new(),
            caller: None,
        });
        w.push(live.clone());
        let mut pruned = 0;
        for _ in 0..10_000 {
            pruned += w.push(settled()).len();
            assert!(w.list.len() <= 16, "{} watches kept", w.list.len());
        }
        assert!(pruned >= 10_000 - 16);
        assert!(
            w.list.iter().any(|x| Arc::ptr_eq(x, &live)),
            "the live one stays"
        );
    }

    /// A callee answering one call at a time holds the last call's watch
    /// only, not a few settled ones until the next scan.
    #[test]
    fn a_callee_served_one_call_at_a_time_keeps_one_watch() {
        let mut w = Watchers::default();
        for k in 0..100 {
            let p = Arc::new(Pending::<u8> {
                slot: Slot::new(),
                caller: None,
            });
            let pruned = w.push(p.clone());
            assert_eq!(pruned.len(), usize::from(k > 0), "the previous one goes");
            assert_eq!(w.list.len(), 1);
            let _ = p.slot.complete(Ok(1));
        }
    }
}
