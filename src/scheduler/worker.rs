//! The worker run loop.
//!
//! # Finding a task
//!
//! 1. The next slot, unless [`LIFO_CAP`] tasks in a row came from it: a
//!    process woken by the one running now runs next, on the same core, with
//!    the message it was woken for still in cache. The cap keeps a ping-pong
//!    pair from starving the rest of the queue: on the cap the slot's task is
//!    moved to the back of the local deque.
//! 2. Every [`INJECTOR_INTERVAL`] ticks, the injector first, so work posted
//!    from outside is never starved by a busy local queue.
//! 3. Once [`YIELD_INTERVAL`] ticks have passed since a yielded task last
//!    ran, the yielded deque's first task.
//! 4. The local deque (FIFO), then a batch from the injector, then the
//!    yielded deque (FIFO).
//! 5. Search (if fewer than half the workers already do): every other
//!    worker's local deque, starting at a random victim, retrying on
//!    `Steal::Retry`; the injector; every other worker's yielded deque. The
//!    last searcher to find work wakes another worker, so wake-ups pipeline
//!    when a burst of work arrives.
//! 6. Nothing anywhere: spin briefly as a searcher (a poster wakes nobody
//!    while someone searches, so work arriving now needs no futex wake),
//!    then fall asleep by the protocol in [`super::idle`].
//!
//! # Woken before yielded
//!
//! A process that yields (`yield_now`, or a receive out of budget, see
//! [`crate::coop`]) says it can wait; a process woken by a message, a
//! signal or a timer has something to answer. So they queue apart: a
//! yielder goes to the back of the *yielded* deque, and a worker takes from
//! it only when it has nothing woken (next slot, local deque, injector),
//! or when a yielder has waited [`YIELD_INTERVAL`] ticks. A woken process
//! therefore waits for at most one yielder's turn (the one running when it
//! was woken, or the one the interval lets in), however many yielders are
//! queued; that is what keeps a message's latency low while other processes
//! burn CPU in slices. No class starves: woken work always comes first but
//! for one yielder every [`YIELD_INTERVAL`] ticks, so even a ping-pong pair
//! that is never idle (and that the LIFO cap sends through the local deque
//! every few polls) lets the yielders progress, one turn per interval, and
//! each yielder in FIFO order. tokio defers a yielded task likewise, until
//! its worker has run out of woken work or every 61 ticks (then all of them
//! at once); BEAM reaches a similar effect through priorities and
//! reductions.
//!
//! The yielded deque is a work-stealing deque like the local one, with a
//! [`Stealer`](crossbeam_deque::Stealer) in the scheduler: searching
//! workers steal from it (after woken work), the sleep protocol's re-check
//! looks at it, and the stall monitor wakes a sleeper to steal it when its
//! owner is stuck in one poll. So a deferred yielder is never stranded, and
//! needs no wake/park protocol of its own (see [`super`]).
//!
//! The worker's deque and next slot are reachable through the thread-local
//! [`CURRENT`], so that wakes and spawns made during a poll on this thread go
//! to this worker's own queues without touching shared state.
//!
//! The next slot is not stolen by searching workers (that would pull a
//! ping-pong pair apart across cores), but it is stealable: a worker stuck
//! in one long poll would otherwise strand the process it just woke. The
//! stall monitor ([`super::stranded`]) moves it to the injector once the
//! poll has lasted long enough; each worker publishes the pid it polls in
//! its [`WorkerStats::running`] for that.

use super::{Scheduler, TaskSlot, WorkerStats};
use crate::loom::deque::{Steal, Worker};
use crate::process::recycle;
use crate::runtime::Notified;
use crate::runtime::Shared;
use std::cell::Cell;
use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// How long a worker sleeps before it trims its task-memory cache.
const IDLE_TRIM_AFTER: Duration = Duration::from_millis(20);

