//! Process lifecycle: spawning, ending (normally, by kill, by exit, by
//! panic), joining, the runtime's counters, pid uniqueness, `shutdown`, and
//! what dropping the runtime does to its threads and processes.

mod support;

use rusm_otp::{ExitReason, Pid, ProcessHandle, Runtime, yield_now};
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use support::{
    DropCounter, EXPECTED_PANIC, ended_pid, join_all, on_workers, ping_pong, run, runtime,
    silence_expected_panics, threads_named, wait_until,
};

/// Spawns a process that parks in `recv` forever (until it is ended from
/// outside), owning `owned`. `started` is bumped right before it parks.
fn spawn_parked<T: Send + 'static>(
    rt: &Runtime,
    started: &Arc<AtomicUsize>,
    owned: T,
) -> ProcessHandle {
    let started = started.clone();
    rt.spawn(move |mut ctx| async move {
        let _owned = owned;
        started.fetch_add(1, Ordering::SeqCst);
        loop {
            let _ = ctx.recv().await;
        }
    })
}

/// Spawns a process that never parks: it loops on `yield_now` forever.
fn spawn_spinner<T: Send + 'static>(
    rt: &Runtime,
    started: &Arc<AtomicUsize>,
    owned: T,
) -> ProcessHandle {
    let started = started.clone();
    rt.spawn(move |_ctx| async move {
        let _owned = owned;
        started.fetch_add(1, Ordering::SeqCst);
        loop {
            yield_now().await;
        }
    })
}

fn wait_started(started: &Arc<AtomicUsize>, n: usize) {
    wait_until(&format!("{n} processes to start"), || {
        started.load(Ordering::SeqCst) >= n
    });
}

fn a_process_whose_body_returns_ends_normal(workers: usize) {
    let rt = runtime(workers);
    let ran = Arc::new(AtomicBool::new(false));
    let r = ran.clone();
    let p = rt.spawn(move |_ctx| async move { r.store(true, Ordering::SeqCst) });
    assert_eq!(run(&rt, p.join()), ExitReason::Normal);
    assert!(ran.load(Ordering::SeqCst));
}

fn spawn_calls_the_closure_at_once_on_the_callers_thread(workers: usize) {
    let rt = runtime(workers);
    let me = std::thread::current().id();
    let called_on = Arc::new(Mutex::new(None));
    let c = called_on.clone();
    let p = rt.spawn(move |_ctx| {
        *c.lock().unwrap() = Some(std::thread::current().id());
        async {}
    });
    assert_eq!(
        *called_on.lock().unwrap(),
        Some(me),
        "closure not called at once"
    );
    assert_eq!(run(&rt, p.join()), ExitReason::Normal);

    // From inside a process, the closure runs on the process's thread.
    let parent = rt.spawn(|ctx| async move {
        let here = std::thread::current().id();
        let seen = Arc::new(Mutex::new(None));
        let s = seen.clone();
        let child = ctx.runtime().spawn(move |_ctx| {
            *s.lock().unwrap() = Some(std::thread::current().id());
            async {}
        });
        assert_eq!(*seen.lock().unwrap(), Some(here));
        assert_eq!(child.join().await, ExitReason::Normal);
    });
    assert_eq!(run(&rt, parent.join()), ExitReason::Normal);
}

fn spawn_works_inside_block_on_and_from_other_threads(workers: usize) {
    let rt = runtime(workers);
    let in_block_on = run(&rt, async {
        let p = rt.spawn(|_ctx| async {});
        p.join().await
    });
    assert_eq!(in_block_on, ExitReason::Normal);
    let rt2 = rt.clone();
    let from_thread = std::thread::spawn(move || rt2.spawn(|_ctx| async {}))
        .join()
        .unwrap();
    assert_eq!(run(&rt, from_thread.join()), ExitReason::Normal);
}

