//! The benchmark workloads of `WORKLOADS.md`, once for rusm-otp
//! and once for a tokio baseline, shared by `examples/bench.rs` (the
//! command-line runner) and `benches/workloads.rs` (criterion), so that both
//! run exactly the same code.
//!
//! Every workload is run by a *driver* that is itself a process of the
//! runtime under test; the driver reads the clock and returns an
//! [`Outcome`]. The OS thread that calls a workload function only waits for
//! the driver (`block_on` of its join handle).
//!
//! The tokio baseline models a process as a `tokio::spawn`ed task that owns
//! its own unbounded `mpsc` mailbox; its address is the mailbox's
//! `UnboundedSender`. Spawning a tokio "process" therefore creates a channel
//! and spawns a task, just as spawning a rusm-otp process allocates a task
//! that carries its mailbox.
//!
//! restart_storm_windowed, dynamic_children, monitor_churn, the hub
//! workloads, send_named, timers_fire and timers_cancel exercise rusm-otp's
//! supervisor, links, monitors, registry and timer wheel, for which tokio
//! has no counterpart: they have no tokio baseline
//! ([`Workload::has_tokio`]). restart_storm has one: a task that restarts
//! the children of a `JoinSet` as they end (`tok::restart_storm`).
//! link_cascade has one, on an emulation of
//! links and monitors over channels (see `tok::chain_proc`).

#![allow(dead_code)]

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// What a driver reports.
#[derive(Debug, Clone)]
pub(crate) struct Outcome {
    /// Time measured inside the driver.
    pub(crate) elapsed: Duration,
    /// The workload's check value.
    pub(crate) check: u64,
    /// A per-op figure that is not `elapsed / n` (idle_memory: bytes per process).
    pub(crate) per_op: Option<f64>,
    /// CPU time of the whole OS process (every thread) over the timed
    /// section, for the workloads that report it (the timers).
    pub(crate) cpu: Option<Duration>,
    /// Extra `key=value` fields for the output line (untimed verification).
    pub(crate) note: Option<String>,
    /// Why the untimed verification failed, beyond the check value.
    pub(crate) failure: Option<String>,
}

impl Outcome {
    fn new(elapsed: Duration, check: u64) -> Outcome {
        Outcome {
            elapsed,
            check,
            per_op: None,
            cpu: None,
            note: None,
            failure: None,
        }
    }

    fn with_cpu(mut self, cpu: Duration) -> Outcome {
        self.cpu = Some(cpu);
        self
    }

    fn with_note(mut self, note: String) -> Outcome {
        self.note = Some(note);
        self
    }

    /// Records a failed verification unless `ok`.
    fn verify(mut self, ok: bool, what: impl FnOnce() -> String) -> Outcome {
        if !ok && self.failure.is_none() {
            self.failure = Some(what());
        }
        self
    }
}

/// One workload at one size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Workload {
    /// 1. `n` processes spawned, each sends one message back.
    Spawn { n: u64 },
    /// 2. skynet with `leaves` leaves (a power of 10).
    Skynet { leaves: u64 },
    /// 3. `n` round trips with one pong process.
    Pingpong { n: u64 },
    /// `n` calls (request and reply, with a timeout) to one server process.
    Call { n: u64 },
    /// 4. `pairs` pinger/pong pairs, `rounds` round trips each.
    ParallelPingpong { pairs: u64, rounds: u64 },
    /// 5. a ring of `procs` processes, `hops` hops.
    Ring { procs: u64, hops: u64 },
    /// 6. `senders` processes send `per` messages each to the driver.
    Fanin { senders: u64, per: u64 },
    /// 9. `procs` processes yield `yields` times each.
    YieldMany { procs: u64, yields: u64 },
    /// 11. a probe pair does `rounds` round trips beside `spinners`
    ///     processes that spin [`SLICE`] and yield, in a loop.
    Latency { spinners: u64, rounds: u64 },
    /// 10. bytes per idle process, with `n` idle processes.
    IdleMemory { n: u64 },
    /// `drivers` processes spawn `per` children each, in parallel.
    SpawnParallel { drivers: u64, per: u64 },
    /// 7. a one-for-one supervisor of `children` children that crash
    ///    `crashes` times each before staying up.
    RestartStorm { children: u64, crashes: u64 },
    /// 7, with a sliding intensity window (`max_restarts(1_000_000)
    /// .within(1 s)`) instead of unlimited restarts.
    RestartStormWindowed { children: u64, crashes: u64 },
    /// `n` children started on a dynamic supervisor (`start_child`), then
    /// each stopped (`terminate_pid`).
    DynamicChildren { n: u64 },
    /// 8. a chain of `procs` linked processes, killed from its head.
    LinkCascade { procs: u64 },
    /// `n` monitor + demonitor pairs on one idle target.
    MonitorChurn { n: u64 },
    /// One watcher places `n` monitors on one hub, which is then killed:
    /// the time until all `n` `Down`s have arrived.
    HubMonitors { n: u64 },
    /// One hub linked to `n` processes, then unlinked from them all.
    HubLinks { n: u64 },
    /// One hub linked to `n` processes exits: the time until all `n` have
    /// ended over their links.
    HubCascade { n: u64 },
    /// `senders` processes send `per` messages each to a registered name.
    SendNamed { senders: u64, per: u64 },
    /// `n` `send_after` timers (0-100 ms) to the driver, all received.
    TimersFire { n: u64 },
    /// `n` `send_after` timers (10 s), all cancelled.
    TimersCancel { n: u64 },
}

