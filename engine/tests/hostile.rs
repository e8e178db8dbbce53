//! Hostile input over real sockets. Every case runs beside a bystander publisher and
//! subscriber on the same node, which must receive every one of their messages, in
//! order, whatever the attacker does; each breach must get the answer the RFC or STOMP
//! prescribes and be counted in `/metrics` by kind; and the engine's resident memory
//! must stay under `RSS_BOUND_KIB` throughout.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::{body, close_code, header, masked, upgraded, upgraded_with, Client, Engine};

/// The engine's resident memory may not pass this during the suite (README, "Limits").
const RSS_BOUND_KIB: u64 = 128 * 1024;

/// The engine of the suite: one shard, small limits so that every breach is quick.
fn engine() -> Engine {
    Engine::start(&[
        "--shards",
        "1",
        "--max-frame-bytes",
        "65536",
        "--max-outbound-bytes",
        "262144",
        "--handshake-timeout-ms",
        "1000",
        "--connect-timeout-ms",
        "1000",
        "--max-subscriptions",
        "50",
        "--max-connections-per-address",
        "8",
        "--trusted-proxies",
        "127.0.0.1",
        "--max-publish-rate",
        "1",
        "--publish-burst",
        "200",
    ])
}

/// A publisher and a subscriber minding their own business.
struct Bystanders {
    publisher: Client,
    subscriber: Client,
    sent: usize,
}

impl Bystanders {
    fn new(engine: &Engine) -> Self {
        let mut subscriber = Client::raw(engine.port());
        subscriber.subscribe("sub-0", "/sub/chat/calm");
        Bystanders {
            publisher: Client::raw(engine.port()),
            subscriber,
            sent: 0,
        }
    }

    /// One more message, which must arrive next, and the engine's memory in bounds.
    fn still_chatting(&mut self, engine: &Engine, after: &str) {
        self.sent += 1;
        let text = format!("m{} after {after}", self.sent);
        self.publisher.chat("calm", &text);
        let frame = self.subscriber.frame();
        assert!(frame.starts_with("MESSAGE\n"), "{after}: {frame}");
        assert!(body(&frame).contains(&text), "{after}: lost or reordered: {frame}");
        let rss = engine.rss_kib();
        assert!(rss < RSS_BOUND_KIB, "{after}: RSS {rss} KiB");
    }
}

