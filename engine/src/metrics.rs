//! Per-shard counters, gauges and histograms. Each shard writes only its own `ShardStats`
//! (relaxed atomics on cache lines no other core writes); `/metrics` on any shard reads
//! them all and renders Prometheus text (format 0.0.4: `# HELP`, `# TYPE`, histograms as
//! cumulative `_bucket{le}` series with `_sum` and `_count`, label values escaped), so the
//! message path never takes a lock. Hand-written: a histogram observation is a few
//! relaxed adds, and the text is tested against the format below.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

/// Kinds of errors counted in `chat_errors_total{kind=...}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum ErrorKind {
    /// A rejected HTTP request (4xx).
    Http,
    /// A WebSocket framing violation (close 1002).
    WsProtocol,
    /// Invalid UTF-8 in a text message (close 1007).
    WsUtf8,
    /// A frame or message over the limits (close 1009).
    WsTooBig,
    /// A bad SockJS message.
    SockJs,
    /// A STOMP protocol error answered with `ERROR`.
    Stomp,
    /// A client that stopped sending heart-beats.
    HeartBeatTimeout,
    /// A subscriber dropped because its outbound queue overflowed.
    SlowConsumer,
    /// A publish refused because the Kafka buffer was full.
    KafkaBackpressure,
    /// A socket error (reset, broken pipe).
    Io,
    /// A SockJS HTTP request for a session that does not exist (404).
    SockJsUnknownSession,
    /// An `xhr_send` body over `--max-frame-bytes` (413).
    SockJsTooBig,
    /// A second receiving request on one SockJS session (`c[2010,...]`).
    SockJsSecondReceiver,
    /// A SockJS session refused because the node holds `--max-sockjs-sessions` (503).
    SockJsSessionsFull,
    /// A SockJS session closed because no request polled it for the disconnect delay.
    SockJsAbandoned,
    /// An HTTP request head not complete within the handshake time (408).
    HttpTimeout,
    /// An HTTP request head over its limit (431), or a body over its limit or where no
    /// endpoint takes one (413).
    HttpTooLarge,
    /// An upgraded connection that sent no `CONNECT` within the deadline.
    ConnectTimeout,
    /// A STOMP command or header line over `--max-header-line-bytes`.
    HeaderLineTooLong,
    /// A subscription or receipt id over `--max-id-bytes`.
    IdTooLong,
    /// A destination over `--max-destination-bytes`.
    DestinationTooLong,
    /// A `SUBSCRIBE` past `--max-subscriptions`.
    TooManySubscriptions,
    /// A `SEND` over the connection's publish rate.
    PublishRate,
    /// A connection refused because the node holds `--max-connections` (503).
    NodeFull,
    /// A connection refused because its address holds `--max-connections-per-address`.
    AddressFull,
    /// An HTTP API request without a valid key (401).
    ApiUnauthorized,
    /// An HTTP API request with a bad body (400) or one over `--max-frame-bytes` (413).
    ApiBadRequest,
    /// A `CONNECT` refused for its token (missing, invalid or expired), or a connection
    /// closed when its token expired.
    Auth,
    /// A `SUBSCRIBE` or `SEND` refused by the token's channel permissions.
    Forbidden,
    /// A WebSocket upgrade or SockJS request from an origin not in `--allowed-origins` (403).
    Origin,
}

