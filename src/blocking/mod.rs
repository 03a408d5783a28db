//! The blocking pool behind [`Runtime::spawn_blocking`](crate::Runtime::spawn_blocking):
//! `pool` (the threads and the job queue, with its module docs) and `slot`
//! (what a job and its future share; loom model `loom_blocking_slot`).

pub(crate) mod slot;

mod pool;

pub use pool::Blocking;
pub(crate) use pool::Pool;
