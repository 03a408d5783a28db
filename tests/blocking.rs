//! `Runtime::spawn_blocking`: jobs run on the blocking pool's threads,
//! never on a worker; a panicking job crashes the process awaiting it and
//! not the pool; dropping the future or the runtime mid-job neither hangs
//! nor leaks. Every wait is bounded.

mod support;

use rusm_otp::{ExitReason, Runtime};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Barrier};
use std::time::Duration;
use support::{TIMEOUT, run};

fn thread_name() -> String {
    std::thread::current().name().unwrap_or("").to_string()
}

/// 1,000 processes each await a job at once; all complete, each on a pool
/// thread, with never more pool threads than the bound.
#[test]
fn a_thousand_processes_spawn_blocking_at_once() {
    const N: usize = 1000;
    const MAX: usize = 8;
    let rt = Runtime::builder().workers(2).blocking_threads(MAX).build();
    let running = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let handles: Vec<_> = (0..N)
        .map(|i| {
            let (running, peak) = (running.clone(), peak.clone());
            rt.spawn(move |ctx| async move {
                let worker = thread_name();
                assert!(worker.starts_with("rusm-worker-"), "{worker}");
                let (name, v) = ctx
                    .runtime()
                    .spawn_blocking(move || {
                        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                        peak.fetch_max(now, Ordering::SeqCst);
                        // Long enough that jobs overlap and the pool grows.
                        std::thread::sleep(Duration::from_micros(200));
                        running.fetch_sub(1, Ordering::SeqCst);
                        (thread_name(), i * 2)
                    })
                    .await;
                assert!(name.starts_with("rusm-blocking-"), "ran on {name}");
                assert_eq!(v, i * 2);
            })
        })
        .collect();
    run(&rt, async {
        for h in handles {
            assert_eq!(h.join().await, ExitReason::Normal);
        }
    });
    let peak = peak.load(Ordering::SeqCst);
    assert!(peak <= MAX, "{peak} jobs ran at once, bound {MAX}");
    assert!(rt.metrics().blocking_threads <= MAX);
}

#[test]
fn spawn_blocking_works_from_block_on() {
    let rt = support::runtime(1);
    let name = run(&rt, rt.spawn_blocking(thread_name));
    assert!(name.starts_with("rusm-blocking-"), "{name}");
}

/// A panicking job: the awaiting process crashes; the pool thread that ran
/// it runs the next job.
#[test]
fn a_panicking_job_crashes_the_awaiting_process_not_the_pool() {
    let rt = Runtime::builder()
        .workers(2)
        .blocking_threads(1)
        .quiet_panics(true)
        .build();
    let (tx, rx) = mpsc::channel();
    let h = rt.spawn(move |ctx| async move {
        let rt = ctx.runtime().clone();
        let tx2 = tx.clone();
        rt.spawn_blocking(move || {
            tx2.send(std::thread::current().id()).unwrap();
            panic!("poisoned job");
        })
        .await;
        tx.send(std::thread::current().id()).unwrap();
        unreachable!("the panic is re-raised in the process");
    });
    run(&rt, async {
        assert_eq!(h.join().await, ExitReason::Crashed)
    });
    let first = rx.recv_timeout(TIMEOUT).expect("job ran");
    assert_eq!(rt.metrics().panics, 1);
    // One pool thread at most: the same thread runs the next job.
    let second = run(&rt, rt.spawn_blocking(|| std::thread::current().id()));
    assert_eq!(first, second, "the pool thread survived the panic");
    assert_eq!(rt.metrics().unowned_panics, 0);
}

#[test]
fn a_panicking_job_panics_block_on() {
    let rt = support::runtime(1);
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        rt.block_on(rt.spawn_blocking(|| -> u32 { panic!("from the pool") }))
    }));
    let payload = r.expect_err("block_on panics");
    assert_eq!(payload.downcast_ref::<&str>(), Some(&"from the pool"));
    assert_eq!(run(&rt, rt.spawn_blocking(|| 7)), 7);
}

