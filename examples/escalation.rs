//! Escalation: a child supervisor exhausts its restart budget, gives up, and
//! its parent restarts it, until the parent's own budget runs out too.
//!
//! `cargo run --example escalation`
//!
//! The tree: `root` (one for one, at most 1 restart within 60 s) over
//! `steady`, an idle worker, and `inner`, a supervisor (one for one, at most
//! 2 restarts within 60 s) over `flaky`, a worker the demo crashes. Three
//! crashes of `flaky` are one more than `inner` allows: it stops and exits
//! `Crashed`, and `root` starts it again, with a fresh `flaky`; `steady` is
//! untouched. Doing it once more exceeds `root`'s budget: the whole tree
//! goes down, and a process monitoring `root` sees it end `Crashed`.

use rusm_otp::supervisor::{ChildSpec, SupervisorRef};
use rusm_otp::{ExitReason, Pid, Received, Runtime, Strategy};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::Duration;

fn idle(rt: &Runtime, id: &'static str, starts: &Sender<String>) -> rusm_otp::ProcessHandle {
    let h = rt.spawn(|mut ctx| async move {
        loop {
            ctx.recv().await;
        }
    });
    let _ = starts.send(format!("{id} started as {}", h.pid()));
    h
}

fn inner(rt: &Runtime, starts: &Sender<String>) -> rusm_otp::ProcessHandle {
    let s = starts.clone();
    let h = rt
        .supervisor(Strategy::OneForOne)
        .max_restarts(2)
        .within(Duration::from_secs(60))
        .child_spec(ChildSpec::new("flaky", move |rt: &Runtime| {
            idle(rt, "flaky", &s)
        }))
        .start();
    let _ = starts.send(format!("inner started as {}", h.pid()));
    h
}

/// Prints what started in reaction to one event (the reaction ends with
/// its last start).
fn print_starts(starts: &Receiver<String>) {
    while let Ok(line) = starts.recv_timeout(Duration::from_millis(300)) {
        println!("    {line}");
    }
}

fn child(rt: &Runtime, sup: Pid, id: &str) -> Pid {
    rt.block_on(SupervisorRef::new(rt, sup).which_children())
        .expect("supervisor alive")
        .into_iter()
        .find(|c| c.id == id)
        .and_then(|c| c.pid)
        .expect("child running")
}

fn main() {
    let rt = Runtime::new();
    let (tx, starts) = channel();
    let (s1, s2) = (tx.clone(), tx.clone());
    println!("starting root (budget 1 restart / 60 s) over steady and inner (budget 2 / 60 s):");
    let root = rt
        .supervisor(Strategy::OneForOne)
        .max_restarts(1)
        .within(Duration::from_secs(60))
        .child_spec(ChildSpec::new("steady", move |rt: &Runtime| {
            idle(rt, "steady", &s1)
        }))
        .child_spec(ChildSpec::new("inner", move |rt: &Runtime| inner(rt, &s2)).supervisor())
        .start();
    print_starts(&starts);

    // A process that reports how root ends.
    let (down_tx, down) = channel();
    let root_pid = root.pid();
    rt.spawn(move |mut ctx| async move {
        let me = ctx.pid();
        ctx.runtime().monitor(me, root_pid);
        loop {
            if let Received::Down { reason, .. } = ctx.recv().await {
                let _ = down_tx.send(reason);
                return;
            }
        }
    });

    for round in 1..=2 {
        println!("round {round}:");
        for n in 1..=3 {
            let inner_pid = child(&rt, root_pid, "inner");
            let flaky = child(&rt, inner_pid, "flaky");
            println!("  crash {n} of flaky ({flaky}) under inner ({inner_pid}):");
            rt.exit(flaky, ExitReason::Crashed);
            print_starts(&starts);
        }
        if round == 1 {
            let count = rt.block_on(SupervisorRef::new(&rt, root_pid).count_children());
            println!("  inner escalated and root restarted it: root's children {count:?}");
        }
    }
    match down.recv_timeout(Duration::from_secs(10)) {
        Ok(reason) => println!("root went down: {reason:?} (its budget of 1 restart was spent)"),
        Err(_) => println!("root is still up (unexpected)"),
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while rt.process_count() > 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    println!("processes left: {}", rt.process_count());
}