fn kill_of_a_parked_process_ends_it_killed_and_drops_its_future(workers: usize) {
    let rt = runtime(workers);
    let started = Arc::new(AtomicUsize::new(0));
    let drops = Arc::new(AtomicUsize::new(0));
    let p = spawn_parked(&rt, &started, DropCounter(drops.clone()));
    let pid = p.pid();
    wait_started(&started, 1);
    assert!(rt.is_alive(pid));
    assert!(rt.kill(pid));
    assert_eq!(run(&rt, p.join()), ExitReason::Killed);
    assert_eq!(
        drops.load(Ordering::SeqCst),
        1,
        "the future was not dropped"
    );
    assert!(!rt.is_alive(pid));
}

fn kill_of_a_busy_yielding_process_ends_it_killed(workers: usize) {
    let rt = runtime(workers);
    let started = Arc::new(AtomicUsize::new(0));
    let drops = Arc::new(AtomicUsize::new(0));
    let p = spawn_spinner(&rt, &started, DropCounter(drops.clone()));
    wait_started(&started, 1);
    assert!(p.kill());
    assert_eq!(run(&rt, p.join()), ExitReason::Killed);
    assert_eq!(
        drops.load(Ordering::SeqCst),
        1,
        "the future was not dropped"
    );
}

#[test]
fn kill_before_the_first_poll_ends_the_process_killed_without_running_it() {
    let rt = runtime(1);
    // Occupy the only worker so the victim cannot run before the kill.
    let gate = Arc::new(AtomicBool::new(false));
    let g = gate.clone();
    let blocker = rt.spawn(move |_ctx| async move {
        while !g.load(Ordering::SeqCst) {
            std::hint::spin_loop();
        }
    });
    let ran = Arc::new(AtomicBool::new(false));
    let r = ran.clone();
    let victim = rt.spawn(move |_ctx| async move { r.store(true, Ordering::SeqCst) });
    assert!(rt.kill(victim.pid()));
    gate.store(true, Ordering::SeqCst);
    assert_eq!(run(&rt, victim.join()), ExitReason::Killed);
    assert_eq!(run(&rt, blocker.join()), ExitReason::Normal);
    assert!(!ran.load(Ordering::SeqCst), "a killed process was polled");
}

fn exit_with_shutdown_ends_the_process_with_shutdown(workers: usize) {
    let rt = runtime(workers);
    let started = Arc::new(AtomicUsize::new(0));
    let p = spawn_parked(&rt, &started, ());
    wait_started(&started, 1);
    assert!(rt.exit(p.pid(), ExitReason::Shutdown));
    assert_eq!(run(&rt, p.join()), ExitReason::Shutdown);

    let busy = spawn_spinner(&rt, &started, ());
    wait_started(&started, 2);
    assert!(rt.exit(busy.pid(), ExitReason::Shutdown));
    assert_eq!(run(&rt, busy.join()), ExitReason::Shutdown);
}

fn a_process_that_exits_itself_crashed_and_returns_ends_crashed(workers: usize) {
    let rt = runtime(workers);
    let p = rt.spawn(|ctx| async move {
        assert!(ctx.runtime().exit(ctx.pid(), ExitReason::Crashed));
    });
    assert_eq!(run(&rt, p.join()), ExitReason::Crashed);
}

fn exiting_itself_takes_effect_at_the_next_suspension_point(workers: usize) {
    let rt = runtime(workers);
    let resumed = Arc::new(AtomicBool::new(false));
    let r = resumed.clone();
    let p = rt.spawn(move |ctx| async move {
        assert!(ctx.runtime().exit(ctx.pid(), ExitReason::Crashed));
        yield_now().await;
        r.store(true, Ordering::SeqCst);
    });
    assert_eq!(run(&rt, p.join()), ExitReason::Crashed);
    assert!(
        !resumed.load(Ordering::SeqCst),
        "ran on past a suspension point after exit"
    );
}

fn kill_and_exit_of_a_dead_pid_return_false(workers: usize) {
    let rt = runtime(workers);
    let p = rt.spawn(|_ctx| async {});
    let pid = p.pid();
    let started = Arc::new(AtomicUsize::new(0));
    let other = spawn_parked(&rt, &started, ());
    let other_pid = other.pid();
    assert!(other.kill());
    assert_eq!(run(&rt, p.join()), ExitReason::Normal);
    assert_eq!(run(&rt, other.join()), ExitReason::Killed);
    for dead in [pid, other_pid, Pid::from_raw(u64::MAX)] {
        assert!(!rt.kill(dead), "kill({dead})");
        assert!(!rt.exit(dead, ExitReason::Shutdown), "exit({dead})");
        assert!(!rt.is_alive(dead));
    }
}

