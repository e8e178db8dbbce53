//! The Kafka side of a node. Shards hand chat messages to [`ShardPort::outbound`]
//! (bounded crossbeam queues); one producer thread writes them to the topic, keyed by
//! channel. One consumer, on its own small glommio executor, reads every partition
//! from the end as of start-up and sends each shard batches of the records whose
//! destination it has interest in ([`Interest`]), over [`ShardPort::inbound`].
//! Outages are buffered within bounds and reported in [`Stats`]; librdkafka reconnects
//! by itself. With no broker at start-up the node starts degraded: the consumer keeps
//! retrying and the producer holds its records until the consumer is assigned, so they
//! reach every node, this one included. rdkafka types stay inside this module.

mod acks;
mod consumer;
mod context;
mod echoes;
mod producer;
mod replay;
mod setup;
mod stats;

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use glommio::channels::shared_channel::{self, SharedReceiver};
use glommio::{LocalExecutorBuilder, Placement};
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::BaseConsumer;
use rdkafka::error::KafkaError;
use rdkafka::producer::ThreadedProducer;

use crate::interest::Interest;
use crate::message::Message;
pub use acks::Acks;
pub use consumer::split;
use context::Context;
pub use echoes::Echoes;
pub use replay::{Answer as ReplayAnswer, Request as ReplayRequest};
use stats::Role;
pub use stats::Stats;

/// How the bridge reaches Kafka; filled from the command line by the config module.
/// Its `Debug` form shows the keys of [`Config::properties`] but not their values.
#[derive(Clone, PartialEq, Eq)]
pub struct Config {
    /// Bootstrap brokers, `host:port[,host:port..]`.
    pub brokers: String,
    /// The topic carrying every chat message of the cluster (default `chat`).
    pub topic: String,
    /// Partitions of the topic when the bridge creates it (default 8, replication 1).
    /// An existing topic keeps its own count.
    pub partitions: i32,
    /// This node's id, sent in each record's `origin` header.
    pub node_id: String,
    /// Producer `linger.ms`: how long to wait to fill a batch (default 1, for low
    /// latency; Kafka 4's own default is 5).
    pub linger_ms: u32,
    /// Consumer `fetch.wait.max.ms`: how long the broker holds an empty fetch
    /// (default 5).
    pub fetch_wait_ms: u32,
    /// Producer `acks`: `all` (default, with idempotence), `1` or `0`.
    pub acks: String,
    /// Bound of each shard's outbound queue, in messages (default 100 000).
    pub buffer_messages: usize,
    /// Bound of each shard's outbound queue, in bytes of bodies and destinations
    /// ([`Budget`]); librdkafka's own queue holds as much again for every shard.
    pub buffer_bytes: usize,
    /// Largest chat message body the node accepts (`--max-frame-bytes`): librdkafka's
    /// `message.max.bytes` and the topic's `max.message.bytes` are set to hold a record
    /// of it, so nothing acknowledged by a `RECEIPT` is refused by Kafka later.
    pub max_message_bytes: usize,
    /// Most messages one replay (a resume from the log) may bring back.
    pub replay_max_messages: usize,
    /// Replay requests that may wait; more are answered "not recovered" at once.
    pub replay_queue: usize,
    /// librdkafka settings `(key, value)` for every client (admin, producer,
    /// consumer), set after the bridge's own so they win: security (`security.protocol`,
    /// `sasl.*`, `ssl.*`) and tuning. Values may be secrets; they are never logged.
    pub properties: Vec<(String, String)>,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys: Vec<&str> = self.properties.iter().map(|(key, _)| key.as_str()).collect();
        f.debug_struct("Config")
            .field("brokers", &self.brokers)
            .field("topic", &self.topic)
            .field("partitions", &self.partitions)
            .field("node_id", &self.node_id)
            .field("linger_ms", &self.linger_ms)
            .field("fetch_wait_ms", &self.fetch_wait_ms)
            .field("acks", &self.acks)
            .field("buffer_messages", &self.buffer_messages)
            .field("buffer_bytes", &self.buffer_bytes)
            .field("max_message_bytes", &self.max_message_bytes)
            .field("replay_max_messages", &self.replay_max_messages)
            .field("replay_queue", &self.replay_queue)
            .field("property_keys", &keys)
            .finish()
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            brokers: "127.0.0.1:9092".to_owned(),
            topic: "chat".to_owned(),
            partitions: 8,
            node_id: "node-1".to_owned(),
            linger_ms: 1,
            fetch_wait_ms: 5,
            acks: "all".to_owned(),
            buffer_messages: 100_000,
            buffer_bytes: 32 << 20,
            max_message_bytes: 1 << 20,
            replay_max_messages: 10_000,
            replay_queue: 1024,
            properties: Vec::new(),
        }
    }
}

