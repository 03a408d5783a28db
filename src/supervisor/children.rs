//! A supervisor's children: a slab of entries threaded on a doubly linked
//! list in start order, with a map from running pid to entry and, for a
//! static supervisor, from id to entry. Adding, removing, finding a child
//! by pid and changing its state are O(1), so a dynamic supervisor with
//! 100,000 children starts and stops each in constant time, and a restart
//! storm costs the same per restart whatever the number of children.
//!
//! Whoever owns the children when they are dropped kills every running
//! one (untrappable): a supervisor's process future owns them, and so a
//! supervisor that is killed, or ends any other way without stopping them
//! in order, leaves no orphan, whether or not the children trap exits.

use super::hook::Started;
use super::{ChildCount, ChildInfo, ChildSpec, Restart};
use crate::mailbox::MonitorRef;
use crate::process::{ExitReason, Pid, ProcessHandle};
use crate::runtime::Runtime;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// "No entry" in the list links.
const NIL: u32 = u32::MAX;

/// A child's state.
pub(super) enum State {
    /// Running as `pid`, monitored by `monitor`.
    Running {
        pid: Pid,
        monitor: MonitorRef,
        /// See [`Started::handle`].
        handle: Option<ProcessHandle>,
    },
    /// Ended or terminated, not to be restarted (a static child's spec is
    /// kept for `restart_child`/`delete_child`).
    Stopped,
    /// Waiting to be started again by the strategy.
    Restarting,
}

/// One child.
pub(super) struct Child {
    pub(super) spec: ChildSpec,
    pub(super) state: State,
    /// The previous and next entry in start order.
    prev: u32,
    next: u32,
}

impl Child {
    pub(super) fn pid(&self) -> Option<Pid> {
        match self.state {
            State::Running { pid, .. } => Some(pid),
            _ => None,
        }
    }
}

/// Hashes a pid, which is unique and dense, with one multiply.
#[derive(Default)]
pub(super) struct PidHasher(u64);

impl Hasher for PidHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
    }
    fn write_u64(&mut self, n: u64) {
        // Fibonacci hashing; the top bits are well mixed, and hashbrown
        // uses both ends of the hash.
        let h = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        self.0 = h ^ (h >> 32);
    }
}

type PidMap<V> = HashMap<Pid, V, BuildHasherDefault<PidHasher>>;

/// The children of one supervisor.
pub(super) struct Children {
    /// To kill the running children when dropped.
    rt: Runtime,
    /// Entries; `None` for a free one.
    slots: Vec<Option<Child>>,
    /// Free entries, reused last in first out.
    free: Vec<u32>,
    /// First and last in start order.
    head: u32,
    tail: u32,
    /// Running child pid → entry.
    by_pid: PidMap<u32>,
    /// Id → entry; only when ids are unique (a static supervisor).
    by_id: Option<HashMap<String, u32>>,
    /// Entries in use, and how many of them are supervisors.
    len: usize,
    supervisors: usize,
}

