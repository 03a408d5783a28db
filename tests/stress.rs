//! Stress: many messages, many processes, kills racing sends, spawn storms.
//!
//! Sizes are the same in debug and release builds: the whole file takes a
//! few seconds under plain `cargo test` and about as long under
//! `cargo test --release --test stress` (which runs it with the optimiser,
//! where races are tighter), so no size is scaled down for debug builds.

mod support;

use rusm_otp::{ExitReason, Pid, ProcessHandle, Runtime, yield_now};
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use support::{DropCounter, join_all, run, runtime, wait_until};

/// 1,000 receivers; 10 sender processes each send `PER_PAIR` sequenced
/// messages to every receiver, interleaved across receivers. With
/// `PER_PAIR = 100` that is 1,000,000 messages through 1,000 processes.
///
/// Each receiver checks that every sender's messages arrive in order, with
/// none missing or repeated, and that nothing extra arrives; the driver
/// checks that every send succeeded and that the totals match.
fn million_messages(workers: usize) {
    const RECEIVERS: usize = 1_000;
    const SENDERS: usize = 10;
    const PER_PAIR: u64 = 100;
    const PER_RECEIVER: u64 = SENDERS as u64 * PER_PAIR;
    const TOTAL: u64 = RECEIVERS as u64 * PER_RECEIVER;

    let rt = runtime(workers);
    let received = Arc::new(AtomicU64::new(0));
    let sent = Arc::new(AtomicU64::new(0));

    let receivers: Vec<ProcessHandle> = (0..RECEIVERS)
        .map(|_| {
            let received = received.clone();
            rt.spawn(move |mut ctx| async move {
                let mut next = [0u64; SENDERS];
                for _ in 0..PER_RECEIVER {
                    let m = ctx.recv().await.message().expect("a user message");
                    let (sender, seq) = m.downcast::<(u32, u32)>().expect("a (u32, u32)");
                    let sender = sender as usize;
                    assert_eq!(u64::from(seq), next[sender], "sender {sender}: order");
                    next[sender] += 1;
                }
                assert!(next.iter().all(|&n| n == PER_PAIR), "counts: {next:?}");
                assert!(ctx.try_recv().is_none(), "a message arrived twice");
                received.fetch_add(PER_RECEIVER, Ordering::Relaxed);
            })
        })
        .collect();
    let pids: Arc<Vec<Pid>> = Arc::new(receivers.iter().map(|h| h.pid()).collect());

    let senders: Vec<ProcessHandle> = (0..SENDERS)
        .map(|id| {
            let (pids, sent) = (pids.clone(), sent.clone());
            rt.spawn(move |mut ctx| async move {
                let _go = ctx.recv().await;
                let mut n = 0u64;
                for seq in 0..PER_PAIR {
                    for &p in pids.iter() {
                        assert!(ctx.runtime().send(p, (id as u32, seq as u32)));
                        n += 1;
                        if n % 4_096 == 0 {
                            yield_now().await;
                        }
                    }
                }
                sent.fetch_add(n, Ordering::Relaxed);
            })
        })
        .collect();
    for s in &senders {
        assert!(rt.send(s.pid(), ()));
    }
    run(&rt, async {
        for s in senders {
            assert_eq!(s.join().await, ExitReason::Normal, "sender");
        }
        for r in receivers {
            assert_eq!(r.join().await, ExitReason::Normal, "receiver");
        }
    });
    assert_eq!(sent.load(Ordering::Relaxed), TOTAL);
    assert_eq!(received.load(Ordering::Relaxed), TOTAL);
    assert_eq!(rt.process_count(), 0);
    assert_eq!(rt.finished(), (RECEIVERS + SENDERS) as u64);
}

#[test]
fn million_messages_through_a_thousand_processes_on_one_worker() {
    million_messages(1);
}

#[test]
fn million_messages_through_a_thousand_processes_on_two_workers() {
    million_messages(2);
}

#[test]
fn million_messages_through_a_thousand_processes_on_four_workers() {
    million_messages(4);
}

/// A token passed around a ring of 1,000 processes: every hop is a wake of
/// a parked process by another one.
#[test]
fn a_token_circles_a_ring_of_a_thousand_processes() {
    const SIZE: usize = 1_000;
    const LAPS: u64 = 100;
    const HOPS: u64 = LAPS * SIZE as u64;
    let rt = runtime(4);
    let hops = Arc::new(AtomicU64::new(0));
    let ring: Vec<ProcessHandle> = (0..SIZE)
        .map(|_| {
            let hops = hops.clone();
            rt.spawn(move |mut ctx| async move {
                let next = ctx
                    .recv()
                    .await
                    .message()
                    .and_then(|m| m.downcast::<Pid>().ok())
                    .expect("the next pid first");
                loop {
                    let m = ctx.recv().await.message().expect("a user message");
                    match m.downcast::<u64>() {
                        Ok(0) => {
                            // Done: tell the rest of the ring to stop.
                            ctx.runtime().send(next, "stop");
                            return;
                        }
                        Ok(n) => {
                            hops.fetch_add(1, Ordering::Relaxed);
                            assert!(ctx.runtime().send(next, n - 1), "ring broken");
                        }
                        Err(m) => {
                            assert_eq!(m.downcast::<&str>().ok(), Some("stop"));
                            ctx.runtime().send(next, "stop");
                            return;
                        }
                    }
                }
            })
        })
        .collect();
    for (i, p) in ring.iter().enumerate() {
        assert!(rt.send(p.pid(), ring[(i + 1) % SIZE].pid()));
    }
    assert!(rt.send(ring[0].pid(), HOPS));
    join_all(&rt, ring, ExitReason::Normal);
    assert_eq!(hops.load(Ordering::Relaxed), HOPS);
}

