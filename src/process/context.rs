//! [`Context`]: the process body's handle on itself, and its receives.
//!
//! The context owns the mailbox's single consumer (a
//! [`Consumer`], made once per process, in [`Context::new`]): it is not
//! `Clone`, and every receive borrows it mutably, so at most one receive
//! runs at a time. All three receive futures (`Recv`, `RecvMatch`,
//! `RecvTimeout`) are polled by one function, [`poll_receive`], and differ
//! only in how they take an item ([`Source`]) and when they give up
//! ([`Limit`]). A
//! receive that finds nothing parks the mailbox (see
//! [`crate::mailbox::queue`]) and returns `Pending`; the send that finds the
//! park tag wakes the process. When the receive is polled under the
//! process's own waker (the usual case), nothing else is stored: the sender
//! schedules the process directly. Under any other waker (a combinator that
//! gives its children their own), the waker is kept in the process's aux
//! data and the park tag says so.
//!
//! # A context that outlives its process
//!
//! `Context` is `Send`, so a body may move it elsewhere (another thread,
//! another process) and the process may end while the context is still in
//! use. The mailbox queue is built for that (see the queue's module docs):
//! teardown closes the queue under a running consumer, and whoever lets go
//! of the mailbox last (teardown or this context's drop) frees the messages
//! the context had collected. A receive on a context whose process has
//! ended never waits: `try_recv` returns `None`, `recv_timeout` returns
//! `None` at once whatever its timeout, and `recv`/`recv_match`, which have
//! no way to say "nothing", panic with a message saying the process has
//! ended. A receive parked under a foreign waker when the process ends is
//! woken by the teardown so that it sees this.

use super::Pid;
use crate::mailbox::Received;
use crate::mailbox::queue::{Consumer, Drain, Owner, Park, Scan};
use crate::runtime::Header;
use crate::runtime::Runtime;
use crate::runtime::TaskRef;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Poll, Waker};

/// The process body's handle on its own process: its pid, its runtime and
/// its mailbox. Owned by the body; exactly one per process.
pub struct Context {
    /// The mailbox's one consumer, which also holds the process.
    mailbox: Consumer<Process>,
}

/// The context's reference to its process (one word, as the context lives
/// in the process's future and so counts in every process's size).
pub(crate) struct Process(TaskRef);

impl Process {
    pub(crate) fn header(&self) -> &Header {
        self.0.header()
    }
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context").field("pid", &self.pid()).finish()
    }
}

// SAFETY: a reference to a task keeps its header, and so its mailbox,
// alive, and `header()` always returns that one header.
unsafe impl Owner for Process {
    type Item = Received;

    fn queue(&self) -> &crate::mailbox::queue::Queue<Received> {
        &self.header().mailbox
    }

    /// Reached only when the process has ended already (the queue was
    /// closed with the context still holding deferred messages). Its
    /// teardown has settled its exit reason by then, so a destructor that
    /// panics here has no process left to crash: count it.
    fn drop_left(&self, left: Drain<Received>) {
        for item in left {
            if !crate::guard::drop_caught(item) {
                self.header().rt.shared.note_unowned_panic();
            }
        }
    }
}

/// The panic of a receive that cannot return "nothing" on an ended process.
#[cold]
#[track_caller]
fn ended(pid: Pid) -> ! {
    panic!("receive on the Context of {pid:?}: the process has ended, its mailbox is closed")
}

impl Context {
    /// The context of `task`, its mailbox's consumer.
    ///
    /// # Safety
    /// Made once per process: no other context of `task` ever exists.
    pub(crate) unsafe fn new(task: TaskRef) -> Context {
        Context {
            // SAFETY: the one context is the one consumer (our contract).
            mailbox: unsafe { Consumer::new(Process(task)) },
        }
    }

    /// This process's pid.
    pub fn pid(&self) -> Pid {
        self.mailbox.owner().header().pid
    }

    /// The runtime this process runs on. This handle does not keep the
    /// runtime running once every handle its owner holds is dropped.
    pub fn runtime(&self) -> &Runtime {
        &self.mailbox.owner().header().rt
    }

