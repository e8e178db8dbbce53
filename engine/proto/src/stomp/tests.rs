//! STOMP names, version and heart-beat negotiation, the session clock, and frame encoding
//! with escaping per version.

use super::*;

#[test]
fn names_and_messages() {
    let all = [
        Command::Connect,
        Command::Stomp,
        Command::Send,
        Command::Subscribe,
        Command::Unsubscribe,
        Command::Ack,
        Command::Nack,
        Command::Begin,
        Command::Commit,
        Command::Abort,
        Command::Disconnect,
        Command::Connected,
        Command::Message,
        Command::Receipt,
        Command::Error,
    ];
    for command in all {
        assert_eq!(Command::parse(command.as_str().as_bytes()), Some(command));
    }
    assert_eq!(Version::V1_0.as_str(), "1.0");
    assert_eq!(Version::V1_1.as_str(), "1.1");
    assert_eq!(Version::V1_2.as_str(), "1.2");
    assert_eq!(
        Error::Malformed("header line without ':'").message(),
        "header line without ':'"
    );
    assert_eq!(Error::TooBig.message(), "frame too large");
    assert_eq!(
        Error::UnsupportedVersion.message(),
        "supported protocol versions are 1.0,1.1,1.2"
    );
}

#[test]
fn version_negotiation() {
    assert_eq!(negotiate_version(None), Ok(Version::V1_0));
    assert_eq!(negotiate_version(Some(b"1.1,1.0")), Ok(Version::V1_1));
    assert_eq!(negotiate_version(Some(b"1.0,1.1,1.2")), Ok(Version::V1_2));
    assert_eq!(negotiate_version(Some(b"1.2, 1.0")), Ok(Version::V1_2));
    assert_eq!(negotiate_version(Some(b"2.0,1.0")), Ok(Version::V1_0));
    assert_eq!(negotiate_version(Some(b"2.0")), Err(Error::UnsupportedVersion));
    assert_eq!(negotiate_version(Some(b"")), Err(Error::UnsupportedVersion));
}

#[test]
fn heart_beat_negotiation() {
    let hb = |send_ms, recv_ms, header| HeartBeat {
        send_ms,
        recv_ms,
        header,
    };
    // The classic client and a server that can do 10 s both ways.
    assert_eq!(
        negotiate_heartbeat(Some(b"10000,10000"), 10_000, 10_000),
        Ok(hb(10_000, 10_000, (10_000, 10_000)))
    );
    // The larger period wins in each direction.
    assert_eq!(
        negotiate_heartbeat(Some(b"4000,20000"), 10_000, 5_000),
        Ok(hb(20_000, 5_000, (10_000, 5_000)))
    );
    // A zero on either side switches that direction off.
    assert_eq!(
        negotiate_heartbeat(Some(b"0,10000"), 10_000, 10_000),
        Ok(hb(10_000, 0, (10_000, 0)))
    );
    assert_eq!(
        negotiate_heartbeat(Some(b"10000,0"), 10_000, 10_000),
        Ok(hb(0, 10_000, (0, 10_000)))
    );
    assert_eq!(negotiate_heartbeat(Some(b"10000,10000"), 0, 0), Ok(hb(0, 0, (0, 0))));
    assert_eq!(negotiate_heartbeat(None, 10_000, 10_000), Ok(hb(0, 0, (0, 0))));
    assert_eq!(
        negotiate_heartbeat(Some(b" 1000 , 2000 "), 1, 1),
        Ok(hb(2000, 1000, (1, 1)))
    );
    for bad in [
        &b""[..],
        b"1000",
        b"a,1",
        b"1,",
        b",1",
        b"1,2,3",
        b"-1,2",
        b"99999999999999999999999,1",
    ] {
        assert_eq!(
            negotiate_heartbeat(Some(bad), 1, 1),
            Err(Error::BadHeartBeat),
            "{bad:?}"
        );
    }
}

