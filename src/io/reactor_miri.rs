//! The reactor's stand-in under `cfg(miri)`: Miri runs no epoll or timerfd
//! (`polling` needs both), so a runtime under Miri has no sockets.
//! Registering one fails with `Unsupported`, so no [`Source`] ever exists
//! (the type is empty: `deregister` and `poll_op` cannot be reached), the
//! count of sources stays zero, and the duty holder always parks on its
//! condvar, as a real runtime without sockets does. Timers, parking,
//! wakes, the mailbox, the table and the task's teardown never touch the
//! reactor otherwise, so the unit tests Miri runs exercise the same code as
//! in a normal build; only `rusm_otp::net` is out of reach.

pub(crate) use super::Dir;
use crate::scheduler::park::IoWait;
use std::os::fd::{AsRawFd, RawFd};
use std::time::Instant;

/// No sockets, no events.
#[derive(Debug)]
pub(crate) struct Reactor;

/// A registered socket: none can exist under Miri.
#[derive(Debug)]
pub(crate) enum Source {}

impl Reactor {
    pub(crate) fn new() -> std::io::Result<Reactor> {
        Ok(Reactor)
    }

    /// Always fails: Miri cannot poll sockets.
    ///
    /// # Safety
    ///
    /// None needed here; `unsafe` to match the real reactor.
    pub(crate) unsafe fn register(
        &self,
        _fd: RawFd,
    ) -> std::io::Result<(std::sync::Arc<Source>, bool)> {
        Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "rusm_otp::net sockets are unsupported under Miri",
        ))
    }

    pub(crate) fn deregister(&self, source: &Source) {
        match *source {}
    }

    pub(crate) fn poll_op<R>(
        &self,
        source: &Source,
        _dir: Dir,
        _cx: &mut std::task::Context<'_>,
        _op: impl FnMut() -> std::io::Result<R>,
        _drained: impl Fn(&R) -> bool,
    ) -> std::task::Poll<std::io::Result<R>> {
        match *source {}
    }

    pub(crate) fn close(&self) {}

    pub(crate) fn has_sources(&self) -> bool {
        false
    }

    pub(crate) fn polls(&self) -> u64 {
        0
    }

    pub(crate) fn unowned_panics(&self) -> u64 {
        0
    }

    pub(crate) fn poll_now(&self) -> usize {
        0
    }
}

impl IoWait for Reactor {
    /// Never called: the duty holder parks here only while a source is
    /// registered, and none ever is.
    fn wait(&self, _deadline: Option<Instant>) {
        unreachable!("no socket is ever registered under Miri")
    }

    /// Only reached while the owner is in `wait`, which never happens.
    fn interrupt(&self) {}
}

/// The raw descriptor of a socket type.
pub(crate) fn raw(s: &impl AsRawFd) -> RawFd {
    s.as_raw_fd()
}
