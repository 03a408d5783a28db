//! The one-shot reply slot a caller shares with its [`ReplyTo`] and with the
//! exit watch on the callee.
//!
//! Three parties may *complete* the slot: the reply (`ReplyTo::reply`), the
//! `ReplyTo` dropped unanswered (`NoReply`), and the callee's teardown
//! (`Exited(reason)`). One party *waits*: the caller, which polls it and may
//! give up (timeout, or its future dropped). The first completer wins; every
//! later one gets its value back. The value never passes through a mailbox.
//!
//! # The state word
//!
//! | flag | set by | meaning |
//! | --- | --- | --- |
//! | [`WAITER`] | caller | the waker cell holds the caller's waker; cleared by the caller only, to swap it |
//! | [`CLAIMED`] | the first completer | it owns the value cell until it sets `COMPLETE` |
//! | [`COMPLETE`] | that completer | the value cell holds the outcome |
//! | [`CLOSED`] | caller | it gave up; it never reads the value cell unless `COMPLETE` was set before |
//!
//! Every transition is one read-modify-write of the word, so all parties see
//! one total order of them. Cell ownership:
//!
//! * **value cell**: the claimant writes it between `CLAIMED` and `COMPLETE`.
//!   After `COMPLETE`, exactly one side takes it: the caller if its
//!   `CLOSED` RMW came after `COMPLETE` (or it polls it out), the completer
//!   if its `COMPLETE` RMW found `CLOSED` already set (the caller has left
//!   and will never look). So a reply the caller no longer waits for is
//!   handed back to the replier, and dropped in its context.
//! * **waker cell**: the caller writes it only while `WAITER` is clear, and
//!   clears `WAITER` with an RMW that found `COMPLETE` clear before writing.
//!   The completer reads it only if its `COMPLETE` RMW found `WAITER` set.
//!
//! # Why no wakeup is lost
//!
//! The caller registers (write waker, then RMW set `WAITER`) and the
//! completer publishes (RMW set `COMPLETE`). Whichever RMW comes second in
//! the word's order sees the other's flag: if the caller's comes second it
//! finds `COMPLETE` and takes the value instead of returning `Pending`; if
//! the completer's comes second it finds `WAITER` and wakes the waker, which
//! was written before the caller's release RMW. A waker swap clears `WAITER`
//! first (RMW); a completion ordered before that clear was seen by it (take
//! the value), one ordered after it finds `WAITER` clear and leaves the
//! waker alone, and the re-registration then sees `COMPLETE`.
//!
//! The loom model `loom_slot` checks this with a reply racing an exit and a
//! caller that waits, swaps its waker, or gives up.

use crate::loom::sync::UnsafeCell;
use crate::loom::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Poll, Waker};

/// The waker cell holds the caller's current waker.
const WAITER: usize = 1;
/// A completer has won the right to write the value cell.
const CLAIMED: usize = 2;
/// The value cell holds the outcome.
const COMPLETE: usize = 4;
/// The caller has given up waiting.
const CLOSED: usize = 8;

/// A one-shot slot carrying one `T` from a completer to a waiting caller.
pub(crate) struct Slot<T> {
    /// `WAITER | CLAIMED | COMPLETE | CLOSED`, see the module docs.
    state: AtomicUsize,
    /// The outcome; owned as the module docs say.
    value: UnsafeCell<Option<T>>,
    /// The caller's waker; owned as the module docs say.
    waker: UnsafeCell<Option<Waker>>,
}

// SAFETY: the cells are handed between threads by the state word's
// acquire/release RMWs (module docs); a `T` crosses threads, so `T: Send`.
unsafe impl<T: Send> Send for Slot<T> {}
// SAFETY: as above; no `&T` is ever shared, only moved through the cell.
unsafe impl<T: Send> Sync for Slot<T> {}

impl<T> std::fmt::Debug for Slot<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slot")
            .field("state", &self.state.load(Ordering::Relaxed))
            .finish()
    }
}

impl<T> Slot<T> {
    pub(crate) fn new() -> Slot<T> {
        Slot {
            state: AtomicUsize::new(0),
            value: UnsafeCell::new(None),
            waker: UnsafeCell::new(None),
        }
    }

