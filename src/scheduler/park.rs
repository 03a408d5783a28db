//! A worker's parker: a one-token semaphore on a mutex and condvar, which
//! can also block in the I/O reactor instead of on its condvar.
//!
//! `unpark` leaves a token that the next (or current) `park` consumes, so an
//! unpark that races ahead of the park is never lost.
//!
//! # Parking in the reactor
//!
//! The worker holding the duty (see `time::duty` and `io`) parks with
//! [`Parker::park_io`]: it blocks in the reactor's poll, so that a socket
//! becoming ready wakes it directly, with no other thread in between. An
//! `unpark` must then interrupt that poll rather than signal the condvar:
//!
//! * `park_io`: store `in_io = 1` (SeqCst), then take the token lock and
//!   read the token; if one is there, consume it and return without
//!   polling. Otherwise poll ([`IoWait::wait`]), then store `in_io = 0` and
//!   consume whatever token came meanwhile.
//! * `unpark`: set the token under the lock, then load `in_io` (SeqCst);
//!   if it is set, [`IoWait::interrupt`].
//!
//! # Why no unpark is lost
//!
//! The two critical sections on the token lock are ordered. If `park_io`'s
//! comes second, it reads the token and does not poll. If it comes first,
//! its `in_io = 1` (before it) happens before `unpark`'s load of `in_io`
//! (after its own), which therefore reads 1 (or the 0 stored once the poll
//! is over, when nothing needs interrupting) and interrupts. An interrupt
//! is sticky until the blocking poll takes it, so one sent before the poll
//! starts still ends it. (The poller's own notification is not enough:
//! any poll clears it, and another worker's non-blocking poll may run
//! first; the reactor keeps a flag of its own for this, see
//! `io::reactor`.) At worst
//! an interrupt is spurious (the worker re-checks its queues and parks
//! again). The loom model `loom_park_io` checks this, with a third thread
//! polling without blocking; it fails when the token is read before
//! `in_io` is set, and when the blocking poll ignores the reactor's flag.

use crate::loom::sync::atomic::{AtomicUsize, Ordering};
use crate::loom::sync::{Condvar, Mutex};
// A plain `Arc` in both builds: its count is no part of the protocol, and
// loom's cannot hold a trait object.
use std::sync::Arc;
use std::time::Instant;

/// Something a parked worker can block in instead of its condvar: the I/O
/// reactor.
pub(crate) trait IoWait: Send + Sync + std::fmt::Debug {
    /// Blocks until an event (handled before returning), an
    /// [`interrupt`](IoWait::interrupt), or `deadline`.
    fn wait(&self, deadline: Option<Instant>);
    /// Ends the current `wait`, or the next one if none is under way.
    fn interrupt(&self);
}

/// Blocks one worker thread until unparked.
#[derive(Debug)]
pub(crate) struct Parker {
    /// The token: true when an unpark has not been consumed yet.
    notified: Mutex<bool>,
    /// Signalled by `unpark`.
    cv: Condvar,
    /// 1 while the owner is (about to be) blocked in `io`.
    in_io: AtomicUsize,
    /// The reactor `park_io` blocks in, if any.
    io: Option<Arc<dyn IoWait>>,
}

impl Parker {
    pub(crate) fn new() -> Parker {
        Parker {
            notified: Mutex::new(false),
            cv: Condvar::new(),
            in_io: AtomicUsize::new(0),
            io: None,
        }
    }

    /// A parker whose [`park_io`](Self::park_io) blocks in `io` (none under
    /// loom, where the scheduler has no real reactor).
    #[cfg_attr(loom, allow(dead_code))]
    pub(crate) fn with_io(io: Arc<dyn IoWait>) -> Parker {
        Parker {
            io: Some(io),
            ..Parker::new()
        }
    }

    /// Blocks until a token is available (consuming it), or until `deadline`.
    pub(crate) fn park(&self, deadline: Option<std::time::Instant>) {
        let mut token = self.notified.lock();
        while !*token {
            match deadline {
                None => self.cv.wait(&mut token),
                #[cfg(not(loom))]
                Some(d) => {
                    if self.cv.wait_until(&mut token, d) {
                        break;
                    }
                }
                #[cfg(loom)]
                Some(_) => unreachable!("loom models park without deadlines"),
            }
        }
        *token = false;
    }

