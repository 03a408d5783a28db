//! Names and tags: register / whereis / unregister, `send_named`,
//! `whereis_or_spawn` under a race, release at exit (before any `Down`),
//! and process groups.

mod support;

use rusm_otp::{ExitReason, Pid, Received, Runtime};
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::task::{Wake, Waker};
use support::{
    Go, check, check_trapping, killed_pid, on_workers, race_rounds, recv, recv_msg, responds, run,
    runtime, silence_expected_panics, spawn_actor, wait_until_timed,
};

fn register_whereis_unregister(workers: usize) {
    let rt = runtime(workers);
    let p = spawn_actor(&rt);
    assert_eq!(rt.whereis("svc"), None);
    assert!(rt.register("svc", p.pid()));
    assert_eq!(rt.whereis("svc"), Some(p.pid()));
    assert!(rt.register(String::from("svc2"), p.pid()), "a second name");
    let mut names = rt.info(p.pid()).unwrap().names;
    names.sort();
    assert_eq!(names, ["svc", "svc2"]);
    assert!(rt.unregister("svc"));
    assert_eq!(rt.whereis("svc"), None);
    assert!(!rt.unregister("svc"), "unregistering twice");
    assert_eq!(rt.info(p.pid()).unwrap().names, ["svc2"]);
    assert_eq!(rt.whereis("svc2"), Some(p.pid()), "other names stay");
    // The name is free again.
    let q = spawn_actor(&rt);
    assert!(rt.register("svc", q.pid()));
    assert_eq!(rt.whereis("svc"), Some(q.pid()));
    rt.kill(p.pid());
    rt.kill(q.pid());
}

fn register_of_a_taken_name_is_refused(workers: usize) {
    let rt = runtime(workers);
    let p = spawn_actor(&rt);
    let q = spawn_actor(&rt);
    assert!(rt.register("taken", p.pid()));
    assert!(!rt.register("taken", q.pid()), "the name is held by p");
    assert!(!rt.register("taken", p.pid()), "even by its holder");
    assert_eq!(rt.whereis("taken"), Some(p.pid()));
    assert!(rt.info(q.pid()).unwrap().names.is_empty());
    assert_eq!(rt.info(p.pid()).unwrap().names, ["taken"]);
    rt.kill(p.pid());
    rt.kill(q.pid());
}

fn register_of_a_dead_pid_is_refused(workers: usize) {
    let rt = runtime(workers);
    let pid = killed_pid(&rt);
    assert!(!rt.register("ghost", pid));
    assert_eq!(rt.whereis("ghost"), None);
    assert!(
        !rt.register("ghost", Pid::from_raw(u64::MAX - 5)),
        "unknown pid"
    );
    assert_eq!(rt.whereis("ghost"), None);
}

fn names_are_released_at_exit(workers: usize) {
    silence_expected_panics();
    let rt = runtime(workers);
    for (i, how) in ["kill", "panic", "return"].into_iter().enumerate() {
        let p = spawn_actor(&rt);
        let name = format!("released-{i}");
        assert!(rt.register(name.clone(), p.pid()));
        match how {
            "kill" => assert!(rt.kill(p.pid())),
            "panic" => assert!(rt.send(p.pid(), Go::Panic)),
            _ => assert!(rt.send(p.pid(), Go::Return)),
        }
        run(&rt, p.join());
        assert_eq!(rt.whereis(&name), None, "released after {how}");
        assert!(!rt.unregister(&name));
    }
}

fn names_are_released_before_down(workers: usize) {
    silence_expected_panics();
    let rt = runtime(workers);
    check_trapping(&rt, |mut ctx, rt, me| async move {
        for round in 0..200 {
            let name = format!("short-lived-{round}");
            let p = spawn_actor(&rt);
            assert!(rt.register(name.clone(), p.pid()));
            assert!(rt.register_tag("short-lived", p.pid()));
            let r = rt.monitor(me, p.pid());
            rt.link(me, p.pid());
            // The process ends on its own worker while we wait.
            rt.send(
                p.pid(),
                if round % 2 == 0 {
                    Go::Panic
                } else {
                    Go::Return
                },
            );
            let mut got_down = false;
            let mut got_exit = false;
            while !(got_down && got_exit) {
                match recv(&mut ctx, "the Down and the Exit").await {
                    Received::Down { reference, .. } => {
                        assert_eq!(reference, r);
                        got_down = true;
                    }
                    Received::Exit { from, .. } => {
                        assert_eq!(from, p.pid());
                        got_exit = true;
                    }
                    other => panic!("unexpected {other:?}"),
                }
                assert_eq!(
                    rt.whereis(&name),
                    None,
                    "round {round}: whoever gets the Down or Exit sees the name released"
                );
                assert!(
                    rt.whereis_tag("short-lived").is_empty(),
                    "round {round}: and the tag released"
                );
            }
            // The name can be taken again at once.
            assert!(rt.register(name.clone(), me));
            assert!(rt.unregister(&name));
        }
    });
}

