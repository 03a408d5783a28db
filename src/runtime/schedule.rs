//! How the runtime serves its tasks: [`Schedule`] for the handle every
//! process header holds, [`RtRef`].

use super::{Notified, Runtime, Shared, TaskRef};
use crate::process::task::Schedule;
use crate::process::{ExitReason, Pid};
use crate::scheduler::worker::{self, Placement};

/// The runtime as a process header holds it: the shared state, in one
/// word (a [`Runtime`] is two: its owner token is always absent here). It
/// derefs to the runtime's own uncounted handle ([`Shared::handle`]), so a
/// process's `&Runtime` is one load away and costs no word per process.
pub(crate) struct RtRef(pub(crate) std::sync::Arc<Shared>);

impl std::ops::Deref for RtRef {
    type Target = Runtime;

    #[inline]
    fn deref(&self) -> &Runtime {
        self.0.handle()
    }
}

impl Schedule for RtRef {
    type Held = super::Held;

    #[inline]
    fn schedule(&self, task: Notified) {
        self.0.scheduler.schedule(task);
    }

    #[inline]
    fn spawn(&self, task: Notified) {
        self.0.scheduler.spawn(task);
    }

    #[inline]
    fn yield_now(&self, task: Notified) {
        let sched = &self.0.scheduler;
        if let Err(task) = worker::schedule_local(sched, task, Placement::Yield) {
            sched.schedule(task);
        }
    }

    fn release(&self, task: &TaskRef, reason: ExitReason) -> ExitReason {
        // A queued message whose destructor panics crashes this process.
        let reason = crate::mailbox::close_at_teardown(task.header(), reason);
        self.0.process_exited(task, reason);
        reason
    }

    fn note_panic(&self) {
        self.0.note_panic();
    }

    fn note_unowned_panic(&self) {
        self.0.note_unowned_panic();
    }

    #[inline]
    fn run_as<R>(&self, pid: Pid, f: impl FnOnce() -> R) -> R {
        let _running = super::context::run_as(&self.0, pid);
        f()
    }
}
