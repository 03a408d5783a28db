//! The process table: pid → live process, with lock-free lookups.
//!
//! Pids are dense (one counter) and never reused, so the table is an array
//! indexed by pid, cut into pages of [`PAGE`] slots. A slot holds a thin
//! pointer to a live process (the table owns one strong reference to it) or
//! null. A directory maps page numbers to pages; it only grows at the back
//! and is trimmed at the front as the oldest pages empty.
//!
//! # Reclamation
//!
//! Lookups take no lock: they pin a `crossbeam-epoch` epoch, then load the
//! directory, the page and the slot. Everything a pinned reader may still
//! hold is freed only after every pin that could see it has ended:
//!
//! * removing a process nulls its slot and *defers* the release of the
//!   table's strong reference, so a reader that loaded the pointer just
//!   before may still use the process (and take its own reference: the
//!   count cannot have reached zero);
//! * a page is retired once every one of its [`PAGE`] pids has been removed
//!   (pids never come back, so nothing can be inserted into it again); it is
//!   unlinked from the directory and freed deferred;
//! * a replaced directory is freed deferred.
//!
//! Every pid issued is inserted (before its spawn closure runs) and
//! removed once, and pid 0 is never issued, so page 0 starts with it
//! counted as removed: every page retires once its pids have all ended. A
//! retired page's directory entry is null *tagged* [`RETIRED`], unlike one
//! not created yet (a concurrent spawn may create page `n + 1` first), and
//! only leading retired entries are trimmed, so a page number still to come
//! never falls below the directory's first one.
//!
//! Inserts into a page that does not exist yet, directory growth, page
//! retirement and directory trimming happen under one `grow` mutex; that is
//! once per [`PAGE`] spawns, so the lock is cold.
//!
//! Worker threads stay pinned while they run tasks, so the pin of a lookup
//! made from inside a process is nested and costs no fence.
//!
//! # When the memory comes back
//!
//! Deferred functions sit in the deferring thread's local bag, then in the
//! epoch's global queue, and run only once the global epoch has advanced
//! twice past them; the epoch advances only inside a collection, and only
//! when every pinned thread is pinned in the current epoch. Merely
//! re-pinning never collects, so the table drives this itself, and counts
//! its deferred frees (`pending`: processes, pages, directories) to know
//! when it is done:
//!
//! * a worker gathers the releases of the processes it removes and defers
//!   them [`BATCH`] at a time, as one deferred function (one epoch entry
//!   per batch rather than per process); a partial batch goes to the epoch
//!   at each of the points below, so it waits no longer than they do;
//! * every `INJECTOR_INTERVAL` ticks of its loop a worker
//!   re-pins and flushes ([`Table::collect`]), draining a backlog a few
//!   bounded batches at a time while that makes progress;
//! * a worker about to sleep, unpinned, flushes until nothing of ours is
//!   pending or a few rounds free nothing ([`Table::reclaim`]), so nothing
//!   waits for the next burst of work once the runtime goes idle;
//! * the runtime's stop, once its workers are joined, does the same until
//!   nothing is pending, yielding between fruitless rounds (bounded), so the
//!   memory is back when the owner's last handle is dropped.
//!
//! The delay is thus bounded by the longest poll of a running process (a
//! pinned worker holds the epoch back meanwhile) plus a few ticks. A thread
//! outside the runtime that removes a process (a spawner whose process was
//! killed before launch) flushes right after.

use super::Pid;
use crate::loom::lock::Mutex;
use crate::runtime::OwnedTask;
use crate::runtime::{Header, TaskPtr, TaskRef};
use crossbeam_epoch::{self as epoch, Atomic, Guard, Owned};
use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

/// The tag of a directory entry whose page has retired.
const RETIRED: usize = 1;

/// Slots per page (fewer under Miri, so that the tests reach page
/// retirement and directory trimming in reasonable time). A page lives as
/// long as any of its pids, so a long-lived process among short-lived ones
/// holds its whole page: 256 slots (2 KiB) keep that small, while page
/// creation, under the `grow` lock, stays rare.
const PAGE_BITS: u32 = if cfg!(miri) { 4 } else { 8 };
const PAGE: usize = 1 << PAGE_BITS;

