//! The streaming STOMP decoder: bytes from `ws.rs` or `sockjs.rs` in, frames and
//! heart-beats out. It scans incrementally and cuts head and body out of the caller's
//! buffer without copying; the header escaping follows the version set after CONNECT.

use bytes::{Buf, Bytes, BytesMut};
use memchr::{memchr, memchr2};

use super::{Command, Error, Frame, Headers, Item, Limits, Version};

/// Streaming frame decoder.
///
/// It remembers how far it has scanned the caller's buffer, so a frame that trickles
/// in byte by byte is scanned once in total. Between calls the caller may only append
/// to `buf`. After an error the decoder is back at a frame boundary, but the
/// connection is meant to be closed.
#[derive(Debug)]
pub struct Decoder {
    limits: Limits,
    version: Version,
    phase: Phase,
    /// Bytes of `buf` already scanned in the current phase.
    scanned: usize,
    /// Start of the head line being scanned (head phase).
    line_start: usize,
    /// Header lines seen so far: start, colon and end (before any `\r`), as offsets
    /// from the start of the frame. Reused from frame to frame.
    lines: Vec<HeaderLine>,
    /// The command, once its line is complete.
    command: Option<Command>,
    /// Decoded headers while the body is still arriving; boxed because an idle
    /// decoder (one per connection) should not carry a frame's worth of headers.
    headers: Option<Box<Headers>>,
    /// The body length from `content-length` (body phase).
    content_length: Option<usize>,
    /// Most body bytes the frame may still have (body phase).
    body_budget: usize,
}

/// Where the decoder is within a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// `buf` starts at a frame boundary or inside the command and header lines.
    Head,
    /// The head has been cut off; `buf` starts with the body.
    Body,
}

/// Offsets of one header line within the head: `name` is `start..colon`, the value
/// `colon + 1..end`.
#[derive(Debug, Clone, Copy)]
struct HeaderLine {
    start: usize,
    colon: usize,
    end: usize,
}

impl Decoder {
    /// A decoder that unescapes as 1.2 until `set_version` (CONNECT and CONNECTED
    /// headers are never unescaped, whatever the version).
    pub fn new(limits: Limits) -> Self {
        Decoder {
            limits,
            version: Version::V1_2,
            phase: Phase::Head,
            scanned: 0,
            line_start: 0,
            lines: Vec::new(),
            command: None,
            headers: None,
            content_length: None,
            body_budget: 0,
        }
    }

    /// Sets the version negotiated by `CONNECT`; later frames unescape accordingly.
    pub fn set_version(&mut self, version: Version) {
        self.version = version;
    }

    /// Gives back the storage kept for the next frame when no frame is under way, so
    /// that an idle connection holds none.
    pub fn release_idle(&mut self) {
        if self.phase == Phase::Head && self.scanned == 0 {
            self.lines = Vec::new();
        }
    }

