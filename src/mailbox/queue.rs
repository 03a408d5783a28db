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
//!   nodes. The consumer refills it by taking the whole stack out of `head`
//!   (one CAS) and reversing it onto its tail. Producers never touch it.
//! * `ends` records which of the two parties that can end the queue's use
//!   have done so: the consumer giving up its role ([`CONSUMER_GONE`]) and
//!   the close ([`CLOSE_DONE`]). It decides who frees `local`.
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
//! # Closing while the consumer runs
//!
//! The consumer normally lives inside the process, and the process's
//! teardown closes the queue after the consumer is gone. But the consumer
//! (the process's `Context`) is `Send`: a body may move it to another
//! thread, which may go on receiving while the process is torn down. So
//! [`Queue::close`] must be safe against a consumer running at the same
//! time, and it is, by two rules:
//!
//! * **Every write to `head` is a read-modify-write that names the value it
//!   replaces.** Producers CAS from what they read; the consumer takes the
//!   stack with `CAS(stack → EMPTY)`, parks with `CAS(EMPTY → PARKED)` and
//!   unparks with `CAS(PARKED → EMPTY)`; only the close writes blindly, with
//!   `swap(CLOSED)`. None of the CASes expects `CLOSED`, so once the close
//!   has landed `head` stays `CLOSED` for good and every push fails; and a
//!   stack is taken by exactly one RMW, the consumer's or the close's, never
//!   both. Nor is there ABA on the consumer's CAS: between its load and its
//!   CAS only the close can take the stack (there is one consumer), and
//!   after the close no node enters the stack again, so `head` cannot come
//!   back to the node the consumer loaded.
//! * **`local` is freed by whichever side lets go last.** The close never
//!   touches `local` while the consumer exists. Each side sets its bit of
//!   `ends` with one `fetch_or` and reads the other's in the same step;
//!   exactly one of them sees both bits set and frees `local`. AcqRel on both
//!   makes the consumer's last use of `local` happen before a free by the
//!   close. A consumer outliving the close gets the values back from
//!   [`Queue::release_consumer`] and frees them itself.
//!
//! After the close, a receive ends at once instead of waiting on a queue no
//! push can reach: [`Queue::pop`] and [`Queue::find`] return nothing (the
//! consumer checks `ends`, then `head` on refill), and [`Queue::park`]
//! returns [`Park::Closed`]. A consumer already parked under a foreign
//! waker when the close lands is woken by the close's caller
//! ([`Closed::wake_foreign`]); one parked under its own process waker needs
//! no wake, since that process is the one being torn down.
//!
//! The loom models `pop_racing_close` (the first rule),
//! `consumer_leaving_racing_close` (the second) and
//! `receive_racing_send_and_close` (no receive left waiting) check this.
//!
//! # Who drops queued values
//!
//! The queue never drops a value itself while the runtime runs: [`Closed`]
//! and [`Queue::release_consumer`] hand the values over as a [`Drain`], so
//! the caller can run each destructor under a panic guard. `Drop` for the
//! queue only frees what the runtime never closed (the queue of a process
//! whose spawn closure panicked before it could run).
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
/// The queue is closed for good: pushes fail. Never replaced once set.
const CLOSED: usize = 3;

/// `ends` bit: the consumer has given up its role; it touches nothing more.
const CONSUMER_GONE: usize = 1;
/// `ends` bit: the queue is closed; set right after `head` became [`CLOSED`].
const CLOSE_DONE: usize = 2;

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

