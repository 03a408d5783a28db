//! Request and reply (`rt.call`): every `CallError`, late replies that never
//! reach a mailbox, deferred `ReplyTo`s, calls from `block_on`, many callers.

mod support;

use rusm_otp::{CallError, ExitReason, Pid, ProcessHandle, Received, ReplyTo, Request, Runtime};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use support::{
    EXPECTED_PANIC, ended_pid, on_workers, run, run_for, runtime, silence_expected_panics,
    wait_until,
};

/// Long enough that a call reaching it means the test failed: every call
/// that should end early must end long before.
const LONG: Duration = Duration::from_secs(3600);
/// The bound on a test whose call must not wait for its timeout.
const PROMPT: Duration = Duration::from_secs(30);

/// A process answering `Request<u64, u64>` with the double, forever.
fn doubler(rt: &Runtime) -> ProcessHandle {
    rt.spawn(|mut ctx| async move {
        while let Received::Message(m) = ctx.recv().await {
            if let Ok(req) = m.downcast::<Request<u64, u64>>() {
                let n = *req.body();
                req.reply(n * 2);
            }
        }
    })
}

/// A process that takes one `Request<u64, u64>`, hands its `ReplyTo` to
/// `out` (a test thread's channel) and then waits to be killed.
fn holder(rt: &Runtime, out: std::sync::mpsc::Sender<ReplyTo<u64>>) -> ProcessHandle {
    rt.spawn(move |mut ctx| async move {
        let m = ctx.recv().await.message().expect("a request");
        let (_, reply) = m.downcast::<Request<u64, u64>>().unwrap().into_parts();
        out.send(reply).unwrap();
        loop {
            ctx.recv().await;
        }
    })
}

fn call_from_block_on_gets_the_reply_and_needs_no_helper_process(workers: usize) {
    let rt = runtime(workers);
    let d = doubler(&rt);
    let spawned = rt.spawned();
    assert_eq!(run(&rt, rt.call::<u64, u64>(d.pid(), 21, LONG)), Ok(42));
    assert_eq!(run(&rt, rt.call::<u64, u64>(d.pid(), 5, LONG)), Ok(10));
    assert_eq!(rt.spawned(), spawned, "a call spawns no process");
    assert_eq!(rt.process_count(), 1);
}

fn request_knows_its_caller(workers: usize) {
    let rt = runtime(workers);
    let callee = rt.spawn(|mut ctx| async move {
        loop {
            let m = ctx.recv().await.message().unwrap();
            let req = m.downcast::<Request<(), Option<Pid>>>().unwrap();
            let caller = req.caller();
            req.reply(caller);
        }
    });
    let to = callee.pid();
    assert_eq!(run(&rt, rt.call::<(), Option<Pid>>(to, (), LONG)), Ok(None));
    let caller = rt.spawn(move |ctx| async move {
        let got = ctx.runtime().call::<(), Option<Pid>>(to, (), LONG).await;
        assert_eq!(got, Ok(Some(ctx.pid())));
    });
    assert_eq!(run(&rt, caller.join()), ExitReason::Normal);
}

fn call_to_a_dead_or_unknown_pid_fails_noproc_at_once(workers: usize) {
    let rt = runtime(workers);
    let dead = ended_pid(&rt);
    assert_eq!(
        run_for(&rt, PROMPT, rt.call::<u64, u64>(dead, 1, LONG)),
        Err(CallError::NoProc)
    );
    assert_eq!(
        run_for(
            &rt,
            PROMPT,
            rt.call::<u64, u64>(Pid::from_raw(1 << 40), 1, LONG)
        ),
        Err(CallError::NoProc)
    );
    // From a process too.
    let caller = rt.spawn(move |ctx| async move {
        let got = ctx.runtime().call::<u64, u64>(dead, 1, LONG).await;
        assert_eq!(got, Err(CallError::NoProc));
    });
    assert_eq!(run_for(&rt, PROMPT, caller.join()), ExitReason::Normal);
}

