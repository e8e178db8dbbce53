//! The report: what a run measured, per node and per server shard, as one serde tree that
//! is printed as a table (`table.rs`), written as `report.json`, and merged exactly across
//! loadgen processes (histograms travel encoded, `hist.rs`). `build` turns the shards'
//! results into a report; `merge` adds reports up. Rates and ratios are recomputed from
//! counts, never averaged.

pub mod hist;
pub mod limit;
mod merge;
pub mod reconnect;
pub mod table;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::scenario::{Scenario, Summary};
pub use crate::server::ServerCpu;
use crate::server::{self, Sample};
use crate::stats::{self, Cpu, Errors, Hist, ShardResult};
use crate::track::MessageTable;
use hist::{HistReport, Percentiles};
pub use limit::{Limit, Reading};
pub use merge::merge;
pub use reconnect::ReconnectReport;

/// Everything one run (or several merged) measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// `run`, `hold` or `merged`.
    pub kind: String,
    /// Run ids of the processes in it.
    pub run_ids: Vec<u64>,
    /// Loadgen processes in it.
    pub processes: u32,
    /// The scenario (of the first process, for merged reports).
    pub scenario: Option<Summary>,
    /// True when Ctrl-C cut the run short.
    pub interrupted: bool,
    /// The measured window.
    pub window: Window,
    /// Connection counts.
    pub connections: Connections,
    /// Message counts.
    pub messages: Messages,
    /// Rates over the measured window.
    pub throughput: Throughput,
    /// Latency histograms.
    pub latency: Latencies,
    /// Per node, with per server shard inside.
    pub nodes: Vec<NodeReport>,
    /// Dropped connections, reconnects and resumes.
    #[serde(default)]
    pub reconnect: ReconnectReport,
    /// Errors by kind.
    pub errors: BTreeMap<String, u64>,
    /// CPU of the load generator and the servers.
    pub cpu: CpuReport,
    /// Server memory per connection (`hold`).
    pub memory: Vec<MemoryReport>,
    /// One point per second of publishing.
    pub timeline: Vec<TimelinePoint>,
}

/// The measured window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Window {
    /// Start, CLOCK_REALTIME ns.
    pub start_unix_ns: u64,
    /// End (publishing stopped), CLOCK_REALTIME ns.
    pub end_unix_ns: u64,
    /// Its length, seconds.
    pub measured_s: f64,
}

/// Connection counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Connections {
    /// Planned and tried.
    pub attempted: u64,
    /// Subscribed before publishing began.
    pub ready: u64,
    /// Failed before that.
    pub failed: u64,
    /// Subscribers (ready connections).
    pub subscribers: u64,
    /// Publishers among them.
    pub publishers: u64,
}

/// Message counts. Measured messages are those meant to be sent inside the window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Messages {
    /// Messages sent, warm-up included (injected copies not counted).
    pub sent_total: u64,
    /// Measured messages sent.
    pub sent: u64,
    /// Measured messages that fell due while their publisher was disconnected (or its
    /// backlog full): never sent, so neither expected nor lost.
    #[serde(default)]
    pub unsent: u64,
    /// All such messages, warm-up included.
    #[serde(default)]
    pub unsent_total: u64,
    /// Deliveries the measured messages called for (one per subscriber of the channel).
    pub expected: u64,
    /// Distinct measured deliveries.
    pub delivered: u64,
    /// `expected - delivered`: never received by the end of the grace period.
    pub lost: u64,
    /// With `--confirm`: measured messages sent whose receipt never came.
    #[serde(default)]
    pub unconfirmed: u64,
    /// Of `lost`, deliveries of those unconfirmed messages (the rest were confirmed).
    #[serde(default)]
    pub lost_unconfirmed: u64,
    /// Measured deliveries received again.
    pub duplicates: u64,
    /// Measured deliveries that came after a later message of the same publisher.
    pub reorders: u64,
    /// Frames injected as duplicates (test aid).
    pub injected: u64,
    /// Messages of other runs.
    pub foreign: u64,
    /// Bodies without a stamp.
    pub unparsable: u64,
    /// `delivered / expected`.
    pub reach: Option<f64>,
}

/// Rates over the measured window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Throughput {
    /// Measured messages sent per second.
    pub sent_per_s: f64,
    /// Distinct measured deliveries per second.
    pub delivered_per_s: f64,
}

