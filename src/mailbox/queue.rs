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
//!   (one CAS) and reversing it onto its end: [`Consumer::pop`] only when
//!   `local` is empty, [`Scan::find`] when it has scanned `local` to its
//!   last node, so neither needs a tail pointer. Producers never touch it.
//! * `counts` holds the depth (producers add, the consumer subtracts), and
//!   its two low bits record which of the two
//!   parties that can end the queue's use have done so: the consumer giving
//!   up its role ([`CONSUMER_GONE`]) and the close ([`CLOSE_DONE`]). They
//!   decide who frees `local`. One word for both: every write to it is a
//!   read-modify-write, so neither can overwrite the other.
//!
//! # The consumer is a type
//!
//! Everything that touches `local` goes through the queue's one
//! [`Consumer`], made once (its one `unsafe` constructor) and borrowed
//! mutably by each operation, so no two receives ever run at once and none
//! runs after the consumer has left (its `Drop`). A selective receive
//! borrows it for as long as it lives, as a [`Scan`], which is what keeps
//! the scan's place in `local` valid. Pushes and the close need no role:
//! they are methods on `&Queue`.
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
//!   `counts` with one `fetch_or` and reads the other's in the same step;
//!   exactly one of them sees both bits set and frees `local`. AcqRel on both
//!   makes the consumer's last use of `local` happen before a free by the
//!   close (pushes' `fetch_add`s in between are read-modify-writes too, so
//!   they continue the release sequence). A consumer outliving the close
//!   hands the values to its owner's [`Owner::drop_left`] when it is
//!   dropped. A second close finds `CLOSE_DONE` set and takes nothing.
//!
//! After the close, a receive ends at once instead of waiting on a queue no
//! push can reach: [`Consumer::pop`] and [`Scan::find`] return nothing (the
//! consumer checks `counts`, then `head` on refill), and [`Consumer::park`]
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
//! and [`Owner::drop_left`] hand the values over as a [`Drain`], so the
//! caller can run each destructor under a panic guard. `Drop` for the
//! queue only frees what the runtime never closed (the queue of a process
//! whose spawn closure panicked before it could run).
//!
//! # Selective receive
//!
//! [`Scan::find`] scans `local` from the scan's cursor (the last node it
//! rejected), unlinking the first match. Rejected messages stay in place, in
//! arrival order, and a later call resumes after them, so new arrivals
//! never cause a rescan.

#[cfg(loom)]
use crate::loom::sync::Arc;
use crate::loom::sync::UnsafeCell;
use crate::loom::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};
use std::ptr;
#[cfg(not(loom))]
use std::sync::Arc;

/// The stack is empty; nobody waits.
const EMPTY: usize = 0;
/// The stack is empty and the consumer waits to be woken by its process waker.
const PARKED: usize = 1;
/// The stack is empty and the consumer waits on a foreign waker.
const PARKED_FOREIGN: usize = 2;
/// The queue is closed for good: pushes fail. Never replaced once set.
const CLOSED: usize = 3;

/// `counts` bit: the consumer has given up its role; it touches nothing more.
const CONSUMER_GONE: usize = 1;
/// `counts` bit: the queue is closed; set right after `head` became [`CLOSED`].
const CLOSE_DONE: usize = 2;
/// One push in `counts`, above the two bits.
const PUSHED_ONE: usize = 4;

fn tag<T>(t: usize) -> *mut Node<T> {
    ptr::without_provenance_mut(t)
}

fn is_node<T>(p: *mut Node<T>) -> bool {
    p.addr() > CLOSED
}

/// One queued value and the link to the next node.
pub(super) struct Node<T> {
    /// In the stack: the next older node; in `local`: the next newer one.
    next: *mut Node<T>,
    /// The value itself.
    value: T,
}

/// A new unlinked node holding `value`; its memory comes from the node
/// pool (see [`super::pool`]).
fn new_node<T>(value: T) -> *mut Node<T> {
    let node = Node {
        next: ptr::null_mut(),
        value,
    };
    #[cfg(not(loom))]
    {
        let p = super::pool::alloc::<Node<T>>();
        // SAFETY: fresh memory for a `Node<T>`, ours.
        unsafe { p.write(node) };
        p
    }
    #[cfg(loom)]
    Box::into_raw(Box::new(node))
}