/// Builds what the producer thread hands to librdkafka for `message`: the record keyed
/// by channel, with the chat JSON as value and the `origin` (`node_id`) and `id`
/// headers, exactly as the producer does before each send. For benchmarks: the record
/// is opaque (rdkafka types stay inside this module) and is only meant to be dropped.
#[doc(hidden)]
pub fn encode_record<'a>(topic: &'a str, node_id: &'a [u8], message: &'a Message) -> impl Sized + 'a {
    producer::record(topic, node_id, message)
}

/// One shard's two ends of the bridge.
pub struct ShardPort {
    /// Where the shard publishes chat messages, with `try_send`: bounded by
    /// [`Config::buffer_messages`]; `Full` means Kafka is behind or away.
    pub outbound: crossbeam_channel::Sender<Message>,
    /// The byte bound of `outbound`: take [`Budget::size`] of a message before sending it.
    pub budget: Budget,
    /// Batches of messages read from Kafka for this shard; the shard connects it on its
    /// executor.
    pub inbound: SharedReceiver<Vec<Arc<Message>>>,
    /// Where the shard asks for replays from the log (bounded: full means "not now").
    pub replay: crossbeam_channel::Sender<ReplayRequest>,
    /// The answers to this shard's replay requests.
    pub replayed: SharedReceiver<ReplayAnswer>,
    /// The node's messages on their way through Kafka (shared by all shards).
    pub echoes: Arc<Echoes>,
    /// Delivery reports awaited by the shards (shared by all shards).
    pub acks: Arc<Acks>,
}

/// The bytes of one shard's messages between its `try_send` and librdkafka's queue,
/// bounded by [`Config::buffer_bytes`]: the shard takes, the producer thread gives back.
#[derive(Debug, Clone)]
pub struct Budget {
    used: Arc<std::sync::atomic::AtomicUsize>,
    max: usize,
}

impl Budget {
    /// A budget of `max` bytes.
    pub fn new(max: usize) -> Self {
        Self {
            used: Arc::default(),
            max,
        }
    }

    /// What a message costs: its body and destination.
    pub fn size(message: &Message) -> usize {
        message.body.len() + message.destination.len()
    }

    /// Takes `bytes`; false, taking nothing, when that would pass the bound.
    pub fn take(&self, bytes: usize) -> bool {
        let before = self.used.fetch_add(bytes, Ordering::Relaxed);
        if before.saturating_add(bytes) > self.max {
            self.give(bytes);
            return false;
        }
        true
    }

    /// Gives `bytes` back (never below zero: a sender may have bypassed the budget).
    pub fn give(&self, bytes: usize) {
        let _ = self.used.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
            Some(used.saturating_sub(bytes))
        });
    }

    /// Bytes taken now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }
}

/// Why the bridge could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A config value the bridge cannot use; the text names the key.
    #[error("kafka config: {0}")]
    Config(&'static str),
    /// A Kafka operation failed (`op` says which), e.g. no broker reachable.
    #[error("kafka {op}: {reason}")]
    Kafka {
        /// The operation that failed.
        op: &'static str,
        /// librdkafka's description of the failure.
        reason: String,
    },
    /// A bridge thread or its executor could not be started.
    #[error("kafka bridge {what}: {reason}")]
    Runtime {
        /// What could not be started.
        what: &'static str,
        /// Why.
        reason: String,
    },
}

/// A running bridge: a producer thread and a consumer executor.
pub struct Bridge {
    stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
    producer: Option<std::thread::JoinHandle<()>>,
    consumer: Option<glommio::ExecutorJoinHandle<()>>,
    replayer: Option<glommio::ExecutorJoinHandle<()>>,
}

