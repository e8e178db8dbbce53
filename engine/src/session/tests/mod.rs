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

mod refusals;
mod tokens;
