//! Running user code the runtime calls outside a process body.
//!
//! A process body runs under `catch_unwind` in the worker's poll, so a
//! panic there ends only that process (`Crashed`). The runtime also runs
//! user code elsewhere: destructors of messages, futures, timer payloads and
//! panic payloads, dropped at teardown or when a timer's target is gone.
//! Every such call goes through this module, so a panic in it can never
//! unwind into a worker loop, a lock holder or a teardown half done. The
//! caller decides what the panic means: the owning process crashes, or,
//! when no process owns the value, the panic is counted
//! ([`Metrics::unowned_panics`](crate::Metrics::unowned_panics)).

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};

/// Runs `f`, catching a panic. On a panic the payload is dropped, under a
/// guard of its own, and `None` returned.
pub(crate) fn catch<R>(f: impl FnOnce() -> R) -> Option<R> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => Some(r),
        Err(payload) => {
            drop_payload(payload);
            None
        }
    }
}

/// Drops `value`, catching a panic from its destructor. True when the drop
/// completed without panicking.
pub(crate) fn drop_caught<T>(value: T) -> bool {
    catch(move || drop(value)).is_some()
}

/// Drops a panic payload. A payload whose own destructor panics is leaked
/// rather than dropped again: that second panic cannot be allowed to
/// unwind, and a payload that panicked in its destructor may be half
/// destroyed, so dropping it once more would be unsound.
pub(crate) fn drop_payload(payload: Box<dyn Any + Send>) {
    if let Err(second) = catch_unwind(AssertUnwindSafe(move || drop(payload))) {
        std::mem::forget(second);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct PanicOnDrop;
    impl Drop for PanicOnDrop {
        fn drop(&mut self) {
            panic!("boom in drop");
        }
    }

    #[test]
    fn drop_caught_reports_a_panicking_destructor() {
        assert!(drop_caught(5u32));
        assert!(!drop_caught(PanicOnDrop));
    }

    #[test]
    fn a_payload_whose_drop_panics_does_not_unwind() {
        let r = catch(|| std::panic::panic_any(PanicOnDrop));
        assert!(r.is_none());
    }
}