    /// Blocks in the reactor until an I/O event, a token, or `deadline`
    /// (see the module docs). May return spuriously. Without a reactor,
    /// [`park`](Self::park).
    pub(crate) fn park_io(&self, deadline: Option<std::time::Instant>) {
        let Some(io) = &self.io else {
            return self.park(deadline);
        };
        self.in_io.store(1, Ordering::SeqCst);
        {
            let mut token = self.notified.lock();
            if *token {
                *token = false;
                drop(token);
                self.in_io.store(0, Ordering::SeqCst);
                return;
            }
        }
        io.wait(deadline);
        self.in_io.store(0, Ordering::SeqCst);
        *self.notified.lock() = false;
    }

    /// Leaves a token and wakes the parked thread, if any.
    pub(crate) fn unpark(&self) {
        *self.notified.lock() = true;
        self.cv.notify_one();
        if self.in_io.load(Ordering::SeqCst) != 0 {
            if let Some(io) = &self.io {
                io.interrupt();
            }
        }
    }
}

#[cfg(all(test, loom))]
mod loom_park_io {
    use super::*;
    use crate::time::duty::Duty;

    /// A stand-in for `io::reactor::Reactor` over the poller, with what
    /// matters here: readiness is level (stays until a poll takes it); the
    /// poller's notification is sticky, but any poll clears it, the
    /// non-blocking ones of other threads included; polls hold the event
    /// buffer (`events`); and the reactor's own `interrupted` flag, which
    /// only the blocking poll takes, once it holds the buffer.
    #[derive(Debug)]
    struct MockIo {
        events: Mutex<()>,
        /// (socket ready, poller notified)
        state: Mutex<(bool, bool)>,
        cv: Condvar,
        interrupted: AtomicUsize,
        /// Readiness events handed to a worker.
        delivered: AtomicUsize,
        /// Sockets registered (the reactor's count).
        registered: AtomicUsize,
    }

    impl MockIo {
        /// A reactor with `registered` sockets.
        fn new(registered: usize) -> MockIo {
            MockIo {
                events: Mutex::new(()),
                state: Mutex::new((false, false)),
                cv: Condvar::new(),
                interrupted: AtomicUsize::new(0),
                delivered: AtomicUsize::new(0),
                registered: AtomicUsize::new(registered),
            }
        }

        fn make_ready(&self) {
            self.state.lock().0 = true;
            self.cv.notify_one();
        }

        /// Takes the events and the notification, as every poll does.
        fn take(&self, s: &mut (bool, bool)) -> bool {
            s.1 = false;
            let ready = std::mem::take(&mut s.0);
            if ready {
                self.delivered.fetch_add(1, Ordering::SeqCst);
            }
            ready
        }

        /// A non-blocking poll: true when it took an event. As the
        /// reactor's, it does not poll while no socket is registered.
        fn poll_now(&self) -> bool {
            if self.registered.load(Ordering::SeqCst) == 0 {
                return false;
            }
            let _events = self.events.lock();
            let mut s = self.state.lock();
            self.take(&mut s)
        }
    }

    impl IoWait for MockIo {
        fn wait(&self, _deadline: Option<Instant>) {
            let _events = self.events.lock();
            let block = self.interrupted.swap(0, Ordering::SeqCst) == 0;
            let mut s = self.state.lock();
            while block && !s.0 && !s.1 {
                self.cv.wait(&mut s);
            }
            self.take(&mut s);
        }

        fn interrupt(&self) {
            self.interrupted.store(1, Ordering::SeqCst);
            self.state.lock().1 = true;
            self.cv.notify_one();
        }
    }

