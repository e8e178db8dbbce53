//! The sans-IO protocol layer: bytes in, frames out. Nothing here touches a socket,
//! a clock or an executor, so every rule is unit-tested and fuzzed without a runtime.
//!
//! - [`http`]: HTTP/1.1 requests (upgrade, SockJS `/info`, health, metrics) and responses.
//! - [`ws`]: RFC 6455 frames, masking, fragmentation, close codes.
//! - [`sockjs`]: SockJS `o`, `h`, `a[...]`, `c[...]` framing over the WebSocket transport;
//!   [`sockjs::http`] adds its HTTP transports (xhr, xhr_streaming, xhr_send, eventsource).
//! - [`stomp`]: STOMP 1.0–1.2 frames, header escaping, heart-beat negotiation.
//! - [`server`]: the server role, chaining the three: bytes in, STOMP frames out; the
//!   server's frames (replies, `MESSAGE`s, closes) out as wire bytes.
//! - [`client`]: the client role (upgrade request, masked frames), for load generators
//!   and tests.
//!
//! Conventions: decoders take `&mut BytesMut`, cut complete frames out with
//! `split_to(..).freeze()` and leave a partial tail in place (partial input is never an
//! error); encoders append to a caller-owned `&mut BytesMut`.

#![warn(missing_docs)]

pub mod client;
pub mod http;
pub mod server;
pub mod sockjs;
pub mod stomp;
pub mod ws;

/// How a connection carries STOMP frames inside WebSocket messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Framing {
    /// One or more STOMP frames per WebSocket message (`{base}/websocket`, `/ws`).
    Raw,
    /// SockJS over WebSocket: the server sends `o`, `h`, `a["..."]`, `c[...]`, the client
    /// sends JSON arrays of strings (`{base}/{server}/{session}/websocket`).
    SockJs,
    /// SockJS over its HTTP transports (`xhr`, `xhr_streaming`, `eventsource`): the
    /// server's frames are bare SockJS frames, each ending in `\n` (`o\n`, `a[...]\n`,
    /// `c[...]\n`), with no WebSocket header; what the client sends arrives as STOMP bytes,
    /// already unwrapped from `xhr_send` bodies by [`sockjs::http::decode_send`].
    SockJsHttp,
}

impl Framing {
    /// True for both SockJS framings (they send `o` and `h` frames).
    pub fn is_sockjs(self) -> bool {
        matches!(self, Framing::SockJs | Framing::SockJsHttp)
    }
}

/// Any protocol error, by layer. Each layer maps its own errors to exactly one answer
/// to the peer (HTTP status, WebSocket close code, STOMP `ERROR`).
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ProtocolError {
    /// A bad HTTP request or upgrade.
    #[error("http: {0}")]
    Http(#[from] http::Error),
    /// A bad WebSocket frame.
    #[error("websocket: {0}")]
    Ws(#[from] ws::Error),
    /// A bad SockJS message.
    #[error("sockjs: {0}")]
    SockJs(#[from] sockjs::Error),
    /// A bad STOMP frame.
    #[error("stomp: {0}")]
    Stomp(#[from] stomp::Error),
}
