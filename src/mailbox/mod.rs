//! Mailboxes: the lock-free MPSC [`queue`] every process owns, and the
//! [`Message`] and [`Received`] values that travel through it.

pub(crate) mod message;
pub(crate) mod queue;

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