/// Frees `node` and hands back its value and its link.
///
/// # Safety
/// `node` came from [`new_node`], is owned by the caller (no list holds
/// it any more) and is not used again.
unsafe fn take_node<T>(node: *mut Node<T>) -> (T, *mut Node<T>) {
    #[cfg(not(loom))]
    {
        // SAFETY: a live node we own; its value is moved out once, and the
        // memory handed back with nothing left in it.
        unsafe {
            let Node { next, value } = node.read();
            super::pool::free(node);
            (value, next)
        }
    }
    #[cfg(loom)]
    {
        // SAFETY: from `Box::into_raw` in `new_node`, owned by the caller.
        let node = unsafe { Box::from_raw(node) };
        (node.value, node.next)
    }
}

/// The consumer's FIFO of already-collected nodes, linked oldest first.
struct Local<T> {
    /// Oldest node, or null when empty.
    head: *mut Node<T>,
}

impl<T> Local<T> {
    /// Takes the whole FIFO, leaving it empty.
    fn take(&mut self) -> Drain<T> {
        let head = std::mem::replace(&mut self.head, ptr::null_mut());
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
        let (value, next) = unsafe { take_node(self.next) };
        self.next = next;
        Some(value)
    }
}

impl<T> Drop for Drain<T> {
    fn drop(&mut self) {
        for value in self.by_ref() {
            drop(value);
        }
    }
}

/// A lock-free MPSC queue with a park flag in its head word. Anyone may
/// push and close; receiving takes the queue's one [`Consumer`].
pub(crate) struct Queue<T> {
    /// Incoming stack, newest first, or a tag (see the module docs).
    head: AtomicPtr<Node<T>>,
    /// The depth (values pushed and not yet taken out, deferred ones
    /// included), in units of [`PUSHED_ONE`]: producers add, the consumer
    /// subtracts. In the low bits, [`CONSUMER_GONE`] and [`CLOSE_DONE`]:
    /// who has let go of the queue. One word for all of it, since every
    /// write to it is a read-modify-write.
    counts: AtomicUsize,
    /// The consumer's FIFO; touched only by the [`Consumer`], or by the
    /// close once the consumer is gone (see `counts`).
    local: UnsafeCell<Local<T>>,
}

