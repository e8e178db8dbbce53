//! The session in memory: a client codec on one side, the session on the other, a clock
//! the test moves. Each test plays one flow of `protocol.md` and reads what the client
//! would see.

use std::time::{Duration, Instant, SystemTime};

use bytes::{Bytes, BytesMut};
use proto::client::{self, Event};
use proto::server;
use proto::stomp::{Command, Frame};
use proto::Framing;

use super::*;
use crate::metrics::{ErrorKind, ShardStats};

/// A client and a session joined in memory, with a controlled clock.
struct Pair {
    client: client::Codec,
    session: Session,
    settings: Settings,
    stats: ShardStats,
    out: Output,
    now: Instant,
    /// When the server last queued bytes for the client.
    last_sent: Instant,
    /// Bytes on their way to the client.
    to_client: BytesMut,
    /// Effects the session asked for, in order, with their outcomes.
    effects: Vec<Action>,
    /// What the shard answers to the next effects (default `Done`).
    answer: Outcome,
    closed: bool,
}

impl Pair {
    fn new(framing: Framing) -> Self {
        let settings = Settings {
            server: "chat-engine/test node=n shard=0".into(),
            heartbeat_ms: 10_000,
            sockjs_heartbeat: Duration::from_secs(25),
            max_subscriptions: 4,
            max_id_bytes: 16,
            max_destination_bytes: 32,
            connect_timeout: Duration::from_secs(10),
            publish_rate: Some(Rate {
                interval: Duration::from_millis(100),
                burst: 3,
            }),
            max_history: 100,
            limits: server::Limits {
                max_frame_bytes: 4096,
                max_headers: 16,
                max_line_bytes: 1024,
            },
            auth: None,
        };
        let mut out = Output::default();
        let mut session = Session::new(ConnId(7), framing, &settings);
        let now = Instant::now();
        let stats = ShardStats::default();
        session.open(&world(&settings, &stats, now), &mut out);
        let mut pair = Pair {
            client: client::Codec::new(framing, 1 << 20, 3),
            session,
            settings,
            stats,
            out,
            now,
            last_sent: now,
            to_client: BytesMut::new(),
            effects: Vec::new(),
            answer: Outcome::Done,
            closed: false,
        };
        pair.flush();
        if framing.is_sockjs() {
            assert_eq!(pair.event(), Some(Event::Open));
        }
        pair
    }

    fn flush(&mut self) {
        if !self.out.wire.is_empty() {
            self.to_client.extend_from_slice(&self.out.wire);
            self.out.wire.clear();
            self.last_sent = self.now;
        }
    }

    /// Sends raw WebSocket bytes from the client and runs the session like `conn.rs`.
    fn send_bytes(&mut self, mut bytes: BytesMut) {
        loop {
            let env = world(&self.settings, &self.stats, self.now);
            let step = self.session.on_bytes(&env, &mut bytes, &mut self.out);
            self.flush();
            match step {
                Step::Continue => return,
                Step::Close => {
                    self.closed = true;
                    return;
                }
                Step::Effect(effect) => {
                    self.effects.push(effect.action);
                    let env = world(&self.settings, &self.stats, self.now);
                    let step = self
                        .session
                        .complete(&env, effect.receipt.as_deref(), self.answer, &mut self.out);
                    self.flush();
                    if let Step::Close = step {
                        self.closed = true;
                        return;
                    }
                }
            }
        }
    }

    fn send(&mut self, command: Command, headers: &[(&str, &[u8])], body: &[u8]) {
        let mut bytes = BytesMut::new();
        self.client.encode(command, headers, body, &mut bytes);
        if self.session.framing() == Framing::SockJsHttp {
            // As `transport.rs` does: the xhr_send body, unwrapped into STOMP bytes.
            let mut request = BytesMut::new();
            client::xhr_send_request("h", "/x", &bytes, &mut request);
            let at = request.windows(4).position(|w| w == b"\r\n\r\n").expect("a head") + 4;
            bytes.clear();
            proto::sockjs::http::decode_send(&request[at..], &mut Vec::new(), &mut bytes).expect("a valid body");
        }
        self.send_bytes(bytes);
    }

    fn connect(&mut self) -> Frame {
        self.send(
            Command::Connect,
            &[("accept-version", b"1.1,1.0"), ("heart-beat", b"10000,10000")],
            b"",
        );
        let frame = self.frame();
        assert_eq!(frame.command, Command::Connected, "{frame:?}");
        frame
    }

