//! The report: what a run measured, per node and per server shard, as one serde tree that
//! is printed as a table (`table.rs`), written as `report.json`, and merged exactly across
//! loadgen processes (histograms travel encoded, `hist.rs`). `build` turns the shards'
//! results into a report; `merge` adds reports up. Rates and ratios are recomputed from
//! counts, never averaged.

mod build;
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
pub use build::{build, reach};
pub(crate) use build::{per_message, summarise_node};
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

#[cfg(test)]
pub(crate) mod tests;