// SAFETY: values move between threads (`T: Send`); the stack is shared only
// through atomics, and `local` is touched only by the one `Consumer` (its
// constructor's contract) or, once `counts` says the consumer is gone, by
// the close.
unsafe impl<T: Send> Send for Queue<T> {}
// SAFETY: as above; `&Queue` permits pushes and closes (atomic), and
// consumer operations only through the one `Consumer`, which they borrow
// mutably.
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
            counts: AtomicUsize::new(0),
            local: UnsafeCell::new(Local {
                head: ptr::null_mut(),
            }),
        }
    }

    /// Pushes `value`; gives it back if the queue is closed.
    pub(crate) fn push(&self, value: T) -> Result<Wake, T> {
        let node = new_node(value);
        // Count first, so that `len` never goes below zero: the consumer
        // counts a value out only after taking it, so after this.
        self.counts.fetch_add(PUSHED_ONE, Ordering::Relaxed);
        let mut cur = self.head.load(Ordering::Relaxed);
        loop {
            if cur == tag(CLOSED) {
                self.counts.fetch_sub(PUSHED_ONE, Ordering::Relaxed);
                // SAFETY: `node` came from `new_node` and was never published.
                return Err(unsafe { take_node(node) }.0);
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
        let counts = self.counts.load(Ordering::Relaxed);
        if counts & CLOSE_DONE != 0 {
            return 0;
        }
        counts / PUSHED_ONE
    }

    /// Whether the close has completed. Relaxed: whoever has seen the end of
    /// the process by other means (its exit reason, Acquire) also sees this.
    fn is_closed(&self) -> bool {
        self.counts.load(Ordering::Relaxed) & CLOSE_DONE != 0
    }

    /// Closes the queue for good: later pushes fail, a concurrent or later
    /// receive ends at once. Hands over every value the close now owns (see
    /// the module docs for the consumer's FIFO). Closing again hands over
    /// nothing more.
    pub(crate) fn close(&self) -> Closed<T> {
        // Acquire: we take the stack, so we must see the nodes' contents.
        // A second close swaps `CLOSED` for `CLOSED` and takes no stack.
        let old = self.head.swap(tag(CLOSED), Ordering::Acquire);
        let stack_head = if is_node(old) {
            // SAFETY: the swapped-out stack is ours alone.
            unsafe { reverse(old) }
        } else {
            ptr::null_mut()
        };
        // AcqRel: if the consumer is gone, its last use of `local` happened
        // before its `fetch_or`, which we read here (through any pushes'
        // read-modify-writes in between: a release sequence).
        let counts = self.counts.fetch_or(CLOSE_DONE, Ordering::AcqRel);
        // The first close to set the bit owns the consumer's FIFO, if the
        // consumer has left; a later one finds the bit set and leaves it.
        let values = if counts & (CONSUMER_GONE | CLOSE_DONE) == CONSUMER_GONE {
            self.local.with_mut(|local| {
                // SAFETY: the consumer is gone (`counts`), and no other
                // close got here, so `local` is ours.
                let local = unsafe { &mut *local };
                if local.head.is_null() {
                    local.head = stack_head;
                } else {
                    // Once per process, at its end: a walk is fine.
                    let mut last = local.head;
                    // SAFETY: the nodes of `local` are live, and ours.
                    unsafe {
                        while !(*last).next.is_null() {
                            last = (*last).next;
                        }
                        (*last).next = stack_head;
                    }
                }
                local.take()
            })
        } else {
            Drain { next: stack_head }
        };
        Closed {
            values,
            wake_foreign: old == tag(PARKED_FOREIGN),
        }
    }
}

/// What gives a [`Consumer`] its queue: the queue itself in an `Arc`, or
/// whatever owns it (a process).
///
/// # Safety
/// `queue` returns the same queue on every call, alive as long as `self`.
pub(crate) unsafe trait Owner {
    /// What the queue holds.
    type Item;
    /// The queue.
    fn queue(&self) -> &Queue<Self::Item>;
    /// Drops the values the consumer still held when it left a queue that
    /// was closed already (see [`Consumer`]'s `Drop`).
    fn drop_left(&self, left: Drain<Self::Item>) {
        drop(left);
    }
}

// SAFETY: the `Arc` keeps its queue alive and always returns that one.
unsafe impl<T> Owner for Arc<Queue<T>> {
    type Item = T;
    fn queue(&self) -> &Queue<T> {
        self
    }
}

/// The queue's single consumer: every receive goes through it, and a
/// `&mut` borrow of it is what makes a receive the only one running. It
/// gives up its role when dropped (see the module docs for who frees its
/// FIFO then).
pub(crate) struct Consumer<O: Owner> {
    owner: O,
}

impl<O: Owner> std::fmt::Debug for Consumer<O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer").finish_non_exhaustive()
    }
}

impl<O: Owner> Consumer<O> {
    /// The consumer of `owner`'s queue.
    ///
    /// # Safety
    /// No other consumer of that queue is ever made.
    pub(crate) unsafe fn new(owner: O) -> Consumer<O> {
        Consumer { owner }
    }

    /// What holds the queue.
    pub(crate) fn owner(&self) -> &O {
        &self.owner
    }

    fn queue(&self) -> &Queue<O::Item> {
        self.owner.queue()
    }

    /// Takes the oldest value; nothing once the queue is closed.
    pub(crate) fn pop(&mut self) -> Option<O::Item> {
        let q = self.owner.queue();
        if q.is_closed() {
            return None;
        }
        q.local.with_mut(|local| {
            // SAFETY: this is the one consumer (constructor contract), and
            // `&mut self` makes this its only operation running.
            let local = unsafe { &mut *local };
            if local.head.is_null() {
                local.head = take_stack(q);
            }
            let node = local.head;
            if node.is_null() {
                return None;
            }
            // SAFETY: `node` is the live oldest node, owned by the consumer,
            // and unlinked here.
            let (value, next) = unsafe { take_node(node) };
            local.head = next;
            note_taken(q);
            Some(value)
        })
    }

