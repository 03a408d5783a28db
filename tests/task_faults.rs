//! Destructors and wakers of user values that the runtime itself drops or
//! calls outside a process body: a panic there crashes the owning process
//! (or is counted when no process owns it), never a worker thread. After
//! each fault, processes spawned from outside must still all run, on one
//! worker and on two (where a dead worker counted as searching would stop
//! every sleeper from being woken again).

mod support;

use rusm_otp::{ExitReason, Runtime};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Poll, Wake, Waker};
use std::time::{Duration, Instant};
use support::{EXPECTED_PANIC, run, silence_expected_panics, threads_named, wait_until};

/// A runtime whose worker threads are named `prefix-<index>` (a prefix
/// unique to the test, as tests run side by side), so that they can be
/// counted.
fn runtime(workers: usize, prefix: &str) -> Runtime {
    Runtime::builder()
        .workers(workers)
        .thread_name(prefix)
        .build()
}

/// A value whose destructor panics.
struct PanicsOnDrop;

impl Drop for PanicsOnDrop {
    fn drop(&mut self) {
        panic!("{EXPECTED_PANIC} a destructor panicked");
    }
}

/// Spawns 20 processes from outside the runtime and checks that every one
/// of them runs to its end, then that every worker still runs processes
/// and every worker thread is still there.
fn workers_alive_and_twenty_later_spawns_all_run(rt: &Runtime, prefix: &str) {
    let handles: Vec<_> = (0..20u32)
        .map(|i| {
            rt.spawn(move |_| async move {
                std::hint::black_box(i);
            })
        })
        .collect();
    run(rt, async {
        for h in handles {
            assert_eq!(h.join().await, ExitReason::Normal);
        }
    });
    all_workers_run(rt);
    // After every worker has run a process, so each has named its thread.
    assert_eq!(threads_named(prefix), rt.workers(), "a worker thread died");
}

/// Every worker still runs processes: one process per worker, each
/// waiting without yielding until all of them have started, which only
/// happens if each is on a worker of its own.
fn all_workers_run(rt: &Runtime) {
    let started = Arc::new(AtomicUsize::new(0));
    let n = rt.workers();
    let handles: Vec<_> = (0..n)
        .map(|_| {
            let started = started.clone();
            rt.spawn(move |_| async move {
                started.fetch_add(1, Ordering::SeqCst);
                let deadline = Instant::now() + Duration::from_secs(10);
                while started.load(Ordering::SeqCst) < n {
                    assert!(
                        Instant::now() < deadline,
                        "a worker no longer runs processes"
                    );
                    std::hint::spin_loop();
                }
            })
        })
        .collect();
    run(rt, async {
        for h in handles {
            assert_eq!(h.join().await, ExitReason::Normal);
        }
    });
}

fn panic_payload_whose_drop_panics(workers: usize) {
    silence_expected_panics();
    let prefix = format!("tf-pp{workers}");
    let rt = runtime(workers, &prefix);
    let h = rt.spawn(|_| async move {
        std::panic::panic_any(PanicsOnDrop);
    });
    let pid = h.pid();
    assert_eq!(run(&rt, h.join()), ExitReason::Crashed);
    assert!(!rt.is_alive(pid));
    assert_eq!(rt.metrics().panics, 1);
    workers_alive_and_twenty_later_spawns_all_run(&rt, &prefix);
}

#[test]
fn a_panic_payload_whose_drop_panics_crashes_only_its_process_one_worker() {
    panic_payload_whose_drop_panics(1);
}

#[test]
fn a_panic_payload_whose_drop_panics_crashes_only_its_process_two_workers() {
    panic_payload_whose_drop_panics(2);
}

/// A future that owns a value whose destructor panics, then waits forever.
fn future_drop_panics_on_kill(workers: usize) {
    silence_expected_panics();
    let prefix = format!("tf-fd{workers}");
    let rt = runtime(workers, &prefix);
    let bomb = PanicsOnDrop;
    let h = rt.spawn(move |mut ctx| async move {
        let _bomb = &bomb;
        loop {
            ctx.recv().await;
        }
    });
    let pid = h.pid();
    assert!(rt.kill(pid));
    assert_eq!(run(&rt, h.join()), ExitReason::Crashed);
    workers_alive_and_twenty_later_spawns_all_run(&rt, &prefix);
}

#[test]
fn a_future_whose_drop_panics_crashes_its_process_one_worker() {
    future_drop_panics_on_kill(1);
}

#[test]
fn a_future_whose_drop_panics_crashes_its_process_two_workers() {
    future_drop_panics_on_kill(2);
}

/// A future whose drop panics with a payload whose own drop panics, at the
/// end of a normal return.
#[test]
fn a_future_whose_drop_panics_with_a_bad_payload_after_returning() {
    silence_expected_panics();
    struct PanicsWithBadPayload;
    impl Drop for PanicsWithBadPayload {
        fn drop(&mut self) {
            std::panic::panic_any(PanicsOnDrop);
        }
    }
    for workers in [1, 2] {
        let prefix = format!("tf-bp{workers}");
        let rt = runtime(workers, &prefix);
        let bomb = PanicsWithBadPayload;
        let h = rt.spawn(move |_| async move {
            let _keep = &bomb;
        });
        assert_eq!(run(&rt, h.join()), ExitReason::Crashed);
        assert_eq!(rt.metrics().panics, 1);
        workers_alive_and_twenty_later_spawns_all_run(&rt, &prefix);
    }
}

/// A waker whose `wake` panics.
struct PanickingWaker;

impl Wake for PanickingWaker {
    fn wake(self: Arc<Self>) {
        panic!("{EXPECTED_PANIC} a join waker panicked");
    }
}

/// A join polled under a foreign waker whose `wake` panics: the teardown
/// that wakes it runs on a worker, which must survive; the panic is counted
/// as unowned (the process is already over).
#[test]
fn a_join_waker_that_panics_is_counted_not_fatal() {
    silence_expected_panics();
    for workers in [1, 2] {
        let prefix = format!("tf-jw{workers}");
        let rt = runtime(workers, &prefix);
        let h = rt.spawn(|mut ctx| async move {
            ctx.recv().await;
        });
        let pid = h.pid();
        let mut join = h.join();
        let waker = Waker::from(Arc::new(PanickingWaker));
        let mut cx = std::task::Context::from_waker(&waker);
        assert!(Pin::new(&mut join).poll(&mut cx).is_pending());
        assert!(rt.send(pid, 1u8));
        wait_until("the unowned panic to be counted", || {
            rt.metrics().unowned_panics == 1
        });
        assert!(!rt.is_alive(pid));
        let mut cx = std::task::Context::from_waker(Waker::noop());
        assert_eq!(
            Pin::new(&mut join).poll(&mut cx),
            Poll::Ready(ExitReason::Normal)
        );
        workers_alive_and_twenty_later_spawns_all_run(&rt, &prefix);
    }
}
