//! The mailbox queue: a lock-free multi-producer, single-consumer FIFO whose
//! park flag lives in the same word as its head, so that a send and a
//! receiver going to sleep can never miss each other.
//!
//! # Structure
//!
//! * `head` is a Treiber stack of incoming nodes, newest first, published by
//!   producers with one CAS each. When the stack is empty, the word holds one
//!   of the *tags* instead of a pointer: [`EMPTY`], [`PARKED`] (the consumer is
//!   waiting and the owning process must be woken), [`PARKED_FOREIGN`] (the
//!   consumer is waiting under a waker that is not its process's own, kept
//!   beside the queue by the caller) or [`CLOSED`] (the process is gone; every
//!   push fails). Nodes are word-aligned, so no node address equals a tag.
//! * `local` is the consumer's own FIFO, a singly linked list of the same
//!   nodes. The consumer refills it by swapping the whole stack out of `head`
//!   (one atomic) and reversing it onto its tail. Producers never touch it.
//!
//! Each producer's pushes land in the stack in its program order and come
//! out of the reversal in that order, so messages from one sender to one
//! receiver arrive in the order sent.
//!
//! # Why no wakeup is lost
//!
//! The consumer parks only with `compare_exchange(EMPTY, PARKED)` on `head`,
//! which succeeds only while the stack is empty. A producer publishes with a
//! CAS on the same word and reads the old value in that same step. Both are
//! read-modify-writes of one atomic, so they are totally ordered:
//!
//! 1. park before push: the producer's CAS replaces `PARKED` and so learns,
//!    atomically with publishing, that it must wake the consumer ([`Wake`]).
//!    Only that one producer sees the tag, so exactly one wake is owed.
//! 2. push before park: the stack is not empty, the consumer's CAS fails, and
//!    it takes the message instead of sleeping.
//!
//! There is no third order, so no fence argument is needed; the loom model
//! `loom_mailbox` checks it with two producers.
//!
//! # Selective receive
//!
//! [`Queue::find`] scans `local` from a caller-held cursor (the last node it
//! rejected), unlinking the first match. Rejected messages stay in place, in
//! arrival order, and a later call with the same cursor resumes after them,
//! so new arrivals never cause a rescan.

use crate::loom::sync::UnsafeCell;
use crate::loom::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};
use std::ptr;

/// The stack is empty; nobody waits.
const EMPTY: usize = 0;
/// The stack is empty and the consumer waits to be woken by its process waker.
const PARKED: usize = 1;
/// The stack is empty and the consumer waits on a foreign waker.
const PARKED_FOREIGN: usize = 2;
/// The queue is closed for good: pushes fail.
const CLOSED: usize = 3;

fn tag<T>(t: usize) -> *mut Node<T> {
    ptr::without_provenance_mut(t)
}

fn is_node<T>(p: *mut Node<T>) -> bool {
    p.addr() > CLOSED
}

/// One queued value and the link to the next node.
struct Node<T> {
    /// In the stack: the next older node; in `local`: the next newer one.
    next: *mut Node<T>,
    /// The value itself.
    value: T,
}

/// The consumer's FIFO of already-collected nodes.
struct Local<T> {
    /// Oldest node, or null when empty.
    head: *mut Node<T>,
    /// Newest node, or null when empty.
    tail: *mut Node<T>,
}

/// Whom a successful push must wake.
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wake {
    /// The consumer is not parked: nothing to do.
    Nobody,
    /// The consumer was parked on its own process waker: schedule the process.
    Process,
    /// The consumer was parked on a foreign waker kept by the caller.
    Foreign,
}

/// A lock-free MPSC queue with a park flag in its head word.
pub(crate) struct Queue<T> {
    /// Incoming stack, newest first, or a tag (see the module docs).
    head: AtomicPtr<Node<T>>,
    /// Values ever pushed; only ever grows.
    pushed: AtomicUsize,
    /// Values ever taken out by the consumer, which is its only writer.
    taken: AtomicUsize,
    /// The consumer's FIFO; touched only by the single consumer.
    local: UnsafeCell<Local<T>>,
}