/// The three latency histograms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Latencies {
    /// Intended send to receipt, every delivery.
    pub delivery: HistReport,
    /// Intended send to receipt by the last subscriber, per fully delivered message.
    pub broadcast: HistReport,
    /// TCP connect to `CONNECTED`, per connection.
    pub connect: HistReport,
    /// How late the load generator sent measured messages (its own health: high values
    /// mean the load generator, not the server, is the bottleneck).
    pub send_lag: HistReport,
    /// Messages every subscriber received (counted in `broadcast`).
    pub broadcast_complete: u64,
    /// Measured messages some subscriber never received.
    pub broadcast_incomplete: u64,
}

/// One node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeReport {
    /// Node id from `CONNECTED`.
    pub node: String,
    /// Counts over its shards.
    #[serde(flatten)]
    pub counts: Counts,
    /// Delivery latency over its shards.
    pub delivery: Percentiles,
    /// Connect latency over its shards.
    pub connect: Percentiles,
    /// Reconnect time (drop to subscribed again) of the reconnects that landed on it.
    #[serde(default)]
    pub reconnect: Percentiles,
    /// Per server shard.
    pub shards: Vec<ShardReport>,
}

/// One server shard of one node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardReport {
    /// Shard label from `CONNECTED`.
    pub shard: String,
    /// Its counts.
    #[serde(flatten)]
    pub counts: Counts,
    /// Delivery latency of its subscribers.
    pub delivery: HistReport,
    /// Connect latency of its connections.
    pub connect: HistReport,
    /// Reconnect time of the reconnects that landed on it.
    #[serde(default)]
    pub reconnect: HistReport,
}

/// Counts of one node or shard.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Counts {
    /// Connections that got `CONNECTED`.
    pub connections: u64,
    /// Of them, subscribed.
    pub subscribers: u64,
    /// Deliveries expected by its subscribers.
    pub expected: u64,
    /// Distinct deliveries to them.
    pub delivered: u64,
    /// Never received.
    pub lost: u64,
    /// Received twice.
    pub duplicates: u64,
    /// Received out of order.
    pub reorders: u64,
    /// `delivered / expected`.
    pub reach: Option<f64>,
    /// Connections that dropped while on it.
    #[serde(default)]
    pub disconnects: u64,
    /// Dropped connections that came back subscribed on it.
    #[serde(default)]
    pub reconnects: u64,
    /// Measured messages it delivered by replay to resubscribed connections.
    #[serde(default)]
    pub recovered: u64,
    /// Its resuming receipts with `x-recovered:false`.
    #[serde(default)]
    pub recoveries_false: u64,
    /// What its subscribers that had dropped at least once never received.
    #[serde(default)]
    pub lost_after_drop: u64,
}

impl Counts {
    pub(crate) fn add(&mut self, o: &Counts) {
        self.connections += o.connections;
        self.subscribers += o.subscribers;
        self.expected += o.expected;
        self.delivered += o.delivered;
        self.lost += o.lost;
        self.duplicates += o.duplicates;
        self.reorders += o.reorders;
        self.disconnects += o.disconnects;
        self.reconnects += o.reconnects;
        self.recovered += o.recovered;
        self.recoveries_false += o.recoveries_false;
        self.lost_after_drop += o.lost_after_drop;
        self.reach = reach(self.delivered, self.expected);
    }
}

/// CPU of both sides.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CpuReport {
    /// Each loadgen shard, from the start of the measured window to the stop (so the
    /// window's last deliveries count; the servers are sampled at the same edges).
    pub loadgen_shards: Vec<ShardCpu>,
    /// Loadgen shards together over that window, seconds.
    pub loadgen_s: f64,
    /// The whole loadgen process over the whole run, seconds.
    pub loadgen_process_s: f64,
    /// Loadgen CPU per message handled (sent + delivered), µs.
    pub loadgen_us_per_message: Option<f64>,
    /// Each server over the same window.
    pub servers: Vec<ServerCpu>,
    /// Servers together, seconds (absent when no source had CPU figures).
    pub server_s: Option<f64>,
    /// Server CPU per delivery, µs.
    pub server_us_per_delivery: Option<f64>,
    /// Server CPU per published message, µs.
    pub server_us_per_publish: Option<f64>,
    /// Cores of the load generator's host.
    #[serde(default)]
    pub host_cores: Option<u32>,
    /// How busy those cores were over the window, 0..1 of all of them (every process:
    /// servers, Kafka, Nginx and anything else that ran there too).
    #[serde(default)]
    pub host_busy: Option<f64>,
}

