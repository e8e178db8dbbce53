//! HTTP/1.1 for the engine's front door, sans-IO: parses a request head with httparse
//! into the few facts the engine routes on, validates a WebSocket upgrade (RFC 6455
//! §4.2.1), finds where a body ends (`Content-Length`, or chunked as Node's http client
//! sends SockJS's `xhr_send`), and writes responses into a caller-owned buffer.
//! `shard/conn.rs` calls it once per request before handing leftover bytes to
//! `ws::Decoder`.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use bytes::BytesMut;
use sha1::{Digest, Sha1};
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
    /// `X-Forwarded-For` (the first such header), as a proxy in front sets it.
    pub forwarded_for: Option<&'a str>,
    /// `X-Real-IP`, as Nginx sets it.
    pub real_ip: Option<&'a str>,
    /// `Authorization` (the HTTP API's `Bearer` key).
    pub authorization: Option<&'a str>,
    /// `Content-Length`, parsed (0 when absent or chunked).
    pub content_length: usize,
    /// `Transfer-Encoding: chunked`: the body is read with [`decode_chunked`].
    pub chunked: bool,
    /// True for HTTP/1.1 without `Connection: close`.
    pub keep_alive: bool,
    /// The HTTP minor version: 1 for HTTP/1.1, 0 for HTTP/1.0.
    pub minor_version: u8,
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
    /// A request body over the limit (413).
    #[error("request body too large")]
    BodyTooLarge,
}

impl Error {
    /// The HTTP status code for this error.
    pub fn status(&self) -> u16 {
        match self {
            Error::Malformed(_) | Error::BadUpgrade(_) => 400,
            Error::TooLarge => 431,
            Error::UnsupportedVersion => 426,
            Error::BodyTooLarge => 413,
        }
    }
}

/// Parses a request head from the start of `buf`. `Ok(None)`: incomplete, read more.
/// `Ok(Some((req, n)))`: the head is `buf[..n]`; bytes after it belong to the next
/// layer (or the body: `content_length` bytes, or chunks when `chunked`). Of a repeated
/// single-valued header the first one counts. `Transfer-Encoding` other than `chunked`
/// is refused, since the engine could not tell where such a body ends, and so is one
/// next to a `Content-Length` (RFC 9112 §6.1: a sign of request smuggling).
///
/// # Errors
/// `TooLarge` once `buf` holds more than `max_head_bytes` without a complete head, or
/// more than 32 headers; `Malformed` otherwise.
pub fn parse_request(buf: &[u8], max_head_bytes: usize) -> Result<Option<(Request<'_>, usize)>, Error> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    let head_bytes = match parsed.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        // Partial input is not an error until it outgrows the limit.
        Ok(httparse::Status::Partial) if buf.len() > max_head_bytes => return Err(Error::TooLarge),
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(Error::TooLarge),
        Err(e) => return Err(Error::Malformed(describe(e))),
    };
    if head_bytes > max_head_bytes {
        return Err(Error::TooLarge);
    }
    // A complete parse always fills these three.
    let (Some(method), Some(target), Some(minor_version)) = (parsed.method, parsed.path, parsed.version) else {
        return Err(Error::Malformed("incomplete request line"));
    };
    let (path, query) = match target.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (target, None),
    };
    let mut request = Request {
        method,
        path,
        query,
        upgrade: None,
        connection: None,
        ws_key: None,
        ws_version: None,
        protocols: SmallVec::new(),
        origin: None,
        cors_request_headers: None,
        forwarded_for: None,
        real_ip: None,
        authorization: None,
        content_length: 0,
        chunked: false,
        keep_alive: minor_version >= 1,
        minor_version,
    };
    let mut content_length = None;
    for header in parsed.headers.iter() {
        let name = header.name;
        let slot = if name.eq_ignore_ascii_case("upgrade") {
            &mut request.upgrade
        } else if name.eq_ignore_ascii_case("connection") {
            // `close` in any Connection header ends keep-alive (RFC 9112 §9.6).
            if has_token(value_str(header.value)?, "close") {
                request.keep_alive = false;
            }
            &mut request.connection
        } else if name.eq_ignore_ascii_case("sec-websocket-key") {
            &mut request.ws_key
        } else if name.eq_ignore_ascii_case("sec-websocket-version") {
            &mut request.ws_version
        } else if name.eq_ignore_ascii_case("sec-websocket-protocol") {
            let offered = value_str(header.value)?
                .split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty());
            request.protocols.extend(offered);
            continue;
        } else if name.eq_ignore_ascii_case("origin") {
            &mut request.origin
        } else if name.eq_ignore_ascii_case("access-control-request-headers") {
            &mut request.cors_request_headers
        } else if name.eq_ignore_ascii_case("x-forwarded-for") {
            &mut request.forwarded_for
        } else if name.eq_ignore_ascii_case("x-real-ip") {
            &mut request.real_ip
        } else if name.eq_ignore_ascii_case("authorization") {
            &mut request.authorization
        } else if name.eq_ignore_ascii_case("content-length") {
            let length = parse_content_length(header.value)?;
            // RFC 9112 §6.3: differing lengths make the message boundary unknowable.
            if content_length.is_some_and(|first| first != length) {
                return Err(Error::Malformed("conflicting Content-Length headers"));
            }
            content_length = Some(length);
            continue;
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            if request.chunked || !value_str(header.value)?.eq_ignore_ascii_case("chunked") {
                return Err(Error::Malformed("only Transfer-Encoding: chunked is supported"));
            }
            request.chunked = true;
            continue;
        } else {
            continue;
        };
        if slot.is_none() {
            *slot = Some(value_str(header.value)?);
        }
    }
    if request.chunked && content_length.is_some() {
        return Err(Error::Malformed("Content-Length with Transfer-Encoding"));
    }
    request.content_length = content_length.unwrap_or(0);
    Ok(Some((request, head_bytes)))
}

