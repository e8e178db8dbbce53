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
        },
        SubResult {
            key: 1,
            channel: 0,
            received: 8,
            duplicates: 0,
            reorders: 0,
        },
    ];
    a.pubs = vec![PubResult {
        publisher: 0,
        channel: 0,
        sent_measured: 10,
        sent_total: 13,
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
    }];
    b.pubs = vec![PubResult {
        publisher: 1,
        channel: 1,
        sent_measured: 5,
        sent_total: 6,
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
    };
    let mut i = info();
    i.before_connect = Some(Sample {
        at_ns: 0,
        readings: vec![reading(1_000_000.0)],
    });
    i.measure_start = Some(Sample {
        at_ns: 1,
        readings: vec![reading(4_000_000.0)],
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