/// One loadgen shard's CPU.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardCpu {
    /// `process.shard`.
    pub shard: String,
    /// The core it was pinned to.
    pub core: usize,
    /// User seconds.
    pub user_s: f64,
    /// System seconds.
    pub sys_s: f64,
    /// The CPU window: from the start of the measured window to the stop, seconds.
    pub window_s: f64,
    /// Share of one core over that window.
    pub utilisation: f64,
}

/// Server memory before connecting and once all connections were up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemoryReport {
    /// Node id or `pid N`.
    pub name: String,
    /// RSS before, bytes.
    pub rss_before_bytes: f64,
    /// RSS with the connections open, bytes.
    pub rss_after_bytes: f64,
    /// Connections attributed to it.
    pub connections: u64,
    /// `(after - before) / connections`.
    pub bytes_per_connection: Option<f64>,
}

/// One second of publishing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct TimelinePoint {
    /// Seconds since publishing began (interval start).
    pub t_s: f64,
    /// Messages sent in it.
    pub sent: u64,
    /// Messages received in it.
    pub delivered: u64,
    /// Errors in it.
    pub errors: u64,
    /// Connections that dropped in it.
    #[serde(default)]
    pub disconnects: u64,
    /// Connections subscribed again in it.
    #[serde(default)]
    pub reconnects: u64,
    /// Delivery latency percentiles in it.
    pub latency: Percentiles,
}

/// What `build` needs besides the shards' results.
#[derive(Debug, Clone, Default)]
pub struct RunInfo {
    /// `run` or `hold`.
    pub kind: String,
    /// Measured window: start and end, CLOCK_REALTIME ns.
    pub window_ns: (u64, u64),
    /// Server samples before connecting, at the window's start and at its end.
    pub before_connect: Option<Sample>,
    /// At the start of the window.
    pub measure_start: Option<Sample>,
    /// At the stop (the end of the window plus the wait for its last deliveries).
    pub measure_end: Option<Sample>,
    /// The timeline.
    pub timeline: Vec<TimelinePoint>,
    /// CPU of the whole process.
    pub process_cpu: Cpu,
    /// Ctrl-C cut the run short.
    pub interrupted: bool,
}

/// `delivered / expected`, absent when nothing was expected.
pub fn reach(delivered: u64, expected: u64) -> Option<f64> {
    (expected > 0).then(|| delivered as f64 / expected as f64)
}

/// Per (node, shard): counts and histograms, while building.
struct Agg {
    counts: Counts,
    delivery: Hist,
    connect: Hist,
    reconnect: Hist,
}