/// Consecutive next-slot runs before the slot's task goes to the back.
const LIFO_CAP: u32 = 3;
/// Ticks a yielded task waits at most while woken tasks run.
const YIELD_INTERVAL: u32 = 61;
/// Rounds of spinning before a worker with nothing to do parks (none under
/// loom: a spin only delays the park, whose protocol the models check).
const SPIN_ROUNDS: u32 = if cfg!(loom) { 0 } else { 24 };
/// The same while sockets are registered: none. The spin watches only the
/// run queues, so parking (the duty holder in the reactor's wait, as
/// tokio's worker goes back to its driver) serves readiness sooner, and
/// the CPU a spin burns is taken from the peers the sockets talk to
/// (1-connection echo on 2 cores, p50: 13.7-14.8 µs at 8 rounds, 9.3-10.1
/// at none; p99: 1.3-4 ms at 24 rounds; see BENCHMARKS.md, "I/O").
const IO_SPIN_ROUNDS: u32 = 0;
/// Every this many ticks, the injector is looked at before the local deque.
const INJECTOR_INTERVAL: u32 = 61;

/// A worker's two deques (see the module docs).
#[derive(Debug)]
pub(crate) struct Deques {
    /// Woken and spawned tasks (FIFO).
    pub(crate) local: Worker<Notified>,
    /// Tasks that yielded (FIFO), run after the woken ones.
    pub(crate) yielded: Worker<Notified>,
}

/// What a worker thread shares with code running on it.
struct WorkerLocal<'a> {
    /// The scheduler this worker belongs to (identity check for wakes).
    sched: *const Scheduler,
    /// The worker's FIFO deque of woken and spawned tasks.
    local: Worker<Notified>,
    /// The worker's FIFO deque of yielded tasks.
    yielded: Worker<Notified>,
    /// The next slot: the task to run after the current one.
    next: &'a TaskSlot,
}

crate::loom::thread_local! {
    /// The worker running on this thread, if any.
    static CURRENT: Cell<Option<NonNull<WorkerLocal<'static>>>> = const { Cell::new(None) };
}

/// Where a task scheduled from a worker thread goes.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Placement {
    /// The next slot (a wake).
    Next,
    /// The back of the local deque, waking a sleeper if needed (a spawn).
    Back,
    /// The task that just ran, woken during its poll: the back of the
    /// yielded deque if the poll yielded (see [`crate::coop`]), else of the
    /// local deque; waking no one (this worker gets back to it).
    Yield,
}

/// Whether this thread is a worker of any runtime.
pub(crate) fn on_worker_thread() -> bool {
    CURRENT.try_with(|c| c.get().is_some()).unwrap_or(false)
}

/// Schedules `task` on this thread's worker if it belongs to `sched`;
/// gives the task back otherwise.
pub(crate) fn schedule_local(
    sched: &Scheduler,
    task: Notified,
    placement: Placement,
) -> Result<(), Notified> {
    let cur = CURRENT.try_with(|c| c.get()).ok().flatten();
    let Some(w) = cur else { return Err(task) };
    // SAFETY: CURRENT points at the `WorkerLocal` on the worker's stack for
    // exactly as long as `run` executes on this thread, and we are on it.
    let w = unsafe { w.as_ref() };
    if !std::ptr::eq(w.sched, sched) {
        return Err(task);
    }
    match placement {
        Placement::Next => {
            if let Some(prev) = w.next.put(task) {
                w.local.push(prev);
                sched.notify();
            }
        }
        Placement::Back => {
            w.local.push(task);
            sched.notify();
        }
        Placement::Yield => {
            if crate::coop::take_yielded() {
                w.yielded.push(task);
            } else {
                w.local.push(task);
            }
        }
    }
    Ok(())
}

/// Per-thread state the loop does not share.
struct Core {
    /// Loop iterations so far.
    tick: u32,
    /// Consecutive runs from the next slot.
    lifo_polls: u32,
    /// Ticks since a yielded task last ran (or was looked for).
    since_yielded: u32,
    /// Whether this worker is counted in `num_searching`.
    searching: bool,
    /// xorshift state for picking victims.
    rng: u32,
}

