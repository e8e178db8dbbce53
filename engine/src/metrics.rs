//! Per-shard counters and gauges. Each shard writes only its own `ShardStats` (relaxed
//! atomics on a cache line no other core writes); `/metrics` on any shard reads them all
//! and renders Prometheus text, so the message path never takes a lock.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

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
}

const ERROR_KINDS: [(ErrorKind, &str); 10] = [
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
];

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
    pub errors: [AtomicU64; 10],
}

impl ShardStats {
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
    type Read = fn(&ShardStats) -> i64;
    let series: [(&str, &str, &str, Read); 9] = [
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
    }
}
