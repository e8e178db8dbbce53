//! Sessions with token checks on: `CONNECT` needs a good token, the token names the
//! sender and bounds the connection's life, and channel permissions refuse by name.

use super::*;

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
