//! Links and exit signals, with Erlang's semantics: propagation of abnormal
//! exits, trapping, `kill`, `unlink`, `spawn_link`, `send_exit`, `exit`, and
//! the ordering of signals after messages from the same sender.

mod support;

use rusm_otp::{Context, ExitReason, Pid, ProcessHandle, Received, Runtime};
use support::{
    EXPECTED_PANIC, Go, check, check_trapping, on_workers, race_rounds, recv, recv_msg, responds,
    run, runtime, silence_expected_panics, spawn_actor,
};

fn expect_exit(r: Received, from: Pid, reason: ExitReason) {
    match r {
        Received::Exit { from: f, reason: x } => {
            assert_eq!((f, x), (from, reason), "the Exit's sender and reason");
        }
        other => panic!("expected Exit {{ from: {from}, reason: {reason:?} }}, got {other:?}"),
    }
}

/// Tells `partner` to end as `go` says, requires it to end with `reason`,
/// then requires `survivor` still to answer.
async fn survives_end_of(
    ctx: &mut Context,
    survivor: Pid,
    partner: ProcessHandle,
    (go, reason): (Go, ExitReason),
    what: &str,
) {
    ctx.runtime().send(partner.pid(), go);
    assert_eq!(partner.join().await, reason);
    // Teardown is complete: had the signal ended the survivor, it would
    // already have been told to exit, and would never answer.
    assert!(responds(ctx, survivor).await, "{what}");
}

/// Links the trapping tester to a fresh actor, ends the actor with `end`,
/// and requires both the tester's Exit from it and the actor's own end to
/// carry `reason`.
async fn trap_end_of_linked_actor(
    ctx: &mut Context,
    end: impl FnOnce(&Runtime, Pid),
    reason: ExitReason,
) {
    let rt = ctx.runtime().clone();
    let actor = spawn_actor(&rt);
    let pid = actor.pid();
    rt.link(ctx.pid(), pid);
    end(&rt, pid);
    expect_exit(recv(ctx, "the Exit").await, pid, reason);
    assert_eq!(actor.join().await, reason);
}

fn normal_exit_does_not_cascade(workers: usize) {
    let rt = runtime(workers);
    check(&rt, |mut ctx| async move {
        let rt = ctx.runtime().clone();
        let survivor = spawn_actor(&rt);
        let leaver = spawn_actor(&rt);
        rt.link(survivor.pid(), leaver.pid());
        assert_eq!(rt.info(survivor.pid()).unwrap().links, 1);
        survives_end_of(
            &mut ctx,
            survivor.pid(),
            leaver,
            (Go::Return, ExitReason::Normal),
            "a linked process survives a Normal exit",
        )
        .await;
        assert_eq!(
            rt.info(survivor.pid()).unwrap().links,
            0,
            "the link is gone with the process that ended"
        );
        rt.kill(survivor.pid());
    });
}