impl Workload {
    /// The workload's name in the output.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Workload::Spawn { .. } => "spawn",
            Workload::Skynet { .. } => "skynet",
            Workload::Pingpong { .. } => "pingpong",
            Workload::Call { .. } => "call",
            Workload::ParallelPingpong { .. } => "parallel_pingpong",
            Workload::Ring { .. } => "ring",
            Workload::Fanin { .. } => "fanin",
            Workload::YieldMany { .. } => "yield_many",
            Workload::Latency { .. } => "latency",
            Workload::IdleMemory { .. } => "idle_memory",
            Workload::SpawnParallel { .. } => "spawn_parallel",
            Workload::RestartStorm { .. } => "restart_storm",
            Workload::RestartStormWindowed { .. } => "restart_storm_windowed",
            Workload::DynamicChildren { .. } => "dynamic_children",
            Workload::LinkCascade { .. } => "link_cascade",
            Workload::MonitorChurn { .. } => "monitor_churn",
            Workload::HubMonitors { .. } => "hub_monitors",
            Workload::HubLinks { .. } => "hub_links",
            Workload::HubCascade { .. } => "hub_cascade",
            Workload::SendNamed { .. } => "send_named",
            Workload::TimersFire { .. } => "timers_fire",
            Workload::TimersCancel { .. } => "timers_cancel",
        }
    }

    /// The number of per-op units (`per_op_ns = total_ns / n`).
    pub(crate) fn n(&self) -> u64 {
        match *self {
            Workload::Spawn { n }
            | Workload::Pingpong { n }
            | Workload::Call { n }
            | Workload::IdleMemory { n }
            | Workload::MonitorChurn { n }
            | Workload::HubMonitors { n }
            | Workload::HubLinks { n }
            | Workload::HubCascade { n }
            | Workload::TimersFire { n }
            | Workload::TimersCancel { n } => n,
            Workload::Skynet { leaves } => leaves,
            Workload::ParallelPingpong { pairs, rounds } => pairs * rounds,
            Workload::Ring { hops, .. } => hops,
            Workload::Fanin { senders, per } => senders * per,
            Workload::YieldMany { procs, yields } => procs * yields,
            Workload::Latency { rounds, .. } => rounds,
            Workload::SpawnParallel { drivers, per } => drivers * per,
            Workload::RestartStorm { children, crashes }
            | Workload::RestartStormWindowed { children, crashes } => children * crashes,
            Workload::DynamicChildren { n } => n,
            Workload::LinkCascade { procs } => procs,
            Workload::SendNamed { senders, per } => senders * per,
        }
    }

    /// Whether the tokio baseline has this workload (there is no tokio
    /// supervisor, registry, monitor or timer-wheel peer to compare with).
    pub(crate) fn has_tokio(&self) -> bool {
        !matches!(
            self,
            Workload::RestartStormWindowed { .. }
                | Workload::DynamicChildren { .. }
                | Workload::MonitorChurn { .. }
                | Workload::HubMonitors { .. }
                | Workload::HubLinks { .. }
                | Workload::HubCascade { .. }
                | Workload::SendNamed { .. }
                | Workload::TimersFire { .. }
                | Workload::TimersCancel { .. }
        )
    }

    /// The check value a correct run reports.
    pub(crate) fn expected_check(&self) -> u64 {
        match *self {
            Workload::Skynet { leaves } => leaves * (leaves - 1) / 2,
            _ => self.n(),
        }
    }

    /// Runs it once on rusm-otp.
    pub(crate) fn run_rusm(&self, rt: &rusm_otp::Runtime) -> Outcome {
        match *self {
            Workload::Spawn { n } => rusm::spawn(rt, n),
            Workload::Skynet { leaves } => rusm::skynet(rt, leaves),
            Workload::Pingpong { n } => rusm::pingpong(rt, n),
            Workload::Call { n } => rusm::call(rt, n),
            Workload::ParallelPingpong { pairs, rounds } => {
                rusm::parallel_pingpong(rt, pairs, rounds)
            }
            Workload::Ring { procs, hops } => rusm::ring(rt, procs, hops),
            Workload::Fanin { senders, per } => rusm::fanin(rt, senders, per),
            Workload::YieldMany { procs, yields } => rusm::yield_many(rt, procs, yields),
            Workload::Latency { spinners, rounds } => rusm::latency(rt, spinners, rounds),
            Workload::IdleMemory { n } => rusm::idle_memory(rt, n),
            Workload::SpawnParallel { drivers, per } => rusm::spawn_parallel(rt, drivers, per),
            Workload::RestartStorm { children, crashes } => {
                rusm::restart_storm(rt, children, crashes, false)
            }
            Workload::RestartStormWindowed { children, crashes } => {
                rusm::restart_storm(rt, children, crashes, true)
            }
            Workload::DynamicChildren { n } => rusm::dynamic_children(rt, n),
            Workload::LinkCascade { procs } => rusm::link_cascade(rt, procs),
            Workload::MonitorChurn { n } => rusm::monitor_churn(rt, n),
            Workload::HubMonitors { n } => rusm::hub_monitors(rt, n),
            Workload::HubLinks { n } => rusm::hub_links(rt, n),
            Workload::HubCascade { n } => rusm::hub_cascade(rt, n),
            Workload::SendNamed { senders, per } => rusm::send_named(rt, senders, per),
            Workload::TimersFire { n } => rusm::timers_fire(rt, n),
            Workload::TimersCancel { n } => rusm::timers_cancel(rt, n),
        }
    }

    /// Runs it once on the tokio baseline.
    ///
    /// # Panics
    /// For a workload without a tokio peer (see [`Workload::has_tokio`]).
    pub(crate) fn run_tokio(&self, rt: &tokio::runtime::Runtime) -> Outcome {
        match *self {
            Workload::Spawn { n } => tok::spawn(rt, n),
            Workload::Skynet { leaves } => tok::skynet(rt, leaves),
            Workload::Pingpong { n } => tok::pingpong(rt, n),
            Workload::Call { n } => tok::call(rt, n),
            Workload::ParallelPingpong { pairs, rounds } => {
                tok::parallel_pingpong(rt, pairs, rounds)
            }
            Workload::Ring { procs, hops } => tok::ring(rt, procs, hops),
            Workload::Fanin { senders, per } => tok::fanin(rt, senders, per),
            Workload::YieldMany { procs, yields } => tok::yield_many(rt, procs, yields),
            Workload::Latency { spinners, rounds } => tok::latency(rt, spinners, rounds),
            Workload::IdleMemory { n } => tok::idle_memory(rt, n),
            Workload::SpawnParallel { drivers, per } => tok::spawn_parallel(rt, drivers, per),
            Workload::LinkCascade { procs } => tok::link_cascade(rt, procs),
            Workload::RestartStorm { children, crashes } => {
                tok::restart_storm(rt, children, crashes)
            }
            Workload::RestartStormWindowed { .. }
            | Workload::DynamicChildren { .. }
            | Workload::MonitorChurn { .. }
            | Workload::HubMonitors { .. }
            | Workload::HubLinks { .. }
            | Workload::HubCascade { .. }
            | Workload::SendNamed { .. }
            | Workload::TimersFire { .. }
            | Workload::TimersCancel { .. } => {
                panic!("{}: no tokio baseline", self.name())
            }
        }
    }
}

/// A rusm-otp runtime with `workers` worker threads.
pub(crate) fn rusm_runtime(workers: usize) -> rusm_otp::Runtime {
    rusm_otp::Runtime::builder().workers(workers).build()
}

/// A tokio multi-thread runtime with `workers` worker threads.
pub(crate) fn tokio_runtime(workers: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .build()
        .expect("tokio runtime")
}

/// The number of cores.
pub(crate) fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Resident set size of this process, in bytes.
fn rss_bytes() -> u64 {
    let s = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm");
    let pages: u64 = s
        .split_whitespace()
        .nth(1)
        .and_then(|f| f.parse().ok())
        .expect("statm format");
    pages * 4096
}

/// CPU time (user + system) used so far by this OS process, all threads
/// together: fields 14 and 15 of `/proc/self/stat`, in clock ticks of
/// 1/100 s (`USER_HZ`, 100 on Linux everywhere this runs), so the
/// resolution is 10 ms.
pub(crate) fn cpu_time() -> Duration {
    const TICKS_PER_SEC: u64 = 100;
    let s = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    // The command name (field 2) is in parentheses and may hold spaces:
    // count fields from the last ')', which ends it; field 3 comes next.
    let rest = &s[s.rfind(')').expect("stat format") + 1..];
    let mut fields = rest.split_whitespace().skip(11); // fields 3..=13
    let mut next = || -> u64 {
        fields
            .next()
            .and_then(|f| f.parse().ok())
            .expect("stat format")
    };
    let ticks = next() + next(); // utime, stime
    Duration::from_millis(ticks * 1000 / TICKS_PER_SEC)
}

/// How long a spinner of the latency workload holds its worker per slice.
pub(crate) const SLICE: Duration = Duration::from_micros(20);

/// Holds the thread for `d` without yielding (a slice of CPU-bound work).
fn spin_for(d: Duration) {
    let end = Instant::now() + d;
    while Instant::now() < end {
        std::hint::spin_loop();
    }
}

/// The latency workload's outcome: the probe window as the elapsed time,
/// the round-trip percentiles and the spinners' progress as notes. The
/// spinners must have progressed while the probe ran.
fn latency_outcome(elapsed: Duration, mut rtts: Vec<u32>, slices: u64) -> Outcome {
    let n = rtts.len() as u64;
    rtts.sort_unstable();
    let pct = |p: f64| -> u32 {
        if rtts.is_empty() {
            0
        } else {
            rtts[((rtts.len() - 1) as f64 * p).round() as usize]
        }
    };
    let per_s = slices as f64 / elapsed.as_secs_f64().max(1e-9);
    Outcome::new(elapsed, n)
        .with_note(format!(
            "p50_ns={} p99_ns={} p999_ns={} max_ns={} slices={} slices_per_s={:.0}",
            pct(0.50),
            pct(0.99),
            pct(0.999),
            rtts.last().copied().unwrap_or(0),
            slices,
            per_s
        ))
        .verify(slices > 0, || "the spinners made no progress".to_string())
}

/// A round trip's duration in nanoseconds, saturated.
fn rtt_ns(d: Duration) -> u32 {
    u32::try_from(d.as_nanos()).unwrap_or(u32::MAX)
}

/// splitmix64: a tiny deterministic generator for the timer delays.
#[derive(Debug)]
pub(crate) struct SplitMix64(pub(crate) u64);

