//! The reactor's wait and its interrupt, over the poller's file descriptor.
//!
//! `polling`'s own `wait` spends five syscalls on every call on Linux
//! (arm a timerfd, re-arm it in the epoll set, `epoll_pwait`, drain its
//! notification eventfd, re-arm that): a worker's non-blocking poll between
//! tasks cost as much as the echo it served. On Linux the reactor therefore
//! waits on the epoll set itself, one `epoll_pwait` (or `epoll_pwait2` for
//! a timeout finer than a millisecond) per poll, as tokio's driver does, and
//! interrupts it through an eventfd of its own, registered edge-triggered:
//! every write is a new edge, so the counter is never drained (only
//! reset should it ever fill up). `polling` still registers and removes the
//! sockets; its own notifier and timer are registered one-shot under a key
//! we never use and are never re-armed, so at most one stray event of
//! theirs is skipped. Elsewhere `polling`'s wait is used as it comes.

use polling::Poller;
use std::time::Duration;

#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) use epoll::{Events, Notifier};
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(crate) use portable::{Events, Notifier};

/// One event: the source's key, readable, writable.
pub(crate) type Ready = (usize, bool, bool);

#[cfg(any(target_os = "linux", target_os = "android"))]
mod epoll {
    use super::{Duration, Poller, Ready};
    use rustix::event::epoll::{self, EventData, EventFlags};
    use rustix::event::{EventfdFlags, Timespec, eventfd};
    use rustix::fd::OwnedFd;
    use rustix::io::Errno;

    /// Keys from here up are not sources: ours is this one, `polling`'s
    /// own (`usize::MAX`) the one above.
    const FIRST_FOREIGN_KEY: u64 = usize::MAX as u64 - 1;

    /// The eventfd that interrupts a wait.
    #[derive(Debug)]
    pub(crate) struct Notifier {
        fd: OwnedFd,
    }

    impl Notifier {
        pub(crate) fn new(poller: &Poller) -> std::io::Result<Notifier> {
            let fd = eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?;
            epoll::add(
                poller,
                &fd,
                EventData::new_u64(FIRST_FOREIGN_KEY),
                EventFlags::IN | EventFlags::ET,
            )?;
            Ok(Notifier { fd })
        }

        /// Ends the current wait, or makes the next one's epoll set hold
        /// an event (whichever poll takes it first).
        pub(crate) fn notify(&self, _poller: &Poller) {
            loop {
                match rustix::io::write(&self.fd, &1u64.to_ne_bytes()) {
                    Ok(_) => return,
                    Err(Errno::INTR) => continue,
                    // The counter is full: reset it and write again.
                    Err(Errno::AGAIN) => {
                        let _ = rustix::io::read(&self.fd, &mut [0u8; 8]);
                    }
                    // Nothing better to do than the waiter's own timeout.
                    Err(_) => return,
                }
            }
        }
    }

    /// The event buffer.
    pub(crate) struct Events {
        list: Vec<epoll::Event>,
    }

    // SAFETY: an event's data may be a pointer, which makes it neither
    // `Send` nor `Sync`; ours are only ever keys (integers), registered by
    // `polling` and by `Notifier::new`, so moving them across threads is
    // moving integers.
    unsafe impl Send for Events {}

    impl std::fmt::Debug for Events {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("Events")
                .field("len", &self.list.len())
                .finish()
        }
    }

    impl Events {
        pub(crate) fn new() -> Events {
            Events {
                list: Vec::with_capacity(1024),
            }
        }

        /// Replaces the buffer's events with those ready within `timeout`
        /// (`None`: no limit). An error leaves none.
        pub(crate) fn wait(&mut self, poller: &Poller, timeout: Option<Duration>) {
            self.list.clear();
            // A timeout too long for a `Timespec` is none.
            let timeout = timeout.and_then(|t| Timespec::try_from(t).ok());
            loop {
                match epoll::wait(
                    poller,
                    rustix::buffer::spare_capacity(&mut self.list),
                    timeout.as_ref(),
                ) {
                    Err(Errno::INTR) => continue,
                    _ => return,
                }
            }
        }

        pub(crate) fn iter(&self) -> impl Iterator<Item = Ready> + '_ {
            self.list.iter().filter_map(|ev| {
                let (flags, key) = (ev.flags, ev.data.u64());
                if key >= FIRST_FOREIGN_KEY {
                    return None;
                }
                // As `polling` reads them: an error or hang-up ends both
                // directions' waits (the operation then reports it).
                let read = EventFlags::IN | EventFlags::HUP | EventFlags::ERR | EventFlags::PRI;
                let write = EventFlags::OUT | EventFlags::HUP | EventFlags::ERR;
                Some((
                    key as usize,
                    flags.intersects(read),
                    flags.intersects(write),
                ))
            })
        }
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
mod portable {
    use super::{Duration, Poller, Ready};

    /// `polling`'s own notification.
    #[derive(Debug)]
    pub(crate) struct Notifier;

    impl Notifier {
        pub(crate) fn new(_poller: &Poller) -> std::io::Result<Notifier> {
            Ok(Notifier)
        }

        pub(crate) fn notify(&self, poller: &Poller) {
            let _ = poller.notify();
        }
    }

    #[derive(Debug)]
    pub(crate) struct Events {
        list: polling::Events,
    }

    impl Events {
        pub(crate) fn new() -> Events {
            Events {
                list: polling::Events::new(),
            }
        }

        pub(crate) fn wait(&mut self, poller: &Poller, timeout: Option<Duration>) {
            self.list.clear();
            let _ = poller.wait(&mut self.list, timeout);
        }

        pub(crate) fn iter(&self) -> impl Iterator<Item = Ready> + '_ {
            self.list
                .iter()
                .map(|ev| (ev.key, ev.readable, ev.writable))
        }
    }
}
