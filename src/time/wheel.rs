//! A hashed timing wheel.
//!
//! Time is cut into ticks of [`RESOLUTION`]; a timer due at tick `t` lives in
//! slot `t % SLOTS`, a `Vec` under its own lock, so inserts and cancels on
//! different slots never meet. Timers more than one turn away share a slot
//! with nearer ones and are skipped until their turn. Each entry remembers
//! its index in its slot, so a cancel removes it in O(1) and frees it (and
//! the message it carries) at once.
//!
//! Advancing (done by whichever worker finds timers due; one at a time)
//! visits the slots of every tick since the last advance, takes out the due
//! entries, and fires them in tick order, so timers fire in deadline order
//! within the resolution, and never early: a timer for deadline `d` is given
//! the first tick at or after `d`, and a tick is processed only once it has
//! fully passed.
//!
//! The earliest-deadline hint and the *timer duty* (the one sleeping worker
//! that parks with that deadline) live in [`Duty`], whose module explains
//! why an insert never goes unnoticed by the sleepers.

use super::duty::Duty;
use crate::mailbox::{Message, Received};
use crate::process::Pid;
use crate::runtime::Shared;
use parking_lot::Mutex;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::task::Waker;
use std::time::{Duration, Instant};

/// The wheel's tick.
pub(crate) const RESOLUTION: Duration = Duration::from_millis(1);
/// Slots in the wheel: one turn is `SLOTS` ticks.
const SLOTS: usize = 4096;

const PENDING: u8 = 0;
const FIRED: u8 = 1;
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
    /// The tick it is due at.
    tick: u64,
    /// PENDING, then FIRED or CANCELLED (whichever wins the CAS).
    state: AtomicU8,
    /// Its index in its slot's vector, maintained under the slot lock.
    index: AtomicUsize,
    /// Taken by whoever wins the state CAS.
    action: Mutex<Option<Action>>,
}

impl Entry {
    pub(crate) fn has_fired(&self) -> bool {
        self.state.load(Ordering::Acquire) == FIRED
    }
}

