//! The scheduler: `block_on` from many threads and its misuse from inside a
//! process, fairness (a process that never parks, or whose mailbox never
//! empties, cannot starve others), and idle workers picking up work.

mod support;

use rusm_otp::{ExitReason, ProcessHandle, Runtime, yield_now};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Instant;
use support::{TIMEOUT, join_all, ping_pong, run, runtime, wait_until};

#[test]
fn block_on_returns_the_output_of_its_future() {
    let rt = runtime(1);
    assert_eq!(rt.block_on(async { 40 + 2 }), 42);
    let p = rt.spawn(|_ctx| async {});
    let (reason, n) = run(&rt, async {
        let r = p.join().await;
        (r, String::from("done"))
    });
    assert_eq!(reason, ExitReason::Normal);
    assert_eq!(n, "done");
}

#[test]
fn block_on_can_run_on_four_threads_at_once() {
    const THREADS: usize = 4;
    let rt = runtime(2);
    let barrier = Barrier::new(THREADS);
    let done = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let (rt, barrier, done) = (&rt, &barrier, &done);
            s.spawn(move || {
                barrier.wait();
                run(rt, async move {
                    ping_pong(rt, 500).await;
                    // A process that expects a message from this very thread.
                    let p = rt.spawn(move |mut ctx| async move {
                        let got = ctx.recv().await.message().expect("a user message");
                        assert_eq!(got.downcast::<usize>().ok(), Some(t));
                    });
                    assert!(rt.send(p.pid(), t));
                    assert_eq!(p.join().await, ExitReason::Normal);
                });
                done.fetch_add(1, Ordering::SeqCst);
            });
        }
    });
    assert_eq!(done.load(Ordering::SeqCst), THREADS);
    assert_eq!(rt.process_count(), 0);
    assert_eq!(rt.finished(), 3 * THREADS as u64);
}

#[test]
fn block_on_inside_a_process_panics_with_a_clear_message() {
    let rt = Runtime::builder()
        .workers(1)
        .thread_name("rsmblkon")
        .build();
    // Uncaught: the process crashes with a message that names the mistake.
    let p = rt.spawn(|ctx| async move {
        ctx.runtime().block_on(async {});
    });
    wait_until("the process to finish", || p.is_finished());
    let msg = p
        .panic_message()
        .expect("block_on inside a process must panic");
    assert!(msg.contains("block_on"), "unclear panic message: {msg:?}");
    assert_eq!(run(&rt, p.join()), ExitReason::Crashed);

    // Caught: the process can carry on, and so can its worker.
    let caught = Arc::new(AtomicBool::new(false));
    let c = caught.clone();
    let p = rt.spawn(move |ctx| async move {
        let rt = ctx.runtime().clone();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
            rt.block_on(async { 1 })
        }));
        c.store(r.is_err(), Ordering::SeqCst);
        yield_now().await;
    });
    assert_eq!(run(&rt, p.join()), ExitReason::Normal);
    assert!(
        caught.load(Ordering::SeqCst),
        "block_on inside a process returned"
    );
    run(&rt, ping_pong(&rt, 100));
    assert_eq!(support::threads_named("rsmblkon-"), 1);
}

/// Spawns a process that loops on `yield_now` until `stop` is set.
fn spawn_spinner(rt: &Runtime, spins: &Arc<AtomicU64>) -> ProcessHandle {
    let spins = spins.clone();
    rt.spawn(move |_ctx| async move {
        loop {
            spins.fetch_add(1, Ordering::Relaxed);
            yield_now().await;
        }
    })
}

/// On one worker, two processes that never park (they only ever yield)
/// cannot keep a ping-pong pair from completing.
#[test]
fn a_process_that_never_parks_cannot_starve_others() {
    let rt = runtime(1);
    let spins = Arc::new(AtomicU64::new(0));
    let a = spawn_spinner(&rt, &spins);
    let b = spawn_spinner(&rt, &spins);
    wait_until("the spinners to run", || spins.load(Ordering::Relaxed) > 0);
    run(&rt, ping_pong(&rt, 10_000));
    let before = spins.load(Ordering::Relaxed);
    // Still spinning (they were not starved either).
    wait_until("the spinners to keep running", || {
        spins.load(Ordering::Relaxed) > before
    });
    assert!(a.kill() && b.kill());
    run(&rt, async {
        assert_eq!(a.join().await, ExitReason::Killed);
        assert_eq!(b.join().await, ExitReason::Killed);
    });
}

