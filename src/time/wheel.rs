//! A hashed timing wheel.
//!
//! Time is cut into ticks of [`RESOLUTION`]; a timer due at tick `t` lives in
//! slot `t % SLOTS` of [`Slots`], a `Vec` under its own lock, so inserts and
//! cancels on different slots never meet. Timers more than one turn away
//! share a slot with nearer ones and are skipped until their turn. Each
//! entry remembers its index in its slot, so a cancel removes it in O(1).
//!
//! Advancing (done by whichever worker finds timers due; one at a time)
//! visits the slots of every tick since the last advance, takes out the due
//! entries, and fires them in tick order, so timers fire in deadline order
//! within the resolution, and never early: a timer for deadline `d` is given
//! the first tick at or after `d`, and a tick is processed only once it has
//! fully passed. An insert goes to a tick not yet processed; the
//! [`slots`](super::slots) module argues why no insert can land behind an
//! advance and wait a turn.
//!
//! A deadline beyond any representable instant (`Duration::MAX`, Erlang's
//! `infinity`) never fires: its entry is pending but in no slot, so it costs
//! the sleepers nothing.
//!
//! The earliest-deadline hint and the *timer duty* (the one sleeping worker
//! that parks with that deadline) live in [`Duty`], whose module explains
//! why an insert never goes unnoticed by the sleepers.
//!
//! No slot lock is held while user code runs: actions are taken out of
//! their entries and run (or dropped) by the callers. Only the advancer's
//! exclusion (`advancing`, which nobody blocks on) is held while it fires a
//! batch, so that batches go out one after another, in deadline order.
//! An entry's own `action` lock nests inside a slot lock (at stop), never
//! the other way round, and never with a process's locks.

use super::duty::Duty;
use super::slots::{Slots, Slotted};
use crate::loom::lock::Mutex;
use crate::mailbox::Message;
use crate::process::Pid;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::task::Waker;
use std::time::{Duration, Instant};

/// The wheel's tick.
pub(crate) const RESOLUTION: Duration = Duration::from_millis(1);
/// Slots in the wheel: one turn is `SLOTS` ticks (fewer under loom and
/// Miri, where the runtime's stop locking each one would cost the model or
/// the interpreter dearly; timers further out simply wait more turns).
const SLOTS: usize = if cfg!(loom) {
    8
} else if cfg!(miri) {
    64
} else {
    4096
};
/// The tick of a deadline that never comes.
const NEVER: u64 = u64::MAX;

/// Not fired, not cancelled.
const PENDING: u8 = 0;
/// Fired: its action was (or is being) run. Never becomes anything else.
const FIRED: u8 = 1;
/// Cancelled: its action was taken and dropped. Never becomes anything else.
const CANCELLED: u8 = 2;

/// What a timer does when it fires.
pub(crate) enum Action {
    /// Deliver a message (`send_after`).
    Send(Pid, Message),
    /// Wake a waiting future (`sleep`, receive timeouts).
    Wake(Waker),
}

/// One pending timer.
pub(crate) struct Entry {
    /// The tick it is due at; [`NEVER`] for a deadline that never comes.
    tick: u64,
    /// PENDING, then FIRED or CANCELLED (whichever wins the CAS).
    state: AtomicU8,
    /// Its index in its slot's vector, maintained under the slot lock.
    slot_index: AtomicUsize,
    /// Taken by whoever wins the state CAS (and replaced by a re-poll of a
    /// waiting future with a new waker).
    action: Mutex<Option<Action>>,
}

impl Entry {
    pub(crate) fn is_pending(&self) -> bool {
        self.state.load(Ordering::Acquire) == PENDING
    }

    /// Makes a pending wake timer wake `waker` instead of the waker it was
    /// armed with (a future re-polled under another waker must be woken
    /// through the new one). The old waker is dropped after the lock.
    pub(crate) fn set_waker(&self, waker: &Waker) {
        let mut action = self.action.lock();
        let old = match &mut *action {
            Some(Action::Wake(w)) if !w.will_wake(waker) => {
                Some(std::mem::replace(w, waker.clone()))
            }
            _ => None,
        };
        drop(action);
        drop(old);
    }

