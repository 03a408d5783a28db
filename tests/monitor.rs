//! Monitors: `Down` with the exit reason, one `Down` per monitor, `NoProc`
//! for dead targets, `demonitor`, and cleanup of monitors whose watcher or
//! target is gone.

mod support;

use rusm_otp::{Context, ExitReason, MonitorRef, Pid, Received, Runtime};
use std::collections::HashSet;
use support::{
    Go, check, killed_pid, on_workers, recv, recv_downs, responds, run, runtime,
    silence_expected_panics, spawn_actor,
};

fn expect_down(r: Received, reference: MonitorRef, pid: Pid, reason: ExitReason) {
    match r {
        Received::Down {
            reference: r2,
            pid: p2,
            reason: x,
        } => {
            assert_eq!(r2, reference, "the Down's monitor reference");
            assert_eq!(p2, pid, "the Down's pid");
            assert_eq!(x, reason, "the Down's reason");
        }
        other => panic!("expected a Down for {pid} with {reason:?}, got {other:?}"),
    }
}

/// A way to end an actor.
type EndActor = fn(&Runtime, Pid);

/// Monitors a fresh actor from the tester, ends the actor with `end`, and
/// requires the next item received to be its `Down` with `reason`: the
/// monitor.
async fn monitor_the_end_of_an_actor(
    ctx: &mut Context,
    end: impl FnOnce(&Runtime, Pid),
    reason: ExitReason,
    what: &str,
) -> MonitorRef {
    let rt = ctx.runtime().clone();
    let t = spawn_actor(&rt);
    let r = rt.monitor(ctx.pid(), t.pid());
    end(&rt, t.pid());
    let d = recv(ctx, what).await;
    expect_down(d, r, t.pid(), reason);
    r
}

fn down_carries_exit_reason(workers: usize) {
    silence_expected_panics();
    let rt = runtime(workers);
    check(&rt, |mut ctx| async move {
        let rt = ctx.runtime().clone();
        let me = ctx.pid();

        let ends: [(EndActor, _, _); 4] = [
            (
                |rt, p| _ = rt.send(p, Go::Return),
                ExitReason::Normal,
                "Normal",
            ),
            (
                |rt, p| _ = rt.send(p, Go::Panic),
                ExitReason::Crashed,
                "Crashed",
            ),
            (|rt, p| _ = rt.kill(p), ExitReason::Killed, "Killed"),
            (
                |rt, p| _ = rt.exit(p, ExitReason::Shutdown),
                ExitReason::Shutdown,
                "Shutdown",
            ),
        ];
        for (end, reason, what) in ends {
            monitor_the_end_of_an_actor(&mut ctx, end, reason, what).await;
        }

        // A cascade over a link: the Down carries the original reason.
        let a = spawn_actor(&rt);
        let b = spawn_actor(&rt);
        rt.link(a.pid(), b.pid());
        let r = rt.monitor(me, b.pid());
        rt.send(a.pid(), Go::Panic);
        let d = recv(&mut ctx, "Crashed via link").await;
        expect_down(d, r, b.pid(), ExitReason::Crashed);
    });
}

fn down_is_delivered_to_a_watcher_that_does_not_trap_exits(workers: usize) {
    let rt = runtime(workers);
    check(&rt, |mut ctx| async move {
        let rt = ctx.runtime().clone();
        let me = ctx.pid();
        assert!(!rt.info(me).unwrap().trap_exit);
        let kill = |rt: &Runtime, t| _ = rt.kill(t);
        monitor_the_end_of_an_actor(&mut ctx, kill, ExitReason::Killed, "the Down").await;
    });
}

fn two_monitors_two_downs(workers: usize) {
    let rt = runtime(workers);
    check(&rt, |mut ctx| async move {
        let rt = ctx.runtime().clone();
        let me = ctx.pid();
        let t = spawn_actor(&rt);
        let r1 = rt.monitor(me, t.pid());
        let r2 = rt.monitor(me, t.pid());
        assert_ne!(r1, r2, "each call places a new monitor");
        assert_ne!(r1.raw(), r2.raw());
        assert_eq!(rt.info(t.pid()).unwrap().monitors, 2);
        rt.exit(t.pid(), ExitReason::Shutdown);
        assert_eq!(t.join().await, ExitReason::Shutdown);
        let downs = recv_downs(&mut ctx, 2, ExitReason::Shutdown).await;
        let refs: HashSet<_> = downs.into_keys().collect();
        assert_eq!(refs, HashSet::from([r1, r2]));
        assert!(ctx.try_recv().is_none(), "exactly two Downs");
        assert_eq!(rt.monitor_count(), 0);
    });
}