/// On one worker, a process whose mailbox never empties (it receives one
/// message and sends itself two, forever) is cut off by the per-poll budget
/// and cannot keep a ping-pong pair from completing.
#[test]
fn a_mailbox_that_never_empties_cannot_starve_others() {
    let rt = runtime(1);
    // If the budget did not work, the flooder would hold the only worker
    // forever and dropping the runtime would hang instead of failing the
    // test: on the way out (success or panic) this flag ends its loop.
    let stop = StopOnDrop(Arc::new(AtomicBool::new(false)));
    let received = Arc::new(AtomicU64::new(0));
    let r = received.clone();
    let s = stop.0.clone();
    let flooder = rt.spawn(move |mut ctx| async move {
        let me = ctx.pid();
        assert!(ctx.runtime().send(me, 0u64));
        while !s.load(Ordering::Relaxed) {
            let _ = ctx.recv().await;
            r.fetch_add(1, Ordering::Relaxed);
            assert!(ctx.runtime().send(me, 1u64));
            assert!(ctx.runtime().send(me, 2u64));
        }
    });
    wait_until("the flood to start", || {
        received.load(Ordering::Relaxed) > 0
    });
    run(&rt, ping_pong(&rt, 1_000));
    let before = received.load(Ordering::Relaxed);
    wait_until("the flooder to keep running", || {
        received.load(Ordering::Relaxed) > before
    });
    assert!(flooder.kill());
    assert_eq!(run(&rt, flooder.join()), ExitReason::Killed);
}

/// Sets its flag when dropped.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Processes spawned from inside a process land on its worker's queue; the
/// other workers must wake up and steal them. Four processes that each
/// wait, without ever yielding, for all four to be running at once can only
/// finish if four workers run them in parallel.
#[test]
fn idle_workers_steal_work_spawned_by_a_busy_process() {
    const N: usize = 4;
    let rt = runtime(N);
    // Let every worker go to sleep first, so that the spawns below must
    // wake them rather than be found by workers still searching.
    wait_until("every worker to fall asleep", || {
        rt.metrics().sleeping_workers == N
    });
    let running = Arc::new(AtomicUsize::new(0));
    let spawner_running = running.clone();
    let spawner = rt.spawn(move |ctx| async move {
        // Hold this worker (without yielding) until every other worker has
        // gone back to sleep, so only the spawns themselves can wake them.
        let deadline = Instant::now() + TIMEOUT;
        while ctx.runtime().metrics().sleeping_workers < N - 1 {
            assert!(Instant::now() < deadline, "the other workers never slept");
            std::thread::yield_now();
        }
        let children: Vec<ProcessHandle> = (1..N)
            .map(|_| {
                let running = spawner_running.clone();
                ctx.runtime()
                    .spawn(move |_ctx| async move { rendezvous(&running, N) })
            })
            .collect();
        // Hold this worker without yielding until all children run elsewhere.
        rendezvous(&spawner_running, N);
        for c in children {
            assert_eq!(c.join().await, ExitReason::Normal);
        }
    });
    assert_eq!(run(&rt, spawner.join()), ExitReason::Normal);
    assert_eq!(running.load(Ordering::SeqCst), N);
}

/// The same for processes spawned from outside the runtime.
#[test]
fn idle_workers_pick_up_work_spawned_from_outside() {
    const N: usize = 4;
    let rt = runtime(N);
    let running = Arc::new(AtomicUsize::new(0));
    let handles: Vec<ProcessHandle> = (0..N)
        .map(|_| {
            let running = running.clone();
            rt.spawn(move |_ctx| async move { rendezvous(&running, N) })
        })
        .collect();
    join_all(&rt, handles, ExitReason::Normal);
}

/// Counts this process in, then spins (never yielding: this holds the
/// worker) until `n` processes have counted in. Panics after the deadline,
/// which fails the process.
fn rendezvous(running: &AtomicUsize, n: usize) {
    running.fetch_add(1, Ordering::SeqCst);
    let deadline = Instant::now() + TIMEOUT;
    while running.load(Ordering::SeqCst) < n {
        assert!(
            Instant::now() < deadline,
            "only {} of {n} processes ever ran at once",
            running.load(Ordering::SeqCst)
        );
        std::thread::yield_now();
    }
}

/// A runtime from `Runtime::new()` (one worker per core) runs processes.
#[test]
fn a_default_runtime_runs_processes() {
    let rt = Runtime::new();
    run(&rt, ping_pong(&rt, 100));
    let rt = Runtime::default();
    run(&rt, ping_pong(&rt, 100));
}

/// Many OS threads waking parked processes at once: every message is
/// delivered and every receiver wakes.
#[test]
fn wakes_from_many_threads_reach_parked_processes() {
    const RECEIVERS: usize = 64;
    const THREADS: usize = 4;
    const PER_THREAD: u64 = 200;
    let rt = runtime(2);
    let receivers: Vec<ProcessHandle> = (0..RECEIVERS)
        .map(|_| {
            rt.spawn(|mut ctx| async move {
                let mut next = [0u64; THREADS];
                for _ in 0..THREADS as u64 * PER_THREAD {
                    let m = ctx.recv().await.message().expect("a user message");
                    let (t, seq) = m.downcast::<(usize, u64)>().expect("(usize, u64)");
                    assert_eq!(seq, next[t], "thread {t}: out of order");
                    next[t] += 1;
                }
            })
        })
        .collect();
    let pids: Vec<_> = receivers.iter().map(|h| h.pid()).collect();
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let (rt, pids) = (&rt, &pids);
            s.spawn(move || {
                for seq in 0..PER_THREAD {
                    for &p in pids {
                        assert!(rt.send(p, (t, seq)));
                    }
                    if seq % 16 == 0 {
                        std::thread::yield_now();
                    }
                }
            });
        }
    });
    join_all(&rt, receivers, ExitReason::Normal);
}