    fn tick(&mut self, after: Duration) {
        self.now += after;
        let env = world(&self.settings, &self.stats, self.now);
        let step = self.session.on_tick(&env, self.last_sent, &mut self.out);
        self.flush();
        if let Step::Close = step {
            self.closed = true;
        }
    }

    fn event(&mut self) -> Option<Event> {
        self.client
            .decode(&mut self.to_client)
            .expect("the server speaks valid frames")
    }

    fn frame(&mut self) -> Frame {
        loop {
            match self.event() {
                Some(Event::Frame(frame)) => return frame,
                Some(Event::HeartBeat) => continue,
                other => panic!("expected a frame, got {other:?}"),
            }
        }
    }

    /// The close code the client sees last (SockJS `c[..]` and the WebSocket close agree).
    fn close_code(&mut self) -> Option<u16> {
        let mut code = None;
        while let Some(event) = self.event() {
            if let Event::Closed(c) = event {
                code = c;
            }
        }
        code
    }
}

fn world<'a>(settings: &'a Settings, stats: &'a ShardStats, now: Instant) -> Env<'a> {
    Env {
        settings,
        stats,
        now,
        wall: SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
    }
}

fn header<'f>(frame: &'f Frame, name: &str) -> &'f [u8] {
    frame.header(name.as_bytes()).unwrap_or_default()
}

