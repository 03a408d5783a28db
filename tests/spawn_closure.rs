//! The spawn closure runs on the caller's thread before the process first
//! runs, and the new pid is already usable there: setup code can register
//! it, make it trap exits, link and monitor it, and send to it (messages
//! stay queued for the process). A closure that panics ends the process it
//! was setting up, releasing whatever it had registered.

mod support;

use rusm_otp::{ExitReason, Received};
use support::{EXPECTED_PANIC, run, runtime, silence_expected_panics};

#[test]
fn register_and_send_inside_the_spawn_closure() {
    for workers in [1, 2] {
        let rt = runtime(workers);
        let h = rt.spawn(|mut ctx| {
            let rt = ctx.runtime().clone();
            assert!(rt.register("setup", ctx.pid()), "the pid can be registered");
            assert_eq!(rt.whereis("setup"), Some(ctx.pid()));
            assert!(rt.is_alive(ctx.pid()));
            assert!(rt.send(ctx.pid(), 7u32), "a message to itself is queued");
            assert!(rt.send_named("setup", 8u32));
            async move {
                for want in [7u32, 8] {
                    let m = ctx.recv().await.message().expect("a user message");
                    assert_eq!(m.downcast::<u32>().ok(), Some(want));
                }
            }
        });
        let pid = h.pid();
        assert_eq!(run(&rt, h.join()), ExitReason::Normal);
        assert_eq!(rt.whereis("setup"), None, "released at the end");
        assert!(!rt.is_alive(pid));
    }
}

#[test]
fn trap_exit_link_and_monitor_inside_the_spawn_closure() {
    for workers in [1, 2] {
        let rt = runtime(workers);
        let other = rt.spawn(|mut ctx| async move {
            ctx.recv().await;
        });
        let other_pid = other.pid();
        let h = rt.spawn(move |mut ctx| {
            let rt = ctx.runtime().clone();
            let me = ctx.pid();
            rt.set_trap_exit(me, true);
            assert!(rt.info(me).expect("alive").trap_exit);
            rt.link(me, other_pid);
            let mref = rt.monitor(me, other_pid);
            assert_eq!(rt.info(me).expect("alive").links, 1);
            async move {
                let mut exit = false;
                let mut down = false;
                while !(exit && down) {
                    match ctx.recv().await {
                        Received::Exit { from, reason } => {
                            assert_eq!((from, reason), (other_pid, ExitReason::Killed));
                            exit = true;
                        }
                        Received::Down {
                            reference,
                            pid,
                            reason,
                        } => {
                            assert_eq!((reference, pid), (mref, other_pid));
                            assert_eq!(reason, ExitReason::Killed);
                            down = true;
                        }
                        Received::Message(m) => panic!("unexpected {m:?}"),
                    }
                }
            }
        });
        assert!(rt.kill(other_pid));
        assert_eq!(run(&rt, h.join()), ExitReason::Normal);
    }
}

#[test]
fn a_kill_inside_the_spawn_closure_ends_the_process_before_it_runs() {
    for workers in [1, 2] {
        let rt = runtime(workers);
        let h = rt.spawn(|ctx| {
            assert!(ctx.runtime().kill(ctx.pid()));
            async move {
                let _ctx = ctx;
                panic!("a killed process is never polled");
            }
        });
        assert_eq!(run(&rt, h.join()), ExitReason::Killed);
        assert_eq!(rt.metrics().panics, 0);
        assert_eq!(rt.process_count(), 0);
    }
}

#[test]
fn a_spawn_closure_that_panics_after_registering_releases_everything() {
    silence_expected_panics();
    for workers in [1, 2] {
        let rt = runtime(workers);
        // A watcher trapping exits, linked to and monitoring the doomed
        // process from inside its closure.
        let (tx, rx) = std::sync::mpsc::channel();
        let watcher = rt.spawn(move |mut ctx| async move {
            let mut seen = Vec::new();
            while seen.len() < 2 {
                match ctx.recv().await {
                    Received::Exit { reason, .. } => seen.push(("exit", reason)),
                    Received::Down { reason, .. } => seen.push(("down", reason)),
                    Received::Message(_) => {}
                }
            }
            seen.sort_by_key(|s| s.0);
            tx.send(seen).unwrap();
            // Alive until told, so the test can register a name for it.
            ctx.recv().await;
        });
        let w = watcher.pid();
        rt.set_trap_exit(w, true);
        let spawned_before = rt.spawned();
        let r2 = rt.clone();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
            r2.spawn(move |ctx| {
                let rt = ctx.runtime().clone();
                assert!(rt.register("doomed", ctx.pid()));
                assert!(rt.register_tag("doomed-tag", ctx.pid()));
                rt.link(w, ctx.pid());
                rt.monitor(w, ctx.pid());
                assert!(rt.send(ctx.pid(), vec![1u8; 64]));
                if ctx.pid().raw() > 0 {
                    panic!("{EXPECTED_PANIC} the spawn closure panicked");
                }
                async {}
            })
        }));
        assert!(result.is_err(), "the closure's panic reaches the caller");
        assert_eq!(rt.spawned(), spawned_before + 1);
        assert_eq!(rt.whereis("doomed"), None, "name released");
        assert!(rt.whereis_tag("doomed-tag").is_empty(), "tag released");
        assert!(rt.register("doomed", w), "the name can be taken again");
        let seen = rx
            .recv_timeout(support::TIMEOUT)
            .expect("the watcher heard of the end");
        assert_eq!(
            seen,
            vec![("down", ExitReason::Crashed), ("exit", ExitReason::Crashed)]
        );
        assert!(rt.send(w, ()));
        assert_eq!(run(&rt, watcher.join()), ExitReason::Normal);
        assert_eq!(rt.process_count(), 0);
        assert_eq!(rt.finished(), rt.spawned());
        assert_eq!(rt.monitor_count(), 0);
        assert!(rt.list().is_empty());
    }
}
