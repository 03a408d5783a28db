//! The spawn monitor: the monitor a supervisor places on a child while it
//! spawns it, kept in the child's header alone.
//!
//! An ordinary monitor lives in three places (see [`crate::signal`]): the
//! monitor table, the watcher's `monitoring` set and the target's
//! `monitors` set, the last two in aux data that the first monitor
//! allocates. A supervised child usually has no other use for aux data,
//! its supervisor's `monitoring` set would hold one entry per running
//! child (a spilled hash set that a storm churns), and the monitor table
//! is a shared lock and a hash map insert and remove per restart, touched
//! from both the supervisor's core and the child's. A spawn monitor lives
//! in one place: the target's [`Header::spawn_monitor`] slot, which holds
//! the watcher's pid (0: none). Its reference is the target's pid with
//! [`SPAWN_BIT`] set, unique because pids are never reused and because no
//! ordinary reference has that bit, and it names the slot without a
//! lookup.
//!
//! # Firing and removal: one swap each
//!
//! Teardown (the process has left the table) takes the slot with
//! `swap(0)` and, if it held a watcher, delivers `Down` to it. `demonitor`
//! finds the target in the table and takes the slot with `swap(0)` too.
//! Both are read-modify-writes of one word, so exactly one of them sees
//! the watcher: the monitor fires at most once, and a `demonitor` that
//! returns true is followed by no `Down`. Unlike an ordinary monitor, a
//! `demonitor` that returns false may return before the `Down` reaches
//! the watcher's mailbox (teardown took the slot and is delivering it);
//! the one watcher, a supervisor, ignores a `Down` whose reference is not
//! the current monitor of a child it runs, so a late one is harmless.
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
//! teardown, which needs it, cannot have started (and reads the slot only
//! after the launch hands the process over with Release/Acquire). The
//! watcher is the process running the factory on this thread (it holds
//! `RUNNING` too), so it is alive and cannot end meanwhile either.

use crate::mailbox::{MonitorRef, Received};
use crate::process::{ExitReason, Pid};
use crate::runtime::Header;
use crate::runtime::Shared;
use std::sync::atomic::Ordering;

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

/// Teardown of `h` (which has left the table): fires its spawn monitor,
/// if its slot still holds one.
pub(crate) fn fire(shared: &Shared, h: &Header, reason: ExitReason) {
    // Acquire: pairs with `place`'s Release (also ordered by the launch).
    let watcher = match h.spawn_monitor.swap(0, Ordering::Acquire) {
        0 => return,
        w => Pid::from_raw(w),
    };
    shared.table.with(watcher, |w| {
        w.header().deliver(Received::Down {
            reference: reference(h.pid),
            pid: h.pid,
            reason,
        })
    });
}

/// Places `watcher`'s spawn monitor on `target` (see the module docs for
/// the caller's duty: `target` not yet launched, `watcher` the process
/// running on this thread).
pub(crate) fn place(shared: &Shared, watcher: Pid, target: &Header) -> MonitorRef {
    debug_assert!(shared.table.contains(watcher), "the watcher is running");
    debug_assert_ne!(watcher.raw(), 0, "pid 0 is never a process");
    // Release: pairs with teardown's Acquire swap.
    let previous = target.spawn_monitor.swap(watcher.raw(), Ordering::Release);
    debug_assert_eq!(previous, 0, "one spawn monitor per process");
    reference(target.pid)
}

/// `demonitor` of spawn monitor `r`: true when it was live (then it never
/// fires).
pub(crate) fn remove(shared: &Shared, r: MonitorRef) -> bool {
    let target = Pid::from_raw(r.0 & !SPAWN_BIT);
    shared
        .table
        .with(target, |t| {
            t.header().spawn_monitor.swap(0, Ordering::Relaxed) != 0
        })
        .unwrap_or(false)
}

/// The spawn monitors in place (a scan of the process table: for
/// `monitor_count`, not for hot paths).
pub(crate) fn count(shared: &Shared) -> usize {
    shared
        .table
        .tasks()
        .iter()
        .filter(|t| t.header().spawn_monitor.load(Ordering::Relaxed) != 0)
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
