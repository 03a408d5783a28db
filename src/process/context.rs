//! [`Context`]: the process body's handle on itself, and its receives.
//!
//! The context is the mailbox's single consumer: it is not `Clone`, and every
//! receive borrows it mutably, so at most one receive runs at a time. A
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
use crate::mailbox::queue::{Cursor, Park};
use crate::runtime::Runtime;
use crate::runtime::TaskRef;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Poll, Waker};

/// The process body's handle on its own process: its pid, its runtime and
/// its mailbox. Owned by the body; exactly one per process.
pub struct Context {
    /// The process itself.
    task: TaskRef,
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context").field("pid", &self.pid()).finish()
    }
}

impl Drop for Context {
    fn drop(&mut self) {
        let h = self.task.header();
        // SAFETY: the context is the mailbox's consumer and gives the role
        // up here, for good.
        let left = unsafe { h.mailbox.release_consumer() };
        // Non-empty only if the process has ended already (the queue was
        // closed with this context still holding deferred messages). Its
        // teardown has settled its exit reason by then, so a destructor that
        // panics here has no process left to crash: count it.
        for item in left {
            if !crate::guard::drop_caught(item) {
                h.rt.shared.note_unowned_panic();
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
    pub(crate) fn new(task: TaskRef) -> Context {
        Context { task }
    }

    /// This process's pid.
    pub fn pid(&self) -> Pid {
        self.task.header().pid
    }

    /// The runtime this process runs on. This handle does not keep the
    /// runtime running once every handle its owner holds is dropped.
    pub fn runtime(&self) -> &Runtime {
        &self.task.header().rt
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
        Recv { ctx: self }
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
        // SAFETY: `&mut self` makes this the mailbox's only consumer now.
        unsafe { self.task.header().mailbox.pop() }
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
            ctx: self,
            pred,
            cursor: Cursor::start(),
        }
    }

    /// Parks the mailbox under `waker`, unless something arrived first or
    /// the process has ended.
    pub(crate) fn park(&self, waker: &Waker) -> Park {
        let h = self.task.header();
        let own = std::ptr::eq(waker.data(), Arc::as_ptr(&self.task).cast::<()>());
        if !own {
            h.with_aux(|a| match &mut a.foreign_waker {
                Some(w) => w.clone_from(waker),
                slot => *slot = Some(waker.clone()),
            });
        }
        // SAFETY: the caller holds `&mut Context`: the only consumer.
        unsafe { h.mailbox.park(!own) }
    }

    /// Clears the park tag of a receive that ends without an item.
    pub(crate) fn unpark(&self) {
        // SAFETY: the caller holds `&mut Context`: the only consumer.
        unsafe { self.task.header().mailbox.unpark() }
    }

    pub(crate) fn pop(&mut self) -> Option<Received> {
        // SAFETY: `&mut self` makes this the mailbox's only consumer now.
        unsafe { self.task.header().mailbox.pop() }
    }

    pub(crate) fn find(
        &mut self,
        cursor: &mut Cursor,
        pred: impl FnMut(&Received) -> bool,
    ) -> Option<Received> {
        // SAFETY: `&mut self` makes this the only consumer; `cursor` belongs
        // to the one receive that borrows `self` (see `RecvMatch`).
        unsafe { self.task.header().mailbox.find(cursor, pred) }
    }
}

/// The future of [`Context::recv`].
#[must_use = "futures do nothing unless awaited"]
pub struct Recv<'a> {
    ctx: &'a mut Context,
}

impl fmt::Debug for Recv<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Recv")
            .field("pid", &self.ctx.pid())
            .finish()
    }
}

impl Future for Recv<'_> {
    type Output = Received;

    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<Received> {
        let ctx = &mut *self.get_mut().ctx;
        if !crate::coop::consume() {
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        loop {
            if let Some(item) = ctx.pop() {
                return Poll::Ready(item);
            }
            match ctx.park(cx.waker()) {
                Park::Parked => return Poll::Pending,
                Park::Arrived => {}
                Park::Closed => ended(ctx.pid()),
            }
        }
    }
}

impl Drop for Recv<'_> {
    fn drop(&mut self) {
        self.ctx.unpark();
    }
}

/// The future of [`Context::recv_match`].
#[must_use = "futures do nothing unless awaited"]
pub struct RecvMatch<'a, P> {
    ctx: &'a mut Context,
    pred: P,
    /// The last item this receive rejected; valid while it borrows `ctx`.
    cursor: Cursor,
}

impl<P> fmt::Debug for RecvMatch<'_, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecvMatch")
            .field("pid", &self.ctx.pid())
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
        let this = self.get_mut();
        if !crate::coop::consume() {
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        loop {
            if let Some(item) = this.ctx.find(&mut this.cursor, &mut this.pred) {
                return Poll::Ready(item);
            }
            match this.ctx.park(cx.waker()) {
                Park::Parked => return Poll::Pending,
                Park::Arrived => {}
                Park::Closed => ended(this.ctx.pid()),
            }
        }
    }
}

impl<P> Drop for RecvMatch<'_, P> {
    fn drop(&mut self) {
        self.ctx.unpark();
    }
}
