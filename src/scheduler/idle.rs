//! The sleep/wake protocol of idle workers.
//!
//! A worker is in one of three conditions: *running* tasks, *searching* for
//! work to steal (counted in `num_searching`, at most [`Idle::max_searching`]
//! at once), or *sleeping* (listed in `sleepers`, counted in `num_sleeping`,
//! blocked on its [`Parker`](super::park::Parker)).
//!
//! # Posting work (a spawn, a wake, a reschedule onto a shared queue)
//!
//! 1. Push the task to a queue another worker can see (local deque or the
//!    injector).
//! 2. `fence(SeqCst)`.
//! 3. If `num_searching > 0`, stop: a searcher will find it. If
//!    `num_sleeping == 0`, stop: every worker is awake and will look at every
//!    queue before it sleeps.
//! 4. Otherwise, under the `sleepers` lock, check `num_searching` again, pop
//!    one sleeper, count it as searching, and unpark it. At most one worker
//!    is woken per posted task, and none while someone searches.
//!
//! # Falling asleep
//!
//! 1. Having found nothing in the local queue, the injector or any stealer,
//!    take the `sleepers` lock, list yourself, increment `num_sleeping` and,
//!    if you were searching, decrement `num_searching` (all SeqCst).
//! 2. `fence(SeqCst)`.
//! 3. Look at every queue again. If there is work, take yourself off the
//!    list (if a poster already popped you, you are now counted as
//!    searching) and go back to work.
//! 4. Otherwise park. When you wake, take yourself off the list if still on
//!    it (a spurious or timed wake); if a poster popped you, you are
//!    searching.
//!
//! # Why no wakeup is lost
//!
//! The race to close is: a worker finds nothing, a poster pushes, the worker
//! sleeps, and the task sits in a queue with everyone asleep. Let `Fp` be the
//! poster's fence (posting step 2) and `Fw` the sleeper's (falling-asleep
//! step 2). SeqCst fences are totally ordered:
//!
//! * `Fp` before `Fw`: the push precedes `Fp`, so the sleeper's re-check
//!   (step 3, after `Fw`) sees the task and does not sleep.
//! * `Fw` before `Fp`: the sleeper's writes of step 1 precede `Fw`, so the
//!   poster's loads after `Fp` see `num_sleeping >= 1` and this sleeper's
//!   own decrement of `num_searching`. If the poster still reads
//!   `num_searching > 0`, that count belongs to another worker `S` whose own
//!   decrement is not yet visible, which by the same fence rule puts `Fp`
//!   before `S`'s fence; `S` is awake and either runs into the task while
//!   searching or sees it in its own step 3 re-check. If the poster reads
//!   `num_searching == 0`, it pops and unparks a sleeper (step 4); the
//!   parker's token makes an unpark that lands before the park count.
//!
//! In the step-4 lock, a re-read of `num_searching > 0` is safe for the same
//! reason: the searcher it counts must later take the same lock to sleep,
//! and that acquisition happens after the poster's push.
//!
//! The loom model `loom_idle` runs this protocol with two workers and a
//! poster on a stand-in queue.

use crate::loom::sync::Mutex;
use crate::loom::sync::atomic::{AtomicUsize, Ordering, fence};

/// Bookkeeping of idle workers, shared by all of them.
#[derive(Debug)]
pub(crate) struct Idle {
    /// Workers now searching for work to steal.
    num_searching: AtomicUsize,
    /// Workers listed in `sleepers`.
    num_sleeping: AtomicUsize,
    /// Indices of the workers asleep (or about to be).
    sleepers: Mutex<Vec<usize>>,
    /// The most workers that may search at once.
    max_searching: usize,
}

impl Idle {
    pub(crate) fn new(num_workers: usize) -> Idle {
        Idle {
            num_searching: AtomicUsize::new(0),
            num_sleeping: AtomicUsize::new(0),
            sleepers: Mutex::new(Vec::with_capacity(num_workers)),
            max_searching: (num_workers / 2).max(1),
        }
    }

    /// Workers now listed as asleep.
    pub(crate) fn num_sleeping(&self) -> usize {
        self.num_sleeping.load(Ordering::Relaxed)
    }

    /// Becomes a searcher, unless too many search already.
    pub(crate) fn try_start_search(&self) -> bool {
        let mut n = self.num_searching.load(Ordering::SeqCst);
        loop {
            if n >= self.max_searching {
                return false;
            }
            match self.num_searching.compare_exchange_weak(
                n,
                n + 1,
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => return true,
                Err(actual) => n = actual,
            }
        }
    }

    /// Stops searching; true when this was the last searcher.
    pub(crate) fn end_search(&self) -> bool {
        self.num_searching.fetch_sub(1, Ordering::SeqCst) == 1
    }