/// A waker that, when woken, records what the registry says about `name`
/// and `tag` at that very moment, then wakes the process.
struct RegistryProbe {
    inner: Waker,
    rt: Runtime,
    name: String,
    tag: String,
    seen: Mutex<Vec<(Option<Pid>, Vec<Pid>)>>,
}

impl Wake for RegistryProbe {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let seen = (self.rt.whereis(&self.name), self.rt.whereis_tag(&self.tag));
        self.seen.lock().unwrap().push(seen);
        self.inner.wake_by_ref();
    }
}

fn names_are_released_before_the_down_or_exit_is_delivered(workers: usize) {
    // The watcher parks its receive under a waker of its own, so the wake
    // that delivering the Down (or Exit) owes it runs right at delivery:
    // the registry must already be clean then, not merely by the time the
    // watcher gets to run.
    let rt = runtime(workers);
    check_trapping(&rt, |mut ctx, rt, me| async move {
        for round in 0..200 {
            let name = format!("probed-{round}");
            let tag = format!("probed-tag-{round}");
            let p = spawn_actor(&rt);
            assert!(rt.register(name.clone(), p.pid()));
            assert!(rt.register_tag(tag.clone(), p.pid()));
            let by_link = round % 2 == 1;
            if by_link {
                rt.link(me, p.pid());
            } else {
                rt.monitor(me, p.pid());
            }
            let mut probe: Option<Arc<RegistryProbe>> = None;
            let mut recv_fut = ctx.recv();
            let mut sent = false;
            let got = poll_fn(|cx| {
                let probe = probe.get_or_insert_with(|| {
                    Arc::new(RegistryProbe {
                        inner: cx.waker().clone(),
                        rt: rt.clone(),
                        name: name.clone(),
                        tag: tag.clone(),
                        seen: Mutex::new(Vec::new()),
                    })
                });
                let waker = Waker::from(probe.clone());
                let mut probe_cx = std::task::Context::from_waker(&waker);
                let r = Pin::new(&mut recv_fut).poll(&mut probe_cx);
                if r.is_pending() && !sent {
                    // Parked under the probe: now end the process.
                    sent = true;
                    rt.kill(p.pid());
                }
                r
            })
            .await;
            drop(recv_fut);
            match got {
                Received::Down { pid, .. } | Received::Exit { from: pid, .. } => {
                    assert_eq!(pid, p.pid());
                }
                other => panic!("unexpected {other:?}"),
            }
            let seen = probe.unwrap().seen.lock().unwrap().clone();
            let (first_name, first_tag) = seen.first().cloned().unwrap_or((None, Vec::new()));
            assert_eq!(
                first_name,
                None,
                "round {round} ({}): the name was still registered when the signal was delivered",
                if by_link { "Exit" } else { "Down" }
            );
            assert!(
                first_tag.is_empty(),
                "round {round}: the tag was still held when the signal was delivered"
            );
        }
    });
}

fn send_named(workers: usize) {
    let rt = runtime(workers);
    check(&rt, |mut ctx| async move {
        let rt = ctx.runtime().clone();
        let me = ctx.pid();
        assert!(rt.register("me", me));
        assert!(rt.send_named("me", 41u64));
        assert!(rt.send_named("me", String::from("hi")));
        assert_eq!(recv_msg::<u64>(&mut ctx, "the first").await, 41);
        assert_eq!(recv_msg::<String>(&mut ctx, "the second").await, "hi");
        assert!(!rt.send_named("nobody", 1u8), "no such name");
        assert!(rt.unregister("me"));
        assert!(!rt.send_named("me", 1u8), "no longer registered");
        assert!(ctx.try_recv().is_none());
    });
    let p = spawn_actor(&rt);
    assert!(rt.register("gone", p.pid()));
    rt.kill(p.pid());
    run(&rt, p.join());
    assert!(!rt.send_named("gone", 1u8), "the holder ended");
}

