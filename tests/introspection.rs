//! Observability: `info` (links, monitors, names, label, mailbox depth,
//! trap_exit), `set_label`, `metrics`, and bounded mailboxes
//! (`Builder::mailbox_capacity`, `dropped_messages`).

mod support;

use rusm_otp::{ExitReason, Pid, Received, Runtime};
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use support::{Go, check, on_workers, recv, run, runtime, spawn_actor, wait_until_timed};

fn info_reports_links_monitors_names_label_and_trap_exit(workers: usize) {
    let rt = runtime(workers);
    let p = spawn_actor(&rt);
    let pid = p.pid();
    let fresh = rt.info(pid).expect("alive");
    assert_eq!(fresh.pid, pid);
    assert_eq!(fresh.links, 0);
    assert_eq!(fresh.monitors, 0);
    assert!(fresh.names.is_empty());
    assert_eq!(fresh.label, None);
    assert!(!fresh.trap_exit);

    let a = spawn_actor(&rt);
    let b = spawn_actor(&rt);
    rt.link(pid, a.pid());
    rt.link(b.pid(), pid);
    let w = spawn_actor(&rt);
    for _ in 0..3 {
        rt.monitor(w.pid(), pid);
    }
    // Monitors `pid` places on others are not "monitors" of `pid`.
    rt.monitor(pid, a.pid());
    assert!(rt.register("first", pid));
    assert!(rt.register("second", pid));
    assert!(rt.set_label(pid, "worker"));
    rt.set_trap_exit(pid, true);

    let info = rt.info(pid).expect("alive");
    assert_eq!(info.pid, pid);
    assert_eq!(info.links, 2);
    assert_eq!(info.monitors, 3);
    let names: HashSet<String> = info.names.iter().cloned().collect();
    assert_eq!(names, HashSet::from(["first".into(), "second".into()]));
    assert_eq!(info.label.as_deref(), Some("worker"));
    assert!(info.trap_exit);
    assert_eq!(rt.info(a.pid()).unwrap().monitors, 1);

    // Changes show up.
    rt.unlink(pid, a.pid());
    assert!(rt.unregister("first"));
    assert!(rt.set_label(pid, String::from("renamed")));
    rt.set_trap_exit(pid, false);
    let info = rt.info(pid).expect("alive");
    assert_eq!(info.links, 1);
    assert_eq!(info.names, ["second"]);
    assert_eq!(info.label.as_deref(), Some("renamed"));
    assert!(!info.trap_exit);

    for h in [p, a, b, w] {
        rt.kill(h.pid());
        run(&rt, h.join());
    }
}

fn info_of_a_dead_pid_is_none(workers: usize) {
    let rt = runtime(workers);
    let p = spawn_actor(&rt);
    let pid = p.pid();
    assert!(rt.set_label(pid, "doomed"));
    rt.kill(pid);
    assert_eq!(run(&rt, p.join()), ExitReason::Killed);
    assert_eq!(rt.info(pid), None);
    assert!(!rt.set_label(pid, "too late"), "set_label on a dead pid");
    assert_eq!(rt.info(Pid::from_raw(u64::MAX - 9)), None, "unknown pid");
}

fn info_reports_own_state_from_inside(workers: usize) {
    let rt = runtime(workers);
    check(&rt, |ctx| async move {
        let rt = ctx.runtime().clone();
        let me = ctx.pid();
        assert!(rt.set_label(me, "tester"));
        let info = rt.info(me).expect("a running process is alive");
        assert_eq!(info.pid, me);
        assert_eq!(info.label.as_deref(), Some("tester"));
        assert_eq!(info.mailbox_depth, 0);
        assert!(rt.list().contains(&me));
        assert!(rt.is_alive(me));
    });
}

