//! Cluster mode through a SASL/SCRAM listener: two engine processes given the Kafka
//! security settings as `--kafka-property` flags exchange a chat message, and a node
//! with a wrong password starts degraded, says so on `/healthz` and delivers nothing
//! across. Neither node may write the password to its log.
//!
//! Needs `CHAT_KAFKA_SASL_BROKERS`: the SASL_PLAINTEXT listener of
//! `bash deploy/kafka/kafka.sh start` (127.0.0.1:9094, user chat-test, password
//! chat-test-secret; `CHAT_KAFKA_SASL_USER` and `CHAT_KAFKA_SASL_PASSWORD` name others).
//! Without it the tests skip, unless `CHAT_REQUIRE_EXTERNAL=1` (the test command sets both).

mod common;

use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{Client, Engine};

#[test]
fn scram_nodes_exchange_a_message() {
    let Some(sasl) = Sasl::from_env() else { return };
    let topic = topic("exchange");
    let a = sasl.node(&topic, "a", &sasl.password);
    let b = sasl.node(&topic, "b", &sasl.password);
    for node in [&a, &b] {
        wait_for_health(node, "kafka: up");
    }
    let mut on_a = Client::raw(a.port());
    on_a.subscribe("sub-0", "/sub/chat/room");
    let mut on_b = Client::raw(b.port());
    on_b.subscribe("sub-0", "/sub/chat/room");

    let early = on_a.chat_with_receipt("room", "hello over scram");
    assert_eq!(
        on_a.chat_messages(early, 1),
        ["hello over scram"],
        "the publisher's own node"
    );
    assert_eq!(message(&mut on_b), "hello over scram", "the other node");
    let early = on_b.chat_with_receipt("room", "and back");
    assert_eq!(message(&mut on_a), "and back");
    assert_eq!(on_b.chat_messages(early, 1), ["and back"]);
    for node in [&a, &b] {
        sasl.assert_password_not_logged(node, &sasl.password);
    }
}

#[test]
fn a_wrong_password_starts_degraded_and_delivers_only_locally() {
    let Some(sasl) = Sasl::from_env() else { return };
    let topic = topic("wrong");
    let wrong = "not-the-password";
    let good = sasl.node(&topic, "good", &sasl.password);
    let started = Instant::now();
    let bad = sasl.node(&topic, "bad", wrong);
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "a refused login must not hold the start up: {:?}",
        started.elapsed()
    );
    wait_for_health(&good, "kafka: up");
    wait_for_health(&bad, "kafka: down");
    wait_for_log(&bad, "authentication");

    let mut on_good = Client::raw(good.port());
    on_good.subscribe("sub-0", "/sub/chat/room");
    let mut on_bad = Client::raw(bad.port());
    on_bad.subscribe("sub-0", "/sub/chat/room");

    // The broker works for the good node, so silence on the bad one is the login's doing.
    let early = on_good.chat_with_receipt("room", "from good");
    assert_eq!(on_good.chat_messages(early, 1), ["from good"]);
    assert_silent(&mut on_bad, "the node that failed to log in");
    // The bad node buffers its publish and, in its outage, delivers it to its own
    // subscribers; it cannot reach the other node, and its RECEIPT waits for Kafka.
    on_bad.chat_asking_receipt("room", "from bad");
    assert_eq!(message(&mut on_bad), "from bad");
    assert_silent(&mut on_good, "the node that logged in");
    assert_silent(&mut on_bad, "the node that failed to log in (no receipt either)");
    assert_eq!(
        bad.get("/healthz").map(|(_, body)| body).unwrap_or_default(),
        "ok\nkafka: down\n"
    );
    sasl.assert_password_not_logged(&bad, wrong);
    sasl.assert_password_not_logged(&good, &sasl.password);
}

/// Where the SASL listener is and whom to log in as.
struct Sasl {
    brokers: String,
    user: String,
    password: String,
}

