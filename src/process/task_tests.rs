//! The raw task against a stand-in scheduler: the reference count in the
//! state word, the wakers over the header pointer, the vtable's run, shut
//! down and free. The stand-in queues entries in a list the test runs, so
//! each test decides exactly what runs when. Miri (Tree Borrows) checks
//! that every task is freed once, through the pointer it was made from.
//! Under loom, `loom_refs` races the count against a wake and a run.

use super::*;
use crate::loom::lock::Mutex as Lock;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A scheduler that keeps what it is given, and a table that holds a
/// reference to each live process until its teardown, as the runtime's
/// does (the argument of `Notified` rests on it).
#[derive(Default)]
struct Rt {
    queued: Lock<Vec<Notified<Mock>>>,
    table: Lock<Vec<TaskRef<Mock>>>,
    released: AtomicUsize,
    unowned: AtomicUsize,
}

/// The handle each header holds; its count says how many tasks are alive.
#[derive(Clone, Default)]
struct Mock(Arc<Rt>);

impl Schedule for Mock {
    type Held = ();
    fn schedule(&self, task: Notified<Self>) {
        self.0.queued.lock().push(task);
    }
    fn spawn(&self, task: Notified<Self>) {
        self.schedule(task);
    }
    fn yield_now(&self, task: Notified<Self>) {
        self.schedule(task);
    }
    fn release(&self, task: &TaskRef<Self>, reason: ExitReason) -> ExitReason {
        self.0.released.fetch_add(1, Ordering::Relaxed);
        let reason = crate::mailbox::close_at_teardown(task.header(), reason);
        let pid = task.header().pid;
        let left = {
            let mut table = self.0.table.lock();
            let i = table.iter().position(|t| t.header().pid == pid);
            i.map(|i| table.remove(i))
        };
        drop(left);
        reason
    }
    fn note_panic(&self) {}
    fn note_unowned_panic(&self) {
        self.0.unowned.fetch_add(1, Ordering::Relaxed);
    }
    fn run_as<R>(&self, _pid: Pid, f: impl FnOnce() -> R) -> R {
        f()
    }
}

impl Mock {
    /// A new process, in the table.
    fn new_task(&self, n: u64) -> Spawning<Keeper, Mock> {
        let s = Spawning::<Keeper, Mock>::new(pid(n), self.clone());
        self.0.table.lock().push(s.to_ref());
        s
    }

    /// Runs every queued entry (and those they queue), in order.
    fn run_all(&self) -> usize {
        let mut ran = 0;
        loop {
            let next = {
                let mut q = self.0.queued.lock();
                (!q.is_empty()).then(|| q.remove(0))
            };
            match next {
                Some(n) => {
                    n.run();
                    ran += 1;
                }
                None => return ran,
            }
        }
    }

    /// Tasks alive (each header holds one handle).
    fn tasks(&self) -> usize {
        Arc::strong_count(&self.0) - 1
    }
}

/// A future that keeps a clone of every waker it is polled with, and ends
/// when `done` is set.
struct Keeper {
    wakers: Arc<Lock<Vec<Waker>>>,
    done: Arc<AtomicUsize>,
    polls: Arc<AtomicUsize>,
}

impl Future for Keeper {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<()> {
        self.polls.fetch_add(1, Ordering::Relaxed);
        if self.done.load(Ordering::Relaxed) != 0 {
            return Poll::Ready(());
        }
        self.wakers.lock().push(cx.waker().clone());
        Poll::Pending
    }
}

struct Probe {
    wakers: Arc<Lock<Vec<Waker>>>,
    done: Arc<AtomicUsize>,
    polls: Arc<AtomicUsize>,
}

fn keeper() -> (Keeper, Probe) {
    let p = Probe {
        wakers: Arc::default(),
        done: Arc::default(),
        polls: Arc::default(),
    };
    let k = Keeper {
        wakers: p.wakers.clone(),
        done: p.done.clone(),
        polls: p.polls.clone(),
    };
    (k, p)
}

fn pid(n: u64) -> Pid {
    Pid::from_raw(n)
}

/// Clones and drops count in the state word; the last drop frees the task,
/// wherever it happens.
#[cfg(not(loom))]
#[test]
fn task_refs_count_and_the_last_frees() {
    let rt = Mock::default();
    let (k, p) = keeper();
    let s = Spawning::<Keeper, Mock>::new(pid(1), rt.clone());
    assert_eq!(s.header().state.refs(), 1);
    rt.0.table.lock().push(s.to_ref());
    let a = s.to_ref();
    let b = a.clone();
    assert_eq!(a.header().state.refs(), 4);
    drop(b);
    // SAFETY: the spawner holds RUNNING since `new`.
    let h = unsafe { s.launch(k, false) };
    assert_eq!(h.header().state.refs(), 3);
    assert_eq!(rt.run_all(), 1);
    assert_eq!(p.polls.load(Ordering::Relaxed), 1);
    // The poll lent a waker (uncounted) and the future kept a clone.
    assert_eq!(h.header().state.refs(), 4);
    p.done.store(1, Ordering::Relaxed);
    p.wakers.lock().pop().unwrap().wake();
    assert_eq!(h.header().state.refs(), 3, "`wake` gives its reference up");
    assert_eq!(rt.run_all(), 1);
    assert_eq!(rt.0.released.load(Ordering::Relaxed), 1);
    assert_eq!(h.header().state.refs(), 2, "the table let go at teardown");
    assert_eq!(h.header().exit_reason(), Some(ExitReason::Normal));
    drop(a);
    assert_eq!(rt.tasks(), 1);
    drop(h);
    assert_eq!(rt.tasks(), 0, "the last reference freed the task");
}

