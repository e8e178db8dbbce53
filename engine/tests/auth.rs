//! Access control over real sockets: JWT `CONNECT`s (good, forged, expired, missing),
//! a token expiring during the connection, channel permissions from the `chat` claim,
//! the sender taken from the token, `SEND` to `/sub/...` refused, and the Origin
//! allow-list on the WebSocket upgrade and SockJS `/info`.

mod common;

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use common::{body, header, Client, Engine, BASE_PATH};
use serde_json::{json, Value};
use tungstenite::Message;

const SECRET: &str = "auth test secret";

/// An engine checking HS256 tokens signed with [`SECRET`], plus `args`.
fn engine(args: &[&str]) -> Engine {
    let path = secret_file();
    let mut all = vec![
        "--shards",
        "1",
        "--auth-jwt-secret-file",
        path.to_str().expect("utf-8 path"),
    ];
    all.extend_from_slice(args);
    Engine::start(&all)
}

/// A file holding [`SECRET`], one per engine (tests run in parallel).
fn secret_file() -> PathBuf {
    static FILES: AtomicUsize = AtomicUsize::new(0);
    let n = FILES.fetch_add(1, Ordering::Relaxed);
    let name = format!("auth-test-secret-{}-{n}", std::process::id());
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::write(&path, format!("{SECRET}\n")).expect("write the secret");
    path
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// A token for `sub` expiring `secs` from now (negative: in the past), signed with `secret`.
fn token_with(secret: &str, sub: &str, secs: i64, chat: Option<Value>) -> String {
    let mut claims = json!({"sub": sub, "exp": unix_now().saturating_add_signed(secs)});
    if let Some(chat) = chat {
        claims["chat"] = chat;
    }
    let key = jsonwebtoken::EncodingKey::from_secret(secret.as_bytes());
    jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).expect("signs")
}

fn token(sub: &str, chat: Option<Value>) -> String {
    token_with(SECRET, sub, 3600, chat)
}

/// A raw STOMP WebSocket that sent `CONNECT` with the header line `headers` (or none);
/// the server's first frame.
fn connect(engine: &Engine, headers: &str) -> (Client, String) {
    let ws = Client::open(engine.port(), "/ws", Some("v12.stomp"));
    let mut client = Client {
        ws,
        sockjs: false,
        server: String::new(),
    };
    let headers = if headers.is_empty() {
        String::new()
    } else {
        format!("{headers}\n")
    };
    client.send(&format!("CONNECT\naccept-version:1.2\nheart-beat:0,0\n{headers}\n\0"));
    let first = client.frame();
    (client, first)
}

/// Asserts `frame` is an `ERROR` with `message`, and that the connection then closes.
fn assert_refused(client: &mut Client, frame: &str, message: &str) {
    assert!(frame.starts_with("ERROR\n"), "{frame}");
    // STOMP 1.2 escapes `:` in header values.
    let sent = header(frame, "message").map(|m| m.replace("\\c", ":"));
    assert_eq!(sent.as_deref(), Some(message), "{frame}");
    match client.ws.read() {
        Ok(Message::Close(_)) | Err(_) => {}
        Ok(other) => panic!("after the ERROR only the close, not {other:?}"),
    }
}

#[test]
fn a_good_token_connects_and_names_the_sender() {
    let engine = engine(&[]);
    let bearer = format!("Authorization:Bearer {}", token("alice@letters.test", None));
    let (mut alice, connected) = connect(&engine, &bearer);
    assert!(connected.starts_with("CONNECTED\n"), "{connected}");
    alice.subscribe("s", "/sub/chat/global");
    // The classic client can only put the token in `passcode`.
    let mut ws = Client::open(engine.port(), "/letters-chat-server/123/abcdefgh/websocket", None);
    assert_eq!(ws.read().expect("open frame"), Message::Text("o".into()));
    let mut bob = Client {
        ws,
        sockjs: true,
        server: String::new(),
    };
    bob.send(&format!(
        "CONNECT\naccept-version:1.1,1.0\nheart-beat:10000,10000\nlogin:bob\npasscode:{}\n\n\0",
        token("bob", None)
    ));
    assert!(bob.frame().starts_with("CONNECTED\n"));
    let forged = json!({"channel": "global", "sender": "alice@letters.test", "message": "hi", "time": "1999"});
    bob.send(&format!("SEND\ndestination:/pub/chat\n\n{forged}\0"));
    let message: Value = serde_json::from_str(body(&alice.frame())).expect("json");
    assert_eq!(message["sender"], "bob", "the token's sub, not the body's sender");
    assert_eq!(message["message"], "hi");
    assert_ne!(message["time"], "1999", "the server sets the time");
}