impl<T> Local<T> {
    /// Takes the whole FIFO, leaving it empty.
    fn take(&mut self) -> Drain<T> {
        let head = std::mem::replace(&mut self.head, ptr::null_mut());
        self.tail = ptr::null_mut();
        Drain { next: head }
    }
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

/// What an attempt to park the consumer found.
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Park {
    /// Parked: the next push wakes the consumer.
    Parked,
    /// A value arrived first: take it instead.
    Arrived,
    /// The queue is closed: nothing will ever arrive.
    Closed,
}

/// What [`Queue::close`] hands its caller.
#[must_use]
#[derive(Debug)]
pub(crate) struct Closed<T> {
    /// The values the close now owns: everything not yet collected, and the
    /// consumer's FIFO too if the consumer was already gone.
    pub(crate) values: Drain<T>,
    /// The consumer was parked under a foreign waker: the caller must wake
    /// it, or its receive would wait forever on a closed queue.
    pub(crate) wake_foreign: bool,
}

/// Owned values taken out of a queue, oldest first. Dropping it drops the
/// values left in it; iterate to drop each one where the caller chooses.
pub(crate) struct Drain<T> {
    /// The next node, or null; owned by the drain, linked by `next`.
    next: *mut Node<T>,
}

// SAFETY: the drain owns its nodes and their values (`T: Send`).
unsafe impl<T: Send> Send for Drain<T> {}

impl<T> std::fmt::Debug for Drain<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Drain")
            .field("empty", &self.next.is_null())
            .finish()
    }
}

impl<T> Iterator for Drain<T> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        if self.next.is_null() {
            return None;
        }
        // SAFETY: the drain owns the chain; each node is unlinked and freed
        // once, before its value is handed out (a panicking destructor of
        // that value leaves the drain intact).
        let node = unsafe { Box::from_raw(self.next) };
        self.next = node.next;
        Some(node.value)
    }
}

impl<T> Drop for Drain<T> {
    fn drop(&mut self) {
        for value in self.by_ref() {
            drop(value);
        }
    }
}

/// A lock-free MPSC queue with a park flag in its head word.
pub(crate) struct Queue<T> {
    /// Incoming stack, newest first, or a tag (see the module docs).
    head: AtomicPtr<Node<T>>,
    /// Values ever pushed; only ever grows.
    pushed: AtomicUsize,
    /// Values ever taken out by the consumer, which is its only writer.
    taken: AtomicUsize,
    /// [`CONSUMER_GONE`] and [`CLOSE_DONE`]: who has let go of the queue.
    ends: AtomicUsize,
    /// The consumer's FIFO; touched only by the single consumer, or by the
    /// close once the consumer is gone (see `ends`).
    local: UnsafeCell<Local<T>>,
}

