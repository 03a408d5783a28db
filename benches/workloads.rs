//! Criterion benchmarks of the workloads of WORKLOADS.md, scaled down, on
//! rusm-otp and on the tokio baseline (`benches/common/mod.rs`, the same code
//! as `examples/bench.rs`).
//!
//! Each group has two functions, `rusm` and `tokio` (only `rusm` for the
//! workloads without a tokio baseline: restart_storm_windowed,
//! dynamic_children, monitor_churn, the hub workloads, send_named,
//! timers_fire, timers_cancel). The runtime is built once per function,
//! outside the timing; each iteration is one run of the
//! workload, and the time reported is the driver-internal time
//! (`iter_custom`). One worker thread per core.
//!
//! Criterion's HTML report (`target/criterion/report/index.html`) plots each
//! group's two functions side by side, so every workload is seen beside its
//! tokio baseline.

// `criterion_group!` generates an undocumented `pub fn`.
#![allow(missing_docs)]

#[path = "common/mod.rs"]
mod common;

use common::Workload;
use criterion::{Criterion, SamplingMode, criterion_group, criterion_main};
use std::time::Duration;

/// The scaled-down sizes.
const LOADS: [Workload; 20] = [
    Workload::Spawn { n: 100_000 },
    Workload::Skynet { leaves: 100_000 },
    Workload::Pingpong { n: 100_000 },
    Workload::Call { n: 100_000 },
    Workload::ParallelPingpong {
        pairs: 100,
        rounds: 1_000,
    },
    Workload::Ring {
        procs: 1_000,
        hops: 1_000_000,
    },
    Workload::Fanin {
        senders: 100,
        per: 1_000,
    },
    Workload::YieldMany {
        procs: 200,
        yields: 1_000,
    },
    Workload::Latency {
        spinners: 4,
        rounds: 10_000,
    },
    Workload::RestartStorm {
        children: 100,
        crashes: 100,
    },
    Workload::RestartStormWindowed {
        children: 100,
        crashes: 100,
    },
    Workload::DynamicChildren { n: 10_000 },
    Workload::LinkCascade { procs: 10_000 },
    Workload::MonitorChurn { n: 100_000 },
    Workload::HubMonitors { n: 10_000 },
    Workload::HubLinks { n: 10_000 },
    Workload::HubCascade { n: 10_000 },
    Workload::SendNamed {
        senders: 2,
        per: 50_000,
    },
    Workload::TimersFire { n: 100_000 },
    Workload::TimersCancel { n: 100_000 },
];

/// One run, checked; its driver-internal time.
fn run_checked(w: &Workload, run: impl Fn() -> common::Outcome) -> Duration {
    let o = run();
    assert_eq!(
        o.check,
        w.expected_check(),
        "{}: wrong check value",
        w.name()
    );
    assert!(o.failure.is_none(), "{}: {:?}", w.name(), o.failure);
    o.elapsed
}

fn workloads(c: &mut Criterion) {
    let workers = common::cores();
    for w in LOADS {
        let mut g = c.benchmark_group(w.name());
        g.sample_size(10)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(2))
            .sampling_mode(SamplingMode::Flat);
        {
            let rt = common::rusm_runtime(workers);
            g.bench_function("rusm", |b| {
                b.iter_custom(|iters| {
                    (0..iters)
                        .map(|_| run_checked(&w, || w.run_rusm(&rt)))
                        .sum()
                })
            });
        }
        if w.has_tokio() {
            let rt = common::tokio_runtime(workers);
            g.bench_function("tokio", |b| {
                b.iter_custom(|iters| {
                    (0..iters)
                        .map(|_| run_checked(&w, || w.run_tokio(&rt)))
                        .sum()
                })
            });
        }
        g.finish();
    }
}

criterion_group!(benches, workloads);
criterion_main!(benches);
