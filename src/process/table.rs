//! The process table: pid → live process.
//!
//! Sharded by the low bits of the pid, each shard a `RwLock<HashMap>` on its
//! own cache line. Consecutive pids land in different shards, so parallel
//! spawns (and sends to different processes) rarely meet on one lock; a
//! send holds a shard's read lock only for the push into the mailbox.

use super::Pid;
use super::task::TaskRef;
use crossbeam_utils::CachePadded;
use parking_lot::RwLock;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

const SHARDS: usize = 64;

/// Pids are unique counters: a multiplicative mix is all the hash they need.
#[derive(Default, Clone, Copy)]
struct PidHasher(u64);

impl Hasher for PidHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, _: &[u8]) {
        unreachable!("only u64 keys are hashed")
    }
    fn write_u64(&mut self, n: u64) {
        // Drop the shard bits, then spread (Fibonacci hashing).
        self.0 = (n / SHARDS as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type Shard = HashMap<u64, TaskRef, BuildHasherDefault<PidHasher>>;

/// pid → live process.
pub(crate) struct Table {
    shards: Box<[CachePadded<RwLock<Shard>>]>,
}

impl std::fmt::Debug for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Table").field("len", &self.len()).finish()
    }
}

impl Table {
    pub(crate) fn new() -> Table {
        Table {
            shards: (0..SHARDS).map(|_| CachePadded::default()).collect(),
        }
    }

    fn shard(&self, pid: Pid) -> &RwLock<Shard> {
        &self.shards[pid.raw() as usize % SHARDS]
    }

    pub(crate) fn insert(&self, pid: Pid, task: TaskRef) {
        self.shard(pid).write().insert(pid.raw(), task);
    }

    pub(crate) fn remove(&self, pid: Pid) -> Option<TaskRef> {
        self.shard(pid).write().remove(&pid.raw())
    }

    /// Runs `f` on the live process `pid`, under the shard's read lock.
    pub(crate) fn with<R>(&self, pid: Pid, f: impl FnOnce(&TaskRef) -> R) -> Option<R> {
        self.shard(pid).read().get(&pid.raw()).map(f)
    }

    pub(crate) fn get(&self, pid: Pid) -> Option<TaskRef> {
        self.with(pid, TaskRef::clone)
    }

    pub(crate) fn contains(&self, pid: Pid) -> bool {
        self.shard(pid).read().contains_key(&pid.raw())
    }

    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|s| s.read().len()).sum()
    }

    /// Every live pid, in ascending order.
    pub(crate) fn pids(&self) -> Vec<Pid> {
        let mut v: Vec<Pid> = self
            .shards
            .iter()
            .flat_map(|s| {
                s.read()
                    .keys()
                    .map(|&k| Pid::from_raw(k))
                    .collect::<Vec<_>>()
            })
            .collect();
        v.sort_unstable();
        v
    }

    /// Every live process (a snapshot).
    pub(crate) fn tasks(&self) -> Vec<TaskRef> {
        self.shards
            .iter()
            .flat_map(|s| s.read().values().cloned().collect::<Vec<_>>())
            .collect()
    }
}
