//! Erlang/OTP's process model on a work-stealing scheduler of its own.
//!
//! Millions of cheap, isolated processes that talk only by messages, crash
//! without taking anything else down, and are restarted by supervisors.
//!
//! ```
//! use rusm_otp::{Runtime, Received};
//!
//! let rt = Runtime::builder().workers(2).build();
//! let echo = rt.spawn(|mut ctx| async move {
//!     while let Received::Message(m) = ctx.recv().await {
//!         let (from, n) = m.downcast::<(rusm_otp::Pid, u64)>().unwrap();
//!         ctx.runtime().send(from, n + 1);
//!     }
//! });
//! let echo_pid = echo.pid();
//! let asker = rt.spawn(move |mut ctx| async move {
//!     ctx.runtime().send(echo_pid, (ctx.pid(), 41u64));
//!     let reply = ctx.recv().await.message().unwrap();
//!     assert_eq!(reply.downcast::<u64>().unwrap(), 42);
//! });
//! assert_eq!(rt.block_on(asker.join()), rusm_otp::ExitReason::Normal);
//! rt.kill(echo_pid);
//! assert_eq!(rt.block_on(echo.join()), rusm_otp::ExitReason::Killed);
//! ```
//!
//! Beyond plain messages: request and reply with [`Runtime::call`] (the
//! [`call`] module), `gen_server`-style processes with [`Server`] (the
//! [`server`] module), and supervisors ([`supervisor`]).
//!
//! # Crash reports
//!
//! A process that panics, and a supervisor that restarts a child, exceeds
//! its restart budget or meets a child factory that panics, each emit a
//! record through the `log` crate's facade, with structured key-values (targets
//! `rusm_otp::process` and `rusm_otp::supervisor`; the crashed process's
//! `pid`, `label`, `reason` and `panic`; a restart's `child`, `old_pid`,
//! `new_pid`). Nothing is printed unless the program installs a logger
//! (`env_logger`, or `tracing-log` for tracing).
//!
//! A panicking process also goes through the program's panic hook, which
//! by default prints it as any panic. Under a storm of crashes, build the
//! runtime with [`Builder::quiet_panics`]`(true)`: worker-thread panics are
//! then silent and the log record is their only trace; leave it off (the
//! default) to see the usual panic output.
//!
//! See `ARCHITECTURE.md` for the map of the crate.

mod loom;

pub mod call;

mod mailbox;
mod process;
mod scheduler;

mod blocking;
#[cfg(not(loom))]
mod coop;
#[cfg(not(loom))]
mod guard;
#[cfg(not(loom))]
mod registry;
#[cfg(not(loom))]
mod report;
#[cfg(not(loom))]
mod runtime;
#[cfg(not(loom))]
mod send_error;
#[cfg(not(loom))]
pub mod server;
#[cfg(not(loom))]
mod signal;
#[cfg(not(loom))]
pub mod supervisor;
mod time;
#[cfg(not(loom))]
mod yield_now;

pub use mailbox::{Message, MonitorRef, Received};
pub use process::{ExitReason, Pid};

/// The reactor processes await sockets on (`Async<TcpStream>` and the rest),
/// re-exported so that users have the version this crate was built with.
#[cfg(not(loom))]
pub use async_io;
#[cfg(not(loom))]
pub use blocking::Blocking;
#[cfg(not(loom))]
pub use call::{Call, CallError, ReplyTo, Request};
#[cfg(not(loom))]
pub use process::{Context, Join, ProcessHandle, Recv, RecvMatch};
#[cfg(not(loom))]
pub use runtime::{Builder, Metrics, ProcessInfo, Runtime, WorkerMetrics};
#[cfg(not(loom))]
pub use send_error::SendError;
#[cfg(not(loom))]
pub use server::{Flow, Server, ServerRef};
#[cfg(not(loom))]
pub use supervisor::{Strategy, Supervisor};
#[cfg(not(loom))]
pub use time::{RecvTimeout, Sleep, TimerRef, sleep};
#[cfg(not(loom))]
pub use yield_now::{YieldNow, yield_now};
