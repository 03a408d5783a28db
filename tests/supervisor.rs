//! Supervisors: the seed's four tests (ported from tokio to `block_on` and
//! bounded polling), plus tree teardown, giving up, `WhichChildren`, an
//! orderly shutdown, and a large unlimited restart storm.

mod support;

use rusm_otp::supervisor::{Children, WhichChildren};
use rusm_otp::{ExitReason, Pid, ProcessHandle, Received, Runtime, Strategy, Supervisor};
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::time::Duration;
use support::{
    EXPECTED_PANIC, check, on_workers, recv, run, runtime, silence_expected_panics,
    wait_until_timed,
};

/// A child that registers itself under `name` and then idles, so a test can
/// find it by name and observe a restart as a *changed* pid.
fn named(name: &'static str) -> impl Fn(&Runtime) -> ProcessHandle + Send + Sync + 'static {
    move |r: &Runtime| {
        r.spawn(move |mut ctx| async move {
            let me = ctx.pid();
            assert!(
                ctx.runtime().register(name, me),
                "{name} is free when a child (re)starts"
            );
            loop {
                let _ = ctx.recv().await;
            }
        })
    }
}

/// A child that counts its starts and panics at once.
fn crasher(counter: Arc<AtomicU32>) -> impl Fn(&Runtime) -> ProcessHandle + Send + Sync + 'static {
    move |r: &Runtime| {
        let counter = counter.clone();
        r.spawn(move |_ctx| async move {
            counter.fetch_add(1, Ordering::SeqCst);
            panic!("{EXPECTED_PANIC} boom");
        })
    }
}

async fn wait_for(rt: &Runtime, name: &str) -> Pid {
    wait_until_timed(&format!("{name} to be registered"), || {
        rt.whereis(name).is_some()
    })
    .await;
    rt.whereis(name).unwrap()
}

async fn wait_for_change(rt: &Runtime, name: &str, old: Pid) -> Pid {
    wait_until_timed(&format!("{name} to be restarted"), || {
        rt.whereis(name).is_some_and(|p| p != old)
    })
    .await;
    rt.whereis(name).unwrap()
}

