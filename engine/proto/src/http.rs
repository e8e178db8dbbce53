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
mod tests {
    use super::*;

    const MAX_HEAD_BYTES: usize = 8192;

    /// What Chrome sends to the SockJS WebSocket transport (two protocol headers added).
    const BROWSER_UPGRADE: &[u8] = b"GET /letters-chat-server/123/x1y2z3/websocket HTTP/1.1\r\n\
        Host: localhost:8080\r\n\
        Connection: Upgrade\r\n\
        Pragma: no-cache\r\n\
        Cache-Control: no-cache\r\n\
        User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36\r\n\
        Upgrade: websocket\r\n\
        Origin: http://localhost:3000\r\n\
        Sec-WebSocket-Version: 13\r\n\
        Accept-Encoding: gzip, deflate, br, zstd\r\n\
        Accept-Language: ko-KR,ko;q=0.9,en-US;q=0.8\r\n\
        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
        Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\
        Sec-WebSocket-Protocol: v12.stomp, v11.stomp\r\n\
        Sec-WebSocket-Protocol: v10.stomp\r\n\
        \r\n";

    const SOCKJS_INFO: &[u8] = b"GET /letters-chat-server/info?t=1712345678901 HTTP/1.1\r\n\
        Host: localhost:8080\r\n\
        Connection: keep-alive\r\n\
        Accept: */*\r\n\
        Origin: http://localhost:3000\r\n\
        Referer: http://localhost:3000/\r\n\
        \r\n";

    fn parse(head: &[u8]) -> Result<Option<(Request<'_>, usize)>, Error> {
        parse_request(head, MAX_HEAD_BYTES)
    }

