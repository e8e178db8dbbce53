//! SockJS over its WebSocket transport, sans-IO: routes paths under the base path,
//! decodes client messages (a JSON array of strings, or one JSON string, parsed with
//! simd-json) into the STOMP byte stream, and encodes the server's `o`, `h`, `a[...]`
//! and `c[...]` frames and the `/info` body. Called by `shard/conn.rs`. The HTTP
//! transports' own parts (bodies, preludes, event-stream lines) are in [`http`].

pub mod http;

use std::cell::RefCell;

use bytes::{BufMut, BytesMut};
use simd_json::{Buffers, Node, Tape};

/// Where a request under the base path goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `{base}` or `{base}/`: the greeting (`Welcome to SockJS!\n`); an upgrade here is 400.
    Greeting,
    /// `{base}/info` (any query).
    Info,
    /// `{base}/{server}/{session}/websocket`: SockJS framing over WebSocket.
    SockJsWebSocket,
    /// `{base}/websocket`: raw STOMP over WebSocket.
    RawWebSocket,
    /// `{base}/{server}/{session}/{transport}` for an HTTP transport; the session id is
    /// [`session_id`]'s.
    Http(http::Transport),
    /// `{base}/iframe.html` (and `iframe-<version>.html`): the page of the iframe-based
    /// transports, which the engine does not serve (see [`http::Transport::Unsupported`]).
    Iframe,
}

/// A bad client message.
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// Not JSON, or not a string / an array of strings (sockjs-node closes the session;
    /// the engine closes with WebSocket 1002).
    #[error("broken JSON encoding")]
    BadJson,
}

/// Routes `path` (no query) against `base` (e.g. `/letters-chat-server`). `server` must
/// be non-empty digits-or-letters without dots (clients send 3 digits) and `session`
/// non-empty without dots or slashes (at most [`MAX_SESSION_ID_BYTES`] for the HTTP
/// transports, whose sessions the server keeps by id). Unknown paths and transports give
/// `None`.
///
/// `base` may end in `/`. As in sockjs-node, one trailing `/` on `path` is accepted,
/// and a stray `?query` is ignored.
pub fn route(base: &str, path: &str) -> Option<Route> {
    let rest = under(base, path)?;
    if rest.is_empty() {
        return Some(Route::Greeting);
    }
    match rest.strip_prefix('/')? {
        "info" => Some(Route::Info),
        "websocket" => Some(Route::RawWebSocket),
        page if page.starts_with("iframe") && page.ends_with(".html") && !page.contains('/') => Some(Route::Iframe),
        rest => {
            let (_, session, transport) = session_path(rest)?;
            match transport {
                "websocket" => Some(Route::SockJsWebSocket),
                _ if session.len() > MAX_SESSION_ID_BYTES => None,
                transport => http::Transport::from_name(transport).map(Route::Http),
            }
        }
    }
}

/// The session id of a `{base}/{server}/{session}/{transport}` path, as [`route`] checks it.
pub fn session_id<'p>(base: &str, path: &'p str) -> Option<&'p str> {
    let rest = under(base, path)?.strip_prefix('/')?;
    session_path(rest).map(|(_, session, _)| session)
}

/// Longest session id the HTTP transports accept (sockjs-client sends 8 characters).
pub const MAX_SESSION_ID_BYTES: usize = 64;

/// What follows `base` in `path`, without the query and one trailing `/`.
fn under<'p>(base: &str, path: &'p str) -> Option<&'p str> {
    let base = base.trim_end_matches('/');
    let path = path.split_once('?').map_or(path, |(path, _)| path);
    let rest = path.strip_prefix(base)?;
    Some(rest.strip_suffix('/').unwrap_or(rest))
}

/// `server/session/transport`, each part checked.
fn session_path(rest: &str) -> Option<(&str, &str, &str)> {
    let mut parts = rest.split('/');
    let (server, session, transport) = (parts.next()?, parts.next()?, parts.next()?);
    let valid = parts.next().is_none()
        && !server.is_empty()
        && server.bytes().all(|b| b.is_ascii_alphanumeric())
        && !session.is_empty()
        && !session.contains('.');
    valid.then_some((server, session, transport))
}

