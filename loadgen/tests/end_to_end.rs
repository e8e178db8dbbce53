//! The load generator against a real engine: exact delivery counts over raw WebSocket,
//! SockJS and SockJS's HTTP transports, a stalled subscriber seen as latency (and as loss once the engine drops it),
//! injected duplicates and reorders detected, merged runs adding up, and the ways a run
//! can go wrong (nothing listening, Ctrl-C) still ending in a report.

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{float, num, out_dir, report, run, serial, Engine};

/// 20 connections on 4 channels, 4 publishers at 100 msg/s for 2 s: 200 messages,
/// each to the 5 subscribers of its channel.
const SMALL: &[&str] = &[
    "--connections",
    "20",
    "--channels",
    "4",
    "--publishers",
    "4",
    "--rate",
    "100",
    "--duration",
    "2",
    "--warmup",
    "0.5",
];

fn assert_exact(r: &serde_json::Value) {
    let m = &r["messages"];
    assert_eq!(num(r, &["connections", "ready"]), 20, "{r}");
    assert_eq!(num(m, &["sent"]), 200, "{m}");
    assert_eq!(num(m, &["expected"]), 1000, "{m}");
    assert_eq!(num(m, &["delivered"]), 1000, "{m}");
    assert_eq!(
        (num(m, &["lost"]), num(m, &["duplicates"]), num(m, &["reorders"])),
        (0, 0, 0),
        "{m}"
    );
    assert_eq!(float(m, &["reach"]), 1.0);
    assert_eq!(num(r, &["latency", "broadcast_complete"]), 200);
    assert_eq!(num(r, &["latency", "broadcast_incomplete"]), 0);
    assert_eq!(num(r, &["latency", "delivery", "count"]), 1000);
    assert_eq!(num(r, &["latency", "connect", "count"]), 20);
    let nodes = r["nodes"].as_array().expect("nodes");
    assert_eq!(nodes.len(), 1);
    assert_eq!(nodes[0]["node"], "node-0");
    assert_eq!(nodes[0]["shards"][0]["shard"], "0");
    assert_eq!(float(&nodes[0], &["reach"]), 1.0);
    assert!(r["errors"].as_object().is_some_and(|e| e.is_empty()), "{}", r["errors"]);
}

#[test]
fn small_scenario_delivers_exactly_what_it_should() {
    let _serial = serial();
    let engine = Engine::start(&[]);
    let out = out_dir("exact");
    let r = run(&engine.ws(), &out, SMALL);
    assert_exact(&r);
    // Server CPU comes from the engine's own /metrics.
    assert!(r["cpu"]["servers"][0]["source"] == "metrics", "{}", r["cpu"]);
    assert!(float(&r, &["cpu", "loadgen_s"]) > 0.0);
    for file in ["latency.hlog", "latency-percentiles.svg", "latency-over-time.svg"] {
        let text = std::fs::read_to_string(out.join(file)).expect(file);
        assert!(text.len() > 100, "{file} is too short");
    }
    let hlog = std::fs::read_to_string(out.join("latency.hlog")).expect("hlog");
    assert!(
        hlog.contains("#[BaseTime:") && hlog.lines().filter(|l| l.contains("HIST")).count() >= 2,
        "{hlog}"
    );
}

/// Polling receivers (`--poll-us`) still get every message, and publishers that ask for
/// receipts (`--confirm`) get one for each: nothing is counted unconfirmed.
#[test]
fn polling_receivers_and_confirming_publishers_deliver_exactly_too() {
    let _serial = serial();
    let engine = Engine::start(&[]);
    let args = [SMALL, &["--poll-us", "500", "--confirm"]].concat();
    let r = run(&engine.ws(), &out_dir("poll-confirm"), &args);
    assert_exact(&r);
    assert!(r["scenario"]["confirm"].as_bool().unwrap_or(false), "{}", r["scenario"]);
    let m = &r["messages"];
    assert_eq!((num(m, &["unconfirmed"]), num(m, &["lost_unconfirmed"])), (0, 0), "{m}");
}

#[test]
fn sockjs_transport_from_several_source_addresses_delivers_exactly_too() {
    let _serial = serial();
    let engine = Engine::start(&[]);
    // Also from three local source addresses.
    let args = [SMALL, &["--source-ips", "127.0.0.2-127.0.0.4"]].concat();
    let r = run(&engine.sockjs(), &out_dir("sockjs"), &args);
    assert_exact(&r);
}

