//! The blocking pool behind [`Runtime::spawn_blocking`](crate::Runtime::spawn_blocking):
//! `pool` (the threads and the job queue, with its module docs) and `slot`
//! (what a job and its future share; loom model `loom_blocking_slot`).

pub(crate) mod slot;

#[cfg(not(loom))]
mod pool;

#[cfg(not(loom))]
pub use pool::Blocking;
#[cfg(not(loom))]
pub(crate) use pool::Pool;
