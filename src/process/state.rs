//! The process state word: who may poll the future, whether the process is
//! queued, and whether it has been told to exit.
//!
//! | flag | set when | cleared when |
//! | --- | --- | --- |
//! | [`NOTIFIED`] | a wake finds the process idle (it is then pushed to a run queue), or arrives while it runs (it is pushed again after the poll) | a worker takes it off a queue to run it |
//! | [`RUNNING`] | a worker owns the future: polling it or dropping it | the poll returns `Pending` |
//! | [`KILLED`] | an exit was requested (`kill`, `exit`, a linked crash); the reason is in the word's kill-reason byte | never |
//! | [`COMPLETE`] | the future has been dropped and teardown is done | never |
//!
//! The word also carries two bytes: the exit reason requested (set once,
//! before `KILLED`, the first request winning) and the reason the process
//! ended with (set with `COMPLETE`, in the same write). Keeping them here
//! rather than in fields of their own saves a word per process.
//!
//! `RUNNING` is the lock on the future: only the thread that set it touches
//! the future. `NOTIFIED` is the ticket for a run queue: a wake that sets it
//! from clear (and finds neither `RUNNING` nor `COMPLETE`) is the one that
//! must push the process, so a process is never queued twice. A wake that
//! lands while `RUNNING` leaves `NOTIFIED` set; the worker's
//! [`State::end_poll`] sees it in the same CAS that clears `RUNNING` and
//! reschedules, so no wake is lost between a poll returning `Pending` and the
//! process going idle. The loom model `loom_state` checks this against kills.
//!
//! # The reference count
//!
//! The top 40 bits count the strong references to the process (handles,
//! wakers, its `Context`, the table's; see `super::task`), so that a
//! process needs no count beside this word. The counting is `Arc`'s:
//!
//! * a new reference is made only from one the caller holds, so the
//!   increment needs no ordering (`Relaxed`): nothing is published by it;
//! * a decrement is `Release`, so that everything its holder did to the
//!   process happens before the free; the one that takes the count to zero
//!   then issues an `Acquire` fence, so that the free sees all of it.
//!
//! Every other write to the word is a read-modify-write that keeps the
//! bits it does not own (`fetch_or`, `fetch_xor`, a CAS from the value it
//! read), so flag transitions and counting never overwrite each other. The
//! loom model `loom_refs` races the count against wakes, kills and a run.

use crate::loom::sync::atomic::{AtomicU64, Ordering, fence};

/// Queued, or owed a reschedule after the current poll.
pub(crate) const NOTIFIED: u64 = 1 << 0;
/// A worker owns the future. Never coexists with `COMPLETE`.
pub(crate) const RUNNING: u64 = 1 << 1;
/// Exit requested; the future must not be polled again.
pub(crate) const KILLED: u64 = 1 << 2;
/// Future dropped, teardown done. Never coexists with `RUNNING`.
pub(crate) const COMPLETE: u64 = 1 << 3;
/// Where the requested exit reason (a nonzero byte) sits in the word.
const KILL_REASON_SHIFT: u32 = 8;
/// Where the reason the process ended with sits in the word.
const EXIT_SHIFT: u32 = 16;
/// Where the reference count sits in the word: the top 40 bits.
const REF_SHIFT: u32 = 24;
/// One reference.
pub(crate) const REF_ONE: u64 = 1 << REF_SHIFT;
/// Past this many references the count is about to run into the sign bit
/// and then over: give up (as `Arc` does) rather than wrap to a free.
const REF_MAX: u64 = 1 << 62;

/// The atomic state word of one process.
#[derive(Debug)]
pub(crate) struct State(AtomicU64);

/// What a worker must do with a process it took off a queue.
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StartPoll {
    /// Poll the future.
    Poll,
    /// Exit was requested: drop the future without polling it.
    Kill,
    /// Already finished (a stale queue entry): do nothing.
    Complete,
}

/// What a worker must do after a poll returned `Pending`.
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EndPoll {
    /// Parked: nothing to do until a wake.
    Idle,
    /// Woken during the poll: push it to a run queue again.
    Reschedule,
    /// Exit requested during the poll: drop the future now.
    Kill,
}