#[test]
fn http_transports_deliver_exactly_too() {
    let _serial = serial();
    // Streaming responses end every 4 KiB here, so every subscriber reopens its stream
    // many times in the run, and sessions move between two shards; none of that may lose
    // or repeat a message.
    let engine = Engine::start(&["--shards", "2", "--cpus", "0", "--sockjs-response-limit-bytes", "4096"]);
    for transport in ["xhr-streaming", "xhr-polling"] {
        let args = [SMALL, &["--transport", transport]].concat();
        let r = run(&engine.sockjs(), &out_dir(transport), &args);
        assert_exact(&r);
        assert_eq!(r["scenario"]["transport"], transport);
    }
}

#[test]
fn a_stalled_subscriber_shows_as_latency() {
    let _serial = serial();
    let engine = Engine::start(&[]);
    let args = [
        SMALL,
        &["--stall-subscribers", "2", "--stall-ms", "1200", "--stall-at", "0.2"],
    ]
    .concat();
    let r = run(&engine.ws(), &out_dir("stall"), &args);
    let max_us = num(&r, &["latency", "delivery", "max_us"]);
    assert!(
        max_us >= 1_100_000,
        "max latency {max_us} µs should include the 1.2 s stall"
    );
    // Everything still arrives: the engine's queue holds a short stall.
    assert_eq!(num(&r, &["messages", "lost"]), 0);
    assert!(num(&r, &["latency", "broadcast", "max_us"]) >= 1_100_000);
}

#[test]
fn a_subscriber_dropped_as_slow_shows_as_loss() {
    let _serial = serial();
    // A 256 KiB outbound queue: healthy readers never fill it, while 2 MB/s to a reader
    // stalled for 4 s overflows the socket buffers and then the queue.
    let engine = Engine::start(&["--max-frame-bytes", "65536", "--max-outbound-bytes", "262144"]);
    let args = [
        "--connections",
        "4",
        "--channels",
        "1",
        "--publishers",
        "1",
        "--rate",
        "500",
        "--size",
        "4000",
    ];
    let stall = [
        "--duration",
        "5",
        "--warmup",
        "0.2",
        "--stall-subscribers",
        "1",
        "--stall-ms",
        "4000",
        "--stall-at",
        "0.2",
    ];
    let r = run(&engine.ws(), &out_dir("slow"), &[&args[..], &stall[..]].concat());
    let lost = num(&r, &["messages", "lost"]);
    assert!(
        lost > 0,
        "the dropped subscriber's messages are lost: {}",
        r["messages"]
    );
    assert!(
        lost <= num(&r, &["messages", "sent"]),
        "only the stalled subscriber loses: {}",
        r["messages"]
    );
    assert!(num(&r, &["latency", "delivery", "max_us"]) >= 3_000_000);
    assert!(
        r["errors"].as_object().is_some_and(|e| !e.is_empty()),
        "the drop is counted: {}",
        r["errors"]
    );
    assert!(float(&r, &["messages", "reach"]) < 1.0);
}

#[test]
fn injected_duplicates_and_reorders_are_detected() {
    let _serial = serial();
    let engine = Engine::start(&[]);
    let args = [SMALL, &["--inject-dup", "3", "--inject-reorder", "2"]].concat();
    let r = run(&engine.ws(), &out_dir("inject"), &args);
    let m = &r["messages"];
    // Publisher 0's channel has 5 subscribers; each sees every injection.
    assert_eq!(num(m, &["injected"]), 3);
    assert_eq!(num(m, &["duplicates"]), 15, "{m}");
    assert_eq!(num(m, &["reorders"]), 10, "{m}");
    assert_eq!(num(m, &["lost"]), 0, "{m}");
    assert_eq!(num(m, &["delivered"]), num(m, &["expected"]), "{m}");
}