    /// Completes the slot with `value`, waking the caller. Gives `value`
    /// back when another completer got there first or the caller has given
    /// up.
    pub(crate) fn complete(&self, value: T) -> Result<(), T> {
        // Acquire: a CLOSED seen here means the caller is gone for good.
        let prev = self.state.fetch_or(CLAIMED, Ordering::AcqRel);
        if prev & (CLAIMED | CLOSED) != 0 {
            return Err(value);
        }
        // SAFETY: CLAIMED is ours, and nobody reads the value cell before
        // COMPLETE (module docs).
        self.value.with_mut(|p| unsafe { *p = Some(value) });
        // Release: publishes the value (and, acquire, the caller's waker).
        let prev = self.state.fetch_or(COMPLETE, Ordering::AcqRel);
        if prev & CLOSED != 0 {
            // The caller left between our claim and now; it will not look.
            // SAFETY: its CLOSED came before our COMPLETE, so the cell is ours.
            let value = self.value.with_mut(|p| unsafe { (*p).take() });
            return Err(value.expect("the value we just wrote"));
        }
        if prev & WAITER != 0 {
            self.waker.with(|w| {
                // SAFETY: WAITER was set when COMPLETE went in, so the waker
                // is written and the caller will not write it again (module
                // docs); concurrent reads are fine.
                let w = unsafe { &*w };
                if let Some(w) = w {
                    w.wake_by_ref();
                }
            });
        }
        Ok(())
    }

    /// Takes the outcome out. The caller only, after seeing `COMPLETE`.
    fn take(&self) -> Option<T> {
        // SAFETY: COMPLETE was seen (acquire) and the caller has not closed,
        // so the cell is the caller's (module docs).
        self.value.with_mut(|p| unsafe { (*p).take() })
    }

    /// The caller's poll: the outcome once complete, else registers `waker`.
    pub(crate) fn poll(&self, waker: &Waker) -> Poll<T> {
        let s = self.state.load(Ordering::Acquire);
        if s & COMPLETE != 0 {
            return self.ready();
        }
        if s & WAITER != 0 {
            // SAFETY: only the caller (us) writes the waker cell; a
            // completer may read it at the same time, which is fine.
            let same = self
                .waker
                .with(|w| unsafe { &*w }.as_ref().is_some_and(|w| w.will_wake(waker)));
            if same {
                return Poll::Pending;
            }
            let prev = self.state.fetch_and(!WAITER, Ordering::AcqRel);
            if prev & COMPLETE != 0 {
                return self.ready();
            }
        }
        // SAFETY: WAITER is clear and the RMW that cleared it (or the load
        // above) saw no COMPLETE, so no completer reads the cell now.
        self.waker.with_mut(|w| unsafe { *w = Some(waker.clone()) });
        // Release: publishes the waker to the completer that sees WAITER.
        let prev = self.state.fetch_or(WAITER, Ordering::AcqRel);
        if prev & COMPLETE != 0 {
            return self.ready();
        }
        Poll::Pending
    }

    fn ready(&self) -> Poll<T> {
        Poll::Ready(self.take().expect("a completed slot is polled out once"))
    }

    /// The caller gives up. Returns the outcome if it had already arrived
    /// (and was not polled out yet), so the caller can still use or drop it
    /// in its own context.
    pub(crate) fn close(&self) -> Option<T> {
        let prev = self.state.fetch_or(CLOSED, Ordering::AcqRel);
        if prev & COMPLETE != 0 && prev & CLOSED == 0 {
            return self.take();
        }
        None
    }

    /// Whether the slot needs nobody any more: answered, or given up.
    pub(crate) fn is_settled(&self) -> bool {
        self.state.load(Ordering::Relaxed) & (CLAIMED | CLOSED) != 0
    }
}

#[cfg(all(test, loom))]
mod loom_slot {
    use super::*;
    use crate::loom::sync::Arc;
    use loom::sync::atomic::AtomicUsize;

    /// Counts its drops, so a model can check each value is dropped once.
    struct Counted(Arc<AtomicUsize>);
    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Wakes the thread waiting in [`block_on`].
    struct NotifyWaker(loom::sync::Notify);

    impl futures_task::ArcWake for NotifyWaker {
        fn wake_by_ref(me: &std::sync::Arc<Self>) {
            me.0.notify();
        }
    }

    /// Polls `poll` under a waker that notifies this thread, waiting while
    /// it is pending: a lost wakeup leaves it waiting forever, which loom
    /// reports as a deadlock.
    fn block_on<T>(mut poll: impl FnMut(&Waker) -> Poll<T>) -> T {
        let w = std::sync::Arc::new(NotifyWaker(loom::sync::Notify::new()));
        let waker = futures_task::waker(w.clone());
        loop {
            if let Poll::Ready(v) = poll(&waker) {
                return v;
            }
            w.0.wait();
        }
    }

    #[derive(Debug, PartialEq)]
    enum Outcome {
        Reply,
        Exited,
    }