fn callee_crash_mid_call_fails_exited_crashed(workers: usize) {
    silence_expected_panics();
    let rt = runtime(workers);
    let callee = rt.spawn(|mut ctx| async move {
        let m = ctx.recv().await.message().unwrap();
        let _req = m.downcast::<Request<u64, u64>>().unwrap();
        panic!("{EXPECTED_PANIC} callee crashes holding the request");
    });
    assert_eq!(
        run_for(&rt, PROMPT, rt.call::<u64, u64>(callee.pid(), 1, LONG)),
        Err(CallError::Exited(ExitReason::Crashed))
    );
}

fn callee_killed_mid_call_fails_exited_killed(workers: usize) {
    let rt = runtime(workers);
    let (tx, rx) = std::sync::mpsc::channel();
    let callee = holder(&rt, tx);
    let pid = callee.pid();
    let call = rt.spawn(move |ctx| async move {
        let got = ctx.runtime().call::<u64, u64>(pid, 1, LONG).await;
        assert_eq!(got, Err(CallError::Exited(ExitReason::Killed)));
    });
    // The callee holds the request's ReplyTo (in the test thread now).
    let reply = rx.recv().unwrap();
    assert!(rt.kill(pid));
    assert_eq!(run_for(&rt, PROMPT, call.join()), ExitReason::Normal);
    assert!(!reply.reply(2), "the caller no longer waits");
}

fn callee_killed_with_the_request_still_queued_fails_exited_killed(workers: usize) {
    let rt = runtime(workers);
    // Never receives a request: it waits for a `u8` only.
    let callee = rt.spawn(|mut ctx| async move {
        ctx.recv_match(|r| matches!(r, Received::Message(m) if m.is::<u8>()))
            .await;
    });
    let pid = callee.pid();
    let call = rt.spawn(move |ctx| async move {
        let got = ctx.runtime().call::<u64, u64>(pid, 1, LONG).await;
        assert_eq!(got, Err(CallError::Exited(ExitReason::Killed)));
    });
    wait_until("the request is queued", || {
        rt.info(pid).is_some_and(|i| i.mailbox_depth == 1)
    });
    assert!(rt.kill(pid));
    assert_eq!(run_for(&rt, PROMPT, call.join()), ExitReason::Normal);
}

fn callee_ending_normally_mid_call_fails_exited_normal(workers: usize) {
    let rt = runtime(workers);
    let callee = rt.spawn(|mut ctx| async move {
        let m = ctx.recv().await.message().unwrap();
        let (_, reply) = m.downcast::<Request<u64, u64>>().unwrap().into_parts();
        // Kept past the end of the body: the exit must be reported first.
        // Parked in a static rather than forgotten, so that leak checkers
        // see it still reachable.
        static KEPT: std::sync::Mutex<Vec<ReplyTo<u64>>> = std::sync::Mutex::new(Vec::new());
        KEPT.lock().unwrap().push(reply);
    });
    assert_eq!(
        run_for(&rt, PROMPT, rt.call::<u64, u64>(callee.pid(), 1, LONG)),
        Err(CallError::Exited(ExitReason::Normal))
    );
}

fn a_dropped_request_fails_noreply(workers: usize) {
    let rt = runtime(workers);
    let callee = rt.spawn(|mut ctx| async move {
        loop {
            drop(ctx.recv().await);
        }
    });
    assert_eq!(
        run_for(&rt, PROMPT, rt.call::<u64, u64>(callee.pid(), 1, LONG)),
        Err(CallError::NoReply)
    );
    assert!(rt.is_alive(callee.pid()));
}

fn a_reply_to_dropped_on_a_plain_thread_fails_noreply(workers: usize) {
    let rt = runtime(workers);
    let (tx, rx) = std::sync::mpsc::channel();
    let callee = holder(&rt, tx);
    let pid = callee.pid();
    let t = std::thread::spawn(move || drop(rx.recv().unwrap()));
    assert_eq!(
        run_for(&rt, PROMPT, rt.call::<u64, u64>(pid, 1, LONG)),
        Err(CallError::NoReply)
    );
    t.join().unwrap();
}

