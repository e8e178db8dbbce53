//! The Kafka path without a broker. In: a polled batch of messages whose parts are cut
//! from one shared buffer, as the consumer's `Batch` cuts them; `KafkaRoute` splits it
//! per shard by interest (`bridge::split`), hands each message of a shard's part to that
//! shard's router (`Router::deliver_now`, what `deliver_from_kafka` does for rooms of up
//! to `router::CHUNK` members, without its yields), and drains the subscribers' queues as
//! writers do. All routers live on the calling thread: this path needs no mesh or
//! executor. Out: messages as shards hand them to the producer, for its encode step.
//! Used by the `kafka_route` bench and the gate.

use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use engine::bridge;
use engine::ids::{ConnId, ShardId};
use engine::interest::Interest;
use engine::message::{put_destination, Message, Position};
use engine::metrics::ShardStats;
use engine::outbound::Outbound;
use engine::router::{Delivered, Links, Router, Settings};

use crate::fixtures;

/// The node that reads the records.
pub const NODE_ID: &str = "node-1";
/// The node that published them.
pub const ORIGIN: &str = "node-2";
/// Records in one batch: the consumer's most per poll round.
pub const RECORDS: usize = 1024;
/// Channels the records are spread over.
pub const CHANNELS: usize = 100;
/// Bytes of each record's JSON value.
pub const VALUE_BYTES: usize = 200;
/// Shards of the node reading the batch.
pub const SHARDS: usize = 2;
/// Subscribers per channel on each shard.
pub const SUBSCRIBERS: usize = 10;

/// The name of channel `index`.
pub fn channel(index: usize) -> String {
    format!("room-{index}")
}

