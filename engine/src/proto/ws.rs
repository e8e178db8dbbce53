//! RFC 6455 WebSocket framing, sans-IO. `Decoder` turns bytes from `shard/conn.rs` into
//! whole messages (fragments reassembled, text validated as UTF-8 across fragments,
//! control frames passed through between fragments); the `encode_*` functions append
//! frames to a caller-owned buffer. The role decides the masking rules (§5.1).

use bytes::{Bytes, BytesMut};

/// Which side of the connection this codec plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Expects masked frames, sends unmasked ones.
    Server,
    /// Expects unmasked frames, sends masked ones.
    Client,
}

/// Frame opcodes (§5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpCode {
    /// 0x0
    Continuation,
    /// 0x1
    Text,
    /// 0x2
    Binary,
    /// 0x8
    Close,
    /// 0x9
    Ping,
    /// 0xA
    Pong,
}

/// Size limits, checked as soon as a length is known and before memory is reserved.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest payload of one frame.
    pub max_frame_bytes: usize,
    /// Largest reassembled message.
    pub max_message_bytes: usize,
}

/// A complete message (data messages reassembled from their fragments).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A text message; its payload is valid UTF-8.
    Text(Bytes),
    /// A binary message.
    Binary(Bytes),
    /// A ping with its payload (at most 125 bytes).
    Ping(Bytes),
    /// A pong with its payload.
    Pong(Bytes),
    /// A close frame: `None` when it had no body, else the code and the UTF-8 reason.
    Close(Option<(u16, Bytes)>),
}

/// A broken framing rule; each maps to one close code (`close_code`).
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// A violation of RFC 6455 framing (close 1002); the text names the rule.
    #[error("protocol violation: {0}")]
    Protocol(&'static str),
    /// Text that is not UTF-8 (close 1007).
    #[error("invalid UTF-8 in a text message")]
    InvalidUtf8,
    /// A frame or message over the limits (close 1009).
    #[error("message too big")]
    TooBig,
}

impl Error {
    /// The close code to send for this error (§7.4.1).
    pub fn close_code(&self) -> u16 {
        todo!()
    }
}

/// Streaming frame decoder with the state of a fragmented message.
#[derive(Debug)]
pub struct Decoder {
    _p: (),
}

impl Decoder {
    /// A decoder for `role` with `limits`.
    pub fn new(role: Role, limits: Limits) -> Self {
        let _ = (role, limits);
        todo!()
    }

    /// Decodes the next complete message from `buf`, consuming its bytes. `Ok(None)`
    /// means more bytes are needed (the partial tail stays in `buf`).
    ///
    /// # Errors
    /// Any framing violation; the connection must then be closed with `close_code()`.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Message>, Error> {
        let _ = buf;
        todo!()
    }
}

/// Appends a frame header for a payload of `len` bytes. With `mask`, sets the mask bit
/// and writes the key (the caller masks the payload, see `apply_mask`). Returns the
/// number of bytes written.
pub fn encode_header(opcode: OpCode, fin: bool, len: usize, mask: Option<[u8; 4]>, out: &mut BytesMut) -> usize {
    let _ = (opcode, fin, len, mask, out);
    todo!()
}

/// Appends a whole frame (header and payload, masked when `mask` is given).
pub fn encode_frame(opcode: OpCode, payload: &[u8], mask: Option<[u8; 4]>, out: &mut BytesMut) -> usize {
    let _ = (opcode, payload, mask, out);
    todo!()
}

/// Appends a close frame with `code` and `reason` (reason truncated to fit 125 bytes).
pub fn encode_close(code: u16, reason: &str, mask: Option<[u8; 4]>, out: &mut BytesMut) -> usize {
    let _ = (code, reason, mask, out);
    todo!()
}

/// XORs `data` with `mask`, starting at mask offset `offset` (§5.3).
pub fn apply_mask(data: &mut [u8], mask: [u8; 4], offset: usize) {
    let _ = (data, mask, offset);
    todo!()
}
