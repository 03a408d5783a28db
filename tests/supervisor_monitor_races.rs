//! The supervisor's spawn monitors under races and careless use: a
//! supervisor killed while its children crash or restart, requests racing a
//! crash, factories that panic after spawning, a tree killed at its root, a
//! dynamic supervisor with 100,000 children, and a runtime dropped in the
//! middle of a restart storm. After each, the monitor table holds exactly
//! one monitor per running child, and nothing once the tree is gone.

mod support;

use rusm_otp::supervisor::{ChildSpec, Restart, Shutdown, SupervisorRef};
use rusm_otp::{ExitReason, Pid, ProcessHandle, Received, Runtime, Strategy};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use support::supervision::{idle, supervise_idle};
use support::{inner_handle, on_workers, run, runtime, silence_expected_panics, wait_until};

/// A child that crashes at once.
fn crasher(rt: &Runtime) -> ProcessHandle {
    rt.spawn(|ctx| async move {
        ctx.runtime().exit(ctx.pid(), ExitReason::Crashed);
    })
}

/// A one-for-one supervisor (unlimited budget) of an idle child and one
/// that crashes as soon as it starts, so it restarts it in a loop; and the
/// count of that child's starts.
fn restart_storm(rt: &Runtime) -> (ProcessHandle, Arc<AtomicU64>) {
    let starts = Arc::new(AtomicU64::new(0));
    let s = starts.clone();
    let sup = rt
        .supervisor(Strategy::OneForOne)
        .max_restarts(0)
        .child(idle)
        .child_spec(ChildSpec::new("storm", move |rt: &Runtime| {
            s.fetch_add(1, Ordering::SeqCst);
            crasher(rt)
        }))
        .start();
    (sup, starts)
}

/// Runs `start`, a supervisor's start, which must return (not panic), and
/// requires the supervisor it started to end `Crashed` and its whole tree
/// to be gone.
fn starts_then_crashes(rt: &Runtime, start: impl FnOnce() -> ProcessHandle) {
    let started = std::panic::catch_unwind(std::panic::AssertUnwindSafe(start));
    let sup = started.expect("start returns");
    assert_eq!(run(rt, sup.join()), ExitReason::Crashed);
    all_gone(rt);
}

/// The tree is gone and left no monitor behind.
fn all_gone(rt: &Runtime) {
    wait_until("every process to end", || rt.process_count() == 0);
    assert_eq!(rt.monitor_count(), 0, "a monitor outlived its tree");
}

/// One monitor per running child, each counted on its child. A child may be
/// between its end and its supervisor's handling of its `Down`, so this
/// waits (bounded) for the two counts to agree: a leaked or a lost monitor
/// never lets them.
fn exact(rt: &Runtime, sup: Pid) {
    let r = SupervisorRef::new(rt, sup);
    wait_until("one monitor per running child", || {
        let count = run(rt, r.count_children()).expect("the supervisor answers");
        let kids = run(rt, r.which_children()).expect("the supervisor answers");
        rt.monitor_count() == count.active
            && kids
                .iter()
                .filter_map(|c| c.pid)
                .filter_map(|p| rt.info(p))
                .all(|i| i.monitors == 1)
    });
}

/// Children crash at the moment their supervisor is killed: each `Down`
/// either reaches the dying supervisor (and is dropped with its mailbox) or
/// its monitor is removed first; none survives, on any worker count.
fn killed_while_its_children_crash(workers: usize) {
    let rt = runtime(workers);
    for round in 0..60 {
        let (sup, kids) = supervise_idle(&rt, Strategy::OneForAll, 4);
        let (rt2, sup_pid) = (rt.clone(), sup.pid());
        let killer = std::thread::spawn(move || {
            for _ in 0..round % 40 {
                std::hint::spin_loop();
            }
            rt2.kill(sup_pid);
        });
        for &k in &kids {
            rt.exit(k, ExitReason::Crashed);
        }
        killer.join().unwrap();
        assert_eq!(run(&rt, sup.join()), ExitReason::Killed);
        all_gone(&rt);
    }
}

