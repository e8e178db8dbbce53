//! What a session refuses and how it says so: protocol errors, limits, publish rate, a
//! full Kafka buffer and a client that never connects. Each gets one answer the client
//! can read and one count by kind.

use super::*;

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
