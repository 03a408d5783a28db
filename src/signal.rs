//! Exit signals, links and monitors, with Erlang's semantics.
//!
//! Per-process signal state (links, monitors, `trap_exit`) lives in the
//! process's aux data, under its lock. A process is *alive* exactly while it
//! is in the process table; teardown removes it from the table first, so
//! anything that checks the table while holding the aux lock either sees the
//! process gone or lands its change before teardown takes the lists.
//!
//! # Lock order
//!
//! monitor shard → process aux (two at most, in pid order, for `link`) →
//! registry shard. Process-table lookups take no lock (see
//! [`crate::process::table`]), so a delivery may wake a foreign waker under
//! the receiver's aux lock from anywhere.
//!
//! # Teardown (a process ending with reason R)
//!
//! 1. It leaves the table: sends, links, monitors and names now see it dead.
//! 2. Its names and tags are released (so whoever receives a `Down` or
//!    `Exit` below already sees `whereis(name) == None`).
//! 3. Every monitor on it fires `Down { reason: R }`, each under its monitor
//!    shard lock, so `demonitor` either removes it first (no `Down`) or
//!    returns after the `Down` is in the watcher's mailbox.
//! 4. Every linked process that still holds the link gets the exit signal R:
//!    a trapping one receives `Exit { from, reason: R }`; a non-trapping one
//!    ignores `Normal` and otherwise ends with R (so cascades carry R).
//! 5. Monitors it had placed on others are removed.

use crate::mailbox::{MonitorRef, Received};
use crate::process::task::TaskRef;
use crate::process::{ExitReason, Pid};
use crate::runtime::{Runtime, Shared};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

const MONITOR_SHARDS: usize = 32;

/// One shard of the monitor table: reference → (watcher, target).
type MonitorShard = HashMap<u64, (Pid, Pid)>;

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

    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().len()).sum()
    }
}

impl Shared {
    /// Delivers `item` to `pid`'s mailbox and wakes it; false when `pid` is
    /// not alive (or its mailbox is closed).
    pub(crate) fn deliver(&self, pid: Pid, item: Received) -> bool {
        self.table
            .with(pid, |task| task.header().deliver(item))
            .unwrap_or(false)
    }

    /// Fires monitor `r` (if it is still live) with `Down { pid, reason }`.
    fn fire_monitor(&self, r: MonitorRef, pid: Pid, reason: ExitReason) {
        let mut shard = self.monitors.shard(r).lock();
        if let Some((watcher, _)) = shard.remove(&r.0) {
            if let Some(w) = self.table.get(watcher) {
                w.header().with_aux(|a| a.monitoring.retain(|&m| m != r));
            }
            self.deliver(
                watcher,
                Received::Down {
                    reference: r,
                    pid,
                    reason,
                },
            );
        }
    }

    /// Teardown steps 2-5 (see the module docs). The process has already
    /// left the table.
    pub(crate) fn release_signals(&self, task: &TaskRef, reason: ExitReason) {
        let h = task.header();
        let me = h.pid;
        let taken = h.aux.lock().as_mut().map(|a| {
            (
                std::mem::take(&mut a.names),
                std::mem::take(&mut a.tags),
                std::mem::take(&mut a.monitors),
                std::mem::take(&mut a.links),
                std::mem::take(&mut a.monitoring),
            )
        });
        let Some((names, tags, monitors, links, monitoring)) = taken else {
            return;
        };
        for name in &names {
            self.registry.release_name(name, me);
        }
        for tag in &tags {
            self.registry.release_tag(tag, me);
        }
        for r in monitors {
            self.fire_monitor(r, me, reason);
        }
        for other in links {
            let Some(t) = self.table.get(other) else {
                continue;
            };
            // Only a link the other side still holds carries the signal:
            // an `unlink` that got there first wins.
            let trapping = t.header().with_aux(|a| {
                let had = a.links.iter().position(|&p| p == me);
                had.map(|i| {
                    a.links.swap_remove(i);
                    a.trap_exit
                })
            });
            match trapping {
                None => {}
                Some(true) => {
                    self.deliver(other, Received::Exit { from: me, reason });
                }
                Some(false) if reason == ExitReason::Normal => {}
                Some(false) => t.header().exit(reason),
            }
        }
        for r in monitoring {
            self.remove_monitor(r);
        }
    }

    /// Removes monitor `r`; true when it was live.
    fn remove_monitor(&self, r: MonitorRef) -> bool {
        let mut shard = self.monitors.shard(r).lock();
        match shard.remove(&r.0) {
            Some((_, target)) => {
                if let Some(t) = self.table.get(target) {
                    t.header().with_aux(|a| a.monitors.retain(|&m| m != r));
                }
                true
            }
            None => false,
        }
    }
}