/// A supervisor whose children crash as soon as they start restarts them in
/// a loop (unlimited budget) and is killed in the middle of it, some rounds
/// while a factory is running.
fn killed_in_a_restart_storm(workers: usize) {
    let rt = runtime(workers);
    for round in 0..30 {
        let (sup, starts) = restart_storm(&rt);
        let target = 2 + round as u64 * 7;
        wait_until("some restarts", || starts.load(Ordering::SeqCst) >= target);
        rt.kill(sup.pid());
        assert_eq!(run(&rt, sup.join()), ExitReason::Killed);
        all_gone(&rt);
    }
}

/// A factory that spawns its child and then panics, every other call: the
/// spawned process is no child, ends, and keeps no monitor, both at
/// `start_child` and in restarts.
fn a_factory_that_panics_after_spawning(workers: usize) {
    silence_expected_panics();
    let rt = runtime(workers);
    let calls = Arc::new(AtomicU64::new(0));
    let c = calls.clone();
    let half = move |rt: &Runtime| {
        let h = crasher(rt);
        if c.fetch_add(1, Ordering::SeqCst) % 2 == 0 {
            panic!("expected: a factory that panics after spawning");
        }
        h
    };
    let dynamic = rt.dynamic_supervisor().max_restarts(0).start();
    let d = SupervisorRef::new(&rt, dynamic.pid());
    let mut failed = 0;
    for _ in 0..20 {
        let spec = ChildSpec::new("half", half.clone()).restart(Restart::Transient);
        if run(&rt, d.start_child(spec)).is_err() {
            failed += 1;
        }
    }
    assert!(failed > 0);
    // The successful starts crash and are restarted through the same
    // factory until the counter lets them through; then they crash again,
    // forever. Let it churn, then check the table against the children.
    wait_until("restarts", || calls.load(Ordering::SeqCst) > 200);
    rt.kill(dynamic.pid());
    all_gone(&rt);

    // A static child whose factory spawns, then panics at the second start:
    // the supervisor gives up (over budget) and leaves nothing.
    let n = Arc::new(AtomicU64::new(0));
    let n2 = n.clone();
    let sup = rt
        .supervisor(Strategy::RestForOne)
        .max_restarts(2)
        .child(idle)
        .child_spec(ChildSpec::new("late", move |rt: &Runtime| {
            let h = idle(rt);
            if n2.fetch_add(1, Ordering::SeqCst) > 0 {
                panic!("expected: a factory that panics after spawning");
            }
            h
        }))
        .child(idle)
        .start();
    exact(&rt, sup.pid());
    let late = run(&rt, SupervisorRef::new(&rt, sup.pid()).which_children()).unwrap()[1]
        .pid
        .unwrap();
    rt.exit(late, ExitReason::Crashed);
    assert_eq!(run(&rt, sup.join()), ExitReason::Crashed);
    all_gone(&rt);
}

/// `terminate_child`, `restart_child` and `delete_child` race the child's
/// own crash: whichever wins, the supervisor holds one monitor per running
/// child.
fn requests_racing_a_crash(workers: usize) {
    let rt = runtime(workers);
    let sup = rt
        .supervisor(Strategy::OneForOne)
        .max_restarts(0)
        .child_spec(ChildSpec::new("a", idle).shutdown(Shutdown::BrutalKill))
        .child_spec(ChildSpec::new("b", idle).restart(Restart::Transient))
        .child(idle)
        .start();
    let r = SupervisorRef::new(&rt, sup.pid());
    for round in 0..100 {
        let id = if round % 2 == 0 { "a" } else { "b" };
        let pid = run(&rt, r.which_children())
            .unwrap()
            .into_iter()
            .find(|c| c.id == id)
            .and_then(|c| c.pid);
        if let Some(pid) = pid {
            let rt2 = rt.clone();
            let crash = std::thread::spawn(move || {
                for _ in 0..round % 50 {
                    std::hint::spin_loop();
                }
                rt2.exit(pid, ExitReason::Crashed);
            });
            let _ = run(&rt, r.terminate_child(id));
            crash.join().unwrap();
        }
        // The child is stopped (terminated) or running again (restarted by
        // its crash before the request): either way the table is exact.
        exact(&rt, sup.pid());
        match run(&rt, r.restart_child(id)) {
            Ok(_) | Err(rusm_otp::supervisor::SupervisorError::Running) => {}
            Err(e) => panic!("restart_child: {e:?}"),
        }
        exact(&rt, sup.pid());
        if round % 10 == 9 {
            let _ = run(&rt, r.terminate_child(id));
            run(&rt, r.delete_child(id)).unwrap();
            exact(&rt, sup.pid());
            let spec = if id == "a" {
                ChildSpec::new("a", idle).shutdown(Shutdown::BrutalKill)
            } else {
                ChildSpec::new("b", idle).restart(Restart::Transient)
            };
            run(&rt, r.start_child(spec)).unwrap();
            exact(&rt, sup.pid());
        }
    }
    rt.kill(sup.pid());
    all_gone(&rt);
}