/// `PAGE` consecutive pids' slots.
struct Page {
    /// The process of each pid, or null.
    slots: Box<[AtomicPtr<Header>]>,
    /// Pids of this page removed (or skipped) so far; at `PAGE` it retires.
    retired: AtomicUsize,
}

impl Page {
    /// A page with `retired` of its pids already gone for good.
    fn new(retired: usize) -> Page {
        Page {
            slots: (0..PAGE)
                .map(|_| AtomicPtr::new(std::ptr::null_mut()))
                .collect(),
            retired: AtomicUsize::new(retired),
        }
    }
}

/// Page number → page, for a window of page numbers.
struct Dir {
    /// The page number of `pages[0]`.
    first: u64,
    /// Null where a page does not exist (yet, or any more).
    pages: Box<[Atomic<Page>]>,
}

impl Dir {
    /// Where page number `n` sits in `pages`, if not before the window
    /// (it may lie past the end: the directory has not grown to it yet).
    fn index(&self, n: u64) -> Option<usize> {
        usize::try_from(n.checked_sub(self.first)?).ok()
    }
}

/// A raw process pointer handed to a deferred release.
struct Release(*const Header);
// SAFETY: the pointer stands for a strong reference to a `Send + Sync`
// process, released once on whichever thread runs the deferred function.
unsafe impl Send for Release {}

impl Release {
    /// Gives up the table's strong reference.
    ///
    /// # Safety
    /// Called once per removed process, once no pinned reader can hold it.
    unsafe fn run(self) {
        // SAFETY: the table's strong reference, not yet released, so the
        // process (and the runtime it refers to) is still allocated.
        let task = unsafe { TaskPtr::from_raw(self.0) };
        // Counted before the release, which may free this very table.
        task.header()
            .rt
            .shared
            .table
            .pending
            .fetch_sub(1, Ordering::Relaxed);
        // SAFETY: the table's strong reference, released exactly once.
        unsafe { task.release() }
    }
}

/// Releases a worker thread gathers before handing them to the epoch as
/// one deferred function.
const BATCH: usize = 64;

/// A worker thread's removed processes whose release is not yet deferred.
struct Batch {
    /// Whether this thread batches (a worker, between
    /// [`start_batching`] and [`stop_batching`]).
    on: bool,
    /// The releases gathered so far, fewer than [`BATCH`].
    list: Vec<Release>,
}

crate::loom::thread_local! {
    static RELEASES: RefCell<Batch> = const {
        RefCell::new(Batch { on: false, list: Vec::new() })
    };
}

/// Defers the release of a removed process past every pin that may still
/// see it. On a worker thread the releases go to the epoch in batches of
/// [`BATCH`], one deferred function each, which spares the epoch a bag
/// entry (and, every few dozen, a bag) per process; a batch is handed over
/// when full, at the worker's periodic collection, before it sleeps and
/// when it stops, so the delay stays bounded. Handing it over later than
/// the removal is safe: whoever could see the process was pinned before
/// the removal, so before the deferral too.
fn batch_release(r: Release, guard: &Guard) {
    let mut r = Some(r);
    let _ = RELEASES.try_with(|b| {
        let Ok(mut b) = b.try_borrow_mut() else {
            return;
        };
        if !b.on {
            return;
        }
        b.list.push(r.take().expect("once"));
        if b.list.len() >= BATCH {
            let list = std::mem::replace(&mut b.list, Vec::with_capacity(BATCH));
            drop(b);
            defer_releases(list, guard);
        }
    });
    if let Some(r) = r {
        defer_releases(vec![r], guard);
    }
}

/// Defers the releases in `list` as one function.
fn defer_releases(list: Vec<Release>, guard: &Guard) {
    guard.defer(move || {
        for r in list {
            // SAFETY: each was removed from its table once, and the
            // epoch runs this after every pin that could see it.
            unsafe { r.run() }
        }
    });
}