#[test]
fn session_clock() {
    let t0 = Instant::now();
    let ms = |n| t0 + Duration::from_millis(n);
    let mut s = Clock::new(
        HeartBeat {
            send_ms: 1000,
            recv_ms: 3000,
            header: (1000, 3000),
        },
        t0,
    );
    assert_eq!(s.next_deadline(), Some(ms(1000)));
    assert_eq!(s.on_tick(ms(999)), Tick::Idle);
    assert_eq!(s.on_tick(ms(1000)), Tick::SendHeartBeat);
    assert_eq!(s.next_deadline(), Some(ms(2000)));
    s.on_sent(ms(1500));
    assert_eq!(s.next_deadline(), Some(ms(2500)));
    assert_eq!(s.on_tick(ms(2000)), Tick::Idle);
    s.on_received(ms(2000));
    // Receive timeout: 2 * 3000 + 1000 after the last byte received.
    assert_eq!(s.on_tick(ms(7999)), Tick::SendHeartBeat);
    s.on_sent(ms(7999));
    assert_eq!(s.next_deadline(), Some(ms(8999)));
    s.on_sent(ms(8500));
    assert_eq!(s.next_deadline(), Some(ms(9000)));
    assert_eq!(s.on_tick(ms(9000)), Tick::TimedOut);

    let off = Clock::new(
        HeartBeat {
            send_ms: 0,
            recv_ms: 0,
            header: (0, 0),
        },
        t0,
    );
    assert_eq!(off.next_deadline(), None);
    let mut recv_only = Clock::new(
        HeartBeat {
            send_ms: 0,
            recv_ms: 10,
            header: (0, 10),
        },
        t0,
    );
    assert_eq!(recv_only.next_deadline(), Some(ms(1020)));
    assert_eq!(recv_only.on_tick(ms(100_000)), Tick::TimedOut);
    let mut huge = Clock::new(
        HeartBeat {
            send_ms: u64::MAX,
            recv_ms: u64::MAX,
            header: (0, 0),
        },
        t0,
    );
    assert_eq!(huge.on_tick(ms(100_000)), Tick::Idle);
}

#[test]
fn encodes_frames() {
    let mut out = BytesMut::new();
    encode_frame(
        Command::Connected,
        &[("version", b"1.1"), ("heart-beat", b"0,0")],
        b"",
        Version::V1_1,
        &mut out,
    );
    assert_eq!(&out[..], b"CONNECTED\nversion:1.1\nheart-beat:0,0\n\n\0");

    out.clear();
    let headers: [(&str, &[u8]); 2] = [("destination", b"/sub/chat/a:b"), ("message-id", b"x\\y\nz\r")];
    encode_frame(Command::Message, &headers, b"{}", Version::V1_2, &mut out);
    assert_eq!(
        &out[..],
        b"MESSAGE\ndestination:/sub/chat/a\\cb\nmessage-id:x\\\\y\\nz\\r\n\n{}\0"
    );

    out.clear();
    encode_frame(
        Command::Connected,
        &[("server", b"a:b\\c")],
        b"",
        Version::V1_2,
        &mut out,
    );
    assert_eq!(&out[..], b"CONNECTED\nserver:a:b\\c\n\n\0");
}

#[test]
fn escapes_per_version() {
    let escaped = |value: &[u8], version| {
        let mut out = BytesMut::new();
        escape_into(value, version, &mut out);
        out
    };
    assert_eq!(&escaped(b"a:b\\c\nd\re", Version::V1_0)[..], b"a:b\\c\nd\re");
    assert_eq!(&escaped(b"a:b\\c\nd\re", Version::V1_1)[..], b"a\\cb\\\\c\\nd\re");
    assert_eq!(&escaped(b"a:b\\c\nd\re", Version::V1_2)[..], b"a\\cb\\\\c\\nd\\re");
    assert_eq!(&escaped(b"", Version::V1_2)[..], b"");
}
