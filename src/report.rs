//! Crash and supervisor reports, through the `log` facade.
//!
//! Every report is one `log` record with structured key-values (`kv`), so
//! a logger can filter and index them, and a readable message for loggers
//! that print only that. Nothing is printed unless the program installs a
//! logger: with none, each report costs one relaxed atomic load (`log`'s
//! max-level check), and the fields (a label behind a lock, formatting) are
//! only gathered once that check passes.
//!
//! Targets and levels:
//!
//! | target | level | when | fields |
//! | --- | --- | --- | --- |
//! | `rusm_otp::process` | error | a process body panicked | `pid`, `label`, `reason`, `panic` |
//! | `rusm_otp::process` | warn | one poll of a process held its worker past the long-poll threshold | `pid`, `label`, `duration_ms` |
//! | `rusm_otp::supervisor` | info | a child was restarted | `supervisor`, `child`, `old_pid`, `new_pid` |
//! | `rusm_otp::supervisor` | error | a child's factory panicked | `supervisor`, `child`, `panic` |
//! | `rusm_otp::supervisor` | error | over its restart budget, the supervisor exits | `supervisor`, `child`, `reason` |
//! | `rusm_otp::supervisor` | error | a static child failed at start: the supervisor gives up | `supervisor`, `child`, `panic` |
//!
//! A restart is info, not warn: the crash that caused it was already
//! reported at error, and a restart is the supervisor doing its job.
//!
//! # Quiet panics
//!
//! [`Builder::quiet_panics`](crate::Builder::quiet_panics) marks a
//! runtime's worker threads (a thread-local flag set before the worker loop
//! starts) and installs, once per program, a panic hook chained before the
//! one in place: it returns at once on a marked thread and calls the
//! previous hook on every other. The crash report above is then the only
//! trace of a process's panic.

use crate::process::{ExitReason, Pid};
use std::cell::Cell;
use std::sync::Once;

/// Target of the reports about processes.
const PROCESS: &str = "rusm_otp::process";
/// Target of the reports about supervisors.
const SUPERVISOR: &str = "rusm_otp::supervisor";

crate::loom::thread_local! {
    /// Set on the worker threads of a runtime built with `quiet_panics`.
    static QUIET: Cell<bool> = const { Cell::new(false) };
}

/// Marks this thread (a worker about to run its loop) as one whose panics
/// the chained hook keeps quiet, and installs that hook if no runtime did.
pub(crate) fn quiet_this_thread() {
    install_hook();
    QUIET.with(|q| q.set(true));
}

/// Installs the chained hook, once per program.
pub(crate) fn install_hook() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            // `try_with`: a panic during thread teardown still reaches the
            // previous hook.
            if QUIET.try_with(Cell::get).unwrap_or(false) {
                return;
            }
            previous(info);
        }));
    });
}

/// A process body panicked. `label` is read only when the record is
/// wanted.
pub(crate) fn crashed(
    pid: Pid,
    label: impl FnOnce() -> Option<String>,
    reason: ExitReason,
    panic: &str,
) {
    if log::log_enabled!(target: PROCESS, log::Level::Error) {
        let label = label();
        let name = label.as_deref().unwrap_or("");
        log::error!(
            target: PROCESS,
            pid:% = pid, label = name, reason:% = reason, panic = panic;
            "process {pid}{}{name} crashed: {panic}",
            if name.is_empty() { "" } else { " " },
        );
    }
}

/// One poll of `pid` held its worker for about `duration` (sampled by the
/// stall monitor, see `scheduler::stranded`, which loom builds do not run).
#[cfg_attr(loom, allow(dead_code))]
pub(crate) fn long_poll(pid: Pid, label: Option<String>, duration: std::time::Duration) {
    let name = label.as_deref().unwrap_or("");
    let ms = duration.as_secs_f64() * 1e3;
    log::warn!(
        target: PROCESS,
        pid:% = pid, label = name, duration_ms = ms;
        "process {pid}{}{name} held its worker for {ms:.1} ms in one poll (blocking code? see spawn_blocking)",
        if name.is_empty() { "" } else { " " },
    );
}

/// Supervisor `sup` restarted child `child`, which ran as `old` (if it ran
/// at all), as `new`.
///
/// Inlined into the restart path: with no logger installed, a restart
/// pays one load of the max level and no call.
#[inline]
pub(crate) fn restarted(sup: Pid, child: &str, old: Option<Pid>, new: Pid) {
    if log::log_enabled!(target: SUPERVISOR, log::Level::Info) {
        log_restarted(sup, child, old, new);
    }
}

#[cold]
#[inline(never)]
fn log_restarted(sup: Pid, child: &str, old: Option<Pid>, new: Pid) {
    let old_text = old.map_or_else(|| "-".to_string(), |p| p.to_string());
    log::info!(
        target: SUPERVISOR,
        supervisor:% = sup, child = child, old_pid = old_text.as_str(), new_pid:% = new;
        "supervisor {sup} restarted child {child:?}: {old_text} -> {new}",
    );
}

/// Child `child`'s factory panicked with `panic`.
pub(crate) fn start_failed(sup: Pid, child: &str, panic: &str) {
    log::error!(
        target: SUPERVISOR,
        supervisor:% = sup, child = child, panic = panic;
        "supervisor {sup}: child {child:?} failed to start: {panic}",
    );
}

/// Supervisor `sup` went over its restart budget on child `child`: it exits
/// with `reason`.
pub(crate) fn escalated(sup: Pid, child: &str, reason: ExitReason) {
    log::error!(
        target: SUPERVISOR,
        supervisor:% = sup, child = child, reason:% = reason;
        "supervisor {sup} exceeded its restart budget on child {child:?}: exiting {reason}",
    );
}

/// Supervisor `sup` gives up at start: static child `child` failed.
pub(crate) fn gave_up(sup: Pid, child: &str, panic: &str) {
    log::error!(
        target: SUPERVISOR,
        supervisor:% = sup, child = child, panic = panic;
        "supervisor {sup} gives up: child {child:?} failed at start: {panic}",
    );
}
/// The text of a panic payload, as reports and
/// [`ProcessHandle::panic_message`](crate::ProcessHandle::panic_message)
/// show it.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "<non-string panic payload>".to_string())
}