fn monitor_of_dead_pid_gives_noproc_at_once(workers: usize) {
    let rt = runtime(workers);
    let dead_pid = killed_pid(&rt);
    check(&rt, move |mut ctx| async move {
        let rt = ctx.runtime().clone();
        let me = ctx.pid();
        let r = rt.monitor(me, dead_pid);
        let d = ctx.try_recv().expect("the Down is already in the mailbox");
        expect_down(d, r, dead_pid, ExitReason::NoProc);

        let unknown = Pid::from_raw(u64::MAX - 3);
        let r = rt.monitor(me, unknown);
        let d = ctx.try_recv().expect("the Down is already in the mailbox");
        expect_down(d, r, unknown, ExitReason::NoProc);

        assert!(!rt.demonitor(r), "a monitor that fired cannot be removed");
        assert_eq!(rt.monitor_count(), 0, "a fired monitor is not kept");
        assert_eq!(rt.info(me).unwrap().monitors, 0);
    });
}

fn demonitor_prevents_down(workers: usize) {
    let rt = runtime(workers);
    check(&rt, |mut ctx| async move {
        let rt = ctx.runtime().clone();
        let me = ctx.pid();

        // Removed before the target ends: no Down, ever.
        let t = spawn_actor(&rt);
        let r = rt.monitor(me, t.pid());
        assert_eq!(rt.info(t.pid()).unwrap().monitors, 1);
        assert!(rt.demonitor(r), "a live monitor is removed");
        assert_eq!(rt.info(t.pid()).unwrap().monitors, 0);
        assert!(!rt.demonitor(r), "removing it twice");
        rt.kill(t.pid());
        assert_eq!(t.join().await, ExitReason::Killed);
        // Teardown is complete: a Down would already be queued.
        assert!(ctx.try_recv().is_none(), "no Down after demonitor");

        // Removed after it fired: false, and the Down is there.
        let kill = |rt: &Runtime, t| _ = rt.kill(t);
        let r = monitor_the_end_of_an_actor(&mut ctx, kill, ExitReason::Killed, "the Down").await;
        assert!(!rt.demonitor(r), "false after the monitor fired");

        // One of two monitors removed: only the other fires.
        let t = spawn_actor(&rt);
        let keep = rt.monitor(me, t.pid());
        let drop_it = rt.monitor(me, t.pid());
        assert!(rt.demonitor(drop_it));
        rt.kill(t.pid());
        let t_pid = t.pid();
        assert_eq!(t.join().await, ExitReason::Killed);
        let d = recv(&mut ctx, "the kept monitor's Down").await;
        expect_down(d, keep, t_pid, ExitReason::Killed);
        assert!(ctx.try_recv().is_none());
        assert_eq!(rt.monitor_count(), 0);
    });
}

fn demonitor_racing_the_targets_death_never_leaves_a_late_down(workers: usize) {
    let rt = runtime(workers);
    check(&rt, |mut ctx| async move {
        let rt = ctx.runtime().clone();
        let me = ctx.pid();
        for _ in 0..300 {
            let t = spawn_actor(&rt);
            let r = rt.monitor(me, t.pid());
            rt.kill(t.pid());
            let removed = rt.demonitor(r);
            assert_eq!(t.join().await, ExitReason::Killed);
            match ctx.try_recv() {
                None => assert!(removed, "no Down, so demonitor must have removed it"),
                Some(d) => {
                    assert!(!removed, "demonitor returned true, yet a Down came: {d:?}");
                    assert!(matches!(d, Received::Down { reference, .. } if reference == r));
                }
            }
            assert!(ctx.try_recv().is_none());
        }
    });
}

fn info_counts_monitors(workers: usize) {
    let rt = runtime(workers);
    check(&rt, |ctx| async move {
        let rt = ctx.runtime().clone();
        let me = ctx.pid();
        let target = spawn_actor(&rt);
        let other_watcher = spawn_actor(&rt);
        assert_eq!(rt.info(target.pid()).unwrap().monitors, 0);
        let r1 = rt.monitor(me, target.pid());
        let _r2 = rt.monitor(me, target.pid());
        let _r3 = rt.monitor(other_watcher.pid(), target.pid());
        assert_eq!(
            rt.info(target.pid()).unwrap().monitors,
            3,
            "monitors placed on the target"
        );
        assert_eq!(
            rt.info(me).unwrap().monitors,
            0,
            "monitors a process places on others are not counted on it"
        );
        assert_eq!(rt.monitor_count(), 3);
        assert!(rt.demonitor(r1));
        assert_eq!(rt.info(target.pid()).unwrap().monitors, 2);
        assert_eq!(rt.monitor_count(), 2);
        rt.kill(other_watcher.pid());
        assert_eq!(other_watcher.join().await, ExitReason::Killed);
        assert_eq!(
            rt.info(target.pid()).unwrap().monitors,
            1,
            "a dead watcher's monitor is gone from its target"
        );
        rt.kill(target.pid());
    });
}

