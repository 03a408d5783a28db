//! The reactor: sockets registered with a [`polling::Poller`], and the
//! wakers waiting on each, driven by the runtime's own threads.
//!
//! Interest is one-shot (`polling`'s default mode): an event disarms its
//! source, and a waiting future re-arms it with `modify` whenever it
//! registers a waker. `modify` checks the socket's readiness at once, so
//! readiness that arrived between the failed read and the registration
//! still produces an event: a future that saw `WouldBlock` and then
//! registered cannot miss it.
//!
//! Events are taken by whoever polls: the duty holder blocked in
//! [`Reactor::poll`] (through [`IoWait::wait`]), a worker between tasks or
//! before it parks, or the stall monitor when nobody polled for a whole
//! period. The wakers are woken on that thread, so on a worker they land
//! in its own next slot.

use crate::scheduler::park::IoWait;
use parking_lot::Mutex;
use polling::{Event, Events, Poller};
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::Waker;
use std::time::{Duration, Instant};

/// One poller per runtime, with the sources registered on it.
pub(crate) struct Reactor {
    poller: Poller,
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
    wakers: Mutex<Wakers>,
}

#[derive(Debug, Default)]
struct Wakers {
    reader: Option<Waker>,
    writer: Option<Waker>,
}

/// Which readiness a future waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dir {
    Read,
    Write,
}

impl Reactor {
    pub(crate) fn new() -> std::io::Result<Reactor> {
        Ok(Reactor {
            poller: Poller::new()?,
            events: Mutex::new(Events::new()),
            sources: Mutex::new(Slab::default()),
            registered: AtomicUsize::new(0),
            polls: AtomicU64::new(0),
            unowned_panics: AtomicU64::new(0),
        })
    }

    /// Registers `fd` with no interest yet.
    ///
    /// # Safety
    ///
    /// `fd` must stay open until [`deregister`](Self::deregister) is called
    /// with the returned source.
    pub(crate) unsafe fn register(&self, fd: RawFd) -> std::io::Result<Arc<Source>> {
        let mut slab = self.sources.lock();
        let key = slab.free.pop().unwrap_or(slab.entries.len());
        let source = Arc::new(Source {
            key,
            fd,
            wakers: Mutex::new(Wakers::default()),
        });
        // SAFETY: the caller keeps `fd` open until it deregisters it.
        unsafe { self.poller.add(fd, Event::none(key))? };
        if key == slab.entries.len() {
            slab.entries.push(Some(source.clone()));
        } else {
            slab.entries[key] = Some(source.clone());
        }
        self.registered.fetch_add(1, Ordering::Relaxed);
        Ok(source)
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
        let w = std::mem::take(&mut *source.wakers.lock());
        self.drop_wakers(w.reader, w.writer);
    }

    /// Waits for `dir` readiness of `source`: stores the waker and re-arms
    /// the source's interest (see the module docs for why no readiness is
    /// missed). The caller returns `Pending`.
    pub(crate) fn arm(&self, source: &Source, dir: Dir, waker: &Waker) -> std::io::Result<()> {
        let mut w = source.wakers.lock();
        let slot = match dir {
            Dir::Read => &mut w.reader,
            Dir::Write => &mut w.writer,
        };
        let old = match slot {
            Some(cur) if cur.will_wake(waker) => None,
            _ => slot.replace(waker.clone()),
        };
        let res = self.rearm(source, &w);
        drop(w);
        self.drop_wakers(old, None);
        res
    }

    fn rearm(&self, source: &Source, w: &Wakers) -> std::io::Result<()> {
        let interest = Event::new(source.key, w.reader.is_some(), w.writer.is_some());
        // SAFETY: a registered source's socket is open (see `register`).
        let fd = unsafe { BorrowedFd::borrow_raw(source.fd) };
        self.poller.modify(fd, interest)
    }

    /// Whether any socket is registered.
    pub(crate) fn has_sources(&self) -> bool {
        self.registered.load(Ordering::Relaxed) != 0
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
    fn poll_blocking(&self, deadline: Option<Instant>) -> usize {
        let timeout = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        let events = self.events.lock();
        self.poll_with(events, timeout)
    }

    fn poll_with(
        &self,
        mut events: parking_lot::MutexGuard<'_, Events>,
        timeout: Option<Duration>,
    ) -> usize {
        events.clear();
        // An error (EINTR is retried inside) leaves no events: the caller
        // goes round its loop and polls again.
        let _ = self.poller.wait(&mut events, timeout);
        let mut woken = Vec::new();
        for ev in events.iter() {
            let source = self.sources.lock().entries.get(ev.key).cloned().flatten();
            let Some(source) = source else { continue };
            let mut w = source.wakers.lock();
            let r = if ev.readable { w.reader.take() } else { None };
            let wr = if ev.writable { w.writer.take() } else { None };
            if w.reader.is_some() || w.writer.is_some() {
                // The event disarmed the source: re-arm what still waits.
                let _ = self.rearm(&source, &w);
            }
            drop(w);
            woken.extend(r);
            woken.extend(wr);
        }
        drop(events);
        self.polls.fetch_add(1, Ordering::Relaxed);
        let n = woken.len();
        for waker in woken {
            // A foreign waker's `wake` is user code.
            if crate::guard::catch(move || waker.wake()).is_none() {
                self.unowned_panics.fetch_add(1, Ordering::Relaxed);
            }
        }
        n
    }

    fn drop_wakers(&self, a: Option<Waker>, b: Option<Waker>) {
        for w in [a, b].into_iter().flatten() {
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
        // Fails only if the poller's notification channel is broken, when
        // nothing better can be done than the caller's own timeout.
        let _ = self.poller.notify();
    }
}

/// The raw descriptor of a socket type.
pub(crate) fn raw(s: &impl AsRawFd) -> RawFd {
    s.as_raw_fd()
}
