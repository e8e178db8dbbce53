//! SockJS: routes, frames as Spring and its clients write them, JSON string arrays and
//! their escaping.

use super::*;
use crate::stomp;
use proptest::prelude::*;

fn decode(payload: &[u8]) -> Result<(usize, Vec<u8>), Error> {
    let mut out = BytesMut::new();
    let n = decode_message(payload, &mut Vec::new(), &mut out)?;
    Ok((n, out.to_vec()))
}

fn escaped(s: &[u8]) -> Vec<u8> {
    let mut out = BytesMut::new();
    escape_into(s, &mut out);
    out.to_vec()
}

#[test]
fn routes() {
    for base in ["/letters-chat-server", "/letters-chat-server/"] {
        let r = |path| route(base, path);
        assert_eq!(r("/letters-chat-server"), Some(Route::Greeting));
        assert_eq!(r("/letters-chat-server/"), Some(Route::Greeting));
        assert_eq!(r("/letters-chat-server/info"), Some(Route::Info));
        assert_eq!(r("/letters-chat-server/info?t=1712345678"), Some(Route::Info));
        assert_eq!(r("/letters-chat-server/websocket"), Some(Route::RawWebSocket));
        assert_eq!(
            r("/letters-chat-server/123/abcdefgh/websocket"),
            Some(Route::SockJsWebSocket)
        );
        assert_eq!(
            r("/letters-chat-server/123/abcdefgh/websocket/"),
            Some(Route::SockJsWebSocket)
        );
        assert_eq!(
            r("/letters-chat-server/a1/x-y_z/websocket"),
            Some(Route::SockJsWebSocket)
        );
        for path in [
            "/letters-chat-serverx",
            "/letters-chat-serverx/info",
            "/other/info",
            "/",
            "",
            "/letters-chat-server//",
            "/letters-chat-server/123/abcdefgh/xhr_polling",
            "/letters-chat-server/123/abc.def/xhr",
            "/letters-chat-server/123/abcdefgh/websocket/more",
            "/letters-chat-server/123/abc.def/websocket",
            "/letters-chat-server/1.3/abc/websocket",
            "/letters-chat-server/1-3/abc/websocket",
            "/letters-chat-server//abc/websocket",
            "/letters-chat-server/123//websocket",
            "/letters-chat-server/123/websocket",
        ] {
            assert_eq!(r(path), None, "{path}");
        }
    }
    let r = |path: &str| route("/letters-chat-server", path);
    for (name, transport) in [
        ("xhr", http::Transport::Xhr),
        ("xhr_send", http::Transport::XhrSend),
        ("xhr_streaming", http::Transport::XhrStreaming),
        ("eventsource", http::Transport::EventSource),
        ("htmlfile", http::Transport::Unsupported),
        ("jsonp", http::Transport::Unsupported),
        ("jsonp_send", http::Transport::Unsupported),
    ] {
        let path = format!("/letters-chat-server/123/abcdefgh/{name}");
        assert_eq!(r(&path), Some(Route::Http(transport)), "{path}");
        assert_eq!(session_id("/letters-chat-server", &path), Some("abcdefgh"));
    }
    let long = format!("/letters-chat-server/1/{}/xhr", "s".repeat(MAX_SESSION_ID_BYTES + 1));
    assert_eq!(r(&long), None);
    assert_eq!(r("/letters-chat-server/iframe.html"), Some(Route::Iframe));
    assert_eq!(r("/letters-chat-server/iframe-1.6.1.html"), Some(Route::Iframe));
    assert_eq!(session_id("/letters-chat-server", "/letters-chat-server/info"), None);
    assert_eq!(route("/", "/"), Some(Route::Greeting));
    assert_eq!(route("/", "/info"), Some(Route::Info));
    assert_eq!(route("/ws", "/ws/websocket"), Some(Route::RawWebSocket));
}

// Client messages of protocol.md "Observed on the wire", verbatim.
const OBSERVED: [&[u8]; 3] = [
    br#"["CONNECT\naccept-version:1.1,1.0\nheart-beat:10000,10000\n\n\u0000"]"#,
    br#"["SUBSCRIBE\nid:sub-0\ndestination:/sub/chat/global\n\n\u0000"]"#,
    br#"["SEND\ndestination:/pub/chat\ncontent-length:97\n\n{\"channel\":\"global\",\"sender\":\"alice@letters.test\",\"message\":\"hello from alice\"}\u0000"]"#,
];

