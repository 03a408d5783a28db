//! Timers: [`Runtime::send_after`], [`sleep`], and receive timeouts, all on
//! one hashed timing [`wheel`] per runtime, advanced by the workers.

pub(crate) mod duty;
#[cfg(not(loom))]
pub(crate) mod wheel;

#[cfg(not(loom))]
pub use imp::{RecvTimeout, Sleep, TimerRef, sleep};

#[cfg(not(loom))]
mod imp {

    use super::wheel::{Action, Entry};
    use crate::mailbox::queue::{Cursor, Park};
    use crate::mailbox::{Message, Received};
    use crate::process::{Context, Pid};
    use crate::runtime::{Runtime, Shared};
    use std::fmt;
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::Arc;
    use std::task::Poll;
    use std::time::{Duration, Instant};

    /// A pending [`Runtime::send_after`]. Dropping it does not cancel it.
    pub struct TimerRef {
        entry: Arc<Entry>,
        rt: Runtime,
    }

    impl fmt::Debug for TimerRef {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("TimerRef")
                .field("fired", &self.entry.has_fired())
                .finish()
        }
    }

    impl TimerRef {
        /// Cancels the timer; true when it had not fired yet (it never will,
        /// and its message is dropped now).
        pub fn cancel(&self) -> bool {
            self.rt.shared.timers.cancel(&self.entry)
        }
    }

    impl Shared {
        /// Schedules `action` at `deadline` and makes sure some worker wakes
        /// for it (see the duty protocol in [`wheel`]).
        pub(crate) fn add_timer(&self, deadline: Instant, action: Action) -> Arc<Entry> {
            let (entry, lowered) = self.timers.insert(deadline, action);
            if lowered {
                self.timer_hint_lowered();
            }
            self.timers.fire_if_passed(&entry, self);
            entry
        }

        /// The earliest-deadline hint went down: wake the duty holder so it
        /// parks again with the new deadline, or, with none, a sleeper to
        /// take the duty (see [`super::duty`]).
        pub(crate) fn timer_hint_lowered(&self) {
            match self.timers.duty_holder() {
                Some(w) => self.scheduler.parkers[w].unpark(),
                None => self.scheduler.notify(),
            }
        }

        /// Fires due timers, if any (called by workers between tasks); true
        /// when it advanced the wheel.
        pub(crate) fn poll_timers(&self) -> bool {
            if self.timers.pending() > 0 {
                let now = Instant::now();
                if self.timers.is_due(now) {
                    self.timers.advance(now, self);
                    return true;
                }
            }
            false
        }
    }

    impl Runtime {
        /// Sends `msg` to `pid` after `delay`. If `pid` is gone by then, the
        /// message is dropped.
        pub fn send_after<M: Send + 'static>(&self, pid: Pid, delay: Duration, msg: M) -> TimerRef {
            let entry = self
                .shared
                .add_timer(Instant::now() + delay, Action::Send(pid, Message::new(msg)));
            TimerRef {
                entry,
                rt: self.weak_handle(),
            }
        }

        /// Timers pending now.
        pub fn pending_timers(&self) -> usize {
            self.shared.timers.pending()
        }
    }

    /// Waits until `duration` has passed. Usable inside a process or inside
    /// [`Runtime::block_on`].
    ///
    /// # Panics
    /// When polled anywhere else (there is no runtime to keep the time).
    pub fn sleep(duration: Duration) -> Sleep {
        Sleep {
            deadline: Instant::now() + duration,
            timer: None,
        }
    }

    /// The future of [`sleep`].
    #[must_use = "futures do nothing unless awaited"]
    pub struct Sleep {
        deadline: Instant,
        timer: Option<(Arc<Entry>, Runtime)>,
    }

    impl fmt::Debug for Sleep {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("Sleep")
                .field("deadline", &self.deadline)
                .finish()
        }
    }

    impl Future for Sleep {
        type Output = ();

        fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<()> {
            if Instant::now() >= self.deadline {
                return Poll::Ready(());
            }
            if let Some((entry, _)) = &self.timer {
                if !entry.has_fired() {
                    return Poll::Pending;
                }
            }
            // First poll, or woken early: (re)arm.
            let rt = match self.timer.take() {
                Some((_, rt)) => rt,
                None => crate::runtime::current().expect(
                    "rusm_otp::sleep must be awaited inside a process or Runtime::block_on",
                ),
            };
            let entry = rt
                .shared
                .add_timer(self.deadline, Action::Wake(cx.waker().clone()));
            self.timer = Some((entry, rt));
            Poll::Pending
        }
    }

    impl Drop for Sleep {
        fn drop(&mut self) {
            if let Some((entry, rt)) = &self.timer {
                rt.shared.timers.cancel(entry);
            }
        }
    }

    impl Context {
        /// Receives the oldest item, or `None` once `timeout` has passed with
        /// nothing arriving. `Duration::ZERO` checks the mailbox once. An item
        /// that arrives after the timeout stays in the mailbox. `None` at once
        /// if the process has ended (a context moved out of its process).
        pub fn recv_timeout(
            &mut self,
            timeout: Duration,
        ) -> RecvTimeout<'_, fn(&Received) -> bool> {
            self.recv_match_timeout(|_| true, timeout)
        }

        /// Selective receive with a timeout: the oldest item `pred` accepts, or
        /// `None` once `timeout` has passed.
        pub fn recv_match_timeout<P>(&mut self, pred: P, timeout: Duration) -> RecvTimeout<'_, P>
        where
            P: FnMut(&Received) -> bool,
        {
            RecvTimeout {
                ctx: self,
                pred,
                cursor: Cursor::start(),
                deadline: (!timeout.is_zero()).then(|| Instant::now() + timeout),
                timer: None,
            }
        }
    }

    /// The future of [`Context::recv_timeout`] and [`Context::recv_match_timeout`].
    #[must_use = "futures do nothing unless awaited"]
    pub struct RecvTimeout<'a, P> {
        ctx: &'a mut Context,
        pred: P,
        /// The last item this receive rejected.
        cursor: Cursor,
        /// `None` for a zero timeout: look once.
        deadline: Option<Instant>,
        timer: Option<Arc<Entry>>,
    }

    impl<P> fmt::Debug for RecvTimeout<'_, P> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("RecvTimeout")
                .field("pid", &self.ctx.pid())
                .field("deadline", &self.deadline)
                .finish()
        }
    }

    impl<P> Unpin for RecvTimeout<'_, P> {}

    impl<P> RecvTimeout<'_, P> {
        fn disarm(&mut self) {
            if let Some(entry) = self.timer.take() {
                self.ctx.runtime().shared.timers.cancel(&entry);
            }
        }
    }

    impl<P> Future for RecvTimeout<'_, P>
    where
        P: FnMut(&Received) -> bool,
    {
        type Output = Option<Received>;

        fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<Option<Received>> {
            let this = self.get_mut();
            if !crate::coop::consume() {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            loop {
                if let Some(item) = this.ctx.find(&mut this.cursor, &mut this.pred) {
                    this.disarm();
                    return Poll::Ready(Some(item));
                }
                let Some(deadline) = this.deadline else {
                    return Poll::Ready(None);
                };
                if Instant::now() >= deadline {
                    this.disarm();
                    this.ctx.unpark();
                    return Poll::Ready(None);
                }
                let armed = this.timer.as_ref().is_some_and(|e| !e.has_fired());
                if !armed {
                    let shared = &this.ctx.runtime().shared;
                    this.timer = Some(shared.add_timer(deadline, Action::Wake(cx.waker().clone())));
                }
                match this.ctx.park(cx.waker()) {
                    Park::Parked => return Poll::Pending,
                    Park::Arrived => {}
                    // The process has ended: nothing can arrive, so waiting
                    // out the timeout would only hang the caller.
                    Park::Closed => {
                        this.disarm();
                        return Poll::Ready(None);
                    }
                }
            }
        }
    }

    impl<P> Drop for RecvTimeout<'_, P> {
        fn drop(&mut self) {
            self.disarm();
            self.ctx.unpark();
        }
    }
}