fn mailbox_depth_counts_messages_deferred_by_selective_receive(workers: usize) {
    let rt = runtime(workers);
    // Takes only `(Pid, u64)` requests, by selective receive; every
    // string sent to it is deferred. It answers with its own mailbox depth.
    let picky = rt.spawn(|mut ctx| async move {
        let rt = ctx.runtime().clone();
        let me = ctx.pid();
        loop {
            let got = ctx
                .recv_match(|r| matches!(r, Received::Message(m) if m.is::<(Pid, u64)>()))
                .await;
            let (from, n) = got.message().unwrap().downcast::<(Pid, u64)>().unwrap();
            let depth = rt.info(me).unwrap().mailbox_depth;
            rt.send(from, (n, depth));
        }
    });
    let picky_pid = picky.pid();
    check(&rt, move |mut ctx| async move {
        let rt = ctx.runtime().clone();
        let me = ctx.pid();
        for s in ["a", "b", "c", "d"] {
            assert!(rt.send(picky_pid, s));
        }
        assert!(rt.send(picky_pid, (me, 1u64)));
        match recv(&mut ctx, "the depth").await {
            Received::Message(m) => assert_eq!(
                m.downcast::<(u64, usize)>().ok(),
                Some((1, 4)),
                "the four skipped strings are still counted"
            ),
            other => panic!("unexpected {other:?}"),
        }
        // Parked again in its selective receive, past the deferred strings.
        wait_until_timed("the picky process to be idle with 4 deferred", || {
            rt.info(picky_pid).unwrap().mailbox_depth == 4
        })
        .await;
        assert!(rt.send(picky_pid, "e"));
        assert_eq!(rt.info(picky_pid).unwrap().mailbox_depth, 5);
        assert!(rt.send(picky_pid, (me, 2u64)));
        match recv(&mut ctx, "the depth").await {
            Received::Message(m) => {
                assert_eq!(m.downcast::<(u64, usize)>().ok(), Some((2, 5)));
            }
            other => panic!("unexpected {other:?}"),
        }
    });
    // A process's own view while it defers: five skipped, then a match.
    check(&rt, |mut ctx| async move {
        let rt = ctx.runtime().clone();
        let me = ctx.pid();
        for i in 0..5u8 {
            rt.send(me, i);
        }
        rt.send(me, "match");
        let got = ctx
            .recv_match(|r| matches!(r, Received::Message(m) if m.is::<&str>()))
            .await;
        assert!(got.message().unwrap().is::<&str>());
        assert_eq!(rt.info(me).unwrap().mailbox_depth, 5, "five deferred");
        let _ = ctx.try_recv();
        assert_eq!(rt.info(me).unwrap().mailbox_depth, 4);
    });
    rt.kill(picky_pid);
}

#[test]
fn metrics_has_one_entry_per_worker_and_polls_increase() {
    for workers in [1, 3] {
        let rt = runtime(workers);
        let m = rt.metrics();
        assert_eq!(m.workers.len(), workers, "one entry per worker");
        assert_eq!(m.workers.len(), rt.workers());
        let before: u64 = m.workers.iter().map(|w| w.polls).sum();
        let spawned_before = m.spawned;

        // 200 round trips: the ponger is polled at least once per request.
        let pong = rt.spawn(|mut ctx| async move {
            loop {
                let Received::Message(m) = ctx.recv().await else {
                    continue;
                };
                match m.downcast::<Pid>() {
                    Ok(from) => {
                        ctx.runtime().send(from, ());
                    }
                    Err(_) => return,
                }
            }
        });
        let pong_pid = pong.pid();
        check(&rt, move |mut ctx| async move {
            let me = ctx.pid();
            for _ in 0..200 {
                assert!(ctx.runtime().send(pong_pid, me));
                let _ = recv(&mut ctx, "a pong").await;
            }
            ctx.runtime().send(pong_pid, "stop");
        });
        assert_eq!(run(&rt, pong.join()), ExitReason::Normal);

        let m = rt.metrics();
        assert_eq!(m.workers.len(), workers);
        let after: u64 = m.workers.iter().map(|w| w.polls).sum();
        // With one worker, every request and every reply finds its receiver
        // parked (the other side cannot run meanwhile): 400 polls at least.
        // With more, a reply may land before the receiver parks, so only
        // the spawned processes' first polls are certain.
        let least = if workers == 1 { 400 } else { 2 };
        assert!(
            after >= before + least,
            "polls went from {before} to {after} over 400 deliveries"
        );
        assert_eq!(m.spawned, spawned_before + 2);
        assert_eq!(m.finished, m.spawned);
        assert_eq!(m.processes, 0);
    }
}

fn metrics_count_panics(workers: usize) {
    support::silence_expected_panics();
    let rt = runtime(workers);
    assert_eq!(rt.metrics().panics, 0);
    let p = spawn_actor(&rt);
    rt.send(p.pid(), Go::Panic);
    assert_eq!(run(&rt, p.join()), ExitReason::Crashed);
    assert_eq!(rt.metrics().panics, 1);
}

