//! Recycled memory for mailbox nodes, so that a message costs no
//! allocation in the steady state, even when every message crosses cores,
//! and a small fraction of one while a backlog builds up.
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
//!   a thread ends, blocks are *released* (below). What the pool keeps is
//!   bounded: `DEPOT_MAX` × `BATCH` blocks, plus two magazines per thread.
//!
//! Recycling cannot serve a backlog: while a receiver falls behind (a
//! thousand senders to one process), nodes are allocated long before any
//! is freed. So blocks are not allocated one by one but carved out of
//! *chunks* of [`CHUNK`] bytes ([`PER_CHUNK`] blocks after a header), as
//! tokio's channel carves its slots out of 32-slot blocks: a thread with
//! no recycled block takes the next one of its own current chunk (a bump
//! of a thread-local pointer), and allocates a new chunk only once per
//! [`PER_CHUNK`] such blocks. A chunk is aligned to its size, so a block
//! finds its chunk's header by masking its address. The header counts the
//! blocks released; the release that completes the count (every block of
//! the chunk handed out and released exactly once) frees the chunk. A
//! block released is never used again, and a block is released only from
//! a place that owns it (a magazine, or the unused rest of a thread's
//! current chunk when the thread ends), so the count reaches
//! [`PER_CHUNK`] exactly once and only when no block is in use: the
//! `AcqRel` of each release orders every use of a block before the free,
//! as an `Arc`'s last drop does. The price: a block still in use (a
//! message left queued, or a block kept in a magazine) keeps its whole chunk
//! allocated.
//!
//! Blocks have one size and alignment, that of a node holding a
//! [`Received`](super::Received); a node that does not fit (only in tests)
//! is allocated as usual. Nothing here is lock-free but the chunk count:
//! the depot is a mutex, the magazines and current chunk thread-local.
//! Under loom every node is a plain `Box`, so the models see the queue
//! alone.

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

/// Bytes of a chunk, and its alignment. Small, because a block still in
/// use or kept in a magazine keeps its whole chunk allocated: the pool's
/// bound in blocks is also its bound in chunks (about 30 blocks a chunk,
/// as tokio's channel has 32 slots a block).
const CHUNK: usize = 1024;
/// Where a chunk's first block starts: the header has a cache line of its
/// own, so releases (by receivers) do not bounce the line a sender writes
/// its first message into.
const HEADER: usize = 64;
/// Blocks per chunk.
const PER_CHUNK: usize = (CHUNK - HEADER) / BLOCK.size();
/// The layout of a chunk.
const CHUNK_LAYOUT: Layout = match Layout::from_size_align(CHUNK, CHUNK) {
    Ok(l) => l,
    Err(_) => panic!("a chunk's layout"),
};

const _: () = assert!(BLOCK.align() <= HEADER && PER_CHUNK >= 16);

/// The start of a chunk: the count of its blocks released.
struct ChunkHeader {
    released: AtomicUsize,
}

const _: () = assert!(std::mem::size_of::<ChunkHeader>() <= HEADER);

/// The header of the chunk `block` was carved from.
fn header_of(block: *mut Free) -> *mut ChunkHeader {
    block.map_addr(|a| a & !(CHUNK - 1)).cast()
}

/// A fresh chunk, none of its blocks handed out or released yet.
fn new_chunk() -> *mut u8 {
    // SAFETY: a non-zero size.
    let c = unsafe { std::alloc::alloc(CHUNK_LAYOUT) };
    if c.is_null() {
        std::alloc::handle_alloc_error(CHUNK_LAYOUT);
    }
    // SAFETY: the header fits at the chunk's start, which is ours.
    unsafe {
        c.cast::<ChunkHeader>().write(ChunkHeader {
            released: AtomicUsize::new(0),
        })
    };
    c
}

/// Block `i` of chunk `c`.
fn block_at(c: *mut u8, i: usize) -> *mut Free {
    // SAFETY: `i < PER_CHUNK`, so the block lies inside the chunk.
    unsafe { c.add(HEADER + i * BLOCK.size()) }.cast()
}

