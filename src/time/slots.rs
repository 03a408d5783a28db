//! The wheel's slots and its `processed` mark: where a timer goes, and the
//! protocol that keeps an insert from landing behind an advance.
//!
//! A timer due at tick `t` lives in slot `t % n`. `processed` says every
//! tick up to and including it has been processed: its timers were taken
//! out and handed to the advancer to fire.
//!
//! # Insert vs. advance
//!
//! * **Advance** to tick `to` (one advancer at a time) visits the slots of
//!   the ticks `processed + 1 ..= to` in order (at most one turn of them),
//!   and for each, *under that slot's lock*, takes out every timer due by
//!   `to` and then stores `processed = t`.
//! * **Insert** of a timer due no earlier than tick `e` reads `processed`
//!   (`p`), picks `x = max(e, p + 1)`, locks slot `x % n` and reads
//!   `processed` again *under that lock*. If `x > processed` it pushes the
//!   timer at `x`; otherwise an advance has processed tick `x` meanwhile,
//!   and it unlocks and starts over from the new mark (which grew past `x`;
//!   it grows only as real time passes, so the retries end).
//!
//! **Why an inserted timer is never left behind.** The advancer's store of
//! `processed = t` and its scan of slot `t` happen in one critical section
//! of slot `t`'s lock; an insert into that slot is ordered before or after
//! that whole section. If after, the insert reads `processed >= t` under
//! the lock. Every tick `<= processed` that maps to this slot was covered
//! by a visit of this slot (the visits walk consecutive ticks, or all `n`
//! slots when more than a turn has passed, each taking every timer due by
//! its `to`), so an insert that reads `x > processed` under the lock pushes
//! before the visit that will first make `processed >= x`; that visit is of
//! this slot, and takes it. Hence, outside a slot's critical sections,
//! **every timer in a slot is due after `processed`**: none waits a turn,
//! and the earliest-deadline hint rebuilt from the slots is never at or
//! below the ticks already processed (which would make every idle worker
//! see a due timer and spin instead of parking).
//!
//! An insert never lands at a processed tick, so a timer set while an
//! advance fires its batch goes to a later advance, and timers fire in
//! deadline order (the wheel fires a batch while it excludes other
//! advancers).
//!
//! Reading `processed` only before taking the slot lock (and checking it
//! again after the push, to fire a timer that landed late) is not enough:
//! an insert can read the old mark, push into a slot the advance has just
//! scanned, and read the old mark again before the advance stores the new
//! one; nor is storing the mark once after the whole scan. The loom model
//! `loom_slots` drives that interleaving.

#![cfg_attr(loom, allow(dead_code))]

use crate::loom::sync::Mutex;
use crate::loom::sync::atomic::{AtomicU64, Ordering};
use std::sync::atomic::AtomicUsize;

/// A timer as the slots see it.
pub(crate) trait Slotted {
    /// The tick it is due at.
    fn tick(&self) -> u64;
    /// Its index in its slot's vector, maintained under the slot lock.
    fn slot_index(&self) -> &AtomicUsize;
    /// Whether `self` and `other` are the same timer.
    fn same(&self, other: &Self) -> bool;
}

/// The slots and the `processed` mark.
pub(crate) struct Slots<T> {
    /// Slot `i` holds the timers due at ticks `t` with `t % len == i`.
    slots: Box<[Mutex<Vec<T>>]>,
    /// Every tick up to and including this one has been processed. Stored
    /// only under the lock of the slot of the tick stored (see the module
    /// docs).
    processed: AtomicU64,
}

impl<T: Slotted> Slots<T> {
    pub(crate) fn new(n: usize) -> Slots<T> {
        Slots {
            slots: (0..n).map(|_| Mutex::new(Vec::new())).collect(),
            processed: AtomicU64::new(0),
        }
    }

    fn slot(&self, tick: u64) -> &Mutex<Vec<T>> {
        &self.slots[(tick % self.slots.len() as u64) as usize]
    }

    /// The last tick processed.
    pub(crate) fn processed(&self) -> u64 {
        self.processed.load(Ordering::Acquire)
    }

    /// Makes a timer with `make(tick)` and pushes it, at the first tick at
    /// or after `earliest` that has not been processed; returns it.
    pub(crate) fn insert(&self, earliest: u64, make: impl FnOnce(u64) -> T) -> T
    where
        T: Clone,
    {
        let mut processed = self.processed.load(Ordering::Acquire);
        loop {
            let tick = earliest.max(processed + 1);
            let mut slot = self.slot(tick).lock();
            // Read again under the slot lock: see the module docs.
            processed = self.processed.load(Ordering::Acquire);
            if tick > processed {
                let timer = make(tick);
                timer.slot_index().store(slot.len(), Ordering::Relaxed);
                slot.push(timer.clone());
                return timer;
            }
        }
    }

