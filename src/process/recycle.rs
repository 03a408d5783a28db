//! Task memory recycling: a worker keeps the allocations of processes it
//! released and the next spawn on that worker of a task of the same size
//! and alignment reuses one instead of asking the allocator.
//!
//! # Why
//!
//! The memory of an ended process comes back through the epoch (see
//! [`super::table`]), in batches, on whichever worker collects: hundreds
//! of frees of one size at a time overflow the allocator's thread cache and
//! take its slow paths, and so do the spawns that allocate again. Keeping a
//! few of those blocks per worker turns a free and a malloc into two list
//! operations.
//!
//! # What may be reused, and when
//!
//! A block enters the cache only from the release of a task's *last*
//! reference (`super::task`'s vtable `dealloc`, handing over the `Box`):
//! that is exactly where the allocation would otherwise be handed back to
//! the allocator, which could give the same address to the next spawn just
//! as well. So nothing can still see it: no handle, waker or `Context`
//! holds a reference; the table's reference was the one released, after the
//! epoch saw every pin that could have read its slot end; and a run-queue
//! entry exists only for a process in the table (see `task::Notified`). The
//! task is dropped in place first (its `Drop` and its fields', as a plain
//! release would), so reuse runs no destructor twice and skips none.
//!
//! A block is reused through `Box::from_raw` for a type of the same size
//! and alignment, which is the layout the allocator saw. Every block is
//! finally freed through the same route with a `ManuallyDrop` type of
//! that layout, so the allocator gets it back with the layout it was
//! allocated with.
//!
//! # Bounds: the memory still comes back
//!
//! Only worker threads cache (between [`start`] and [`stop`], set by the
//! worker loop), at most [`BUCKETS`] layouts of at most [`MAX_BLOCK`] bytes,
//! and at most [`MAX_BYTES`] bytes in all: beyond that a block is freed as
//! before. A worker that has slept a few milliseconds trims its cache to
//! [`IDLE_BYTES`], so a runtime at rest holds little of its ended
//! processes' memory whatever the last burst was (one woken more often
//! than that is not at rest, and keeps up to [`MAX_BYTES`]). So the cache
//! holds a bounded amount per worker whatever the churn, and a worker that
//! stops (the runtime's stop joins them all) frees everything it kept
//! before it exits. Everything here is thread-local: no
//! other thread ever sees a cached block, so there is no concurrency to
//! model.

use std::alloc::Layout;
use std::cell::{Cell, RefCell};
use std::mem::ManuallyDrop;

/// Layouts a worker caches at once.
const BUCKETS: usize = 4;
/// The largest block cached (larger futures are rare, and costly to keep).
const MAX_BLOCK: usize = 4096;
/// Bytes a worker keeps cached at most, over all its buckets.
const MAX_BYTES: usize = 256 * 1024;
/// Bytes a worker keeps cached once it has slept a while (see [`trim`]).
pub(crate) const IDLE_BYTES: usize = 16 * 1024;

/// A cached block: a leaked `Box`'s allocation whose value has been
/// dropped. Its first word links to the next block of its bucket.
type Block = *mut u8;

/// Blocks of one layout.
struct Bucket {
    /// The layout (`Layout::new::<T>()` of the `Box`'s value); size 0 while
    /// the bucket is unused.
    layout: Layout,
    /// Frees a block of this layout (see [`free`]).
    free: unsafe fn(Block),
    /// The first block, or null.
    head: Block,
    /// Blocks in the list.
    len: usize,
}

impl Bucket {
    const EMPTY: Bucket = Bucket {
        layout: Layout::new::<()>(),
        free: free::<()>,
        head: std::ptr::null_mut(),
        len: 0,
    };

    /// Unlinks the first block, if any (the caller accounts its bytes).
    fn pop(&mut self) -> Option<Block> {
        if self.head.is_null() {
            return None;
        }
        let block = self.head;
        // SAFETY: a cached block's first word links to the next (written
        // by `keep`), and it is ours alone.
        self.head = unsafe { block.cast::<Block>().read() };
        self.len -= 1;
        Some(block)
    }
}

/// One worker's cache. The two plain cells let a thread that caches
/// nothing (or holds nothing) decide with one thread-local read.
struct Cache {
    /// Whether this thread caches (a running worker).
    on: Cell<bool>,
    /// Bytes held in all buckets.
    bytes: Cell<usize>,
    buckets: RefCell<[Bucket; BUCKETS]>,
}

crate::loom::thread_local! {
    static CACHE: Cache = const {
        Cache {
            on: Cell::new(false),
            bytes: Cell::new(0),
            buckets: RefCell::new([Bucket::EMPTY; BUCKETS]),
        }
    };
}

