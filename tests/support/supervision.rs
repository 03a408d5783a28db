//! Children for the supervisor tests, and a look at a supervisor's running
//! children.

use super::run;
use rusm_otp::supervisor::{ChildSpec, Shutdown, SupervisorRef};
use rusm_otp::{Pid, ProcessHandle, Received, Runtime, Strategy};

/// A child factory: a child that idles forever (until ended from outside).
pub(crate) fn idle(rt: &Runtime) -> ProcessHandle {
    rt.spawn(|mut ctx| async move {
        loop {
            ctx.recv().await;
        }
    })
}

/// Starts a `strategy` supervisor with an unlimited restart budget and `n`
/// [`idle`] children: the supervisor and its children's pids.
pub(crate) fn supervise_idle(
    rt: &Runtime,
    strategy: Strategy,
    n: usize,
) -> (ProcessHandle, Vec<Pid>) {
    let b = rt.supervisor(strategy).max_restarts(0);
    let sup = (0..n).fold(b, |b, _| b.child(idle)).start();
    let kids = running(rt, sup.pid());
    (sup, kids)
}

/// A child factory: a child that traps exits, reports each exit signal to
/// `tell` as `(its pid, the reason)`, and otherwise ignores it, so it never
/// ends by itself.
pub(crate) fn stubborn(tell: Pid) -> impl Fn(&Runtime) -> ProcessHandle + Send + Sync + 'static {
    move |rt: &Runtime| {
        rt.spawn(move |mut ctx| async move {
            let me = ctx.pid();
            ctx.runtime().set_trap_exit(me, true);
            loop {
                if let Received::Exit { reason, .. } = ctx.recv().await {
                    ctx.runtime().send(tell, (me, reason));
                }
            }
        })
    }
}

/// Starts a one-for-one supervisor of one [`stubborn`] child named `id`,
/// reporting to `tell`, whose stop is `shutdown`.
pub(crate) fn supervise_stubborn(
    rt: &Runtime,
    id: &str,
    tell: Pid,
    shutdown: Shutdown,
) -> ProcessHandle {
    rt.supervisor(Strategy::OneForOne)
        .child_spec(ChildSpec::new(id, stubborn(tell)).shutdown(shutdown))
        .start()
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
