//! Crash and supervisor reports through `log`, and `Builder::quiet_panics`.
//!
//! This binary installs its own logger (capturing records) and its own
//! panic hook (counting panics per thread-name prefix): both are
//! process-global, so every test calls [`setup`] before building a runtime.

mod support;

use rusm_otp::supervisor::ChildSpec;
use rusm_otp::{ExitReason, Pid, Runtime, Strategy};
use std::sync::{Mutex, MutexGuard, Once};
use support::log_capture::{self, Rec};
use support::{run, wait_until};

/// Panics that reached the previous hook, by thread name.
static HOOK_CALLS: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Installs the logger and hook once, and runs the tests one at a time:
/// pids repeat across runtimes, so each test starts with no records.
fn setup() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    let guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        log_capture::install();
        // The "previous hook" of every quiet runtime in this binary: counts,
        // prints only the tests' own panics.
        std::panic::set_hook(Box::new(|info| {
            let name = std::thread::current().name().unwrap_or("").to_string();
            if !["quiet-rt", "loud-rt", "rusm-worker", "not-a-worker"]
                .iter()
                .any(|p| name.starts_with(p))
            {
                // A test's own failure (its thread is captured).
                eprintln!("{info}");
            }
            HOOK_CALLS.lock().unwrap().push(name);
        }));
    });
    log_capture::clear();
    guard
}

fn hook_calls(prefix: &str) -> usize {
    HOOK_CALLS
        .lock()
        .unwrap()
        .iter()
        .filter(|n| n.starts_with(prefix))
        .count()
}

/// The records of `target` whose field `key` is `value`.
fn records(target: &str, key: &str, value: &str) -> Vec<Rec> {
    log_capture::records()
        .iter()
        .filter(|r| r.target == target && r.kv.get(key).map(String::as_str) == Some(value))
        .cloned()
        .collect()
}

/// The crash reports of `pid`: its error records. A panicking poll that
/// holds its worker past the long-poll threshold (a loaded machine makes
/// unwinding slow) is also reported under the same target and pid, as a
/// warning, and is not a second crash report.
fn crash_reports(pid: Pid) -> Vec<Rec> {
    records("rusm_otp::process", "pid", &pid.to_string())
        .into_iter()
        .filter(|r| r.level == log::Level::Error)
        .collect()
}

/// Spawns a process labelled `label` that panics with `msg`; its pid once
/// it has crashed.
fn crash(rt: &Runtime, label: &'static str, msg: &'static str) -> Pid {
    let h = rt.spawn(move |ctx| async move {
        ctx.runtime().set_label(ctx.pid(), label);
        panic!("{msg}");
    });
    let pid = h.pid();
    assert_eq!(run(rt, h.join()), ExitReason::Crashed);
    pid
}

#[test]
fn quiet_panics_report_through_log_and_skip_the_previous_hook() {
    let _serial = setup();
    let rt = Runtime::builder()
        .workers(2)
        .thread_name("quiet-rt")
        .quiet_panics(true)
        .build();
    let pid = crash(&rt, "crashy", "boom-quiet");
    let recs = crash_reports(pid);
    assert_eq!(recs.len(), 1, "one crash report: {recs:?}");
    let r = &recs[0];
    assert_eq!(r.level, log::Level::Error);
    assert_eq!(r.kv["label"], "crashy");
    assert_eq!(r.kv["reason"], ExitReason::Crashed.to_string());
    assert_eq!(r.kv["panic"], "boom-quiet");
    assert_eq!(hook_calls("quiet-rt"), 0, "a worker panic stays quiet");
    // A panic on any other thread still reaches the previous hook.
    let other = std::thread::Builder::new()
        .name("not-a-worker".into())
        .spawn(|| panic!("elsewhere"))
        .unwrap();
    assert!(other.join().is_err());
    assert_eq!(hook_calls("not-a-worker"), 1);
}

#[test]
fn panics_reach_the_hook_by_default() {
    let _serial = setup();
    let rt = Runtime::builder().workers(2).thread_name("loud-rt").build();
    let pid = crash(&rt, "loud", "boom-loud");
    assert_eq!(hook_calls("loud-rt"), 1, "the program's hook sees it");
    // The report goes out all the same.
    let recs = crash_reports(pid);
    assert_eq!(recs.len(), 1, "one crash report: {recs:?}");
    assert_eq!(recs[0].kv["panic"], "boom-loud");
}

#[test]
fn supervisor_reports_restarts_and_escalation() {
    let _serial = setup();
    let rt = Runtime::builder().workers(2).quiet_panics(true).build();
    let sup = rt
        .supervisor(Strategy::OneForOne)
        .max_restarts(2)
        .over_lifetime()
        .child(|r: &Runtime| r.spawn(|_ctx| async move { panic!("again") }))
        .start();
    let sup_pid = sup.pid().to_string();
    assert_eq!(run(&rt, sup.join()), ExitReason::Crashed);
    let recs = records("rusm_otp::supervisor", "supervisor", &sup_pid);
    let restarts: Vec<_> = recs
        .iter()
        .filter(|r| r.level == log::Level::Info)
        .collect();
    assert_eq!(restarts.len(), 2, "two restarts: {recs:?}");
    for r in &restarts {
        assert_eq!(r.kv["child"], "child-0");
        assert_ne!(r.kv["old_pid"], r.kv["new_pid"]);
    }
    // Each restart's new pid is the next one's old pid.
    assert_eq!(restarts[0].kv["new_pid"], restarts[1].kv["old_pid"]);
    let errors: Vec<_> = recs
        .iter()
        .filter(|r| r.level == log::Level::Error)
        .collect();
    assert_eq!(errors.len(), 1, "one escalation: {recs:?}");
    assert_eq!(errors[0].kv["reason"], ExitReason::Crashed.to_string());
    wait_until("every process to end", || rt.process_count() == 0);
}

#[test]
fn supervisor_reports_a_factory_panic_and_gives_up() {
    let _serial = setup();
    let rt = Runtime::builder().workers(2).quiet_panics(true).build();
    let sup = rt
        .supervisor(Strategy::OneForOne)
        .child_spec(ChildSpec::new("bad", |_: &Runtime| panic!("no start")))
        .start();
    let sup_pid = sup.pid().to_string();
    assert_eq!(run(&rt, sup.join()), ExitReason::Crashed);
    let recs = records("rusm_otp::supervisor", "supervisor", &sup_pid);
    assert_eq!(recs.len(), 2, "start failure and give-up: {recs:?}");
    for r in &recs {
        assert_eq!(r.level, log::Level::Error);
        assert_eq!(r.kv["child"], "bad");
        assert_eq!(r.kv["panic"], "no start");
    }
}

/// A value whose destructor panics.
struct PanicsOnDrop;

impl Drop for PanicsOnDrop {
    fn drop(&mut self) {
        panic!("drop-boom");
    }
}

#[test]
fn a_panicking_destructor_is_reported_as_a_crash() {
    let _serial = setup();
    let rt = Runtime::builder().workers(2).quiet_panics(true).build();
    let h = rt.spawn(|mut ctx| {
        let d = PanicsOnDrop;
        async move {
            let _d = d;
            ctx.recv().await;
        }
    });
    let pid = h.pid();
    rt.kill(pid);
    assert_eq!(run(&rt, h.join()), ExitReason::Crashed);
    let recs = crash_reports(pid);
    assert_eq!(recs.len(), 1, "one crash report: {recs:?}");
    assert_eq!(recs[0].kv["panic"], "drop-boom");
    assert_eq!(recs[0].kv["label"], "");
}