impl Core {
    /// Stops counting this worker as searching, passing the search on if it
    /// was the last searcher (as finding a task does).
    fn leave_search(&mut self, sched: &Scheduler) {
        if self.searching {
            self.searching = false;
            if sched.idle.end_search() {
                sched.notify();
            }
        }
    }

    fn next_random(&mut self, n: usize) -> usize {
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.rng = x;
        (x as usize) % n
    }
}

/// The body of worker thread `index`.
///
/// User code the runtime runs is guarded where it runs (process bodies,
/// destructors; see `guard`), so nothing is expected to unwind into this
/// loop. Should something still do so, the loop is restarted rather than
/// the thread lost: a lost worker would shrink the pool for good, and one
/// that died while counted as searching would stop posters from ever waking
/// a sleeper again. The unwinding run leaves the search count as it found
/// it (see [`Core::leave_search`]).
pub(crate) fn run(shared: Arc<Shared>, index: usize, deques: Deques) {
    let sched = &shared.scheduler;
    let _current = crate::runtime::enter(&crate::runtime::Runtime::from_shared(shared.clone()));
    let w = WorkerLocal {
        sched,
        local: deques.local,
        yielded: deques.yielded,
        next: &sched.next[index],
    };
    // The lifetime is erased: CURRENT is cleared before `w` goes.
    CURRENT.with(|c| c.set(Some(NonNull::from(&w).cast())));
    crate::process::table::start_batching();
    crate::process::recycle::start();
    let mut core = Core {
        tick: 0,
        lifo_polls: 0,
        since_yielded: 0,
        searching: false,
        rng: 0x9E37_79B9 ^ (index as u32).wrapping_mul(0x85EB_CA6B) | 1,
    };
    // Under loom a panic is the model failing: it must not be caught.
    #[cfg(loom)]
    run_loop(&shared, &w, &mut core, index);
    #[cfg(not(loom))]
    while let Err(payload) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        run_loop(&shared, &w, &mut core, index)
    })) {
        crate::guard::drop_payload(payload);
        shared.note_unowned_panic();
        sched.stats[index].running.store(0, Ordering::Relaxed);
        core.leave_search(sched);
    }
    core.leave_search(sched);
    crate::process::table::stop_batching();
    crate::process::recycle::stop();
    CURRENT.with(|c| c.set(None));
    // Queue entries own nothing: they are simply forgotten with the deque.
    // The runtime's teardown ends every live process through the table.
}

