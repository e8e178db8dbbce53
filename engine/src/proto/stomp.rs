//! STOMP 1.0, 1.1 and 1.2, sans-IO. `Decoder` turns a byte stream (the concatenated
//! payloads of WebSocket or SockJS messages, so a frame may span several of them and
//! one may hold several frames) into frames and heart-beats; `encode_frame` writes
//! frames with the header escaping of the negotiated version; `Session` keeps the
//! negotiated heart-beat clock, with time passed in by the caller.

use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use memchr::{memchr, memchr2};
use smallvec::SmallVec;

/// Protocol versions, in increasing order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Version {
    /// 1.0: no header escaping.
    V1_0,
    /// 1.1: escapes `\n`, `\c`, `\\`.
    V1_1,
    /// 1.2: also escapes `\r`.
    V1_2,
}

impl Version {
    /// `"1.0"`, `"1.1"` or `"1.2"`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Version::V1_0 => "1.0",
            Version::V1_1 => "1.1",
            Version::V1_2 => "1.2",
        }
    }
}

/// Client and server commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Command {
    Connect,
    Stomp,
    Send,
    Subscribe,
    Unsubscribe,
    Ack,
    Nack,
    Begin,
    Commit,
    Abort,
    Disconnect,
    Connected,
    Message,
    Receipt,
    Error,
}

impl Command {
    /// The command as it appears on the wire.
    pub fn as_str(&self) -> &'static str {
        match self {
            Command::Connect => "CONNECT",
            Command::Stomp => "STOMP",
            Command::Send => "SEND",
            Command::Subscribe => "SUBSCRIBE",
            Command::Unsubscribe => "UNSUBSCRIBE",
            Command::Ack => "ACK",
            Command::Nack => "NACK",
            Command::Begin => "BEGIN",
            Command::Commit => "COMMIT",
            Command::Abort => "ABORT",
            Command::Disconnect => "DISCONNECT",
            Command::Connected => "CONNECTED",
            Command::Message => "MESSAGE",
            Command::Receipt => "RECEIPT",
            Command::Error => "ERROR",
        }
    }

    /// The command spelled exactly `line` (case-sensitive), if any.
    fn parse(line: &[u8]) -> Option<Command> {
        Some(match line {
            b"CONNECT" => Command::Connect,
            b"STOMP" => Command::Stomp,
            b"SEND" => Command::Send,
            b"SUBSCRIBE" => Command::Subscribe,
            b"UNSUBSCRIBE" => Command::Unsubscribe,
            b"ACK" => Command::Ack,
            b"NACK" => Command::Nack,
            b"BEGIN" => Command::Begin,
            b"COMMIT" => Command::Commit,
            b"ABORT" => Command::Abort,
            b"DISCONNECT" => Command::Disconnect,
            b"CONNECTED" => Command::Connected,
            b"MESSAGE" => Command::Message,
            b"RECEIPT" => Command::Receipt,
            b"ERROR" => Command::Error,
            _ => return None,
        })
    }

    /// CONNECT, STOMP and CONNECTED headers are never escaped: the version is not
    /// known yet when they are written (STOMP 1.2 §"Value Encoding").
    fn escapes_headers(&self) -> bool {
        !matches!(self, Command::Connect | Command::Stomp | Command::Connected)
    }
}

/// Decoded headers in wire order, values unescaped per version. Repeated headers are
/// kept; `Frame::header` returns the first (STOMP 1.2 §"Repeated Header Entries").
pub type Headers = SmallVec<[(Bytes, Bytes); 6]>;

/// One STOMP frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The command.
    pub command: Command,
    /// Headers, unescaped.
    pub headers: Headers,
    /// The body (without the terminating NUL).
    pub body: Bytes,
}

impl Frame {
    /// The value of the first header named `name`.
    pub fn header(&self, name: &[u8]) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n.as_ref() == name)
            .map(|(_, v)| v.as_ref())
    }
}

/// What the decoder yields.
#[derive(Debug, Clone, PartialEq, Eq)]
// The frame is moved straight to its consumer; boxing it would allocate per frame.
#[allow(clippy::large_enum_variant)]
pub enum Item {
    /// A complete frame.
    Frame(Frame),
    /// A lone EOL (`\n` or `\r\n`) between frames.
    HeartBeat,
}

/// Limits, checked before memory is reserved.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest frame (command, headers and body; the terminating NUL not counted).
    pub max_frame_bytes: usize,
    /// Most headers in one frame.
    pub max_headers: usize,
}

/// A broken STOMP rule; `message()` is the text of the `message` header of the `ERROR`.
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// Bad frame syntax; the text names the rule.
    #[error("malformed frame: {0}")]
    Malformed(&'static str),
    /// A command this server does not know.
    #[error("unknown command")]
    UnknownCommand,
    /// An undefined escape sequence in a 1.1/1.2 header.
    #[error("invalid header escape")]
    BadEscape,
    /// Over `max_frame_bytes` or `max_headers`.
    #[error("frame too large")]
    TooBig,
    /// No version in `accept-version` that the server speaks.
    #[error("supported protocol versions are 1.0,1.1,1.2")]
    UnsupportedVersion,
    /// A malformed `heart-beat` header.
    #[error("invalid heart-beat header")]
    BadHeartBeat,
}