// SAFETY: values move between threads (`T: Send`); the stack is shared only
// through atomics, and `local` is touched only by the single consumer, which
// the consumer methods' contracts guarantee.
unsafe impl<T: Send> Send for Queue<T> {}
// SAFETY: as above; `&Queue` permits pushes (atomic) and, under the consumer
// contract, consumer operations from one thread at a time.
unsafe impl<T: Send> Sync for Queue<T> {}

impl<T> std::fmt::Debug for Queue<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue").field("len", &self.len()).finish()
    }
}

impl<T> Queue<T> {
    pub(crate) fn new() -> Self {
        Queue {
            head: AtomicPtr::new(tag(EMPTY)),
            pushed: AtomicUsize::new(0),
            taken: AtomicUsize::new(0),
            local: UnsafeCell::new(Local {
                head: ptr::null_mut(),
                tail: ptr::null_mut(),
            }),
        }
    }

    /// Pushes `value`; gives it back if the queue is closed.
    pub(crate) fn push(&self, value: T) -> Result<Wake, T> {
        let node = Box::into_raw(Box::new(Node {
            next: ptr::null_mut(),
            value,
        }));
        // Count first, so that `len` (pushed - taken) never goes below zero.
        self.pushed.fetch_add(1, Ordering::Relaxed);
        let mut cur = self.head.load(Ordering::Relaxed);
        loop {
            if cur == tag(CLOSED) {
                self.pushed.fetch_sub(1, Ordering::Relaxed);
                // SAFETY: `node` came from `Box::into_raw` and was never published.
                let node = unsafe { Box::from_raw(node) };
                return Err(node.value);
            }
            let next = if is_node(cur) { cur } else { ptr::null_mut() };
            // SAFETY: `node` is still private to this thread.
            unsafe { (*node).next = next };
            // Release: the consumer's Acquire swap must see the node's contents.
            match self
                .head
                .compare_exchange_weak(cur, node, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => {
                    return Ok(match cur.addr() {
                        PARKED => Wake::Process,
                        PARKED_FOREIGN => Wake::Foreign,
                        _ => Wake::Nobody,
                    });
                }
                Err(actual) => cur = actual,
            }
        }
    }

    /// How many values are queued, including those the consumer deferred.
    pub(crate) fn len(&self) -> usize {
        let taken = self.taken.load(Ordering::Relaxed);
        self.pushed.load(Ordering::Relaxed).saturating_sub(taken)
    }

    fn note_taken(&self) {
        // Single writer: a load and a store, no read-modify-write needed.
        let t = self.taken.load(Ordering::Relaxed);
        self.taken.store(t + 1, Ordering::Relaxed);
    }

    /// Moves everything pushed so far onto the tail of the local FIFO.
    ///
    /// # Safety
    /// Only the single consumer may call this, never concurrently.
    unsafe fn refill(&self, local: &mut Local<T>) {
        if !is_node(self.head.load(Ordering::Relaxed)) {
            return;
        }
        // Only the consumer removes nodes, so the stack is still non-empty
        // and the swap cannot erase a park tag. Acquire pairs with the
        // producers' Release CAS.
        let mut stack = self.head.swap(tag(EMPTY), Ordering::Acquire);
        // Reverse the newest-first stack into an oldest-first chain.
        let chain_tail = stack;
        let mut chain_head: *mut Node<T> = ptr::null_mut();
        while !stack.is_null() {
            // SAFETY: every node in the swapped-out stack is now owned by us.
            let next = unsafe { (*stack).next };
            // SAFETY: as above.
            unsafe { (*stack).next = chain_head };
            chain_head = stack;
            stack = next;
        }
        if local.tail.is_null() {
            local.head = chain_head;
        } else {
            // SAFETY: `local.tail` is a live node owned by the consumer.
            unsafe { (*local.tail).next = chain_head };
        }
        local.tail = chain_tail;
    }

