//! [`ProcessHandle`] and its [`Join`] future.

use super::{ExitReason, Pid};
use crate::runtime::TaskRef;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

/// A handle on a spawned process. Dropping it never kills the process.
pub struct ProcessHandle {
    /// The process itself (kept allocated, not alive, by the handle).
    pub(crate) task: TaskRef,
}

impl fmt::Debug for ProcessHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessHandle")
            .field("pid", &self.pid())
            .finish()
    }
}

impl ProcessHandle {
    /// The process's pid.
    pub fn pid(&self) -> Pid {
        self.task.header().pid
    }

    /// Kills the process (untrappable; reason `Killed`); false if it had
    /// already ended.
    pub fn kill(&self) -> bool {
        self.task.header().rt.kill(self.pid())
    }

    /// Whether the process has ended and its teardown is complete.
    pub fn is_finished(&self) -> bool {
        self.task.header().exit_reason().is_some()
    }

    /// The panic message, if the process ended by panicking.
    pub fn panic_message(&self) -> Option<String> {
        self.task.header().aux_if_any(|a| a.panic.clone()).flatten()
    }

    /// A future that resolves to the process's exit reason once its teardown
    /// is complete (counters updated, names released). Awaitable from a
    /// process or from `block_on`.
    ///
    /// # Examples
    ///
    /// ```
    /// use rusm_otp::{ExitReason, Runtime};
    ///
    /// let rt = Runtime::builder().workers(2).build();
    /// let h = rt.spawn(|_ctx| async { panic!("boom") });
    /// // Awaitable from `block_on` or from another process.
    /// assert_eq!(rt.block_on(h.join()), ExitReason::Crashed);
    /// ```
    pub fn join(self) -> Join {
        Join { task: self.task }
    }
}

/// The future of [`ProcessHandle::join`].
#[must_use = "futures do nothing unless awaited"]
pub struct Join {
    task: TaskRef,
}

impl fmt::Debug for Join {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Join")
            .field("pid", &self.task.header().pid)
            .finish()
    }
}

impl Future for Join {
    type Output = ExitReason;

    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<ExitReason> {
        let h = self.task.header();
        if let Some(r) = h.exit_reason() {
            return Poll::Ready(r);
        }
        // The exit reason is stored before teardown takes this lock to wake
        // the joiner, so checking again under the lock cannot miss it.
        let mut aux = h.aux.lock();
        if let Some(r) = h.exit_reason() {
            return Poll::Ready(r);
        }
        let aux = aux.get_or_insert_with(Default::default);
        match &mut aux.join_waker {
            Some(w) => w.clone_from(cx.waker()),
            slot => *slot = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}
