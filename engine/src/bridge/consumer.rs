//! The consumer loop, run as the only task of an unpinned glommio executor: polls
//! every partition of the topic (manual assignment), turns each poll's records into
//! [`Message`]s whose parts are slices of one shared buffer (the destination is written
//! there as `/sub/chat/{key}`), and sends each shard a batch of the messages whose
//! destination it has interest in. A full shard channel makes the loop wait
//! (`send(..).await`), so a slow shard slows consumption and nothing is dropped.
//! After a degraded start it first retries the assignment until a broker answers.

use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use futures_lite::future;
use glommio::channels::shared_channel::{ConnectedSender, SharedSender};
use glommio::{GlommioError, ResourceType};
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::message::{Headers as _, Message as _};

use super::context::Context;
use super::echoes::{Echo, Echoes};
use super::setup::Setup;
use crate::interest::Interest;
use crate::message::{put_destination, Message, Position};

/// Everything the consumer loop owns.
pub(super) struct Consumer {
    pub(super) consumer: BaseConsumer<Context>,
    pub(super) senders: Vec<SharedSender<Vec<Arc<Message>>>>,
    /// This node's id: its records marked delivered on origin are skipped.
    pub(super) node_id: Bytes,
    /// This node's records on their way; those delivered during an outage are skipped.
    pub(super) echoes: Arc<Echoes>,
    pub(super) interest: Arc<Interest>,
    pub(super) stop: Arc<AtomicBool>,
    /// After a degraded start: what assigns the consumer once a broker answers.
    pub(super) setup: Option<Setup>,
    /// Set once the consumer is assigned; the producer sends only then.
    pub(super) assigned: Arc<AtomicBool>,
}

impl Consumer {
    /// Connects to the shards, then consumes until the stop flag is set.
    pub(super) async fn run(self) {
        let Consumer {
            consumer,
            senders,
            node_id,
            echoes,
            interest,
            stop,
            setup,
            assigned,
        } = self;
        let Some(mut shards) = connect_all(senders, &stop).await else {
            return;
        };
        if let Some(setup) = setup {
            // Blocks this executor, which runs nothing else, until a broker answers.
            if !setup.until_assigned(&consumer, &stop) {
                return;
            }
            consumer.context().mark_connected();
            assigned.store(true, Ordering::Release);
        }
        let mut batch = Batch {
            arena: BytesMut::new(),
            spans: Vec::new(),
            node_id,
            echoes,
        };
        let mut pending: Vec<Vec<Arc<Message>>> = shards.iter().map(|_| Vec::new()).collect();
        while !stop.load(Ordering::Relaxed) {
            // Blocks this executor for up to POLL_WAIT: it runs nothing else, and a
            // record arriving wakes the poll at once.
            let records = batch.poll(&consumer);
            if records.is_empty() {
                continue;
            }
            let stats = consumer.context().stats();
            stats.add_consumed(records.len() as u64);
            consumer.context().mark_connected();
            split(&records, &interest, &mut pending);
            for (shard, queue) in pending.iter_mut().enumerate() {
                if queue.is_empty() {
                    continue;
                }
                let out = std::mem::take(queue);
                let count = out.len() as u64;
                let Some(slot) = shards.get_mut(shard) else {
                    continue;
                };
                let Some(sender) = slot.as_ref() else {
                    continue;
                };
                match deliver(sender, out, &stop).await {
                    Delivery::Sent => stats.add_routed(count),
                    Delivery::Closed => {
                        tracing::warn!(shard, "shard closed its kafka channel; no more records for it");
                        *slot = None;
                    }
                    Delivery::Stopped => return,
                }
            }
        }
    }
}

/// Appends each message of `records` to the queue in `pending` of every shard that has
/// interest in its destination and of the shard that owns its channel (which keeps the
/// history); `pending[i]` is shard `i`'s. Interest bits of shards beyond `pending` (a
/// table built for more shards) are ignored.
pub fn split(records: &[Arc<Message>], interest: &Interest, pending: &mut [Vec<Arc<Message>>]) {
    let shard_mask = match pending.len() {
        64.. => u64::MAX,
        n => (1u64 << n) - 1,
    };
    for record in records {
        let owner = 1u64 << interest.owner(&record.destination);
        let mut mask = (interest.shards_for(&record.destination) | owner) & shard_mask;
        while mask != 0 {
            let shard = mask.trailing_zeros() as usize;
            mask &= mask - 1;
            if let Some(queue) = pending.get_mut(shard) {
                queue.push(record.clone());
            }
        }
    }
}

