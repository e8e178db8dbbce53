//! Counters and gauges of one node's Kafka bridge, shared lock-free between the
//! producer thread, the consumer thread, librdkafka's callbacks and whoever reads them
//! (the metrics endpoint and the health check). Writers are the bridge's own threads;
//! readers call the getters, [`Stats::healthy`] or [`Stats::render_prometheus`].

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicU8, Ordering};
use std::time::Instant;

use crate::metrics::{escape_label, Histogram, Latency};

/// Live figures of a [`Bridge`](super::Bridge); get them with `Bridge::stats`.
#[derive(Debug)]
pub struct Stats {
    producer_connected: AtomicBool,
    consumer_connected: AtomicBool,
    running: AtomicBool,
    produced: AtomicU64,
    produce_errors: AtomicU64,
    consumed: AtomicU64,
    consume_errors: AtomicU64,
    routed: AtomicU64,
    queued: AtomicU64,
    in_flight: AtomicU64,
    consumer_lag: AtomicI64,
    last_error_kind: AtomicU8,
    errors: AtomicU64,
    /// Produce → consume time of each record read, from its timestamp, ns.
    lag: Histogram<Latency>,
}

impl Stats {
    /// Whether both the producer and the consumer reach a broker right now.
    pub fn connected(&self) -> bool {
        self.producer_connected.load(Ordering::Relaxed) && self.consumer_connected.load(Ordering::Relaxed)
    }

    /// Whether the bridge works: its threads run and Kafka is reachable.
    pub fn healthy(&self) -> bool {
        self.running.load(Ordering::Relaxed) && self.connected()
    }

    /// Records that Kafka acknowledged.
    pub fn produced(&self) -> u64 {
        self.produced.load(Ordering::Relaxed)
    }

    /// Records that Kafka refused or that could not be handed to the producer.
    pub fn produce_errors(&self) -> u64 {
        self.produce_errors.load(Ordering::Relaxed)
    }

    /// Records read from the topic, whether or not a shard wanted them.
    pub fn consumed(&self) -> u64 {
        self.consumed.load(Ordering::Relaxed)
    }

    /// Errors reported by the consumer (each one is retried by librdkafka).
    pub fn consume_errors(&self) -> u64 {
        self.consume_errors.load(Ordering::Relaxed)
    }

    /// Records handed to shards, counted once per receiving shard.
    pub fn routed(&self) -> u64 {
        self.routed.load(Ordering::Relaxed)
    }

    /// Records waiting in the shards' outbound queues (sampled by the producer thread).
    pub fn queued(&self) -> u64 {
        self.queued.load(Ordering::Relaxed)
    }

    /// Records inside the producer that Kafka has not acknowledged yet.
    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Records in the topic that the consumer has not read yet, summed over partitions,
    /// once librdkafka has reported it (every second).
    pub fn consumer_lag(&self) -> Option<u64> {
        u64::try_from(self.consumer_lag.load(Ordering::Relaxed)).ok()
    }