    /// Wins the state CAS for `to`; true if it was still pending.
    fn settle(&self, to: u8) -> bool {
        self.state
            .compare_exchange(PENDING, to, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Takes the action (after winning the state CAS), releasing the lock
    /// before the caller runs or drops it.
    fn take_action(&self) -> Option<Action> {
        self.action.lock().take()
    }
}

impl Slotted for Arc<Entry> {
    fn tick(&self) -> u64 {
        self.tick
    }
    fn slot_index(&self) -> &AtomicUsize {
        &self.slot_index
    }
    fn same(&self, other: &Self) -> bool {
        Arc::ptr_eq(self, other)
    }
}

/// The wheel.
pub(crate) struct Wheel {
    /// The instant of tick 0.
    start: Instant,
    /// The slots and the `processed` mark.
    slots: Slots<Arc<Entry>>,
    /// The earliest-deadline hint and the timer duty.
    duty: Duty,
    /// Timers pending in the slots.
    pending: AtomicUsize,
    /// Timers pending with a deadline that never comes (in no slot).
    never: AtomicUsize,
    /// One advancer at a time.
    advancing: Mutex<()>,
}

impl std::fmt::Debug for Wheel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wheel")
            .field("pending", &self.pending())
            .finish()
    }
}

impl Wheel {
    pub(crate) fn new() -> Wheel {
        Wheel {
            start: Instant::now(),
            slots: Slots::new(SLOTS),
            duty: Duty::new(),
            pending: AtomicUsize::new(0),
            never: AtomicUsize::new(0),
            advancing: Mutex::new(()),
        }
    }

    /// Timers pending in the slots (the ones that will fire).
    pub(crate) fn pending(&self) -> usize {
        self.pending.load(Ordering::Relaxed)
    }

    /// Every pending timer, including those that never fire.
    pub(crate) fn pending_total(&self) -> usize {
        self.pending() + self.never.load(Ordering::Relaxed)
    }

    /// The first tick at or after `at`.
    fn tick_at_or_after(&self, at: Instant) -> u64 {
        let d = at.saturating_duration_since(self.start);
        let res = RESOLUTION.as_nanos();
        u64::try_from(d.as_nanos().div_ceil(res)).unwrap_or(NEVER - 1)
    }

    /// The last tick that has fully passed by `now`.
    fn tick_passed(&self, now: Instant) -> u64 {
        (now.saturating_duration_since(self.start).as_nanos() / RESOLUTION.as_nanos()) as u64
    }

    /// The instant tick `tick` begins, if it is representable.
    fn instant_of(&self, tick: u64) -> Option<Instant> {
        let nanos = u64::try_from(RESOLUTION.as_nanos()).ok()?;
        self.start
            .checked_add(Duration::from_nanos(tick.checked_mul(nanos)?))
    }

    /// Schedules `action` at `deadline` (`None`: never). When the flag is
    /// true the caller must wake the duty holder
    /// (`time::hint_lowered`).
    pub(crate) fn insert(&self, deadline: Option<Instant>, action: Action) -> (Arc<Entry>, bool) {
        let make = |tick| {
            Arc::new(Entry {
                tick,
                state: AtomicU8::new(PENDING),
                slot_index: AtomicUsize::new(0),
                action: Mutex::new(Some(action)),
            })
        };
        let Some(deadline) = deadline else {
            self.never.fetch_add(1, Ordering::Relaxed);
            return (make(NEVER), false);
        };
        // Counted before it is visible, so an advance that fires it at once
        // never takes the count below zero. A sleeper that saw no timer
        // pending parked without a deadline, whatever the (possibly stale)
        // hint said: the first timer after an empty spell must wake it like
        // a lowered hint does.
        let was_empty = self.pending.fetch_add(1, Ordering::SeqCst) == 0;
        let entry = self.slots.insert(self.tick_at_or_after(deadline), make);
        let lowered = self.duty.lower(entry.tick);
        (entry, lowered || was_empty)
    }

