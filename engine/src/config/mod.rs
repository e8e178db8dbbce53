//! Typed configuration, checked once at startup. Sources, strongest first: command-line
//! flags, the TOML file named by `--config` (keys are the flag names without `--`),
//! `CHAT_*` environment variables, then defaults. Errors name the offending key.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use clap::Parser;
use tracing_subscriber::EnvFilter;

mod values;
pub use values::{AllowedOrigins, Cidr, KafkaProperty, LogFormat};

/// Everything the engine can be told at startup.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "chat-engine",
    version,
    about = "Thread-per-core STOMP/WebSocket chat engine",
    args_override_self = true
)]
pub struct Config {
    /// Address every shard listens on (SO_REUSEPORT).
    #[arg(long, env = "CHAT_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,
    /// Number of shards (executors); default: one per core of `--cpus` or of the machine.
    #[arg(long, env = "CHAT_SHARDS")]
    pub shards: Option<usize>,
    /// Cores to pin shards to, e.g. `0,2-3`; shard i runs on the i-th listed core (mod).
    #[arg(long, env = "CHAT_CPUS")]
    pub cpus: Option<String>,
    /// Base path of the SockJS endpoint (raw STOMP at `{base}/websocket`).
    #[arg(long, env = "CHAT_BASE_PATH", default_value = "/letters-chat-server")]
    pub base_path: String,
    /// Short alias for raw STOMP over WebSocket.
    #[arg(long, env = "CHAT_WS_PATH", default_value = "/ws")]
    pub ws_path: String,
    /// This node's name, shown in `CONNECTED`'s `server` header and Kafka records.
    #[arg(long, env = "CHAT_NODE_ID", default_value = "node-0")]
    pub node_id: String,
    /// A plain WebSocket echo endpoint at this path (conformance testing only).
    #[arg(long, env = "CHAT_WS_ECHO_PATH")]
    pub ws_echo_path: Option<String>,
    /// Shortest STOMP heart-beat period the server offers to send and wants to receive, ms.
    #[arg(long, env = "CHAT_HEARTBEAT_MS", default_value_t = 10_000)]
    pub heartbeat_ms: u64,
    /// SockJS `h` frame period, ms.
    #[arg(long, env = "CHAT_SOCKJS_HEARTBEAT_MS", default_value_t = 25_000)]
    pub sockjs_heartbeat_ms: u64,
    /// SockJS HTTP transports: a session with no receiving request open for this long is
    /// closed and its subscriptions removed, ms.
    #[arg(long, env = "CHAT_SOCKJS_DISCONNECT_DELAY_MS", default_value_t = 5_000)]
    pub sockjs_disconnect_delay_ms: u64,
    /// SockJS `xhr_streaming` and `eventsource`: bytes of frames after which a response
    /// ends and the client opens the next one (sockjs-node's default, 128 KiB).
    #[arg(long, env = "CHAT_SOCKJS_RESPONSE_LIMIT_BYTES", default_value_t = 128 * 1024)]
    pub sockjs_response_limit_bytes: usize,
    /// SockJS HTTP-transport sessions this node keeps at once; more are answered 503.
    #[arg(long, env = "CHAT_MAX_SOCKJS_SESSIONS", default_value_t = 20_000)]
    pub max_sockjs_sessions: usize,
    /// Largest WebSocket message and STOMP frame accepted, bytes.
    #[arg(long, env = "CHAT_MAX_FRAME_BYTES", default_value_t = 1 << 20)]
    pub max_frame_bytes: usize,
    /// Outbound bytes a connection may have queued before it is dropped as too slow.
    #[arg(long, env = "CHAT_MAX_OUTBOUND_BYTES", default_value_t = 4 << 20)]
    pub max_outbound_bytes: usize,
    /// Subscriptions one connection may hold; more get an `ERROR`.
    #[arg(long, env = "CHAT_MAX_SUBSCRIPTIONS", default_value_t = 1024)]
    pub max_subscriptions: usize,
    /// Largest HTTP request head (request line and headers), bytes; larger gets 431.
    #[arg(long, env = "CHAT_MAX_HEAD_BYTES", default_value_t = 8 * 1024)]
    pub max_head_bytes: usize,
    /// Time a client has to send a whole HTTP request head, counted from the connection's
    /// start or the end of its previous request (not per read), ms; then 408 and close.
    #[arg(long, env = "CHAT_HANDSHAKE_TIMEOUT_MS", default_value_t = 10_000)]
    pub handshake_timeout_ms: u64,
    /// Time an upgraded connection (or SockJS session) has to send `CONNECT`, ms; then it
    /// is closed (1008).
    #[arg(long, env = "CHAT_CONNECT_TIMEOUT_MS", default_value_t = 10_000)]
    pub connect_timeout_ms: u64,
    /// Longest STOMP command or header line, bytes (at most `--max-frame-bytes` in
    /// effect); longer gets an `ERROR`.
    #[arg(long, env = "CHAT_MAX_HEADER_LINE_BYTES", default_value_t = 8 * 1024)]
    pub max_header_line_bytes: usize,
    /// Longest subscription id and `receipt` id, bytes; longer gets an `ERROR`.
    #[arg(long, env = "CHAT_MAX_ID_BYTES", default_value_t = 256)]
    pub max_id_bytes: usize,
    /// Longest `SUBSCRIBE` or `SEND` destination, bytes; longer gets an `ERROR`.
    #[arg(long, env = "CHAT_MAX_DESTINATION_BYTES", default_value_t = 256)]
    pub max_destination_bytes: usize,
    /// Connections this node holds at once (all shards); more get 503 and are closed.
    #[arg(long, env = "CHAT_MAX_CONNECTIONS", default_value_t = 100_000)]
    pub max_connections: usize,
    /// Connections one client address holds at once (loopback not counted); more get 503
    /// and are closed. Behind a proxy the address comes from `X-Forwarded-For` or
    /// `X-Real-IP`, and only when the peer is one of `--trusted-proxies`.
    #[arg(long, env = "CHAT_MAX_CONNECTIONS_PER_ADDRESS", default_value_t = 1024)]
    pub max_connections_per_address: usize,
    /// Proxies (addresses or CIDR blocks, comma-separated, e.g. `10.0.0.0/8,127.0.0.1`)
    /// whose `X-Forwarded-For`/`X-Real-IP` name the client; default: none, so the
    /// peer's address counts.
    #[arg(long, env = "CHAT_TRUSTED_PROXIES", value_delimiter = ',', value_parser = Cidr::parse)]
    pub trusted_proxies: Vec<Cidr>,
    /// `SEND`s one connection may make per second on average (0: unlimited); over it a
    /// `SEND` gets an `ERROR` and is dropped, the connection stays.
    #[arg(long, env = "CHAT_MAX_PUBLISH_RATE", default_value_t = 500)]
    pub max_publish_rate: u32,
    /// `SEND`s one connection may make at once after a quiet spell.
    #[arg(long, env = "CHAT_PUBLISH_BURST", default_value_t = 1000)]
    pub publish_burst: u32,
    /// Seconds a SIGTERM drain waits for clients to go before exiting.
    #[arg(long, env = "CHAT_DRAIN_SECS", default_value_t = 5)]
    pub drain_secs: u64,
    /// io_uring buffer memory per shard, KiB (locked memory is scarce: all shards share the memlock limit).
    #[arg(long, env = "CHAT_IO_MEMORY_KIB", default_value_t = 256)]
    pub io_memory_kib: usize,
    /// io_uring submission ring depth per shard (its completion ring holds twice as many).
    /// The kernel finds a pending request to cancel in a table sized from the ring, and
    /// every idle connection keeps a read pending: a deep ring keeps each cancel (the
    /// executor cancels a timer on every pass) from walking thousands of them.
    #[arg(long, env = "CHAT_RING_DEPTH", default_value_t = 4096)]
    pub ring_depth: usize,
    /// Microseconds a busy shard lets arrivals gather before it takes them in one pass
    /// (0: it wakes for each). A shard is busy when it is woken again within this window;
    /// an arrival then waits at most this long more.
    #[arg(long, env = "CHAT_COALESCE_US", default_value_t = 1000)]
    pub coalesce_us: u64,
    /// Kafka bootstrap servers; turns on cluster mode.
    #[arg(long, env = "CHAT_KAFKA_BROKERS")]
    pub kafka_brokers: Option<String>,
    /// Kafka topic carrying chat messages between nodes.
    #[arg(long, env = "CHAT_KAFKA_TOPIC", default_value = "chat")]
    pub kafka_topic: String,
    /// Partitions of the topic when the engine creates it.
    #[arg(long, env = "CHAT_KAFKA_PARTITIONS", default_value_t = 8)]
    pub kafka_partitions: i32,
    /// Producer `linger.ms`: how long the producer waits to fill a batch.
    #[arg(long, env = "CHAT_KAFKA_LINGER_MS", default_value_t = 1)]
    pub kafka_linger_ms: u32,
    /// Consumer `fetch.wait.max.ms`.
    #[arg(long, env = "CHAT_KAFKA_FETCH_WAIT_MS", default_value_t = 5)]
    pub kafka_fetch_wait_ms: u32,
    /// Producer `acks` (`all`, `1`, `0`).
    #[arg(long, env = "CHAT_KAFKA_ACKS", default_value = "all")]
    pub kafka_acks: String,
    /// Messages a shard may have waiting for Kafka before publishers get an ERROR.
    #[arg(long, env = "CHAT_KAFKA_BUFFER", default_value_t = 100_000)]
    pub kafka_buffer: usize,
    /// Bytes of message bodies a shard may have waiting for Kafka (in its queue, and as
    /// much again in librdkafka's) before publishers get an ERROR, MiB.
    #[arg(long, env = "CHAT_KAFKA_BUFFER_MIB", default_value_t = 32)]
    pub kafka_buffer_mib: usize,
    /// A librdkafka setting for every Kafka client, applied after the engine's own
    /// (repeatable), e.g. `security.protocol=SASL_SSL`, `sasl.mechanism=SCRAM-SHA-256`,
    /// `sasl.username=..`, `sasl.password=..`, `ssl.ca.location=..`. Env
    /// CHAT_KAFKA_PROPERTIES: comma-separated, used when no flag or file gives any.
    #[arg(long = "kafka-property", value_name = "KEY=VALUE", value_parser = KafkaProperty::parse)]
    pub kafka_property: Vec<KafkaProperty>,
    /// Messages of history kept per channel (for `x-since` and `x-history`).
    #[arg(long, env = "CHAT_HISTORY_MESSAGES", default_value_t = 1000)]
    pub history_messages: usize,
    /// Bytes of history kept per shard, over all its channels, MiB.
    #[arg(long, env = "CHAT_HISTORY_MIB", default_value_t = 64)]
    pub history_mib: usize,
    /// Age of the oldest message kept in history, seconds.
    #[arg(long, env = "CHAT_HISTORY_SECS", default_value_t = 3600)]
    pub history_secs: u64,
    /// Largest `x-history` a client may ask for.
    #[arg(long, env = "CHAT_MAX_HISTORY", default_value_t = 200)]
    pub max_history: usize,
    /// Most messages one resume may bring back from Kafka; more and the client is told
    /// `x-recovered:false` (reload).
    #[arg(long, env = "CHAT_REPLAY_MAX", default_value_t = 10_000)]
    pub replay_max: usize,
    /// How long a resume may wait for history or a replay before it answers
    /// `x-recovered:false`, ms.
    #[arg(long, env = "CHAT_RESUME_TIMEOUT_MS", default_value_t = 10_000)]
    pub resume_timeout_ms: u64,
    /// Turns on the HTTP API (`POST /api/publish`, `GET /api/channels`) for clients that
    /// send `Authorization: Bearer <key>` with a key of this file: one key per line, blank
    /// lines and `#` comments skipped (two keys let one be rotated). Read at startup;
    /// without it the API answers 404.
    #[arg(long, env = "CHAT_API_KEY_FILE")]
    pub api_key_file: Option<PathBuf>,
    /// Log filter (`tracing` env-filter syntax).
    #[arg(long, env = "CHAT_LOG", default_value = "info")]
    pub log: String,
    /// Log line format: `text` for people, `json` (one object per line) for log collectors.
    #[arg(long, env = "CHAT_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Turns authentication on with HS256 tokens signed with the secret in this file
    /// (its bytes, without a trailing newline). `CONNECT` must then carry
    /// `Authorization:Bearer <jwt>` (or the token as `passcode`) with `sub` (the `sender`
    /// of the client's messages) and `exp` (the connection is closed with an `ERROR` when
    /// it passes), and an optional `chat` claim `{"subscribe":[..],"publish":[..]}` of
    /// channel patterns with `*` wildcards (absent: every channel; a list left out of the
    /// claim: none). Off by default. Exclusive with `--auth-jwt-public-key-file`.
    #[arg(long, env = "CHAT_AUTH_JWT_SECRET_FILE", conflicts_with = "auth_jwt_public_key_file")]
    pub auth_jwt_secret_file: Option<PathBuf>,
    /// Turns authentication on with RS256 (RSA key) or ES256 (P-256 key) tokens checked
    /// with the PEM public key in this file; otherwise as `--auth-jwt-secret-file`.
    #[arg(long, env = "CHAT_AUTH_JWT_PUBLIC_KEY_FILE")]
    pub auth_jwt_public_key_file: Option<PathBuf>,
    /// Origins allowed to open WebSockets and use SockJS (exact, comma-separated, e.g.
    /// `https://chat.example.com,https://www.example.com`), or `*` for any. Requests from
    /// another origin get 403; requests without `Origin` (non-browser clients) pass. SockJS
    /// answers echo an allowed Origin with credentials.
    #[arg(long, env = "CHAT_ALLOWED_ORIGINS", default_value = "*", value_parser = AllowedOrigins::parse)]
    pub allowed_origins: AllowedOrigins,
    /// A TOML file with any of the flags above as keys.
    #[arg(long, env = "CHAT_CONFIG")]
    pub config: Option<PathBuf>,
    /// The token verifier of `--auth-jwt-*-file`, loaded by [`Config::load`].
    #[arg(skip)]
    pub auth: Option<Arc<crate::auth::Verifier>>,
}