/// What became of a batch handed to a shard.
enum Delivery {
    Sent,
    Closed,
    Stopped,
}

/// Sends `batch` to a shard, waiting while its channel is full (back-pressure on
/// consumption) unless the bridge stops meanwhile.
async fn deliver(sender: &ConnectedSender<Vec<Arc<Message>>>, batch: Vec<Arc<Message>>, stop: &AtomicBool) -> Delivery {
    // The common case needs no wait, and so no stop timer.
    let batch = match sender.try_send(batch) {
        Ok(()) => return Delivery::Sent,
        Err(GlommioError::WouldBlock(ResourceType::Channel(batch))) => batch,
        Err(_) => return Delivery::Closed,
    };
    let sent = async { Some(sender.send(batch).await.is_ok()) };
    let stopped = async {
        stopped(stop).await;
        None
    };
    match future::or(sent, stopped).await {
        Some(true) => Delivery::Sent,
        Some(false) => Delivery::Closed,
        None => Delivery::Stopped,
    }
}

/// Connects every shard's sender; `None` when stopped before all shards connected.
pub(super) async fn connect_all<T: Send + Sized + 'static>(
    senders: Vec<SharedSender<T>>,
    stop: &AtomicBool,
) -> Option<Vec<Option<ConnectedSender<T>>>> {
    // Each connect waits for its shard to connect the other end; run them side by
    // side so the shards may connect in any order.
    let tasks: Vec<_> = senders
        .into_iter()
        .map(|sender| glommio::spawn_local(sender.connect()))
        .collect();
    let all = async {
        let mut connected = Vec::with_capacity(tasks.len());
        for task in tasks {
            connected.push(Some(task.await));
        }
        Some(connected)
    };
    future::or(all, async {
        stopped(stop).await;
        None
    })
    .await
}

/// Resolves once the stop flag is set (checked every [`STOP_CHECK`]).
async fn stopped(stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        glommio::timer::sleep(STOP_CHECK).await;
    }
}

/// The records of one poll round, copied out of librdkafka into one buffer.
struct Batch {
    arena: BytesMut,
    spans: Vec<Spans>,
    node_id: Bytes,
    echoes: Arc<Echoes>,
}

/// Where one record's parts lie in [`Batch::arena`].
struct Spans {
    destination: Range<usize>,
    body: Range<usize>,
    id: Range<usize>,
    position: Position,
}

impl Batch {
    /// Waits up to [`POLL_WAIT`] for a record, then takes what is already there, up to
    /// [`MAX_BATCH`] records. Errors are counted and logged; librdkafka retries them.
    fn poll(&mut self, consumer: &BaseConsumer<Context>) -> Vec<Arc<Message>> {
        self.spans.clear();
        self.arena.reserve(ARENA_BYTES);
        let mut wait = POLL_WAIT;
        let mut polled = 0;
        while polled < MAX_BATCH {
            match consumer.poll(wait) {
                None => break,
                Some(Ok(message)) => {
                    polled += 1;
                    wait = Duration::ZERO;
                    let (mut id, mut origin, mut delivered) = (None, None, false);
                    for header in message.headers().iter().flat_map(|h| h.iter()) {
                        match header.key {
                            "id" if id.is_none() => id = header.value,
                            "origin" if origin.is_none() => origin = header.value,
                            DELIVERED_HEADER => delivered = true,
                            _ => {}
                        }
                    }
                    if origin == Some(&self.node_id[..])
                        && (delivered || self.echoes.echoed(id.unwrap_or_default()) == Echo::Skip)
                    {
                        // Published here and delivered here during an outage.
                        continue;
                    }
                    let start = self.arena.len();
                    put_destination(message.key().unwrap_or_default(), &mut self.arena);
                    let destination = start..self.arena.len();
                    let body = push(&mut self.arena, message.payload().unwrap_or_default());
                    let id_bytes = id.unwrap_or_default();
                    let id = push(&mut self.arena, id_bytes);
                    if let Some(lag_ns) = lag_ns(message.timestamp().to_millis()) {
                        consumer.context().stats().observe_lag(lag_ns);
                    }
                    let position = Position::new(
                        u64::try_from(message.partition()).unwrap_or_default(),
                        u64::try_from(message.offset()).unwrap_or_default(),
                        id_bytes,
                    );
                    self.spans.push(Spans {
                        destination,
                        body,
                        id,
                        position,
                    });
                }
                Some(Err(error)) => {
                    consumer.context().stats().add_consume_errors(1);
                    consumer.context().note_error("consume", &error);
                    break;
                }
            }
        }
        // One allocation shared by the whole batch: each part is a slice of it.
        let shared: Bytes = self.arena.split().freeze();
        self.spans
            .iter()
            .map(|s| {
                Arc::new(Message {
                    destination: shared.slice(s.destination.clone()),
                    body: shared.slice(s.body.clone()),
                    id: shared.slice(s.id.clone()),
                    position: Some(s.position),
                    delivered_on_origin: false,
                })
            })
            .collect()
    }
}

