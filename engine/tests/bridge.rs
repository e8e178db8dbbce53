//! The Kafka bridge against a real broker: two bridges ("nodes" a and b, two shards
//! each) on a fresh topic per test, with a glommio executor playing the shards.
//!
//! The broker tests need `CHAT_KAFKA_BROKERS` (e.g. `127.0.0.1:9092`, as started by
//! `bash deploy/kafka/kafka.sh start`); the project's test command sets it. Without it
//! they print why and pass. The restart tests (about 15 s each) also stop and start that
//! broker with `kafka.sh`, holding this file's other tests off while they run; set
//! `CHAT_KAFKA_NO_RESTART=1` when other processes share the broker at the same time.

use std::collections::HashMap;
use std::sync::{Arc, RwLock, RwLockWriteGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use crossbeam_channel::{Receiver, Sender, TrySendError};
mod common;

use common::{kafka_sh, RestartGuard};
use engine::bridge::{Bridge, Config, Error, ShardPort};
use engine::interest::Interest;
use engine::message::Message;
use glommio::channels::shared_channel::SharedReceiver;
use glommio::{ExecutorJoinHandle, LocalExecutorBuilder, Placement};

#[test]
fn delivers_to_interested_shards_of_every_node_once() {
    let Some(brokers) = brokers("delivers_to_interested_shards_of_every_node_once") else {
        return;
    };
    let _shared = BROKER.read().unwrap_or_else(|e| e.into_inner());
    let topic = unique_topic("deliver");
    let (a, a_ports) = Node::start(&brokers, &topic, "a");
    let (b, b_ports) = Node::start(&brokers, &topic, "b");
    a.interest.add(1, b"/sub/chat/room1");
    b.interest.add(0, b"/sub/chat/room1");
    b.interest.add(1, b"/sub/chat/room1");
    let shards = Shards::connect(vec![a_ports, b_ports]);

    // JSON with escapes and non-ASCII text: the value must come back byte for byte.
    let values: Vec<Bytes> = (0..3)
        .map(|i| {
            Bytes::from(format!(
                r#"{{"channel":"room1","sender":"zoë","message":"hi \"{i}\" ✓\n","time":"2024-01-01T00:00:0{i}"}}"#
            ))
        })
        .collect();
    a.send(0, b"nobody", br#"{"channel":"nobody"}"#, b"m-x");
    for (i, value) in values.iter().enumerate() {
        a.send(0, b"room1", value, format!("m-{i}").as_bytes());
    }

    // Each channel's owner shard gets its records too (it keeps the history): `nobody`
    // on each node, and `room1` on node a when shard 0 owns it.
    let owner = a.interest.owner(b"/sub/chat/room1");
    let owned_extra = if owner == 1 { 0 } else { 3 };
    let total = 9 + owned_extra + 2;
    let got = shards.wait_for(total, Duration::from_secs(20));
    let extra = shards.quiet(Duration::from_millis(700));
    assert!(extra.is_empty(), "unexpected deliveries: {extra:?}");
    assert_eq!(got.len(), total, "got {got:?}");
    let nobody = |d: &&(usize, usize, Arc<Message>)| d.2.channel().as_deref() == Some(&b"nobody"[..]);
    let owner_nobody = a.interest.owner(b"/sub/chat/nobody");
    assert!(
        got.iter().filter(nobody).all(|d| d.1 == owner_nobody),
        "only the owner gets `nobody`"
    );
    let got: Vec<_> = got
        .into_iter()
        .filter(|d| d.2.channel().as_deref() != Some(&b"nobody"[..]) && !(d.0 == 0 && d.1 == 0))
        .collect();
    for (node, shard) in [(0, 1), (1, 0), (1, 1)] {
        let mine: Vec<&Arc<Message>> = got
            .iter()
            .filter(|d| (d.0, d.1) == (node, shard))
            .map(|d| &d.2)
            .collect();
        assert_eq!(mine.len(), 3, "node {node} shard {shard}: {mine:?}");
        for (i, record) in mine.iter().enumerate() {
            assert_eq!(&record.destination[..], b"/sub/chat/room1");
            assert_eq!(record.body, values[i], "value changed in transit");
            assert_eq!(record.id, Bytes::from(format!("m-{i}")));
            let (position, first) = (
                record.position.expect("positioned"),
                mine[0].position.expect("positioned"),
            );
            assert_eq!(position.stream, first.stream, "one channel, one partition");
            if i > 0 {
                assert!(Some(position) > mine[i - 1].position, "offsets go up");
            }
        }
    }

    let (a_stats, b_stats) = (a.bridge.stats(), b.bridge.stats());
    wait_until(Duration::from_secs(10), || a_stats.produced() == 4);
    assert_eq!(a_stats.produce_errors(), 0);
    assert!(b_stats.consumed() >= 4);
    assert_eq!(b_stats.routed(), 7);
    assert!(a_stats.healthy() && b_stats.healthy());
    let mut text = String::new();
    a_stats.render_prometheus("a", &mut text);
    assert!(text.contains("chat_kafka_produced_total{node=\"a\"} 4\n"), "{text}");
    assert!(
        text.contains("# TYPE chat_kafka_connected gauge\nchat_kafka_connected{node=\"a\"} 1\n"),
        "{text}"
    );
    let mut text = String::new();
    b_stats.render_prometheus("b", &mut text);
    assert!(
        !text.contains("chat_kafka_lag_seconds_count{node=\"b\"} 0\n"),
        "records read are timed: {text}"
    );
    a.shutdown();
    b.shutdown();
    shards.join();
}

#[test]
fn keeps_per_channel_order_for_10k_records_over_20_channels() {
    let Some(brokers) = brokers("keeps_per_channel_order_for_10k_records_over_20_channels") else {
        return;
    };
    let _shared = BROKER.read().unwrap_or_else(|e| e.into_inner());
    let topic = unique_topic("order");
    let (a, a_ports) = Node::start(&brokers, &topic, "a");
    let (b, b_ports) = Node::start(&brokers, &topic, "b");
    const CHANNELS: usize = 20;
    const RECORDS: usize = 10_000;
    for c in 0..CHANNELS {
        let destination = format!("/sub/chat/ch{c}");
        b.interest.add(0, destination.as_bytes());
        if c % 2 == 0 {
            b.interest.add(1, destination.as_bytes());
        }
        if c < 5 {
            a.interest.add(1, destination.as_bytes());
        }
    }
    // A shard gets a channel's records when it has interest in it or owns it.
    let mut expected = 0;
    for c in 0..CHANNELS {
        let destination = format!("/sub/chat/ch{c}");
        for node in [&a, &b] {
            let owner = 1 << node.interest.owner(destination.as_bytes());
            let mask = node.interest.shards_for(destination.as_bytes()) | owner;
            expected += mask.count_ones() as usize * (RECORDS / CHANNELS);
        }
    }
    let shards = Shards::connect(vec![a_ports, b_ports]);

    // Channel c is published by shard c % 2 of node a, so its order is its send order.
    for i in 0..RECORDS {
        let c = i % CHANNELS;
        let seq = i / CHANNELS;
        let value = format!(r#"{{"channel":"ch{c}","sender":"s","message":"{seq}","time":"t"}}"#);
        a.send(
            c % 2,
            format!("ch{c}").as_bytes(),
            value.as_bytes(),
            format!("{c}-{seq}").as_bytes(),
        );
    }
    let got = shards.wait_for(expected, Duration::from_secs(60));
    assert_eq!(got.len(), expected);
    assert!(
        shards.quiet(Duration::from_millis(500)).is_empty(),
        "duplicates arrived"
    );

    let mut next: HashMap<(usize, usize, Bytes), usize> = HashMap::new();
    for (node, shard, record) in &got {
        let name = record.channel().unwrap_or_default();
        let seq = next.entry((*node, *shard, name.clone())).or_insert(0);
        let channel = std::str::from_utf8(&name).unwrap_or("?");
        let want = format!(r#"{{"channel":"{channel}","sender":"s","message":"{seq}","time":"t"}}"#);
        assert_eq!(
            record.body,
            Bytes::from(want),
            "node {node} shard {shard}: out of order, lost or duplicated"
        );
        *seq += 1;
    }
    assert!(next.values().all(|n| *n == RECORDS / CHANNELS));
    a.shutdown();
    b.shutdown();
    shards.join();
}

#[test]
fn refuses_a_bad_config_before_touching_kafka() {
    let interest = Arc::new(Interest::new(2));
    let cfg = Config {
        acks: "2".into(),
        brokers: "127.0.0.1:1".into(),
        ..Config::default()
    };
    assert!(matches!(
        Bridge::start(&cfg, 2, Arc::clone(&interest)),
        Err(Error::Config(_))
    ));
    let cfg = Config {
        partitions: 0,
        ..Config::default()
    };
    assert!(matches!(
        Bridge::start(&cfg, 2, Arc::clone(&interest)),
        Err(Error::Config(_))
    ));
    assert!(matches!(
        Bridge::start(&Config::default(), 0, interest),
        Err(Error::Config(_))
    ));
}

#[test]
fn starts_degraded_without_a_reachable_broker() {
    // Port 1 on loopback: nothing listens, connections are refused at once.
    let cfg = Config {
        brokers: "127.0.0.1:1".into(),
        topic: unique_topic("nobroker"),
        ..Config::default()
    };
    let started = Instant::now();
    let (bridge, ports) = match Bridge::start(&cfg, 1, Arc::new(Interest::new(1))) {
        Ok(started) => started,
        Err(error) => panic!("a bridge must start without a broker: {error}"),
    };
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    let stats = bridge.stats();
    assert!(!stats.connected() && !stats.healthy());
    let record = Message::new(Bytes::from_static(b"/sub/chat/r"), Bytes::from_static(b"queued"));
    assert!(ports[0].outbound.try_send(record).is_ok(), "publishes are queued");
    let stopping = Instant::now();
    bridge.shutdown();
    assert!(
        stopping.elapsed() < Duration::from_secs(12),
        "shutdown took {:?}",
        stopping.elapsed()
    );
    assert_eq!(stats.produce_errors(), 1, "the undelivered record is counted");
}

/// Stops the broker, starts a node (degraded, at once), publishes, starts the broker:
/// the record reaches the interested shards of this node and of a node started later.
#[test]
fn starts_degraded_and_catches_up_when_the_broker_returns() {
    let Some((brokers, _exclusive)) = restartable_broker("starts_degraded_and_catches_up_when_the_broker_returns")
    else {
        return;
    };
    let topic = unique_topic("degraded");
    let restart = RestartGuard;
    assert!(kafka_sh(&["stop"]), "kafka.sh stop failed");
    let started = Instant::now();
    let (a, a_ports) = Node::start(&brokers, &topic, "a");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "start took {:?}",
        started.elapsed()
    );
    let a_stats = a.bridge.stats();
    assert!(!a_stats.connected(), "a degraded start must show in the stats");
    a.interest.add(1, b"/sub/chat/r");
    let shards = Shards::connect(vec![a_ports]);
    a.send(0, b"r", b"during the outage", b"m-1");
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(a_stats.produced(), 0);
    drop(restart);

    let got = shards.wait_for_on((0, 1), 1, Duration::from_secs(60));
    assert_eq!(got.len(), 1, "the record did not arrive");
    assert_eq!(got[0].2.body, Bytes::from_static(b"during the outage"));
    // The record may arrive before the delivery report that counts it: wait for both.
    wait_until(Duration::from_secs(15), || {
        a_stats.connected() && a_stats.produced() == 1
    });
    assert_eq!(a_stats.produced(), 1);
    assert!(
        shards
            .quiet(Duration::from_millis(500))
            .iter()
            .all(|d| (d.0, d.1) != (0, 1)),
        "duplicates arrived"
    );
    a.shutdown();
    shards.join();
}

/// Stops the broker with `kafka.sh stop`, publishes during the outage, starts it
/// again: everything published arrives once, in order, and the stats show the outage.
#[test]
fn survives_a_broker_restart() {
    let Some((brokers, _exclusive)) = restartable_broker("survives_a_broker_restart") else {
        return;
    };
    let topic = unique_topic("restart");
    let (a, a_ports) = Node::start(&brokers, &topic, "a");
    let (b, b_ports) = Node::start(&brokers, &topic, "b");
    let (c, c_ports) = Node::start(&brokers, &topic, "c");
    b.interest.add(0, b"/sub/chat/r");
    let shards = Shards::connect(vec![a_ports, b_ports, c_ports]);
    let publish = |range: std::ops::Range<usize>| {
        for i in range {
            a.send(0, b"r", format!("{i}").as_bytes(), format!("{i}").as_bytes());
        }
    };
    publish(0..50);
    // Each node's owner shard of the channel gets the records too (for its history):
    // only node b's shard 0 is looked at here.
    assert_eq!(shards.wait_for_on((1, 0), 50, Duration::from_secs(20)).len(), 50);

    let restart = RestartGuard;
    assert!(kafka_sh(&["stop"]), "kafka.sh stop failed");
    let (a_stats, b_stats) = (a.bridge.stats(), b.bridge.stats());
    wait_until(Duration::from_secs(15), || !a_stats.connected() && !b_stats.connected());
    assert!(
        !a_stats.healthy() && !b_stats.healthy(),
        "an outage must show in the stats"
    );
    publish(50..150);
    std::thread::sleep(Duration::from_secs(1));
    assert!(a_stats.produced() < 150);

    // Shutting down while Kafka is away waits a bounded time and counts the loss.
    c.send(1, b"r", b"lost", b"lost");
    let c_stats = c.bridge.stats();
    let stopping = Instant::now();
    c.shutdown();
    assert!(
        stopping.elapsed() < Duration::from_secs(12),
        "shutdown took {:?}",
        stopping.elapsed()
    );
    assert_eq!(c_stats.produce_errors(), 1);
    assert!(!c_stats.healthy());
    drop(restart);

    let got = shards.wait_for_on((1, 0), 100, Duration::from_secs(60));
    assert!(
        shards
            .quiet(Duration::from_millis(500))
            .iter()
            .all(|d| (d.0, d.1) != (1, 0)),
        "duplicates arrived"
    );
    let values: Vec<Bytes> = got.iter().map(|d| d.2.body.clone()).collect();
    let want: Vec<Bytes> = (50..150).map(|i| Bytes::from(format!("{i}"))).collect();
    assert_eq!(values, want);
    wait_until(Duration::from_secs(15), || a_stats.connected() && b_stats.connected());
    assert_eq!(a_stats.produced(), 150);
    a.shutdown();
    b.shutdown();
    shards.join();
}

/// Broker tests share the broker; the restart test needs it alone.
static BROKER: RwLock<()> = RwLock::new(());

fn brokers(test: &str) -> Option<String> {
    match std::env::var("CHAT_KAFKA_BROKERS") {
        Ok(brokers) if !brokers.is_empty() => Some(brokers),
        _ => {
            eprintln!(
                "skipping {test}: CHAT_KAFKA_BROKERS is unset (start a broker with \
                 `bash deploy/kafka/kafka.sh start` and set it to 127.0.0.1:9092)"
            );
            None
        }
    }
}

/// The broker and sole use of it, when this test may stop and start it with `kafka.sh`.
fn restartable_broker(test: &str) -> Option<(String, RwLockWriteGuard<'static, ()>)> {
    let brokers = brokers(test)?;
    if std::env::var_os("CHAT_KAFKA_NO_RESTART").is_some() {
        eprintln!("skipping {test}: CHAT_KAFKA_NO_RESTART is set");
        return None;
    }
    // Taken before the status check: another restart test may have the broker stopped.
    let exclusive = BROKER.write().unwrap_or_else(|e| e.into_inner());
    let port = std::env::var("KAFKA_PORT").unwrap_or_else(|_| "9092".into());
    if brokers != format!("127.0.0.1:{port}") || !kafka_sh(&["status"]) {
        eprintln!("skipping {test}: CHAT_KAFKA_BROKERS is not the kafka.sh broker");
        return None;
    }
    Some((brokers, exclusive))
}

fn unique_topic(name: &str) -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("bridge-test-{name}-{}-{nanos}", std::process::id())
}

fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < limit, "condition not met within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One node's bridge and what its shards would hold.
struct Node {
    bridge: Bridge,
    interest: Arc<Interest>,
    outbound: Vec<Sender<Message>>,
}

impl Node {
    const SHARDS: usize = 2;

    fn start(brokers: &str, topic: &str, node_id: &str) -> (Node, Vec<SharedReceiver<Vec<Arc<Message>>>>) {
        let cfg = Config {
            brokers: brokers.to_owned(),
            topic: topic.to_owned(),
            partitions: 4,
            node_id: node_id.to_owned(),
            ..Config::default()
        };
        let interest = Arc::new(Interest::new(Self::SHARDS));
        let (bridge, ports) = match Bridge::start(&cfg, Self::SHARDS, Arc::clone(&interest)) {
            Ok(started) => started,
            Err(error) => panic!("bridge {node_id} did not start: {error}"),
        };
        let (outbound, inbound) = ports
            .into_iter()
            .map(|ShardPort { outbound, inbound, .. }| (outbound, inbound))
            .unzip();
        (
            Node {
                bridge,
                interest,
                outbound,
            },
            inbound,
        )
    }

    /// Publishes like a shard: `try_send`, waiting a little while the queue is full.
    fn send(&self, shard: usize, channel: &[u8], value: &[u8], id: &[u8]) {
        let mut destination = b"/sub/chat/".to_vec();
        destination.extend_from_slice(channel);
        let mut message = Message::new(Bytes::from(destination), Bytes::copy_from_slice(value));
        message.id = Bytes::copy_from_slice(id);
        loop {
            match self.outbound[shard].try_send(message) {
                Ok(()) => return,
                Err(TrySendError::Full(back)) => {
                    message = back;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(TrySendError::Disconnected(_)) => panic!("bridge dropped its outbound queue"),
            }
        }
    }

    fn shutdown(self) {
        self.bridge.shutdown();
    }
}

/// The shards of every node, played by one glommio executor that forwards each
/// delivery, tagged `(node, shard)`, to the test thread.
struct Shards {
    deliveries: Receiver<(usize, usize, Arc<Message>)>,
    executor: ExecutorJoinHandle<()>,
}

impl Shards {
    fn connect(nodes: Vec<Vec<SharedReceiver<Vec<Arc<Message>>>>>) -> Shards {
        let (tx, deliveries) = crossbeam_channel::unbounded();
        let executor = LocalExecutorBuilder::new(Placement::Unbound)
            .name("test-shards")
            .io_memory(64 * 1024)
            .ring_depth(32)
            .spawn(move || async move {
                let mut tasks = Vec::new();
                for (node, receivers) in nodes.into_iter().enumerate() {
                    for (shard, receiver) in receivers.into_iter().enumerate() {
                        let tx = tx.clone();
                        tasks.push(glommio::spawn_local(async move {
                            let receiver = receiver.connect().await;
                            while let Some(batch) = receiver.recv().await {
                                for record in batch {
                                    let _ = tx.send((node, shard, record));
                                }
                            }
                        }));
                    }
                }
                for task in tasks {
                    task.await;
                }
            })
            .expect("test executor starts");
        Shards { deliveries, executor }
    }

    /// Collects `count` deliveries, or what came within `limit`.
    fn wait_for(&self, count: usize, limit: Duration) -> Vec<(usize, usize, Arc<Message>)> {
        let deadline = Instant::now() + limit;
        let mut got = Vec::with_capacity(count.min(1 << 16));
        while got.len() < count {
            match self.deliveries.recv_deadline(deadline) {
                Ok(delivery) => got.push(delivery),
                Err(_) => break,
            }
        }
        got
    }

    /// Collects `count` deliveries to one (node, shard), dropping the others.
    fn wait_for_on(&self, at: (usize, usize), count: usize, limit: Duration) -> Vec<(usize, usize, Arc<Message>)> {
        let deadline = Instant::now() + limit;
        let mut got = Vec::with_capacity(count);
        while got.len() < count {
            match self.deliveries.recv_deadline(deadline) {
                Ok(delivery) if (delivery.0, delivery.1) == at => got.push(delivery),
                Ok(_) => {}
                Err(_) => break,
            }
        }
        got
    }

    /// Whatever arrives within `wait`.
    fn quiet(&self, wait: Duration) -> Vec<(usize, usize, Arc<Message>)> {
        self.wait_for(usize::MAX, wait)
    }

    /// Ends once every bridge feeding it has shut down.
    fn join(self) {
        self.executor.join().expect("test executor ends cleanly");
    }
}
