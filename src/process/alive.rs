//! The liveness rule: an addition to a process's aux data (a link, a
//! monitor, a name, a tag, a call watch, a timer) is made under its aux
//! lock, after checking under that lock that the process is still in the
//! table. Teardown leaves the table before it takes the aux lists, so
//! either the check sees the process gone (and the caller adds nothing),
//! or the addition lands before teardown takes the lists, and teardown
//! handles it. One owner for both tables (the real one and its loom
//! stand-in), over their common `contains` and `with`.

use super::Pid;
use super::table::Table;
use crate::loom::lock::{MappedMutexGuard, MutexGuard};
use crate::runtime::{Aux, Header};

/// A process's aux data, locked, with the process found alive under the
/// lock ([`Table::lock_alive`]).
pub(crate) struct LiveAux<'a>(MappedMutexGuard<'a, Aux>);

impl std::ops::Deref for LiveAux<'_> {
    type Target = Aux;
    fn deref(&self) -> &Aux {
        &self.0
    }
}

impl std::ops::DerefMut for LiveAux<'_> {
    fn deref_mut(&mut self) -> &mut Aux {
        &mut self.0
    }
}

impl Table {
    /// Locks `h`'s aux data if its process is alive, checked under the
    /// lock: the one place the liveness rule is enforced. Teardown leaves
    /// the table before it takes the aux lists, so either this sees the
    /// process gone (and the caller adds nothing), or whatever the caller
    /// adds under the lock lands before teardown takes the lists, and
    /// teardown handles it. Every addition of a link, monitor, name, tag,
    /// call watch or timer goes through here.
    pub(crate) fn lock_alive<'a>(&self, h: &'a Header) -> Option<LiveAux<'a>> {
        let aux = h.aux.lock();
        if !self.contains(h.pid) {
            return None;
        }
        Some(LiveAux(MutexGuard::map(aux, |a| {
            a.get_or_insert_with(Default::default)
        })))
    }

    /// Runs `f` on `pid`'s aux data under [`lock_alive`](Self::lock_alive);
    /// `None` if it is not alive. The lock is released before `f`'s result
    /// is returned, so the caller drops whatever user values it holds
    /// (settled watches, timers) outside it.
    pub(crate) fn with_alive<R>(&self, pid: Pid, f: impl FnOnce(&mut Aux) -> R) -> Option<R> {
        self.with(pid, |t| self.lock_alive(t.header()).map(|mut a| f(&mut a)))
            .flatten()
    }
}