/// Counts its drops.
struct Counted(Arc<AtomicUsize>);
impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// The awaiting process is killed mid-job: the job finishes, its result is
/// dropped on the pool thread; a queued job whose future is gone never
/// runs.
#[test]
fn dropping_the_future_mid_job_drops_the_result_and_skips_unstarted_jobs() {
    let rt = Runtime::builder().workers(2).blocking_threads(1).build();
    let drops = Arc::new(AtomicUsize::new(0));
    let (started_tx, started_rx) = mpsc::channel();
    let gate = Arc::new(Barrier::new(2));
    let (g, d) = (gate.clone(), drops.clone());
    let first = rt.spawn(move |ctx| async move {
        ctx.runtime()
            .spawn_blocking(move || {
                started_tx.send(()).unwrap();
                g.wait();
                Counted(d)
            })
            .await;
    });
    started_rx.recv_timeout(TIMEOUT).expect("first job started");
    // The only pool thread is busy: this one queues.
    let ran = Arc::new(AtomicUsize::new(0));
    let r = ran.clone();
    let (queued_tx, queued_rx) = mpsc::channel();
    let second = rt.spawn(move |ctx| async move {
        let job = ctx
            .runtime()
            .spawn_blocking(move || r.fetch_add(1, Ordering::SeqCst));
        queued_tx.send(()).unwrap();
        job.await;
    });
    queued_rx.recv_timeout(TIMEOUT).expect("second job queued");
    assert!(first.kill());
    assert!(second.kill());
    run(&rt, async {
        assert_eq!(first.join().await, ExitReason::Killed);
        assert_eq!(second.join().await, ExitReason::Killed);
    });
    gate.wait();
    support::wait_until("result dropped", || drops.load(Ordering::SeqCst) == 1);
    // The pool drains its queue: a job queued after the abandoned one runs,
    // so the abandoned one was taken (and skipped) before it.
    assert_eq!(run(&rt, rt.spawn_blocking(|| 5)), 5);
    assert_eq!(ran.load(Ordering::SeqCst), 0, "abandoned before it started");
}

thread_local! {
    /// Set on a pool thread by a job; its destructor reports the thread's exit.
    static EXIT_SIGNAL: std::cell::RefCell<Option<mpsc::Sender<()>>> =
        const { std::cell::RefCell::new(None) };
}

struct OnExit;
impl Drop for OnExit {
    fn drop(&mut self) {
        if let Some(tx) = EXIT_SIGNAL.with(|s| s.borrow_mut().take()) {
            let _ = tx.send(());
        }
    }
}

thread_local! {
    static ON_EXIT: OnExit = const { OnExit };
}

/// The runtime is dropped while a job runs: the drop returns without
/// waiting for the job, and the pool thread exits once the job ends.
#[test]
fn dropping_the_runtime_mid_job_neither_hangs_nor_leaks_the_thread() {
    let rt = support::runtime(2);
    let (exit_tx, exit_rx) = mpsc::channel();
    let (started_tx, started_rx) = mpsc::channel();
    let gate = Arc::new(Barrier::new(2));
    let g = gate.clone();
    let h = rt.spawn(move |ctx| async move {
        ctx.runtime()
            .spawn_blocking(move || {
                EXIT_SIGNAL.with(|s| *s.borrow_mut() = Some(exit_tx));
                ON_EXIT.with(|_| {});
                started_tx.send(()).unwrap();
                g.wait();
            })
            .await;
    });
    started_rx.recv_timeout(TIMEOUT).expect("job started");
    let _ = h;
    // Joins the workers; the busy pool thread is left to finish.
    drop(rt);
    gate.wait();
    exit_rx
        .recv_timeout(TIMEOUT)
        .expect("the pool thread exits after its job");
}

/// Idle pool threads are joined when the runtime stops.
#[test]
fn idle_pool_threads_end_with_the_runtime() {
    let rt = Runtime::builder().workers(1).blocking_threads(4).build();
    let (exit_tx, exit_rx) = mpsc::channel();
    run(
        &rt,
        rt.spawn_blocking(move || {
            EXIT_SIGNAL.with(|s| *s.borrow_mut() = Some(exit_tx));
            ON_EXIT.with(|_| {});
        }),
    );
    drop(rt);
    // Joined before the drop returned: the signal is already there.
    exit_rx
        .try_recv()
        .expect("the idle pool thread was joined by the runtime's drop");
}

#[test]
fn the_future_is_send_and_static() {
    fn check<F: std::future::Future<Output = u8> + Send + 'static>(_: &F) {}
    let rt = support::runtime(1);
    let f = rt.spawn_blocking(|| 1u8);
    check(&f);
    assert_eq!(run(&rt, f), 1);
}
