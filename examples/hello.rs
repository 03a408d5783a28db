//! Hello, processes: spawn one, send it a message, get a reply, and watch it
//! end through a monitor.
//!
//! Run it with `cargo run --release --example hello`.

use rusm_otp::{ExitReason, Pid, Received, Runtime};

/// What the greeter is asked: who to greet and where to send the greeting.
struct Greet {
    name: String,
    reply_to: Pid,
}

fn main() {
    let rt = Runtime::builder().workers(2).build();

    // A process is a closure returning a future; `ctx` is its mailbox and pid.
    let greeter = rt.spawn(|mut ctx| async move {
        while let Received::Message(m) = ctx.recv().await {
            match m.downcast::<Greet>() {
                Ok(greet) => {
                    let text = format!("hello, {} (from {})", greet.name, ctx.pid());
                    ctx.runtime().send(greet.reply_to, text);
                }
                // "stop" ends the process normally.
                Err(other) if other.downcast_ref::<&str>() == Some(&"stop") => return,
                Err(_) => {}
            }
        }
    });
    let greeter_pid = greeter.pid();

    // A second process asks the greeter, prints the answer, then watches it
    // stop through a monitor: `Down` carries the exit reason.
    let asker = rt.spawn(move |mut ctx| async move {
        let rt = ctx.runtime().clone();
        rt.send(
            greeter_pid,
            Greet {
                name: "world".into(),
                reply_to: ctx.pid(),
            },
        );
        let reply = ctx.recv().await.message().expect("a reply");
        println!("{}", reply.downcast::<String>().expect("a String"));

        let monitor = rt.monitor(ctx.pid(), greeter_pid);
        rt.send(greeter_pid, "stop");
        match ctx.recv().await {
            Received::Down {
                reference, reason, ..
            } => {
                assert_eq!(reference, monitor);
                println!("greeter {greeter_pid} ended: {reason:?}");
            }
            other => panic!("expected a Down, got {other:?}"),
        }
    });

    assert_eq!(rt.block_on(asker.join()), ExitReason::Normal);
    assert_eq!(rt.block_on(greeter.join()), ExitReason::Normal);
    println!("processes left: {}", rt.process_count());
}