impl State {
    /// A new process: queued at once (its first run is owed).
    #[cfg(all(test, loom))]
    pub(crate) fn new_scheduled() -> State {
        State(AtomicU64::new(NOTIFIED | REF_ONE))
    }

    /// A process being spawned: the spawner holds `RUNNING` while the spawn
    /// closure runs and the future is stored, then [`launch`](Self::launch)es it.
    pub(crate) fn new_spawning() -> State {
        State(AtomicU64::new(RUNNING | REF_ONE))
    }

    /// Hands a process being spawned to the run queues: clears `RUNNING` and
    /// sets `NOTIFIED` in one CAS, so the caller must push it (a wake that
    /// landed meanwhile found `RUNNING` and pushed nothing). `Kill` when an
    /// exit was requested meanwhile: the caller keeps `RUNNING` and ends it.
    pub(crate) fn launch(&self) -> StartPoll {
        // Release (in `transition`): the worker that runs it sees the stored
        // future.
        self.transition(|cur| {
            debug_assert!(cur & RUNNING != 0);
            if cur & KILLED != 0 {
                return Err(StartPoll::Kill);
            }
            Ok(((cur & !RUNNING) | NOTIFIED, StartPoll::Poll))
        })
    }

    pub(crate) fn load(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }

    /// Wakes the process; true when the caller must push it to a run queue.
    #[must_use]
    pub(crate) fn wake(&self) -> bool {
        // AcqRel: what the waker wrote before (a message) is visible to the
        // poll that this wake causes, and we see the latest RUNNING/COMPLETE.
        let prev = self.0.fetch_or(NOTIFIED, Ordering::AcqRel);
        prev & (NOTIFIED | RUNNING | COMPLETE) == 0
    }

    /// Marks the process killed and wakes it; true when the caller must push
    /// it to a run queue.
    #[must_use]
    pub(crate) fn kill(&self) -> bool {
        let prev = self.0.fetch_or(KILLED | NOTIFIED, Ordering::AcqRel);
        prev & (NOTIFIED | RUNNING | COMPLETE) == 0
    }

    /// Takes ownership of the future for a run off a queue.
    pub(crate) fn start_poll(&self) -> StartPoll {
        // Acquire (in `transition`): see everything done by the previous poll
        // and by wakers.
        self.transition(|cur| {
            if cur & COMPLETE != 0 {
                return Err(StartPoll::Complete);
            }
            debug_assert!(cur & RUNNING == 0, "a process is never run twice at once");
            let next = (cur & !NOTIFIED) | RUNNING;
            Ok((
                next,
                if cur & KILLED != 0 {
                    StartPoll::Kill
                } else {
                    StartPoll::Poll
                },
            ))
        })
    }

    /// Gives up the future after a poll returned `Pending`.
    pub(crate) fn end_poll(&self) -> EndPoll {
        // Release (in `transition`): the next poller (on any thread) sees this
        // poll's writes.
        self.transition(|cur| {
            debug_assert!(cur & RUNNING != 0);
            if cur & KILLED != 0 {
                // Keep RUNNING: the caller goes on to drop the future.
                return Err(EndPoll::Kill);
            }
            let next = cur & !RUNNING;
            Ok((
                next,
                if cur & NOTIFIED != 0 {
                    EndPoll::Reschedule
                } else {
                    EndPoll::Idle
                },
            ))
        })
    }

    /// Takes the future from outside a worker (runtime teardown), if no one
    /// runs it and it is not finished. True when the caller now owns it.
    pub(crate) fn claim(&self) -> bool {
        self.transition(|cur| {
            if cur & (RUNNING | COMPLETE) != 0 {
                return Err(false);
            }
            Ok((cur | RUNNING | KILLED, true))
        })
    }

    /// The one compare-and-swap loop of the word: `step` maps the current
    /// value to the next one and the answer it stands for, or to an answer
    /// that changes nothing (`Err`). Retried on a lost race with a fresh
    /// value, so `step` must depend on nothing else.
    fn transition<T>(&self, mut step: impl FnMut(u64) -> Result<(u64, T), T>) -> T {
        let mut cur = self.0.load(Ordering::Acquire);
        loop {
            let (next, answer) = match step(cur) {
                Ok(change) => change,
                Err(answer) => return answer,
            };
            // AcqRel: a transition both takes the future over (Acquire: the
            // previous holder's writes) and hands it on (Release: ours); the
            // failure load is Acquire as the first one is, since `step` may
            // answer from it alone.
            match self
                .0
                .compare_exchange_weak(cur, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return answer,
                Err(actual) => cur = actual,
            }
        }
    }