/// Hands this thread's gathered releases to the epoch.
fn flush_batch(guard: &Guard) {
    let list = RELEASES
        .try_with(|b| b.try_borrow_mut().map(|mut b| std::mem::take(&mut b.list)))
        .ok()
        .and_then(Result::ok);
    if let Some(list) = list.filter(|l| !l.is_empty()) {
        defer_releases(list, guard);
    }
}

/// This thread (a worker) batches its releases until [`stop_batching`].
pub(crate) fn start_batching() {
    let _ = RELEASES.try_with(|b| {
        if let Ok(mut b) = b.try_borrow_mut() {
            b.on = true;
            b.list.reserve(BATCH);
        }
    });
}

/// This thread stops batching; what it gathered goes to the epoch.
pub(crate) fn stop_batching() {
    let _ = RELEASES.try_with(|b| {
        if let Ok(mut b) = b.try_borrow_mut() {
            b.on = false;
        }
    });
    flush_batch(&epoch::pin());
}

/// pid → live process.
pub(crate) struct Table {
    /// The current directory.
    dir: Atomic<Dir>,
    /// Serialises page creation, directory growth and retirement.
    grow: Mutex<()>,
    /// Deferred frees (processes, pages, directories) not yet run. Shared
    /// with the deferred functions of pages and directories, which may run
    /// after the table itself is gone.
    pending: Arc<AtomicUsize>,
}

impl std::fmt::Debug for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Table").field("len", &self.len()).finish()
    }
}

fn split(pid: Pid) -> (u64, usize) {
    (pid.raw() >> PAGE_BITS, (pid.raw() as usize) & (PAGE - 1))
}

impl Table {
    pub(crate) fn new() -> Table {
        Table {
            dir: Atomic::new(Dir {
                first: 0,
                pages: (0..16).map(|_| Atomic::null()).collect(),
            }),
            grow: Mutex::new(()),
            pending: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// The page for page number `n`, if it exists.
    fn page<'g>(&self, n: u64, guard: &'g Guard) -> Option<&'g Page> {
        let dir = self.dir.load(Ordering::Acquire, guard);
        // SAFETY: the directory is only freed deferred, after our pin.
        let dir = unsafe { dir.as_ref() }?;
        let page = dir.pages.get(dir.index(n)?)?.load(Ordering::Acquire, guard);
        // SAFETY: pages are only freed deferred, after our pin.
        unsafe { page.as_ref() }
    }

