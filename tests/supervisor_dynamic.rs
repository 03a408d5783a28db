//! `SupervisorRef`: every request and every `SupervisorError`, and dynamic
//! supervisors with many children.

mod support;

use rusm_otp::supervisor::{
    ChildCount, ChildSpec, Restart, Shutdown, SupervisorError, SupervisorRef,
};
use rusm_otp::{ExitReason, Pid, Runtime, Strategy};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use support::supervision::{idle, supervise_stubborn};
use support::{EXPECTED_PANIC, on_workers, run, runtime, silence_expected_panics, wait_until};

fn terminate_then_restart_then_delete(workers: usize) {
    let rt = runtime(workers);
    let sup = rt
        .supervisor(Strategy::OneForOne)
        .child_spec(ChildSpec::new("a", idle))
        .child_spec(ChildSpec::new("b", idle).supervisor())
        .start();
    let r = SupervisorRef::new(&rt, sup.pid());
    run(&rt, async {
        let a = r.which_children().await.unwrap()[0].pid.unwrap();
        assert_eq!(
            r.count_children().await.unwrap(),
            ChildCount {
                specs: 2,
                active: 2,
                supervisors: 1,
                workers: 1
            }
        );
        assert_eq!(r.terminate_child("a").await, Ok(()));
        assert!(!rt.is_alive(a), "answered once the child is down");
        assert_eq!(r.terminate_child("a").await, Ok(()), "already stopped");
        let infos = r.which_children().await.unwrap();
        assert_eq!(infos[0].id, "a");
        assert_eq!(infos[0].pid, None);
        assert_eq!(infos[0].restart, Restart::Permanent);
        assert!(infos[1].supervisor);
        let c = r.count_children().await.unwrap();
        assert_eq!((c.specs, c.active), (2, 1), "a stopped spec still counts");

        let a2 = r.restart_child("a").await.unwrap();
        assert_ne!(a2, a);
        assert!(rt.is_alive(a2));
        assert_eq!(r.which_children().await.unwrap()[0].pid, Some(a2));
        assert_eq!(r.delete_child("a").await, Err(SupervisorError::Running));

        assert_eq!(r.terminate_child("a").await, Ok(()));
        assert_eq!(r.delete_child("a").await, Ok(()));
        let ids: Vec<String> = r
            .which_children()
            .await
            .unwrap()
            .into_iter()
            .map(|c| c.id)
            .collect();
        assert_eq!(ids, ["b"]);
        assert_eq!(r.restart_child("a").await, Err(SupervisorError::NotFound));
    });
    rt.kill(sup.pid());
    run(&rt, sup.join());
}