    /// A selective receive: a scan for the values `pred` accepts, which
    /// holds the consumer for as long as it lives.
    pub(crate) fn scan<P>(&mut self, pred: P) -> Scan<'_, O, P>
    where
        P: FnMut(&O::Item) -> bool,
    {
        Scan {
            consumer: self,
            pred,
            cursor: ptr::null_mut(),
        }
    }

    /// Tries to park the consumer: succeeds only while no value is waiting
    /// in the stack. `foreign` says which tag to leave (see [`Wake`]).
    pub(crate) fn park(&mut self, foreign: bool) -> Park {
        let q = self.queue();
        // Agree with `pop`/`find`, which return nothing once they see the
        // close in `counts`: a stale look at `head` must not answer
        // `Arrived` to a consumer that will never be given the value.
        if q.is_closed() {
            return Park::Closed;
        }
        let want = tag(if foreign { PARKED_FOREIGN } else { PARKED });
        let mut cur = q.head.load(Ordering::Relaxed);
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
            match q
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
    pub(crate) fn unpark(&mut self) {
        let head = &self.queue().head;
        let cur = head.load(Ordering::Relaxed);
        if cur == tag(PARKED) || cur == tag(PARKED_FOREIGN) {
            // Failure means a push or the close replaced the tag: nothing
            // left to clear (and `CLOSED` must stay).
            let _ = head.compare_exchange(cur, tag(EMPTY), Ordering::Relaxed, Ordering::Relaxed);
        }
    }
}

impl<O: Owner> Drop for Consumer<O> {
    /// Gives up the role for good. If the queue is closed already, the
    /// consumer's FIFO is handed to the owner's `drop_left`; otherwise the
    /// close will free it.
    fn drop(&mut self) {
        let q = self.queue();
        // AcqRel: publishes our last use of `local` to a later close.
        let counts = q.counts.fetch_or(CONSUMER_GONE, Ordering::AcqRel);
        if counts & CLOSE_DONE == 0 {
            return;
        }
        let left = q.local.with_mut(|local| {
            // SAFETY: we are still the consumer, and the close (already
            // done) left `local` to us.
            unsafe { &mut *local }.take()
        });
        self.owner.drop_left(left);
    }
}

/// A selective receive in progress: scans the consumer's FIFO for values
/// its predicate accepts, from where it stopped last time. Rejected values
/// stay in place, in arrival order, and a later [`Scan::find`] resumes
/// after them, so new arrivals never cause a rescan. It borrows the
/// consumer mutably, so nothing else takes a value while it remembers where
/// it stopped.
pub(crate) struct Scan<'c, O: Owner, P> {
    consumer: &'c mut Consumer<O>,
    pred: P,
    /// The last node rejected (null: none yet), a live node in `local`:
    /// only `find` removes nodes while the scan holds the consumer, and
    /// never a rejected one.
    cursor: *mut Node<O::Item>,
}

// SAFETY: the cursor is an address in the consumer's FIFO, used only
// through the `&mut Consumer` the scan holds; the rest is the scan's own.
unsafe impl<O: Owner + Send, P: Send> Send for Scan<'_, O, P> where O::Item: Send {}
// SAFETY: `&Scan` gives access to nothing but `owner` (`O: Sync`).
unsafe impl<O: Owner + Sync, P: Sync> Sync for Scan<'_, O, P> where O::Item: Send {}

impl<O: Owner, P> std::fmt::Debug for Scan<'_, O, P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scan").finish_non_exhaustive()
    }
}