    /// Cancels a pending timer: `Some(action)` (for the caller to drop,
    /// outside every wheel lock) when it had neither fired nor been
    /// cancelled.
    pub(crate) fn cancel(&self, entry: &Arc<Entry>) -> Option<Action> {
        if !entry.settle(CANCELLED) {
            return None;
        }
        if entry.tick == NEVER {
            self.never.fetch_sub(1, Ordering::Relaxed);
        } else {
            let removed = self.slots.remove(entry);
            self.pending.fetch_sub(1, Ordering::Relaxed);
            drop(removed);
        }
        entry.take_action()
    }

    /// When the earliest timer may be due, if any is pending (`None` also
    /// when that is beyond any representable instant).
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        if self.pending() == 0 {
            return None;
        }
        let hint = self.duty.hint();
        if hint == u64::MAX {
            return None;
        }
        self.instant_of(hint)
    }

    /// Whether a timer may be due at `now`.
    pub(crate) fn is_due(&self, now: Instant) -> bool {
        self.pending() > 0 && self.duty.hint() <= self.tick_passed(now)
    }

    /// Takes the timer duty for worker `index`; true if it got it.
    pub(crate) fn take_duty(&self, index: usize) -> bool {
        self.duty.take(index)
    }

    pub(crate) fn release_duty(&self, index: usize) {
        self.duty.release(index)
    }

    /// The worker holding the timer duty.
    pub(crate) fn duty_holder(&self) -> Option<usize> {
        self.duty.holder()
    }

    /// Fires every timer due by `now`, in tick order: `fire` gets each
    /// action to run. Returns at once if another thread is advancing. True
    /// when the caller must wake the duty holder afterwards (the rescan of
    /// the hint lowered it from "none").
    pub(crate) fn advance(&self, now: Instant, mut fire: impl FnMut(Action)) -> bool {
        let Some(_guard) = self.advancing.try_lock() else {
            return false;
        };
        let to = self.tick_passed(now);
        if to <= self.slots.processed() {
            return false;
        }
        let mut due: Vec<Arc<Entry>> = Vec::new();
        self.slots.advance(to, &mut due);
        due.sort_by_key(|e| e.tick);
        for e in &due {
            if e.settle(FIRED) {
                self.pending.fetch_sub(1, Ordering::Relaxed);
                if let Some(action) = e.take_action() {
                    fire(action);
                }
            }
        }
        // A sleeper that took the duty while the hint was being rescanned
        // may have read "no timers": a rescan that lowers the hint wakes it
        // exactly as an insert would.
        self.recompute_hint(to)
    }

    /// Sets `hint` to the earliest pending tick after `processed`, scanning
    /// at most one turn of slots.
    /// True when the hint went down from "none" to a pending tick (the
    /// caller must then wake the duty holder, as for an insert).
    fn recompute_hint(&self, processed: u64) -> bool {
        // Start from "none"; inserts racing with the scan lower it again
        // with their own fetch_min, which is never lost.
        self.duty.reset_hint();
        if self.pending() == 0 {
            return false;
        }
        // Everything pending is more than a turn away: look again in a turn.
        let best = self
            .slots
            .earliest_within_turn(processed)
            .unwrap_or(processed + SLOTS as u64);
        self.duty.lower(best)
    }

    /// At runtime stop: takes out every `send_after` still pending (their
    /// actions are returned for the caller to drop), and returns the wakers
    /// of the waiting futures (which stay armed) for the caller to wake, so
    /// a `block_on` parked on one of them learns the runtime stopped.
    pub(crate) fn stop(&self) -> (Vec<Action>, Vec<Waker>) {
        let mut wakers = Vec::new();
        let removed = self.slots.remove_where(|e| match &*e.action.lock() {
            Some(Action::Send(..)) => true,
            Some(Action::Wake(w)) => {
                wakers.push(w.clone());
                false
            }
            None => false,
        });
        let mut dropped = Vec::new();
        for e in removed {
            if e.settle(CANCELLED) {
                self.pending.fetch_sub(1, Ordering::Relaxed);
                dropped.extend(e.take_action());
            }
        }
        (dropped, wakers)
    }
}