    /// Receives the oldest message or signal, parking at no CPU cost until
    /// one arrives. Cancel-safe: dropping the future loses nothing.
    ///
    /// # Panics
    ///
    /// When the process has ended (only a context moved out of its process
    /// can see that): its mailbox is closed, nothing can ever arrive.
    ///
    /// # Examples
    ///
    /// ```
    /// use rusm_otp::{ExitReason, Received, Runtime};
    ///
    /// let rt = Runtime::builder().workers(2).build();
    /// let h = rt.spawn(|mut ctx| async move {
    ///     let mut sum = 0;
    ///     // Messages come in the order each sender sent them.
    ///     while let Received::Message(m) = ctx.recv().await {
    ///         match m.downcast::<u64>() {
    ///             Ok(n) => sum += n,
    ///             Err(_) => break,
    ///         }
    ///     }
    ///     assert_eq!(sum, 6);
    /// });
    /// for n in [1u64, 2, 3] {
    ///     rt.send(h.pid(), n);
    /// }
    /// rt.send(h.pid(), "done");
    /// assert_eq!(rt.block_on(h.join()), ExitReason::Normal);
    /// ```
    pub fn recv(&mut self) -> Recv<'_> {
        Recv {
            mailbox: &mut self.mailbox,
        }
    }

    /// Takes the oldest message or signal if there is one, without waiting.
    /// `None` once the process has ended, even for messages that arrived
    /// before.
    ///
    /// # Examples
    ///
    /// ```
    /// use rusm_otp::{ExitReason, Runtime};
    ///
    /// let rt = Runtime::builder().workers(2).build();
    /// let h = rt.spawn(|mut ctx| async move {
    ///     assert!(ctx.try_recv().is_none());
    ///     ctx.runtime().send(ctx.pid(), 1u8);
    ///     assert!(ctx.try_recv().is_some());
    /// });
    /// assert_eq!(rt.block_on(h.join()), ExitReason::Normal);
    /// ```
    pub fn try_recv(&mut self) -> Option<Received> {
        self.mailbox.pop()
    }

    /// Selective receive: the oldest item `pred` accepts. Items it rejects
    /// stay queued in arrival order, and are not examined again by this
    /// receive when new items arrive.
    ///
    /// # Panics
    ///
    /// As [`recv`](Self::recv), when the process has ended.
    ///
    /// # Examples
    ///
    /// ```
    /// use rusm_otp::{ExitReason, Received, Runtime};
    ///
    /// let rt = Runtime::builder().workers(2).build();
    /// let h = rt.spawn(|mut ctx| async move {
    ///     // The urgent message first, wherever it is in the mailbox...
    ///     let urgent = ctx
    ///         .recv_match(|r| matches!(r, Received::Message(m) if m.is::<&str>()))
    ///         .await;
    ///     assert_eq!(urgent.message().unwrap().downcast::<&str>().unwrap(), "urgent");
    ///     // ...while the others stay queued, in order.
    ///     let next = ctx.recv().await.message().unwrap();
    ///     assert_eq!(next.downcast::<u32>().unwrap(), 1);
    /// });
    /// rt.send(h.pid(), 1u32);
    /// rt.send(h.pid(), "urgent");
    /// assert_eq!(rt.block_on(h.join()), ExitReason::Normal);
    /// ```
    pub fn recv_match<P>(&mut self, pred: P) -> RecvMatch<'_, P>
    where
        P: FnMut(&Received) -> bool,
    {
        RecvMatch {
            scan: self.mailbox.scan(pred),
        }
    }

    /// A selective receive's scan of this mailbox, for receives defined
    /// elsewhere (with a timeout).
    pub(crate) fn scan<P>(&mut self, pred: P) -> Scan<'_, Process, P>
    where
        P: FnMut(&Received) -> bool,
    {
        self.mailbox.scan(pred)
    }
}

/// How a receive takes its item from the mailbox: the oldest one (the
/// consumer itself) or the first its predicate accepts (a scan).
pub(crate) trait Source {
    /// Takes the item, if there is one now.
    fn take(&mut self) -> Option<Received>;
    /// [`Consumer::park`].
    fn park(&mut self, foreign: bool) -> Park;
    /// [`Consumer::unpark`].
    fn unpark(&mut self);
    /// The process.
    fn task(&self) -> &Header;
}

impl Source for Consumer<Process> {
    fn take(&mut self) -> Option<Received> {
        self.pop()
    }
    fn park(&mut self, foreign: bool) -> Park {
        Consumer::park(self, foreign)
    }
    fn unpark(&mut self) {
        Consumer::unpark(self)
    }
    fn task(&self) -> &Header {
        self.owner().header()
    }
}

impl<P> Source for Scan<'_, Process, P>
where
    P: FnMut(&Received) -> bool,
{
    fn take(&mut self) -> Option<Received> {
        self.find()
    }
    fn park(&mut self, foreign: bool) -> Park {
        Scan::park(self, foreign)
    }
    fn unpark(&mut self) {
        Scan::unpark(self)
    }
    fn task(&self) -> &Header {
        self.owner().header()
    }
}