fn a_request_whose_body_panics_in_drop_crashes_the_callee(workers: usize) {
    silence_expected_panics();
    struct Bomb;
    impl Drop for Bomb {
        fn drop(&mut self) {
            panic!("{EXPECTED_PANIC} request body's drop");
        }
    }
    let rt = runtime(workers);
    let callee = rt.spawn(|mut ctx| async move {
        let m = ctx.recv().await.message().unwrap();
        drop(m);
    });
    assert_eq!(
        run_for(&rt, PROMPT, rt.call::<Bomb, u64>(callee.pid(), Bomb, LONG)),
        Err(CallError::Exited(ExitReason::Crashed))
    );
}

fn a_process_calling_itself_fails_selfcall(workers: usize) {
    let rt = runtime(workers);
    let p = rt.spawn(|ctx| async move {
        let got = ctx.runtime().call::<u64, u64>(ctx.pid(), 1, LONG).await;
        assert_eq!(got, Err(CallError::SelfCall));
    });
    assert_eq!(run_for(&rt, PROMPT, p.join()), ExitReason::Normal);
}

fn a_call_times_out(workers: usize) {
    let rt = runtime(workers);
    let (tx, _rx) = std::sync::mpsc::channel();
    let callee = holder(&rt, tx);
    assert_eq!(
        run(
            &rt,
            rt.call::<u64, u64>(callee.pid(), 1, Duration::from_millis(20))
        ),
        Err(CallError::Timeout)
    );
}

/// The caller times out; then the callee replies and exits. Neither the
/// reply nor anything about the call's watch reaches the caller's mailbox.
fn a_late_reply_is_dropped_and_nothing_reaches_the_mailbox(workers: usize) {
    let rt = runtime(workers);
    let (tx, rx) = std::sync::mpsc::channel();
    let callee = holder(&rt, tx);
    let pid = callee.pid();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let caller = rt.spawn(move |mut ctx| async move {
        let got = ctx
            .runtime()
            .call::<u64, u64>(pid, 1, Duration::from_millis(20))
            .await;
        assert_eq!(got, Err(CallError::Timeout));
        done_tx.send(()).unwrap();
        // Woken by the test once the late reply was refused and the callee
        // has ended (which fires its watches).
        let m = ctx.recv().await.message().unwrap();
        assert!(m.is::<&str>());
        assert!(ctx.try_recv().is_none(), "nothing else in the mailbox");
    });
    let reply = rx.recv().unwrap();
    done_rx.recv().unwrap();
    assert!(!reply.reply(2), "the late reply is refused");
    assert!(rt.kill(pid));
    assert_eq!(run(&rt, callee.join()), ExitReason::Killed);
    assert_eq!(rt.info(caller.pid()).unwrap().mailbox_depth, 0);
    assert!(rt.send(caller.pid(), "go"));
    assert_eq!(run(&rt, caller.join()), ExitReason::Normal);
}

fn a_deferred_reply_to_is_answered_from_another_process(workers: usize) {
    let rt = runtime(workers);
    let worker = rt.spawn(|mut ctx| async move {
        let m = ctx.recv().await.message().unwrap();
        let (n, reply) = m.downcast::<(u64, ReplyTo<u64>)>().unwrap();
        assert!(reply.reply(n + 100));
    });
    let wpid = worker.pid();
    let callee = rt.spawn(move |mut ctx| async move {
        let m = ctx.recv().await.message().unwrap();
        let (n, reply) = m.downcast::<Request<u64, u64>>().unwrap().into_parts();
        assert!(ctx.runtime().send(wpid, (n, reply)));
        // Stays alive, answering nothing itself.
        loop {
            ctx.recv().await;
        }
    });
    assert_eq!(
        run(&rt, rt.call::<u64, u64>(callee.pid(), 1, LONG)),
        Ok(101)
    );
    assert_eq!(run(&rt, worker.join()), ExitReason::Normal);
}

