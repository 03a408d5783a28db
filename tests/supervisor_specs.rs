//! Child specs, restart types, orderly stops and the supervisor's own exit
//! rules: every restart type against every way a child ends, temporary
//! bystanders, escalation, the intensity window, stop order, shutdown
//! timeouts, and what happens to the children of a killed supervisor.

mod support;

use rusm_otp::supervisor::{ChildInfo, ChildSpec, Restart, Shutdown, SupervisorRef};
use rusm_otp::{Context, ExitReason, Pid, ProcessHandle, Received, Runtime, Strategy};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::supervision::{idle, supervise_stubborn};
use support::{EXPECTED_PANIC, on_workers, run, runtime, silence_expected_panics, wait_until};

/// How a [`told`] child ends when told.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum End {
    Normal,
    Shutdown,
    Crash,
}

/// A child that idles until it receives an [`End`], then ends that way.
fn told(rt: &Runtime) -> ProcessHandle {
    rt.spawn(|mut ctx| async move {
        loop {
            if let Received::Message(m) = ctx.recv().await {
                if let Ok(end) = m.downcast::<End>() {
                    match end {
                        End::Normal => return,
                        End::Shutdown => {
                            let me = ctx.pid();
                            ctx.runtime().exit(me, ExitReason::Shutdown);
                            return;
                        }
                        End::Crash => panic!("{EXPECTED_PANIC} told to crash"),
                    }
                }
            }
        }
    })
}

fn which(rt: &Runtime, sup: Pid) -> Vec<ChildInfo> {
    let r = SupervisorRef::new(rt, sup);
    run(rt, r.which_children()).expect("the supervisor answers")
}

fn pid_of(rt: &Runtime, sup: Pid, id: &str) -> Option<Pid> {
    which(rt, sup)
        .into_iter()
        .find(|c| c.id == id)
        .expect("the child is listed")
        .pid
}

/// A process that watches `pid` (the monitor is in place when this
/// returns) and ends with `pid`'s exit reason; see [`down`].
fn watch(rt: &Runtime, pid: Pid) -> ProcessHandle {
    let h = rt.spawn(|mut ctx| async move {
        if let Received::Down { reason, .. } = ctx.recv().await {
            if reason != ExitReason::Normal {
                let me = ctx.pid();
                ctx.runtime().exit(me, reason);
            }
        }
    });
    rt.monitor(h.pid(), pid);
    h
}

/// The exit reason of the process `watcher` watches.
fn down(rt: &Runtime, watcher: ProcessHandle) -> ExitReason {
    run(rt, watcher.join())
}

fn every_restart_type_against_every_end(workers: usize) {
    silence_expected_panics();
    let rt = runtime(workers);
    for restart in [Restart::Permanent, Restart::Transient, Restart::Temporary] {
        for end in [End::Normal, End::Shutdown, End::Crash] {
            let sup = rt
                .supervisor(Strategy::OneForOne)
                .child_spec(ChildSpec::new("c", told).restart(restart))
                .start();
            let s = sup.pid();
            let old = pid_of(&rt, s, "c").expect("running");
            // A monitor placed now fires after the supervisor's (placed
            // when the child was spawned), so once it fires the
            // supervisor's Down is ahead of the request below.
            let w = watch(&rt, old);
            assert!(rt.send(old, end));
            let reason = down(&rt, w);
            let expected_reason = match end {
                End::Normal => ExitReason::Normal,
                End::Shutdown => ExitReason::Shutdown,
                End::Crash => ExitReason::Crashed,
            };
            assert_eq!(reason, expected_reason);
            let restarted = match restart {
                Restart::Permanent => true,
                Restart::Transient => end == End::Crash,
                Restart::Temporary => false,
            };
            let children = which(&rt, s);
            match (restart, restarted) {
                (_, true) => {
                    assert_eq!(children.len(), 1, "{restart:?} {end:?}");
                    let p = children[0].pid.expect("restarted");
                    assert_ne!(p, old, "{restart:?} {end:?}: a fresh pid");
                    assert!(rt.is_alive(p));
                }
                (Restart::Temporary, false) => {
                    assert!(children.is_empty(), "{end:?}: a temporary spec is dropped");
                }
                (_, false) => {
                    assert_eq!(children.len(), 1, "{restart:?} {end:?}");
                    assert_eq!(children[0].pid, None, "{restart:?} {end:?}: kept, stopped");
                }
            }
            assert!(rt.is_alive(s));
            rt.kill(s);
            assert_eq!(run(&rt, sup.join()), ExitReason::Killed);
        }
    }
}

