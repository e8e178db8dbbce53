//! The messages this node handed to Kafka and has not read back yet. While the broker
//! answers, a message reaches this node's subscribers only when it comes back through
//! the consumer (so that every node sees a channel in one order). When the broker goes
//! away, a shard delivers its new messages here at once; it first takes its messages
//! still on their way ([`Echoes::take`]) and delivers those, so that its subscribers see
//! each publisher's messages in the order sent, and the consumer skips their copies
//! when the broker is back ([`Echoes::echoed`]).
//!
//! A message is known by its shard and the shard's counter `n`, the last two parts of
//! its id (`{node}-{epoch}-{shard}-{n}`). Each shard has its own lock, taken by that
//! shard and by the consumer thread for this node's own records only.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::message::Message;

/// Every shard's messages on their way through Kafka.
#[derive(Debug)]
pub struct Echoes {
    shards: Vec<Mutex<Shard>>,
    /// Most messages one shard tracks; past it the oldest are forgotten (a record the
    /// broker refused for good never comes back, and must not be kept forever).
    limit: usize,
}

#[derive(Debug, Default)]
struct Shard {
    /// Sent, not read back, by counter: the order they were published in.
    pending: BTreeMap<u64, Arc<Message>>,
    /// Delivered here during an outage: their copies from Kafka are skipped.
    taken: HashSet<u64>,
}

/// What the consumer does with one of this node's records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Echo {
    /// Deliver it: it was waiting for its trip through Kafka (or is not tracked).
    Deliver,
    /// Skip it: its shard delivered it here during an outage.
    Skip,
}

impl Echoes {
    /// Tracking for `shards` shards, at most `limit` messages each.
    pub fn new(shards: usize, limit: usize) -> Arc<Self> {
        Arc::new(Self {
            shards: (0..shards).map(|_| Mutex::default()).collect(),
            limit: limit.max(1),
        })
    }

    /// Shard `shard` is about to hand message `n` to Kafka.
    pub fn sent(&self, shard: usize, n: u64, message: Arc<Message>) {
        let Some(mut s) = self.lock(shard) else { return };
        if s.pending.len() >= self.limit {
            s.pending.pop_first();
        }
        s.pending.insert(n, message);
    }

    /// Kafka did not take message `n` after all.
    pub fn unsent(&self, shard: usize, n: u64) {
        if let Some(mut s) = self.lock(shard) {
            s.pending.remove(&n);
        }
    }

    /// The broker is away: shard `shard`'s messages still on their way, oldest first,
    /// to deliver here now; their copies from Kafka will be skipped.
    pub fn take(&self, shard: usize) -> Vec<Arc<Message>> {
        let Some(mut s) = self.lock(shard) else {
            return Vec::new();
        };
        if s.pending.is_empty() {
            return Vec::new();
        }
        let pending = std::mem::take(&mut s.pending);
        if s.taken.len() + pending.len() > self.limit {
            s.taken.clear();
        }
        s.taken.extend(pending.keys());
        pending.into_values().collect()
    }

    /// One of this node's records came back from Kafka with id `id`.
    pub fn echoed(&self, id: &[u8]) -> Echo {
        let Some((shard, n)) = shard_and_counter(id) else {
            return Echo::Deliver;
        };
        let Some(mut s) = self.lock(shard) else {
            return Echo::Deliver;
        };
        if s.taken.remove(&n) {
            return Echo::Skip;
        }
        s.pending.remove(&n);
        Echo::Deliver
    }

    fn lock(&self, shard: usize) -> Option<MutexGuard<'_, Shard>> {
        // A poisoned lock only means a panic elsewhere; the maps are still whole.
        self.shards
            .get(shard)
            .map(|m| m.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
    }
}

/// The shard and counter of a message id `{node}-{epoch}-{shard}-{n}` (the node id may
/// itself hold dashes, so the parts are read from the end).
pub(super) fn shard_and_counter(id: &[u8]) -> Option<(usize, u64)> {
    let mut parts = id.rsplitn(3, |&b| b == b'-');
    let n = parse(parts.next()?)?;
    let shard = parse(parts.next()?)?;
    parts.next()?;
    Some((usize::try_from(shard).ok()?, n))
}

fn parse(digits: &[u8]) -> Option<u64> {
    std::str::from_utf8(digits).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn msg(n: u64) -> Arc<Message> {
        Arc::new(Message::new(
            Bytes::from_static(b"/sub/chat/r"),
            Bytes::from(n.to_string()),
        ))
    }

    fn bodies(messages: &[Arc<Message>]) -> Vec<String> {
        messages
            .iter()
            .map(|m| String::from_utf8_lossy(&m.body).into_owned())
            .collect()
    }

    #[test]
    fn ids_name_shard_and_counter_from_the_end() {
        assert_eq!(shard_and_counter(b"node-1-18c2f-3-42"), Some((3, 42)));
        assert_eq!(shard_and_counter(b"n1-18c2f-0-7"), Some((0, 7)));
        assert_eq!(shard_and_counter(b"0-7"), None);
        assert_eq!(shard_and_counter(b"n1-e-x-7"), None);
        assert_eq!(shard_and_counter(b""), None);
    }

    #[test]
    fn taken_messages_come_oldest_first_and_their_echoes_are_skipped() {
        let echoes = Echoes::new(2, 100);
        for n in [3, 1, 2] {
            echoes.sent(1, n, msg(n));
        }
        echoes.sent(0, 9, msg(9));
        // Message 1 came back before the outage: delivered, and no longer pending.
        assert_eq!(echoes.echoed(b"a-b-e-1-1"), Echo::Deliver);
        echoes.unsent(1, 2);
        assert_eq!(bodies(&echoes.take(1)), ["3"]);
        assert!(echoes.take(1).is_empty(), "taken once");
        assert_eq!(echoes.echoed(b"a-e-1-3"), Echo::Skip);
        assert_eq!(echoes.echoed(b"a-e-1-3"), Echo::Deliver, "skipped once");
        // Other shards, unknown shards and foreign ids are delivered.
        assert_eq!(echoes.echoed(b"a-e-0-9"), Echo::Deliver);
        assert_eq!(echoes.echoed(b"a-e-7-1"), Echo::Deliver);
        assert_eq!(echoes.echoed(b"garbage"), Echo::Deliver);
    }

    #[test]
    fn tracking_is_bounded() {
        let echoes = Echoes::new(1, 2);
        for n in 0..5 {
            echoes.sent(0, n, msg(n));
        }
        assert_eq!(bodies(&echoes.take(0)), ["3", "4"]);
    }
}
