//! The HTTP API over real sockets: `POST /api/publish` reaches STOMP subscribers on every
//! shard as a client's `SEND` does, wrong keys and bad bodies are refused with the right
//! status, `GET /api/channels` counts subscribers over the node's shards, and without
//! `--api-key-file` the API does not exist.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::{body, clients_on_both_shards, header, Client, Engine};

const KEY: &str = "test-key-0123456789";

/// A key file holding a comment, an old key and [`KEY`].
fn key_file(name: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("api-keys-{name}-{}", std::process::id()));
    std::fs::write(&path, format!("# keys of the backend\nold-key\n{KEY}\n")).expect("the target tmp dir is writable");
    path
}

fn engine_with_api(name: &str) -> Engine {
    let keys = key_file(name);
    let keys = keys.to_str().expect("a UTF-8 path");
    Engine::start(&["--shards", "2", "--cpus", "0", "--api-key-file", keys])
}

/// One request with `Connection: close`; the status and the body.
fn request(engine: &Engine, method: &str, path: &str, authorization: Option<&str>, body: &str) -> (u16, String) {
    let auth = authorization.map_or(String::new(), |a| format!("Authorization: {a}\r\n"));
    let answer = engine.http(&format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    ));
    let status = answer.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_string();
    (status, body)
}

fn publish(engine: &Engine, body: &str) -> (u16, String) {
    request(engine, "POST", "/api/publish", Some(&format!("Bearer {KEY}")), body)
}

#[test]
fn publish_reaches_subscribers_on_every_shard_like_a_send() {
    let engine = engine_with_api("publish");
    let (mut a, mut b) = clients_on_both_shards(&engine);
    a.subscribe("sub-0", "/sub/chat/notices");
    b.subscribe("sub-1", "/sub/chat/notices");
    let (status, answer) = publish(
        &engine,
        r#"{"channel":"notices","sender":"system","message":"maintenance at 22:00","image":"i.png"}"#,
    );
    assert_eq!(status, 202, "{answer}");
    let answer: serde_json::Value = serde_json::from_str(&answer).expect("a JSON answer");
    assert_eq!(answer["accepted"], true);
    assert_eq!(answer["channel"], "notices");
    let mut offsets = Vec::new();
    for (client, sub) in [(&mut a, "sub-0"), (&mut b, "sub-1")] {
        let frame = client.frame();
        assert!(frame.starts_with("MESSAGE\n"), "{frame}");
        assert_eq!(header(&frame, "subscription").as_deref(), Some(sub));
        assert_eq!(header(&frame, "destination").as_deref(), Some("/sub/chat/notices"));
        let json: serde_json::Value = serde_json::from_str(body(&frame)).expect("json body");
        assert_eq!(json["sender"], "system");
        assert_eq!(json["message"], "maintenance at 22:00");
        assert_eq!(json["image"], "i.png", "extra fields are kept");
        assert!(json["time"].is_string(), "the server adds a time");
        offsets.push(header(&frame, "x-offset").expect("a position"));
    }
    assert_eq!(offsets[0], offsets[1], "one position on every shard");
    // Kept in the channel's history, as a SEND is.
    let mut late = Client::raw(engine.port());
    late.send("SUBSCRIBE\nid:h\ndestination:/sub/chat/notices\nx-history:1\n\n\0");
    let first = late.frame();
    assert!(body(&first).contains("maintenance at 22:00"), "{first}");
}

#[test]
fn wrong_or_missing_keys_are_refused() {
    let engine = engine_with_api("keys");
    let mut a = Client::raw(engine.port());
    a.subscribe("s", "/sub/chat/room");
    let chat = r#"{"channel":"room","sender":"bot","message":"refused"}"#;
    for auth in [
        None,
        Some("Bearer wrong"),
        Some("Bearer test-key-012345678"),
        Some(&format!("Basic {KEY}")[..]),
        Some(KEY),
    ] {
        let (status, answer) = request(&engine, "POST", "/api/publish", auth, chat);
        assert_eq!(status, 401, "{auth:?}: {answer}");
        assert!(answer.contains("API key"), "{answer}");
        let (status, _) = request(&engine, "GET", "/api/channels", auth, "");
        assert_eq!(status, 401, "{auth:?}");
    }
    // Either key of the file works; nothing refused was delivered before it.
    let (status, _) = request(
        &engine,
        "POST",
        "/api/publish",
        Some("Bearer old-key"),
        r#"{"channel":"room","message":"accepted"}"#,
    );
    assert_eq!(status, 202);
    let frame = a.frame();
    assert!(body(&frame).contains("accepted"), "{frame}");
    let metrics = engine.http("GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert!(metrics.contains("kind=\"api_unauthorized\""), "{metrics}");
}