fn send_to_a_dead_pid_returns_false(workers: usize) {
    let rt = runtime(workers);
    let pid = ended_pid(&rt);
    assert!(!rt.send(pid, 1u64));
    assert!(!rt.send(pid, String::from("late")));
}

#[test]
fn a_fresh_runtime_has_no_processes() {
    let rt = runtime(3);
    assert_eq!(rt.process_count(), 0);
    assert_eq!(rt.spawned(), 0);
    assert_eq!(rt.finished(), 0);
    assert!(rt.list().is_empty());
    assert_eq!(rt.shutdown(), 0);
}

fn counters_list_and_is_alive_track_live_processes(workers: usize) {
    let rt = runtime(workers);
    let started = Arc::new(AtomicUsize::new(0));
    // Each process ends normally on its first message.
    let handles: Vec<ProcessHandle> = (0..10)
        .map(|_| {
            let s = started.clone();
            rt.spawn(move |mut ctx| async move {
                s.fetch_add(1, Ordering::SeqCst);
                let _ = ctx.recv().await;
            })
        })
        .collect();
    let pids: Vec<Pid> = handles.iter().map(|h| h.pid()).collect();
    assert!(
        pids.windows(2).all(|w| w[0] < w[1]),
        "pids ascend: {pids:?}"
    );
    assert_eq!(rt.spawned(), 10);
    assert_eq!(rt.process_count(), 10);
    assert_eq!(rt.finished(), 0);
    assert_eq!(rt.list(), pids);
    assert!(pids.iter().all(|&p| rt.is_alive(p)));
    wait_started(&started, 10);

    let mut handles = handles.into_iter();
    let killed: Vec<ProcessHandle> = handles.by_ref().take(4).collect();
    let rest: Vec<ProcessHandle> = handles.collect();
    for h in &killed {
        assert!(rt.kill(h.pid()));
    }
    join_all(&rt, killed, ExitReason::Killed);
    assert_eq!(rt.spawned(), 10);
    assert_eq!(rt.finished(), 4);
    assert_eq!(rt.process_count(), 6);
    assert_eq!(rt.list(), pids[4..].to_vec());
    assert!(pids[..4].iter().all(|&p| !rt.is_alive(p)));
    assert!(pids[4..].iter().all(|&p| rt.is_alive(p)));

    for h in &rest {
        assert!(rt.send(h.pid(), ()));
    }
    join_all(&rt, rest, ExitReason::Normal);
    assert_eq!(rt.spawned(), 10);
    assert_eq!(rt.finished(), 10);
    assert_eq!(rt.process_count(), 0);
    assert!(rt.list().is_empty());
    assert!(pids.iter().all(|&p| !rt.is_alive(p)));
}

fn dropping_a_handle_does_not_kill_the_process(workers: usize) {
    let rt = runtime(workers);
    let got = Arc::new(AtomicUsize::new(0));
    let g = got.clone();
    let p = rt.spawn(move |mut ctx| async move {
        let _ = ctx.recv().await;
        g.fetch_add(1, Ordering::SeqCst);
    });
    let pid = p.pid();
    drop(p);
    assert!(rt.is_alive(pid));
    assert!(rt.send(pid, ()), "the process is still alive");
    wait_until("the process to receive and end", || {
        got.load(Ordering::SeqCst) == 1 && !rt.is_alive(pid)
    });
    assert_eq!(rt.finished(), 1);
}