impl<O: Owner, P> Scan<'_, O, P>
where
    P: FnMut(&O::Item) -> bool,
{
    /// Takes the first value after the last rejected one that the
    /// predicate accepts; nothing once the queue is closed. Scans what the
    /// consumer holds first and collects the stack only at its end, so
    /// the stack's nodes go right after the last node scanned.
    pub(crate) fn find(&mut self) -> Option<O::Item> {
        let q = self.consumer.owner.queue();
        if q.is_closed() {
            return None;
        }
        let cursor = &mut self.cursor;
        let pred = &mut self.pred;
        q.local.with_mut(|local| {
            // SAFETY: this is the one consumer, borrowed mutably by the scan.
            let local = unsafe { &mut *local };
            // `prev` is always the node before `cur` (null: `cur` is the
            // oldest).
            let mut prev = *cursor;
            let mut cur = if prev.is_null() {
                local.head
            } else {
                // SAFETY: the cursor is a live node in `local` (field docs).
                unsafe { (*prev).next }
            };
            let mut collected = false;
            loop {
                if cur.is_null() {
                    if collected {
                        break;
                    }
                    collected = true;
                    cur = take_stack(q);
                    if cur.is_null() {
                        break;
                    }
                    if prev.is_null() {
                        local.head = cur;
                    } else {
                        // SAFETY: `prev` is the last live node in `local`.
                        unsafe { (*prev).next = cur };
                    }
                    continue;
                }
                // SAFETY: `cur` is a live node in `local`.
                if pred(unsafe { &(*cur).value }) {
                    // SAFETY: `cur` is live and now unlinked exactly once.
                    let (value, next) = unsafe { take_node(cur) };
                    if prev.is_null() {
                        local.head = next;
                    } else {
                        // SAFETY: `prev` is a live node in `local`.
                        unsafe { (*prev).next = next };
                    }
                    note_taken(q);
                    return Some(value);
                }
                prev = cur;
                // SAFETY: `cur` is a live node in `local`.
                cur = unsafe { (*cur).next };
            }
            *cursor = prev;
            None
        })
    }
}

impl<O: Owner, P> Scan<'_, O, P> {
    /// What holds the queue.
    pub(crate) fn owner(&self) -> &O {
        &self.consumer.owner
    }

    /// [`Consumer::park`].
    pub(crate) fn park(&mut self, foreign: bool) -> Park {
        self.consumer.park(foreign)
    }

    /// [`Consumer::unpark`].
    pub(crate) fn unpark(&mut self) {
        self.consumer.unpark()
    }
}

/// Counts one value taken out by the consumer. A read-modify-write, as
/// every write to `counts` is (see `Queue::counts`).
fn note_taken<T>(q: &Queue<T>) {
    q.counts.fetch_sub(PUSHED_ONE, Ordering::Relaxed);
}

/// Takes everything pushed so far, as a chain oldest first (null: none),
/// for the consumer (its caller) to link onto the end of `local`.
fn take_stack<T>(q: &Queue<T>) -> *mut Node<T> {
    let mut cur = q.head.load(Ordering::Relaxed);
    // Take the stack with a CAS that names it, never a blind swap: the
    // close may take it (and leave `CLOSED`) between our load and our
    // write, and `CLOSED` must never be overwritten. Acquire pairs with
    // the producers' Release CAS.
    let stack = loop {
        if !is_node(cur) {
            return ptr::null_mut();
        }
        match q
            .head
            .compare_exchange(cur, tag(EMPTY), Ordering::Acquire, Ordering::Relaxed)
        {
            Ok(stack) => break stack,
            Err(actual) => cur = actual,
        }
    };
    // SAFETY: every node in the taken stack is now owned by us.
    unsafe { reverse(stack) }
}

/// Reverses a newest-first stack into an oldest-first chain; returns its
/// oldest node.
///
/// # Safety
/// The caller owns every node of the stack.
unsafe fn reverse<T>(mut stack: *mut Node<T>) -> *mut Node<T> {
    let mut oldest: *mut Node<T> = ptr::null_mut();
    while !stack.is_null() {
        // SAFETY: owned by the caller.
        let next = unsafe { (*stack).next };
        // SAFETY: as above.
        unsafe { (*stack).next = oldest };
        oldest = stack;
        stack = next;
    }
    oldest
}