/// Turns the shards' results into a report.
pub fn build(scenario: &Scenario, results: &[ShardResult], info: &RunInfo) -> Report {
    let channels = scenario.channels as usize;
    let mut sent_per_channel = vec![0u64; channels];
    let mut subscribers_per_channel = vec![0u64; channels];
    let mut channel_of_publisher: BTreeMap<u32, usize> = BTreeMap::new();
    let mut messages = Messages::default();
    let mut connections = Connections::default();
    let mut errors = Errors::new();
    for r in results {
        for p in &r.pubs {
            if let Some(n) = sent_per_channel.get_mut(p.channel as usize) {
                *n += p.sent_measured;
            }
            channel_of_publisher.insert(p.publisher, p.channel as usize);
            messages.sent += p.sent_measured;
            messages.sent_total += p.sent_total;
            messages.unsent += p.unsent_measured;
            messages.unsent_total += p.unsent_total;
        }
        for s in &r.subs {
            if let Some(n) = subscribers_per_channel.get_mut(s.channel as usize) {
                *n += 1;
            }
        }
        connections.attempted += r.attempted;
        connections.ready += r.ready;
        connections.publishers += r.pubs.len() as u64;
        messages.injected += r.injected;
        messages.foreign += r.foreign;
        messages.unparsable += r.unparsable;
        for (kind, n) in &r.errors {
            *errors.entry(kind.clone()).or_default() += n;
        }
    }
    connections.failed = connections.attempted - connections.ready.min(connections.attempted);
    connections.subscribers = connections.ready;

    let mut aggs: BTreeMap<(String, String), Agg> = BTreeMap::new();
    for r in results {
        for k in &r.keys {
            let agg = aggs.entry((k.node.clone(), k.shard.clone())).or_insert_with(|| Agg {
                counts: Counts::default(),
                delivery: stats::new_hist(),
                connect: stats::new_hist(),
                reconnect: stats::new_hist(),
            });
            agg.counts.connections += k.connections;
            agg.counts.disconnects += k.disconnects;
            agg.counts.reconnects += k.reconnects;
            agg.counts.recovered += k.recovered;
            agg.counts.recoveries_false += k.recoveries_false;
            hist::add(&mut agg.delivery, &k.delivery);
            hist::add(&mut agg.connect, &k.connect);
            hist::add(&mut agg.reconnect, &k.reconnect);
        }
        for s in &r.subs {
            let Some(k) = r.keys.get(s.key) else { continue };
            let Some(agg) = aggs.get_mut(&(k.node.clone(), k.shard.clone())) else {
                continue;
            };
            let expected = sent_per_channel.get(s.channel as usize).copied().unwrap_or(0);
            let c = &mut agg.counts;
            c.subscribers += 1;
            c.expected += expected;
            c.delivered += s.received;
            c.lost += expected.saturating_sub(s.received);
            c.duplicates += s.duplicates;
            c.reorders += s.reorders;
            if s.drops > 0 {
                c.lost_after_drop += expected.saturating_sub(s.received);
            }
        }
    }
    let mut delivery = stats::new_hist();
    let mut connect = stats::new_hist();
    let mut nodes: Vec<NodeReport> = Vec::new();
    for ((node, shard), agg) in &mut aggs {
        agg.counts.reach = reach(agg.counts.delivered, agg.counts.expected);
        hist::add(&mut delivery, &agg.delivery);
        hist::add(&mut connect, &agg.connect);
        let shard_report = ShardReport {
            shard: shard.clone(),
            counts: agg.counts,
            delivery: HistReport::of(&agg.delivery),
            connect: HistReport::of(&agg.connect),
            reconnect: HistReport::of(&agg.reconnect),
        };
        match nodes.iter_mut().find(|n| &n.node == node) {
            Some(n) => n.shards.push(shard_report),
            None => nodes.push(NodeReport {
                node: node.clone(),
                counts: Counts::default(),
                delivery: Percentiles::default(),
                connect: Percentiles::default(),
                reconnect: Percentiles::default(),
                shards: vec![shard_report],
            }),
        }
    }
    for n in &mut nodes {
        summarise_node(n);
        messages.expected += n.counts.expected;
        messages.delivered += n.counts.delivered;
        messages.lost += n.counts.lost;
        messages.duplicates += n.counts.duplicates;
        messages.reorders += n.counts.reorders;
    }
    messages.reach = reach(messages.delivered, messages.expected);

    let mut table = MessageTable::new();
    let mut send_lag = stats::new_hist();
    for r in results {
        table.merge(&r.table);
        hist::add(&mut send_lag, &r.send_lag);
    }
    for r in results {
        for p in &r.pubs {
            let wanted = subscribers_per_channel.get(p.channel as usize).copied().unwrap_or(0);
            messages.unconfirmed += p.unconfirmed.len() as u64;
            for &seq in &p.unconfirmed {
                let got = table.count(p.publisher, seq);
                messages.lost_unconfirmed += wanted.saturating_sub(u64::from(got));
            }
        }
    }
    messages.lost_unconfirmed = messages.lost_unconfirmed.min(messages.lost);
    let mut broadcast = stats::new_hist();
    let mut complete = 0;
    for (publisher, _, receipt) in table.iter() {
        let wanted = channel_of_publisher
            .get(&publisher)
            .and_then(|&c| subscribers_per_channel.get(c))
            .copied()
            .unwrap_or(0);
        if wanted > 0 && u64::from(receipt.count) >= wanted {
            complete += 1;
            stats::record(&mut broadcast, u64::from(receipt.max_latency_us));
        }
    }

    let (start, end) = info.window_ns;
    let measured_s = end.saturating_sub(start) as f64 / 1e9;
    let per_s = |n: u64| {
        if measured_s > 0.0 {
            n as f64 / measured_s
        } else {
            0.0
        }
    };
    let throughput = Throughput {
        sent_per_s: per_s(messages.sent),
        delivered_per_s: per_s(messages.delivered),
    };
    let reconnect = reconnect::build(scenario, results, &sent_per_channel);
    let cpu = cpu_report(results, info, &messages);
    let memory = memory_report(info, &nodes, connections.ready);
    Report {
        kind: info.kind.clone(),
        run_ids: vec![scenario.run_id],
        processes: 1,
        scenario: Some(scenario.summary.clone()),
        interrupted: info.interrupted,
        window: Window {
            start_unix_ns: start,
            end_unix_ns: end,
            measured_s,
        },
        connections,
        messages,
        throughput,
        latency: Latencies {
            delivery: HistReport::of(&delivery),
            broadcast: HistReport::of(&broadcast),
            connect: HistReport::of(&connect),
            send_lag: HistReport::of(&send_lag),
            broadcast_complete: complete,
            broadcast_incomplete: messages.sent.saturating_sub(complete),
        },
        nodes,
        reconnect,
        errors,
        cpu,
        memory,
        timeline: info.timeline.clone(),
    }
}