/// A child that meddles with its own signals (unlinks its supervisor,
/// monitors and demonitors others, registers a name, so it has aux data
/// besides its spawn monitor) still gives exactly one `Down` per death.
fn a_child_that_meddles_with_its_signals(workers: usize) {
    let rt = runtime(workers);
    let other = idle(&rt);
    let o = other.pid();
    let deaths = Arc::new(AtomicU64::new(0));
    let d = deaths.clone();
    let sup = rt
        .supervisor(Strategy::OneForOne)
        .max_restarts(0)
        .child_spec(ChildSpec::new("meddler", move |rt: &Runtime| {
            let d = d.clone();
            rt.spawn(move |mut ctx| async move {
                let me = ctx.pid();
                let rt2 = ctx.runtime().clone();
                rt2.link(me, o);
                rt2.unlink(me, o);
                let m = rt2.monitor(me, o);
                let kept = rt2.monitor(me, o);
                assert!(rt2.demonitor(m));
                let _ = kept;
                rt2.register(format!("meddler-{}", me.raw()), me);
                if let Received::Message(_) = ctx.recv().await {
                    d.fetch_add(1, Ordering::SeqCst);
                    rt2.exit(me, ExitReason::Crashed);
                }
            })
        }))
        .start();
    let r = SupervisorRef::new(&rt, sup.pid());
    for round in 0..20u64 {
        let pid = run(&rt, r.which_children()).unwrap()[0].pid.unwrap();
        wait_until("the meddler to settle", || {
            rt.info(pid).is_some_and(|i| !i.names.is_empty())
        });
        // Its spawn monitor only: it watches `other`, nobody else watches it.
        assert_eq!(rt.info(pid).unwrap().monitors, 1);
        // The supervisor's one, and the meddler's one on `other`.
        assert_eq!(rt.monitor_count(), 2);
        rt.send(pid, ());
        wait_until("the restart", || {
            deaths.load(Ordering::SeqCst) == round + 1
                && run(&rt, r.which_children()).unwrap()[0]
                    .pid
                    .is_some_and(|p| p != pid)
        });
    }
    rt.kill(sup.pid());
    rt.kill(other.pid());
    all_gone(&rt);
}

/// A tree three levels deep killed at its root, while leaves crash.
fn a_tree_killed_at_its_root(workers: usize) {
    let rt = runtime(workers);
    let leaves = Arc::new(Mutex::new(Vec::new()));
    let l = leaves.clone();
    let leaf = move |rt: &Runtime| {
        let h = idle(rt);
        l.lock().unwrap().push(h.pid());
        h
    };
    let mid = {
        let leaf = leaf.clone();
        move |rt: &Runtime| {
            let l = leaf.clone();
            let inner = move |rt: &Runtime| {
                rt.supervisor(Strategy::OneForAll)
                    .max_restarts(0)
                    .child(l.clone())
                    .child(l.clone())
                    .start()
            };
            rt.supervisor(Strategy::RestForOne)
                .max_restarts(0)
                .child_spec(ChildSpec::new("inner", inner.clone()).supervisor())
                .child(leaf.clone())
                .child_spec(ChildSpec::new("inner2", inner).supervisor())
                .start()
        }
    };
    for _ in 0..10 {
        let root = rt
            .supervisor(Strategy::OneForOne)
            .max_restarts(0)
            .child_spec(ChildSpec::new("m1", mid.clone()).supervisor())
            .child_spec(ChildSpec::new("m2", mid.clone()).supervisor())
            .start();
        // 2 mids, 4 inners, 10 leaves: one monitor on each.
        assert_eq!(rt.monitor_count(), 16);
        let some: Vec<Pid> = leaves
            .lock()
            .unwrap()
            .iter()
            .rev()
            .take(4)
            .copied()
            .collect();
        for p in some {
            rt.exit(p, ExitReason::Crashed);
        }
        rt.kill(root.pid());
        assert_eq!(run(&rt, root.join()), ExitReason::Killed);
        all_gone(&rt);
        leaves.lock().unwrap().clear();
    }
}