/// Frees block `b` of a `T`-sized allocation without dropping its value.
///
/// # Safety
/// `b` is a cached block whose layout is `Layout::new::<T>()`.
unsafe fn free<T>(b: Block) {
    // SAFETY: a block is the allocation of a `Box` of a type with the layout
    // of `T` (so of `ManuallyDrop<T>`), ours alone; `ManuallyDrop` drops
    // nothing of the dead value.
    drop(unsafe { Box::from_raw(b.cast::<ManuallyDrop<T>>()) });
}

/// Whether blocks of `layout` are worth caching at all.
fn cacheable(layout: Layout) -> bool {
    layout.size() <= MAX_BLOCK
        && layout.size() >= std::mem::size_of::<Block>()
        && layout.align() >= std::mem::align_of::<Block>()
}

/// This thread (a worker) caches from now on.
pub(crate) fn start() {
    let _ = CACHE.try_with(|c| c.on.set(true));
}

/// This thread stops caching and frees every block it holds.
pub(crate) fn stop() {
    let _ = CACHE.try_with(|c| c.on.set(false));
    trim(0);
}

/// Bytes this thread holds cached.
pub(crate) fn held_bytes() -> usize {
    CACHE.try_with(|c| c.bytes.get()).unwrap_or(0)
}

/// Frees cached blocks until this thread holds at most `keep` bytes. A
/// worker that has slept a while trims its cache, so that a runtime at
/// rest holds little of its ended processes' memory, as it holds none of
/// their deferred frees; the next burst fills it again.
pub(crate) fn trim(keep: usize) {
    let _ = CACHE.try_with(|c| {
        if c.bytes.get() <= keep {
            return;
        }
        let Ok(mut buckets) = c.buckets.try_borrow_mut() else {
            return;
        };
        for b in buckets.iter_mut() {
            while c.bytes.get() > keep {
                let Some(block) = b.pop() else { break };
                c.bytes.set(c.bytes.get() - b.layout.size());
                // SAFETY: a block of this bucket's layout.
                unsafe { (b.free)(block) };
            }
            if b.len == 0 {
                *b = Bucket::EMPTY;
            }
        }
    });
}

/// Blocks this thread holds (for tests).
#[cfg(test)]
fn held() -> usize {
    CACHE.with(|c| c.buckets.borrow().iter().map(|b| b.len).sum())
}

/// Takes a cached block of `layout`, if this thread holds one.
#[inline]
fn take(layout: Layout) -> Option<Block> {
    CACHE
        .try_with(|c| {
            if c.bytes.get() == 0 {
                return None;
            }
            let mut buckets = c.buckets.try_borrow_mut().ok()?;
            let b = buckets
                .iter_mut()
                .find(|b| b.layout == layout && b.len > 0)?;
            let block = b.pop()?;
            c.bytes.set(c.bytes.get() - layout.size());
            Some(block)
        })
        .ok()
        .flatten()
}

/// A new `Box` holding the value `make` returns, in a recycled block when
/// this thread has one of `T`'s layout. (`make` rather than a value, so
/// that the usual path stays `Box::new(make())`, built in place.)
#[inline(always)]
pub(crate) fn boxed<T>(make: impl FnOnce() -> T) -> Box<T> {
    let layout = Layout::new::<T>();
    let block = if cacheable(layout) {
        take(layout)
    } else {
        None
    };
    match block {
        Some(block) => {
            let p = block.cast::<T>();
            // SAFETY: the block is a `Box` allocation for a value of `T`'s
            // size and alignment, its old value dropped and no one else able
            // to reach it (module docs); writing the new value makes it a
            // live `Box<T>` with the layout the allocator gave it.
            unsafe {
                p.write(make());
                Box::from_raw(p)
            }
        }
        None => Box::new(make()),
    }
}

/// Keeps `block` (of `layout`, freed by `free`) if this thread caches and
/// has room; false otherwise.
fn keep(block: Block, layout: Layout, free: unsafe fn(Block)) -> bool {
    CACHE
        .try_with(|c| {
            if !c.on.get() || c.bytes.get() + layout.size() > MAX_BYTES {
                return false;
            }
            let Ok(mut buckets) = c.buckets.try_borrow_mut() else {
                return false;
            };
            let i = match buckets.iter().position(|b| b.layout == layout) {
                Some(i) => i,
                None => match buckets.iter().position(|b| b.len == 0) {
                    Some(i) => {
                        buckets[i] = Bucket {
                            layout,
                            free,
                            head: std::ptr::null_mut(),
                            len: 0,
                        };
                        i
                    }
                    None => return false,
                },
            };
            let b = &mut buckets[i];
            // SAFETY: the block is ours (its value dropped) and at least a
            // word in size and alignment (`cacheable`).
            unsafe { block.cast::<Block>().write(b.head) };
            b.head = block;
            b.len += 1;
            c.bytes.set(c.bytes.get() + layout.size());
            true
        })
        .unwrap_or(false)
}

/// Whether this thread caches now and has room for a block of `layout`
/// (a full cache leaves the release to `drop`).
#[inline]
fn has_room(layout: Layout) -> bool {
    CACHE
        .try_with(|c| c.on.get() && c.bytes.get() + layout.size() <= MAX_BYTES)
        .unwrap_or(false)
}

