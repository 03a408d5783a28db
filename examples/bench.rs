//! Command-line runner of the benchmark workloads (`WORKLOADS.md`)
//! on rusm-otp and on a tokio baseline.
//!
//! ```text
//! cargo run --release --example bench -- <workload|all> [--peer rusm|tokio|both]
//!     [--n N] [--workers W] [--runs R] [--warmup K]
//! ```
//!
//! Workloads: `spawn`, `skynet`, `pingpong`, `call`, `parallel_pingpong`, `ring`,
//! `fanin`, `yield_many`, `latency`, `idle_memory`, `restart_storm`, `link_cascade`,
//! `monitor_churn`, `hub_monitors`, `hub_links`, `hub_cascade`, `send_named`,
//! `timers_fire`, `timers_cancel` (`all` runs these, in this order),
//! `spawn_parallel` (2 drivers spawning `n/2` processes each; `--drivers D`),
//! `restart_storm_windowed` (restart_storm under
//! `max_restarts(1_000_000).within(1 s)`) and `dynamic_children` (`n`
//! `start_child` then `n` `terminate_pid` on a dynamic supervisor).
//! Defaults: the full sizes of WORKLOADS.md, `--peer rusm`, one worker per
//! core, one timed run, no warm-up. Prints one line per timed run:
//!
//! ```text
//! workload=<name> peer=<runtime> n=<n> total_ms=<float> per_op_ns=<float> check=<value> [extra fields]
//! ```
//!
//! Extra fields follow `check`: `cpu_ms=<float>` (CPU time of the whole
//! process, all threads, over the timed section; timers only, 10 ms
//! resolution) and untimed verification figures (`running_children=`,
//! `reason=`, `pending_timers=`, ...).
//!
//! `restart_storm_windowed`, `dynamic_children`, `monitor_churn`, the
//! `hub_*` workloads, `send_named`, `timers_fire` and `timers_cancel` have
//! no tokio baseline: `--peer both` runs them on rusm-otp only. Sizes with
//! `--n`: `restart_storm` and `restart_storm_windowed` n = restarts (1,000
//! children, n/1,000 crashes each), `send_named` n = messages (2 senders),
//! `hub_*` n = monitors or links on the one hub (default 100,000),
//! `dynamic_children` n = children, `latency` n = probe round trips (4
//! spinners; its line adds `p50_ns`, `p99_ns`, `p999_ns`, `max_ns` of the
//! round trip and the spinners' `slices` and `slices_per_s`).
//!
//! When more than one (workload, runtime) pair is asked for, each runs in a
//! fresh child process of this same binary, so that no run inherits another's
//! heap (which matters most for `idle_memory`). Exits non-zero if a check
//! value is wrong.

#[path = "../benches/common/mod.rs"]
mod common;

use common::{Outcome, Workload};
use std::process::{Command, ExitCode};

/// The workloads `all` runs, in order.
const ALL: [&str; 19] = [
    "spawn",
    "skynet",
    "pingpong",
    "call",
    "parallel_pingpong",
    "ring",
    "fanin",
    "yield_many",
    "latency",
    "idle_memory",
    "restart_storm",
    "link_cascade",
    "monitor_churn",
    "hub_monitors",
    "hub_links",
    "hub_cascade",
    "send_named",
    "timers_fire",
    "timers_cancel",
];

/// Parsed command line.
struct Args {
    workload: String,
    peers: Vec<&'static str>,
    n: Option<u64>,
    workers: usize,
    runs: u32,
    warmup: u32,
    drivers: u64,
}

fn usage() -> ! {
    eprintln!(
        "usage: bench <workload|all> [--peer rusm|tokio|both] [--n N] [--workers W] \
         [--runs R] [--warmup K] [--drivers D]\n  workloads: {} spawn_parallel",
        ALL.join(" ")
    );
    std::process::exit(2)
}

