//! Which process the calling thread is running right now.
//!
//! A worker marks the process it runs (poll or teardown) in a thread-local
//! for the length of that run. Two things need it: a call must know its
//! caller (for [`Request::caller`](crate::Request::caller) and to refuse a
//! call to itself), and a server records the process that spawned it (its
//! parent) at `spawn_server` time. Runs do not nest on one thread, except a
//! runtime stopped from inside a process, which restores the outer mark.
//!
//! When the outermost run ends, work deferred to its end is done: a
//! [`ReplyTo`](crate::ReplyTo) dropped unanswered during a run answers
//! `NoReply` only then, after a crash or kill of that process has fired its
//! exit watches (see [`crate::call`]).

use super::Pid;
use super::task::Header;
use crate::runtime::Shared;
use std::cell::Cell;
use std::sync::Arc;

/// A runtime's identity (the address of its shared state) and a pid in it;
/// identity 0 when no process runs.
type Mark = (usize, Pid);

/// No process running.
const NONE: Mark = (0, Pid::from_raw(0));

/// Where this thread is. One thread-local with no destructor for both
/// facts the start and end of every run touch, so that marking a run costs
/// one thread-local access on each side and no lazy registration.
struct Here {
    /// The process this thread runs now ([`NONE`] if none).
    mark: Cell<Mark>,
    /// Whether work was deferred to the end of the outermost run.
    deferred: Cell<bool>,
}

crate::loom::thread_local! {
    static HERE: Here = const {
        Here {
            mark: Cell::new(NONE),
            deferred: Cell::new(false),
        }
    };
}

/// Marks a process as running on this thread until dropped.
pub(crate) struct Running {
    /// The mark to restore.
    prev: Mark,
}

/// Marks the process of `h` as running on this thread.
#[inline]
pub(crate) fn enter(h: &Header) -> Running {
    mark((Arc::as_ptr(&h.rt.shared) as usize, h.pid))
}

/// Marks `pid` as running on this thread while code runs on its behalf
/// outside its own poll: a supervisor starting its children inside its
/// own spawn, so that a server child records the supervisor as its parent.
#[allow(dead_code)]
pub(crate) fn act_as(shared: &Arc<Shared>, pid: Pid) -> Running {
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