impl Bridge {
    /// Creates the topic if missing, starts producer and consumer threads; returns one
    /// port per shard. Consumption starts at the end of every partition as of this
    /// call: anything produced after it returns reaches the shards that want it.
    /// When no broker answers within [`STARTUP_TIMEOUT`] it returns anyway, degraded:
    /// [`Stats::connected`] is false, published records wait in the shards' queues,
    /// and consumption starts at the end offsets found once a broker answers, before
    /// any of those records is sent.
    ///
    /// # Errors
    /// [`Error::Config`] for an unusable config or shard count (1..=64);
    /// [`Error::Kafka`] when a librdkafka client cannot be created;
    /// [`Error::Runtime`] when a thread cannot start (for the executor: too little
    /// locked memory).
    pub fn start(cfg: &Config, shards: usize, interest: Arc<Interest>) -> Result<(Bridge, Vec<ShardPort>), Error> {
        check(cfg, shards)?;
        let stats = Arc::new(Stats::new());
        let acks = Acks::new(shards);
        let setup = setup::Setup {
            admin: admin_config(cfg)
                .create_with_context(Context::new(Role::Admin, &cfg.topic, Arc::clone(&stats)))
                .map_err(kafka("create admin client"))?,
            topic: cfg.topic.clone(),
            partitions: cfg.partitions,
            max_record_bytes: record_max_bytes(cfg),
            request_wait: REQUEST_WAIT,
            topic_exists: AtomicBool::new(false),
        };
        let consumer: BaseConsumer<Context> = consumer_config(cfg)
            .create_with_context(Context::new(Role::Consumer, &cfg.topic, Arc::clone(&stats)))
            .map_err(kafka("create consumer"))?;
        let producer: ThreadedProducer<Context> = producer_config(cfg, shards)
            .create_with_context(
                Context::new(Role::Producer, &cfg.topic, Arc::clone(&stats)).with_acks(Arc::clone(&acks)),
            )
            .map_err(kafka("create producer"))?;
        // Degraded start: the consumer thread keeps trying, the producer holds its
        // first send until then, and the stats say down until the clients see a broker.
        let setup = match setup.assign_by(&consumer, Instant::now() + STARTUP_TIMEOUT) {
            Ok(partitions) => {
                tracing::info!(partitions, "kafka partitions assigned");
                None
            }
            Err(reason) => {
                tracing::warn!(brokers = %cfg.brokers, "kafka not reachable, starting degraded: {reason}");
                stats.set_connected(Role::Producer, false);
                stats.set_connected(Role::Consumer, false);
                Some(setup)
            }
        };
        let assigned = Arc::new(AtomicBool::new(setup.is_none()));

        let replayer: BaseConsumer<Context> = replay_config(cfg)
            .create_with_context(Context::new(Role::Admin, &cfg.topic, Arc::clone(&stats)))
            .map_err(kafka("create replay consumer"))?;
        let (replay, requests) = crossbeam_channel::bounded(cfg.replay_queue);
        let mut ports = Vec::with_capacity(shards);
        let (mut receivers, mut senders) = (Vec::with_capacity(shards), Vec::with_capacity(shards));
        let mut budgets = Vec::with_capacity(shards);
        let mut answers = Vec::with_capacity(shards);
        let echoes = Echoes::new(shards, cfg.buffer_messages);
        for _ in 0..shards {
            let (outbound, receiver) = crossbeam_channel::bounded(cfg.buffer_messages);
            let (sender, inbound) = shared_channel::new_bounded(INBOUND_BATCHES);
            let (answer, replayed) = shared_channel::new_bounded(INBOUND_BATCHES);
            receivers.push(receiver);
            senders.push(sender);
            answers.push(answer);
            let budget = Budget::new(cfg.buffer_bytes);
            budgets.push(budget.clone());
            ports.push(ShardPort {
                outbound,
                budget,
                inbound,
                replay: replay.clone(),
                replayed,
                echoes: Arc::clone(&echoes),
                acks: Arc::clone(&acks),
            });
        }

        let stop = Arc::new(AtomicBool::new(false));
        let mut bridge = Bridge {
            stats: Arc::clone(&stats),
            stop: Arc::clone(&stop),
            producer: None,
            consumer: None,
            replayer: None,
        };
        let out = producer::Producer {
            producer,
            receivers,
            budgets,
            topic: cfg.topic.clone(),
            node_id: Bytes::copy_from_slice(cfg.node_id.as_bytes()),
            stop: Arc::clone(&stop),
            assigned: Arc::clone(&assigned),
            deadline: Cell::new(None),
        };
        bridge.producer = Some(
            std::thread::Builder::new()
                .name("kafka-out".to_owned())
                .spawn(move || out.run())
                .map_err(|e| Error::Runtime {
                    what: "producer thread",
                    reason: e.to_string(),
                })?,
        );
        let input = consumer::Consumer {
            consumer,
            senders,
            node_id: Bytes::copy_from_slice(cfg.node_id.as_bytes()),
            echoes,
            interest,
            stop,
            setup,
            assigned: Arc::clone(&assigned),
        };
        bridge.consumer = Some(spawn_executor("kafka-in", move || input.run())?);
        let replayer = replay::Replayer {
            consumer: replayer,
            topic: cfg.topic.clone(),
            requests,
            senders: answers,
            stop: Arc::clone(&bridge.stop),
            max_messages: cfg.replay_max_messages,
            live: assigned,
        };
        bridge.replayer = Some(spawn_executor("kafka-replay", move || replayer.run())?);
        tracing::info!(
            brokers = %cfg.brokers,
            topic = %cfg.topic,
            shards,
            "kafka bridge started"
        );
        Ok((bridge, ports))
    }

