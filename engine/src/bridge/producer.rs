//! The producer thread: drains every shard's bounded outbound queue (crossbeam) into
//! one librdkafka producer, keyed by channel with `origin`/`id` headers; the producer's
//! own polling thread serves delivery reports. When librdkafka's queue is full (an
//! outage or a burst) it waits for deliveries, so the backlog stays in the shards'
//! queues and shards see `Full` from `try_send`: nothing accepted is dropped while the
//! process lives. After a degraded start it sends nothing until the consumer is
//! assigned, so that the consumer reads every record this node sends.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use crossbeam_channel::{Receiver, Select, TryRecvError};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer as _, PurgeConfig, ThreadedProducer};

use super::context::Context;
use crate::message::{channel_of, Message};

/// Everything the producer thread owns.
pub(super) struct Producer {
    pub(super) producer: ThreadedProducer<Context>,
    pub(super) receivers: Vec<Receiver<Message>>,
    /// Each shard's byte budget, by shard index: given back as librdkafka takes a record.
    pub(super) budgets: Vec<super::Budget>,
    pub(super) topic: String,
    pub(super) node_id: Bytes,
    pub(super) stop: Arc<AtomicBool>,
    /// Set once the consumer is assigned; until then nothing is sent (see `setup`).
    pub(super) assigned: Arc<AtomicBool>,
    /// Set when the stop flag is first seen: everything still queued must be out by
    /// this time.
    pub(super) deadline: Cell<Option<Instant>>,
}

impl Producer {
    /// Runs until the stop flag is set, then drains and flushes within
    /// [`SHUTDOWN_WAIT`].
    pub(super) fn run(self) {
        let mut live = vec![true; self.receivers.len()];
        let mut select = select_live(&self.receivers, &live);
        loop {
            let stopping = self.stopping();
            if !stopping && !self.assigned.load(Ordering::Acquire) {
                // Degraded start: records wait in the shards' queues.
                self.sample_queues();
                std::thread::sleep(IDLE_WAIT);
                continue;
            }
            let (moved, closed) = self.drain_once(&mut live, stopping);
            if closed {
                select = select_live(&self.receivers, &live);
            }
            self.sample_queues();
            if stopping && (moved == 0 || self.past_deadline()) {
                break;
            }
            if moved == 0 {
                if live.iter().any(|l| *l) {
                    // Ready or timed out, either way go round: nothing is taken here.
                    let _ = select.ready_timeout(IDLE_WAIT);
                } else {
                    std::thread::sleep(IDLE_WAIT);
                }
            }
        }
        self.finish();
    }

    /// Takes up to [`DRAIN_BATCH`] records from each live queue (all of them when
    /// stopping); returns how many moved and whether a queue closed.
    fn drain_once(&self, live: &mut [bool], stopping: bool) -> (usize, bool) {
        let mut moved = 0;
        let mut closed = false;
        for (index, receiver) in self.receivers.iter().enumerate() {
            if !live.get(index).copied().unwrap_or(false) {
                continue;
            }
            let limit = if stopping { receiver.len().max(1) } else { DRAIN_BATCH };
            for _ in 0..limit {
                match receiver.try_recv() {
                    Ok(message) => {
                        moved += 1;
                        self.send(&message);
                        if let Some(budget) = self.budgets.get(index) {
                            budget.give(super::Budget::size(&message));
                        }
                    }
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        if let Some(flag) = live.get_mut(index) {
                            *flag = false;
                        }
                        closed = true;
                        break;
                    }
                }
            }
        }
        (moved, closed)
    }

    /// Whether shutdown has begun; starts the shutdown clock when first seen.
    fn stopping(&self) -> bool {
        let stopping = self.stop.load(Ordering::Relaxed);
        if stopping && self.deadline.get().is_none() {
            self.deadline.set(Some(Instant::now() + SHUTDOWN_WAIT));
        }
        stopping
    }

    fn past_deadline(&self) -> bool {
        self.deadline.get().is_some_and(|d| Instant::now() >= d)
    }

    /// Hands one record to librdkafka, waiting while its queue is full.
    fn send(&self, message: &Message) {
        let producer = &self.producer;
        let mut record = record(&self.topic, &self.node_id, message);
        loop {
            match producer.send(record) {
                Ok(()) => return,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    if self.stopping() && self.past_deadline() {
                        producer.context().stats().add_produce_errors(1);
                        return;
                    }
                    record = back;
                    // The producer's polling thread serves delivery reports, which is
                    // what frees room in the queue.
                    std::thread::sleep(QUEUE_FULL_WAIT);
                }
                Err((error, _)) => {
                    producer.context().stats().add_produce_errors(1);
                    producer.context().note_error("produce", &error);
                    return;
                }
            }
        }
    }

    fn sample_queues(&self) {
        let queued: usize = self.receivers.iter().map(Receiver::len).sum();
        let in_flight = u64::try_from(self.producer.in_flight_count()).unwrap_or(0);
        self.producer.context().stats().set_queued(queued as u64, in_flight);
    }

    /// Flushes what librdkafka holds; what is still undelivered at the deadline is
    /// purged, which fails its delivery reports and so counts it as produce errors.
    fn finish(self) {
        let left = self
            .deadline
            .get()
            .map_or(Duration::ZERO, |d| d.saturating_duration_since(Instant::now()));
        let stats = self.producer.context().stats();
        let unsent = self.receivers.iter().map(Receiver::len).sum::<usize>() as u64;
        if let Err(error) = self.producer.flush(left.max(MIN_FLUSH)) {
            tracing::debug!("kafka flush at shutdown: {error}");
        }
        let undelivered = u64::try_from(self.producer.in_flight_count()).unwrap_or(0);
        if undelivered > 0 {
            self.producer.purge(PurgeConfig::default().queue().inflight());
            let _ = self.producer.flush(MIN_FLUSH);
        }
        stats.add_produce_errors(unsent);
        if undelivered + unsent > 0 {
            tracing::warn!(undelivered, unsent, "kafka bridge stopped with records not delivered");
        }
        stats.set_queued(0, 0);
    }
}