fn parse() -> Args {
    let mut it = std::env::args().skip(1);
    let mut args = Args {
        workload: String::new(),
        peers: vec!["rusm"],
        n: None,
        workers: common::cores(),
        runs: 1,
        warmup: 0,
        drivers: 2,
    };
    fn num<T: std::str::FromStr>(v: Option<String>) -> T {
        v.and_then(|s| s.replace('_', "").parse().ok())
            .unwrap_or_else(|| usage())
    }
    while let Some(a) = it.next() {
        match a.as_str() {
            "--peer" => {
                args.peers = match it.next().as_deref() {
                    Some("rusm") => vec!["rusm"],
                    Some("tokio") => vec!["tokio"],
                    Some("both") => vec!["rusm", "tokio"],
                    _ => usage(),
                }
            }
            "--n" => args.n = Some(num(it.next())),
            "--workers" => args.workers = num::<usize>(it.next()).max(1),
            "--runs" => args.runs = num::<u32>(it.next()).max(1),
            "--warmup" => args.warmup = num(it.next()),
            "--drivers" => args.drivers = num::<u64>(it.next()).max(1),
            "-h" | "--help" => usage(),
            w if !w.starts_with('-') && args.workload.is_empty() => args.workload = w.to_string(),
            _ => usage(),
        }
    }
    if args.workload.is_empty() {
        usage();
    }
    args
}

/// The workload `name` at size `n` (default: the full size).
fn workload(name: &str, n: Option<u64>, drivers: u64) -> Workload {
    match name {
        "spawn" => Workload::Spawn {
            n: n.unwrap_or(1_000_000),
        },
        "skynet" => {
            let leaves = n.unwrap_or(1_000_000);
            let mut p = 1;
            while p < leaves {
                p *= 10;
            }
            if p != leaves {
                eprintln!("skynet: n must be a power of 10");
                std::process::exit(2);
            }
            Workload::Skynet { leaves }
        }
        "pingpong" => Workload::Pingpong {
            n: n.unwrap_or(1_000_000),
        },
        "call" => Workload::Call {
            n: n.unwrap_or(1_000_000),
        },
        "parallel_pingpong" => Workload::ParallelPingpong {
            pairs: 1_000,
            rounds: (n.unwrap_or(1_000_000) / 1_000).max(1),
        },
        "ring" => Workload::Ring {
            procs: 10_000,
            hops: n.unwrap_or(10_000_000),
        },
        "fanin" => Workload::Fanin {
            senders: 1_000,
            per: (n.unwrap_or(1_000_000) / 1_000).max(1),
        },
        "yield_many" => Workload::YieldMany {
            procs: 200,
            yields: (n.unwrap_or(200_000) / 200).max(1),
        },
        "latency" => Workload::Latency {
            spinners: 4,
            rounds: n.unwrap_or(100_000),
        },
        "idle_memory" => Workload::IdleMemory {
            n: n.unwrap_or(1_000_000),
        },
        "spawn_parallel" => Workload::SpawnParallel {
            drivers,
            per: (n.unwrap_or(1_000_000) / drivers).max(1),
        },
        "restart_storm" => Workload::RestartStorm {
            children: 1_000,
            crashes: (n.unwrap_or(100_000) / 1_000).max(1),
        },
        "restart_storm_windowed" => Workload::RestartStormWindowed {
            children: 1_000,
            crashes: (n.unwrap_or(100_000) / 1_000).max(1),
        },
        "dynamic_children" => Workload::DynamicChildren {
            n: n.unwrap_or(100_000),
        },
        "link_cascade" => Workload::LinkCascade {
            procs: n.unwrap_or(100_000).max(1),
        },
        "monitor_churn" => Workload::MonitorChurn {
            n: n.unwrap_or(1_000_000),
        },
        "hub_monitors" => Workload::HubMonitors {
            n: n.unwrap_or(100_000),
        },
        "hub_links" => Workload::HubLinks {
            n: n.unwrap_or(100_000),
        },
        "hub_cascade" => Workload::HubCascade {
            n: n.unwrap_or(100_000),
        },
        "send_named" => Workload::SendNamed {
            senders: 2,
            per: (n.unwrap_or(1_000_000) / 2).max(1),
        },
        "timers_fire" => Workload::TimersFire {
            n: n.unwrap_or(1_000_000),
        },
        "timers_cancel" => Workload::TimersCancel {
            n: n.unwrap_or(1_000_000),
        },
        _ => usage(),
    }
}

