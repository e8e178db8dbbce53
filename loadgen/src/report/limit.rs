//! What limited a run, in one line, so that a latency figure is never read without its
//! cause. Worked out from what the report already holds: the load generator's own CPU and
//! publish lag, each node's CPU against its shards, the host's CPU, the nodes' Kafka
//! bridges (state and produce-to-consume lag) and what was lost. The first rule that
//! holds wins, in the order of the checks in [`read`]; `table.rs` prints the line last.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::Report;

/// What held the run back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Limit {
    /// No delivery was expected: nothing to judge.
    NothingMeasured,
    /// The load generator: a core of its own near full, or its sends late.
    LoadGenerator,
    /// A node's CPU: near all of its shards' cores.
    NodeCpu,
    /// The host's CPU, shared by everything on it (nodes, Kafka, Nginx, the load generator).
    HostCpu,
    /// Kafka: a bridge disconnected, or records slow from produce to consume.
    Kafka,
    /// Deliveries lost or subscribers dropped as slow consumers: the network or the clients.
    Network,
    /// Nothing: the offered load was served.
    Nothing,
}

impl Limit {
    /// A short name for tables and reports.
    pub fn name(self) -> &'static str {
        match self {
            Limit::NothingMeasured => "nothing measured",
            Limit::LoadGenerator => "load generator",
            Limit::NodeCpu => "node CPU",
            Limit::HostCpu => "host CPU",
            Limit::Kafka => "Kafka",
            Limit::Network => "network / slow consumers",
            Limit::Nothing => "nothing",
        }
    }
}

/// The verdict and the figures behind it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reading {
    /// What limited the run.
    pub limit: Limit,
    /// Why, in words with the figures.
    pub why: String,
}

impl fmt::Display for Reading {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "limit: {}: {}", self.limit.name(), self.why)
    }
}

/// Reads what limited the run of `report`.
pub fn read(report: &Report) -> Reading {
    let reading = |limit, why: String| Reading { limit, why };
    let m = &report.messages;
    let cpu = &report.cpu;
    let delivery = &report.latency.delivery.percentiles;
    let (p50_ms, p99_ms) = (ms(delivery.p50_us), ms(delivery.p99_us));
    let host = host_note(report);
    if m.expected == 0 {
        return reading(
            Limit::NothingMeasured,
            "no delivery was expected (no publisher, or no subscriber in a channel published to)".into(),
        );
    }
    let down: Vec<&str> = cpu
        .servers
        .iter()
        .filter(|s| s.kafka_down == Some(true))
        .map(|s| s.name.as_str())
        .collect();
    if !down.is_empty() {
        return reading(
            Limit::Kafka,
            format!(
                "the Kafka bridge of {} was disconnected at an edge of the window",
                down.join(", ")
            ),
        );
    }
    if let Some(busiest) = cpu
        .loadgen_shards
        .iter()
        .max_by(|a, b| a.utilisation.total_cmp(&b.utilisation))
        .filter(|s| s.utilisation >= BUSY_CORE)
    {
        return reading(
            Limit::LoadGenerator,
            format!(
                "its shard {} used {:.0}% of core {} (add --shards or cores to it){host}",
                busiest.shard,
                busiest.utilisation * 100.0,
                busiest.core
            ),
        );
    }
    let lag_ms = ms(report.latency.send_lag.percentiles.p99_us);
    let host_busy = cpu.host_busy.is_some_and(|busy| busy >= BUSY_HOST);
    if lag_ms >= SEND_LAG_MIN_MS && lag_ms >= SEND_LAG_SHARE * p99_ms {
        // Late sends with cores of its own to spare: something else held the CPU.
        if host_busy {
            let own = cpu.loadgen_shards.iter().map(|s| s.utilisation).fold(0.0, f64::max);
            return reading(
                Limit::HostCpu,
                format!(
                    "the load generator used only {:.0}% of its core yet sent late (publish lag p99 {lag_ms:.1} ms, {:.0}% of the delivery p99 {p99_ms:.1} ms): the cores were taken by other processes{host}",
                    own * 100.0,
                    100.0 * lag_ms / p99_ms.max(f64::MIN_POSITIVE)
                ),
            );
        }
        return reading(
            Limit::LoadGenerator,
            format!(
                "its publish lag p99 {lag_ms:.1} ms is {:.0}% of the delivery p99 {p99_ms:.1} ms: it sent late{host}",
                100.0 * lag_ms / p99_ms.max(f64::MIN_POSITIVE)
            ),
        );
    }
    if let Some((name, used, shards)) = cpu
        .servers
        .iter()
        .filter_map(|s| Some((s.name.as_str(), s.cores_used?, s.shards?)))
        .filter(|&(_, used, shards)| used >= BUSY_CORE * f64::from(shards.max(1)))
        .max_by(|a, b| a.1.total_cmp(&b.1))
    {
        return reading(
            Limit::NodeCpu,
            format!(
                "{name} used {:.0}% of its {shards} shard core(s){host}",
                100.0 * used / f64::from(shards.max(1))
            ),
        );
    }
    if host_busy {
        return reading(
            Limit::HostCpu,
            format!(
                "no one process was at its limit, but together they kept the host busy{host}: Kafka, Nginx and other work beside the nodes and the load generator"
            ),
        );
    }
    if let Some((name, lag)) = cpu
        .servers
        .iter()
        .filter_map(|s| Some((s.name.as_str(), s.kafka_lag_ms?)))
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .filter(|&(_, lag)| lag >= KAFKA_LAG_MIN_MS && lag >= KAFKA_LAG_SHARE * p50_ms)
    {
        return reading(
            Limit::Kafka,
            format!("records took {lag:.1} ms on average from produce to consume on {name}, against a delivery p50 of {p50_ms:.1} ms"),
        );
    }
    let slow = report.errors.get("close_1008").copied().unwrap_or(0);
    if m.lost > 0 || slow > 0 {
        return reading(
            Limit::Network,
            format!(
                "{} of {} deliveries lost (reach {:.4}), {slow} subscriber(s) dropped as slow consumers",
                m.lost,
                m.expected,
                m.reach.unwrap_or(0.0)
            ),
        );
    }
    reading(
        Limit::Nothing,
        format!(
            "the offered load was served: {:.0} msg/s sent, {:.0} deliveries/s, p99 {p99_ms:.1} ms, reach {:.4}{host}",
            report.throughput.sent_per_s,
            report.throughput.delivered_per_s,
            m.reach.unwrap_or(0.0)
        ),
    )
}

