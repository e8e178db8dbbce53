//! The reconnect part of the report: how many connections dropped and came back, how long
//! that took (drop to subscribed again), what resuming recovered and what the receipts
//! said, and what the subscribers that dropped still lost, received twice or out of order.
//! `build` fills it from the shards' results; `merge` adds two of them.

use serde::{Deserialize, Serialize};

use super::hist::{self, HistReport};
use crate::scenario::Scenario;
use crate::stats::{self, ShardResult};

/// Drops, reconnects and resumes over the whole run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ReconnectReport {
    /// Dropped connections reconnect (`--reconnect`).
    pub enabled: bool,
    /// Reconnects resume from the last position (`--resume`).
    pub resume: bool,
    /// Ready connections that dropped (close, EOF, reset, error), with or without
    /// `--reconnect`.
    pub disconnects: u64,
    /// Drops followed by a new subscription confirmed by its receipt.
    pub reconnects: u64,
    /// Connections that had dropped and were not back when the run ended.
    pub still_down: u64,
    /// Reconnect attempts that failed (by kind in `errors`, as `reconnect_<kind>`).
    pub failed_attempts: u64,
    /// From the drop to the receipt of the new subscription (backoff included), µs.
    pub reconnect_time: HistReport,
    /// Reconnects that resubscribed with `x-since`.
    pub resumed: u64,
    /// Reconnects that resubscribed without it (no `--resume`, or no position seen yet).
    pub resubscribed_plain: u64,
    /// Measured messages first received on a connection resubscribed with `x-since` that
    /// were meant to be sent before that SUBSCRIBE went out: they came by replay (or were
    /// still in flight through the cluster at the resubscribe).
    pub recovered: u64,
    /// Resuming receipts with `x-recovered:true`.
    pub recoveries_true: u64,
    /// Resuming receipts with `x-recovered:false` (part of the range was gone).
    pub recoveries_false: u64,
    /// Resuming receipts without `x-recovered` (a server that does not resume).
    pub recoveries_missing: u64,
    /// Subscribers whose connection dropped at least once.
    pub dropped_subscribers: u64,
    /// Measured deliveries those subscribers never received.
    pub lost_after_drop: u64,
    /// Measured deliveries those subscribers received twice.
    pub duplicates_after_drop: u64,
    /// Measured deliveries those subscribers received out of order.
    pub reorders_after_drop: u64,
    /// Messages queued by a publisher but not written when its connection dropped (they
    /// count as sent, and as lost where never received).
    pub unflushed: u64,
    /// Delivery latency of the subscribers that had not dropped, before the run's first
    /// drop, µs: what the clients of the nodes that stayed up saw before a failure...
    pub kept_before: HistReport,
    /// ...and from the first drop on (the reconnect storm included).
    pub kept_after: HistReport,
}

/// The reconnect report of one run; `sent_per_channel` are the measured messages sent
/// per channel (what each subscriber of it expects).
pub fn build(scenario: &Scenario, results: &[ShardResult], sent_per_channel: &[u64]) -> ReconnectReport {
    let mut r = ReconnectReport {
        enabled: scenario.reconnect.is_some(),
        resume: scenario.resume,
        ..ReconnectReport::default()
    };
    let mut time = stats::new_hist();
    let mut kept = [stats::new_hist(), stats::new_hist()];
    for shard in results {
        r.failed_attempts += shard.reconnect_failures;
        for (mine, theirs) in kept.iter_mut().zip(&shard.kept) {
            hist::add(mine, theirs);
        }
        for k in &shard.keys {
            r.disconnects += k.disconnects;
            r.reconnects += k.reconnects;
            r.resumed += k.resumed;
            r.recovered += k.recovered;
            r.recoveries_true += k.recoveries_true;
            r.recoveries_false += k.recoveries_false;
            r.recoveries_missing += k.recoveries_missing;
            hist::add(&mut time, &k.reconnect);
        }
        for s in shard.subs.iter().filter(|s| s.drops > 0) {
            let expected = sent_per_channel.get(s.channel as usize).copied().unwrap_or(0);
            r.dropped_subscribers += 1;
            r.still_down += u64::from(s.down);
            r.lost_after_drop += expected.saturating_sub(s.received);
            r.duplicates_after_drop += s.duplicates;
            r.reorders_after_drop += s.reorders;
        }
        r.unflushed += shard.pubs.iter().map(|p| p.unflushed).sum::<u64>();
    }
    r.resubscribed_plain = r.reconnects.saturating_sub(r.resumed);
    r.reconnect_time = HistReport::of(&time);
    let [before, after] = &kept;
    r.kept_before = HistReport::of(before);
    r.kept_after = HistReport::of(after);
    r
}

/// Adds `other` (a process that ran beside) into `into`.
pub fn merge(into: &mut ReconnectReport, other: &ReconnectReport) {
    into.enabled |= other.enabled;
    into.resume |= other.resume;
    into.disconnects += other.disconnects;
    into.reconnects += other.reconnects;
    into.still_down += other.still_down;
    into.failed_attempts += other.failed_attempts;
    for (mine, theirs) in [
        (&mut into.reconnect_time, &other.reconnect_time),
        (&mut into.kept_before, &other.kept_before),
        (&mut into.kept_after, &other.kept_after),
    ] {
        let mut h = mine.hist();
        hist::add(&mut h, &theirs.hist());
        *mine = HistReport::of(&h);
    }
    into.resumed += other.resumed;
    into.resubscribed_plain += other.resubscribed_plain;
    into.recovered += other.recovered;
    into.recoveries_true += other.recoveries_true;
    into.recoveries_false += other.recoveries_false;
    into.recoveries_missing += other.recoveries_missing;
    into.dropped_subscribers += other.dropped_subscribers;
    into.lost_after_drop += other.lost_after_drop;
    into.duplicates_after_drop += other.duplicates_after_drop;
    into.reorders_after_drop += other.reorders_after_drop;
    into.unflushed += other.unflushed;
}