on_workers!(
    killed_while_its_children_crash,
    killed_in_a_restart_storm,
    a_factory_that_panics_after_spawning,
    requests_racing_a_crash,
    a_child_that_meddles_with_its_signals,
    a_tree_killed_at_its_root,
    a_supervisor_killed_while_it_starts,
    specs_left_unstarted_are_dropped_by_the_supervisor,
    a_factory_panic_whose_payload_panics_when_dropped,
    a_factory_that_spawns_on_another_runtime,
);

/// 100,000 dynamic children, each with its monitor, all dropped when the
/// supervisor is killed.
#[test]
fn a_dynamic_supervisor_with_100_000_children_killed_at_once() {
    let rt = runtime(2);
    let sup = rt.dynamic_supervisor().start();
    let r = SupervisorRef::new(&rt, sup.pid());
    run(&rt, async {
        for _ in 0..100_000 {
            r.start_child(ChildSpec::new("w", idle)).await.unwrap();
        }
    });
    assert_eq!(rt.monitor_count(), 100_000);
    assert_eq!(rt.process_count(), 100_001);
    rt.kill(sup.pid());
    assert_eq!(run(&rt, sup.join()), ExitReason::Killed);
    all_gone(&rt);
}

/// The runtime is dropped in the middle of a restart storm: the drop ends,
/// and no destructor panics on the way.
#[test]
fn runtime_dropped_in_a_restart_storm() {
    for workers in [1, 2, 4] {
        let rt = runtime(workers);
        let (_sup, starts) = restart_storm(&rt);
        let dynamic = rt.dynamic_supervisor().max_restarts(0).start();
        let d = SupervisorRef::new(&rt, dynamic.pid());
        run(&rt, async {
            for _ in 0..100 {
                d.start_child(ChildSpec::new("s", crasher)).await.unwrap();
            }
        });
        wait_until("a storm", || starts.load(Ordering::SeqCst) > 100);
        let watcher = inner_handle(&rt);
        let done = Arc::new(AtomicBool::new(false));
        let d2 = done.clone();
        let dropper = std::thread::spawn(move || {
            drop(rt);
            d2.store(true, Ordering::SeqCst);
        });
        wait_until("the drop to end", || done.load(Ordering::SeqCst));
        dropper.join().unwrap();
        assert_eq!(watcher.metrics().unowned_panics, 0);
        assert_eq!(watcher.process_count(), 0);
        assert_eq!(watcher.monitor_count(), 0);
    }
}

/// A careless factory that spawns its child on another runtime: pids are
/// numbered per runtime, so that child's pid names some unrelated process
/// of the supervisor's own runtime. The supervisor must not take that
/// bystander for its child (monitor it, kill it when the tree stops): the
/// start fails instead.
fn a_factory_that_spawns_on_another_runtime(workers: usize) {
    silence_expected_panics();
    let rt = runtime(workers);
    let other = runtime(1);
    // Pid 1 of `rt`; `other`'s first spawn is its pid 1 too.
    let bystander = idle(&rt);
    let o = other.clone();
    let started = Arc::new(Mutex::new(Vec::new()));
    let s = started.clone();
    let sup = rt
        .supervisor(Strategy::OneForOne)
        .child_spec(ChildSpec::new("foreign", move |_: &Runtime| {
            let h = idle(&o);
            s.lock().unwrap().push(h.pid());
            h
        }))
        .start();
    assert_eq!(started.lock().unwrap()[0], bystander.pid());
    // The foreign child is no child: the supervisor gave up at start.
    assert_eq!(run(&rt, sup.join()), ExitReason::Crashed);
    assert!(
        rt.is_alive(bystander.pid()),
        "the supervisor killed a bystander"
    );
    assert_eq!(rt.info(bystander.pid()).unwrap().monitors, 0);
    assert_eq!(rt.monitor_count(), 0);
    // And through `start_child`, with the same answer.
    let dynamic = rt.dynamic_supervisor().start();
    let d = SupervisorRef::new(&rt, dynamic.pid());
    let o = other.clone();
    let res = run(
        &rt,
        d.start_child(ChildSpec::new("foreign", move |_: &Runtime| idle(&o))),
    );
    assert!(
        matches!(
            res,
            Err(rusm_otp::supervisor::SupervisorError::StartFailed(_))
        ),
        "{res:?}"
    );
    assert_eq!(rt.monitor_count(), 0);
    rt.kill(dynamic.pid());
    rt.kill(bystander.pid());
    all_gone(&rt);
    other.shutdown();
}