fn a_temporary_bystander_under_one_for_all_is_stopped_not_restarted_and_costs_nothing(
    workers: usize,
) {
    silence_expected_panics();
    let rt = runtime(workers);
    let sup = rt
        .supervisor(Strategy::OneForAll)
        .max_restarts(1)
        .within(Duration::from_secs(600))
        .child_spec(ChildSpec::new("victim", told))
        .child_spec(ChildSpec::new("t1", told).restart(Restart::Temporary))
        .child_spec(ChildSpec::new("t2", told).restart(Restart::Temporary))
        .child_spec(ChildSpec::new("bystander", idle).restart(Restart::Temporary))
        .child_spec(ChildSpec::new("other", idle))
        .start();
    let s = sup.pid();
    let other = pid_of(&rt, s, "other").unwrap();
    // Two temporary children crash: neither is restarted, nothing else
    // moves, and neither is charged (the budget is one restart).
    for t in ["t1", "t2"] {
        let p = pid_of(&rt, s, t).unwrap();
        let w = watch(&rt, p);
        rt.send(p, End::Crash);
        assert_eq!(down(&rt, w), ExitReason::Crashed);
        assert!(which(&rt, s).iter().all(|c| c.id != t), "{t} is gone");
        assert_eq!(pid_of(&rt, s, "other"), Some(other), "nothing restarted");
    }
    let bystander = pid_of(&rt, s, "bystander").unwrap();
    let victim = pid_of(&rt, s, "victim").unwrap();
    let w = watch(&rt, bystander);
    rt.send(victim, End::Crash);
    assert_eq!(
        down(&rt, w),
        ExitReason::Shutdown,
        "the bystander is stopped with Shutdown"
    );
    let ids: Vec<String> = which(&rt, s).into_iter().map(|c| c.id).collect();
    assert_eq!(ids, ["victim", "other"], "the bystander is not restarted");
    let count = run(&rt, SupervisorRef::new(&rt, s).count_children()).unwrap();
    assert_eq!((count.specs, count.active), (2, 2));
    assert_ne!(pid_of(&rt, s, "other"), Some(other), "one for all");
    assert!(rt.is_alive(s), "one restart is within the budget");
    rt.kill(s);
    run(&rt, sup.join());
}

fn escalation_through_two_levels(workers: usize) {
    let rt = runtime(workers);
    let mids = Arc::new(AtomicU32::new(0));
    let m = mids.clone();
    let top = rt
        .supervisor(Strategy::OneForOne)
        .max_restarts(5)
        .within(Duration::from_secs(600))
        .child_spec(
            ChildSpec::new("mid", move |rt: &Runtime| {
                m.fetch_add(1, Ordering::SeqCst);
                rt.supervisor(Strategy::OneForOne)
                    .max_restarts(1)
                    .within(Duration::from_secs(600))
                    .child_spec(ChildSpec::new("leaf", idle))
                    .child_spec(ChildSpec::new("leaf2", idle))
                    .start()
            })
            .supervisor(),
        )
        .start();
    let t = top.pid();
    let mid = pid_of(&rt, t, "mid").unwrap();
    let leaf = pid_of(&rt, mid, "leaf").unwrap();
    let leaf2 = pid_of(&rt, mid, "leaf2").unwrap();
    // One restart is within the middle supervisor's budget...
    let w = watch(&rt, leaf);
    rt.kill(leaf);
    assert_eq!(down(&rt, w), ExitReason::Killed);
    let leaf_b = pid_of(&rt, mid, "leaf").expect("restarted by mid");
    // ...the second is not: mid gives up, stopping leaf2, and top restarts it.
    let (wm, w2) = (watch(&rt, mid), watch(&rt, leaf2));
    rt.kill(leaf_b);
    assert_eq!(down(&rt, wm), ExitReason::Crashed);
    assert_eq!(down(&rt, w2), ExitReason::Shutdown);
    let infos = which(&rt, t);
    assert_eq!(infos.len(), 1);
    assert!(infos[0].supervisor);
    let mid_b = infos[0].pid.expect("top restarted mid");
    assert_ne!(mid_b, mid);
    assert_eq!(mids.load(Ordering::SeqCst), 2);
    let fresh = which(&rt, mid_b);
    assert_eq!(fresh.len(), 2);
    for c in &fresh {
        let p = c.pid.expect("fresh children run");
        assert!(![leaf, leaf_b, leaf2].contains(&p), "fresh pids");
        assert!(rt.is_alive(p));
    }
    rt.kill(t);
    run(&rt, top.join());
    wait_until("the tree to end", || rt.process_count() == 0);
}

