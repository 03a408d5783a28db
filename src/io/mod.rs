//! I/O driven by the runtime's own workers: the reactor and the socket
//! types on it ([`net`]).
//!
//! # The I/O duty
//!
//! The worker holding the timer duty (`time::duty`: one sleeper at a time)
//! parks in the reactor's poll instead of on its condvar, with the earliest
//! timer deadline as the poll's timeout ([`Parker::park_io`]), as long as
//! a socket is registered: with none there is nothing to poll, and waking
//! a thread blocked in `epoll_wait` (an eventfd write, then the poll's
//! return) cost a runtime without sockets more than a futex wake (the
//! `spawn_blocking` round trip from a process, 2.5x against 0.8x tokio's). A socket
//! becoming ready ends that poll on the worker itself: its future's waker
//! runs there and puts the process in that worker's own next slot, which it
//! runs as soon as it is back in its loop. Other workers take ready events
//! without blocking: every few dozen ticks between tasks (as they look at
//! the timers), and before parking (with sockets registered, a worker out
//! of work parks at once rather than spinning first).
//!
//! # Why no readiness is slept through
//!
//! Readiness is recorded by the kernel in the poller (level, until a poll
//! takes it), never by us, so the question is only whether some thread
//! polls after it, within bounded time:
//!
//! * Every worker polls without blocking before it parks, after it last
//!   ran a task, so readiness from before that point is taken then.
//! * A worker parking takes the duty if nobody holds it
//!   (`Duty::take`, a SeqCst CAS) and then parks in the poll. So when every
//!   worker is parked, one of them is in the poll: each parked worker
//!   either holds the duty or saw a holder, and that holder is parked too,
//!   in the poll. Readiness arriving then ends that poll.
//! * The holder parks in the poll only if it reads, after taking the duty,
//!   that a socket is registered (SeqCst load, after `Duty::take`'s
//!   SeqCst fence); registering the first socket is a SeqCst `fetch_add`
//!   on that count, a SeqCst fence, then a read of the holder, which is
//!   unparked ([`first_source`]). Both sides write, fence, then read what
//!   the other wrote: the fences are ordered, so either the holder sees the
//!   socket and parks in the poll, or the registration sees the holder
//!   and its unpark (a token, never lost) sends it round to park again,
//!   in the poll this time. With no holder seen, the duty is taken later,
//!   and that taker reads the count after it. A socket only becomes ready
//!   after it is registered, so none is ready while the holder sleeps on
//!   its condvar.
//! * An `unpark` aimed at the duty holder (new work, an earlier timer, the
//!   stop) interrupts its poll: the hand-off between the token and the
//!   poll is argued in `scheduler::park` (loom model `loom_park_io`). The
//!   interrupt is the reactor's own flag, taken only by the blocking poll,
//!   because any poll (another worker's non-blocking one too) clears the
//!   poller's notification.
//! * While some worker is awake, it polls between tasks; should every
//!   awake worker be stuck in one long poll, the stall monitor (which runs
//!   on a timer, not on wakes) polls the reactor itself when nobody did for
//!   a whole period of its own, and the processes it wakes go to the
//!   injector, which wakes a parked worker by the posting protocol.
//!
//! The loom model `loom_park_io` also runs the hand-off between two workers
//! going to sleep (one with the duty, in the poll) and a socket becoming
//! ready, and the first socket registered while the holder sleeps on its
//! condvar.
//!
//! `async-io`'s sockets keep working as before, on async-io's own thread;
//! only sockets of [`net`] are driven here.
//!
//! [`Parker::park_io`]: crate::scheduler::park::Parker::park_io

/// The first socket was registered: the duty holder, parked on its
/// condvar while there was nothing to poll, goes round to park in the
/// reactor (see the module docs). With no holder, whoever takes the duty
/// next sees the socket.
#[cfg(not(loom))]
fn first_source(shared: &crate::runtime::Shared) {
    if let Some(w) = shared.timers.duty_holder() {
        shared.scheduler.parkers[w].unpark();
    }
}

#[cfg(not(loom))]
pub mod net;

/// Which readiness a future waits for (one waiter list and one readiness
/// bit each); shared by the reactor and its Miri stand-in.
#[cfg(not(loom))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dir {
    Read = 0,
    Write = 1,
}
#[cfg(not(any(loom, miri)))]
pub(crate) mod reactor;
#[cfg(loom)]
#[path = "reactor_loom.rs"]
pub(crate) mod reactor;
#[cfg(all(miri, not(loom)))]
#[path = "reactor_miri.rs"]
pub(crate) mod reactor;
#[cfg(not(any(loom, miri)))]
mod sys;