fn monitors_of_dead_watcher_are_cleaned_up(workers: usize) {
    let rt = runtime(workers);
    let targets: Vec<_> = (0..10).map(|_| spawn_actor(&rt)).collect();
    let target_pids: Vec<Pid> = targets.iter().map(|t| t.pid()).collect();
    let pids = target_pids.clone();
    let watcher = rt.spawn(move |mut ctx| async move {
        let rt = ctx.runtime().clone();
        for &t in &pids {
            rt.monitor(ctx.pid(), t);
            rt.monitor(ctx.pid(), t);
        }
        // Wait to be told to go.
        let _ = recv(&mut ctx, "go").await;
    });
    run(
        &rt,
        support::wait_until_timed("the watcher to place its monitors", || {
            rt.monitor_count() == 20
        }),
    );
    for &t in &target_pids {
        assert_eq!(rt.info(t).unwrap().monitors, 2);
    }
    rt.send(watcher.pid(), ());
    assert_eq!(run(&rt, watcher.join()), ExitReason::Normal);
    assert_eq!(
        rt.monitor_count(),
        0,
        "the monitors of a dead watcher are removed"
    );
    for &t in &target_pids {
        assert_eq!(rt.info(t).unwrap().monitors, 0, "and gone from {t}");
    }
    // The targets are unharmed, and their ends send nothing anywhere.
    check(&rt, move |mut ctx| async move {
        for &t in &target_pids {
            assert!(responds(&mut ctx, t).await);
        }
    });
    for t in targets {
        rt.kill(t.pid());
        assert_eq!(run(&rt, t.join()), ExitReason::Killed);
    }
    assert_eq!(rt.monitor_count(), 0);

    // Fired monitors are removed too.
    check(&rt, |mut ctx| async move {
        let rt = ctx.runtime().clone();
        let me = ctx.pid();
        let ts: Vec<_> = (0..10).map(|_| spawn_actor(&rt)).collect();
        for t in &ts {
            rt.monitor(me, t.pid());
        }
        assert_eq!(rt.monitor_count(), 10);
        for t in &ts {
            rt.kill(t.pid());
        }
        for _ in 0..10 {
            assert!(matches!(
                recv(&mut ctx, "a Down").await,
                Received::Down { .. }
            ));
        }
        assert_eq!(rt.monitor_count(), 0, "fired monitors are freed");
    });
}

fn a_monitor_for_a_dead_or_unknown_watcher_is_never_stored_nor_fired(workers: usize) {
    let rt = runtime(workers);
    let live = spawn_actor(&rt);
    let dead_pid = killed_pid(&rt);
    let mut refs = HashSet::new();
    for watcher in [Pid::from_raw(0), Pid::from_raw(u64::MAX - 7), dead_pid] {
        for target in [live.pid(), dead_pid] {
            let r = rt.monitor(watcher, target);
            assert!(refs.insert(r), "every call returns a fresh reference");
            assert_eq!(rt.monitor_count(), 0, "nothing kept for watcher {watcher}");
            assert_eq!(rt.info(live.pid()).unwrap().monitors, 0);
            assert!(!rt.demonitor(r), "nothing to remove");
        }
    }
    // The target's end fires nothing: a live watcher placed after them is
    // the only one to hear of it.
    check(&rt, move |mut ctx| async move {
        let rt = ctx.runtime().clone();
        let me = ctx.pid();
        let r = rt.monitor(me, live.pid());
        assert_eq!(rt.info(live.pid()).unwrap().monitors, 1);
        let live_pid = live.pid();
        rt.kill(live_pid);
        assert_eq!(live.join().await, ExitReason::Killed);
        expect_down(ctx.try_recv().unwrap(), r, live_pid, ExitReason::Killed);
        assert!(ctx.try_recv().is_none());
        assert_eq!(rt.monitor_count(), 0);
    });
}

fn monitors_placed_while_the_watcher_dies_are_never_left_behind(workers: usize) {
    let rt = runtime(workers);
    let target = spawn_actor(&rt);
    let t = target.pid();
    for _ in 0..100 {
        let watcher = spawn_actor(&rt);
        let w = watcher.pid();
        let placer = {
            let rt = rt.clone();
            std::thread::spawn(move || {
                // Keep placing until the watcher is gone, and a few more:
                // each lands on a live, dying or dead watcher.
                let mut after = 0;
                while after < 20 {
                    rt.monitor(w, t);
                    if !rt.is_alive(w) {
                        after += 1;
                    }
                }
            })
        };
        rt.kill(w);
        assert_eq!(run(&rt, watcher.join()), ExitReason::Killed);
        placer.join().unwrap();
        assert_eq!(
            rt.monitor_count(),
            0,
            "a monitor of the dead watcher is left"
        );
        assert_eq!(rt.info(t).unwrap().monitors, 0);
    }
    rt.kill(t);
}

on_workers!(
    down_carries_exit_reason,
    down_is_delivered_to_a_watcher_that_does_not_trap_exits,
    two_monitors_two_downs,
    monitor_of_dead_pid_gives_noproc_at_once,
    demonitor_prevents_down,
    demonitor_racing_the_targets_death_never_leaves_a_late_down,
    info_counts_monitors,
    monitors_of_dead_watcher_are_cleaned_up,
    a_monitor_for_a_dead_or_unknown_watcher_is_never_stored_nor_fired,
    monitors_placed_while_the_watcher_dies_are_never_left_behind,
);