/// Releases `n` blocks of the chunk with header `h`, which the caller owns
/// and never uses again; frees the chunk if these were its last ones.
///
/// # Safety
/// `h` is a chunk's header, and `n` of its blocks (or never handed out
/// slots) are given up for good by the caller.
unsafe fn release_blocks(h: *mut ChunkHeader, n: usize) {
    // AcqRel: every use of the released blocks (on any thread) happens
    // before the free by whoever completes the count.
    // SAFETY: the chunk is alive while any of its blocks is unreleased.
    let prev = unsafe { (*h).released.fetch_add(n, Ordering::AcqRel) };
    debug_assert!(prev + n <= PER_CHUNK);
    if prev + n == PER_CHUNK {
        // SAFETY: every block was released: nobody uses the chunk.
        unsafe { std::alloc::dealloc(h.cast(), CHUNK_LAYOUT) };
    }
}

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
    /// Releases every block (see the module docs), one count per run of
    /// blocks from the same chunk (a magazine is mostly such runs: blocks
    /// come back in about the order they were handed out).
    fn release(self) {
        let mut p = self.head;
        let mut run: (*mut ChunkHeader, usize) = (ptr::null_mut(), 0);
        while !p.is_null() {
            // SAFETY: the magazine owns `p`; its link is read before any
            // release that could free its chunk (its own comes later).
            let next = unsafe { (*p).next };
            let h = header_of(p);
            if h == run.0 {
                run.1 += 1;
            } else {
                if run.1 > 0 {
                    // SAFETY: `run.1` blocks of that chunk, ours, done with.
                    unsafe { release_blocks(run.0, run.1) };
                }
                run = (h, 1);
            }
            p = next;
        }
        if run.1 > 0 {
            // SAFETY: as above.
            unsafe { release_blocks(run.0, run.1) };
        }
    }
}

/// Full magazines shared between threads.
static DEPOT: parking_lot::Mutex<Vec<Magazine>> = parking_lot::Mutex::new(Vec::new());
/// How many magazines `DEPOT` holds, written under its lock: a thread
/// that finds none does not take the lock just to see that (a burst of
/// sends with nothing freed yet would take it once per send).
static DEPOT_LEN: AtomicUsize = AtomicUsize::new(0);

/// Releases every magazine the depot holds. Called when a runtime stops,
/// after its workers (whose own magazines go with their threads) are
/// joined, so the memory its messages used goes back with it; threads that
/// still send refill the depot as they free.
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

/// A thread's two magazines and its current chunk.
struct Cache {
    /// Blocks are taken from and returned to this one.
    cur: Cell<*mut Free>,
    cur_len: Cell<usize>,
    /// A full magazine (`BATCH` blocks), or empty.
    spare: Cell<*mut Free>,
    /// The current chunk (null if none): blocks `carved..PER_CHUNK` of it
    /// are this thread's to hand out. Null again once its last block is
    /// handed out: the thread then owns nothing of it, and the chunk may be
    /// freed by whoever releases its last block.
    chunk: Cell<*mut u8>,
    /// Blocks of `chunk` handed out so far.
    carved: Cell<usize>,
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
        let c = self.chunk.get();
        if !c.is_null() {
            // SAFETY: the blocks never handed out (at least one: a chunk
            // whose last block went is no longer named here) are ours alone.
            unsafe { release_blocks(c.cast(), PER_CHUNK - self.carved.get()) };
        }
    }
}

thread_local! {
    static CACHE: Cache = const {
        Cache {
            cur: Cell::new(ptr::null_mut()),
            cur_len: Cell::new(0),
            spare: Cell::new(ptr::null_mut()),
            chunk: Cell::new(ptr::null_mut()),
            carved: Cell::new(0),
        }
    };
}

