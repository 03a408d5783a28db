//! A process's rarely used data ([`Aux`]) and the one word its lock guards
//! ([`AuxSlot`]).
//!
//! Most processes never need aux data: it is allocated on first use. A
//! process spawned by a supervisor usually needs one thing only, the
//! monitor its supervisor placed on it (see `crate::signal::spawn`), so the
//! slot keeps that monitor's watcher in the word itself while there is no
//! aux data, and moves it into the aux data when some is allocated. One word for
//! both, guarded by the aux lock, rather than a word of the header each.
//!
//! | slot word | means |
//! | --- | --- |
//! | null | no aux data, no spawn monitor |
//! | an even address | a `Box<Aux>` (it holds the spawn monitor, if any) |
//! | odd, no provenance | no aux data; the spawn monitor's watcher (a pid), shifted left by one |

use std::marker::PhantomData;
use std::task::Waker;

/// Rarely used per-process data, allocated on first use: the task's own
/// part, and what the runtime keeps for the process
/// ([`Schedule::Held`](super::task::Schedule::Held)), reached through
/// `Deref`.
#[derive(Default)]
pub(crate) struct Aux<E> {
    /// The waker of a `join` waiting for the process to end.
    pub(crate) join_waker: Option<Waker>,
    /// A receive parked under a waker that is not the process's own.
    pub(crate) foreign_waker: Option<Waker>,
    /// The panic message, when the body panicked.
    pub(crate) panic: Option<String>,
    /// Whether exit signals arrive as `Received::Exit` messages.
    pub(crate) trap_exit: bool,
    /// A free-form label, for observability.
    pub(crate) label: Option<String>,
    /// The spawn monitor's watcher, once aux data exists (0: none).
    spawn_monitor: u64,
    /// The runtime's part.
    pub(crate) held: E,
}

impl<E> std::ops::Deref for Aux<E> {
    type Target = E;
    fn deref(&self) -> &E {
        &self.held
    }
}

impl<E> std::ops::DerefMut for Aux<E> {
    fn deref_mut(&mut self) -> &mut E {
        &mut self.held
    }
}

/// The word the aux lock guards: the aux data if any, else the spawn
/// monitor if any (module docs). Used as an `Option<Box<Aux>>` is.
pub(crate) struct AuxSlot<E> {
    word: *mut Aux<E>,
    _owns: PhantomData<Box<Aux<E>>>,
}

// SAFETY: the slot owns a `Box<Aux<E>>` or a plain number; it is as
// sendable and shareable as that box.
unsafe impl<E: Send> Send for AuxSlot<E> {}
// SAFETY: as above (`&AuxSlot` gives only `&Aux`).
unsafe impl<E: Sync> Sync for AuxSlot<E> {}

/// The tag bit of a spawn monitor in the word (a box is aligned).
const MONITOR: usize = 1;

impl<E> Default for AuxSlot<E> {
    fn default() -> Self {
        AuxSlot {
            word: std::ptr::null_mut(),
            _owns: PhantomData,
        }
    }
}

impl<E> AuxSlot<E> {
    fn boxed(&self) -> bool {
        !self.word.is_null() && self.word.addr() & MONITOR == 0
    }

    /// Whether the slot holds no aux data (it may hold a spawn monitor).
    #[cfg(test)]
    pub(crate) fn is_none(&self) -> bool {
        !self.boxed()
    }

    /// Whether the slot holds nothing at all: no aux data, no spawn monitor.
    pub(crate) fn is_empty(&self) -> bool {
        self.word.is_null()
    }

    /// The aux data, if any.
    pub(crate) fn as_ref(&self) -> Option<&Aux<E>> {
        // SAFETY: an even non-null word is a live box we own.
        self.boxed().then(|| unsafe { &*self.word })
    }

    /// The aux data, if any.
    pub(crate) fn as_mut(&mut self) -> Option<&mut Aux<E>> {
        // SAFETY: an even non-null word is a live box we own, borrowed
        // mutably through `self`.
        self.boxed().then(|| unsafe { &mut *self.word })
    }

    /// The aux data, if any (as `Option<Box<_>>::as_deref_mut`).
    pub(crate) fn as_deref_mut(&mut self) -> Option<&mut Aux<E>> {
        self.as_mut()
    }

    /// The aux data, allocated by `make` if there is none (taking over the
    /// spawn monitor the slot held).
    pub(crate) fn get_or_insert_with(&mut self, make: impl FnOnce() -> Box<Aux<E>>) -> &mut Aux<E> {
        if !self.boxed() {
            let monitor = self.spawn_monitor();
            let mut aux = make();
            aux.spawn_monitor = monitor;
            self.word = Box::into_raw(aux);
        }
        // SAFETY: a live box we own, borrowed mutably through `self`.
        unsafe { &mut *self.word }
    }

    /// Takes the aux data out (and with it the spawn monitor).
    pub(crate) fn take(&mut self) -> Option<Box<Aux<E>>> {
        if !self.boxed() {
            return None;
        }
        let word = std::mem::replace(&mut self.word, std::ptr::null_mut());
        // SAFETY: a box we own, handed out once (the slot is cleared).
        Some(unsafe { Box::from_raw(word) })
    }

    /// The spawn monitor's watcher (0: none).
    pub(crate) fn spawn_monitor(&self) -> u64 {
        match self.as_ref() {
            Some(a) => a.spawn_monitor,
            None => (self.word.addr() >> 1) as u64,
        }
    }

    /// Replaces the spawn monitor's watcher (0: none) and returns the one
    /// it held. A value too wide for the word's other bits (its top
    /// bit, or more on a narrow target) goes into aux data allocated for it.
    pub(crate) fn swap_spawn_monitor(&mut self, r: u64) -> u64
    where
        E: Default,
    {
        let previous = self.spawn_monitor();
        let small = usize::try_from(r)
            .ok()
            .filter(|v| v >> (usize::BITS - 1) == 0);
        match (self.as_mut(), small) {
            (Some(a), _) => a.spawn_monitor = r,
            (None, Some(0)) => self.word = std::ptr::null_mut(),
            (None, Some(v)) => self.word = std::ptr::without_provenance_mut((v << 1) | MONITOR),
            (None, None) => self.get_or_insert_with(Box::default).spawn_monitor = r,
        }
        previous
    }
}

impl<E> Drop for AuxSlot<E> {
    fn drop(&mut self) {
        drop(self.take());
    }
}
