//! The per-poll budget, our version of BEAM's reductions, and the mark a
//! poll leaves when its process gave its turn up.
//!
//! Every poll of a process starts with [`POLL_BUDGET`] units. Each message a
//! receive hands out costs one; when none is left, the receive wakes its own
//! process and returns `Pending`, so a process whose mailbox never empties
//! goes to the back of the run queue instead of holding its worker forever.
//!
//! Running out of budget and [`yield_now`](crate::yield_now) both mark the
//! poll as *yielded*. A process woken during its own poll is requeued by its
//! worker after the poll; the mark tells the worker which queue: a process
//! that yielded goes behind the processes woken meanwhile (the yielded
//! deque, see `scheduler::worker`), one woken by someone else does not.

use std::cell::Cell;

/// Units of work a process may do in one poll before it must yield.
pub(crate) const POLL_BUDGET: u32 = 128;
/// The yield mark, kept in the budget's word so that the poll's start
/// resets both with one store.
const YIELDED: u32 = 1 << 31;

thread_local! {
    /// The budget left in this poll, and the yield mark.
    static BUDGET: Cell<u32> = const { Cell::new(POLL_BUDGET) };
}

/// Gives the poll about to start a full budget and clears the yield mark.
pub(crate) fn reset() {
    let _ = BUDGET.try_with(|b| b.set(POLL_BUDGET));
}

/// Spends one unit; false when the budget is exhausted (the caller must
/// yield, and the poll is marked as yielded).
pub(crate) fn consume() -> bool {
    BUDGET
        .try_with(|b| {
            let v = b.get();
            if v & !YIELDED == 0 {
                b.set(v | YIELDED);
                false
            } else {
                b.set(v - 1);
                true
            }
        })
        .unwrap_or(true)
}

/// Marks the current poll as yielded (its process gives its turn up).
pub(crate) fn mark_yielded() {
    let _ = BUDGET.try_with(|b| b.set(b.get() | YIELDED));
}

/// Whether the current poll yielded; clears the mark.
pub(crate) fn take_yielded() -> bool {
    BUDGET
        .try_with(|b| {
            let v = b.get();
            b.set(v & !YIELDED);
            v & YIELDED != 0
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_yield_mark_and_the_budget_share_a_word_without_mixing() {
        reset();
        assert!(!take_yielded());
        for _ in 0..POLL_BUDGET {
            assert!(consume());
        }
        assert!(!take_yielded(), "spending the budget is not yielding");
        assert!(!consume(), "out of budget");
        assert!(take_yielded(), "running out of budget marks the poll");
        assert!(!take_yielded(), "taking the mark clears it");
        reset();
        mark_yielded();
        assert!(consume(), "the mark leaves the budget whole");
        assert!(take_yielded());
        reset();
        mark_yielded();
        reset();
        assert!(!take_yielded(), "a new poll starts unmarked");
    }
}