#[test]
fn missing_forged_and_expired_tokens_are_refused_on_connect() {
    let engine = engine(&[]);
    let cases = [
        (
            String::new(),
            "authentication required: send Authorization:Bearer <token> in CONNECT",
        ),
        (
            format!(
                "Authorization:Bearer {}",
                token_with("another secret", "mallory", 3600, None)
            ),
            "invalid token",
        ),
        (
            format!("Authorization:Bearer {}", token_with(SECRET, "late", -120, None)),
            "token expired",
        ),
        ("Authorization:Bearer not.a.token".into(), "invalid token"),
    ];
    for (headers, message) in cases {
        let (mut client, first) = connect(&engine, &headers);
        assert_refused(&mut client, &first, message);
    }
    // The node goes on serving good tokens.
    let (_, connected) = connect(&engine, &format!("Authorization:Bearer {}", token("ok", None)));
    assert!(connected.starts_with("CONNECTED\n"), "{connected}");
    let metrics = engine.get("/metrics").map(|(_, text)| text).unwrap_or_default();
    assert!(metrics.contains("kind=\"auth\"} 4"), "{metrics}");
}

#[test]
fn a_token_expiring_during_the_connection_ends_it() {
    let engine = engine(&[]);
    // `exp` counts whole seconds: this one passes within two.
    let bearer = format!("Authorization:Bearer {}", token_with(SECRET, "brief", 2, None));
    let (mut client, connected) = connect(&engine, &bearer);
    assert!(connected.starts_with("CONNECTED\n"), "{connected}");
    client.subscribe("s", "/sub/chat/x");
    // The ERROR comes by itself, without heart-beats or traffic (read timeout: 5 s).
    let error = client.frame();
    assert_refused(&mut client, &error, "token expired");
}

#[test]
fn forbidden_channels_are_refused_by_name() {
    let engine = engine(&[]);
    let chat = json!({"subscribe": ["team-*"], "publish": ["team-red"]});
    let bearer = format!("Authorization:Bearer {}", token("carol", Some(chat)));
    let (mut client, _) = connect(&engine, &bearer);
    client.subscribe("ok", "/sub/chat/team-red");
    client.send("SUBSCRIBE\nid:no\ndestination:/sub/chat/staff\n\n\0");
    let error = client.frame();
    assert_refused(
        &mut client,
        &error,
        "forbidden: this token may not subscribe to /sub/chat/staff",
    );

    let (mut client, _) = connect(&engine, &bearer);
    client.subscribe("ok", "/sub/chat/team-red");
    client.chat("team-red", "allowed");
    let echo = client.frame();
    assert!(echo.starts_with("MESSAGE\n"), "{echo}");
    client.chat("team-blue", "not allowed");
    let error = client.frame();
    assert_refused(
        &mut client,
        &error,
        "forbidden: this token may not publish to /sub/chat/team-blue",
    );

    let (mut client, _) = connect(&engine, &bearer);
    client.send("SEND\ndestination:/sub/chat/team-red\n\n{\"forged\":true}\0");
    let error = client.frame();
    assert_refused(
        &mut client,
        &error,
        "clients may not SEND to a subscription destination (send chat messages to /pub/chat): /sub/chat/team-red",
    );
}

#[test]
fn other_origins_are_refused_with_403() {
    let engine = Engine::start(&["--shards", "1", "--allowed-origins", "http://app.test"]);
    let upgrade = |origin: &str| {
        engine.http(&format!(
            "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nOrigin: {origin}\r\n\r\n"
        ))
    };
    assert!(upgrade("http://evil.test").starts_with("HTTP/1.1 403"));
    assert!(upgrade("null").starts_with("HTTP/1.1 403"));
    assert!(upgrade("http://app.test").starts_with("HTTP/1.1 101"));
    let info = |origin: &str| {
        engine.http(&format!(
            "GET {BASE_PATH}/info HTTP/1.1\r\nHost: x\r\nOrigin: {origin}\r\nConnection: close\r\n\r\n"
        ))
    };
    let refused = info("http://evil.test");
    assert!(refused.starts_with("HTTP/1.1 403"), "{refused}");
    assert!(!refused.contains("Access-Control-Allow-Origin"), "{refused}");
    let allowed = info("http://app.test");
    assert!(allowed.starts_with("HTTP/1.1 200"), "{allowed}");
    assert!(
        allowed.contains("Access-Control-Allow-Origin: http://app.test"),
        "{allowed}"
    );
    assert!(allowed.contains("Access-Control-Allow-Credentials: true"), "{allowed}");
    let transport = engine.http(&format!(
        "POST {BASE_PATH}/000/s1/xhr HTTP/1.1\r\nHost: x\r\nOrigin: http://evil.test\r\nContent-Length: 0\r\n\r\n"
    ));
    assert!(transport.starts_with("HTTP/1.1 403"), "{transport}");
    // Clients that send no Origin (not browsers) are not concerned.
    let _ = Client::raw(engine.port());
}