/// The wheel against a synthetic clock: the wheel never reads the time
/// itself after [`Wheel::new`], so these tests choose every `now` and every
/// deadline as an offset from its tick 0 and check firing to the tick.
/// (Not under Miri: the wheel is safe code, and each advance scans up to a
/// turn of slot locks, minutes under the interpreter.)
#[cfg(all(test, not(loom), not(miri)))]
mod tests {
    use super::*;
    use crate::Message;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// A wheel and its tick-0 instant.
    fn wheel() -> (Wheel, Instant) {
        let w = Wheel::new();
        let t0 = w.start;
        (w, t0)
    }

    /// A `send_after` action tagged with `tag` (its message).
    fn tagged(tag: u64) -> Action {
        Action::Send(Pid::from_raw(1), Message::new(tag))
    }

    /// The tags of the actions `advance` fires by `now`, in firing order.
    fn fire(w: &Wheel, now: Instant) -> Vec<u64> {
        let mut fired = Vec::new();
        w.advance(now, |a| match a {
            Action::Send(_, m) => fired.push(*m.downcast_ref::<u64>().unwrap()),
            Action::Wake(waker) => waker.wake(),
        });
        fired
    }

    #[test]
    fn a_timer_never_fires_before_its_deadline() {
        let (w, t0) = wheel();
        let _e = w.insert(Some(t0 + ms(5)), tagged(5));
        let _f = w.insert(Some(t0 + ms(7) + Duration::from_micros(500)), tagged(7));
        assert!(fire(&w, t0 + ms(5) - Duration::from_nanos(1)).is_empty());
        assert!(!w.is_due(t0 + ms(4)));
        assert!(w.is_due(t0 + ms(5)));
        assert_eq!(fire(&w, t0 + ms(5)), [5]);
        // A deadline inside a tick is given the next tick: not at 7.9 ms.
        assert!(fire(&w, t0 + ms(8) - Duration::from_nanos(1)).is_empty());
        assert_eq!(fire(&w, t0 + ms(8)), [7]);
        assert_eq!(w.pending(), 0);
    }

    #[test]
    fn timers_fire_in_deadline_order_across_one_advance() {
        let (w, t0) = wheel();
        // Inserted out of order, some far apart, some in one slot's turn.
        let ticks = [40u64, 3, 17, 4096 + 2, 3, 900, 2, 4095, 41];
        let _entries: Vec<_> = ticks
            .iter()
            .map(|&t| w.insert(Some(t0 + ms(t)), tagged(t)).0)
            .collect();
        assert_eq!(w.pending(), ticks.len());
        let mut want = ticks.to_vec();
        want.sort_unstable();
        assert_eq!(fire(&w, t0 + ms(10_000)), want);
        assert_eq!(w.pending(), 0);
        assert!(fire(&w, t0 + ms(20_000)).is_empty());
    }

    #[test]
    fn a_timer_a_turn_or_more_away_waits_for_its_own_turn() {
        let (w, t0) = wheel();
        let turn = SLOTS as u64;
        // Same slot as tick 5, one and two turns later.
        let _a = w.insert(Some(t0 + ms(5)), tagged(5));
        let _b = w.insert(Some(t0 + ms(turn + 5)), tagged(turn + 5));
        let _c = w.insert(Some(t0 + ms(2 * turn + 5)), tagged(2 * turn + 5));
        // Step tick by tick over the first turn and a half: only `a`.
        let mut fired = Vec::new();
        for t in 0..=(turn + 4) {
            fired.extend(fire(&w, t0 + ms(t)));
        }
        assert_eq!(fired, [5]);
        assert_eq!(fire(&w, t0 + ms(turn + 5)), [turn + 5]);
        assert!(fire(&w, t0 + ms(2 * turn + 4)).is_empty());
        assert_eq!(fire(&w, t0 + ms(2 * turn + 5)), [2 * turn + 5]);
    }

    #[test]
    fn a_deadline_already_passed_fires_at_the_next_advance() {
        let (w, t0) = wheel();
        assert!(fire(&w, t0 + ms(100)).is_empty());
        // Behind the processed mark: goes to the first unprocessed tick.
        let _e = w.insert(Some(t0 + ms(10)), tagged(10));
        let _f = w.insert(Some(t0), tagged(0));
        assert!(w.is_due(t0 + ms(101)));
        assert_eq!(fire(&w, t0 + ms(101)), [10, 0]);
    }