#[test]
fn bad_requests_name_the_problem() {
    let engine = engine_with_api("bad");
    for (bad, expected) in [
        ("not json", "not a JSON object"),
        ("[1,2]", "not a JSON object"),
        (r#"{"sender":"bot","message":"x"}"#, "channel"),
        (r#"{"channel":"","message":"x"}"#, "channel"),
        (r#"{"channel":7}"#, "channel"),
    ] {
        let (status, answer) = publish(&engine, bad);
        assert_eq!(status, 400, "{bad}: {answer}");
        let answer: serde_json::Value = serde_json::from_str(&answer).expect("a JSON answer");
        assert!(
            answer["error"].as_str().is_some_and(|e| e.contains(expected)),
            "{answer}"
        );
    }
    let (status, answer) = request(&engine, "GET", "/api/publish", Some(&format!("Bearer {KEY}")), "");
    assert_eq!(status, 405, "{answer}");
    let (status, _) = request(&engine, "POST", "/api/channels", Some(&format!("Bearer {KEY}")), "{}");
    assert_eq!(status, 405);
    let (status, _) = request(&engine, "GET", "/api/nothing", Some(&format!("Bearer {KEY}")), "");
    assert_eq!(status, 404);
    // Over --max-frame-bytes (1 MiB by default): refused from the head, body unread.
    let answer = engine.http(&format!(
        "POST /api/publish HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\nContent-Length: {}\r\n\r\n{{",
        2 << 20
    ));
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("frame limit"), "{answer}");
}

#[test]
fn channels_count_subscribers_over_all_shards() {
    let engine = engine_with_api("channels");
    let (mut a, mut b) = clients_on_both_shards(&engine);
    let mut c = Client::raw(engine.port());
    a.subscribe("1", "/sub/chat/lobby");
    b.subscribe("1", "/sub/chat/lobby");
    c.subscribe("1", "/sub/chat/lobby");
    b.subscribe("2", "/sub/chat/a \"quoted\" room");
    c.subscribe("2", "/sub/other");
    let channels = |engine: &Engine| {
        let (status, answer) = request(engine, "GET", "/api/channels", Some(&format!("Bearer {KEY}")), "");
        assert_eq!(status, 200, "{answer}");
        serde_json::from_str::<serde_json::Value>(&answer).expect("a JSON answer")
    };
    let listed = channels(&engine);
    assert_eq!(listed["node"], "node-0");
    assert_eq!(
        listed["channels"],
        serde_json::json!([
            {"channel": "a \"quoted\" room", "subscribers": 1},
            {"channel": "lobby", "subscribers": 3},
        ])
    );
    c.send("UNSUBSCRIBE\nid:1\nreceipt:u\n\n\0");
    assert!(c.frame().starts_with("RECEIPT"));
    b.send("UNSUBSCRIBE\nid:2\nreceipt:u\n\n\0");
    assert!(b.frame().starts_with("RECEIPT"));
    assert_eq!(
        channels(&engine)["channels"],
        serde_json::json!([{"channel": "lobby", "subscribers": 2}])
    );
}

#[test]
fn the_api_is_off_without_a_key_file() {
    let engine = Engine::start(&["--shards", "1"]);
    let (status, _) = publish(&engine, r#"{"channel":"x"}"#);
    assert_eq!(status, 404);
    let (status, _) = request(&engine, "GET", "/api/channels", Some(&format!("Bearer {KEY}")), "");
    assert_eq!(status, 404);
}

#[test]
fn an_unreadable_or_empty_key_file_stops_the_start() {
    let empty = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("api-keys-empty-{}", std::process::id()));
    std::fs::write(&empty, "# no key yet\n\n").expect("the target tmp dir is writable");
    for file in [empty, PathBuf::from("/nonexistent/api-keys")] {
        let output = Command::new(common::engine_bin())
            .args(["--listen", "127.0.0.1:0", "--shards", "1", "--api-key-file"])
            .arg(&file)
            .output()
            .expect("the engine runs");
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("api-key-file"), "{stderr}");
    }
}