/// Drops the value of `b` in place and, on a caching thread with room,
/// keeps the block for reuse; otherwise this is `drop(b)`.
pub(crate) fn release<T>(b: Box<T>) {
    let layout = Layout::new::<T>();
    if !cacheable(layout) || !has_room(layout) {
        drop(b);
        return;
    }
    let p = Box::into_raw(b);
    // Should the value's destructor unwind, the block is freed (without
    // dropping the value again) rather than leaked or cached half-dropped.
    struct FreeOnUnwind(Block, unsafe fn(Block));
    impl Drop for FreeOnUnwind {
        fn drop(&mut self) {
            // SAFETY: the block of the `Box` being released, freed once.
            unsafe { (self.1)(self.0) }
        }
    }
    let unwinding = FreeOnUnwind(p.cast(), free::<T>);
    // SAFETY: the `Box` was ours, so the value is ours to drop, once; the
    // block stays allocated.
    unsafe { std::ptr::drop_in_place(p) };
    std::mem::forget(unwinding);
    let block: Block = p.cast();
    let kept = keep(block, layout, free::<T>);
    if !kept {
        // SAFETY: the block of a `Box<T>`, its value dropped.
        unsafe { free::<T>(block) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    static DROPS: AtomicUsize = AtomicUsize::new(0);

    /// Its fields only give it a size.
    #[allow(dead_code)]
    struct A(u64, [u64; 3]);
    impl Drop for A {
        fn drop(&mut self) {
            DROPS.fetch_add(1, Ordering::Relaxed);
        }
    }
    /// Same size and alignment as `A`, another type.
    struct B(std::sync::atomic::AtomicU64, [u64; 3]);

    /// A released block is reused by a value of another type of the same
    /// layout, each value is dropped once, and stopping frees them all (Miri
    /// checks leaks and reuse).
    #[test]
    fn a_block_comes_back_for_the_same_layout_and_goes_at_stop() {
        start();
        let a = Box::new(A(7, [1, 2, 3]));
        let addr = std::ptr::from_ref(&*a) as usize;
        release(a);
        assert_eq!(DROPS.load(Ordering::Relaxed), 1, "dropped once, in place");
        assert_eq!(held(), 1);
        let b = boxed(|| B(std::sync::atomic::AtomicU64::new(5), [4, 5, 6]));
        assert_eq!(
            std::ptr::from_ref(&*b) as usize,
            addr,
            "the block was reused"
        );
        assert_eq!(held(), 0);
        b.0.store(9, Ordering::Relaxed);
        assert_eq!(b.0.load(Ordering::Relaxed) + b.1[2], 15);
        release(b);
        assert_eq!(held(), 1);
        for _ in 0..3 {
            release(Box::new(A(0, [0; 3])));
        }
        assert_eq!(held(), 4);
        stop();
        assert_eq!(held(), 0);
        assert_eq!(DROPS.load(Ordering::Relaxed), 4);
        // Not caching any more: a release frees at once.
        release(Box::new(B(std::sync::atomic::AtomicU64::new(0), [0; 3])));
        assert_eq!(held(), 0);
    }

    /// A trim across two layouts frees whole blocks, first bucket first,
    /// until at most the bytes asked for are held, and keeps the rest
    /// usable.
    #[test]
    fn a_trim_across_layouts_keeps_what_was_asked() {
        start();
        for _ in 0..4 {
            release(Box::new([0u64; 8]));
            release(Box::new([0u64; 16]));
        }
        assert_eq!(held(), 8);
        assert_eq!(held_bytes(), 4 * (64 + 128));
        trim(3 * 128);
        assert!(held_bytes() <= 3 * 128, "{} bytes held", held_bytes());
        assert_eq!(
            held_bytes(),
            CACHE.with(|c| c
                .buckets
                .borrow()
                .iter()
                .map(|b| b.len * b.layout.size())
                .sum::<usize>()),
            "the byte count matches the blocks held"
        );
        let kept = held();
        assert!(kept > 0, "not everything was freed");
        drop(boxed(|| [1u64; 16]));
        stop();
        assert_eq!(held(), 0);
        assert_eq!(held_bytes(), 0);
    }

    /// The cache never holds more than its byte bound.
    #[test]
    fn the_cache_is_bounded() {
        start();
        let n = MAX_BYTES / std::mem::size_of::<[u64; 32]>() + 10;
        let blocks: Vec<_> = (0..n).map(|_| Box::new([0u64; 32])).collect();
        for b in blocks {
            release(b);
        }
        assert_eq!(held(), MAX_BYTES / std::mem::size_of::<[u64; 32]>());
        trim(10 * std::mem::size_of::<[u64; 32]>());
        assert_eq!(held(), 10, "trimmed to what was asked");
        stop();
        assert_eq!(held(), 0);
    }
}