/// A runtime whose mailboxes hold at most two items.
fn bounded_runtime() -> Runtime {
    Runtime::builder().workers(2).mailbox_capacity(2).build()
}

#[test]
fn bounded_mailbox_sheds_the_third_message() {
    let rt = bounded_runtime();
    let never_receives = rt.spawn(|_ctx| std::future::pending::<()>());
    let pid = never_receives.pid();
    assert!(rt.send(pid, 1u8));
    assert!(rt.send(pid, 2u8));
    assert_eq!(rt.dropped_messages(), 0);
    assert!(!rt.send(pid, 3u8), "the third message is shed");
    assert_eq!(rt.dropped_messages(), 1);
    assert_eq!(rt.info(pid).unwrap().mailbox_depth, 2);
    assert!(!rt.send(pid, 4u8));
    assert_eq!(rt.dropped_messages(), 2);
    assert!(rt.is_alive(pid), "shedding does not harm the receiver");
    rt.kill(pid);
    assert_eq!(run(&rt, never_receives.join()), ExitReason::Killed);
}

#[test]
fn bounded_mailbox_accepts_again_once_drained() {
    let rt = bounded_runtime();
    check(&rt, |mut ctx| async move {
        let rt = ctx.runtime().clone();
        let me = ctx.pid();
        assert!(rt.send(me, 1u8));
        assert!(rt.send(me, 2u8));
        assert!(!rt.send(me, 3u8));
        assert_eq!(rt.dropped_messages(), 1);
        assert!(ctx.try_recv().is_some());
        assert!(rt.send(me, 4u8), "room again");
        let got: Vec<u8> = [ctx.try_recv(), ctx.try_recv()]
            .into_iter()
            .map(|r| r.unwrap().message().unwrap().downcast::<u8>().unwrap())
            .collect();
        assert_eq!(got, [2, 4], "the shed message never arrives");
        assert!(ctx.try_recv().is_none());
    });
}

#[test]
fn down_and_exit_signals_are_delivered_when_mailbox_full() {
    let rt = bounded_runtime();
    let go = Arc::new(AtomicBool::new(false));
    let go2 = go.clone();
    let target = spawn_actor(&rt);
    let target_pid = target.pid();
    // Waits (without receiving) until told, then drains its mailbox.
    let full = rt.spawn(move |mut ctx| async move {
        wait_until_timed("the go flag", || go2.load(Ordering::SeqCst)).await;
        let mut msgs = Vec::new();
        let mut down = None;
        let mut exit = None;
        for _ in 0..4 {
            match recv(&mut ctx, "the queued items").await {
                Received::Message(m) => msgs.push(m.downcast::<u8>().unwrap()),
                Received::Down { pid, reason, .. } => down = Some((pid, reason)),
                Received::Exit { from, reason } => exit = Some((from, reason)),
            }
        }
        assert_eq!(msgs, [1, 2], "the two messages that fit");
        assert_eq!(down, Some((target_pid, ExitReason::Killed)), "the Down");
        assert_eq!(exit, Some((target_pid, ExitReason::Killed)), "the Exit");
        assert!(ctx.try_recv().is_none());
    });
    let full_pid = full.pid();
    rt.set_trap_exit(full_pid, true);
    rt.monitor(full_pid, target_pid);
    rt.link(full_pid, target_pid);
    assert!(rt.send(full_pid, 1u8));
    assert!(rt.send(full_pid, 2u8));
    assert!(!rt.send(full_pid, 3u8), "the mailbox is full");
    assert_eq!(rt.dropped_messages(), 1);

    rt.kill(target_pid);
    assert_eq!(run(&rt, target.join()), ExitReason::Killed);
    assert_eq!(
        rt.info(full_pid).unwrap().mailbox_depth,
        4,
        "the Down and the Exit got in although the mailbox was full"
    );
    assert_eq!(rt.dropped_messages(), 1, "signals are never shed");
    go.store(true, Ordering::SeqCst);
    assert_eq!(run(&rt, full.join()), ExitReason::Normal);
}

on_workers!(
    info_reports_links_monitors_names_label_and_trap_exit,
    info_of_a_dead_pid_is_none,
    info_reports_own_state_from_inside,
    mailbox_depth_counts_messages_deferred_by_selective_receive,
    metrics_count_panics,
);