fn restarts_spaced_wider_than_the_window_never_exhaust_it(workers: usize) {
    let rt = runtime(workers);
    let window = Duration::from_millis(30);
    let sup = rt
        .supervisor(Strategy::OneForOne)
        .max_restarts(1)
        .within(window)
        .child_spec(ChildSpec::new("c", idle))
        .start();
    let s = sup.pid();
    for round in 0..5 {
        let p = pid_of(&rt, s, "c").unwrap();
        let killed = Instant::now();
        let w = watch(&rt, p);
        rt.kill(p);
        assert_eq!(down(&rt, w), ExitReason::Killed);
        assert!(rt.is_alive(s), "round {round}: within budget");
        // Let the window pass: a receive that times out.
        let rest = (window * 2).saturating_sub(killed.elapsed());
        let waiter = rt.spawn(move |mut ctx| async move {
            assert!(ctx.recv_timeout(rest).await.is_none());
        });
        run(&rt, waiter.join());
    }
    assert!(rt.is_alive(s), "five restarts, never two in one window");
    rt.kill(s);
    assert_eq!(run(&rt, sup.join()), ExitReason::Killed);
}

/// Children that record, in a shared log, when a stop reaches them and
/// when they end; each traps exits and lingers a little before ending, so
/// stops that overlapped would interleave in the log.
fn logging(
    log: Arc<Mutex<Vec<String>>>,
    name: &'static str,
) -> impl Fn(&Runtime) -> ProcessHandle + Send + Sync + 'static {
    move |rt: &Runtime| {
        let log = log.clone();
        log.lock().unwrap().push(format!("start {name}"));
        rt.spawn(move |mut ctx: Context| async move {
            let me = ctx.pid();
            ctx.runtime().set_trap_exit(me, true);
            loop {
                if let Received::Exit {
                    reason: ExitReason::Shutdown,
                    ..
                } = ctx.recv().await
                {
                    log.lock().unwrap().push(format!("stop {name}"));
                    let _ = ctx.recv_timeout(Duration::from_millis(5)).await;
                    log.lock().unwrap().push(format!("end {name}"));
                    let me = ctx.pid();
                    ctx.runtime().exit(me, ExitReason::Shutdown);
                    return;
                }
            }
        })
    }
}

