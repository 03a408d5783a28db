//! Servers (`gen_server`): the loop the runtime writes, `Flow::Stop` and
//! `terminate`, crashes, the parent's exit signal, and servers as
//! supervisor children.

mod support;

use rusm_otp::{
    CallError, Context, ExitReason, Flow, Pid, ProcessHandle, Received, ReplyTo, Runtime, Server,
    ServerRef, Strategy,
};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::{
    EXPECTED_PANIC, on_workers, run, run_for, runtime, silence_expected_panics, wait_until,
};

const LONG: Duration = Duration::from_secs(3600);

/// What a test server saw, shared with the test.
type Log = Arc<Mutex<Vec<String>>>;

fn log(l: &Log, s: impl Into<String>) {
    l.lock().unwrap().push(s.into());
}

fn seen(l: &Log) -> Vec<String> {
    l.lock().unwrap().clone()
}

#[derive(Debug)]
enum Op {
    Add(u64),
    Get,
    Panic,
    StopAfterReply,
}

/// A counter that logs what it handles.
struct Counter {
    n: u64,
    log: Log,
    trap: bool,
    name: Option<&'static str>,
}

impl Counter {
    fn new(log: &Log) -> Counter {
        Counter {
            n: 0,
            log: log.clone(),
            trap: false,
            name: None,
        }
    }

    /// This counter, trapping exits from its `init` on.
    fn trapping(mut self) -> Counter {
        self.trap = true;
        self
    }
}

/// Spawns a `Counter` logging to a fresh log: the log, the server and a
/// reference to it.
fn start_counter(rt: &Runtime) -> (Log, ProcessHandle, ServerRef<Counter>) {
    let l = Log::default();
    let h = rt.spawn_server(Counter::new(&l));
    let s = ServerRef::new(rt, h.pid());
    (l, h, s)
}

/// Spawns a parent process that spawns a trapping `Counter` (logging to a
/// fresh log), then goes on as `body(its context, the server)` says: the
/// log and the parent.
fn spawn_parent_of_a_trapping_counter<F, Fut>(rt: &Runtime, body: F) -> (Log, ProcessHandle)
where
    F: FnOnce(Context, ProcessHandle) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let l = Log::default();
    let l2 = l.clone();
    let parent = rt.spawn(move |ctx| async move {
        let server = ctx.runtime().spawn_server(Counter::new(&l2).trapping());
        body(ctx, server).await
    });
    (l, parent)
}

/// Starts a one-for-one supervisor of one `counter` (a fresh one at each
/// start) registered as `name`, and waits for the name: the supervisor and
/// the first server's pid.
fn supervise_counter(
    rt: &Runtime,
    name: &'static str,
    counter: impl Fn() -> Counter + Send + Sync + 'static,
) -> (ProcessHandle, Pid) {
    let sup = rt
        .supervisor(Strategy::OneForOne)
        .child(move |rt: &Runtime| {
            let mut c = counter();
            c.name = Some(name);
            rt.spawn_server(c)
        })
        .start();
    wait_until("the server is registered", || rt.whereis(name).is_some());
    (sup, rt.whereis(name).unwrap())
}

impl Server for Counter {
    type Call = Op;
    type Reply = u64;
    type Cast = u64;

    async fn init(&mut self, ctx: &mut Context) {
        if self.trap {
            ctx.runtime().set_trap_exit(ctx.pid(), true);
        }
        if let Some(name) = self.name {
            ctx.runtime().register(name, ctx.pid());
        }
        log(&self.log, "init");
    }

    async fn handle_call(&mut self, op: Op, reply: ReplyTo<u64>, _ctx: &mut Context) -> Flow {
        match op {
            Op::Add(k) => self.n += k,
            Op::Get => {}
            Op::Panic => panic!("{EXPECTED_PANIC} handle_call"),
            Op::StopAfterReply => {
                reply.reply(self.n);
                return Flow::Stop(ExitReason::Shutdown);
            }
        }
        reply.reply(self.n);
        Flow::Continue
    }