#[test]
fn observed_client_messages_decode_to_stomp_frames() {
    let frames: [&[u8]; 3] = [
        b"CONNECT\naccept-version:1.1,1.0\nheart-beat:10000,10000\n\n\0",
        b"SUBSCRIBE\nid:sub-0\ndestination:/sub/chat/global\n\n\0",
        b"SEND\ndestination:/pub/chat\ncontent-length:97\n\n{\"channel\":\"global\",\"sender\":\"alice@letters.test\",\"message\":\"hello from alice\"}\0",
    ];
    for (message, frame) in OBSERVED.iter().zip(frames) {
        assert_eq!(decode(message), Ok((1, frame.to_vec())));
    }
    // Into the STOMP decoder, as conn.rs chains them.
    let mut scratch = Vec::new();
    let mut stream = BytesMut::new();
    let mut decoder = stomp::Decoder::new(stomp::Limits {
        max_frame_bytes: 65536,
        max_headers: 32,
        max_line_bytes: 8 * 1024,
    });
    let mut commands = Vec::new();
    for message in &OBSERVED[..2] {
        assert_eq!(decode_message(message, &mut scratch, &mut stream), Ok(1));
        while let Ok(Some(stomp::Item::Frame(f))) = decoder.decode(&mut stream) {
            commands.push(f.command);
        }
    }
    assert_eq!(commands, [stomp::Command::Connect, stomp::Command::Subscribe]);
    assert!(stream.is_empty());
}

