//! A ring of processes passes a token round and round: each process knows
//! only its successor, and the last one hands the token back to the first.
//!
//! Run it with `cargo run --release --example ring [processes] [laps]`
//! (default 10,000 processes, 100 laps: a million hops).

use rusm_otp::{ExitReason, Pid, Received, Runtime};
use std::time::Instant;

fn arg(i: usize, default: u64) -> u64 {
    std::env::args()
        .nth(i)
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let size = arg(1, 10_000).max(1);
    let laps = arg(2, 100);
    let hops = size * laps;
    let rt = Runtime::builder().workers(2).build();

    let driver = rt.spawn(move |mut ctx| async move {
        let rt = ctx.runtime().clone();
        let me = ctx.pid();
        // Build the ring backwards: each member forwards to the one made
        // before it, the first made forwards to the driver.
        let mut next = me;
        let mut members = Vec::with_capacity(size as usize);
        for _ in 1..size {
            let succ = next;
            let h = rt.spawn(move |mut ctx| async move {
                while let Received::Message(m) = ctx.recv().await {
                    let Ok(left) = m.downcast::<u64>() else {
                        return;
                    };
                    ctx.runtime().send(succ, left);
                }
            });
            next = h.pid();
            members.push(h.pid());
        }
        let first: Pid = next;
        let start = Instant::now();
        // The driver is the ring's last member: it counts the hops down.
        let mut left = hops;
        rt.send(first, left);
        loop {
            let m = ctx.recv().await.message().expect("the token");
            left = m.downcast::<u64>().expect("a count");
            left = left.saturating_sub(size);
            if left == 0 {
                break;
            }
            rt.send(first, left);
        }
        let elapsed = start.elapsed();
        for pid in members {
            rt.send(pid, "stop");
        }
        println!(
            "{size} processes, {laps} laps: {hops} hops in {:.1} ms, {:.0} ns per hop",
            elapsed.as_secs_f64() * 1e3,
            elapsed.as_nanos() as f64 / hops.max(1) as f64
        );
    });

    assert_eq!(rt.block_on(driver.join()), ExitReason::Normal);
    // Every member got "stop": bounded wait until they are all gone.
    for _ in 0..1000 {
        if rt.process_count() == 0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert_eq!(rt.process_count(), 0, "the ring was torn down");
}
