//! The engine over real sockets: chat between shards, the classic client's exact frames
//! over SockJS, HTTP endpoints, hostile input next to healthy clients, slow consumers,
//! and draining on SIGTERM.

mod common;

use std::io::Write;
use std::time::Duration;

use common::{body, clients_on_both_shards, close_code, header, masked, upgraded, Client, Engine};
use tungstenite::Message;

#[test]
fn clients_on_different_shards_chat() {
    let engine = Engine::start(&["--shards", "2", "--cpus", "0"]);
    let (mut a, mut b) = clients_on_both_shards(&engine);
    a.subscribe("sub-0", "/sub/chat/global");
    b.subscribe("sub-0", "/sub/chat/global");
    for i in 0..20 {
        a.chat("global", &format!("m{i}"));
    }
    for client in [&mut a, &mut b] {
        for i in 0..20 {
            let frame = client.frame();
            assert!(frame.starts_with("MESSAGE\n"), "{frame}");
            assert_eq!(header(&frame, "subscription").as_deref(), Some("sub-0"));
            assert_eq!(header(&frame, "destination").as_deref(), Some("/sub/chat/global"));
            assert_eq!(header(&frame, "content-type").as_deref(), Some("application/json"));
            assert!(header(&frame, "message-id").is_some());
            let json: serde_json::Value = serde_json::from_str(body(&frame)).expect("json body");
            assert_eq!(json["message"], format!("m{i}"), "per-channel order");
            assert_eq!(json["channel"], "global");
            assert!(json["time"].is_string());
            let length: usize = header(&frame, "content-length")
                .and_then(|l| l.parse().ok())
                .expect("content-length");
            assert_eq!(length, body(&frame).len());
        }
    }
}

#[test]
fn channels_are_isolated_and_unsubscribe_stops_delivery() {
    let engine = Engine::start(&["--shards", "2", "--cpus", "0"]);
    let (mut a, mut b) = clients_on_both_shards(&engine);
    a.subscribe("sub-0", "/sub/chat/one");
    b.subscribe("sub-7", "/sub/chat/two");
    b.chat("one", "for a");
    let frame = a.frame();
    assert_eq!(header(&frame, "subscription").as_deref(), Some("sub-0"));
    b.send("UNSUBSCRIBE\nid:sub-7\nreceipt:u\n\n\0");
    assert!(b.frame().starts_with("RECEIPT"));
    a.chat("two", "nobody hears");
    b.send("DISCONNECT\nreceipt:bye\n\n\0");
    let receipt = b.frame();
    assert_eq!(
        header(&receipt, "receipt-id").as_deref(),
        Some("bye"),
        "no MESSAGE before the receipt: {receipt}"
    );
}