fn whereis_or_spawn_returns_the_incumbent_without_spawning(workers: usize) {
    let rt = runtime(workers);
    let p = spawn_actor(&rt);
    assert!(rt.register("incumbent", p.pid()));
    let spawned = rt.spawned();
    let called = Arc::new(AtomicUsize::new(0));
    let c = called.clone();
    let got = rt.whereis_or_spawn("incumbent", move |_ctx| {
        c.fetch_add(1, Ordering::SeqCst);
        async {}
    });
    assert_eq!(got, p.pid());
    assert_eq!(called.load(Ordering::SeqCst), 0, "no spawn closure called");
    assert_eq!(rt.spawned(), spawned, "nothing spawned");

    // With the name free, it spawns and registers.
    let fresh = rt.whereis_or_spawn("fresh", |mut ctx| async move {
        let _ = ctx.recv().await;
    });
    assert_eq!(rt.whereis("fresh"), Some(fresh));
    assert!(rt.is_alive(fresh));
    assert_eq!(rt.info(fresh).unwrap().names, ["fresh"]);
    rt.kill(fresh);
    rt.kill(p.pid());
}

fn whereis_or_spawn_with_32_racing_threads_yields_one_winner(workers: usize) {
    const THREADS: usize = 32;
    let rt = runtime(workers);
    for round in 0..10 {
        let name = format!("singleton-{round}");
        let bodies = Arc::new(AtomicUsize::new(0));
        let barrier = Arc::new(Barrier::new(THREADS));
        let threads: Vec<_> = (0..THREADS)
            .map(|_| {
                let rt = rt.clone();
                let name = name.clone();
                let bodies = bodies.clone();
                let barrier = barrier.clone();
                std::thread::spawn(move || {
                    barrier.wait();
                    rt.whereis_or_spawn(name, move |mut ctx| {
                        // The closure may run for losers; their bodies must not.
                        async move {
                            bodies.fetch_add(1, Ordering::SeqCst);
                            loop {
                                let _ = ctx.recv().await;
                            }
                        }
                    })
                })
            })
            .collect();
        let pids: Vec<Pid> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        let winner = pids[0];
        assert!(
            pids.iter().all(|&p| p == winner),
            "round {round}: every caller gets the same pid: {pids:?}"
        );
        assert_eq!(rt.whereis(&name), Some(winner));
        assert!(rt.is_alive(winner));
        run(
            &rt,
            wait_until_timed("the losers to be gone and the winner to run", || {
                rt.process_count() == 1 && bodies.load(Ordering::SeqCst) >= 1
            }),
        );
        assert_eq!(rt.list(), [winner], "round {round}: one process alive");
        assert_eq!(
            bodies.load(Ordering::SeqCst),
            1,
            "round {round}: only the winner's body ran"
        );
        rt.kill(winner);
        run(
            &rt,
            wait_until_timed("the winner to end", || rt.process_count() == 0),
        );
        assert_eq!(rt.whereis(&name), None);
    }
}

fn register_tag_twice_returns_true_and_changes_nothing(workers: usize) {
    let rt = runtime(workers);
    let p = spawn_actor(&rt);
    assert!(rt.register_tag("group", p.pid()));
    assert!(rt.register_tag("group", p.pid()), "tagging again is fine");
    assert!(rt.register_tag(String::from("group"), p.pid()));
    assert_eq!(rt.whereis_tag("group"), [p.pid()], "a member once");
    assert!(rt.unregister_tag("group", p.pid()));
    assert!(
        rt.whereis_tag("group").is_empty(),
        "one unregister_tag removes it: it was only there once"
    );
    assert!(!rt.unregister_tag("group", p.pid()));
    rt.kill(p.pid());
}

fn whereis_tag_lists_members_in_ascending_order(workers: usize) {
    let rt = runtime(workers);
    let ps: Vec<_> = (0..5).map(|_| spawn_actor(&rt)).collect();
    for p in ps.iter().rev() {
        assert!(rt.register_tag("workers", p.pid()));
    }
    assert!(rt.register_tag("odd", ps[1].pid()));
    assert!(rt.register_tag("odd", ps[3].pid()));
    let all: Vec<Pid> = ps.iter().map(|p| p.pid()).collect();
    assert_eq!(rt.whereis_tag("workers"), all);
    assert_eq!(rt.whereis_tag("odd"), [ps[1].pid(), ps[3].pid()]);
    assert!(rt.whereis_tag("nobody").is_empty());
    // A dead pid cannot join.
    let dead = spawn_actor(&rt);
    let dead_pid = dead.pid();
    rt.kill(dead_pid);
    run(&rt, dead.join());
    assert!(!rt.register_tag("workers", dead_pid));
    assert_eq!(rt.whereis_tag("workers"), all);
    for p in &ps {
        rt.kill(p.pid());
    }
}

