//! The timers aimed at a process, cancelled when it ends (as in OTP: a
//! `send_after` whose destination process is gone is cancelled, and its
//! message freed, rather than held until it fires).
//!
//! Each process keeps, in its aux data, an indexed list of the pending
//! `send_after` entries aimed at it; an entry remembers its index there
//! (`Entry::owner_index`, maintained under the aux lock), so adding and
//! removing one is O(1) and ending a process costs O(its timers).
//!
//! # Why a timer is never left pending after its target ended
//!
//! A `send_after` first puts its entry in the wheel, then *registers* it:
//! under the target's aux lock, if the target is still in the process table
//! and the entry still pending, it is pushed onto the list; otherwise the
//! entry is cancelled at once. Teardown removes the process from the table
//! first and then takes the list under the aux lock (the same argument as
//! for links and monitors, see [`crate::signal`]): a registration either
//! lands before the take (and is cancelled by teardown) or sees the process
//! gone (and cancels itself).
//!
//! Whoever settles an entry (fire or cancel, by its state CAS) then removes
//! it from the list under the aux lock. A registration that checks "still
//! pending" under that lock is thus either removed by the settler later, or
//! sees it settled and does not push; so the list holds no settled entry
//! beyond a settler's short window.
//!
//! Locks: the aux lock is never held together with a wheel lock.

use super::wheel::{Action, Entry};
use crate::process::Pid;
use crate::process::task::Header;
use crate::runtime::Shared;
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// The list of `send_after` entries aimed at one process.
#[derive(Default)]
pub(crate) struct Timers(Vec<Arc<Entry>>);

impl Timers {
    fn push(&mut self, e: Arc<Entry>) {
        e.owner_index.store(self.0.len(), Ordering::Relaxed);
        self.0.push(e);
    }

    /// Removes `e` if it is here; returns it, for the caller to drop after
    /// the aux lock.
    fn remove(&mut self, e: &Arc<Entry>) -> Option<Arc<Entry>> {
        let i = e.owner_index.load(Ordering::Relaxed);
        if i < self.0.len() && Arc::ptr_eq(&self.0[i], e) {
            let taken = self.0.swap_remove(i);
            if let Some(moved) = self.0.get(i) {
                moved.owner_index.store(i, Ordering::Relaxed);
            }
            Some(taken)
        } else {
            None
        }
    }
}

impl Shared {
    /// Adds a pending `send_after` entry to its target's list; false when
    /// the target is gone (the caller then cancels the entry).
    pub(crate) fn register_timer(&self, pid: Pid, e: &Arc<Entry>) -> bool {
        self.table
            .with(pid, |task| {
                let h = task.header();
                let mut aux = h.aux.lock();
                // Under the aux lock: teardown left the table before taking
                // the list, so a process still in the table has not taken
                // it yet (see the module docs).
                if !self.table.contains(pid) {
                    return false;
                }
                if e.is_pending() {
                    aux.get_or_insert_with(Default::default)
                        .timers
                        .push(e.clone());
                }
                true
            })
            .unwrap_or(false)
    }

    /// Removes a settled entry from its target's list, if it is there.
    pub(crate) fn unregister_timer(&self, h: &Header, e: &Arc<Entry>) {
        let removed = h.aux.lock().as_mut().and_then(|a| a.timers.remove(e));
        drop(removed);
    }

    /// [`Shared::unregister_timer`] by pid.
    pub(crate) fn unregister_timer_of(&self, pid: Pid, e: &Arc<Entry>) {
        let removed = self
            .table
            .with(pid, |task| {
                task.header()
                    .aux
                    .lock()
                    .as_mut()
                    .and_then(|a| a.timers.remove(e))
            })
            .flatten();
        drop(removed);
    }

    /// Teardown: cancels every timer aimed at the ending process (which has
    /// left the table) and drops their messages. A panic in one of those
    /// destructors has no process left to crash: it is counted.
    pub(crate) fn cancel_timers_of(&self, h: &Header) {
        let taken = h.aux.lock().as_mut().map(|a| std::mem::take(&mut a.timers));
        let Some(Timers(entries)) = taken else {
            return;
        };
        let actions: Vec<Action> = entries
            .iter()
            .filter_map(|e| self.timers.cancel(e))
            .collect();
        drop(entries);
        for a in actions {
            if !crate::guard::drop_caught(a) {
                self.note_unowned_panic();
            }
        }
    }
}
