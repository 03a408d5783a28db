//! The spawn monitor: the monitor a supervisor places on a child while it
//! spawns it, kept in the child's aux slot word alone.
//!
//! An ordinary monitor lives in three places (see [`crate::signal`]): the
//! monitor table, the watcher's `monitoring` set and the target's
//! `monitors` set, the last two in aux data that the first monitor
//! allocates. A supervised child usually has no other use for aux data,
//! its supervisor's `monitoring` set would hold one entry per running
//! child (a spilled hash set that a storm churns), and the monitor table
//! is a shared lock and a hash map insert and remove per restart, touched
//! from both the supervisor's core and the child's. A spawn monitor lives
//! in one place: the target's aux slot (`process::aux`: the word the aux
//! lock guards, which holds the aux data when there is some and this
//! value when there is none), holding the watcher's pid (0: none). Its
//! reference is the target's pid with [`SPAWN_BIT`] set, unique because
//! pids are never reused and because no ordinary reference has that bit,
//! and it names the slot without a lookup.
//!
//! The slot shares the aux lock's word rather than having an atomic word
//! of its own in the header: an idle process pays no byte for it, and a
//! supervised child needs no aux data. The lock is the one teardown takes
//! anyway to see whether there is anything to release, so firing costs no
//! extra lock; `demonitor` and placing take it once each, uncontended but
//! for the one race below.
//!
//! # Firing and removal: one swap each
//!
//! Placing is one swap of the slot from 0 to the watcher. Teardown (the
//! process has left the table) takes the slot with one swap to 0 and, if
//! it held a watcher, delivers `Down` to it after releasing the lock.
//! `demonitor` finds the target in the table and takes the slot with one
//! swap to 0 too. Each swap reads and writes the word within one hold of
//! the aux lock, so the two are ordered and exactly one of them sees the
//! watcher: the monitor fires at most once, and a `demonitor` that
//! returns true is followed by no `Down`. (A read under one hold and a
//! clear under another would let both see the watcher; the loom model
//! `loom_spawn_monitor_demonitor_racing_teardown` catches that.) Unlike an
//! ordinary monitor, a `demonitor` that returns false may return before
//! the `Down` reaches the watcher's mailbox (teardown took the slot and is
//! delivering it); the one watcher, a supervisor, ignores a `Down` whose
//! reference is not the current monitor of a child it runs, so a late one
//! is harmless.
//!
//! The watcher does not record the monitor either. The one watcher that
//! places spawn monitors, a supervisor, removes them itself when it ends:
//! its children are dropped with its future, before its teardown leaves
//! the table, and their drop demonitors each running child (see
//! `supervisor::children`). A `Down` for a watcher that is gone finds it
//! out of the table and is dropped, as any delivery to a dead process.
//!
//! # Liveness without `lock_alive`
//!
//! The monitor is placed between the child's table insert and its launch,
//! by the thread spawning it: the spawner holds `RUNNING`, so the child's
//! teardown, which needs it, cannot have started (and reads the slot under
//! the aux lock, after the launch hands the process over). The
//! watcher is the process running the factory on this thread (it holds
//! `RUNNING` too), so it is alive and cannot end meanwhile either.

use crate::mailbox::{MonitorRef, Received};
use crate::process::task::AuxSlot;
use crate::process::{ExitReason, Pid};
use crate::runtime::Header;
use crate::runtime::Shared;

/// Set in the reference of a spawn monitor.
pub(crate) const SPAWN_BIT: u64 = 1 << 63;

/// Whether `r` is a spawn monitor.
pub(crate) fn is_spawn(r: MonitorRef) -> bool {
    r.0 & SPAWN_BIT != 0
}

/// The reference of the spawn monitor on `target`.
fn reference(target: Pid) -> MonitorRef {
    debug_assert_eq!(target.raw() & SPAWN_BIT, 0, "pids stay below 2^63");
    MonitorRef(target.raw() | SPAWN_BIT)
}

/// Teardown's half, under the aux lock of a process that has left the
/// table: takes the watcher out of its slot, if the slot still holds one.
/// The caller hands it to [`fire`] once the lock is released.
pub(crate) fn take<E: Default>(slot: &mut AuxSlot<E>) -> Option<Pid> {
    match slot.swap_spawn_monitor(0) {
        0 => None,
        w => Some(Pid::from_raw(w)),
    }
}

/// Delivers the `Down` of `h`'s spawn monitor to `watcher`, which [`take`]
/// took out of `h`'s slot.
pub(crate) fn fire(shared: &Shared, h: &Header, watcher: Pid, reason: ExitReason) {
    shared.table.with(watcher, |w| {
        w.header().deliver(Received::Down {
            reference: reference(h.pid),
            pid: h.pid,
            reason,
        })
    });
}

/// Places `watcher`'s spawn monitor on `target` (see the module docs for
/// why no liveness check is needed: `target` is not launched, `watcher` is
/// running on this thread).
pub(crate) fn place(shared: &Shared, watcher: Pid, target: &Header) -> MonitorRef {
    debug_assert!(shared.table.contains(watcher), "the watcher is running");
    debug_assert_ne!(watcher.raw(), 0, "pid 0 is never a process");
    let previous = target.aux.lock().swap_spawn_monitor(watcher.raw());
    debug_assert_eq!(previous, 0, "one spawn monitor per process");
    reference(target.pid)
}

/// `demonitor` of spawn monitor `r`: true when it was live (then it never
/// fires).
pub(crate) fn remove(shared: &Shared, r: MonitorRef) -> bool {
    let target = Pid::from_raw(r.0 & !SPAWN_BIT);
    shared
        .table
        .with(target, |t| t.header().aux.lock().swap_spawn_monitor(0) != 0)
        .unwrap_or(false)
}

/// The spawn monitors in place (a scan of the process table: for
/// `monitor_count`, not for hot paths).
pub(crate) fn count(shared: &Shared) -> usize {
    shared
        .table
        .tasks()
        .iter()
        .filter(|t| t.header().aux.lock().spawn_monitor() != 0)
        .count()
}

#[cfg(test)]
mod tests {
    use crate::{Runtime, Strategy};

    #[test]
    fn a_supervised_child_allocates_no_aux_data_and_no_monitor_table_entry() {
        let rt = Runtime::builder().workers(1).build();
        let child = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let c = child.clone();
        let sup = rt
            .supervisor(Strategy::OneForOne)
            .child(move |rt: &Runtime| {
                let h = rt.spawn(|mut ctx| async move {
                    let _ = ctx.recv().await;
                });
                c.store(h.pid().raw(), std::sync::atomic::Ordering::SeqCst);
                h
            })
            .start();
        // Static children are started (and monitored) when `start` returns.
        let pid = crate::Pid::from_raw(child.load(std::sync::atomic::Ordering::SeqCst));
        let task = rt.shared.table.get(pid).expect("the child runs");
        assert!(task.header().aux.lock().is_none(), "no aux data");
        assert_eq!(rt.info(pid).unwrap().monitors, 1);
        assert_eq!(rt.monitor_count(), 1);
        assert_eq!(rt.shared.monitors.len(), 0, "no monitor-table entry");
        rt.kill(sup.pid());
    }
}
