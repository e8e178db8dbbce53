//! SockJS's HTTP transports over real sockets: polling and streaming clients chat with
//! WebSocket clients across shards; bad input (unknown sessions, broken `xhr_send`
//! bodies, bodies over the frame limit, a second receiver, floods of sessions, sessions
//! nobody polls, a client that stops reading) gets one clear answer each, is counted in
//! `/metrics`, and leaves other clients unharmed.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{body, header, Client, Engine};

const BASE: &str = "/letters-chat-server";
const CONNECT: &str = "CONNECT\naccept-version:1.1,1.0\nheart-beat:0,0\n\n\0";

/// An HTTP/1.1 connection to the engine, kept alive between requests.
struct Http {
    stream: TcpStream,
    buf: Vec<u8>,
}

/// One response: status, head (lower-cased) and body.
#[derive(Debug)]
struct Response {
    status: u16,
    head: String,
    body: String,
}

impl Http {
    fn new(engine: &Engine) -> Http {
        let stream = TcpStream::connect(("127.0.0.1", engine.port())).expect("connect");
        stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
        Http {
            stream,
            buf: Vec::new(),
        }
    }

    /// Sends `method path` with `body` (and `extra` header lines), reads a response with
    /// a Content-Length (or up to the close).
    fn request(&mut self, method: &str, path: &str, extra: &str, body: &[u8]) -> Response {
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: t\r\nOrigin: http://page.test\r\n{extra}Content-Length: {}\r\n\r\n",
            body.len()
        );
        self.stream.write_all(head.as_bytes()).expect("write head");
        self.stream.write_all(body).expect("write body");
        self.response()
    }

    fn response(&mut self) -> Response {
        let head_end = loop {
            if let Some(at) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            self.fill().expect("a response head");
        };
        let head = String::from_utf8_lossy(&self.buf[..head_end]).to_lowercase();
        let status = head[9..12].parse().expect("a status");
        let length = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .map(|l| l.trim().parse::<usize>().expect("a length"));
        let end = match length {
            Some(n) => {
                while self.buf.len() < head_end + n {
                    self.fill().expect("the body");
                }
                head_end + n
            }
            None if status == 204 => head_end,
            None => {
                while self.fill().is_ok() {}
                self.buf.len()
            }
        };
        let body = String::from_utf8_lossy(&self.buf[head_end..end]).into_owned();
        self.buf.drain(..end);
        Response { status, head, body }
    }

    /// Reads until `needle` is in what was read (the streaming body so far), or panics.
    fn read_until(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text = String::from_utf8_lossy(&self.buf).into_owned();
            if text.contains(needle) {
                return text;
            }
            assert!(Instant::now() < deadline, "no {needle:?} in {text:?}");
            self.fill().unwrap_or_else(|e| panic!("{e}: no {needle:?} in {text:?}"));
        }
    }

    fn fill(&mut self) -> std::io::Result<()> {
        let mut chunk = [0u8; 16 * 1024];
        match self.stream.read(&mut chunk)? {
            0 => Err(std::io::ErrorKind::UnexpectedEof.into()),
            n => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(())
            }
        }
    }
}

fn path(session: &str, transport: &str) -> String {
    format!("{BASE}/000/{session}/{transport}")
}

/// `frames` as an xhr_send body.
fn send_body(frames: &[&str]) -> Vec<u8> {
    serde_json::to_vec(frames).expect("json")
}

/// Opens session `id` with a poll and CONNECTs it; returns the CONNECTED frame.
fn open_polling(engine: &Engine, id: &str) -> String {
    let mut poll = Http::new(engine);
    assert_eq!(poll.request("POST", &path(id, "xhr"), "", b"").body, "o\n");
    let mut send = Http::new(engine);
    assert_eq!(
        send.request("POST", &path(id, "xhr_send"), "", &send_body(&[CONNECT]))
            .status,
        204
    );
    let frames = frames(&poll.request("POST", &path(id, "xhr"), "", b"").body);
    frames.into_iter().next().expect("CONNECTED")
}

/// The STOMP frames of `a[...]` lines in a body (other lines skipped).
fn frames(body: &str) -> Vec<String> {
    body.lines()
        .filter_map(|l| l.strip_prefix('a'))
        .flat_map(|json| serde_json::from_str::<Vec<String>>(json).expect("a[...] is a JSON array"))
        .filter(|f| f != "\n")
        .collect()
}

