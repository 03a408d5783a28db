//! Round trip of one blocking job: hand a closure to a blocking pool and
//! await its result, `n` times in a row, from one awaiting task. Measures
//! `Runtime::spawn_blocking` (from a process and from `block_on`), the smol
//! `blocking` crate's pool (`blocking::unblock`, awaited from a process),
//! and tokio's `spawn_blocking` (from a task), in the same run.
//!
//! ```text
//! cargo run --release --example blocking_rtt -- [--n N] [--workers W]
//! ```
//!
//! Defaults: `--n 100000 --workers 2`. Prints one line per pool:
//! `blocking_rtt peer=<name> n=N per_op_ns=<float>`.

use rusm_otp::{ExitReason, Runtime};
use std::time::Instant;

fn main() {
    let mut n = 100_000u64;
    let mut workers = 2usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().expect("a value after the flag");
        match a.as_str() {
            "--n" => n = val().parse().expect("--n N"),
            "--workers" => workers = val().parse().expect("--workers W"),
            other => panic!("unknown argument {other}"),
        }
    }
    let report = |peer: &str, start: Instant, sum: u64| {
        assert_eq!(sum, n * (n - 1) / 2, "every job ran once");
        let ns = start.elapsed().as_nanos() as f64 / n as f64;
        println!("blocking_rtt peer={peer} n={n} per_op_ns={ns:.0}");
    };

    let rt = Runtime::builder().workers(workers).build();
    // Warm the pool: its first job starts its thread.
    rt.block_on(rt.spawn_blocking(|| ()));
    let (tx, rx) = std::sync::mpsc::channel();
    let start = Instant::now();
    let h = rt.spawn(move |ctx| async move {
        let mut sum = 0;
        for i in 0..n {
            sum += ctx.runtime().spawn_blocking(move || i).await;
        }
        tx.send(sum).unwrap();
    });
    let sum = rx.recv().unwrap();
    report("rusm_process", start, sum);
    assert_eq!(rt.block_on(h.join()), ExitReason::Normal);

    let start = Instant::now();
    let sum = rt.block_on(async {
        let mut sum = 0;
        for i in 0..n {
            sum += rt.spawn_blocking(move || i).await;
        }
        sum
    });
    report("rusm_block_on", start, sum);

    rt.block_on(blocking::unblock(|| ()));
    let (tx, rx) = std::sync::mpsc::channel();
    let start = Instant::now();
    rt.spawn(move |_| async move {
        let mut sum = 0;
        for i in 0..n {
            sum += blocking::unblock(move || i).await;
        }
        tx.send(sum).unwrap();
    });
    let sum = rx.recv().unwrap();
    report("smol_blocking_in_rusm", start, sum);
    drop(rt);

    let trt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .build()
        .expect("tokio runtime");
    trt.block_on(async { tokio::task::spawn_blocking(|| ()).await.unwrap() });
    let start = Instant::now();
    let sum = trt.block_on(async {
        tokio::spawn(async move {
            let mut sum = 0;
            for i in 0..n {
                sum += tokio::task::spawn_blocking(move || i).await.unwrap();
            }
            sum
        })
        .await
        .unwrap()
    });
    report("tokio_task", start, sum);
}
