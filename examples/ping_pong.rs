//! Two processes bounce a counter between them: the smallest message-passing
//! program, and how fast one round trip is.
//!
//! Run it with `cargo run --release --example ping_pong [round_trips]`
//! (default 1,000,000).

use rusm_otp::{ExitReason, Pid, Received, Runtime};
use std::time::Instant;

fn main() {
    let rounds: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let rt = Runtime::builder().workers(2).build();

    // pong answers every (from, n) with n + 1 until it gets `None`.
    let pong = rt.spawn(|mut ctx| async move {
        while let Received::Message(m) = ctx.recv().await {
            match m.downcast::<Option<(Pid, u64)>>() {
                Ok(Some((from, n))) => {
                    ctx.runtime().send(from, n + 1);
                }
                _ => return,
            }
        }
    });
    let pong_pid = pong.pid();

    let ping = rt.spawn(move |mut ctx| async move {
        let rt = ctx.runtime().clone();
        let me = ctx.pid();
        let start = Instant::now();
        let mut n = 0u64;
        for _ in 0..rounds {
            rt.send(pong_pid, Some((me, n)));
            n = ctx
                .recv()
                .await
                .message()
                .and_then(|m| m.downcast::<u64>().ok())
                .expect("pong answers with a number");
        }
        let elapsed = start.elapsed();
        rt.send(pong_pid, None::<(Pid, u64)>);
        assert_eq!(n, rounds, "every round trip adds one");
        println!(
            "{rounds} round trips in {:.1} ms: {:.0} ns per round trip",
            elapsed.as_secs_f64() * 1e3,
            elapsed.as_nanos() as f64 / rounds.max(1) as f64
        );
    });

    assert_eq!(rt.block_on(ping.join()), ExitReason::Normal);
    assert_eq!(rt.block_on(pong.join()), ExitReason::Normal);
}