    /// Takes `timer` out of its slot, if it is there. The caller drops
    /// what it gets back after the slot lock is released.
    pub(crate) fn remove(&self, timer: &T) -> Option<T> {
        let mut slot = self.slot(timer.tick()).lock();
        let i = timer.slot_index().load(Ordering::Relaxed);
        if i < slot.len() && slot[i].same(timer) {
            Some(take(&mut slot, i))
        } else {
            None
        }
    }

    /// Processes every tick up to `to`, moving the timers due by then into
    /// `due` (in no particular order). One advancer at a time: the caller
    /// excludes others.
    pub(crate) fn advance(&self, to: u64, due: &mut Vec<T>) {
        let from = self.processed.load(Ordering::Acquire) + 1;
        if to < from {
            return;
        }
        // More than a turn behind: one visit of every slot covers it all,
        // since each visit takes every timer due by `to`.
        let n = self.slots.len() as u64;
        let from = from.max((to + 1).saturating_sub(n));
        for t in from..=to {
            let mut slot = self.slot(t).lock();
            let mut i = 0;
            while i < slot.len() {
                if slot[i].tick() <= to {
                    due.push(take(&mut slot, i));
                } else {
                    i += 1;
                }
            }
            // Under the lock: an insert into this slot either was seen
            // above or sees this mark (see the module docs).
            self.processed.store(t, Ordering::Release);
        }
    }

    /// The earliest tick of a timer within one turn after `processed`, or
    /// `None` when every slot is empty of such timers.
    pub(crate) fn earliest_within_turn(&self, processed: u64) -> Option<u64> {
        let mut best = u64::MAX;
        for k in 1..=self.slots.len() as u64 {
            let t = processed + k;
            let slot = self.slot(t).lock();
            for e in slot.iter() {
                best = best.min(e.tick());
            }
            drop(slot);
            if best <= t {
                break;
            }
        }
        (best != u64::MAX).then_some(best)
    }

    /// Takes out every timer `remove` says so of (runtime stop); `remove`
    /// runs under the slot's lock.
    pub(crate) fn remove_where(&self, mut remove: impl FnMut(&T) -> bool) -> Vec<T> {
        let mut removed = Vec::new();
        for slot in self.slots.iter() {
            let mut slot = slot.lock();
            let mut i = 0;
            while i < slot.len() {
                if remove(&slot[i]) {
                    removed.push(take(&mut slot, i));
                } else {
                    i += 1;
                }
            }
        }
        removed
    }
}

/// A slot's room kept while it holds any timer.
const KEEP: usize = 4;