impl SplitMix64 {
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Untimed settling: waits (bounded) until `alive()` reaches 0, so that the
/// teardown of one run does not spill into the next.
fn settle(alive: impl Fn() -> usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive() > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// The rusm-otp side.
pub(crate) mod rusm {
    use super::*;
    use rusm_otp::supervisor::{ChildSpec, Restart, SupervisorRef};
    use rusm_otp::{Context, ExitReason, Message, Pid, Received, Request, Runtime, Strategy};
    use std::sync::Mutex;

    /// The token of pingpong.
    struct Ping;
    /// The reply of pingpong.
    struct Pong;
    /// Ends a pong process.
    struct Stop;
    /// A ring's completion.
    struct Done;

    /// Receives the next user message.
    async fn recv(ctx: &mut Context) -> Message {
        ctx.recv().await.message().expect("a message, not a signal")
    }

    /// Receives the next user message, which must be a `T`.
    async fn recv_as<T: 'static>(ctx: &mut Context) -> T {
        recv(ctx)
            .await
            .downcast::<T>()
            .unwrap_or_else(|m| panic!("unexpected message {m:?}"))
    }

    /// Runs `body` as the driver process and waits for it from this thread.
    fn drive<F, Fut>(rt: &Runtime, body: F) -> Outcome
    where
        F: FnOnce(Context) -> Fut,
        Fut: Future<Output = Outcome> + Send + 'static,
    {
        let slot = Arc::new(Mutex::new(None));
        let out = slot.clone();
        let h = rt.spawn(move |ctx| {
            let fut = body(ctx);
            async move {
                let r = fut.await;
                *out.lock().unwrap() = Some(r);
            }
        });
        let reason = rt.block_on(h.join());
        assert_eq!(
            reason,
            ExitReason::Normal,
            "the driver did not end normally"
        );
        let r = slot.lock().unwrap().take().expect("driver outcome");
        settle(|| rt.process_count());
        r
    }

    pub(crate) fn spawn(rt: &Runtime, n: u64) -> Outcome {
        drive(rt, move |mut ctx| async move {
            let me = ctx.pid();
            let t0 = Instant::now();
            for _ in 0..n {
                ctx.runtime().spawn(move |c| async move {
                    c.runtime().send(me, ());
                });
            }
            let mut got = 0;
            for _ in 0..n {
                if recv(&mut ctx).await.is::<()>() {
                    got += 1;
                }
            }
            Outcome::new(t0.elapsed(), got)
        })
    }

    /// One skynet node; explicitly `Send` so that it may spawn itself.
    #[allow(
        clippy::manual_async_fn,
        reason = "an `async fn` cannot spawn itself: its Send-ness is unknown inside its own body"
    )]
    fn skynet_node(
        mut ctx: Context,
        parent: Pid,
        num: u64,
        size: u64,
    ) -> impl Future<Output = ()> + Send + 'static {
        async move {
            if size == 1 {
                ctx.runtime().send(parent, num);
                return;
            }
            let me = ctx.pid();
            let sub = size / 10;
            for i in 0..10 {
                ctx.runtime()
                    .spawn(move |c| skynet_node(c, me, num + i * sub, sub));
            }
            let mut sum = 0u64;
            for _ in 0..10 {
                sum += recv_as::<u64>(&mut ctx).await;
            }
            ctx.runtime().send(parent, sum);
        }
    }

    pub(crate) fn skynet(rt: &Runtime, leaves: u64) -> Outcome {
        drive(rt, move |mut ctx| async move {
            let me = ctx.pid();
            let t0 = Instant::now();
            ctx.runtime().spawn(move |c| skynet_node(c, me, 0, leaves));
            let sum = recv_as::<u64>(&mut ctx).await;
            Outcome::new(t0.elapsed(), sum)
        })
    }

    /// A pong process serving `pinger`; returns its pid.
    fn spawn_pong(rt: &Runtime, pinger: Pid) -> Pid {
        rt.spawn(move |mut c| async move {
            loop {
                let m = recv(&mut c).await;
                if m.is::<Ping>() {
                    c.runtime().send(pinger, Pong);
                } else {
                    assert!(m.is::<Stop>());
                    return;
                }
            }
        })
        .pid()
    }

    /// `rounds` round trips with a fresh pong process, then `Stop`.
    async fn ping_rounds(ctx: &mut Context, rounds: u64) -> u64 {
        let pong = spawn_pong(ctx.runtime(), ctx.pid());
        let mut count = 0;
        for _ in 0..rounds {
            ctx.runtime().send(pong, Ping);
            if recv(ctx).await.is::<Pong>() {
                count += 1;
            }
        }
        ctx.runtime().send(pong, Stop);
        count
    }

    pub(crate) fn pingpong(rt: &Runtime, n: u64) -> Outcome {
        drive(rt, move |mut ctx| async move {
            let t0 = Instant::now();
            let count = ping_rounds(&mut ctx, n).await;
            Outcome::new(t0.elapsed(), count)
        })
    }

    /// call: `n` calls to one server, each answering `i + 1` to `i`.
    pub(crate) fn call(rt: &Runtime, n: u64) -> Outcome {
        drive(rt, move |ctx| async move {
            let rt = ctx.runtime();
            let server = rt
                .spawn(|mut c| async move {
                    while let Received::Message(m) = c.recv().await {
                        match m.downcast::<Request<u64, u64>>() {
                            Ok(req) => {
                                let i = *req.body();
                                req.reply(i + 1);
                            }
                            Err(m) => {
                                assert!(m.is::<Stop>());
                                return;
                            }
                        }
                    }
                })
                .pid();
            let t0 = Instant::now();
            let mut count = 0;
            for i in 0..n {
                let r = rt
                    .call::<u64, u64>(server, i, Duration::from_secs(60))
                    .await;
                if r == Ok(i + 1) {
                    count += 1;
                }
            }
            let elapsed = t0.elapsed();
            rt.send(server, Stop);
            Outcome::new(elapsed, count)
        })
    }

    pub(crate) fn parallel_pingpong(rt: &Runtime, pairs: u64, rounds: u64) -> Outcome {
        drive(rt, move |mut ctx| async move {
            let me = ctx.pid();
            let t0 = Instant::now();
            for _ in 0..pairs {
                ctx.runtime().spawn(move |mut c| async move {
                    let count = ping_rounds(&mut c, rounds).await;
                    c.runtime().send(me, count);
                });
            }
            let mut sum = 0;
            for _ in 0..pairs {
                sum += recv_as::<u64>(&mut ctx).await;
            }
            Outcome::new(t0.elapsed(), sum)
        })
    }

    pub(crate) fn ring(rt: &Runtime, procs: u64, hops: u64) -> Outcome {
        drive(rt, move |mut ctx| async move {
            let me = ctx.pid();
            let performed = Arc::new(AtomicU64::new(0));
            let t0 = Instant::now();
            let mut nodes = Vec::with_capacity(procs as usize);
            for _ in 0..procs {
                let performed = performed.clone();
                let h = ctx.runtime().spawn(move |mut c| async move {
                    let next = recv_as::<Pid>(&mut c).await;
                    let mut mine = 0;
                    loop {
                        let k = recv_as::<u64>(&mut c).await;
                        if k == 0 {
                            performed.fetch_add(mine, Ordering::Relaxed);
                            c.runtime().send(me, Done);
                            return;
                        }
                        mine += 1;
                        if k < procs {
                            // Last visit: account before the send, which
                            // orders this add before the driver's `Done`.
                            performed.fetch_add(mine, Ordering::Relaxed);
                            c.runtime().send(next, k - 1);
                            return;
                        }
                        c.runtime().send(next, k - 1);
                    }
                });
                nodes.push(h.pid());
            }
            for (i, &p) in nodes.iter().enumerate() {
                ctx.runtime().send(p, nodes[(i + 1) % nodes.len()]);
            }
            ctx.runtime().send(nodes[0], hops);
            let _ = recv_as::<Done>(&mut ctx).await;
            let elapsed = t0.elapsed();
            Outcome::new(elapsed, performed.load(Ordering::Relaxed))
        })
    }

    pub(crate) fn fanin(rt: &Runtime, senders: u64, per: u64) -> Outcome {
        drive(rt, move |mut ctx| async move {
            let me = ctx.pid();
            let t0 = Instant::now();
            for _ in 0..senders {
                ctx.runtime().spawn(move |c| async move {
                    for _ in 0..per {
                        c.runtime().send(me, ());
                    }
                });
            }
            let mut count = 0;
            for _ in 0..senders * per {
                if recv(&mut ctx).await.is::<()>() {
                    count += 1;
                }
            }
            Outcome::new(t0.elapsed(), count)
        })
    }

    pub(crate) fn yield_many(rt: &Runtime, procs: u64, yields: u64) -> Outcome {
        drive(rt, move |mut ctx| async move {
            let me = ctx.pid();
            let t0 = Instant::now();
            for _ in 0..procs {
                ctx.runtime().spawn(move |c| async move {
                    let mut done = 0u64;
                    for _ in 0..yields {
                        rusm_otp::yield_now().await;
                        done += 1;
                    }
                    c.runtime().send(me, done);
                });
            }
            let mut total = 0;
            for _ in 0..procs {
                total += recv_as::<u64>(&mut ctx).await;
            }
            Outcome::new(t0.elapsed(), total)
        })
    }

    /// latency: the driver is the probe's pinger; its pong and `spinners`
    /// spinners (spin a slice, count it, `yield_now`, until told to stop)
    /// run beside it. Each round trip is timed on its own.
    pub(crate) fn latency(rt: &Runtime, spinners: u64, rounds: u64) -> Outcome {
        drive(rt, move |mut ctx| async move {
            let me = ctx.pid();
            let stop = Arc::new(AtomicBool::new(false));
            let slices = Arc::new(AtomicU64::new(0));
            for _ in 0..spinners {
                let (stop, slices) = (stop.clone(), slices.clone());
                ctx.runtime().spawn(move |c| async move {
                    while !stop.load(Ordering::Relaxed) {
                        spin_for(SLICE);
                        slices.fetch_add(1, Ordering::Relaxed);
                        rusm_otp::yield_now().await;
                    }
                    c.runtime().send(me, Done);
                });
            }
            let pong = spawn_pong(ctx.runtime(), me);
            // Untimed: every spinner is under way.
            while slices.load(Ordering::Relaxed) < spinners {
                rusm_otp::yield_now().await;
            }
            let mut rtts = Vec::with_capacity(rounds as usize);
            let s0 = slices.load(Ordering::Relaxed);
            let t0 = Instant::now();
            for _ in 0..rounds {
                let t = Instant::now();
                ctx.runtime().send(pong, Ping);
                let Pong = recv_as::<Pong>(&mut ctx).await;
                rtts.push(rtt_ns(t.elapsed()));
            }
            let elapsed = t0.elapsed();
            let slices = slices.load(Ordering::Relaxed) - s0;
            stop.store(true, Ordering::Relaxed);
            ctx.runtime().send(pong, Stop);
            for _ in 0..spinners {
                let Done = recv_as::<Done>(&mut ctx).await;
            }
            latency_outcome(elapsed, rtts, slices)
        })
    }

    pub(crate) fn idle_memory(rt: &Runtime, n: u64) -> Outcome {
        drive(rt, move |ctx| async move {
            let started = Arc::new(AtomicU64::new(0));
            // The driver's own bookkeeping, allocated and touched before the
            // first reading so that it is not counted.
            let mut pids: Vec<Pid> = (0..n).map(|_| Pid::from_raw(u64::MAX)).collect();
            std::hint::black_box(&mut pids);
            let before = rss_bytes();
            let t0 = Instant::now();
            for slot in pids.iter_mut() {
                let started = started.clone();
                let h = ctx.runtime().spawn(move |mut c| async move {
                    started.fetch_add(1, Ordering::Relaxed);
                    let _ = c.recv().await;
                });
                *slot = h.pid();
            }
            // Untimed: every process has run up to its receive.
            while started.load(Ordering::Relaxed) < n {
                rusm_otp::yield_now().await;
            }
            let elapsed = t0.elapsed();
            let after = rss_bytes();
            let mut killed = 0;
            for &p in &pids {
                if ctx.runtime().kill(p) {
                    killed += 1;
                }
            }
            Outcome {
                per_op: Some(after.saturating_sub(before) as f64 / n as f64),
                ..Outcome::new(elapsed, killed)
            }
        })
    }

    pub(crate) fn spawn_parallel(rt: &Runtime, drivers: u64, per: u64) -> Outcome {
        drive(rt, move |mut ctx| async move {
            let me = ctx.pid();
            let t0 = Instant::now();
            for _ in 0..drivers {
                ctx.runtime().spawn(move |mut d| async move {
                    let sub = d.pid();
                    for _ in 0..per {
                        d.runtime().spawn(move |c| async move {
                            c.runtime().send(sub, ());
                        });
                    }
                    let mut got = 0u64;
                    for _ in 0..per {
                        if recv(&mut d).await.is::<()>() {
                            got += 1;
                        }
                    }
                    d.runtime().send(me, got);
                });
            }
            let mut total = 0;
            for _ in 0..drivers {
                total += recv_as::<u64>(&mut ctx).await;
            }
            Outcome::new(t0.elapsed(), total)
        })
    }

    /// Parks on the mailbox until the process is ended from outside.
    async fn idle(mut ctx: Context) {
        loop {
            let _ = ctx.recv().await;
        }
    }

    /// What a restart-storm child tells the driver once it stays up.
    struct Alive;

    /// restart_storm (WORKLOADS.md §7), with child specs. The specs (the
    /// supervisor's builder) are data, made before the clock starts, like an
    /// OTP child spec list; the timed section starts the supervisor.
    /// `windowed`: `max_restarts(1_000_000).within(1 s)` instead of
    /// unlimited, so every restart is charged to a sliding window.
    pub(crate) fn restart_storm(
        rt: &Runtime,
        children: u64,
        crashes: u64,
        windowed: bool,
    ) -> Outcome {
        drive(rt, move |mut ctx| async move {
            let rt = ctx.runtime().clone();
            let me = ctx.pid();
            // Untimed: the start counters and the child specifications.
            let counters: Arc<Vec<AtomicU64>> =
                Arc::new((0..children).map(|_| AtomicU64::new(0)).collect());
            let mut spec = rt.supervisor(Strategy::OneForOne);
            spec = if windowed {
                spec.max_restarts(1_000_000).within(Duration::from_secs(1))
            } else {
                spec.max_restarts(0)
            };
            for i in 0..children as usize {
                let counters = counters.clone();
                spec = spec.child_spec(ChildSpec::new(format!("c{i}"), move |rt: &Runtime| {
                    let counters = counters.clone();
                    rt.spawn(move |ctx| async move {
                        let starts = counters[i].fetch_add(1, Ordering::Relaxed) + 1;
                        if starts <= crashes {
                            let pid = ctx.pid();
                            ctx.runtime().exit(pid, ExitReason::Crashed);
                            return;
                        }
                        ctx.runtime().send(me, Alive);
                        idle(ctx).await;
                    })
                }));
            }
            let t0 = Instant::now();
            let sup = spec.start().pid();
            let mut alive = 0;
            while alive < children {
                if recv(&mut ctx).await.is::<Alive>() {
                    alive += 1;
                }
            }
            let elapsed = t0.elapsed();
            // Untimed verification. Each child's last start happened before
            // its `Alive`, so the counters are final.
            let restarts: u64 = counters
                .iter()
                .map(|c| c.load(Ordering::Relaxed).saturating_sub(1))
                .sum();
            let infos = SupervisorRef::new(&rt, sup)
                .which_children()
                .await
                .unwrap_or_default();
            let running = infos
                .iter()
                .filter(|c| c.pid.is_some_and(|p| rt.is_alive(p)))
                .count() as u64;
            // A killed supervisor's children go with it.
            rt.kill(sup);
            Outcome::new(elapsed, restarts)
                .with_note(format!("running_children={running}"))
                .verify(running == children, || {
                    format!("{running} running children, expected {children}")
                })
        })
    }

    /// `n` children started on a dynamic supervisor, then each stopped by
    /// pid; every request is a round trip from the driver.
    pub(crate) fn dynamic_children(rt: &Runtime, n: u64) -> Outcome {
        drive(rt, move |ctx| async move {
            let rt = ctx.runtime().clone();
            let sup = rt.dynamic_supervisor().start().pid();
            let r = SupervisorRef::new(&rt, sup);
            let spec =
                ChildSpec::new("w", |rt: &Runtime| rt.spawn(idle)).restart(Restart::Temporary);
            let mut pids = Vec::with_capacity(n as usize);
            let t0 = Instant::now();
            for _ in 0..n {
                pids.push(r.start_child(spec.clone()).await.expect("started"));
            }
            let mut stopped = 0;
            for p in pids {
                if r.terminate_pid(p).await.is_ok() {
                    stopped += 1;
                }
            }
            let elapsed = t0.elapsed();
            let left = r
                .count_children()
                .await
                .map(|c| c.specs)
                .unwrap_or(usize::MAX);
            rt.kill(sup);
            Outcome::new(elapsed, stopped)
                .with_note(format!("children_left={left}"))
                .verify(left == 0, || format!("{left} children left"))
        })
    }

    /// link_cascade (WORKLOADS.md §8).
    pub(crate) fn link_cascade(rt: &Runtime, procs: u64) -> Outcome {
        drive(rt, move |mut ctx| async move {
            let rt = ctx.runtime().clone();
            let me = ctx.pid();
            // Untimed setup: the chain, linked, every member parked on its
            // mailbox; the driver monitors the last.
            let started = Arc::new(AtomicU64::new(0));
            let chain: Vec<Pid> = (0..procs)
                .map(|_| {
                    let started = started.clone();
                    rt.spawn(move |ctx| async move {
                        started.fetch_add(1, Ordering::Release);
                        idle(ctx).await;
                    })
                    .pid()
                })
                .collect();
            for w in chain.windows(2) {
                rt.link(w[0], w[1]);
            }
            let last = *chain.last().expect("an empty chain");
            let mref = rt.monitor(me, last);
            while started.load(Ordering::Acquire) < procs {
                rusm_otp::yield_now().await;
            }
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
            // Untimed verification.
            let dead = chain.iter().filter(|p| !rt.is_alive(**p)).count() as u64;
            Outcome::new(elapsed, dead)
                .with_note(format!("reason={reason:?}"))
                .verify(reason == ExitReason::Shutdown, || {
                    format!("the last process ended {reason:?}, expected Shutdown")
                })
        })
    }

    /// monitor_churn: `n` times, monitor one live idle target and take the
    /// monitor off again.
    pub(crate) fn monitor_churn(rt: &Runtime, n: u64) -> Outcome {
        drive(rt, move |mut ctx| async move {
            let rt = ctx.runtime().clone();
            let me = ctx.pid();
            // Untimed: the target.
            let target = rt.spawn(idle).pid();
            let t0 = Instant::now();
            let mut removed = 0;
            for _ in 0..n {
                let r = rt.monitor(me, target);
                if rt.demonitor(r) {
                    removed += 1;
                }
            }
            let elapsed = t0.elapsed();
            // Untimed verification: nothing left behind, no `Down` arrived.
            let left = rt.monitor_count();
            let on_target = rt.info(target).map_or(usize::MAX, |i| i.monitors);
            let stray = ctx.try_recv().is_some();
            rt.kill(target);
            Outcome::new(elapsed, removed)
                .with_note(format!("monitors_left={left}"))
                .verify(left == 0 && on_target == 0 && !stray, || {
                    format!("{left} monitors left ({on_target} on the target), stray item: {stray}")
                })
        })
    }

    /// hub_monitors: the driver places `n` monitors on one idle hub (the
    /// placing is timed separately), kills the hub, and receives all `n`
    /// `Down`s: the timed section runs from the kill to the last `Down`.
    pub(crate) fn hub_monitors(rt: &Runtime, n: u64) -> Outcome {
        drive(rt, move |mut ctx| async move {
            let rt = ctx.runtime().clone();
            let me = ctx.pid();
            let hub = rt.spawn(idle).pid();
            let t_place = Instant::now();
            for _ in 0..n {
                let _ = rt.monitor(me, hub);
            }
            let placed = t_place.elapsed();
            let on_hub = rt.info(hub).map_or(0, |i| i.monitors) as u64;
            let t0 = Instant::now();
            rt.kill(hub);
            let mut downs = 0;
            while downs < n {
                if let Received::Down { pid, .. } = ctx.recv().await {
                    if pid == hub {
                        downs += 1;
                    }
                }
            }
            let elapsed = t0.elapsed();
            // Untimed verification: every monitor fired and was freed.
            let left = rt.monitor_count();
            Outcome::new(elapsed, downs)
                .with_note(format!(
                    "place_ms={:.3} monitors_left={left}",
                    placed.as_secs_f64() * 1e3
                ))
                .verify(on_hub == n && left == 0, || {
                    format!("{on_hub} monitors on the hub, {left} left after it died")
                })
        })
    }

    /// `n` idle processes (untimed setup); each calls `ended` when its
    /// future is dropped.
    fn spokes(rt: &Runtime, n: u64, ended: impl Fn() + Clone + Send + 'static) -> Vec<Pid> {
        /// Calls its closure when dropped.
        struct OnDrop<F: Fn()>(F);
        impl<F: Fn()> Drop for OnDrop<F> {
            fn drop(&mut self) {
                (self.0)()
            }
        }
        (0..n)
            .map(|_| {
                let guard = OnDrop(ended.clone());
                rt.spawn(move |ctx| async move {
                    let _guard = guard;
                    idle(ctx).await
                })
                .pid()
            })
            .collect()
    }

    /// hub_links: one hub is linked to `n` idle processes, then unlinked
    /// from them all; both phases are timed (`link_ms`, `unlink_ms`).
    pub(crate) fn hub_links(rt: &Runtime, n: u64) -> Outcome {
        drive(rt, move |ctx| async move {
            let rt = ctx.runtime().clone();
            // Untimed setup: the hub and its spokes.
            let hub = rt.spawn(idle).pid();
            let spokes = spokes(&rt, n, || {});
            let t0 = Instant::now();
            for &s in &spokes {
                rt.link(hub, s);
            }
            let linked = t0.elapsed();
            let on_hub = rt.info(hub).map_or(0, |i| i.links) as u64;
            let t1 = Instant::now();
            for &s in &spokes {
                rt.unlink(hub, s);
            }
            let unlinked = t1.elapsed();
            // Untimed verification and cleanup.
            let left = rt.info(hub).map_or(usize::MAX, |i| i.links);
            let spoke_left = spokes
                .iter()
                .filter(|&&s| rt.info(s).is_none_or(|i| i.links != 0))
                .count();
            rt.kill(hub);
            for &s in &spokes {
                rt.kill(s);
            }
            Outcome::new(linked + unlinked, on_hub)
                .with_note(format!(
                    "link_ms={:.3} unlink_ms={:.3}",
                    linked.as_secs_f64() * 1e3,
                    unlinked.as_secs_f64() * 1e3
                ))
                .verify(left == 0 && spoke_left == 0, || {
                    format!("{left} links left on the hub, {spoke_left} spokes still linked")
                })
        })
    }

    /// The last spoke of hub_cascade to end tells the driver.
    struct AllEnded;

    /// hub_cascade: one hub linked to `n` idle processes (untimed setup)
    /// exits with `Shutdown`; the timed section runs until the last of the
    /// `n` has ended (its future dropped) over its link.
    pub(crate) fn hub_cascade(rt: &Runtime, n: u64) -> Outcome {
        drive(rt, move |mut ctx| async move {
            let rt = ctx.runtime().clone();
            let me = ctx.pid();
            let hub = rt.spawn(idle).pid();
            let ended = Arc::new(AtomicU64::new(0));
            let count = ended.clone();
            let handle = rt.clone();
            let spokes = spokes(&rt, n, move || {
                if count.fetch_add(1, Ordering::AcqRel) + 1 == n {
                    handle.send(me, AllEnded);
                }
            });
            for &s in &spokes {
                rt.link(hub, s);
            }
            let on_hub = rt.info(hub).map_or(0, |i| i.links) as u64;
            let t0 = Instant::now();
            rt.exit(hub, ExitReason::Shutdown);
            let _ = recv_as::<AllEnded>(&mut ctx).await;
            let elapsed = t0.elapsed();
            let dead = spokes.iter().filter(|&&s| !rt.is_alive(s)).count() as u64;
            Outcome::new(elapsed, ended.load(Ordering::Acquire))
                .with_note(format!("dead={dead}"))
                .verify(on_hub == n, || {
                    format!("{on_hub} links on the hub, expected {n}")
                })
        })
    }

    /// send_named's sink reports its count.
    struct Counted(u64);

    /// send_named: `senders` processes send `per` messages each to the
    /// process registered as `sink`, which counts them and reports.
    pub(crate) fn send_named(rt: &Runtime, senders: u64, per: u64) -> Outcome {
        const NAME: &str = "sink";
        drive(rt, move |mut ctx| async move {
            let rt = ctx.runtime().clone();
            let me = ctx.pid();
            let total = senders * per;
            // Untimed setup: the registered sink.
            let sink = rt
                .spawn(move |mut c| async move {
                    let mut count = 0u64;
                    while count < total {
                        if recv(&mut c).await.is::<()>() {
                            count += 1;
                        }
                    }
                    c.runtime().send(me, Counted(count));
                })
                .pid();
            assert!(rt.register(NAME, sink), "the name {NAME:?} is taken");
            let t0 = Instant::now();
            for _ in 0..senders {
                rt.spawn(move |c| async move {
                    for _ in 0..per {
                        c.runtime().send_named(NAME, ());
                    }
                });
            }
            let Counted(count) = recv_as::<Counted>(&mut ctx).await;
            Outcome::new(t0.elapsed(), count)
        })
    }

    /// timers_fire: the driver sets `n` timers to itself, each 0-99 ms
    /// away (uniform, whole milliseconds), and receives them all.
    pub(crate) fn timers_fire(rt: &Runtime, n: u64) -> Outcome {
        drive(rt, move |mut ctx| async move {
            let rt = ctx.runtime().clone();
            let me = ctx.pid();
            let mut rng = SplitMix64(0x7133_5EED);
            let cpu0 = cpu_time();
            let t0 = Instant::now();
            for i in 0..n {
                let delay = Duration::from_millis(rng.next_u64() % 100);
                // Dropping the `TimerRef` does not cancel the timer.
                let _ = rt.send_after(me, delay, i);
            }
            let scheduled = t0.elapsed();
            let (mut count, mut sum) = (0u64, 0u64);
            for _ in 0..n {
                sum += recv_as::<u64>(&mut ctx).await;
                count += 1;
            }
            let elapsed = t0.elapsed();
            let cpu = cpu_time().saturating_sub(cpu0);
            // Untimed verification: each timer fired once, none is left.
            let pending = rt.pending_timers();
            Outcome::new(elapsed, count)
                .with_cpu(cpu)
                .with_note(format!(
                    "schedule_ms={:.3} pending_timers={pending}",
                    scheduled.as_secs_f64() * 1e3
                ))
                .verify(sum == n * n.saturating_sub(1) / 2 && pending == 0, || {
                    format!("sum of the timers' values {sum}, {pending} timers pending")
                })
        })
    }

    /// timers_cancel: the driver sets `n` timers 10 s away, then cancels
    /// them all. Dropping the cancelled `TimerRef`s afterwards is untimed.
    pub(crate) fn timers_cancel(rt: &Runtime, n: u64) -> Outcome {
        drive(rt, move |mut ctx| async move {
            let rt = ctx.runtime().clone();
            let me = ctx.pid();
            // Untimed: room for the references.
            let mut timers = Vec::with_capacity(n as usize);
            let cpu0 = cpu_time();
            let t0 = Instant::now();
            for i in 0..n {
                timers.push(rt.send_after(me, Duration::from_secs(10), i));
            }
            let scheduled = t0.elapsed();
            let mut cancelled = 0;
            for t in &timers {
                if t.cancel() {
                    cancelled += 1;
                }
            }
            let elapsed = t0.elapsed();
            let cpu = cpu_time().saturating_sub(cpu0);
            // Untimed verification: nothing pending, nothing delivered.
            let pending = rt.pending_timers();
            let stray = ctx.try_recv().is_some();
            drop(timers);
            Outcome::new(elapsed, cancelled)
                .with_cpu(cpu)
                .with_note(format!(
                    "schedule_ms={:.3} cancel_ms={:.3} pending_timers={pending}",
                    scheduled.as_secs_f64() * 1e3,
                    (elapsed - scheduled).as_secs_f64() * 1e3
                ))
                .verify(pending == 0 && !stray, || {
                    format!("{pending} timers pending after cancelling, stray item: {stray}")
                })
        })
    }
}

