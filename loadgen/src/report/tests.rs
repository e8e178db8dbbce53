//! The report's arithmetic: expected deliveries from what was sent, losses per node and
//! shard, reach, broadcast completion, per-message CPU, and merging.

use super::*;
use crate::stats::{record, KeyStats, PubResult, SubResult};

fn scenario() -> Scenario {
    let cli = <crate::cli::Cli as clap::Parser>::try_parse_from([
        "loadgen",
        "run",
        "--target",
        "ws://127.0.0.1:9/ws",
        "--connections",
        "6",
        "--channels",
        "2",
        "--publishers",
        "2",
        "--shards",
        "2",
        "--run-id",
        "7",
    ])
    .expect("parses");
    let crate::cli::Command::Run(args) = cli.command else {
        panic!("run")
    };
    Scenario::from_args(&args).expect("valid")
}

fn key(node: &str, shard: &str, latencies_us: &[u64]) -> KeyStats {
    let mut k = KeyStats::new(node.into(), shard.into());
    for &l in latencies_us {
        record(&mut k.delivery, l);
    }
    record(&mut k.connect, 500);
    k
}

fn shard_result(shard: usize) -> ShardResult {
    ShardResult {
        shard,
        cpu_core: shard,
        keys: Vec::new(),
        subs: Vec::new(),
        pubs: Vec::new(),
        table: MessageTable::new(),
        errors: Errors::new(),
        attempted: 0,
        ready: 0,
        reconnect_failures: 0,
        kept: [stats::new_hist(), stats::new_hist()],
        injected: 0,
        delivered_total: 0,
        foreign: 0,
        unparsable: 0,
        cpu_window_s: 2.0,
        send_lag: stats::new_hist(),
        cpu_measured: Cpu {
            user_s: 0.5,
            sys_s: 0.25,
        },
        cpu_total: Cpu::default(),
    }
}

/// Two shards: publisher 0 sends 10 on channel 0, publisher 1 sends 5 on channel 1.
/// Channel 0 has two subscribers (n1/0 got all 10, n1/1 got 8), channel 1 one (n2/0 got 5,
/// plus one duplicate and one reorder).
fn results() -> Vec<ShardResult> {
    let mut a = shard_result(0);
    a.attempted = 3;
    a.ready = 2;
    a.keys = vec![key("n1", "0", &[100; 10]), key("n1", "1", &[200; 8])];
    a.keys[0].connections = 1;
    a.keys[1].connections = 1;
    a.subs = vec![
        SubResult {
            key: 0,
            channel: 0,
            received: 10,
            duplicates: 0,
            reorders: 0,
            ..SubResult::default()
        },
        SubResult {
            key: 1,
            channel: 0,
            received: 8,
            duplicates: 0,
            reorders: 0,
            ..SubResult::default()
        },
    ];
    a.pubs = vec![PubResult {
        publisher: 0,
        channel: 0,
        sent_measured: 10,
        sent_total: 13,
        ..PubResult::default()
    }];
    for seq in 0..10 {
        a.table.record(0, seq, 100);
        if seq < 8 {
            a.table.record(0, seq, 200);
        }
    }
    a.errors.insert("refused".into(), 1);
    let mut b = shard_result(1);
    b.attempted = 3;
    b.ready = 1;
    b.keys = vec![key("n2", "0", &[300; 5])];
    b.keys[0].connections = 1;
    b.subs = vec![SubResult {
        key: 0,
        channel: 1,
        received: 5,
        duplicates: 1,
        reorders: 1,
        ..SubResult::default()
    }];
    b.pubs = vec![PubResult {
        publisher: 1,
        channel: 1,
        sent_measured: 5,
        sent_total: 6,
        ..PubResult::default()
    }];
    for seq in 0..5 {
        b.table.record(1, seq, 300);
    }
    vec![a, b]
}

fn info() -> RunInfo {
    RunInfo {
        kind: "run".into(),
        window_ns: (1_000_000_000, 3_000_000_000),
        ..RunInfo::default()
    }
}

/// A report with nothing in it, for other modules' tests.
pub(crate) fn empty_report() -> Report {
    build(&scenario(), &[], &RunInfo::default())
}

