//! Spawn throughput from one driver versus from several drivers at once.
//!
//! ```text
//! cargo run --release --example parallel_spawn -- [--n N] [--drivers D] [--workers W] [--runs R]
//! ```
//!
//! For each runtime (rusm-otp, then the tokio baseline) it runs `spawn` (one
//! driver spawns `n` processes that each send one message back) and
//! `spawn_parallel` (`D` driver processes, 2 by default, each spawn `n / D`
//! such processes at the same time). If the process table serialised
//! spawns, `spawn_parallel` would be no faster than `spawn`; with one
//! worker per core it should approach `D`× faster, up to the core count.

#[path = "../benches/common/mod.rs"]
mod common;

use common::Workload;

fn main() {
    let mut n = 1_000_000u64;
    let mut drivers = 2u64;
    let mut workers = common::cores();
    let mut runs = 3u32;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let v = it
            .next()
            .and_then(|s| s.replace('_', "").parse::<u64>().ok());
        match (a.as_str(), v) {
            ("--n", Some(v)) => n = v,
            ("--drivers", Some(v)) => drivers = v.max(1),
            ("--workers", Some(v)) => workers = v.max(1) as usize,
            ("--runs", Some(v)) => runs = v.max(1) as u32,
            _ => {
                eprintln!("usage: parallel_spawn [--n N] [--drivers D] [--workers W] [--runs R]");
                std::process::exit(2);
            }
        }
    }
    let single = Workload::Spawn { n };
    let parallel = Workload::SpawnParallel {
        drivers,
        per: n / drivers,
    };
    let report = |peer: &str, w: &Workload, o: &common::Outcome| {
        let ns = o.elapsed.as_nanos() as f64;
        println!(
            "workload={} peer={peer} n={} total_ms={:.3} per_op_ns={:.3} check={}",
            w.name(),
            w.n(),
            ns / 1e6,
            ns / w.n() as f64,
            o.check
        );
        assert_eq!(o.check, w.expected_check(), "wrong check value");
        ns
    };
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    {
        let rt = common::rusm_runtime(workers);
        let (mut s, mut p) = (Vec::new(), Vec::new());
        for _ in 0..runs {
            s.push(report("rusm", &single, &single.run_rusm(&rt)));
            p.push(report("rusm", &parallel, &parallel.run_rusm(&rt)));
        }
        println!(
            "# rusm: {drivers} drivers are {:.2}x as fast as 1 (medians)",
            median(s) / median(p)
        );
    }
    {
        let rt = common::tokio_runtime(workers);
        let (mut s, mut p) = (Vec::new(), Vec::new());
        for _ in 0..runs {
            s.push(report("tokio", &single, &single.run_tokio(&rt)));
            p.push(report("tokio", &parallel, &parallel.run_tokio(&rt)));
        }
        println!(
            "# tokio: {drivers} drivers are {:.2}x as fast as 1 (medians)",
            median(s) / median(p)
        );
    }
}
