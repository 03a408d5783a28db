//! Resident memory across waves of short-lived processes: it must stay
//! flat, since an ended process's memory is reclaimed within a bounded
//! delay.
//!
//! ```text
//! cargo run --release --example memory_waves -- [--total N] [--wave W] [--workers K]
//! ```
//!
//! Spawns `total` processes (10,000,000 by default) in waves of `wave`
//! (100,000): a driver process spawns a wave, each process receives one
//! message and ends, and the driver waits for the whole wave to end before
//! the next. After each wave it prints the resident set size read from
//! `/proc/self/statm`, and at the end the growth from the first wave to the
//! last.

use rusm_otp::{ExitReason, Runtime};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

/// Counts live heap bytes, so that what the runtime holds can be told
/// apart from what the system allocator keeps mapped.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to the system allocator, only counting bytes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: forwarded contract.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: forwarded contract.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn live_mib() -> f64 {
    LIVE.load(Ordering::Relaxed) as f64 / (1 << 20) as f64
}

/// Resident memory in MiB (Linux), or 0 where `/proc` is missing.
fn resident_mib() -> f64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (pages * 4096) as f64 / (1 << 20) as f64
}

fn main() {
    let mut total = 10_000_000u64;
    let mut wave = 100_000u64;
    let mut workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let v = it
            .next()
            .and_then(|s| s.replace('_', "").parse::<u64>().ok())
            .unwrap_or_else(|| panic!("{a} needs a number"));
        match a.as_str() {
            "--total" => total = v,
            "--wave" => wave = v.max(1),
            "--workers" => workers = v as usize,
            _ => panic!("unknown option {a}"),
        }
    }
    let rt = Runtime::builder().workers(workers).build();
    println!("rss before: {:.1} MiB", resident_mib());
    let waves = total.div_ceil(wave);
    let mut first = None;
    let mut last = 0.0;
    for w in 0..waves {
        let n = wave.min(total - w * wave);
        let driver = rt.spawn(move |ctx| async move {
            let rt = ctx.runtime().clone();
            let mut handles = Vec::with_capacity(n as usize);
            for _ in 0..n {
                let h = rt.spawn(|mut ctx| async move {
                    ctx.recv().await;
                });
                rt.send(h.pid(), ());
                handles.push(h);
            }
            for h in handles {
                assert_eq!(h.join().await, ExitReason::Normal);
            }
        });
        assert_eq!(rt.block_on(driver.join()), ExitReason::Normal);
        let rss = resident_mib();
        first.get_or_insert(rss);
        last = rss;
        println!(
            "wave {:>3}: {:>9} processes ended, {} alive, rss {rss:.1} MiB, live heap {:.2} MiB",
            w + 1,
            (w + 1) * wave.min(total),
            rt.process_count(),
            live_mib(),
        );
    }
    let first = first.unwrap_or(0.0);
    println!(
        "rss after wave 1: {first:.1} MiB, after wave {waves}: {last:.1} MiB, growth {:.1} MiB",
        last - first
    );
    drop(rt);
    println!(
        "rss after drop(rt): {:.1} MiB, live heap {:.2} MiB",
        resident_mib(),
        live_mib()
    );
}
