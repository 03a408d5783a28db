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
    wait_until("the workers to fall asleep", || {
        rt.metrics().sleeping_workers == 2
    });
    let rest = live();
    // Rounds of 500 ended children, each block ~300 bytes: far more than
    // the 16 KiB a worker keeps once idle.
    churn(&rt, 5, 500);
    let mut held = 0;
    wait_until("the workers to give their cached blocks back", || {
        let m = rt.metrics();
        held = live().saturating_sub(rest);
        m.sleeping_workers == 2
            && m.workers.iter().all(|w| w.cached_bytes <= 16 << 10)
            && held < 48 << 10
    });
    assert!(held < 48 << 10, "{held} bytes more than at rest before");
}