impl Children {
    pub(super) fn new(rt: &Runtime, unique_ids: bool) -> Children {
        Children {
            rt: rt.weak_handle(),
            slots: Vec::new(),
            free: Vec::new(),
            head: NIL,
            tail: NIL,
            by_pid: PidMap::default(),
            by_id: unique_ids.then(HashMap::new),
            len: 0,
            supervisors: 0,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }

    pub(super) fn get(&self, i: u32) -> &Child {
        self.slots[i as usize].as_ref().expect("a live entry")
    }

    pub(super) fn try_get(&self, i: u32) -> Option<&Child> {
        self.slots.get(i as usize).and_then(Option::as_ref)
    }

    pub(super) fn get_mut(&mut self, i: u32) -> &mut Child {
        self.slots[i as usize].as_mut().expect("a live entry")
    }

    /// Appends `spec` (stopped) at the end of start order.
    pub(super) fn push(&mut self, spec: ChildSpec) -> u32 {
        let child = Child {
            state: State::Stopped,
            prev: self.tail,
            next: NIL,
            spec,
        };
        if child.spec.supervisor {
            self.supervisors += 1;
        }
        let i = match self.free.pop() {
            Some(i) => i,
            None => {
                self.slots.push(None);
                u32::try_from(self.slots.len() - 1).expect("fewer than 2^32 children")
            }
        };
        if let Some(ids) = &mut self.by_id {
            ids.insert(child.spec.id.clone(), i);
        }
        self.slots[i as usize] = Some(child);
        match self.tail {
            NIL => self.head = i,
            t => self.get_mut(t).next = i,
        }
        self.tail = i;
        self.len += 1;
        i
    }

    /// Removes entry `i` (which must not be running).
    pub(super) fn remove(&mut self, i: u32) -> ChildSpec {
        let child = self.slots[i as usize].take().expect("a live entry");
        assert!(
            !matches!(child.state, State::Running { .. }),
            "a running child is stopped before it is removed"
        );
        match child.prev {
            NIL => self.head = child.next,
            p => self.get_mut(p).next = child.next,
        }
        match child.next {
            NIL => self.tail = child.prev,
            n => self.get_mut(n).prev = child.prev,
        }
        if let Some(ids) = &mut self.by_id {
            ids.remove(&child.spec.id);
        }
        if child.spec.supervisor {
            self.supervisors -= 1;
        }
        self.free.push(i);
        self.len -= 1;
        child.spec
    }

    pub(super) fn by_pid(&self, pid: Pid) -> Option<u32> {
        self.by_pid.get(&pid).copied()
    }

    pub(super) fn by_id(&self, id: &str) -> Option<u32> {
        self.by_id.as_ref().and_then(|ids| ids.get(id).copied())
    }

    /// Entry `i` now runs as `started`.
    pub(super) fn set_running(&mut self, i: u32, started: Started) {
        self.by_pid.insert(started.pid, i);
        self.get_mut(i).state = State::Running {
            pid: started.pid,
            monitor: started.monitor,
            handle: started.handle,
        };
    }

    /// Entry `i` no longer runs (its `Down` is consumed); it becomes `to`.
    pub(super) fn set_not_running(&mut self, i: u32, to: State) {
        let child = self.get_mut(i);
        let old = std::mem::replace(&mut child.state, to);
        if let State::Running { pid, .. } = old {
            self.by_pid.remove(&pid);
        }
    }

    /// The entry after `i` in start order (`None` at the end); `NIL` gives
    /// the first.
    fn next(&self, i: u32) -> Option<u32> {
        let n = if i == NIL {
            self.head
        } else {
            self.get(i).next
        };
        (n != NIL).then_some(n)
    }

    /// Entries from `from` (inclusive) to the end, in start order.
    pub(super) fn from(&self, from: u32) -> Vec<u32> {
        let mut out = Vec::new();
        let mut at = Some(from);
        while let Some(i) = at {
            out.push(i);
            at = self.next(i);
        }
        out
    }

    /// Every entry, in start order.
    pub(super) fn all(&self) -> Vec<u32> {
        match self.next(NIL) {
            Some(first) => self.from(first),
            None => Vec::new(),
        }
    }

    pub(super) fn which(&self) -> Vec<ChildInfo> {
        self.all()
            .into_iter()
            .map(|i| {
                let c = self.get(i);
                ChildInfo {
                    id: c.spec.id.clone(),
                    pid: c.pid(),
                    restart: c.spec.restart,
                    supervisor: c.spec.supervisor,
                }
            })
            .collect()
    }

    pub(super) fn running_pids(&self) -> Vec<Pid> {
        self.all()
            .into_iter()
            .filter_map(|i| self.get(i).pid())
            .collect()
    }

    pub(super) fn count(&self) -> ChildCount {
        ChildCount {
            specs: self.len,
            active: self.by_pid.len(),
            supervisors: self.supervisors,
            workers: self.len - self.supervisors,
        }
    }

    /// Whether `restart` policy restarts a child that ended with `reason`.
    pub(super) fn restarts(restart: Restart, reason: ExitReason) -> bool {
        match restart {
            Restart::Permanent => true,
            Restart::Transient => !matches!(reason, ExitReason::Normal | ExitReason::Shutdown),
            Restart::Temporary => false,
        }
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        // The supervisor is ending: its spawn monitors are not in its own
        // monitor set, so its teardown would not remove them (see
        // `signal::spawn`); they go here, before it leaves the table.
        for child in self.slots.iter().flatten() {
            if let State::Running { pid, monitor, .. } = child.state {
                self.rt.demonitor(monitor);
                self.rt.kill(pid);
            }
        }
    }
}
