//! Exit signals, links and monitors, with Erlang's semantics.
//!
//! Per-process signal state (links, monitors, `trap_exit`) lives in the
//! process's aux data, under its lock, in [`SmallSet`]s: no allocation for
//! the usual zero to two entries, and O(1) insert and remove for a hub with
//! a million.
//!
//! # Liveness
//!
//! A process is *alive* exactly while it is in the process table; teardown
//! removes it from the table first and only then takes its lists, under its
//! aux lock. So every addition to a process's links, monitors, names or
//! tags goes through [`Table::lock_alive`](crate::process::table::Table::lock_alive), which checks the table while
//! holding that lock: either it sees the process gone (and adds nothing),
//! or the addition lands before teardown takes the lists, and teardown
//! handles it. Removals need no such check: removing from a dead process's
//! lists is harmless.
//!
//! A monitor is stored in three places: the monitor table (reference →
//! watcher, target), the watcher's `monitoring` and the target's
//! `monitors`. [`Runtime::monitor`] adds it to all three while holding the
//! reference's monitor shard lock, and every removal takes that lock first,
//! so no removal can run between the three additions and miss one of them.
//! A supervisor's monitor on the child it spawns lives in one place only,
//! the child's header, and costs no aux data and no monitor-table entry
//! (see [`spawn`]).
//!
//! # Lock order
//!
//! monitor shard → process aux (two at most, in pid order, for `link`) →
//! registry shard. Process-table lookups take no lock (see
//! [`crate::process::table`]), so a delivery may wake a foreign waker under
//! the receiver's aux lock from anywhere.
//!
//! # User code
//!
//! The links, monitors and teardown here deliver only `Down` and `Exit`
//! items, and neither holds a user value: one refused by a closed mailbox
//! is dropped under the locks above without running any user destructor.
//! (The one piece of user code a delivery can reach is a foreign waker,
//! woken by [`Header::deliver`](crate::process::task::Header::deliver).)
//!
//! # Teardown (a process ending with reason R)
//!
//! 1. It leaves the table: sends, links, monitors and names now see it dead.
//! 2. Its names and tags are released (so whoever receives a `Down` or
//!    `Exit` below already sees `whereis(name) == None`).
//! 3. Every monitor on it fires `Down { reason: R }`, each under its monitor
//!    shard lock, so `demonitor` either removes it first (no `Down`) or
//!    returns after the `Down` is in the watcher's mailbox. (Its spawn
//!    monitor fires by a swap of its header slot instead: [`spawn`].)
//! 4. Every linked process that still holds the link gets the exit signal R:
//!    a trapping one receives `Exit { from, reason: R }`; a non-trapping one
//!    ignores `Normal` and otherwise ends with R (so cascades carry R).
//! 5. Monitors it had placed on others are removed.
//!
//! Each step costs O(1) per link or monitor; a hub's teardown also sorts
//! its keys once (see [`set::IntoIter`]).

mod set;
mod spawn;

pub(crate) use spawn::fire as fire_spawn_monitor;
pub(crate) use spawn::place as place_spawn_monitor;
pub(crate) use spawn::take as take_spawn_monitor;

pub(crate) use set::SmallSet;

use crate::loom::lock::Mutex;
use crate::mailbox::{MonitorRef, Received};
use crate::process::{ExitReason, Pid};
use crate::runtime::TaskRef;
use crate::runtime::{Runtime, Shared};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

const MONITOR_SHARDS: usize = 32;

/// One shard of the monitor table: reference → (watcher, target). A
/// reference is keyed by its number divided by the shard count, so the
/// references of one shard are consecutive keys, which [`set::KeyHash`]
/// keeps together in memory.
type MonitorShard = HashMap<u64, (Pid, Pid), set::KeyHash>;

/// Every live monitor: reference → (watcher, target).
#[derive(Debug)]
pub(crate) struct Monitors {
    shards: Box<[Mutex<MonitorShard>]>,
    next_ref: AtomicU64,
}

impl Monitors {
    pub(crate) fn new() -> Monitors {
        Monitors {
            shards: (0..MONITOR_SHARDS).map(|_| Mutex::default()).collect(),
            next_ref: AtomicU64::new(1),
        }
    }

    fn shard(&self, r: MonitorRef) -> &Mutex<MonitorShard> {
        &self.shards[r.0 as usize % MONITOR_SHARDS]
    }