fn print(w: &Workload, peer: &str, o: &Outcome) {
    let total_ns = o.elapsed.as_nanos() as f64;
    let per_op = o.per_op.unwrap_or(total_ns / w.n() as f64);
    let mut extra = String::new();
    if let Some(cpu) = o.cpu {
        extra += &format!(" cpu_ms={:.3}", cpu.as_secs_f64() * 1e3);
    }
    if let Some(note) = &o.note {
        extra += " ";
        extra += note;
    }
    println!(
        "workload={} peer={} n={} total_ms={:.3} per_op_ns={:.3} check={}{}",
        w.name(),
        peer,
        w.n(),
        total_ns / 1e6,
        per_op,
        o.check,
        extra
    );
}

/// Runs one (workload, runtime) pair in this process; false if a check failed.
fn run_here(w: Workload, peer: &str, args: &Args) -> bool {
    let mut ok = true;
    let mut check = |o: &Outcome| {
        if o.check != w.expected_check() {
            eprintln!(
                "CHECK FAILED: workload={} peer={peer}: got {}, expected {}",
                w.name(),
                o.check,
                w.expected_check()
            );
            ok = false;
        }
        if let Some(why) = &o.failure {
            eprintln!("CHECK FAILED: workload={} peer={peer}: {why}", w.name());
            ok = false;
        }
    };
    if peer == "tokio" && !w.has_tokio() {
        eprintln!("{}: no tokio baseline, skipped", w.name());
        return true;
    }
    match peer {
        "rusm" => {
            let rt = common::rusm_runtime(args.workers);
            for _ in 0..args.warmup {
                check(&w.run_rusm(&rt));
            }
            for _ in 0..args.runs {
                let o = w.run_rusm(&rt);
                print(&w, peer, &o);
                check(&o);
            }
        }
        _ => {
            let rt = common::tokio_runtime(args.workers);
            for _ in 0..args.warmup {
                check(&w.run_tokio(&rt));
            }
            for _ in 0..args.runs {
                let o = w.run_tokio(&rt);
                print(&w, peer, &o);
                check(&o);
            }
        }
    }
    ok
}

fn main() -> ExitCode {
    let args = parse();
    let names: Vec<&str> = if args.workload == "all" {
        ALL.to_vec()
    } else {
        vec![args.workload.as_str()]
    };
    // Validate every name before running anything.
    let loads: Vec<Workload> = names
        .iter()
        .map(|name| workload(name, args.n, args.drivers))
        .collect();
    let mut ok = true;
    if loads.len() == 1 && args.peers.len() == 1 {
        ok = run_here(loads[0], args.peers[0], &args);
    } else {
        let exe = std::env::current_exe().expect("current_exe");
        for (name, w) in names.iter().zip(&loads) {
            // Workloads without a tokio baseline run on rusm-otp only.
            for peer in args
                .peers
                .iter()
                .filter(|p| **p != "tokio" || w.has_tokio())
            {
                let mut cmd = Command::new(&exe);
                cmd.arg(name)
                    .args(["--peer", peer])
                    .args(["--workers", &args.workers.to_string()])
                    .args(["--runs", &args.runs.to_string()])
                    .args(["--warmup", &args.warmup.to_string()])
                    .args(["--drivers", &args.drivers.to_string()]);
                if let Some(n) = args.n {
                    cmd.args(["--n", &n.to_string()]);
                }
                let status = cmd.status().expect("failed to run a child bench");
                ok &= status.success();
            }
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
