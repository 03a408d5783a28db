//! The benchmark workloads of `/work/shared/WORKLOADS.md`, once for rusm-otp
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

#![allow(dead_code)]

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// What a driver reports.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Outcome {
    /// Time measured inside the driver.
    pub(crate) elapsed: Duration,
    /// The workload's check value.
    pub(crate) check: u64,
    /// A per-op figure that is not `elapsed / n` (idle_memory: bytes per process).
    pub(crate) per_op: Option<f64>,
}

impl Outcome {
    fn new(elapsed: Duration, check: u64) -> Outcome {
        Outcome {
            elapsed,
            check,
            per_op: None,
        }
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
    /// 4. `pairs` pinger/pong pairs, `rounds` round trips each.
    ParallelPingpong { pairs: u64, rounds: u64 },
    /// 5. a ring of `procs` processes, `hops` hops.
    Ring { procs: u64, hops: u64 },
    /// 6. `senders` processes send `per` messages each to the driver.
    Fanin { senders: u64, per: u64 },
    /// 9. `procs` processes yield `yields` times each.
    YieldMany { procs: u64, yields: u64 },
    /// 10. bytes per idle process, with `n` idle processes.
    IdleMemory { n: u64 },
    /// `drivers` processes spawn `per` children each, in parallel.
    SpawnParallel { drivers: u64, per: u64 },
}

impl Workload {
    /// The workload's name in the output.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Workload::Spawn { .. } => "spawn",
            Workload::Skynet { .. } => "skynet",
            Workload::Pingpong { .. } => "pingpong",
            Workload::ParallelPingpong { .. } => "parallel_pingpong",
            Workload::Ring { .. } => "ring",
            Workload::Fanin { .. } => "fanin",
            Workload::YieldMany { .. } => "yield_many",
            Workload::IdleMemory { .. } => "idle_memory",
            Workload::SpawnParallel { .. } => "spawn_parallel",
        }
    }

    /// The number of per-op units (`per_op_ns = total_ns / n`).
    pub(crate) fn n(&self) -> u64 {
        match *self {
            Workload::Spawn { n } | Workload::Pingpong { n } | Workload::IdleMemory { n } => n,
            Workload::Skynet { leaves } => leaves,
            Workload::ParallelPingpong { pairs, rounds } => pairs * rounds,
            Workload::Ring { hops, .. } => hops,
            Workload::Fanin { senders, per } => senders * per,
            Workload::YieldMany { procs, yields } => procs * yields,
            Workload::SpawnParallel { drivers, per } => drivers * per,
        }
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
            Workload::ParallelPingpong { pairs, rounds } => {
                rusm::parallel_pingpong(rt, pairs, rounds)
            }
            Workload::Ring { procs, hops } => rusm::ring(rt, procs, hops),
            Workload::Fanin { senders, per } => rusm::fanin(rt, senders, per),
            Workload::YieldMany { procs, yields } => rusm::yield_many(rt, procs, yields),
            Workload::IdleMemory { n } => rusm::idle_memory(rt, n),
            Workload::SpawnParallel { drivers, per } => rusm::spawn_parallel(rt, drivers, per),
        }
    }

    /// Runs it once on the tokio baseline.
    pub(crate) fn run_tokio(&self, rt: &tokio::runtime::Runtime) -> Outcome {
        match *self {
            Workload::Spawn { n } => tok::spawn(rt, n),
            Workload::Skynet { leaves } => tok::skynet(rt, leaves),
            Workload::Pingpong { n } => tok::pingpong(rt, n),
            Workload::ParallelPingpong { pairs, rounds } => {
                tok::parallel_pingpong(rt, pairs, rounds)
            }
            Workload::Ring { procs, hops } => tok::ring(rt, procs, hops),
            Workload::Fanin { senders, per } => tok::fanin(rt, senders, per),
            Workload::YieldMany { procs, yields } => tok::yield_many(rt, procs, yields),
            Workload::IdleMemory { n } => tok::idle_memory(rt, n),
            Workload::SpawnParallel { drivers, per } => tok::spawn_parallel(rt, drivers, per),
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
    use rusm_otp::{Context, ExitReason, Message, Pid, Runtime};
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
                elapsed,
                check: killed,
                per_op: Some(after.saturating_sub(before) as f64 / n as f64),
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
}

/// The tokio baseline: a process is a task that owns an unbounded mailbox.
pub(crate) mod tok {
    use super::*;
    use tokio::runtime::Runtime;
    use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

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
                elapsed,
                check: killed,
                per_op: Some(after.saturating_sub(before) as f64 / n as f64),
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
}
