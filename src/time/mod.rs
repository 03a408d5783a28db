//! Timers: [`Runtime::send_after`], [`sleep`], and receive timeouts, all on
//! one hashed timing [`wheel`] per runtime, advanced by the workers (or, once
//! the runtime has stopped, by the `block_on` threads still waiting).
//!
//! Deadlines saturate: a delay past any representable instant (such as
//! `Duration::MAX`, Erlang's `infinity`) never fires and occupies no slot.
//! A `send_after` is cancelled when its target ends ([`owned`]).

pub(crate) mod duty;
#[cfg(not(loom))]
pub(crate) mod owned;
pub(crate) mod slots;
#[cfg(not(loom))]
pub(crate) mod wheel;

#[cfg(not(loom))]
pub use imp::{RecvTimeout, Sleep, TimerRef, sleep};

#[cfg(not(loom))]
mod imp {

    use super::wheel::{Action, Entry};
    use crate::mailbox::queue::Scan;
    use crate::mailbox::{Message, Received};
    use crate::process::context::Process;
    use crate::process::context::{Outcome, poll_receive};
    use crate::process::{Context, Pid};
    use crate::runtime::{Runtime, Shared};
    use std::fmt;
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::Arc;
    use std::task::{Poll, Waker};
    use std::time::{Duration, Instant};

    /// A pending [`Runtime::send_after`]. Dropping it does not cancel it.
    pub struct TimerRef {
        entry: Arc<Entry>,
        rt: Runtime,
    }