/// When a receive gives up waiting.
pub(crate) trait Limit {
    /// Called before each park: arms a wake of `waker` at the deadline, or
    /// says the receive must end now with nothing (false).
    fn arm(&mut self, rt: &Runtime, waker: &Waker) -> bool;
    /// The receive is over (an item, nothing, or dropped): cancels any wake
    /// armed.
    fn disarm(&mut self, rt: &Runtime);
}

/// No limit: wait for ever.
pub(crate) struct Forever;

impl Limit for Forever {
    fn arm(&mut self, _: &Runtime, _: &Waker) -> bool {
        true
    }
    fn disarm(&mut self, _: &Runtime) {}
}

/// How a receive ended.
pub(crate) enum Outcome {
    /// The item it took.
    Item(Received),
    /// Its limit passed first.
    TimedOut,
    /// The process has ended: nothing can ever arrive.
    Ended,
}

/// The one poll of every receive (`Recv`, `RecvMatch`, `RecvTimeout`):
/// take an item if there is one, else park the mailbox under this poll's
/// waker, unless something arrived meanwhile, the limit has passed, or the
/// process has ended. Under the process's own waker nothing is stored (the
/// sender schedules the process); under any other the waker is kept in the
/// aux data and the park tag says so.
pub(crate) fn poll_receive(
    src: &mut impl Source,
    limit: &mut impl Limit,
    cx: &mut std::task::Context<'_>,
) -> Poll<Outcome> {
    if !crate::coop::consume() {
        cx.waker().wake_by_ref();
        return Poll::Pending;
    }
    loop {
        if let Some(item) = src.take() {
            limit.disarm(&src.task().rt);
            return Poll::Ready(Outcome::Item(item));
        }
        let waker = cx.waker();
        let h = src.task();
        if !limit.arm(&h.rt, waker) {
            limit.disarm(&h.rt);
            src.unpark();
            return Poll::Ready(Outcome::TimedOut);
        }
        let own = std::ptr::eq(waker.data(), std::ptr::from_ref(h).cast::<()>());
        if !own {
            h.with_aux(|a| match &mut a.foreign_waker {
                Some(w) => w.clone_from(waker),
                slot => *slot = Some(waker.clone()),
            });
        }
        match src.park(!own) {
            Park::Parked => return Poll::Pending,
            Park::Arrived => {}
            Park::Closed => {
                limit.disarm(&src.task().rt);
                return Poll::Ready(Outcome::Ended);
            }
        }
    }
}

/// What a receive's `Drop` does: nothing left parked, no wake left armed.
pub(crate) fn drop_receive(src: &mut impl Source, limit: &mut impl Limit) {
    limit.disarm(&src.task().rt);
    src.unpark();
}

/// The future of [`Context::recv`].
#[must_use = "futures do nothing unless awaited"]
pub struct Recv<'a> {
    mailbox: &'a mut Consumer<Process>,
}

impl fmt::Debug for Recv<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Recv")
            .field("pid", &self.mailbox.owner().header().pid)
            .finish()
    }
}

impl Future for Recv<'_> {
    type Output = Received;

    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<Received> {
        let mailbox = &mut *self.get_mut().mailbox;
        poll_receive(mailbox, &mut Forever, cx).map(|o| match o {
            Outcome::Item(item) => item,
            Outcome::TimedOut | Outcome::Ended => ended(mailbox.owner().header().pid),
        })
    }
}

impl Drop for Recv<'_> {
    fn drop(&mut self) {
        drop_receive(self.mailbox, &mut Forever);
    }
}

/// The future of [`Context::recv_match`].
#[must_use = "futures do nothing unless awaited"]
pub struct RecvMatch<'a, P> {
    /// Holds the mailbox, and where this receive stopped scanning.
    scan: Scan<'a, Process, P>,
}

impl<P> fmt::Debug for RecvMatch<'_, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecvMatch")
            .field("pid", &self.scan.owner().header().pid)
            .finish()
    }
}

impl<P> Unpin for RecvMatch<'_, P> {}

impl<P> Future for RecvMatch<'_, P>
where
    P: FnMut(&Received) -> bool,
{
    type Output = Received;

    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<Received> {
        let scan = &mut self.get_mut().scan;
        poll_receive(scan, &mut Forever, cx).map(|o| match o {
            Outcome::Item(item) => item,
            Outcome::TimedOut | Outcome::Ended => ended(scan.owner().header().pid),
        })
    }
}

impl<P> Drop for RecvMatch<'_, P> {
    fn drop(&mut self) {
        self.scan.unpark();
    }
}