/// 10,000 panicking processes on 2 workers: each ends `Crashed`, neither
/// worker thread dies, and the runtime still runs messages afterwards.
#[test]
fn panics_end_processes_crashed_and_the_workers_survive() {
    const N: usize = 10_000;
    silence_expected_panics();
    let rt = Runtime::builder()
        .workers(2)
        .thread_name("rsmpanic")
        .build();
    wait_until("both workers to start", || threads_named("rsmpanic-") == 2);
    let handles: Vec<ProcessHandle> = (0..N)
        .map(|i| {
            rt.spawn(move |mut ctx| async move {
                // Half panic on their first poll, half after a suspension.
                if i % 2 == 1 {
                    yield_now().await;
                    let _ = ctx.try_recv();
                }
                panic!("{EXPECTED_PANIC} boom {i}");
            })
        })
        .collect();
    run(&rt, async {
        for (i, h) in handles.into_iter().enumerate() {
            assert_eq!(h.join().await, ExitReason::Crashed, "process {i}");
        }
    });
    assert_eq!(rt.finished(), N as u64);
    assert_eq!(rt.process_count(), 0);
    assert_eq!(threads_named("rsmpanic-"), 2, "a worker thread died");
    run(&rt, ping_pong(&rt, 1_000));
    assert_eq!(threads_named("rsmpanic-"), 2, "a worker thread died");
}

fn panic_message_holds_the_panic_text(workers: usize) {
    silence_expected_panics();
    let rt = runtime(workers);
    let formatted = rt.spawn(|_ctx| async move {
        let n = 42;
        panic!("{EXPECTED_PANIC} formatted panic {n}");
    });
    let literal = rt.spawn(|_ctx| async move {
        yield_now().await;
        panic!("[expected panic] literal panic");
    });
    let fine = rt.spawn(|_ctx| async {});
    let started = Arc::new(AtomicUsize::new(0));
    let killed = spawn_parked(&rt, &started, ());
    assert!(killed.kill());
    for h in [&formatted, &literal, &fine, &killed] {
        wait_until("the process to finish", || h.is_finished());
    }
    let msg = formatted.panic_message().expect("a panic message");
    assert!(msg.contains("formatted panic 42"), "{msg:?}");
    let msg = literal.panic_message().expect("a panic message");
    assert!(msg.contains("literal panic"), "{msg:?}");
    assert_eq!(fine.panic_message(), None);
    assert_eq!(killed.panic_message(), None);
    run(&rt, async {
        assert_eq!(formatted.join().await, ExitReason::Crashed);
        assert_eq!(literal.join().await, ExitReason::Crashed);
        assert_eq!(fine.join().await, ExitReason::Normal);
        assert_eq!(killed.join().await, ExitReason::Killed);
    });
}

/// A process whose future panics while being dropped (on kill) does not
/// take its worker down.
#[test]
fn a_panicking_destructor_does_not_take_down_the_worker() {
    silence_expected_panics();
    struct PanicOnDrop;
    impl Drop for PanicOnDrop {
        fn drop(&mut self) {
            panic!("{EXPECTED_PANIC} in a destructor");
        }
    }
    let rt = Runtime::builder()
        .workers(1)
        .thread_name("rsmpdrop")
        .build();
    let started = Arc::new(AtomicUsize::new(0));
    let p = spawn_parked(&rt, &started, PanicOnDrop);
    wait_started(&started, 1);
    assert!(rt.kill(p.pid()));
    let reason = run(&rt, p.join());
    assert!(reason.is_abnormal(), "{reason:?}");
    run(&rt, ping_pong(&rt, 100));
    assert_eq!(threads_named("rsmpdrop-"), 1, "the worker thread died");
}

/// 100,000 processes spawned and ended: every pid is new and greater than
/// every pid before it, and a stale pid reaches nothing.
fn pids_are_never_reused(workers: usize) {
    const BATCH: usize = 1_000;
    const BATCHES: usize = 100;
    let rt = runtime(workers);
    let mut seen: HashSet<Pid> = HashSet::with_capacity(BATCH * BATCHES);
    let mut max: Option<Pid> = None;
    let mut first = None;
    for _ in 0..BATCHES {
        let handles: Vec<ProcessHandle> = (0..BATCH).map(|_| rt.spawn(|_ctx| async {})).collect();
        for h in &handles {
            let pid = h.pid();
            assert!(max.is_none_or(|m| pid > m), "{pid} not above {max:?}");
            max = Some(pid);
            assert!(seen.insert(pid), "{pid} reused");
            first.get_or_insert(pid);
        }
        join_all(&rt, handles, ExitReason::Normal);
    }
    assert_eq!(seen.len(), BATCH * BATCHES);
    assert_eq!(rt.spawned(), (BATCH * BATCHES) as u64);
    assert_eq!(rt.finished(), (BATCH * BATCHES) as u64);
    assert_eq!(rt.process_count(), 0);
    let first = first.unwrap();
    assert!(!rt.is_alive(first));
    assert!(!rt.send(first, ()), "a stale pid reached a process");
    // A newer live process does not answer to any old pid.
    let started = Arc::new(AtomicUsize::new(0));
    let live = spawn_parked(&rt, &started, ());
    assert!(!seen.contains(&live.pid()));
    assert!(seen.iter().all(|&p| !rt.is_alive(p)));
    assert!(live.kill());
    assert_eq!(run(&rt, live.join()), ExitReason::Killed);
}

