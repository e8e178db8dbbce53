//! HTTP/1.1 heads as browsers and SockJS clients send them (upgrades, CORS, chunked bodies,
//! keep-alive), and the responses the engine writes.

use super::*;

const MAX_HEAD_BYTES: usize = 8192;

/// What Chrome sends to the SockJS WebSocket transport (two protocol headers added).
const BROWSER_UPGRADE: &[u8] = b"GET /letters-chat-server/123/x1y2z3/websocket HTTP/1.1\r\n\
    Host: localhost:8080\r\n\
    Connection: Upgrade\r\n\
    Pragma: no-cache\r\n\
    Cache-Control: no-cache\r\n\
    User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36\r\n\
    Upgrade: websocket\r\n\
    Origin: http://localhost:3000\r\n\
    Sec-WebSocket-Version: 13\r\n\
    Accept-Encoding: gzip, deflate, br, zstd\r\n\
    Accept-Language: ko-KR,ko;q=0.9,en-US;q=0.8\r\n\
    Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
    Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\
    Sec-WebSocket-Protocol: v12.stomp, v11.stomp\r\n\
    Sec-WebSocket-Protocol: v10.stomp\r\n\
    \r\n";

const SOCKJS_INFO: &[u8] = b"GET /letters-chat-server/info?t=1712345678901 HTTP/1.1\r\n\
    Host: localhost:8080\r\n\
    Connection: keep-alive\r\n\
    Accept: */*\r\n\
    Origin: http://localhost:3000\r\n\
    Referer: http://localhost:3000/\r\n\
    \r\n";

fn parse(head: &[u8]) -> Result<Option<(Request<'_>, usize)>, Error> {
    parse_request(head, MAX_HEAD_BYTES)
}

fn complete(head: &[u8]) -> Request<'_> {
    match parse(head) {
        Ok(Some((request, n))) => {
            assert_eq!(n, head.len());
            request
        }
        other => panic!("not a complete head: {other:?}"),
    }
}

/// `BROWSER_UPGRADE` with the header line starting `name:` replaced by `line`
/// (dropped when `line` is empty).
fn upgrade_with(name: &str, line: &str) -> Vec<u8> {
    let head = std::str::from_utf8(BROWSER_UPGRADE).expect("ASCII");
    let mut out = String::new();
    for l in head.split_inclusive("\r\n") {
        if l.starts_with(name) {
            if !line.is_empty() {
                out.push_str(line);
                out.push_str("\r\n");
            }
        } else {
            out.push_str(l);
        }
    }
    out.into_bytes()
}

#[test]
fn browser_upgrade_request() {
    let mut buf = BROWSER_UPGRADE.to_vec();
    // A client may send its first frame right behind the head.
    buf.extend_from_slice(&[0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d]);
    let Ok(Some((request, n))) = parse(&buf) else {
        panic!("not parsed")
    };
    assert_eq!(n, BROWSER_UPGRADE.len());
    assert_eq!(request.method, "GET");
    assert_eq!(request.path, "/letters-chat-server/123/x1y2z3/websocket");
    assert_eq!(request.query, None);
    assert_eq!(request.upgrade, Some("websocket"));
    assert_eq!(request.connection, Some("Upgrade"));
    assert_eq!(request.ws_key, Some("dGhlIHNhbXBsZSBub25jZQ=="));
    assert_eq!(request.ws_version, Some("13"));
    assert_eq!(request.protocols.as_slice(), ["v12.stomp", "v11.stomp", "v10.stomp"]);
    assert_eq!(request.origin, Some("http://localhost:3000"));
    assert_eq!(request.content_length, 0);
    assert!(request.keep_alive);
    assert_eq!(request.minor_version, 1);
    assert!(request.wants_websocket());
    assert_eq!(request.check_upgrade(), Ok("dGhlIHNhbXBsZSBub25jZQ=="));
    assert_eq!(
        request.select_protocol(&["v12.stomp", "v11.stomp", "v10.stomp"]),
        Some("v12.stomp")
    );
    // The server's order wins over the client's.
    assert_eq!(request.select_protocol(&["v10.stomp", "v12.stomp"]), Some("v10.stomp"));
    assert_eq!(request.select_protocol(&["mqtt", "V12.STOMP"]), None);
}