#[test]
fn observed_server_frames_encode() {
    let mut frame = BytesMut::new();
    let headers: [(&str, &[u8]); 2] = [("version", b"1.1"), ("heart-beat", b"0,0")];
    stomp::encode_frame(
        stomp::Command::Connected,
        &headers,
        b"",
        stomp::Version::V1_1,
        &mut frame,
    );
    let mut out = BytesMut::new();
    encode_array(&[&frame], &mut out);
    assert_eq!(&out[..], br#"a["CONNECTED\nversion:1.1\nheart-beat:0,0\n\n\u0000"]"#);

    let body = br#"{"channel":"global","sender":"alice@letters.test","message":"hello from alice"}"#;
    let headers: [(&str, &[u8]); 5] = [
        ("destination", b"/sub/chat/global"),
        ("content-type", b"application/json"),
        ("subscription", b"sub-0"),
        ("message-id", b"b12qidpr-4"),
        ("content-length", b"79"),
    ];
    frame.clear();
    stomp::encode_frame(
        stomp::Command::Message,
        &headers,
        body,
        stomp::Version::V1_1,
        &mut frame,
    );
    out.clear();
    encode_array(&[&frame], &mut out);
    let expected = concat!(
        r#"a["MESSAGE\ndestination:/sub/chat/global\ncontent-type:application/json\nsubscription:sub-0\n"#,
        r#"message-id:b12qidpr-4\ncontent-length:79\n\n{\"channel\":\"global\",\"sender\":\"alice@letters.test\","#,
        r#"\"message\":\"hello from alice\"}\u0000"]"#,
    );
    assert_eq!(std::str::from_utf8(&out), Ok(expected));
}

#[test]
fn decodes_strings_and_arrays() {
    assert_eq!(decode(b""), Ok((0, vec![])));
    assert_eq!(decode(b"[]"), Ok((0, vec![])));
    assert_eq!(decode(br#""a""#), Ok((1, b"a".to_vec())));
    assert_eq!(decode(br#"["a","bc",""]"#), Ok((3, b"abc".to_vec())));
    assert_eq!(decode(br#" [ "a" , "b" ] "#), Ok((2, b"ab".to_vec())));
    assert_eq!(decode(br#"["\n"]"#), Ok((1, b"\n".to_vec())));
    assert_eq!(
        decode(br#"["\u0000\"\\\/\b\f\n\r\t"]"#),
        Ok((1, b"\0\"\\/\x08\x0c\n\r\t".to_vec()))
    );
    assert_eq!(
        decode(r#"["\u00e9\ud83d\ude00é😀"]"#.as_bytes()),
        Ok((1, "é😀é😀".as_bytes().to_vec()))
    );
}

#[test]
fn rejects_everything_else() {
    for bad in [
        &b" "[..],
        b"[",
        b"a",
        b"null",
        b"1",
        b"{}",
        b"[1]",
        b"[null]",
        br#"["a",1]"#,
        br#"[["a"]]"#,
        br#"["a",["b"]]"#,
        br#"[{"a":"b"}]"#,
        br#"["a"]x"#,
        br#"["a"],["b"]"#,
        br#"["a\x"]"#,
        b"[\"\xff\"]",
        b"[\"a\nb\"]",
    ] {
        assert_eq!(decode(bad), Err(Error::BadJson), "{:?}", String::from_utf8_lossy(bad));
    }
}

#[test]
fn scratch_and_output_are_reused() {
    let mut scratch = Vec::new();
    let mut out = BytesMut::new();
    assert_eq!(decode_message(br#"["a"]"#, &mut scratch, &mut out), Ok(1));
    assert_eq!(decode_message(br#"["bcd"]"#, &mut scratch, &mut out), Ok(1));
    assert_eq!(decode_message(br#"[1]"#, &mut scratch, &mut out), Err(Error::BadJson));
    assert_eq!(decode_message(br#""e""#, &mut scratch, &mut out), Ok(1));
    assert_eq!(&out[..], b"abcde");
}

#[test]
fn escapes_like_spring() {
    assert_eq!(escaped(b"plain /text/ here"), b"plain /text/ here");
    assert_eq!(
        escaped(b"\"\\\n\r\t\x08\x0c\0\x01\x1f\x7f"),
        br#"\"\\\n\r\t\b\f\u0000\u0001\u001f"#.iter().copied().chain([0x7f]).collect::<Vec<_>>()
    );
    assert_eq!(
        escaped("a\u{2028}b\u{2029}\u{200c}\u{200f}\u{202f}\u{2060}\u{206f}".as_bytes()),
        br"a\u2028b\u2029\u200c\u200f\u202f\u2060\u206f"
    );
    assert_eq!(escaped("\u{fff0}\u{ffff}".as_bytes()), br"\ufff0\uffff");
    // Neighbours that are left alone.
    let kept = "\u{200b}\u{2010}\u{2019}\u{2027}\u{2030}\u{205f}\u{2070}\u{feff}\u{ffef}é😀中";
    assert_eq!(escaped(kept.as_bytes()), kept.as_bytes());
    // A truncated or invalid sequence is copied as is.
    assert_eq!(escaped(b"\xe2\x80"), b"\xe2\x80");
    assert_eq!(escaped(b"\xef\xbf\x41"), b"\xef\xbf\x41");
}

/// The escaping rules, one `char` at a time.
fn reference_escape(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\0'..='\u{1f}'
            | '\u{200c}'..='\u{200f}'
            | '\u{2028}'..='\u{202f}'
            | '\u{2060}'..='\u{206f}'
            | '\u{fff0}'..='\u{ffff}' => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out
}

#[test]
fn word_scan_agrees_with_reference_at_every_alignment() {
    let pieces = [
        "a", "\"", "\\", "\n", "\u{1}", "\u{2028}", "\u{2019}", "\u{ffff}", "\u{feff}", "é", "xxxxxxx",
    ];
    for (i, special) in pieces.iter().enumerate() {
        for pad in 0..17 {
            let s = format!(
                "{}{}{}{}",
                "x".repeat(pad),
                special,
                "y".repeat(16 - pad),
                pieces[(i + 3) % pieces.len()]
            );
            assert_eq!(escaped(s.as_bytes()), reference_escape(&s).as_bytes(), "{s:?}");
        }
    }
}

#[test]
fn encodes_frames() {
    let mut out = BytesMut::new();
    encode_array(&[], &mut out);
    assert_eq!(&out[..], b"a[]");
    out.clear();
    encode_array(&[b"a", b"b\"c"], &mut out);
    assert_eq!(&out[..], br#"a["a","b\"c"]"#);
    out.clear();
    encode_close(3000, "Go away!", &mut out);
    assert_eq!(&out[..], br#"c[3000,"Go away!"]"#);
    out.clear();
    encode_close(1002, "Broken \"framing\"", &mut out);
    assert_eq!(&out[..], br#"c[1002,"Broken \"framing\""]"#);
    out.clear();
    encode_info(0, &mut out);
    assert_eq!(
        &out[..],
        br#"{"entropy":0,"origins":["*:*"],"cookie_needed":false,"websocket":true}"#
    );
    out.clear();
    encode_info(u32::MAX, &mut out);
    assert_eq!(
        &out[..],
        br#"{"entropy":4294967295,"origins":["*:*"],"cookie_needed":false,"websocket":true}"#
    );
    assert_eq!((OPEN, HEARTBEAT), (&b"o"[..], &b"h"[..]));
}

proptest! {
    #[test]
    fn escape_then_decode_round_trips(s in any::<String>()) {
        let mut message = b"[\"".to_vec();
        message.extend_from_slice(&escaped(s.as_bytes()));
        message.extend_from_slice(b"\"]");
        prop_assert_eq!(decode(&message), Ok((1, s.as_bytes().to_vec())));
        prop_assert_eq!(serde_json::from_slice::<Vec<String>>(&message).ok(), Some(vec![s.clone()]));
        prop_assert_eq!(escaped(s.as_bytes()), reference_escape(&s).into_bytes());
    }

    #[test]
    fn array_frames_decode_back(frames in prop::collection::vec(any::<String>(), 0..5)) {
        let refs: Vec<&[u8]> = frames.iter().map(|f| f.as_bytes()).collect();
        let mut out = BytesMut::new();
        encode_array(&refs, &mut out);
        prop_assert_eq!(out.first(), Some(&b'a'));
        prop_assert_eq!(decode(&out[1..]), Ok((frames.len(), frames.concat().into_bytes())));
    }
}