fn join_works_from_inside_another_process(workers: usize) {
    silence_expected_panics();
    let rt = runtime(workers);
    let started = Arc::new(AtomicUsize::new(0));
    let target = spawn_parked(&rt, &started, ());
    let target_pid = target.pid();
    let crasher = rt.spawn(|mut ctx| async move {
        let _ = ctx.recv().await;
        panic!("{EXPECTED_PANIC} crasher");
    });
    let crasher_pid = crasher.pid();
    let done = rt.spawn(|_ctx| async {});
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let joiner = rt.spawn(move |_ctx| async move {
        let r = done.join().await;
        s.lock().unwrap().push(r);
        let r = target.join().await;
        s.lock().unwrap().push(r);
        let r = crasher.join().await;
        s.lock().unwrap().push(r);
    });
    wait_started(&started, 1);
    assert!(rt.kill(target_pid));
    assert!(rt.send(crasher_pid, ()));
    assert_eq!(run(&rt, joiner.join()), ExitReason::Normal);
    assert_eq!(
        *seen.lock().unwrap(),
        vec![ExitReason::Normal, ExitReason::Killed, ExitReason::Crashed]
    );
}

fn join_resolves_after_teardown_is_complete(workers: usize) {
    let rt = runtime(workers);
    let drops = Arc::new(AtomicUsize::new(0));
    let d = DropCounter(drops.clone());
    let p = rt.spawn(move |_ctx| async move {
        let _d = d;
    });
    let pid = p.pid();
    assert_eq!(run(&rt, p.join()), ExitReason::Normal);
    // Counters updated, table entry gone, future dropped.
    assert_eq!(drops.load(Ordering::SeqCst), 1);
    assert!(!rt.is_alive(pid));
    assert_eq!(rt.finished(), 1);
    assert_eq!(rt.process_count(), 0);
    assert!(!rt.list().contains(&pid));
}

fn shutdown_kills_every_process_and_returns_how_many(workers: usize) {
    let rt = runtime(workers);
    let started = Arc::new(AtomicUsize::new(0));
    let drops = Arc::new(AtomicUsize::new(0));
    let mut handles: Vec<ProcessHandle> = (0..5)
        .map(|_| spawn_parked(&rt, &started, DropCounter(drops.clone())))
        .collect();
    handles.extend((0..2).map(|_| spawn_spinner(&rt, &started, DropCounter(drops.clone()))));
    wait_started(&started, 7);
    assert_eq!(rt.shutdown(), 7);
    join_all(&rt, handles, ExitReason::Killed);
    assert_eq!(drops.load(Ordering::SeqCst), 7);
    assert_eq!(rt.process_count(), 0);
    assert!(rt.list().is_empty());
    assert_eq!(rt.shutdown(), 0);
    // The runtime stays usable.
    run(&rt, ping_pong(&rt, 10));
}