    async fn handle_cast(&mut self, k: u64, _ctx: &mut Context) -> Flow {
        self.n += k;
        Flow::Continue
    }

    async fn handle_info(&mut self, info: Received, _ctx: &mut Context) -> Flow {
        let s = match info {
            Received::Message(m) => format!("info message {}", m.type_name()),
            Received::Down { reason, .. } => format!("info down {reason}"),
            Received::Exit { reason, .. } => format!("info exit {reason}"),
        };
        log(&self.log, s);
        Flow::Continue
    }

    async fn terminate(&mut self, reason: ExitReason, _ctx: &mut Context) {
        log(&self.log, format!("terminate {reason}"));
    }
}

#[test]
fn server_ref_is_clone_send_sync_debug() {
    fn check<T: Clone + Send + Sync + std::fmt::Debug + 'static>() {}
    check::<ServerRef<Counter>>();
}

fn calls_casts_and_infos_reach_their_handlers(workers: usize) {
    let rt = runtime(workers);
    let (l, _h, s) = start_counter(&rt);
    assert_eq!(run(&rt, s.call(Op::Add(2), LONG)), Ok(2));
    assert!(s.cast(40));
    assert!(rt.send(s.pid(), "hello"));
    assert_eq!(run(&rt, s.clone().call(Op::Get, LONG)), Ok(42));
    // The target ends only once the monitor is in place, so its Down says
    // `Normal` (a target already gone would give `NoProc`).
    let target = rt.spawn(|mut ctx| async move {
        let _ = ctx.recv().await;
    });
    rt.monitor(s.pid(), target.pid());
    assert!(rt.send(target.pid(), ()));
    wait_until("the Down reaches handle_info", || {
        seen(&l).iter().any(|s| s == "info down normal")
    });
    assert_eq!(
        seen(&l)[..2],
        ["init".to_string(), "info message &str".to_string()]
    );
    assert!(format!("{s:?}").contains("Counter"));
}

fn flow_stop_runs_terminate_and_exits_with_the_reason(workers: usize) {
    let rt = runtime(workers);
    let (l, h, s) = start_counter(&rt);
    assert_eq!(run(&rt, s.call(Op::Add(3), LONG)), Ok(3));
    assert_eq!(run(&rt, s.call(Op::StopAfterReply, LONG)), Ok(3));
    assert_eq!(run(&rt, h.join()), ExitReason::Shutdown);
    assert_eq!(seen(&l).last().unwrap(), "terminate shutdown");
    assert_eq!(
        run_for(&rt, Duration::from_secs(30), s.call(Op::Get, LONG)),
        Err(CallError::NoProc)
    );
}

fn a_panic_in_handle_call_crashes_the_server_and_fails_the_call(workers: usize) {
    silence_expected_panics();
    let rt = runtime(workers);
    let (l, h, s) = start_counter(&rt);
    assert_eq!(
        run(&rt, s.call(Op::Panic, LONG)),
        Err(CallError::Exited(ExitReason::Crashed))
    );
    assert_eq!(run(&rt, h.join()), ExitReason::Crashed);
    assert!(
        !seen(&l).iter().any(|s| s.starts_with("terminate")),
        "a crash does not run terminate"
    );
}

/// The parent (the process that spawned the server) sends it an exit
/// signal: a trapping server runs `terminate` and exits with that reason.
/// The same signal from anyone else is just information.
fn a_trapping_server_obeys_its_parents_exit_signal_only(workers: usize) {
    let rt = runtime(workers);
    let (tx, rx) = std::sync::mpsc::channel();
    let (l, parent) = spawn_parent_of_a_trapping_counter(&rt, move |mut ctx, server| async move {
        tx.send(server.pid()).unwrap();
        // Waits for the word to stop its server.
        ctx.recv().await;
        let rt = ctx.runtime();
        assert!(rt.send_exit(ctx.pid(), server.pid(), ExitReason::Shutdown));
        assert_eq!(server.join().await, ExitReason::Shutdown);
    });
    let server = rx.recv().unwrap();
    let s: ServerRef<Counter> = ServerRef::new(&rt, server);
    // Wait for init (which sets trap_exit) to have run.
    assert_eq!(run(&rt, s.call(Op::Get, LONG)), Ok(0));
    // An exit signal from a stranger is handed to handle_info.
    let stranger = rt.spawn(move |ctx| async move {
        ctx.runtime()
            .send_exit(ctx.pid(), server, ExitReason::Shutdown);
    });
    assert_eq!(run(&rt, stranger.join()), ExitReason::Normal);
    wait_until("the stranger's Exit reaches handle_info", || {
        seen(&l).iter().any(|s| s == "info exit shutdown")
    });
    assert!(rt.is_alive(server));
    assert!(rt.send(parent.pid(), ()));
    assert_eq!(run(&rt, parent.join()), ExitReason::Normal);
    assert_eq!(seen(&l).last().unwrap(), "terminate shutdown");
}