    /// `r`'s key in its shard.
    fn key(r: MonitorRef) -> u64 {
        r.0 / MONITOR_SHARDS as u64
    }

    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().len()).sum()
    }
}

/// Fires monitor `r` (if it is still live) with `Down { pid, reason }`.
fn fire_monitor(shared: &Shared, r: MonitorRef, pid: Pid, reason: ExitReason) {
    let mut shard = shared.monitors.shard(r).lock();
    if let Some((watcher, _)) = shard.remove(&Monitors::key(r)) {
        shared.table.with(watcher, |w| {
            let w = w.header();
            w.aux_if_any(|a| a.monitoring.remove(r));
            w.deliver(Received::Down {
                reference: r,
                pid,
                reason,
            })
        });
    }
}

/// Teardown steps 2-5 (see the module docs). The process has already
/// left the table.
pub(crate) fn release(shared: &Shared, task: &TaskRef, reason: ExitReason) {
    let h = task.header();
    let me = h.pid;
    let (watcher, taken) = {
        let mut slot = h.aux.lock();
        let watcher = spawn::take(&mut slot);
        let taken = slot.as_mut().map(|a| {
            (
                std::mem::take(&mut a.names),
                std::mem::take(&mut a.tags),
                a.monitors.take(),
                a.links.take(),
                a.monitoring.take(),
            )
        });
        (watcher, taken)
    };
    let fire_spawn = || {
        if let Some(w) = watcher {
            spawn::fire(shared, h, w, reason);
        }
    };
    let Some((names, tags, monitors, links, monitoring)) = taken else {
        // No aux data: no names to release first.
        fire_spawn();
        return;
    };
    for name in &names {
        shared.registry.release_name(name, me);
    }
    for tag in &tags {
        shared.registry.release_tag(tag, me);
    }
    fire_spawn();
    for r in monitors {
        fire_monitor(shared, r, me, reason);
    }
    for other in links {
        let Some(t) = shared.table.get(other) else {
            continue;
        };
        // Only a link the other side still holds carries the signal:
        // an `unlink` that got there first wins.
        let trapping = t
            .header()
            .aux_if_any(|a| a.links.remove(me).then_some(a.trap_exit));
        match trapping.flatten() {
            None => {}
            Some(true) => {
                shared.deliver(other, Received::Exit { from: me, reason });
            }
            Some(false) if reason == ExitReason::Normal => {}
            Some(false) => t.header().exit(reason),
        }
    }
    for r in monitoring {
        remove_monitor(shared, r);
    }
}

/// Removes monitor `r` from the monitor table and from both processes'
/// lists; true when it was live.
fn remove_monitor(shared: &Shared, r: MonitorRef) -> bool {
    if spawn::is_spawn(r) {
        return spawn::remove(shared, r);
    }
    let mut shard = shared.monitors.shard(r).lock();
    let Some((watcher, target)) = shard.remove(&Monitors::key(r)) else {
        return false;
    };
    shared
        .table
        .with(target, |t| t.header().aux_if_any(|a| a.monitors.remove(r)));
    shared.table.with(watcher, |w| {
        w.header().aux_if_any(|a| a.monitoring.remove(r))
    });
    true
}

impl Runtime {
    /// Links `a` and `b`: when either ends, the other gets its exit signal.
    /// Symmetric, at most one link per pair; linking a process to itself
    /// does nothing. If either is not alive, no link is kept and the live
    /// side, if it traps exits, receives `Exit { from, reason: NoProc }`.
    ///
    /// # Examples
    ///
    /// ```
    /// use rusm_otp::{ExitReason, Runtime};
    ///
    /// let rt = Runtime::builder().workers(2).build();
    /// let parked = |rt: &Runtime| {
    ///     rt.spawn(|mut ctx| async move {
    ///         ctx.recv().await;
    ///     })
    /// };
    /// let (a, b) = (parked(&rt), parked(&rt));
    /// rt.link(a.pid(), b.pid());
    /// // An abnormal exit travels along the link and ends `b` too.
    /// rt.exit(a.pid(), ExitReason::Crashed);
    /// assert_eq!(rt.block_on(b.join()), ExitReason::Crashed);
    /// ```
    pub fn link(&self, a: Pid, b: Pid) {
        self.link_inner(a, b);
    }