    impl fmt::Debug for TimerRef {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("TimerRef")
                .field("pending", &self.entry.is_pending())
                .finish()
        }
    }

    impl TimerRef {
        /// Cancels the timer; true when it had neither fired nor been
        /// cancelled (it never will fire, and its message is dropped now,
        /// on this thread). False also when it was cancelled because its
        /// target ended.
        pub fn cancel(&self) -> bool {
            self.rt.shared.cancel_send(&self.entry)
        }
    }

    /// `now + d`, or `None` (never) when that is beyond any representable
    /// instant (`Duration::MAX`: Erlang's `infinity`).
    fn deadline_after(d: Duration) -> Option<Instant> {
        Instant::now().checked_add(d)
    }

    impl Shared {
        /// Schedules a wake of `waker` at `deadline`; `None` (no entry) for
        /// a deadline that never comes.
        pub(crate) fn add_wake(
            &self,
            deadline: Option<Instant>,
            waker: &Waker,
        ) -> Option<Arc<Entry>> {
            deadline?;
            Some(self.add_timer(deadline, Action::Wake(waker.clone())))
        }

        /// Schedules `action` at `deadline` (`None`: never) and makes sure
        /// some worker wakes for it (see the duty protocol in
        /// [`duty`](super::duty)).
        fn add_timer(&self, deadline: Option<Instant>, action: Action) -> Arc<Entry> {
            let (entry, lowered) = self.timers.insert(deadline, action);
            if lowered {
                self.timer_hint_lowered();
            }
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
                    let lowered = self.timers.advance(now, |action| self.run_action(action));
                    if lowered {
                        self.timer_hint_lowered();
                    }
                    return true;
                }
            }
            false
        }

        /// Runs the action of a timer that fired. A message whose target is
        /// gone, or whose bounded mailbox is full, is dropped here; its
        /// destructor (like a foreign waker) is user code no process owns, so
        /// a panic in it is caught and counted, never unwound into a worker.
        fn run_action(&self, action: Action) {
            let ran = crate::guard::catch(|| match action {
                Action::Send(pid, msg) => {
                    self.table.with(pid, |task| {
                        let h = task.header();
                        if !self.shed_if_full(h) {
                            h.deliver(Received::Message(msg));
                        }
                    });
                }
                Action::Wake(w) => w.wake(),
            });
            if ran.is_none() {
                self.note_unowned_panic();
            }
        }

        /// Cancels a `send_after` on behalf of its [`TimerRef`]; its message
        /// is dropped on the caller's thread, after every lock is released.
        fn cancel_send(&self, e: &Arc<Entry>) -> bool {
            let Some(action) = self.timers.cancel(e) else {
                return false;
            };
            drop(action);
            true
        }

        /// At runtime stop: cancels the timers still pending and wakes the
        /// futures still waiting (a `block_on` then drives the wheel itself,
        /// see [`Shared::drive_timers_stopped`]).
        pub(crate) fn stop_timers(&self) {
            let (dropped, wakers) = self.timers.stop();
            for a in dropped {
                if !crate::guard::drop_caught(a) {
                    self.note_unowned_panic();
                }
            }
            for w in wakers {
                if crate::guard::catch(|| w.wake()).is_none() {
                    self.note_unowned_panic();
                }
            }
        }

        /// Parks a `block_on` thread of a stopped runtime: with no worker
        /// left to keep the time, it fires due timers itself and parks until
        /// the next deadline.
        pub(crate) fn drive_timers_stopped(&self) {
            self.poll_timers();
            match self.timers.next_deadline() {
                Some(d) => {
                    std::thread::park_timeout(d.saturating_duration_since(Instant::now()));
                }
                None => std::thread::park(),
            }
        }
    }

    impl Runtime {
        /// Sends `msg` to `pid` after `delay`. If `pid` has ended by then, or
        /// ends before, the timer is cancelled with it and its message
        /// dropped (as in OTP); a target that is not alive now cancels it at
        /// once (its message is then dropped on this thread, as a cancel's
        /// is). With a bounded mailbox, a message that finds the mailbox
        /// full is shed like any other ([`Runtime::dropped_messages`]).
        /// `Duration::MAX` never fires.
        ///
        /// # Examples
        ///
        /// ```
        /// use rusm_otp::{ExitReason, Runtime};
        /// use std::time::Duration;
        ///
        /// let rt = Runtime::builder().workers(2).build();
        /// let h = rt.spawn(|mut ctx| async move {
        ///     let (rt, me) = (ctx.runtime().clone(), ctx.pid());
        ///     rt.send_after(me, Duration::from_millis(5), "tick");
        ///     let never = rt.send_after(me, Duration::from_millis(5), "cancelled");
        ///     assert!(never.cancel());
        ///     let m = ctx.recv().await.message().unwrap();
        ///     assert_eq!(m.downcast::<&str>().unwrap(), "tick");
        ///     assert!(ctx.recv_timeout(Duration::from_millis(20)).await.is_none());
        /// });
        /// assert_eq!(rt.block_on(h.join()), ExitReason::Normal);
        /// ```
        pub fn send_after<M: Send + 'static>(&self, pid: Pid, delay: Duration, msg: M) -> TimerRef {
            let shared = &self.shared;
            let entry =
                shared.add_timer(deadline_after(delay), Action::Send(pid, Message::new(msg)));
            if !shared.register_timer(pid, &entry) {
                drop(shared.timers.cancel(&entry));
            }
            TimerRef {
                entry,
                rt: self.weak_handle(),
            }
        }

        /// Timers pending now (including those that never fire).
        pub fn pending_timers(&self) -> usize {
            self.shared.timers.pending_total()
        }
    }

    /// Waits until `duration` has passed (forever for a duration past any
    /// representable instant, such as `Duration::MAX`). Usable inside a
    /// process or inside [`Runtime::block_on`].
    ///
    /// # Panics
    /// When polled anywhere else (there is no runtime to keep the time).
    ///
    /// # Examples
    ///
    /// ```
    /// use rusm_otp::{ExitReason, Runtime};
    /// use std::time::{Duration, Instant};
    ///
    /// let rt = Runtime::builder().workers(2).build();
    /// let h = rt.spawn(|_ctx| async move {
    ///     let start = Instant::now();
    ///     rusm_otp::sleep(Duration::from_millis(5)).await;
    ///     assert!(start.elapsed() >= Duration::from_millis(5));
    /// });
    /// assert_eq!(rt.block_on(h.join()), ExitReason::Normal);
    /// ```
    pub fn sleep(duration: Duration) -> Sleep {
        Sleep {
            deadline: deadline_after(duration),
            timer: None,
        }
    }

    /// The future of [`sleep`].
    #[must_use = "futures do nothing unless awaited"]
    pub struct Sleep {
        /// `None`: never.
        deadline: Option<Instant>,
        /// The runtime, once polled, and the armed entry, if any.
        timer: Option<(Option<Arc<Entry>>, Runtime)>,
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
            if self.deadline.is_some_and(|d| Instant::now() >= d) {
                return Poll::Ready(());
            }
            let this = &mut *self;
            let (entry, rt) = this.timer.get_or_insert_with(|| {
                let rt = crate::runtime::current().expect(
                    "rusm_otp::sleep must be awaited inside a process or Runtime::block_on",
                );
                (None, rt)
            });
            match entry {
                // Armed: make sure it wakes the waker of this poll.
                Some(e) if e.is_pending() => e.set_waker(cx.waker()),
                // First poll, or woken early (the clock reads before the
                // deadline the wheel rounded up to), or cancelled by the
                // runtime's stop: arm (again).
                _ => *entry = rt.shared.add_wake(this.deadline, cx.waker()),
            }
            Poll::Pending
        }
    }

    impl Drop for Sleep {
        fn drop(&mut self) {
            if let Some((Some(entry), rt)) = &self.timer {
                drop(rt.shared.timers.cancel(entry));
            }
        }
    }

    /// When a receive with a timeout gives up.
    #[derive(Debug, Clone, Copy)]
    enum Limit {
        /// `Duration::ZERO`: look once.
        Now,
        /// At this instant.
        At(Instant),
        /// Never (a timeout past any representable instant).
        Never,
    }

    impl Context {
        /// Receives the oldest item, or `None` once `timeout` has passed with
        /// nothing arriving. `Duration::ZERO` checks the mailbox once;
        /// `Duration::MAX` (Erlang's `after infinity`) waits forever. An item
        /// that arrives after the timeout stays in the mailbox. `None` at once
        /// if the process has ended (a context moved out of its process).
        ///
        /// # Examples
        ///
        /// ```
        /// use rusm_otp::{ExitReason, Runtime};
        /// use std::time::Duration;
        ///
        /// let rt = Runtime::builder().workers(2).build();
        /// let h = rt.spawn(|mut ctx| async move {
        ///     // Nobody sends: `None` once the timeout has passed.
        ///     assert!(ctx.recv_timeout(Duration::from_millis(10)).await.is_none());
        ///     // `Duration::ZERO` looks at the mailbox once.
        ///     ctx.runtime().send(ctx.pid(), "here");
        ///     assert!(ctx.recv_timeout(Duration::ZERO).await.is_some());
        /// });
        /// assert_eq!(rt.block_on(h.join()), ExitReason::Normal);
        /// ```
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
            let limit = if timeout.is_zero() {
                Limit::Now
            } else {
                deadline_after(timeout).map_or(Limit::Never, Limit::At)
            };
            RecvTimeout {
                scan: self.scan(pred),
                timeout: Timeout { limit, timer: None },
            }
        }
    }

    /// The time limit of a [`RecvTimeout`] and its armed wake.
    struct Timeout {
        /// When it gives up.
        limit: Limit,
        /// The armed wake, if any.
        timer: Option<Arc<Entry>>,
    }

    impl crate::process::context::Limit for Timeout {
        fn arm(&mut self, rt: &Runtime, waker: &std::task::Waker) -> bool {
            let deadline = match self.limit {
                Limit::Now => return false,
                Limit::Never => None,
                Limit::At(d) if Instant::now() >= d => return false,
                Limit::At(d) => Some(d),
            };
            match &self.timer {
                // Armed: make sure it wakes the waker of this poll.
                Some(e) if e.is_pending() => e.set_waker(waker),
                _ => self.timer = rt.shared.add_wake(deadline, waker),
            }
            true
        }

        fn disarm(&mut self, rt: &Runtime) {
            if let Some(entry) = self.timer.take() {
                drop(rt.shared.timers.cancel(&entry));
            }
        }
    }

    /// The future of [`Context::recv_timeout`] and [`Context::recv_match_timeout`].
    #[must_use = "futures do nothing unless awaited"]
    pub struct RecvTimeout<'a, P> {
        /// Holds the mailbox, and where this receive stopped scanning.
        scan: Scan<'a, Process, P>,
        /// When it gives up.
        timeout: Timeout,
    }

    impl<P> fmt::Debug for RecvTimeout<'_, P> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("RecvTimeout")
                .field("pid", &self.scan.owner().header().pid)
                .field("limit", &self.timeout.limit)
                .finish()
        }
    }

    impl<P> Unpin for RecvTimeout<'_, P> {}

    impl<P> Future for RecvTimeout<'_, P>
    where
        P: FnMut(&Received) -> bool,
    {
        type Output = Option<Received>;

        fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<Option<Received>> {
            let this = self.get_mut();
            // The process having ended answers `None` too: nothing can
            // arrive, so waiting out the timeout would only hang the caller.
            poll_receive(&mut this.scan, &mut this.timeout, cx).map(|o| match o {
                Outcome::Item(item) => Some(item),
                Outcome::TimedOut | Outcome::Ended => None,
            })
        }
    }

    impl<P> Drop for RecvTimeout<'_, P> {
        fn drop(&mut self) {
            if let Some(entry) = self.timeout.timer.take() {
                drop(self.scan.owner().header().rt.shared.timers.cancel(&entry));
            }
            self.scan.unpark();
        }
    }
}
