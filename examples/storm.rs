//! The main demo: a restart storm under a supervisor, then a link cascade.
//!
//! `cargo run --release --example storm [children] [crashes] [chain]`
//!
//! 1. Restart storm (WORKLOADS.md §7): a one-for-one supervisor with
//!    unlimited intensity starts `children` children. Child `i` counts its
//!    starts; while the count is at most `crashes` it exits abnormally at
//!    once, then it tells the driver it is alive and idles. The driver waits
//!    for every `alive`, then asks the supervisor for its children.
//! 2. Link cascade (WORKLOADS.md §8): a chain of `chain` linked, idle
//!    processes; the driver monitors the last, kills the first, and waits
//!    for the last one's `Down`, which carries the original reason.
//!
//! Every figure is checked; the demo exits non-zero if any check fails.

use rusm_otp::supervisor::{Children, WhichChildren};
use rusm_otp::{ExitReason, Pid, Received, Runtime, Strategy};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// What an idle child tells the driver once it stops crashing.
struct Alive;

fn arg(i: usize, default: usize) -> usize {
    std::env::args()
        .nth(i)
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// Runs `body` as a driver process and returns what it produces.
fn drive<T, F, Fut>(rt: &Runtime, body: F) -> T
where
    T: Send + 'static,
    F: FnOnce(rusm_otp::Context) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = T> + Send + 'static,
{
    let (tx, rx) = std::sync::mpsc::channel();
    let h = rt.spawn(move |ctx| async move {
        let _ = tx.send(body(ctx).await);
    });
    assert_eq!(rt.block_on(h.join()), ExitReason::Normal, "driver crashed");
    rx.recv().expect("driver sent no result")
}

fn restart_storm(rt: &Runtime, children: usize, crashes: u32) -> bool {
    let counters: Arc<Vec<AtomicU32>> =
        Arc::new((0..children).map(|_| AtomicU32::new(0)).collect());
    let c = counters.clone();
    let (elapsed, running, sup) = drive(rt, move |mut ctx| async move {
        let rt = ctx.runtime().clone();
        let me = ctx.pid();
        let t0 = Instant::now();
        let mut sup = rt.supervisor(Strategy::OneForOne).max_restarts(0);
        for i in 0..children {
            let c = c.clone();
            sup = sup.child(move |rt: &Runtime| {
                let c = c.clone();
                rt.spawn(move |mut ctx| async move {
                    let starts = c[i].fetch_add(1, Ordering::Relaxed) + 1;
                    let me = ctx.pid();
                    if starts <= crashes {
                        ctx.runtime().exit(me, ExitReason::Crashed);
                        return;
                    }
                    ctx.runtime().send_named("storm-driver", Alive);
                    loop {
                        ctx.recv().await;
                    }
                })
            });
        }
        rt.register("storm-driver", me);
        let sup = sup.start();
        let mut alive = 0;
        while alive < children {
            if let Some(m) = ctx.recv().await.message() {
                alive += usize::from(m.is::<Alive>());
            }
        }
        let elapsed = t0.elapsed();
        rt.send(sup.pid(), WhichChildren(me));
        let running = loop {
            if let Some(m) = ctx.recv().await.message() {
                if let Ok(Children(pids)) = m.downcast::<Children>() {
                    break pids.iter().filter(|p| rt.is_alive(**p)).count();
                }
            }
        };
        (elapsed, running, sup.pid())
    });
    let restarts: u64 = counters
        .iter()
        .map(|c| u64::from(c.load(Ordering::Relaxed)) - 1)
        .sum();
    let expected = children as u64 * u64::from(crashes);
    println!(
        "workload=restart_storm peer=rusm n={expected} total_ms={:.3} per_op_ns={:.1} check={restarts} running_children={running}",
        elapsed.as_secs_f64() * 1e3,
        elapsed.as_nanos() as f64 / expected.max(1) as f64,
    );
    rt.kill(sup);
    restarts == expected && running == children
}

fn link_cascade(rt: &Runtime, n: usize) -> bool {
    let (elapsed, reason, dead) = drive(rt, move |mut ctx| async move {
        let rt = ctx.runtime().clone();
        let me = ctx.pid();
        let chain: Vec<Pid> = (0..n)
            .map(|_| {
                rt.spawn(|mut ctx| async move {
                    loop {
                        ctx.recv().await;
                    }
                })
                .pid()
            })
            .collect();
        for w in chain.windows(2) {
            rt.link(w[0], w[1]);
        }
        let last = *chain.last().unwrap();
        let mref = rt.monitor(me, last);
        let t0 = Instant::now();
        rt.exit(chain[0], ExitReason::Shutdown);
        let reason = loop {
            if let Received::Down {
                reference, reason, ..
            } = ctx.recv().await
            {
                if reference == mref {
                    break reason;
                }
            }
        };
        let elapsed = t0.elapsed();
        let dead = chain.iter().filter(|p| !rt.is_alive(**p)).count();
        (elapsed, reason, dead)
    });
    println!(
        "workload=link_cascade peer=rusm n={n} total_ms={:.3} per_op_ns={:.1} check={dead} reason={reason}",
        elapsed.as_secs_f64() * 1e3,
        elapsed.as_nanos() as f64 / n as f64,
    );
    dead == n && reason == ExitReason::Shutdown
}

fn main() {
    let children = arg(1, 1_000);
    let crashes = arg(2, 100) as u32;
    let chain = arg(3, 100_000);
    let rt = Runtime::new();
    println!("rusm-otp storm demo on {} workers", rt.workers());
    let storm_ok = restart_storm(&rt, children, crashes);
    let cascade_ok = link_cascade(&rt, chain);
    // Everything the demo started has ended, or is ending.
    let deadline = Instant::now() + Duration::from_secs(30);
    while rt.process_count() > 0 && Instant::now() < deadline {
        std::thread::yield_now();
    }
    let m = rt.metrics();
    println!(
        "spawned={} finished={} alive={} polls={} steals={} parks={}",
        m.spawned,
        m.finished,
        m.processes,
        m.workers.iter().map(|w| w.polls).sum::<u64>(),
        m.workers.iter().map(|w| w.steals).sum::<u64>(),
        m.workers.iter().map(|w| w.parks).sum::<u64>(),
    );
    if !(storm_ok && cascade_ok && m.processes == 0) {
        eprintln!("storm demo: a check failed");
        std::process::exit(1);
    }
    println!("all checks passed");
}