// SAFETY: values move between threads (`T: Send`); the stack is shared only
// through atomics, and `local` is touched only by the single consumer (the
// consumer methods' contracts) or, once `ends` says the consumer is gone, by
// the close.
unsafe impl<T: Send> Send for Queue<T> {}
// SAFETY: as above; `&Queue` permits pushes (atomic), the close (once), and,
// under the consumer contract, consumer operations from one thread at a time.
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
            ends: AtomicUsize::new(0),
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
            // Release: the consumer's Acquire CAS must see the node's contents.
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

    /// How many values are queued, including those the consumer deferred;
    /// none once the queue is closed.
    pub(crate) fn len(&self) -> usize {
        if self.is_closed() {
            return 0;
        }
        let taken = self.taken.load(Ordering::Relaxed);
        self.pushed.load(Ordering::Relaxed).saturating_sub(taken)
    }

    /// Whether the close has completed. Relaxed: whoever has seen the end of
    /// the process by other means (its exit reason, Acquire) also sees this.
    fn is_closed(&self) -> bool {
        self.ends.load(Ordering::Relaxed) & CLOSE_DONE != 0
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
        let mut cur = self.head.load(Ordering::Relaxed);
        // Take the stack with a CAS that names it, never a blind swap: the
        // close may take it (and leave `CLOSED`) between our load and our
        // write, and `CLOSED` must never be overwritten. Acquire pairs with
        // the producers' Release CAS.
        let stack = loop {
            if !is_node(cur) {
                return;
            }
            match self
                .head
                .compare_exchange(cur, tag(EMPTY), Ordering::Acquire, Ordering::Relaxed)
            {
                Ok(stack) => break stack,
                Err(actual) => cur = actual,
            }
        };
        // SAFETY: every node in the taken stack is now owned by us.
        let (chain_head, chain_tail) = unsafe { reverse(stack) };
        if local.tail.is_null() {
            local.head = chain_head;
        } else {
            // SAFETY: `local.tail` is a live node owned by the consumer.
            unsafe { (*local.tail).next = chain_head };
        }
        local.tail = chain_tail;
    }

    /// Takes the oldest value; nothing once the queue is closed.
    ///
    /// # Safety
    /// Only the single consumer may call this, never concurrently.
    pub(crate) unsafe fn pop(&self) -> Option<T> {
        if self.is_closed() {
            return None;
        }
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
    /// accepts; nothing once the queue is closed. `cursor` is the last node
    /// rejected so far (null to start from the oldest); it is advanced past
    /// everything rejected now.
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
        if self.is_closed() {
            return None;
        }
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
    ///
    /// # Safety
    /// Only the single consumer may call this.
    pub(crate) unsafe fn park(&self, foreign: bool) -> Park {
        // Agree with `pop`/`find`, which return nothing once they see the
        // close in `ends`: a stale look at `head` must not answer `Arrived`
        // to a consumer that will never be given the value.
        if self.is_closed() {
            return Park::Closed;
        }
        let want = tag(if foreign { PARKED_FOREIGN } else { PARKED });
        let mut cur = self.head.load(Ordering::Relaxed);
        loop {
            if is_node(cur) {
                return Park::Arrived;
            }
            if cur == tag(CLOSED) {
                return Park::Closed;
            }
            if cur == want {
                return Park::Parked;
            }
            match self
                .head
                .compare_exchange(cur, want, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return Park::Parked,
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
            // Failure means a push or the close replaced the tag: nothing
            // left to clear (and `CLOSED` must stay).
            let _ =
                self.head
                    .compare_exchange(cur, tag(EMPTY), Ordering::Relaxed, Ordering::Relaxed);
        }
    }

    /// Closes the queue for good: later pushes fail, a concurrent or later
    /// receive ends at once. Hands over every value the close now owns (see
    /// the module docs for the consumer's FIFO).
    ///
    /// # Safety
    /// Called at most once per queue.
    pub(crate) unsafe fn close(&self) -> Closed<T> {
        // Acquire: we take the stack, so we must see the nodes' contents.
        let old = self.head.swap(tag(CLOSED), Ordering::Acquire);
        let stack_head = if is_node(old) {
            // SAFETY: the swapped-out stack is ours alone.
            unsafe { reverse(old) }.0
        } else {
            ptr::null_mut()
        };
        // AcqRel: if the consumer is gone, its last use of `local` happened
        // before its `fetch_or`, which we read here.
        let ends = self.ends.fetch_or(CLOSE_DONE, Ordering::AcqRel);
        let values = if ends & CONSUMER_GONE != 0 {
            self.local.with_mut(|local| {
                // SAFETY: the consumer is gone (`ends`), so `local` is ours.
                let local = unsafe { &mut *local };
                if local.tail.is_null() {
                    local.head = stack_head;
                } else {
                    // SAFETY: `local.tail` is a live node, now ours.
                    unsafe { (*local.tail).next = stack_head };
                }
                local.take()
            })
        } else {
            Drain { next: stack_head }
        };
        #[cfg(loom)]
        self.loom_owner_done();
        Closed {
            values,
            wake_foreign: old == tag(PARKED_FOREIGN),
        }
    }

    /// Under loom only: the process's reference count (std's `Arc`) orders
    /// the last uses of `local` by the consumer and by the close before the
    /// queue's drop by the last owner, but loom cannot see std's atomics.
    /// This read-modify-write of `ends`, which changes nothing, and the one
    /// in `drop` show loom that order.
    #[cfg(loom)]
    fn loom_owner_done(&self) {
        self.ends.fetch_or(0, Ordering::Release);
    }

    /// The consumer gives up its role for good. If the queue is closed
    /// already, the consumer's FIFO is handed back for the caller to drop;
    /// otherwise the close will free it.
    ///
    /// # Safety
    /// Only the single consumer may call this, once; it makes no consumer
    /// call afterwards.
    pub(crate) unsafe fn release_consumer(&self) -> Drain<T> {
        // AcqRel: publishes our last use of `local` to a later close.
        let ends = self.ends.fetch_or(CONSUMER_GONE, Ordering::AcqRel);
        if ends & CLOSE_DONE == 0 {
            return Drain {
                next: ptr::null_mut(),
            };
        }
        let drain = self.local.with_mut(|local| {
            // SAFETY: we are still the consumer, and the close (already done)
            // left `local` to us.
            unsafe { &mut *local }.take()
        });
        #[cfg(loom)]
        self.loom_owner_done();
        drain
    }
}

/// Reverses a newest-first stack into an oldest-first chain; returns its
/// (oldest, newest) ends.
///
/// # Safety
/// The caller owns every node of the stack.
unsafe fn reverse<T>(mut stack: *mut Node<T>) -> (*mut Node<T>, *mut Node<T>) {
    let newest = stack;
    let mut oldest: *mut Node<T> = ptr::null_mut();
    while !stack.is_null() {
        // SAFETY: owned by the caller.
        let next = unsafe { (*stack).next };
        // SAFETY: as above.
        unsafe { (*stack).next = oldest };
        oldest = stack;
        stack = next;
    }
    (oldest, newest)
}

impl<T> Drop for Queue<T> {
    fn drop(&mut self) {
        // `&mut self`: no producer or consumer is left; free whatever the
        // runtime did not hand over (see the module docs).
        #[cfg(loom)]
        self.ends.fetch_or(0, Ordering::Acquire);
        let head = self.head.load(Ordering::Relaxed);
        if is_node(head) {
            drop(Drain { next: head });
        }
        self.local.with_mut(|local| {
            // SAFETY: `&mut self` gives us `local`.
            drop(unsafe { &mut *local }.take());
        });
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
        assert_eq!(unsafe { q.park(false) }, Park::Parked);
        assert_eq!(q.push(1), Ok(Wake::Process));
        assert_eq!(q.push(2), Ok(Wake::Nobody));
        // SAFETY: as above.
        assert_eq!(unsafe { q.park(false) }, Park::Arrived);
        // SAFETY: as above.
        assert_eq!(unsafe { q.pop() }, Some(1));
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
    fn closed_queue_rejects_and_hands_over_its_values() {
        let q = Queue::new();
        let _ = q.push(String::from("a"));
        // SAFETY: single-threaded test: consumer, then the one close.
        unsafe { q.release_consumer() }.for_each(drop);
        // SAFETY: as above.
        let closed = unsafe { q.close() };
        assert!(!closed.wake_foreign);
        assert_eq!(closed.values.collect::<Vec<_>>(), vec!["a"]);
        assert_eq!(q.push(String::from("b")), Err(String::from("b")));
        assert_eq!(q.len(), 0);
    }

    /// The close frees the consumer's deferred values only when the
    /// consumer is gone; in arrival order, after them the uncollected ones.
    #[test]
    fn close_after_the_consumer_left_takes_its_fifo_too() {
        let q = Queue::new();
        for i in 0..3 {
            let _ = q.push(i);
        }
        let mut cursor = Cursor::start();
        // SAFETY: single-threaded test, one consumer.
        assert_eq!(unsafe { q.find(&mut cursor, |v| *v == 1) }, Some(1));
        let _ = q.push(3);
        // SAFETY: as above; no consumer call after this.
        assert_eq!(unsafe { q.release_consumer() }.count(), 0);
        // SAFETY: the one close.
        let closed = unsafe { q.close() };
        assert_eq!(closed.values.collect::<Vec<_>>(), vec![0, 2, 3]);
    }

    /// A consumer that outlives the close receives nothing more, is told
    /// the queue is closed when it tries to park, and gets its deferred
    /// values back when it leaves.
    #[test]
    fn a_consumer_outliving_the_close_gets_nothing_and_then_its_fifo() {
        let q = Queue::new();
        let _ = q.push(0);
        let _ = q.push(1);
        let mut cursor = Cursor::start();
        // SAFETY: single-threaded test, one consumer.
        assert_eq!(unsafe { q.find(&mut cursor, |_| false) }, None);
        let _ = q.push(2);
        // SAFETY: as above.
        assert_eq!(unsafe { q.park(true) }, Park::Arrived);
        // SAFETY: the one close.
        let closed = unsafe { q.close() };
        assert_eq!(closed.values.collect::<Vec<_>>(), vec![2]);
        // SAFETY: single-threaded test, one consumer.
        unsafe {
            assert_eq!(q.pop(), None);
            assert_eq!(q.find(&mut Cursor::start(), |_| true), None);
            assert_eq!(q.park(false), Park::Closed);
            q.unpark();
            assert_eq!(q.park(true), Park::Closed);
            assert_eq!(q.release_consumer().collect::<Vec<_>>(), vec![0, 1]);
        }
        assert!(q.push(3).is_err());
    }

    /// Threads instead of loom, so that Miri checks the real code paths for
    /// data races and use-after-free: a producer, a consumer alternating
    /// `pop` and `find` and then leaving, and a close, all at once. Every
    /// accepted value is received, left to the consumer, or handed to the
    /// close, exactly once.
    #[test]
    fn consumer_producer_and_close_on_threads() {
        use std::sync::Arc;
        const N: u32 = if cfg!(miri) { 40 } else { 4_000 };
        let q = Arc::new(Queue::new());
        let producer = {
            let q = q.clone();
            std::thread::spawn(move || (0..N).filter(|&i| q.push(i).is_ok()).count())
        };
        let consumer = {
            let q = q.clone();
            std::thread::spawn(move || {
                let mut got = 0;
                for round in 0..N {
                    let v = if round % 2 == 0 {
                        // SAFETY: this thread is the only consumer.
                        unsafe { q.pop() }
                    } else {
                        // Defers odd values, so the close finds some in
                        // `local`. A fresh cursor: `pop` ran since the last.
                        // SAFETY: as above, and the cursor starts afresh.
                        unsafe { q.find(&mut Cursor::start(), |v| v % 2 == 0) }
                    };
                    got += usize::from(v.is_some());
                }
                // SAFETY: as above; no consumer call after this.
                got + unsafe { q.release_consumer() }.count()
            })
        };
        // SAFETY: the one close.
        let closed = unsafe { q.close() }.values.count();
        let accepted = producer.join().unwrap();
        let consumed = consumer.join().unwrap();
        assert_eq!(consumed + closed, accepted);
        assert!(q.push(0).is_err());
    }

    #[test]
    fn closing_a_foreign_park_asks_for_a_wake() {
        let q = Queue::<u8>::new();
        // SAFETY: single-threaded test, one consumer.
        assert_eq!(unsafe { q.park(true) }, Park::Parked);
        // SAFETY: the one close.
        let closed = unsafe { q.close() };
        assert!(closed.wake_foreign);
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
                if unsafe { q.park(false) } == Park::Parked {
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
    /// handed to it) or is refused: never both, never lost silently.
    #[test]
    fn push_racing_close_is_counted_once() {
        loom::model(|| {
            let q = Arc::new(Queue::new());
            let q2 = q.clone();
            let t = loom::thread::spawn(move || q2.push(1u32).is_ok());
            // SAFETY: this thread is the only consumer, and it leaves first.
            let left = unsafe { q.release_consumer() }.count();
            // SAFETY: the one close.
            let dropped = unsafe { q.close() }.values.count();
            let accepted = t.join().unwrap();
            assert_eq!(left + dropped, usize::from(accepted));
        });
    }

    /// The consumer taking a value while the queue is closed under it: the
    /// value is taken by exactly one side, the closed tag is never walked
    /// as a node nor overwritten, and later pushes fail. (The refill's
    /// former load-then-swap lost this race: it took back the `CLOSED` tag,
    /// walked it as a node and reopened the queue.)
    #[test]
    fn pop_racing_close() {
        loom::model(|| {
            let q = Arc::new(Queue::new());
            let _ = q.push(1u32);
            let q2 = q.clone();
            // SAFETY: the one close.
            let closer = loom::thread::spawn(move || unsafe { q2.close() }.values.count());
            // SAFETY: this thread is the only consumer.
            let got = unsafe { q.pop() };
            let dropped = closer.join().unwrap();
            // SAFETY: as above; the consumer leaves last.
            let left = unsafe { q.release_consumer() }.count();
            assert_eq!(usize::from(got.is_some()) + dropped + left, 1);
            assert!(q.push(2).is_err(), "a closed queue stays closed");
        });
    }

    /// A consumer receiving under a foreign waker while a producer sends
    /// and the queue is closed: the consumer always stops (a close that
    /// left it parked would be a loom deadlock), and every accepted value
    /// is received, or handed to the close, exactly once.
    #[test]
    fn receive_racing_send_and_close() {
        loom::model(|| {
            let q = Arc::new(Queue::new());
            let parker = Arc::new(Parker::new());
            let producer = {
                let (q, parker) = (q.clone(), parker.clone());
                loom::thread::spawn(move || match q.push(1u32) {
                    Ok(Wake::Foreign) => {
                        parker.unpark();
                        true
                    }
                    Ok(_) => true,
                    Err(_) => false,
                })
            };
            let closer = {
                let (q, parker) = (q.clone(), parker.clone());
                loom::thread::spawn(move || {
                    // SAFETY: the one close.
                    let closed = unsafe { q.close() };
                    if closed.wake_foreign {
                        parker.unpark();
                    }
                    closed.values.count()
                })
            };
            let mut got = 0;
            loop {
                // SAFETY: this thread is the only consumer.
                if unsafe { q.pop() }.is_some() {
                    got += 1;
                    continue;
                }
                // SAFETY: as above.
                match unsafe { q.park(true) } {
                    Park::Parked => parker.park(None),
                    Park::Arrived => {}
                    Park::Closed => break,
                }
            }
            // SAFETY: as above; no consumer call after this.
            let left = unsafe { q.release_consumer() }.count();
            let accepted = producer.join().unwrap();
            let dropped = closer.join().unwrap();
            assert_eq!(got + dropped + left, usize::from(accepted));
        });
    }

    /// The consumer receiving and then leaving (its `Context` dropped) while
    /// the queue is closed: exactly one side frees the deferred values, and
    /// the two never touch the consumer's FIFO unordered (loom checks the
    /// cell's accesses).
    #[test]
    fn consumer_leaving_racing_close() {
        loom::model(|| {
            let q = Arc::new(Queue::new());
            let _ = q.push(1u32);
            let _ = q.push(2u32);
            let q2 = q.clone();
            // SAFETY: the one close.
            let closer = loom::thread::spawn(move || unsafe { q2.close() }.values.count());
            let mut cursor = Cursor::start();
            // SAFETY: this thread is the only consumer; it defers 1.
            let got = unsafe { q.find(&mut cursor, |v| *v == 2) }.is_some();
            // SAFETY: as above; no consumer call after this.
            let left = unsafe { q.release_consumer() }.count();
            let dropped = closer.join().unwrap();
            assert_eq!(usize::from(got) + left + dropped, 2);
        });
    }
}
