//! The per-poll budget, our version of BEAM's reductions.
//!
//! Every poll of a process starts with [`POLL_BUDGET`] units. Each message a
//! receive hands out costs one; when none is left, the receive wakes its own
//! process and returns `Pending`, so a process whose mailbox never empties
//! goes to the back of the run queue instead of holding its worker forever.

use std::cell::Cell;

/// Units of work a process may do in one poll before it must yield.
pub(crate) const POLL_BUDGET: u32 = 128;

crate::loom::thread_local! {
    static BUDGET: Cell<u32> = const { Cell::new(POLL_BUDGET) };
}

/// Gives the poll about to start a full budget.
pub(crate) fn reset() {
    let _ = BUDGET.try_with(|b| b.set(POLL_BUDGET));
}

/// Spends one unit; false when the budget is exhausted (the caller must yield).
pub(crate) fn consume() -> bool {
    BUDGET
        .try_with(|b| {
            let v = b.get();
            if v == 0 {
                false
            } else {
                b.set(v - 1);
                true
            }
        })
        .unwrap_or(true)
}
