//! Cluster mode against a real Kafka broker: three engine processes, clients on
//! different nodes and shards, every message of a channel delivered to every subscriber
//! in one order, a node restarted mid-stream, and a broker restart during a publish.
//!
//! Needs a broker: `bash deploy/kafka/kafka.sh start`, then `CHAT_KAFKA_BROKERS=127.0.0.1:9092`.
//! Without it the tests skip, unless `CHAT_REQUIRE_EXTERNAL=1` (the test command sets both).
//! The broker-restart test stops and starts that broker with `kafka.sh` (while the other
//! tests here wait); set `CHAT_KAFKA_NO_RESTART=1` when other processes share it.

mod common;

use std::collections::HashSet;
use std::process::Command;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use common::{body, header, Client, Engine};

fn brokers() -> Option<String> {
    match std::env::var("CHAT_KAFKA_BROKERS") {
        Ok(b) if !b.is_empty() => Some(b),
        _ => {
            assert!(
                std::env::var("CHAT_REQUIRE_EXTERNAL").is_err(),
                "CHAT_KAFKA_BROKERS is required"
            );
            eprintln!("skipped: set CHAT_KAFKA_BROKERS (bash deploy/kafka/kafka.sh start)");
            None
        }
    }
}

/// Held for reading by every test, for writing by the one that restarts the broker.
static BROKER: RwLock<()> = RwLock::new(());

fn topic(name: &str) -> String {
    format!(
        "test-{name}-{}-{}",
        std::process::id(),
        Instant::now().elapsed().as_nanos()
    )
}

fn node(brokers: &str, topic: &str, id: &str, extra: &[&str]) -> Engine {
    let mut args = vec![
        "--shards",
        "2",
        "--cpus",
        "0",
        "--node-id",
        id,
        "--kafka-brokers",
        brokers,
        "--kafka-topic",
        topic,
        "--kafka-partitions",
        "4",
    ];
    args.extend_from_slice(extra);
    Engine::start(&args)
}

/// The `message` field of the next `n` chat MESSAGEs.
fn messages(client: &mut Client, n: usize) -> Vec<String> {
    (0..n)
        .map(|_| {
            let frame = client.frame();
            assert!(frame.starts_with("MESSAGE\n"), "{frame}");
            let json: serde_json::Value = serde_json::from_str(body(&frame)).expect("json");
            json["message"].as_str().unwrap_or_default().to_string()
        })
        .collect()
}

/// Publishes and waits for the RECEIPT, so the message is in the node's hands.
fn chat_with_receipt(client: &mut Client, channel: &str, message: &str) {
    let body = serde_json::json!({"channel": channel, "sender": "t", "message": message}).to_string();
    client.send(&format!(
        "SEND\ndestination:/pub/chat\nreceipt:{message}\ncontent-length:{}\n\n{body}\0",
        body.len()
    ));
    let receipt = client.frame();
    assert_eq!(header(&receipt, "receipt-id").as_deref(), Some(message), "{receipt}");
}

#[test]
fn every_node_delivers_every_message_in_one_order() {
    let Some(brokers) = brokers() else { return };
    let _shared = BROKER.read().unwrap_or_else(|e| e.into_inner());
    let topic = topic("order");
    let nodes: Vec<Engine> = ["a", "b", "c"]
        .iter()
        .map(|id| node(&brokers, &topic, id, &[]))
        .collect();
    let mut clients: Vec<Client> = Vec::new();
    for engine in &nodes {
        for _ in 0..3 {
            let mut c = Client::raw(engine.port());
            c.subscribe("sub-0", "/sub/chat/room");
            clients.push(c);
        }
    }
    let shards: HashSet<String> = clients.iter().map(|c| c.server.clone()).collect();
    assert!(
        shards.len() >= 4,
        "clients should spread over nodes and shards: {shards:?}"
    );
    // Three publishers, one per node, interleaved: 3 x 50 messages.
    for i in 0..50 {
        for p in 0..3 {
            clients[p * 3].chat("room", &format!("p{p}-{i}"));
        }
    }
    let first = messages(&mut clients[0], 150);
    let unique: HashSet<&String> = first.iter().collect();
    assert_eq!(unique.len(), 150, "no duplicates");
    for p in 0..3 {
        let own: Vec<&String> = first.iter().filter(|m| m.starts_with(&format!("p{p}-"))).collect();
        let expected: Vec<String> = (0..50).map(|i| format!("p{p}-{i}")).collect();
        assert_eq!(own, expected.iter().collect::<Vec<_>>(), "publisher order");
    }
    for (n, client) in clients.iter_mut().enumerate().skip(1) {
        assert_eq!(
            messages(client, 150),
            first,
            "client {n} ({}) sees the same order",
            client.server
        );
    }
}

#[test]
fn a_restarted_node_rejoins() {
    let Some(brokers) = brokers() else { return };
    let _shared = BROKER.read().unwrap_or_else(|e| e.into_inner());
    let topic = topic("restart");
    let a = node(&brokers, &topic, "a", &[]);
    let b = node(&brokers, &topic, "b", &[]);
    let mut on_a = Client::raw(a.port());
    on_a.subscribe("sub-0", "/sub/chat/r");
    let mut on_b = Client::raw(b.port());
    on_b.subscribe("sub-0", "/sub/chat/r");
    chat_with_receipt(&mut on_a, "r", "before");
    assert_eq!(messages(&mut on_a, 1), ["before"]);
    assert_eq!(messages(&mut on_b, 1), ["before"]);

    drop(on_b);
    drop(b);
    chat_with_receipt(&mut on_a, "r", "while-b-down");
    assert_eq!(messages(&mut on_a, 1), ["while-b-down"]);

    let b = node(&brokers, &topic, "b", &[]);
    let mut on_b = Client::raw(b.port());
    on_b.subscribe("sub-0", "/sub/chat/r");
    chat_with_receipt(&mut on_a, "r", "after");
    assert_eq!(messages(&mut on_a, 1), ["after"]);
    assert_eq!(messages(&mut on_b, 1), ["after"]);
}

#[test]
fn a_broker_restart_loses_nothing_for_connected_clients() {
    let Some(brokers) = brokers() else { return };
    let kafka_sh = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/kafka/kafka.sh");
    if std::env::var_os("CHAT_KAFKA_NO_RESTART").is_some() {
        eprintln!("skipped: CHAT_KAFKA_NO_RESTART is set");
        return;
    }
    let _alone = BROKER.write().unwrap_or_else(|e| e.into_inner());
    let topic = topic("outage");
    let a = node(&brokers, &topic, "a", &[]);
    let b = node(&brokers, &topic, "b", &[]);
    let mut publisher = Client::raw(a.port());
    let mut reader = Client::raw(b.port());
    reader.subscribe("sub-0", "/sub/chat/o");
    chat_with_receipt(&mut publisher, "o", "m0");
    assert_eq!(messages(&mut reader, 1), ["m0"]);

    let status = Command::new("bash")
        .args([kafka_sh, "stop"])
        .status()
        .expect("kafka.sh stop");
    assert!(status.success());
    for i in 1..=20 {
        chat_with_receipt(&mut publisher, "o", &format!("m{i}"));
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = Command::new("bash")
        .args([kafka_sh, "start"])
        .status()
        .expect("kafka.sh start");
    assert!(status.success());
    for i in 21..=30 {
        chat_with_receipt(&mut publisher, "o", &format!("m{i}"));
    }
    reader
        .ws
        .get_mut()
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    let expected: Vec<String> = (1..=30).map(|i| format!("m{i}")).collect();
    assert_eq!(messages(&mut reader, 30), expected);
}