/// Starts `sup` with a [`named`] child for each of `names`, in that order,
/// and waits until every one has registered: the supervisor and the
/// children's pids.
fn start_named<const N: usize>(
    rt: &Runtime,
    sup: Supervisor,
    names: [&'static str; N],
) -> (ProcessHandle, [Pid; N]) {
    let sup = names
        .iter()
        .fold(sup, |b, &name| b.child(named(name)))
        .start();
    let pids = run(rt, async {
        let mut pids = Vec::with_capacity(N);
        for name in names {
            pids.push(wait_for(rt, name).await);
        }
        pids
    });
    (sup, pids.try_into().unwrap())
}

/// Asks supervisor `sup` for its children.
async fn which_children(ctx: &mut rusm_otp::Context, sup: Pid) -> Vec<Pid> {
    let me = ctx.pid();
    assert!(ctx.runtime().send(sup, WhichChildren(me)));
    match recv(ctx, "the Children reply").await {
        Received::Message(m) => match m.downcast::<Children>() {
            Ok(Children(pids)) => pids,
            Err(m) => panic!("expected Children, got a {}", m.type_name()),
        },
        other => panic!("expected Children, got {other:?}"),
    }
}

fn one_for_one_restarts_only_the_failed_child(workers: usize) {
    let rt = runtime(workers);
    let (sup, [c0, c1]) = start_named(&rt, rt.supervisor(Strategy::OneForOne), ["c0", "c1"]);
    let sup_pid = sup.pid();
    run(&rt, async {
        rt.kill(c0);
        let c0b = wait_for_change(&rt, "c0", c0).await;
        assert_ne!(c0b, c0, "the failed child is restarted with a fresh pid");
        assert!(!rt.is_alive(c0));
        assert_eq!(rt.whereis("c1"), Some(c1), "a sibling is left untouched");
        assert!(rt.is_alive(c1));

        // Again, with the other child: the supervisor keeps going.
        rt.kill(c1);
        let c1b = wait_for_change(&rt, "c1", c1).await;
        assert_ne!(c1b, c1);
        assert_eq!(rt.whereis("c0"), Some(c0b));
    });
    assert!(rt.is_alive(sup_pid));
    // A process leaves the table before its Down is sent, so the list is
    // exact here (the `finished` counter may lag a moment behind).
    assert_eq!(rt.list().len(), 3, "the supervisor and two children");
    sup.kill();
    assert_eq!(run(&rt, sup.join()), ExitReason::Killed);
}

fn one_for_all_restarts_every_child(workers: usize) {
    let rt = runtime(workers);
    let (sup, [mut a0, mut a1]) =
        start_named(&rt, rt.supervisor(Strategy::OneForAll), ["a0", "a1"]);
    let sup_pid = sup.pid();
    run(&rt, async {
        // Twice: the supervisor survives its own terminations.
        for round in 0..2 {
            rt.kill(a0);
            let a0b = wait_for_change(&rt, "a0", a0).await;
            let a1b = wait_for_change(&rt, "a1", a1).await;
            assert_ne!(a0b, a0, "round {round}");
            assert_ne!(
                a1b, a1,
                "round {round}: every child is restarted, not just the one that died"
            );
            assert!(!rt.is_alive(a0) && !rt.is_alive(a1), "round {round}");
            assert!(rt.is_alive(sup_pid), "round {round}");
            (a0, a1) = (a0b, a1b);
        }
    });
    assert_eq!(rt.list().len(), 3, "the supervisor and two children");
    sup.kill();
    assert_eq!(run(&rt, sup.join()), ExitReason::Killed);
}

fn rest_for_one_restarts_the_failed_and_later_children(workers: usize) {
    let rt = runtime(workers);
    let (sup, [r0, mut r1, mut r2]) =
        start_named(&rt, rt.supervisor(Strategy::RestForOne), ["r0", "r1", "r2"]);
    let sup_pid = sup.pid();
    run(&rt, async {
        for round in 0..2 {
            rt.kill(r1);
            let r1b = wait_for_change(&rt, "r1", r1).await;
            let r2b = wait_for_change(&rt, "r2", r2).await;
            assert_eq!(
                rt.whereis("r0"),
                Some(r0),
                "round {round}: children before the failure stay"
            );
            assert_ne!(r1b, r1, "round {round}: the failed child restarts");
            assert_ne!(r2b, r2, "round {round}: and every child after it restarts");
            assert!(rt.is_alive(sup_pid), "round {round}");
            (r1, r2) = (r1b, r2b);
        }
        // The last child's failure restarts only itself.
        rt.kill(r2);
        wait_for_change(&rt, "r2", r2).await;
        assert_eq!(rt.whereis("r1"), Some(r1));
        assert_eq!(rt.whereis("r0"), Some(r0));
    });
    assert_eq!(rt.list().len(), 4, "the supervisor and three children");
    sup.kill();
    assert_eq!(run(&rt, sup.join()), ExitReason::Killed);
}

fn restart_intensity_stops_the_supervisor(workers: usize) {
    silence_expected_panics();
    let rt = runtime(workers);
    let crashes = Arc::new(AtomicU32::new(0));
    let _sup = rt
        .supervisor(Strategy::OneForOne)
        .max_restarts(3)
        .within(Duration::from_secs(60))
        .child(crasher(crashes.clone()))
        .start();
    // Once the supervisor blows its budget it kills its children and exits,
    // so every process drains: the initial start plus 3 restarts = 4 crashes.
    run(
        &rt,
        wait_until_timed("every process to end", || rt.process_count() == 0),
    );
    assert_eq!(
        crashes.load(Ordering::SeqCst),
        4,
        "initial start + 3 restarts, then the supervisor gives up"
    );
    assert!(rt.list().is_empty());
}

fn restart_intensity_over_lifetime(workers: usize) {
    silence_expected_panics();
    let rt = runtime(workers);
    let crashes = Arc::new(AtomicU32::new(0));
    let sup = rt
        .supervisor(Strategy::OneForOne)
        .max_restarts(2)
        .over_lifetime()
        .child(crasher(crashes.clone()))
        .start();
    assert_eq!(run(&rt, sup.join()), ExitReason::Crashed);
    assert_eq!(crashes.load(Ordering::SeqCst), 3, "start + 2 restarts");
    run(
        &rt,
        wait_until_timed("every process to end", || rt.process_count() == 0),
    );
}

fn supervisor_gives_up_with_crashed(workers: usize) {
    let rt = runtime(workers);
    let budget = rt
        .supervisor(Strategy::OneForAll)
        .max_restarts(2)
        .within(Duration::from_secs(60));
    let (sup, [mut victim, _]) = start_named(&rt, budget, ["victim", "bystander"]);
    let sup_pid = sup.pid();
    // Nothing fails until the test kills the victim, so this monitor is in
    // place well before the supervisor can give up.
    let watcher = rt.spawn(|mut ctx| async move {
        match recv(&mut ctx, "the supervisor's Down").await {
            Received::Down { pid, reason, .. } => {
                assert_eq!(pid, sup_pid);
                assert_eq!(reason, ExitReason::Crashed, "a parent sees it crash");
            }
            other => panic!("unexpected {other:?}"),
        }
    });
    rt.monitor(watcher.pid(), sup_pid);
    run(&rt, async {
        // Two restarts are within budget...
        for _ in 0..2 {
            rt.kill(victim);
            victim = wait_for_change(&rt, "victim", victim).await;
        }
        assert!(rt.is_alive(sup_pid));
        // ...the third is one too many.
        rt.kill(victim);
    });
    assert_eq!(
        run(&rt, sup.join()),
        ExitReason::Crashed,
        "over budget, the supervisor exits Crashed"
    );
    assert_eq!(run(&rt, watcher.join()), ExitReason::Normal);
    run(
        &rt,
        wait_until_timed("the children to end with it", || rt.process_count() == 0),
    );
    assert_eq!(rt.whereis("victim"), None);
    assert_eq!(rt.whereis("bystander"), None);
}

fn killing_the_supervisor_kills_its_children(workers: usize) {
    let rt = runtime(workers);
    let (sup, children) = start_named(&rt, rt.supervisor(Strategy::OneForOne), ["k0", "k1", "k2"]);
    let sup_pid = sup.pid();
    check(&rt, move |mut ctx| async move {
        let rt = ctx.runtime().clone();
        let me = ctx.pid();
        let mut watched: HashSet<Pid> = children.iter().copied().collect();
        watched.insert(sup_pid);
        for &p in &watched {
            rt.monitor(me, p);
        }
        assert!(rt.kill(sup_pid));
        while !watched.is_empty() {
            match recv(&mut ctx, "the Downs of the whole tree").await {
                Received::Down { pid, reason, .. } => {
                    assert!(watched.remove(&pid), "one Down each");
                    assert_eq!(reason, ExitReason::Killed, "{pid}");
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        // No orphan, and no restart either.
        assert_eq!(rt.list(), [me], "only the tester is left");
        for name in ["k0", "k1", "k2"] {
            assert_eq!(rt.whereis(name), None);
        }
    });
    assert_eq!(run(&rt, sup.join()), ExitReason::Killed);
    assert!(rt.list().is_empty());
    run(
        &rt,
        wait_until_timed("the counters to settle", || rt.process_count() == 0),
    );
}

fn shutdown_exit_signal_terminates_the_tree_in_order(workers: usize) {
    let rt = runtime(workers);
    let (sup, _) = start_named(&rt, rt.supervisor(Strategy::OneForOne), ["s0", "s1"]);
    let owner = Pid::from_raw(u64::MAX - 11);
    assert!(rt.send_exit(owner, sup.pid(), ExitReason::Shutdown));
    assert_eq!(
        run(&rt, sup.join()),
        ExitReason::Shutdown,
        "it exits with the reason it was given"
    );
    assert!(
        rt.list().is_empty(),
        "its children were terminated before it ended"
    );
}

fn which_children_reports_children(workers: usize) {
    let rt = runtime(workers);
    let (sup, named_pids) =
        start_named(&rt, rt.supervisor(Strategy::OneForOne), ["w0", "w1", "w2"]);
    let sup_pid = sup.pid();
    check(&rt, move |mut ctx| async move {
        let rt = ctx.runtime().clone();
        let listed = which_children(&mut ctx, sup_pid).await;
        assert_eq!(listed, named_pids, "its children, in start order");

        rt.kill(named_pids[1]);
        let w1b = wait_for_change(&rt, "w1", named_pids[1]).await;
        let listed = which_children(&mut ctx, sup_pid).await;
        assert_eq!(
            listed,
            [named_pids[0], w1b, named_pids[2]],
            "a restarted child is listed in its place"
        );
    });
    sup.kill();
    assert_eq!(run(&rt, sup.join()), ExitReason::Killed);
}

fn unlimited_restart_storm_is_linear_enough(workers: usize) {
    const CHILDREN: usize = 100;
    const CRASHES: usize = 100;
    silence_expected_panics();
    let rt = runtime(workers);
    let starts: Arc<Vec<AtomicUsize>> =
        Arc::new((0..CHILDREN).map(|_| AtomicUsize::new(0)).collect());
    let settled = Arc::new(AtomicUsize::new(0));
    let mut builder = rt.supervisor(Strategy::OneForOne).max_restarts(0);
    for i in 0..CHILDREN {
        let starts = starts.clone();
        let settled = settled.clone();
        builder = builder.child(move |r: &Runtime| {
            let starts = starts.clone();
            let settled = settled.clone();
            r.spawn(move |mut ctx| async move {
                // Crash on each of the first CRASHES starts, then stay up.
                let n = starts[i].fetch_add(1, Ordering::SeqCst) + 1;
                if n <= CRASHES {
                    panic!("{EXPECTED_PANIC} child {i} crash {n}");
                }
                settled.fetch_add(1, Ordering::SeqCst);
                loop {
                    let _ = ctx.recv().await;
                }
            })
        });
    }
    let sup = builder.start();
    let sup_pid = sup.pid();
    run(
        &rt,
        wait_until_timed("every child to settle", || {
            settled.load(Ordering::SeqCst) == CHILDREN
        }),
    );
    let total_starts: usize = starts.iter().map(|s| s.load(Ordering::SeqCst)).sum();
    assert_eq!(
        total_starts - CHILDREN,
        CHILDREN * CRASHES,
        "10,000 restarts: every crash restarted, none twice"
    );
    for (i, s) in starts.iter().enumerate() {
        assert_eq!(s.load(Ordering::SeqCst), CRASHES + 1, "child {i}");
    }
    assert!(
        rt.is_alive(sup_pid),
        "unlimited: the supervisor never gives up"
    );
    assert_eq!(
        rt.list().len(),
        CHILDREN + 1,
        "100 children alive, plus the supervisor"
    );
    check(&rt, move |mut ctx| async move {
        let listed = which_children(&mut ctx, sup_pid).await;
        assert_eq!(listed.len(), CHILDREN);
        let rt = ctx.runtime().clone();
        assert!(listed.iter().all(|&p| rt.is_alive(p)));
        assert_eq!(listed.iter().collect::<HashSet<_>>().len(), CHILDREN);
    });
    assert_eq!(rt.metrics().panics, (CHILDREN * CRASHES) as u64);
    sup.kill();
    assert_eq!(run(&rt, sup.join()), ExitReason::Killed);
    run(
        &rt,
        wait_until_timed("the tree to end", || rt.process_count() == 0),
    );
}

on_workers!(
    one_for_one_restarts_only_the_failed_child,
    one_for_all_restarts_every_child,
    rest_for_one_restarts_the_failed_and_later_children,
    restart_intensity_stops_the_supervisor,
    restart_intensity_over_lifetime,
    supervisor_gives_up_with_crashed,
    killing_the_supervisor_kills_its_children,
    shutdown_exit_signal_terminates_the_tree_in_order,
    which_children_reports_children,
    unlimited_restart_storm_is_linear_enough,
);