    /// The kind of the latest error seen from Kafka: `none`, `transport`,
    /// `brokers_down`, `timeout`, `delivery`, `consume`, `fatal` or `other`.
    pub fn last_error_kind(&self) -> &'static str {
        ErrorKind::from_u8(self.last_error_kind.load(Ordering::Relaxed)).as_str()
    }

    /// Errors of any kind seen from Kafka.
    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    /// Appends the figures in the Prometheus text format, as `chat_kafka_*` metrics
    /// labelled with `node`.
    pub fn render_prometheus(&self, node: &str, out: &mut String) {
        let node = escape_label(node);
        let gauges: [(&str, &str, i64); 6] = [
            (
                "connected",
                "Whether producer and consumer reach a Kafka broker (1) or not (0).",
                i64::from(self.connected()),
            ),
            (
                "healthy",
                "Whether the bridge runs and reaches Kafka (1) or not (0).",
                i64::from(self.healthy()),
            ),
            (
                "outbound_queued",
                "Records waiting in the shards' outbound queues.",
                saturating_i64(self.queued()),
            ),
            (
                "producer_in_flight",
                "Records in the producer not yet acknowledged by Kafka.",
                saturating_i64(self.in_flight()),
            ),
            (
                "consumer_lag",
                "Records in the topic not yet read by this node (-1: unknown).",
                self.consumer_lag.load(Ordering::Relaxed),
            ),
            (
                "up",
                "Whether the bridge threads run (1) or not (0).",
                i64::from(self.running.load(Ordering::Relaxed)),
            ),
        ];
        for (name, help, value) in gauges {
            let _ = writeln!(
                out,
                "# HELP chat_kafka_{name} {help}\n# TYPE chat_kafka_{name} gauge\nchat_kafka_{name}{{node=\"{node}\"}} {value}"
            );
        }
        let counters: [(&str, &str, u64); 6] = [
            ("produced_total", "Records acknowledged by Kafka.", self.produced()),
            (
                "produce_errors_total",
                "Records refused by Kafka or the producer.",
                self.produce_errors(),
            ),
            ("consumed_total", "Records read from the topic.", self.consumed()),
            (
                "consume_errors_total",
                "Errors reported by the consumer.",
                self.consume_errors(),
            ),
            (
                "routed_total",
                "Records handed to shards, once per receiving shard.",
                self.routed(),
            ),
            ("errors_total", "Errors of any kind seen from Kafka.", self.errors()),
        ];
        for (name, help, value) in counters {
            let _ = writeln!(
                out,
                "# HELP chat_kafka_{name} {help}\n# TYPE chat_kafka_{name} counter\nchat_kafka_{name}{{node=\"{node}\"}} {value}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP chat_kafka_last_error_info The kind of the latest error seen from Kafka.\n\
             # TYPE chat_kafka_last_error_info gauge\nchat_kafka_last_error_info{{node=\"{node}\",kind=\"{}\"}} 1",
            self.last_error_kind()
        );
        let _ = writeln!(
            out,
            "# HELP chat_kafka_lag_seconds Produce-to-consume time of the records read, from their timestamps.\n\
             # TYPE chat_kafka_lag_seconds histogram"
        );
        self.lag
            .render("chat_kafka_lag_seconds", &format!("node=\"{node}\""), 1e9, out);
    }

    /// Counts one record read `lag_ns` after it was produced.
    pub(super) fn observe_lag(&self, lag_ns: u64) {
        self.lag.observe(lag_ns);
    }

    pub(crate) fn new() -> Self {
        Self {
            producer_connected: AtomicBool::new(true),
            consumer_connected: AtomicBool::new(true),
            running: AtomicBool::new(true),
            produced: AtomicU64::new(0),
            produce_errors: AtomicU64::new(0),
            consumed: AtomicU64::new(0),
            consume_errors: AtomicU64::new(0),
            routed: AtomicU64::new(0),
            queued: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            consumer_lag: AtomicI64::new(-1),
            last_error_kind: AtomicU8::new(ErrorKind::None as u8),
            errors: AtomicU64::new(0),
            lag: Histogram::default(),
        }
    }

    /// Sets whether `role`'s client reaches a broker; returns the previous value.
    pub(super) fn set_connected(&self, role: Role, up: bool) -> bool {
        match role {
            Role::Producer => self.producer_connected.swap(up, Ordering::Relaxed),
            Role::Consumer => self.consumer_connected.swap(up, Ordering::Relaxed),
            Role::Admin => up,
        }
    }

    pub(super) fn set_running(&self, running: bool) {
        self.running.store(running, Ordering::Relaxed);
    }

    pub(super) fn record_error(&self, kind: ErrorKind) {
        self.last_error_kind.store(kind as u8, Ordering::Relaxed);
        self.errors.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn add_produced(&self, n: u64) {
        self.produced.fetch_add(n, Ordering::Relaxed);
    }

    pub(super) fn add_produce_errors(&self, n: u64) {
        self.produce_errors.fetch_add(n, Ordering::Relaxed);
    }

    pub(super) fn add_consumed(&self, n: u64) {
        self.consumed.fetch_add(n, Ordering::Relaxed);
    }

    pub(super) fn add_consume_errors(&self, n: u64) {
        self.consume_errors.fetch_add(n, Ordering::Relaxed);
    }

    pub(super) fn add_routed(&self, n: u64) {
        self.routed.fetch_add(n, Ordering::Relaxed);
    }

    pub(super) fn set_queued(&self, queued: u64, in_flight: u64) {
        self.queued.store(queued, Ordering::Relaxed);
        self.in_flight.store(in_flight, Ordering::Relaxed);
    }

    pub(super) fn set_consumer_lag(&self, lag: Option<u64>) {
        let lag = lag.map_or(-1, saturating_i64);
        self.consumer_lag.store(lag, Ordering::Relaxed);
    }
}

/// Which client of the bridge a callback or a figure belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Role {
    Producer,
    Consumer,
    Admin,
}

impl Role {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Role::Producer => "producer",
            Role::Consumer => "consumer",
            Role::Admin => "admin",
        }
    }
}