    /// Posting step 2-4: picks a sleeper to wake for newly posted work and
    /// counts it as searching. The caller unparks it.
    pub(crate) fn worker_to_notify(&self) -> Option<usize> {
        fence(Ordering::SeqCst);
        if self.num_searching.load(Ordering::SeqCst) != 0
            || self.num_sleeping.load(Ordering::SeqCst) == 0
        {
            return None;
        }
        let mut sleepers = self.sleepers.lock();
        if self.num_searching.load(Ordering::SeqCst) != 0 {
            return None;
        }
        let id = sleepers.pop()?;
        self.num_sleeping.fetch_sub(1, Ordering::SeqCst);
        self.num_searching.fetch_add(1, Ordering::SeqCst);
        Some(id)
    }

    /// Falling asleep, steps 1-4, for worker `id`. `searching` is the
    /// worker's searching flag, updated to what it is on return. `has_work`
    /// looks at every queue; `stop` says the runtime is shutting down.
    /// `park` blocks on the worker's [`Parker`](super::park::Parker) (in the reactor, for the
    /// duty holder). Returns when the worker should look for work again.
    pub(crate) fn sleep(
        &self,
        id: usize,
        searching: &mut bool,
        park: impl FnOnce(),
        has_work: impl Fn() -> bool,
        stop: impl Fn() -> bool,
    ) {
        {
            let mut sleepers = self.sleepers.lock();
            sleepers.push(id);
            self.num_sleeping.fetch_add(1, Ordering::SeqCst);
            if *searching {
                self.num_searching.fetch_sub(1, Ordering::SeqCst);
            }
        }
        *searching = false;
        fence(Ordering::SeqCst);
        if !has_work() && !stop() {
            park();
        }
        // Still listed: we left on our own (work seen, timeout, spurious
        // wake). Not listed: a poster popped us and counted us as searching.
        if !self.unlist(id) {
            *searching = true;
        }
    }

    /// Takes `id` off the sleepers list; false when it was not on it.
    fn unlist(&self, id: usize) -> bool {
        let mut sleepers = self.sleepers.lock();
        match sleepers.iter().position(|&s| s == id) {
            Some(pos) => {
                sleepers.swap_remove(pos);
                self.num_sleeping.fetch_sub(1, Ordering::SeqCst);
                true
            }
            None => false,
        }
    }
}

#[cfg(all(test, loom))]
mod loom_idle {
    use super::super::park::Parker;
    use super::*;
    use crate::loom::sync::Arc;
    use crate::loom::sync::atomic::AtomicUsize;
    use loom::sync::atomic::AtomicBool;
    use std::collections::VecDeque;

    /// Two workers and a poster: the posted task is always run, so the
    /// model never ends with both workers asleep and the task queued.
    #[test]
    fn posted_work_is_always_run() {
        loom::model(|| {
            let idle = Arc::new(Idle::new(2));
            let queue = Arc::new(Mutex::new(VecDeque::new()));
            let parkers: Arc<[Parker; 2]> = Arc::new([Parker::new(), Parker::new()]);
            let stop = Arc::new(AtomicBool::new(false));
            let ran = Arc::new(AtomicUsize::new(0));

            let workers: Vec<_> = (0..2)
                .map(|id| {
                    let (idle, queue, parkers, stop, ran) = (
                        idle.clone(),
                        queue.clone(),
                        parkers.clone(),
                        stop.clone(),
                        ran.clone(),
                    );
                    loom::thread::spawn(move || {
                        let mut searching = false;
                        loop {
                            let task: Option<u32> = queue.lock().pop_front();
                            if task.is_some() {
                                if searching && idle.end_search() {
                                    if let Some(w) = idle.worker_to_notify() {
                                        parkers[w].unpark();
                                    }
                                }
                                ran.fetch_add(1, Ordering::SeqCst);
                                // The only task: shut the model down.
                                stop.store(true, Ordering::SeqCst);
                                parkers[0].unpark();
                                parkers[1].unpark();
                                return;
                            }
                            if stop.load(Ordering::SeqCst) {
                                return;
                            }
                            idle.sleep(
                                id,
                                &mut searching,
                                || parkers[id].park(None),
                                || !queue.lock().is_empty(),
                                || stop.load(Ordering::SeqCst),
                            );
                        }
                    })
                })
                .collect();

            queue.lock().push_back(1);
            if let Some(w) = idle.worker_to_notify() {
                parkers[w].unpark();
            }
            for w in workers {
                w.join().unwrap();
            }
            assert_eq!(ran.load(Ordering::SeqCst), 1);
        });
    }
}