const ERROR_KINDS: [(ErrorKind, &str); ERROR_KIND_COUNT] = [
    (ErrorKind::Http, "http"),
    (ErrorKind::WsProtocol, "ws_protocol"),
    (ErrorKind::WsUtf8, "ws_utf8"),
    (ErrorKind::WsTooBig, "ws_too_big"),
    (ErrorKind::SockJs, "sockjs"),
    (ErrorKind::Stomp, "stomp"),
    (ErrorKind::HeartBeatTimeout, "heartbeat_timeout"),
    (ErrorKind::SlowConsumer, "slow_consumer"),
    (ErrorKind::KafkaBackpressure, "kafka_backpressure"),
    (ErrorKind::Io, "io"),
    (ErrorKind::SockJsUnknownSession, "sockjs_unknown_session"),
    (ErrorKind::SockJsTooBig, "sockjs_too_big"),
    (ErrorKind::SockJsSecondReceiver, "sockjs_second_receiver"),
    (ErrorKind::SockJsSessionsFull, "sockjs_sessions_full"),
    (ErrorKind::SockJsAbandoned, "sockjs_abandoned"),
    (ErrorKind::HttpTimeout, "http_timeout"),
    (ErrorKind::HttpTooLarge, "http_too_large"),
    (ErrorKind::ConnectTimeout, "connect_timeout"),
    (ErrorKind::HeaderLineTooLong, "header_line_too_long"),
    (ErrorKind::IdTooLong, "id_too_long"),
    (ErrorKind::DestinationTooLong, "destination_too_long"),
    (ErrorKind::TooManySubscriptions, "too_many_subscriptions"),
    (ErrorKind::PublishRate, "publish_rate"),
    (ErrorKind::NodeFull, "connections_node"),
    (ErrorKind::AddressFull, "connections_address"),
    (ErrorKind::ApiUnauthorized, "api_unauthorized"),
    (ErrorKind::ApiBadRequest, "api_bad_request"),
    (ErrorKind::Auth, "auth"),
    (ErrorKind::Forbidden, "forbidden"),
    (ErrorKind::Origin, "origin"),
];
/// How many kinds of errors are counted.
const ERROR_KIND_COUNT: usize = 30;

/// One shard's numbers.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct ShardStats {
    /// Open WebSocket sessions.
    pub connections: AtomicI64,
    /// Active subscriptions.
    pub subscriptions: AtomicI64,
    /// Connections accepted since start.
    pub accepted: AtomicU64,
    /// STOMP frames received.
    pub frames_in: AtomicU64,
    /// `MESSAGE` frames queued to subscribers.
    pub messages_out: AtomicU64,
    /// Messages published by this shard's clients.
    pub published: AtomicU64,
    /// Bytes read from sockets.
    pub bytes_in: AtomicU64,
    /// Bytes written to sockets.
    pub bytes_out: AtomicU64,
    /// Bytes waiting in outbound queues.
    pub queued_bytes: AtomicI64,
    /// Errors by kind, indexed by `ErrorKind as usize`.
    pub errors: [AtomicU64; ERROR_KIND_COUNT],
    /// Requests of SockJS's HTTP transports, by `Transport::index`.
    pub http_requests: [AtomicU64; 5],
    /// Open SockJS HTTP-transport sessions.
    pub http_sessions: AtomicI64,
    /// HTTP connections handed to the shard that owns their request's SockJS session.
    pub handoffs: AtomicU64,
    /// Time from a message reaching this shard (its `SEND` decoded, or its arrival from
    /// another shard or Kafka) to its last local subscriber's queue, ns.
    pub fanout_latency: Histogram<Latency>,
    /// Subscribers of this shard reached per fan-out.
    pub fanout_size: Histogram<Size>,
    /// Bytes in an outbound queue at each write to its socket.
    pub outbound_queue: Histogram<Bytes>,
    /// This shard's subscribers by destination, for the HTTP API's channel list. The
    /// router updates it as subscribers join and leave a room; only an API request reads
    /// it, so the lock is always free on the message path.
    pub subscribers: Mutex<HashMap<bytes::Bytes, usize>>,
}

/// The upper bounds of a histogram's buckets, in its integer unit (at most 15).
pub trait Buckets {
    /// The bounds, increasing.
    const BOUNDS: &'static [u64];
}

/// Latency buckets, ns (100 µs .. 10 s).
#[derive(Debug)]
pub struct Latency;
/// Fan-out size buckets, subscribers.
#[derive(Debug)]
pub struct Size;
/// Byte-count buckets.
#[derive(Debug)]
pub struct Bytes;

impl Buckets for Latency {
    const BOUNDS: &'static [u64] = LATENCY_BUCKETS;
}
impl Buckets for Size {
    const BOUNDS: &'static [u64] = SIZE_BUCKETS;
}
impl Buckets for Bytes {
    const BOUNDS: &'static [u64] = BYTES_BUCKETS;
}

