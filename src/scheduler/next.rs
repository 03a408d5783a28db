//! A worker's next slot, stealable.
//!
//! The slot holds the one task a worker runs after its current one (a wake
//! made during the current poll; see [`super::worker`]). Only its owner puts
//! into it, but anyone may take from it: the owner between polls, and
//! another worker that found the owner stuck in one long poll (see
//! [`super::stranded`]). Every take is one `swap` on one pointer, and so is
//! a put into a full slot, so an entry put is taken exactly once, by
//! whoever swaps it out first: no entry is lost (a put's swap returns the
//! entry it displaced, which the owner then queues) and none is run twice.
//! A put into an empty slot is a plain store: no one but the owner writes
//! a non-null pointer, so an empty slot stays empty until the owner's own
//! store (a thief's swap meanwhile writes null over null), and there is
//! nothing to displace. The swaps are `AcqRel` and the store `Release`, so
//! that whoever takes an entry sees the writes made before it was put.

use crate::loom::sync::atomic::{AtomicPtr, Ordering};
use std::ptr::{self, NonNull};

/// A one-entry slot of `NonNull<T>` (a run-queue entry's pointer).
#[derive(Debug)]
pub(crate) struct NextSlot<T> {
    ptr: AtomicPtr<T>,
}

impl<T> NextSlot<T> {
    pub(crate) fn new() -> NextSlot<T> {
        NextSlot {
            ptr: AtomicPtr::new(ptr::null_mut()),
        }
    }

    /// The owner puts `entry`; returns the entry it displaced, if any.
    pub(crate) fn put(&self, entry: NonNull<T>) -> Option<NonNull<T>> {
        // An empty slot takes a plain store: only the owner ever writes a
        // non-null pointer, and a thief's swap of an empty slot writes null
        // over null, so the slot stays empty from this load to the store
        // and nothing is displaced. A wake that finds the slot empty (every
        // hop of a ping-pong or a ring) thus costs no read-modify-write.
        // Release: whoever takes the entry sees what was written before.
        if self.ptr.load(Ordering::Relaxed).is_null() {
            self.ptr.store(entry.as_ptr(), Ordering::Release);
            return None;
        }
        NonNull::new(self.ptr.swap(entry.as_ptr(), Ordering::AcqRel))
    }

    /// Takes the entry, if any (the owner, or a thief).
    pub(crate) fn take(&self) -> Option<NonNull<T>> {
        // A plain load first: the owner takes from an empty slot on most
        // loop turns, and a load costs less than a swap.
        if self.ptr.load(Ordering::Relaxed).is_null() {
            return None;
        }
        NonNull::new(self.ptr.swap(ptr::null_mut(), Ordering::AcqRel))
    }
}

#[cfg(all(test, loom))]
mod loom_next {
    use super::NextSlot;
    use loom::sync::Arc;
    use std::ptr::NonNull;

    /// The owner puts two entries (the second displacing the first if the
    /// slot still holds it) and then takes, while a thief takes once: each
    /// entry is taken exactly once, by exactly one of them.
    #[test]
    fn owner_puts_and_takes_while_a_rescuer_takes() {
        loom::model(|| {
            // Two distinct addresses to stand in for run-queue entries.
            let items: &'static [u8; 2] = Box::leak(Box::new([0u8; 2]));
            let a = NonNull::from(&items[0]);
            let b = NonNull::from(&items[1]);
            let slot = Arc::new(NextSlot::<u8>::new());
            let s = slot.clone();
            let thief = loom::thread::spawn(move || s.take());
            let mut got = Vec::new();
            if let Some(prev) = slot.put(a) {
                got.push(prev);
            }
            if let Some(prev) = slot.put(b) {
                got.push(prev);
            }
            if let Some(e) = slot.take() {
                got.push(e);
            }
            if let Some(e) = thief.join().unwrap() {
                got.push(e);
            }
            got.sort();
            let mut want = vec![a, b];
            want.sort();
            assert_eq!(got, want, "every entry taken exactly once");
        });
    }
}