impl Error {
    /// A short, fixed description for the `message` header of an `ERROR` frame.
    pub fn message(&self) -> &'static str {
        match self {
            Error::Malformed(rule) => rule,
            Error::UnknownCommand => "unknown command",
            Error::BadEscape => "invalid header escape sequence",
            Error::TooBig => "frame too large",
            Error::UnsupportedVersion => "supported protocol versions are 1.0,1.1,1.2",
            Error::BadHeartBeat => "invalid heart-beat header",
        }
    }
}

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
    /// Header lines seen so far (head phase).
    header_lines: usize,
    /// The command, once its line is complete.
    command: Option<Command>,
    /// Decoded headers (body phase).
    headers: Headers,
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
            header_lines: 0,
            command: None,
            headers: Headers::new(),
            content_length: None,
            body_budget: 0,
        }
    }

    /// Sets the version negotiated by `CONNECT`; later frames unescape accordingly.
    pub fn set_version(&mut self, version: Version) {
        self.version = version;
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
        if self.phase == Phase::Head {
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
            self.start_body(buf, head_len)?;
        }
        self.finish_body(buf)
    }

    /// Scans the command and header lines; returns the head length (through the blank
    /// line) once it is complete. Only the first `max_frame_bytes + 1` bytes are looked
    /// at, so the outcome does not depend on how the input was split.
    fn scan_head(&mut self, buf: &[u8]) -> Result<Option<usize>, Error> {
        let window_end = buf.len().min(self.limits.max_frame_bytes.saturating_add(1));
        while self.scanned < window_end {
            let Some(offset) = memchr2(b'\n', 0, &buf[self.scanned..window_end]) else {
                self.scanned = window_end;
                break;
            };
            let eol = self.scanned + offset;
            if buf[eol] == 0 {
                return Err(Error::Malformed("NUL before the end of the headers"));
            }
            let line = trim_cr(&buf[self.line_start..eol]);
            self.scanned = eol + 1;
            self.line_start = eol + 1;
            if self.command.is_none() {
                self.command = Some(Command::parse(line).ok_or(Error::UnknownCommand)?);
            } else if line.is_empty() {
                return Ok(Some(eol + 1));
            } else {
                self.header_lines += 1;
                if self.header_lines > self.limits.max_headers {
                    return Err(Error::TooBig);
                }
                if memchr(b':', line).is_none() {
                    return Err(Error::Malformed("header line without ':'"));
                }
            }
        }
        if buf.len() > self.limits.max_frame_bytes {
            return Err(Error::TooBig);
        }
        Ok(None)
    }

    /// Cuts the complete head off `buf`, decodes its headers and reads `content-length`.
    fn start_body(&mut self, buf: &mut BytesMut, head_len: usize) -> Result<(), Error> {
        if head_len > self.limits.max_frame_bytes {
            return Err(Error::TooBig);
        }
        let command = self.command.ok_or(Error::Malformed("missing command"))?;
        let head = buf.split_to(head_len).freeze();
        let unescape =
            (self.version >= Version::V1_1 && command.escapes_headers()).then_some(self.version);
        let mut headers = Headers::new();
        // Skip the command line; the head ends with the blank line.
        let mut start = memchr(b'\n', &head).map_or(head.len(), |i| i + 1);
        while let Some(offset) = memchr(b'\n', &head[start..]) {
            let end = start + offset;
            let line_end = start + trim_cr(&head[start..end]).len();
            if line_end == start {
                break;
            }
            let colon = memchr(b':', &head[start..line_end])
                .ok_or(Error::Malformed("header line without ':'"))?;
            let name = field(&head, start, start + colon, unescape)?;
            if name.is_empty() {
                return Err(Error::Malformed("empty header name"));
            }
            let value = field(&head, start + colon + 1, line_end, unescape)?;
            headers.push((name, value));
            start = end + 1;
        }
        self.body_budget = self.limits.max_frame_bytes - head_len;
        self.content_length = match headers
            .iter()
            .find(|(n, _)| n.as_ref() == b"content-length")
        {
            Some((_, value)) => Some(parse_content_length(value, self.body_budget)?),
            None => None,
        };
        self.headers = headers;
        self.phase = Phase::Body;
        self.scanned = 0;
        Ok(())
    }

    /// Cuts the body off `buf` once it and its NUL have arrived.
    fn finish_body(&mut self, buf: &mut BytesMut) -> Result<Option<Item>, Error> {
        let body_len = match self.content_length {
            Some(len) => match buf.get(len) {
                None => return Ok(None),
                Some(0) => len,
                Some(_) => {
                    return Err(Error::Malformed(
                        "no NUL after content-length bytes of body",
                    ))
                }
            },
            None => {
                let window_end = buf.len().min(self.body_budget.saturating_add(1));
                let found = buf
                    .get(self.scanned..window_end)
                    .and_then(|rest| memchr(0, rest));
                match found {
                    Some(offset) => self.scanned + offset,
                    None => {
                        self.scanned = self.scanned.max(window_end);
                        if buf.len() > self.body_budget {
                            return Err(Error::TooBig);
                        }
                        return Ok(None);
                    }
                }
            }
        };
        let command = self.command.ok_or(Error::Malformed("missing command"))?;
        let headers = std::mem::take(&mut self.headers);
        let body = buf.split_to(body_len).freeze();
        buf.advance(1);
        self.reset();
        Ok(Some(Item::Frame(Frame {
            command,
            headers,
            body,
        })))
    }

    /// Back to a frame boundary (the version is kept).
    fn reset(&mut self) {
        self.phase = Phase::Head;
        self.scanned = 0;
        self.line_start = 0;
        self.header_lines = 0;
        self.command = None;
        self.headers.clear();
        self.content_length = None;
        self.body_budget = 0;
    }
}

/// The highest version in the comma-separated `accept-version` (absent: 1.0).
///
/// # Errors
/// `UnsupportedVersion` when none of 1.0, 1.1, 1.2 is offered.
pub fn negotiate_version(accept_version: Option<&[u8]>) -> Result<Version, Error> {
    let Some(offered) = accept_version else {
        return Ok(Version::V1_0);
    };
    offered
        .split(|&b| b == b',')
        .filter_map(|v| match v.trim_ascii() {
            b"1.0" => Some(Version::V1_0),
            b"1.1" => Some(Version::V1_1),
            b"1.2" => Some(Version::V1_2),
            _ => None,
        })
        .max()
        .ok_or(Error::UnsupportedVersion)
}

/// The outcome of heart-beat negotiation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeartBeat {
    /// The server sends a heart-beat when it has sent nothing for this long (0: never).
    pub send_ms: u64,
    /// The client promised to send something at least this often (0: no promise).
    pub recv_ms: u64,
    /// The `heart-beat` header value for `CONNECTED`, `"sx,sy"`: the server's own
    /// `server_send_ms` and `server_recv_ms`, each 0 where that direction is off. The
    /// client takes the maximum with its own values, as the server did, and so arrives
    /// at `send_ms` and `recv_ms` too.
    pub header: (u64, u64),
}

