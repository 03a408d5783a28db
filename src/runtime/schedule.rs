//! How the runtime serves its tasks: [`Schedule`] for the handle every
//! process header holds.

use super::{Notified, Runtime, TaskRef};
use crate::process::task::Schedule;
use crate::process::{ExitReason, Pid};
use crate::scheduler::worker::{self, Placement};

impl Schedule for Runtime {
    type Held = super::Held;

    #[inline]
    fn schedule(&self, task: Notified) {
        self.shared.scheduler.schedule(task);
    }

    #[inline]
    fn spawn(&self, task: Notified) {
        self.shared.scheduler.spawn(task);
    }

    #[inline]
    fn yield_now(&self, task: Notified) {
        let sched = &self.shared.scheduler;
        if let Err(task) = worker::schedule_local(sched, task, Placement::Yield) {
            sched.schedule(task);
        }
    }

    fn release(&self, task: &TaskRef, reason: ExitReason) -> ExitReason {
        // A queued message whose destructor panics crashes this process.
        let reason = crate::mailbox::close_at_teardown(task.header(), reason);
        self.shared.process_exited(task, reason);
        reason
    }

    fn note_panic(&self) {
        self.shared.note_panic();
    }

    fn note_unowned_panic(&self) {
        self.shared.note_unowned_panic();
    }

    #[inline]
    fn run_as<R>(&self, pid: Pid, f: impl FnOnce() -> R) -> R {
        let _running = super::context::run_as(&self.shared, pid);
        f()
    }
}