fn abnormal_exit_cascades_with_original_reason(workers: usize) {
    silence_expected_panics();
    let rt = runtime(workers);
    check(&rt, |mut ctx| async move {
        let rt = ctx.runtime().clone();
        let me = ctx.pid();
        let a = spawn_actor(&rt);
        let b = spawn_actor(&rt);
        let c = spawn_actor(&rt);
        rt.link(a.pid(), b.pid());
        rt.link(b.pid(), c.pid());
        let refs = [a.pid(), b.pid(), c.pid()].map(|p| (rt.monitor(me, p), p));
        rt.send(a.pid(), Go::Panic);
        let mut downs = Vec::new();
        while downs.len() < 3 {
            match recv(&mut ctx, "the three Downs").await {
                Received::Down {
                    reference,
                    pid,
                    reason,
                } => {
                    assert!(refs.contains(&(reference, pid)), "a Down of ours");
                    downs.push((pid, reason));
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        for (pid, reason) in &downs {
            assert_eq!(
                *reason,
                ExitReason::Crashed,
                "{pid} ends with the original reason, not a reason of its own"
            );
        }
        assert_eq!(a.join().await, ExitReason::Crashed);
        assert_eq!(b.join().await, ExitReason::Crashed);
        assert_eq!(c.join().await, ExitReason::Crashed);
    });
}

fn shutdown_cascades_with_original_reason(workers: usize) {
    let rt = runtime(workers);
    let a = spawn_actor(&rt);
    let b = spawn_actor(&rt);
    let c = spawn_actor(&rt);
    rt.link(a.pid(), b.pid());
    rt.link(c.pid(), b.pid());
    assert!(rt.exit(a.pid(), ExitReason::Shutdown));
    assert_eq!(run(&rt, a.join()), ExitReason::Shutdown);
    assert_eq!(run(&rt, b.join()), ExitReason::Shutdown);
    assert_eq!(run(&rt, c.join()), ExitReason::Shutdown);
}

fn trapping_process_receives_exit_from_linked_crash(workers: usize) {
    silence_expected_panics();
    let rt = runtime(workers);
    check_trapping(&rt, |mut ctx, rt, me| async move {
        let crash = |rt: &Runtime, child| {
            rt.send(child, Go::Panic);
        };
        trap_end_of_linked_actor(&mut ctx, crash, ExitReason::Crashed).await;
        assert_eq!(rt.info(me).unwrap().links, 0);
        // And the trapping process goes on running: it ends Normal.
    });
}

fn kill_is_untrappable(workers: usize) {
    let rt = runtime(workers);
    let p = spawn_actor(&rt);
    rt.set_trap_exit(p.pid(), true);
    assert!(rt.info(p.pid()).unwrap().trap_exit);
    assert!(rt.kill(p.pid()));
    assert_eq!(run(&rt, p.join()), ExitReason::Killed);
}

fn killed_over_a_link_can_be_trapped(workers: usize) {
    let rt = runtime(workers);
    check_trapping(&rt, |mut ctx, rt, me| async move {
        let kill = |rt: &Runtime, victim| assert!(rt.kill(victim));
        trap_end_of_linked_actor(&mut ctx, kill, ExitReason::Killed).await;
        // Still alive and receiving: a message to ourselves comes back.
        rt.send(me, 7u32);
        assert_eq!(recv_msg::<u32>(&mut ctx, "our own message").await, 7);
    });
}

fn unlinking_stops_propagation(workers: usize) {
    silence_expected_panics();
    let rt = runtime(workers);
    check(&rt, |mut ctx| async move {
        let rt = ctx.runtime().clone();
        let me = ctx.pid();
        // A non-trapping process survives its former link partner's crash.
        let survivor = spawn_actor(&rt);
        let crasher = spawn_actor(&rt);
        rt.link(survivor.pid(), crasher.pid());
        rt.unlink(crasher.pid(), survivor.pid());
        assert_eq!(rt.info(survivor.pid()).unwrap().links, 0);
        assert_eq!(rt.info(crasher.pid()).unwrap().links, 0);
        survives_end_of(
            &mut ctx,
            survivor.pid(),
            crasher,
            (Go::Panic, ExitReason::Crashed),
            "an unlinked process is not taken down",
        )
        .await;
        rt.kill(survivor.pid());

        // A trapping process gets no Exit once unlinked.
        rt.set_trap_exit(me, true);
        let crasher = spawn_actor(&rt);
        rt.link(me, crasher.pid());
        rt.unlink(me, crasher.pid());
        assert_eq!(rt.info(me).unwrap().links, 0);
        rt.send(crasher.pid(), Go::Panic);
        assert_eq!(crasher.join().await, ExitReason::Crashed);
        // Teardown is complete, so any Exit would already be queued.
        assert!(ctx.try_recv().is_none(), "no Exit after unlink");
    });
}

fn link_is_symmetric_and_at_most_one_per_pair(workers: usize) {
    silence_expected_panics();
    let rt = runtime(workers);
    let a = spawn_actor(&rt);
    let b = spawn_actor(&rt);
    rt.link(a.pid(), b.pid());
    rt.link(a.pid(), b.pid());
    rt.link(b.pid(), a.pid());
    assert_eq!(rt.info(a.pid()).unwrap().links, 1);
    assert_eq!(rt.info(b.pid()).unwrap().links, 1);
    // One unlink removes the only link, from both sides.
    rt.unlink(b.pid(), a.pid());
    assert_eq!(rt.info(a.pid()).unwrap().links, 0);
    assert_eq!(rt.info(b.pid()).unwrap().links, 0);

    // Symmetric: a link made from either side carries a crash either way,
    // in both directions.
    check_trapping(&rt, |mut ctx, rt, me| async move {
        let x = spawn_actor(&rt);
        let y = spawn_actor(&rt);
        rt.link(me, x.pid()); // made from the watcher's side
        rt.link(y.pid(), me); // made from the other side
        assert_eq!(rt.info(me).unwrap().links, 2);
        rt.send(x.pid(), Go::Panic);
        expect_exit(
            recv(&mut ctx, "x's Exit").await,
            x.pid(),
            ExitReason::Crashed,
        );
        rt.send(y.pid(), Go::Panic);
        expect_exit(
            recv(&mut ctx, "y's Exit").await,
            y.pid(),
            ExitReason::Crashed,
        );
    });
    for first_ends in [true, false] {
        let first = spawn_actor(&rt);
        let second = spawn_actor(&rt);
        rt.link(first.pid(), second.pid());
        let (ending, other) = if first_ends {
            (first, second)
        } else {
            (second, first)
        };
        assert!(rt.exit(ending.pid(), ExitReason::Shutdown));
        assert_eq!(run(&rt, ending.join()), ExitReason::Shutdown);
        assert_eq!(
            run(&rt, other.join()),
            ExitReason::Shutdown,
            "the signal travels from the {} side",
            if first_ends { "linking" } else { "linked" }
        );
    }
    rt.kill(a.pid());
    rt.kill(b.pid());
}

fn self_link_does_nothing(workers: usize) {
    let rt = runtime(workers);
    check_trapping(&rt, |mut ctx, rt, me| async move {
        rt.link(me, me);
        let info = rt.info(me).unwrap();
        assert_eq!(info.links, 0, "no link to oneself");
        assert_eq!(info.mailbox_depth, 0, "and no signal");
        assert!(ctx.try_recv().is_none());
        rt.unlink(me, me);
        assert_eq!(rt.info(me).unwrap().links, 0);
    });
}

fn link_to_dead_pid_keeps_no_half_link_and_trapping_caller_gets_noproc(workers: usize) {
    let rt = runtime(workers);
    let dead = spawn_actor(&rt);
    let dead_pid = dead.pid();
    rt.send(dead_pid, Go::Return);
    assert_eq!(run(&rt, dead.join()), ExitReason::Normal);
    let unknown = Pid::from_raw(u64::MAX - 7);

    // A non-trapping caller: no link, no signal, no harm.
    let plain = spawn_actor(&rt);
    rt.link(plain.pid(), dead_pid);
    rt.link(unknown, plain.pid());
    let info = rt.info(plain.pid()).unwrap();
    assert_eq!(info.links, 0, "no half-link to a dead pid");
    assert_eq!(info.mailbox_depth, 0, "a non-trapping caller gets no Exit");

    check_trapping(&rt, move |mut ctx, rt, me| async move {
        for (a, b, from) in [
            (me, dead_pid, dead_pid),
            (dead_pid, me, dead_pid),
            (me, unknown, unknown),
        ] {
            rt.link(a, b);
            expect_exit(
                ctx.try_recv().expect("the NoProc Exit is there at once"),
                from,
                ExitReason::NoProc,
            );
        }
        assert_eq!(rt.info(me).unwrap().links, 0, "no half-link");
    });
    assert!(rt.kill(plain.pid()));
}

fn spawn_link_links_before_first_run(workers: usize) {
    silence_expected_panics();
    let rt = runtime(workers);
    check_trapping(&rt, |mut ctx, rt, me| async move {
        // Repeated, so that a link made after the child could first run
        // (which would give NoProc, or nothing) has many chances to show.
        for round in 0..200 {
            let child = rt.spawn_link(me, |_ctx| async move {
                panic!("{EXPECTED_PANIC} crash on first poll");
            });
            let child_pid = child.pid();
            match recv(&mut ctx, "the child's Exit").await {
                Received::Exit { from, reason } => {
                    assert_eq!(from, child_pid, "round {round}");
                    assert_eq!(reason, ExitReason::Crashed, "round {round}");
                }
                other => panic!("round {round}: unexpected {other:?}"),
            }
            assert_eq!(child.join().await, ExitReason::Crashed);
        }
        assert_eq!(rt.info(me).unwrap().links, 0);
    });

    // From ordinary threads, where a child can be picked up by a worker at
    // once: each child finds itself linked on its very first poll.
    let parent = spawn_actor(&rt);
    rt.set_trap_exit(parent.pid(), true);
    let parent_pid = parent.pid();
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let rt = rt.clone();
            std::thread::spawn(move || {
                let mut unlinked = 0;
                for _ in 0..2000 {
                    let child = rt.spawn_link(parent_pid, |ctx| async move {
                        let links = ctx.runtime().info(ctx.pid()).unwrap().links;
                        assert_eq!(links, 1, "not linked on its first run");
                    });
                    if run(&rt, child.join()) != ExitReason::Normal {
                        unlinked += 1;
                    }
                }
                unlinked
            })
        })
        .collect();
    let unlinked: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(
        unlinked, 0,
        "children that ran before their link was in place"
    );
    rt.kill(parent_pid);
}

fn spawn_link_from_outside_a_process_links_the_parent(workers: usize) {
    let rt = runtime(workers);
    let parent = spawn_actor(&rt);
    let child = rt.spawn_link(parent.pid(), |mut ctx| async move {
        let _ = ctx.recv().await;
    });
    assert_eq!(rt.info(parent.pid()).unwrap().links, 1);
    assert_eq!(rt.info(child.pid()).unwrap().links, 1);
    assert!(rt.exit(parent.pid(), ExitReason::Shutdown));
    assert_eq!(run(&rt, parent.join()), ExitReason::Shutdown);
    assert_eq!(
        run(&rt, child.join()),
        ExitReason::Shutdown,
        "the parent's exit signal ends the linked child"
    );
}

fn send_exit_semantics(workers: usize) {
    let rt = runtime(workers);
    let sender = Pid::from_raw(u64::MAX - 1);

    // A trapping target receives the signal, even Normal.
    check_trapping(&rt, move |mut ctx, rt, me| async move {
        assert!(rt.send_exit(sender, me, ExitReason::Normal));
        expect_exit(recv(&mut ctx, "Normal").await, sender, ExitReason::Normal);
        assert!(rt.send_exit(sender, me, ExitReason::Shutdown));
        expect_exit(
            recv(&mut ctx, "Shutdown").await,
            sender,
            ExitReason::Shutdown,
        );
        assert!(rt.send_exit(sender, me, ExitReason::Crashed));
        expect_exit(recv(&mut ctx, "Crashed").await, sender, ExitReason::Crashed);
    });

    // A non-trapping target ignores Normal...
    check(&rt, move |mut ctx| async move {
        let rt = ctx.runtime().clone();
        let target = spawn_actor(&rt);
        assert!(rt.send_exit(sender, target.pid(), ExitReason::Normal));
        assert!(
            responds(&mut ctx, target.pid()).await,
            "a non-trapping process ignores a Normal exit signal"
        );
        // ...and ends with any other reason.
        assert!(rt.send_exit(sender, target.pid(), ExitReason::Shutdown));
        assert_eq!(target.join().await, ExitReason::Shutdown);
    });

    // Killed is untrappable.
    let trapping = spawn_actor(&rt);
    rt.set_trap_exit(trapping.pid(), true);
    assert!(rt.send_exit(sender, trapping.pid(), ExitReason::Killed));
    assert_eq!(run(&rt, trapping.join()), ExitReason::Killed);

    // Nobody to signal.
    let gone = spawn_actor(&rt);
    let gone_pid = gone.pid();
    rt.kill(gone_pid);
    run(&rt, gone.join());
    assert!(!rt.send_exit(sender, gone_pid, ExitReason::Shutdown));
}

fn exit_ends_even_trapping_process(workers: usize) {
    let rt = runtime(workers);
    check(&rt, |mut ctx| async move {
        let rt = ctx.runtime().clone();
        let me = ctx.pid();
        for reason in [
            ExitReason::Shutdown,
            ExitReason::Crashed,
            ExitReason::Normal,
        ] {
            let p = spawn_actor(&rt);
            let p_pid = p.pid();
            rt.set_trap_exit(p_pid, true);
            let r = rt.monitor(me, p_pid);
            assert!(rt.exit(p_pid, reason));
            match recv(&mut ctx, "the Down").await {
                Received::Down {
                    reference,
                    pid,
                    reason: seen,
                } => {
                    assert_eq!((reference, pid), (r, p_pid));
                    assert_eq!(seen, reason, "monitors see the reason given to exit");
                }
                other => panic!("unexpected {other:?}"),
            }
            assert_eq!(
                p.join().await,
                reason,
                "exit ends a trapping process with the reason given"
            );
            assert!(!rt.is_alive(p_pid));
            assert!(!rt.exit(p_pid, reason), "false once it is gone");
        }
    });
}

fn signals_from_one_sender_keep_order(workers: usize) {
    silence_expected_panics();
    let rt = runtime(workers);
    check_trapping(&rt, |mut ctx, rt, me| async move {
        for round in 0..50u32 {
            let child = rt.spawn_link(me, move |ctx| async move {
                // Sent before the crash, so they arrive before the Exit.
                let rt = ctx.runtime().clone();
                for i in 0..100u32 {
                    assert!(rt.send(me, (round, i)));
                }
                panic!("{EXPECTED_PANIC} crash after sending");
            });
            let child_pid = child.pid();
            for i in 0..100u32 {
                match recv(&mut ctx, "a message").await {
                    Received::Message(m) => {
                        assert_eq!(m.downcast::<(u32, u32)>().ok(), Some((round, i)));
                    }
                    other => panic!("round {round}: got {other:?} before message {i}"),
                }
            }
            expect_exit(
                recv(&mut ctx, "the Exit").await,
                child_pid,
                ExitReason::Crashed,
            );
            assert_eq!(child.join().await, ExitReason::Crashed);
        }
    });
}

fn link_racing_unlink_never_leaves_half_a_link(workers: usize) {
    const ROUNDS: usize = 10_000;
    let rt = runtime(workers);
    let a = spawn_actor(&rt);
    let b = spawn_actor(&rt);
    let (pa, pb) = (a.pid(), b.pid());
    // Each round: the pair is linked; two threads unlink it while another
    // links it again. The prober's `info` takes a process's aux lock, which
    // an unlink may then wait for between its two sides.
    let mut half = None;
    let (r1, r2, r3, r4) = (rt.clone(), rt.clone(), rt.clone(), rt.clone());
    race_rounds(
        ROUNDS,
        move || r1.link(pa, pb),
        move || r2.unlink(pa, pb),
        move || {
            let _ = r3.info(pa);
            let _ = r3.info(pb);
        },
        |_| r4.link(pa, pb),
        |round| {
            let (la, lb) = (rt.info(pa).unwrap().links, rt.info(pb).unwrap().links);
            if la != lb {
                half.get_or_insert((round, la, lb));
                // Start the next round from a whole link again.
                rt.unlink(pa, pb);
            }
        },
    );
    assert_eq!(
        half, None,
        "a link held by one side only (round, links of a, of b)"
    );
    rt.kill(pa);
    rt.kill(pb);
    assert_eq!(run(&rt, a.join()), ExitReason::Killed);
    assert_eq!(run(&rt, b.join()), ExitReason::Killed);
}

on_workers!(
    normal_exit_does_not_cascade,
    abnormal_exit_cascades_with_original_reason,
    shutdown_cascades_with_original_reason,
    trapping_process_receives_exit_from_linked_crash,
    kill_is_untrappable,
    killed_over_a_link_can_be_trapped,
    unlinking_stops_propagation,
    link_is_symmetric_and_at_most_one_per_pair,
    self_link_does_nothing,
    link_to_dead_pid_keeps_no_half_link_and_trapping_caller_gets_noproc,
    spawn_link_links_before_first_run,
    spawn_link_from_outside_a_process_links_the_parent,
    send_exit_semantics,
    exit_ends_even_trapping_process,
    signals_from_one_sender_keep_order,
    link_racing_unlink_never_leaves_half_a_link,
);
