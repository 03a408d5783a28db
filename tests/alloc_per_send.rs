//! Measures allocations on the send path with a counting global allocator
//! that counts only on threads that asked it to (so other tests, workers
//! and the receiver do not blur the figure).
//!
//! A small message (at most 16 bytes) costs at most one allocation: the
//! mailbox node, with the value stored inline in the `Message`. A larger
//! one costs at most two (node and box). Nodes are recycled (the mailbox's
//! node pool), so a steady stream of messages, even from one thread to a
//! receiver on another, costs far fewer than one allocation each; and a
//! backlog is carved out of chunks of many nodes, so it costs far fewer
//! too.

use rusm_otp::{ExitReason, Runtime};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

struct Counting;

thread_local! {
    static COUNT_HERE: Cell<bool> = const { Cell::new(false) };
}
static ALLOCS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards to the system allocator, only counting calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNT_HERE.try_with(Cell::get).unwrap_or(false) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: forwarded contract.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded contract.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations made by one process sending `n` messages built by `make`
/// to a parked process, within one poll (so nothing else runs meanwhile on
/// the single worker).
fn allocations_for<M: Send + 'static>(n: u64, make: fn(u64) -> M) -> u64 {
    let rt = Runtime::builder().workers(1).build();
    let sink = rt.spawn(|mut ctx| async move {
        loop {
            ctx.recv().await;
        }
    });
    let sink_pid = sink.pid();
    let (tx, rx) = std::sync::mpsc::channel();
    let sender = rt.spawn(move |ctx| async move {
        let rt = ctx.runtime();
        // Warm up: the first send wakes the sink; later ones find it queued.
        rt.send(sink_pid, make(0));
        ALLOCS.store(0, Ordering::Relaxed);
        COUNT_HERE.with(|c| c.set(true));
        for i in 0..n {
            assert!(rt.send(sink_pid, make(i)));
        }
        COUNT_HERE.with(|c| c.set(false));
        tx.send(ALLOCS.load(Ordering::Relaxed)).unwrap();
    });
    assert_eq!(rt.block_on(sender.join()), ExitReason::Normal);
    rt.kill(sink_pid);
    rx.recv().unwrap()
}

/// Allocations made by the test's own thread sending `n` small messages to
/// a process on a worker thread, in bursts, waiting after each burst until
/// the receiver has taken it (so its nodes are free again).
fn allocations_streaming(n: u64) -> u64 {
    const BURST: u64 = 256;
    let rt = Runtime::builder().workers(1).build();
    let (ack_tx, ack_rx) = std::sync::mpsc::channel();
    let sink = rt.spawn(move |mut ctx| async move {
        let mut got = 0u64;
        loop {
            ctx.recv().await;
            got += 1;
            if got % BURST == 0 {
                ack_tx.send(()).unwrap();
            }
        }
    });
    // Warm up this thread's channel and the runtime's queues.
    for i in 0..BURST {
        assert!(rt.send(sink.pid(), i));
    }
    ack_rx.recv().unwrap();
    ALLOCS.store(0, Ordering::Relaxed);
    COUNT_HERE.with(|c| c.set(true));
    for _ in 0..n / BURST {
        for i in 0..BURST {
            assert!(rt.send(sink.pid(), i));
        }
        ack_rx.recv().unwrap();
    }
    COUNT_HERE.with(|c| c.set(false));
    rt.kill(sink.pid());
    ALLOCS.load(Ordering::Relaxed)
}

#[test]
fn small_messages_cost_at_most_one_allocation_each_and_large_ones_two() {
    // One test, so the global counter is never shared between tests.
    let n = 10_000;
    let a = allocations_for(n, |i| i);
    assert!(a <= n, "a u64: the node only ({a})");
    let a = allocations_for(n, |i| (i, i as u32));
    assert!(a <= n, "a 16-byte tuple is still inline ({a})");
    let a = allocations_for(n, |i| [i; 8]);
    assert!(
        (n..=2 * n).contains(&a),
        "a 64-byte array: its box, and the node ({a})"
    );
    // A backlog (nothing freed while the sends go on): nodes are carved out
    // of chunks, far fewer allocations than messages.
    let n = 20_000;
    let a = allocations_for(n, |i| i);
    assert!(a <= n / 16, "a backlog of {n} costs {a} allocations");
    // Nodes freed by the receiver's thread come back to the sender's.
    let n = 256 * 80;
    let a = allocations_streaming(n);
    assert!(a < n / 10, "{a} allocations for {n} messages");
}
