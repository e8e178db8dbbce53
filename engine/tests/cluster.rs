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
use std::sync::RwLock;
use std::time::{Duration, Instant};

use common::{header, kafka_sh, Client, Engine, RestartGuard};

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
    client.chat_messages(Vec::new(), n)
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

/// A `SEND`'s `RECEIPT` means Kafka has the message. With no broker (degraded start) the
/// message reaches the node's own subscribers at once, but its receipt waits, and so does
/// a later `DISCONNECT`'s; other replies (a `SUBSCRIBE`'s receipt) do not.
#[test]
fn a_send_receipt_waits_until_kafka_has_the_message() {
    let engine = Engine::start(&[
        "--shards",
        "1",
        "--kafka-brokers",
        "127.0.0.1:1",
        "--kafka-topic",
        &topic("receipt"),
    ]);
    let mut client = Client::raw(engine.port());
    client.subscribe("sub-0", "/sub/chat/room");
    client.chat_asking_receipt("room", "kept?");
    client.send("SUBSCRIBE\nid:sub-1\ndestination:/sub/chat/other\nreceipt:r-2\n\n\0");
    let mut frames = [client.frame(), client.frame()];
    frames.sort();
    assert!(
        frames[0].starts_with("MESSAGE\n") && frames[0].contains("kept?"),
        "{frames:?}"
    );
    assert_eq!(header(&frames[1], "receipt-id").as_deref(), Some("r-2"), "{frames:?}");
    client.send("DISCONNECT\nreceipt:bye\n\n\0");
    client
        .ws
        .get_mut()
        .set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    let until = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < until {
        match client.ws.read() {
            Ok(tungstenite::Message::Text(t)) => {
                panic!("nothing may come before Kafka has the message: {t}");
            }
            Ok(other) => panic!("unexpected {other:?}"),
            Err(tungstenite::Error::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("{e}"),
        }
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
    let early = on_a.chat_with_receipt("r", "before");
    assert_eq!(on_a.chat_messages(early, 1), ["before"]);
    assert_eq!(messages(&mut on_b, 1), ["before"]);

    drop(on_b);
    drop(b);
    let early = on_a.chat_with_receipt("r", "while-b-down");
    assert_eq!(on_a.chat_messages(early, 1), ["while-b-down"]);

    let b = node(&brokers, &topic, "b", &[]);
    let mut on_b = Client::raw(b.port());
    on_b.subscribe("sub-0", "/sub/chat/r");
    let early = on_a.chat_with_receipt("r", "after");
    assert_eq!(on_a.chat_messages(early, 1), ["after"]);
    assert_eq!(messages(&mut on_b, 1), ["after"]);
}

/// During a broker outage the receipts of what is published wait; once the broker is
/// back every message arrives once, in order, and every receipt comes, in order.
#[test]
fn a_broker_restart_loses_nothing_for_connected_clients() {
    let Some(brokers) = brokers() else { return };
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
    publisher.chat_with_receipt("o", "m0");
    assert_eq!(messages(&mut reader, 1), ["m0"]);

    let restart = RestartGuard;
    assert!(kafka_sh(&["stop"]), "kafka.sh stop");
    for i in 1..=20 {
        publisher.chat_asking_receipt("o", &format!("m{i}"));
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(restart);
    for i in 21..=30 {
        publisher.chat_asking_receipt("o", &format!("m{i}"));
    }
    for client in [&mut publisher, &mut reader] {
        client
            .ws
            .get_mut()
            .set_read_timeout(Some(Duration::from_secs(60)))
            .expect("timeout");
    }
    let expected: Vec<String> = (1..=30).map(|i| format!("m{i}")).collect();
    let receipts: Vec<String> = (0..30)
        .map(|_| header(&publisher.frame(), "receipt-id").unwrap_or_default())
        .collect();
    assert_eq!(receipts, expected);
    assert_eq!(messages(&mut reader, 30), expected);
}
