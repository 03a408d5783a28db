//! Loom models of the composed runtime: real processes (task, state word,
//! mailbox, signals, teardown) on a real two-worker runtime (worker loop,
//! idle protocol, parkers, next slots), with loom's threads, thread-locals
//! and locks in place of std's and two stand-ins: a `Mutex<VecDeque>` for
//! crossbeam-deque (`loom::deque`) and a mutex-guarded map for the process
//! table, whose releases wait until no other thread is pinned
//! (`process::table`, `loom::epoch`). No timers, no stall monitor, no
//! blocking pool: the models use none of them.
//!
//! Each model is named `loom_rt_*` and kept small (one or two processes, a
//! message or two) so that it runs in seconds at `LOOM_MAX_PREEMPTIONS=3`.

use crate::{ExitReason, Received, Runtime};

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A two-worker runtime.
fn runtime() -> Runtime {
    Runtime::builder().workers(2).build()
}

/// A value that counts its drops.
struct Counted(Arc<AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

fn counter() -> Arc<AtomicUsize> {
    Arc::new(AtomicUsize::new(0))
}

/// Spawn, then a send racing the process's first poll: the receive either
/// finds the message or parks and is woken by the send.
#[test]
fn loom_rt_spawn_send_recv() {
    loom::model(|| {
        let rt = runtime();
        let got = counter();
        let g = got.clone();
        let h = rt.spawn(move |mut ctx| async move {
            if let Received::Message(m) = ctx.recv().await {
                g.store(m.downcast::<u32>().unwrap() as usize, Ordering::Relaxed);
            }
        });
        assert!(rt.send(h.pid(), 7u32));
        assert_eq!(rt.block_on(h.join()), ExitReason::Normal);
        assert_eq!(got.load(Ordering::Relaxed), 7);
        assert_eq!(rt.finished(), 1);
    });
}
