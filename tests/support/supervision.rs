//! Children for the supervisor tests, and a look at a supervisor's running
//! children.

use super::run;
use rusm_otp::supervisor::SupervisorRef;
use rusm_otp::{Pid, ProcessHandle, Runtime};

/// A child factory: a child that idles forever (until ended from outside).
pub(crate) fn idle(rt: &Runtime) -> ProcessHandle {
    rt.spawn(|mut ctx| async move {
        loop {
            ctx.recv().await;
        }
    })
}

/// The pids of `sup`'s running children, in its start order.
pub(crate) fn running(rt: &Runtime, sup: Pid) -> Vec<Pid> {
    let r = SupervisorRef::new(rt, sup);
    run(rt, r.which_children())
        .expect("the supervisor answers")
        .into_iter()
        .filter_map(|c| c.pid)
        .collect()
}
