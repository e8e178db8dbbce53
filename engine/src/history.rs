//! The recent messages of the channels a shard owns, in channel order, for resumes
//! (`x-since`) and joins (`x-history`). Bounded three ways: messages per channel, bytes
//! per shard (the oldest message of the shard goes first) and age. Each channel also
//! remembers its `floor`: every message after it has been stored here (some maybe
//! evicted since, which `evicted` records), so the history can tell a complete answer
//! from one with a gap. Pure data: the router owns one per shard and passes the clock.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::message::{Message, Position};

/// How much history a shard keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Messages kept per channel.
    pub per_channel: usize,
    /// Bytes kept by the shard over all its channels (bodies and destinations).
    pub shard_bytes: usize,
    /// Oldest message kept.
    pub max_age: Duration,
}

/// What the history holds after a position.
#[derive(Debug, PartialEq, Eq)]
pub enum Since {
    /// Every message after the position, oldest first (maybe none).
    Complete(Vec<Arc<Message>>),
    /// The messages held, oldest first, but some between the position and the first of
    /// them may be missing here: they were evicted, or published before this shard
    /// started keeping the channel. `after` is the last position known to be stored
    /// (`None`: nothing is known before `messages`).
    Gap {
        /// The messages held.
        messages: Vec<Arc<Message>>,
    },
    /// The position is not one of this channel's: another log, a message that does not
    /// match, or one from the future.
    Foreign,
}

/// The history of one shard's channels.
#[derive(Debug)]
pub struct History {
    limits: Limits,
    channels: HashMap<Bytes, Channel>,
    /// Every stored message of the shard, oldest first: (destination, position, bytes, when).
    order: VecDeque<(Bytes, Position, usize, Instant)>,
    /// Entries of `order` whose message is already gone.
    dead: usize,
    bytes: usize,
}

#[derive(Debug, Default)]
struct Channel {
    messages: VecDeque<Arc<Message>>,
    /// Every message after this position reached this history (`None`: unknown, as for a
    /// Kafka channel whose older records this node never read).
    floor: Option<Position>,
    /// The newest position evicted, if any.
    evicted: Option<Position>,
}

impl History {
    /// An empty history.
    pub fn new(limits: Limits) -> Self {
        History {
            limits,
            channels: HashMap::new(),
            order: VecDeque::new(),
            dead: 0,
            bytes: 0,
        }
    }

    /// Tells the history that every message of `destination` after `floor` will be
    /// stored (a channel this shard numbers itself, from its first message).
    pub fn set_floor(&mut self, destination: &Bytes, floor: Position) {
        let channel = self.channels.entry(destination.clone()).or_default();
        if channel.floor.is_none() {
            channel.floor = Some(floor);
        }
    }

    /// Stores `msg` (which has a position, later than the channel's last), then evicts
    /// what the limits no longer allow.
    pub fn push(&mut self, msg: Arc<Message>, now: Instant) {
        let Some(position) = msg.position else {
            return;
        };
        let size = size_of(&msg);
        let channel = self.channels.entry(msg.destination.clone()).or_default();
        if channel
            .messages
            .back()
            .is_some_and(|last| last.position >= Some(position))
        {
            return;
        }
        self.order.push_back((msg.destination.clone(), position, size, now));
        channel.messages.push_back(msg);
        self.bytes += size;
        if channel.messages.len() > self.limits.per_channel {
            if let Some(old) = channel.messages.pop_front() {
                channel.evicted = old.position;
                self.bytes -= size_of(&old);
                self.dead += 1;
            }
        }
        self.evict(now);
        if self.dead > self.order.len() / 2 {
            // Drop the order entries of messages the per-channel bound already evicted.
            let channels = &self.channels;
            self.order.retain(|(destination, position, _, _)| {
                channels
                    .get(destination)
                    .and_then(|c| c.messages.front())
                    .and_then(|m| m.position)
                    .is_some_and(|first| first <= *position)
            });
            self.dead = 0;
        }
    }