/// A chat value of exactly `bytes` bytes (at least 128) for `channel`, with the `time`
/// field a publishing node adds.
pub fn chat_value(channel: &str, bytes: usize) -> Vec<u8> {
    let head = format!(r#"{{"channel":"{channel}","sender":"alice@letters.test","message":""#);
    let tail = br#"","time":"2026-11-18T11:06:40.123Z"}"#;
    let fill = bytes.saturating_sub(head.len() + tail.len());
    let mut value = Vec::with_capacity(bytes);
    value.extend_from_slice(head.as_bytes());
    value.extend(
        fixtures::text(fill)
            .into_iter()
            .map(|b| if b == b'"' { b'\'' } else { b }),
    );
    value.extend_from_slice(tail);
    value
}

/// `records` messages over `channels` channels (message `n` on channel `n % channels`),
/// each part a slice of one shared buffer, like a consumer poll round.
pub fn batch(records: usize, channels: usize, value_bytes: usize) -> Vec<Arc<Message>> {
    let mut arena = BytesMut::with_capacity(records * (value_bytes + 64));
    let mut spans = Vec::with_capacity(records);
    let push = |arena: &mut BytesMut, bytes: &[u8]| {
        let start = arena.len();
        arena.extend_from_slice(bytes);
        start..arena.len()
    };
    for n in 0..records {
        let name = channel(n % channels.max(1));
        let start = arena.len();
        put_destination(name.as_bytes(), &mut arena);
        let destination = start..arena.len();
        let value = push(&mut arena, &chat_value(&name, value_bytes));
        let id = push(&mut arena, format!("{ORIGIN}-0-{n}").as_bytes());
        spans.push((destination, value, id, n));
    }
    let shared = arena.freeze();
    spans
        .into_iter()
        .map(|(destination, value, id, n)| {
            Arc::new(Message {
                destination: shared.slice(destination),
                body: shared.slice(value),
                id: shared.slice(id),
                position: Some(Position::new((n % 8) as u64, n as u64, b"")),
                delivered_on_origin: false,
            })
        })
        .collect()
}

/// `records` messages as shards hand them to the producer, over `channels` channels.
pub fn outgoing(records: usize, channels: usize, value_bytes: usize) -> Vec<Message> {
    (0..records)
        .map(|n| {
            let name = channel(n % channels.max(1));
            Message {
                body: Bytes::from(chat_value(&name, value_bytes)),
                destination: Bytes::from(format!("/sub/chat/{name}")),
                id: Bytes::from(format!("{NODE_ID}-0-{n}")),
                position: None,
                delivered_on_origin: false,
            }
        })
        .collect()
}

/// Several shards' routers on one thread, with subscribers of every channel on every
/// shard, ready to take Kafka batches.
pub struct KafkaRoute {
    interest: Arc<Interest>,
    routers: Vec<Router>,
    stats: Vec<Arc<ShardStats>>,
    queues: Vec<Rc<Outbound>>,
    pending: Vec<Vec<Arc<Message>>>,
    spare: Vec<u8>,
}

impl KafkaRoute {
    /// `shards` routers (1..=64), each with `subscribers` raw STOMP subscribers of each
    /// of `channels` channels.
    pub fn new(shards: usize, channels: usize, subscribers: usize) -> Self {
        let interest = Arc::new(Interest::new(shards));
        let stats: Vec<_> = (0..shards).map(|_| Arc::new(ShardStats::default())).collect();
        let now = Instant::now();
        let mut queues = Vec::with_capacity(shards * channels * subscribers);
        let routers = stats
            .iter()
            .enumerate()
            .map(|(shard, stats)| {
                let links = Links {
                    peers: None,
                    kafka: None,
                };
                let router = Router::new(
                    ShardId(shard),
                    NODE_ID,
                    1 << 32,
                    interest.clone(),
                    links,
                    Settings::default(),
                    stats.clone(),
                );
                for c in 0..channels {
                    let destination = Bytes::from(format!("/sub/chat/{}", channel(c)));
                    for s in 0..subscribers {
                        let out = Rc::new(Outbound::new(QUEUE_BYTES, now));
                        queues.push(out.clone());
                        let conn = ConnId((c * subscribers + s) as u64);
                        router.subscribe(destination.clone(), fixtures::raw_key(), conn, out);
                    }
                }
                router
            })
            .collect();
        Self {
            interest,
            routers,
            stats,
            queues,
            pending: (0..shards).map(|_| Vec::new()).collect(),
            spare: Vec::new(),
        }
    }

    /// Routes one batch: split by interest, each shard's part delivered by its router,
    /// then every queue drained. Returns the deliveries made.
    pub fn route(&mut self, records: &[Arc<Message>]) -> u64 {
        let before = self.delivered();
        bridge::split(records, &self.interest, &mut self.pending);
        for (router, queue) in self.routers.iter().zip(&mut self.pending) {
            for msg in queue.drain(..) {
                let delivered = router.deliver_now(&msg);
                debug_assert_eq!(delivered, Delivered::Done, "rooms here are small");
            }
        }
        fixtures::drain_queues(&self.queues, &mut self.spare);
        self.delivered() - before
    }

    /// Deliveries made by all shards so far.
    pub fn delivered(&self) -> u64 {
        self.stats.iter().map(|s| s.messages_out.load(Relaxed)).sum()
    }
}

/// Bound of each subscriber's queue (it is drained after every batch).
const QUEUE_BYTES: usize = 1 << 20;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_have_the_exact_size_and_parse() {
        let value = chat_value("room-7", VALUE_BYTES);
        assert_eq!(value.len(), VALUE_BYTES);
        let json: serde_json::Value = serde_json::from_slice(&value).expect("JSON");
        assert_eq!(json["channel"], "room-7");
    }

    #[test]
    fn batches_share_one_buffer() {
        let records = batch(10, 3, VALUE_BYTES);
        assert_eq!(records[4].channel().as_deref(), Some(&b"room-1"[..]));
        assert!(records[4].id.starts_with(ORIGIN.as_bytes()));
        let base = records[0].destination.as_ptr();
        let end = records[9].id.as_ptr();
        assert!(end > base && (end as usize - base as usize) < 10 * (VALUE_BYTES + 64));
    }

    #[test]
    fn every_record_reaches_every_subscriber_of_its_channel() {
        let mut rig = KafkaRoute::new(SHARDS, 5, 3);
        let records = batch(40, 5, VALUE_BYTES);
        assert_eq!(rig.route(&records), (40 * SHARDS * 3) as u64);
        assert_eq!(rig.route(&records), (40 * SHARDS * 3) as u64);
        assert!(rig.queues.iter().all(|q| q.is_empty()));
    }

    #[test]
    fn outgoing_records_are_keyed_by_channel() {
        let records = outgoing(5, 2, VALUE_BYTES);
        assert_eq!(records[3].channel().as_deref(), Some(&b"room-1"[..]));
        assert_eq!(records[3].body.len(), VALUE_BYTES);
    }
}