const LATENCY_BUCKETS: &[u64] = &[
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    10_000_000_000,
];
const SIZE_BUCKETS: &[u64] = &[1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 50_000];
const BYTES_BUCKETS: &[u64] = &[
    256, 1_024, 4_096, 16_384, 65_536, 262_144, 1_048_576, 4_194_304, 16_777_216,
];

/// A Prometheus histogram with fixed upper bounds `B` (in integer units: ns, bytes,
/// subscribers), written by one thread and read by any.
#[derive(Debug)]
pub struct Histogram<B> {
    /// Observations per bucket (not cumulative); the last counts those above every bound.
    counts: [AtomicU64; 16],
    sum: AtomicU64,
    buckets: std::marker::PhantomData<B>,
}

impl<B> Default for Histogram<B> {
    fn default() -> Self {
        Histogram {
            counts: Default::default(),
            sum: AtomicU64::new(0),
            buckets: std::marker::PhantomData,
        }
    }
}

impl<B: Buckets> Histogram<B> {
    /// Counts one observation of `value`.
    #[inline]
    pub fn observe(&self, value: u64) {
        let bucket = B::BOUNDS
            .iter()
            .position(|&bound| value <= bound)
            .unwrap_or(B::BOUNDS.len());
        self.counts[bucket.min(15)].fetch_add(1, Relaxed);
        self.sum.fetch_add(value, Relaxed);
    }

    /// Counts one duration.
    #[inline]
    pub fn observe_since(&self, start: std::time::Instant) {
        self.observe(u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX));
    }

    /// Appends the series of this histogram as `name` with `labels` (already rendered,
    /// e.g. `node="n1",shard="0"`); values are divided by `scale` (1e9 for ns → s).
    pub fn render(&self, name: &str, labels: &str, scale: f64, out: &mut String) {
        let mut cumulative = 0;
        for (i, bound) in B::BOUNDS.iter().enumerate() {
            cumulative += self.counts[i].load(Relaxed);
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels},le=\"{}\"}} {cumulative}",
                *bound as f64 / scale
            );
        }
        cumulative += self.counts[B::BOUNDS.len().min(15)].load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {cumulative}");
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", self.sum.load(Relaxed) as f64 / scale);
        let _ = writeln!(out, "{name}_count{{{labels}}} {cumulative}");
    }
}

/// `value` escaped for a Prometheus label value (backslash, double quote, newline).
pub fn escape_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

impl ShardStats {
    /// Counts a subscriber of `destination` joining (`true`) or leaving its room.
    pub fn count_subscriber(&self, destination: &[u8], joined: bool) {
        let Ok(mut rooms) = self.subscribers.lock() else {
            return;
        };
        if joined {
            match rooms.get_mut(destination) {
                Some(n) => *n += 1,
                None => {
                    rooms.insert(bytes::Bytes::copy_from_slice(destination), 1);
                }
            }
        } else if let Some(n) = rooms.get_mut(destination) {
            *n -= 1;
            if *n == 0 {
                rooms.remove(destination);
            }
        }
    }

    /// Adds `n` to a counter.
    #[inline]
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Relaxed);
    }

    /// Moves a gauge by `delta`.
    #[inline]
    pub fn shift(gauge: &AtomicI64, delta: i64) {
        gauge.fetch_add(delta, Relaxed);
    }

    /// Counts one error of `kind`.
    #[inline]
    pub fn error(&self, kind: ErrorKind) {
        self.errors[kind as usize].fetch_add(1, Relaxed);
    }
}

