//! Processes: the task that runs one, its state word, its [`Context`] and
//! [`ProcessHandle`], and the table that maps pids to live processes.

pub(crate) mod alive;
mod aux;
pub(crate) mod context;
pub(crate) mod handle;
pub(crate) mod recycle;
pub(crate) mod state;
#[cfg(not(loom))]
pub(crate) mod table;
#[cfg(loom)]
#[path = "table_loom.rs"]
pub(crate) mod table;
pub(crate) mod task;

use std::fmt;

/// A process identifier.
///
/// Pids come from one 64-bit counter per runtime and are never reused for
/// the runtime's lifetime, so a stale pid can never reach a newer process.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pid(u64);

impl Pid {
    /// The pid's number.
    pub fn raw(self) -> u64 {
        self.0
    }

    /// A pid from its number (for instance one read back from a log). It
    /// names a live process only if the runtime gave out that number.
    pub const fn from_raw(raw: u64) -> Pid {
        Pid(raw)
    }
}

impl fmt::Debug for Pid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pid({})", self.0)
    }
}

impl fmt::Display for Pid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// Why a process ended.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
#[repr(u8)]
pub enum ExitReason {
    /// Its body returned.
    Normal = 1,
    /// Killed: `kill`, or a `Killed` exit signal. Untrappable when sent by `kill`.
    Killed = 2,
    /// Its body panicked, or it was ended abnormally (a supervisor giving up).
    Crashed = 3,
    /// It did not exist (monitors and links to a dead or unknown pid).
    NoProc = 4,
    /// An orderly shutdown requested by a supervisor or owner.
    Shutdown = 5,
}

impl ExitReason {
    /// Every reason but `Normal`.
    pub fn is_abnormal(self) -> bool {
        self != ExitReason::Normal
    }

    pub(crate) fn to_u8(self) -> u8 {
        self as u8
    }

    pub(crate) fn from_u8(v: u8) -> Option<ExitReason> {
        Some(match v {
            1 => ExitReason::Normal,
            2 => ExitReason::Killed,
            3 => ExitReason::Crashed,
            4 => ExitReason::NoProc,
            5 => ExitReason::Shutdown,
            _ => return None,
        })
    }
}

impl fmt::Display for ExitReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            ExitReason::Normal => "normal",
            ExitReason::Killed => "killed",
            ExitReason::Crashed => "crashed",
            ExitReason::NoProc => "noproc",
            ExitReason::Shutdown => "shutdown",
        };
        f.write_str(s)
    }
}

pub use context::{Context, Recv, RecvMatch};
pub use handle::{Join, ProcessHandle};
