//! Recycled memory for mailbox nodes, so that a message costs no
//! allocation in the steady state, even when every message crosses cores.
//!
//! A node is allocated by the sender's thread and freed by the receiver's.
//! The system allocator's per-thread caches serve a two-way exchange well,
//! but a one-way flow (many senders, one receiver: `fanin`) empties the
//! senders' caches and overfills the receiver's, and every message then
//! takes the allocator's slow paths on both sides (half the instructions
//! of that workload, measured). So freed nodes are kept here and handed
//! back to whichever thread allocates next, in the shape of a magazine
//! allocator:
//!
//! * each thread keeps up to two *magazines* of free blocks (`cur` and a
//!   full `spare`), intrusive lists of [`BATCH`] blocks at most, touched by
//!   that thread alone, so allocating and freeing are a few instructions;
//! * a thread whose two magazines are full hands a whole one to the shared
//!   depot (one lock per [`BATCH`] frees), and a thread with none left takes
//!   a whole one from it (one lock per [`BATCH`] allocations);
//! * the depot holds at most [`DEPOT_MAX`] magazines; beyond that, and when
//!   a thread ends, blocks go back to the system allocator. What the pool
//!   keeps is bounded: `DEPOT_MAX` × `BATCH` blocks, plus two magazines per
//!   thread.
//!
//! Blocks have one size and alignment, that of a node holding a
//! [`Received`](super::Received); a node that does not fit (only in tests)
//! is allocated as usual. Nothing here is lock-free: the depot is a mutex,
//! the magazines thread-local. Under loom every node is a plain `Box`, so
//! the models see the queue alone.

use std::alloc::Layout;
use std::cell::Cell;
use std::ptr;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Blocks per magazine.
const BATCH: usize = 32;
/// Full magazines the depot keeps at most.
const DEPOT_MAX: usize = 64;

/// The one block layout: room for a node of the runtime's mailboxes.
const BLOCK: Layout = Layout::new::<super::queue::Node<super::Received>>();

/// Whether a `U` fits a block.
const fn fits<U>() -> bool {
    let l = Layout::new::<U>();
    l.size() <= BLOCK.size() && l.align() <= BLOCK.align()
}

/// A free block, linked through its first word.
struct Free {
    next: *mut Free,
}

const _: () = assert!(fits::<Free>());

/// An intrusive list of free blocks, owned by whoever holds it.
struct Magazine {
    head: *mut Free,
}

// SAFETY: a magazine owns its blocks, which are plain memory.
unsafe impl Send for Magazine {}

impl Magazine {
    /// Returns every block to the system allocator.
    fn release(self) {
        let mut p = self.head;
        while !p.is_null() {
            // SAFETY: the magazine owns `p`, a block of layout `BLOCK`.
            let next = unsafe { (*p).next };
            // SAFETY: as above; freed once, after its link was read.
            unsafe { std::alloc::dealloc(p.cast(), BLOCK) };
            p = next;
        }
    }
}

/// Full magazines shared between threads.
static DEPOT: parking_lot::Mutex<Vec<Magazine>> = parking_lot::Mutex::new(Vec::new());
/// How many magazines `DEPOT` holds, written under its lock: a thread
/// that finds none does not take the lock just to see that (a burst of
/// sends with nothing freed yet would take it once per send).
static DEPOT_LEN: AtomicUsize = AtomicUsize::new(0);

/// Returns every magazine the depot holds to the system allocator. Called
/// when a runtime stops, after its workers (whose own magazines go with
/// their threads) are joined, so the memory its messages used goes back
/// with it; threads that still send refill the depot as they free.
pub(crate) fn release_depot() {
    let all = {
        let mut depot = DEPOT.lock();
        DEPOT_LEN.store(0, Ordering::Relaxed);
        std::mem::take(&mut *depot)
    };
    for m in all {
        m.release();
    }
}

/// A thread's two magazines.
struct Cache {
    /// Blocks are taken from and returned to this one.
    cur: Cell<*mut Free>,
    cur_len: Cell<usize>,
    /// A full magazine (`BATCH` blocks), or empty.
    spare: Cell<*mut Free>,
}

impl Drop for Cache {
    fn drop(&mut self) {
        Magazine {
            head: self.cur.get(),
        }
        .release();
        Magazine {
            head: self.spare.get(),
        }
        .release();
    }
}

thread_local! {
    static CACHE: Cache = const {
        Cache {
            cur: Cell::new(ptr::null_mut()),
            cur_len: Cell::new(0),
            spare: Cell::new(ptr::null_mut()),
        }
    };
}

/// Memory for one `U`: a recycled block if `U` fits one, else fresh.
pub(super) fn alloc<U>() -> *mut U {
    if fits::<U>() {
        let p = CACHE.try_with(take).ok().flatten();
        if let Some(p) = p {
            return p.cast();
        }
    }
    let layout = if fits::<U>() {
        BLOCK
    } else {
        Layout::new::<U>()
    };
    // SAFETY: `layout` has a non-zero size (a node holds a pointer).
    let p = unsafe { std::alloc::alloc(layout) };
    if p.is_null() {
        std::alloc::handle_alloc_error(layout);
    }
    p.cast()
}