/// A waker woken by reference queues the process once, however often it
/// is woken before it runs, and the last waker frees an ended task.
#[cfg(not(loom))]
#[test]
fn task_wakers_queue_once_and_free_last() {
    let rt = Mock::default();
    let (k, p) = keeper();
    let s = rt.new_task(2);
    // SAFETY: the spawner holds RUNNING since `new`.
    let h = unsafe { s.launch(k, false) };
    assert_eq!(rt.run_all(), 1);
    let w = p.wakers.lock().pop().unwrap();
    let w2 = w.clone();
    assert_eq!(h.header().state.refs(), 4);
    w.wake_by_ref();
    w2.wake_by_ref();
    assert_eq!(rt.0.queued.lock().len(), 1, "one entry for two wakes");
    p.done.store(1, Ordering::Relaxed);
    assert_eq!(rt.run_all(), 1);
    assert_eq!(h.header().exit_reason(), Some(ExitReason::Normal));
    drop(h);
    drop(w);
    assert_eq!(rt.tasks(), 1);
    // A wake of an ended process queues nothing; its drop frees the task.
    w2.wake();
    assert_eq!(rt.0.queued.lock().len(), 0);
    assert_eq!(rt.tasks(), 0);
}

/// Shutting down a parked process drops its future at once; abandoning a
/// spawn ends it with no future; a launched process never run is freed
/// with its future by the last reference.
#[cfg(not(loom))]
#[test]
fn task_shut_down_abandon_and_never_run() {
    let rt = Mock::default();
    let (k, p) = keeper();
    let s = rt.new_task(3);
    // SAFETY: the spawner holds RUNNING since `new`.
    let h = unsafe { s.launch(k, false) };
    assert_eq!(rt.run_all(), 1);
    h.clone().shut_down();
    assert_eq!(h.header().exit_reason(), Some(ExitReason::Killed));
    assert_eq!(Arc::strong_count(&p.done), 1, "the future was dropped");
    // Its kept waker still holds the task.
    drop(h);
    assert_eq!(rt.tasks(), 1);
    p.wakers.lock().clear();
    assert_eq!(rt.tasks(), 0);

    let s = rt.new_task(4);
    s.abandon();
    assert_eq!(s.header().exit_reason(), Some(ExitReason::Crashed));
    drop(s);
    assert_eq!(rt.tasks(), 0);

    let (k, p) = keeper();
    let s = rt.new_task(5);
    // SAFETY: the spawner holds RUNNING since `new`.
    let h = unsafe { s.launch(k, false) };
    // Dropped unrun: its entry left behind, then the table's reference.
    rt.0.queued.lock().clear();
    drop(h);
    assert_eq!(rt.tasks(), 1);
    rt.0.table.lock().clear();
    assert_eq!(rt.tasks(), 0);
    assert_eq!(
        Arc::strong_count(&p.done),
        1,
        "the never-run future was dropped"
    );
    assert_eq!(rt.0.unowned.load(Ordering::Relaxed), 0);
}

/// The count against flag transitions: a waker's `wake` (wake, then give
/// up its reference) on one thread, the process's run and the handle's
/// drop on another. Whatever the order, the task is freed exactly once,
/// after both are done, and the future exactly once.
#[cfg(loom)]
#[test]
fn loom_refs() {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(b.preemption_bound.map_or(3, |n| n.min(3)));
    b.check(|| {
        let rt = Mock::default();
        let (k, p) = keeper();
        let s = rt.new_task(6);
        // SAFETY: the spawner holds RUNNING since `new`.
        let h = unsafe { s.launch(k, false) };
        assert_eq!(rt.run_all(), 1);
        p.done.store(1, Ordering::Relaxed);
        let w = p.wakers.lock().pop().unwrap();
        let t = {
            let rt = rt.clone();
            loom::thread::spawn(move || {
                rt.run_all();
                drop(h);
            })
        };
        w.wake();
        t.join().unwrap();
        rt.run_all();
        assert_eq!(rt.tasks(), 0, "freed once everyone let go");
        assert_eq!(Arc::strong_count(&p.done), 1, "the future was dropped");
    });
}

/// The size of one process parked in `recv` with no links and no name, as
/// the idle-memory workload spawns it: a task of at most 104 bytes is a
/// 112-byte allocator chunk (glibc: size + 8, in steps of 16), which with
/// the table's slot keeps a process under 128 bytes.
#[cfg(not(loom))]
#[test]
fn task_an_idle_process_fits_a_112_byte_chunk() {
    fn task_size<F, Fut>(_: &F) -> usize
    where
        F: FnOnce(crate::Context) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        std::mem::size_of::<Task<Fut, crate::runtime::RtRef>>()
    }
    let started = Arc::new(AtomicUsize::new(0));
    let body = move |mut c: crate::Context| async move {
        started.fetch_add(1, Ordering::Relaxed);
        let _ = c.recv().await;
    };
    let size = task_size(&body);
    assert!(size <= 104, "an idle process takes {size} bytes");
}