#[test]
fn expected_lost_and_reach_come_from_what_was_sent() {
    let r = build(&scenario(), &results(), &info());
    let m = r.messages;
    assert_eq!((m.sent, m.sent_total), (15, 19));
    assert_eq!(m.expected, 10 + 10 + 5);
    assert_eq!(m.delivered, 23);
    assert_eq!(m.lost, 2);
    assert_eq!((m.duplicates, m.reorders), (1, 1));
    assert_eq!(m.reach, Some(23.0 / 25.0));
    assert_eq!(r.connections.attempted, 6);
    assert_eq!(r.connections.failed, 3);
    assert_eq!(r.errors.get("refused"), Some(&1));
    assert_eq!(r.window.measured_s, 2.0);
    assert_eq!(r.throughput.sent_per_s, 7.5);
    assert_eq!(r.throughput.delivered_per_s, 11.5);
}

#[test]
fn nodes_and_shards_are_broken_down() {
    let r = build(&scenario(), &results(), &info());
    assert_eq!(r.nodes.len(), 2);
    let n1 = &r.nodes[0];
    assert_eq!(n1.node, "n1");
    assert_eq!(n1.shards.len(), 2);
    assert_eq!((n1.counts.expected, n1.counts.delivered, n1.counts.lost), (20, 18, 2));
    assert_eq!(n1.counts.reach, Some(0.9));
    assert_eq!(n1.shards[1].counts.lost, 2);
    assert_eq!(n1.delivery.count, 18);
    assert!(n1.delivery.max_us >= 200);
    let n2 = &r.nodes[1];
    assert_eq!((n2.counts.reach, n2.counts.duplicates), (Some(1.0), 1));
    assert_eq!(r.latency.delivery.percentiles.count, 23);
    assert_eq!(r.latency.connect.percentiles.count, 3);
}

#[test]
fn broadcast_completion_counts_only_fully_delivered_messages() {
    let r = build(&scenario(), &results(), &info());
    // Channel 0: seqs 0..8 reached both subscribers (last at 200 µs), 8 and 9 only one.
    // Channel 1: all 5 reached its only subscriber (300 µs).
    assert_eq!(r.latency.broadcast_complete, 13);
    assert_eq!(r.latency.broadcast_incomplete, 2);
    let b = r.latency.broadcast.percentiles;
    assert_eq!(b.count, 13);
    assert!((200..=201).contains(&b.p50_us), "{}", b.p50_us);
    assert!((300..=301).contains(&b.max_us), "{}", b.max_us);
}

#[test]
fn cpu_per_message() {
    let r = build(&scenario(), &results(), &info());
    assert!((r.cpu.loadgen_s - 1.5).abs() < 1e-9);
    let per = r.cpu.loadgen_us_per_message.expect("messages were handled");
    assert!((per - 1.5e6 / 38.0).abs() < 1e-6, "{per}");
    assert!((r.cpu.loadgen_shards[0].utilisation - 0.375).abs() < 1e-9);
    assert_eq!(r.cpu.server_s, None);
    let mut cpu = CpuReport {
        servers: vec![ServerCpu {
            name: "n1".into(),
            source: "proc".into(),
            cpu_s: 2.3,
            ..ServerCpu::default()
        }],
        ..CpuReport::default()
    };
    per_message(&mut cpu, &r.messages);
    assert_eq!(cpu.server_s, Some(2.3));
    assert!((cpu.server_us_per_delivery.unwrap_or_default() - 2.3e6 / 23.0).abs() < 1e-6);
}

#[test]
fn memory_per_connection_in_hold() {
    let reading = |rss| crate::server::Reading {
        name: "pid 1".into(),
        source: "proc".into(),
        cpu_s: None,
        rss_bytes: Some(rss),
        shards: None,
        kafka_connected: None,
        kafka_lag: None,
    };
    let mut i = info();
    i.before_connect = Some(Sample {
        at_ns: 0,
        readings: vec![reading(1_000_000.0)],
        host_ticks: None,
    });
    i.measure_start = Some(Sample {
        at_ns: 1,
        readings: vec![reading(4_000_000.0)],
        host_ticks: None,
    });
    let r = build(&scenario(), &results(), &i);
    assert_eq!(r.memory.len(), 1);
    assert_eq!(r.memory[0].connections, 3);
    assert_eq!(r.memory[0].bytes_per_connection, Some(1_000_000.0));
}