    /// The bridge's live figures.
    pub fn stats(&self) -> Arc<Stats> {
        Arc::clone(&self.stats)
    }

    /// Flushes the producer (bounded wait) and stops the threads.
    pub fn shutdown(mut self) {
        self.stop_threads();
    }

    fn stop_threads(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for executor in [self.consumer.take(), self.replayer.take()].into_iter().flatten() {
            if let Err(error) = executor.join() {
                tracing::warn!("kafka executor ended with: {error}");
            }
        }
        if let Some(producer) = self.producer.take() {
            if producer.join().is_err() {
                tracing::warn!("kafka producer thread panicked");
            }
        }
        self.stats.set_running(false);
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        self.stop_threads();
    }
}

/// Starts an executor of the bridge (the consumer's, the replayer's) running `task`, and
/// waits until it runs, so that a failure (most often the locked-memory limit) is
/// reported by `start`.
fn spawn_executor<F, T>(name: &'static str, task: F) -> Result<glommio::ExecutorJoinHandle<()>, Error>
where
    F: FnOnce() -> T + Send + 'static,
    T: std::future::Future<Output = ()> + 'static,
{
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let handle = LocalExecutorBuilder::new(Placement::Unbound)
        .name(name)
        // Locked memory is scarce (8 MiB per process, shared by all executors) and
        // this executor does no file I/O.
        .io_memory(EXECUTOR_IO_MEMORY_BYTES)
        .ring_depth(EXECUTOR_RING_DEPTH)
        .spawn(move || async move {
            let _ = ready_tx.send(());
            task().await;
        })
        .map_err(|e| Error::Runtime {
            what: name,
            reason: e.to_string(),
        })?;
    match ready_rx.recv() {
        Ok(()) => Ok(handle),
        Err(_) => {
            let reason = match handle.join() {
                Err(error) => error.to_string(),
                Ok(()) => "exited before running".to_owned(),
            };
            Err(Error::Runtime { what: name, reason })
        }
    }
}

fn check(cfg: &Config, shards: usize) -> Result<(), Error> {
    let topic_ok = |t: &str| {
        !t.is_empty() && t.len() <= 249 && t.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    };
    if !(1..=64).contains(&shards) {
        Err(Error::Config("shards must be 1..=64"))
    } else if cfg.brokers.trim().is_empty() {
        Err(Error::Config("brokers is empty"))
    } else if !topic_ok(&cfg.topic) {
        Err(Error::Config("topic must be 1..=249 of [a-zA-Z0-9._-]"))
    } else if cfg.partitions < 1 {
        Err(Error::Config("partitions must be at least 1"))
    } else if cfg.node_id.is_empty() {
        Err(Error::Config("node_id is empty"))
    } else if !matches!(cfg.acks.as_str(), "all" | "-1" | "1" | "0") {
        Err(Error::Config("acks must be all, 1 or 0"))
    } else if cfg.replay_queue == 0 {
        Err(Error::Config("replay_queue must be at least 1"))
    } else if cfg.buffer_messages == 0 {
        Err(Error::Config("buffer_messages must be at least 1"))
    } else if cfg.buffer_bytes < cfg.max_message_bytes.saturating_mul(4) {
        Err(Error::Config(
            "buffer_bytes must hold at least four of the largest messages",
        ))
    } else if record_max_bytes(cfg) > 1_000_000_000 {
        Err(Error::Config("max_message_bytes must be under 500000000"))
    } else if cfg.linger_ms > 900_000 {
        Err(Error::Config("linger_ms must be at most 900000"))
    } else if cfg.fetch_wait_ms > 300_000 {
        Err(Error::Config("fetch_wait_ms must be at most 300000"))
    } else if cfg.properties.iter().any(|(key, _)| key.trim().is_empty()) {
        Err(Error::Config("properties must not have an empty key"))
    } else {
        Ok(())
    }
}

/// The largest record the bridge may produce: a body of `max_message_bytes` plus the
/// server's `time`, the channel as key, the headers and the batch framing.
pub(crate) fn record_max_bytes(cfg: &Config) -> usize {
    cfg.max_message_bytes
        .saturating_mul(2)
        .saturating_add(RECORD_OVERHEAD_BYTES)
}

/// Room for a record's headers, `time` field and batch framing.
const RECORD_OVERHEAD_BYTES: usize = 64 * 1024;

/// Settings every client shares.
fn common_config(cfg: &Config, role: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &cfg.brokers)
        .set("client.id", format!("chat-engine-{}-{role}", cfg.node_id))
        // Come back within a second of the broker, not after the 10 s default backoff.
        .set("reconnect.backoff.ms", "100")
        .set("reconnect.backoff.max.ms", "1000")
        // Chat records are small and latency-bound: no Nagle delay on broker sockets.
        .set("socket.nagle.disable", "true")
        .set_log_level(RDKafkaLogLevel::Warning);
    config
}