    /// Counts one more reference; the caller holds one already.
    pub(crate) fn ref_inc(&self) {
        // Relaxed: a reference is only made from another one, which keeps
        // the process alive meanwhile; nothing is published by counting.
        let prev = self.0.fetch_add(REF_ONE, Ordering::Relaxed);
        if prev >= REF_MAX {
            // Billions of leaked references: a wrap would free a live process.
            std::process::abort();
        }
    }

    /// Gives up one reference; true when it was the last, and the caller
    /// must free the process (it then sees every write made through the
    /// other references).
    #[must_use]
    pub(crate) fn ref_dec(&self) -> bool {
        // Release: what this holder did to the process happens before the
        // free, which the last decrement's Acquire fence below sees.
        let prev = self.0.fetch_sub(REF_ONE, Ordering::Release);
        debug_assert!(prev >= REF_ONE, "reference count underflow");
        if prev >> REF_SHIFT != 1 {
            return false;
        }
        // Acquire: pairs with every other holder's Release decrement.
        fence(Ordering::Acquire);
        true
    }

    /// References counted now (for tests).
    #[cfg(all(test, not(loom)))]
    pub(crate) fn refs(&self) -> u64 {
        self.0.load(Ordering::Acquire) >> REF_SHIFT
    }

    /// The owner of the future has dropped it: the process is complete, and
    /// ended with reason `exit` (a nonzero byte), published in the same
    /// write, so whoever sees the reason sees `COMPLETE` and the teardown
    /// before it.
    pub(crate) fn complete(&self, exit: u8) {
        debug_assert!(exit != 0);
        let bits = RUNNING | COMPLETE | (u64::from(exit) << EXIT_SHIFT);
        // XOR flips RUNNING off and COMPLETE on, and sets the exit byte,
        // which is clear until now.
        let prev = self.0.fetch_xor(bits, Ordering::AcqRel);
        debug_assert!(prev & RUNNING != 0 && prev & COMPLETE == 0);
        debug_assert!((prev >> EXIT_SHIFT) & 0xff == 0);
    }

    /// The reason the process ended with (nonzero), or 0 before
    /// [`complete`](Self::complete).
    pub(crate) fn exit(&self) -> u8 {
        (self.0.load(Ordering::Acquire) >> EXIT_SHIFT) as u8
    }

    /// Records `reason` (a nonzero byte) as the requested exit reason unless
    /// one is recorded already: the first request wins. Done before
    /// [`kill`](Self::kill), so whoever sees `KILLED` sees a reason.
    pub(crate) fn set_kill_reason(&self, reason: u8) {
        let _ = self
            .0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |cur| {
                ((cur >> KILL_REASON_SHIFT) & 0xff == 0)
                    .then_some(cur | (u64::from(reason) << KILL_REASON_SHIFT))
            });
    }

    /// Asks the process to exit with `reason` (a nonzero byte; the first
    /// request's wins) and wakes it: true when the caller must push it to
    /// a run queue. The reason goes in first, so whoever sees `KILLED` sees
    /// a reason.
    #[must_use]
    pub(crate) fn kill_with(&self, reason: u8) -> bool {
        self.set_kill_reason(reason);
        self.kill()
    }

    /// The requested exit reason, or 0 if none was.
    pub(crate) fn kill_reason(&self) -> u8 {
        (self.0.load(Ordering::Acquire) >> KILL_REASON_SHIFT) as u8
    }
}

#[cfg(all(test, loom))]
mod loom_state {
    use super::*;
    use crate::loom::sync::atomic::AtomicUsize;
    use crate::loom::sync::{Arc, Mutex};
    use crate::scheduler::park::Parker;

    /// A stand-in run queue: counts entries, so a second entry for the same
    /// process is caught.
    struct RunQueue {
        entries: Mutex<usize>,
        parker: Parker,
    }

    impl RunQueue {
        fn push(&self) {
            let mut n = self.entries.lock();
            *n += 1;
            assert_eq!(*n, 1, "a process is never queued twice");
            drop(n);
            self.parker.unpark();
        }
    }