fn a_deferred_reply_to_is_answered_from_a_plain_thread(workers: usize) {
    let rt = runtime(workers);
    let (tx, rx) = std::sync::mpsc::channel();
    let callee = holder(&rt, tx);
    let t = std::thread::spawn(move || rx.recv().unwrap().reply(7));
    assert_eq!(run(&rt, rt.call::<u64, u64>(callee.pid(), 1, LONG)), Ok(7));
    assert!(t.join().unwrap());
}

fn duration_max_waits_as_long_as_it_takes(workers: usize) {
    let rt = runtime(workers);
    let d = doubler(&rt);
    assert_eq!(
        run(&rt, rt.call::<u64, u64>(d.pid(), 4, Duration::MAX)),
        Ok(8)
    );
}

#[test]
fn a_call_to_a_full_mailbox_fails_noreply_at_once() {
    let rt = Runtime::builder().workers(2).mailbox_capacity(1).build();
    let callee = rt.spawn(|mut ctx| async move {
        ctx.recv_match(|r| matches!(r, Received::Message(m) if m.is::<u8>()))
            .await;
    });
    assert!(rt.send(callee.pid(), "filler"));
    assert_eq!(
        run_for(&rt, PROMPT, rt.call::<u64, u64>(callee.pid(), 1, LONG)),
        Err(CallError::NoReply)
    );
}

fn a_thousand_concurrent_callers_to_one_callee(workers: usize) {
    let rt = runtime(workers);
    let d = doubler(&rt);
    let to = d.pid();
    let ok = Arc::new(AtomicUsize::new(0));
    let callers: Vec<_> = (0..1000u64)
        .map(|i| {
            let ok = ok.clone();
            rt.spawn(move |ctx| async move {
                let got = ctx.runtime().call::<u64, u64>(to, i, LONG).await;
                assert_eq!(got, Ok(2 * i));
                ok.fetch_add(1, Ordering::Relaxed);
            })
        })
        .collect();
    for c in callers {
        assert_eq!(run(&rt, c.join()), ExitReason::Normal);
    }
    assert_eq!(ok.load(Ordering::Relaxed), 1000);
    assert_eq!(rt.process_count(), 1);
}

#[test]
fn call_error_displays_and_is_an_error() {
    let e: Box<dyn std::error::Error> = Box::new(CallError::Exited(ExitReason::Crashed));
    assert!(e.to_string().contains("crashed"));
    for e in [
        CallError::Timeout,
        CallError::NoProc,
        CallError::NoReply,
        CallError::SelfCall,
    ] {
        assert!(!e.to_string().is_empty());
    }
}

on_workers!(
    call_from_block_on_gets_the_reply_and_needs_no_helper_process,
    request_knows_its_caller,
    call_to_a_dead_or_unknown_pid_fails_noproc_at_once,
    callee_crash_mid_call_fails_exited_crashed,
    callee_killed_mid_call_fails_exited_killed,
    callee_killed_with_the_request_still_queued_fails_exited_killed,
    callee_ending_normally_mid_call_fails_exited_normal,
    a_dropped_request_fails_noreply,
    a_reply_to_dropped_on_a_plain_thread_fails_noreply,
    a_request_whose_body_panics_in_drop_crashes_the_callee,
    a_process_calling_itself_fails_selfcall,
    a_call_times_out,
    a_late_reply_is_dropped_and_nothing_reaches_the_mailbox,
    a_deferred_reply_to_is_answered_from_another_process,
    a_deferred_reply_to_is_answered_from_a_plain_thread,
    duration_max_waits_as_long_as_it_takes,
    a_thousand_concurrent_callers_to_one_callee,
);
