//! A worker that has slept a few milliseconds gives back the task memory it
//! kept for reuse, so a runtime at rest holds little of its ended
//! processes. Measured with a counting global allocator (live bytes), one
//! test in this binary, so nothing else allocates meanwhile.

mod support;

use rusm_otp::Runtime;
use support::counting::{Counting, live};
use support::{churn, wait_until};

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn a_runtime_at_rest_gives_back_the_task_memory_its_workers_kept() {
    let rt = Runtime::builder().workers(2).build();
    // The runtime's own first allocations (pid-table pages, message pools)
    // are made by a first round.
    churn(&rt, 1, 500);
    let at_rest = || {
        let m = rt.metrics();
        m.sleeping_workers == 2 && m.workers.iter().all(|w| w.cached_bytes <= 16 << 10)
    };
    wait_until("the workers to rest after the first round", at_rest);
    let rest = live();
    // Rounds of 500 ended children, each block ~300 bytes: far more than
    // the 16 KiB a worker keeps once idle.
    churn(&rt, 5, 500);
    wait_until("the workers to give their cached blocks back", at_rest);
    // Kept by the workers: at most 16 KiB each now, against the hundreds of
    // kilobytes five rounds leave in their caches. The message nodes'
    // pools (bounded on their own: a depot of 64 magazines of 32 nodes,
    // whose 1 KiB chunks stay while one of their nodes is kept) may hold
    // somewhat more than after the first round.
    let held = live() - rest;
    assert!(held < 256 << 10, "{held} bytes more than at rest before");
}