impl Runtime {
    /// Links `a` and `b`: when either ends, the other gets its exit signal.
    /// Symmetric, at most one link per pair; linking a process to itself
    /// does nothing. If either is not alive, no link is kept and the live
    /// side, if it traps exits, receives `Exit { from, reason: NoProc }`.
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
        // Lock in pid order; check liveness under both locks (see module docs).
        let (first, second) = if a < b { (&ta, &tb) } else { (&tb, &ta) };
        let mut l1 = first.header().aux.lock();
        let mut l2 = second.header().aux.lock();
        let alive_a = shared.table.contains(a);
        let alive_b = shared.table.contains(b);
        if alive_a && alive_b {
            let x1 = l1.get_or_insert_with(Default::default);
            let x2 = l2.get_or_insert_with(Default::default);
            let p1 = first.header().pid;
            let p2 = second.header().pid;
            if !x1.links.contains(&p2) {
                x1.links.push(p2);
                x2.links.push(p1);
            }
            return true;
        }
        drop((l1, l2));
        match (alive_a, alive_b) {
            (true, false) => self.noproc_link(&ta, b),
            (false, true) => self.noproc_link(&tb, a),
            _ => {}
        }
        false
    }

    fn noproc_link(&self, live: &TaskRef, dead: Pid) {
        let trapping = live
            .header()
            .aux
            .lock()
            .as_ref()
            .is_some_and(|a| a.trap_exit);
        if trapping {
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
        for (x, y) in [(a, b), (b, a)] {
            if let Some(t) = self.shared.table.get(x) {
                if let Some(aux) = t.header().aux.lock().as_mut() {
                    aux.links.retain(|&p| p != y);
                }
            }
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
        let trapping = t.header().aux.lock().as_ref().is_some_and(|a| a.trap_exit);
        if trapping {
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
    pub fn monitor(&self, watcher: Pid, target: Pid) -> MonitorRef {
        let shared = &self.shared;
        let r = MonitorRef(shared.monitors.next_ref.fetch_add(1, Ordering::Relaxed));
        shared
            .monitors
            .shard(r)
            .lock()
            .insert(r.0, (watcher, target));
        if let Some(w) = shared.table.get(watcher) {
            w.header().with_aux(|a| a.monitoring.push(r));
        }
        let placed = shared.table.get(target).is_some_and(|t| {
            t.header().with_aux(|a| {
                // Checked under the aux lock: teardown takes the list after
                // leaving the table, so it either sees this entry or we see
                // it gone.
                let alive = shared.table.contains(target);
                if alive {
                    a.monitors.push(r);
                }
                alive
            })
        });
        if !placed {
            shared.fire_monitor(r, target, ExitReason::NoProc);
        }
        r
    }

    /// [`monitor`](Self::monitor) without recording the monitor in the
    /// watcher's own list, so the watcher's teardown does not remove it and
    /// firing it costs no search of that list. Only for a watcher that
    /// guarantees the target ends whenever it does (a supervisor kills its
    /// children as it ends): the monitor then goes when the target does.
    pub(crate) fn monitor_untracked(&self, watcher: Pid, target: Pid) -> MonitorRef {
        let shared = &self.shared;
        let r = MonitorRef(shared.monitors.next_ref.fetch_add(1, Ordering::Relaxed));
        shared
            .monitors
            .shard(r)
            .lock()
            .insert(r.0, (watcher, target));
        let placed = shared.table.get(target).is_some_and(|t| {
            t.header().with_aux(|a| {
                // As in `monitor`: checked under the target's aux lock.
                let alive = shared.table.contains(target);
                if alive {
                    a.monitors.push(r);
                }
                alive
            })
        });
        if !placed {
            shared.fire_monitor(r, target, ExitReason::NoProc);
        }
        r
    }

    /// Removes a monitor. No `Down` for it arrives after this returns; false
    /// when it had already fired or been removed.
    pub fn demonitor(&self, reference: MonitorRef) -> bool {
        let shared = &self.shared;
        let watcher = shared
            .monitors
            .shard(reference)
            .lock()
            .get(&reference.0)
            .map(|&(w, _)| w);
        let removed = shared.remove_monitor(reference);
        if removed {
            if let Some(w) = watcher.and_then(|w| shared.table.get(w)) {
                w.header()
                    .with_aux(|a| a.monitoring.retain(|&m| m != reference));
            }
        }
        removed
    }

    /// Monitors alive in the runtime (for leak checks and operators).
    pub fn monitor_count(&self) -> usize {
        self.shared.monitors.len()
    }
}
