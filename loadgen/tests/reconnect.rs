//! Connections that drop mid-run, against the real engine restarted with SIGTERM (it
//! closes its clients with 1001, exits, and comes back on the same port): with
//! `--reconnect` they come back and the report says how fast; without it the drop is
//! counted as before and the publishers' missed schedule as unsent. The zero-loss resume
//! over Kafka waits for the engine's side of the wire contract.

mod support;

use std::time::Duration;

use support::{float, num, out_dir, report, serial, start_run, Engine};

/// 20 connections on 4 channels, 4 publishers at 100 msg/s in all for 4 s measured:
/// 400 messages fall due in the window; the engine restarts about 1 s into it.
const SCENARIO: &[&str] = &[
    "--connections",
    "20",
    "--channels",
    "4",
    "--publishers",
    "4",
    "--rate",
    "100",
    "--duration",
    "4",
    "--warmup",
    "0.5",
    "--grace",
    "2",
];

/// Runs `SCENARIO` plus `args` against a fresh engine restarted 2 s after loadgen
/// starts; returns report.json and stdout.
fn run_across_a_restart(name: &str, args: &[&str]) -> (serde_json::Value, String) {
    let _serial = serial();
    let mut engine = Engine::start(&[]);
    let out = out_dir(name);
    let child = start_run(&engine.ws(), &out, &[SCENARIO, args].concat());
    std::thread::sleep(Duration::from_secs(2));
    let down = engine.restart();
    assert!(down < Duration::from_secs(15), "the engine took {down:?} to come back");
    let output = child.wait_with_output().expect("loadgen exits");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "loadgen failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    (report(&out), stdout)
}

/// Every measured message fell due once: it was either sent or counted unsent.
fn assert_schedule_kept(r: &serde_json::Value) {
    let m = &r["messages"];
    assert_eq!(num(m, &["sent"]) + num(m, &["unsent"]), 400, "{m}");
    assert!(num(m, &["unsent"]) > 0, "publishers were down for a while: {m}");
}

/// The engine's goodbye: close 1001 (or the socket closing under it) on every connection.
fn assert_drops_counted(r: &serde_json::Value) {
    let errors = r["errors"].as_object().expect("errors");
    let closed: u64 = ["close_1001", "eof", "reset"]
        .iter()
        .map(|k| errors.get(*k).and_then(|v| v.as_u64()).unwrap_or(0))
        .sum();
    assert!(closed >= 20, "every connection saw the restart: {}", r["errors"]);
    assert!(
        errors.contains_key("close_1001"),
        "SIGTERM closes with 1001: {}",
        r["errors"]
    );
    assert_eq!(num(r, &["reconnect", "disconnects"]), 20, "{}", r["reconnect"]);
    assert_eq!(num(&r["nodes"][0], &["disconnects"]), 20, "{}", r["nodes"]);
}

#[test]
fn reconnect_brings_every_connection_back_after_a_restart() {
    let (r, stdout) = run_across_a_restart("reconnect", &["--reconnect"]);
    let rc = &r["reconnect"];
    assert_eq!(rc["enabled"], true);
    assert_eq!(rc["resume"], false);
    assert_drops_counted(&r);
    assert_eq!(num(rc, &["reconnects"]), 20, "{rc}");
    assert_eq!(num(rc, &["still_down"]), 0, "{rc}");
    assert_eq!(num(rc, &["resubscribed_plain"]), 20, "{rc}");
    assert_eq!(num(rc, &["resumed"]), 0, "{rc}");
    // Drop to subscribed again: at least the first backoff (100 ms -50 %), well under
    // the engine's restart bound.
    let time = &rc["reconnect_time"];
    assert_eq!(num(time, &["count"]), 20, "{time}");
    assert!(num(time, &["p50_us"]) >= 50_000, "{time}");
    assert!(num(time, &["max_us"]) < 15_000_000, "{time}");
    assert_eq!(num(&r["nodes"][0], &["reconnects"]), 20);
    assert_eq!(num(&r["nodes"][0]["reconnect"], &["count"]), 20);
    assert_schedule_kept(&r);
    // Publishing went on after the reconnect, and was delivered.
    let m = &r["messages"];
    assert!(num(m, &["sent"]) > 200, "{m}");
    assert!(float(m, &["reach"]) > 0.5, "{m}");
    // Every subscriber dropped, so all loss is loss after the drop.
    assert_eq!(num(rc, &["lost_after_drop"]), num(m, &["lost"]), "{rc} {m}");
    assert_eq!(num(rc, &["dropped_subscribers"]), 20, "{rc}");
    let timeline = r["timeline"].as_array().expect("timeline");
    let dropped: u64 = timeline.iter().map(|p| num(p, &["disconnects"])).sum();
    let back: u64 = timeline.iter().map(|p| num(p, &["reconnects"])).sum();
    assert_eq!((dropped, back), (20, 20), "the timeline shows when");
    for needle in [
        "reconnect (drop→subscribed)",
        "reconnect on, plain resubscribe: 20 disconnects, 20 reconnected",
    ] {
        assert!(stdout.contains(needle), "missing {needle} in\n{stdout}");
    }
}