    /// The page for page number `n`, creating it (and growing the
    /// directory) if needed.
    fn page_or_create<'g>(&self, n: u64, guard: &'g Guard) -> &'g Page {
        if let Some(p) = self.page(n, guard) {
            return p;
        }
        let _lock = self.grow.lock();
        if let Some(p) = self.page(n, guard) {
            return p;
        }
        // Acquire: the directory as built, published by the Release store that
        // installed it.
        let dir_ptr = self.dir.load(Ordering::Acquire, guard);
        // SAFETY: never null; freed only deferred.
        let dir = unsafe { dir_ptr.deref() };
        // Pages are created only for pids not yet gone, so their page was
        // never retired, let alone trimmed.
        let i = dir
            .index(n)
            .expect("a page is created only before it retires");
        if i >= dir.pages.len() {
            let len = (i + 1).next_power_of_two().max(dir.pages.len() * 2);
            let pages: Box<[Atomic<Page>]> = (0..len)
                .map(|j| match dir.pages.get(j) {
                    // Acquire: each page as built (see `page`).
                    Some(a) => Atomic::from(a.load(Ordering::Acquire, guard)),
                    None => Atomic::null(),
                })
                .collect();
            let new = Owned::new(Dir {
                first: dir.first,
                pages,
            });
            // Release: readers that load this directory (Acquire) see its entries.
            self.dir.store(new, Ordering::Release);
            // SAFETY: unlinked; readers pinned now may still hold it.
            unsafe { self.defer_free(dir_ptr, guard) };
        }
        // Acquire: as above.
        let dir = self.dir.load(Ordering::Acquire, guard);
        // SAFETY: as above.
        let dir = unsafe { dir.deref() };
        // Pid 0 is never issued: count it as gone, or page 0 never retires
        // and the directory can never be trimmed.
        let page = Owned::new(Page::new(usize::from(n == 0))).into_shared(guard);
        dir.pages[i].store(page, Ordering::Release);
        // SAFETY: just stored; freed only deferred.
        unsafe { page.deref() }
    }

    /// Inserts process `task` under `pid`; the table now owns its
    /// reference.
    pub(crate) fn insert(&self, pid: Pid, task: OwnedTask) {
        let guard = &epoch::pin();
        let (n, i) = split(pid);
        let page = self.page_or_create(n, guard);
        // Release: a lookup that loads the pointer (Acquire) sees the
        // process as built.
        page.slots[i].store(task.into_raw(), Ordering::Release);
    }

    /// Removes `pid`; true when it was present. The table's reference is
    /// released once no pinned reader can hold it.
    pub(crate) fn remove(&self, pid: Pid) -> bool {
        let guard = &epoch::pin();
        let (n, i) = split(pid);
        let Some(page) = self.page(n, guard) else {
            return false;
        };
        // AcqRel: one remover wins the swap and owns the table's reference;
        // Acquire pairs with the insert's Release store.
        let old = page.slots[i].swap(std::ptr::null_mut(), Ordering::AcqRel);
        if old.is_null() {
            return false;
        }
        self.pending.fetch_add(1, Ordering::Relaxed);
        batch_release(Release(old), guard);
        self.retire_one(n, page, guard);
        true
    }

    fn retire_one(&self, n: u64, page: &Page, guard: &Guard) {
        // AcqRel: the remover that counts the last pid of the page sees every
        // other removal of it, so none of its slots is in use when it retires.
        if page.retired.fetch_add(1, Ordering::AcqRel) + 1 < PAGE {
            return;
        }
        // Every pid of the page is gone for good: unlink and free it.
        let _lock = self.grow.lock();
        let dir_ptr = self.dir.load(Ordering::Acquire, guard);
        // SAFETY: never null; freed only deferred.
        let dir = unsafe { dir_ptr.deref() };
        // A page being retired is in the directory: only retired pages are
        // ever trimmed off its front.
        let i = dir.index(n).expect("a live page is in the directory");
        // The tag marks the entry as retired (not merely not created yet), so
        // that trimming below never drops a page number that may still come.
        // AcqRel: the page taken out here is freed deferred; Acquire sees it as
        // built.
        let old = dir.pages[i].swap(
            epoch::Shared::null().with_tag(RETIRED),
            Ordering::AcqRel,
            guard,
        );
        // SAFETY: unlinked; readers pinned now may still hold it.
        unsafe { self.defer_free(old, guard) };
        // Trim the directory once its front half is retired.
        // Acquire: as in `page`.
        let lead = dir
            .pages
            .iter()
            .take_while(|p| p.load(Ordering::Acquire, guard).tag() == RETIRED)
            .count();
        if lead >= 16 && lead * 2 >= dir.pages.len() {
            // Acquire: as in `page`.
            let pages: Box<[Atomic<Page>]> = dir.pages[lead..]
                .iter()
                .map(|a| Atomic::from(a.load(Ordering::Acquire, guard)))
                .chain((0..lead).map(|_| Atomic::null()))
                .collect();
            let new = Owned::new(Dir {
                first: dir.first + lead as u64,
                pages,
            });
            // Release: as for growth, readers see the trimmed directory's entries.
            self.dir.store(new, Ordering::Release);
            // SAFETY: unlinked; readers pinned now may still hold it.
            unsafe { self.defer_free(dir_ptr, guard) };
        }
    }

    /// Frees `p` (a page or directory, unless null) once no pinned reader
    /// can hold it, counting it as pending meanwhile.
    ///
    /// # Safety
    /// `p` is unlinked from the table and freed by no one else.
    unsafe fn defer_free<T>(&self, p: epoch::Shared<'_, T>, guard: &Guard) {
        if p.is_null() {
            return;
        }
        self.pending.fetch_add(1, Ordering::Relaxed);
        let pending = self.pending.clone();
        // SAFETY: the caller's contract; pages and directories hold only
        // atomics and raw pointers, so freeing them on another thread is
        // fine (`defer_destroy` has the same requirement).
        unsafe {
            guard.defer_unchecked(move || {
                drop(p.into_owned());
                pending.fetch_sub(1, Ordering::Relaxed);
            })
        };
    }

    /// Deferred frees (processes, pages, directories) not yet run.
    pub(crate) fn pending_releases(&self) -> usize {
        self.pending.load(Ordering::Relaxed)
    }

    /// A worker's periodic share of reclamation: moves its pin to the
    /// current epoch, hands its deferred releases to the global queue, lets
    /// the epoch advance, and frees what has expired. One flush frees a
    /// bounded batch, so a backlog (left by a long poll that held the epoch
    /// back) is drained with a few more, as long as they make progress.
    pub(crate) fn collect(&self, guard: &mut Guard) {
        flush_batch(guard);
        guard.repin();
        let mut before = self.pending_releases();
        for _ in 0..8 {
            guard.flush();
            let now = self.pending_releases();
            if now == 0 || now >= before {
                return;
            }
            before = now;
        }
    }

    /// Runs this table's deferred releases: flushes the calling thread's
    /// deferred functions and lets the epoch advance, until none is pending
    /// or `go_on` gives up. `go_on` is asked after each round that freed
    /// nothing, with the number of such rounds in a row: another thread
    /// pinned in an old epoch holds the advance back (and frees them itself
    /// when it next flushes). The caller must not be pinned, or its own pin
    /// holds the epoch back.
    pub(crate) fn reclaim(&self, mut go_on: impl FnMut(u32) -> bool) {
        flush_batch(&epoch::pin());
        let mut stalled = 0;
        let mut before = self.pending_releases();
        while before > 0 {
            epoch::pin().flush();
            let now = self.pending_releases();
            if now < before {
                stalled = 0;
            } else {
                stalled += 1;
                if !go_on(stalled) {
                    return;
                }
            }
            before = now;
        }
    }

    /// Runs `f` on the live process `pid`.
    pub(crate) fn with<R>(&self, pid: Pid, f: impl FnOnce(&TaskPtr) -> R) -> Option<R> {
        let guard = &epoch::pin();
        let (n, i) = split(pid);
        // Acquire: pairs with the insert's Release store: the process as built.
        let ptr = self.page(n, guard)?.slots[i].load(Ordering::Acquire);
        if ptr.is_null() {
            return None;
        }
        // SAFETY: a non-null slot carries the table's strong reference, whose
        // release is deferred past our pin.
        let task = unsafe { TaskPtr::from_raw(ptr) };
        Some(f(&task))
    }

    /// The live process `pid`, as a new reference.
    pub(crate) fn get(&self, pid: Pid) -> Option<TaskRef> {
        self.with(pid, TaskPtr::to_ref)
    }

    pub(crate) fn contains(&self, pid: Pid) -> bool {
        self.with(pid, |_| ()).is_some()
    }

    /// Visits every live process.
    fn for_each(&self, mut f: impl FnMut(Pid, &TaskPtr)) {
        let guard = &epoch::pin();
        // Acquire: as in `page`.
        let dir = self.dir.load(Ordering::Acquire, guard);
        // SAFETY: never null; freed only deferred.
        let dir = unsafe { dir.deref() };
        for (k, p) in dir.pages.iter().enumerate() {
            // SAFETY: pages are freed only deferred.
            let Some(page) = (unsafe { p.load(Ordering::Acquire, guard).as_ref() }) else {
                continue;
            };
            for (j, slot) in page.slots.iter().enumerate() {
                // Acquire: as in `with`.
                let ptr = slot.load(Ordering::Acquire);
                if !ptr.is_null() {
                    let pid = Pid::from_raw(((dir.first + k as u64) << PAGE_BITS) | j as u64);
                    // SAFETY: as in `with`.
                    f(pid, &unsafe { TaskPtr::from_raw(ptr) });
                }
            }
        }
    }

    pub(crate) fn len(&self) -> usize {
        let mut n = 0;
        self.for_each(|_, _| n += 1);
        n
    }

    /// Every live pid, in ascending order.
    pub(crate) fn pids(&self) -> Vec<Pid> {
        let mut v = Vec::new();
        self.for_each(|pid, _| v.push(pid));
        v
    }

    /// Every live process (a snapshot).
    pub(crate) fn tasks(&self) -> Vec<TaskRef> {
        let mut v = Vec::new();
        self.for_each(|_, t| v.push(t.to_ref()));
        v
    }
}

