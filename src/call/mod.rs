//! Request and reply: [`Runtime::call`](crate::Runtime::call), OTP's `gen_server:call`.
//!
//! ```
//! use rusm_otp::{Received, Request, Runtime};
//! use std::time::Duration;
//!
//! let rt = Runtime::builder().workers(2).build();
//! let doubler = rt.spawn(|mut ctx| async move {
//!     while let Received::Message(m) = ctx.recv().await {
//!         if let Ok(req) = m.downcast::<Request<u64, u64>>() {
//!             let n = *req.body();
//!             req.reply(n * 2);
//!         }
//!     }
//! });
//! let answer = rt.block_on(rt.call::<u64, u64>(doubler.pid(), 21, Duration::from_secs(5)));
//! assert_eq!(answer, Ok(42));
//! ```
//!
//! # The protocol
//!
//! The reply does not travel through the caller's mailbox at all. A call
//! allocates one reply slot (an atomic state word, the outcome, the
//! caller's waker), shared by three parties:
//!
//! 1. **The caller** (the [`Call`] future, in a process or in `block_on`)
//!    polls the slot, and closes it when it gives up (timeout, or the future
//!    is dropped).
//! 2. **The [`ReplyTo`]**, sent to the callee inside the [`Request`] (a plain
//!    user message), completes it with the reply, or with `NoReply` when
//!    dropped unanswered. It may be moved anywhere and answered later.
//! 3. **The exit watch**: before the request is sent, the slot is placed in
//!    the callee's list of watching calls (its aux data, under its lock,
//!    checking the process table there, exactly as a monitor is placed).
//!    The callee's teardown completes every watch with `Exited(reason)`.
//!
//! The first completer wins (the slot's module docs argue why no wakeup is
//! lost; loom model `loom_slot`).
//!
//! **Why a late reply cannot leak into the caller's mailbox**: the reply is
//! only ever written into the slot, never delivered as a message, and once
//! the caller has closed the slot a reply finds `CLOSED` and is handed back
//! to the replier (`reply` returns false), who drops it. The exit watch is
//! not a monitor either, so no `Down` for it ever reaches a mailbox.
//!
//! **Why `NoProc` is immediate**: placing the watch checks the process table
//! under the callee's aux lock. Teardown removes the process from the table
//! before it takes the watch list under that lock, so either the watch is
//! placed and teardown will complete it with the real reason, or the callee
//! is already gone and the call fails with `NoProc` before sending anything.
//! A request that finds the mailbox closed (the callee is ending right now)
//! is dropped silently: its watch is already placed, so the call ends with
//! the callee's exit reason.
//!
//! **`NoReply` versus a crash**: a `ReplyTo` dropped while a process is
//! being run (its body, its panic unwinding, its teardown dropping queued
//! requests) answers `NoReply` only when that run ends (the worker marks
//! the process it runs). If the run ended the callee, its exit watches
//! fired first, so a request dropped by a crash or a kill gives
//! `Exited(Crashed)` / `Exited(Killed)`, not `NoReply`. Elsewhere (a plain
//! thread) the drop answers at once.
//!
//! Other decisions: a process calling its own pid fails with `SelfCall` at
//! once (it could never answer); the caller's identity is the process this
//! thread is running when the call is first polled. A request shed by a
//! full bounded mailbox fails the call with `NoReply` at once (the runtime
//! dropped it unanswered on the callee's behalf). A timeout too large to
//! represent (such as `Duration::MAX`) waits forever. The timeout is armed
//! lazily: the first poll sends the request and yields once, and only a
//! call still waiting at its second poll registers its waker and puts a
//! timer in the wheel (counting the timeout from there), so a promptly
//! answered call never pays for either. The callee's list of watches drops
//! settled entries when it doubles, so a long-lived server keeps O(live
//! calls) of them without the caller ever taking its lock again.

pub(crate) mod slot;

mod imp;

pub use imp::{Call, CallError, ReplyTo, Request};
pub(crate) use imp::{Watchers, release_watchers, run_deferred};