#[test]
fn firefox_connection_list_and_header_case() {
    let head = b"GET /ws HTTP/1.1\r\nhost: a\r\nCONNECTION: keep-alive, Upgrade\r\nupgrade: WebSocket\r\n\
        SEC-WEBSOCKET-KEY: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version:13\r\n\r\n";
    let request = complete(head);
    assert!(request.wants_websocket());
    assert_eq!(request.check_upgrade(), Ok("dGhlIHNhbXBsZSBub25jZQ=="));
    assert!(request.protocols.is_empty());
    assert_eq!(request.select_protocol(&["v12.stomp"]), None);
}

#[test]
fn sockjs_info_with_query() {
    let request = complete(SOCKJS_INFO);
    assert_eq!(request.method, "GET");
    assert_eq!(request.path, "/letters-chat-server/info");
    assert_eq!(request.query, Some("t=1712345678901"));
    assert_eq!(request.origin, Some("http://localhost:3000"));
    assert!(request.keep_alive);
    assert!(!request.wants_websocket());
    assert!(matches!(request.check_upgrade(), Err(Error::BadUpgrade(_))));
}

#[test]
fn cors_preflight() {
    let head = b"OPTIONS /letters-chat-server/info HTTP/1.1\r\nOrigin: http://a.example\r\n\
        Access-Control-Request-Method: GET\r\nAccess-Control-Request-Headers: content-type\r\n\r\n";
    let request = complete(head);
    assert_eq!(request.method, "OPTIONS");
    assert_eq!(request.cors_request_headers, Some("content-type"));
}

#[test]
fn missing_key() {
    let head = upgrade_with("Sec-WebSocket-Key", "");
    let request = complete(&head);
    assert_eq!(
        request.check_upgrade(),
        Err(Error::BadUpgrade("missing Sec-WebSocket-Key"))
    );
    assert_eq!(Error::BadUpgrade("x").status(), 400);
}

#[test]
fn bad_keys() {
    for key in [
        "c2hvcnQ=",
        "dGhlIHNhbXBsZSBub25jZQ",
        "dGhlIHNhbXBsZSBub25jZXg=",
        "!!!!!!!!!!!!!!!!!!!!!!==",
        "",
    ] {
        let head = upgrade_with("Sec-WebSocket-Key", &format!("Sec-WebSocket-Key: {key}"));
        let request = complete(&head);
        assert!(matches!(request.check_upgrade(), Err(Error::BadUpgrade(_))), "{key}");
    }
}

#[test]
fn bad_version() {
    for line in ["Sec-WebSocket-Version: 8", "Sec-WebSocket-Version: 14", ""] {
        let head = upgrade_with("Sec-WebSocket-Version", line);
        let request = complete(&head);
        assert_eq!(request.check_upgrade(), Err(Error::UnsupportedVersion), "{line:?}");
    }
    assert_eq!(Error::UnsupportedVersion.status(), 426);
}

#[test]
fn upgrade_rules() {
    let post = BROWSER_UPGRADE.strip_prefix(b"GET").expect("GET").to_vec();
    let post = [b"POST".as_slice(), &post].concat();
    assert!(matches!(complete(&post).check_upgrade(), Err(Error::BadUpgrade(_))));
    let http10 = String::from_utf8(BROWSER_UPGRADE.to_vec())
        .expect("ASCII")
        .replacen("HTTP/1.1", "HTTP/1.0", 1);
    let request = complete(http10.as_bytes());
    assert!(!request.keep_alive);
    assert!(matches!(request.check_upgrade(), Err(Error::BadUpgrade(_))));
    for connection in ["Connection: keep-alive", "Connection: upgrades", ""] {
        let head = upgrade_with("Connection", connection);
        assert!(
            matches!(complete(&head).check_upgrade(), Err(Error::BadUpgrade(_))),
            "{connection:?}"
        );
    }
    let head = upgrade_with("Upgrade", "Upgrade: h2c");
    let request = complete(&head);
    assert!(!request.wants_websocket());
    assert!(matches!(request.check_upgrade(), Err(Error::BadUpgrade(_))));
    let head = upgrade_with("Upgrade", "Upgrade: foo/1, WEBSOCKET");
    assert!(complete(&head).check_upgrade().is_ok());
}

