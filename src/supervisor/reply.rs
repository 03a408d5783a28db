//! A one-shot reply slot for [`SupervisorRef`](super::SupervisorRef)'s
//! requests, usable by a waiter in a process or in `block_on`.
//!
//! The request carries a [`Replier`]; the waiter holds a [`Reply`]. The
//! supervisor answers by [`Replier::send`]. A supervisor that ends before
//! answering drops the request with its mailbox (teardown closes the mailbox
//! and frees what is queued; a send to a closed mailbox drops the message),
//! and dropping an unanswered `Replier` closes the slot: the waiter wakes at
//! once with `None`, which the caller turns into `NoProc`. No monitor and no
//! helper process are needed, and no reply can reach anyone's mailbox.
//!
//! Wakeups: the slot's state and the waiter's waker are under one lock, so
//! an answer (or close) either finds the waker stored and wakes it, or
//! happens before the waiter's next look at the state.

use parking_lot::Mutex;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

/// A slot's state.
enum State<T> {
    /// No answer yet; the waiter's waker, once it has polled.
    Waiting(Option<Waker>),
    /// Answered, not yet taken.
    Done(T),
    /// The replier went away unanswered, or the answer was taken.
    Closed,
}

/// Shared by one [`Replier`] and one [`Reply`].
struct Slot<T> {
    state: Mutex<State<T>>,
}

/// The answering side; dropping it unanswered closes the slot.
pub(super) struct Replier<T> {
    slot: Arc<Slot<T>>,
}

/// The waiting side: resolves to the answer, or `None` when the replier
/// was dropped unanswered.
pub(super) struct Reply<T> {
    slot: Arc<Slot<T>>,
}

impl<T> fmt::Debug for Replier<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Replier").finish_non_exhaustive()
    }
}

/// A new slot's two sides.
pub(super) fn slot<T>() -> (Replier<T>, Reply<T>) {
    let slot = Arc::new(Slot {
        state: Mutex::new(State::Waiting(None)),
    });
    (Replier { slot: slot.clone() }, Reply { slot })
}

impl<T> Replier<T> {
    /// Answers; the waiter wakes.
    pub(super) fn send(self, value: T) {
        self.finish(State::Done(value));
    }

    fn finish(&self, to: State<T>) {
        let waker = {
            let mut state = self.slot.state.lock();
            match std::mem::replace(&mut *state, to) {
                State::Waiting(w) => w,
                // Already answered: keep the answer (only `drop` gets here).
                done => {
                    *state = done;
                    None
                }
            }
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

impl<T> Drop for Replier<T> {
    fn drop(&mut self) {
        let waiting = matches!(*self.slot.state.lock(), State::Waiting(_));
        if waiting {
            self.finish(State::Closed);
        }
    }
}

impl<T> Future for Reply<T> {
    type Output = Option<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let mut state = self.slot.state.lock();
        match std::mem::replace(&mut *state, State::Closed) {
            State::Done(v) => Poll::Ready(Some(v)),
            State::Closed => Poll::Ready(None),
            State::Waiting(mut w) => {
                match &mut w {
                    Some(w) => w.clone_from(cx.waker()),
                    slot => *slot = Some(cx.waker().clone()),
                }
                *state = State::Waiting(w);
                Poll::Pending
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answered_then_taken() {
        let (tx, rx) = slot::<u32>();
        tx.send(7);
        assert_eq!(futures_task_block(rx), Some(7));
    }

    #[test]
    fn dropped_unanswered_is_none() {
        let (tx, rx) = slot::<u32>();
        drop(tx);
        assert_eq!(futures_task_block(rx), None);
    }

    fn futures_task_block<T>(mut rx: Reply<T>) -> Option<T> {
        let waker = futures_task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        match Pin::new(&mut rx).poll(&mut cx) {
            Poll::Ready(v) => v,
            Poll::Pending => panic!("not ready"),
        }
    }
}
