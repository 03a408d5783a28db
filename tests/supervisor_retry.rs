//! A restart whose factory keeps failing under an unlimited budget: the
//! supervisor keeps trying, yet answers requests and exit signals between
//! attempts, and the worker it runs on keeps running other processes.

mod support;

use rusm_otp::supervisor::{ChildSpec, SupervisorRef};
use rusm_otp::{ExitReason, Pid, ProcessHandle, Runtime, Strategy};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;
use support::supervision::idle;
use support::{EXPECTED_PANIC, Timeout, on_workers, runtime, silence_expected_panics, wait_until};

/// How long a step that should be prompt may take before the test calls
/// the supervisor stuck.
const STUCK: Duration = Duration::from_secs(20);

/// `fut`'s output, or the test fails. On failure a clone of the runtime is
/// leaked, so the runtime is never stopped: a worker stuck in an endless
/// restart loop would make the stop wait forever, and the test must fail,
/// not hang.
fn prompt<F: Future>(rt: &Runtime, what: &str, fut: F) -> F::Output {
    match rt.block_on(Timeout::new(fut, STUCK)) {
        Ok(v) => v,
        Err(_) => {
            std::mem::forget(rt.clone());
            panic!("{what}: no answer within {STUCK:?}");
        }
    }
}

/// A child spec whose factory starts an idle process, or panics while
/// `failing` is set; `attempts` counts the factory's calls.
fn flaky(failing: &Arc<AtomicBool>, attempts: &Arc<AtomicUsize>) -> ChildSpec {
    let (failing, attempts) = (failing.clone(), attempts.clone());
    ChildSpec::new("flaky", move |rt: &Runtime| -> ProcessHandle {
        attempts.fetch_add(1, Ordering::SeqCst);
        if failing.load(Ordering::SeqCst) {
            panic!("{EXPECTED_PANIC} the factory fails");
        }
        idle(rt)
    })
}

/// Starts a `strategy` supervisor (unlimited budget) of one [`flaky`]
/// child: the supervisor, the switch that makes the factory fail, and the
/// count of its calls.
fn start_flaky(
    rt: &Runtime,
    strategy: Strategy,
) -> (ProcessHandle, Arc<AtomicBool>, Arc<AtomicUsize>) {
    let failing = Arc::new(AtomicBool::new(false));
    let attempts = Arc::new(AtomicUsize::new(0));
    let sup = rt
        .supervisor(strategy)
        .max_restarts(0)
        .child_spec(flaky(&failing, &attempts))
        .start();
    (sup, failing, attempts)
}

/// Makes the factory fail from now on, kills `child`, and waits until the
/// supervisor has tried to restart it ten more times.
fn kill_into_failing_restarts(
    rt: &Runtime,
    child: Pid,
    (failing, attempts): (&AtomicBool, &AtomicUsize),
    what: &str,
) {
    failing.store(true, Ordering::SeqCst);
    rt.kill(child);
    let before = attempts.load(Ordering::SeqCst);
    wait_until(what, || attempts.load(Ordering::SeqCst) >= before + 10);
}

fn child(rt: &Runtime, sup: Pid) -> Option<Pid> {
    let r = SupervisorRef::new(rt, sup);
    let children = prompt(rt, "which_children", r.which_children());
    children.expect("the supervisor answers")[0].pid
}

fn a_failing_restart_is_retried_between_requests(workers: usize) {
    silence_expected_panics();
    let rt = runtime(workers);
    let (sup, failing, attempts) = start_flaky(&rt, Strategy::OneForOne);
    let s = sup.pid();
    let first = child(&rt, s);
    let first = first.expect("started");

    kill_into_failing_restarts(
        &rt,
        first,
        (&failing, &attempts),
        "the supervisor retries the failing factory",
    );

    // Requests are answered while the restart keeps failing: the child
    // shows as restarting (no pid), and stopping it ends the attempts.
    let pid = child(&rt, s);
    assert_eq!(pid, None, "restarting");
    let r = SupervisorRef::new(&rt, s);
    let stopped = prompt(&rt, "terminate_child", r.terminate_child("flaky"));
    assert_eq!(stopped, Ok(()));
    let after_stop = attempts.load(Ordering::SeqCst);
    let pid = child(&rt, s);
    assert_eq!(pid, None, "stopped");
    assert_eq!(
        attempts.load(Ordering::SeqCst),
        after_stop,
        "no attempt after the child was stopped"
    );

    // Started again by hand once the factory works.
    failing.store(false, Ordering::SeqCst);
    let r = SupervisorRef::new(&rt, s);
    let restarted = prompt(&rt, "restart_child", r.restart_child("flaky"));
    let again = restarted.expect("restarted");
    assert!(rt.is_alive(again));

    // Failing again, an abnormal exit signal from a non-child still ends
    // the supervisor between attempts.
    kill_into_failing_restarts(
        &rt,
        again,
        (&failing, &attempts),
        "the supervisor retries again",
    );
    let outsider = rt.spawn(|_ctx| async {});
    rt.send_exit(outsider.pid(), s, ExitReason::Shutdown);
    let reason = prompt(&rt, "the supervisor's exit", sup.join());
    assert_eq!(reason, ExitReason::Shutdown);
}

fn other_processes_run_while_a_restart_keeps_failing(workers: usize) {
    silence_expected_panics();
    let rt = runtime(workers);
    let (sup, failing, attempts) = start_flaky(&rt, Strategy::OneForAll);
    let first = child(&rt, sup.pid());
    kill_into_failing_restarts(
        &rt,
        first.expect("started"),
        (&failing, &attempts),
        "the supervisor retries the failing factory",
    );
    // On one worker this process shares the worker with the supervisor.
    let echo = rt.spawn(|mut ctx| async move {
        for _ in 0..100 {
            ctx.recv().await;
        }
    });
    let _ = prompt(&rt, "processes beside the supervisor", async {
        for i in 0..100 {
            assert!(rt.send(echo.pid(), i));
            rusm_otp::yield_now().await;
        }
        echo.join().await
    });
    rt.kill(sup.pid());
    let reason = prompt(&rt, "the supervisor's kill", sup.join());
    assert_eq!(reason, ExitReason::Killed);
}

on_workers!(a_failing_restart_is_retried_between_requests);
on_workers!(other_processes_run_while_a_restart_keeps_failing);