/// Kills racing with sends and wake-ups: receivers are flooded by sender
/// processes while the test thread kills them all. Every receiver ends
/// `Killed`, and every message is dropped exactly once, whether it was
/// received, left in a mailbox, or refused because its receiver was gone.
#[test]
fn kills_racing_with_sends_lose_and_duplicate_nothing() {
    const RECEIVERS: usize = 2_000;
    const SENDERS: usize = 4;
    const ROUNDS: usize = 200;
    let rt = runtime(4);
    let drops = Arc::new(AtomicUsize::new(0));
    let attempted = Arc::new(AtomicUsize::new(0));
    let receivers: Vec<ProcessHandle> = (0..RECEIVERS)
        .map(|i| {
            rt.spawn(move |mut ctx| async move {
                loop {
                    let m = ctx.recv().await;
                    drop(m);
                    if i % 3 == 0 {
                        yield_now().await;
                    }
                }
            })
        })
        .collect();
    let pids: Arc<Vec<Pid>> = Arc::new(receivers.iter().map(|h| h.pid()).collect());
    let started = Arc::new(AtomicUsize::new(0));
    let senders: Vec<ProcessHandle> = (0..SENDERS)
        .map(|_| {
            let (pids, drops, attempted, started) = (
                pids.clone(),
                drops.clone(),
                attempted.clone(),
                started.clone(),
            );
            rt.spawn(move |ctx| async move {
                started.fetch_add(1, Ordering::SeqCst);
                let mut n = 0;
                for _ in 0..ROUNDS {
                    for &p in pids.iter() {
                        ctx.runtime().send(p, DropCounter(drops.clone()));
                        n += 1;
                    }
                    yield_now().await;
                }
                attempted.fetch_add(n, Ordering::SeqCst);
            })
        })
        .collect();
    wait_until("the senders to start", || {
        started.load(Ordering::SeqCst) == SENDERS
    });
    for &p in pids.iter() {
        assert!(rt.kill(p), "receivers never end by themselves");
    }
    run(&rt, async {
        for r in receivers {
            assert_eq!(r.join().await, ExitReason::Killed);
        }
        for s in senders {
            assert_eq!(s.join().await, ExitReason::Normal);
        }
    });
    let attempted = attempted.load(Ordering::SeqCst);
    assert_eq!(attempted, SENDERS * ROUNDS * RECEIVERS);
    assert_eq!(
        drops.load(Ordering::SeqCst),
        attempted,
        "every message must be dropped exactly once"
    );
    assert!(pids.iter().all(|&p| !rt.send(p, ())));
    assert_eq!(rt.process_count(), 0);
}

/// Eight processes spawn 20,000 children each, concurrently (each child reports to its
/// parent and exits): every pid is distinct and every child is accounted
/// for in the counters.
#[test]
fn concurrent_spawn_storms_give_distinct_pids() {
    const SPAWNERS: usize = 8;
    const CHILDREN: usize = 20_000;
    let rt = runtime(4);
    let all = Arc::new(Mutex::new(Vec::new()));
    let spawners: Vec<ProcessHandle> = (0..SPAWNERS)
        .map(|_| {
            let all = all.clone();
            rt.spawn(move |mut ctx| async move {
                let me = ctx.pid();
                let mut mine = Vec::with_capacity(CHILDREN);
                let mut handles = Vec::with_capacity(CHILDREN);
                for _ in 0..CHILDREN {
                    let h = ctx.runtime().spawn(move |ctx| async move {
                        assert!(ctx.runtime().send(me, ctx.pid()));
                    });
                    mine.push(h.pid());
                    handles.push(h);
                }
                let mut reported = HashSet::new();
                for _ in 0..CHILDREN {
                    let m = ctx.recv().await.message().expect("a user message");
                    assert!(reported.insert(m.downcast::<Pid>().expect("a pid")));
                }
                assert_eq!(reported, mine.iter().copied().collect::<HashSet<_>>());
                for h in handles {
                    assert_eq!(h.join().await, ExitReason::Normal);
                }
                all.lock().unwrap().extend(mine);
            })
        })
        .collect();
    join_all(&rt, spawners, ExitReason::Normal);
    let all = all.lock().unwrap();
    let distinct: HashSet<Pid> = all.iter().copied().collect();
    assert_eq!(all.len(), SPAWNERS * CHILDREN);
    assert_eq!(distinct.len(), all.len(), "a pid was given out twice");
    let total = (SPAWNERS * (CHILDREN + 1)) as u64;
    assert_eq!(rt.spawned(), total);
    assert_eq!(rt.finished(), total);
    assert_eq!(rt.process_count(), 0);
}

/// Runtimes built and dropped in a loop, each with parked and running
/// processes: nothing hangs, every future is dropped each time.
#[test]
fn runtimes_can_be_built_and_dropped_repeatedly() {
    const ROUNDS: usize = 200;
    let drops = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    for round in 0..ROUNDS {
        let rt: Runtime = runtime(1 + round % 4);
        for i in 0..50 {
            let d = DropCounter(drops.clone());
            let stop = stop.clone();
            rt.spawn(move |mut ctx| async move {
                let _d = d;
                if i % 5 == 0 {
                    while !stop.load(Ordering::Relaxed) {
                        yield_now().await;
                    }
                } else {
                    let _ = ctx.recv().await;
                }
            });
        }
        run(&rt, support::ping_pong(&rt, 10));
        drop(rt);
        assert_eq!(
            drops.load(Ordering::SeqCst),
            50 * (round + 1),
            "round {round}"
        );
    }
}