/// Appends the Prometheus text for all shards (`node` labels every series).
pub fn render(node: &str, shards: &[std::sync::Arc<ShardStats>], out: &mut String) {
    let node = &escape_label(node);
    type Read = fn(&ShardStats) -> i64;
    let series: [(&str, &str, &str, Read); 11] = [
        ("chat_connections", "gauge", "Open WebSocket sessions.", |s| {
            s.connections.load(Relaxed)
        }),
        ("chat_subscriptions", "gauge", "Active subscriptions.", |s| {
            s.subscriptions.load(Relaxed)
        }),
        (
            "chat_outbound_queued_bytes",
            "gauge",
            "Bytes waiting in outbound queues.",
            |s| s.queued_bytes.load(Relaxed),
        ),
        ("chat_accepted_total", "counter", "Connections accepted.", |s| {
            s.accepted.load(Relaxed) as i64
        }),
        ("chat_frames_in_total", "counter", "STOMP frames received.", |s| {
            s.frames_in.load(Relaxed) as i64
        }),
        (
            "chat_messages_out_total",
            "counter",
            "MESSAGE frames queued to subscribers.",
            |s| s.messages_out.load(Relaxed) as i64,
        ),
        (
            "chat_published_total",
            "counter",
            "Messages published by clients of this shard.",
            |s| s.published.load(Relaxed) as i64,
        ),
        ("chat_bytes_in_total", "counter", "Bytes read from sockets.", |s| {
            s.bytes_in.load(Relaxed) as i64
        }),
        ("chat_bytes_out_total", "counter", "Bytes written to sockets.", |s| {
            s.bytes_out.load(Relaxed) as i64
        }),
        (
            "chat_sockjs_http_sessions",
            "gauge",
            "Open SockJS sessions of the HTTP transports.",
            |s| s.http_sessions.load(Relaxed),
        ),
        (
            "chat_sockjs_handoffs_total",
            "counter",
            "HTTP connections handed to the shard owning their SockJS session.",
            |s| s.handoffs.load(Relaxed) as i64,
        ),
    ];
    for (name, kind, help, read) in series {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (shard, stats) in shards.iter().enumerate() {
            let _ = writeln!(out, "{name}{{node=\"{node}\",shard=\"{shard}\"}} {}", read(stats));
        }
    }
    if let Some((cpu_secs, rss_bytes)) = process_usage() {
        let _ = writeln!(out, "# HELP process_cpu_seconds_total CPU time of the engine process.\n# TYPE process_cpu_seconds_total counter");
        let _ = writeln!(out, "process_cpu_seconds_total{{node=\"{node}\"}} {cpu_secs:.3}");
        let _ = writeln!(out, "# HELP process_resident_memory_bytes Resident memory of the engine process.\n# TYPE process_resident_memory_bytes gauge");
        let _ = writeln!(out, "process_resident_memory_bytes{{node=\"{node}\"}} {rss_bytes}");
    }
    type Render = fn(&ShardStats, &str, &mut String);
    let histograms: [(&str, &str, Render); 3] = [
        (
            "chat_fanout_latency_seconds",
            "From a message reaching the shard (SEND decoded, or arrived from another shard or Kafka) to its last local subscriber's queue.",
            |s, labels, out| s.fanout_latency.render("chat_fanout_latency_seconds", labels, 1e9, out),
        ),
        ("chat_fanout_size", "Subscribers of the shard reached per fan-out.", |s, labels, out| {
            s.fanout_size.render("chat_fanout_size", labels, 1.0, out)
        }),
        (
            "chat_outbound_queue_bytes",
            "Bytes in an outbound queue at each write to its socket.",
            |s, labels, out| s.outbound_queue.render("chat_outbound_queue_bytes", labels, 1.0, out),
        ),
    ];
    for (name, help, render) in histograms {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (shard, stats) in shards.iter().enumerate() {
            render(stats, &format!("node=\"{node}\",shard=\"{shard}\""), out);
        }
    }
    let _ = writeln!(
        out,
        "# HELP chat_sockjs_http_requests_total Requests of SockJS's HTTP transports.\n# TYPE chat_sockjs_http_requests_total counter"
    );
    for (shard, stats) in shards.iter().enumerate() {
        for transport in proto::sockjs::http::Transport::ALL {
            let n = stats.http_requests[transport.index()].load(Relaxed);
            let _ = writeln!(
                out,
                "chat_sockjs_http_requests_total{{node=\"{node}\",shard=\"{shard}\",transport=\"{}\"}} {n}",
                transport.name()
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP chat_errors_total Errors by kind.\n# TYPE chat_errors_total counter"
    );
    for (shard, stats) in shards.iter().enumerate() {
        for (kind, label) in ERROR_KINDS {
            let n = stats.errors[kind as usize].load(Relaxed);
            let _ = writeln!(
                out,
                "chat_errors_total{{node=\"{node}\",shard=\"{shard}\",kind=\"{label}\"}} {n}"
            );
        }
    }
}

/// CPU seconds (user + system) and resident bytes of this process, from /proc.
fn process_usage() -> Option<(f64, u64)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace().skip(11);
    let (utime, stime): (u64, u64) = (fields.next()?.parse().ok()?, fields.next()?.parse().ok()?);
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let resident_pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf only reads a system constant.
    let (ticks, page) = unsafe { (libc::sysconf(libc::_SC_CLK_TCK), libc::sysconf(libc::_SC_PAGESIZE)) };
    if ticks <= 0 || page <= 0 {
        return None;
    }
    Some(((utime + stime) as f64 / ticks as f64, resident_pages * page as u64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn renders_every_shard_and_error_kind() {
        let a = Arc::new(ShardStats::default());
        let b = Arc::new(ShardStats::default());
        ShardStats::shift(&a.connections, 3);
        b.error(ErrorKind::SlowConsumer);
        let mut out = String::new();
        render("n1", &[a, b], &mut out);
        assert!(out.contains("chat_connections{node=\"n1\",shard=\"0\"} 3"));
        assert!(out.contains("chat_errors_total{node=\"n1\",shard=\"1\",kind=\"slow_consumer\"} 1"));
        assert!(out.contains("process_cpu_seconds_total{node=\"n1\"}"));
        assert!(out.contains("chat_sockjs_http_requests_total{node=\"n1\",shard=\"0\",transport=\"xhr_streaming\"} 0"));
        assert!(out.contains("chat_errors_total{node=\"n1\",shard=\"0\",kind=\"sockjs_abandoned\"} 0"));
        for (i, (kind, _)) in ERROR_KINDS.iter().enumerate() {
            assert_eq!(*kind as usize, i, "ERROR_KINDS is in ErrorKind order");
        }
    }

    #[test]
    fn histograms_are_cumulative_with_sum_and_count() {
        let h = Histogram::<Latency>::default();
        h.observe(50_000); // 50 µs: first bucket
        h.observe(2_000_000); // 2 ms
        h.observe(20_000_000_000); // 20 s: above every bound
        let mut out = String::new();
        h.render("x_seconds", "node=\"n\"", 1e9, &mut out);
        assert!(out.contains("x_seconds_bucket{node=\"n\",le=\"0.0001\"} 1\n"), "{out}");
        assert!(out.contains("x_seconds_bucket{node=\"n\",le=\"0.0025\"} 2\n"), "{out}");
        assert!(out.contains("x_seconds_bucket{node=\"n\",le=\"10\"} 2\n"), "{out}");
        assert!(out.contains("x_seconds_bucket{node=\"n\",le=\"+Inf\"} 3\n"), "{out}");
        assert!(out.contains("x_seconds_sum{node=\"n\"} 20.00205\n"), "{out}");
        assert!(out.contains("x_seconds_count{node=\"n\"} 3\n"), "{out}");
    }

    #[test]
    fn text_follows_the_exposition_format() {
        let a = Arc::new(ShardStats::default());
        a.fanout_size.observe(3);
        let mut out = String::new();
        render("we\"ird\\node\n", &[a], &mut out);
        assert!(out.contains("node=\"we\\\"ird\\\\node\\n\""), "{out}");
        // Every line is a comment or `name{labels} value`, and every sample's family was
        // declared with # TYPE before it.
        let mut declared = std::collections::HashSet::new();
        for line in out.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let mut parts = rest.split(' ');
                declared.insert(parts.next().unwrap_or_default().to_owned());
                assert!(
                    matches!(parts.next(), Some("gauge" | "counter" | "histogram")),
                    "{line}"
                );
                continue;
            }
            if line.starts_with("# HELP ") {
                continue;
            }
            let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("no value: {line}"));
            assert!(value.parse::<f64>().is_ok(), "{line}");
            let name = series.split('{').next().unwrap_or_default();
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s).filter(|f| declared.contains(*f)))
                .unwrap_or(name);
            assert!(declared.contains(family), "undeclared {name}: {line}");
        }
    }
}
