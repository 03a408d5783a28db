//! The reactor: sockets registered with a [`polling::Poller`], and the
//! wakers waiting on each, driven by the runtime's own threads.
//!
//! Sources are registered once, edge-triggered, for both directions, and
//! each keeps a readiness cache (one flag per direction and a tick, under
//! its lock): an event sets the flags, bumps the tick and takes the wakers.
//! An operation is tried only while its flag is set; when it would block
//! (or, for a read or write, comes back short, which means the socket is
//! drained), the flag is cleared, but only if the tick has not moved since
//! the flag was read. So no syscall re-arms a source and no syscall is
//! spent learning what the last one said, and readiness is never lost:
//!
//! * an edge that comes after the operation is an event; dispatched before
//!   the clear, it moved the tick (no clear, the operation is retried);
//!   after it, it sets the flag again and wakes the waker;
//! * a future stores its waker under the same lock that it read the flag
//!   clear under, and the dispatch sets the flag and takes the waker under
//!   that lock too: either the future sees the flag or the dispatch sees
//!   the waker.
//!
//! Events are taken by whoever polls: the duty holder blocked in
//! [`IoWait::wait`], a worker between tasks or before it parks, or the
//! stall monitor when nobody polled for a whole period (see `io`). Wakers
//! are woken on that thread, so on a worker they land in its own next slot.

pub(crate) use super::Dir;
use super::sys::{Events, Notifier};
use crate::scheduler::park::IoWait;
use parking_lot::Mutex;
use polling::{Event, PollMode, Poller};
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::Waker;
use std::time::{Duration, Instant};

/// One poller per runtime, with the sources registered on it.
pub(crate) struct Reactor {
    poller: Poller,
    /// Interrupts a wait (see `sys`).
    notifier: Notifier,
    /// The event buffer; held for the whole of a poll, so one thread polls
    /// at a time and the others' non-blocking polls give way.
    events: Mutex<Events>,
    /// Registered sources by key; freed keys are reused.
    sources: Mutex<Slab>,
    /// Sources registered now (no source, no poll needed).
    registered: AtomicUsize,
    /// Polls completed, read by the stall monitor to tell whether anyone
    /// polled during its last period.
    polls: AtomicU64,
    /// Panics from wakers woken here (foreign wakers are user code).
    unowned_panics: AtomicU64,
    /// Set by [`IoWait::interrupt`] before it notifies the poller, and
    /// taken by the blocking poll once it holds the event buffer: any poll
    /// clears the poller's notification, so a non-blocking one by another
    /// thread could take an interrupt meant for the duty holder still
    /// waiting for the buffer (see `wait`).
    interrupted: AtomicBool,
    /// Set once the runtime has stopped: nobody polls any more, so a
    /// future that would wait here fails instead (see [`close`](Self::close)).
    closed: AtomicBool,
}

impl std::fmt::Debug for Reactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reactor")
            .field("registered", &self.registered.load(Ordering::Relaxed))
            .finish()
    }
}

#[derive(Default)]
struct Slab {
    entries: Vec<Option<Arc<Source>>>,
    free: Vec<usize>,
}

/// A registered socket and the wakers waiting on it.
#[derive(Debug)]
pub(crate) struct Source {
    key: usize,
    fd: RawFd,
    state: Mutex<State>,
}

/// A source's readiness cache and waiting wakers.
#[derive(Debug)]
struct State {
    /// Bumped by every event.
    tick: u64,
    /// Per [`Dir`]: whether the operation may succeed.
    ready: [bool; 2],
    /// Per [`Dir`]: the futures waiting for readiness. Several processes
    /// may wait on one socket (an acceptor pool on one listener); an event
    /// wakes them all, and those that find nothing wait again.
    wakers: [Vec<Waker>; 2],
}

impl Reactor {
    pub(crate) fn new() -> std::io::Result<Reactor> {
        let poller = Poller::new()?;
        Ok(Reactor {
            notifier: Notifier::new(&poller)?,
            poller,
            events: Mutex::new(Events::new()),
            sources: Mutex::new(Slab::default()),
            registered: AtomicUsize::new(0),
            polls: AtomicU64::new(0),
            unowned_panics: AtomicU64::new(0),
            interrupted: AtomicBool::new(false),
            closed: AtomicBool::new(false),
        })
    }

