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
mod tests;