/// The run loop proper, until shutdown.
fn run_loop(shared: &Shared, w: &WorkerLocal, core: &mut Core, index: usize) {
    let sched = &shared.scheduler;
    let stats = &sched.stats[index];
    // Held while running tasks, so that process-table lookups made by the
    // processes nest in it and cost no fence; refreshed and flushed every
    // `INJECTOR_INTERVAL` ticks and dropped before parking, so the epoch
    // keeps advancing and ended processes are freed (see `table`).
    let mut pin = Some(crate::loom::epoch::pin());
    while !sched.is_shutdown() {
        core.tick = core.tick.wrapping_add(1);
        match &mut pin {
            Some(g) if core.tick % INJECTOR_INTERVAL == 0 => shared.table.collect(g),
            Some(_) => {}
            None => pin = Some(crate::loom::epoch::pin()),
        }
        if core.tick % INJECTOR_INTERVAL == 0 {
            shared.poll_timers();
            // Sockets ready by now wake their processes into our queues.
            sched.io.poll_now();
        }
        let task = next_task(sched, w, core).or_else(|| search(sched, w, core, index));
        if let Some(task) = task {
            if core.searching {
                core.searching = false;
                if sched.idle.end_search() {
                    sched.notify();
                }
            }
            WorkerStats::bump(&stats.polls);
            // Left set after the poll (cleared only before parking): a
            // worker between polls is either about to poll again or about
            // to park within microseconds.
            stats.running.store(task.pid().raw(), Ordering::Relaxed);
            task.run();
            continue;
        }
        // Spin a little as a searcher before parking: while we are counted
        // as searching, posters wake no one, so a burst of work arriving
        // now costs no futex round trip.
        if spin_for_work(sched, core) {
            continue;
        }
        #[cfg(test)]
        if core.searching && tests::take_injected_panic(sched) {
            panic!("injected into a searching worker's loop");
        }
        // Timers that fire here wake processes into our own next slot:
        // go round again to run them rather than park on them.
        if shared.poll_timers() {
            continue;
        }
        // So do sockets that became ready (see `io`).
        if sched.io.poll_now() > 0 {
            continue;
        }
        pin = None;
        stats.running.store(0, Ordering::Relaxed);
        // Ended processes are freed before this worker sleeps, so nothing
        // waits for the next burst of work to be reclaimed. Two epoch
        // advances are needed; a few more rounds cover a backlog.
        shared.table.reclaim(|stalled| stalled < 4);
        WorkerStats::bump(&stats.parks);
        // One sleeper parks with the earliest timer as its deadline, in
        // the reactor's poll while sockets are registered (see `io`).
        let duty = shared.timers.take_duty(index);
        let deadline = if duty {
            shared.timers.next_deadline()
        } else {
            None
        };
        // A worker that has slept `IDLE_TRIM_AFTER` gives back the task
        // memory it cached beyond `IDLE_BYTES`: a runtime at rest holds
        // little of its ended processes, while the short idle spells of
        // steady churn keep the blocks for the next spawns.
        let held = recycle::held_bytes();
        stats.cached_bytes.store(held as u64, Ordering::Relaxed);
        let trim_at = (held > recycle::IDLE_BYTES).then(|| Instant::now() + IDLE_TRIM_AFTER);
        let deadline = match (deadline, trim_at) {
            (Some(d), Some(t)) => Some(d.min(t)),
            (d, t) => d.or(t),
        };
        sched.idle.sleep(
            index,
            &mut core.searching,
            || {
                let parker = &sched.parkers[index];
                if duty && sched.io.has_sources() {
                    parker.park_io(deadline)
                } else {
                    parker.park(deadline)
                }
            },
            || sched.has_visible_work() || shared.timers_due(),
            || sched.is_shutdown(),
        );
        if duty {
            shared.timers.release_duty(index);
        }
        if trim_at.is_some_and(|t| Instant::now() >= t) {
            recycle::trim(recycle::IDLE_BYTES);
            let held = recycle::held_bytes();
            stats.cached_bytes.store(held as u64, Ordering::Relaxed);
        }
    }
}

/// Spins up to [`SPIN_ROUNDS`] rounds (with growing pauses) watching every
/// queue, as a searcher. True when work appeared.
fn spin_for_work(sched: &Scheduler, core: &mut Core) -> bool {
    if !core.searching {
        if !sched.idle.try_start_search() {
            return false;
        }
        core.searching = true;
    }
    let rounds = if sched.io.has_sources() {
        IO_SPIN_ROUNDS
    } else {
        SPIN_ROUNDS
    };
    for round in 0..rounds {
        for _ in 0..(1 << round.min(6)) {
            std::hint::spin_loop();
        }
        if sched.has_visible_work() || sched.is_shutdown() {
            return true;
        }
    }
    false
}

