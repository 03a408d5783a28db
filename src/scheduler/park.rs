//! A worker's parker: a one-token semaphore on a mutex and condvar.
//!
//! `unpark` leaves a token that the next (or current) `park` consumes, so an
//! unpark that races ahead of the park is never lost.

use crate::loom::sync::{Condvar, Mutex};

/// Blocks one worker thread until unparked.
#[derive(Debug)]
pub(crate) struct Parker {
    /// The token: true when an unpark has not been consumed yet.
    notified: Mutex<bool>,
    /// Signalled by `unpark`.
    cv: Condvar,
}

impl Parker {
    pub(crate) fn new() -> Parker {
        Parker {
            notified: Mutex::new(false),
            cv: Condvar::new(),
        }
    }

    /// Blocks until a token is available (consuming it), or until `deadline`.
    pub(crate) fn park(&self, deadline: Option<std::time::Instant>) {
        let mut token = self.notified.lock();
        while !*token {
            match deadline {
                None => self.cv.wait(&mut token),
                #[cfg(not(loom))]
                Some(d) => {
                    if self.cv.wait_until(&mut token, d) {
                        break;
                    }
                }
                #[cfg(loom)]
                Some(_) => unreachable!("loom models park without deadlines"),
            }
        }
        *token = false;
    }

    /// Leaves a token and wakes the parked thread, if any.
    pub(crate) fn unpark(&self) {
        *self.notified.lock() = true;
        self.cv.notify_one();
    }
}
