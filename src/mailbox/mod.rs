//! Mailboxes: the lock-free MPSC [`queue`] every process owns, and the
//! [`Message`] and [`Received`] values that travel through it.
//!
//! # Messages dropped by the runtime
//!
//! A message is user data, and its destructor is user code. The mailbox
//! drops messages in these places:
//!
//! * **Teardown** (`close_at_teardown`) drops everything queued, and the
//!   messages deferred by selective receive if the process's `Context` is
//!   gone, on the worker that ends the process. Each destructor runs under
//!   the panic guard, so a panic there never reaches the worker; it crashes
//!   the process being torn down (its exit reason becomes `Crashed`, which
//!   is not published yet at that point, and its links and monitors see
//!   `Crashed`). The worst a message's destructor can do is crash its own
//!   process.
//! * **A `Context` dropped after its process ended** drops the messages it
//!   had collected, under the guard; the process's fate is settled by
//!   then, so a panic is counted as unowned.
//! * **A send to a closed mailbox** hands the message back to the sender
//!   (`Queue::push` returns it), which drops it on its own thread: it is
//!   the sender's own value, as with any failed send.
//! * **Inside a process body** (a received message dropped by the body, the
//!   `Received` a receive returns): the body's own code, whose panic
//!   crashes the process like any other.

pub(crate) mod message;
#[cfg(not(loom))]
mod pool;
pub(crate) mod queue;
mod teardown;

#[cfg(not(loom))]
pub(crate) use pool::release_depot as release_message_memory;
pub(crate) use teardown::close_at_teardown;

pub use message::Message;

use crate::process::{ExitReason, Pid};

/// One monitor, as returned by `Runtime::monitor`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct MonitorRef(pub(crate) u64);

impl MonitorRef {
    /// The monitor's number, unique within its runtime.
    pub fn raw(self) -> u64 {
        self.0
    }
}

/// What a receive yields: a user message or a signal turned into a message.
#[derive(Debug)]
pub enum Received {
    /// A user message.
    Message(Message),
    /// A monitored process ended (or did not exist: `NoProc`).
    Down {
        /// The monitor that fired.
        reference: MonitorRef,
        /// The process that ended.
        pid: Pid,
        /// Why it ended.
        reason: ExitReason,
    },
    /// An exit signal, received because this process traps exits.
    Exit {
        /// The process the signal came from.
        from: Pid,
        /// The reason it carries.
        reason: ExitReason,
    },
}

impl Received {
    /// The user message, if this is one.
    pub fn message(self) -> Option<Message> {
        match self {
            Received::Message(m) => Some(m),
            _ => None,
        }
    }
}