    /// A reply and the callee's exit race while the caller waits: exactly
    /// one wins, the caller is woken with it, and the reply reports whether
    /// it was the one delivered.
    #[test]
    fn reply_races_exit_while_caller_waits() {
        loom::model(|| {
            let slot = Arc::new(Slot::<Outcome>::new());
            let s1 = slot.clone();
            let replier = loom::thread::spawn(move || s1.complete(Outcome::Reply).is_ok());
            let s2 = slot.clone();
            let exit = loom::thread::spawn(move || s2.complete(Outcome::Exited).is_ok());
            let got = block_on(|w| slot.poll(w));
            let replied = replier.join().unwrap();
            let exited = exit.join().unwrap();
            assert!(replied != exited);
            assert_eq!(got == Outcome::Reply, replied);
        });
    }

    /// A reply races the caller giving up after one poll: the value is
    /// dropped exactly once, by the caller if `complete` said it was
    /// delivered, else by the replier.
    #[test]
    fn reply_races_caller_giving_up() {
        loom::model(|| {
            let drops = Arc::new(AtomicUsize::new(0));
            let slot = Arc::new(Slot::<Counted>::new());
            let s1 = slot.clone();
            let d1 = drops.clone();
            let replier = loom::thread::spawn(move || match s1.complete(Counted(d1.clone())) {
                Ok(()) => true,
                Err(back) => {
                    drop(back);
                    assert_eq!(d1.load(Ordering::SeqCst), 1);
                    false
                }
            });
            let waker = std::task::Waker::noop().clone();
            let polled = match slot.poll(&waker) {
                Poll::Ready(v) => Some(v),
                Poll::Pending => slot.close(),
            };
            let delivered = replier.join().unwrap();
            assert_eq!(polled.is_some(), delivered);
            drop(polled);
            drop(slot);
            assert_eq!(drops.load(Ordering::SeqCst), 1);
        });
    }

    /// The `ReplyTo` is dropped unanswered (`NoReply`) while the caller
    /// swaps its waker between polls: the second waker is woken.
    #[test]
    fn completion_races_a_waker_swap() {
        loom::model(|| {
            let slot = Arc::new(Slot::<Outcome>::new());
            let s1 = slot.clone();
            let t = loom::thread::spawn(move || s1.complete(Outcome::Exited).is_ok());
            let first = std::task::Waker::noop().clone();
            let got = match slot.poll(&first) {
                Poll::Ready(v) => v,
                Poll::Pending => block_on(|w| slot.poll(w)),
            };
            assert!(t.join().unwrap());
            assert_eq!(got, Outcome::Exited);
        });
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;
    use std::task::Wake;

    /// Counts its wakes.
    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn counter() -> (Arc<Count>, Waker) {
        let c = Arc::new(Count(AtomicUsize::new(0)));
        (c.clone(), Waker::from(c))
    }

    #[test]
    fn complete_then_poll() {
        let s = Slot::new();
        assert_eq!(s.complete(String::from("a")), Ok(()));
        assert_eq!(s.complete(String::from("b")), Err(String::from("b")));
        let (_, w) = counter();
        assert_eq!(s.poll(&w), Poll::Ready(String::from("a")));
        assert!(s.is_settled());
    }

    #[test]
    fn poll_swap_waker_then_complete_wakes_the_last_waker() {
        let s = Slot::new();
        let (c1, w1) = counter();
        let (c2, w2) = counter();
        assert_eq!(s.poll(&w1), Poll::Pending);
        assert_eq!(s.poll(&w1), Poll::Pending);
        assert_eq!(s.poll(&w2), Poll::Pending);
        assert_eq!(s.complete(7u64), Ok(()));
        assert_eq!(c1.0.load(Ordering::SeqCst), 0);
        assert_eq!(c2.0.load(Ordering::SeqCst), 1);
        assert_eq!(s.poll(&w2), Poll::Ready(7));
    }

    #[test]
    fn a_value_completed_after_close_comes_back() {
        let s = Slot::new();
        let (_, w) = counter();
        assert_eq!(s.poll(&w), Poll::Pending);
        assert_eq!(s.close(), None);
        assert_eq!(s.complete(vec![1u8]), Err(vec![1u8]));
        assert!(s.is_settled());
    }

    #[test]
    fn close_after_complete_hands_the_value_to_the_caller() {
        let s = Slot::new();
        assert_eq!(s.complete(Box::new(3u32)), Ok(()));
        assert_eq!(s.close(), Some(Box::new(3u32)));
        assert_eq!(s.close(), None);
    }
}