impl Sasl {
    fn from_env() -> Option<Sasl> {
        let brokers = match std::env::var("CHAT_KAFKA_SASL_BROKERS") {
            Ok(brokers) if !brokers.is_empty() => brokers,
            _ => {
                common::skip_unless_required(
                    "CHAT_KAFKA_SASL_BROKERS is unset (bash deploy/kafka/kafka.sh start; then 127.0.0.1:9094)",
                );
                return None;
            }
        };
        // A closed port would only show as a degraded node and a timeout: say it plainly.
        let first = brokers.split(',').next().unwrap_or_default();
        let reachable = first
            .to_socket_addrs()
            .ok()
            .and_then(|mut addrs| addrs.next())
            .is_some_and(|addr| TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok());
        assert!(
            reachable,
            "nothing accepts connections at CHAT_KAFKA_SASL_BROKERS={brokers} (is the broker \
             kafka.sh's, with its SASL listener?)"
        );
        let var = |name, default: &str| std::env::var(name).unwrap_or_else(|_| default.to_owned());
        Some(Sasl {
            brokers,
            user: var("CHAT_KAFKA_SASL_USER", "chat-test"),
            password: var("CHAT_KAFKA_SASL_PASSWORD", "chat-test-secret"),
        })
    }

    /// An engine node logging in with SCRAM-SHA-256 as the test user with `password`.
    fn node(&self, topic: &str, id: &str, password: &str) -> Engine {
        let user = format!("sasl.username={}", self.user);
        let password = format!("sasl.password={password}");
        Engine::start(&[
            "--shards",
            "1",
            "--cpus",
            "0",
            "--node-id",
            id,
            "--kafka-brokers",
            &self.brokers,
            "--kafka-topic",
            topic,
            "--kafka-partitions",
            "2",
            "--kafka-property",
            "security.protocol=SASL_PLAINTEXT",
            "--kafka-property",
            "sasl.mechanism=SCRAM-SHA-256",
            "--kafka-property",
            &user,
            "--kafka-property",
            &password,
        ])
    }

    fn assert_password_not_logged(&self, node: &Engine, password: &str) {
        let log = std::fs::read_to_string(node.log_path()).unwrap_or_default();
        assert!(
            !log.contains(password),
            "the password is in {}",
            node.log_path().display()
        );
    }
}

fn topic(name: &str) -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("sasl-test-{name}-{}-{nanos}", std::process::id())
}

/// Waits until `/healthz` answers 200 with `state` in its body.
fn wait_for_health(node: &Engine, state: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let health = node.get("/healthz");
        if matches!(&health, Some((200, body)) if body.contains(state)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "/healthz answered {health:?}, not `{state}`; log:\n{}",
            node.log_tail(30)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until the node's log mentions `word` (any case).
fn wait_for_log(node: &Engine, word: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !std::fs::read_to_string(node.log_path())
        .unwrap_or_default()
        .to_lowercase()
        .contains(word)
    {
        assert!(
            Instant::now() < deadline,
            "the log never mentions {word}:\n{}",
            node.log_tail(30)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The `message` field of the next chat MESSAGE (the client's read timeout: 5 s).
fn message(client: &mut Client) -> String {
    client.chat_messages(Vec::new(), 1).remove(0)
}

/// Nothing but heart-beats arrives within two seconds.
fn assert_silent(client: &mut Client, who: &str) {
    let deadline = Instant::now() + SILENCE;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        client
            .ws
            .get_mut()
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .expect("timeout");
        match client.ws.read() {
            Ok(tungstenite::Message::Text(t)) if t.as_str() == "\n" => continue,
            Ok(other) => panic!("{who} got {other:?}"),
            Err(tungstenite::Error::Io(e))
                if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) =>
            {
                break
            }
            Err(e) => panic!("{who}: {e}"),
        }
    }
    client
        .ws
        .get_mut()
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
}

/// How long a node must stay silent to count as delivering nothing.
const SILENCE: Duration = Duration::from_secs(2);
