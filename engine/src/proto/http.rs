//! HTTP/1.1 for the engine's front door, sans-IO: parses a request head with httparse
//! into the few facts the engine routes on, validates a WebSocket upgrade (RFC 6455
//! §4.2.1), and writes responses into a caller-owned buffer. `shard/conn.rs` calls it
//! once per request before handing leftover bytes to `ws::Decoder`.

use bytes::BytesMut;
use smallvec::SmallVec;

/// The parts of a request head the engine routes on; borrowed from the read buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request<'a> {
    /// `GET`, `OPTIONS`, ...
    pub method: &'a str,
    /// The path without the query.
    pub path: &'a str,
    /// The query after `?`, if any.
    pub query: Option<&'a str>,
    /// `Upgrade` header value, if present.
    pub upgrade: Option<&'a str>,
    /// `Connection` header value, if present.
    pub connection: Option<&'a str>,
    /// `Sec-WebSocket-Key`.
    pub ws_key: Option<&'a str>,
    /// `Sec-WebSocket-Version`.
    pub ws_version: Option<&'a str>,
    /// Every offered subprotocol from all `Sec-WebSocket-Protocol` headers, trimmed.
    pub protocols: SmallVec<[&'a str; 4]>,
    /// `Origin`.
    pub origin: Option<&'a str>,
    /// `Access-Control-Request-Headers` (CORS preflight).
    pub cors_request_headers: Option<&'a str>,
    /// `Content-Length`, parsed (requests with bodies are read and ignored).
    pub content_length: usize,
    /// True for HTTP/1.1 without `Connection: close`.
    pub keep_alive: bool,
}

/// A rejected request; `status()` is the answer to send.
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// The head is not valid HTTP/1.x (400).
    #[error("malformed request: {0}")]
    Malformed(&'static str),
    /// The head is over the size limit or has too many headers (431).
    #[error("request head too large")]
    TooLarge,
    /// A WebSocket upgrade that breaks RFC 6455 §4.2.1 (400); the text names the rule.
    #[error("bad websocket upgrade: {0}")]
    BadUpgrade(&'static str),
    /// `Sec-WebSocket-Version` other than 13 (426 with `Sec-WebSocket-Version: 13`).
    #[error("unsupported websocket version")]
    UnsupportedVersion,
}

impl Error {
    /// The HTTP status code for this error.
    pub fn status(&self) -> u16 {
        todo!()
    }
}

/// Parses a request head from the start of `buf`. `Ok(None)`: incomplete, read more.
/// `Ok(Some((req, n)))`: the head is `buf[..n]`; bytes after it belong to the next
/// layer (or the body of `content_length`).
///
/// # Errors
/// `TooLarge` once `buf` holds more than `max_head_bytes` without a complete head, or
/// more than 32 headers; `Malformed` otherwise.
pub fn parse_request(buf: &[u8], max_head_bytes: usize) -> Result<Option<(Request<'_>, usize)>, Error> {
    let _ = (buf, max_head_bytes);
    todo!()
}

impl Request<'_> {
    /// True when the request asks for a WebSocket upgrade (`Upgrade: websocket`,
    /// case-insensitive), valid or not.
    pub fn wants_websocket(&self) -> bool {
        todo!()
    }

    /// Validates a WebSocket upgrade (§4.2.1: GET, HTTP/1.1, `Connection` contains the
    /// `upgrade` token, key decodes to 16 bytes, version 13) and returns the key.
    ///
    /// # Errors
    /// `BadUpgrade` or `UnsupportedVersion`.
    pub fn check_upgrade(&self) -> Result<&str, Error> {
        todo!()
    }

    /// The first of `supported` (in the server's order of preference) that the client
    /// offered, if any.
    pub fn select_protocol(&self, supported: &[&'static str]) -> Option<&'static str> {
        let _ = supported;
        todo!()
    }
}

/// `Sec-WebSocket-Accept` for `key` (§4.2.2: base64 of SHA-1 of key + GUID).
pub fn accept_key(key: &str) -> String {
    let _ = key;
    todo!()
}

/// Appends a `101 Switching Protocols` answer, echoing `protocol` when chosen.
pub fn write_upgrade(key: &str, protocol: Option<&str>, out: &mut BytesMut) {
    let _ = (key, protocol, out);
    todo!()
}

/// Appends a complete response with `Content-Length`, the given extra headers and body.
/// `keep_alive == false` adds `Connection: close`.
pub fn write_response(
    status: u16,
    headers: &[(&str, &str)],
    body: &[u8],
    keep_alive: bool,
    out: &mut BytesMut,
) {
    let _ = (status, headers, body, keep_alive, out);
    todo!()
}

/// The reason phrase of the statuses the engine sends.
pub fn reason(status: u16) -> &'static str {
    let _ = status;
    todo!()
}
