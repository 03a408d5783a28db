//! Erlang/OTP's process model on a work-stealing scheduler of its own.
//!
//! Millions of cheap, isolated processes that talk only by messages, crash
//! without taking anything else down, and are restarted by supervisors.
//!
//! # Quick start
//!
//! Build a [`Runtime`], [`spawn`](Runtime::spawn) processes (an `async`
//! body given its [`Context`]), [`send`](Runtime::send) them any
//! `Send + 'static` value, and wait for one from a plain thread with
//! [`block_on`](Runtime::block_on):
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
//! [`server`] module), and supervisors ([`supervisor`]). The main items
//! each carry a runnable example.
//!
//! # The contract
//!
//! Semantics follow Erlang/OTP; these are the promises the rest rests on.
//!
//! * **Pids are never reused** for the runtime's lifetime, so a stale pid
//!   can never reach a newer process: a send to it returns false, a call
//!   fails with [`CallError::NoProc`] at once, a monitor fires `NoProc`.
//! * **A send never blocks**, from anywhere (a process, a plain thread,
//!   inside `block_on`), and messages from one sender to one receiver
//!   arrive in the order sent. With [`Builder::mailbox_capacity`] a full
//!   mailbox sheds user messages ([`Runtime::try_send`] hands them back);
//!   `Down` and `Exit` signals are never shed.
//! * **A process ends once**, with one [`ExitReason`]: `Normal` when its
//!   body returns, `Crashed` when it panics, `Killed` by
//!   [`Runtime::kill`], or the reason of an exit signal. Its names and tags
//!   are released before any `Down` or `Exit` for it is delivered, and
//!   [`ProcessHandle::join`] resolves once its teardown is complete.
//! * **Links and monitors** carry that reason: every monitor gets
//!   [`Received::Down`]; every linked process gets the exit signal, as a
//!   [`Received::Exit`] message when it traps exits, otherwise ending with
//!   the same reason unless it is `Normal` (so cascades carry the original
//!   reason). `Killed` sent with [`Runtime::send_exit`] cannot be trapped.
//! * **Receives are cancel-safe**: dropping a [`Recv`], [`RecvMatch`] or
//!   [`RecvTimeout`] future loses no message, and a selective receive
//!   leaves what it skips queued in arrival order.
//! * **A late reply is dropped**: a [`Call`] that gave up never sees its
//!   reply arrive in the caller's mailbox.
//! * **Supervisors are ordinary processes** that trap exits; when
//!   [`Supervisor::start`] returns, the static children have been started,
//!   in order; over its restart budget a supervisor stops its children
//!   (last started first) and exits `Crashed`, so its own supervisor
//!   escalates.
//! * **The runtime runs no processes of its own**: the counts
//!   ([`Runtime::process_count`], [`Runtime::list`]) are the user's
//!   processes. Dropping the last handle made from the one
//!   [`Builder::build`] returned stops and joins the worker threads; no
//!   thread is left behind.
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
mod coop;
mod guard;
mod io;
mod registry;
mod report;
mod runtime;
mod send_error;
pub mod server;
mod signal;
pub mod supervisor;
mod time;
mod yield_now;

pub use mailbox::{Message, MonitorRef, Received};
pub use process::{ExitReason, Pid};

/// The reactor processes await sockets on (`Async<TcpStream>` and the rest),
/// re-exported so that users have the version this crate was built with.
#[cfg(not(loom))]
pub use async_io;
pub use blocking::Blocking;
pub use call::{Call, CallError, ReplyTo, Request};
#[cfg(not(loom))]
pub use io::net;
pub use process::{Context, Join, ProcessHandle, Recv, RecvMatch};
pub use runtime::{Builder, Metrics, ProcessInfo, Runtime, WorkerMetrics};
pub use send_error::SendError;
pub use server::{Flow, Server, ServerRef};
pub use supervisor::{Strategy, Supervisor};
pub use time::{RecvTimeout, Sleep, TimerRef, sleep};
pub use yield_now::{YieldNow, yield_now};
