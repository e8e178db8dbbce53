//! STOMP 1.0, 1.1 and 1.2, sans-IO. `Decoder` turns a byte stream (the concatenated
//! payloads of WebSocket or SockJS messages, so a frame may span several of them and
//! one may hold several frames) into frames and heart-beats; `encode_frame` writes
//! frames with the header escaping of the negotiated version; `Clock` keeps the
//! negotiated heart-beat clock, with time passed in by the caller.

use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use memchr::memchr;
use smallvec::SmallVec;

mod decode;

pub use decode::Decoder;

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
    /// Longest command or header line (its EOL not counted).
    pub max_line_bytes: usize,
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
    /// A command or header line over `max_line_bytes`.
    #[error("header line too long")]
    LineTooLong,
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
            Error::LineTooLong => "header line too long",
            Error::UnsupportedVersion => "supported protocol versions are 1.0,1.1,1.2",
            Error::BadHeartBeat => "invalid heart-beat header",
        }
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
pub fn encode_frame(command: Command, headers: &[(&str, &[u8])], body: &[u8], version: Version, out: &mut BytesMut) {
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
pub struct Clock {
    /// Send a heart-beat after this much silence from the server.
    send_every: Option<Duration>,
    /// Give up after this much silence from the client.
    recv_timeout: Option<Duration>,
    last_sent: Instant,
    last_received: Instant,
}

impl Clock {
    /// A clock for `hb`, starting at `now`.
    pub fn new(hb: HeartBeat, now: Instant) -> Self {
        Clock {
            send_every: (hb.send_ms != 0).then(|| Duration::from_millis(hb.send_ms)),
            recv_timeout: (hb.recv_ms != 0)
                .then(|| Duration::from_millis(hb.recv_ms.saturating_mul(2).saturating_add(RECV_GRACE_MS))),
            last_sent: now,
            last_received: now,
        }
    }

    /// Anything arrived from the client.
    pub fn on_received(&mut self, now: Instant) {
        self.last_received = now;
    }

    /// Something was sent to the client at `at` (earlier news is ignored).
    pub fn on_sent(&mut self, at: Instant) {
        self.last_sent = self.last_sent.max(at);
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
        self.recv_timeout.and_then(|d| self.last_received.checked_add(d))
    }
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
mod tests;