#[test]
fn merging_two_runs_adds_their_totals() {
    let a = build(&scenario(), &results(), &info());
    let mut b = a.clone();
    b.run_ids = vec![8];
    let m = merge(&[a.clone(), b]).expect("two reports");
    assert_eq!(m.kind, "merged");
    assert_eq!(m.run_ids, vec![7, 8]);
    assert_eq!(m.processes, 2);
    assert_eq!(m.messages.sent, 2 * a.messages.sent);
    assert_eq!(m.messages.expected, 2 * a.messages.expected);
    assert_eq!(m.messages.delivered, 2 * a.messages.delivered);
    assert_eq!(m.messages.lost, 2 * a.messages.lost);
    assert_eq!(m.messages.reach, a.messages.reach);
    assert_eq!(
        m.latency.delivery.percentiles.count,
        2 * a.latency.delivery.percentiles.count
    );
    assert_eq!(
        m.latency.delivery.percentiles.max_us,
        a.latency.delivery.percentiles.max_us
    );
    assert_eq!(m.nodes.len(), 2);
    assert_eq!(m.nodes[0].shards[1].counts.lost, 4);
    assert_eq!(m.nodes[0].delivery.count, 36);
    assert_eq!(m.errors.get("refused"), Some(&2));
    assert_eq!(m.cpu.loadgen_shards.len(), 4);
    assert!((m.cpu.loadgen_s - 3.0).abs() < 1e-9);
    assert_eq!(m.throughput.sent_per_s, 15.0);
    assert!(merge(&[]).is_none());
}

#[test]
fn the_table_names_every_figure() {
    let text = table::render(&build(&scenario(), &results(), &info()));
    for needle in [
        "p99.99",
        "delivery",
        "broadcast completion",
        "connect",
        "lost 2",
        "reach 0.9200",
        "n1",
        "refused=1",
        "cpu loadgen",
    ] {
        assert!(text.contains(needle), "missing {needle} in\n{text}");
    }
}

/// `results()` where n1/1's subscriber dropped twice and came back twice on n2/0, resumed
/// (one receipt said true, one false), with 3 messages recovered; publisher 0 could not
/// send 4 measured messages (and 2 in warm-up) and left one unwritten.
fn results_with_drops() -> Vec<ShardResult> {
    let mut r = results();
    r[0].reconnect_failures = 3;
    r[0].subs[1].key = 2;
    r[0].subs[1].drops = 2;
    r[0].subs[1].reconnects = 2;
    r[0].subs[1].resumed = 2;
    r[0].subs[1].duplicates = 1;
    r[0].keys[1].disconnects = 2;
    r[0].pubs[0].unsent_measured = 4;
    r[0].pubs[0].unsent_total = 6;
    r[0].pubs[0].unflushed = 1;
    let mut landed = key("n2", "0", &[]);
    landed.connect = stats::new_hist();
    landed.reconnects = 2;
    landed.resumed = 2;
    landed.recovered = 3;
    landed.recoveries_true = 1;
    landed.recoveries_false = 1;
    record(&mut landed.reconnect, 150_000);
    record(&mut landed.reconnect, 450_000);
    r[0].keys.push(landed);
    r
}

