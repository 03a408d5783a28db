//! The main demo: a restart storm through a live supervision tree, checked.
//!
//! `cargo run --release --example restart_storm` (add `-- --help` for the
//! options: `--duration SECONDS`, `--rate ACTIONS_PER_S`, `--shape SUBS` or
//! `--shape SUBSxWORKERS`, `--workers N`, `--csv FILE`, `--verbose`).
//!
//! # The tree
//!
//! A root supervisor (one for one, unlimited intensity) over `SUBS`
//! sub-supervisors, each over `WORKERS` workers (default 100 × 100). The
//! sub-trees cycle through four kinds: one for one, one for all and rest for
//! one (all with unlimited intensity), and one for one with a budget of
//! [`BUDGET`] restarts over its lifetime, which the chaos process exhausts on
//! purpose so that the sub-supervisor escalates to the root. Workers are
//! permanent or transient, stopped by brutal kill or by a timeout.
//!
//! # Traffic
//!
//! Inside each sub-tree a token runs round the ring of workers, and each
//! worker that passes it on also calls (`rt.call`) its next sibling, which
//! answers. Every message from one pid to another carries a sequence number
//! of that (sender, receiver) pair, checked by the receiver. Pids are never
//! reused, so a live receiver that sees a gap has lost a message sent by a
//! process that was alive when it sent it: that is a loss *between live
//! siblings*, whereas a message to a receiver that died in flight is seen by
//! nobody and counts for nothing. A call that times out or is dropped
//! unanswered is a request a live sibling left unanswered; a call whose
//! callee died answers `NoProc`/`Exited` and is counted apart.
//!
//! # Chaos
//!
//! One process picks random workers at `--rate` actions per second and
//! kills them, crashes them (`exit(pid, Crashed)`) or makes them panic (a
//! message they panic on); one action in [`SUP_EVERY`] kills or crashes a
//! whole sub-supervisor instead. It keeps, per child, how many starts each
//! action implies (one for one: the victim once; one for all: every worker
//! of the sub-tree; rest for one: the victim and those after it; a
//! sub-supervisor's death or escalation: every worker again and the
//! sub-supervisor once). So that these figures are exact, it acts on a
//! sub-tree whose strategy couples children (one for all, rest for one, the
//! budgeted one) or on a sub-supervisor only once the sub-tree has caught up
//! with every start already expected of it, and never hits a pid twice.
//!
//! # Checks
//!
//! Afterwards, once every expected start has happened (bounded wait): each
//! child's factory ran exactly as often as the chaos log implies (so each
//! crash had exactly one restart, or the escalation its budget dictates);
//! every supervisor's `count_children` matches its specs; the live
//! processes are exactly the tree; no sequence number was skipped or
//! duplicated and no call between live siblings went unanswered; resident
//! memory and the live heap are within 10% of what they were before the
//! storm. The demo exits 1 when a check fails.
//!
//! # Memory
//!
//! Both figures are taken at rest (traffic paused, the calls' timeouts
//! expired, the runtime's deferred frees run), after a one-second warm-up
//! storm, so that the baseline already holds what any storm fills once,
//! and each after the traffic ran [`COOL_DOWN`] without chaos, so that the
//! tree is alike both times (every worker called since its last start).
//! The live heap is exact: a counting global allocator adds up the bytes
//! the program holds, so it tells a leak (live bytes grow) from the
//! allocator keeping freed memory (only resident memory grows). Resident
//! memory is read after `malloc_trim(0)`, before and after alike, since
//! glibc keeps freed memory in its per-thread arenas. Even trimmed, a storm
//! leaves freed chunks on pages that also hold live data (the new
//! incarnations are allocated among the dead ones'), which no trim can
//! return: on the development machine a 10 s storm leaves the live heap
//! within 2-5% of before, glibc holding 3-4 MiB more free
//! (`mallinfo2().fordblks`), and resident memory 1-11% above before. So
//! resident memory passes within 10% of before, or beyond that by no more
//! than what malloc holds free more than before; the line says which. (The
//! live heap may also grow by [`HEAP_FLOOR`], for trees so small that the
//! runtime's fixed reserves outweigh them.)
//!
//! Workers' panics would each print a panic message; this demo installs a
//! quiet panic hook that says nothing for panics on the runtime's worker
//! threads (`rusm-worker-*`) and hands every other panic to the previous
//! hook.

