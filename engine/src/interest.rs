//! Which shards have subscribers of which destination, shared by all shards of a node
//! and by the Kafka bridge: a table of per-shard counters in hashed slots. A shard bumps
//! its counter when a destination gains its first local subscriber and drops it when the
//! last one leaves; publishers read it to send a message only to shards that may want
//! it. Collisions only cause harmless extra sends (the receiving shard filters); a
//! missed interest is impossible, because the update happens before the SUBSCRIBE is
//! acknowledged. Atomic loads and adds only: no lock on the message path.

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU32, Ordering};

/// The interest table. Shard ids are `0..shards` (at most 64).
#[derive(Debug)]
pub struct Interest {
    shards: usize,
    counters: Box<[AtomicU32]>,
}

/// A bit set of shard ids.
pub type ShardMask = u64;

impl Interest {
    /// A table for `shards` shards (1..=64).
    ///
    /// # Panics
    /// When `shards` is 0 or over 64 (the config checks this first).
    pub fn new(shards: usize) -> Self {
        assert!(
            (1..=64).contains(&shards),
            "shard count is checked by config to be 1..=64"
        );
        let counters = (0..SLOTS * shards).map(|_| AtomicU32::new(0)).collect();
        Self { shards, counters }
    }

    /// Records that `shard` gained its first local subscriber of `destination`.
    pub fn add(&self, shard: usize, destination: &[u8]) {
        self.counter(shard, destination).fetch_add(1, Ordering::SeqCst);
    }

    /// Records that `shard` lost its last local subscriber of `destination`.
    pub fn remove(&self, shard: usize, destination: &[u8]) {
        self.counter(shard, destination).fetch_sub(1, Ordering::SeqCst);
    }

    /// The shards that may have subscribers of `destination`.
    pub fn shards_for(&self, destination: &[u8]) -> ShardMask {
        let base = slot(destination) * self.shards;
        let mut mask = 0;
        for (shard, counter) in self.counters[base..base + self.shards].iter().enumerate() {
            if counter.load(Ordering::SeqCst) > 0 {
                mask |= 1 << shard;
            }
        }
        mask
    }

    /// The shard that owns `destination`'s order and history: the same on every thread
    /// and, for a given shard count, on every node.
    pub fn owner(&self, destination: &[u8]) -> usize {
        slot(destination) % self.shards
    }

    fn counter(&self, shard: usize, destination: &[u8]) -> &AtomicU32 {
        &self.counters[slot(destination) * self.shards + shard]
    }
}

fn slot(destination: &[u8]) -> usize {
    let mut hasher = FIXED_STATE.build_hasher();
    hasher.write(destination);
    (hasher.finish() as usize) % SLOTS
}

/// A hasher with a fixed seed so every thread agrees on slots.
static FIXED_STATE: std::hash::BuildHasherDefault<std::collections::hash_map::DefaultHasher> =
    std::hash::BuildHasherDefault::new();

/// Slots in the table: collisions stay rare for thousands of busy channels.
const SLOTS: usize = 4096;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracks_interest_per_shard() {
        let table = Interest::new(3);
        assert_eq!(table.shards_for(b"/sub/chat/a"), 0);
        table.add(2, b"/sub/chat/a");
        table.add(0, b"/sub/chat/a");
        assert_eq!(table.shards_for(b"/sub/chat/a"), 0b101);
        table.remove(2, b"/sub/chat/a");
        assert_eq!(table.shards_for(b"/sub/chat/a"), 0b001);
    }
}