/// A trapping server linked to its parent stops when the parent is killed.
fn a_trapping_server_stops_when_its_linked_parent_is_killed(workers: usize) {
    let rt = runtime(workers);
    let (tx, rx) = std::sync::mpsc::channel();
    let (l, parent) = spawn_parent_of_a_trapping_counter(&rt, move |mut ctx, server| async move {
        ctx.runtime().link(ctx.pid(), server.pid());
        tx.send(server).unwrap();
        loop {
            ctx.recv().await;
        }
    });
    let server = rx.recv().unwrap();
    let s: ServerRef<Counter> = ServerRef::new(&rt, server.pid());
    assert_eq!(run(&rt, s.call(Op::Get, LONG)), Ok(0));
    assert!(rt.kill(parent.pid()));
    assert_eq!(run(&rt, server.join()), ExitReason::Killed);
    assert_eq!(seen(&l).last().unwrap(), "terminate killed");
}

fn a_server_under_a_supervisor_is_restarted_after_a_panic_in_handle_call(workers: usize) {
    silence_expected_panics();
    let rt = runtime(workers);
    let l = Log::default();
    let (sup, first) = supervise_counter(&rt, "counter", move || Counter::new(&l));
    let s: ServerRef<Counter> = ServerRef::new(&rt, first);
    assert_eq!(run(&rt, s.call(Op::Add(5), LONG)), Ok(5));
    assert_eq!(
        run(&rt, s.call(Op::Panic, LONG)),
        Err(CallError::Exited(ExitReason::Crashed))
    );
    wait_until("the server is restarted", || {
        rt.whereis("counter").is_some_and(|p| p != first)
    });
    let s2: ServerRef<Counter> = ServerRef::new(&rt, rt.whereis("counter").unwrap());
    assert_eq!(run(&rt, s2.call(Op::Get, LONG)), Ok(0), "fresh state");
    assert!(rt.kill(sup.pid()));
    assert_eq!(run(&rt, sup.join()), ExitReason::Killed);
}

/// A server child that traps exits does not outlive its supervisor.
fn a_trapping_server_child_stops_when_its_supervisor_is_killed(workers: usize) {
    let rt = runtime(workers);
    let l = Log::default();
    let (sup, pid) = supervise_counter(&rt, "trapper", move || Counter::new(&l).trapping());
    let s: ServerRef<Counter> = ServerRef::new(&rt, pid);
    assert_eq!(run(&rt, s.call(Op::Get, LONG)), Ok(0));
    assert!(rt.kill(sup.pid()));
    assert_eq!(run(&rt, sup.join()), ExitReason::Killed);
    wait_until("the server child has stopped", || !rt.is_alive(pid));
}

on_workers!(
    calls_casts_and_infos_reach_their_handlers,
    flow_stop_runs_terminate_and_exits_with_the_reason,
    a_panic_in_handle_call_crashes_the_server_and_fails_the_call,
    a_trapping_server_obeys_its_parents_exit_signal_only,
    a_trapping_server_stops_when_its_linked_parent_is_killed,
    a_server_under_a_supervisor_is_restarted_after_a_panic_in_handle_call,
    a_trapping_server_child_stops_when_its_supervisor_is_killed,
);