/// Decodes a chunked body (RFC 9112 §7.1) from the start of `buf` into `out`.
/// `Ok(None)`: not complete yet (`out` is left as it was; call again with more bytes).
/// `Ok(Some(n))`: the body, trailers included, is `buf[..n]`, and its data was appended.
/// Chunk extensions and trailer fields are skipped.
///
/// # Errors
/// `BodyTooLarge` once the data would pass `max_bytes`; `Malformed` for bad chunk syntax.
pub fn decode_chunked(buf: &[u8], max_bytes: usize, out: &mut BytesMut) -> Result<Option<usize>, Error> {
    let start = out.len();
    let mut at = 0;
    let mut data = 0usize;
    let result = 'body: loop {
        let Some(line_end) = find_crlf(&buf[at..]) else {
            break Ok(None);
        };
        let line = &buf[at..at + line_end];
        let size_part = line.split(|&b| b == b';').next().unwrap_or_default().trim_ascii();
        if size_part.is_empty() || size_part.len() > 8 || !size_part.iter().all(u8::is_ascii_hexdigit) {
            break Err(Error::Malformed("bad chunk size"));
        }
        // At most 8 hex digits: no overflow.
        let size = size_part.iter().fold(0usize, |n, &b| {
            n * 16 + char::from(b).to_digit(16).map_or(0, |d| d as usize)
        });
        at += line_end + 2;
        if size == 0 {
            // Trailer fields, each ending in CRLF, then an empty line.
            loop {
                match find_crlf(&buf[at..]) {
                    None => break 'body Ok(None),
                    Some(0) => return Ok(Some(at + 2)),
                    Some(n) => at += n + 2,
                }
            }
        }
        data += size;
        if data > max_bytes {
            break Err(Error::BodyTooLarge);
        }
        if buf.len() < at + size + 2 {
            break Ok(None);
        }
        if &buf[at + size..at + size + 2] != b"\r\n" {
            break Err(Error::Malformed("chunk data not followed by CRLF"));
        }
        out.extend_from_slice(&buf[at..at + size]);
        at += size + 2;
    };
    out.truncate(start);
    result
}