/// Decodes one client message and appends the UTF-8 bytes of each string to `out`, in
/// order. `scratch` is reused storage for simd-json's in-place parse. Returns how many
/// strings were appended. An empty message or `[]` appends nothing.
///
/// # Errors
/// `BadJson` when `payload` is not a JSON string or array of strings.
pub fn decode_message(payload: &[u8], scratch: &mut Vec<u8>, out: &mut BytesMut) -> Result<usize, Error> {
    if payload.is_empty() {
        return Ok(0);
    }
    scratch.clear();
    scratch.extend_from_slice(payload);
    PARSER.with(|parser| {
        // Only this function borrows it, and it does not call itself.
        let Ok(mut parser) = parser.try_borrow_mut() else {
            return decode_tape(scratch, &mut Buffers::default(), &mut Tape(Vec::new()), out);
        };
        let parser = &mut *parser;
        let mut tape = parser.tape.take().unwrap_or_else(|| Tape(Vec::new())).reset();
        let result = decode_tape(scratch, &mut parser.buffers, &mut tape, out);
        parser.tape = Some(tape.reset());
        result
    })
}

/// The open frame.
pub const OPEN: &[u8] = b"o";
/// The heart-beat frame.
pub const HEARTBEAT: &[u8] = b"h";

/// Appends `a[` + each of `frames` as a JSON string + `]`.
pub fn encode_array(frames: &[&[u8]], out: &mut BytesMut) {
    let len: usize = frames.iter().map(|f| f.len() + 3).sum();
    out.reserve(len + 3);
    out.put_slice(b"a[");
    for (i, frame) in frames.iter().enumerate() {
        if i > 0 {
            out.put_u8(b',');
        }
        out.put_u8(b'"');
        escape_into(frame, out);
        out.put_u8(b'"');
    }
    out.put_u8(b']');
}

/// Appends `s` escaped as the inside of a JSON string, as SockJS servers do (quote,
/// backslash, control characters, and the code points that browsers mangle).
///
/// The set is Spring's (`AbstractSockJsMessageCodec`), the server the engine replaces:
/// U+0000–U+001F, U+200C–U+200F, U+2028–U+202F, U+2060–U+206F and U+FFF0–U+FFFF
/// (lone surrogates never occur in UTF-8). `\n`, `\r`, `\t`, `\b`, `\f` use their short
/// forms, the rest `\u00XX`. `s` should be UTF-8; other bytes are copied unchanged.
pub fn escape_into(s: &[u8], out: &mut BytesMut) {
    out.reserve(s.len());
    let mut run_start = 0;
    let mut from = 0;
    while let Some(i) = find_candidate(s, from) {
        let b = s[i];
        let mut hex = [b'\\', b'u', b'0', b'0', 0, 0];
        let (escaped, len): (&[u8], usize) = match b {
            b'"' => (b"\\\"", 1),
            b'\\' => (b"\\\\", 1),
            b'\n' => (b"\\n", 1),
            b'\r' => (b"\\r", 1),
            b'\t' => (b"\\t", 1),
            0x08 => (b"\\b", 1),
            0x0c => (b"\\f", 1),
            0x00..=0x1f => {
                hex[4] = HEX[usize::from(b >> 4)];
                hex[5] = HEX[usize::from(b & 0xf)];
                (&hex, 1)
            }
            _ => match special_code_point(s.get(i..i + 3)) {
                Some(cp) => {
                    for (k, slot) in hex[2..].iter_mut().enumerate() {
                        *slot = HEX[usize::from((cp >> (12 - 4 * k)) & 0xf)];
                    }
                    (&hex, 3)
                }
                None => {
                    from = i + 1;
                    continue;
                }
            },
        };
        out.put_slice(&s[run_start..i]);
        out.put_slice(escaped);
        run_start = i + len;
        from = run_start;
    }
    out.put_slice(&s[run_start..]);
}

/// Appends the close frame `c[code,"reason"]`.
pub fn encode_close(code: u16, reason: &str, out: &mut BytesMut) {
    out.put_slice(b"c[");
    put_decimal(u64::from(code), out);
    out.put_slice(b",\"");
    escape_into(reason.as_bytes(), out);
    out.put_slice(b"\"]");
}