/// A configuration problem, naming the key.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The TOML file could not be read or parsed.
    #[error("config file {path}: {reason}")]
    File {
        /// The file.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// A value out of range.
    #[error("config key `{key}`: {reason}")]
    Invalid {
        /// The key.
        key: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The command line did not parse.
    #[error("{0}")]
    Cli(#[from] clap::Error),
}

impl Config {
    /// Parses flags, merges the `--config` file under them and validates the result.
    ///
    /// # Errors
    /// A bad flag, an unreadable file or an invalid value.
    pub fn load<I: IntoIterator<Item = String>>(args: I) -> Result<Self, Error> {
        let args: Vec<String> = args.into_iter().collect();
        let first = Self::try_parse_from(&args)?;
        let mut config = match &first.config {
            None => first,
            Some(path) => {
                let mut merged = vec![args.first().cloned().unwrap_or_default()];
                merged.extend(file_args(path)?);
                merged.extend(args.iter().skip(1).cloned());
                Self::try_parse_from(merged)?
            }
        };
        // Read here, not by clap: clap would split flag values at commas too, and
        // show the values (passwords) in `--help`.
        if config.kafka_property.is_empty() {
            if let Ok(list) = std::env::var(KAFKA_PROPERTIES_ENV) {
                config.kafka_property = env_properties(&list);
            }
        }
        config.validate()?;
        config.auth = config.verifier()?.map(Arc::new);
        Ok(config)
    }

    /// The token verifier that `--auth-jwt-*-file` asks for, if any.
    fn verifier(&self) -> Result<Option<crate::auth::Verifier>, Error> {
        let loaded = match (&self.auth_jwt_secret_file, &self.auth_jwt_public_key_file) {
            (Some(path), _) => ("auth-jwt-secret-file", crate::auth::Verifier::from_secret_file(path)),
            (None, Some(path)) => (
                "auth-jwt-public-key-file",
                crate::auth::Verifier::from_public_key_file(path),
            ),
            (None, None) => return Ok(None),
        };
        match loaded {
            (_, Ok(verifier)) => Ok(Some(verifier)),
            (key, Err(e)) => Err(Error::Invalid {
                key,
                reason: e.to_string(),
            }),
        }
    }

    /// The cores shard i is pinned to: shard i gets `cpus()[i % len]`.
    ///
    /// # Errors
    /// A malformed `--cpus` list.
    pub fn cpus(&self) -> Result<Vec<usize>, Error> {
        match &self.cpus {
            None => Ok((0..available_cores()).collect()),
            Some(list) => parse_cpu_list(list).ok_or_else(|| Error::Invalid {
                key: "cpus",
                reason: format!("`{list}` is not a list like 0,2-3"),
            }),
        }
    }

    /// The number of shards to start.
    ///
    /// # Errors
    /// A malformed `--cpus` list.
    pub fn shard_count(&self) -> Result<usize, Error> {
        Ok(match self.shards {
            Some(n) => n,
            None => self.cpus()?.len(),
        })
    }

    /// The HTTP API's keys, read from `--api-key-file`; `None` without the flag.
    ///
    /// # Errors
    /// A file that cannot be read or holds no key.
    pub fn api_keys(&self) -> Result<Option<crate::shard::api::Keys>, Error> {
        let Some(path) = &self.api_key_file else {
            return Ok(None);
        };
        let invalid = |reason: String| Error::Invalid {
            key: "api-key-file",
            reason: format!("{}: {reason}", path.display()),
        };
        let text = std::fs::read_to_string(path).map_err(|e| invalid(e.to_string()))?;
        crate::shard::api::Keys::parse(&text)
            .map(Some)
            .ok_or_else(|| invalid("holds no key (one per line)".into()))
    }

    /// The Kafka bridge settings, when `--kafka-brokers` turns cluster mode on.
    pub fn bridge(&self) -> Option<crate::bridge::Config> {
        let brokers = self.kafka_brokers.clone()?;
        Some(crate::bridge::Config {
            brokers,
            topic: self.kafka_topic.clone(),
            partitions: self.kafka_partitions,
            node_id: self.node_id.clone(),
            linger_ms: self.kafka_linger_ms,
            fetch_wait_ms: self.kafka_fetch_wait_ms,
            acks: self.kafka_acks.clone(),
            buffer_messages: self.kafka_buffer,
            buffer_bytes: self.kafka_buffer_mib.saturating_mul(1 << 20),
            max_message_bytes: self.max_frame_bytes,
            replay_max_messages: self.replay_max,
            replay_queue: REPLAY_QUEUE,
            properties: self
                .kafka_property
                .iter()
                .filter_map(KafkaProperty::split)
                .map(|(key, value)| (key.to_owned(), value.to_owned()))
                .collect(),
        })
    }

    /// The `tracing` subscriber that `--log` and `--log-format` ask for, writing to `writer`.
    ///
    /// # Panics
    /// Never for a `Config` from `load`: `validate` has parsed the filter.
    pub fn log_subscriber<W>(&self, writer: W) -> Box<dyn tracing::Subscriber + Send + Sync>
    where
        W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
    {
        let filter = EnvFilter::try_new(&self.log).expect("validate() accepted the log filter");
        let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer);
        match self.log_format {
            LogFormat::Text => Box::new(builder.finish()),
            LogFormat::Json => Box::new(builder.json().finish()),
        }
    }

    fn validate(&self) -> Result<(), Error> {
        let invalid = |key, reason: &str| {
            Err(Error::Invalid {
                key,
                reason: reason.to_string(),
            })
        };
        let shards = self.shard_count()?;
        if !(1..=64).contains(&shards) {
            return invalid("shards", "must be between 1 and 64");
        }
        if self.cpus()?.is_empty() {
            return invalid("cpus", "lists no core");
        }
        if !self.base_path.starts_with('/') || self.base_path.len() < 2 || self.base_path.ends_with('/') {
            return invalid(
                "base-path",
                "must start with / and not end with /, e.g. /letters-chat-server",
            );
        }
        if !self.ws_path.starts_with('/') {
            return invalid("ws-path", "must start with /");
        }
        if matches!(&self.ws_echo_path, Some(p) if !p.starts_with('/')) {
            return invalid("ws-echo-path", "must start with /");
        }
        // It goes into `server` headers, Kafka client ids and Prometheus label values.
        let id_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
        if self.node_id.is_empty() || self.node_id.len() > 64 || !self.node_id.chars().all(id_char) {
            return invalid("node-id", "must be 1 to 64 of [A-Za-z0-9._-]");
        }
        if self.sockjs_heartbeat_ms < 100 {
            return invalid(
                "sockjs-heartbeat-ms",
                "must be at least 100 (0 would send h frames without pause)",
            );
        }
        if self.heartbeat_ms < 100 {
            return invalid("heartbeat-ms", "must be at least 100");
        }
        if self.drain_secs > MAX_DRAIN_SECS {
            return invalid("drain-secs", "must be at most 3600");
        }
        if self.max_head_bytes < 1024 {
            return invalid("max-head-bytes", "must be at least 1024");
        }
        if self.handshake_timeout_ms < 100 || self.connect_timeout_ms < 100 {
            return invalid(
                "handshake-timeout-ms",
                "handshake-timeout-ms and connect-timeout-ms must be at least 100",
            );
        }
        if self.max_header_line_bytes < 256 {
            return invalid("max-header-line-bytes", "must be at least 256");
        }
        if self.max_id_bytes < 16 || self.max_destination_bytes < 16 {
            return invalid(
                "max-id-bytes",
                "max-id-bytes and max-destination-bytes must be at least 16",
            );
        }
        if self.max_connections == 0 || self.max_connections_per_address == 0 {
            return invalid(
                "max-connections",
                "max-connections and max-connections-per-address must be at least 1",
            );
        }
        if self.publish_burst == 0 {
            return invalid("publish-burst", "must be at least 1");
        }
        if self.kafka_buffer_mib == 0 || self.kafka_buffer_mib > 64 * 1024 {
            return invalid("kafka-buffer-mib", "must be between 1 and 65536");
        }
        if self.max_frame_bytes < 1024 {
            return invalid("max-frame-bytes", "must be at least 1024");
        }
        if self.max_outbound_bytes < self.max_frame_bytes {
            return invalid("max-outbound-bytes", "must be at least max-frame-bytes");
        }
        if self.sockjs_disconnect_delay_ms < 100 {
            return invalid("sockjs-disconnect-delay-ms", "must be at least 100");
        }
        if self.sockjs_response_limit_bytes < 4096 {
            return invalid("sockjs-response-limit-bytes", "must be at least 4096");
        }
        if self.io_memory_kib < 16 {
            return invalid("io-memory-kib", "must be at least 16");
        }
        if !(16..=32_768).contains(&self.ring_depth) {
            return invalid("ring-depth", "must be between 16 and 32768");
        }
        if self.coalesce_us > MAX_COALESCE_US {
            return invalid("coalesce-us", "must be at most 100000 (100 ms)");
        }
        if self.history_messages == 0 || self.history_mib == 0 || self.history_secs == 0 {
            return invalid(
                "history-messages",
                "history bounds (messages, MiB, seconds) must be at least 1",
            );
        }
        if self.max_history > self.history_messages {
            return invalid("max-history", "must be at most history-messages");
        }
        if self.replay_max == 0 || self.resume_timeout_ms == 0 {
            return invalid("replay-max", "replay-max and resume-timeout-ms must be at least 1");
        }
        if self.kafka_partitions < 1 {
            return invalid("kafka-partitions", "must be at least 1");
        }
        if !matches!(self.kafka_acks.as_str(), "all" | "1" | "0" | "-1") {
            return invalid("kafka-acks", "must be all, 1 or 0");
        }
        // The entry is not shown: it may hold a password.
        if let Some(n) = self.kafka_property.iter().position(|p| p.split().is_none()) {
            return Err(Error::Invalid {
                key: "kafka-property",
                reason: format!("entry {} is not key=value with a non-empty key", n + 1),
            });
        }
        // Refused here rather than quietly replaced by `info`: a typo would hide every log.
        if let Err(e) = EnvFilter::try_new(&self.log) {
            return invalid(
                "log",
                &format!("`{}` is not a tracing filter (e.g. info,engine=debug): {e}", self.log),
            );
        }
        Ok(())
    }
}

/// Longest `--drain-secs`: an hour. Far larger values overflow the shutdown deadline.
const MAX_DRAIN_SECS: u64 = 3600;
/// The longest coalescing window: beyond it the wait is a delay, not a batch.
const MAX_COALESCE_US: u64 = 100_000;

/// Replay requests a node's bridge queues before it answers "not recovered" at once.
const REPLAY_QUEUE: usize = 1024;

/// Turns a TOML table into `--key value` arguments.
fn file_args(path: &PathBuf) -> Result<Vec<String>, Error> {
    let file_error = |reason: String| Error::File {
        path: path.display().to_string(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| file_error(e.to_string()))?;
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| file_error(e.to_string()))?;
    let mut args = Vec::with_capacity(table.len() * 2);
    for (key, value) in table {
        // A repeatable flag (`kafka-property`) takes an array as one flag per item,
        // so items may hold commas.
        if let (toml::Value::Array(items), true) = (&value, repeatable(&key)) {
            for item in items {
                args.push(format!("--{key}"));
                args.push(match item {
                    toml::Value::String(s) => s.clone(),
                    other => other.to_string(),
                });
            }
            continue;
        }
        let value = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            toml::Value::Array(items) => items.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(","),
            other => return Err(file_error(format!("key `{key}`: unsupported value {other}"))),
        };
        args.push(format!("--{key}"));
        args.push(value);
    }
    Ok(args)
}

/// `CHAT_KAFKA_PROPERTIES`: entries separated by commas, blank ones skipped.
fn env_properties(list: &str) -> Vec<KafkaProperty> {
    list.split(',')
        .filter(|entry| !entry.trim().is_empty())
        .map(|entry| KafkaProperty(entry.to_owned()))
        .collect()
}

/// Whether flag `--key` may be given more than once (its values add up).
fn repeatable(key: &str) -> bool {
    use clap::CommandFactory;
    Config::command()
        .get_arguments()
        .any(|arg| arg.get_long() == Some(key) && matches!(arg.get_action(), clap::ArgAction::Append))
}

/// Parses a core list such as `0,2-4` into `[0, 2, 3, 4]`; `None` when malformed.
pub fn parse_cpu_list(list: &str) -> Option<Vec<usize>> {
    let mut cpus = Vec::new();
    for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
                if a > b {
                    return None;
                }
                cpus.extend(a..=b);
            }
            None => cpus.push(part.parse().ok()?),
        }
    }
    Some(cpus)
}

fn available_cores() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// Environment variable with comma-separated `--kafka-property` entries.
const KAFKA_PROPERTIES_ENV: &str = "CHAT_KAFKA_PROPERTIES";

#[cfg(test)]
mod tests;
