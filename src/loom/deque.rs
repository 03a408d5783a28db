//! The run queues: `crossbeam-deque` in normal builds.
//!
//! `crossbeam-deque` is not loom-aware (its atomics are std's, so loom
//! would neither see nor reorder them), so under `cfg(loom)` a
//! `Mutex<VecDeque>` from loom stands in for it behind the same small
//! interface: the models then check our protocols around the queues (who
//! pushes, who wakes whom, who runs an entry), not crossbeam's deque, which
//! has its own tests. The stand-in is FIFO like the workers' deques, a
//! batch steal moves half of what is left, and it never answers
//! `Steal::Retry`.

#[cfg(not(loom))]
pub(crate) use crossbeam_deque::{Injector, Steal, Stealer, Worker};

#[cfg(loom)]
pub(crate) use imp::{Injector, Steal, Stealer, Worker};

#[cfg(loom)]
mod imp {
    use loom::sync::{Arc, Mutex};
    use std::collections::VecDeque;
    use std::fmt;

    /// The outcome of a steal, as crossbeam's.
    #[allow(dead_code)]
    pub(crate) enum Steal<T> {
        Empty,
        Success(T),
        Retry,
    }

    /// A queue's contents, with what both a stealer and the injector offer.
    pub(crate) struct Shared<T>(Mutex<VecDeque<T>>);

    type Queue<T> = Arc<Shared<T>>;

    impl<T> Shared<T> {
        fn new() -> Self {
            Shared(Mutex::new(VecDeque::new()))
        }

        /// Takes the front of this queue and half of the rest into `to`.
        /// The two locks are never held together (two workers may steal
        /// from each other at once).
        pub(crate) fn steal_batch_and_pop(&self, to: &Worker<T>) -> Steal<T> {
            let (first, batch) = {
                let mut q = self.0.lock().unwrap();
                let Some(first) = q.pop_front() else {
                    return Steal::Empty;
                };
                let n = q.len() / 2;
                (first, q.drain(..n).collect::<Vec<_>>())
            };
            if !batch.is_empty() {
                to.q.0.lock().unwrap().extend(batch);
            }
            Steal::Success(first)
        }

        pub(crate) fn is_empty(&self) -> bool {
            self.0.lock().unwrap().is_empty()
        }

        pub(crate) fn len(&self) -> usize {
            self.0.lock().unwrap().len()
        }
    }

    /// A worker's own end of its queue.
    pub(crate) struct Worker<T> {
        q: Queue<T>,
    }

    impl<T> fmt::Debug for Worker<T> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("Worker")
        }
    }

    impl<T> Worker<T> {
        pub(crate) fn new_fifo() -> Self {
            Worker {
                q: Arc::new(Shared::new()),
            }
        }

        pub(crate) fn stealer(&self) -> Stealer<T> {
            Stealer { q: self.q.clone() }
        }

        pub(crate) fn push(&self, t: T) {
            self.q.0.lock().unwrap().push_back(t);
        }

        pub(crate) fn pop(&self) -> Option<T> {
            self.q.0.lock().unwrap().pop_front()
        }

        pub(crate) fn is_empty(&self) -> bool {
            self.q.is_empty()
        }
    }

    /// Another worker's end of a worker's queue.
    pub(crate) struct Stealer<T> {
        q: Queue<T>,
    }

    impl<T> fmt::Debug for Stealer<T> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("Stealer")
        }
    }

    impl<T> std::ops::Deref for Stealer<T> {
        type Target = Shared<T>;
        fn deref(&self) -> &Shared<T> {
            &self.q
        }
    }

    /// The queue shared by all workers, for work posted from outside.
    pub(crate) struct Injector<T> {
        q: Shared<T>,
    }

    impl<T> fmt::Debug for Injector<T> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("Injector")
        }
    }

    impl<T> Injector<T> {
        pub(crate) fn new() -> Self {
            Injector { q: Shared::new() }
        }

        pub(crate) fn push(&self, t: T) {
            self.q.0.lock().unwrap().push_back(t);
        }

        pub(crate) fn steal(&self) -> Steal<T> {
            match self.q.0.lock().unwrap().pop_front() {
                Some(t) => Steal::Success(t),
                None => Steal::Empty,
            }
        }
    }

    impl<T> std::ops::Deref for Injector<T> {
        type Target = Shared<T>;
        fn deref(&self) -> &Shared<T> {
            &self.q
        }
    }
}
