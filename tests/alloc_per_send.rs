//! Measures allocations on the send path with a counting global allocator
//! that counts only on threads that asked it to (so other tests, workers
//! and the receiver do not blur the figure).
//!
//! A small message (at most 16 bytes) costs exactly one allocation: the
//! mailbox node, with the value stored inline in the `Message`. A larger
//! one costs two (node and box).

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

#[test]
fn small_messages_cost_one_allocation_each_and_large_ones_two() {
    // One test, so the global counter is never shared between tests.
    let n = 10_000;
    assert_eq!(allocations_for(n, |i| i), n, "a u64: the node only");
    assert_eq!(
        allocations_for(n, |i| (i, i as u32)),
        n,
        "a 16-byte tuple is still inline"
    );
    assert_eq!(
        allocations_for(n, |i| [i; 8]),
        2 * n,
        "a 64-byte array: the node and its box"
    );
}