    /// Registers `fd` with no interest yet. The flag is true when no other
    /// source was registered: the caller must then move the duty holder
    /// into the reactor (see `io`).
    ///
    /// # Safety
    ///
    /// `fd` must stay open until [`deregister`](Self::deregister) is called
    /// with the returned source.
    pub(crate) unsafe fn register(&self, fd: RawFd) -> std::io::Result<(Arc<Source>, bool)> {
        let mut slab = self.sources.lock();
        let key = slab.free.pop().unwrap_or(slab.entries.len());
        let source = Arc::new(Source {
            key,
            fd,
            // Nothing known yet: the first operations are tried.
            state: Mutex::new(State {
                tick: 0,
                ready: [true; 2],
                wakers: [Vec::new(), Vec::new()],
            }),
        });
        // SAFETY: the caller keeps `fd` open until it deregisters it.
        unsafe {
            self.poller
                .add_with_mode(fd, Event::all(key), PollMode::Edge)?
        };
        if key == slab.entries.len() {
            slab.entries.push(Some(source.clone()));
        } else {
            slab.entries[key] = Some(source.clone());
        }
        // Then the caller reads the duty holder: the fence orders the two
        // (see `io`; the holder has its own after taking the duty).
        let first = self.registered.fetch_add(1, Ordering::SeqCst) == 0;
        std::sync::atomic::fence(Ordering::SeqCst);
        Ok((source, first))
    }

    /// Removes `source` from the poller; its wakers are dropped (a pending
    /// future on it is simply never woken by this source again).
    pub(crate) fn deregister(&self, source: &Source) {
        // SAFETY: the socket is still open: deregistering precedes its close.
        let fd = unsafe { BorrowedFd::borrow_raw(source.fd) };
        let _ = self.poller.delete(fd);
        let mut slab = self.sources.lock();
        slab.entries[source.key] = None;
        slab.free.push(source.key);
        drop(slab);
        self.registered.fetch_sub(1, Ordering::Relaxed);
        let [a, b] = std::mem::take(&mut source.state.lock().wakers);
        self.drop_wakers(a.into_iter().chain(b));
    }

    /// Runs `op` while `source` is ready in direction `dir`; when it is
    /// not (or `op` would block, or `done` says it drained the socket),
    /// stores the waker and returns `Pending` (see the module docs).
    pub(crate) fn poll_op<R>(
        &self,
        source: &Source,
        dir: Dir,
        cx: &mut std::task::Context<'_>,
        mut op: impl FnMut() -> std::io::Result<R>,
        drained: impl Fn(&R) -> bool,
    ) -> std::task::Poll<std::io::Result<R>> {
        let d = dir as usize;
        loop {
            let tick = {
                let mut st = source.state.lock();
                if !st.ready[d] {
                    // Read under the source's lock, which `close` takes
                    // after setting the flag: either this sees it, or
                    // `close` sees the waker stored below and wakes it.
                    if self.closed.load(Ordering::SeqCst) {
                        return std::task::Poll::Ready(Err(std::io::Error::other(
                            "rusm_otp::net socket awaited after the runtime it was first \
                             awaited in was dropped",
                        )));
                    }
                    // A task waits once however often it is polled.
                    if !st.wakers[d].iter().any(|w| w.will_wake(cx.waker())) {
                        st.wakers[d].push(cx.waker().clone());
                    }
                    return std::task::Poll::Pending;
                }
                st.tick
            };
            let res = op();
            let clear = match &res {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => true,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => false,
                Ok(r) => drained(r),
            };
            if clear {
                let mut st = source.state.lock();
                if st.tick == tick {
                    st.ready[d] = false;
                }
            }
            match res {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                r => return std::task::Poll::Ready(r),
            }
        }
    }