    fn complete(head: &[u8]) -> Request<'_> {
        match parse(head) {
            Ok(Some((request, n))) => {
                assert_eq!(n, head.len());
                request
            }
            other => panic!("not a complete head: {other:?}"),
        }
    }

    /// `BROWSER_UPGRADE` with the header line starting `name:` replaced by `line`
    /// (dropped when `line` is empty).
    fn upgrade_with(name: &str, line: &str) -> Vec<u8> {
        let head = std::str::from_utf8(BROWSER_UPGRADE).expect("ASCII");
        let mut out = String::new();
        for l in head.split_inclusive("\r\n") {
            if l.starts_with(name) {
                if !line.is_empty() {
                    out.push_str(line);
                    out.push_str("\r\n");
                }
            } else {
                out.push_str(l);
            }
        }
        out.into_bytes()
    }

    #[test]
    fn browser_upgrade_request() {
        let mut buf = BROWSER_UPGRADE.to_vec();
        // A client may send its first frame right behind the head.
        buf.extend_from_slice(&[0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d]);
        let Ok(Some((request, n))) = parse(&buf) else {
            panic!("not parsed")
        };
        assert_eq!(n, BROWSER_UPGRADE.len());
        assert_eq!(request.method, "GET");
        assert_eq!(request.path, "/letters-chat-server/123/x1y2z3/websocket");
        assert_eq!(request.query, None);
        assert_eq!(request.upgrade, Some("websocket"));
        assert_eq!(request.connection, Some("Upgrade"));
        assert_eq!(request.ws_key, Some("dGhlIHNhbXBsZSBub25jZQ=="));
        assert_eq!(request.ws_version, Some("13"));
        assert_eq!(request.protocols.as_slice(), ["v12.stomp", "v11.stomp", "v10.stomp"]);
        assert_eq!(request.origin, Some("http://localhost:3000"));
        assert_eq!(request.content_length, 0);
        assert!(request.keep_alive);
        assert_eq!(request.minor_version, 1);
        assert!(request.wants_websocket());
        assert_eq!(request.check_upgrade(), Ok("dGhlIHNhbXBsZSBub25jZQ=="));
        assert_eq!(
            request.select_protocol(&["v12.stomp", "v11.stomp", "v10.stomp"]),
            Some("v12.stomp")
        );
        // The server's order wins over the client's.
        assert_eq!(request.select_protocol(&["v10.stomp", "v12.stomp"]), Some("v10.stomp"));
        assert_eq!(request.select_protocol(&["mqtt", "V12.STOMP"]), None);
    }

    #[test]
    fn firefox_connection_list_and_header_case() {
        let head = b"GET /ws HTTP/1.1\r\nhost: a\r\nCONNECTION: keep-alive, Upgrade\r\nupgrade: WebSocket\r\n\
            SEC-WEBSOCKET-KEY: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version:13\r\n\r\n";
        let request = complete(head);
        assert!(request.wants_websocket());
        assert_eq!(request.check_upgrade(), Ok("dGhlIHNhbXBsZSBub25jZQ=="));
        assert!(request.protocols.is_empty());
        assert_eq!(request.select_protocol(&["v12.stomp"]), None);
    }

    #[test]
    fn sockjs_info_with_query() {
        let request = complete(SOCKJS_INFO);
        assert_eq!(request.method, "GET");
        assert_eq!(request.path, "/letters-chat-server/info");
        assert_eq!(request.query, Some("t=1712345678901"));
        assert_eq!(request.origin, Some("http://localhost:3000"));
        assert!(request.keep_alive);
        assert!(!request.wants_websocket());
        assert!(matches!(request.check_upgrade(), Err(Error::BadUpgrade(_))));
    }

    #[test]
    fn cors_preflight() {
        let head = b"OPTIONS /letters-chat-server/info HTTP/1.1\r\nOrigin: http://a.example\r\n\
            Access-Control-Request-Method: GET\r\nAccess-Control-Request-Headers: content-type\r\n\r\n";
        let request = complete(head);
        assert_eq!(request.method, "OPTIONS");
        assert_eq!(request.cors_request_headers, Some("content-type"));
    }

    #[test]
    fn missing_key() {
        let head = upgrade_with("Sec-WebSocket-Key", "");
        let request = complete(&head);
        assert_eq!(
            request.check_upgrade(),
            Err(Error::BadUpgrade("missing Sec-WebSocket-Key"))
        );
        assert_eq!(Error::BadUpgrade("x").status(), 400);
    }

    #[test]
    fn bad_keys() {
        for key in [
            "c2hvcnQ=",
            "dGhlIHNhbXBsZSBub25jZQ",
            "dGhlIHNhbXBsZSBub25jZXg=",
            "!!!!!!!!!!!!!!!!!!!!!!==",
            "",
        ] {
            let head = upgrade_with("Sec-WebSocket-Key", &format!("Sec-WebSocket-Key: {key}"));
            let request = complete(&head);
            assert!(matches!(request.check_upgrade(), Err(Error::BadUpgrade(_))), "{key}");
        }
    }

    #[test]
    fn bad_version() {
        for line in ["Sec-WebSocket-Version: 8", "Sec-WebSocket-Version: 14", ""] {
            let head = upgrade_with("Sec-WebSocket-Version", line);
            let request = complete(&head);
            assert_eq!(request.check_upgrade(), Err(Error::UnsupportedVersion), "{line:?}");
        }
        assert_eq!(Error::UnsupportedVersion.status(), 426);
    }

    #[test]
    fn upgrade_rules() {
        let post = BROWSER_UPGRADE.strip_prefix(b"GET").expect("GET").to_vec();
        let post = [b"POST".as_slice(), &post].concat();
        assert!(matches!(complete(&post).check_upgrade(), Err(Error::BadUpgrade(_))));
        let http10 = String::from_utf8(BROWSER_UPGRADE.to_vec())
            .expect("ASCII")
            .replacen("HTTP/1.1", "HTTP/1.0", 1);
        let request = complete(http10.as_bytes());
        assert!(!request.keep_alive);
        assert!(matches!(request.check_upgrade(), Err(Error::BadUpgrade(_))));
        for connection in ["Connection: keep-alive", "Connection: upgrades", ""] {
            let head = upgrade_with("Connection", connection);
            assert!(
                matches!(complete(&head).check_upgrade(), Err(Error::BadUpgrade(_))),
                "{connection:?}"
            );
        }
        let head = upgrade_with("Upgrade", "Upgrade: h2c");
        let request = complete(&head);
        assert!(!request.wants_websocket());
        assert!(matches!(request.check_upgrade(), Err(Error::BadUpgrade(_))));
        let head = upgrade_with("Upgrade", "Upgrade: foo/1, WEBSOCKET");
        assert!(complete(&head).check_upgrade().is_ok());
    }

    #[test]
    fn partial_head_byte_by_byte() {
        for end in 0..BROWSER_UPGRADE.len() {
            assert_eq!(parse(&BROWSER_UPGRADE[..end]), Ok(None), "prefix of {end} bytes");
        }
        assert!(parse(BROWSER_UPGRADE).is_ok_and(|r| r.is_some()));
    }

    #[test]
    fn too_many_headers() {
        let mut head = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..MAX_HEADERS {
            head.extend_from_slice(format!("X-H{i}: v\r\n").as_bytes());
        }
        let mut at_limit = head.clone();
        at_limit.extend_from_slice(b"\r\n");
        assert!(parse(&at_limit).is_ok_and(|r| r.is_some()));
        head.extend_from_slice(b"X-One-More: v\r\n\r\n");
        assert_eq!(parse(&head), Err(Error::TooLarge));
        assert_eq!(Error::TooLarge.status(), 431);
    }

    #[test]
    fn oversize_head() {
        // Partial and past the limit.
        let mut head = b"GET / HTTP/1.1\r\nX-Big: ".to_vec();
        head.resize(200, b'a');
        assert_eq!(parse_request(&head, 200), Ok(None));
        head.push(b'a');
        assert_eq!(parse_request(&head, 200), Err(Error::TooLarge));
        // Complete but longer than the limit.
        head.extend_from_slice(b"\r\n\r\n");
        assert_eq!(parse_request(&head, 200), Err(Error::TooLarge));
        // A small head followed by many body bytes is fine.
        let mut buf = b"POST /x HTTP/1.1\r\nContent-Length: 1000\r\n\r\n".to_vec();
        let head_bytes = buf.len();
        buf.resize(head_bytes + 1000, b'b');
        let Ok(Some((request, n))) = parse_request(&buf, 100) else {
            panic!("not parsed")
        };
        assert_eq!((n, request.content_length), (head_bytes, 1000));
    }

    #[test]
    fn malformed_heads() {
        for head in [
            &b"GET\r\n\r\n"[..],
            b"GET / HTTP/2.0\r\n\r\n",
            b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
            b"GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
            b"GET / HTTP/1.1\r\nContent-Length: 1x\r\n\r\n",
            b"GET / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n",
            b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
            b"GET / HTTP/1.1\r\nOrigin: \xFF\r\n\r\n",
        ] {
            let result = parse(head);
            assert!(
                matches!(result, Err(Error::Malformed(_))),
                "{:?}: {result:?}",
                String::from_utf8_lossy(head)
            );
        }
        assert_eq!(Error::Malformed("x").status(), 400);
        // A repeated equal Content-Length is tolerated.
        let head = b"POST / HTTP/1.1\r\nContent-Length: 3\r\ncontent-length: 3\r\n\r\n";
        assert_eq!(complete(head).content_length, 3);
    }

    /// What Node's http client sends for sockjs-client's `xhr_send` (request.write, end).
    const NODE_XHR_SEND: &[u8] = b"POST /b/1/2/xhr_send HTTP/1.1\r\nHost: 127.0.0.1:45429\r\n\
        Connection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n[\"a\"]\r\n0\r\n\r\n";

    #[test]
    fn chunked_bodies_in_every_split() {
        let Ok(Some((request, head))) = parse(NODE_XHR_SEND) else {
            panic!("not parsed");
        };
        assert!(request.chunked && request.keep_alive);
        assert_eq!(request.content_length, 0);
        let body = &NODE_XHR_SEND[head..];
        for cut in 0..body.len() {
            let mut out = BytesMut::from(&b"x"[..]);
            assert_eq!(decode_chunked(&body[..cut], 100, &mut out), Ok(None), "cut {cut}");
            assert_eq!(&out[..], b"x", "nothing appended before the end");
        }
        let mut out = BytesMut::new();
        assert_eq!(decode_chunked(body, 100, &mut out), Ok(Some(body.len())));
        assert_eq!(&out[..], b"[\"a\"]");
        // Several chunks, an extension, a trailer, and what follows the body.
        let body = b"3;ext=1\r\nabc\r\nA\r\n0123456789\r\n0\r\nX-T: 1\r\n\r\nGET ";
        out.clear();
        assert_eq!(decode_chunked(body, 100, &mut out), Ok(Some(body.len() - 4)));
        assert_eq!(&out[..], b"abc0123456789");
        out.clear();
        assert_eq!(decode_chunked(body, 12, &mut out), Err(Error::BodyTooLarge));
        for bad in [&b"x\r\n"[..], b"\r\n", b"3\r\nabcd\r\n", b"123456789\r\n"] {
            assert!(matches!(
                decode_chunked(bad, 1 << 30, &mut out),
                Err(Error::Malformed(_))
            ));
        }
        assert_eq!(Error::BodyTooLarge.status(), 413);
    }

    #[test]
    fn streaming_heads_close_the_connection() {
        let mut out = BytesMut::new();
        write_head(200, &[("Content-Type", "text/event-stream")], None, false, &mut out);
        assert_eq!(
            &out[..],
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"
        );
        out.clear();
        write_head(200, &[], Some(2), true, &mut out);
        assert_eq!(&out[..], b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n");
    }

    #[test]
    fn keep_alive_rules() {
        assert!(complete(b"GET / HTTP/1.1\r\n\r\n").keep_alive);
        assert!(!complete(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n").keep_alive);
        assert!(!complete(b"GET / HTTP/1.1\r\nConnection: Upgrade\r\nConnection: Close\r\n\r\n").keep_alive);
        let request = complete(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        assert!(!request.keep_alive);
        assert_eq!(request.minor_version, 0);
    }

    #[test]
    fn accept_key_rfc_example() {
        assert_eq!(accept_key("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn upgrade_answer() {
        let mut out = BytesMut::new();
        write_upgrade("dGhlIHNhbXBsZSBub25jZQ==", Some("v12.stomp"), &mut out);
        assert_eq!(
            &out[..],
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Protocol: v12.stomp\r\n\r\n"
        );
        out.clear();
        write_upgrade("dGhlIHNhbXBsZSBub25jZQ==", None, &mut out);
        assert!(!out.windows(22).any(|w| w == b"Sec-WebSocket-Protocol"));
        assert!(out.ends_with(b"xOo=\r\n\r\n"));
    }

    #[test]
    fn responses() {
        let mut out = BytesMut::new();
        let headers = [
            ("Content-Type", "application/json; charset=UTF-8"),
            ("Access-Control-Allow-Credentials", "true"),
        ];
        write_response(200, &headers, b"{\"websocket\":true}", true, &mut out);
        assert_eq!(
            &out[..],
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json; charset=UTF-8\r\n\
              Access-Control-Allow-Credentials: true\r\nContent-Length: 18\r\n\r\n{\"websocket\":true}"
        );
        out.clear();
        write_response(404, &[], b"", false, &mut out);
        assert_eq!(
            &out[..],
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        out.clear();
        write_response(
            204,
            &[("Access-Control-Max-Age", "31536000")],
            b"ignored",
            true,
            &mut out,
        );
        assert_eq!(
            &out[..],
            b"HTTP/1.1 204 No Content\r\nAccess-Control-Max-Age: 31536000\r\n\r\n"
        );
        out.clear();
        write_response(426, &[("Sec-WebSocket-Version", "13")], b"", true, &mut out);
        assert!(out.starts_with(b"HTTP/1.1 426 Upgrade Required\r\nSec-WebSocket-Version: 13\r\n"));
        out.clear();
        write_response(200, &[], &[b'x'; 12345], true, &mut out);
        assert!(out.starts_with(b"HTTP/1.1 200 OK\r\nContent-Length: 12345\r\n\r\nx"));
    }

    #[test]
    fn reasons() {
        let expected = [
            (101, "Switching Protocols"),
            (200, "OK"),
            (202, "Accepted"),
            (204, "No Content"),
            (400, "Bad Request"),
            (401, "Unauthorized"),
            (403, "Forbidden"),
            (404, "Not Found"),
            (405, "Method Not Allowed"),
            (413, "Payload Too Large"),
            (426, "Upgrade Required"),
            (431, "Request Header Fields Too Large"),
            (500, "Internal Server Error"),
            (503, "Service Unavailable"),
            (299, ""),
        ];
        for (status, phrase) in expected {
            assert_eq!(reason(status), phrase);
        }
    }
}
