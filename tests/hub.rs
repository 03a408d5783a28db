//! Hubs: one process holding hundreds of thousands of monitors or links
//! (a registry, a pub/sub broker). Every `Down` and exit signal arrives
//! exactly once, `demonitor` and `unlink` take effect, and `info` counts
//! stay right. Their cost per operation is shown by the `hub_*` benchmarks,
//! not asserted here.

mod support;

use rusm_otp::{ExitReason, MonitorRef, Received};
use std::collections::HashSet;
use support::{check, check_trapping, on_workers, recv, recv_downs, runtime, spawn_actor};

/// Monitors or links on the hub.
const N: usize = 200_000;

fn a_hub_with_many_monitors_fires_each_kept_one_exactly_once(workers: usize) {
    let rt = runtime(workers);
    check(&rt, |mut ctx| async move {
        let rt = ctx.runtime().clone();
        let me = ctx.pid();
        let hub = spawn_actor(&rt);
        let refs: Vec<MonitorRef> = (0..N).map(|_| rt.monitor(me, hub.pid())).collect();
        assert_eq!(rt.info(hub.pid()).unwrap().monitors, N);
        assert_eq!(rt.monitor_count(), N);
        assert_eq!(
            refs.iter().copied().collect::<HashSet<_>>().len(),
            N,
            "each call places a new monitor"
        );
        // Take every other one off again.
        for r in refs.iter().step_by(2) {
            assert!(rt.demonitor(*r));
        }
        for r in refs.iter().step_by(2).take(100) {
            assert!(!rt.demonitor(*r), "removing it twice");
        }
        let kept: HashSet<MonitorRef> = refs.iter().skip(1).step_by(2).copied().collect();
        assert_eq!(rt.info(hub.pid()).unwrap().monitors, N / 2);
        assert_eq!(rt.monitor_count(), N / 2);

        let hub_pid = hub.pid();
        rt.exit(hub_pid, ExitReason::Shutdown);
        assert_eq!(hub.join().await, ExitReason::Shutdown);
        // Teardown is complete: every Down is already in the mailbox.
        let downs = recv_downs(&mut ctx, N / 2, ExitReason::Shutdown).await;
        assert!(downs.values().all(|&pid| pid == hub_pid));
        assert!(
            downs.keys().all(|r| kept.contains(r)),
            "a Down for a removed monitor"
        );
        assert!(ctx.try_recv().is_none(), "nothing past the kept monitors");
        assert_eq!(rt.monitor_count(), 0);
        assert!(!rt.demonitor(refs[1]), "a fired monitor cannot be removed");
    });
}

fn a_watcher_of_many_targets_gets_each_down_once_and_leaves_nothing(workers: usize) {
    let rt = runtime(workers);
    check(&rt, |mut ctx| async move {
        let rt = ctx.runtime().clone();
        let me = ctx.pid();
        // The hub is the watcher here: one monitor on each of N/10 targets,
        // ten on each.
        let targets: Vec<_> = (0..N / 10).map(|_| spawn_actor(&rt)).collect();
        for t in &targets {
            for _ in 0..10 {
                rt.monitor(me, t.pid());
            }
        }
        assert_eq!(rt.monitor_count(), N);
        for t in &targets {
            rt.kill(t.pid());
        }
        recv_downs(&mut ctx, N, ExitReason::Killed).await;
        assert_eq!(rt.monitor_count(), 0);
    });
}

fn a_hub_with_many_links_unlinks_and_signals_each_exactly_once(workers: usize) {
    let rt = runtime(workers);
    check_trapping(&rt, |mut ctx, rt, me| async move {
        let spokes: Vec<_> = (0..N).map(|_| spawn_actor(&rt)).collect();
        for s in &spokes {
            rt.link(me, s.pid());
        }
        assert_eq!(rt.info(me).unwrap().links, N);
        for s in spokes.iter().take(10) {
            rt.link(s.pid(), me);
            assert_eq!(rt.info(s.pid()).unwrap().links, 1, "one link per pair");
        }
        assert_eq!(rt.info(me).unwrap().links, N);

        // The first half is unlinked: those spokes no longer hear of us.
        let mut unlinked = spokes;
        let mut linked = unlinked.split_off(N / 2);
        for s in &unlinked {
            rt.unlink(s.pid(), me);
        }
        assert_eq!(rt.info(me).unwrap().links, N / 2);
        assert!(
            unlinked
                .iter()
                .all(|s| rt.info(s.pid()).unwrap().links == 0)
        );
        assert!(linked.iter().all(|s| rt.info(s.pid()).unwrap().links == 1));

        // Half of the linked and half of the unlinked spokes die: the
        // trapping hub gets an Exit from each linked one, and none from the
        // unlinked ones.
        let staying = linked.split_off(N / 4);
        let dying = linked;
        let untouched = unlinked.split_off(N / 4);
        let unlinked_dying = unlinked;
        for s in dying.iter().chain(&unlinked_dying) {
            rt.kill(s.pid());
        }
        let expected: HashSet<_> = dying.iter().map(|s| s.pid()).collect();
        let mut seen = HashSet::with_capacity(N / 4);
        for _ in 0..N / 4 {
            match recv(&mut ctx, "an Exit").await {
                Received::Exit { from, reason } => {
                    assert_eq!(reason, ExitReason::Killed);
                    assert!(expected.contains(&from), "an Exit over a removed link");
                    assert!(seen.insert(from), "two Exits from one process");
                }
                other => panic!("expected an Exit, got {other:?}"),
            }
        }
        for s in unlinked_dying {
            assert_eq!(s.join().await, ExitReason::Killed);
        }
        assert!(ctx.try_recv().is_none(), "no Exit from an unlinked spoke");
        assert_eq!(rt.info(me).unwrap().links, N / 4);

        // A hub's own death: the process that now holds the staying spokes'
        // links exits, and they all go with it.
        let hub2 = spawn_actor(&rt);
        for s in &staying {
            rt.unlink(me, s.pid());
            rt.link(hub2.pid(), s.pid());
        }
        assert_eq!(rt.info(me).unwrap().links, 0);
        assert_eq!(rt.info(hub2.pid()).unwrap().links, N / 4);
        rt.exit(hub2.pid(), ExitReason::Shutdown);
        for s in staying {
            assert_eq!(s.join().await, ExitReason::Shutdown);
        }
        assert!(
            untouched
                .iter()
                .all(|s| rt.info(s.pid()).is_some_and(|i| i.links == 0)),
            "the unlinked spokes are untouched"
        );
        assert!(ctx.try_recv().is_none());
        for s in &untouched {
            rt.kill(s.pid());
        }
    });
}

on_workers!(
    a_hub_with_many_monitors_fires_each_kept_one_exactly_once,
    a_watcher_of_many_targets_gets_each_down_once_and_leaves_nothing,
    a_hub_with_many_links_unlinks_and_signals_each_exactly_once,
);
