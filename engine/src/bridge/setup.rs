//! Finding where consumption starts: create the topic unless it exists, read the end
//! offset of each of its partitions and assign the consumer to exactly those offsets.
//! `Bridge::start` tries this for a short while; when no broker answers, the consumer
//! thread keeps trying ([`Setup::until_assigned`]) and only then lets the producer
//! send, so every record this node accepted lies past the offsets the consumer reads from.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_lite::future;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

use super::context::Context;
use super::stats::RateLimit;

/// What it takes to create the topic and assign the consumer.
pub(super) struct Setup {
    pub(super) admin: AdminClient<Context>,
    pub(super) topic: String,
    pub(super) partitions: i32,
    /// The topic's `max.message.bytes` when the bridge creates it (an existing topic
    /// keeps its own: raise it there, or the broker refuses large records).
    pub(super) max_record_bytes: usize,
    /// How long one broker request may take.
    pub(super) request_wait: Duration,
    /// Set once the topic is known to exist, so later attempts skip creating it.
    pub(super) topic_exists: AtomicBool,
}

impl Setup {
    /// Tries until `deadline`; returns the number of partitions assigned, or why not.
    pub(super) fn assign_by(&self, consumer: &BaseConsumer<Context>, deadline: Instant) -> Result<usize, String> {
        loop {
            match self.try_assign(consumer) {
                Ok(partitions) => return Ok(partitions),
                Err(error) if Instant::now() + RETRY_PAUSE >= deadline => return Err(error),
                Err(_) => std::thread::sleep(RETRY_PAUSE),
            }
        }
    }

    /// Tries until it succeeds (`true`) or the stop flag is set (`false`), logging
    /// failures at most every [`LOG_INTERVAL_MS`]. Blocks the calling thread.
    pub(super) fn until_assigned(&self, consumer: &BaseConsumer<Context>, stop: &Arc<AtomicBool>) -> bool {
        let log_limit = RateLimit::new(LOG_INTERVAL_MS);
        while !stop.load(Ordering::Relaxed) {
            match self.try_assign(consumer) {
                Ok(partitions) => {
                    tracing::info!(topic = %self.topic, partitions, "kafka reachable; consuming from the end");
                    return true;
                }
                Err(error) => {
                    if let Some(suppressed) = log_limit.allow() {
                        tracing::warn!(topic = %self.topic, suppressed, "kafka not ready, retrying: {error}");
                    }
                    std::thread::sleep(RETRY_PAUSE);
                }
            }
        }
        false
    }

    /// One attempt: topic, end offsets, assignment.
    fn try_assign(&self, consumer: &BaseConsumer<Context>) -> Result<usize, String> {
        if !self.topic_exists.load(Ordering::Relaxed) {
            self.ensure_topic()?;
            self.topic_exists.store(true, Ordering::Relaxed);
        }
        let assignment = self.end_offsets(consumer)?;
        consumer
            .assign(&assignment)
            .map_err(|e| format!("assign partitions: {e}"))?;
        Ok(assignment.count())
    }

    /// Creates the topic unless it exists.
    fn ensure_topic(&self) -> Result<(), String> {
        let options = AdminOptions::new()
            .request_timeout(Some(self.request_wait))
            .operation_timeout(Some(self.request_wait));
        let max_record_bytes = self.max_record_bytes.to_string();
        let topic = NewTopic::new(&self.topic, self.partitions, TopicReplication::Fixed(1))
            .set("max.message.bytes", &max_record_bytes);
        // The admin client runs its own polling thread, so no async runtime is needed.
        let results =
            future::block_on(self.admin.create_topics([&topic], &options)).map_err(|e| format!("create topic: {e}"))?;
        for result in results {
            match result {
                Ok(name) => tracing::info!(topic = %name, partitions = self.partitions, "created kafka topic"),
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((name, code)) => return Err(format!("create topic {name}: {code}")),
            }
        }
        Ok(())
    }

    /// The current end offset of every partition. Explicit offsets instead of
    /// `Offset::End` fix the start position before the producer may send.
    fn end_offsets(&self, consumer: &BaseConsumer<Context>) -> Result<TopicPartitionList, String> {
        let topic = self.topic.as_str();
        let metadata = consumer
            .fetch_metadata(Some(topic), self.request_wait)
            .map_err(|e| format!("read metadata: {e}"))?;
        let Some(meta) = metadata.topics().iter().find(|t| t.name() == topic) else {
            return Err(format!("topic {topic} not in metadata"));
        };
        if let Some(error) = meta.error() {
            return Err(format!("topic {topic}: {:?}", RDKafkaErrorCode::from(error)));
        }
        if meta.partitions().is_empty() {
            return Err(format!("topic {topic} has no partitions yet"));
        }
        let mut assignment = TopicPartitionList::with_capacity(meta.partitions().len());
        for partition in meta.partitions() {
            let (_, high) = consumer
                .fetch_watermarks(topic, partition.id(), self.request_wait)
                .map_err(|e| format!("read end offsets: {e}"))?;
            assignment
                .add_partition_offset(topic, partition.id(), Offset::Offset(high))
                .map_err(|e| e.to_string())?;
        }
        Ok(assignment)
    }
}

/// Pause between attempts.
const RETRY_PAUSE: Duration = Duration::from_millis(200);
/// At most one "not ready" line this often while retrying.
const LOG_INTERVAL_MS: u64 = 10_000;