fn every_supervisor_error(workers: usize) {
    silence_expected_panics();
    let rt = runtime(workers);
    let sup = rt
        .supervisor(Strategy::OneForOne)
        .max_children(3)
        .child_spec(ChildSpec::new("a", idle))
        .start();
    let r = SupervisorRef::new(&rt, sup.pid());
    let fail = Arc::new(AtomicBool::new(false));
    let f = fail.clone();
    let flaky = move |rt: &Runtime| {
        if f.load(Ordering::SeqCst) {
            panic!("{EXPECTED_PANIC} cannot start");
        }
        idle(rt)
    };
    run(&rt, async {
        let a = r.which_children().await.unwrap()[0].pid.unwrap();
        // NotFound, for each request that names a child.
        assert_eq!(r.terminate_child("x").await, Err(SupervisorError::NotFound));
        assert_eq!(r.restart_child("x").await, Err(SupervisorError::NotFound));
        assert_eq!(r.delete_child("x").await, Err(SupervisorError::NotFound));
        let stranger = Pid::from_raw(u64::MAX - 1);
        assert_eq!(
            r.terminate_pid(stranger).await,
            Err(SupervisorError::NotFound)
        );
        // AlreadyStarted / AlreadyPresent.
        assert_eq!(
            r.start_child(ChildSpec::new("a", idle)).await,
            Err(SupervisorError::AlreadyStarted(a))
        );
        r.terminate_child("a").await.unwrap();
        assert_eq!(
            r.start_child(ChildSpec::new("a", idle)).await,
            Err(SupervisorError::AlreadyPresent)
        );
        // Running.
        let f = r
            .start_child(ChildSpec::new("f", flaky.clone()))
            .await
            .unwrap();
        assert_eq!(r.restart_child("f").await, Err(SupervisorError::Running));
        assert_eq!(r.delete_child("f").await, Err(SupervisorError::Running));
        // StartFailed: from restart_child and from start_child; the
        // supervisor carries on and keeps no spec for a failed start.
        r.terminate_pid(f).await.unwrap();
        fail.store(true, Ordering::SeqCst);
        match r.restart_child("f").await {
            Err(SupervisorError::StartFailed(msg)) => assert!(msg.contains("cannot start")),
            other => panic!("unexpected {other:?}"),
        }
        match r.start_child(ChildSpec::new("g", flaky.clone())).await {
            Err(SupervisorError::StartFailed(msg)) => assert!(msg.contains("cannot start")),
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(r.count_children().await.unwrap().specs, 2, "a and f");
        // MaxChildren: three specs at most.
        r.start_child(ChildSpec::new("h", idle)).await.unwrap();
        assert_eq!(
            r.start_child(ChildSpec::new("i", idle)).await,
            Err(SupervisorError::MaxChildren)
        );
    });
    assert!(rt.is_alive(sup.pid()));
    // NoProc: at once for a dead supervisor.
    rt.kill(sup.pid());
    run(&rt, sup.join());
    assert_eq!(run(&rt, r.count_children()), Err(SupervisorError::NoProc));
    assert_eq!(
        run(&rt, r.start_child(ChildSpec::new("j", idle))),
        Err(SupervisorError::NoProc)
    );
    // Every error displays.
    for e in [
        SupervisorError::NotFound,
        SupervisorError::AlreadyPresent,
        SupervisorError::AlreadyStarted(Pid::from_raw(1)),
        SupervisorError::Running,
        SupervisorError::MaxChildren,
        SupervisorError::StartFailed("x".into()),
        SupervisorError::NoProc,
    ] {
        let as_error: &dyn std::error::Error = &e;
        assert!(!as_error.to_string().is_empty());
    }
}

fn a_request_to_a_supervisor_that_dies_before_answering_fails_with_noproc(workers: usize) {
    let rt = runtime(workers);
    let h = rt.spawn(|mut ctx| async move {
        let me = ctx.pid();
        let rt = ctx.runtime().clone();
        // A child that traps exits and never ends by itself: an Infinity
        // stop of it keeps the supervisor busy.
        let sup = supervise_stubborn(&rt, "stuck", me, Shutdown::Infinity);
        let s = sup.pid();
        let r = SupervisorRef::new(&rt, s);
        let r2 = r.clone();
        rt.spawn(move |ctx| async move {
            let res = r2.terminate_child("stuck").await;
            ctx.runtime().send(me, ("terminate", res));
        });
        // The stop has reached the child, which ignores it.
        let m = ctx.recv().await.message().unwrap();
        m.downcast::<(Pid, ExitReason)>().unwrap();
        let r3 = r.clone();
        rt.spawn(move |ctx| async move {
            let res = r3.which_children().await.map(|v| v.len());
            ctx.runtime().send(me, ("which", res));
        });
        rt.kill(s);
        let mut answers = Vec::new();
        for _ in 0..2 {
            let m = ctx.recv().await.message().unwrap();
            match m.downcast::<(&str, Result<(), SupervisorError>)>() {
                Ok(a) => answers.push((a.0, a.1.err())),
                Err(m) => {
                    let a = m
                        .downcast::<(&str, Result<usize, SupervisorError>)>()
                        .unwrap();
                    answers.push((a.0, a.1.err()));
                }
            }
        }
        answers.sort_by_key(|a| a.0);
        assert_eq!(
            answers,
            [
                ("terminate", Some(SupervisorError::NoProc)),
                ("which", Some(SupervisorError::NoProc))
            ]
        );
    });
    assert_eq!(run(&rt, h.join()), ExitReason::Normal);
    wait_until("the tree to end", || rt.process_count() == 0);
}

fn a_dynamic_supervisor_forgets_ended_children_and_never_checks_ids(workers: usize) {
    let rt = runtime(workers);
    let sup = rt.dynamic_supervisor().max_children(2).start();
    let r = SupervisorRef::new(&rt, sup.pid());
    run(&rt, async {
        let a = r.start_child(ChildSpec::new("w", idle)).await.unwrap();
        let b = r
            .start_child(ChildSpec::new("w", idle).restart(Restart::Transient))
            .await
            .unwrap();
        assert_eq!(
            r.start_child(ChildSpec::new("w", idle)).await,
            Err(SupervisorError::MaxChildren)
        );
        let pids: Vec<Option<Pid>> = r
            .which_children()
            .await
            .unwrap()
            .into_iter()
            .map(|c| c.pid)
            .collect();
        assert_eq!(pids, [Some(a), Some(b)], "in start order");
        // A permanent child is restarted in place.
        rt.kill(a);
        loop {
            let infos = r.which_children().await.unwrap();
            if infos[0].pid != Some(a) {
                assert!(infos[0].pid.is_some());
                break;
            }
        }
        // A transient one that ends normally is forgotten.
        rt.exit(b, ExitReason::Normal);
        loop {
            if r.count_children().await.unwrap().specs == 1 {
                break;
            }
        }
        assert_eq!(r.terminate_pid(b).await, Err(SupervisorError::NotFound));
        let a2 = r.which_children().await.unwrap()[0].pid.unwrap();
        assert_eq!(r.terminate_pid(a2).await, Ok(()));
        assert_eq!(r.count_children().await.unwrap(), ChildCount::default());
        assert_eq!(r.terminate_child("w").await, Err(SupervisorError::NotFound));
    });
    rt.kill(sup.pid());
    run(&rt, sup.join());
}

fn a_hundred_thousand_dynamic_children_started_and_stopped(workers: usize) {
    const N: usize = 100_000;
    let rt = runtime(workers);
    let sup = rt.dynamic_supervisor().start();
    let r = SupervisorRef::new(&rt, sup.pid());
    let h = rt.spawn(move |ctx| async move {
        let rt = ctx.runtime().clone();
        let spec = ChildSpec::new("w", idle).restart(Restart::Temporary);
        let mut pids = Vec::with_capacity(N);
        for _ in 0..N {
            pids.push(r.start_child(spec.clone()).await.unwrap());
        }
        let c = r.count_children().await.unwrap();
        assert_eq!((c.specs, c.active, c.workers), (N, N, N));
        assert_eq!(rt.process_count(), N + 2);
        for p in pids {
            r.terminate_pid(p).await.unwrap();
        }
        assert_eq!(r.count_children().await.unwrap(), ChildCount::default());
        assert_eq!(r.which_children().await.unwrap(), []);
    });
    assert_eq!(run(&rt, h.join()), ExitReason::Normal);
    assert_eq!(rt.list(), [sup.pid()]);
    rt.kill(sup.pid());
    run(&rt, sup.join());
}

on_workers!(
    terminate_then_restart_then_delete,
    every_supervisor_error,
    a_request_to_a_supervisor_that_dies_before_answering_fails_with_noproc,
    a_dynamic_supervisor_forgets_ended_children_and_never_checks_ids,
    a_hundred_thousand_dynamic_children_started_and_stopped,
);