#[test]
fn classic_sockjs_client_frames_work_unchanged() {
    let engine = Engine::start(&["--shards", "1"]);
    // The frames of ../shared/protocol.md, "Observed on the wire" (with the content-length
    // of this body: the document's 97 belongs to a longer one).
    let mut ws = Client::open(engine.port(), "/letters-chat-server/123/xk2nq0ab/websocket", None);
    assert_eq!(ws.read().expect("open"), Message::Text("o".into()));
    ws.send(Message::Text(
        r#"["CONNECT\naccept-version:1.1,1.0\nheart-beat:10000,10000\n\n\u0000"]"#.into(),
    ))
    .expect("send");
    let connected = ws.read().expect("connected").into_text().expect("text").to_string();
    assert!(connected.starts_with(r#"a["CONNECTED\nversion:1.1\n"#), "{connected}");
    assert!(connected.contains(r"heart-beat:10000,10000"), "{connected}");
    assert!(connected.contains(r"server:chat-engine/"), "{connected}");
    ws.send(Message::Text(
        r#"["SUBSCRIBE\nid:sub-0\ndestination:/sub/chat/global\n\n\u0000"]"#.into(),
    ))
    .expect("send");
    ws.send(Message::Text(
        r#"["SEND\ndestination:/pub/chat\ncontent-length:79\n\n{\"channel\":\"global\",\"sender\":\"alice@letters.test\",\"message\":\"hello from alice\"}\u0000"]"#.into(),
    ))
    .expect("send");
    let message = ws.read().expect("message").into_text().expect("text").to_string();
    let frames: Vec<String> = serde_json::from_str(&message[1..]).expect("a[...]");
    let frame = &frames[0];
    assert!(frame.starts_with("MESSAGE\n"), "{frame}");
    assert_eq!(header(frame, "subscription").as_deref(), Some("sub-0"));
    let json: serde_json::Value = serde_json::from_str(body(frame)).expect("json");
    assert_eq!(json["sender"], "alice@letters.test");
    assert_eq!(json["message"], "hello from alice");
}

#[test]
fn raw_and_sockjs_clients_share_channels() {
    let engine = Engine::start(&["--shards", "2", "--cpus", "0"]);
    let mut raw = Client::raw(engine.port());
    let mut sockjs = Client::sockjs(engine.port());
    raw.subscribe("sub-1", "/sub/chat/mixed");
    sockjs.subscribe("sub-0", "/sub/chat/mixed");
    sockjs.chat("mixed", "from sockjs \"quoted\" ünïcode");
    for c in [&mut raw, &mut sockjs] {
        let frame = c.frame();
        let json: serde_json::Value = serde_json::from_str(body(&frame)).expect("json");
        assert_eq!(json["message"], "from sockjs \"quoted\" ünïcode");
    }
    // Only the server speaks on /sub destinations: a SEND straight to one is refused,
    // naming it, and the subscribers see nothing.
    raw.send("SEND\ndestination:/sub/chat/mixed\n\n{\"direct\":true}\0");
    let error = raw.frame();
    assert!(error.starts_with("ERROR\n"), "{error}");
    assert!(
        header(&error, "message").is_some_and(|m| m.ends_with(" /sub/chat/mixed")),
        "{error}"
    );
    sockjs.chat("mixed", "after");
    let json: serde_json::Value = serde_json::from_str(body(&sockjs.frame())).expect("json");
    assert_eq!(json["message"], "after");
}

#[test]
fn http_endpoints_answer() {
    let engine = Engine::start(&["--shards", "1"]);
    let info = engine.http(
        "GET /letters-chat-server/info?t=1 HTTP/1.1\r\nHost: x\r\nOrigin: http://app.test\r\nConnection: close\r\n\r\n",
    );
    assert!(info.starts_with("HTTP/1.1 200"), "{info}");
    assert!(info.contains("Access-Control-Allow-Origin: http://app.test"), "{info}");
    assert!(info.contains("Access-Control-Allow-Credentials: true"), "{info}");
    assert!(info.contains("\"websocket\":true"), "{info}");
    let preflight = engine.http(
        "OPTIONS /letters-chat-server/info HTTP/1.1\r\nHost: x\r\nOrigin: http://app.test\r\nConnection: close\r\n\r\n",
    );
    assert!(preflight.starts_with("HTTP/1.1 204"), "{preflight}");
    let metrics = engine.http("GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert!(
        metrics.contains("chat_connections{node=\"node-0\",shard=\"0\"}"),
        "{metrics}"
    );
    assert!(engine
        .http("GET /nope HTTP/1.1\r\nHost: x\r\n\r\n")
        .starts_with("HTTP/1.1 404"));
    let upgrade_at_base = engine.http(
        "GET /letters-chat-server HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    );
    assert!(upgrade_at_base.starts_with("HTTP/1.1 400"), "{upgrade_at_base}");
}

#[test]
fn raw_websocket_negotiates_the_stomp_subprotocol() {
    let engine = Engine::start(&["--shards", "1"]);
    let answer = engine.http(
        "GET /letters-chat-server/websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: v10.stomp, v11.stomp\r\n\r\n",
    );
    assert!(answer.starts_with("HTTP/1.1 101"), "{answer}");
    assert!(answer.contains("Sec-WebSocket-Protocol: v11.stomp"), "{answer}");
    assert!(
        answer.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
        "{answer}"
    );
}

#[test]
fn hostile_input_is_rejected_while_others_keep_chatting() {
    let engine = Engine::start(&["--shards", "2", "--cpus", "0", "--max-frame-bytes", "4096"]);
    let (mut a, mut b) = clients_on_both_shards(&engine);
    a.subscribe("sub-0", "/sub/chat/calm");
    b.subscribe("sub-0", "/sub/chat/calm");

    assert!(engine.http("BLAH\r\n\r\n").starts_with("HTTP/1.1 400"));
    let bad_version = engine.http("GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n");
    assert!(bad_version.starts_with("HTTP/1.1 426"), "{bad_version}");

    let mut s = upgraded(&engine);
    s.write_all(&[0x81, 0x02, b'h', b'i']).expect("unmasked frame");
    assert_eq!(close_code(&mut s), 1002, "unmasked client frame");

    let mut s = upgraded(&engine);
    s.write_all(&masked(0x81, &[0xff, 0xfe])).expect("write");
    assert_eq!(close_code(&mut s), 1007, "invalid UTF-8");

    let mut s = upgraded(&engine);
    s.write_all(&[0x82, 0xff, 0, 0, 0, 0, 0, 1, 0, 0, 1, 2, 3, 4])
        .expect("write");
    assert_eq!(close_code(&mut s), 1009, "too big");

    let mut bad = Client::raw(engine.port());
    bad.send("SEND\ndestination:/pub/chat\n\n{\"sender\":\"no channel\"}\0");
    let error = bad.frame();
    assert!(error.starts_with("ERROR\n"), "{error}");
    assert!(
        header(&error, "message").is_some_and(|m| m.contains("channel")),
        "{error}"
    );

    let mut garbage = Client::raw(engine.port());
    garbage.send("FLY\n\n\0");
    assert!(garbage.frame().starts_with("ERROR\n"));

    let mut early = Client::open(engine.port(), "/ws", None);
    early
        .send(Message::Text("SEND\ndestination:/pub/chat\n\n{}\0".into()))
        .expect("send");
    let answer = early.read().expect("error").into_text().expect("text").to_string();
    assert!(answer.starts_with("ERROR\n"), "{answer}");

    a.chat("calm", "still here");
    for c in [&mut a, &mut b] {
        assert!(body(&c.frame()).contains("still here"));
    }
    let metrics = engine.http("GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert!(metrics.contains("kind=\"ws_protocol\"} 1"), "{metrics}");
}

#[test]
fn a_slow_consumer_is_dropped_without_slowing_others() {
    let engine = Engine::start(&[
        "--shards",
        "1",
        "--max-frame-bytes",
        "65536",
        "--max-outbound-bytes",
        "65536",
        "--max-publish-rate",
        "0",
    ]);
    let mut slow = Client::raw(engine.port());
    slow.subscribe("sub-0", "/sub/chat/flood");
    let mut fast = Client::raw(engine.port());
    fast.subscribe("sub-0", "/sub/chat/flood");
    let big = "x".repeat(8000);
    let mut got = 0;
    for _ in 0..3000 {
        fast.chat("flood", &big);
        let frame = fast.frame();
        assert!(frame.starts_with("MESSAGE"));
        got += 1;
    }
    assert_eq!(got, 3000);
    let metrics = engine.http("GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert!(metrics.contains("kind=\"slow_consumer\"} 1"), "{metrics}");
    drop(slow);
}

#[test]
fn sigterm_closes_clients_with_1001_and_exits() {
    let engine = Engine::start(&["--shards", "2", "--cpus", "0", "--drain-secs", "3"]);
    let mut c = Client::raw(engine.port());
    c.subscribe("sub-0", "/sub/chat/x");
    let mut engine = engine;
    let status = engine.stop();
    assert!(status.success(), "{status:?}");
    loop {
        match c.ws.read() {
            Ok(Message::Close(Some(frame))) => {
                assert_eq!(u16::from(frame.code), 1001);
                break;
            }
            Ok(_) => continue,
            Err(e) => panic!("no close frame: {e}"),
        }
    }
}

#[test]
fn heart_beats_are_sent_and_silent_clients_are_closed() {
    let engine = Engine::start(&["--shards", "1", "--heartbeat-ms", "200"]);
    // The client wants a beat every 200 ms and promises nothing: it must get lone EOLs.
    let mut ws = Client::open(engine.port(), "/ws", Some("v12.stomp"));
    ws.send(Message::Text(
        "CONNECT\naccept-version:1.2\nheart-beat:0,200\n\n\0".into(),
    ))
    .expect("send");
    let connected = ws.read().expect("connected").into_text().expect("text").to_string();
    assert_eq!(
        header(&connected, "heart-beat").as_deref(),
        Some("200,0"),
        "{connected}"
    );
    let started = std::time::Instant::now();
    let beat = ws.read().expect("a heart-beat").into_text().expect("text").to_string();
    assert_eq!(beat, "\n");
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());

    // This one promises a beat every 200 ms, then goes silent: closed after 2 x 200 ms + 1 s.
    let mut silent = Client::open(engine.port(), "/ws", Some("v12.stomp"));
    silent
        .send(Message::Text(
            "CONNECT\naccept-version:1.2\nheart-beat:200,0\n\n\0".into(),
        ))
        .expect("send");
    let connected = silent.read().expect("connected").into_text().expect("text").to_string();
    assert_eq!(
        header(&connected, "heart-beat").as_deref(),
        Some("0,200"),
        "{connected}"
    );
    silent
        .get_mut()
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    loop {
        match silent.read() {
            Ok(Message::Close(Some(frame))) => {
                assert_eq!(u16::from(frame.code), 1002);
                break;
            }
            Ok(_) => continue,
            Err(e) => panic!("no close after the client went silent: {e}"),
        }
    }
}

#[test]
fn sockjs_sessions_get_h_frames() {
    let engine = Engine::start(&["--shards", "1", "--sockjs-heartbeat-ms", "200"]);
    let mut ws = Client::open(engine.port(), "/letters-chat-server/007/hbtest00/websocket", None);
    assert_eq!(ws.read().expect("open"), Message::Text("o".into()));
    let started = std::time::Instant::now();
    assert_eq!(ws.read().expect("h frame"), Message::Text("h".into()));
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
}