/// Dropping the last `Runtime` drops every process future still alive,
/// parked ones (which hold only their `Context`, not a `Runtime` clone) and
/// busy ones alike, and joins the worker threads.
#[test]
fn dropping_the_runtime_drops_every_process_and_joins_its_threads() {
    const PARKED: usize = 1_000;
    const BUSY: usize = 4;
    const WORKERS: usize = 3;
    let rt = Runtime::builder()
        .workers(WORKERS)
        .thread_name("rsmdrop")
        .build();
    wait_until("the workers to start", || {
        threads_named("rsmdrop-") == WORKERS
    });
    let started = Arc::new(AtomicUsize::new(0));
    let drops = Arc::new(AtomicUsize::new(0));
    for _ in 0..PARKED {
        spawn_parked(&rt, &started, DropCounter(drops.clone()));
    }
    for _ in 0..BUSY {
        spawn_spinner(&rt, &started, DropCounter(drops.clone()));
    }
    // A few that never got to run their first poll are fine too; wait for
    // the rest so that most are parked in `recv`.
    wait_started(&started, PARKED + BUSY);
    assert_eq!(rt.process_count(), PARKED + BUSY);
    assert_eq!(drops.load(Ordering::SeqCst), 0);
    drop(rt);
    assert_eq!(
        drops.load(Ordering::SeqCst),
        PARKED + BUSY,
        "dropping the runtime left process futures alive"
    );
    wait_until("the worker threads to exit", || {
        threads_named("rsmdrop-") == 0
    });
}

/// Dropping a clone of the runtime ends nothing; dropping the last one ends
/// its processes and threads.
#[test]
fn only_the_last_runtime_clone_ends_it() {
    let rt = Runtime::builder()
        .workers(2)
        .thread_name("rsmclone")
        .build();
    let clone = rt.clone();
    let started = Arc::new(AtomicUsize::new(0));
    let drops = Arc::new(AtomicUsize::new(0));
    let p = spawn_parked(&rt, &started, DropCounter(drops.clone()));
    let pid = p.pid();
    drop(rt);
    wait_started(&started, 1);
    assert!(clone.is_alive(pid), "dropping one clone ended the runtime");
    assert_eq!(drops.load(Ordering::SeqCst), 0);
    run(&clone, ping_pong(&clone, 10));
    drop(p);
    drop(clone);
    assert_eq!(drops.load(Ordering::SeqCst), 1);
    wait_until("the worker threads to exit", || {
        threads_named("rsmclone-") == 0
    });
}

#[test]
fn handles_and_join_futures_are_send() {
    fn assert_send<T: Send>(_: &T) {}
    let rt = runtime(1);
    let p = rt.spawn(|_ctx| async {});
    assert_send(&p);
    let j = p.join();
    assert_send(&j);
    // And a join future can be moved to and awaited from another thread.
    let rt2 = rt.clone();
    let r = std::thread::spawn(move || run(&rt2, j)).join().unwrap();
    assert_eq!(r, ExitReason::Normal);
}

#[test]
fn pids_and_reasons_format_and_classify() {
    let p = Pid::from_raw(7);
    assert_eq!(p.raw(), 7);
    assert_eq!(format!("{p:?}"), "Pid(7)");
    assert_eq!(format!("{p}"), "#7");
    assert!(!ExitReason::Normal.is_abnormal());
    for r in [
        ExitReason::Killed,
        ExitReason::Crashed,
        ExitReason::NoProc,
        ExitReason::Shutdown,
    ] {
        assert!(r.is_abnormal(), "{r:?}");
    }
}

on_workers!(
    a_process_whose_body_returns_ends_normal,
    spawn_calls_the_closure_at_once_on_the_callers_thread,
    spawn_works_inside_block_on_and_from_other_threads,
    kill_of_a_parked_process_ends_it_killed_and_drops_its_future,
    kill_of_a_busy_yielding_process_ends_it_killed,
    exit_with_shutdown_ends_the_process_with_shutdown,
    a_process_that_exits_itself_crashed_and_returns_ends_crashed,
    exiting_itself_takes_effect_at_the_next_suspension_point,
    kill_and_exit_of_a_dead_pid_return_false,
    send_to_a_dead_pid_returns_false,
    counters_list_and_is_alive_track_live_processes,
    dropping_a_handle_does_not_kill_the_process,
    panic_message_holds_the_panic_text,
    pids_are_never_reused,
    join_works_from_inside_another_process,
    join_resolves_after_teardown_is_complete,
    shutdown_kills_every_process_and_returns_how_many,
);
