//! Sizing and the report on synthetic climbs.

use super::*;
use crate::report::limit::{Limit, Reading};

fn args(extra: &[&str]) -> PlanArgs {
    let mut argv = vec![
        "loadgen",
        "plan",
        "--out",
        "x",
        "--users",
        "100000",
        "--msgs-per-user-per-min",
        "2",
    ];
    argv.extend_from_slice(extra);
    match Cli::try_parse_from(argv).expect("parses").command {
        Sub::Plan(args) => args,
        _ => panic!("plan"),
    }
}

fn step(rate_per_s: f64, p99_ms: f64, ok: bool, limit: Option<Limit>) -> Step {
    Step {
        rate_per_s,
        sent_per_s: rate_per_s,
        delivered_per_s: rate_per_s * 10.0,
        p99_us: (p99_ms * 1000.0) as u64,
        max_us: (p99_ms * 2000.0) as u64,
        loss: 0.0,
        connections: 400,
        nodes: 2,
        ok,
        limit: limit.map(|limit| Reading {
            limit,
            why: "synthetic".into(),
        }),
        tries: 1,
    }
}

/// 2 nodes × 200 users in small rooms: ok at 100 and 200 msg/s, p99 over 50 ms at 400.
fn climbed(nodes: u32, bytes_per_connection: Option<f64>) -> Series {
    let steps = vec![
        step(100.0, 5.0, true, None),
        step(200.0, 10.0, true, None),
        step(400.0, 90.0, false, Some(Limit::NodeCpu)),
    ];
    let objectives = Objectives {
        p99_ms: 50.0,
        loss: 0.001,
    };
    Series {
        mix: "small".into(),
        nodes,
        users_per_node: 200,
        channels: 40,
        knee: sweep::knee(&steps, objectives),
        limit: steps.last().and_then(|s| s.limit.clone()),
        bytes_per_connection,
        deliveries_per_node: Some(1000.0),
        steps,
    }
}

#[test]
fn cpu_bound_sizing_extrapolates_from_the_largest_cluster() {
    let series = [climbed(1, None), climbed(2, Some(4096.0))];
    let s = size(&series, "small", &args(&[]), 12.0).expect("a sizing");
    // Knee estimate 300 msg/s on 2 nodes = 150 msg/s per node; 2 msgs/user/min is
    // 1/30 msg/s per user: 4,500 users per node; 100,000 users need 23 nodes.
    assert!((s.users_per_node - 4500.0).abs() < 1e-6, "{s:?}");
    assert_eq!(s.nodes, 23);
    assert_eq!(s.limited_by, "node CPU");
    assert!(s.basis.contains("on 2 node(s)"), "{}", s.basis);
    assert!(
        s.basis.contains("extrapolated linearly beyond the 200 users/node"),
        "{}",
        s.basis
    );
}

#[test]
fn memory_limits_first_when_connections_are_costly() {
    // 1 MiB per connection in 1 GiB of node memory: 819 users fit, CPU would allow 4,500.
    let series = [climbed(2, Some(1_048_576.0))];
    let s = size(&series, "small", &args(&[]), 1.0).expect("a sizing");
    assert_eq!(s.limited_by, "memory");
    assert!((s.users_per_node - 819.2).abs() < 1e-6, "{s:?}");
    assert_eq!(s.nodes, 123);
}

#[test]
fn no_knee_means_no_sizing_and_an_unknown_mix_none() {
    let mut series = climbed(2, None);
    series.steps = vec![step(100.0, 80.0, false, Some(Limit::Kafka))];
    series.knee = None;
    series.limit = series.steps[0].limit.clone();
    let s = size(std::slice::from_ref(&series), "small", &args(&[]), 12.0).expect("a sizing");
    assert_eq!((s.nodes, s.limited_by.as_str()), (0, "Kafka"));
    assert!(s.basis.contains("no sizing"), "{}", s.basis);
    assert_eq!(size(&[series], "large", &args(&[]), 12.0), None);
}

#[test]
fn quick_and_full_settings() {
    let quick = Settings::of(&args(&[])).expect("valid");
    assert_eq!((quick.step_secs, quick.warmup), (5.0, 2.0));
    assert_eq!(quick.mixes, vec![Mix::Small, Mix::Large]);
    assert_eq!(quick.users_per_node, vec![200]);
    let full = Settings::of(&args(&["--full", "--step-secs", "30"])).expect("valid");
    assert_eq!((full.step_secs, full.warmup), (30.0, 5.0));
    assert_eq!(full.mixes.len(), 3);
    for bad in [
        &["--mpm-factor", "1"][..],
        &["--nodes", "0"],
        &["--users-per-node", "0"],
        &["--step-secs", "0"],
    ] {
        assert!(Settings::of(&args(bad)).is_err(), "{bad:?}");
    }
}

#[test]
fn the_report_answers_first_and_keeps_its_caveats() {
    let series = vec![climbed(1, None), climbed(2, Some(4096.0))];
    let a = args(&[]);
    let sizing = vec![size(&series, "small", &a, 12.0).expect("a sizing")];
    let plan = Plan {
        command: "loadgen plan --out x".into(),
        mode: "quick".into(),
        slo_p99_ms: 50.0,
        slo_loss: 0.001,
        users: 100_000,
        msgs_per_user_per_min: 2.0,
        host_cores: 2,
        host_memory_gib: 24.0,
        node_memory_gib: 12.0,
        load_before: Some(3.5),
        load_after: Some(4.0),
        started_unix_s: 0,
        took_s: 200.0,
        series,
        sizing,
    };
    let md = render::markdown(&plan);
    let answer = md.find("## Answer").expect("an answer");
    assert!(answer < md.find("## Room mix: small").expect("a section"));
    assert!(md.contains("| small | **23** | 4500 | node CPU |"), "{md}");
    assert!(md.contains("loadgen plan --out x"));
    assert!(md.contains("Loopback networking and 2 cores"));
    assert!(md.contains("Other work shared the machine"));
    assert!(md.contains("![p99 by messages per user per minute](p99-small.svg)"));
    assert!(md.contains("= 50% of twice one node's"), "{md}");
    assert!(md.contains("broken: limit: node CPU: synthetic"), "{md}");
}