    /// The reason the stand-in killer asks for.
    const KILL_REASON: u8 = 2;

    /// Ends a process whose kill was seen: the reason is there with it, and
    /// is published with `COMPLETE`.
    fn end_killed(state: &State) {
        assert_eq!(
            state.kill_reason(),
            KILL_REASON,
            "a kill is seen with its reason"
        );
        state.complete(state.kill_reason());
        assert_eq!(state.exit(), KILL_REASON);
        assert!(state.load() & COMPLETE != 0);
    }

    /// Runs the stand-in worker until the process completes.
    fn work(state: &State, rq: &RunQueue, message: &AtomicUsize) {
        loop {
            {
                let mut n = rq.entries.lock();
                if *n == 0 {
                    drop(n);
                    rq.parker.park(None);
                    continue;
                }
                *n -= 1;
            }
            match state.start_poll() {
                StartPoll::Complete => unreachable!("nothing completes it but us"),
                StartPoll::Kill => {
                    end_killed(state);
                    return;
                }
                StartPoll::Poll => {
                    if message.load(Ordering::Acquire) == 1 {
                        state.complete(1);
                        return;
                    }
                    match state.end_poll() {
                        EndPoll::Idle => {}
                        EndPoll::Reschedule => rq.push(),
                        EndPoll::Kill => {
                            end_killed(state);
                            return;
                        }
                    }
                }
            }
        }
    }

    /// Spawns a waker (delivers the message, then wakes) and a killer, each
    /// queuing the process when its transition says so.
    fn spawn_waker_and_killer(
        state: &Arc<State>,
        rq: &Arc<RunQueue>,
        message: &Arc<AtomicUsize>,
    ) -> (loom::thread::JoinHandle<()>, loom::thread::JoinHandle<()>) {
        let waker = {
            let (state, rq, message) = (state.clone(), rq.clone(), message.clone());
            loom::thread::spawn(move || {
                message.store(1, Ordering::Release);
                if state.wake() {
                    rq.push();
                }
            })
        };
        let killer = {
            let (state, rq) = (state.clone(), rq.clone());
            loom::thread::spawn(move || {
                if state.kill_with(KILL_REASON) {
                    rq.push();
                }
            })
        };
        (waker, killer)
    }

    /// Runs `worker` (the worker's side, given the state, the run queue
    /// and the message flag) against a waker and a killer, from `state`
    /// with `queued` entries; then the process is complete, its exit reason
    /// published, and no entry is left behind.
    fn race(state: State, queued: usize, worker: impl FnOnce(&State, &RunQueue, &AtomicUsize)) {
        let state = Arc::new(state);
        let rq = Arc::new(RunQueue {
            entries: Mutex::new(queued),
            parker: Parker::new(),
        });
        let message = Arc::new(AtomicUsize::new(0));
        let (waker, killer) = spawn_waker_and_killer(&state, &rq, &message);
        worker(&state, &rq, &message);
        waker.join().unwrap();
        killer.join().unwrap();
        assert!(state.load() & COMPLETE != 0);
        assert_eq!(state.load() & RUNNING, 0);
        assert_ne!(state.exit(), 0, "the exit reason is published");
        assert_eq!(*rq.entries.lock(), 0, "no entry left behind");
    }

    /// A spawner launches a process (held `RUNNING` while its closure ran)
    /// while a waker and a killer race it: the process is queued at most
    /// once at a time, a kill landing before the launch is ended by the
    /// spawner (never queued), and no wake is lost.
    #[test]
    fn launch_vs_wake_vs_kill() {
        loom::model(|| {
            race(State::new_spawning(), 0, |state, rq, message| {
                match state.launch() {
                    StartPoll::Poll => {
                        rq.push();
                        work(state, rq, message);
                    }
                    StartPoll::Kill => end_killed(state),
                    StartPoll::Complete => unreachable!(),
                }
            });
        });
    }

    /// A worker polls a process whose future completes once it sees the
    /// message; a waker delivers the message and wakes; a killer kills. In
    /// every interleaving the process is queued at most once at a time, is
    /// never polled after a kill is seen, and finishes (no lost wake).
    #[test]
    fn wake_vs_poll_vs_kill() {
        loom::model(|| race(State::new_scheduled(), 1, work));
    }
}
