//! The client side: upgrade requests and answers, HTTP transport bodies, server identity
//! and SockJS close codes.

use super::*;

#[test]
fn upgrade_request_names_the_stomp_protocols() {
    let mut out = BytesMut::new();
    upgrade_request("h:1", "/ws", "dGhlIHNhbXBsZSBub25jZQ==", Framing::Raw, &mut out);
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("GET /ws HTTP/1.1\r\nHost: h:1\r\n"));
    assert!(text.contains("Sec-WebSocket-Protocol: v12.stomp"));
    assert!(text.ends_with("\r\n\r\n"));
    out.clear();
    upgrade_request("h:1", "/b/000/abcdefgh/websocket", "k", Framing::SockJs, &mut out);
    assert!(!String::from_utf8_lossy(&out).contains("Protocol"));
}

#[test]
fn upgrade_answers() {
    let partial = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n";
    assert_eq!(upgrade_response(partial, "k"), Ok(None));
    assert_eq!(
        upgrade_response(b"HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n", "k"),
        Err(Error::Status(503))
    );
    assert_eq!(
        upgrade_response(b"\x00\x01garbage\r\n\r\n", "k"),
        Err(Error::MalformedHttp)
    );
}

#[test]
fn http_transport_bodies_and_requests() {
    let mut codec = Codec::new(Framing::SockJsHttp, 1 << 20, 1);
    let mut elements = BytesMut::new();
    codec.encode(
        stomp::Command::Connect,
        &[("accept-version", b"1.2")],
        b"",
        &mut elements,
    );
    codec.encode(
        stomp::Command::Send,
        &[("destination", b"/pub/chat")],
        b"{\"a\":1}",
        &mut elements,
    );
    let mut out = BytesMut::new();
    xhr_send_request("h:1", "/b/000/s/xhr_send", &elements, &mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("a head");
    assert!(
        head.starts_with("POST /b/000/s/xhr_send HTTP/1.1\r\nHost: h:1\r\n"),
        "{head}"
    );
    assert!(head.ends_with(&format!("Content-Length: {}", body.len())), "{head}");
    let mut stomp_bytes = BytesMut::new();
    assert_eq!(
        sockjs::http::decode_send(body.as_bytes(), &mut Vec::new(), &mut stomp_bytes),
        Ok(2)
    );
    assert!(stomp_bytes.starts_with(b"CONNECT\naccept-version:1.2\n"));

    // An xhr_streaming body: prelude, open, a frame split over reads, a close.
    let mut body = BytesMut::new();
    sockjs::http::encode_prelude(sockjs::http::Transport::XhrStreaming, &mut body);
    body.put_slice(b"o\na[\"MESSAGE\\ndestination:/x\\n\\nhi\\u0000\"]\nc[3000,\"Go away!\"]\n");
    for cut in [0, 1, 2049, 2051, body.len() - 3] {
        let mut codec = Codec::new(Framing::SockJsHttp, 1 << 20, 1);
        let mut buf = BytesMut::from(&body[..cut]);
        let mut events = Vec::new();
        while let Ok(Some(e)) = codec.decode(&mut buf) {
            events.push(e);
        }
        buf.extend_from_slice(&body[cut..]);
        while let Ok(Some(e)) = codec.decode(&mut buf) {
            events.push(e);
        }
        assert_eq!(events.len(), 4, "cut {cut}: {events:?}");
        assert_eq!(events[0], Event::HeartBeat);
        assert_eq!(events[1], Event::Open);
        assert!(matches!(&events[2], Event::Frame(f) if &f.body[..] == b"hi"));
        assert_eq!(events[3], Event::Closed(Some(3000)));
    }
}

#[test]
fn chunked_bodies_decode_in_every_split() {
    let raw: &[u8] = b"5;ext=1\r\nhello\r\n1A\r\n abcdefghijklmnopqrstuvwxy\r\n0\r\nX-T: 1\r\n\r\nNEXT";
    let body: &[u8] = b"hello abcdefghijklmnopqrstuvwxy";
    for split in 0..=raw.len() {
        let (mut d, mut out, mut pending) = (Dechunker::default(), BytesMut::new(), BytesMut::new());
        pending.extend_from_slice(&raw[..split]);
        let early = d.feed(&mut pending, &mut out).expect("valid so far");
        pending.extend_from_slice(&raw[split..]);
        assert!(early || d.feed(&mut pending, &mut out).expect("valid"), "split {split}");
        assert_eq!(&out[..], body, "split {split}");
        assert_eq!(&pending[..], b"NEXT", "split {split}");
    }
    for bad in [&b"zz\r\n"[..], b"5\r\nhelloXX\r\n", b"123456789\r\n", b"\r\n"] {
        let mut raw = BytesMut::from(bad);
        assert_eq!(
            Dechunker::default().feed(&mut raw, &mut BytesMut::new()),
            Err(Error::MalformedHttp),
            "{bad:?}"
        );
    }
}

#[test]
fn response_heads() {
    let head = b"HTTP/1.1 200 OK\r\nContent-Type: x\r\nConnection: close\r\n\r\nhhh";
    assert_eq!(
        response_head(head),
        Ok(Some(ResponseHead {
            status: 200,
            head_bytes: head.len() - 3,
            content_length: None,
            chunked: false,
            close: true
        }))
    );
    let head = b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n";
    assert_eq!(
        response_head(head).map(|h| h.map(|h| (h.status, h.close))),
        Ok(Some((204, false)))
    );
    assert_eq!(response_head(b"HTTP/1.1 200 OK\r\n"), Ok(None));
    assert_eq!(
        response_head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n").map(|h| h.map(|h| h.chunked)),
        Ok(Some(true))
    );
    assert_eq!(
        response_head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n"),
        Err(Error::MalformedHttp)
    );
}

#[test]
fn server_identity_reads_node_and_shard() {
    assert_eq!(
        server_identity(Some(b"chat-engine/0.1.0 node=n1 shard=3")),
        ("n1".into(), "3".into())
    );
    assert_eq!(server_identity(Some(b"nginx")), ("?".into(), "?".into()));
    assert_eq!(server_identity(None), ("?".into(), "?".into()));
}

#[test]
fn sockjs_close_codes() {
    assert_eq!(sockjs_close_code(b"[3000,\"Go away!\"]"), Some(3000));
    assert_eq!(sockjs_close_code(b"nope"), None);
}

#[test]
fn keys_are_16_bytes_of_base64() {
    let mut rng = Rng::new(1);
    let (a, b) = (new_key(&mut rng), new_key(&mut rng));
    assert_eq!(a.len(), 24);
    assert_ne!(a, b);
}
