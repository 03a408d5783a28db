//! The slot a blocking job and its future share: the job's outcome, the
//! awaiting task's waker, and whether the future is gone.
//!
//! One mutex guards all three, so the protocol is short:
//!
//! * **complete** (the job): under the lock, if the future is gone, hand
//!   the outcome back (the caller drops it under the guard); otherwise
//!   store it and take the waker; wake after the lock.
//! * **poll** (the future): under the lock, take the outcome, or store the
//!   waker. An outcome stored before this lock is taken now; one stored
//!   after it finds the waker. So no wakeup is lost between the check and
//!   the waker store.
//! * **abandon** (the future's drop): under the lock, mark the slot and
//!   take an outcome never awaited. Each outcome therefore ends in exactly
//!   one place: the future's poll, the abandon, or back with the job.
//!
//! The loom model `loom_blocking_slot` runs a completion against a waiting
//! poll, and against the future's drop.

use crate::loom::sync::Mutex;
use std::task::Waker;

/// What a job and its future share; `O` is the job's outcome.
#[derive(Debug)]
pub(crate) struct Slot<O> {
    state: Mutex<State<O>>,
}

#[derive(Debug)]
struct State<O> {
    /// The outcome, until the future takes it.
    outcome: Option<O>,
    /// The waker of the last poll that found no outcome.
    waker: Option<Waker>,
    /// The future is gone: skip the job, hand its outcome back.
    abandoned: bool,
}

impl<O> Slot<O> {
    pub(crate) fn new() -> Slot<O> {
        Slot {
            state: Mutex::new(State {
                outcome: None,
                waker: None,
                abandoned: false,
            }),
        }
    }

    /// Whether the future is gone (a job not started yet is then skipped).
    pub(crate) fn is_abandoned(&self) -> bool {
        self.state.lock().abandoned
    }

    /// The job's end: stores `outcome` and wakes the awaiting task, or,
    /// with the future gone, gives `outcome` back.
    pub(crate) fn complete(&self, outcome: O) -> Result<(), O> {
        let mut st = self.state.lock();
        if st.abandoned {
            return Err(outcome);
        }
        st.outcome = Some(outcome);
        let waker = st.waker.take();
        drop(st);
        if let Some(w) = waker {
            w.wake();
        }
        Ok(())
    }

    /// The future's poll: the outcome, or `None` with `waker` kept to be
    /// woken by the completion.
    pub(crate) fn poll(&self, waker: &Waker) -> Option<O> {
        let mut st = self.state.lock();
        let outcome = st.outcome.take();
        if outcome.is_none() {
            match &mut st.waker {
                Some(w) if w.will_wake(waker) => {}
                w => *w = Some(waker.clone()),
            }
        }
        outcome
    }

    /// The future's drop: marks the slot abandoned; returns the outcome if
    /// it was stored but never taken, and the waker, both to be dropped by
    /// the caller outside the lock.
    pub(crate) fn abandon(&self) -> (Option<O>, Option<Waker>) {
        let mut st = self.state.lock();
        st.abandoned = true;
        (st.outcome.take(), st.waker.take())
    }
}

#[cfg(all(test, loom))]
mod loom_blocking_slot {
    use super::Slot;
    use loom::sync::Arc;

    /// Wakes a loom thread parked in `wait`.
    struct Unparker(loom::thread::Thread);

    impl std::task::Wake for Unparker {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.unpark();
        }
    }

    /// Polls the slot as a future would, parking between polls until its
    /// waker is woken.
    fn wait(slot: &Slot<u32>) -> u32 {
        let waker = std::task::Waker::from(std::sync::Arc::new(Unparker(loom::thread::current())));
        loop {
            match slot.poll(&waker) {
                Some(v) => return v,
                None => loom::thread::park(),
            }
        }
    }

    /// The job completes while the future polls and waits: the future
    /// always gets the outcome (a lost wakeup would deadlock the model).
    #[test]
    fn completion_races_a_waiting_poll() {
        loom::model(|| {
            let slot = Arc::new(Slot::<u32>::new());
            let s = slot.clone();
            let job = loom::thread::spawn(move || s.complete(7).is_ok());
            assert_eq!(wait(&slot), 7);
            assert!(job.join().unwrap());
        });
    }

    /// The future is dropped while the job completes: the outcome ends in
    /// exactly one place (back with the job, or taken by the drop).
    #[test]
    fn completion_races_the_futures_drop() {
        loom::model(|| {
            let slot = Arc::new(Slot::<u32>::new());
            let s = slot.clone();
            let job = loom::thread::spawn(move || s.complete(7).err());
            let (taken, _) = slot.abandon();
            let back = job.join().unwrap();
            assert_eq!(
                taken.is_some() as u32 + back.is_some() as u32,
                1,
                "the outcome ends in exactly one place"
            );
        });
    }
}
