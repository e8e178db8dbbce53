//! SockJS's HTTP transports, sans-IO, as sockjs-client 1.6 speaks them: which transport a
//! path names, the `xhr_send` body (a JSON array of strings) unwrapped into STOMP bytes,
//! and what the receiving requests write: the prelude, frames as `\n`-terminated lines
//! (`xhr`, `xhr_streaming`) or as `data: ...\r\n\r\n` events (`eventsource`). The client
//! side reads the same lines back ([`next_line`]). `shard/transport.rs` does the I/O.
//!
//! `iframe.html`, `htmlfile` and `jsonp` are not served (404): they exist for browsers
//! without CORS (IE 6–9, `file://` pages), and the iframe ones also need a page that loads
//! sockjs.js from a CDN. Every browser that runs the chat's React client has CORS and
//! reaches the engine over `xhr_streaming`, `eventsource` or `xhr`; sockjs-client skips a
//! transport whose request fails and tries the next.

use bytes::{BufMut, Bytes, BytesMut};

use super::{decode_message, Error};

/// An HTTP transport of SockJS, from the last segment of its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// `xhr`: polling; one response per request with what is queued (or `h`).
    Xhr,
    /// `xhr_send`: the client's frames, a JSON array of strings in a POST body.
    XhrSend,
    /// `xhr_streaming`: one long response of `\n`-terminated frames after a 2 KiB prelude.
    XhrStreaming,
    /// `eventsource`: one long `text/event-stream` response.
    EventSource,
    /// `htmlfile`, `jsonp`, `jsonp_send`: answered 404 (see the module doc).
    Unsupported,
}

impl Transport {
    /// Every transport, in the order of [`Transport::index`].
    pub const ALL: [Transport; 5] = [
        Transport::Xhr,
        Transport::XhrSend,
        Transport::XhrStreaming,
        Transport::EventSource,
        Transport::Unsupported,
    ];

    /// The transport a path's last segment names, if any.
    pub fn from_name(name: &str) -> Option<Transport> {
        Some(match name {
            "xhr" => Transport::Xhr,
            "xhr_send" => Transport::XhrSend,
            "xhr_streaming" => Transport::XhrStreaming,
            "eventsource" => Transport::EventSource,
            "htmlfile" | "jsonp" | "jsonp_send" => Transport::Unsupported,
            _ => return None,
        })
    }

    /// Its name in paths and metrics (`unsupported` for the three not served).
    pub fn name(self) -> &'static str {
        match self {
            Transport::Xhr => "xhr",
            Transport::XhrSend => "xhr_send",
            Transport::XhrStreaming => "xhr_streaming",
            Transport::EventSource => "eventsource",
            Transport::Unsupported => "unsupported",
        }
    }

    /// A small index, `0..ALL.len()`, for per-transport counters.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The method the transport is requested with (`OPTIONS` preflights aside).
    pub fn method(self) -> &'static str {
        match self {
            Transport::EventSource => "GET",
            _ => "POST",
        }
    }

    /// True for the transports that carry the server's frames to the client.
    pub fn receives(self) -> bool {
        matches!(self, Transport::Xhr | Transport::XhrStreaming | Transport::EventSource)
    }

    /// True for the transports whose response stays open for many frames.
    pub fn streams(self) -> bool {
        matches!(self, Transport::XhrStreaming | Transport::EventSource)
    }

    /// `Content-Type` of its responses.
    pub fn content_type(self) -> &'static str {
        match self {
            Transport::EventSource => "text/event-stream; charset=UTF-8",
            Transport::XhrSend | Transport::Unsupported => "text/plain; charset=UTF-8",
            Transport::Xhr | Transport::XhrStreaming => "application/javascript; charset=UTF-8",
        }
    }
}

/// Why an `xhr_send` body was refused; both are answered 500 with [`SendError::message`],
/// as sockjs-node and Spring do.
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
pub enum SendError {
    /// Empty, or JSON that is not an array.
    #[error("Payload expected.")]
    PayloadExpected,
    /// Not JSON, or an array holding something other than strings.
    #[error("Broken JSON encoding.")]
    BrokenJson,
}

impl SendError {
    /// The response body sockjs-client and the SockJS protocol tests expect.
    pub fn message(self) -> &'static str {
        match self {
            SendError::PayloadExpected => "Payload expected.",
            SendError::BrokenJson => "Broken JSON encoding.",
        }
    }
}