#[test]
fn merged_runs_add_up() {
    let _serial = serial();
    let engine = Engine::start(&[]);
    let (a, b, merged) = (out_dir("merge-a"), out_dir("merge-b"), out_dir("merge-out"));
    let ra = run(&engine.ws(), &a, SMALL);
    let rb = run(
        &engine.ws(),
        &b,
        &[
            "--connections",
            "10",
            "--channels",
            "2",
            "--publishers",
            "2",
            "--rate",
            "50",
            "--duration",
            "1",
            "--warmup",
            "0.2",
        ],
    );
    let paths: Vec<&str> = [&a, &b, &merged].iter().map(|p| p.to_str().expect("utf-8")).collect();
    let output = support::loadgen(&["merge", paths[0], paths[1], "--out", paths[2]]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(String::from_utf8_lossy(&output.stdout).contains("loadgen merged"));
    let m = report(&merged);
    for key in [
        "sent",
        "sent_total",
        "expected",
        "delivered",
        "lost",
        "duplicates",
        "reorders",
    ] {
        assert_eq!(
            num(&m, &["messages", key]),
            num(&ra, &["messages", key]) + num(&rb, &["messages", key]),
            "messages.{key}"
        );
    }
    for key in ["attempted", "ready", "publishers"] {
        assert_eq!(
            num(&m, &["connections", key]),
            num(&ra, &["connections", key]) + num(&rb, &["connections", key])
        );
    }
    for hist in ["delivery", "broadcast", "connect"] {
        assert_eq!(
            num(&m, &["latency", hist, "count"]),
            num(&ra, &["latency", hist, "count"]) + num(&rb, &["latency", hist, "count"])
        );
    }
    assert_eq!(m["kind"], "merged");
    assert_eq!(m["processes"], 2);
    assert!(std::fs::read_to_string(merged.join("latency.hlog")).is_ok_and(|t| t.contains("HIST")));
}

#[test]
fn nothing_listening_is_counted_not_hung() {
    let _serial = serial();
    let port = support::free_port();
    let out = out_dir("refused");
    let started = Instant::now();
    let output = support::loadgen(&[
        "run",
        "--target",
        &format!("ws://127.0.0.1:{port}/ws"),
        "--connections",
        "10",
        "--channels",
        "2",
        "--publishers",
        "2",
        "--duration",
        "30",
        "--out",
        out.to_str().expect("utf-8"),
        "--quiet",
    ]);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(output.status.code(), Some(3), "no connection ready");
    let r = report(&out);
    assert_eq!(num(&r, &["errors", "refused"]), 10, "{}", r["errors"]);
    assert_eq!(num(&r, &["connections", "failed"]), 10);
}

#[test]
fn ctrl_c_reports_what_was_measured() {
    let _serial = serial();
    let engine = Engine::start(&[]);
    let out = out_dir("sigint");
    let child = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args([
            "run",
            "--target",
            &engine.ws(),
            "--connections",
            "20",
            "--channels",
            "4",
            "--publishers",
            "4",
            "--rate",
            "100",
        ])
        .args([
            "--duration",
            "60",
            "--warmup",
            "0.5",
            "--shards",
            "1",
            "--quiet",
            "--out",
            out.to_str().expect("utf-8"),
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("loadgen starts");
    std::thread::sleep(Duration::from_secs(3));
    // SAFETY: kill(2) on our own child's pid.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let started = Instant::now();
    let output = child.wait_with_output().expect("loadgen exits");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "took {:?} after SIGINT",
        started.elapsed()
    );
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).contains("INTERRUPTED"));
    let r = report(&out);
    assert_eq!(r["interrupted"], true);
    let sent = num(&r, &["messages", "sent"]);
    assert!(sent > 50 && sent < 500, "about 2 s of 100 msg/s measured, got {sent}");
    assert_eq!(num(&r, &["messages", "lost"]), 0, "{}", r["messages"]);
}