    /// Takes the oldest value.
    ///
    /// # Safety
    /// Only the single consumer may call this, never concurrently.
    pub(crate) unsafe fn pop(&self) -> Option<T> {
        self.local.with_mut(|local| {
            // SAFETY: the consumer contract gives us exclusive use of `local`.
            let local = unsafe { &mut *local };
            if local.head.is_null() {
                // SAFETY: forwarded consumer contract.
                unsafe { self.refill(local) };
            }
            let node = local.head;
            if node.is_null() {
                return None;
            }
            // SAFETY: `node` is the live oldest node, owned by the consumer.
            let node = unsafe { Box::from_raw(node) };
            local.head = node.next;
            if local.head.is_null() {
                local.tail = ptr::null_mut();
            }
            self.note_taken();
            Some(node.value)
        })
    }

    /// Selective receive: takes the first value after `cursor` that `pred`
    /// accepts. `cursor` is the last node rejected so far (null to start
    /// from the oldest); it is advanced past everything rejected now.
    ///
    /// # Safety
    /// Only the single consumer may call this, never concurrently; `cursor`
    /// must be null or a node returned through it by an earlier call with no
    /// other consumer operation since.
    pub(crate) unsafe fn find(
        &self,
        cursor: &mut Cursor,
        mut pred: impl FnMut(&T) -> bool,
    ) -> Option<T> {
        self.local.with_mut(|local| {
            // SAFETY: the consumer contract gives us exclusive use of `local`.
            let local = unsafe { &mut *local };
            // SAFETY: forwarded consumer contract.
            unsafe { self.refill(local) };
            let mut prev = cursor.0.cast::<Node<T>>();
            let mut cur = if prev.is_null() {
                local.head
            } else {
                // SAFETY: the cursor is a live node in `local` (contract).
                unsafe { (*prev).next }
            };
            while !cur.is_null() {
                // SAFETY: `cur` is a live node in `local`.
                if pred(unsafe { &(*cur).value }) {
                    // SAFETY: `cur` is live and now unlinked exactly once.
                    let node = unsafe { Box::from_raw(cur) };
                    if prev.is_null() {
                        local.head = node.next;
                    } else {
                        // SAFETY: `prev` is a live node in `local`.
                        unsafe { (*prev).next = node.next };
                    }
                    if local.tail == cur {
                        local.tail = prev;
                    }
                    self.note_taken();
                    return Some(node.value);
                }
                prev = cur;
                // SAFETY: `cur` is a live node in `local`.
                cur = unsafe { (*cur).next };
            }
            cursor.0 = prev.cast();
            None
        })
    }

    /// Tries to park the consumer: succeeds only while no value is waiting
    /// in the stack. `foreign` says which tag to leave (see [`Wake`]).
    /// Returns false when a value arrived first; the caller then retries.
    ///
    /// # Safety
    /// Only the single consumer may call this.
    pub(crate) unsafe fn park(&self, foreign: bool) -> bool {
        let want = tag(if foreign { PARKED_FOREIGN } else { PARKED });
        let mut cur = self.head.load(Ordering::Relaxed);
        loop {
            if is_node(cur) {
                return false;
            }
            if cur == want || cur == tag(CLOSED) {
                return true;
            }
            match self
                .head
                .compare_exchange(cur, want, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(actual) => cur = actual,
            }
        }
    }

    /// Clears a park tag left by a receive that ended without a value (a
    /// timeout, a cancelled future), so no producer wakes the process for it.
    ///
    /// # Safety
    /// Only the single consumer may call this.
    pub(crate) unsafe fn unpark(&self) {
        let cur = self.head.load(Ordering::Relaxed);
        if cur == tag(PARKED) || cur == tag(PARKED_FOREIGN) {
            // Failure means a push replaced the tag: nothing left to clear.
            let _ =
                self.head
                    .compare_exchange(cur, tag(EMPTY), Ordering::Relaxed, Ordering::Relaxed);
        }
    }