/// Decodes an `xhr_send` body, a JSON array of strings, and appends the UTF-8 bytes of
/// each string to `out` (the session's STOMP stream). Returns how many strings there were.
/// `scratch` is reused storage for the in-place parse.
///
/// # Errors
/// `PayloadExpected` for an empty body or JSON that is not an array, `BrokenJson` for
/// anything else that is not an array of strings. Nothing is appended on an error.
pub fn decode_send(body: &[u8], scratch: &mut Vec<u8>, out: &mut BytesMut) -> Result<usize, SendError> {
    let trimmed = body.trim_ascii();
    match trimmed.first() {
        None => return Err(SendError::PayloadExpected),
        Some(b'[') => {}
        // Valid JSON that is not an array, or no JSON at all (a cold path: parse again).
        Some(_) => {
            return Err(match decode_message(trimmed, scratch, &mut BytesMut::new()) {
                Ok(_) => SendError::PayloadExpected,
                Err(Error::BadJson) if is_json(trimmed, scratch) => SendError::PayloadExpected,
                Err(Error::BadJson) => SendError::BrokenJson,
            });
        }
    }
    let before = out.len();
    decode_message(trimmed, scratch, out).map_err(|Error::BadJson| {
        out.truncate(before);
        SendError::BrokenJson
    })
}

/// Appends one frame (`o`, `h`, `a[...]`, `c[...]`) as a line of the `xhr` transports.
pub fn encode_line(frame: &[u8], out: &mut BytesMut) {
    out.reserve(frame.len() + 1);
    out.put_slice(frame);
    out.put_u8(b'\n');
}

/// Appends what a receiving response starts with: 2048 `h` and a newline for
/// `xhr_streaming` (browsers show nothing of a streaming response before 2 KiB), an empty
/// line for `eventsource`, nothing for `xhr`.
pub fn encode_prelude(transport: Transport, out: &mut BytesMut) {
    match transport {
        Transport::XhrStreaming => {
            out.reserve(PRELUDE_BYTES + 1);
            out.put_bytes(b'h', PRELUDE_BYTES);
            out.put_u8(b'\n');
        }
        Transport::EventSource => out.put_slice(b"\r\n"),
        _ => {}
    }
}

/// Appends `lines` (frames, each ending in `\n`, as the session queues them) as
/// event-stream events, `data: <frame>\r\n\r\n` each. sockjs-client passes each event's
/// data through `decodeURI`, so `%` (and `\r`, `\0`, which JSON-escaped frames never hold)
/// are percent-encoded first, as sockjs-node does. A last line without `\n` is kept whole.
pub fn encode_events(lines: &[u8], out: &mut BytesMut) {
    out.reserve(lines.len() + lines.len() / 8 + 16);
    for line in lines.split_inclusive(|&b| b == b'\n') {
        let frame = line.strip_suffix(b"\n").unwrap_or(line);
        out.put_slice(b"data: ");
        let mut run = 0;
        for (i, &b) in frame.iter().enumerate() {
            let escaped: &[u8] = match b {
                b'%' => b"%25",
                b'\r' => b"%0D",
                b'\0' => b"%00",
                _ => continue,
            };
            out.put_slice(&frame[run..i]);
            out.put_slice(escaped);
            run = i + 1;
        }
        out.put_slice(&frame[run..]);
        out.put_slice(b"\r\n\r\n");
    }
}

/// Cuts the next `\n`-terminated line out of `buf` (without the `\n`); `None` until a whole
/// line is there. For clients reading `xhr` and `xhr_streaming` bodies.
pub fn next_line(buf: &mut BytesMut) -> Option<Bytes> {
    let at = memchr::memchr(b'\n', buf)?;
    let line = buf.split_to(at + 1).freeze();
    Some(line.slice(..at))
}

/// The close code and reason a second receiving request on one session gets.
pub const ANOTHER_CONNECTION: (u16, &str) = (2010, "Another connection still open");
/// The close code and reason of a session that is already closed (sockjs-node's).
pub const GO_AWAY: (u16, &str) = (3000, "Go away!");
/// Bytes of `h` in the `xhr_streaming` prelude.
pub const PRELUDE_BYTES: usize = 2048;

