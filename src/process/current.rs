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

/// A runtime's identity (the address of its shared state) and a pid in it.
type Mark = (usize, Pid);

thread_local! {
    /// The process this thread runs now, if any.
    static RUNNING: Cell<Option<Mark>> = const { Cell::new(None) };
}

/// Marks a process as running on this thread until dropped.
pub(crate) struct Running {
    /// The mark to restore.
    prev: Option<Mark>,
}

/// Marks the process of `h` as running on this thread.
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

fn mark(mark: Mark) -> Running {
    let prev = RUNNING.try_with(|c| c.replace(Some(mark))).ok().flatten();
    Running { prev }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = RUNNING.try_with(|c| c.set(self.prev));
        if self.prev.is_none() {
            crate::call::run_deferred();
        }
    }
}

/// The process of runtime `shared` this thread is running, if any.
pub(crate) fn pid_in(shared: &Arc<Shared>) -> Option<Pid> {
    let key = Arc::as_ptr(shared) as usize;
    match RUNNING.try_with(Cell::get).ok().flatten() {
        Some((k, pid)) if k == key => Some(pid),
        _ => None,
    }
}

/// Whether this thread is inside the run of any process.
pub(crate) fn in_process() -> bool {
    RUNNING.try_with(|c| c.get().is_some()).unwrap_or(false)
}
