//! librdkafka's callbacks for the bridge's clients: logs, global errors, statistics
//! and delivery reports come in on librdkafka's threads (or inside `poll`) and go out
//! as `tracing` events, rate-limited during an outage, and as figures in [`Stats`].
//! Whether a broker is reachable is read from the statistics (every second) and from
//! the "all brokers down" error, so an outage shows within about a second.

use std::sync::Arc;

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Headers as _, Message as _};
use rdkafka::producer::{DeliveryResult, ProducerContext};
use rdkafka::statistics::Statistics;

use super::acks::Acks;
use super::stats::{ErrorKind, RateLimit, Role, Stats};

/// The context of one bridge client (producer, consumer or the start-up admin client).
pub(super) struct Context {
    role: Role,
    topic: String,
    stats: Arc<Stats>,
    log_limit: RateLimit,
    error_limit: RateLimit,
    /// The shards' awaited delivery reports (the producer's context only).
    acks: Option<Arc<Acks>>,
}

impl Context {
    pub(super) fn new(role: Role, topic: &str, stats: Arc<Stats>) -> Self {
        Self {
            role,
            topic: topic.to_owned(),
            stats,
            log_limit: RateLimit::new(LOG_INTERVAL_MS),
            error_limit: RateLimit::new(LOG_INTERVAL_MS),
            acks: None,
        }
    }

    /// The producer's context: it also passes delivery reports on to `acks`.
    pub(super) fn with_acks(mut self, acks: Arc<Acks>) -> Self {
        self.acks = Some(acks);
        self
    }

    pub(super) fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Marks this client as connected again after traffic proved it.
    pub(super) fn mark_connected(&self) {
        if self.role != Role::Admin && !self.stats.set_connected(self.role, true) {
            tracing::info!(client = self.role.as_str(), "kafka reachable again");
        }
    }

    fn mark_disconnected(&self) {
        if self.role != Role::Admin && self.stats.set_connected(self.role, false) {
            tracing::warn!(client = self.role.as_str(), "kafka unreachable; buffering and retrying");
        }
    }

    /// Counts and logs (rate-limited) an error met on the message path.
    pub(super) fn note_error(&self, what: &'static str, error: &KafkaError) {
        let kind = classify(error.rdkafka_error_code());
        self.stats.record_error(kind);
        if let Some(suppressed) = self.error_limit.allow() {
            tracing::warn!(
                client = self.role.as_str(),
                kind = kind.as_str(),
                suppressed,
                "kafka {what}: {error}"
            );
        }
    }
}

impl ClientContext for Context {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error
            | RDKafkaLogLevel::Warning => {
                // A dead broker makes librdkafka log every reconnect attempt.
                if let Some(suppressed) = self.log_limit.allow() {
                    tracing::warn!(
                        client = self.role.as_str(),
                        fac,
                        suppressed,
                        "librdkafka: {log_message}"
                    );
                }
            }
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::debug!(client = self.role.as_str(), fac, "librdkafka: {log_message}");
            }
            RDKafkaLogLevel::Debug => {
                tracing::trace!(client = self.role.as_str(), fac, "librdkafka: {log_message}");
            }
        }
    }

    fn stats(&self, statistics: Statistics) {
        let up = statistics.brokers.values().any(|broker| broker.state == "UP");
        if up {
            self.mark_connected();
        } else {
            self.mark_disconnected();
        }
        if self.role == Role::Consumer {
            let lag = statistics.topics.get(&self.topic).map(|topic| {
                topic
                    .partitions
                    .values()
                    .filter(|p| p.partition >= 0 && p.consumer_lag >= 0)
                    .map(|p| u64::try_from(p.consumer_lag).unwrap_or(0))
                    .sum()
            });
            self.stats.set_consumer_lag(lag);
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let code = error.rdkafka_error_code();
        if code == Some(RDKafkaErrorCode::AllBrokersDown) {
            self.mark_disconnected();
        }
        let kind = classify(code);
        self.stats.record_error(kind);
        if let Some(suppressed) = self.error_limit.allow() {
            tracing::warn!(
                client = self.role.as_str(),
                kind = kind.as_str(),
                suppressed,
                "kafka: {error}: {reason}"
            );
        }
    }
}

impl ConsumerContext for Context {}

impl ProducerContext for Context {
    type DeliveryOpaque = ();

    fn delivery(&self, delivery_result: &DeliveryResult<'_>, _: ()) {
        if let Some(acks) = &self.acks {
            let (message, stored) = match delivery_result {
                Ok(message) => (message, true),
                Err((_, message)) => (message, false),
            };
            acks.delivered(id_header(message), stored);
        }
        match delivery_result {
            Ok(_) => {
                self.stats.add_produced(1);
                self.mark_connected();
            }
            Err((error, _))
                if matches!(
                    error.rdkafka_error_code(),
                    Some(RDKafkaErrorCode::PurgeQueue | RDKafkaErrorCode::PurgeInflight)
                ) =>
            {
                // Purged at shutdown; the producer thread logs one line for all.
                self.stats.add_produce_errors(1);
            }
            Err((error, _)) => {
                // message.timeout.ms=0 retries transient errors forever, so what
                // arrives here is permanent (too large, topic gone, fatal producer).
                self.stats.add_produce_errors(1);
                self.note_error("delivery", error);
            }
        }
    }
}

/// The `id` header of one of this node's records.
fn id_header<'a>(message: &'a BorrowedMessage<'_>) -> Option<&'a [u8]> {
    message.headers()?.iter().find(|h| h.key == "id")?.value
}

/// Maps a librdkafka error code to the coarse kind shown in metrics.
pub(super) fn classify(code: Option<RDKafkaErrorCode>) -> ErrorKind {
    use RDKafkaErrorCode as C;
    match code {
        Some(C::AllBrokersDown) => ErrorKind::BrokersDown,
        Some(C::BrokerTransportFailure | C::Resolve | C::NetworkException | C::BrokerNotAvailable) => {
            ErrorKind::Transport
        }
        Some(C::MessageTimedOut | C::OperationTimedOut | C::RequestTimedOut) => ErrorKind::Timeout,
        Some(C::Fatal) => ErrorKind::Fatal,
        Some(C::MessageSizeTooLarge | C::InvalidRecord | C::UnknownTopicOrPartition | C::UnknownTopic) => {
            ErrorKind::Delivery
        }
        Some(C::OffsetOutOfRange | C::InvalidMessage | C::BadMessage) => ErrorKind::Consume,
        _ => ErrorKind::Other,
    }
}

/// At most one librdkafka log line and one error line per client this often.
const LOG_INTERVAL_MS: u64 = 10_000;