impl Drop for Table {
    fn drop(&mut self) {
        // SAFETY: `&mut self`: no reader is left.
        let guard = unsafe { epoch::unprotected() };
        // `&mut self`: nothing else touches the table; the ordering is moot.
        let dir = self
            .dir
            .swap(epoch::Shared::null(), Ordering::AcqRel, guard);
        // SAFETY: as above; we own the directory now.
        let Some(d) = (unsafe { dir.as_ref() }) else {
            return;
        };
        for p in d.pages.iter() {
            // As above.
            let page = p.swap(epoch::Shared::null(), Ordering::AcqRel, guard);
            // SAFETY: as above.
            if let Some(pg) = unsafe { page.as_ref() } {
                for slot in pg.slots.iter() {
                    // As above.
                    let ptr = slot.swap(std::ptr::null_mut(), Ordering::AcqRel);
                    if !ptr.is_null() {
                        // SAFETY: the table's strong reference, released once.
                        unsafe { TaskPtr::from_raw(ptr).release() };
                    }
                }
                // SAFETY: unlinked; no reader is left.
                drop(unsafe { page.into_owned() });
            }
        }
        // SAFETY: as above.
        drop(unsafe { dir.into_owned() });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::task::Spawning;

    type Idle = std::future::Pending<()>;

    impl Table {
        /// (first page number, directory length, pages present).
        fn window(&self) -> (u64, usize, usize) {
            let guard = &epoch::pin();
            // SAFETY: never null; freed only deferred, after our pin.
            let dir = unsafe { self.dir.load(Ordering::Acquire, guard).deref() };
            let present = dir
                .pages
                .iter()
                .filter(|p| !p.load(Ordering::Acquire, guard).is_null())
                .count();
            (dir.first, dir.pages.len(), present)
        }
    }

    /// A process that never runs, for the table alone.
    fn task(rt: &crate::Runtime, pid: Pid) -> OwnedTask {
        Spawning::<Idle, crate::runtime::RtRef>::new(pid, crate::runtime::RtRef(rt.shared.clone()))
            .to_ref()
            .into_owned()
    }

    /// Pages retire once all their pids are gone (page 0 included, whose
    /// pid 0 is never issued), the directory is trimmed at the front and
    /// never grows past the live window, and lookups of removed,
    /// never-issued and huge pids find nothing.
    #[test]
    fn pages_retire_and_the_directory_trims() {
        // The runtime's own table (a deferred release counts itself off the
        // table of its process's runtime); this runtime spawns nothing.
        let rt = crate::Runtime::builder().workers(1).build_threadless();
        let table = &rt.shared.table;
        // (Fewer rounds under Miri, which runs each insert thousands of
        // times slower; enough for the 16 retired pages a trim waits for.)
        let rounds: u64 = if cfg!(miri) { 24 } else { 200 };
        // One long-lived pid per round of a page, as a sliding window.
        let mut next = 1u64;
        let mut live = std::collections::VecDeque::new();
        for _ in 0..rounds {
            for _ in 0..PAGE {
                let pid = Pid::from_raw(next);
                next += 1;
                table.insert(pid, task(&rt, pid));
                live.push_back(pid);
            }
            while live.len() > 2 * PAGE {
                let pid = live.pop_front().unwrap();
                assert!(table.contains(pid));
                assert!(table.remove(pid));
                assert!(!table.remove(pid), "removed once");
                assert!(table.get(pid).is_none());
            }
        }
        let (first, len, present) = table.window();
        assert!(first > 0, "the front was trimmed (page 0 retired)");
        assert!(len <= 32, "the directory stays small: {len}");
        assert!(present <= 4, "retired pages are unlinked: {present}");
        assert_eq!(table.len(), 2 * PAGE);
        for pid in [0, 1, PAGE as u64, next, next + 1, u64::MAX, u64::MAX >> 1] {
            assert!(table.get(Pid::from_raw(pid)).is_none(), "pid {pid}");
        }
        assert!(table.contains(*live.back().unwrap()));
        for pid in live.drain(..) {
            assert!(table.remove(pid));
        }
        assert_eq!(table.len(), 0);
        // The releases are deferred; run them.
        table.reclaim(|stalled| {
            std::thread::yield_now();
            stalled < 100_000
        });
        assert_eq!(table.pending_releases(), 0);
    }

    /// A batching thread (a worker) holds its releases back only until it
    /// collects, reclaims or stops: then they all go to the epoch and run.
    #[test]
    fn a_batching_thread_hands_its_releases_over() {
        let rt = crate::Runtime::builder().workers(1).build_threadless();
        let table = &rt.shared.table;
        let churn = |from: u64, n: u64| {
            for raw in from..from + n {
                let pid = Pid::from_raw(raw);
                table.insert(pid, task(&rt, pid));
                assert!(table.remove(pid));
            }
        };
        let drain = |table: &Table| {
            for _ in 0..100_000 {
                if table.pending_releases() == 0 {
                    return;
                }
                epoch::pin().flush();
                std::thread::yield_now();
            }
        };
        start_batching();
        churn(1, 10);
        // Gathered, not deferred: advancing the epoch frees none of them.
        for _ in 0..10 {
            epoch::pin().flush();
        }
        assert_eq!(table.pending_releases(), 10);
        table.reclaim(|stalled| {
            std::thread::yield_now();
            stalled < 100_000
        });
        assert_eq!(table.pending_releases(), 0, "reclaim hands the batch over");
        churn(11, 10);
        let mut guard = epoch::pin();
        table.collect(&mut guard);
        drop(guard);
        drain(table);
        assert_eq!(table.pending_releases(), 0, "collect hands the batch over");
        churn(21, 10);
        stop_batching();
        drain(table);
        assert_eq!(table.pending_releases(), 0, "stopping hands the batch over");
        // No longer batching: each release is deferred at once.
        churn(31, 10);
        drain(table);
        assert_eq!(table.pending_releases(), 0);
    }

    /// Concurrent inserts may create page `n + 1` before page `n`: trimming
    /// must never drop a page number that is still to come.
    #[test]
    fn a_page_created_out_of_order_is_not_trimmed_away() {
        // The runtime's own table (a deferred release counts itself off the
        // table of its process's runtime); this runtime spawns nothing.
        let rt = crate::Runtime::builder().workers(1).build_threadless();
        let table = &rt.shared.table;
        let pages: u64 = if cfg!(miri) { 6 } else { 40 };
        // Fill and empty pages 0..pages, except that page `pages` is
        // created (by its last pid) before the page before it is.
        let gap = pages - 1;
        let early = Pid::from_raw(((gap + 1) << PAGE_BITS) | (PAGE as u64 - 1));
        table.insert(early, task(&rt, early));
        for p in 0..pages {
            if p == gap {
                continue;
            }
            for i in 0..PAGE as u64 {
                let pid = Pid::from_raw((p << PAGE_BITS) | i);
                if pid.raw() == 0 {
                    continue;
                }
                table.insert(pid, task(&rt, pid));
                assert!(table.remove(pid));
            }
        }
        // Page `gap` was never created; it comes now.
        let late = Pid::from_raw(gap << PAGE_BITS);
        table.insert(late, task(&rt, late));
        assert!(table.contains(late));
        assert!(table.contains(early));
        assert!(table.remove(late));
        assert!(table.remove(early));
        table.reclaim(|stalled| {
            std::thread::yield_now();
            stalled < 100_000
        });
        assert_eq!(table.pending_releases(), 0);
    }
}