use rusm_otp::supervisor::{ChildSpec, Restart, Shutdown, SupervisorRef};
use rusm_otp::{CallError, ExitReason, Pid, ProcessHandle, Request, Runtime, Strategy};
use std::collections::HashSet;
use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Counts the bytes the program holds on the heap, to tell a leak (live
/// bytes grow) from the allocator keeping freed memory (only RSS grows).
struct Counting;

static LIVE: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is forwarded to `System` with the caller's arguments;
// the counter has no effect on the memory handed out.
unsafe impl std::alloc::GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        // SAFETY: forwarded as given.
        let p = unsafe { std::alloc::System.alloc(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size() as u64, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        LIVE.fetch_sub(layout.size() as u64, Ordering::Relaxed);
        // SAFETY: forwarded as given.
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new: usize) -> *mut u8 {
        // SAFETY: forwarded as given.
        let p = unsafe { std::alloc::System.realloc(ptr, layout, new) };
        if !p.is_null() {
            LIVE.fetch_add(new as u64, Ordering::Relaxed);
            LIVE.fetch_sub(layout.size() as u64, Ordering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// How long the traffic runs without chaos before each measurement.
const COOL_DOWN: Duration = Duration::from_millis(300);
/// The lifetime restart budget of the budgeted sub-trees.
const BUDGET: u32 = 5;
/// One chaos action in this many hits a sub-supervisor.
const SUP_EVERY: u64 = 2_000;
/// Live heap growth always allowed, however small the tree.
const HEAP_FLOOR: u64 = 512 << 10;
/// How long a sibling's call may wait before it counts as unanswered, by
/// default (`--call-timeout`).
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

const HELP: &str = "\
restart_storm: a checked restart storm through a supervision tree

USAGE: cargo run --release --example restart_storm -- [OPTIONS]

OPTIONS:
  --duration SECONDS   how long the chaos runs (default 10)
  --rate N             chaos actions per second (default 500000)
  --shape S | SxW      sub-supervisors under the root (default 100),
                       optionally with workers per sub-supervisor
  --workers W          workers per sub-supervisor (default 100)
  --csv FILE           write the per-second series to FILE
  --verbose            print each sub-supervisor restart and escalation
  --call-timeout SECS  how long a sibling's call may wait before it counts as
                       unanswered (default 5; raise it under valgrind)
  --no-resident-check  report resident memory without checking it (for runs
                       under valgrind, whose allocator replaces glibc's: the
                       live-heap check still applies)
  --help               this text";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    OneForOne,
    OneForAll,
    RestForOne,
    Budgeted,
}

impl Kind {
    fn of(sub: usize) -> Kind {
        [
            Kind::OneForOne,
            Kind::OneForAll,
            Kind::RestForOne,
            Kind::Budgeted,
        ][sub % 4]
    }

    fn strategy(self) -> Strategy {
        match self {
            Kind::OneForOne | Kind::Budgeted => Strategy::OneForOne,
            Kind::OneForAll => Strategy::OneForAll,
            Kind::RestForOne => Strategy::RestForOne,
        }
    }
}

struct Options {
    duration: Duration,
    rate: u64,
    subs: usize,
    workers: usize,
    csv: Option<String>,
    verbose: bool,
    resident_check: bool,
    call_timeout: Duration,
}

fn parse_options() -> Result<Options, String> {
    let mut o = Options {
        duration: Duration::from_secs(10),
        rate: 500_000,
        subs: 100,
        workers: 100,
        csv: None,
        verbose: false,
        resident_check: true,
        call_timeout: CALL_TIMEOUT,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        let num = |s: String| s.parse::<u64>().map_err(|e| format!("{s}: {e}"));
        match a.as_str() {
            "--help" | "-h" => {
                println!("{HELP}");
                std::process::exit(0);
            }
            "--duration" => {
                let s = value("--duration")?;
                let secs: f64 = s.parse().map_err(|e| format!("{s}: {e}"))?;
                o.duration = Duration::from_secs_f64(secs.max(0.0));
            }
            "--rate" => o.rate = num(value("--rate")?)?,
            "--workers" => o.workers = num(value("--workers")?)? as usize,
            "--shape" => {
                let s = value("--shape")?;
                match s.split_once('x') {
                    Some((a, b)) => {
                        o.subs = num(a.to_string())? as usize;
                        o.workers = num(b.to_string())? as usize;
                    }
                    None => o.subs = num(s)? as usize,
                }
            }
            "--csv" => o.csv = Some(value("--csv")?),
            "--verbose" | "-v" => o.verbose = true,
            "--no-resident-check" => o.resident_check = false,
            "--call-timeout" => {
                let s = value("--call-timeout")?;
                let secs: f64 = s.parse().map_err(|e| format!("{s}: {e}"))?;
                o.call_timeout = Duration::from_secs_f64(secs.max(0.001));
            }
            other => return Err(format!("unknown option {other} (see --help)")),
        }
    }
    if o.subs == 0 || o.workers < 2 {
        return Err("the tree needs at least 1 sub-supervisor and 2 workers each".into());
    }
    Ok(o)
}

/// Everything the tree's factories, workers and the chaos process share.
struct Tree {
    subs: usize,
    workers: usize,
    verbose: bool,
    /// Raw pid of each worker's current incarnation, by `sub * workers + w`.
    worker_pid: Vec<AtomicU64>,
    /// Factory runs per worker child.
    child_starts: Vec<AtomicU64>,
    /// Worker factory runs per sub-tree (the sum of its `child_starts`).
    sub_starts: Vec<AtomicU64>,
    /// Raw pid of each sub-supervisor's current incarnation.
    sup_pid: Vec<AtomicU64>,
    /// Factory runs per sub-supervisor.
    sup_starts: Vec<AtomicU64>,
    /// The ring's current token, per sub-tree: older tokens are dropped.
    epoch: Vec<AtomicU64>,
    starts: AtomicU64,
    escalations: AtomicU64,
    messages: AtomicU64,
    calls_ok: AtomicU64,
    calls_unanswered: AtomicU64,
    calls_callee_died: AtomicU64,
    bad_replies: AtomicU64,
    seq_gaps: AtomicU64,
    seq_dups: AtomicU64,
    chaos_done: AtomicBool,
    /// While set, tokens are dropped: the rings stop, so that memory is
    /// measured at rest.
    paused: AtomicBool,
    /// How long a sibling's call may wait.
    call_timeout: Duration,
}

impl Tree {
    fn new(subs: usize, workers: usize, verbose: bool, call_timeout: Duration) -> Tree {
        let v = |n: usize| (0..n).map(|_| AtomicU64::new(0)).collect::<Vec<_>>();
        Tree {
            subs,
            workers,
            verbose,
            call_timeout,
            worker_pid: v(subs * workers),
            child_starts: v(subs * workers),
            sub_starts: v(subs),
            sup_pid: v(subs),
            sup_starts: v(subs),
            epoch: v(subs),
            starts: AtomicU64::new(0),
            escalations: AtomicU64::new(0),
            messages: AtomicU64::new(0),
            calls_ok: AtomicU64::new(0),
            calls_unanswered: AtomicU64::new(0),
            calls_callee_died: AtomicU64::new(0),
            bad_replies: AtomicU64::new(0),
            seq_gaps: AtomicU64::new(0),
            seq_dups: AtomicU64::new(0),
            chaos_done: AtomicBool::new(false),
            paused: AtomicBool::new(false),
        }
    }

    fn pid_of(&self, sub: usize, w: usize) -> Pid {
        Pid::from_raw(self.worker_pid[sub * self.workers + w].load(Ordering::Acquire))
    }

    /// Restarts so far: factory runs beyond the first of each child.
    fn restarts(&self) -> u64 {
        self.starts.load(Ordering::Relaxed) - (self.subs * (self.workers + 1)) as u64
    }
}

/// The ring's token, as passed from one worker to the next.
struct Token {
    epoch: u64,
    from: Pid,
    seq: u64,
}

/// A call from one worker to its next sibling; the answer is `seq + 1`.
struct Ping {
    seq: u64,
}

/// Makes the receiving worker panic.
struct Panic;

/// Makes the first worker of a sub-tree put a new token on its ring.
struct Kick;

/// Per (sender, receiver) sequence numbers, on both sides.
///
/// A worker hears only from its ring predecessor, whose incarnations follow
/// one another: each is started after the last one's death, so everything
/// the old one sent is queued before anything the new one sends. One slot
/// per side is therefore enough (a map would keep every predecessor that
/// ever lived): a sender not in the slot starts a new stream, which must
/// begin at 1, so a stream cut short at its start, or an earlier
/// incarnation's message arriving after a later one's, shows as a gap.
#[derive(Default)]
struct Seqs {
    /// The last receiver and the last number sent to it.
    out: (u64, u64),
    /// The last sender (its raw pid: 0, never issued, for none yet) and
    /// the last number seen from it. Plain integers rather than an
    /// `Option`, whose payload is uninitialised while `None`: optimised
    /// code compares it before the tag, which valgrind reports.
    seen: (u64, u64),
}

impl Seqs {
    fn next_to(&mut self, to: Pid) -> u64 {
        if self.out.0 != to.raw() {
            self.out = (to.raw(), 0);
        }
        self.out.1 += 1;
        self.out.1
    }

    fn check(&mut self, t: &Tree, from: Pid, seq: u64) {
        let last = if self.seen.0 == from.raw() {
            self.seen.1
        } else {
            0
        };
        if seq > last + 1 {
            t.seq_gaps.fetch_add(1, Ordering::Relaxed);
        } else if seq <= last {
            t.seq_dups.fetch_add(1, Ordering::Relaxed);
        }
        self.seen = (from.raw(), last.max(seq));
    }
}

async fn worker(mut ctx: rusm_otp::Context, t: Arc<Tree>, sub: usize, w: usize) {
    let rt = ctx.runtime().clone();
    let me = ctx.pid();
    let next = (w + 1) % t.workers;
    let mut seqs = Seqs::default();
    let kick = |seqs: &mut Seqs| {
        let epoch = t.epoch[sub].fetch_add(1, Ordering::Relaxed) + 1;
        let to = t.pid_of(sub, next);
        let seq = seqs.next_to(to);
        rt.send(
            to,
            Token {
                epoch,
                from: me,
                seq,
            },
        );
    };
    if w == 0 {
        kick(&mut seqs);
    }
    loop {
        let Some(m) = ctx.recv().await.message() else {
            continue;
        };
        let m = match m.downcast::<Token>() {
            Ok(token) => {
                seqs.check(&t, token.from, token.seq);
                if token.epoch != t.epoch[sub].load(Ordering::Relaxed)
                    || t.paused.load(Ordering::Relaxed)
                {
                    continue;
                }
                let to = t.pid_of(sub, next);
                let seq = seqs.next_to(to);
                t.messages.fetch_add(1, Ordering::Relaxed);
                rt.send(
                    to,
                    Token {
                        epoch: token.epoch,
                        from: me,
                        seq,
                    },
                );
                // Calls go only up the ring (never from the last worker to
                // the first), so no cycle of callers waits on itself.
                if next != 0 {
                    let seq = seqs.next_to(to);
                    let r: Result<u64, CallError> = rt.call(to, Ping { seq }, t.call_timeout).await;
                    t.messages.fetch_add(2, Ordering::Relaxed);
                    match r {
                        Ok(v) if v == seq + 1 => t.calls_ok.fetch_add(1, Ordering::Relaxed),
                        Ok(_) => t.bad_replies.fetch_add(1, Ordering::Relaxed),
                        Err(CallError::NoProc | CallError::Exited(_)) => {
                            t.calls_callee_died.fetch_add(1, Ordering::Relaxed)
                        }
                        Err(_) => t.calls_unanswered.fetch_add(1, Ordering::Relaxed),
                    };
                }
                continue;
            }
            Err(m) => m,
        };
        let m = match m.downcast::<Request<Ping, u64>>() {
            Ok(req) => {
                if let Some(from) = req.caller() {
                    seqs.check(&t, from, req.body().seq);
                }
                let seq = req.body().seq;
                req.reply(seq + 1);
                continue;
            }
            Err(m) => m,
        };
        if m.is::<Panic>() {
            panic!("chaos made this worker panic");
        }
        if m.is::<Kick>() {
            kick(&mut seqs);
        }
    }
}

fn worker_spec(t: &Arc<Tree>, sub: usize, w: usize) -> ChildSpec {
    let tree = t.clone();
    let spec = ChildSpec::new(format!("worker-{w}"), move |rt: &Runtime| {
        let t = tree.clone();
        let h = rt.spawn(move |ctx| worker(ctx, t, sub, w));
        let i = sub * tree.workers + w;
        tree.worker_pid[i].store(h.pid().raw(), Ordering::Release);
        tree.child_starts[i].fetch_add(1, Ordering::Release);
        tree.sub_starts[sub].fetch_add(1, Ordering::Release);
        tree.starts.fetch_add(1, Ordering::Relaxed);
        h
    });
    spec.restart(if w % 2 == 0 {
        Restart::Permanent
    } else {
        Restart::Transient
    })
    .shutdown(if w % 3 == 0 {
        Shutdown::BrutalKill
    } else {
        Shutdown::Timeout(Duration::from_secs(1))
    })
}

fn sub_supervisor(rt: &Runtime, t: &Arc<Tree>, sub: usize) -> ProcessHandle {
    let kind = Kind::of(sub);
    let mut s = rt.supervisor(kind.strategy());
    s = match kind {
        Kind::Budgeted => s.max_restarts(BUDGET).over_lifetime(),
        _ => s.max_restarts(0),
    };
    for w in 0..t.workers {
        s = s.child_spec(worker_spec(t, sub, w));
    }
    let h = s.start();
    t.sup_pid[sub].store(h.pid().raw(), Ordering::Release);
    let n = t.sup_starts[sub].fetch_add(1, Ordering::Release);
    t.starts.fetch_add(1, Ordering::Relaxed);
    if t.verbose && n > 0 {
        println!(
            "restart: sub-supervisor {sub} ({kind:?}) started again, incarnation {}",
            n + 1
        );
    }
    h
}

fn build_tree(rt: &Runtime, t: &Arc<Tree>) -> ProcessHandle {
    let mut root = rt.supervisor(Strategy::OneForOne).max_restarts(0);
    for sub in 0..t.subs {
        let tree = t.clone();
        root = root.child_spec(
            ChildSpec::new(format!("sub-{sub}"), move |rt: &Runtime| {
                sub_supervisor(rt, &tree, sub)
            })
            .supervisor(),
        );
    }
    root.start()
}

/// The chaos process's book: what each action implies.
struct Ledger {
    /// Expected factory runs per worker child.
    child: Vec<u64>,
    /// Expected worker factory runs per sub-tree.
    sub: Vec<u64>,
    /// Expected factory runs per sub-supervisor.
    sup: Vec<u64>,
    /// Hits charged to each budgeted sub-supervisor's current incarnation.
    charged: Vec<u32>,
    /// The raw pid last hit, per worker child: a pid is never hit twice,
    /// and a child's current pid changes only when it starts again.
    last_hit: Vec<u64>,
    attempts: u64,
    kills: u64,
    crashes: u64,
    panics: u64,
    sup_kills: u64,
    escalations: u64,
}

impl Ledger {
    fn new(t: &Tree) -> Ledger {
        Ledger {
            child: vec![1; t.subs * t.workers],
            sub: vec![t.workers as u64; t.subs],
            sup: vec![1; t.subs],
            charged: vec![0; t.subs],
            last_hit: vec![0; t.subs * t.workers],
            attempts: 0,
            kills: 0,
            crashes: 0,
            panics: 0,
            sup_kills: 0,
            escalations: 0,
        }
    }

    fn sup_settled(&self, t: &Tree, sub: usize) -> bool {
        t.sup_starts[sub].load(Ordering::Acquire) == self.sup[sub]
    }

    fn settled(&self, t: &Tree, sub: usize) -> bool {
        self.sup_settled(t, sub) && t.sub_starts[sub].load(Ordering::Acquire) == self.sub[sub]
    }

    /// A new incarnation of `sub`'s supervisor: every worker starts again.
    fn expect_new_generation(&mut self, t: &Tree, sub: usize) {
        self.sup[sub] += 1;
        self.charged[sub] = 0;
        self.sub[sub] += t.workers as u64;
        for w in 0..t.workers {
            self.child[sub * t.workers + w] += 1;
        }
    }
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// One chaos action; false when the target it drew was busy.
fn act(rt: &Runtime, t: &Tree, l: &mut Ledger, rng: &mut Rng, action: u64) -> bool {
    let r = rng.next();
    let sub = (r % t.subs as u64) as usize;
    if action % SUP_EVERY == SUP_EVERY - 1 {
        if !l.settled(t, sub) {
            return false;
        }
        let pid = Pid::from_raw(t.sup_pid[sub].load(Ordering::Acquire));
        let hit = if r & (1 << 40) == 0 {
            rt.kill(pid)
        } else {
            rt.exit(pid, ExitReason::Crashed)
        };
        if hit {
            l.sup_kills += 1;
            l.expect_new_generation(t, sub);
        }
        return hit;
    }
    let kind = Kind::of(sub);
    if !l.sup_settled(t, sub) || (kind != Kind::OneForOne && !l.settled(t, sub)) {
        return false;
    }
    let w = ((r >> 20) % t.workers as u64) as usize;
    let pid = t.pid_of(sub, w);
    let base = sub * t.workers;
    if l.last_hit[base + w] == pid.raw() {
        return false;
    }
    let hit = match (r >> 50) % 3 {
        0 => rt.kill(pid).then(|| l.kills += 1),
        1 => rt.exit(pid, ExitReason::Crashed).then(|| l.crashes += 1),
        _ => rt.send(pid, Panic).then(|| l.panics += 1),
    };
    if hit.is_none() {
        return false;
    }
    l.last_hit[base + w] = pid.raw();
    match kind {
        Kind::OneForOne => {
            l.child[base + w] += 1;
            l.sub[sub] += 1;
        }
        Kind::OneForAll => {
            for c in &mut l.child[base..base + t.workers] {
                *c += 1;
            }
            l.sub[sub] += t.workers as u64;
        }
        Kind::RestForOne => {
            for c in &mut l.child[base + w..base + t.workers] {
                *c += 1;
            }
            l.sub[sub] += (t.workers - w) as u64;
        }
        Kind::Budgeted => {
            l.charged[sub] += 1;
            if l.charged[sub] > BUDGET {
                // Over budget: no restart of the victim; the sub-supervisor
                // gives up and the root starts it (and every worker) again.
                l.escalations += 1;
                t.escalations.fetch_add(1, Ordering::Relaxed);
                if t.verbose {
                    println!(
                        "escalation: sub-supervisor {sub} over its budget of {BUDGET} restarts"
                    );
                }
                l.expect_new_generation(t, sub);
            } else {
                l.child[base + w] += 1;
                l.sub[sub] += 1;
            }
        }
    }
    true
}

async fn chaos(
    ctx: rusm_otp::Context,
    t: Arc<Tree>,
    mut l: Ledger,
    rate: u64,
    duration: Duration,
) -> Ledger {
    let rt = ctx.runtime().clone();
    let mut rng = Rng((0x9E37_79B9_7F4A_7C15 ^ l.attempts) | 1);
    let start = Instant::now();
    let mut attempts = 0u64;
    loop {
        let elapsed = start.elapsed();
        if elapsed >= duration {
            break;
        }
        let due = (elapsed.as_secs_f64() * rate as f64) as u64;
        if attempts >= due {
            rusm_otp::sleep(Duration::from_millis(1)).await;
            continue;
        }
        for _ in 0..(due - attempts).min(512) {
            let n = l.attempts;
            act(&rt, &t, &mut l, &mut rng, n);
            l.attempts += 1;
            attempts += 1;
        }
        rusm_otp::yield_now().await;
    }
    t.chaos_done.store(true, Ordering::Release);
    l
}

/// Runs the chaos process for `duration` and returns its ledger.
fn run_chaos(rt: &Runtime, t: &Arc<Tree>, l: Ledger, rate: u64, duration: Duration) -> Ledger {
    let t = t.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    let h = rt.spawn(move |ctx| async move {
        let _ = tx.send(chaos(ctx, t, l, rate, duration).await);
    });
    assert_eq!(rt.block_on(h.join()), ExitReason::Normal);
    rx.recv()
        .expect("the chaos process ended without its ledger")
}

/// Stops the rings' traffic and waits (bounded) until every start the
/// ledger implies has happened and the tree is back to its full size; an
/// extra start is caught by the per-child check.
fn settle(rt: &Runtime, t: &Tree, l: &Ledger, tree_size: usize) -> bool {
    // The traffic runs on a moment without chaos first, so that both
    // measurements see the tree alike: every worker has served calls since
    // its last start (a process that has been called keeps a few hundred
    // bytes of bookkeeping: its lazily made side data and its last call's
    // watch). Without it, how many workers were called between their last
    // restart and the pause would read as growth or shrinkage.
    std::thread::sleep(COOL_DOWN);
    t.paused.store(true, Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(30);
    let settled = || (0..t.subs).all(|s| l.settled(t, s)) && rt.process_count() == tree_size;
    while !settled() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    // The rings are stopped; memory is measured once every call still
    // waiting has ended (answered, or its timeout expired), and after a
    // burst of short processes: the runtime frees some memory deferred
    // (epoch-based reclamation), which happens as its workers run tasks,
    // not while they sleep. Without the
    // burst, what a storm's last seconds left deferred would read as
    // growth.
    // Bursts repeat (a bounded number of times) while they still free
    // something: reclamation trails the work by a few epochs, and the
    // workers' caches of recycled task memory change hands as they run.
    // A leak does not shrink with more bursts; deferred garbage does.
    std::thread::sleep(t.call_timeout + Duration::from_millis(200));
    let mut last = u64::MAX;
    for _ in 0..8 {
        for _ in 0..20_000 {
            let h = rt.spawn(|_ctx| async move {});
            rt.block_on(h.join());
        }
        std::thread::sleep(Duration::from_millis(200));
        let now = LIVE.load(Ordering::Relaxed);
        if now >= last {
            break;
        }
        last = now;
    }
    trim_heap();
    settled()
}

/// Hands the memory the allocator holds free back to the system, so that
/// resident memory reflects what is in use (glibc keeps freed memory
/// otherwise; both measurements are taken the same way).
fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        unsafe extern "C" {
            fn malloc_trim(pad: usize) -> i32;
        }
        // SAFETY: glibc's `malloc_trim` takes any padding and only releases
        // free memory; the program's allocations are untouched.
        unsafe {
            malloc_trim(0);
        }
    }
}

/// Bytes glibc's malloc holds free in its arenas (`mallinfo2().fordblks`):
/// freed memory it keeps, in chunks it could not return to the system.
/// `None` where the allocator is not glibc's.
fn allocator_free_bytes() -> Option<u64> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        /// glibc's `struct mallinfo2`.
        #[repr(C)]
        struct MallInfo2 {
            arena: usize,
            ordblks: usize,
            smblks: usize,
            hblks: usize,
            hblkhd: usize,
            usmblks: usize,
            fsmblks: usize,
            uordblks: usize,
            fordblks: usize,
            keepcost: usize,
        }
        unsafe extern "C" {
            fn mallinfo2() -> MallInfo2;
        }
        // SAFETY: `mallinfo2` (glibc 2.33 and later) only reads the
        // allocator's statistics, and returns the struct declared above.
        let m = unsafe { mallinfo2() };
        Some(m.fordblks as u64)
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    None
}

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

fn quiet_panics() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let on_worker = std::thread::current()
            .name()
            .is_some_and(|n| n.starts_with("rusm-worker-"));
        if !on_worker {
            previous(info);
        }
    }));
}

