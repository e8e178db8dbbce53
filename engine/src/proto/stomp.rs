//! STOMP 1.0, 1.1 and 1.2, sans-IO. `Decoder` turns a byte stream (the concatenated
//! payloads of WebSocket or SockJS messages, so a frame may span several of them and
//! one may hold several frames) into frames and heart-beats; `encode_frame` writes
//! frames with the header escaping of the negotiated version; `Session` keeps the
//! negotiated heart-beat clock, with time passed in by the caller.

use std::time::Instant;

use bytes::{Bytes, BytesMut};
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
        todo!()
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
        todo!()
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
        let _ = name;
        todo!()
    }
}

/// What the decoder yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// A complete frame.
    Frame(Frame),
    /// A lone EOL (`\n` or `\r\n`) between frames.
    HeartBeat,
}

/// Limits, checked before memory is reserved.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest frame (command, headers and body).
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
        todo!()
    }
}

/// Streaming frame decoder.
#[derive(Debug)]
pub struct Decoder {
    _p: (),
}

impl Decoder {
    /// A decoder that unescapes as 1.2 until `set_version` (CONNECT and CONNECTED
    /// headers are never unescaped, whatever the version).
    pub fn new(limits: Limits) -> Self {
        let _ = limits;
        todo!()
    }

    /// Sets the version negotiated by `CONNECT`; later frames unescape accordingly.
    pub fn set_version(&mut self, version: Version) {
        let _ = version;
        todo!()
    }

    /// Decodes the next item from `buf`, consuming its bytes; `Ok(None)` means more
    /// bytes are needed. `content-length`, when present, decides where the body ends;
    /// otherwise it ends at the first NUL.
    ///
    /// # Errors
    /// Any `Error` but `UnsupportedVersion`/`BadHeartBeat`; the connection then gets an
    /// `ERROR` and is closed.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Item>, Error> {
        let _ = buf;
        todo!()
    }
}

/// The highest version in the comma-separated `accept-version` (absent: 1.0).
///
/// # Errors
/// `UnsupportedVersion` when none of 1.0, 1.1, 1.2 is offered.
pub fn negotiate_version(accept_version: Option<&[u8]>) -> Result<Version, Error> {
    let _ = accept_version;
    todo!()
}

/// The outcome of heart-beat negotiation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeartBeat {
    /// The server sends a heart-beat when it has sent nothing for this long (0: never).
    pub send_ms: u64,
    /// The client promised to send something at least this often (0: no promise).
    pub recv_ms: u64,
    /// The `heart-beat` header value for `CONNECTED`: `"send_ms,recv_ms"`.
    pub header: (u64, u64),
}

/// Negotiates heart-beats (STOMP 1.1 §Heart-beating) from the client's `heart-beat`
/// header (absent: `0,0`) and the server's abilities: it can send every
/// `server_send_ms` and wants to hear from the client every `server_recv_ms` (0 for
/// either disables that direction).
///
/// # Errors
/// `BadHeartBeat` on a malformed header.
pub fn negotiate_heartbeat(client: Option<&[u8]>, server_send_ms: u64, server_recv_ms: u64) -> Result<HeartBeat, Error> {
    let _ = (client, server_send_ms, server_recv_ms);
    todo!()
}

/// Appends a frame. Header values are escaped per `version` except for `CONNECT`
/// and `CONNECTED` (never escaped); names are written as given. Adds no headers.
pub fn encode_frame(command: Command, headers: &[(&str, &[u8])], body: &[u8], version: Version, out: &mut BytesMut) {
    let _ = (command, headers, body, version, out);
    todo!()
}

/// Appends `value` escaped for a header of `version` (1.0: as is).
pub fn escape_into(value: &[u8], version: Version, out: &mut BytesMut) {
    let _ = (value, version, out);
    todo!()
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
    _p: (),
}

impl Session {
    /// A clock for `hb`, starting at `now`.
    pub fn new(hb: HeartBeat, now: Instant) -> Self {
        let _ = (hb, now);
        todo!()
    }

    /// Anything arrived from the client.
    pub fn on_received(&mut self, now: Instant) {
        let _ = now;
        todo!()
    }

    /// Anything was sent to the client.
    pub fn on_sent(&mut self, now: Instant) {
        let _ = now;
        todo!()
    }

    /// What is due at `now`.
    pub fn on_tick(&mut self, now: Instant) -> Tick {
        let _ = now;
        todo!()
    }

    /// When `on_tick` should next be called, if ever.
    pub fn next_deadline(&self) -> Option<Instant> {
        todo!()
    }
}