/// Negotiates heart-beats (STOMP 1.1 §Heart-beating) from the client's `heart-beat`
/// header (absent: `0,0`) and the server's abilities: it can send every
/// `server_send_ms` and wants to hear from the client every `server_recv_ms` (0 for
/// either disables that direction).
///
/// # Errors
/// `BadHeartBeat` on a malformed header.
pub fn negotiate_heartbeat(
    client: Option<&[u8]>,
    server_send_ms: u64,
    server_recv_ms: u64,
) -> Result<HeartBeat, Error> {
    let (client_send_ms, client_recv_ms) = match client {
        None => (0, 0),
        Some(value) => {
            let comma = memchr(b',', value).ok_or(Error::BadHeartBeat)?;
            (parse_ms(&value[..comma])?, parse_ms(&value[comma + 1..])?)
        }
    };
    // "the sender will send heart-beats every MAX(sx, cy) milliseconds" when neither is 0.
    let send_ms = if server_send_ms != 0 && client_recv_ms != 0 {
        server_send_ms.max(client_recv_ms)
    } else {
        0
    };
    let recv_ms = if client_send_ms != 0 && server_recv_ms != 0 {
        client_send_ms.max(server_recv_ms)
    } else {
        0
    };
    Ok(HeartBeat {
        send_ms,
        recv_ms,
        header: (
            if send_ms != 0 { server_send_ms } else { 0 },
            if recv_ms != 0 { server_recv_ms } else { 0 },
        ),
    })
}

/// Appends a frame. Header values are escaped per `version` except for `CONNECT`
/// and `CONNECTED` (never escaped); names are written as given. Adds no headers.
pub fn encode_frame(
    command: Command,
    headers: &[(&str, &[u8])],
    body: &[u8],
    version: Version,
    out: &mut BytesMut,
) {
    let version = if command.escapes_headers() {
        version
    } else {
        Version::V1_0
    };
    let command = command.as_str().as_bytes();
    let headers_len: usize = headers.iter().map(|(n, v)| n.len() + v.len() + 2).sum();
    // Escapes only make it longer: a few spare bytes save a second allocation.
    out.reserve(command.len() + headers_len + body.len() + 3 + 16);
    out.put_slice(command);
    out.put_u8(b'\n');
    for (name, value) in headers {
        out.put_slice(name.as_bytes());
        out.put_u8(b':');
        escape_into(value, version, out);
        out.put_u8(b'\n');
    }
    out.put_u8(b'\n');
    out.put_slice(body);
    out.put_u8(0);
}

/// Appends `value` escaped for a header of `version` (1.0: as is).
pub fn escape_into(value: &[u8], version: Version, out: &mut BytesMut) {
    if version == Version::V1_0 {
        out.put_slice(value);
        return;
    }
    let mut run_start = 0;
    for (i, &b) in value.iter().enumerate() {
        let escaped: &[u8] = match b {
            b'\n' => b"\\n",
            b':' => b"\\c",
            b'\\' => b"\\\\",
            b'\r' if version == Version::V1_2 => b"\\r",
            _ => continue,
        };
        out.put_slice(&value[run_start..i]);
        out.put_slice(escaped);
        run_start = i + 1;
    }
    out.put_slice(&value[run_start..]);
}

/// What the heart-beat clock asks the connection to do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tick {
    /// Nothing is due.
    Idle,
    /// Send a heart-beat (a lone `\n`).
    SendHeartBeat,
    /// The client has been silent too long: close the connection.
    TimedOut,
}

/// The heart-beat clock of one connection. The receive timeout allows twice the
/// negotiated period, plus a second, before giving up, for network jitter.
#[derive(Debug, Clone)]
pub struct Session {
    /// Send a heart-beat after this much silence from the server.
    send_every: Option<Duration>,
    /// Give up after this much silence from the client.
    recv_timeout: Option<Duration>,
    last_sent: Instant,
    last_received: Instant,
}

impl Session {
    /// A clock for `hb`, starting at `now`.
    pub fn new(hb: HeartBeat, now: Instant) -> Self {
        Session {
            send_every: (hb.send_ms != 0).then(|| Duration::from_millis(hb.send_ms)),
            recv_timeout: (hb.recv_ms != 0).then(|| {
                Duration::from_millis(hb.recv_ms.saturating_mul(2).saturating_add(RECV_GRACE_MS))
            }),
            last_sent: now,
            last_received: now,
        }
    }

    /// Anything arrived from the client.
    pub fn on_received(&mut self, now: Instant) {
        self.last_received = now;
    }

    /// Anything was sent to the client.
    pub fn on_sent(&mut self, now: Instant) {
        self.last_sent = now;
    }

    /// What is due at `now`. A timeout wins over a heart-beat. Returning
    /// `SendHeartBeat` counts as sending at `now`, so the next one is a full period
    /// away even if the caller does not call `on_sent` for it.
    pub fn on_tick(&mut self, now: Instant) -> Tick {
        if self.recv_deadline().is_some_and(|deadline| now >= deadline) {
            return Tick::TimedOut;
        }
        if self.send_deadline().is_some_and(|deadline| now >= deadline) {
            self.last_sent = now;
            return Tick::SendHeartBeat;
        }
        Tick::Idle
    }

    /// When `on_tick` should next be called, if ever.
    pub fn next_deadline(&self) -> Option<Instant> {
        match (self.send_deadline(), self.recv_deadline()) {
            (Some(send), Some(recv)) => Some(send.min(recv)),
            (send, recv) => send.or(recv),
        }
    }

    /// `None` when disabled, or too far in the future for `Instant`.
    fn send_deadline(&self) -> Option<Instant> {
        self.send_every.and_then(|d| self.last_sent.checked_add(d))
    }

    fn recv_deadline(&self) -> Option<Instant> {
        self.recv_timeout
            .and_then(|d| self.last_received.checked_add(d))
    }
}

