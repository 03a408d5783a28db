//! What ended processes and timers leave held: a burst of pending timers
//! (processes waiting in `recv_timeout`, or `send_after`s) that all end
//! leaves nothing behind, not even the room the wheel made for them; and a
//! few long-lived processes among many short ones hold little of the
//! short ones' memory (the pid table's page around each). Measured with a counting global allocator (live bytes), so the figure
//! is exact and independent of how the system allocator returns pages to
//! the kernel.
//!
//! One test in this binary, so nothing else allocates meanwhile.

mod support;

use rusm_otp::{Received, Runtime};
use std::time::Duration;
use support::counting::{Counting, live, poll};

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Timers per burst. Their entries and processes are freed on any
/// correct runtime; what this catches is the wheel keeping the room it
/// made for them (about 8 bytes a timer, 1.6 MB here, spread over the
/// slots their deadlines fell in).
const N: usize = 200_000;
/// What may stay allocated beyond the baseline: a few pages of pid table
/// and the epoch's bookkeeping, nothing per timer.
const SLACK: isize = 512 << 10;
/// Polling steps (1 ms apart) allowed for the memory to come back.
const STEPS: u32 = 5_000;
/// Far enough that no timer of the test fires.
const LONG: Duration = Duration::from_secs(600);

/// Waits (bounded) until at most `bound` bytes are live beyond `baseline`,
/// running a short process now and then: a runtime gone idle may keep the
/// last batch of deferred frees (a few hundred KB) until its workers next
/// run, which is not what is measured here.
fn poll_held(rt: &Runtime, what: &str, baseline: isize, bound: isize) {
    let mut step = 0;
    poll(what, STEPS, || {
        step += 1;
        if step % 50 == 0 {
            rt.block_on(rt.spawn(|_ctx| async {}).join());
        }
        live() - baseline < bound
    });
}

/// The live bytes once they stop moving (deferred frees done), bounded.
fn settled_live() -> isize {
    let mut last = live();
    for _ in 0..100 {
        std::thread::sleep(Duration::from_millis(20));
        let now = live();
        if now == last {
            break;
        }
        last = now;
    }
    last
}

/// `n` processes, each waiting for a message with a long timeout (a
/// pending timer each), then all woken by a message, so every timer is
/// cancelled as its process ends.
fn timed_out_waiters(rt: &Runtime, n: usize) {
    let pids: Vec<_> = (0..n)
        .map(|_| {
            rt.spawn(|mut ctx| async move {
                let got = ctx.recv_timeout(LONG).await;
                assert!(matches!(got, Some(Received::Message(_))));
            })
            .pid()
        })
        .collect();
    for pid in pids {
        rt.send(pid, ());
    }
    poll("the waiters to end", 120_000, || rt.process_count() == 0);
}

/// `n` `send_after`s to a parked process, all cancelled.
fn cancelled_sends(rt: &Runtime, n: usize) {
    let target = rt.spawn(|mut ctx| async move {
        ctx.recv().await;
    });
    let timers: Vec<_> = (0..n)
        .map(|i| rt.send_after(target.pid(), LONG, i))
        .collect();
    for t in &timers {
        assert!(t.cancel());
    }
    drop(timers);
    target.kill();
    poll("the target to end", 120_000, || rt.process_count() == 0);
}

/// Long-lived processes kept among short ones.
const SURVIVORS: usize = 500;
/// One survivor per this many spawns: each lands in a different page of
/// the pid table whatever its page size (up to this many pids).
const SPREAD: usize = 1024;
/// What one survivor may hold beyond its own process: its page of pid
/// table slots (2 KiB with 256-slot pages; 1,024-slot pages held 8 KiB).
const PER_SURVIVOR: isize = 4 << 10;

/// `SURVIVORS` parked processes, each spawned after `SPREAD - 1` short
/// ones that end; returns the survivors' pids once the short ones are gone.
fn survivors_among_short_ones(rt: &Runtime) -> Vec<rusm_otp::Pid> {
    let mut kept = Vec::new();
    for _ in 0..SURVIVORS {
        for _ in 0..SPREAD - 1 {
            rt.spawn(|_ctx| async {});
        }
        kept.push(
            rt.spawn(|mut ctx| async move {
                ctx.recv().await;
            })
            .pid(),
        );
    }
    poll("the short processes to end", 120_000, || {
        rt.process_count() == SURVIVORS
    });
    kept
}

#[test]
fn ended_timers_and_processes_leave_little_behind() {
    let rt = Runtime::builder().workers(2).build();
    // Warm up: worker deques, the injector's blocks, the epoch's records.
    timed_out_waiters(&rt, 10_000);
    cancelled_sends(&rt, 10_000);
    let baseline = settled_live();

    timed_out_waiters(&rt, N);
    poll_held(&rt, "the waiters' memory to come back", baseline, SLACK);

    cancelled_sends(&rt, N);
    poll_held(
        &rt,
        "the cancelled timers' memory to come back",
        baseline,
        SLACK,
    );

    // The survivors' own memory, measured on parked processes spawned at
    // rest (nothing being freed meanwhile), is set apart from what they
    // hold of the short processes' (their pages).
    let own = {
        let before = settled_live();
        let extra: Vec<_> = (0..SURVIVORS)
            .map(|_| {
                rt.spawn(|mut ctx| async move {
                    ctx.recv().await;
                })
                .pid()
            })
            .collect();
        let own = live() - before;
        for pid in extra {
            rt.kill(pid);
        }
        poll("the extra processes to end", 120_000, || {
            rt.process_count() == 0
        });
        poll_held(
            &rt,
            "the extra processes' memory to come back",
            baseline,
            SLACK,
        );
        own
    };
    let kept = survivors_among_short_ones(&rt);
    let held = SURVIVORS as isize * PER_SURVIVOR + own + SLACK;
    poll_held(
        &rt,
        "the short processes' memory to come back",
        baseline,
        held,
    );
    for pid in kept {
        rt.kill(pid);
    }
    poll("the survivors to end", 120_000, || rt.process_count() == 0);
}