fn metrics(engine: &Engine) -> String {
    engine.http("GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
}

/// The sum over shards of the series whose line starts with `prefix` and has `label`.
fn metric(engine: &Engine, name: &str, label: &str) -> u64 {
    metrics(engine)
        .lines()
        .filter(|l| l.starts_with(name) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[test]
fn polling_and_streaming_clients_chat_with_websocket_clients() {
    let engine = Engine::start(&["--shards", "2", "--cpus", "0"]);
    let mut ws = Client::raw(engine.port());
    ws.subscribe("sub-0", "/sub/chat/mixed");

    // xhr-polling: open, CONNECT and SUBSCRIBE in one xhr_send (as sockjs-client batches).
    let connected = open_polling(&engine, "poller01");
    assert!(connected.starts_with("CONNECTED\nversion:1.1\n"), "{connected}");
    let mut send = Http::new(&engine);
    let subscribe = "SUBSCRIBE\nid:sub-0\ndestination:/sub/chat/mixed\nreceipt:r0\n\n\0";
    let sent = send.request("POST", &path("poller01", "xhr_send"), "", &send_body(&[subscribe]));
    assert_eq!(sent.status, 204);
    assert!(
        sent.head.contains("access-control-allow-origin: http://page.test"),
        "{}",
        sent.head
    );
    assert!(
        sent.head.contains("access-control-allow-credentials: true"),
        "{}",
        sent.head
    );
    let mut poll = Http::new(&engine);
    let receipt = poll.request("POST", &path("poller01", "xhr"), "", b"");
    assert!(receipt
        .head
        .contains("cache-control: no-store, no-cache, no-transform, must-revalidate, max-age=0"));
    assert_eq!(header(&frames(&receipt.body)[0], "receipt-id").as_deref(), Some("r0"));

    // xhr-streaming on another session: prelude, o, then frames as they come.
    let mut stream = Http::new(&engine);
    let head = "POST /letters-chat-server/000/stream01/xhr_streaming HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n";
    stream.stream.write_all(head.as_bytes()).expect("write");
    let text = stream.read_until("\no\n");
    assert!(text.contains(&format!("\r\n\r\n{}\no\n", "h".repeat(2048))), "{text:?}");
    let subscribe = "SUBSCRIBE\nid:sub-9\ndestination:/sub/chat/mixed\nreceipt:r9\n\n\0";
    let sent = send.request(
        "POST",
        &path("stream01", "xhr_send"),
        "",
        &send_body(&[CONNECT, subscribe]),
    );
    assert_eq!(sent.status, 204);
    stream.read_until("receipt-id:r9");

    // A WebSocket client publishes; both HTTP sessions get it. The poller publishes; the
    // WebSocket client and the streamer get it.
    ws.chat("mixed", "from ws");
    assert!(ws.frame().contains("from ws"), "its own echo");
    let polled = frames(&poll.request("POST", &path("poller01", "xhr"), "", b"").body);
    assert_eq!(header(&polled[0], "subscription").as_deref(), Some("sub-0"));
    assert!(body(&polled[0]).contains("\"from ws\""), "{polled:?}");
    stream.read_until("from ws");
    let chat = r#"{"channel":"mixed","sender":"p","message":"from poll 100%"}"#;
    let frame = format!("SEND\ndestination:/pub/chat\ncontent-length:{}\n\n{chat}\0", chat.len());
    assert_eq!(
        send.request("POST", &path("poller01", "xhr_send"), "", &send_body(&[&frame]))
            .status,
        204
    );
    let got = ws.frame();
    assert!(got.contains("from poll 100%"), "{got}");
    let text = stream.read_until("from poll 100%");
    assert!(text.contains("subscription:sub-9"), "{text}");

    // A frame split over two xhr_send bodies (stompjs cuts frames at 16 KiB).
    let big = format!(
        r#"{{"channel":"mixed","sender":"p","message":"{}"}}"#,
        "z".repeat(20_000)
    );
    let frame = format!("SEND\ndestination:/pub/chat\ncontent-length:{}\n\n{big}\0", big.len());
    let (first, second) = frame.split_at(16 * 1024);
    assert_eq!(
        send.request("POST", &path("poller01", "xhr_send"), "", &send_body(&[first]))
            .status,
        204
    );
    assert_eq!(
        send.request("POST", &path("poller01", "xhr_send"), "", &send_body(&[second]))
            .status,
        204
    );
    assert!(ws.frame().contains(&"z".repeat(20_000)));

    // A chunked xhr_send, as Node's http client sends it.
    let body = send_body(&[&format!(
        "SEND\ndestination:/pub/chat\n\n{}\0",
        r#"{"channel":"mixed","message":"chunked"}"#
    )]);
    let request = format!(
        "POST {} HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n",
        path("poller01", "xhr_send"),
        body.len()
    );
    send.stream.write_all(request.as_bytes()).expect("write");
    send.stream.write_all(&body).expect("write");
    send.stream.write_all(b"\r\n0\r\n\r\n").expect("write");
    assert_eq!(send.response().status, 204);
    assert!(ws.frame().contains("chunked"));

    assert!(metric(&engine, "chat_sockjs_http_requests_total", "transport=\"xhr\"") >= 4);
    assert!(
        metric(
            &engine,
            "chat_sockjs_http_requests_total",
            "transport=\"xhr_streaming\""
        ) >= 1
    );
    assert!(metric(&engine, "chat_sockjs_http_requests_total", "transport=\"xhr_send\"") >= 6);
    assert_eq!(metric(&engine, "chat_sockjs_http_sessions", "node="), 2);
}

#[test]
fn bad_input_gets_one_clear_answer_each() {
    let engine = Engine::start(&[
        "--shards",
        "2",
        "--cpus",
        "0",
        "--max-frame-bytes",
        "4096",
        "--max-sockjs-sessions",
        "20",
        "--sockjs-disconnect-delay-ms",
        "1500",
    ]);
    let mut ws = Client::raw(engine.port());
    ws.subscribe("sub-0", "/sub/chat/calm");
    let mut http = Http::new(&engine);

    // Unknown session.
    let r = http.request("POST", &path("nosuch01", "xhr_send"), "", &send_body(&[CONNECT]));
    assert_eq!((r.status, r.body.as_str()), (404, "Session not found\n"));

    // Broken bodies on a live session; the session survives them.
    let connected = open_polling(&engine, "target01");
    assert!(connected.starts_with("CONNECTED"), "{connected}");
    for (body, answer) in [
        (&b"[1]"[..], "Broken JSON encoding."),
        (b"[\"a\"", "Broken JSON encoding."),
        (b"not json", "Broken JSON encoding."),
        (b"", "Payload expected."),
        (b"{\"a\":1}", "Payload expected."),
        (b"\"CONNECT\"", "Payload expected."),
    ] {
        let r = http.request("POST", &path("target01", "xhr_send"), "", body);
        assert_eq!(
            (r.status, r.body.as_str()),
            (500, answer),
            "{:?}",
            String::from_utf8_lossy(body)
        );
    }
    // Over the frame limit: 413 before the body is read, then the connection closes.
    let mut big = Http::new(&engine);
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: t\r\nOrigin: http://page.test\r\nContent-Length: 5000\r\n\r\n",
        path("target01", "xhr_send")
    );
    big.stream.write_all(head.as_bytes()).expect("write");
    let r = big.response();
    assert_eq!(r.status, 413);
    assert!(
        r.head.contains("access-control-allow-origin: http://page.test"),
        "{}",
        r.head
    );
    let mut chunked = Http::new(&engine);
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n2000\r\n",
        path("target01", "xhr_send")
    );
    chunked.stream.write_all(head.as_bytes()).expect("write");
    assert_eq!(chunked.response().status, 413);
    // Wrong method, unsupported transports.
    assert_eq!(http.request("GET", &path("target01", "xhr"), "", b"").status, 405);
    assert_eq!(http.request("GET", &path("target01", "jsonp"), "", b"").status, 404);
    assert_eq!(http.request("GET", &format!("{BASE}/iframe.html"), "", b"").status, 404);
    // The session still works.
    let ping = "SEND\ndestination:/pub/chat\n\n{\"channel\":\"calm\",\"still\":\"alive\"}\0";
    assert_eq!(
        http.request("POST", &path("target01", "xhr_send"), "", &send_body(&[ping]))
            .status,
        204
    );
    assert!(ws.frame().contains("still"));

    // A second receiving request gets c[2010,...] and is closed; the first stays.
    let mut first = Http::new(&engine);
    first
        .stream
        .write_all(b"POST /letters-chat-server/000/target01/xhr_streaming HTTP/1.1\r\nHost: t\r\n\r\n")
        .expect("write");
    first.read_until(&"h".repeat(2048));
    let mut second = Http::new(&engine);
    let r = second.request("POST", &path("target01", "xhr_streaming"), "", b"");
    assert!(r.body.ends_with("c[2010,\"Another connection still open\"]\n"), "{r:?}");
    let r = Http::new(&engine).request("POST", &path("target01", "xhr"), "", b"");
    assert_eq!(r.body, "c[2010,\"Another connection still open\"]\n");
    let subscribe = "SUBSCRIBE\nid:s\ndestination:/sub/chat/calm\nreceipt:rr\n\n\0";
    assert_eq!(
        http.request("POST", &path("target01", "xhr_send"), "", &send_body(&[subscribe]))
            .status,
        204
    );
    first.read_until("receipt-id:rr");
    drop(first);

    // A flood of new sessions: up to --max-sockjs-sessions, then 503; nobody polls them
    // again, so they close after the disconnect delay and make room.
    let mut answers = Vec::new();
    for i in 0..40 {
        answers.push(
            http.request("POST", &path(&format!("flood{i:03}"), "xhr"), "", b"")
                .status,
        );
    }
    let accepted = answers.iter().filter(|&&s| s == 200).count();
    assert_eq!(accepted, 19, "20 sessions, target01 among them: {answers:?}");
    assert_eq!(answers.iter().filter(|&&s| s == 503).count(), 21);
    eventually("the sessions close", || {
        metric(&engine, "chat_sockjs_http_sessions", "node=") == 0
    });
    assert!(metric(&engine, "chat_errors_total", "kind=\"sockjs_abandoned\"") >= 19);
    assert_eq!(
        metric(&engine, "chat_subscriptions", "node="),
        1,
        "only the WebSocket client's is left"
    );
    assert_eq!(http.request("POST", &path("after001", "xhr"), "", b"").body, "o\n");
    // An abandoned session is gone: its id starts afresh.
    assert_eq!(
        http.request("POST", &path("target01", "xhr_send"), "", b"[]").status,
        404
    );

    // The WebSocket client never noticed.
    ws.chat("calm", "still here");
    assert!(ws.frame().contains("still here"));
    for (kind, at_least) in [
        ("sockjs_unknown_session", 2),
        ("sockjs", 6),
        ("sockjs_too_big", 2),
        ("sockjs_second_receiver", 2),
        ("sockjs_sessions_full", 21),
    ] {
        let n = metric(&engine, "chat_errors_total", &format!("kind=\"{kind}\""));
        assert!(n >= at_least, "{kind}: {n} < {at_least}");
    }
}

#[test]
fn a_session_that_falls_behind_is_dropped_as_a_slow_consumer() {
    let engine = Engine::start(&[
        "--shards",
        "1",
        "--max-frame-bytes",
        "4096",
        "--max-outbound-bytes",
        "32768",
        "--sockjs-disconnect-delay-ms",
        "3000",
    ]);
    let mut ws = Client::raw(engine.port());
    ws.subscribe("sub-0", "/sub/chat/busy");
    open_polling(&engine, "slow0001");
    let mut http = Http::new(&engine);
    let subscribe = "SUBSCRIBE\nid:sub-0\ndestination:/sub/chat/busy\nreceipt:r\n\n\0";
    assert_eq!(
        http.request("POST", &path("slow0001", "xhr_send"), "", &send_body(&[subscribe]))
            .status,
        204
    );
    // Nobody polls while 80 KiB are published (the publisher reads its own echoes).
    let text = "m".repeat(1000);
    for _ in 0..80 {
        ws.chat("busy", &text);
        let frame = ws.frame();
        assert!(frame.contains(&text), "the publisher is not slowed: {frame}");
    }
    let polled = http.request("POST", &path("slow0001", "xhr"), "", b"");
    assert!(polled.body.contains("slow consumer"), "{polled:?}");
    assert!(
        polled
            .body
            .ends_with("c[1008,\"slow consumer: outbound queue full\"]\n"),
        "{polled:?}"
    );
    eventually("one slow consumer counted", || {
        metric(&engine, "chat_errors_total", "kind=\"slow_consumer\"") == 1
    });
    eventually("its subscription removed", || {
        metric(&engine, "chat_subscriptions", "node=") == 1
    });
    // A poll while the ended session lingers is told again why.
    let again = http.request("POST", &path("slow0001", "xhr"), "", b"");
    assert!(
        again.body.ends_with("c[1008,\"slow consumer: outbound queue full\"]\n"),
        "{again:?}"
    );
}

#[test]
fn sessions_nobody_polls_hold_bounded_memory() {
    let engine = Engine::start(&[
        "--shards",
        "2",
        "--cpus",
        "0",
        "--max-sockjs-sessions",
        "2000",
        "--sockjs-disconnect-delay-ms",
        "3000",
    ]);
    let rss = || metric(&engine, "process_resident_memory_bytes", "node=");
    let mut http = Http::new(&engine);
    let mut wave = |tag: &str| {
        for i in 0..2000 {
            let r = http.request("POST", &path(&format!("{tag}{i:05}"), "xhr"), "", b"");
            assert_eq!(r.status, 200, "session {i} of wave {tag}");
        }
        assert_eq!(
            http.request("POST", &path(&format!("{tag}full"), "xhr"), "", b"")
                .status,
            503
        );
        eventually("the sessions close", || {
            metric(&engine, "chat_sockjs_http_sessions", "node=") == 0
        });
    };
    let start = rss();
    wave("a");
    let after_one = rss();
    wave("b");
    let after_two = rss();
    println!("RSS {start} -> {after_one} -> {after_two}");
    // The second wave reuses what the first freed.
    assert!(
        after_two <= after_one + 4 * 1024 * 1024,
        "RSS grew {start} -> {after_one} -> {after_two}"
    );
}

/// Waits (up to 15 s) until `cond` holds.
fn eventually(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