/// The Kafka record of the chat `message`: keyed by channel, the chat JSON as value, and
/// the `origin` (this node) and `id` headers, plus `delivered-on-origin` when this node
/// delivered it itself (published while Kafka was away).
pub(super) fn record<'a>(topic: &'a str, node_id: &'a [u8], message: &'a Message) -> BaseRecord<'a, [u8], [u8]> {
    let mut headers = OwnedHeaders::new_with_capacity(3)
        .insert(Header {
            key: "origin",
            value: Some(node_id),
        })
        .insert(Header {
            key: "id",
            value: Some(&message.id[..]),
        });
    if message.delivered_on_origin {
        headers = headers.insert(Header {
            key: super::consumer::DELIVERED_HEADER,
            value: Some(&b"1"[..]),
        });
    }
    BaseRecord::to(topic)
        .key(channel_of(&message.destination).unwrap_or_default())
        .payload(&message.body[..])
        .headers(headers)
}

fn select_live<'a>(receivers: &'a [Receiver<Message>], live: &[bool]) -> Select<'a> {
    let mut select = Select::new();
    for (receiver, _) in receivers.iter().zip(live).filter(|(_, l)| **l) {
        select.recv(receiver);
    }
    select
}

/// Records taken from one shard's queue before looking at the next shard's.
const DRAIN_BATCH: usize = 512;
/// How long an idle producer thread waits for a record before serving callbacks.
const IDLE_WAIT: Duration = Duration::from_millis(100);
/// How long to wait before retrying a record refused with `QueueFull`.
const QUEUE_FULL_WAIT: Duration = Duration::from_millis(1);
/// Bound on draining and flushing at shutdown.
pub(super) const SHUTDOWN_WAIT: Duration = Duration::from_secs(5);
/// The flush gets at least this long even when draining used up the deadline.
const MIN_FLUSH: Duration = Duration::from_millis(100);

#[cfg(test)]
mod tests {
    use rdkafka::message::Headers as _;

    use super::*;

    #[test]
    fn records_carry_key_value_and_headers() {
        let message = Message {
            destination: Bytes::from_static(b"/sub/chat/room-1"),
            body: Bytes::from_static(br#"{"message":"hi"}"#),
            id: Bytes::from_static(b"node-1-0-7"),
            position: None,
            delivered_on_origin: false,
        };
        let record = record("chat", b"node-1", &message);
        assert_eq!(record.topic, "chat");
        assert_eq!(record.key, Some(&b"room-1"[..]));
        assert_eq!(record.payload, Some(&br#"{"message":"hi"}"#[..]));
        let headers = record.headers.expect("headers");
        let pairs: Vec<_> = headers.iter().map(|h| (h.key, h.value)).collect();
        assert_eq!(
            pairs,
            [("origin", Some(&b"node-1"[..])), ("id", Some(&b"node-1-0-7"[..]))]
        );
    }
}