/// Coarse classes of Kafka errors, small enough for a metric label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(super) enum ErrorKind {
    None = 0,
    Transport,
    BrokersDown,
    Timeout,
    Delivery,
    Consume,
    Fatal,
    Other,
}

impl ErrorKind {
    fn from_u8(value: u8) -> Self {
        const ALL: [ErrorKind; 8] = [
            ErrorKind::None,
            ErrorKind::Transport,
            ErrorKind::BrokersDown,
            ErrorKind::Timeout,
            ErrorKind::Delivery,
            ErrorKind::Consume,
            ErrorKind::Fatal,
            ErrorKind::Other,
        ];
        ALL.get(usize::from(value)).copied().unwrap_or(ErrorKind::Other)
    }

    pub(super) fn as_str(self) -> &'static str {
        match self {
            ErrorKind::None => "none",
            ErrorKind::Transport => "transport",
            ErrorKind::BrokersDown => "brokers_down",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Delivery => "delivery",
            ErrorKind::Consume => "consume",
            ErrorKind::Fatal => "fatal",
            ErrorKind::Other => "other",
        }
    }
}

/// Lets one event through per interval and counts the ones it held back, so that an
/// outage logs a line every few seconds instead of one per reconnect attempt.
#[derive(Debug)]
pub(super) struct RateLimit {
    epoch: Instant,
    interval_ms: u64,
    /// Milliseconds since `epoch` of the last event let through, plus one (0: never).
    last_ms: AtomicU64,
    suppressed: AtomicU64,
}

impl RateLimit {
    pub(super) fn new(interval_ms: u64) -> Self {
        Self {
            epoch: Instant::now(),
            interval_ms,
            last_ms: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// `Some(held back since the last one)` when this event may be logged.
    pub(super) fn allow(&self) -> Option<u64> {
        let now_ms = u64::try_from(self.epoch.elapsed().as_millis())
            .unwrap_or(u64::MAX)
            .saturating_add(1);
        let last_ms = self.last_ms.load(Ordering::Relaxed);
        let due = last_ms == 0 || now_ms.saturating_sub(last_ms) >= self.interval_ms;
        if due
            && self
                .last_ms
                .compare_exchange(last_ms, now_ms, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            return Some(self.suppressed.swap(0, Ordering::Relaxed));
        }
        self.suppressed.fetch_add(1, Ordering::Relaxed);
        None
    }
}

fn saturating_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_metric_with_help_and_type() {
        let stats = Stats::new();
        stats.add_produced(3);
        stats.record_error(ErrorKind::BrokersDown);
        stats.set_connected(Role::Consumer, false);
        let mut out = String::new();
        stats.observe_lag(3_000_000);
        stats.render_prometheus("n1", &mut out);
        assert!(out.contains("chat_kafka_produced_total{node=\"n1\"} 3\n"));
        assert!(out.contains("chat_kafka_connected{node=\"n1\"} 0\n"));
        assert!(out.contains("chat_kafka_consumer_lag{node=\"n1\"} -1\n"));
        assert!(out.contains("chat_kafka_last_error_info{node=\"n1\",kind=\"brokers_down\"} 1\n"));
        assert!(
            out.contains("chat_kafka_lag_seconds_bucket{node=\"n1\",le=\"0.005\"} 1\n"),
            "{out}"
        );
        let families = out
            .lines()
            .filter(|l| !l.starts_with('#') && !l.contains("_lag_seconds"))
            .count()
            + 1;
        assert_eq!(out.matches("# HELP ").count(), families);
        assert_eq!(out.matches("# TYPE ").count(), families);
        assert!(!stats.healthy());
        stats.set_connected(Role::Consumer, true);
        assert!(stats.healthy());
    }

    #[test]
    fn rate_limit_lets_one_through_per_interval() {
        let limit = RateLimit::new(60_000);
        assert_eq!(limit.allow(), Some(0));
        assert_eq!(limit.allow(), None);
        assert_eq!(limit.allow(), None);
        let quick = RateLimit::new(0);
        assert_eq!(quick.allow(), Some(0));
        assert_eq!(quick.allow(), Some(0));
    }

    #[test]
    fn error_kinds_round_trip_through_u8() {
        for kind in [
            ErrorKind::None,
            ErrorKind::Transport,
            ErrorKind::Fatal,
            ErrorKind::Other,
        ] {
            assert_eq!(ErrorKind::from_u8(kind as u8), kind);
        }
        assert_eq!(ErrorKind::from_u8(200), ErrorKind::Other);
    }
}