#[test]
fn the_original_clients_flow_on_every_framing() {
    for framing in [Framing::SockJs, Framing::Raw, Framing::SockJsHttp] {
        let mut pair = Pair::new(framing);
        let connected = pair.connect();
        assert_eq!(header(&connected, "version"), b"1.1");
        assert_eq!(header(&connected, "heart-beat"), b"10000,10000");
        assert!(header(&connected, "server").starts_with(b"chat-engine/"));
        pair.send(
            Command::Subscribe,
            &[("id", b"sub-0"), ("destination", b"/sub/chat/global")],
            b"",
        );
        pair.send(
            Command::Send,
            &[("destination", b"/pub/chat"), ("content-length", b"26")],
            br#"{"channel":"global","m":1}"#,
        );
        assert_eq!(pair.effects.len(), 2);
        match &pair.effects[0] {
            Action::Subscribe {
                destination,
                key,
                resume,
            } => {
                assert_eq!(*resume, None);
                assert_eq!(&destination[..], b"/sub/chat/global");
                assert_eq!(key.subscription.0, Bytes::from_static(b"sub-0"));
                assert_eq!(key.framing, framing);
            }
            other => panic!("{other:?}"),
        }
        match &pair.effects[1] {
            Action::Publish(message) => {
                assert_eq!(message.channel().as_deref(), Some(&b"global"[..]));
                let body: serde_json::Value = serde_json::from_slice(&message.body).expect("json");
                assert_eq!(body["time"], "2027-01-15T08:00:00.000Z", "the server adds its time");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(pair.event(), None, "no receipts were asked for");
        assert!(!pair.closed);
    }
}

#[test]
fn receipts_follow_their_effects() {
    let mut pair = Pair::new(Framing::Raw);
    pair.connect();
    pair.send(
        Command::Subscribe,
        &[("id", b"s"), ("destination", b"/sub/chat/a"), ("receipt", b"r-1")],
        b"",
    );
    assert_eq!(header(&pair.frame(), "receipt-id"), b"r-1");
    pair.send(Command::Unsubscribe, &[("id", b"s"), ("receipt", b"r-2")], b"");
    assert_eq!(header(&pair.frame(), "receipt-id"), b"r-2");
    assert!(matches!(pair.effects[1], Action::Unsubscribe { .. }));
    // Unsubscribing an unknown id is no effect, but still a receipt.
    pair.send(Command::Unsubscribe, &[("id", b"nope"), ("receipt", b"r-3")], b"");
    assert_eq!(header(&pair.frame(), "receipt-id"), b"r-3");
    assert_eq!(pair.effects.len(), 2);
    pair.send(Command::Disconnect, &[("receipt", b"bye")], b"");
    assert_eq!(header(&pair.frame(), "receipt-id"), b"bye");
    assert_eq!(pair.close_code(), Some(1000));
    assert!(pair.closed);
}

#[test]
fn a_refused_publish_is_an_error_then_close() {
    let mut pair = Pair::new(Framing::SockJs);
    pair.connect();
    pair.answer = Outcome::Refused("cluster bus is full");
    pair.send(
        Command::Send,
        &[("destination", b"/pub/chat"), ("receipt", b"r")],
        br#"{"channel":"x"}"#,
    );
    let error = pair.frame();
    assert_eq!(error.command, Command::Error);
    assert_eq!(header(&error, "message"), b"cluster bus is full");
    assert_eq!(header(&error, "receipt-id"), b"r");
    assert_eq!(pair.close_code(), Some(1000));
    assert!(pair.closed);
}

#[test]
fn protocol_errors_get_one_answer_each() {
    type Case = (&'static str, fn(&mut Pair), Option<&'static [u8]>, u16);
    let cases: [Case; 9] = [
        (
            "frame before CONNECT",
            |p| p.send(Command::Send, &[("destination", b"/pub/chat")], b"{}"),
            Some(b"send CONNECT first"),
            1000,
        ),
        (
            "second CONNECT",
            |p| {
                p.connect();
                p.send(Command::Connect, &[], b"")
            },
            Some(b"already connected"),
            1000,
        ),
        (
            "chat body without channel",
            |p| {
                p.connect();
                p.send(Command::Send, &[("destination", b"/pub/chat")], b"{}")
            },
            Some(b"body has no non-empty string field \"channel\""),
            1000,
        ),
        (
            "unknown destination",
            |p| {
                p.connect();
                p.send(Command::Send, &[("destination", b"/topic/x")], b"{}")
            },
            Some(b"unknown destination: send to /pub/chat"),
            1000,
        ),
        (
            "SEND straight to a subscription destination",
            |p| {
                p.connect();
                p.send(Command::Send, &[("destination", b"/sub/chat/x")], b"{}")
            },
            Some(b"clients may not SEND to a subscription destination (send chat messages to /pub/chat): /sub/chat/x"),
            1000,
        ),
        (
            "transactions",
            |p| {
                p.connect();
                p.send(Command::Begin, &[("transaction", b"t")], b"")
            },
            Some(b"acknowledgements and transactions are not supported"),
            1000,
        ),
        (
            "unknown command",
            |p| {
                p.connect();
                p.send_bytes(masked(b"HELLO\n\n\0"))
            },
            Some(b"unknown command"),
            1000,
        ),
        (
            "unmasked frame",
            |p| p.send_bytes(BytesMut::from(&[0x81u8, 0x01, b'x'][..])),
            None,
            1002,
        ),
        (
            "frame over the limit",
            |p| {
                p.connect();
                p.send(Command::Send, &[("destination", b"/pub/chat")], &[b' '; 5000])
            },
            None,
            1009,
        ),
    ];
    for (name, play, message, code) in cases {
        let mut pair = Pair::new(Framing::Raw);
        play(&mut pair);
        assert!(pair.closed, "{name}: not closed");
        let mut error = None;
        let mut close = None;
        while let Some(event) = pair.event() {
            match event {
                Event::Frame(f) if f.command == Command::Error => error = Some(f),
                Event::Closed(c) => close = c,
                _ => {}
            }
        }
        assert_eq!(error.as_ref().map(|f| header(f, "message")), message, "{name}");
        assert_eq!(close, Some(code), "{name}");
    }
}

#[test]
fn subscriptions_are_checked_and_counted() {
    let mut pair = Pair::new(Framing::Raw);
    pair.connect();
    for id in [&b"a"[..], b"b", b"c", b"d"] {
        pair.send(Command::Subscribe, &[("id", id), ("destination", b"/sub/chat/x")], b"");
    }
    assert_eq!(pair.stats.subscriptions.load(std::sync::atomic::Ordering::Relaxed), 4);
    pair.send(
        Command::Subscribe,
        &[("id", b"e"), ("destination", b"/sub/chat/x")],
        b"",
    );
    let error = pair.frame();
    assert_eq!(header(&error, "message"), b"too many subscriptions");
    let held = pair.session.take_subscriptions();
    assert_eq!(held.len(), 4);

    let mut pair = Pair::new(Framing::Raw);
    pair.connect();
    pair.send(
        Command::Subscribe,
        &[("id", b"a"), ("destination", b"/sub/chat/x")],
        b"",
    );
    pair.send(
        Command::Subscribe,
        &[("id", b"a"), ("destination", b"/sub/chat/y")],
        b"",
    );
    assert_eq!(header(&pair.frame(), "message"), b"subscription id already in use");
}

#[test]
fn resumes_and_history_are_asked_for_and_answered() {
    let mut pair = Pair::new(Framing::Raw);
    pair.connect();
    let position = crate::message::Position::new(1 << 32, 7, b"n-1");
    let mut text = BytesMut::new();
    position.write(&mut text);
    pair.answer = Outcome::Recovered(true);
    pair.send(
        Command::Subscribe,
        &[
            ("id", b"a"),
            ("destination", b"/sub/chat/x"),
            ("x-since", &text),
            ("receipt", b"r1"),
        ],
        b"",
    );
    let receipt = pair.frame();
    assert_eq!(header(&receipt, "x-recovered"), b"true");
    pair.answer = Outcome::Recovered(false);
    pair.send(
        Command::Subscribe,
        &[
            ("id", b"b"),
            ("destination", b"/sub/chat/x"),
            ("x-since", b"garbage"),
            ("receipt", b"r2"),
        ],
        b"",
    );
    assert_eq!(header(&pair.frame(), "x-recovered"), b"false");
    pair.send(
        Command::Subscribe,
        &[("id", b"c"), ("destination", b"/sub/chat/x"), ("x-history", b"20")],
        b"",
    );
    let resumes: Vec<_> = pair
        .effects
        .iter()
        .map(|a| match a {
            Action::Subscribe { resume, .. } => *resume,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        resumes,
        [
            Some(Resume::Since(position)),
            Some(Resume::Unreadable),
            Some(Resume::Last(20))
        ]
    );
    // Above the cap, or not a number: an ERROR naming the header.
    pair.send(
        Command::Subscribe,
        &[("id", b"d"), ("destination", b"/sub/chat/x"), ("x-history", b"101")],
        b"",
    );
    let error = pair.frame();
    assert_eq!(
        header(&error, "message"),
        b"x-history asks for more messages than this server keeps"
    );
    assert!(pair.closed);
}

#[test]
fn stomp_1_0_subscriptions_are_named_by_destination() {
    let mut pair = Pair::new(Framing::Raw);
    pair.send(Command::Connect, &[], b"");
    assert_eq!(header(&pair.frame(), "version"), b"1.0");
    pair.send(Command::Subscribe, &[("destination", b"/sub/chat/x")], b"");
    match &pair.effects[0] {
        Action::Subscribe { key, .. } => assert_eq!(&key.subscription.0[..], b"/sub/chat/x"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn heart_beats_go_out_and_silence_closes() {
    let mut pair = Pair::new(Framing::Raw);
    pair.connect();
    pair.tick(Duration::from_secs(5));
    assert_eq!(pair.event(), None, "nothing due yet");
    pair.tick(Duration::from_secs(6));
    assert_eq!(pair.event(), Some(Event::HeartBeat));
    // The client stays silent past twice its promise plus a grace second: closed.
    pair.tick(Duration::from_secs(9));
    assert!(!pair.closed);
    pair.tick(Duration::from_millis(1500));
    assert!(pair.closed);
    assert_eq!(pair.close_code(), Some(1002));
    assert_eq!(
        pair.stats.errors[crate::metrics::ErrorKind::HeartBeatTimeout as usize]
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}

#[test]
fn traffic_postpones_heart_beats() {
    let mut pair = Pair::new(Framing::Raw);
    pair.connect();
    pair.now += Duration::from_secs(9);
    pair.last_sent = pair.now; // a delivery went out
    pair.send_bytes(BytesMut::from(&masked(b"\n")[..])); // and a client heart-beat came in
    pair.tick(Duration::from_secs(2));
    assert_eq!(pair.event(), None);
    let deadline = pair.session.next_deadline(&pair.settings, pair.last_sent);
    assert_eq!(deadline, Some(pair.last_sent + Duration::from_secs(10)));
}

#[test]
fn sockjs_sessions_send_h_frames() {
    for framing in [Framing::SockJs, Framing::SockJsHttp] {
        let mut pair = Pair::new(framing);
        // Past the CONNECT deadline it would be closed (its own test): not here.
        pair.session.connect_by = None;
        pair.tick(Duration::from_secs(26));
        assert_eq!(pair.event(), Some(Event::HeartBeat));
        assert_eq!(
            pair.session.next_deadline(&pair.settings, pair.last_sent),
            Some(pair.now + Duration::from_secs(25))
        );
    }
    let mut pair = Pair::new(Framing::SockJsHttp);
    pair.session.connect_by = None;
    pair.to_client.clear();
    pair.tick(Duration::from_secs(26));
    assert_eq!(&pair.to_client[..], b"h\n", "a bare line, no WebSocket header");
}

#[test]
fn http_transport_sessions_speak_bare_sockjs_lines() {
    let mut pair = Pair::new(Framing::SockJsHttp);
    pair.connect();
    pair.send(
        Command::Subscribe,
        &[("id", b"sub-0"), ("destination", b"/sub/chat/a")],
        b"",
    );
    match &pair.effects[0] {
        Action::Subscribe { key, .. } => assert_eq!(key.framing, Framing::SockJsHttp, "its own wire form"),
        other => panic!("{other:?}"),
    }
    pair.to_client.clear();
    pair.send(Command::Disconnect, &[("receipt", b"bye")], b"");
    assert!(pair.closed);
    let text = String::from_utf8_lossy(&pair.to_client).into_owned();
    assert_eq!(text, "a[\"RECEIPT\\nreceipt-id:bye\\n\\n\\u0000\"]\nc[1000,\"\"]\n");
    // A broken frame: ERROR, then c[...], never a WebSocket close frame.
    let mut pair = Pair::new(Framing::SockJsHttp);
    pair.send_bytes(BytesMut::from(&b"NOPE\n\n\0"[..]));
    assert!(pair.closed);
    assert_eq!(pair.frame().command, Command::Error);
    assert_eq!(pair.close_code(), Some(1000));
    assert!(pair.to_client.is_empty());
}

#[test]
fn pings_are_answered_and_closes_echoed() {
    let mut pair = Pair::new(Framing::Raw);
    let mut bytes = BytesMut::new();
    proto::ws::encode_frame(proto::ws::OpCode::Ping, b"hi", Some([1, 2, 3, 4]), &mut bytes);
    pair.send_bytes(bytes);
    assert_eq!(
        &pair.to_client[..],
        &[0x8a, 0x02, b'h', b'i'][..],
        "a pong with the ping's payload"
    );
    pair.to_client.clear();
    let mut bytes = BytesMut::new();
    proto::ws::encode_close(4001, "", Some([1, 2, 3, 4]), &mut bytes);
    pair.send_bytes(bytes);
    assert!(pair.closed);
    assert_eq!(pair.close_code(), Some(4001));
}

fn masked(payload: &[u8]) -> BytesMut {
    let mut out = BytesMut::new();
    proto::ws::encode_frame(proto::ws::OpCode::Text, payload, Some([5, 6, 7, 8]), &mut out);
    out
}

/// How many errors of `kind` the pair's shard counted.
fn counted(pair: &Pair, kind: crate::metrics::ErrorKind) -> u64 {
    pair.stats.errors[kind as usize].load(std::sync::atomic::Ordering::Relaxed)
}

/// The `ERROR` a closed pair got, its `receipt-id`, and its close code.
fn refusal(pair: &mut Pair) -> (Vec<u8>, Option<Vec<u8>>, Option<u16>) {
    assert!(pair.closed, "not closed");
    let error = pair.frame();
    assert_eq!(error.command, Command::Error);
    let receipt = error.header(b"receipt-id").map(<[u8]>::to_vec);
    (header(&error, "message").to_vec(), receipt, pair.close_code())
}

#[test]
fn limits_get_an_error_naming_them_and_are_counted_by_kind() {
    use crate::metrics::ErrorKind;
    type Case = (fn(&mut Pair), &'static [u8], ErrorKind);
    let cases: [Case; 5] = [
        (
            |p| {
                p.send(
                    Command::Subscribe,
                    &[("id", &[b'i'; 17]), ("destination", b"/sub/chat/x")],
                    b"",
                )
            },
            b"subscription id too long",
            ErrorKind::IdTooLong,
        ),
        (
            |p| p.send(Command::Subscribe, &[("id", b"s"), ("destination", &[b'd'; 33])], b""),
            b"destination too long",
            ErrorKind::DestinationTooLong,
        ),
        (
            |p| p.send(Command::Send, &[("destination", &[b'd'; 33])], b"{}"),
            b"destination too long",
            ErrorKind::DestinationTooLong,
        ),
        (
            |p| {
                p.send(
                    Command::Subscribe,
                    &[("id", b"s"), ("destination", b"/sub/chat/x"), ("x", &[b'v'; 1023])],
                    b"",
                )
            },
            b"header line too long",
            ErrorKind::HeaderLineTooLong,
        ),
        (
            |p| {
                p.send(
                    Command::Send,
                    &[("destination", b"/pub/chat"), ("receipt", &[b'r'; 17])],
                    b"{}",
                )
            },
            b"receipt id too long",
            ErrorKind::IdTooLong,
        ),
    ];
    for (play, message, kind) in cases {
        let mut pair = Pair::new(Framing::Raw);
        pair.connect();
        play(&mut pair);
        let (got, receipt, close) = refusal(&mut pair);
        assert_eq!(got, message, "{}", String::from_utf8_lossy(message));
        assert_eq!(receipt, None, "an over-long receipt is never echoed");
        assert_eq!(close, Some(1000));
        assert_eq!(counted(&pair, kind), 1, "{kind:?}");
        assert!(pair.effects.is_empty());
    }
    // At the limits, all is well.
    let mut pair = Pair::new(Framing::Raw);
    pair.connect();
    pair.send(
        Command::Subscribe,
        &[
            ("id", &[b'i'; 16]),
            ("destination", &[b'd'; 32]),
            ("receipt", &[b'r'; 16]),
        ],
        b"",
    );
    assert_eq!(header(&pair.frame(), "receipt-id"), &[b'r'; 16]);
    assert!(!pair.closed);
    // Too many subscriptions has its own kind too.
    for id in [&b"a"[..], b"b", b"c", b"e"] {
        pair.send(Command::Subscribe, &[("id", id), ("destination", b"/sub/chat/x")], b"");
    }
    assert_eq!(refusal(&mut pair).0, b"too many subscriptions");
    assert_eq!(counted(&pair, ErrorKind::TooManySubscriptions), 1);
}

#[test]
fn sends_over_the_rate_get_an_error_and_the_connection_stays() {
    let mut pair = Pair::new(Framing::SockJs);
    pair.connect();
    let send = |pair: &mut Pair, receipt: &[u8]| {
        pair.send(
            Command::Send,
            &[("destination", b"/pub/chat"), ("receipt", receipt)],
            br#"{"channel":"x"}"#,
        );
        pair.frame()
    };
    // A burst of 3, then one per 100 ms.
    for r in [&b"1"[..], b"2", b"3"] {
        assert_eq!(send(&mut pair, r).command, Command::Receipt);
    }
    let error = send(&mut pair, b"4");
    assert_eq!(error.command, Command::Error);
    assert_eq!(header(&error, "receipt-id"), b"4");
    assert!(header(&error, "message").starts_with(b"publish rate exceeded"));
    assert!(!pair.closed, "a refused SEND does not end the session");
    assert_eq!(pair.effects.len(), 3, "the refused message went nowhere");
    assert_eq!(counted(&pair, crate::metrics::ErrorKind::PublishRate), 1);
    pair.now += Duration::from_millis(100);
    assert_eq!(send(&mut pair, b"5").command, Command::Receipt);
    assert_eq!(send(&mut pair, b"6").command, Command::Error);
    pair.now += Duration::from_secs(10);
    for r in [&b"7"[..], b"8", b"9"] {
        assert_eq!(
            send(&mut pair, r).command,
            Command::Receipt,
            "the burst refills, no more"
        );
    }
    assert_eq!(send(&mut pair, b"10").command, Command::Error);
}

#[test]
fn a_full_kafka_buffer_rejects_the_send_and_keeps_the_session() {
    let mut pair = Pair::new(Framing::Raw);
    pair.connect();
    pair.answer = Outcome::Rejected("cluster bus is full");
    pair.send(
        Command::Send,
        &[("destination", b"/pub/chat"), ("receipt", b"r")],
        br#"{"channel":"x"}"#,
    );
    let error = pair.frame();
    assert_eq!(
        (header(&error, "message"), header(&error, "receipt-id")),
        (&b"cluster bus is full"[..], &b"r"[..])
    );
    assert!(!pair.closed);
    pair.answer = Outcome::Done;
    pair.send(
        Command::Send,
        &[("destination", b"/pub/chat"), ("receipt", b"s")],
        br#"{"channel":"x"}"#,
    );
    assert_eq!(header(&pair.frame(), "receipt-id"), b"s");
}

#[test]
fn a_connection_that_never_connects_is_closed_at_the_deadline() {
    for framing in [Framing::Raw, Framing::SockJs, Framing::SockJsHttp] {
        let mut pair = Pair::new(framing);
        let opened = pair.now;
        assert_eq!(
            pair.session
                .next_deadline(&pair.settings, pair.last_sent)
                .map(|d| d.min(opened + Duration::from_secs(10))),
            Some(opened + Duration::from_secs(10))
        );
        pair.tick(Duration::from_secs(9));
        assert!(!pair.closed);
        pair.tick(Duration::from_secs(1));
        assert!(pair.closed, "{framing:?}");
        assert_eq!(pair.close_code(), Some(1008));
        assert_eq!(counted(&pair, crate::metrics::ErrorKind::ConnectTimeout), 1);
    }
    // CONNECT in time clears it.
    let mut pair = Pair::new(Framing::Raw);
    pair.connect();
    pair.send_bytes(masked(b"\n"));
    pair.tick(Duration::from_secs(10));
    assert!(!pair.closed);
}

/// A pair whose session checks HS256 tokens signed with [`SECRET`].
fn authenticated_pair(framing: Framing) -> Pair {
    let mut pair = Pair::new(framing);
    let key = jsonwebtoken::DecodingKey::from_secret(SECRET);
    pair.settings.auth = Some(Arc::new(auth::Verifier::new(key, &[jsonwebtoken::Algorithm::HS256])));
    pair
}

const SECRET: &[u8] = b"session test secret";

/// A token for `sub`, valid for `secs` after the tests' wall clock, with `chat` if given.
fn token(sub: &str, secs: u64, chat: Option<serde_json::Value>) -> String {
    let mut claims = serde_json::json!({"sub": sub, "exp": 1_800_000_000 + secs});
    if let Some(chat) = chat {
        claims["chat"] = chat;
    }
    let key = jsonwebtoken::EncodingKey::from_secret(SECRET);
    jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).expect("signs")
}

fn connect_with(pair: &mut Pair, headers: &[(&str, &[u8])]) -> Frame {
    let mut all: Vec<(&str, &[u8])> = vec![("accept-version", b"1.2"), ("heart-beat", b"0,0")];
    all.extend_from_slice(headers);
    pair.send(Command::Connect, &all, b"");
    pair.frame()
}

#[test]
fn without_a_key_tokens_are_not_asked_for() {
    let mut pair = Pair::new(Framing::Raw);
    pair.connect();
    pair.send(
        Command::Send,
        &[("destination", b"/pub/chat")],
        br#"{"channel":"c","sender":"anyone"}"#,
    );
    let Some(Action::Publish(message)) = pair.effects.last() else {
        panic!("{:?}", pair.effects)
    };
    let body: serde_json::Value = serde_json::from_slice(&message.body).expect("json");
    assert_eq!(
        body["sender"], "anyone",
        "without authentication the sender is the client's"
    );
}

#[test]
fn connect_needs_a_good_token() {
    let bearer = format!("Bearer {}", token("alice", 60, None));
    let forged = {
        let good = token("alice", 60, None);
        format!("Bearer {}x", &good[..good.len() - 1])
    };
    let (expired, good) = (token("alice", 0, None), token("alice", 60, None));
    type Case<'a> = (&'a [(&'a str, &'a [u8])], Option<&'a [u8]>);
    let cases: [Case; 6] = [
        (
            &[],
            Some(b"authentication required: send Authorization:Bearer <token> in CONNECT"),
        ),
        (
            &[("Authorization", b"Basic YTpi")],
            Some(b"authentication required: send Authorization:Bearer <token> in CONNECT"),
        ),
        (&[("Authorization", forged.as_bytes())], Some(b"invalid token")),
        (&[("passcode", expired.as_bytes())], Some(b"token expired")),
        (&[("Authorization", bearer.as_bytes())], None),
        (&[("login", b"x"), ("passcode", good.as_bytes())], None),
    ];
    for (headers, refused) in cases {
        let mut pair = authenticated_pair(Framing::SockJs);
        let frame = connect_with(&mut pair, headers);
        match refused {
            Some(message) => {
                assert_eq!(frame.command, Command::Error, "{headers:?}");
                assert_eq!(header(&frame, "message"), message);
                assert_eq!(pair.close_code(), Some(1000));
                assert!(pair.closed);
                assert_eq!(
                    pair.stats.errors[ErrorKind::Auth as usize].load(std::sync::atomic::Ordering::Relaxed),
                    1
                );
            }
            None => assert_eq!(frame.command, Command::Connected, "{headers:?}: {frame:?}"),
        }
    }
}

#[test]
fn the_token_names_the_sender() {
    let mut pair = authenticated_pair(Framing::Raw);
    let bearer = format!("Bearer {}", token("alice@letters.test", 60, None));
    connect_with(&mut pair, &[("Authorization", bearer.as_bytes())]);
    pair.send(
        Command::Send,
        &[("destination", b"/pub/chat")],
        br#"{"channel":"c","sender":"mallory","message":"hi","time":"1999"}"#,
    );
    let Some(Action::Publish(message)) = pair.effects.last() else {
        panic!("{:?}", pair.effects)
    };
    let body: serde_json::Value = serde_json::from_slice(&message.body).expect("json");
    assert_eq!(body["sender"], "alice@letters.test");
    assert_eq!(body["message"], "hi");
    assert_eq!(body["time"], "2027-01-15T08:00:00.000Z");
}

#[test]
fn channel_permissions_refuse_and_name_the_destination() {
    let chat = serde_json::json!({"subscribe": ["team-*"], "publish": ["team-red"]});
    let bearer = format!("Bearer {}", token("bob", 60, Some(chat)));
    let mut pair = authenticated_pair(Framing::Raw);
    connect_with(&mut pair, &[("Authorization", bearer.as_bytes())]);
    pair.send(
        Command::Subscribe,
        &[("id", b"0"), ("destination", b"/sub/chat/team-blue")],
        b"",
    );
    pair.send(
        Command::Send,
        &[("destination", b"/pub/chat")],
        br#"{"channel":"team-red","message":"ok"}"#,
    );
    assert_eq!(pair.effects.len(), 2, "{:?}", pair.effects);
    pair.send(
        Command::Subscribe,
        &[("id", b"1"), ("destination", b"/sub/chat/staff")],
        b"",
    );
    let error = pair.frame();
    assert_eq!(error.command, Command::Error);
    assert_eq!(
        header(&error, "message"),
        b"forbidden: this token may not subscribe to /sub/chat/staff"
    );
    assert!(pair.closed);

    let mut pair = authenticated_pair(Framing::Raw);
    connect_with(&mut pair, &[("Authorization", bearer.as_bytes())]);
    pair.send(
        Command::Send,
        &[("destination", b"/pub/chat"), ("receipt", b"r")],
        br#"{"channel":"team-blue","message":"no"}"#,
    );
    let error = pair.frame();
    assert_eq!(
        header(&error, "message"),
        b"forbidden: this token may not publish to /sub/chat/team-blue"
    );
    assert_eq!(header(&error, "receipt-id"), b"r");
    assert!(pair.effects.is_empty() && pair.closed);
    assert_eq!(
        pair.stats.errors[ErrorKind::Forbidden as usize].load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}

#[test]
fn an_expiring_token_ends_the_connection_on_time() {
    for framing in [Framing::Raw, Framing::SockJs, Framing::SockJsHttp] {
        let mut pair = authenticated_pair(framing);
        let bearer = format!("Bearer {}", token("carol", 30, None));
        connect_with(&mut pair, &[("Authorization", bearer.as_bytes())]);
        let expiry = pair
            .session
            .next_deadline(&pair.settings, pair.last_sent)
            .expect("a deadline");
        assert!(expiry <= pair.now + Duration::from_secs(30), "the expiry is a deadline");
        pair.tick(Duration::from_secs(29));
        assert!(!pair.closed);
        pair.tick(Duration::from_secs(1));
        let error = pair.frame();
        assert_eq!(error.command, Command::Error, "{framing:?}");
        assert_eq!(header(&error, "message"), b"token expired");
        assert_eq!(pair.close_code(), Some(1000));
        assert!(pair.closed);
    }
}
