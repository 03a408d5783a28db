//! The three restart strategies and the three restart types, printed as a
//! supervisor reacts.
//!
//! `cargo run --example supervision_tree`
//!
//! For each strategy (one for one, one for all, rest for one) a supervisor
//! starts three workers: `a` (permanent), `b` (transient) and `c`
//! (temporary). The demo crashes `b` and prints which children were started
//! again and what `which_children` reports after. Then, under one for one,
//! it shows the restart types: a permanent child is restarted even after a
//! normal exit, a transient one only after an abnormal exit, a temporary one
//! never (its spec goes).

use rusm_otp::supervisor::{ChildInfo, ChildSpec, Restart, SupervisorRef};
use rusm_otp::{ExitReason, Pid, Runtime, Strategy};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::Duration;

/// Tells a worker to return, which is a `Normal` exit.
struct Stop;

fn worker_spec(id: &'static str, restart: Restart, starts: Sender<(String, Pid)>) -> ChildSpec {
    ChildSpec::new(id, move |rt: &Runtime| {
        let h = rt.spawn(|mut ctx| async move {
            loop {
                if let Some(m) = ctx.recv().await.message() {
                    if m.is::<Stop>() {
                        return;
                    }
                }
            }
        });
        let _ = starts.send((id.to_string(), h.pid()));
        h
    })
    .restart(restart)
}

fn show(children: &[ChildInfo]) -> String {
    children
        .iter()
        .map(|c| match c.pid {
            Some(p) => format!("{}={p}", c.id),
            None => format!("{}=stopped", c.id),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Prints the starts that arrive within a short while: a supervisor's
/// reaction to one event ends with its last start.
fn starts_after(starts: &Receiver<(String, Pid)>) -> String {
    let mut seen = Vec::new();
    while let Ok((id, pid)) = starts.recv_timeout(Duration::from_millis(300)) {
        seen.push(format!("{id}->{pid}"));
    }
    if seen.is_empty() {
        "nothing".to_string()
    } else {
        seen.join(", ")
    }
}

fn pid_of(rt: &Runtime, sup: &SupervisorRef, id: &str) -> Pid {
    let children = rt.block_on(sup.which_children()).expect("supervisor alive");
    children
        .iter()
        .find(|c| c.id == id)
        .and_then(|c| c.pid)
        .expect("child running")
}

fn start(rt: &Runtime, strategy: Strategy) -> (SupervisorRef, Receiver<(String, Pid)>) {
    let (tx, rx) = channel();
    let h = rt
        .supervisor(strategy)
        .max_restarts(0)
        .child_spec(worker_spec("a", Restart::Permanent, tx.clone()))
        .child_spec(worker_spec("b", Restart::Transient, tx.clone()))
        .child_spec(worker_spec("c", Restart::Temporary, tx))
        .start();
    let sup = SupervisorRef::new(rt, h.pid());
    println!("  started: {}", starts_after(&rx));
    (sup, rx)
}

fn main() {
    let rt = Runtime::new();
    for strategy in [
        Strategy::OneForOne,
        Strategy::OneForAll,
        Strategy::RestForOne,
    ] {
        println!("{strategy:?}: a (permanent), b (transient), c (temporary)");
        let (sup, starts) = start(&rt, strategy);
        rt.exit(pid_of(&rt, &sup, "b"), ExitReason::Crashed);
        println!("  b crashes -> started again: {}", starts_after(&starts));
        let children = rt.block_on(sup.which_children()).unwrap();
        println!("  which_children: {}", show(&children));
        rt.kill(sup.pid());
    }

    println!("restart types, under OneForOne:");
    let (sup, starts) = start(&rt, Strategy::OneForOne);
    let events: [(&str, &str, bool); 4] = [
        ("a", "exits normally (permanent)", false),
        ("b", "exits normally (transient)", false),
        ("c", "crashes (temporary)", true),
        ("a", "crashes (permanent)", true),
    ];
    for (id, what, crash) in events {
        let pid = pid_of(&rt, &sup, id);
        if crash {
            rt.exit(pid, ExitReason::Crashed);
        } else {
            rt.send(pid, Stop);
        }
        println!("  {id} {what} -> started again: {}", starts_after(&starts));
        let children = rt.block_on(sup.which_children()).unwrap();
        println!("  which_children: {}", show(&children));
    }
    let count = rt.block_on(sup.count_children()).unwrap();
    println!(
        "  count_children: {} specs, {} active (b stays stopped, c is gone)",
        count.specs, count.active
    );
    rt.kill(sup.pid());
}