    #[test]
    fn an_advance_that_goes_back_in_time_does_nothing() {
        let (w, t0) = wheel();
        let _e = w.insert(Some(t0 + ms(60)), tagged(60));
        assert!(fire(&w, t0 + ms(50)).is_empty());
        assert!(fire(&w, t0 + ms(20)).is_empty());
        assert!(fire(&w, t0).is_empty());
        assert_eq!(w.pending(), 1);
        assert_eq!(fire(&w, t0 + ms(60)), [60]);
    }

    #[test]
    fn cancel_wins_or_loses_against_firing_exactly_once() {
        let (w, t0) = wheel();
        let (a, _) = w.insert(Some(t0 + ms(3)), tagged(3));
        let (b, _) = w.insert(Some(t0 + ms(4)), tagged(4));
        // Cancelled before its tick: the action comes back, it never fires.
        assert!(matches!(w.cancel(&a), Some(Action::Send(..))));
        assert!(!a.is_pending());
        assert!(w.cancel(&a).is_none());
        assert_eq!(w.pending(), 1);
        assert_eq!(fire(&w, t0 + ms(10)), [4]);
        // Fired first: the cancel finds nothing.
        assert!(!b.is_pending());
        assert!(w.cancel(&b).is_none());
        assert_eq!(w.pending(), 0);
    }

    #[test]
    fn next_deadline_follows_the_earliest_pending_timer() {
        let (w, t0) = wheel();
        assert_eq!(w.next_deadline(), None);
        let (a, lowered) = w.insert(Some(t0 + ms(30)), tagged(30));
        assert!(lowered, "the first timer must wake the duty holder");
        assert_eq!(w.next_deadline(), Some(t0 + ms(30)));
        let (_b, lowered) = w.insert(Some(t0 + ms(12)), tagged(12));
        assert!(lowered, "an earlier timer lowers the hint");
        assert_eq!(w.next_deadline(), Some(t0 + ms(12)));
        let (_c, lowered) = w.insert(Some(t0 + ms(50)), tagged(50));
        assert!(!lowered, "a later timer leaves the hint alone");
        assert_eq!(fire(&w, t0 + ms(12)), [12]);
        assert_eq!(w.next_deadline(), Some(t0 + ms(30)));
        assert!(w.cancel(&a).is_some());
        // The hint may lag a cancel, never lead: at most early, never late.
        assert!(w.next_deadline().unwrap() <= t0 + ms(50));
        assert_eq!(fire(&w, t0 + ms(50)), [50]);
        assert_eq!(w.next_deadline(), None);
    }

    #[test]
    fn a_deadline_that_never_comes_is_pending_but_never_due() {
        let (w, t0) = wheel();
        let (e, lowered) = w.insert(None, tagged(0));
        assert!(!lowered);
        assert_eq!((w.pending(), w.pending_total()), (0, 1));
        assert_eq!(w.next_deadline(), None);
        assert!(!w.is_due(t0 + ms(u64::from(u32::MAX))));
        assert!(fire(&w, t0 + ms(u64::from(u32::MAX))).is_empty());
        assert!(w.cancel(&e).is_some());
        assert_eq!(w.pending_total(), 0);
    }

    #[test]
    fn stop_hands_back_messages_and_wakes_the_waiters() {
        struct Count(std::sync::atomic::AtomicUsize);
        impl std::task::Wake for Count {
            fn wake(self: Arc<Self>) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let (w, t0) = wheel();
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let _s = w.insert(Some(t0 + ms(5)), tagged(5));
        let _t = w.insert(Some(t0 + ms(6)), tagged(6));
        let (sleep, _) = w.insert(Some(t0 + ms(7)), Action::Wake(waker));
        let (dropped, wakers) = w.stop();
        assert_eq!(dropped.len(), 2);
        assert_eq!(wakers.len(), 1);
        // The waiting future's timer stays armed (it learns of the stop
        // through the wake).
        assert!(sleep.is_pending());
        wakers.into_iter().for_each(Waker::wake);
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
    }
}