/// Sends `request` and reads the answer's status line.
fn status_of(engine: &Engine, request: &[u8]) -> String {
    let answer = engine.raw(request);
    String::from_utf8_lossy(&answer)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// Writes `chunk` again and again without reading, until the server stops taking
/// bytes; returns how many it took. Fails past `limit` bytes.
fn flood_without_reading(mut s: TcpStream, chunk: &[u8], limit: usize) -> usize {
    s.set_write_timeout(Some(Duration::from_secs(20))).expect("timeout");
    let mut sent = 0;
    while s.write_all(chunk).is_ok() {
        sent += chunk.len();
        assert!(sent < limit, "the server took {sent} bytes without closing");
    }
    sent
}

#[test]
fn hostile_peers_are_answered_and_bounded_while_bystanders_chat() {
    let engine = engine();
    let mut calm = Bystanders::new(&engine);

    // Slow loris: one byte of head every 200 ms is cut at the total deadline (1 s).
    let mut s = TcpStream::connect(("127.0.0.1", engine.port())).expect("connect");
    s.set_read_timeout(Some(Duration::from_millis(200))).expect("timeout");
    let head = b"GET /ws HTTP/1.1\r\nHost: x\r\nX-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let mut answer = Vec::new();
    for byte in head {
        let _ = s.write_all(&[*byte]);
        let mut buf = [0u8; 256];
        if let Ok(n) = s.read(&mut buf) {
            answer.extend_from_slice(&buf[..n]);
            break;
        }
    }
    assert!(
        answer.starts_with(b"HTTP/1.1 408"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    calm.still_chatting(&engine, "slow loris");

    // Heads and bodies over their limits.
    let big_head = format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "b".repeat(20_000)
    );
    assert_eq!(
        status_of(&engine, big_head.as_bytes()),
        "HTTP/1.1 431 Request Header Fields Too Large"
    );
    let body = b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n0123456789";
    assert_eq!(status_of(&engine, body), "HTTP/1.1 413 Payload Too Large");
    let huge = b"POST /letters-chat-server/000/s1/xhr_send HTTP/1.1\r\nHost: x\r\nContent-Length: 18446744073709551615\r\n\r\n";
    assert!(
        status_of(&engine, huge).starts_with("HTTP/1.1 4"),
        "no overflow, no buffering"
    );
    calm.still_chatting(&engine, "oversized heads and bodies");

    // WebSocket frames over the limit, whole or in fragments: 1009.
    let mut s = upgraded(&engine);
    s.write_all(&[0x82, 0xff, 0, 0, 0, 0, 0, 0x10, 0, 0, 1, 2, 3, 4])
        .expect("write");
    assert_eq!(close_code(&mut s), 1009, "one frame of 1 MiB");
    let mut s = upgraded(&engine);
    let part = vec![b'x'; 40_000];
    let _ = s.write_all(&masked(0x01, &part)); // text, not final
    let _ = s.write_all(&masked(0x00, &part)); // continuation: 80,000 bytes in all
    assert_eq!(close_code(&mut s), 1009, "fragments adding up past the limit");
    calm.still_chatting(&engine, "oversized frames");

    // Over-long ids, destinations and header lines: an ERROR naming the limit.
    for (frame, message) in [
        (
            format!("SUBSCRIBE\nid:{}\ndestination:/sub/chat/x\n\n\0", "i".repeat(300)),
            "subscription id too long",
        ),
        (
            format!("SUBSCRIBE\nid:s\ndestination:/sub/chat/{}\n\n\0", "d".repeat(300)),
            "destination too long",
        ),
        (
            format!("SUBSCRIBE\nid:s\ndestination:/sub/chat/x\nx:{}\n\n\0", "h".repeat(9000)),
            "header line too long",
        ),
        (
            format!("UNSUBSCRIBE\nid:s\nreceipt:{}\n\n\0", "r".repeat(300)),
            "receipt id too long",
        ),
    ] {
        let mut c = Client::raw(engine.port());
        c.send(&frame);
        let error = c.frame();
        assert!(error.starts_with("ERROR\n"), "{error}");
        assert_eq!(header(&error, "message").as_deref(), Some(message));
    }
    calm.still_chatting(&engine, "over-long ids");

    // A SUBSCRIBE flood stops at --max-subscriptions.
    let mut c = Client::raw(engine.port());
    let mut flood = String::new();
    for i in 0..60 {
        flood.push_str(&format!("SUBSCRIBE\nid:s{i}\ndestination:/sub/chat/f{i}\n\n\0"));
    }
    c.send(&flood);
    let error = c.frame();
    assert_eq!(
        header(&error, "message").as_deref(),
        Some("too many subscriptions"),
        "{error}"
    );
    calm.still_chatting(&engine, "SUBSCRIBE flood");

    // Over the publish rate: an ERROR per refused SEND, the connection stays.
    let mut c = Client::raw(engine.port());
    let mut sends = String::new();
    for i in 0..300 {
        sends.push_str(&format!(
            "SEND\ndestination:/pub/chat\nreceipt:p{i}\ncontent-length:18\n\n{{\"channel\":\"rate\"}}\0"
        ));
    }
    c.send(&sends);
    let (mut receipts, mut errors) = (0, 0);
    for _ in 0..300 {
        let frame = c.frame();
        if frame.starts_with("RECEIPT") {
            receipts += 1;
        } else {
            assert!(
                header(&frame, "message").is_some_and(|m| m.starts_with("publish rate exceeded")),
                "{frame}"
            );
            errors += 1;
        }
    }
    assert!(receipts >= 200 && errors >= 1, "{receipts} receipts, {errors} errors");
    c.send("DISCONNECT\nreceipt:bye\n\n\0");
    assert_eq!(
        header(&c.frame(), "receipt-id").as_deref(),
        Some("bye"),
        "still connected"
    );
    calm.still_chatting(&engine, "publish-rate breach");

    // Readers that never read: PINGs, then RECEIPT requests, until dropped as slow
    // consumers (the replies count against --max-outbound-bytes).
    let pings: Vec<u8> = (0..1000).flat_map(|_| masked(0x89, &[b'p'; 125])).collect();
    let taken = flood_without_reading(upgraded(&engine), &pings, 256 << 20);
    calm.still_chatting(&engine, &format!("a PING flood ({taken} bytes)"));
    let mut s = upgraded(&engine);
    s.write_all(&masked(0x81, b"CONNECT\naccept-version:1.2\nheart-beat:0,0\n\n\0"))
        .expect("connect");
    let receipts: Vec<u8> = (0..1000)
        .flat_map(|i| {
            masked(
                0x81,
                format!("UNSUBSCRIBE\nid:none\nreceipt:{:0>200}\n\n\0", i).as_bytes(),
            )
        })
        .collect();
    let taken = flood_without_reading(s, &receipts, 256 << 20);
    calm.still_chatting(&engine, &format!("a RECEIPT flood ({taken} bytes)"));

    // A silent upgraded connection is closed when CONNECT does not come (1008).
    let mut s = upgraded(&engine);
    assert_eq!(close_code(&mut s), 1008);
    calm.still_chatting(&engine, "a silent connection");

    // Too many connections from one address (through the trusted proxy): 503.
    let via = "X-Forwarded-For: 203.0.113.9\r\n";
    let held: Vec<TcpStream> = (0..8).map(|_| upgraded_with(&engine, via)).collect();
    let refused = status_of(
        &engine,
        format!("GET /ws HTTP/1.1\r\nHost: x\r\n{via}Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").as_bytes(),
    );
    assert_eq!(refused, "HTTP/1.1 503 Service Unavailable");
    // Another address through the same proxy is not affected.
    drop(upgraded_with(&engine, "X-Forwarded-For: 203.0.113.10\r\n"));
    drop(held);
    calm.still_chatting(&engine, "too many connections per address");

    for kind in [
        "http_timeout",
        "http_too_large",
        "ws_too_big",
        "id_too_long",
        "destination_too_long",
        "header_line_too_long",
        "too_many_subscriptions",
        "publish_rate",
        "slow_consumer",
        "connect_timeout",
        "connections_address",
    ] {
        assert!(engine.errors(kind) >= 1, "{kind} not counted");
    }
    assert!(engine.errors("slow_consumer") >= 2, "both floods dropped");
    eprintln!("engine RSS at the end: {} KiB", engine.rss_kib());
}

#[test]
fn kafka_outage_keeps_health_200_and_a_full_buffer_refuses_sends_without_closing() {
    // Port 1: nothing listens, so the node starts degraded and buffers.
    let engine = Engine::start(&[
        "--shards",
        "1",
        "--kafka-brokers",
        "127.0.0.1:1",
        "--max-frame-bytes",
        "65536",
        "--kafka-buffer-mib",
        "1",
    ]);
    let (status, text) = engine.get("/healthz").expect("health");
    assert_eq!(
        (status, text.as_str()),
        (200, "ok\nkafka: down\n"),
        "documented in deploy/k8s"
    );
    let mut c = Client::raw(engine.port());
    let message = "x".repeat(60_000);
    // Receipts wait for Kafka, so none comes during the outage; the refusal does.
    for i in 0..40 {
        let body = serde_json::json!({"channel": "out", "message": message}).to_string();
        c.send(&format!(
            "SEND\ndestination:/pub/chat\nreceipt:k{i}\ncontent-length:{}\n\n{body}\0",
            body.len()
        ));
    }
    let refused = c.frame();
    assert!(refused.starts_with("ERROR"), "no receipt during the outage: {refused}");
    assert!(
        header(&refused, "message").is_some_and(|m| m.starts_with("cluster bus is full")),
        "{refused}"
    );
    assert!(
        header(&refused, "receipt-id").is_some_and(|id| id.starts_with('k')),
        "{refused}"
    );
    // The connection stays: the SENDs after the first refusal are refused too, and a
    // later frame is answered.
    c.send("UNSUBSCRIBE\nid:none\nreceipt:still-here\n\n\0");
    loop {
        let frame = c.frame();
        if frame.starts_with("RECEIPT") {
            assert_eq!(header(&frame, "receipt-id").as_deref(), Some("still-here"));
            break;
        }
        assert!(frame.starts_with("ERROR"), "{frame}");
    }
    assert!(engine.errors("kafka_backpressure") >= 1);
}
