//! The monitor a supervisor places on each child as it spawns it: counted
//! like any monitor, exactly one `Down` with the child's reason, removed by
//! `demonitor` (a factory's decoy), and removed when the supervisor ends
//! even while the child is still running.

mod support;

use rusm_otp::supervisor::ChildSpec;
use rusm_otp::{ExitReason, Pid, Received, Runtime, Strategy};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use support::supervision::{idle, running, supervise_idle};
use support::{on_workers, run, runtime, wait_until};

fn each_child_carries_one_monitor_and_each_death_one_down(workers: usize) {
    let rt = runtime(workers);
    let (sup, kids) = supervise_idle(&rt, Strategy::OneForOne, 3);
    assert_eq!(kids.len(), 3);
    for &k in &kids {
        assert_eq!(rt.info(k).unwrap().monitors, 1);
    }
    assert_eq!(rt.monitor_count(), 3);
    // Each kill is one restart: one `Down`, judged by its reason.
    for &k in &kids {
        rt.exit(k, ExitReason::Crashed);
    }
    wait_until("three restarts", || {
        let now = running(&rt, sup.pid());
        now.len() == 3 && now.iter().all(|p| !kids.contains(p))
    });
    assert_eq!(rt.monitor_count(), 3);
    rt.kill(sup.pid());
    wait_until("the tree to end", || rt.process_count() == 0);
    assert_eq!(rt.monitor_count(), 0);
}

fn a_decoy_spawned_first_keeps_no_monitor(workers: usize) {
    let rt = runtime(workers);
    let decoy = Arc::new(AtomicU64::new(0));
    let d = decoy.clone();
    let sup = rt
        .supervisor(Strategy::OneForOne)
        .child_spec(ChildSpec::new("real", move |rt: &Runtime| {
            // The supervisor's monitor lands on the first spawn, a decoy
            // that stays alive: it must be removed from it.
            d.store(idle(rt).pid().raw(), Ordering::SeqCst);
            idle(rt)
        }))
        .start();
    let decoy = Pid::from_raw(decoy.load(Ordering::SeqCst));
    let kids = running(&rt, sup.pid());
    assert_eq!(kids.len(), 1);
    assert_ne!(kids[0], decoy);
    assert_eq!(rt.info(decoy).unwrap().monitors, 0);
    assert_eq!(rt.info(kids[0]).unwrap().monitors, 1);
    assert_eq!(rt.monitor_count(), 1);
    rt.kill(decoy);
    rt.kill(sup.pid());
    wait_until("everything to end", || rt.process_count() == 0);
    assert_eq!(rt.monitor_count(), 0);
}

on_workers!(
    each_child_carries_one_monitor_and_each_death_one_down,
    a_decoy_spawned_first_keeps_no_monitor,
);

/// Needs a second worker: the child holds one inside a poll.
fn a_killed_supervisor_removes_its_monitors_before_its_children_end(workers: usize) {
    let rt = runtime(workers);
    let release = Arc::new(AtomicBool::new(false));
    // Frees the busy child however the test ends, so a failed assertion
    // fails the test instead of hanging the runtime's drop.
    struct Release(Arc<AtomicBool>);
    impl Drop for Release {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let _release = Release(release.clone());
    let busy = Arc::new(AtomicU64::new(0));
    let (r, b) = (release.clone(), busy.clone());
    let sup = rt
        .supervisor(Strategy::OneForOne)
        .child_spec(ChildSpec::new("busy", move |rt: &Runtime| {
            let (r, b) = (r.clone(), b.clone());
            rt.spawn(move |ctx| async move {
                // Held inside one poll: a kill cannot end it until released.
                b.store(ctx.pid().raw(), Ordering::SeqCst);
                while !r.load(Ordering::SeqCst) {
                    std::thread::yield_now();
                }
            })
        }))
        .start();
    wait_until("the child to run", || busy.load(Ordering::SeqCst) != 0);
    let child = Pid::from_raw(busy.load(Ordering::SeqCst));
    assert_eq!(rt.info(child).unwrap().monitors, 1);
    // A plain monitor on the supervisor sees it end.
    let w = rt.spawn(|mut ctx| async move {
        match ctx.recv().await {
            Received::Down { reason, .. } => assert_eq!(reason, ExitReason::Killed),
            other => panic!("unexpected {other:?}"),
        }
    });
    rt.monitor(w.pid(), sup.pid());
    rt.kill(sup.pid());
    assert_eq!(run(&rt, w.join()), ExitReason::Normal);
    // The child still runs, and no monitor is left on it.
    assert!(rt.is_alive(child));
    assert_eq!(rt.info(child).unwrap().monitors, 0);
    assert_eq!(rt.monitor_count(), 0);
    release.store(true, Ordering::SeqCst);
    wait_until("the child to end", || rt.process_count() == 0);
}

#[test]
fn a_killed_supervisor_removes_its_monitors_before_its_children_end_two_workers() {
    a_killed_supervisor_removes_its_monitors_before_its_children_end(2);
}

#[test]
fn a_killed_supervisor_removes_its_monitors_before_its_children_end_four_workers() {
    a_killed_supervisor_removes_its_monitors_before_its_children_end(4);
}
