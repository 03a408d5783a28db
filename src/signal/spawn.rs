//! The spawn monitor: the monitor a supervisor places on a child while it
//! spawns it, kept in the child's aux slot instead of in aux data.
//!
//! An ordinary monitor lives in three places (see [`crate::signal`]): the
//! monitor table, the watcher's `monitoring` set and the target's
//! `monitors` set, the last two in aux data that the first monitor
//! allocates. A supervised child usually has no other use for aux data, and
//! its supervisor's `monitoring` set holds one entry per running child (a
//! spilled hash set that a storm churns), so both cost more than the rest
//! of the monitor. A spawn monitor lives in two places only:
//!
//! * the monitor table, as any monitor: firing and removal still go
//!   through its shard lock, so `demonitor` either removes it before it
//!   fires (no `Down`) or returns after its `Down` is in the watcher's
//!   mailbox, and it fires at most once;
//! * the target's aux slot (`process::aux`: the word that holds the aux
//!   data when there is some, and this reference when there is none; one
//!   per process, set only by its spawn), read and cleared by its teardown,
//!   all under the target's aux lock. The slot may hold the
//!   reference of a monitor `demonitor` has already removed from the table;
//!   the table is the truth, and firing such a reference finds nothing.
//!
//! The watcher does not record it. The one watcher that places spawn
//! monitors, a supervisor, removes them itself when it ends: its children
//! are dropped with its future, before its teardown leaves the table, and
//! their drop demonitors each running child (see `supervisor::children`).
//!
//! Its reference carries [`SPAWN_BIT`], so removal and firing know where
//! the target's half lives without a lookup.
//!
//! # Liveness without `lock_alive`
//!
//! The monitor is placed between the child's table insert and its launch,
//! by the thread spawning it: the spawner holds `RUNNING`, so the child's
//! teardown, which needs it, cannot have started (and reads the slot under
//! the aux lock, after the launch hands the process over). The
//! watcher is the process running the factory on this thread (it holds
//! `RUNNING` too), so it is alive and cannot end meanwhile either.

use super::Monitors;
use crate::mailbox::MonitorRef;
use crate::process::Pid;
use crate::runtime::Header;
use crate::runtime::Shared;
use std::sync::atomic::Ordering;

/// Set in the reference of a spawn monitor.
pub(crate) const SPAWN_BIT: u64 = 1 << 63;

/// Whether `r` is a spawn monitor.
pub(crate) fn is_spawn(r: MonitorRef) -> bool {
    r.0 & SPAWN_BIT != 0
}

/// Teardown: the spawn monitor of a process that has left the table, if
/// its slot still holds one.
pub(crate) fn take(h: &Header) -> Option<MonitorRef> {
    match h.aux.lock().swap_spawn_monitor(0) {
        0 => None,
        r => Some(MonitorRef(r | SPAWN_BIT)),
    }
}

/// Places `watcher`'s spawn monitor on `target` (see the module docs for
/// the caller's duty: `target` not yet launched, `watcher` the process
/// running on this thread).
pub(crate) fn place(shared: &Shared, watcher: Pid, target: &Header) -> MonitorRef {
    debug_assert!(shared.table.contains(watcher), "the watcher is running");
    let r = MonitorRef(shared.monitors.next_ref.fetch_add(1, Ordering::Relaxed) | SPAWN_BIT);
    // Stored without its flag, which every spawn monitor has: the slot
    // keeps it in the word only if it fits beside the word's tag bit. Before
    // the shard lock rather than under it (one lock at a time): no one can
    // look for `r` in the slot before it is in the shard, and the target's
    // teardown cannot run yet.
    let previous = target.aux.lock().swap_spawn_monitor(r.0 & !SPAWN_BIT);
    debug_assert_eq!(previous, 0, "one spawn monitor per process");
    shared
        .monitors
        .shard(r)
        .lock()
        .insert(Monitors::key(r), (watcher, target.pid));
    r
}

/// Clears spawn monitor `r` from `target`'s slot (the table entry is
/// gone already).
pub(crate) fn clear(shared: &Shared, r: MonitorRef, target: Pid) {
    shared.table.with(target, |t| {
        // Finds another value only if teardown took it first; then it
        // finds no entry.
        let mut slot = t.header().aux.lock();
        if slot.spawn_monitor() == r.0 & !SPAWN_BIT {
            slot.swap_spawn_monitor(0);
        }
    });
}

#[cfg(test)]
mod tests {
    use crate::{Runtime, Strategy};

    #[test]
    fn a_supervised_child_allocates_no_aux_data() {
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
        rt.kill(sup.pid());
    }
}
