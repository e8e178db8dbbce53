//! Replay from the log: what a resuming client missed that no shard holds in memory any
//! more is read back from the channel's partition. One replay executor of its own, off
//! the shards and off the live consumer, so that a replay never delays live delivery. It
//! serves requests one at a time (bounded queue; a full queue is a clear "not
//! recovered"), each with its own assignment of one partition from the requested offset
//! to an end offset, keeps the records of the channel (record key) and stops at a bound
//! of messages per request. Answers go back to the asking shard over its channel.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use glommio::channels::shared_channel::SharedSender;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::message::{Headers as _, Message as _};
use rdkafka::{Offset, TopicPartitionList};

use super::context::Context;
use crate::message::{put_destination, Message, Position};

/// A shard's request: the messages of `channel` after `since` and before offset `until`
/// (`None`: the partition's end when the replay starts).
#[derive(Debug, Clone)]
pub struct Request {
    /// Answered with this token.
    pub token: u64,
    /// The asking shard.
    pub shard: usize,
    /// The channel (the record key).
    pub channel: Bytes,
    /// The client's position: its stream is the partition, its check must match the
    /// record found at its offset.
    pub since: Position,
    /// Stop before this offset.
    pub until: Option<u64>,
}

/// What a replay found.
#[derive(Debug)]
pub struct Answer {
    /// The request's token.
    pub token: u64,
    /// The channel's messages after the position, oldest first.
    pub messages: Vec<Arc<Message>>,
    /// True when every message after the position up to the end was found; false when
    /// the position is gone (retention), foreign, or the replay was cut short (bound,
    /// timeout, error).
    pub complete: bool,
}

/// The replay loop's state.
pub(super) struct Replayer {
    pub(super) consumer: BaseConsumer<Context>,
    pub(super) topic: String,
    pub(super) requests: crossbeam_channel::Receiver<Request>,
    pub(super) senders: Vec<SharedSender<Answer>>,
    pub(super) stop: Arc<AtomicBool>,
    /// Most messages one request may bring back.
    pub(super) max_messages: usize,
    /// Set once the live consumer is assigned (from the end offsets of that moment).
    pub(super) live: Arc<AtomicBool>,
}

impl Replayer {
    /// Connects to the shards, then serves requests until the stop flag is set.
    pub(super) async fn run(self) {
        let Some(shards) = super::consumer::connect_all(self.senders, &self.stop).await else {
            return;
        };
        while !self.stop.load(Ordering::Relaxed) {
            let request = match self.requests.recv_timeout(IDLE_WAIT) {
                Ok(request) => request,
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => continue,
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return,
            };
            // A replay to the partition's end hands over to the live consumer, which must
            // start at or before that end: after a degraded start it is assigned later, from
            // the end of that moment, so such a replay waits for it (or cannot vouch).
            let live = request.until.is_some() || wait_live(&self.live, &self.stop);
            let answer = if live {
                replay(&self.consumer, &self.topic, &request, self.max_messages)
            } else {
                Answer {
                    token: request.token,
                    messages: Vec::new(),
                    complete: false,
                }
            };
            if let Some(Some(shard)) = shards.get(request.shard) {
                let _ = shard.send(answer).await;
            }
        }
    }
}

/// Whether the live consumer is assigned (`live`), waiting up to [`REPLAY_TIMEOUT`].
fn wait_live(live: &AtomicBool, stop: &AtomicBool) -> bool {
    let deadline = Instant::now() + REPLAY_TIMEOUT;
    while !live.load(Ordering::Acquire) {
        if Instant::now() >= deadline || stop.load(Ordering::Relaxed) {
            return false;
        }
        std::thread::sleep(LIVE_POLL);
    }
    true
}

/// Reads the records of one request; never fails, answers `complete: false` instead.
fn replay(consumer: &BaseConsumer<Context>, topic: &str, request: &Request, max_messages: usize) -> Answer {
    let mut answer = Answer {
        token: request.token,
        messages: Vec::new(),
        complete: false,
    };
    let (Ok(partition), Ok(from)) = (i32::try_from(request.since.stream), i64::try_from(request.since.seq)) else {
        return answer;
    };
    let Ok((low, high)) = consumer.fetch_watermarks(topic, partition, REQUEST_WAIT) else {
        return answer;
    };
    let until = request
        .until
        .and_then(|u| i64::try_from(u).ok())
        .map_or(high, |u| u.min(high));
    if from < low || from >= until {
        // Gone past retention, or not a position this partition has had.
        return answer;
    }
    let mut assignment = TopicPartitionList::new();
    if assignment
        .add_partition_offset(topic, partition, Offset::Offset(from))
        .is_err()
        || consumer.assign(&assignment).is_err()
    {
        return answer;
    }
    let deadline = Instant::now() + REPLAY_TIMEOUT;
    let mut next = from;
    let mut verified = false;
    while next < until && Instant::now() < deadline {
        let Some(Ok(record)) = consumer.poll(POLL_WAIT) else {
            continue;
        };
        let offset = record.offset();
        next = offset + 1;
        let id = record
            .headers()
            .and_then(|h| h.iter().find(|h| h.key == "id").and_then(|h| h.value))
            .unwrap_or_default();
        let position = Position::new(request.since.stream, u64::try_from(offset).unwrap_or_default(), id);
        if !verified {
            // The first record read must be the client's own message.
            if offset != from || position != request.since {
                return answer;
            }
            verified = true;
            continue;
        }
        if offset >= until || record.key() != Some(&request.channel[..]) {
            continue;
        }
        if answer.messages.len() == max_messages {
            // Too far behind to bring back in one go: the client reloads instead.
            answer.messages.clear();
            return answer;
        }
        let mut bytes = BytesMut::new();
        put_destination(&request.channel, &mut bytes);
        let destination = bytes.len();
        bytes.extend_from_slice(record.payload().unwrap_or_default());
        let body = bytes.len();
        bytes.extend_from_slice(id);
        let bytes = bytes.freeze();
        answer.messages.push(Arc::new(Message {
            destination: bytes.slice(..destination),
            body: bytes.slice(destination..body),
            id: bytes.slice(body..),
            position: Some(position),
            delivered_on_origin: false,
        }));
    }
    let _ = consumer.unassign();
    answer.complete = verified && next >= until;
    answer
}

/// How long an idle replayer waits for a request before looking at the stop flag.
const IDLE_WAIT: Duration = Duration::from_millis(100);
/// How long one broker request may take.
const REQUEST_WAIT: Duration = Duration::from_secs(2);
/// How long one poll waits.
const POLL_WAIT: Duration = Duration::from_millis(100);
/// How often a replay waiting for the live consumer looks again.
const LIVE_POLL: Duration = Duration::from_millis(10);
/// The longest one replay may run.
const REPLAY_TIMEOUT: Duration = Duration::from_secs(10);
