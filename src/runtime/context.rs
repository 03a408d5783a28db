//! Where this thread is: the runtime it serves (a worker's, or a
//! `block_on`'s) and the process it runs right now.
//!
//! One thread-local with no destructor holds both, so that marking a run
//! costs one thread-local access on each side and no lazy registration.
//!
//! **The runtime** is entered for the life of a worker thread and for the
//! length of a `block_on`; [`sleep`](crate::sleep) outside a process finds
//! its timers through it.
//!
//! **The process** is marked for the length of each run (poll or
//! teardown). Two things need it: a call must know its caller (for
//! [`Request::caller`](crate::Request::caller) and to refuse a call to
//! itself), and a server records the process that spawned it (its parent)
//! at `spawn_server` time. Runs do not nest on one thread, except a runtime
//! stopped from inside a process, which restores the outer mark.
//!
//! When the outermost run ends, work deferred to its end is done: a
//! [`ReplyTo`](crate::ReplyTo) dropped unanswered during a run answers
//! `NoReply` only then, after a crash or kill of that process has fired its
//! exit watches (see [`crate::call`]).

use super::{Runtime, Shared};
use crate::process::Pid;
use std::cell::Cell;
use std::sync::Arc;

/// A runtime's identity (the address of its shared state) and a pid in it;
/// identity 0 when no process runs.
type Mark = (usize, Pid);

/// No process running.
const NONE: Mark = (0, Pid::from_raw(0));

/// Where this thread is.
struct Here {
    /// The runtime entered on this thread, or null: a pointer from
    /// `Arc::into_raw`, whose strong count the thread-local owns while it is
    /// here (see [`Entered`]).
    runtime: Cell<*const Shared>,
    /// The process this thread runs now ([`NONE`] if none).
    mark: Cell<Mark>,
    /// Whether work was deferred to the end of the outermost run.
    deferred: Cell<bool>,
}

crate::loom::thread_local! {
    static HERE: Here = const {
        Here {
            runtime: Cell::new(std::ptr::null()),
            mark: Cell::new(NONE),
            deferred: Cell::new(false),
        }
    };
}

/// Makes a runtime current on this thread until dropped.
///
/// Entering moves a strong count into the thread-local and keeps the one it
/// displaces; leaving releases whatever is current and puts that one back.
/// Each pointer in the thread-local thus always carries a count of its own,
/// whatever order guards are dropped in, so [`current`] never reads a
/// freed runtime.
pub(crate) struct Entered {
    /// The runtime current before, with the count it carries.
    prev: *const Shared,
}

/// Makes `rt` the current runtime of this thread until the guard drops.
pub(crate) fn enter(rt: &Runtime) -> Entered {
    let p = Arc::into_raw(rt.shared.clone());
    let prev = HERE.with(|h| h.runtime.replace(p));
    Entered { prev }
}

impl Drop for Entered {
    fn drop(&mut self) {
        let prev = self.prev;
        let left = HERE.try_with(|h| h.runtime.replace(prev)).unwrap_or(prev);
        if !left.is_null() {
            // SAFETY: every non-null pointer in the thread-local carries a
            // strong count from `Arc::into_raw` (type docs), now ours.
            drop(unsafe { Arc::from_raw(left) });
        }
    }
}

/// The current runtime of this thread (a worker's, or `block_on`'s), as a
/// handle that does not keep it running.
pub(crate) fn current() -> Option<Runtime> {
    let p = HERE.try_with(|h| h.runtime.get()).ok()?;
    if p.is_null() {
        return None;
    }
    // SAFETY: the thread-local owns a strong count for `p` while it is
    // there (see `Entered`); we take one more for the handle.
    let shared = unsafe {
        Arc::increment_strong_count(p);
        Arc::from_raw(p)
    };
    Some(Runtime::from_shared(shared))
}

/// Marks a process as running on this thread until dropped.
pub(crate) struct Running {
    /// The mark to restore.
    prev: Mark,
}

/// Marks `pid` of runtime `shared` as running on this thread: for the run
/// of a process, and while code runs on its behalf outside its own poll (a
/// supervisor starting its children inside its own spawn, so that a server
/// child records the supervisor as its parent).
#[inline]
pub(crate) fn run_as(shared: &Arc<Shared>, pid: Pid) -> Running {
    mark((Arc::as_ptr(shared) as usize, pid))
}

#[inline]
fn mark(mark: Mark) -> Running {
    let prev = HERE.try_with(|h| h.mark.replace(mark)).unwrap_or(NONE);
    Running { prev }
}

impl Drop for Running {
    #[inline]
    fn drop(&mut self) {
        let prev = self.prev;
        let deferred = HERE
            .try_with(|h| {
                h.mark.set(prev);
                prev.0 == 0 && h.deferred.replace(false)
            })
            .unwrap_or(false);
        if deferred {
            crate::call::run_deferred();
        }
    }
}

/// Notes that work was deferred to the end of the outermost run on this
/// thread (see [`crate::call`]).
pub(crate) fn note_deferred() {
    let _ = HERE.try_with(|h| h.deferred.set(true));
}

/// Whether this thread is inside the run of any process.
pub(crate) fn in_process() -> bool {
    HERE.try_with(|h| h.mark.get().0 != 0).unwrap_or(false)
}

/// The process of runtime `shared` this thread is running, if any.
pub(crate) fn pid_in(shared: &Arc<Shared>) -> Option<Pid> {
    let key = Arc::as_ptr(shared) as usize;
    match HERE.try_with(|h| h.mark.get()).ok() {
        Some((k, pid)) if k == key => Some(pid),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Guards dropped out of order leave no dangling runtime behind: the
    /// current one is always one still counted, even once its owner has
    /// dropped every handle.
    #[test]
    fn entered_guards_dropped_out_of_order_leave_a_live_runtime() {
        let a = Runtime::builder().workers(1).build();
        let a_state = Arc::as_ptr(&a.shared);
        let b = Runtime::builder().workers(2).build();
        let ga = enter(&a);
        let gb = enter(&b);
        drop(ga);
        assert!(current().is_none());
        drop(gb);
        // The owner's last handle: `a` stops, but the thread-local still
        // holds a count on its state.
        drop(a);
        let cur = current().expect("a's count came back with b's guard");
        assert_eq!(Arc::as_ptr(&cur.shared), a_state);
        assert_eq!(cur.workers(), 1);
        drop(cur);
        // Leave the thread as found.
        drop(Entered {
            prev: std::ptr::null(),
        });
        assert!(current().is_none());
    }
}
