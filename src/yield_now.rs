//! [`yield_now`]: give the worker to other processes once.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// Yields once: the process goes to the back of its worker's queue of
/// yielded processes and resumes after the processes woken meanwhile (by a
/// message, a signal, a timer) and the yielded ones queued before it have
/// run. A process woken by a message is thus never kept waiting behind
/// processes that merely yield (at most one of their turns, see the
/// scheduler), while every yielder still gets its turn.
pub fn yield_now() -> YieldNow {
    YieldNow { yielded: false }
}

/// The future of [`yield_now`].
#[derive(Debug)]
#[must_use = "futures do nothing unless awaited"]
pub struct YieldNow {
    yielded: bool,
}

impl Future for YieldNow {
    type Output = ();

    // Inlined into the process's own future, so a yield costs no calls of
    // its own.
    #[inline]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.yielded {
            return Poll::Ready(());
        }
        self.yielded = true;
        // The mark makes the worker requeue the process behind the woken
        // ones rather than among them; off a worker it is never read.
        crate::coop::mark_yielded();
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}