    /// [`link`](Self::link); true when the link now exists.
    fn link_inner(&self, a: Pid, b: Pid) -> bool {
        if a == b {
            return false;
        }
        let shared = &self.shared;
        let (ta, tb) = (shared.table.get(a), shared.table.get(b));
        let (ta, tb) = match (ta, tb) {
            (Some(ta), Some(tb)) => (ta, tb),
            (Some(live), None) | (None, Some(live)) => {
                let dead = if live.header().pid == a { b } else { a };
                self.noproc_link(&live, dead);
                return false;
            }
            (None, None) => return false,
        };
        // Lock in pid order; check liveness under both locks (module docs).
        let (first, second) = if a < b { (&ta, &tb) } else { (&tb, &ta) };
        let l1 = shared.table.lock_alive(first.header());
        let l2 = shared.table.lock_alive(second.header());
        let (p1, p2) = (first.header().pid, second.header().pid);
        match (l1, l2) {
            (Some(mut x1), Some(mut x2)) => {
                if x1.links.insert(p2) {
                    x2.links.insert(p1);
                }
                true
            }
            (Some(x1), None) => {
                drop(x1);
                self.noproc_link(first, p2);
                false
            }
            (None, Some(x2)) => {
                drop(x2);
                self.noproc_link(second, p1);
                false
            }
            (None, None) => false,
        }
    }

    fn noproc_link(&self, live: &TaskRef, dead: Pid) {
        if live.header().traps_exit() {
            self.shared.deliver(
                live.header().pid,
                Received::Exit {
                    from: dead,
                    reason: ExitReason::NoProc,
                },
            );
        }
    }

    /// Removes the link between `a` and `b`, if any. No exit signal travels
    /// over it after this returns.
    pub fn unlink(&self, a: Pid, b: Pid) {
        if a == b {
            return;
        }
        let table = &self.shared.table;
        let (ta, tb) = (table.get(a), table.get(b));
        // Both sides at once, in pid order (as `link` takes them), so a
        // racing `link` finds the pair either whole or gone, never half.
        let (first, second) = if a < b { (&ta, &tb) } else { (&tb, &ta) };
        let mut l1 = first.as_ref().map(|t| t.header().aux.lock());
        let mut l2 = second.as_ref().map(|t| t.header().aux.lock());
        let (p1, p2) = if a < b { (a, b) } else { (b, a) };
        if let Some(x) = l1.as_mut().and_then(|g| g.as_deref_mut()) {
            x.links.remove(p2);
        }
        if let Some(x) = l2.as_mut().and_then(|g| g.as_deref_mut()) {
            x.links.remove(p1);
        }
    }