/// Recomputes a node's counts and percentiles from its shards.
pub(crate) fn summarise_node(n: &mut NodeReport) {
    let mut counts = Counts::default();
    let (mut delivery, mut connect, mut reconnect) = (stats::new_hist(), stats::new_hist(), stats::new_hist());
    for s in &n.shards {
        counts.add(&s.counts);
        hist::add(&mut delivery, &s.delivery.hist());
        hist::add(&mut connect, &s.connect.hist());
        hist::add(&mut reconnect, &s.reconnect.hist());
    }
    n.counts = counts;
    n.delivery = Percentiles::of(&delivery);
    n.connect = Percentiles::of(&connect);
    n.reconnect = Percentiles::of(&reconnect);
}

fn cpu_report(results: &[ShardResult], info: &RunInfo, messages: &Messages) -> CpuReport {
    let loadgen_shards: Vec<ShardCpu> = results
        .iter()
        .map(|r| ShardCpu {
            shard: format!("0.{}", r.shard),
            core: r.cpu_core,
            user_s: r.cpu_measured.user_s,
            sys_s: r.cpu_measured.sys_s,
            window_s: r.cpu_window_s,
            utilisation: if r.cpu_window_s > 0.0 {
                r.cpu_measured.total_s() / r.cpu_window_s
            } else {
                0.0
            },
        })
        .collect();
    let loadgen_s: f64 = results.iter().map(|r| r.cpu_measured.total_s()).sum();
    let (servers, host_busy) = match (&info.measure_start, &info.measure_end) {
        (Some(a), Some(b)) => (server::cpu_used(a, b), server::host_busy(a, b)),
        _ => (Vec::new(), None),
    };
    let mut report = CpuReport {
        loadgen_shards,
        loadgen_s,
        loadgen_process_s: info.process_cpu.total_s(),
        servers,
        host_cores: std::thread::available_parallelism().ok().map(|n| n.get() as u32),
        host_busy,
        ..CpuReport::default()
    };
    per_message(&mut report, messages);
    report
}

/// Fills the per-message CPU figures from the totals.
pub(crate) fn per_message(cpu: &mut CpuReport, messages: &Messages) {
    let handled = messages.sent + messages.delivered;
    cpu.loadgen_us_per_message = (handled > 0).then(|| cpu.loadgen_s * 1e6 / handled as f64);
    cpu.server_s = (!cpu.servers.is_empty()).then(|| cpu.servers.iter().map(|s| s.cpu_s).sum());
    cpu.server_us_per_delivery = cpu
        .server_s
        .filter(|_| messages.delivered > 0)
        .map(|s| s * 1e6 / messages.delivered as f64);
    cpu.server_us_per_publish = cpu
        .server_s
        .filter(|_| messages.sent > 0)
        .map(|s| s * 1e6 / messages.sent as f64);
}

fn memory_report(info: &RunInfo, nodes: &[NodeReport], ready: u64) -> Vec<MemoryReport> {
    let (Some(before), Some(after)) = (&info.before_connect, &info.measure_start) else {
        return Vec::new();
    };
    after
        .readings
        .iter()
        .filter_map(|a| {
            let b = before.readings.iter().find(|b| b.name == a.name)?;
            let (rss_before_bytes, rss_after_bytes) = (b.rss_bytes?, a.rss_bytes?);
            let connections = nodes
                .iter()
                .find(|n| n.node == a.name)
                .map_or(ready, |n| n.counts.connections);
            let bytes_per_connection =
                (connections > 0).then(|| (rss_after_bytes - rss_before_bytes) / connections as f64);
            Some(MemoryReport {
                name: a.name.clone(),
                rss_before_bytes,
                rss_after_bytes,
                connections,
                bytes_per_connection,
            })
        })
        .collect()
}

#[cfg(test)]
pub(crate) mod tests;