    /// Decodes the next item from `buf`, consuming its bytes; `Ok(None)` means more
    /// bytes are needed. `content-length`, when present, decides where the body ends;
    /// otherwise it ends at the first NUL.
    ///
    /// # Errors
    /// Any `Error` but `UnsupportedVersion`/`BadHeartBeat`; the connection then gets an
    /// `ERROR` and is closed.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Item>, Error> {
        let result = self.decode_item(buf);
        if result.is_err() {
            self.reset();
        }
        result
    }

    fn decode_item(&mut self, buf: &mut BytesMut) -> Result<Option<Item>, Error> {
        if self.phase == Phase::Body {
            return match self.body_len(buf)? {
                Some(len) => {
                    let headers = self.headers.take().map(|h| *h).unwrap_or_default();
                    self.finish(buf, len, headers).map(Some)
                }
                None => Ok(None),
            };
        }
        if self.scanned == 0 {
            // STOMP 1.2 §"Heart-beating": EOLs between frames are heart-beats.
            match (buf.first(), buf.get(1)) {
                (None, _) | (Some(b'\r'), None) => return Ok(None),
                (Some(b'\n'), _) => {
                    buf.advance(1);
                    return Ok(Some(Item::HeartBeat));
                }
                (Some(b'\r'), Some(b'\n')) => {
                    buf.advance(2);
                    return Ok(Some(Item::HeartBeat));
                }
                _ => {}
            }
        }
        let Some(head_len) = self.scan_head(buf)? else {
            return Ok(None);
        };
        let headers = self.start_body(buf, head_len)?;
        // Usually the whole frame is there: build it without parking the headers.
        match self.body_len(buf)? {
            Some(len) => self.finish(buf, len, headers).map(Some),
            None => {
                self.headers = Some(Box::new(headers));
                Ok(None)
            }
        }
    }

    /// Scans the command and header lines; returns the head length (through the blank
    /// line) once it is complete. Only the first `max_frame_bytes + 1` bytes are looked
    /// at, so the outcome does not depend on how the input was split.
    fn scan_head(&mut self, buf: &[u8]) -> Result<Option<usize>, Error> {
        let window_end = buf.len().min(self.limits.max_frame_bytes.saturating_add(1));
        while self.scanned < window_end {
            let Some(offset) = memchr2(b'\n', 0, &buf[self.scanned..window_end]) else {
                self.scanned = window_end;
                // A line longer than the limit fails as soon as that many bytes are here,
                // so the outcome does not depend on how the input was split.
                if window_end - self.line_start > self.limits.max_line_bytes.saturating_add(1) {
                    return Err(Error::LineTooLong);
                }
                break;
            };
            let eol = self.scanned + offset;
            if buf[eol] == 0 {
                return Err(Error::Malformed("NUL before the end of the headers"));
            }
            let start = self.line_start;
            if trim_cr(&buf[start..eol]).len() > self.limits.max_line_bytes {
                return Err(Error::LineTooLong);
            }
            let line = trim_cr(&buf[start..eol]);
            self.scanned = eol + 1;
            self.line_start = eol + 1;
            if self.command.is_none() {
                self.command = Some(Command::parse(line).ok_or(Error::UnknownCommand)?);
            } else if line.is_empty() {
                return Ok(Some(eol + 1));
            } else if self.lines.len() >= self.limits.max_headers {
                return Err(Error::TooBig);
            } else {
                let colon = memchr(b':', line).ok_or(Error::Malformed("header line without ':'"))?;
                self.lines.push(HeaderLine {
                    start,
                    colon: start + colon,
                    end: start + line.len(),
                });
            }
        }
        if buf.len() > self.limits.max_frame_bytes {
            return Err(Error::TooBig);
        }
        Ok(None)
    }

    /// Cuts the complete head off `buf`, decodes its headers and reads `content-length`.
    fn start_body(&mut self, buf: &mut BytesMut, head_len: usize) -> Result<Headers, Error> {
        if head_len > self.limits.max_frame_bytes {
            return Err(Error::TooBig);
        }
        let command = self.command.ok_or(Error::Malformed("missing command"))?;
        let head = buf.split_to(head_len).freeze();
        // One scan of the whole head spares a search per name and value.
        let unescape = (self.version >= Version::V1_1 && command.escapes_headers() && memchr(b'\\', &head).is_some())
            .then_some(self.version);
        let mut headers = Headers::new();
        for line in &self.lines {
            let name = field(&head, line.start, line.colon, unescape)?;
            if name.is_empty() {
                return Err(Error::Malformed("empty header name"));
            }
            headers.push((name, field(&head, line.colon + 1, line.end, unescape)?));
        }
        self.body_budget = self.limits.max_frame_bytes - head_len;
        self.content_length = match headers.iter().find(|(n, _)| n.as_ref() == b"content-length") {
            Some((_, value)) => Some(parse_content_length(value, self.body_budget)?),
            None => None,
        };
        if let Some(len) = self.content_length {
            // Within the limit, so reserving now saves regrowing the buffer while a
            // large body (stompjs splits frames over 16 KiB) arrives in pieces.
            buf.reserve((len + 1).saturating_sub(buf.len()));
        }
        self.phase = Phase::Body;
        self.scanned = 0;
        Ok(headers)
    }

    /// The body length once the body and its NUL have arrived.
    fn body_len(&mut self, buf: &[u8]) -> Result<Option<usize>, Error> {
        if let Some(len) = self.content_length {
            return match buf.get(len) {
                None => Ok(None),
                Some(0) => Ok(Some(len)),
                Some(_) => Err(Error::Malformed("no NUL after content-length bytes of body")),
            };
        }
        let window_end = buf.len().min(self.body_budget.saturating_add(1));
        if let Some(offset) = buf.get(self.scanned..window_end).and_then(|rest| memchr(0, rest)) {
            return Ok(Some(self.scanned + offset));
        }
        self.scanned = self.scanned.max(window_end);
        if buf.len() > self.body_budget {
            return Err(Error::TooBig);
        }
        Ok(None)
    }

    /// Cuts the body and its NUL off `buf` and returns the frame.
    fn finish(&mut self, buf: &mut BytesMut, body_len: usize, headers: Headers) -> Result<Item, Error> {
        let command = self.command.ok_or(Error::Malformed("missing command"))?;
        let body = buf.split_to(body_len).freeze();
        buf.advance(1);
        self.reset();
        Ok(Item::Frame(Frame { command, headers, body }))
    }

    /// Back to a frame boundary (the version is kept).
    fn reset(&mut self) {
        self.phase = Phase::Head;
        self.scanned = 0;
        self.line_start = 0;
        self.lines.clear();
        self.command = None;
        self.headers = None;
        self.content_length = None;
        self.body_budget = 0;
    }
}

/// `line` without one trailing `\r` (a `\r\n` EOL, accepted in every version).
fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// `head[start..end]`, unescaped for `unescape` (zero-copy when it holds no `\`).
fn field(head: &Bytes, start: usize, end: usize, unescape: Option<Version>) -> Result<Bytes, Error> {
    let raw = &head[start..end];
    let (Some(version), Some(first)) = (unescape, memchr(b'\\', raw)) else {
        return Ok(head.slice(start..end));
    };
    let mut out = Vec::with_capacity(raw.len());
    out.extend_from_slice(&raw[..first]);
    let mut i = first;
    // Invariant: raw[i] is a backslash.
    while i < raw.len() {
        // STOMP 1.2 §"Value Encoding": "Undefined escape sequences such as \t MUST be
        // treated as a fatal protocol error."
        out.push(match raw.get(i + 1) {
            Some(b'n') => b'\n',
            Some(b'c') => b':',
            Some(b'\\') => b'\\',
            Some(b'r') if version == Version::V1_2 => b'\r',
            _ => return Err(Error::BadEscape),
        });
        i += 2;
        let rest = &raw[i..];
        match memchr(b'\\', rest) {
            Some(offset) => {
                out.extend_from_slice(&rest[..offset]);
                i += offset;
            }
            None => {
                out.extend_from_slice(rest);
                break;
            }
        }
    }
    Ok(Bytes::from(out))
}

/// A `content-length` value: ASCII digits, at most `budget`.
fn parse_content_length(value: &[u8], budget: usize) -> Result<usize, Error> {
    let digits = value.trim_ascii();
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(Error::Malformed("invalid content-length"));
    }
    let mut len: usize = 0;
    for &d in digits {
        len = len.saturating_mul(10).saturating_add(usize::from(d - b'0'));
    }
    if len > budget {
        return Err(Error::TooBig);
    }
    Ok(len)
}

#[cfg(test)]
mod tests;
