//! Channel spreads, run plans and flags: what a run is made of, checked without sockets.

use super::*;
use clap::Parser;

fn scenario(args: &[&str]) -> Result<Scenario, Error> {
    let cli = crate::cli::Cli::try_parse_from(["loadgen", "run", "--target", "ws://127.0.0.1:9/ws"].iter().chain(args))
        .expect("parses");
    match cli.command {
        crate::cli::Command::Run(s) => Scenario::from_args(&s),
        _ => unreachable!("asked for run"),
    }
}

#[test]
fn uniform_spread_is_round_robin() {
    assert_eq!(
        spread_channels(7, 3, Spread::Uniform, 1.0, 0.5),
        vec![0, 1, 2, 0, 1, 2, 0]
    );
}

#[test]
fn zipf_and_hot_favour_channel_zero_and_cover_all() {
    let z = spread_channels(1000, 10, Spread::Zipf, 1.0, 0.5);
    let count = |v: &[u32], c| v.iter().filter(|&&x| x == c).count();
    assert!(count(&z, 0) > 3 * count(&z, 9), "{} vs {}", count(&z, 0), count(&z, 9));
    assert!((0..10).all(|c| count(&z, c) > 0));
    assert_eq!(&z[..10], &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    let h = spread_channels(100, 5, Spread::Hot, 1.0, 0.6);
    assert_eq!(h.len(), 100);
    assert!((58..=62).contains(&count(&h, 0)), "{}", count(&h, 0));
}

#[test]
fn plan_spreads_targets_shards_and_publishers() {
    let s = scenario(&[
        "--connections",
        "20",
        "--channels",
        "4",
        "--publishers",
        "4",
        "--rate",
        "400",
        "--shards",
        "2",
        "--ramp",
        "10",
    ])
    .expect("valid");
    assert_eq!(s.conns.len(), 20);
    assert_eq!(s.publish_interval_ns, 10_000_000);
    assert_eq!(s.conns[3].publisher, Some(3));
    assert_eq!(s.conns[4].publisher, None);
    assert_eq!(s.conns[5].shard, 1);
    assert_eq!(s.conns[10].start_after, Duration::from_secs(1));
    assert_eq!(s.planned_subscribers(), vec![5, 5, 5, 5]);
    assert_eq!(s.metrics_urls, vec!["http://127.0.0.1:9/metrics".to_string()]);
}

#[test]
fn bad_values_name_their_flag() {
    let err = |args: &[&str]| scenario(args).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(err(&["--channels", "0"]).contains("--channels"));
    assert!(err(&["--rate", "0"]).contains("--rate"));
    assert!(err(&["--source-ips", "nope"]).contains("--source-ips"));
    assert!(err(&[
        "--connections",
        "3",
        "--channels",
        "3",
        "--publishers",
        "3",
        "--stall-subscribers",
        "1"
    ])
    .contains("--stall"));
}

#[test]
fn reconnect_flags_make_a_policy() {
    let s = scenario(&[]).expect("valid");
    assert_eq!((s.reconnect, s.resume), (None, false));
    let s = scenario(&["--reconnect"]).expect("valid");
    assert_eq!(s.reconnect, Some(Policy::default()));
    assert!(s.summary.reconnect && !s.summary.resume);
    // --resume implies --reconnect.
    let s = scenario(&["--resume", "--reconnect-initial-ms", "50", "--reconnect-max-ms", "800"]).expect("valid");
    let p = s.reconnect.expect("a policy");
    assert_eq!(
        (p.initial, p.max),
        (Duration::from_millis(50), Duration::from_millis(800))
    );
    assert!(s.resume && s.summary.resume);
    let err = |args: &[&str]| scenario(args).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(err(&["--reconnect", "--reconnect-jitter", "1"]).contains("--reconnect-jitter"));
    assert!(err(&["--reconnect", "--reconnect-factor", "0.5"]).contains("--reconnect-factor"));
    assert!(err(&["--resume", "--reconnect-initial-ms", "0"]).contains("--reconnect-initial-ms"));
    assert!(err(&["--reconnect", "--reconnect-max-ms", "10"]).contains("--reconnect-max-ms"));
}

#[test]
fn ip_lists() {
    let ips = parse_ip_list("127.0.0.1-127.0.0.3").expect("range");
    assert_eq!(ips.len(), 3);
    assert_eq!(ips[2].to_string(), "127.0.0.3");
    assert_eq!(parse_ip_list("127.0.0.2,::1").map(|v| v.len()), Some(2));
    assert_eq!(parse_ip_list("127.0.0.9-127.0.0.1"), None);
}

#[test]
fn stalled_subscribers_hear_a_publisher() {
    let channels = spread_channels(20, 4, Spread::Uniform, 1.0, 0.5);
    let picked = stalled_connections(&channels, 2, 3);
    assert_eq!(picked.len(), 3);
    assert!(picked.iter().all(|&i| i >= 2 && channels[i as usize] < 2), "{picked:?}");
}
