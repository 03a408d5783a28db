//! The process table's stand-in under `cfg(loom)`: pid → live process in a
//! loom mutex, with the real table's interface.
//!
//! The real table's lookups are lock-free and its memory safety is
//! `crossbeam-epoch`'s, which loom cannot drive (see `loom::epoch`); its
//! own invariants are argued in its module docs and checked by its unit
//! tests (also under Miri). What the composed models need from it is its
//! contract with the rest of the runtime, which this keeps:
//!
//! * a process is in the table from its spawn until `finish` removes it,
//!   and a lookup sees it exactly in that window (`with`, `contains` under
//!   the one lock, so loom orders them against `insert` and `remove`);
//! * a lookup's process stays valid while the lookup uses it (here the
//!   lookup holds its own strong reference);
//! * the table's reference to a removed process is released only once no
//!   other thread is pinned (a stricter rule than the epoch's, see
//!   `loom::epoch`), so a worker still inside the run that finished it,
//!   or one about to run a queue entry for it, holds valid memory.

use super::Pid;
use crate::loom::epoch::{Guard, pinned};
use crate::loom::sync::Mutex;
use crate::runtime::OwnedTask;
use crate::runtime::{Header, TaskPtr, TaskRef};
use std::collections::BTreeMap;

/// The table's strong reference to a process, as `Arc::into_raw` made it.
struct Owned(TaskPtr);

// SAFETY: a pointer to a `Send + Sync` process.
unsafe impl Send for Owned {}

impl Owned {
    fn release(self) {
        // SAFETY: the table's reference, taken out of the table once.
        unsafe { self.0.release() }
    }
}

/// pid → live process.
pub(crate) struct Table {
    live: Mutex<BTreeMap<u64, Owned>>,
    /// Removed processes whose reference awaits a moment with no other
    /// thread pinned.
    removed: Mutex<Vec<Owned>>,
}

impl std::fmt::Debug for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Table")
    }
}

/// Releases are not batched under loom.
pub(crate) fn start_batching() {}

/// Releases are not batched under loom.
pub(crate) fn stop_batching() {}

impl Table {
    pub(crate) fn new() -> Table {
        Table {
            live: Mutex::new(BTreeMap::new()),
            removed: Mutex::new(Vec::new()),
        }
    }

    /// Inserts process `task` under `pid`; the table now owns its
    /// reference.
    pub(crate) fn insert(&self, pid: Pid, task: OwnedTask) {
        // SAFETY: an owned task carries one strong reference to a live
        // process, handed over here.
        let t = Owned(unsafe { TaskPtr::from_raw(task.into_raw()) });
        assert!(self.live.lock().insert(pid.raw(), t).is_none());
    }

    /// Removes `pid`; true when it was present.
    pub(crate) fn remove(&self, pid: Pid) -> bool {
        let Some(t) = self.live.lock().remove(&pid.raw()) else {
            return false;
        };
        self.removed.lock().push(t);
        true
    }

    /// Releases the removed processes if no thread but the caller (`mine`
    /// pins) is pinned. Outside every lock: a release may drop the process.
    fn release_if_alone(&self, mine: usize) {
        if pinned() > mine {
            return;
        }
        let list = std::mem::take(&mut *self.removed.lock());
        for t in list {
            t.release();
        }
    }

    /// A worker's periodic share of reclamation (it holds one pin).
    pub(crate) fn collect(&self, _guard: &mut Guard) {
        self.release_if_alone(1);
    }

    /// Releases what can be, as far as `go_on` lets it wait (the caller is
    /// not pinned; the runtime's stop, with the workers joined, frees all).
    pub(crate) fn reclaim(&self, mut go_on: impl FnMut(u32) -> bool) {
        let mut stalled = 0;
        loop {
            self.release_if_alone(0);
            if self.removed.lock().is_empty() {
                return;
            }
            stalled += 1;
            if !go_on(stalled) {
                return;
            }
        }
    }

    /// Runs `f` on the live process `pid`.
    pub(crate) fn with<R>(&self, pid: Pid, f: impl FnOnce(&TaskPtr) -> R) -> Option<R> {
        let task: TaskRef = self.live.lock().get(&pid.raw())?.0.to_ref();
        let h: *const Header = task.header();
        // SAFETY: `task` keeps the process alive while `f` runs.
        let r = f(&unsafe { TaskPtr::from_raw(h) });
        drop(task);
        Some(r)
    }

    /// The live process `pid`, as a new reference.
    pub(crate) fn get(&self, pid: Pid) -> Option<TaskRef> {
        self.live.lock().get(&pid.raw()).map(|t| t.0.to_ref())
    }

    pub(crate) fn contains(&self, pid: Pid) -> bool {
        self.live.lock().contains_key(&pid.raw())
    }

    pub(crate) fn len(&self) -> usize {
        self.live.lock().len()
    }

    /// Every live pid, in ascending order.
    pub(crate) fn pids(&self) -> Vec<Pid> {
        self.live.lock().keys().map(|&p| Pid::from_raw(p)).collect()
    }

    /// Every live process (a snapshot).
    pub(crate) fn tasks(&self) -> Vec<TaskRef> {
        self.live.lock().values().map(|t| t.0.to_ref()).collect()
    }
}

impl Drop for Table {
    fn drop(&mut self) {
        let live = std::mem::take(&mut *self.live.lock());
        let removed = std::mem::take(&mut *self.removed.lock());
        for t in live.into_values().chain(removed) {
            t.release();
        }
    }
}