    /// What the channel `destination` holds after `since`.
    pub fn since(&self, destination: &[u8], since: Position) -> Since {
        let Some(channel) = self.channels.get(destination) else {
            return Since::Gap { messages: Vec::new() };
        };
        let complete_after = channel.evicted.or(channel.floor);
        let (Some(first), Some(last)) = (
            channel.messages.front().and_then(|m| m.position),
            channel.messages.back().and_then(|m| m.position),
        ) else {
            return match complete_after {
                Some(c) if c == since => Since::Complete(Vec::new()),
                Some(c) if c.stream != since.stream || since.seq > c.seq => Since::Foreign,
                _ => Since::Gap { messages: Vec::new() },
            };
        };
        if since.stream != first.stream || since.seq > last.seq {
            return Since::Foreign;
        }
        if since.seq >= first.seq {
            return match channel
                .messages
                .iter()
                .position(|m| m.position.is_some_and(|p| p.seq == since.seq))
            {
                Some(at) if channel.messages[at].position == Some(since) => {
                    Since::Complete(channel.messages.iter().skip(at + 1).cloned().collect())
                }
                _ => Since::Foreign,
            };
        }
        let messages = channel.messages.iter().cloned().collect();
        match complete_after {
            Some(c) if c == since => Since::Complete(messages),
            // Nothing lies between `c` and the first message held.
            Some(c) if c.stream == since.stream && c.seq < since.seq => Since::Foreign,
            _ => Since::Gap { messages },
        }
    }

    /// The last `n` messages of `destination`, oldest first, and whether there were as
    /// many as asked for or the channel's whole history.
    pub fn last(&self, destination: &[u8], n: usize) -> (Vec<Arc<Message>>, bool) {
        let Some(channel) = self.channels.get(destination) else {
            return (Vec::new(), true);
        };
        let skip = channel.messages.len().saturating_sub(n);
        let complete =
            skip > 0 || channel.messages.len() == n || (channel.evicted.is_none() && channel.floor.is_some());
        (channel.messages.iter().skip(skip).cloned().collect(), complete)
    }