/// `; host: N cores, X% busy` when the host's CPU was measured.
fn host_note(report: &Report) -> String {
    match (report.cpu.host_cores, report.cpu.host_busy) {
        (Some(cores), Some(busy)) => format!(" (host: {cores} cores, {:.0}% busy)", busy * 100.0),
        _ => String::new(),
    }
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// A core this busy (share of one) is at its limit: queues build up behind it.
const BUSY_CORE: f64 = 0.85;
/// A host whose cores are this busy altogether leaves no room for bursts.
const BUSY_HOST: f64 = 0.90;
/// Publish lag counts once it is at least this long...
const SEND_LAG_MIN_MS: f64 = 2.0;
/// ...and this share of the delivery p99 (which includes it: latency counts from the
/// intended send time).
const SEND_LAG_SHARE: f64 = 0.3;
/// A mean produce-to-consume lag counts once it is at least this long...
const KAFKA_LAG_MIN_MS: f64 = 2.0;
/// ...and this share of the delivery p50.
const KAFKA_LAG_SHARE: f64 = 0.5;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::empty_report;
    use crate::report::{ServerCpu, ShardCpu};
    use crate::stats;

    /// A run that delivered all it should, p50 1 ms and p99 4 ms, nothing busy.
    fn served() -> Report {
        let mut r = empty_report();
        r.messages.expected = 1000;
        r.messages.delivered = 1000;
        r.messages.reach = Some(1.0);
        r.throughput.sent_per_s = 100.0;
        r.throughput.delivered_per_s = 1000.0;
        r.latency.delivery = latencies(&[(1_000, 98), (4_000, 2)]);
        r.latency.send_lag = latencies(&[(50, 100)]);
        r.cpu.loadgen_shards = vec![ShardCpu {
            shard: "0.0".into(),
            core: 1,
            user_s: 1.0,
            sys_s: 0.0,
            window_s: 10.0,
            utilisation: 0.1,
        }];
        r.cpu.servers = vec![server("node1", 0.3, 1, Some(0.5))];
        r.cpu.host_cores = Some(2);
        r.cpu.host_busy = Some(0.4);
        r
    }

    fn latencies(values: &[(u64, u64)]) -> crate::report::hist::HistReport {
        let mut h = stats::new_hist();
        for &(us, n) in values {
            for _ in 0..n {
                stats::record(&mut h, us);
            }
        }
        crate::report::hist::HistReport::of(&h)
    }

    fn server(name: &str, cores_used: f64, shards: u32, kafka_lag_ms: Option<f64>) -> ServerCpu {
        ServerCpu {
            name: name.into(),
            source: "metrics".into(),
            cpu_s: cores_used * 10.0,
            cores_used: Some(cores_used),
            shards: Some(shards),
            kafka_down: kafka_lag_ms.map(|_| false),
            kafka_lag_ms,
        }
    }

    #[test]
    fn a_served_run_says_so() {
        let r = read(&served());
        assert_eq!(r.limit, Limit::Nothing, "{r}");
        assert!(r.to_string().contains("p99 4.0 ms"), "{r}");
        assert!(r.to_string().contains("host: 2 cores, 40% busy"), "{r}");
    }

    #[test]
    fn nothing_expected_is_nothing_measured() {
        assert_eq!(read(&empty_report()).limit, Limit::NothingMeasured);
    }

    #[test]
    fn a_busy_loadgen_core_or_late_sends_blame_the_load_generator() {
        let mut r = served();
        r.cpu.loadgen_shards[0].utilisation = 0.97;
        let reading = read(&r);
        assert_eq!(reading.limit, Limit::LoadGenerator);
        assert!(reading.why.contains("97% of core 1"), "{reading}");
        // The demo as first reported: publish lag p99 159 ms, delivery p99 417 ms.
        let mut r = served();
        r.latency.delivery = latencies(&[(69_000, 95), (417_000, 5)]);
        r.latency.send_lag = latencies(&[(1_000, 95), (159_000, 5)]);
        let reading = read(&r);
        assert_eq!(reading.limit, Limit::LoadGenerator, "{reading}");
        assert!(reading.why.contains("publish lag p99 159"), "{reading}");
        // The same on a host whose cores were busy with other work while the load
        // generator's own core was mostly idle: the host is the cause.
        r.cpu.host_busy = Some(0.97);
        let reading = read(&r);
        assert_eq!(reading.limit, Limit::HostCpu, "{reading}");
        assert!(reading.why.contains("only 10% of its core yet sent late"), "{reading}");
        assert!(reading.why.contains("97% busy"), "{reading}");
        // A little lag under a long tail is not the cause.
        let mut r = served();
        r.latency.send_lag = latencies(&[(1_000, 100)]);
        assert_eq!(read(&r).limit, Limit::Nothing);
    }

    #[test]
    fn a_node_at_its_cores_is_the_limit() {
        let mut r = served();
        r.cpu.servers = vec![server("node1", 0.5, 1, None), server("node2", 1.8, 2, None)];
        let reading = read(&r);
        assert_eq!(reading.limit, Limit::NodeCpu);
        assert!(
            reading.why.starts_with("node2 used 90% of its 2 shard core(s)"),
            "{reading}"
        );
        // 1.5 cores of 2 shards is not full.
        r.cpu.servers[1].cores_used = Some(1.5);
        assert_eq!(read(&r).limit, Limit::Nothing);
    }

    #[test]
    fn a_busy_host_without_a_busy_process_is_the_host() {
        let mut r = served();
        r.cpu.host_busy = Some(0.95);
        assert_eq!(read(&r).limit, Limit::HostCpu);
    }

    #[test]
    fn kafka_outage_or_lag_is_kafka() {
        let mut r = served();
        r.cpu.servers[0].kafka_down = Some(true);
        let reading = read(&r);
        assert_eq!(reading.limit, Limit::Kafka);
        assert!(reading.why.contains("node1"), "{reading}");
        let mut r = served();
        r.cpu.servers[0].kafka_lag_ms = Some(3.0);
        assert_eq!(read(&r).limit, Limit::Kafka);
        // Short next to the delivery latency: not the cause.
        r.latency.delivery = latencies(&[(10_000, 100)]);
        assert_eq!(read(&r).limit, Limit::Nothing);
    }

    #[test]
    fn losses_and_slow_consumers_are_the_network() {
        let mut r = served();
        r.messages.lost = 3;
        r.messages.reach = Some(0.997);
        assert_eq!(read(&r).limit, Limit::Network);
        let mut r = served();
        r.errors.insert("close_1008".into(), 2);
        let reading = read(&r);
        assert_eq!(reading.limit, Limit::Network);
        assert!(reading.why.contains("2 subscriber(s) dropped"), "{reading}");
    }

    #[test]
    fn the_first_cause_wins() {
        // A busy load generator on a busy node: the load generator's figures cannot be
        // trusted, so it is named first.
        let mut r = served();
        r.cpu.loadgen_shards[0].utilisation = 0.99;
        r.cpu.servers = vec![server("node1", 1.0, 1, None)];
        r.messages.lost = 5;
        assert_eq!(read(&r).limit, Limit::LoadGenerator);
    }
}