/// Appends the `/info` JSON body.
pub fn encode_info(entropy: u32, out: &mut BytesMut) {
    out.put_slice(b"{\"entropy\":");
    put_decimal(u64::from(entropy), out);
    out.put_slice(b",\"origins\":[\"*:*\"],\"cookie_needed\":false,\"websocket\":true}");
}

/// simd-json's reusable buffers, one set per thread (per shard).
struct Parser {
    buffers: Buffers,
    tape: Option<Tape<'static>>,
}

thread_local! {
    static PARSER: RefCell<Parser> = RefCell::new(Parser { buffers: Buffers::default(), tape: None });
}

/// Parses `json` in place and appends its strings to `out`.
fn decode_tape<'de>(
    json: &'de mut [u8],
    buffers: &mut Buffers,
    tape: &mut Tape<'de>,
    out: &mut BytesMut,
) -> Result<usize, Error> {
    simd_json::fill_tape(json, buffers, tape).map_err(|_| Error::BadJson)?;
    let nodes = tape.0.as_slice();
    let strings = match nodes.split_first() {
        Some((Node::String(_), [])) => nodes,
        // `count` includes nested nodes: equal to `len` means no nested containers.
        Some((Node::Array { len, count }, rest)) if len == count && rest.len() == *count => rest,
        _ => return Err(Error::BadJson),
    };
    for node in strings {
        match node {
            Node::String(s) => out.extend_from_slice(s.as_bytes()),
            _ => return Err(Error::BadJson),
        }
    }
    Ok(strings.len())
}

/// The first index at or after `from` whose byte may need escaping: a control
/// character, `"`, `\`, or the lead byte (0xE2, 0xEF) of a special code point.
fn find_candidate(s: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    // Eight bytes at a time while none of them is a candidate.
    while let Some(chunk) = s.get(i..i + 8) {
        let mut word = [0; 8];
        word.copy_from_slice(chunk);
        if word_has_candidate(u64::from_le_bytes(word)) {
            break;
        }
        i += 8;
    }
    s.get(i..)?
        .iter()
        .position(|&b| CANDIDATE[usize::from(b)])
        .map(|p| i + p)
}

/// Whether any byte of `x` is a candidate (exact: no false positives or negatives).
fn word_has_candidate(x: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let has_zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGHS != 0;
    // A byte below 0x20; exact for "any byte" as long as the bound is at most 0x80.
    let has_control = x.wrapping_sub(ONES * 0x20) & !x & HIGHS != 0;
    has_control
        || has_zero(x ^ (ONES * u64::from(b'"')))
        || has_zero(x ^ (ONES * u64::from(b'\\')))
        || has_zero(x ^ (ONES * 0xE2))
        || has_zero(x ^ (ONES * 0xEF))
}

/// The code point of a three-byte UTF-8 sequence if it must be escaped.
fn special_code_point(seq: Option<&[u8]>) -> Option<u16> {
    let &[b0, b1, b2] = seq? else {
        return None;
    };
    if b1 & 0xC0 != 0x80 || b2 & 0xC0 != 0x80 {
        return None;
    }
    let cp = (u16::from(b0 & 0x0F) << 12) | (u16::from(b1 & 0x3F) << 6) | u16::from(b2 & 0x3F);
    matches!(cp, 0x200C..=0x200F | 0x2028..=0x202F | 0x2060..=0x206F | 0xFFF0..=0xFFFF).then_some(cp)
}

/// Appends `n` in decimal.
fn put_decimal(mut n: u64, out: &mut BytesMut) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.put_slice(&digits[start..]);
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Bytes that `escape_into` must look at: controls, `"`, `\`, and lead bytes 0xE2/0xEF.
const CANDIDATE: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = true;
        b += 1;
    }
    table[b'"' as usize] = true;
    table[b'\\' as usize] = true;
    table[0xE2] = true;
    table[0xEF] = true;
    table
};

#[cfg(test)]
mod tests {
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
}