    /// The newest position of `destination` held here.
    pub fn head(&self, destination: &[u8]) -> Option<Position> {
        self.channels.get(destination)?.messages.back()?.position
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Drops the oldest messages while over the byte bound or the age limit.
    fn evict(&mut self, now: Instant) {
        while let Some((destination, position, size, at)) = self.order.front() {
            let too_old = now.saturating_duration_since(*at) > self.limits.max_age;
            if self.bytes <= self.limits.shard_bytes && !too_old {
                break;
            }
            let live = self.channels.get_mut(destination).is_some_and(|channel| {
                let live = channel.messages.front().and_then(|m| m.position) == Some(*position);
                if live {
                    channel.messages.pop_front();
                    channel.evicted = Some(*position);
                }
                live
            });
            if live {
                self.bytes -= size;
            } else {
                self.dead = self.dead.saturating_sub(1);
            }
            self.order.pop_front();
        }
    }
}

/// The bytes a stored message counts for.
fn size_of(msg: &Message) -> usize {
    msg.body.len() + msg.destination.len() + msg.id.len() + ENTRY_OVERHEAD
}

/// Bookkeeping bytes counted per stored message (the `Arc`, the queue slots).
const ENTRY_OVERHEAD: usize = 96;

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        per_channel: 4,
        shard_bytes: 1 << 20,
        max_age: Duration::from_secs(60),
    };

    fn pos(seq: u64) -> Position {
        Position::new(7, seq, &id(seq))
    }

    fn id(seq: u64) -> Bytes {
        Bytes::from(format!("n-{seq}"))
    }

    fn msg(channel: &str, seq: u64) -> Arc<Message> {
        let mut m = Message::new(
            Bytes::from(format!("/sub/chat/{channel}")),
            Bytes::from(vec![b'x'; 100]),
        );
        m.id = id(seq);
        m.position = Some(pos(seq));
        Arc::new(m)
    }

    fn seqs(messages: &[Arc<Message>]) -> Vec<u64> {
        messages.iter().filter_map(|m| m.position).map(|p| p.seq).collect()
    }

    #[test]
    fn answers_complete_gap_or_foreign() {
        let now = Instant::now();
        let mut h = History::new(LIMITS);
        for seq in [10, 12, 15, 20] {
            h.push(msg("a", seq), now);
        }
        let a = b"/sub/chat/a";
        match h.since(a, pos(12)) {
            Since::Complete(m) => assert_eq!(seqs(&m), [15, 20]),
            other => panic!("{other:?}"),
        }
        assert_eq!(h.since(a, pos(20)), Since::Complete(Vec::new()));
        assert_eq!(h.since(a, pos(13)), Since::Foreign, "no message 13 in this channel");
        assert_eq!(h.since(a, pos(21)), Since::Foreign, "from the future");
        assert_eq!(h.since(a, Position::new(8, 12, &id(12))), Since::Foreign, "another log");
        assert_eq!(
            h.since(a, Position::new(7, 12, b"other")),
            Since::Foreign,
            "another message"
        );
        // Older than what is held, and nothing known before: a gap.
        match h.since(a, pos(3)) {
            Since::Gap { messages } => assert_eq!(seqs(&messages), [10, 12, 15, 20]),
            other => panic!("{other:?}"),
        }
        // One more: 10 is evicted, so resuming from 10 is still complete, from 9 not.
        h.push(msg("a", 21), now);
        match h.since(a, pos(10)) {
            Since::Complete(m) => assert_eq!(seqs(&m), [12, 15, 20, 21]),
            other => panic!("{other:?}"),
        }
        assert!(matches!(h.since(a, pos(9)), Since::Gap { .. }));
    }

    #[test]
    fn a_floor_makes_old_positions_complete() {
        let now = Instant::now();
        let mut h = History::new(LIMITS);
        let a = Bytes::from_static(b"/sub/chat/a");
        h.set_floor(&a, Position::new(7, 0, b""));
        assert_eq!(h.since(&a, Position::new(7, 0, b"")), Since::Complete(Vec::new()));
        h.push(msg("a", 1), now);
        h.push(msg("a", 2), now);
        match h.since(&a, Position::new(7, 0, b"")) {
            Since::Complete(m) => assert_eq!(seqs(&m), [1, 2]),
            other => panic!("{other:?}"),
        }
        let (last, complete) = h.last(&a, 10);
        assert_eq!((seqs(&last), complete), (vec![1, 2], true));
        let (last, complete) = h.last(&a, 1);
        assert_eq!((seqs(&last), complete), (vec![2], true));
    }

    #[test]
    fn bytes_and_age_bound_the_shard() {
        let now = Instant::now();
        let limits = Limits {
            per_channel: 1000,
            shard_bytes: 10 * (100 + 11 + 3 + ENTRY_OVERHEAD),
            max_age: Duration::from_secs(60),
        };
        let mut h = History::new(limits);
        for seq in 0..30 {
            h.push(msg(if seq % 2 == 0 { "a" } else { "b" }, seq), now);
        }
        assert!(h.bytes() <= limits.shard_bytes, "{}", h.bytes());
        assert_eq!(h.head(b"/sub/chat/b").map(|p| p.seq), Some(29));
        let (a, _) = h.last(b"/sub/chat/a", 100);
        assert!(
            seqs(&a).first().is_some_and(|first| *first >= 18),
            "the oldest go first: {:?}",
            seqs(&a)
        );
        h.push(msg("a", 30), now + Duration::from_secs(61));
        assert_eq!(seqs(&h.last(b"/sub/chat/a", 100).0), [30], "older than a minute: gone");
        assert_eq!(h.last(b"/sub/chat/b", 100).0.len(), 0);
    }

    #[test]
    fn the_per_channel_bound_keeps_the_order_small() {
        let now = Instant::now();
        let mut h = History::new(LIMITS);
        for seq in 0..10_000 {
            h.push(msg("a", seq), now);
        }
        assert_eq!(h.last(b"/sub/chat/a", 100).0.len(), 4);
        assert!(h.order.len() < 20, "{}", h.order.len());
        assert_eq!(h.bytes(), 4 * size_of(&msg("a", 9999)));
    }
}