fn children_stop_one_at_a_time_in_reverse_start_order(workers: usize) {
    let rt = runtime(workers);
    let log = Arc::new(Mutex::new(Vec::new()));
    let mut b = rt.supervisor(Strategy::OneForAll);
    for name in ["a", "b", "c", "d"] {
        b = b.child_spec(ChildSpec::new(name, logging(log.clone(), name)));
    }
    let sup = b.start();
    let s = sup.pid();
    let d = pid_of(&rt, s, "d").unwrap();
    let a = pid_of(&rt, s, "a").unwrap();
    // Kill the first child: one for all stops the rest, last started
    // first, then starts all of them in order.
    rt.kill(a);
    wait_until("the restart", || {
        log.lock()
            .unwrap()
            .iter()
            .filter(|l| l.starts_with("start"))
            .count()
            == 8
    });
    assert!(!rt.is_alive(d));
    let expected: Vec<String> = [
        "start a", "start b", "start c", "start d", "stop d", "end d", "stop c", "end c", "stop b",
        "end b", "start a", "start b", "start c", "start d",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(*log.lock().unwrap(), expected);
    // And the same when the supervisor is told to stop.
    log.lock().unwrap().clear();
    let owner = Pid::from_raw(u64::MAX - 3);
    rt.send_exit(owner, s, ExitReason::Shutdown);
    assert_eq!(run(&rt, sup.join()), ExitReason::Shutdown);
    let expected: Vec<String> = [
        "stop d", "end d", "stop c", "end c", "stop b", "end b", "stop a", "end a",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(*log.lock().unwrap(), expected);
    assert_eq!(rt.process_count(), 0);
}

fn a_timeout_child_that_traps_and_ignores_shutdown_is_killed_after_its_timeout(workers: usize) {
    let rt = runtime(workers);
    let h = rt.spawn(|mut ctx| async move {
        let me = ctx.pid();
        let rt = ctx.runtime().clone();
        let timeout = Shutdown::Timeout(Duration::from_millis(50));
        let sup = supervise_stubborn(&rt, "stubborn", me, timeout);
        let r = SupervisorRef::new(&rt, sup.pid());
        let child = r.which_children().await.unwrap()[0].pid.unwrap();
        rt.monitor(me, child);
        assert_eq!(r.terminate_child("stubborn").await, Ok(()));
        // The stop reached it as a Shutdown exit signal, and it was then
        // killed: by the time terminate_child answered, it was down.
        let mut saw_exit = false;
        let mut reason = None;
        while let Some(item) = ctx.recv_timeout(Duration::ZERO).await {
            match item {
                Received::Message(m) => {
                    let (from, why) = m.downcast::<(Pid, ExitReason)>().unwrap();
                    assert_eq!((from, why), (child, ExitReason::Shutdown));
                    saw_exit = true;
                }
                Received::Down { reason: r, .. } => reason = Some(r),
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(saw_exit, "it was asked first");
        assert_eq!(reason, Some(ExitReason::Killed), "then killed");
        assert!(!rt.is_alive(child));
        assert_eq!(r.which_children().await.unwrap()[0].pid, None);
        rt.kill(sup.pid());
    });
    assert_eq!(run(&rt, h.join()), ExitReason::Normal);
}

fn infinity_waits_for_the_child(workers: usize) {
    let rt = runtime(workers);
    let h = rt.spawn(|mut ctx| async move {
        let me = ctx.pid();
        let rt = ctx.runtime().clone();
        // The child traps exits and ends only when told to, after its stop
        // began.
        let factory = move |rt: &Runtime| {
            rt.spawn(move |mut ctx| async move {
                let child = ctx.pid();
                ctx.runtime().set_trap_exit(child, true);
                loop {
                    match ctx.recv().await {
                        Received::Exit {
                            reason: ExitReason::Shutdown,
                            ..
                        } => {
                            ctx.runtime().send(me, "stopping");
                        }
                        Received::Message(m) if m.is::<End>() => {
                            let child = ctx.pid();
                            ctx.runtime().exit(child, ExitReason::Shutdown);
                            return;
                        }
                        _ => {}
                    }
                }
            })
        };
        let sup = rt
            .supervisor(Strategy::OneForOne)
            .child_spec(ChildSpec::new("slow", factory).shutdown(Shutdown::Infinity))
            .start();
        let r = SupervisorRef::new(&rt, sup.pid());
        let child = r.which_children().await.unwrap()[0].pid.unwrap();
        let r2 = r.clone();
        let terminator = rt.spawn(move |mut ctx| async move {
            let res = r2.terminate_child("slow").await;
            ctx.runtime().send(me, ("answered", res));
            let _ = ctx.try_recv();
        });
        let m = ctx.recv().await.message().unwrap();
        assert_eq!(m.downcast::<&str>().unwrap(), "stopping");
        // Well past a default timeout's worth of waiting would be too long
        // for a test; 200 ms past the stop, the supervisor still waits.
        assert!(
            ctx.recv_timeout(Duration::from_millis(200)).await.is_none(),
            "terminate_child must not answer while the child runs"
        );
        assert!(rt.is_alive(child));
        rt.send(child, End::Normal);
        let m = ctx.recv().await.message().unwrap();
        let (_, res) = m
            .downcast::<(&str, Result<(), rusm_otp::supervisor::SupervisorError>)>()
            .unwrap();
        assert_eq!(res, Ok(()));
        assert!(!rt.is_alive(child));
        rt.kill(sup.pid());
        drop(terminator);
    });
    assert_eq!(run(&rt, h.join()), ExitReason::Normal);
}

fn a_normal_exit_signal_from_a_non_child_is_ignored_an_abnormal_one_stops_the_tree(workers: usize) {
    let rt = runtime(workers);
    let sup = rt
        .supervisor(Strategy::OneForOne)
        .child_spec(ChildSpec::new("c", idle))
        .start();
    let s = sup.pid();
    let c = pid_of(&rt, s, "c").unwrap();
    // A linked process that ends normally.
    let friend = rt.spawn_link(s, |_ctx| async move {});
    assert_eq!(run(&rt, friend.join()), ExitReason::Normal);
    assert_eq!(pid_of(&rt, s, "c"), Some(c), "nothing moved");
    assert!(rt.is_alive(s));
    // An owner that crashes.
    let owner = rt.spawn_link(s, |mut ctx| async move {
        let _ = ctx.recv().await;
        panic!("{EXPECTED_PANIC} owner");
    });
    silence_expected_panics();
    rt.send(owner.pid(), ());
    assert_eq!(run(&rt, sup.join()), ExitReason::Crashed);
    assert!(!rt.is_alive(c));
}

fn start_returns_with_every_static_child_started(workers: usize) {
    let rt = runtime(workers);
    let started = Arc::new(AtomicUsize::new(0));
    let mut b = rt.supervisor(Strategy::OneForOne);
    for i in 0..5 {
        let started = started.clone();
        b = b.child_spec(ChildSpec::new(format!("c{i}"), move |rt: &Runtime| {
            started.fetch_add(1, Ordering::SeqCst);
            idle(rt)
        }));
    }
    let sup = b.start();
    // No waiting: the factories have run and the children exist.
    assert_eq!(started.load(Ordering::SeqCst), 5);
    assert_eq!(rt.list().len(), 6);
    let infos = which(&rt, sup.pid());
    let ids: Vec<&str> = infos.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["c0", "c1", "c2", "c3", "c4"]);
    assert!(infos.iter().all(|c| c.pid.is_some()));
    rt.kill(sup.pid());
    run(&rt, sup.join());
}

#[test]
fn start_from_a_process_on_one_worker_does_not_block() {
    let rt = runtime(1);
    let h = rt.spawn(|ctx| async move {
        let rt = ctx.runtime().clone();
        let sup = rt
            .supervisor(Strategy::OneForOne)
            .child(idle)
            .child(idle)
            .start();
        let infos = SupervisorRef::new(&rt, sup.pid())
            .which_children()
            .await
            .unwrap();
        assert_eq!(infos.len(), 2);
        assert_eq!(infos[1].id, "child-1");
        rt.kill(sup.pid());
    });
    assert_eq!(run(&rt, h.join()), ExitReason::Normal);
}

fn a_factory_that_panics_at_start_stops_the_started_children_and_crashes_with_its_message(
    workers: usize,
) {
    silence_expected_panics();
    let rt = runtime(workers);
    let first = Arc::new(Mutex::new(None));
    let f = first.clone();
    let sup = rt
        .supervisor(Strategy::OneForOne)
        .child_spec(ChildSpec::new("ok", move |rt: &Runtime| {
            let h = idle(rt);
            // Watched from the start: the supervisor may stop it before
            // `start` returns.
            *f.lock().unwrap() = Some(watch(rt, h.pid()));
            h
        }))
        .child_spec(ChildSpec::new("bad", |_rt: &Runtime| -> ProcessHandle {
            panic!("{EXPECTED_PANIC} no database")
        }))
        .child_spec(ChildSpec::new("never", idle))
        .start();
    assert_eq!(
        rt.spawned(),
        3,
        "the supervisor, one child and its watcher: 'never' never ran"
    );
    let ok_watch = first
        .lock()
        .unwrap()
        .take()
        .expect("the first child started");
    wait_until("the supervisor to end", || sup.is_finished());
    let msg = sup.panic_message().expect("the panic message is kept");
    assert_eq!(run(&rt, sup.join()), ExitReason::Crashed);
    assert!(msg.contains("no database"), "{msg}");
    assert!(msg.contains("\"bad\""), "{msg}");
    assert_eq!(
        down(&rt, ok_watch),
        ExitReason::Shutdown,
        "what it started is stopped"
    );
    wait_until("the tree to end", || rt.process_count() == 0);
}

fn a_factory_that_panics_during_a_restart_counts_as_the_child_crashing_again(workers: usize) {
    silence_expected_panics();
    let rt = runtime(workers);
    let calls = Arc::new(AtomicU32::new(0));
    let c = calls.clone();
    let sup = rt
        .supervisor(Strategy::OneForOne)
        .max_restarts(3)
        .within(Duration::from_secs(600))
        .child_spec(ChildSpec::new("flaky", move |rt: &Runtime| {
            if c.fetch_add(1, Ordering::SeqCst) > 0 {
                panic!("{EXPECTED_PANIC} factory");
            }
            idle(rt)
        }))
        .start();
    let p = pid_of(&rt, sup.pid(), "flaky").unwrap();
    rt.kill(p);
    assert_eq!(run(&rt, sup.join()), ExitReason::Crashed);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        4,
        "the start, then three charged retries; the fourth charge is over budget"
    );
}

fn children_that_trap_exits_do_not_outlive_a_killed_supervisor(workers: usize) {
    let rt = runtime(workers);
    let trapper = |rt: &Runtime| {
        rt.spawn(|mut ctx| async move {
            let me = ctx.pid();
            ctx.runtime().set_trap_exit(me, true);
            loop {
                ctx.recv().await;
            }
        })
    };
    let sup = rt
        .supervisor(Strategy::OneForOne)
        .child(trapper)
        .child(trapper)
        .start();
    let kids: Vec<ProcessHandle> = which(&rt, sup.pid())
        .iter()
        .map(|c| watch(&rt, c.pid.unwrap()))
        .collect();
    assert_eq!(kids.len(), 2);
    rt.kill(sup.pid());
    for k in kids {
        assert_eq!(down(&rt, k), ExitReason::Killed);
    }
    wait_until("the tree to end", || rt.process_count() == 0);
}

fn a_child_that_unlinks_itself_is_still_restarted(workers: usize) {
    silence_expected_panics();
    let rt = runtime(workers);
    let sup = rt
        .supervisor(Strategy::OneForOne)
        .child_spec(ChildSpec::new("loner", |rt: &Runtime| {
            rt.spawn(|mut ctx| async move {
                let me = ctx.pid();
                for p in ctx.runtime().list() {
                    ctx.runtime().unlink(me, p);
                }
                let _ = ctx.recv().await;
                panic!("{EXPECTED_PANIC} loner");
            })
        }))
        .start();
    let p = pid_of(&rt, sup.pid(), "loner").unwrap();
    let w = watch(&rt, p);
    rt.send(p, ());
    assert_eq!(down(&rt, w), ExitReason::Crashed);
    let q = pid_of(&rt, sup.pid(), "loner").expect("restarted");
    assert_ne!(p, q);
    rt.kill(sup.pid());
}

fn a_child_that_ended_before_it_could_be_monitored_is_judged_by_its_real_reason(workers: usize) {
    let rt = runtime(workers);
    let sup = rt
        .supervisor(Strategy::OneForOne)
        .child_spec(
            ChildSpec::new("quick", |rt: &Runtime| {
                // The first spawn is a decoy; the child is the second one,
                // and it has ended normally before the factory returns.
                let _decoy = rt.spawn(|_ctx| async {});
                let h = rt.spawn(|_ctx| async {});
                while !h.is_finished() {
                    std::thread::yield_now();
                }
                h
            })
            .restart(Restart::Transient),
        )
        .start();
    // Normal, not NoProc: a transient child is not restarted.
    let r = SupervisorRef::new(&rt, sup.pid());
    wait_until("the child to be seen ending", || {
        run(&rt, r.count_children()).unwrap().active == 0
    });
    let infos = which(&rt, sup.pid());
    assert_eq!(infos.len(), 1);
    assert_eq!(infos[0].pid, None, "not restarted");
    assert!(rt.is_alive(sup.pid()));
    rt.kill(sup.pid());
}

/// A server that traps exits and logs the reason its `terminate` got.
struct Trapper(Arc<Mutex<Vec<ExitReason>>>);

impl rusm_otp::Server for Trapper {
    type Call = ();
    type Reply = ();
    type Cast = ();

    async fn init(&mut self, ctx: &mut Context) {
        let me = ctx.pid();
        ctx.runtime().set_trap_exit(me, true);
    }

    async fn handle_call(
        &mut self,
        _request: (),
        reply: rusm_otp::ReplyTo<()>,
        _ctx: &mut Context,
    ) -> rusm_otp::Flow {
        reply.reply(());
        rusm_otp::Flow::Continue
    }

    async fn terminate(&mut self, reason: ExitReason, _ctx: &mut Context) {
        self.0.lock().unwrap().push(reason);
    }
}

fn a_trapping_server_child_started_from_a_thread_obeys_its_supervisors_shutdown(workers: usize) {
    let rt = runtime(workers);
    let log = Arc::new(Mutex::new(Vec::new()));
    let l = log.clone();
    // Started from this plain thread: the server's parent must still be
    // the supervisor, so that its orderly Shutdown runs `terminate`.
    let sup = rt
        .supervisor(Strategy::OneForOne)
        .child_spec(
            ChildSpec::new("srv", move |rt: &Runtime| {
                rt.spawn_server(Trapper(l.clone()))
            })
            .shutdown(Shutdown::Timeout(Duration::from_secs(2))),
        )
        .start();
    let r = SupervisorRef::new(&rt, sup.pid());
    let srv = pid_of(&rt, sup.pid(), "srv").unwrap();
    // The server has run its init (it answers a call) before it is stopped.
    assert_eq!(
        run(&rt, rt.call::<(), ()>(srv, (), Duration::from_secs(60))),
        Ok(())
    );
    let w = watch(&rt, srv);
    assert_eq!(run(&rt, r.terminate_child("srv")), Ok(()));
    assert_eq!(
        down(&rt, w),
        ExitReason::Shutdown,
        "not killed after the timeout"
    );
    assert_eq!(*log.lock().unwrap(), [ExitReason::Shutdown]);
    rt.kill(sup.pid());
    run(&rt, sup.join());
}

fn a_child_that_links_itself_to_its_supervisor_and_crashes_is_restarted_not_taken_for_an_owner(
    workers: usize,
) {
    silence_expected_panics();
    let rt = runtime(workers);
    let sup = rt
        .supervisor(Strategy::OneForOne)
        .max_restarts(0)
        .child_spec(ChildSpec::new("clingy", |rt: &Runtime| {
            rt.spawn(|mut ctx| async move {
                let m = ctx.recv().await.message().unwrap();
                let sup = m.downcast::<Pid>().unwrap();
                let me = ctx.pid();
                ctx.runtime().link(me, sup);
                panic!("{EXPECTED_PANIC} clingy");
            })
        }))
        .start();
    let s = sup.pid();
    for round in 0..3 {
        let p = pid_of(&rt, s, "clingy").unwrap();
        let w = watch(&rt, p);
        rt.send(p, s);
        assert_eq!(down(&rt, w), ExitReason::Crashed);
        // The request queues behind the child's Down (its Exit comes right
        // after, from the same teardown; the next round's request would
        // find the supervisor gone had that Exit ended it).
        let q = pid_of(&rt, s, "clingy").expect("restarted");
        assert_ne!(p, q, "round {round}");
        assert!(rt.is_alive(s), "round {round}: its Exit is not an owner's");
    }
    assert_eq!(which(&rt, s).len(), 1);
    rt.kill(s);
    run(&rt, sup.join());
}

on_workers!(
    every_restart_type_against_every_end,
    a_temporary_bystander_under_one_for_all_is_stopped_not_restarted_and_costs_nothing,
    escalation_through_two_levels,
    restarts_spaced_wider_than_the_window_never_exhaust_it,
    children_stop_one_at_a_time_in_reverse_start_order,
    a_timeout_child_that_traps_and_ignores_shutdown_is_killed_after_its_timeout,
    infinity_waits_for_the_child,
    a_normal_exit_signal_from_a_non_child_is_ignored_an_abnormal_one_stops_the_tree,
    start_returns_with_every_static_child_started,
    a_factory_that_panics_at_start_stops_the_started_children_and_crashes_with_its_message,
    a_factory_that_panics_during_a_restart_counts_as_the_child_crashing_again,
    children_that_trap_exits_do_not_outlive_a_killed_supervisor,
    a_child_that_unlinks_itself_is_still_restarted,
    a_child_that_ended_before_it_could_be_monitored_is_judged_by_its_real_reason,
    a_trapping_server_child_started_from_a_thread_obeys_its_supervisors_shutdown,
    a_child_that_links_itself_to_its_supervisor_and_crashes_is_restarted_not_taken_for_an_owner,
);