    /// Closes the queue for good and drops every queued value; returns how
    /// many there were. Later pushes fail.
    ///
    /// # Safety
    /// Only the single consumer (or whoever has taken over its role, the
    /// process being finished) may call this.
    pub(crate) unsafe fn close(&self) -> usize {
        let stack = self.head.swap(tag(CLOSED), Ordering::Acquire);
        let mut dropped = 0;
        if is_node(stack) {
            // SAFETY: the swapped-out stack is ours alone.
            dropped += unsafe { free_chain(stack) };
        }
        self.local.with_mut(|local| {
            // SAFETY: the consumer contract gives us exclusive use of `local`.
            let local = unsafe { &mut *local };
            // SAFETY: the local chain is owned by the consumer.
            dropped += unsafe { free_chain(local.head) };
            local.head = ptr::null_mut();
            local.tail = ptr::null_mut();
        });
        let t = self.taken.load(Ordering::Relaxed);
        self.taken.store(t + dropped, Ordering::Relaxed);
        dropped
    }

    /// Closes the incoming side only: later pushes fail and everything not
    /// yet collected is dropped; the consumer's list is left to `Drop`.
    /// Safe against a concurrent consumer, which then sees a closed, parked
    /// queue.
    ///
    /// # Safety
    /// Must not run concurrently with another `close`/`close_incoming`.
    pub(crate) unsafe fn close_incoming(&self) -> usize {
        let stack = self.head.swap(tag(CLOSED), Ordering::Acquire);
        if is_node(stack) {
            // SAFETY: the swapped-out stack is ours alone.
            let n = unsafe { free_chain(stack) };
            self.taken.fetch_add(n, Ordering::Relaxed);
            n
        } else {
            0
        }
    }
}

/// Frees a null-terminated chain of nodes, returning how many there were.
///
/// # Safety
/// The caller owns every node of the chain.
unsafe fn free_chain<T>(mut node: *mut Node<T>) -> usize {
    let mut n = 0;
    while !node.is_null() {
        // SAFETY: owned by the caller, freed once.
        let b = unsafe { Box::from_raw(node) };
        node = b.next;
        n += 1;
    }
    n
}

impl<T> Drop for Queue<T> {
    fn drop(&mut self) {
        // SAFETY: `&mut self`: no producer or consumer is left.
        unsafe { self.close() };
    }
}

/// Where a selective receive stopped scanning: the last rejected node.
#[derive(Debug)]
pub(crate) struct Cursor(*mut ());

// SAFETY: the cursor is only an address, dereferenced solely by the consumer
// under `Queue::find`'s contract.
unsafe impl Send for Cursor {}
// SAFETY: as above.
unsafe impl Sync for Cursor {}