/// A panic payload whose own destructor panics.
struct PanicOnDrop;
impl Drop for PanicOnDrop {
    fn drop(&mut self) {
        panic!("expected: a panic payload that panics when dropped");
    }
}

/// A factory that panics with a payload whose destructor panics too: the
/// payload is user code the supervisor drops, so that second panic must not
/// escape `start` (leaving a supervisor that never runs, and the monitor on
/// the child it had spawned, forever) nor crash a dynamic supervisor that
/// is to answer `StartFailed` and carry on. It is counted as unowned.
fn a_factory_panic_whose_payload_panics_when_dropped(workers: usize) {
    silence_expected_panics();
    let rt = runtime(workers);
    starts_then_crashes(&rt, || {
        rt.supervisor(Strategy::OneForOne)
            .child(idle)
            .child(|rt: &Runtime| -> ProcessHandle {
                let _spawned_first = idle(rt);
                std::panic::panic_any(PanicOnDrop)
            })
            .start()
    });
    assert_eq!(rt.metrics().unowned_panics, 1);

    let dynamic = rt.dynamic_supervisor().start();
    let d = SupervisorRef::new(&rt, dynamic.pid());
    let res = run(
        &rt,
        d.start_child(ChildSpec::new("bad", |rt: &Runtime| -> ProcessHandle {
            let _spawned_first = idle(rt);
            std::panic::panic_any(PanicOnDrop)
        })),
    );
    assert!(
        matches!(
            res,
            Err(rusm_otp::supervisor::SupervisorError::StartFailed(_))
        ),
        "{res:?}"
    );
    // It carries on.
    run(&rt, d.start_child(ChildSpec::new("good", idle))).unwrap();
    assert_eq!(rt.monitor_count(), 1);
    rt.kill(dynamic.pid());
    all_gone(&rt);
    assert_eq!(rt.metrics().unowned_panics, 2);
}

/// Dropping it panics (a value a factory captures).
struct DropPanics;
impl Drop for DropPanics {
    fn drop(&mut self) {
        panic!("expected: a factory's capture that panics when dropped");
    }
}

/// A factory of idle children that owns `capture`, dropped with it.
fn idle_owning(capture: DropPanics) -> impl Fn(&Runtime) -> ProcessHandle + Send + Sync + 'static {
    move |rt: &Runtime| {
        let _ = &capture;
        idle(rt)
    }
}

/// A static child's factory fails at start, and a later child's factory
/// (never run) owns a value whose destructor panics: that spec is dropped
/// with the supervisor (whose end owns the panic), not inside `start`,
/// where the panic would leave a supervisor that never runs.
fn specs_left_unstarted_are_dropped_by_the_supervisor(workers: usize) {
    silence_expected_panics();
    let rt = runtime(workers);
    starts_then_crashes(&rt, || {
        rt.supervisor(Strategy::OneForOne)
            .child(idle)
            .child(|_: &Runtime| -> ProcessHandle { panic!("expected: a failing factory") })
            .child(idle_owning(DropPanics))
            .start()
    });
}

/// A static factory shuts the runtime down (every process is killed, the
/// supervisor before it first runs, and the runtime stays usable), and a
/// later spec owns a value whose destructor panics: the supervisor's state
/// must go with its own end (under its guard, before it leaves the table),
/// not later on the caller's thread, out of `start`.
fn a_supervisor_killed_while_it_starts(workers: usize) {
    silence_expected_panics();
    let rt = runtime(workers);
    // Killed; its state's destructor panicked, so it ends `Crashed`.
    starts_then_crashes(&rt, || {
        rt.supervisor(Strategy::OneForOne)
            .child(|rt: &Runtime| {
                rt.shutdown();
                idle(rt)
            })
            .child(idle_owning(DropPanics))
            .start()
    });
}