#[test]
fn partial_head_byte_by_byte() {
    for end in 0..BROWSER_UPGRADE.len() {
        assert_eq!(parse(&BROWSER_UPGRADE[..end]), Ok(None), "prefix of {end} bytes");
    }
    assert!(parse(BROWSER_UPGRADE).is_ok_and(|r| r.is_some()));
}

#[test]
fn too_many_headers() {
    let mut head = b"GET / HTTP/1.1\r\n".to_vec();
    for i in 0..MAX_HEADERS {
        head.extend_from_slice(format!("X-H{i}: v\r\n").as_bytes());
    }
    let mut at_limit = head.clone();
    at_limit.extend_from_slice(b"\r\n");
    assert!(parse(&at_limit).is_ok_and(|r| r.is_some()));
    head.extend_from_slice(b"X-One-More: v\r\n\r\n");
    assert_eq!(parse(&head), Err(Error::TooLarge));
    assert_eq!(Error::TooLarge.status(), 431);
}

#[test]
fn oversize_head() {
    // Partial and past the limit.
    let mut head = b"GET / HTTP/1.1\r\nX-Big: ".to_vec();
    head.resize(200, b'a');
    assert_eq!(parse_request(&head, 200), Ok(None));
    head.push(b'a');
    assert_eq!(parse_request(&head, 200), Err(Error::TooLarge));
    // Complete but longer than the limit.
    head.extend_from_slice(b"\r\n\r\n");
    assert_eq!(parse_request(&head, 200), Err(Error::TooLarge));
    // A small head followed by many body bytes is fine.
    let mut buf = b"POST /x HTTP/1.1\r\nContent-Length: 1000\r\n\r\n".to_vec();
    let head_bytes = buf.len();
    buf.resize(head_bytes + 1000, b'b');
    let Ok(Some((request, n))) = parse_request(&buf, 100) else {
        panic!("not parsed")
    };
    assert_eq!((n, request.content_length), (head_bytes, 1000));
}

#[test]
fn malformed_heads() {
    for head in [
        &b"GET\r\n\r\n"[..],
        b"GET / HTTP/2.0\r\n\r\n",
        b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
        b"GET / HTTP/1.1\r\nContent-Length: 1x\r\n\r\n",
        b"GET / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n",
        b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
        b"GET / HTTP/1.1\r\nOrigin: \xFF\r\n\r\n",
    ] {
        let result = parse(head);
        assert!(
            matches!(result, Err(Error::Malformed(_))),
            "{:?}: {result:?}",
            String::from_utf8_lossy(head)
        );
    }
    assert_eq!(Error::Malformed("x").status(), 400);
    // A repeated equal Content-Length is tolerated.
    let head = b"POST / HTTP/1.1\r\nContent-Length: 3\r\ncontent-length: 3\r\n\r\n";
    assert_eq!(complete(head).content_length, 3);
}

/// What Node's http client sends for sockjs-client's `xhr_send` (request.write, end).
const NODE_XHR_SEND: &[u8] = b"POST /b/1/2/xhr_send HTTP/1.1\r\nHost: 127.0.0.1:45429\r\n\
    Connection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n[\"a\"]\r\n0\r\n\r\n";

#[test]
fn chunked_bodies_in_every_split() {
    let Ok(Some((request, head))) = parse(NODE_XHR_SEND) else {
        panic!("not parsed");
    };
    assert!(request.chunked && request.keep_alive);
    assert_eq!(request.content_length, 0);
    let body = &NODE_XHR_SEND[head..];
    for cut in 0..body.len() {
        let mut out = BytesMut::from(&b"x"[..]);
        assert_eq!(decode_chunked(&body[..cut], 100, &mut out), Ok(None), "cut {cut}");
        assert_eq!(&out[..], b"x", "nothing appended before the end");
    }
    let mut out = BytesMut::new();
    assert_eq!(decode_chunked(body, 100, &mut out), Ok(Some(body.len())));
    assert_eq!(&out[..], b"[\"a\"]");
    // Several chunks, an extension, a trailer, and what follows the body.
    let body = b"3;ext=1\r\nabc\r\nA\r\n0123456789\r\n0\r\nX-T: 1\r\n\r\nGET ";
    out.clear();
    assert_eq!(decode_chunked(body, 100, &mut out), Ok(Some(body.len() - 4)));
    assert_eq!(&out[..], b"abc0123456789");
    out.clear();
    assert_eq!(decode_chunked(body, 12, &mut out), Err(Error::BodyTooLarge));
    for bad in [&b"x\r\n"[..], b"\r\n", b"3\r\nabcd\r\n", b"123456789\r\n"] {
        assert!(matches!(
            decode_chunked(bad, 1 << 30, &mut out),
            Err(Error::Malformed(_))
        ));
    }
    assert_eq!(Error::BodyTooLarge.status(), 413);
}

