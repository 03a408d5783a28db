//! The locks that guard plain data (a process's aux data, the monitor and
//! registry shards, the timer wheel): `parking_lot`'s in normal builds.
//!
//! Under `cfg(loom)` each lock pairs `parking_lot`'s, which keeps the data
//! and the guard API (`MutexGuard::map`, `try_lock`, `get_mut`), with a
//! loom mutex taken first. Loom runs one thread at a time and switches only
//! at its own operations, so the loom mutex is what makes a second thread
//! wait (and lets loom explore who gets the lock first); the inner lock is
//! then never contended. A `parking_lot` lock alone would block the one OS
//! thread loom runs on as soon as a holder was switched out. A read-write
//! lock is exclusive under loom: fewer interleavings, none that the real
//! one forbids.

#[cfg(not(loom))]
pub(crate) use parking_lot::{MappedMutexGuard, Mutex, MutexGuard, RwLock};

#[cfg(loom)]
pub(crate) use imp::{MappedMutexGuard, Mutex, MutexGuard, RwLock};

#[cfg(loom)]
mod imp {
    use std::fmt;
    use std::ops::{Deref, DerefMut};

    /// A mutex loom schedules.
    #[derive(Default)]
    pub(crate) struct Mutex<T> {
        order: loom::sync::Mutex<()>,
        data: parking_lot::Mutex<T>,
    }

    impl<T: fmt::Debug> fmt::Debug for Mutex<T> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("Mutex").finish_non_exhaustive()
        }
    }

    /// The guard of [`Mutex`]; `data` drops (unlocks) before `order`.
    pub(crate) struct MutexGuard<'a, T> {
        data: parking_lot::MutexGuard<'a, T>,
        order: loom::sync::MutexGuard<'a, ()>,
    }

    /// A guard mapped to part of the data.
    pub(crate) struct MappedMutexGuard<'a, T> {
        data: parking_lot::MappedMutexGuard<'a, T>,
        _order: loom::sync::MutexGuard<'a, ()>,
    }

    impl<T> Mutex<T> {
        pub(crate) fn new(value: T) -> Self {
            Mutex {
                order: loom::sync::Mutex::new(()),
                data: parking_lot::Mutex::new(value),
            }
        }

        pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
            let order = self.order.lock().unwrap();
            MutexGuard {
                data: self.data.try_lock().expect("held only under `order`"),
                order,
            }
        }

        pub(crate) fn try_lock(&self) -> Option<MutexGuard<'_, T>> {
            let order = self.order.try_lock().ok()?;
            Some(MutexGuard {
                data: self.data.try_lock().expect("held only under `order`"),
                order,
            })
        }

        pub(crate) fn get_mut(&mut self) -> &mut T {
            self.data.get_mut()
        }
    }

    impl<'a, T> MutexGuard<'a, T> {
        pub(crate) fn map<U>(g: Self, f: impl FnOnce(&mut T) -> &mut U) -> MappedMutexGuard<'a, U> {
            MappedMutexGuard {
                data: parking_lot::MutexGuard::map(g.data, f),
                _order: g.order,
            }
        }
    }

    impl<T> Deref for MutexGuard<'_, T> {
        type Target = T;
        fn deref(&self) -> &T {
            &self.data
        }
    }

    impl<T> DerefMut for MutexGuard<'_, T> {
        fn deref_mut(&mut self) -> &mut T {
            &mut self.data
        }
    }

    impl<T> Deref for MappedMutexGuard<'_, T> {
        type Target = T;
        fn deref(&self) -> &T {
            &self.data
        }
    }

    impl<T> DerefMut for MappedMutexGuard<'_, T> {
        fn deref_mut(&mut self) -> &mut T {
            &mut self.data
        }
    }

    /// A read-write lock, exclusive under loom (see the module docs).
    #[derive(Default)]
    pub(crate) struct RwLock<T>(Mutex<T>);

    impl<T: fmt::Debug> fmt::Debug for RwLock<T> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("RwLock").finish_non_exhaustive()
        }
    }

    impl<T> RwLock<T> {
        pub(crate) fn read(&self) -> MutexGuard<'_, T> {
            self.0.lock()
        }

        pub(crate) fn write(&self) -> MutexGuard<'_, T> {
            self.0.lock()
        }
    }
}