impl Request<'_> {
    /// True when the request asks for a WebSocket upgrade (`Upgrade: websocket`,
    /// case-insensitive), valid or not.
    pub fn wants_websocket(&self) -> bool {
        self.upgrade.is_some_and(|upgrade| has_token(upgrade, "websocket"))
    }

    /// Validates a WebSocket upgrade (§4.2.1: GET, HTTP/1.1, `Connection` contains the
    /// `upgrade` token, key decodes to 16 bytes, version 13) and returns the key.
    ///
    /// # Errors
    /// `BadUpgrade` or `UnsupportedVersion`.
    pub fn check_upgrade(&self) -> Result<&str, Error> {
        // §4.2.1 items 1 to 6, in order.
        if self.method != "GET" {
            return Err(Error::BadUpgrade("method must be GET"));
        }
        if self.minor_version < 1 {
            return Err(Error::BadUpgrade("HTTP/1.1 required"));
        }
        if !self.wants_websocket() {
            return Err(Error::BadUpgrade("Upgrade must name websocket"));
        }
        if !self
            .connection
            .is_some_and(|connection| has_token(connection, "upgrade"))
        {
            return Err(Error::BadUpgrade("Connection must name upgrade"));
        }
        // §4.4: any other (or no) version is answered with 426 and the one we speak.
        if self.ws_version != Some("13") {
            return Err(Error::UnsupportedVersion);
        }
        let key = self.ws_key.ok_or(Error::BadUpgrade("missing Sec-WebSocket-Key"))?;
        // A 16-byte nonce is 24 base64 characters; decoding into 18 bytes leaves
        // room for the two that `==` padding could otherwise have meant.
        let mut nonce = [0u8; 18];
        if key.len() != 24 || BASE64.decode_slice(key, &mut nonce) != Ok(16) {
            return Err(Error::BadUpgrade("Sec-WebSocket-Key must be 16 bytes in base64"));
        }
        Ok(key)
    }

    /// The first of `supported` (in the server's order of preference) that the client
    /// offered, if any.
    pub fn select_protocol(&self, supported: &[&'static str]) -> Option<&'static str> {
        // Subprotocol names are case-sensitive tokens (§4.1).
        supported.iter().copied().find(|wanted| self.protocols.contains(wanted))
    }
}

/// `Sec-WebSocket-Accept` for `key` (§4.2.2: base64 of SHA-1 of key + GUID).
pub fn accept_key(key: &str) -> String {
    let mut sha1 = Sha1::new();
    sha1.update(key.as_bytes());
    sha1.update(WEBSOCKET_GUID);
    BASE64.encode(sha1.finalize())
}

/// Appends a `101 Switching Protocols` answer, echoing `protocol` when chosen.
pub fn write_upgrade(key: &str, protocol: Option<&str>, out: &mut BytesMut) {
    out.extend_from_slice(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n");
    push_header(out, "Sec-WebSocket-Accept", &accept_key(key));
    if let Some(protocol) = protocol {
        push_header(out, "Sec-WebSocket-Protocol", protocol);
    }
    out.extend_from_slice(b"\r\n");
}

/// Appends a complete response with `Content-Length`, the given extra headers and body.
/// `keep_alive == false` adds `Connection: close`. A 1xx or 204 answer carries neither
/// `Content-Length` nor a body (RFC 9110 §8.6, §15.3.5).
pub fn write_response(status: u16, headers: &[(&str, &str)], body: &[u8], keep_alive: bool, out: &mut BytesMut) {
    let has_body = !(100..200).contains(&status) && status != 204;
    out.reserve(64 + body.len());
    write_head(status, headers, has_body.then_some(body.len()), keep_alive, out);
    if has_body {
        out.extend_from_slice(body);
    }
}

/// Appends a response head: status line, `headers`, `Content-Length` when `length` is
/// given, `Connection: close` unless `keep_alive`. A response with a body but without a
/// length must not be kept alive: its body ends when the connection closes (RFC 9112
/// §6.3, item 8), as SockJS's streaming responses do here.
pub fn write_head(status: u16, headers: &[(&str, &str)], length: Option<usize>, keep_alive: bool, out: &mut BytesMut) {
    out.extend_from_slice(b"HTTP/1.1 ");
    push_decimal(out, usize::from(status));
    out.extend_from_slice(b" ");
    out.extend_from_slice(reason(status).as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in headers {
        push_header(out, name, value);
    }
    if let Some(length) = length {
        out.extend_from_slice(b"Content-Length: ");
        push_decimal(out, length);
        out.extend_from_slice(b"\r\n");
    }
    if !keep_alive {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// The reason phrase of the statuses the engine sends (empty for others, which
/// HTTP/1.1 allows).
pub fn reason(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        202 => "Accepted",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Payload Too Large",
        426 => "Upgrade Required",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "",
    }
}

/// A header value as text without surrounding whitespace.
fn value_str(value: &[u8]) -> Result<&str, Error> {
    std::str::from_utf8(value)
        .map(|v| v.trim_matches([' ', '\t']))
        .map_err(|_| Error::Malformed("header value is not UTF-8"))
}

/// Whether the comma-separated `list` holds `token`, ignoring ASCII case.
fn has_token(list: &str, token: &str) -> bool {
    list.split(',').any(|item| item.trim().eq_ignore_ascii_case(token))
}

/// `Content-Length`: one or more digits (RFC 9110 §8.6), no sign, no overflow.
fn parse_content_length(value: &[u8]) -> Result<usize, Error> {
    let digits = value_str(value)?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::Malformed("Content-Length is not a number"));
    }
    digits
        .parse()
        .map_err(|_| Error::Malformed("Content-Length is too large"))
}

/// A static description of an httparse error.
fn describe(error: httparse::Error) -> &'static str {
    match error {
        httparse::Error::HeaderName => "invalid header name",
        httparse::Error::HeaderValue => "invalid header value",
        httparse::Error::NewLine => "invalid line ending",
        httparse::Error::Status => "invalid status",
        httparse::Error::Token => "invalid token in the request line",
        httparse::Error::TooManyHeaders => "too many headers",
        httparse::Error::Version => "invalid HTTP version",
    }
}

/// Where the first CRLF of `buf` starts.
fn find_crlf(buf: &[u8]) -> Option<usize> {
    memchr::memmem::find(buf, b"\r\n")
}

/// Appends `name: value\r\n`.
fn push_header(out: &mut BytesMut, name: &str, value: &str) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Appends `n` in decimal without going through `fmt`.
fn push_decimal(out: &mut BytesMut, mut n: usize) {
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
    out.extend_from_slice(&digits[start..]);
}

/// Most headers a request may carry (more is 431).
const MAX_HEADERS: usize = 32;
/// §1.3: the GUID appended to the key before hashing.
const WEBSOCKET_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

#[cfg(test)]
mod tests;