    /// An unpark racing a worker parking in the reactor always ends the
    /// park, even when another thread's non-blocking poll takes the
    /// poller's notification first: a lost one leaves the worker blocked
    /// forever (loom reports a deadlock).
    #[test]
    fn an_unpark_reaches_a_worker_parked_in_the_reactor() {
        loom::model(|| {
            let io = Arc::new(MockIo::new(1));
            let parker = Arc::new(Parker::with_io(io.clone()));
            let flag = Arc::new(AtomicUsize::new(0));
            let worker = {
                let (parker, flag) = (parker.clone(), flag.clone());
                loom::thread::spawn(move || {
                    while flag.load(Ordering::SeqCst) == 0 {
                        parker.park_io(None);
                    }
                })
            };
            let other = {
                let io = io.clone();
                loom::thread::spawn(move || {
                    io.poll_now();
                })
            };
            flag.store(1, Ordering::SeqCst);
            parker.unpark();
            worker.join().unwrap();
            other.join().unwrap();
        });
    }

    /// Two workers out of work, as the worker loop runs them: a
    /// non-blocking poll, then sleep (the duty holder in the reactor while a
    /// socket is registered, on its condvar otherwise), until one of them
    /// sees the event delivered and stops both.
    fn sleepers(
        io: &Arc<MockIo>,
        duty: &Arc<Duty>,
        parkers: &Arc<[Parker; 2]>,
    ) -> Vec<loom::thread::JoinHandle<()>> {
        let stop = Arc::new(AtomicUsize::new(0));
        (0..2)
            .map(|id| {
                let (io, duty, parkers, stop) =
                    (io.clone(), duty.clone(), parkers.clone(), stop.clone());
                loom::thread::spawn(move || {
                    loop {
                        if stop.load(Ordering::SeqCst) != 0 {
                            return;
                        }
                        if !io.poll_now() {
                            if duty.take(id) {
                                if io.registered.load(Ordering::SeqCst) != 0 {
                                    parkers[id].park_io(None);
                                } else {
                                    parkers[id].park(None);
                                }
                                duty.release(id);
                            } else {
                                parkers[id].park(None);
                            }
                        }
                        if io.delivered.load(Ordering::SeqCst) != 0 {
                            stop.store(1, Ordering::SeqCst);
                            parkers[0].unpark();
                            parkers[1].unpark();
                            return;
                        }
                    }
                })
            })
            .collect()
    }

    /// The duty hand-off: two workers go to sleep, the one taking the duty
    /// in the reactor, the other on its condvar, while a socket becomes
    /// ready and a worker that has work leaves. Whoever takes the event
    /// stops the model; the event is always taken, so nobody sleeps through
    /// it (a lost one is a deadlock).
    #[test]
    fn readiness_reaches_a_sleeping_worker_through_the_duty() {
        loom::model(|| {
            let io = Arc::new(MockIo::new(1));
            let duty = Arc::new(Duty::new());
            let parkers: Arc<[Parker; 2]> =
                Arc::new([Parker::with_io(io.clone()), Parker::with_io(io.clone())]);
            let workers = sleepers(&io, &duty, &parkers);
            io.make_ready();
            for w in workers {
                w.join().unwrap();
            }
            assert_eq!(io.delivered.load(Ordering::SeqCst), 1);
        });
    }

    /// The first socket registered while the duty holder sleeps on its
    /// condvar (there was nothing to poll, see `io`): the registration
    /// unparks the holder it sees, and a holder parks in the reactor only
    /// if it reads a socket registered after taking the duty. The socket's
    /// readiness is then always taken; a holder left on its condvar never
    /// takes it (loom reports a deadlock). Fails without the unpark, with
    /// the count read before the duty is taken, and without the fence
    /// between the registration's count and its read of the holder.
    #[test]
    fn the_first_socket_moves_the_duty_holder_into_the_reactor() {
        loom::model(|| {
            let io = Arc::new(MockIo::new(0));
            let duty = Arc::new(Duty::new());
            let parkers: Arc<[Parker; 2]> =
                Arc::new([Parker::with_io(io.clone()), Parker::with_io(io.clone())]);
            let workers = sleepers(&io, &duty, &parkers);
            // `Reactor::register` and `io::first_source`.
            let first = io.registered.fetch_add(1, Ordering::SeqCst) == 0;
            crate::loom::sync::atomic::fence(Ordering::SeqCst);
            if first {
                if let Some(w) = duty.holder() {
                    parkers[w].unpark();
                }
            }
            io.make_ready();
            for w in workers {
                w.join().unwrap();
            }
            assert_eq!(io.delivered.load(Ordering::SeqCst), 1);
        });
    }
}