/// The tokio baseline: a process is a task that owns an unbounded mailbox.
pub(crate) mod tok {
    use super::*;
    use tokio::runtime::Runtime;
    use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
    use tokio::sync::oneshot;

    /// A process's address.
    type Addr<M> = UnboundedSender<M>;
    /// A process's mailbox.
    type Mailbox<M> = UnboundedReceiver<M>;

    /// Spawns a process that is given its mailbox; returns its address.
    fn spawn_proc<M, F, Fut>(f: F) -> Addr<M>
    where
        M: Send + 'static,
        F: FnOnce(Mailbox<M>) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let (tx, rx) = unbounded_channel();
        tokio::spawn(f(rx));
        tx
    }

    /// Spawns a process that is given its own address and its mailbox.
    fn spawn_proc_self<M, F, Fut>(f: F) -> Addr<M>
    where
        M: Send + 'static,
        F: FnOnce(Addr<M>, Mailbox<M>) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let (tx, rx) = unbounded_channel();
        tokio::spawn(f(tx.clone(), rx));
        tx
    }

    /// Receives the next message (every sender of a live process's mailbox
    /// is kept by someone who will send, so `None` is a bug).
    async fn recv<M>(rx: &mut Mailbox<M>) -> M {
        rx.recv().await.expect("mailbox closed")
    }

    /// Runs `body` as the driver task and waits for it from this thread.
    fn drive<M, F, Fut>(rt: &Runtime, body: F) -> Outcome
    where
        M: Send + 'static,
        F: FnOnce(Addr<M>, Mailbox<M>) -> Fut + Send + 'static,
        Fut: Future<Output = Outcome> + Send + 'static,
    {
        let (tx, rx) = unbounded_channel();
        let r = rt
            .block_on(rt.spawn(async move { body(tx, rx).await }))
            .expect("the driver panicked");
        let m = rt.metrics();
        settle(|| m.num_alive_tasks());
        r
    }

    /// restart_storm's baseline: the supervisor is a task that owns a
    /// `JoinSet` of its children and restarts each one as it ends. A child
    /// is a task with its own mailbox; it "crashes" by returning its index
    /// (the `JoinSet` hands it back, no panic machinery), and once it stays
    /// up it parks on its mailbox. The supervisor keeps each child's
    /// mailbox sender, as a registry of addresses would.
    pub(crate) fn restart_storm(rt: &Runtime, children: u64, crashes: u64) -> Outcome {
        use tokio::task::JoinSet;

        async fn child(
            i: usize,
            counters: Arc<Vec<AtomicU64>>,
            crashes: u64,
            driver: Addr<()>,
            mut mailbox: Mailbox<()>,
        ) -> usize {
            let starts = counters[i].fetch_add(1, Ordering::Relaxed) + 1;
            if starts > crashes {
                let _ = driver.send(());
                while mailbox.recv().await.is_some() {}
            }
            i
        }

        drive(rt, move |me: Addr<()>, mut rx| async move {
            let counters: Arc<Vec<AtomicU64>> =
                Arc::new((0..children).map(|_| AtomicU64::new(0)).collect());
            let t0 = Instant::now();
            let c = counters.clone();
            let driver = me.clone();
            let (stop_tx, mut stop_rx) = oneshot::channel::<()>();
            let sup = tokio::spawn(async move {
                let mut set = JoinSet::new();
                let mut addrs: Vec<Option<Addr<()>>> = Vec::with_capacity(children as usize);
                let start = |set: &mut JoinSet<usize>, i: usize| {
                    let (tx, rx) = unbounded_channel();
                    set.spawn(child(i, c.clone(), crashes, driver.clone(), rx));
                    tx
                };
                for i in 0..children as usize {
                    addrs.push(Some(start(&mut set, i)));
                }
                loop {
                    tokio::select! {
                        biased;
                        _ = &mut stop_rx => break,
                        Some(done) = set.join_next() => {
                            let i = done.expect("a child panicked");
                            addrs[i] = Some(start(&mut set, i));
                        }
                    }
                }
                let running = addrs.iter().filter(|a| a.is_some()).count() as u64;
                set.abort_all();
                running
            });
            let mut alive = 0;
            while alive < children {
                recv(&mut rx).await;
                alive += 1;
            }
            let elapsed = t0.elapsed();
            let restarts: u64 = counters
                .iter()
                .map(|c| c.load(Ordering::Relaxed).saturating_sub(1))
                .sum();
            let _ = stop_tx.send(());
            let running = sup.await.expect("the supervisor panicked");
            Outcome::new(elapsed, restarts)
                .with_note(format!("running_children={running}"))
                .verify(running == children, || {
                    format!("{running} running children, expected {children}")
                })
        })
    }

    pub(crate) fn spawn(rt: &Runtime, n: u64) -> Outcome {
        drive(rt, move |me: Addr<()>, mut rx| async move {
            let t0 = Instant::now();
            for _ in 0..n {
                let me = me.clone();
                spawn_proc(move |_mb: Mailbox<()>| async move {
                    let _ = me.send(());
                });
            }
            let mut got = 0;
            for _ in 0..n {
                recv(&mut rx).await;
                got += 1;
            }
            Outcome::new(t0.elapsed(), got)
        })
    }

    /// One skynet node; explicitly `Send` so that it may spawn itself.
    #[allow(
        clippy::manual_async_fn,
        reason = "an `async fn` cannot spawn itself: its Send-ness is unknown inside its own body"
    )]
    fn skynet_node(
        me: Addr<u64>,
        mut rx: Mailbox<u64>,
        parent: Addr<u64>,
        num: u64,
        size: u64,
    ) -> impl Future<Output = ()> + Send + 'static {
        async move {
            if size == 1 {
                let _ = parent.send(num);
                return;
            }
            let sub = size / 10;
            for i in 0..10 {
                let parent = me.clone();
                spawn_proc_self(move |a, r| skynet_node(a, r, parent, num + i * sub, sub));
            }
            let mut sum = 0u64;
            for _ in 0..10 {
                sum += recv(&mut rx).await;
            }
            let _ = parent.send(sum);
        }
    }

    pub(crate) fn skynet(rt: &Runtime, leaves: u64) -> Outcome {
        drive(rt, move |me: Addr<u64>, mut rx| async move {
            let t0 = Instant::now();
            spawn_proc_self(move |a, r| skynet_node(a, r, me, 0, leaves));
            let sum = recv(&mut rx).await;
            Outcome::new(t0.elapsed(), sum)
        })
    }

    /// The messages a pong process understands.
    enum PongMsg {
        Ping,
        Stop,
    }

    /// The reply of pingpong.
    struct Pong;

    /// A pong process serving `pinger`.
    fn spawn_pong(pinger: Addr<Pong>) -> Addr<PongMsg> {
        spawn_proc(move |mut rx| async move {
            loop {
                match recv(&mut rx).await {
                    PongMsg::Ping => {
                        let _ = pinger.send(Pong);
                    }
                    PongMsg::Stop => return,
                }
            }
        })
    }

    /// `rounds` round trips with a fresh pong process, then `Stop`.
    async fn ping_rounds(me: &Addr<Pong>, rx: &mut Mailbox<Pong>, rounds: u64) -> u64 {
        let pong = spawn_pong(me.clone());
        let mut count = 0;
        for _ in 0..rounds {
            let _ = pong.send(PongMsg::Ping);
            let Pong = recv(rx).await;
            count += 1;
        }
        let _ = pong.send(PongMsg::Stop);
        count
    }

    pub(crate) fn pingpong(rt: &Runtime, n: u64) -> Outcome {
        drive(rt, move |me: Addr<Pong>, mut rx| async move {
            let t0 = Instant::now();
            let count = ping_rounds(&me, &mut rx, n).await;
            Outcome::new(t0.elapsed(), count)
        })
    }

    /// call: a server task answering `(i, oneshot)` with `i + 1`; the
    /// driver awaits each answer (no timeout: the baseline runtime has no
    /// time driver; a prompt rusm call arms no timer either).
    pub(crate) fn call(rt: &Runtime, n: u64) -> Outcome {
        drive(rt, move |_me: Addr<()>, _rx| async move {
            let server = spawn_proc(|mut r: Mailbox<(u64, oneshot::Sender<u64>)>| async move {
                while let Some((i, reply)) = r.recv().await {
                    let _ = reply.send(i + 1);
                }
            });
            let t0 = Instant::now();
            let mut count = 0;
            for i in 0..n {
                let (tx, rx) = oneshot::channel();
                let _ = server.send((i, tx));
                if rx.await == Ok(i + 1) {
                    count += 1;
                }
            }
            let elapsed = t0.elapsed();
            drop(server);
            Outcome::new(elapsed, count)
        })
    }

    pub(crate) fn parallel_pingpong(rt: &Runtime, pairs: u64, rounds: u64) -> Outcome {
        drive(rt, move |me: Addr<u64>, mut rx| async move {
            let t0 = Instant::now();
            for _ in 0..pairs {
                let driver = me.clone();
                spawn_proc_self(move |a: Addr<Pong>, mut r| async move {
                    let count = ping_rounds(&a, &mut r, rounds).await;
                    let _ = driver.send(count);
                });
            }
            let mut sum = 0;
            for _ in 0..pairs {
                sum += recv(&mut rx).await;
            }
            Outcome::new(t0.elapsed(), sum)
        })
    }

    /// The messages a ring node understands.
    enum RingMsg {
        /// Setup: the successor's address.
        Next(Addr<RingMsg>),
        /// The token: hops still to go.
        Token(u64),
    }

    /// A ring's completion.
    struct Done;

    pub(crate) fn ring(rt: &Runtime, procs: u64, hops: u64) -> Outcome {
        drive(rt, move |me: Addr<Done>, mut rx| async move {
            let performed = Arc::new(AtomicU64::new(0));
            let t0 = Instant::now();
            let mut nodes = Vec::with_capacity(procs as usize);
            for _ in 0..procs {
                let performed = performed.clone();
                let driver = me.clone();
                nodes.push(spawn_proc(move |mut r: Mailbox<RingMsg>| async move {
                    let RingMsg::Next(next) = recv(&mut r).await else {
                        panic!("expected the successor first")
                    };
                    let mut mine = 0;
                    loop {
                        let RingMsg::Token(k) = recv(&mut r).await else {
                            panic!("expected a token")
                        };
                        if k == 0 {
                            performed.fetch_add(mine, Ordering::Relaxed);
                            let _ = driver.send(Done);
                            return;
                        }
                        mine += 1;
                        if k < procs {
                            performed.fetch_add(mine, Ordering::Relaxed);
                            let _ = next.send(RingMsg::Token(k - 1));
                            return;
                        }
                        let _ = next.send(RingMsg::Token(k - 1));
                    }
                }));
            }
            for (i, node) in nodes.iter().enumerate() {
                let _ = node.send(RingMsg::Next(nodes[(i + 1) % nodes.len()].clone()));
            }
            let _ = nodes[0].send(RingMsg::Token(hops));
            // The nodes hold each other's addresses; the driver's copies can go.
            drop(nodes);
            let Done = recv(&mut rx).await;
            let elapsed = t0.elapsed();
            Outcome::new(elapsed, performed.load(Ordering::Relaxed))
        })
    }

    pub(crate) fn fanin(rt: &Runtime, senders: u64, per: u64) -> Outcome {
        drive(rt, move |me: Addr<()>, mut rx| async move {
            let t0 = Instant::now();
            for _ in 0..senders {
                let me = me.clone();
                spawn_proc(move |_mb: Mailbox<()>| async move {
                    for _ in 0..per {
                        let _ = me.send(());
                    }
                });
            }
            let mut count = 0;
            for _ in 0..senders * per {
                recv(&mut rx).await;
                count += 1;
            }
            Outcome::new(t0.elapsed(), count)
        })
    }

    pub(crate) fn yield_many(rt: &Runtime, procs: u64, yields: u64) -> Outcome {
        drive(rt, move |me: Addr<u64>, mut rx| async move {
            let t0 = Instant::now();
            for _ in 0..procs {
                let me = me.clone();
                spawn_proc(move |_mb: Mailbox<()>| async move {
                    let mut done = 0u64;
                    for _ in 0..yields {
                        tokio::task::yield_now().await;
                        done += 1;
                    }
                    let _ = me.send(done);
                });
            }
            let mut total = 0;
            for _ in 0..procs {
                total += recv(&mut rx).await;
            }
            Outcome::new(t0.elapsed(), total)
        })
    }

    /// latency: as on rusm-otp; the spinners yield with
    /// `tokio::task::yield_now`, which defers them behind the tasks woken
    /// meanwhile.
    pub(crate) fn latency(rt: &Runtime, spinners: u64, rounds: u64) -> Outcome {
        drive(rt, move |me: Addr<()>, mut rx| async move {
            let stop = Arc::new(AtomicBool::new(false));
            let slices = Arc::new(AtomicU64::new(0));
            for _ in 0..spinners {
                let (stop, slices, me) = (stop.clone(), slices.clone(), me.clone());
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        spin_for(SLICE);
                        slices.fetch_add(1, Ordering::Relaxed);
                        tokio::task::yield_now().await;
                    }
                    let _ = me.send(());
                });
            }
            let (pong_tx, mut pong_rx) = unbounded_channel::<Pong>();
            let pong = spawn_pong(pong_tx);
            while slices.load(Ordering::Relaxed) < spinners {
                tokio::task::yield_now().await;
            }
            let mut rtts = Vec::with_capacity(rounds as usize);
            let s0 = slices.load(Ordering::Relaxed);
            let t0 = Instant::now();
            for _ in 0..rounds {
                let t = Instant::now();
                let _ = pong.send(PongMsg::Ping);
                let Pong = recv(&mut pong_rx).await;
                rtts.push(rtt_ns(t.elapsed()));
            }
            let elapsed = t0.elapsed();
            let slices = slices.load(Ordering::Relaxed) - s0;
            stop.store(true, Ordering::Relaxed);
            let _ = pong.send(PongMsg::Stop);
            for _ in 0..spinners {
                recv(&mut rx).await;
            }
            latency_outcome(elapsed, rtts, slices)
        })
    }

    pub(crate) fn idle_memory(rt: &Runtime, n: u64) -> Outcome {
        drive(rt, move |_me: Addr<()>, _rx| async move {
            let started = Arc::new(AtomicU64::new(0));
            let exited = Arc::new(AtomicU64::new(0));
            // The driver's own bookkeeping, allocated and touched before the
            // first reading so that it is not counted.
            let mut addrs: Vec<Option<Addr<()>>> = (0..n).map(|_| None).collect();
            for a in addrs.iter_mut() {
                *a = std::hint::black_box(None);
            }
            let before = rss_bytes();
            let t0 = Instant::now();
            for slot in addrs.iter_mut() {
                let started = started.clone();
                let exited = exited.clone();
                *slot = Some(spawn_proc(move |mut mb: Mailbox<()>| async move {
                    started.fetch_add(1, Ordering::Relaxed);
                    let _ = mb.recv().await;
                    exited.fetch_add(1, Ordering::Relaxed);
                }));
            }
            // Untimed: every process has run up to its receive.
            while started.load(Ordering::Relaxed) < n {
                tokio::task::yield_now().await;
            }
            let elapsed = t0.elapsed();
            let after = rss_bytes();
            // Kill: closing a mailbox ends its process.
            let mut killed = 0;
            for a in addrs.iter_mut() {
                if a.take().is_some() {
                    killed += 1;
                }
            }
            while exited.load(Ordering::Relaxed) < n {
                tokio::task::yield_now().await;
            }
            Outcome {
                per_op: Some(after.saturating_sub(before) as f64 / n as f64),
                ..Outcome::new(elapsed, killed)
            }
        })
    }

    pub(crate) fn spawn_parallel(rt: &Runtime, drivers: u64, per: u64) -> Outcome {
        drive(rt, move |me: Addr<u64>, mut rx| async move {
            let t0 = Instant::now();
            for _ in 0..drivers {
                let driver = me.clone();
                spawn_proc_self(move |sub: Addr<()>, mut r| async move {
                    for _ in 0..per {
                        let sub = sub.clone();
                        spawn_proc(move |_mb: Mailbox<()>| async move {
                            let _ = sub.send(());
                        });
                    }
                    let mut got = 0u64;
                    for _ in 0..per {
                        recv(&mut r).await;
                        got += 1;
                    }
                    let _ = driver.send(got);
                });
            }
            let mut total = 0;
            for _ in 0..drivers {
                total += recv(&mut rx).await;
            }
            Outcome::new(t0.elapsed(), total)
        })
    }
    /// link_cascade's exit reasons (only the two this workload can see).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Reason {
        Normal,
        Shutdown,
    }

    /// What a link_cascade process's mailbox carries.
    enum ChainMsg {
        /// An ordinary message (never sent here: what an idle process waits for).
        User,
        /// An exit signal over the link with process `from`.
        Exit { from: usize, reason: Reason },
    }

    /// One member of the tokio link_cascade chain: the emulation of links
    /// and monitors that tokio lacks.
    ///
    /// * A link is the pair (peer index, peer's mailbox address), held by
    ///   both sides (each process holds its predecessor and successor).
    /// * The process idles on its mailbox. An `Exit` with an abnormal
    ///   reason ends it with that reason (a non-trapping process ignores
    ///   `Normal`); the link it came over is dropped on this side, as the
    ///   dying peer already dropped its own.
    /// * Dying: it first closes its mailbox (it now looks dead to senders,
    ///   as a rusm process leaves the process table first), then fires its
    ///   monitor (a `oneshot` to the watcher; only the last process has
    ///   one), then sends `Exit` with the same reason to every remaining
    ///   link, so the cascade carries the original reason.
    async fn chain_proc(
        me: usize,
        mut rx: Mailbox<ChainMsg>,
        mut links: Vec<(usize, Addr<ChainMsg>)>,
        monitor: Option<oneshot::Sender<Reason>>,
        started: Arc<AtomicU64>,
    ) {
        started.fetch_add(1, Ordering::Release);
        let reason = loop {
            match rx.recv().await {
                Some(ChainMsg::User)
                | Some(ChainMsg::Exit {
                    reason: Reason::Normal,
                    ..
                }) => {}
                Some(ChainMsg::Exit { from, reason }) => {
                    links.retain(|&(p, _)| p != from);
                    break reason;
                }
                None => return,
            }
        };
        drop(rx);
        if let Some(m) = monitor {
            let _ = m.send(reason);
        }
        for (_, peer) in links {
            let _ = peer.send(ChainMsg::Exit { from: me, reason });
        }
    }

    /// link_cascade (WORKLOADS.md §8) on the emulation of [`chain_proc`].
    pub(crate) fn link_cascade(rt: &Runtime, procs: u64) -> Outcome {
        drive(rt, move |_me: Addr<()>, _rx| async move {
            let n = procs as usize;
            // Untimed setup: every mailbox first, so that each process is
            // born knowing its links; then every process parked on its
            // mailbox. The driver keeps the addresses (for the check only).
            let started = Arc::new(AtomicU64::new(0));
            let (txs, rxs): (Vec<_>, Vec<_>) =
                (0..n).map(|_| unbounded_channel::<ChainMsg>()).unzip();
            let (down_tx, down_rx) = oneshot::channel();
            let mut down_tx = Some(down_tx);
            for (i, rx) in rxs.into_iter().enumerate() {
                let mut links = Vec::with_capacity(2);
                if i > 0 {
                    links.push((i - 1, txs[i - 1].clone()));
                }
                if i + 1 < n {
                    links.push((i + 1, txs[i + 1].clone()));
                }
                let monitor = if i + 1 == n { down_tx.take() } else { None };
                tokio::spawn(chain_proc(i, rx, links, monitor, started.clone()));
            }
            while started.load(Ordering::Acquire) < procs {
                tokio::task::yield_now().await;
            }
            let t0 = Instant::now();
            // The driver is linked to nobody: `from` names no chain member.
            let _ = txs[0].send(ChainMsg::Exit {
                from: usize::MAX,
                reason: Reason::Shutdown,
            });
            let reason = down_rx
                .await
                .expect("the last process's monitor never fired");
            let elapsed = t0.elapsed();
            // Untimed verification: a dead process has closed its mailbox.
            let dead = txs.iter().filter(|t| t.is_closed()).count() as u64;
            Outcome::new(elapsed, dead)
                .with_note(format!("reason={reason:?}"))
                .verify(reason == Reason::Shutdown, || {
                    format!("the last process ended {reason:?}, expected Shutdown")
                })
        })
    }
}