impl<T> Drop for Queue<T> {
    fn drop(&mut self) {
        // `&mut self`: no producer or consumer is left; free whatever the
        // runtime did not hand over (see the module docs).
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

/// A queue in an `Arc` and its one consumer, for the tests and models.
#[cfg(test)]
fn with_consumer<T>() -> (Arc<Queue<T>>, Consumer<Arc<Queue<T>>>) {
    let q = Arc::new(Queue::new());
    // SAFETY: the only consumer made for this queue.
    let c = unsafe { Consumer::new(q.clone()) };
    (q, c)
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// Every process carries a queue in its header and a `Context` in its
    /// future, so their sizes are per-process bytes: three words for the
    /// queue (head, the depth-and-ends word, the consumer's FIFO) and one
    /// for the context.
    #[test]
    fn a_queue_is_three_words_and_a_context_one() {
        let word = std::mem::size_of::<usize>();
        assert_eq!(std::mem::size_of::<Queue<crate::Received>>(), 3 * word);
        assert_eq!(std::mem::size_of::<crate::Context>(), word);
    }

    #[test]
    fn fifo_and_len() {
        let (q, mut c) = with_consumer();
        for i in 0..10 {
            assert_eq!(q.push(i), Ok(Wake::Nobody));
        }
        assert_eq!(q.len(), 10);
        for i in 0..10 {
            assert_eq!(c.pop(), Some(i));
        }
        assert_eq!(c.pop(), None);
        assert_eq!(q.len(), 0);
    }

    #[test]
    fn park_then_push_owes_one_wake() {
        let (q, mut c) = with_consumer();
        assert_eq!(c.park(false), Park::Parked);
        assert_eq!(q.push(1), Ok(Wake::Process));
        assert_eq!(q.push(2), Ok(Wake::Nobody));
        assert_eq!(c.park(false), Park::Arrived);
        assert_eq!(c.pop(), Some(1));
    }

    #[test]
    fn selective_find_keeps_the_rest_in_order() {
        let (q, mut c) = with_consumer();
        for i in 0..6 {
            let _ = q.push(i);
        }
        assert_eq!(c.scan(|v| *v == 4).find(), Some(4));
        let mut seen = 0;
        {
            let mut scan = c.scan(|v| {
                seen += 1;
                *v == 9
            });
            assert_eq!(scan.find(), None);
            let _ = q.push(9);
            assert_eq!(scan.find(), Some(9));
        }
        assert_eq!(seen, 6, "deferred messages are not rescanned");
        let rest: Vec<_> = std::iter::from_fn(|| c.pop()).collect();
        assert_eq!(rest, vec![0, 1, 2, 3, 5]);
    }

    /// A scan that has rejected the oldest value, and then the newest,
    /// unlinks a match between them and at the end, and links the next
    /// next refill.
    #[test]
    fn a_scan_unlinks_in_the_middle_and_at_the_tail() {
        let (q, mut c) = with_consumer();
        for i in 0..3 {
            let _ = q.push(i);
        }
        {
            let mut scan = c.scan(|v| *v % 2 == 1 || *v == 4);
            assert_eq!(scan.find(), Some(1));
            assert_eq!(scan.find(), None);
            let _ = q.push(4);
            assert_eq!(scan.find(), Some(4));
        }
        let _ = q.push(5);
        let rest: Vec<_> = std::iter::from_fn(|| c.pop()).collect();
        assert_eq!(rest, vec![0, 2, 5]);
    }

    #[test]
    fn closed_queue_rejects_and_hands_over_its_values() {
        let (q, c) = with_consumer();
        let _ = q.push(String::from("a"));
        drop(c);
        let closed = q.close();
        assert!(!closed.wake_foreign);
        assert_eq!(closed.values.collect::<Vec<_>>(), vec!["a"]);
        assert_eq!(q.push(String::from("b")), Err(String::from("b")));
        assert_eq!(q.len(), 0);
        let again = q.close();
        assert_eq!(again.values.count(), 0, "a second close takes nothing");
    }

    /// The close frees the consumer's deferred values only when the
    /// consumer is gone; in arrival order, after them the uncollected ones.
    #[test]
    fn close_after_the_consumer_left_takes_its_fifo_too() {
        let (q, mut c) = with_consumer();
        for i in 0..3 {
            let _ = q.push(i);
        }
        assert_eq!(c.scan(|v| *v == 1).find(), Some(1));
        let _ = q.push(3);
        drop(c);
        let closed = q.close();
        assert_eq!(closed.values.collect::<Vec<_>>(), vec![0, 2, 3]);
        assert_eq!(q.close().values.count(), 0, "a second close takes nothing");
    }

    /// The owner that records what a consumer leaving a closed queue hands
    /// it.
    struct Recording(Arc<Queue<u32>>, Arc<std::sync::Mutex<Vec<u32>>>);

    // SAFETY: the `Arc` keeps its queue alive and always returns that one.
    unsafe impl Owner for Recording {
        type Item = u32;
        fn queue(&self) -> &Queue<u32> {
            &self.0
        }
        fn drop_left(&self, left: Drain<u32>) {
            self.1.lock().unwrap().extend(left);
        }
    }

    /// A consumer that outlives the close receives nothing more, is told
    /// the queue is closed when it tries to park, and hands its deferred
    /// values to its owner when it leaves.
    #[test]
    fn a_consumer_outliving_the_close_gets_nothing_and_then_its_fifo() {
        let q = Arc::new(Queue::new());
        let left = Arc::new(std::sync::Mutex::new(Vec::new()));
        // SAFETY: the only consumer made for this queue.
        let mut c = unsafe { Consumer::new(Recording(q.clone(), left.clone())) };
        let _ = q.push(0);
        let _ = q.push(1);
        assert_eq!(c.scan(|_| false).find(), None);
        let _ = q.push(2);
        assert_eq!(c.park(true), Park::Arrived);
        let closed = q.close();
        assert_eq!(closed.values.collect::<Vec<_>>(), vec![2]);
        assert_eq!(c.pop(), None);
        assert_eq!(c.scan(|_| true).find(), None);
        assert_eq!(c.park(false), Park::Closed);
        c.unpark();
        assert_eq!(c.park(true), Park::Closed);
        drop(c);
        assert_eq!(*left.lock().unwrap(), vec![0, 1]);
        assert!(q.push(3).is_err());
    }

    /// Threads instead of loom, so that Miri checks the real code paths for
    /// data races and use-after-free: a producer, a consumer alternating
    /// `pop` and scans and then leaving, and a close, all at once. Every
    /// accepted value is received, left to the consumer, or handed to the
    /// close, exactly once.
    #[test]
    fn consumer_producer_and_close_on_threads() {
        const N: u32 = if cfg!(miri) { 40 } else { 4_000 };
        let q = Arc::new(Queue::new());
        let left = Arc::new(std::sync::Mutex::new(Vec::new()));
        let producer = {
            let q = q.clone();
            std::thread::spawn(move || (0..N).filter(|&i| q.push(i).is_ok()).count())
        };
        let consumer = {
            // SAFETY: the only consumer made for this queue.
            let mut c = unsafe { Consumer::new(Recording(q.clone(), left.clone())) };
            std::thread::spawn(move || {
                let mut got = 0;
                let mut scan_next = false;
                for _ in 0..N {
                    let v = if scan_next {
                        // Defers odd values, so the close finds some in
                        // `local`.
                        c.scan(|v| v % 2 == 0).find()
                    } else {
                        c.pop()
                    };
                    scan_next = !scan_next;
                    got += usize::from(v.is_some());
                }
                drop(c);
                got
            })
        };
        let closed = q.close().values.count();
        let accepted = producer.join().unwrap();
        let consumed = consumer.join().unwrap();
        let left = left.lock().unwrap().len();
        assert_eq!(consumed + left + closed, accepted);
        assert!(q.push(0).is_err());
    }

    #[test]
    fn closing_a_foreign_park_asks_for_a_wake() {
        let (q, mut c) = with_consumer::<u8>();
        assert_eq!(c.park(true), Park::Parked);
        let closed = q.close();
        assert!(closed.wake_foreign);
    }
}

#[cfg(all(test, loom))]
mod loom_mailbox {
    use super::*;
    use crate::scheduler::park::Parker;

    /// An owner that counts what the consumer hands it when it leaves a
    /// closed queue.
    struct Counting(Arc<Queue<u32>>, Arc<crate::loom::sync::atomic::AtomicUsize>);

    // SAFETY: the `Arc` keeps its queue alive and always returns that one.
    unsafe impl Owner for Counting {
        type Item = u32;
        fn queue(&self) -> &Queue<u32> {
            &self.0
        }
        fn drop_left(&self, left: Drain<u32>) {
            self.1.fetch_add(left.count(), Ordering::Relaxed);
        }
    }

    /// A queue whose consumer counts what it leaves behind.
    fn counting() -> (
        Arc<Queue<u32>>,
        Consumer<Counting>,
        Arc<crate::loom::sync::atomic::AtomicUsize>,
    ) {
        let q = Arc::new(Queue::new());
        let left = Arc::new(crate::loom::sync::atomic::AtomicUsize::new(0));
        // SAFETY: the only consumer made for this queue.
        let c = unsafe { Consumer::new(Counting(q.clone(), left.clone())) };
        (q, c, left)
    }

    /// Two producers (one sending two values) and a consumer that parks
    /// whenever the queue is empty: every value arrives, each producer's
    /// in order, and a parked consumer is always woken (a lost wake would
    /// leave it parked forever, which loom reports as a deadlock).
    #[test]
    fn push_pop_park_wake_two_producers() {
        loom::model(|| {
            let (q, mut c) = with_consumer();
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
                if let Some(v) = c.pop() {
                    got.push(v);
                    continue;
                }
                if c.park(false) == Park::Parked {
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
            let (q, c, left) = counting();
            let q2 = q.clone();
            let t = loom::thread::spawn(move || q2.push(1u32).is_ok());
            drop(c);
            let dropped = q.close().values.count();
            let accepted = t.join().unwrap();
            let left = left.load(Ordering::Relaxed);
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
            let (q, mut c, left) = counting();
            let _ = q.push(1u32);
            let q2 = q.clone();
            let closer = loom::thread::spawn(move || q2.close().values.count());
            let got = c.pop();
            let dropped = closer.join().unwrap();
            drop(c);
            let left = left.load(Ordering::Relaxed);
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
            let (q, mut c, left) = counting();
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
                    let closed = q.close();
                    if closed.wake_foreign {
                        parker.unpark();
                    }
                    closed.values.count()
                })
            };
            let mut got = 0;
            loop {
                if c.pop().is_some() {
                    got += 1;
                    continue;
                }
                match c.park(true) {
                    Park::Parked => parker.park(None),
                    Park::Arrived => {}
                    Park::Closed => break,
                }
            }
            drop(c);
            let accepted = producer.join().unwrap();
            let dropped = closer.join().unwrap();
            let left = left.load(Ordering::Relaxed);
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
            let (q, mut c, left) = counting();
            let _ = q.push(1u32);
            let _ = q.push(2u32);
            let q2 = q.clone();
            let closer = loom::thread::spawn(move || q2.close().values.count());
            // Defers 1.
            let got = c.scan(|v| *v == 2).find().is_some();
            drop(c);
            let dropped = closer.join().unwrap();
            let left = left.load(Ordering::Relaxed);
            assert_eq!(usize::from(got) + left + dropped, 2);
        });
    }

    /// Two closes racing with the consumer leaving: the deferred value is
    /// freed once, by one of the three.
    #[test]
    fn two_closes_racing_the_consumer_leaving() {
        loom::model(|| {
            let (q, mut c, left) = counting();
            let _ = q.push(1u32);
            assert_eq!(c.scan(|_| false).find(), None);
            let closers: Vec<_> = (0..2)
                .map(|_| {
                    let q = q.clone();
                    loom::thread::spawn(move || q.close().values.count())
                })
                .collect();
            drop(c);
            let dropped: usize = closers.into_iter().map(|t| t.join().unwrap()).sum();
            let left = left.load(Ordering::Relaxed);
            assert_eq!(left + dropped, 1);
        });
    }
}
