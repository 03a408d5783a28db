//! Epoch pins: `crossbeam-epoch`'s in normal builds.
//!
//! `crossbeam-epoch` is not loom-aware: its global collector and its
//! per-thread handle are std statics and thread-locals, so under loom (all
//! threads of a model on one OS thread, many executions in one process)
//! every model thread would share one handle, and a deferred function could
//! run in a later execution, on objects of one already gone. Under
//! `cfg(loom)` a pin is a count of pinned threads, and the process table's
//! stand-in (`process::table`, `table_loom.rs`) frees what it removed only
//! when no other thread is pinned: a stricter rule than the epoch's (which
//! waits only for the pins older than the removal), so whatever the real
//! table's readers may hold, the stand-in's hold at least as long. The
//! epoch itself is argued in `process::table` and checked by its unit
//! tests under Miri.

#[cfg(not(loom))]
pub(crate) use crossbeam_epoch::pin;

#[cfg(loom)]
pub(crate) use imp::{Guard, pin, pinned};

#[cfg(loom)]
mod imp {
    use loom::sync::atomic::{AtomicUsize, Ordering};

    loom::lazy_static! {
        /// Threads pinned now (per execution: loom resets it).
        static ref PINNED: AtomicUsize = AtomicUsize::new(0);
    }

    /// A pin: counted while it lives.
    #[derive(Debug)]
    pub(crate) struct Guard(());

    /// Pins the calling thread.
    pub(crate) fn pin() -> Guard {
        PINNED.fetch_add(1, Ordering::AcqRel);
        Guard(())
    }

    /// Threads pinned now.
    pub(crate) fn pinned() -> usize {
        PINNED.load(Ordering::Acquire)
    }

    impl Guard {
        /// Nothing to hand over: the stand-in table frees by itself.
        pub(crate) fn flush(&self) {}
    }

    impl Drop for Guard {
        fn drop(&mut self) {
            PINNED.fetch_sub(1, Ordering::AcqRel);
        }
    }
}