    /// Called once the runtime's threads are gone: a socket still
    /// registered here (it outlived the runtime, or moved to another one)
    /// would wait for events nobody takes any more. Its waiting futures are
    /// woken, and they and any later ones that would wait fail instead.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        let sources: Vec<Arc<Source>> = self
            .sources
            .lock()
            .entries
            .iter()
            .flatten()
            .cloned()
            .collect();
        for source in sources {
            let [a, b] = std::mem::take(&mut source.state.lock().wakers);
            for waker in a.into_iter().chain(b) {
                // A foreign waker's `wake` is user code.
                if crate::guard::catch(move || waker.wake()).is_none() {
                    self.unowned_panics.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// Whether any socket is registered. SeqCst: the duty holder reads it
    /// after taking the duty, to choose where to park (see `io`).
    pub(crate) fn has_sources(&self) -> bool {
        self.registered.load(Ordering::SeqCst) != 0
    }

    /// Polls completed so far.
    pub(crate) fn polls(&self) -> u64 {
        self.polls.load(Ordering::Relaxed)
    }

    /// Panics from wakers this reactor woke or dropped.
    pub(crate) fn unowned_panics(&self) -> u64 {
        self.unowned_panics.load(Ordering::Relaxed)
    }

    /// Takes the events ready now, without blocking, and wakes their
    /// futures; gives way if another thread polls. Returns how many
    /// futures were woken.
    pub(crate) fn poll_now(&self) -> usize {
        if !self.has_sources() {
            return 0;
        }
        match self.events.try_lock() {
            Some(events) => self.poll_with(events, Some(Duration::ZERO)),
            None => 0,
        }
    }

    /// Blocks until an event, an interrupt or `deadline`, and wakes the
    /// futures of the events taken.
    ///
    /// Holding the event buffer, nobody else polls, so the poller's
    /// notification can only be taken by this poll. An interrupt that
    /// stored `interrupted` before this poll read it is seen here (the poll
    /// does not block); one that comes after notifies the poller after the
    /// read, and that notification ends this poll.
    fn poll_blocking(&self, deadline: Option<Instant>) -> usize {
        let events = self.events.lock();
        let timeout = if self.interrupted.swap(false, Ordering::SeqCst) {
            Some(Duration::ZERO)
        } else {
            deadline.map(|d| d.saturating_duration_since(Instant::now()))
        };
        self.poll_with(events, timeout)
    }

    fn poll_with(
        &self,
        mut events: parking_lot::MutexGuard<'_, Events>,
        timeout: Option<Duration>,
    ) -> usize {
        // An error leaves no events: the caller goes round its loop and
        // polls again.
        events.wait(&self.poller, timeout);
        let mut woken = 0;
        // Wakers are woken with the event buffer still held: other pollers
        // only give way meanwhile (a `try_lock`), and a foreign waker that
        // polls again from here finds it held and gives way too.
        for (key, readable, writable) in events.iter() {
            let source = self.sources.lock().entries.get(key).cloned().flatten();
            let Some(source) = source else { continue };
            let mut st = source.state.lock();
            st.tick += 1;
            let mut take = [Vec::new(), Vec::new()];
            for (d, on) in [readable, writable].into_iter().enumerate() {
                if on {
                    st.ready[d] = true;
                    take[d] = std::mem::take(&mut st.wakers[d]);
                }
            }
            drop(st);
            for waker in take.into_iter().flatten() {
                woken += 1;
                // A foreign waker's `wake` is user code.
                if crate::guard::catch(move || waker.wake()).is_none() {
                    self.unowned_panics.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        drop(events);
        self.polls.fetch_add(1, Ordering::Relaxed);
        woken
    }

    fn drop_wakers(&self, wakers: impl IntoIterator<Item = Waker>) {
        for w in wakers {
            if !crate::guard::drop_caught(w) {
                self.unowned_panics.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

impl IoWait for Reactor {
    fn wait(&self, deadline: Option<Instant>) {
        self.poll_blocking(deadline);
    }

    fn interrupt(&self) {
        self.interrupted.store(true, Ordering::SeqCst);
        self.notifier.notify(&self.poller);
    }
}

/// The raw descriptor of a socket type.
pub(crate) fn raw(s: &impl AsRawFd) -> RawFd {
    s.as_raw_fd()
}

#[cfg(test)]
mod tests {
    use crate::ExitReason;

    /// With no socket registered the duty holder parks on its condvar, not
    /// in the reactor's wait: a runtime without sockets, waking and parking
    /// its workers on every `spawn_blocking` round trip, never polls.
    #[test]
    fn without_sockets_nobody_waits_in_the_reactor() {
        let rt = crate::Runtime::builder().workers(2).build();
        let h = rt.spawn(|ctx| async move {
            for i in 0..50 {
                assert_eq!(ctx.runtime().spawn_blocking(move || i).await, i);
            }
        });
        assert_eq!(rt.block_on(h.join()), ExitReason::Normal);
        assert_eq!(rt.shared.scheduler.io.polls(), 0);
    }
}