/// Memory for one `U`: a recycled block if `U` fits one, else fresh.
pub(super) fn alloc<U>() -> *mut U {
    if fits::<U>() {
        let p = match CACHE.try_with(|c| take(c).unwrap_or_else(|| carve(c))) {
            Ok(p) => p,
            // This thread's cache is gone (its thread-locals are being
            // destroyed): a chunk of its own, all but the block released.
            Err(_) => {
                let c = new_chunk();
                // SAFETY: the other blocks were never handed out.
                unsafe { release_blocks(c.cast(), PER_CHUNK - 1) };
                block_at(c, 0)
            }
        };
        return p.cast();
    }
    let layout = Layout::new::<U>();
    // SAFETY: `layout` has a non-zero size (a node holds a pointer).
    let p = unsafe { std::alloc::alloc(layout) };
    if p.is_null() {
        std::alloc::handle_alloc_error(layout);
    }
    p.cast()
}

/// The next block of this thread's current chunk, starting a new chunk
/// when it is used up.
fn carve(c: &Cache) -> *mut Free {
    let mut chunk = c.chunk.get();
    let mut i = c.carved.get();
    if chunk.is_null() {
        chunk = new_chunk();
        c.chunk.set(chunk);
        i = 0;
    }
    if i + 1 == PER_CHUNK {
        // The last block: from here on its releases alone decide when the
        // chunk goes, so the thread must not name it again.
        c.chunk.set(ptr::null_mut());
    }
    c.carved.set(i + 1);
    block_at(chunk, i)
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
    // releases the block at once.
    // SAFETY: `p` is a block we own, handed over for good.
    if CACHE.try_with(|c| unsafe { put(c, p) }).is_err() {
        // SAFETY: a block of a chunk, ours, not used again.
        unsafe { release_blocks(header_of(p), 1) };
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
            // Relaxed: a stale answer costs one block carved from the
            // current chunk or one look under the lock, never a wrong block.
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
/// `p` is a block of a chunk, owned by the caller and given up.
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

    /// A backlog (blocks allocated with none freed) is carved out of a few
    /// chunks, and every chunk is freed once all its blocks are released,
    /// whatever thread releases them and in whatever order: Miri reports a
    /// leak or a double free.
    #[test]
    fn a_backlog_is_carved_from_chunks_freed_with_their_last_block() {
        const N: usize = 3 * PER_CHUNK + 7;
        struct Blocks(Vec<*mut [usize; 2]>);
        // SAFETY: plain memory, handed to the other thread for good.
        unsafe impl Send for Blocks {}
        let (blocks, chunks) = std::thread::spawn(|| {
            let blocks: Vec<*mut [usize; 2]> = (0..N).map(|_| alloc::<[usize; 2]>()).collect();
            let mut chunks: Vec<_> = blocks.iter().map(|&p| header_of(p.cast())).collect();
            chunks.dedup();
            (Blocks(blocks), chunks.len())
        })
        .join()
        .unwrap();
        // A fresh thread's blocks come from its own chunks, in order (the
        // depot may have served some, from other chunks).
        assert!(chunks <= N / PER_CHUNK + 1 + N / BATCH, "{chunks} chunks");
        // Released newest first, on this thread: the allocating thread has
        // ended, so the rest of its last chunk was released with it.
        for p in blocks.0.into_iter().rev() {
            // SAFETY: allocated above, unused, freed once.
            unsafe { free(p) };
        }
        release_depot();
    }

    /// A thread that hands out the last block of its chunk no longer owns
    /// any of it: once those blocks are all released (here, before the
    /// thread ends) the chunk is freed, and the thread's exit must not
    /// touch it (Miri reports the use after free, glibc a corrupted heap).
    #[test]
    fn a_chunk_used_up_and_released_is_not_touched_at_thread_exit() {
        std::thread::spawn(|| {
            let blocks: Vec<*mut Free> = (0..PER_CHUNK).map(|_| CACHE.with(carve)).collect();
            for p in blocks {
                // SAFETY: carved above, unused, released once.
                unsafe { release_blocks(header_of(p), 1) };
            }
        })
        .join()
        .unwrap();
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