#[test]
fn without_reconnect_a_restart_is_a_disconnect_as_before() {
    let (r, stdout) = run_across_a_restart("no-reconnect", &[]);
    let rc = &r["reconnect"];
    assert_eq!(rc["enabled"], false);
    assert_drops_counted(&r);
    assert_eq!(num(rc, &["reconnects"]), 0, "{rc}");
    assert_eq!(num(rc, &["still_down"]), 20, "{rc}");
    assert_eq!(num(rc, &["reconnect_time", "count"]), 0, "{rc}");
    assert_schedule_kept(&r);
    // Publishing stopped with the connections: the rest of the window is unsent.
    let m = &r["messages"];
    assert!(num(m, &["sent"]) < 300, "{m}");
    assert!(num(m, &["unsent"]) > 100, "{m}");
    assert!(stdout.contains("reconnect off"), "{stdout}");
}

#[test]
fn resume_falls_back_to_a_plain_resubscribe_without_a_position() {
    // Against this engine the whole resume path runs: positions are tracked from every
    // MESSAGE, and a connection with none resubscribes plainly. The figures must agree
    // with each other whichever side of the contract the engine implements.
    let (r, stdout) = run_across_a_restart("resume-fallback", &["--resume"]);
    let rc = &r["reconnect"];
    assert_eq!((&rc["enabled"], &rc["resume"]), (&true.into(), &true.into()));
    assert_drops_counted(&r);
    let reconnects = num(rc, &["reconnects"]);
    assert_eq!(reconnects + num(rc, &["still_down"]), 20, "{rc}");
    assert_eq!(
        num(rc, &["resumed"]) + num(rc, &["resubscribed_plain"]),
        reconnects,
        "{rc}"
    );
    assert_eq!(
        num(rc, &["recoveries_true"]) + num(rc, &["recoveries_false"]) + num(rc, &["recoveries_missing"]),
        num(rc, &["resumed"]),
        "{rc}"
    );
    assert_eq!(num(&r["messages"], &["duplicates"]), 0, "{}", r["messages"]);
    assert!(stdout.contains("resume: "), "{stdout}");
}

/// Two engines on one Kafka topic; every publisher is on the first, 12 of the 16
/// subscribers on the second, which is restarted with SIGTERM mid-run. Its subscribers
/// come back with `x-since` and must get everything they missed, once, in order.
#[test]
fn resume_over_kafka_loses_and_repeats_nothing() {
    let Some(brokers) = std::env::var("CHAT_KAFKA_BROKERS").ok().filter(|b| !b.is_empty()) else {
        assert!(
            std::env::var("CHAT_REQUIRE_EXTERNAL").is_err(),
            "CHAT_KAFKA_BROKERS is required"
        );
        eprintln!("skipped: set CHAT_KAFKA_BROKERS (bash deploy/kafka/kafka.sh start)");
        return;
    };
    let _serial = serial();
    let topic = format!("loadgen-resume-{}", std::process::id());
    let node = |id: &'static str| {
        [
            "--node-id",
            id,
            "--kafka-brokers",
            brokers.as_str(),
            "--kafka-topic",
            topic.as_str(),
        ]
        .map(str::to_string)
    };
    let (a_args, b_args) = (node("alpha"), node("beta"));
    let a = Engine::start(&a_args.each_ref().map(String::as_str));
    let mut b = Engine::start(&b_args.each_ref().map(String::as_str));
    let out = out_dir("resume-kafka");
    // Connection i goes to target i mod 4: connection 0 (the publisher) and every fourth
    // to alpha, the other 12 to beta.
    let child = start_run(
        &a.ws(),
        &out,
        &[
            "--target",
            &b.ws(),
            "--target",
            &b.ws(),
            "--target",
            &b.ws(),
            "--connections",
            "16",
            "--channels",
            "1",
            "--publishers",
            "1",
            "--rate",
            "200",
            "--duration",
            "6",
            "--warmup",
            "1",
            "--grace",
            "5",
            "--resume",
        ],
    );
    std::thread::sleep(Duration::from_secs(3));
    b.restart();
    let output = child.wait_with_output().expect("loadgen exits");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let r = report(&out);
    let (m, rc) = (&r["messages"], &r["reconnect"]);
    assert_eq!(num(rc, &["disconnects"]), 12, "{rc}");
    assert_eq!(num(rc, &["reconnects"]), 12, "{rc}");
    assert_eq!(num(rc, &["resumed"]), 12, "{rc}");
    assert_eq!(num(rc, &["recoveries_true"]), 12, "{rc}");
    assert_eq!(
        num(rc, &["recoveries_false"]) + num(rc, &["recoveries_missing"]),
        0,
        "{rc}"
    );
    // Beta was down for a while at 200 msg/s: what it missed came by replay.
    assert!(num(rc, &["recovered"]) > 12, "{rc}");
    assert_eq!(
        (
            num(rc, &["lost_after_drop"]),
            num(rc, &["duplicates_after_drop"]),
            num(rc, &["reorders_after_drop"])
        ),
        (0, 0, 0),
        "{rc}"
    );
    assert_eq!(
        (num(m, &["lost"]), num(m, &["duplicates"]), num(m, &["reorders"])),
        (0, 0, 0),
        "{m}"
    );
    assert_eq!(num(m, &["unsent"]), 0, "the publisher never dropped: {m}");
    assert_eq!(float(m, &["reach"]), 1.0, "{m}");
}
