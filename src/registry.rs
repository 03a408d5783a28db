//! Names and tags.
//!
//! A name maps to one process; a tag to any number (a process group). Both
//! tables are sharded by a hash of the string, so lookups on the send path
//! (`send_named`) take one shard's read lock and rarely meet a writer. Each
//! process also lists its own names and tags in its aux data, so teardown
//! releases them (before any `Down` or `Exit` for it is delivered; see
//! [`crate::signal`]). Registration checks that the process is alive while
//! holding its aux lock ([`Table::lock_alive`](crate::process::table::Table::lock_alive),
//! the protocol links and monitors use), and every change to a live
//! process's names or tags is made under that lock, registry entry and
//! process list together, so the two never disagree.

use crate::loom::lock::RwLock;
use crate::process::{Pid, ProcessHandle};
use crate::runtime::Runtime;
use std::collections::HashMap;
use std::hash::BuildHasher;

const SHARDS: usize = 32;

type NameShard = HashMap<String, Pid>;
type TagShard = HashMap<String, Vec<Pid>>;

/// Name → pid and tag → pids.
#[derive(Debug)]
pub(crate) struct Registry {
    names: Box<[RwLock<NameShard>]>,
    tags: Box<[RwLock<TagShard>]>,
    hasher: std::collections::hash_map::RandomState,
}

impl Registry {
    pub(crate) fn new() -> Registry {
        Registry {
            names: (0..SHARDS).map(|_| RwLock::default()).collect(),
            tags: (0..SHARDS).map(|_| RwLock::default()).collect(),
            hasher: Default::default(),
        }
    }

    fn index(&self, key: &str) -> usize {
        self.hasher.hash_one(key) as usize % SHARDS
    }

    pub(crate) fn whereis(&self, name: &str) -> Option<Pid> {
        self.names[self.index(name)].read().get(name).copied()
    }

    /// Removes `name` if it still maps to `pid`.
    pub(crate) fn release_name(&self, name: &str, pid: Pid) -> bool {
        let mut shard = self.names[self.index(name)].write();
        if shard.get(name) == Some(&pid) {
            shard.remove(name);
            true
        } else {
            false
        }
    }

    pub(crate) fn release_tag(&self, tag: &str, pid: Pid) -> bool {
        let mut shard = self.tags[self.index(tag)].write();
        let Some(members) = shard.get_mut(tag) else {
            return false;
        };
        let Some(i) = members.iter().position(|&p| p == pid) else {
            return false;
        };
        members.swap_remove(i);
        if members.is_empty() {
            shard.remove(tag);
        }
        true
    }
}

impl Runtime {
    /// Registers `name` for `pid`; false if the name is taken or `pid` is
    /// not alive.
    ///
    /// # Examples
    ///
    /// ```
    /// use rusm_otp::Runtime;
    ///
    /// let rt = Runtime::builder().workers(2).build();
    /// let logger = rt.spawn(|mut ctx| async move {
    ///     ctx.recv().await;
    /// });
    /// assert!(rt.register("logger", logger.pid()));
    /// assert!(!rt.register("logger", logger.pid()), "a name has one holder");
    /// assert!(rt.send_named("logger", "a line"));
    /// rt.block_on(logger.join());
    /// // The name goes with the process.
    /// assert_eq!(rt.whereis("logger"), None);
    /// ```
    pub fn register(&self, name: impl Into<String>, pid: Pid) -> bool {
        let name = name.into();
        let reg = &self.shared.registry;
        let registered = self.shared.table.with_alive(pid, |a| {
            let mut shard = reg.names[reg.index(&name)].write();
            if shard.contains_key(&name) {
                return false;
            }
            shard.insert(name.clone(), pid);
            a.names.push(name);
            true
        });
        registered == Some(true)
    }

    /// The process registered as `name`.
    ///
    /// # Examples
    ///
    /// ```
    /// use rusm_otp::Runtime;
    ///
    /// let rt = Runtime::builder().workers(2).build();
    /// assert_eq!(rt.whereis("db"), None);
    /// let db = rt.spawn(|mut ctx| async move {
    ///     ctx.recv().await;
    /// });
    /// rt.register("db", db.pid());
    /// assert_eq!(rt.whereis("db"), Some(db.pid()));
    /// ```
    pub fn whereis(&self, name: &str) -> Option<Pid> {
        self.shared.registry.whereis(name)
    }

