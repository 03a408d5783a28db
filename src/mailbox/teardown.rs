//! The mailbox's part of a process's teardown (see the parent module's
//! docs for who drops which message, and the queue's for closing under a
//! running consumer).
//!
//! It sees the runtime only through the task's seam ([`Schedule`]): the
//! counters a panic goes to are the runtime's, reached through the
//! process's header, whatever runtime instantiates it.

use crate::process::ExitReason;
use crate::process::task::{Header, Schedule};

/// Teardown's part of the mailbox: closes it, drops every message the close
/// now owns under the panic guard, and releases the foreign waker kept from
/// a receive polled under one, waking it if that receive (in a `Context`
/// moved out of its process) is parked now, so it sees the process has
/// ended. Returns the reason the process ends with: `reason`,
/// or `Crashed` if a message's destructor panicked.
pub(crate) fn close_at_teardown<S: Schedule>(h: &Header<S>, reason: ExitReason) -> ExitReason {
    let closed = h.mailbox.close();
    // Taken whether or not a receive is parked under it now: a waker kept
    // from an earlier receive usually holds this process's own waker, and
    // left in the aux data (dropped only with the task) it would keep the
    // task alive for ever.
    let waker = h.aux.lock().as_mut().and_then(|a| a.foreign_waker.take());
    if let Some(w) = waker {
        // The waker belongs to whoever polled the receive, not to this
        // process: a panic in it (or in its destructor) is nobody's.
        let wake = closed.wake_foreign;
        let ran = crate::guard::catch(move || {
            if wake {
                w.wake();
            } else {
                drop(w);
            }
        });
        if ran.is_none() {
            h.rt.note_unowned_panic();
        }
    }
    let mut panicked = false;
    for item in closed.values {
        panicked |= !crate::guard::drop_caught(item);
    }
    if !panicked {
        return reason;
    }
    // Counted as a process that ended by panicking, unless its body had
    // panicked already (counted then, and its message is the one to keep).
    let first = h.with_aux(|a| {
        a.panic.is_none().then(|| {
            a.panic = Some(
                "a queued message's destructor panicked while the process's mailbox was closed"
                    .to_string(),
            );
        })
    });
    if first.is_some() {
        h.rt.note_panic();
    }
    ExitReason::Crashed
}