/// Whether `json` parses as JSON at all (for telling the two `xhr_send` errors apart).
fn is_json(json: &[u8], scratch: &mut Vec<u8>) -> bool {
    scratch.clear();
    scratch.extend_from_slice(json);
    simd_json::to_tape(scratch).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn send(body: &[u8]) -> Result<(usize, Vec<u8>), SendError> {
        let mut out = BytesMut::from(&b"kept"[..]);
        let result = decode_send(body, &mut Vec::new(), &mut out);
        if result.is_err() {
            assert_eq!(&out[..], b"kept", "nothing appended on an error");
        }
        result.map(|n| (n, out[4..].to_vec()))
    }

    #[test]
    fn send_bodies_decode_to_stomp_bytes() {
        // What sockjs-client's BufferedSender posts: the frames queued meanwhile, joined.
        let body = br#"["CONNECT\naccept-version:1.1,1.0\nheart-beat:10000,10000\n\n\u0000","SUBSCRIBE\nid:sub-0\ndestination:/sub/chat/global\n\n\u0000"]"#;
        let (n, stomp) = send(body).expect("valid body");
        assert_eq!(n, 2);
        assert_eq!(
            stomp,
            b"CONNECT\naccept-version:1.1,1.0\nheart-beat:10000,10000\n\n\0SUBSCRIBE\nid:sub-0\ndestination:/sub/chat/global\n\n\0"
        );
        assert_eq!(send(b" [] \r\n"), Ok((0, vec![])));
        assert_eq!(send(br#"["\n"]"#), Ok((1, b"\n".to_vec())));
    }

    #[test]
    fn bad_send_bodies_get_sockjs_answers() {
        for body in [&b""[..], b"  ", b"\"a\"", b"{}", b"1", b"null", br#"{"a":["b"]}"#] {
            assert_eq!(
                send(body),
                Err(SendError::PayloadExpected),
                "{:?}",
                String::from_utf8_lossy(body)
            );
        }
        for body in [
            &b"["[..],
            b"[1]",
            br#"["a",1]"#,
            br#"[["a"]]"#,
            b"nul",
            b"x",
            br#"["a"]]"#,
            b"[\"\xff\"]",
        ] {
            assert_eq!(
                send(body),
                Err(SendError::BrokenJson),
                "{:?}",
                String::from_utf8_lossy(body)
            );
        }
        assert_eq!(SendError::PayloadExpected.message(), "Payload expected.");
        assert_eq!(SendError::BrokenJson.to_string(), "Broken JSON encoding.");
    }

    #[test]
    fn transports_by_name() {
        for t in Transport::ALL {
            assert_eq!(Transport::ALL[t.index()], t);
            if t != Transport::Unsupported {
                assert_eq!(Transport::from_name(t.name()), Some(t));
            }
        }
        assert_eq!(Transport::from_name("websocket"), None);
        assert_eq!(Transport::from_name("xhr_polling"), None);
        assert!(Transport::Xhr.receives() && !Transport::Xhr.streams());
        assert!(Transport::EventSource.streams() && Transport::EventSource.method() == "GET");
        assert!(!Transport::XhrSend.receives());
    }

    #[test]
    fn preludes_and_lines() {
        let mut out = BytesMut::new();
        encode_prelude(Transport::XhrStreaming, &mut out);
        assert_eq!(out.len(), 2049);
        assert!(out[..2048].iter().all(|&b| b == b'h') && out[2048] == b'\n');
        out.clear();
        encode_prelude(Transport::EventSource, &mut out);
        encode_prelude(Transport::Xhr, &mut out);
        assert_eq!(&out[..], b"\r\n");
        out.clear();
        encode_line(b"o", &mut out);
        encode_line(br#"a["x"]"#, &mut out);
        let mut buf = out.clone();
        assert_eq!(next_line(&mut buf).as_deref(), Some(&b"o"[..]));
        assert_eq!(next_line(&mut buf).as_deref(), Some(&br#"a["x"]"#[..]));
        assert_eq!(next_line(&mut buf), None);
        // Partial lines wait, in every split.
        for cut in 0..out.len() {
            let mut buf = BytesMut::from(&out[..cut]);
            let mut lines = Vec::new();
            while let Some(l) = next_line(&mut buf) {
                lines.push(l);
            }
            buf.extend_from_slice(&out[cut..]);
            while let Some(l) = next_line(&mut buf) {
                lines.push(l);
            }
            assert_eq!(lines, [&b"o"[..], &br#"a["x"]"#[..]], "cut {cut}");
        }
    }

    #[test]
    fn events_percent_encode_for_decode_uri() {
        let mut out = BytesMut::new();
        encode_events(b"o\na[\"100% \\u0000\"]\nh", &mut out);
        assert_eq!(
            &out[..],
            &b"data: o\r\n\r\ndata: a[\"100%25 \\u0000\"]\r\n\r\ndata: h\r\n\r\n"[..]
        );
        out.clear();
        encode_events(b"x\r\0y\n", &mut out);
        assert_eq!(&out[..], b"data: x%0D%00y\r\n\r\n");
    }
}