struct Check {
    failed: bool,
}

impl Check {
    fn that(&mut self, ok: bool, what: impl std::fmt::Display) {
        println!("  [{}] {what}", if ok { " ok " } else { "FAIL" });
        self.failed |= !ok;
    }
}

fn main() {
    let o = match parse_options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("restart_storm: {e}");
            std::process::exit(2);
        }
    };
    quiet_panics();
    let rt = Runtime::new();
    let t = Arc::new(Tree::new(o.subs, o.workers, o.verbose, o.call_timeout));
    let tree_size = 1 + o.subs * (1 + o.workers);
    println!(
        "restart_storm: root over {} sub-supervisors x {} workers ({tree_size} processes) on {} workers, \
         chaos at {} actions/s for {:.1} s",
        o.subs,
        o.workers,
        rt.workers(),
        o.rate,
        o.duration.as_secs_f64()
    );
    let root = build_tree(&rt, &t);
    let root_ref = SupervisorRef::new(&rt, root.pid());

    // Warm-up: a short storm first, so that the memory baseline below
    // already holds what any storm fills once (allocator caches, the
    // supervisors' bounded memory of ended children); the check then
    // catches what grows with the storm's length.
    let warm_up = o.duration.min(Duration::from_secs(1));
    let ledger = run_chaos(&rt, &t, Ledger::new(&t), o.rate, warm_up);
    let warmed = settle(&rt, &t, &ledger, tree_size);
    let rss_before = rss_bytes();
    let heap_before = LIVE.load(Ordering::Relaxed);
    let free_before = allocator_free_bytes();
    t.paused.store(false, Ordering::Relaxed);
    for s in 0..t.subs {
        rt.send(t.pid_of(s, 0), Kick);
    }
    println!(
        "warm-up: {:.1} s of chaos, {} restarts; at rest{}: rss {:.1} MiB",
        warm_up.as_secs_f64(),
        t.restarts(),
        if warmed { "" } else { " (NOT settled)" },
        mib(rss_before)
    );
    let base_restarts = t.restarts();
    let base_escalations = t.escalations.load(Ordering::Relaxed);
    let base_messages = t.messages.load(Ordering::Relaxed);

    t.chaos_done.store(false, Ordering::Release);
    let (tx, rx) = std::sync::mpsc::channel();
    let (tc, rate, duration) = (t.clone(), o.rate, o.duration);
    let chaos_h = rt.spawn(move |ctx| async move {
        let _ = tx.send(chaos(ctx, tc, ledger, rate, duration).await);
    });

    let mut csv = o.csv.as_ref().map(|path| {
        let mut f = std::io::BufWriter::new(
            std::fs::File::create(path).unwrap_or_else(|e| panic!("{path}: {e}")),
        );
        let _ = writeln!(
            f,
            "second,restarts_per_s,restarts,escalations,processes,messages_per_s,rss_bytes"
        );
        f
    });
    let tty = std::io::stdout().is_terminal();
    let start = Instant::now();
    let (mut last_restarts, mut last_messages) = (base_restarts, base_messages);
    let mut second = 0u64;
    let mut peak = 0u64;
    while !t.chaos_done.load(Ordering::Acquire) {
        second += 1;
        let target = start + Duration::from_secs(second);
        while Instant::now() < target && !t.chaos_done.load(Ordering::Acquire) {
            std::thread::sleep(Duration::from_millis(20));
        }
        if t.chaos_done.load(Ordering::Acquire) && Instant::now() < target {
            break;
        }
        let restarts = t.restarts();
        let messages = t.messages.load(Ordering::Relaxed);
        let (dr, dm) = (restarts - last_restarts, messages - last_messages);
        (last_restarts, last_messages) = (restarts, messages);
        peak = peak.max(dr);
        let rss = rss_bytes();
        let escalations = t.escalations.load(Ordering::Relaxed) - base_escalations;
        let restarts = restarts - base_restarts;
        let line = format!(
            "[{:>4.0}/{:.0} s] {dr:>9} restarts/s  total {restarts:>10}  escalations {escalations:>6}  \
             processes {:>7}  {dm:>9} msgs/s  rss {:>7.1} MiB",
            start.elapsed().as_secs_f64(),
            o.duration.as_secs_f64(),
            rt.process_count(),
            mib(rss),
        );
        if tty {
            print!("\r\x1b[2K{line}");
            let _ = std::io::stdout().flush();
        } else {
            println!("{line}");
        }
        if let Some(f) = csv.as_mut() {
            let _ = writeln!(
                f,
                "{second},{dr},{restarts},{escalations},{},{dm},{rss}",
                rt.process_count()
            );
        }
    }
    if tty {
        println!();
    }
    if let Some(mut f) = csv {
        let _ = f.flush();
    }
    let ledger = rx
        .recv()
        .expect("the chaos process ended without its ledger");
    let storm = start.elapsed();
    let restarts_at_end = t.restarts() - base_restarts;
    assert_eq!(rt.block_on(chaos_h.join()), ExitReason::Normal);
    let settled = settle(&rt, &t, &ledger, tree_size);
    let rss_after = rss_bytes();
    let heap_after = LIVE.load(Ordering::Relaxed);
    let free_after = allocator_free_bytes();

    println!("summary:");
    println!(
        "  chaos (warm-up included): {} actions drawn (one whose target was busy is skipped): {} kills, {} crashes, \
         {} panics of workers; {} sub-supervisors killed or crashed; {} escalations",
        ledger.attempts,
        ledger.kills,
        ledger.crashes,
        ledger.panics,
        ledger.sup_kills,
        ledger.escalations
    );
    let restarts = t.restarts() - base_restarts;
    println!(
        "  {restarts} restarts in {:.1} s: {:.0} restarts/s sustained (peak second {peak})",
        storm.as_secs_f64(),
        restarts_at_end as f64 / storm.as_secs_f64(),
    );
    println!(
        "  traffic: {} messages, {} calls answered, {} to a callee that died",
        t.messages.load(Ordering::Relaxed),
        t.calls_ok.load(Ordering::Relaxed),
        t.calls_callee_died.load(Ordering::Relaxed),
    );
    let mut c = Check { failed: false };
    c.that(
        settled,
        "the tree settled: every start the chaos log implies happened",
    );

    let mut wrong = Vec::new();
    for i in 0..t.subs * t.workers {
        let got = t.child_starts[i].load(Ordering::Acquire);
        if got != ledger.child[i] {
            wrong.push(format!(
                "sub-{} worker-{}: {got} starts, {} expected",
                i / t.workers,
                i % t.workers,
                ledger.child[i]
            ));
        }
    }
    for s in 0..t.subs {
        let got = t.sup_starts[s].load(Ordering::Acquire);
        if got != ledger.sup[s] {
            wrong.push(format!("sub-{s}: {got} starts, {} expected", ledger.sup[s]));
        }
    }
    c.that(
        wrong.is_empty(),
        format!(
            "every crash had exactly one restart of its child, or its escalation ({} children{})",
            t.subs * (t.workers + 1),
            if wrong.is_empty() {
                String::new()
            } else {
                format!("; {} wrong, first: {}", wrong.len(), wrong[0])
            }
        ),
    );

    let (whole, live) = rt.block_on(async {
        let mut whole = Vec::new();
        let mut tree: HashSet<Pid> = HashSet::from([root.pid()]);
        match root_ref.count_children().await {
            Ok(n) if n.specs == t.subs && n.active == t.subs && n.supervisors == t.subs => {}
            other => whole.push(format!("root: {other:?}")),
        }
        for s in 0..t.subs {
            let sup = Pid::from_raw(t.sup_pid[s].load(Ordering::Acquire));
            tree.insert(sup);
            let r = SupervisorRef::new(&rt, sup);
            match r.count_children().await {
                Ok(n)
                    if n.specs == t.workers && n.active == t.workers && n.workers == t.workers => {}
                other => whole.push(format!("sub-{s}: {other:?}")),
            }
            if let Ok(children) = r.which_children().await {
                tree.extend(children.iter().filter_map(|c| c.pid));
            }
        }
        let live: HashSet<Pid> = rt.list().into_iter().collect();
        (whole, live == tree && tree.len() == tree_size)
    });
    c.that(
        whole.is_empty(),
        format!(
            "the tree is whole: every count_children matches its specs{}",
            whole
                .first()
                .map(|w| format!("; first wrong: {w}"))
                .unwrap_or_default()
        ),
    );
    c.that(
        live,
        format!(
            "the live processes are exactly the tree's {tree_size} ({} alive)",
            rt.process_count()
        ),
    );
    let (gaps, dups) = (
        t.seq_gaps.load(Ordering::Relaxed),
        t.seq_dups.load(Ordering::Relaxed),
    );
    c.that(
        gaps == 0 && dups == 0,
        format!("no sequence number skipped or duplicated between live siblings ({gaps} skipped, {dups} duplicated)"),
    );
    let (unanswered, bad) = (
        t.calls_unanswered.load(Ordering::Relaxed),
        t.bad_replies.load(Ordering::Relaxed),
    );
    c.that(
        unanswered == 0 && bad == 0,
        format!("every call between live siblings answered, and rightly ({unanswered} unanswered, {bad} wrong)"),
    );
    // Beyond 10%, resident memory may grow only by what glibc holds free
    // in its arenas more than before (fragmentation: freed chunks sharing
    // pages with live ones), which the live heap check shows is not ours.
    let ratio = rss_after as f64 / rss_before.max(1) as f64;
    let held_free = match (free_before, free_after) {
        (Some(b), Some(a)) => a.saturating_sub(b),
        _ => 0,
    };
    let over = rss_after.saturating_sub(rss_before + rss_before / 10);
    c.that(
        !o.resident_check || over <= held_free,
        format!(
            "resident memory {:.1} MiB after the storm, {:.1} MiB before ({:+.1}%){}{}",
            mib(rss_after),
            mib(rss_before),
            (ratio - 1.0) * 100.0,
            if over > 0 {
                format!(
                    "; {:.1} MiB over 10%, within the {:.1} MiB more that malloc holds free",
                    mib(over),
                    mib(held_free)
                )
            } else {
                String::new()
            },
            if o.resident_check {
                ""
            } else {
                " (not checked)"
            }
        ),
    );

    // A small tree's heap is mostly the runtime's fixed reserves (timer
    // slots, a few pid-table pages), so its 10% gets a floor.
    let heap_ratio = heap_after as f64 / heap_before.max(1) as f64;
    c.that(
        heap_after <= heap_before + (heap_before / 10).max(HEAP_FLOOR),
        format!(
            "live heap {:.1} MiB after the storm, {:.1} MiB before ({:+.1}%)",
            mib(heap_after),
            mib(heap_before),
            (heap_ratio - 1.0) * 100.0
        ),
    );
    root.kill();
    let deadline = Instant::now() + Duration::from_secs(30);
    while rt.process_count() > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    c.that(
        rt.process_count() == 0,
        "killing the root leaves no process behind",
    );
    if c.failed {
        eprintln!("restart_storm: a check failed");
        std::process::exit(1);
    }
    println!("all checks passed");
}
