//! The process table: pid → live process.
//!
//! Sharded by blocks of [`BLOCK`] consecutive pids, each shard a
//! `RwLock<HashMap>` on its own cache line. Pids are handed out to each
//! thread in blocks of the same size, so two threads spawning at once work
//! in different shards, and one thread's consecutive spawns stay in one
//! shard's lock line and in neighbouring buckets (the hash keeps the pid's
//! low bits as the bucket index; only the control bits are mixed). A send
//! holds a shard's read lock only for the push into the mailbox.

use super::Pid;
use super::task::TaskRef;
use crossbeam_utils::CachePadded;
use parking_lot::RwLock;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

const SHARDS: usize = 64;
/// Consecutive pids per shard block; also the size of a thread's pid block.
pub(crate) const BLOCK: u64 = 64;

/// Pids are unique counters. The low bits pick the bucket, so a run of
/// consecutive pids fills neighbouring buckets; the top bits, which hashbrown
/// uses as control bytes, are mixed so that they still tell keys apart.
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
        // Squeeze out the shard bits: a shard's pids become dense.
        let dense = (n / (BLOCK * SHARDS as u64)) * BLOCK + n % BLOCK;
        let mixed = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        self.0 = dense ^ (mixed & 0xFE00_0000_0000_0000);
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
        &self.shards[(pid.raw() / BLOCK) as usize % SHARDS]
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