#[test]
fn drops_and_reconnects_are_counted_where_they_happened() {
    let mut s = scenario();
    s.reconnect = Some(crate::reconnect::Policy::default());
    s.resume = true;
    let r = build(&s, &results_with_drops(), &info());
    let rc = &r.reconnect;
    assert!(rc.enabled && rc.resume);
    assert_eq!(
        (rc.disconnects, rc.reconnects, rc.still_down, rc.failed_attempts),
        (2, 2, 0, 3)
    );
    assert_eq!((rc.resumed, rc.resubscribed_plain, rc.recovered), (2, 0, 3));
    assert_eq!(
        (rc.recoveries_true, rc.recoveries_false, rc.recoveries_missing),
        (1, 1, 0)
    );
    // The subscriber that dropped expected 10 and got 8.
    assert_eq!(
        (rc.dropped_subscribers, rc.lost_after_drop, rc.duplicates_after_drop),
        (1, 2, 1)
    );
    assert_eq!(rc.unflushed, 1);
    assert_eq!(rc.reconnect_time.percentiles.count, 2);
    assert!(rc.reconnect_time.percentiles.max_us >= 450_000);
    // Unsent messages are neither sent nor expected.
    assert_eq!(
        (r.messages.sent, r.messages.unsent, r.messages.unsent_total),
        (15, 4, 6)
    );
    assert_eq!(r.messages.expected, 25);
    // Drops count where they happened, reconnects where they landed.
    let n1 = &r.nodes[0];
    assert_eq!(
        (n1.counts.disconnects, n1.counts.reconnects, n1.counts.lost_after_drop),
        (2, 0, 0)
    );
    // The subscriber counts on the node it ended on.
    let n2 = &r.nodes[1];
    assert_eq!(
        (n2.counts.disconnects, n2.counts.reconnects, n2.counts.recovered),
        (0, 2, 3)
    );
    assert_eq!((n2.counts.subscribers, n2.counts.lost_after_drop), (2, 2));
    assert_eq!(n2.counts.recoveries_false, 1);
    assert_eq!(n2.reconnect.count, 2);
    let text = table::render(&r);
    for needle in [
        "reconnect (drop→subscribed)",
        "reconnect on, resume from x-offset: 2 disconnects, 2 reconnected",
        "x-recovered true 1, false 1, missing 0",
        "recovered by replay 3",
        "lost 2 after resume",
        "unsent 4 (+2 warm-up)",
        "rec-false",
    ] {
        assert!(text.contains(needle), "missing {needle} in\n{text}");
    }
}

#[test]
fn without_drops_the_table_stays_as_it_was() {
    let text = table::render(&build(&scenario(), &results(), &info()));
    assert!(!text.contains("reconnect"), "{text}");
    assert!(!text.contains("unsent"), "{text}");
}

#[test]
fn merged_reconnects_add_up_and_old_reports_still_read() {
    let mut s = scenario();
    s.reconnect = Some(crate::reconnect::Policy::default());
    let a = build(&s, &results_with_drops(), &info());
    let m = merge(&[a.clone(), a.clone()]).expect("two reports");
    assert_eq!(m.reconnect.disconnects, 4);
    assert_eq!(m.reconnect.reconnect_time.percentiles.count, 4);
    assert_eq!(m.messages.unsent, 8);
    assert_eq!(m.nodes[1].reconnect.count, 4);
    assert_eq!(m.timeline.len(), a.timeline.len());
    // A report written before reconnects existed has none of these fields.
    let mut json = serde_json::to_value(&a).expect("serialises");
    let obj = json.as_object_mut().expect("an object");
    obj.remove("reconnect");
    let messages = obj
        .get_mut("messages")
        .and_then(|m| m.as_object_mut())
        .expect("messages");
    messages.remove("unsent");
    messages.remove("unsent_total");
    let old: Report = serde_json::from_value(json).expect("an old report reads");
    assert_eq!(old.reconnect, ReconnectReport::default());
    assert_eq!(old.messages.unsent, 0);
}

#[test]
fn losses_of_unconfirmed_messages_are_told_apart() {
    // Messages 8 and 9 of publisher 0 each reached one of channel 0's two subscribers;
    // the server never confirmed 9 (and confirmed 8).
    let mut results = results();
    results[0].pubs[0].unconfirmed = vec![9];
    let report = build(&scenario(), &results, &info());
    let m = &report.messages;
    assert_eq!(m.lost, 2);
    assert_eq!((m.unconfirmed, m.lost_unconfirmed), (1, 1));
    let table = super::table::render(&report);
    assert!(
        table.contains("lost 2 (1 of confirmed messages, 1 of 1 messages whose receipt never came)"),
        "{table}"
    );
}