#[test]
fn hold_reports_memory_per_connection() {
    let _serial = serial();
    let engine = Engine::start(&[]);
    let out = out_dir("hold");
    let output = support::loadgen(&[
        "hold",
        "--target",
        &engine.ws(),
        "--connections",
        "200",
        "--channels",
        "10",
        "--duration",
        "1",
        "--shards",
        "1",
        "--quiet",
        "--out",
        out.to_str().expect("utf-8"),
    ]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let r = report(&out);
    assert_eq!(r["kind"], "hold");
    assert_eq!(num(&r, &["connections", "ready"]), 200);
    assert_eq!(num(&r, &["connections", "publishers"]), 0);
    let memory = &r["memory"][0];
    assert_eq!(memory["name"], "node-0");
    assert_eq!(num(memory, &["connections"]), 200);
    let per = float(memory, &["bytes_per_connection"]);
    assert!(per > 0.0 && per < 1_000_000.0, "{memory}");
    assert!(String::from_utf8_lossy(&output.stdout).contains("bytes/connection"));
}

#[test]
fn sweep_finds_a_knee_and_sizes_a_cluster() {
    let _serial = serial();
    let engine = Engine::start(&[]);
    let out = out_dir("sweep");
    let output = support::loadgen(&[
        "sweep",
        "--target",
        &engine.ws(),
        "--connections",
        "20",
        "--channels",
        "4",
        "--publishers",
        "4",
        "--warmup",
        "0.2",
        "--rate-start",
        "40",
        "--rate-factor",
        "2",
        "--rate-max",
        "100",
        "--step-secs",
        "1",
        "--slo-p99-ms",
        "5000",
        "--target-users",
        "1000",
        "--target-rate",
        "1000",
        "--shards",
        "1",
        "--quiet",
        "--out",
        out.to_str().expect("utf-8"),
    ]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let text = std::fs::read_to_string(out.join("sweep.json")).expect("sweep.json");
    let s: serde_json::Value = serde_json::from_str(&text).expect("json");
    assert_eq!(s["steps"].as_array().map(Vec::len), Some(2), "40 and 80 msg/s");
    assert_eq!(s["knee_rate_per_s"], 80.0);
    assert_eq!(s["stopped_because"], "reached --rate-max");
    // 20 users and 80 msg/s on one node: 1000 users need 50 nodes, 1000 msg/s 13.
    assert_eq!(s["sizing"]["nodes_for_users"], 50);
    assert_eq!(s["sizing"]["nodes"], 50);
    assert!(out.join("step-00").join("report.json").exists());
    assert!(String::from_utf8_lossy(&output.stdout).contains("knee: 80 msg/s"));
}

#[test]
fn two_nodes_are_broken_down_per_node() {
    let _serial = serial();
    let a = Engine::start(&["--node-id", "alpha"]);
    let b = Engine::start(&["--node-id", "beta"]);
    // Targets alternate and channels are even in number, so each channel lives on one
    // node with its publisher: no Kafka needed.
    let out = out_dir("two-nodes");
    let output = support::loadgen(&[
        "run",
        "--target",
        &a.ws(),
        "--target",
        &b.sockjs(),
        "--connections",
        "40",
        "--channels",
        "4",
        "--publishers",
        "4",
        "--rate",
        "100",
        "--duration",
        "1",
        "--warmup",
        "0.3",
        "--shards",
        "2",
        "--quiet",
        "--out",
        out.to_str().expect("utf-8"),
    ]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let r = report(&out);
    let nodes = r["nodes"].as_array().expect("nodes");
    let names: Vec<&str> = nodes.iter().filter_map(|n| n["node"].as_str()).collect();
    assert_eq!(names, vec!["alpha", "beta"]);
    for n in nodes {
        assert_eq!(num(n, &["connections"]), 20, "{n}");
        assert_eq!(float(n, &["reach"]), 1.0, "{n}");
        assert!(num(n, &["delivered"]) > 0);
    }
    let servers: Vec<&str> = r["cpu"]["servers"]
        .as_array()
        .expect("servers")
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert_eq!(servers, vec!["alpha", "beta"]);
    assert_eq!(r["cpu"]["loadgen_shards"].as_array().map(Vec::len), Some(2));
}

#[test]
fn a_server_that_dies_mid_run_is_counted() {
    let _serial = serial();
    let engine = Engine::start(&[]);
    let out = out_dir("dies");
    let started = Instant::now();
    let child = support::start_run(
        &engine.ws(),
        &out,
        &[SMALL, &["--duration", "3", "--grace", "1"]].concat(),
    );
    std::thread::sleep(Duration::from_millis(2000));
    engine.signal(libc::SIGKILL);
    let output = child.wait_with_output().expect("loadgen exits");
    assert!(
        started.elapsed() < Duration::from_secs(12),
        "took {:?}",
        started.elapsed()
    );
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let r = report(&out);
    let errors = r["errors"].as_object().expect("errors");
    assert!(
        errors.contains_key("eof") || errors.contains_key("reset"),
        "{}",
        r["errors"]
    );
    let sent = num(&r, &["messages", "sent"]);
    assert!(
        sent > 0 && sent < 300,
        "publishing stopped with the server: {}",
        r["messages"]
    );
}

#[test]
fn a_server_that_stalls_mid_run_is_counted() {
    let _serial = serial();
    let engine = Engine::start(&[]);
    let out = out_dir("stalls");
    let started = Instant::now();
    let child = support::start_run(
        &engine.ws(),
        &out,
        &[SMALL, &["--duration", "3", "--grace", "1"]].concat(),
    );
    std::thread::sleep(Duration::from_millis(2000));
    engine.signal(libc::SIGSTOP);
    let output = child.wait_with_output().expect("loadgen exits");
    engine.signal(libc::SIGCONT);
    // Warm-up 0.5 s, 3 s measured, 1 s grace, plus connecting and stopping.
    assert!(
        started.elapsed() < Duration::from_secs(12),
        "took {:?}",
        started.elapsed()
    );
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let r = report(&out);
    let m = &r["messages"];
    assert_eq!(
        num(m, &["sent"]),
        300,
        "publishing goes on into the stalled server: {m}"
    );
    assert!(
        num(m, &["lost"]) > 0,
        "what the stalled server never delivered is lost: {m}"
    );
    assert!(float(m, &["reach"]) < 1.0);
}
