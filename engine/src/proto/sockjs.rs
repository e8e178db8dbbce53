//! SockJS over its WebSocket transport, sans-IO: routes paths under the base path,
//! decodes client messages (a JSON array of strings, or one JSON string, parsed with
//! simd-json) into the STOMP byte stream, and encodes the server's `o`, `h`, `a[...]`
//! and `c[...]` frames and the `/info` body. Called by `shard/conn.rs`.

use bytes::BytesMut;

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
}

/// A bad client message.
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// Not JSON, or not a string / an array of strings (SockJS closes with 1002? no:
    /// sockjs-node closes the session; the engine closes with WebSocket 1002).
    #[error("broken JSON encoding")]
    BadJson,
}

/// Routes `path` (no query) against `base` (e.g. `/letters-chat-server`). `server` must
/// be non-empty digits-or-letters without dots (clients send 3 digits) and `session`
/// non-empty without dots or slashes. Unknown paths and other transports give `None`.
pub fn route(base: &str, path: &str) -> Option<Route> {
    let _ = (base, path);
    todo!()
}

/// Decodes one client message and appends the UTF-8 bytes of each string to `out`, in
/// order. `scratch` is reused storage for simd-json's in-place parse. Returns how many
/// strings were appended. An empty message or `[]` appends nothing.
///
/// # Errors
/// `BadJson` when `payload` is not a JSON string or array of strings.
pub fn decode_message(payload: &[u8], scratch: &mut Vec<u8>, out: &mut BytesMut) -> Result<usize, Error> {
    let _ = (payload, scratch, out);
    todo!()
}

/// The open frame.
pub const OPEN: &[u8] = b"o";
/// The heart-beat frame.
pub const HEARTBEAT: &[u8] = b"h";

/// Appends `a[` + each of `frames` as a JSON string + `]`.
pub fn encode_array(frames: &[&[u8]], out: &mut BytesMut) {
    let _ = (frames, out);
    todo!()
}

/// Appends `s` escaped as the inside of a JSON string, as SockJS servers do (quote,
/// backslash, control characters, and the code points that browsers mangle:
/// U+2028, U+2029, U+200C–U+200F, U+FFF0–U+FFFF, lone surrogates never occur in UTF-8).
pub fn escape_into(s: &[u8], out: &mut BytesMut) {
    let _ = (s, out);
    todo!()
}

/// Appends the close frame `c[code,"reason"]`.
pub fn encode_close(code: u16, reason: &str, out: &mut BytesMut) {
    let _ = (code, reason, out);
    todo!()
}

/// Appends the `/info` JSON body.
pub fn encode_info(entropy: u32, out: &mut BytesMut) {
    let _ = (entropy, out);
    todo!()
}