/// `line` without one trailing `\r` (a `\r\n` EOL, accepted in every version).
fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// `head[start..end]`, unescaped for `unescape` (zero-copy when it holds no `\`).
fn field(
    head: &Bytes,
    start: usize,
    end: usize,
    unescape: Option<Version>,
) -> Result<Bytes, Error> {
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

/// One side of a `heart-beat` header: milliseconds, whitespace around allowed.
fn parse_ms(value: &[u8]) -> Result<u64, Error> {
    let digits = value.trim_ascii();
    if digits.is_empty() {
        return Err(Error::BadHeartBeat);
    }
    digits.iter().try_fold(0u64, |acc, &d| {
        if !d.is_ascii_digit() {
            return Err(Error::BadHeartBeat);
        }
        acc.checked_mul(10)
            .and_then(|acc| acc.checked_add(u64::from(d - b'0')))
            .ok_or(Error::BadHeartBeat)
    })
}

/// Extra silence allowed on top of twice the client's period.
const RECV_GRACE_MS: u64 = 1000;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const LIMITS: Limits = Limits {
        max_frame_bytes: 64 * 1024,
        max_headers: 16,
    };

    /// Items decoded until the end of the input or the first error.
    type Outcome = (Vec<Item>, Option<Error>);

    /// Feeds `chunks` one after another, decoding all it can after each.
    fn decode_chunks(chunks: &[&[u8]], limits: Limits, version: Version) -> Outcome {
        let mut decoder = Decoder::new(limits);
        decoder.set_version(version);
        let mut buf = BytesMut::new();
        let mut items = Vec::new();
        for chunk in chunks {
            buf.extend_from_slice(chunk);
            loop {
                match decoder.decode(&mut buf) {
                    Ok(Some(item)) => items.push(item),
                    Ok(None) => break,
                    Err(e) => return (items, Some(e)),
                }
            }
        }
        (items, None)
    }

    /// Decodes `input` all at once, byte by byte and split in two at every offset,
    /// checks that all agree, and returns the outcome.
    fn decode_every_split_with(input: &[u8], limits: Limits, version: Version) -> Outcome {
        let whole = decode_chunks(&[input], limits, version);
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        assert_eq!(
            decode_chunks(&bytes, limits, version),
            whole,
            "byte by byte"
        );
        for at in 0..=input.len() {
            let (a, b) = input.split_at(at);
            assert_eq!(
                decode_chunks(&[a, b], limits, version),
                whole,
                "split at {at}"
            );
        }
        whole
    }

    fn decode_every_split(input: &[u8]) -> Outcome {
        decode_every_split_with(input, LIMITS, Version::V1_2)
    }

    /// Decodes `input` in every split and expects exactly `expected`, no error.
    fn assert_decodes(input: &[u8], version: Version, expected: &[Item]) {
        assert_eq!(
            decode_every_split_with(input, LIMITS, version),
            (expected.to_vec(), None)
        );
    }

    /// Decodes `input` in every split and expects it to fail with `error`.
    fn assert_fails(input: &[u8], limits: Limits, version: Version, error: Error) {
        assert_eq!(
            decode_every_split_with(input, limits, version).1,
            Some(error)
        );
    }

    fn frame(command: Command, headers: &[(&str, &str)], body: &[u8]) -> Item {
        let headers = headers
            .iter()
            .map(|(n, v)| {
                (
                    Bytes::copy_from_slice(n.as_bytes()),
                    Bytes::copy_from_slice(v.as_bytes()),
                )
            })
            .collect();
        Item::Frame(Frame {
            command,
            headers,
            body: Bytes::copy_from_slice(body),
        })
    }

    // The client frames of protocol.md "Observed on the wire", after SockJS decoding.
    const OBSERVED_CONNECT: &[u8] =
        b"CONNECT\naccept-version:1.1,1.0\nheart-beat:10000,10000\n\n\0";
    const OBSERVED_SUBSCRIBE: &[u8] = b"SUBSCRIBE\nid:sub-0\ndestination:/sub/chat/global\n\n\0";
    const OBSERVED_SEND: &[u8] = b"SEND\ndestination:/pub/chat\ncontent-length:97\n\n{\"channel\":\"global\",\"sender\":\"alice@letters.test\",\"message\":\"hello from alice\"}\0";
    const CHAT_BODY: &[u8] = b"{\"channel\":\"global\",\"sender\":\"alice@letters.test\",\"message\":\"hello from alice\"}";

    #[test]
    fn observed_client_frames_decode() {
        // The observed SEND says 97, which counts the backslashes of its JSON-escaped
        // form; stompjs sends the UTF-8 length of the body, 79.
        assert_eq!(CHAT_BODY.len(), 79);
        let send = b"SEND\ndestination:/pub/chat\ncontent-length:79\n\n"
            .iter()
            .chain(CHAT_BODY)
            .chain(b"\0");
        let mut input = Vec::new();
        input.extend_from_slice(OBSERVED_CONNECT);
        input.extend_from_slice(b"\n");
        input.extend_from_slice(OBSERVED_SUBSCRIBE);
        input.extend(send);
        input.extend_from_slice(b"\n");
        assert_decodes(
            &input,
            Version::V1_1,
            &[
                frame(
                    Command::Connect,
                    &[("accept-version", "1.1,1.0"), ("heart-beat", "10000,10000")],
                    b"",
                ),
                Item::HeartBeat,
                frame(
                    Command::Subscribe,
                    &[("id", "sub-0"), ("destination", "/sub/chat/global")],
                    b"",
                ),
                frame(
                    Command::Send,
                    &[("destination", "/pub/chat"), ("content-length", "79")],
                    CHAT_BODY,
                ),
                Item::HeartBeat,
            ],
        );
    }

    #[test]
    fn observed_send_with_wrong_content_length_is_incomplete_then_malformed() {
        // Verbatim, the body is 18 bytes short of its content-length: the decoder waits
        // for them, and the NUL is not where content-length puts it.
        assert_eq!(decode_every_split(OBSERVED_SEND), (vec![], None));
        let input = [OBSERVED_SEND, OBSERVED_SUBSCRIBE].concat();
        let (items, error) = decode_every_split(&input);
        assert!(items.is_empty());
        assert_eq!(
            error,
            Some(Error::Malformed(
                "no NUL after content-length bytes of body"
            ))
        );
    }

    #[test]
    fn spec_examples_1_2() {
        // STOMP 1.2 §"Connecting", §"SEND", §"MESSAGE", §"RECEIPT", §"ERROR".
        let input = b"CONNECT\naccept-version:1.2\nhost:stomp.github.org\n\n\0\
            SEND\ndestination:/queue/a\ncontent-type:text/plain\n\nhello queue a\0\
            MESSAGE\nsubscription:0\nmessage-id:007\ndestination:/queue/a\ncontent-type:text/plain\n\nhello queue a\0\
            RECEIPT\nreceipt-id:message-12345\n\n\0\
            ERROR\nreceipt-id:message-12345\ncontent-type:text/plain\ncontent-length:170\nmessage:malformed frame received\n\n\
            The message:\n-----\nMESSAGE\ndestined:/queue/a\nreceipt:message-12345\n\nHello queue a!\n-----\n\
            Did not contain a destination header, which is REQUIRED\nfor message propagation.\n\0";
        let error_body = &b"The message:\n-----\nMESSAGE\ndestined:/queue/a\nreceipt:message-12345\n\nHello queue a!\n-----\nDid not contain a destination header, which is REQUIRED\nfor message propagation.\n"[..];
        assert_eq!(error_body.len(), 170);
        assert_decodes(
            input,
            Version::V1_2,
            &[
                frame(
                    Command::Connect,
                    &[("accept-version", "1.2"), ("host", "stomp.github.org")],
                    b"",
                ),
                frame(
                    Command::Send,
                    &[("destination", "/queue/a"), ("content-type", "text/plain")],
                    b"hello queue a",
                ),
                frame(
                    Command::Message,
                    &[
                        ("subscription", "0"),
                        ("message-id", "007"),
                        ("destination", "/queue/a"),
                        ("content-type", "text/plain"),
                    ],
                    b"hello queue a",
                ),
                frame(Command::Receipt, &[("receipt-id", "message-12345")], b""),
                frame(
                    Command::Error,
                    &[
                        ("receipt-id", "message-12345"),
                        ("content-type", "text/plain"),
                        ("content-length", "170"),
                        ("message", "malformed frame received"),
                    ],
                    error_body,
                ),
            ],
        );
    }

    #[test]
    fn repeated_headers_keep_order_and_first_wins() {
        // STOMP 1.2 §"Repeated Header Entries".
        let (items, error) = decode_every_split(b"MESSAGE\nfoo:World\nfoo:Hello\n\n\0");
        assert_eq!(error, None);
        let [Item::Frame(f)] = items.as_slice() else {
            panic!("one frame expected: {items:?}")
        };
        assert_eq!(f.header(b"foo"), Some(&b"World"[..]));
        assert_eq!(f.headers.len(), 2);
        assert_eq!(f.header(b"bar"), None);
    }

    #[test]
    fn spec_example_1_0() {
        // STOMP 1.0: no escaping, so a backslash in a value is just a byte.
        assert_decodes(
            b"SEND\ndestination:/queue/a\\b\nreceipt:77\n\nhello queue a\n\0",
            Version::V1_0,
            &[frame(
                Command::Send,
                &[("destination", "/queue/a\\b"), ("receipt", "77")],
                b"hello queue a\n",
            )],
        );
    }

    #[test]
    fn heart_beats_between_frames() {
        assert_decodes(
            b"\n\r\nSEND\ndestination:/a\n\nx\0\n\nDISCONNECT\nreceipt:1\n\n\0\r\n",
            Version::V1_2,
            &[
                Item::HeartBeat,
                Item::HeartBeat,
                frame(Command::Send, &[("destination", "/a")], b"x"),
                Item::HeartBeat,
                Item::HeartBeat,
                frame(Command::Disconnect, &[("receipt", "1")], b""),
                Item::HeartBeat,
            ],
        );
    }

    #[test]
    fn crlf_line_endings_in_every_version() {
        for version in [Version::V1_0, Version::V1_1, Version::V1_2] {
            assert_decodes(
                b"SEND\r\ndestination:/a\r\ncontent-length:2\r\n\r\n\r\n\0",
                version,
                &[frame(
                    Command::Send,
                    &[("destination", "/a"), ("content-length", "2")],
                    b"\r\n",
                )],
            );
        }
    }

    #[test]
    fn content_length_allows_embedded_nuls() {
        assert_decodes(
            b"SEND\ncontent-length:5\ndestination:/a\n\na\0b\0c\0SEND\ndestination:/b\n\n\0",
            Version::V1_2,
            &[
                frame(
                    Command::Send,
                    &[("content-length", "5"), ("destination", "/a")],
                    b"a\0b\0c",
                ),
                frame(Command::Send, &[("destination", "/b")], b""),
            ],
        );
    }

    #[test]
    fn content_length_must_be_followed_by_nul() {
        let rule = Error::Malformed("no NUL after content-length bytes of body");
        assert_fails(
            b"SEND\ncontent-length:1\n\nab\0",
            LIMITS,
            Version::V1_2,
            rule,
        );
        assert_fails(
            b"SEND\ncontent-length:3\n\na\0\0x",
            LIMITS,
            Version::V1_2,
            rule,
        );
    }

    #[test]
    fn first_content_length_wins_and_must_be_digits() {
        assert_decodes(
            b"SEND\ncontent-length:1\ncontent-length:9\n\n\0\0",
            Version::V1_2,
            &[frame(
                Command::Send,
                &[("content-length", "1"), ("content-length", "9")],
                b"\0",
            )],
        );
        for bad in [
            &b"SEND\ncontent-length:\n\n\0"[..],
            b"SEND\ncontent-length:-1\n\n\0",
            b"SEND\ncontent-length:1x\n\n\0",
        ] {
            assert_fails(
                bad,
                LIMITS,
                Version::V1_2,
                Error::Malformed("invalid content-length"),
            );
        }
        assert_fails(
            b"SEND\ncontent-length:99999999999999999999999\n\n",
            LIMITS,
            Version::V1_2,
            Error::TooBig,
        );
    }

    #[test]
    fn too_big_content_length_fails_before_the_body() {
        let limits = Limits {
            max_frame_bytes: 100,
            max_headers: 4,
        };
        assert_fails(
            b"SEND\ncontent-length:101\n\n",
            limits,
            Version::V1_2,
            Error::TooBig,
        );
    }

    #[test]
    fn frame_at_the_limit_passes_and_one_byte_more_fails() {
        // Head "SEND\n\n" is 6 bytes; the NUL is not counted.
        let limits = Limits {
            max_frame_bytes: 10,
            max_headers: 4,
        };
        assert_decodes_with_limits(
            b"SEND\n\nabcd\0",
            limits,
            &[frame(Command::Send, &[], b"abcd")],
        );
        assert_fails(b"SEND\n\nabcde\0", limits, Version::V1_2, Error::TooBig);
        let limits = Limits {
            max_frame_bytes: 25,
            max_headers: 4,
        };
        assert_decodes_with_limits(
            b"SEND\ncontent-length:2\n\nab\0",
            limits,
            &[frame(Command::Send, &[("content-length", "2")], b"ab")],
        );
        assert_fails(
            b"SEND\ncontent-length:3\n\nabc\0",
            limits,
            Version::V1_2,
            Error::TooBig,
        );
        // A head that never ends.
        assert_fails(
            b"SEND\nfoo:barbarbarbarbarbarbarbar",
            limits,
            Version::V1_2,
            Error::TooBig,
        );
        // Nothing but a head of exactly the limit: the body must be empty.
        assert_decodes_with_limits(
            b"SEND\nfoo:barbarbarbarba\n\n\0",
            limits,
            &[frame(Command::Send, &[("foo", "barbarbarbarba")], b"")],
        );
        assert_fails(
            b"SEND\nfoo:barbarbarbarbar\n\n\0",
            limits,
            Version::V1_2,
            Error::TooBig,
        );
    }

    fn assert_decodes_with_limits(input: &[u8], limits: Limits, expected: &[Item]) {
        assert_eq!(
            decode_every_split_with(input, limits, Version::V1_2),
            (expected.to_vec(), None)
        );
    }

    #[test]
    fn too_many_headers() {
        let limits = Limits {
            max_frame_bytes: 1000,
            max_headers: 2,
        };
        assert_decodes_with_limits(
            b"SEND\na:1\nb:2\n\n\0",
            limits,
            &[frame(Command::Send, &[("a", "1"), ("b", "2")], b"")],
        );
        // Detected at the third header line, before the head ends.
        assert_fails(
            b"SEND\na:1\nb:2\nc:3\n",
            limits,
            Version::V1_2,
            Error::TooBig,
        );
    }

    #[test]
    fn commands_match_exactly() {
        assert_fails(b"send\n\n\0", LIMITS, Version::V1_2, Error::UnknownCommand);
        assert_fails(b"SEND \n\n\0", LIMITS, Version::V1_2, Error::UnknownCommand);
        // Rejected as soon as the command line is complete.
        assert_fails(
            b"GET / HTTP/1.1\r\n",
            LIMITS,
            Version::V1_2,
            Error::UnknownCommand,
        );
        assert_fails(
            b"\0",
            LIMITS,
            Version::V1_2,
            Error::Malformed("NUL before the end of the headers"),
        );
    }

    #[test]
    fn head_syntax_errors() {
        assert_fails(
            b"SEND\nno-colon\n",
            LIMITS,
            Version::V1_2,
            Error::Malformed("header line without ':'"),
        );
        assert_fails(
            b"SEND\n:value\n\n\0",
            LIMITS,
            Version::V1_2,
            Error::Malformed("empty header name"),
        );
        assert_fails(
            b"SEND\na:b\0\n\n\0",
            LIMITS,
            Version::V1_2,
            Error::Malformed("NUL before the end of the headers"),
        );
        assert_fails(
            b"SEND\0",
            LIMITS,
            Version::V1_2,
            Error::Malformed("NUL before the end of the headers"),
        );
    }

    #[test]
    fn values_keep_colons_and_spaces() {
        assert_decodes(
            b"SEND\ndestination: /a:b \n\n\0",
            Version::V1_0,
            &[frame(Command::Send, &[("destination", " /a:b ")], b"")],
        );
    }

    #[test]
    fn unescapes_per_version() {
        let input = b"SEND\nna\\cme:a\\nb\\cc\\\\d\n\n\0";
        let expected = [frame(Command::Send, &[("na:me", "a\nb:c\\d")], b"")];
        assert_decodes(input, Version::V1_1, &expected);
        assert_decodes(input, Version::V1_2, &expected);
        assert_decodes(
            input,
            Version::V1_0,
            &[frame(Command::Send, &[("na\\cme", "a\\nb\\cc\\\\d")], b"")],
        );
        assert_decodes(
            b"SEND\na:x\\ry\n\n\0",
            Version::V1_2,
            &[frame(Command::Send, &[("a", "x\ry")], b"")],
        );
        assert_fails(
            b"SEND\na:x\\ry\n\n\0",
            LIMITS,
            Version::V1_1,
            Error::BadEscape,
        );
        assert_fails(
            b"SEND\na:x\\ty\n\n\0",
            LIMITS,
            Version::V1_2,
            Error::BadEscape,
        );
        assert_fails(
            b"SEND\na:x\\\n\n\0",
            LIMITS,
            Version::V1_2,
            Error::BadEscape,
        );
        assert_fails(
            b"SEND\na\\q:x\n\n\0",
            LIMITS,
            Version::V1_1,
            Error::BadEscape,
        );
    }

    #[test]
    fn connect_and_connected_are_never_unescaped() {
        for command in ["CONNECT", "STOMP", "CONNECTED"] {
            let input = format!("{command}\nlogin:a\\b\\t\n\n\0");
            let (items, error) = decode_every_split(input.as_bytes());
            assert_eq!(error, None);
            let [Item::Frame(f)] = items.as_slice() else {
                panic!("one frame expected: {items:?}")
            };
            assert_eq!(f.header(b"login"), Some(&b"a\\b\\t"[..]));
        }
    }

    #[test]
    fn body_and_unescaped_headers_share_the_read_buffer() {
        let mut buf = BytesMut::from(&b"SEND\ndestination:/a\n\nhello\0"[..]);
        let start = buf.as_ptr() as usize;
        let item = Decoder::new(LIMITS).decode(&mut buf);
        let Ok(Some(Item::Frame(f))) = item else {
            panic!("a frame expected: {item:?}")
        };
        assert_eq!(f.body.as_ptr() as usize, start + 21);
        assert_eq!(f.headers[0].1.as_ptr() as usize, start + 17);
        assert!(buf.is_empty());
    }

    #[test]
    fn large_frame_trickling_in_byte_by_byte() {
        let body = vec![b'x'; 60_000];
        for head in [&b"SEND\n\n"[..], b"SEND\ncontent-length:60000\n\n"] {
            let input = [head, &body, b"\0"].concat();
            let bytes: Vec<&[u8]> = input.chunks(1).collect();
            let (items, error) = decode_chunks(&bytes, LIMITS, Version::V1_2);
            assert_eq!(error, None);
            let [Item::Frame(f)] = items.as_slice() else {
                panic!("one frame expected")
            };
            assert_eq!(f.body.len(), 60_000);
        }
    }

    #[test]
    fn names_and_messages() {
        let all = [
            Command::Connect,
            Command::Stomp,
            Command::Send,
            Command::Subscribe,
            Command::Unsubscribe,
            Command::Ack,
            Command::Nack,
            Command::Begin,
            Command::Commit,
            Command::Abort,
            Command::Disconnect,
            Command::Connected,
            Command::Message,
            Command::Receipt,
            Command::Error,
        ];
        for command in all {
            assert_eq!(Command::parse(command.as_str().as_bytes()), Some(command));
        }
        assert_eq!(Version::V1_0.as_str(), "1.0");
        assert_eq!(Version::V1_1.as_str(), "1.1");
        assert_eq!(Version::V1_2.as_str(), "1.2");
        assert_eq!(
            Error::Malformed("header line without ':'").message(),
            "header line without ':'"
        );
        assert_eq!(Error::TooBig.message(), "frame too large");
        assert_eq!(
            Error::UnsupportedVersion.message(),
            "supported protocol versions are 1.0,1.1,1.2"
        );
    }

    #[test]
    fn version_negotiation() {
        assert_eq!(negotiate_version(None), Ok(Version::V1_0));
        assert_eq!(negotiate_version(Some(b"1.1,1.0")), Ok(Version::V1_1));
        assert_eq!(negotiate_version(Some(b"1.0,1.1,1.2")), Ok(Version::V1_2));
        assert_eq!(negotiate_version(Some(b"1.2, 1.0")), Ok(Version::V1_2));
        assert_eq!(negotiate_version(Some(b"2.0,1.0")), Ok(Version::V1_0));
        assert_eq!(
            negotiate_version(Some(b"2.0")),
            Err(Error::UnsupportedVersion)
        );
        assert_eq!(negotiate_version(Some(b"")), Err(Error::UnsupportedVersion));
    }

    #[test]
    fn heart_beat_negotiation() {
        let hb = |send_ms, recv_ms, header| HeartBeat {
            send_ms,
            recv_ms,
            header,
        };
        // The classic client and a server that can do 10 s both ways.
        assert_eq!(
            negotiate_heartbeat(Some(b"10000,10000"), 10_000, 10_000),
            Ok(hb(10_000, 10_000, (10_000, 10_000)))
        );
        // The larger period wins in each direction.
        assert_eq!(
            negotiate_heartbeat(Some(b"4000,20000"), 10_000, 5_000),
            Ok(hb(20_000, 5_000, (10_000, 5_000)))
        );
        // A zero on either side switches that direction off.
        assert_eq!(
            negotiate_heartbeat(Some(b"0,10000"), 10_000, 10_000),
            Ok(hb(10_000, 0, (10_000, 0)))
        );
        assert_eq!(
            negotiate_heartbeat(Some(b"10000,0"), 10_000, 10_000),
            Ok(hb(0, 10_000, (0, 10_000)))
        );
        assert_eq!(
            negotiate_heartbeat(Some(b"10000,10000"), 0, 0),
            Ok(hb(0, 0, (0, 0)))
        );
        assert_eq!(
            negotiate_heartbeat(None, 10_000, 10_000),
            Ok(hb(0, 0, (0, 0)))
        );
        assert_eq!(
            negotiate_heartbeat(Some(b" 1000 , 2000 "), 1, 1),
            Ok(hb(2000, 1000, (1, 1)))
        );
        for bad in [
            &b""[..],
            b"1000",
            b"a,1",
            b"1,",
            b",1",
            b"1,2,3",
            b"-1,2",
            b"99999999999999999999999,1",
        ] {
            assert_eq!(
                negotiate_heartbeat(Some(bad), 1, 1),
                Err(Error::BadHeartBeat),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn session_clock() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut s = Session::new(
            HeartBeat {
                send_ms: 1000,
                recv_ms: 3000,
                header: (1000, 3000),
            },
            t0,
        );
        assert_eq!(s.next_deadline(), Some(ms(1000)));
        assert_eq!(s.on_tick(ms(999)), Tick::Idle);
        assert_eq!(s.on_tick(ms(1000)), Tick::SendHeartBeat);
        assert_eq!(s.next_deadline(), Some(ms(2000)));
        s.on_sent(ms(1500));
        assert_eq!(s.next_deadline(), Some(ms(2500)));
        assert_eq!(s.on_tick(ms(2000)), Tick::Idle);
        s.on_received(ms(2000));
        // Receive timeout: 2 * 3000 + 1000 after the last byte received.
        assert_eq!(s.on_tick(ms(7999)), Tick::SendHeartBeat);
        s.on_sent(ms(7999));
        assert_eq!(s.next_deadline(), Some(ms(8999)));
        s.on_sent(ms(8500));
        assert_eq!(s.next_deadline(), Some(ms(9000)));
        assert_eq!(s.on_tick(ms(9000)), Tick::TimedOut);

        let off = Session::new(
            HeartBeat {
                send_ms: 0,
                recv_ms: 0,
                header: (0, 0),
            },
            t0,
        );
        assert_eq!(off.next_deadline(), None);
        let mut recv_only = Session::new(
            HeartBeat {
                send_ms: 0,
                recv_ms: 10,
                header: (0, 10),
            },
            t0,
        );
        assert_eq!(recv_only.next_deadline(), Some(ms(1020)));
        assert_eq!(recv_only.on_tick(ms(100_000)), Tick::TimedOut);
        let mut huge = Session::new(
            HeartBeat {
                send_ms: u64::MAX,
                recv_ms: u64::MAX,
                header: (0, 0),
            },
            t0,
        );
        assert_eq!(huge.on_tick(ms(100_000)), Tick::Idle);
    }

    #[test]
    fn encodes_frames() {
        let mut out = BytesMut::new();
        encode_frame(
            Command::Connected,
            &[("version", b"1.1"), ("heart-beat", b"0,0")],
            b"",
            Version::V1_1,
            &mut out,
        );
        assert_eq!(&out[..], b"CONNECTED\nversion:1.1\nheart-beat:0,0\n\n\0");

        out.clear();
        let headers: [(&str, &[u8]); 2] = [
            ("destination", b"/sub/chat/a:b"),
            ("message-id", b"x\\y\nz\r"),
        ];
        encode_frame(Command::Message, &headers, b"{}", Version::V1_2, &mut out);
        assert_eq!(
            &out[..],
            b"MESSAGE\ndestination:/sub/chat/a\\cb\nmessage-id:x\\\\y\\nz\\r\n\n{}\0"
        );

        out.clear();
        encode_frame(
            Command::Connected,
            &[("server", b"a:b\\c")],
            b"",
            Version::V1_2,
            &mut out,
        );
        assert_eq!(&out[..], b"CONNECTED\nserver:a:b\\c\n\n\0");
    }

    #[test]
    fn escapes_per_version() {
        let escaped = |value: &[u8], version| {
            let mut out = BytesMut::new();
            escape_into(value, version, &mut out);
            out
        };
        assert_eq!(
            &escaped(b"a:b\\c\nd\re", Version::V1_0)[..],
            b"a:b\\c\nd\re"
        );
        assert_eq!(
            &escaped(b"a:b\\c\nd\re", Version::V1_1)[..],
            b"a\\cb\\\\c\\nd\re"
        );
        assert_eq!(
            &escaped(b"a:b\\c\nd\re", Version::V1_2)[..],
            b"a\\cb\\\\c\\nd\\re"
        );
        assert_eq!(&escaped(b"", Version::V1_2)[..], b"");
    }

    /// Removes the bytes a header of `version` cannot carry: NUL always; without `\r`
    /// escaping, `\r` (a trailing one would read as part of `\r\n`); in 1.0 also `\n`.
    fn sanitize(value: &mut Vec<u8>, version: Version) {
        value.retain(|&b| {
            b != 0
                && (version == Version::V1_2 || b != b'\r')
                && (version != Version::V1_0 || b != b'\n')
        });
    }

    fn arb_version() -> impl Strategy<Value = Version> {
        prop_oneof![
            Just(Version::V1_0),
            Just(Version::V1_1),
            Just(Version::V1_2)
        ]
    }

    fn arb_command() -> impl Strategy<Value = Command> {
        prop::sample::select(vec![
            Command::Connect,
            Command::Stomp,
            Command::Send,
            Command::Subscribe,
            Command::Message,
            Command::Connected,
            Command::Error,
            Command::Disconnect,
        ])
    }

    type ArbFrame = (Command, Vec<(String, Vec<u8>)>, Vec<u8>, bool);

    fn arb_frame() -> impl Strategy<Value = ArbFrame> {
        let header = (
            "[a-z][a-z0-9-]{0,10}",
            prop::collection::vec(any::<u8>(), 0..24),
        );
        (
            arb_command(),
            prop::collection::vec(header, 0..6),
            prop::collection::vec(any::<u8>(), 0..64),
            any::<bool>(),
        )
    }

    proptest! {
        #[test]
        fn encode_then_decode_round_trips(
            version in arb_version(),
            frames in prop::collection::vec(arb_frame(), 1..4),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..4),
        ) {
            let mut wire = BytesMut::new();
            let mut expected = Vec::new();
            for (command, headers, body, with_length) in frames {
                let effective = if command.escapes_headers() { version } else { Version::V1_0 };
                let mut headers: Vec<(String, Vec<u8>)> =
                    headers.into_iter().filter(|(n, _)| n != "content-length").collect();
                for (_, value) in &mut headers {
                    sanitize(value, effective);
                }
                if with_length || body.contains(&0) {
                    headers.insert(0, ("content-length".to_string(), body.len().to_string().into_bytes()));
                }
                let refs: Vec<(&str, &[u8])> = headers.iter().map(|(n, v)| (n.as_str(), v.as_slice())).collect();
                encode_frame(command, &refs, &body, version, &mut wire);
                wire.extend_from_slice(b"\n");
                let headers = headers.into_iter().map(|(n, v)| (Bytes::from(n), Bytes::from(v))).collect();
                expected.push(Item::Frame(Frame { command, headers, body: Bytes::from(body) }));
                expected.push(Item::HeartBeat);
            }
            let mut offsets: Vec<usize> = cuts.iter().map(|c| c.index(wire.len() + 1)).collect();
            offsets.sort_unstable();
            let mut chunks = Vec::new();
            let mut last = 0;
            for at in offsets.into_iter().chain([wire.len()]) {
                chunks.push(&wire[last..at]);
                last = at;
            }
            prop_assert_eq!(decode_chunks(&chunks, LIMITS, version), (expected, None));
        }
    }
}