/// The wheel.
pub(crate) struct Wheel {
    /// The instant of tick 0.
    start: Instant,
    /// Slot `i` holds the timers due at ticks `t` with `t % SLOTS == i`.
    slots: Box<[Mutex<Vec<Arc<Entry>>>]>,
    /// Every tick up to and including this one has been processed.
    processed: AtomicU64,
    /// The earliest-deadline hint and the timer duty.
    duty: Duty,
    /// Timers pending.
    pending: AtomicUsize,
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
            slots: (0..SLOTS).map(|_| Mutex::new(Vec::new())).collect(),
            processed: AtomicU64::new(0),
            duty: Duty::new(),
            pending: AtomicUsize::new(0),
            advancing: Mutex::new(()),
        }
    }

    pub(crate) fn pending(&self) -> usize {
        self.pending.load(Ordering::Relaxed)
    }

    /// The first tick at or after `at`.
    fn tick_at_or_after(&self, at: Instant) -> u64 {
        let d = at.saturating_duration_since(self.start);
        let res = RESOLUTION.as_nanos();
        d.as_nanos().div_ceil(res) as u64
    }

    /// The last tick that has fully passed by `now`.
    fn tick_passed(&self, now: Instant) -> u64 {
        (now.saturating_duration_since(self.start).as_nanos() / RESOLUTION.as_nanos()) as u64
    }

    fn instant_of(&self, tick: u64) -> Instant {
        self.start + RESOLUTION * (tick.min(u32::MAX as u64) as u32)
    }

    /// Schedules `action` at `deadline`. When the returned flag is true the
    /// caller must wake the duty holder (`Shared::timer_hint_lowered`).
    pub(crate) fn insert(&self, deadline: Instant, action: Action) -> (Arc<Entry>, bool) {
        let tick = self
            .tick_at_or_after(deadline)
            .max(self.processed.load(Ordering::Acquire) + 1);
        let entry = Arc::new(Entry {
            tick,
            state: AtomicU8::new(PENDING),
            index: AtomicUsize::new(0),
            action: Mutex::new(Some(action)),
        });
        {
            let mut slot = self.slots[tick as usize % SLOTS].lock();
            entry.index.store(slot.len(), Ordering::Relaxed);
            slot.push(entry.clone());
        }
        // A sleeper that saw no timer pending parked without a deadline,
        // whatever the (possibly stale) hint said: the first timer after an
        // empty spell must wake it like a lowered hint does.
        let was_empty = self.pending.fetch_add(1, Ordering::SeqCst) == 0;
        let lowered = self.duty.lower(tick);
        (entry, lowered || was_empty)
    }

    /// Removes `entry` from its slot (under the slot lock).
    fn unlink(&self, entry: &Arc<Entry>) {
        let mut slot = self.slots[entry.tick as usize % SLOTS].lock();
        let i = entry.index.load(Ordering::Relaxed);
        if i < slot.len() && Arc::ptr_eq(&slot[i], entry) {
            slot.swap_remove(i);
            if let Some(moved) = slot.get(i) {
                moved.index.store(i, Ordering::Relaxed);
            }
        }
    }

    /// Cancels a pending timer, freeing it; false if it already fired.
    pub(crate) fn cancel(&self, entry: &Arc<Entry>) -> bool {
        if entry
            .state
            .compare_exchange(PENDING, CANCELLED, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return false;
        }
        self.unlink(entry);
        self.pending.fetch_sub(1, Ordering::Relaxed);
        drop(entry.action.lock().take());
        true
    }

    /// When the earliest timer may be due, if any is pending.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        if self.pending() == 0 {
            return None;
        }
        let hint = self.duty.hint();
        (hint != u64::MAX).then(|| self.instant_of(hint))
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

    /// Fires every timer due by `now`, in tick order. Returns at once if
    /// another thread is advancing.
    pub(crate) fn advance(&self, now: Instant, shared: &Shared) {
        let Some(_guard) = self.advancing.try_lock() else {
            return;
        };
        let to = self.tick_passed(now);
        let from = self.processed.load(Ordering::Acquire) + 1;
        if to < from {
            return;
        }
        let mut due: Vec<Arc<Entry>> = Vec::new();
        let span = (to - from + 1).min(SLOTS as u64);
        for t in from..from + span {
            let mut slot = self.slots[t as usize % SLOTS].lock();
            let mut i = 0;
            while i < slot.len() {
                if slot[i].tick <= to {
                    let e = slot.swap_remove(i);
                    if let Some(moved) = slot.get(i) {
                        moved.index.store(i, Ordering::Relaxed);
                    }
                    due.push(e);
                } else {
                    i += 1;
                }
            }
        }
        self.processed.store(to, Ordering::Release);
        due.sort_by_key(|e| e.tick);
        for e in due {
            self.fire(&e, shared);
        }
        // A sleeper that took the duty while the hint was being rescanned
        // may have read "no timers": a rescan that lowers the hint wakes it
        // exactly as an insert would.
        if self.recompute_hint(to) {
            shared.timer_hint_lowered();
        }
    }

    fn fire(&self, e: &Arc<Entry>, shared: &Shared) {
        if e.state
            .compare_exchange(PENDING, FIRED, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return;
        }
        self.pending.fetch_sub(1, Ordering::Relaxed);
        let action = e.action.lock().take();
        match action {
            Some(Action::Send(pid, msg)) => {
                shared.deliver(pid, Received::Message(msg));
            }
            Some(Action::Wake(w)) => w.wake(),
            None => {}
        }
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
        let mut best = u64::MAX;
        for k in 1..=SLOTS as u64 {
            let t = processed + k;
            let slot = self.slots[t as usize % SLOTS].lock();
            for e in slot.iter() {
                best = best.min(e.tick);
            }
            if best <= t {
                break;
            }
        }
        // Everything pending is more than a turn away: look again in a turn.
        if best == u64::MAX {
            best = processed + SLOTS as u64;
        }
        self.duty.lower(best)
    }

    /// A timer just inserted at a tick already processed (a race with an
    /// advance) fires now rather than a turn late.
    pub(crate) fn fire_if_passed(&self, e: &Arc<Entry>, shared: &Shared) {
        if e.tick <= self.processed.load(Ordering::Acquire) {
            self.unlink(e);
            self.fire(e, shared);
        }
    }

    /// Drops every pending timer (runtime teardown).
    pub(crate) fn clear(&self) {
        for slot in self.slots.iter() {
            let entries = std::mem::take(&mut *slot.lock());
            for e in entries {
                if e.state
                    .compare_exchange(PENDING, CANCELLED, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    drop(e.action.lock().take());
                }
            }
        }
        self.pending.store(0, Ordering::Relaxed);
    }
}