fn unregister_tag_removes_one_member(workers: usize) {
    let rt = runtime(workers);
    let a = spawn_actor(&rt);
    let b = spawn_actor(&rt);
    assert!(rt.register_tag("g", a.pid()));
    assert!(rt.register_tag("g", b.pid()));
    assert!(rt.register_tag("h", a.pid()));
    assert!(rt.unregister_tag("g", a.pid()));
    assert_eq!(rt.whereis_tag("g"), [b.pid()]);
    assert_eq!(rt.whereis_tag("h"), [a.pid()], "other tags stay");
    assert!(!rt.unregister_tag("g", a.pid()), "not a member any more");
    assert!(!rt.unregister_tag("nope", b.pid()));
    // Unregistered, it can join again.
    assert!(rt.register_tag("g", a.pid()));
    assert_eq!(rt.whereis_tag("g"), [a.pid(), b.pid()]);
    rt.kill(a.pid());
    rt.kill(b.pid());
}

fn kill_tag_kills_the_members_and_returns_the_count(workers: usize) {
    let rt = runtime(workers);
    let members: Vec<_> = (0..4).map(|_| spawn_actor(&rt)).collect();
    let outsider = spawn_actor(&rt);
    for m in &members {
        assert!(rt.register_tag("doomed", m.pid()));
    }
    assert!(rt.register_tag("other", outsider.pid()));
    assert_eq!(rt.kill_tag("doomed"), 4);
    for m in members {
        assert_eq!(run(&rt, m.join()), ExitReason::Killed);
    }
    assert!(rt.whereis_tag("doomed").is_empty());
    assert_eq!(rt.kill_tag("doomed"), 0, "nobody left");
    assert_eq!(rt.kill_tag("never-used"), 0);
    let outsider_pid = outsider.pid();
    check(&rt, move |mut ctx| async move {
        assert!(
            responds(&mut ctx, outsider_pid).await,
            "non-members are untouched"
        );
    });
    rt.kill(outsider_pid);
}

fn tags_are_released_at_exit(workers: usize) {
    silence_expected_panics();
    let rt = runtime(workers);
    let a = spawn_actor(&rt);
    let b = spawn_actor(&rt);
    let c = spawn_actor(&rt);
    for p in [&a, &b, &c] {
        assert!(rt.register_tag("team", p.pid()));
    }
    assert!(rt.register_tag("solo", b.pid()));
    rt.send(b.pid(), Go::Panic);
    assert_eq!(run(&rt, b.join()), ExitReason::Crashed);
    assert_eq!(rt.whereis_tag("team"), [a.pid(), c.pid()]);
    assert!(rt.whereis_tag("solo").is_empty());
    rt.send(a.pid(), Go::Return);
    assert_eq!(run(&rt, a.join()), ExitReason::Normal);
    assert_eq!(rt.whereis_tag("team"), [c.pid()]);
    rt.kill(c.pid());
    assert_eq!(run(&rt, c.join()), ExitReason::Killed);
    assert!(rt.whereis_tag("team").is_empty());
}

fn register_racing_unregister_never_leaves_a_name_behind(workers: usize) {
    const ROUNDS: usize = 10_000;
    let rt = runtime(workers);
    let p = spawn_actor(&rt);
    let pid = p.pid();
    // Each round: the name is held by `pid`; two threads unregister it
    // while another registers it again for the same pid. The prober's
    // `info` takes the process's aux lock, so an `unregister` often waits
    // for it between its two steps.
    let mut leaked = None;
    let (r1, r2, r3, r4) = (rt.clone(), rt.clone(), rt.clone(), rt.clone());
    race_rounds(
        ROUNDS,
        move || {
            r1.register("racy", pid);
        },
        move || {
            r2.unregister("racy");
        },
        move || {
            let _ = r3.info(pid);
        },
        |_| {
            r4.register("racy", pid);
        },
        |round| {
            // The registry and the process agree on what it holds, so its
            // end releases exactly that.
            let held = rt.info(pid).unwrap().names.iter().any(|n| n == "racy");
            if (rt.whereis("racy") == Some(pid)) != held {
                leaked.get_or_insert(round);
            }
        },
    );
    rt.kill(pid);
    assert_eq!(run(&rt, p.join()), ExitReason::Killed);
    assert_eq!(leaked, None, "the registry and the process disagreed");
    assert_eq!(rt.whereis("racy"), None, "the name outlived {pid}");
}

on_workers!(
    register_whereis_unregister,
    register_of_a_taken_name_is_refused,
    register_of_a_dead_pid_is_refused,
    names_are_released_at_exit,
    names_are_released_before_down,
    names_are_released_before_the_down_or_exit_is_delivered,
    send_named,
    whereis_or_spawn_returns_the_incumbent_without_spawning,
    whereis_or_spawn_with_32_racing_threads_yields_one_winner,
    register_tag_twice_returns_true_and_changes_nothing,
    whereis_tag_lists_members_in_ascending_order,
    unregister_tag_removes_one_member,
    kill_tag_kills_the_members_and_returns_the_count,
    tags_are_released_at_exit,
    register_racing_unregister_never_leaves_a_name_behind,
);
