//! Starting one child: the factory runs with a thread-local *hook* naming
//! the supervisor, and the first process the factory spawns is monitored by
//! the supervisor inside `spawn_inner`, after it is in the table and before
//! it is scheduled. So the monitor is in place before the child can run (no
//! lock is taken on a runnable child, and a child that dies at once is
//! judged by its real reason), at no cost to other spawns but one
//! thread-local read.
//!
//! Hooks nest: a factory that starts a supervisor runs that supervisor's
//! own factories inside its spawn; each level saves and restores the frame.

use super::ChildSpec;
use crate::mailbox::MonitorRef;
use crate::process::{Pid, ProcessHandle};
use crate::runtime::Header;
use crate::runtime::Runtime;
use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind};

/// The factory running on this thread, for the whole call.
#[derive(Clone, Copy)]
struct Frame {
    /// Its runtime's identity.
    key: usize,
    /// The supervisor it runs for.
    sup: Pid,
    /// Whether the factory's first spawn on that runtime is still to come.
    armed: bool,
    /// The process that spawn made, and the supervisor's monitor on it.
    hooked: Option<(Pid, MonitorRef)>,
}

crate::loom::thread_local! {
    /// The innermost factory running on this thread (one cell, so that a
    /// start saves and restores it with one access each way).
    static FRAME: Cell<Option<Frame>> = const { Cell::new(None) };
}

/// Called by every spawn between the table insert and the launch, by the
/// spawning thread. The monitor is a spawn monitor (`signal::spawn`): the
/// child is not launched and the supervisor is the process running the
/// factory on this thread, as that placement requires.
pub(crate) fn on_spawn(rt: &Runtime, child: &Header) {
    let Some(mut frame) = FRAME.with(Cell::get) else {
        return;
    };
    if frame.armed && frame.key == runtime_key(rt) {
        let reference = crate::signal::place_spawn_monitor(&rt.shared, frame.sup, child);
        frame.armed = false;
        frame.hooked = Some((child.pid, reference));
        FRAME.with(|f| f.set(Some(frame)));
    }
}

/// A runtime's identity: the address of its shared state.
fn runtime_key(rt: &Runtime) -> usize {
    std::sync::Arc::as_ptr(&rt.shared) as usize
}

/// The supervisor whose child factory is running on this thread, if any: a
/// behaviour spawned by a factory records it as its parent.
pub(crate) fn current_parent(rt: &Runtime) -> Option<Pid> {
    match FRAME.with(Cell::get) {
        Some(f) if f.key == runtime_key(rt) => Some(f.sup),
        _ => None,
    }
}

/// A child just started by [`start`].
pub(super) struct Started {
    /// The child.
    pub(super) pid: Pid,
    /// The supervisor's monitor on it.
    pub(super) monitor: MonitorRef,
    /// The factory's handle, kept only when the child was not the process
    /// the hook caught: then the child may have ended before the monitor was
    /// placed (its `Down` says `NoProc`) and the handle knows the real reason.
    pub(super) handle: Option<ProcessHandle>,
}

/// Runs `spec`'s factory for supervisor `sup`. `Err` carries the panic
/// message of a factory that panicked.
pub(super) fn start(rt: &Runtime, sup: Pid, spec: &ChildSpec) -> Result<Started, String> {
    let key = runtime_key(rt);
    let frame = Frame {
        key,
        sup,
        armed: true,
        hooked: None,
    };
    let saved = FRAME.with(|f| f.replace(Some(frame)));
    let result = catch_unwind(AssertUnwindSafe(|| (spec.start)(rt)));
    let hooked = FRAME.with(|f| f.replace(saved)).and_then(|f| f.hooked);
    match result {
        Err(payload) => {
            // The factory may have spawned before panicking: that process is
            // no child; end it (its `Down` is then stale and ignored).
            if let Some((pid, reference)) = hooked {
                rt.demonitor(reference);
                rt.kill(pid);
            }
            let msg = crate::report::panic_message(&*payload);
            // The payload is user data: a panic in its destructor must not
            // unwind out of a start in progress (out of the spawn of a
            // supervisor, which would then never run). The start has
            // failed already, so that panic is counted, not owned.
            if !crate::guard::drop_caught(payload) {
                rt.shared.note_unowned_panic();
            }
            crate::report::start_failed(sup, &spec.id, &msg);
            Err(msg)
        }
        Ok(handle) if runtime_key(&handle.task.header().rt) != key => {
            // Pids are numbered per runtime: this one names some unrelated
            // process of ours, which must not be monitored, let alone
            // killed, as a child. The start fails, as a panicking factory's
            // does, and the stray process ends.
            if let Some((pid, reference)) = hooked {
                rt.demonitor(reference);
                rt.kill(pid);
            }
            handle.kill();
            let msg = format!(
                "the factory returned process {} of another runtime",
                handle.pid()
            );
            crate::report::start_failed(sup, &spec.id, &msg);
            Err(msg)
        }
        Ok(handle) => {
            let pid = handle.pid();
            match hooked {
                Some((p, monitor)) if p == pid => Ok(Started {
                    pid,
                    monitor,
                    handle: None,
                }),
                other => {
                    // The factory returned something other than its first
                    // spawn: monitor the child now instead.
                    if let Some((_, reference)) = other {
                        rt.demonitor(reference);
                    }
                    let monitor = rt.monitor(sup, pid);
                    Ok(Started {
                        pid,
                        monitor,
                        handle: Some(handle),
                    })
                }
            }
        }
    }
}

/// The spawn monitor's slot (`signal::spawn`) under loom: a `demonitor`
/// racing the child's teardown. Exactly one of them takes the slot: a
/// `demonitor` that returns true is followed by no `Down`, one that
/// returns false by exactly one, and nothing is left counted.
#[cfg(all(test, loom))]
mod loom_tests {
    use super::ChildSpec;
    use crate::{Received, Runtime};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Stops the watcher once the child's teardown is complete.
    struct Stop;

    #[test]
    fn loom_spawn_monitor_demonitor_racing_teardown() {
        let mut b = loom::model::Builder::new();
        // A whole runtime: at most two preemptions, as `loom::rt` bounds.
        b.preemption_bound = Some(b.preemption_bound.map_or(2, |n| n.min(2)));
        b.check(|| {
            // One worker: the race is the worker's teardown of the child
            // against this thread's `demonitor`.
            let rt = Runtime::builder().workers(1).build();
            let downs = Arc::new(AtomicUsize::new(0));
            let d = downs.clone();
            let watcher = rt.spawn(move |mut ctx| async move {
                loop {
                    match ctx.recv().await {
                        Received::Down { .. } => {
                            d.fetch_add(1, Ordering::Relaxed);
                        }
                        Received::Message(m) if m.is::<Stop>() => return,
                        _ => {}
                    }
                }
            });
            // The child ends as soon as it runs.
            let spec = ChildSpec::new("c", |rt: &Runtime| rt.spawn(|_ctx| async {}));
            let started = super::start(&rt, watcher.pid(), &spec).expect("started");
            assert!(started.handle.is_none(), "the hook caught the child");
            let removed = rt.demonitor(started.monitor);
            // The child's teardown (and so its `Down`, if any) is complete
            // once it is counted finished.
            while rt.finished() < 1 {
                loom::thread::yield_now();
            }
            assert!(rt.send(watcher.pid(), Stop));
            rt.block_on(watcher.join());
            let expected = usize::from(!removed);
            assert_eq!(downs.load(Ordering::Relaxed), expected);
            assert_eq!(rt.monitor_count(), 0);
        });
    }
}
