//! Names for the numbers that identify things inside a node, so that a shard index, a
//! connection number and a subscription id cannot be mixed up.

use bytes::Bytes;

/// A shard of this node: its index, `0..shards`, also its id in the channel mesh and in
/// the interest table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ShardId(pub usize);

/// A connection, unique on its shard for the life of the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnId(pub u64);

/// A subscription's `id`, chosen by the client in its `SUBSCRIBE` (`sub-0`, ...).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SubId(pub Bytes);

impl std::fmt::Display for ShardId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::fmt::Display for ConnId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// A subscription's id and destination, in one allocation (one per idle connection).
#[derive(Debug)]
pub struct Subscription {
    /// The id, then the destination.
    both: Box<[u8]>,
    id_len: usize,
}

impl Subscription {
    /// Copies `id` and `destination` into one allocation.
    pub fn new(id: &[u8], destination: &[u8]) -> Self {
        Self {
            both: [id, destination].concat().into_boxed_slice(),
            id_len: id.len(),
        }
    }

    /// The subscription's id.
    pub fn id(&self) -> &[u8] {
        &self.both[..self.id_len]
    }

    /// Its destination.
    pub fn destination(&self) -> &[u8] {
        &self.both[self.id_len..]
    }
}
