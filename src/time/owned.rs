//! The timers aimed at a process, cancelled when it ends (as in OTP: a
//! `send_after` whose destination process is gone is cancelled, and its
//! message freed, rather than held until it fires).
//!
//! Each process keeps, in its aux data, the list of the `send_after`
//! entries aimed at it. Firing and cancelling do not touch it (that would
//! put the target's aux lock, and a cache miss into a long list, on every
//! fire and cancel); instead a push that finds the list at its compaction
//! mark first drops the settled entries, and sets the mark to twice what
//! remains. So a push costs amortised O(1), the list holds at most about
//! twice the target's peak of pending timers (the settled ones without
//! their messages, which went with their firing or cancelling), and ending
//! a process costs O(its list).
//!
//! # Why a timer is never left pending after its target ended
//!
//! A `send_after` first puts its entry in the wheel, then *registers* it:
//! under the target's aux lock, if the target is still in the process table
//! it is pushed onto the list; otherwise the entry is cancelled at once.
//! Teardown removes the process from the table first and then takes the
//! list under the aux lock (the same argument as for links and monitors,
//! see [`crate::signal`]): a registration either lands before the take (and
//! its entry is cancelled by teardown, unless it already fired) or sees the
//! process gone (and cancels its entry itself).
//!
//! Locks: the aux lock is never held together with a wheel lock, and no
//! user value is dropped under it.

use super::wheel::{Action, Entry};
use crate::process::Pid;
use crate::runtime::Header;
use crate::runtime::Shared;
use std::sync::Arc;

/// The least compaction mark.
const MIN_MARK: usize = 32;

/// The list of `send_after` entries aimed at one process.
#[derive(Default)]
pub(crate) struct Timers {
    /// Pending entries, and settled ones not yet compacted away.
    list: Vec<Arc<Entry>>,
    /// A push at this length drops the settled entries first.
    mark: usize,
}

impl Timers {
    /// Adds `e`; returns the settled entries compacted away, for the caller
    /// to drop after the aux lock (they hold no message any more, but their
    /// last reference is best not dropped under a lock).
    fn push(&mut self, e: Arc<Entry>) -> Vec<Arc<Entry>> {
        let mut settled = Vec::new();
        if self.list.len() >= self.mark {
            let mut i = 0;
            while i < self.list.len() {
                if self.list[i].is_pending() {
                    i += 1;
                } else {
                    settled.push(self.list.swap_remove(i));
                }
            }
            self.mark = (2 * self.list.len()).max(MIN_MARK);
        }
        self.list.push(e);
        settled
    }
}

/// Adds a pending `send_after` entry to its target's list; false when
/// the target is gone (the caller then cancels the entry).
pub(crate) fn register(shared: &Shared, pid: Pid, e: &Arc<Entry>) -> bool {
    // The settled entries come back out of the aux lock (see `push`).
    let settled = shared.table.with_alive(pid, |a| a.timers.push(e.clone()));
    settled.is_some()
}

/// Teardown: cancels every timer aimed at the ending process (which has
/// left the table) and drops their messages. A panic in one of those
/// destructors has no process left to crash: it is counted.
pub(crate) fn cancel_all(shared: &Shared, h: &Header) {
    let entries = match h.aux.lock().as_mut() {
        Some(a) if !a.timers.list.is_empty() => std::mem::take(&mut a.timers).list,
        _ => return,
    };
    let actions: Vec<Action> = entries
        .iter()
        .filter_map(|e| shared.timers.cancel(e))
        .collect();
    drop(entries);
    for a in actions {
        if !crate::guard::drop_caught(a) {
            shared.note_unowned_panic();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::wheel::Wheel;
    use std::time::{Duration, Instant};

    #[test]
    fn a_long_lived_target_keeps_only_about_its_pending_timers() {
        let wheel = Wheel::new();
        let mut timers = Timers::default();
        let later = Some(Instant::now() + Duration::from_secs(3600));
        let rounds = if cfg!(miri) { 100 } else { 10_000 };
        for i in 0..rounds {
            let (e, _) = wheel.insert(
                later,
                Action::Send(Pid::from_raw(1), crate::Message::new(i)),
            );
            drop(timers.push(e.clone()));
            // One pending at a time, as for a process that rearms a timer.
            assert!(wheel.cancel(&e).is_some());
            assert!(timers.list.len() <= MIN_MARK + 1);
        }
        let n = if cfg!(miri) { 100 } else { 1000 };
        let pending: Vec<_> = (0..n)
            .map(|i| {
                wheel
                    .insert(
                        later,
                        Action::Send(Pid::from_raw(1), crate::Message::new(i)),
                    )
                    .0
            })
            .collect();
        for e in &pending {
            drop(timers.push(e.clone()));
        }
        assert!(timers.list.len() <= 2 * pending.len() + MIN_MARK);
        assert_eq!(wheel.pending_total(), n);
    }
}
