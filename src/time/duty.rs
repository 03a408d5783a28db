//! The timer duty: which sleeping worker parks with the earliest timer
//! deadline, and how a new, earlier timer reaches it.
//!
//! `hint` is a lower bound on the earliest pending tick (`u64::MAX`: none).
//! `holder` is `1 + index` of the worker holding the duty (0: nobody).
//!
//! * A worker about to park: [`Duty::take`] (SeqCst CAS on `holder`); if it
//!   got the duty, it reads [`Duty::hint`] (SeqCst) and parks until then.
//! * An insert: [`Duty::lower`] (SeqCst `fetch_min` on `hint`); if that
//!   lowered the hint, it reads [`Duty::holder`] (SeqCst) and unparks the
//!   holder, or, with none, wakes a sleeping worker (who will take the duty).
//! * A rescan after the wheel advances: [`Duty::reset_hint`], scan, then
//!   `lower` with the earliest tick found, waking exactly like an insert when
//!   that lowers the hint; so a sleeper that read "none" mid-rescan is woken.
//!
//! # Why no timer is slept through
//!
//! Each side writes (`take`, `lower`) and then, after a SeqCst fence, reads
//! the other side's word: the store-buffer pattern. The two fences are
//! totally ordered. If the worker's fence comes first, its `take` is visible
//! to the insert's read of `holder`, which unparks it (the parker's token
//! makes an unpark that lands before the park count). Otherwise the
//! insert's `lower` is visible to the worker's read of `hint`, which sees
//! the new, earlier tick. The loom model `loom_duty` checks this (and fails
//! without the fences).

use crate::loom::sync::atomic::{AtomicU64, AtomicUsize, Ordering, fence};

/// The duty word and the earliest-deadline hint.
#[derive(Debug)]
pub(crate) struct Duty {
    /// A lower bound on the earliest pending tick; `u64::MAX` when none.
    hint: AtomicU64,
    /// `1 + index` of the worker holding the duty; 0 when nobody does.
    holder: AtomicUsize,
}

impl Duty {
    pub(crate) fn new() -> Duty {
        Duty {
            hint: AtomicU64::new(u64::MAX),
            holder: AtomicUsize::new(0),
        }
    }

    /// Lowers the hint to `tick`; true when `tick` is the new minimum (the
    /// caller must then wake the holder, or a sleeper).
    pub(crate) fn lower(&self, tick: u64) -> bool {
        let lowered = tick < self.hint.fetch_min(tick, Ordering::SeqCst);
        // Orders the hint update before the caller's read of `holder`.
        fence(Ordering::SeqCst);
        lowered
    }

    /// The earliest pending tick, as far as known; `u64::MAX` when none.
    pub(crate) fn hint(&self) -> u64 {
        self.hint.load(Ordering::SeqCst)
    }

    /// Forgets the hint before a rescan (which lowers it again).
    pub(crate) fn reset_hint(&self) {
        self.hint.store(u64::MAX, Ordering::SeqCst);
    }

    /// Takes the duty for worker `index`; true if it got it.
    pub(crate) fn take(&self, index: usize) -> bool {
        let took = self
            .holder
            .compare_exchange(0, index + 1, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok();
        // Orders taking the duty before the caller's read of `hint`.
        fence(Ordering::SeqCst);
        took
    }

    /// Gives the duty back, if `index` holds it.
    pub(crate) fn release(&self, index: usize) {
        let _ = self
            .holder
            .compare_exchange(index + 1, 0, Ordering::SeqCst, Ordering::SeqCst);
    }

    /// The worker holding the duty.
    pub(crate) fn holder(&self) -> Option<usize> {
        self.holder.load(Ordering::SeqCst).checked_sub(1)
    }
}

#[cfg(all(test, loom))]
mod loom_duty {
    use super::*;
    use crate::loom::sync::Arc;
    use crate::scheduler::park::Parker;

    /// A worker takes the duty and parks (forever if it sees no timer) while
    /// a timer is inserted: the worker always learns of the timer, either
    /// by reading the hint or by being unparked. A slept-through timer would
    /// leave it parked forever, which loom reports as a deadlock.
    #[test]
    fn an_inserted_timer_reaches_the_duty_holder() {
        loom::model(|| {
            let duty = Arc::new(Duty::new());
            let parker = Arc::new(Parker::new());
            let worker = {
                let (duty, parker) = (duty.clone(), parker.clone());
                loom::thread::spawn(move || {
                    assert!(duty.take(0));
                    while duty.hint() == u64::MAX {
                        parker.park(None);
                    }
                    duty.release(0);
                })
            };
            if duty.lower(7) {
                if let Some(0) = duty.holder() {
                    parker.unpark();
                }
            }
            worker.join().unwrap();
            assert_eq!(duty.hint(), 7);
        });
    }
}