/// Gives back memory from [`alloc`], for reuse by any thread.
///
/// # Safety
/// `p` came from `alloc::<U>()`, and whatever it held has been moved out
/// or dropped; it is not used again.
pub(super) unsafe fn free<U>(p: *mut U) {
    if !fits::<U>() {
        // SAFETY: allocated with `U`'s own layout (see `alloc`).
        unsafe { std::alloc::dealloc(p.cast(), Layout::new::<U>()) };
        return;
    }
    let p = p.cast::<Free>();
    // A thread whose cache is gone (its thread-locals being destroyed)
    // frees to the system.
    // SAFETY: `p` is a block we own, handed over for good.
    if CACHE.try_with(|c| unsafe { put(c, p) }).is_err() {
        // SAFETY: a block of layout `BLOCK`, ours.
        unsafe { std::alloc::dealloc(p.cast(), BLOCK) };
    }
}

/// A block from this thread's magazines or the depot.
fn take(c: &Cache) -> Option<*mut Free> {
    let mut head = c.cur.get();
    if head.is_null() {
        let spare = c.spare.replace(ptr::null_mut());
        if !spare.is_null() {
            head = spare;
        } else {
            // Relaxed: a stale answer costs one allocation from the system
            // or one look under the lock, never a wrong block.
            if DEPOT_LEN.load(Ordering::Relaxed) == 0 {
                return None;
            }
            let mut depot = DEPOT.lock();
            head = depot.pop()?.head;
            DEPOT_LEN.store(depot.len(), Ordering::Relaxed);
        }
        c.cur_len.set(BATCH);
    }
    // SAFETY: `head` is a free block our magazine owns.
    c.cur.set(unsafe { (*head).next });
    c.cur_len.set(c.cur_len.get() - 1);
    Some(head)
}

/// Puts a block in this thread's magazines, passing a full one on.
///
/// # Safety
/// `p` is a block of layout `BLOCK`, owned by the caller and given up.
unsafe fn put(c: &Cache, p: *mut Free) {
    if c.cur_len.get() == BATCH {
        let full = Magazine {
            head: c.cur.replace(ptr::null_mut()),
        };
        c.cur_len.set(0);
        let spare = c.spare.replace(full.head);
        if !spare.is_null() {
            let full = Magazine { head: spare };
            let mut depot = DEPOT.lock();
            if depot.len() < DEPOT_MAX {
                depot.push(full);
                DEPOT_LEN.store(depot.len(), Ordering::Relaxed);
            } else {
                drop(depot);
                full.release();
            }
        }
    }
    // SAFETY: `p` is ours and large enough for a `Free`.
    unsafe { p.write(Free { next: c.cur.get() }) };
    c.cur.set(p);
    c.cur_len.set(c.cur_len.get() + 1);
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// A block freed is the next one allocated on the same thread, and
    /// more than two magazines' worth freed pass through the depot (its
    /// lock, its bound) without losing or doubling a block: Miri checks
    /// each is freed once and none leaks.
    #[test]
    fn blocks_are_reused_and_pass_through_the_depot() {
        let p = alloc::<[usize; 2]>();
        // SAFETY: allocated above, unused, freed once.
        unsafe { free(p) };
        let q = alloc::<[usize; 2]>();
        assert_eq!(p, q, "the last block freed is the first reused");
        // SAFETY: as above.
        unsafe { free(q) };

        const N: usize = 5 * BATCH;
        let blocks: Vec<*mut [usize; 2]> = (0..N).map(|_| alloc::<[usize; 2]>()).collect();
        for &p in &blocks {
            // SAFETY: allocated above, unused, freed once.
            unsafe { free(p) };
        }
        let again: Vec<*mut [usize; 2]> = (0..N).map(|_| alloc::<[usize; 2]>()).collect();
        for p in again {
            // SAFETY: as above.
            unsafe { free(p) };
        }
        // A node too large for a block is allocated and freed as usual.
        let big = alloc::<[usize; 64]>();
        // SAFETY: as above.
        unsafe { free(big) };
    }

    /// Blocks allocated on one thread and freed on another that then ends
    /// with full magazines: its cache goes back to the system at thread
    /// exit, each block once (Miri reports a leak or a double free).
    #[test]
    fn a_thread_ending_with_full_magazines_frees_them() {
        const N: usize = 3 * BATCH + 5;
        struct Blocks(Vec<*mut [usize; 2]>);
        // SAFETY: plain memory, handed to the other thread for good.
        unsafe impl Send for Blocks {}
        let blocks = Blocks((0..N).map(|_| alloc::<[usize; 2]>()).collect());
        std::thread::spawn(move || {
            let blocks = blocks;
            for p in blocks.0 {
                // SAFETY: allocated above, unused, freed once.
                unsafe { free(p) };
            }
        })
        .join()
        .unwrap();
        // The depot's magazine (if one was passed on) serves this thread.
        let again: Vec<*mut [usize; 2]> = (0..N).map(|_| alloc::<[usize; 2]>()).collect();
        for p in again {
            // SAFETY: as above.
            unsafe { free(p) };
        }
    }
}