fn next_task(sched: &Scheduler, w: &WorkerLocal, core: &mut Core) -> Option<Notified> {
    if let Some(task) = w.next.take() {
        if core.lifo_polls < LIFO_CAP {
            core.lifo_polls += 1;
            return Some(task);
        }
        w.local.push(task);
    }
    core.lifo_polls = 0;
    if core.tick % INJECTOR_INTERVAL == 0 {
        if let Some(task) = steal_injector(sched, w) {
            return Some(task);
        }
    }
    core.since_yielded += 1;
    if core.since_yielded >= YIELD_INTERVAL {
        // A yielder's turn, owed or not: an empty deque restarts the count,
        // so a yielder arriving later waits its interval like the others.
        core.since_yielded = 0;
        if let Some(task) = w.yielded.pop() {
            return Some(task);
        }
    }
    // The emptiness checks first (two loads each, inlined): a worker with
    // only yielders gets past both on every turn, and a steal attempt on
    // the injector costs a SeqCst fence even when it is empty.
    if !w.local.is_empty() {
        if let Some(task) = w.local.pop() {
            return Some(task);
        }
    }
    if !sched.injector.is_empty() {
        if let Some(task) = steal_injector(sched, w) {
            return Some(task);
        }
    }
    let task = w.yielded.pop();
    if task.is_some() {
        core.since_yielded = 0;
    }
    task
}

fn steal_injector(sched: &Scheduler, w: &WorkerLocal) -> Option<Notified> {
    loop {
        match sched.injector.steal_batch_and_pop(&w.local) {
            Steal::Success(task) => return Some(task),
            Steal::Empty => return None,
            Steal::Retry => continue,
        }
    }
}

fn search(sched: &Scheduler, w: &WorkerLocal, core: &mut Core, index: usize) -> Option<Notified> {
    if !core.searching {
        if !sched.idle.try_start_search() {
            return None;
        }
        core.searching = true;
    }
    let n = sched.stealers.len();
    let start = core.next_random(n);
    // Woken work anywhere comes before yielded work: a yielder stolen into
    // our yielded deque stays a yielder.
    let task = steal_from(&sched.stealers, &w.local, start, index)
        .or_else(|| steal_injector(sched, w))
        .or_else(|| steal_from(&sched.yielders, &w.yielded, start, index));
    if task.is_some() {
        WorkerStats::bump(&sched.stats[index].steals);
    }
    task
}

/// Steals a batch from the first non-empty deque of `victims` (all but
/// worker `me`'s, starting at `start`) into `dest`, and pops one.
fn steal_from(
    victims: &[crate::loom::deque::Stealer<Notified>],
    dest: &Worker<Notified>,
    start: usize,
    me: usize,
) -> Option<Notified> {
    let n = victims.len();
    for i in 0..n {
        let victim = (start + i) % n;
        if victim == me {
            continue;
        }
        loop {
            match victims[victim].steal_batch_and_pop(dest) {
                Steal::Success(task) => return Some(task),
                Steal::Empty => break,
                Steal::Retry => continue,
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::Scheduler;
    use crate::ExitReason;
    use std::sync::atomic::Ordering;

    pub(super) fn take_injected_panic(sched: &Scheduler) -> bool {
        sched
            .inject_panics
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .is_ok()
    }

    /// Something unwinding out of a worker's loop while it is counted as
    /// searching: the worker goes on (its thread is not lost), the search
    /// count is restored, and work posted from outside still wakes sleepers.
    #[test]
    fn a_panic_in_the_worker_loop_loses_neither_the_worker_nor_a_wake() {
        for workers in [1, 2] {
            let rt = crate::Runtime::builder().workers(workers).build();
            let sched = &rt.shared.scheduler;
            sched.inject_panics.store(3, Ordering::Release);
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
            // Each spawn wakes a worker, which searches once it is done.
            while rt.metrics().unowned_panics < 3 {
                assert!(std::time::Instant::now() < deadline, "panics not injected");
                rt.spawn(|_| async {});
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            let handles: Vec<_> = (0..20).map(|_| rt.spawn(|_| async {})).collect();
            rt.block_on(async {
                for h in handles {
                    assert_eq!(h.join().await, ExitReason::Normal);
                }
            });
        }
    }
}