#[test]
fn streaming_heads_close_the_connection() {
    let mut out = BytesMut::new();
    write_head(200, &[("Content-Type", "text/event-stream")], None, false, &mut out);
    assert_eq!(
        &out[..],
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"
    );
    out.clear();
    write_head(200, &[], Some(2), true, &mut out);
    assert_eq!(&out[..], b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n");
}

#[test]
fn keep_alive_rules() {
    assert!(complete(b"GET / HTTP/1.1\r\n\r\n").keep_alive);
    assert!(!complete(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n").keep_alive);
    assert!(!complete(b"GET / HTTP/1.1\r\nConnection: Upgrade\r\nConnection: Close\r\n\r\n").keep_alive);
    let request = complete(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert!(!request.keep_alive);
    assert_eq!(request.minor_version, 0);
}

#[test]
fn accept_key_rfc_example() {
    assert_eq!(accept_key("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

#[test]
fn upgrade_answer() {
    let mut out = BytesMut::new();
    write_upgrade("dGhlIHNhbXBsZSBub25jZQ==", Some("v12.stomp"), &mut out);
    assert_eq!(
        &out[..],
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Protocol: v12.stomp\r\n\r\n"
    );
    out.clear();
    write_upgrade("dGhlIHNhbXBsZSBub25jZQ==", None, &mut out);
    assert!(!out.windows(22).any(|w| w == b"Sec-WebSocket-Protocol"));
    assert!(out.ends_with(b"xOo=\r\n\r\n"));
}

#[test]
fn responses() {
    let mut out = BytesMut::new();
    let headers = [
        ("Content-Type", "application/json; charset=UTF-8"),
        ("Access-Control-Allow-Credentials", "true"),
    ];
    write_response(200, &headers, b"{\"websocket\":true}", true, &mut out);
    assert_eq!(
        &out[..],
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json; charset=UTF-8\r\n\
          Access-Control-Allow-Credentials: true\r\nContent-Length: 18\r\n\r\n{\"websocket\":true}"
    );
    out.clear();
    write_response(404, &[], b"", false, &mut out);
    assert_eq!(
        &out[..],
        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    out.clear();
    write_response(
        204,
        &[("Access-Control-Max-Age", "31536000")],
        b"ignored",
        true,
        &mut out,
    );
    assert_eq!(
        &out[..],
        b"HTTP/1.1 204 No Content\r\nAccess-Control-Max-Age: 31536000\r\n\r\n"
    );
    out.clear();
    write_response(426, &[("Sec-WebSocket-Version", "13")], b"", true, &mut out);
    assert!(out.starts_with(b"HTTP/1.1 426 Upgrade Required\r\nSec-WebSocket-Version: 13\r\n"));
    out.clear();
    write_response(200, &[], &[b'x'; 12345], true, &mut out);
    assert!(out.starts_with(b"HTTP/1.1 200 OK\r\nContent-Length: 12345\r\n\r\nx"));
}

#[test]
fn reasons() {
    let expected = [
        (101, "Switching Protocols"),
        (200, "OK"),
        (202, "Accepted"),
        (204, "No Content"),
        (400, "Bad Request"),
        (401, "Unauthorized"),
        (403, "Forbidden"),
        (404, "Not Found"),
        (405, "Method Not Allowed"),
        (413, "Payload Too Large"),
        (426, "Upgrade Required"),
        (431, "Request Header Fields Too Large"),
        (500, "Internal Server Error"),
        (503, "Service Unavailable"),
        (299, ""),
    ];
    for (status, phrase) in expected {
        assert_eq!(reason(status), phrase);
    }
}