    /// Spawns a process linked to `parent`, the link in place before the
    /// child first runs. If `parent` is not alive, the child ends at once
    /// with `NoProc`, as the exit signal of a dead link would end it.
    pub fn spawn_link<F, Fut>(&self, parent: Pid, f: F) -> crate::ProcessHandle
    where
        F: FnOnce(crate::Context) -> Fut,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        self.spawn_inner(f, |child| {
            if !self.link_inner(parent, child) {
                self.exit(child, ExitReason::NoProc);
            }
        })
    }

    /// Sets whether `pid` traps exits: exit signals (other than `kill`)
    /// arrive as `Received::Exit` instead of ending it.
    ///
    /// # Examples
    ///
    /// ```
    /// use rusm_otp::{ExitReason, Received, Runtime};
    ///
    /// let rt = Runtime::builder().workers(2).build();
    /// let doomed = rt.spawn(|mut ctx| async move {
    ///     ctx.recv().await;
    /// });
    /// let doomed_pid = doomed.pid();
    /// let watcher = rt.spawn(move |mut ctx| async move {
    ///     let rt = ctx.runtime().clone();
    ///     rt.set_trap_exit(ctx.pid(), true);
    ///     rt.link(ctx.pid(), doomed_pid);
    ///     rt.exit(doomed_pid, ExitReason::Crashed);
    ///     // Trapping: the linked process's exit is a message, not our end.
    ///     match ctx.recv().await {
    ///         Received::Exit { from, reason } => {
    ///             assert_eq!((from, reason), (doomed_pid, ExitReason::Crashed));
    ///         }
    ///         _ => panic!("expected an Exit"),
    ///     }
    /// });
    /// assert_eq!(rt.block_on(watcher.join()), ExitReason::Normal);
    /// ```
    pub fn set_trap_exit(&self, pid: Pid, trap: bool) {
        if let Some(t) = self.shared.table.get(pid) {
            t.header().with_aux(|a| a.trap_exit = trap);
        }
    }

    /// Erlang's `exit/2`: a trappable exit signal to `pid`, as if sent by
    /// `from`. A trapping `pid` receives `Exit { from, reason }` (even for
    /// `Normal`); a non-trapping one ignores `Normal` (unless it sent the
    /// signal to itself) and otherwise ends with `reason`. `Killed` is
    /// untrappable. False if `pid` is not alive.
    pub fn send_exit(&self, from: Pid, pid: Pid, reason: ExitReason) -> bool {
        let Some(t) = self.shared.table.get(pid) else {
            return false;
        };
        if reason == ExitReason::Killed {
            t.header().exit(ExitReason::Killed);
            return true;
        }
        if t.header().traps_exit() {
            return self.shared.deliver(pid, Received::Exit { from, reason });
        }
        if reason != ExitReason::Normal || from == pid {
            t.header().exit(reason);
        }
        true
    }

    /// Monitors `target` on behalf of `watcher`: when `target` ends,
    /// `watcher` receives `Down` with its reason. Each call places a new
    /// monitor. A dead or unknown target gives `Down { reason: NoProc }` at
    /// once.
    ///
    /// A dead or unknown `watcher` places nothing: the reference returned is
    /// fresh but inert. It is never stored (neither
    /// [`monitor_count`](Self::monitor_count) nor the target's
    /// [`info`](Self::info)`.monitors` changes), no `Down` is ever sent for
    /// it, and [`demonitor`](Self::demonitor) of it returns false.
    ///
    /// # Examples
    ///
    /// ```
    /// use rusm_otp::{ExitReason, Received, Runtime};
    ///
    /// let rt = Runtime::builder().workers(2).build();
    /// let target = rt.spawn(|mut ctx| async move {
    ///     ctx.recv().await;
    /// });
    /// let target_pid = target.pid();
    /// let watcher = rt.spawn(move |mut ctx| async move {
    ///     let watch = ctx.runtime().monitor(ctx.pid(), target_pid);
    ///     ctx.runtime().kill(target_pid);
    ///     match ctx.recv().await {
    ///         Received::Down { reference, pid, reason } => {
    ///             assert_eq!(reference, watch);
    ///             assert_eq!((pid, reason), (target_pid, ExitReason::Killed));
    ///         }
    ///         _ => panic!("expected a Down"),
    ///     }
    /// });
    /// assert_eq!(rt.block_on(watcher.join()), ExitReason::Normal);
    /// ```
    pub fn monitor(&self, watcher: Pid, target: Pid) -> MonitorRef {
        let shared = &self.shared;
        let r = MonitorRef(shared.monitors.next_ref.fetch_add(1, Ordering::Relaxed));
        // Held until the monitor is in all three places (module docs).
        let mut shard = shared.monitors.shard(r).lock();
        let Some(w) = shared.table.get(watcher) else {
            return r;
        };
        match shared.table.lock_alive(w.header()) {
            Some(mut a) => a.monitoring.insert(r),
            None => return r,
        };
        let placed = shared.table.with_alive(target, |a| a.monitors.insert(r));
        if placed.is_some() {
            shard.insert(Monitors::key(r), (watcher, target));
        } else {
            w.header().aux_if_any(|a| a.monitoring.remove(r));
            drop(shard);
            w.header().deliver(Received::Down {
                reference: r,
                pid: target,
                reason: ExitReason::NoProc,
            });
        }
        r
    }

    /// Removes a monitor. No `Down` for it arrives after this returns; false
    /// when it had already fired or been removed.
    pub fn demonitor(&self, reference: MonitorRef) -> bool {
        remove_monitor(&self.shared, reference)
    }

    /// Monitors alive in the runtime (for leak checks and operators).
    /// Supervisors' monitors on their children live with the children, so
    /// counting them scans the process table.
    pub fn monitor_count(&self) -> usize {
        self.shared.monitors.len() + spawn::count(&self.shared)
    }
}
