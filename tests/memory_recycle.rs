//! Task memory kept by the workers for reuse is bounded while the runtime
//! runs and is all given back when the runtime is dropped. Measured with a
//! counting global allocator (live bytes), one test in this binary, so
//! nothing else allocates meanwhile.

mod support;

use rusm_otp::Runtime;
use support::churn;
use support::counting::{Counting, live};

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn kept_task_memory_is_bounded_and_freed_with_the_runtime() {
    let before = live();
    let rt = Runtime::builder().workers(2).build();
    churn(&rt, 20, 500);
    let warm = live();
    // More churn holds no more: the workers keep a bounded amount.
    churn(&rt, 200, 500);
    // Ended tasks wait for the epoch before they are freed or kept, and the
    // epoch advances only while workers run (on a loaded machine, a round
    // or two behind): small bursts let it catch up. A bound on the kept
    // blocks does not depend on them; garbage that is never freed does not
    // shrink with them.
    let mut grown = live() - warm;
    for _ in 0..50 {
        if grown < 1 << 20 {
            break;
        }
        churn(&rt, 1, 50);
        grown = live() - warm;
    }
    assert!(grown < 1 << 20, "{grown} more bytes after 10x the churn");
    rt.shutdown();
    drop(rt);
    let left = live() - before;
    // A pid-table directory, the epoch's own records: a few kilobytes; the
    // blocks two workers may keep are far more.
    assert!(
        left < 64 << 10,
        "{left} bytes still allocated after the runtime was dropped"
    );
}