/// How long ago, in ns, a record with timestamp `produced_ms` (ms since the epoch) was
/// produced; `None` without a timestamp or with one from the future (clock skew).
fn lag_ns(produced_ms: Option<i64>) -> Option<u64> {
    let produced_ms = u64::try_from(produced_ms?).ok()?;
    let now_ns = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_nanos();
    u64::try_from(now_ns)
        .ok()?
        .checked_sub(produced_ms.checked_mul(1_000_000)?)
}

/// Appends `bytes` to the arena and returns where they went.
fn push(arena: &mut BytesMut, bytes: &[u8]) -> Range<usize> {
    let start = arena.len();
    arena.extend_from_slice(bytes);
    start..arena.len()
}

/// The header of records their node delivered itself (published while Kafka was away).
pub(super) const DELIVERED_HEADER: &str = "delivered-on-origin";
/// How long one poll waits for the first record; also bounds how late a stop is seen.
const POLL_WAIT: Duration = Duration::from_millis(100);
/// Most records taken in one poll round.
const MAX_BATCH: usize = 1024;
/// Room reserved for one round's record bytes (more is allocated when needed).
const ARENA_BYTES: usize = 256 * 1024;
/// How often a task blocked on a shard or a connect checks the stop flag.
const STOP_CHECK: Duration = Duration::from_millis(50);

#[cfg(test)]
mod tests {
    use super::*;

    fn record(channel: &'static str) -> Arc<Message> {
        Arc::new(Message::new(
            Bytes::from(format!("/sub/chat/{channel}")),
            Bytes::from_static(b"{}"),
        ))
    }

    #[test]
    fn splits_records_by_interest() {
        let interest = Interest::new(3);
        interest.add(0, b"/sub/chat/a");
        interest.add(2, b"/sub/chat/a");
        interest.add(1, b"/sub/chat/b");
        let records = [record("a"), record("b"), record("c"), record("a")];
        let mut pending = vec![Vec::new(); 3];
        split(&records, &interest, &mut pending);
        // A shard gets a record when it has interest in it or owns its channel.
        for (shard, queue) in pending.iter().enumerate() {
            let expected: Vec<_> = records
                .iter()
                .filter(|r| {
                    interest.shards_for(&r.destination) & (1 << shard) != 0 || interest.owner(&r.destination) == shard
                })
                .map(|r| r.destination.clone())
                .collect();
            let got: Vec<_> = queue.iter().map(|r| r.destination.clone()).collect();
            assert_eq!(got, expected, "shard {shard}");
        }
        assert!(
            pending[0]
                .iter()
                .filter(|r| r.channel().as_deref() == Some(&b"a"[..]))
                .count()
                == 2
        );
    }

    #[test]
    fn ignores_shards_beyond_the_queues() {
        let interest = Interest::new(4);
        interest.add(3, b"/sub/chat/a");
        interest.add(1, b"/sub/chat/a");
        let mut pending = vec![Vec::new(); 2];
        split(&[record("a")], &interest, &mut pending);
        let owner = interest.owner(b"/sub/chat/a");
        assert_eq!(pending[0].len(), usize::from(owner == 0));
        assert_eq!(pending[1].len(), 1);
    }
}