/// Takes the timer at `i` out of `slot` (the last one takes its place).
///
/// A slot's vector grows to the most timers it ever held at once, which a
/// burst (a storm of calls, each with its timeout) makes large in every
/// slot its deadlines fall in; kept, that room would be held for good,
/// about 8 bytes per timer of the largest burst. So a slot down to a
/// quarter of its room gives half of it back. A slot just shrunk is half
/// full: the next growth is as many pushes away as it holds, the next
/// shrink half as many removals, so the copying stays amortised O(1) per
/// timer and a slot alternating around one size does not thrash. An
/// emptied slot gives back all its room: otherwise each of the wheel's
/// slots would keep its last room for good once a timer had passed
/// through it, so the wheel's memory would grow with the time it has run
/// (one turn) rather than with the timers pending.
fn take<T: Slotted>(slot: &mut Vec<T>, i: usize) -> T {
    let taken = slot.swap_remove(i);
    if let Some(moved) = slot.get(i) {
        moved.slot_index().store(i, Ordering::Relaxed);
    }
    if slot.is_empty() {
        *slot = Vec::new();
    } else if slot.capacity() > KEEP && slot.len() * 4 <= slot.capacity() {
        slot.shrink_to((slot.len() * 2).max(KEEP));
    }
    taken
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(loom)]
    use loom::sync::Arc;
    #[cfg(not(loom))]
    use std::sync::Arc;

    /// A bare timer for the models.
    #[derive(Debug)]
    pub(super) struct T {
        tick: u64,
        index: AtomicUsize,
    }

    impl Slotted for Arc<T> {
        fn tick(&self) -> u64 {
            self.tick
        }
        fn slot_index(&self) -> &AtomicUsize {
            &self.index
        }
        fn same(&self, other: &Self) -> bool {
            Arc::ptr_eq(self, other)
        }
    }

    pub(super) fn timer(tick: u64) -> Arc<T> {
        Arc::new(T {
            tick,
            index: AtomicUsize::new(0),
        })
    }

    /// Every timer still in a slot is due after `processed`.
    pub(super) fn assert_none_left_behind(s: &Slots<Arc<T>>) {
        let processed = s.processed();
        for e in s.remove_where(|_| true) {
            assert!(
                e.tick > processed,
                "a timer due at tick {} was left in its slot after tick {processed} was \
                 processed: it would fire a whole turn late",
                e.tick
            );
        }
    }

    #[cfg(not(loom))]
    #[test]
    fn an_insert_behind_a_running_advance_is_not_left_behind() {
        use std::sync::mpsc;
        use std::time::{Duration, Instant};
        // Slot 2 is held here, so the advance below processes tick 1 and
        // then waits on slot 2; an insert at tick 1 in that window is
        // exactly the race: its slot is scanned, the advance is not done.
        let s = Arc::new(Slots::<Arc<T>>::new(8));
        s.insert(1, timer);
        let held = s.slot(2).lock();
        let (tx, rx) = mpsc::channel();
        let advancer = {
            let s = s.clone();
            std::thread::spawn(move || {
                let mut due = Vec::new();
                s.advance(3, &mut due);
                tx.send(due.len()).unwrap();
            })
        };
        let limit = Instant::now() + Duration::from_secs(30);
        while !s.slot(1).lock().is_empty() {
            assert!(Instant::now() < limit, "the advance never reached tick 1");
            std::thread::yield_now();
        }
        // The insert may now wait on slot 2 (it must not go into slot 1):
        // give it a bounded chance to finish before the advance goes on,
        // which is the window where a late push would be missed.
        let (done_tx, done_rx) = mpsc::channel();
        let inserter = {
            let s = s.clone();
            std::thread::spawn(move || done_tx.send(s.insert(1, timer).tick).unwrap())
        };
        let early = done_rx.recv_timeout(Duration::from_millis(200)).ok();
        drop(held);
        let tick = early.unwrap_or_else(|| done_rx.recv().unwrap());
        inserter.join().unwrap();
        let taken = rx.recv().unwrap();
        advancer.join().unwrap();
        assert!(
            tick >= 2,
            "an insert went to tick {tick}, already processed"
        );
        assert!(taken >= 1);
        assert_none_left_behind(&s);
    }

    #[cfg(not(loom))]
    #[test]
    fn a_slot_emptied_after_a_burst_gives_its_room_back() {
        let s = Slots::<Arc<T>>::new(4);
        let n = if cfg!(miri) { 64 } else { 10_000 };
        let burst: Vec<_> = (0..n).map(|_| s.insert(5, timer)).collect();
        for (k, t) in burst.iter().enumerate() {
            if k % 2 == 0 {
                assert!(s.remove(t).is_some());
            }
        }
        let mut due = Vec::new();
        s.advance(5, &mut due);
        assert_eq!(due.len(), n / 2);
        assert_eq!(
            s.slot(5).lock().capacity(),
            0,
            "an empty slot holds no room"
        );
    }

    /// A slot that held one timer holds nothing once it fired or was
    /// cancelled, so a wheel that ran a while holds what is pending only.
    #[cfg(not(loom))]
    #[test]
    fn a_wheel_turned_through_holds_no_room_for_past_timers() {
        let s = Slots::<Arc<T>>::new(8);
        let mut due = Vec::new();
        for t in 1..=24 {
            let timer = s.insert(t, timer);
            if t % 3 == 0 {
                assert!(s.remove(&timer).is_some());
            }
            s.advance(t, &mut due);
        }
        assert_eq!(due.len(), 16);
        for i in 0..8 {
            assert_eq!(s.slots[i].lock().capacity(), 0, "slot {i} kept room");
        }
    }

    #[cfg(not(loom))]
    #[test]
    fn an_advance_more_than_a_turn_behind_takes_everything_due() {
        let s = Slots::<Arc<T>>::new(4);
        for t in [1, 3, 6, 9, 10] {
            s.insert(t, timer);
        }
        let mut due = Vec::new();
        s.advance(9, &mut due);
        let mut ticks: Vec<u64> = due.iter().map(|e| e.tick).collect();
        ticks.sort_unstable();
        assert_eq!(ticks, [1, 3, 6, 9]);
        assert_eq!(s.processed(), 9);
        assert_eq!(s.insert(9, timer).tick, 10);
        assert_eq!(s.earliest_within_turn(9), Some(10));
        assert_none_left_behind(&s);
    }
}

#[cfg(all(test, loom))]
mod loom_slots {
    use super::tests::{assert_none_left_behind, timer};
    use super::*;
    use loom::sync::Arc;

    /// An insert due at tick 1 or 2 races an advance to tick 2: the timer
    /// is either taken by the advance or pushed after the processed ticks,
    /// never left in a slot the advance has already passed (it would fire
    /// a turn late).
    #[test]
    fn an_insert_racing_an_advance_is_never_left_behind() {
        for earliest in [1, 2] {
            loom::model(move || {
                let s = Arc::new(Slots::new(4));
                let advancer = {
                    let s = s.clone();
                    loom::thread::spawn(move || {
                        let mut due = Vec::new();
                        s.advance(2, &mut due);
                        due.len()
                    })
                };
                let t = s.insert(earliest, timer);
                let taken = advancer.join().unwrap();
                assert!(taken <= 1);
                assert!(t.tick() >= earliest);
                assert_none_left_behind(&s);
            });
        }
    }
}