fn admin_config(cfg: &Config) -> ClientConfig {
    let mut config = common_config(cfg, "admin");
    apply_properties(&mut config, cfg);
    config
}

fn producer_config(cfg: &Config, shards: usize) -> ClientConfig {
    let idempotent = matches!(cfg.acks.as_str(), "all" | "-1");
    // librdkafka's own queue holds up to as many records as all shard queues together.
    let queue_messages = cfg.buffer_messages.saturating_mul(shards).clamp(10_000, 100_000_000);
    // And as many bytes as all shard budgets together.
    let queue_kbytes = (cfg.buffer_bytes.saturating_mul(shards) / 1024).clamp(1024, 2_097_151);
    let mut config = common_config(cfg, "out");
    config
        .set("linger.ms", cfg.linger_ms.to_string())
        .set("acks", &cfg.acks)
        .set("enable.idempotence", idempotent.to_string())
        // 0: retry forever; a record the bridge accepted is never dropped silently.
        .set("message.timeout.ms", "0")
        .set("queue.buffering.max.messages", queue_messages.to_string())
        .set("queue.buffering.max.kbytes", queue_kbytes.to_string())
        // A record of the largest accepted message must fit, or librdkafka would refuse
        // it after the client got its RECEIPT (its default is 1,000,000 bytes).
        .set("message.max.bytes", record_max_bytes(cfg).to_string())
        .set("statistics.interval.ms", STATS_INTERVAL_MS);
    apply_properties(&mut config, cfg);
    config
}

fn consumer_config(cfg: &Config) -> ClientConfig {
    // librdkafka wants a group id for assign(); it is never joined or committed to,
    // and unique so no two nodes (or restarts) ever share it.
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let group = format!("chat-engine.{}.{}.{nanos}", cfg.node_id, std::process::id());
    let mut config = common_config(cfg, "in");
    config
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "latest")
        .set("enable.partition.eof", "false")
        .set("fetch.wait.max.ms", cfg.fetch_wait_ms.to_string())
        .set("statistics.interval.ms", STATS_INTERVAL_MS);
    apply_properties(&mut config, cfg);
    config
}

/// The replayer's consumer: like the live one, but reading from assigned offsets only.
fn replay_config(cfg: &Config) -> ClientConfig {
    let mut config = consumer_config(cfg);
    config
        .set("client.id", format!("chat-engine-{}-replay", cfg.node_id))
        .set("auto.offset.reset", "error")
        .remove("statistics.interval.ms");
    apply_properties(&mut config, cfg);
    config
}

/// The user's settings go last, so they replace the bridge's own of the same key.
fn apply_properties(config: &mut ClientConfig, cfg: &Config) {
    for (key, value) in &cfg.properties {
        config.set(key, value);
    }
}

fn kafka(op: &'static str) -> impl Fn(KafkaError) -> Error {
    move |error| Error::Kafka {
        op,
        reason: match error {
            // Its Display form ends with the value, which may be a password (a key
            // misspelt as `sasl.pasword`). librdkafka's own text names the key, and
            // a value only when it is not one of the allowed ones of an enum or number.
            KafkaError::ClientConfig(_, description, key, _) => format!("property `{key}`: {description}"),
            error => error.to_string(),
        },
    }
}

/// How long `start` tries to reach Kafka, create the topic and read end offsets
/// before it starts degraded and leaves the retrying to the consumer thread.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one start-up request to a broker may take.
const REQUEST_WAIT: Duration = Duration::from_secs(1);
/// Bound of each shard's inbound channel, in batches.
const INBOUND_BATCHES: usize = 1024;
/// Locked memory of the consumer executor's I/O buffers.
const EXECUTOR_IO_MEMORY_BYTES: usize = 64 * 1024;
/// io_uring depth of the consumer executor.
const EXECUTOR_RING_DEPTH: usize = 32;
/// librdkafka statistics (broker state, consumer lag) this often.
const STATS_INTERVAL_MS: &str = "1000";

#[cfg(test)]
mod tests;
