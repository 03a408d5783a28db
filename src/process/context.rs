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

use super::Pid;
use super::task::TaskRef;
use crate::mailbox::Received;
use crate::mailbox::queue::Cursor;
use crate::runtime::Runtime;
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
        self.task.header().context_dropped();
    }
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
    pub fn recv(&mut self) -> Recv<'_> {
        Recv { ctx: self }
    }

    /// Takes the oldest message or signal if there is one, without waiting.
    pub fn try_recv(&mut self) -> Option<Received> {
        // SAFETY: `&mut self` makes this the mailbox's only consumer now.
        unsafe { self.task.header().mailbox.pop() }
    }

    /// Selective receive: the oldest item `pred` accepts. Items it rejects
    /// stay queued in arrival order, and are not examined again by this
    /// receive when new items arrive.
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

    /// Parks the mailbox under `waker`; false when something arrived first.
    pub(crate) fn park(&self, waker: &Waker) -> bool {
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
            if ctx.park(cx.waker()) {
                return Poll::Pending;
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
            if this.ctx.park(cx.waker()) {
                return Poll::Pending;
            }
        }
    }
}

impl<P> Drop for RecvMatch<'_, P> {
    fn drop(&mut self) {
        self.ctx.unpark();
    }
}