impl Cursor {
    pub(crate) const fn start() -> Cursor {
        Cursor(ptr::null_mut())
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn fifo_and_len() {
        let q = Queue::new();
        for i in 0..10 {
            assert_eq!(q.push(i), Ok(Wake::Nobody));
        }
        assert_eq!(q.len(), 10);
        for i in 0..10 {
            // SAFETY: single-threaded test, one consumer.
            assert_eq!(unsafe { q.pop() }, Some(i));
        }
        // SAFETY: as above.
        assert_eq!(unsafe { q.pop() }, None);
        assert_eq!(q.len(), 0);
    }

    #[test]
    fn park_then_push_owes_one_wake() {
        let q = Queue::new();
        // SAFETY: single-threaded test, one consumer.
        assert!(unsafe { q.park(false) });
        assert_eq!(q.push(1), Ok(Wake::Process));
        assert_eq!(q.push(2), Ok(Wake::Nobody));
        // SAFETY: as above.
        assert!(!unsafe { q.park(false) });
        // SAFETY: as above.
        assert!(unsafe { q.park(true) } || unsafe { q.pop() }.is_some());
    }

    #[test]
    fn selective_find_keeps_the_rest_in_order() {
        let q = Queue::new();
        for i in 0..6 {
            let _ = q.push(i);
        }
        let mut cursor = Cursor::start();
        // SAFETY: single-threaded test, one consumer, cursor used as contracted.
        assert_eq!(unsafe { q.find(&mut cursor, |v| *v == 4) }, Some(4));
        let mut cursor = Cursor::start();
        // SAFETY: as above.
        assert_eq!(unsafe { q.find(&mut cursor, |v| *v == 9) }, None);
        let _ = q.push(9);
        let mut seen = 0;
        // SAFETY: as above; the cursor is reused after only pushes.
        let got = unsafe {
            q.find(&mut cursor, |v| {
                seen += 1;
                *v == 9
            })
        };
        assert_eq!(got, Some(9));
        assert_eq!(seen, 1, "deferred messages are not rescanned");
        // SAFETY: single-threaded test, one consumer.
        let rest: Vec<_> = std::iter::from_fn(|| unsafe { q.pop() }).collect();
        assert_eq!(rest, vec![0, 1, 2, 3, 5]);
    }

    #[test]
    fn closed_queue_rejects_and_drops() {
        let q = Queue::new();
        let _ = q.push(String::from("a"));
        // SAFETY: single-threaded test.
        assert_eq!(unsafe { q.close() }, 1);
        assert_eq!(q.push(String::from("b")), Err(String::from("b")));
        assert_eq!(q.len(), 0);
    }
}

#[cfg(all(test, loom))]
mod loom_mailbox {
    use super::*;
    use crate::loom::sync::Arc;
    use crate::scheduler::park::Parker;

    /// Two producers (one sending two values) and a consumer that parks
    /// whenever the queue is empty: every value arrives, each producer's
    /// in order, and a parked consumer is always woken (a lost wake would
    /// leave it parked forever, which loom reports as a deadlock).
    #[test]
    fn push_pop_park_wake_two_producers() {
        loom::model(|| {
            let q = Arc::new(Queue::new());
            let parker = Arc::new(Parker::new());
            let producers: Vec<_> = [vec![10u32, 11], vec![20]]
                .into_iter()
                .map(|values| {
                    let (q, parker) = (q.clone(), parker.clone());
                    loom::thread::spawn(move || {
                        for v in values {
                            if q.push(v) == Ok(Wake::Process) {
                                parker.unpark();
                            }
                        }
                    })
                })
                .collect();
            let mut got = Vec::new();
            while got.len() < 3 {
                // SAFETY: this thread is the only consumer.
                if let Some(v) = unsafe { q.pop() } {
                    got.push(v);
                    continue;
                }
                // SAFETY: as above.
                if unsafe { q.park(false) } {
                    parker.park(None);
                }
            }
            for p in producers {
                p.join().unwrap();
            }
            let first: Vec<_> = got.iter().filter(|v| **v < 20).copied().collect();
            assert_eq!(first, vec![10, 11], "one producer's values stay in order");
            assert_eq!(q.len(), 0);
        });
    }

    /// A push racing with close either lands before the close (and is
    /// dropped by it) or is refused: never both, never lost silently.
    #[test]
    fn push_racing_close_is_counted_once() {
        loom::model(|| {
            let q = Arc::new(Queue::new());
            let q2 = q.clone();
            let t = loom::thread::spawn(move || q2.push(1u32).is_ok());
            // SAFETY: this thread is the only consumer.
            let dropped = unsafe { q.close() };
            let accepted = t.join().unwrap();
            assert_eq!(dropped, usize::from(accepted));
        });
    }
}
