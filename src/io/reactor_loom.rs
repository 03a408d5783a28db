//! The reactor's stand-in under `cfg(loom)`: the composed models open no
//! sockets, so there is nothing to poll, and a worker that would park in
//! the reactor parks on its condvar instead (the scheduler's parkers have
//! no reactor under loom). The hand-off between a worker parked in the
//! real reactor and an unpark has a model of its own
//! (`scheduler::park::loom_park_io`).

/// No sockets, no events.
#[derive(Debug)]
pub(crate) struct Reactor;

impl Reactor {
    pub(crate) fn new() -> std::io::Result<Reactor> {
        Ok(Reactor)
    }

    pub(crate) fn has_sources(&self) -> bool {
        false
    }

    pub(crate) fn polls(&self) -> u64 {
        0
    }

    pub(crate) fn unowned_panics(&self) -> u64 {
        0
    }

    pub(crate) fn close(&self) {}

    pub(crate) fn poll_now(&self) -> usize {
        0
    }
}