    /// Removes the name; false if it was not registered.
    pub fn unregister(&self, name: &str) -> bool {
        let shared = &self.shared;
        loop {
            let Some(pid) = self.whereis(name) else {
                return false;
            };
            let released = match shared.table.get(pid) {
                // Under the holder's aux lock, which `register` holds too:
                // the registry entry and the holder's own list change
                // together, so its teardown releases exactly what it holds.
                Some(t) => {
                    let mut aux = t.header().aux.lock();
                    let released = shared.registry.release_name(name, pid);
                    if let Some(a) = aux.as_deref_mut().filter(|_| released) {
                        a.names.retain(|n| n != name);
                    }
                    released
                }
                // A dead holder's teardown releases it anyway; whoever
                // comes first wins.
                None => shared.registry.release_name(name, pid),
            };
            if released {
                return true;
            }
            // The name moved between the two looks: look again.
        }
    }

    /// Sends `msg` to the process registered as `name`; false if there is
    /// none (or it ended).
    pub fn send_named<M: Send + 'static>(&self, name: &str, msg: M) -> bool {
        match self.whereis(name) {
            Some(pid) => self.send(pid, msg),
            None => false,
        }
    }

    /// The process registered as `name`, spawning and registering one with
    /// `f` if there is none. Race-free: when several callers race, exactly
    /// one process wins the name; the losers' processes are killed before
    /// they ever run, and every caller gets the winner's pid.
    pub fn whereis_or_spawn<F, Fut>(&self, name: impl Into<String>, f: F) -> Pid
    where
        F: FnOnce(crate::Context) -> Fut,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let name = name.into();
        if let Some(pid) = self.whereis(&name) {
            return pid;
        }
        let mut winner = None;
        let handle: ProcessHandle = self.spawn_inner(f, |pid| {
            loop {
                if self.register(name.clone(), pid) {
                    return;
                }
                if let Some(w) = self.whereis(&name) {
                    winner = Some(w);
                    self.kill(pid);
                    return;
                }
                // The holder died between our two looks: try again.
            }
        });
        winner.unwrap_or(handle.pid())
    }

    /// Adds `pid` to the group `tag`; false if `pid` is not alive. Tagging
    /// again with the same tag returns true and changes nothing.
    pub fn register_tag(&self, tag: impl Into<String>, pid: Pid) -> bool {
        let tag = tag.into();
        let reg = &self.shared.registry;
        self.shared
            .table
            .with_alive(pid, |a| {
                if !a.tags.contains(&tag) {
                    reg.tags[reg.index(&tag)]
                        .write()
                        .entry(tag.clone())
                        .or_default()
                        .push(pid);
                    a.tags.push(tag);
                }
            })
            .is_some()
    }

    /// The members of group `tag`, ascending.
    pub fn whereis_tag(&self, tag: &str) -> Vec<Pid> {
        let reg = &self.shared.registry;
        let mut v = reg.tags[reg.index(tag)]
            .read()
            .get(tag)
            .cloned()
            .unwrap_or_default();
        v.sort_unstable();
        v
    }

    /// Removes `pid` from group `tag`; false if it was not a member.
    pub fn unregister_tag(&self, tag: &str, pid: Pid) -> bool {
        let reg = &self.shared.registry;
        match self.shared.table.get(pid) {
            // Under the member's aux lock, as in `unregister`.
            Some(t) => {
                let mut aux = t.header().aux.lock();
                let removed = reg.release_tag(tag, pid);
                if let Some(a) = aux.as_deref_mut().filter(|_| removed) {
                    a.tags.retain(|x| x != tag);
                }
                removed
            }
            None => reg.release_tag(tag, pid),
        }
    }

    /// Kills every member of group `tag`; returns how many were killed.
    pub fn kill_tag(&self, tag: &str) -> usize {
        self.whereis_tag(tag)
            .into_iter()
            .filter(|&p| self.kill(p))
            .count()
    }
}
