//! RFC 6455 WebSocket framing, sans-IO. `Decoder` turns bytes from `shard/conn.rs` into
//! whole messages (fragments reassembled, text validated as UTF-8 across fragments,
//! control frames passed through between fragments); the `encode_*` functions append
//! frames to a caller-owned buffer. The role decides the masking rules (§5.1).

use bytes::{Buf, Bytes, BytesMut};

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
    /// A text message; its payload is valid UTF-8. Mutable so that the next decoder
    /// (STOMP) can cut frames out of it in place, without a copy.
    Text(BytesMut),
    /// A binary message.
    Binary(BytesMut),
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
        match self {
            Error::Protocol(_) => CLOSE_PROTOCOL_ERROR,
            Error::InvalidUtf8 => CLOSE_INVALID_PAYLOAD,
            Error::TooBig => CLOSE_MESSAGE_TOO_BIG,
        }
    }
}

/// Streaming frame decoder with the state of a fragmented message.
#[derive(Debug)]
pub struct Decoder {
    role: Role,
    limits: Limits,
    /// The data message being reassembled. Boxed so that an idle decoder (the common
    /// case, one per connection) stays at four words.
    partial: Option<Box<Partial>>,
}

impl Decoder {
    /// A decoder for `role` with `limits`.
    pub fn new(role: Role, limits: Limits) -> Self {
        Decoder {
            role,
            limits,
            partial: None,
        }
    }

    /// Decodes the next complete message from `buf`, consuming its bytes. `Ok(None)`
    /// means more bytes are needed (the partial tail stays in `buf`).
    ///
    /// # Errors
    /// Any framing violation; the connection must then be closed with `close_code()`.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Message>, Error> {
        // Each pass consumes one frame; only non-final data fragments loop again.
        loop {
            let Some(header) = parse_header(buf, self.role)? else {
                return Ok(None);
            };
            self.check_header(&header)?;
            let frame_bytes = header
                .header_bytes
                .checked_add(header.payload_bytes)
                .ok_or(Error::TooBig)?;
            if buf.len() < frame_bytes {
                // The length passed the limits above, so reserving the whole frame
                // now saves regrowing the read buffer as the payload trickles in.
                buf.reserve(frame_bytes - buf.len());
                return Ok(None);
            }
            let mut payload = buf.split_to(frame_bytes);
            payload.advance(header.header_bytes);
            if let Some(key) = header.mask {
                apply_mask(&mut payload, key, 0);
            }
            match header.opcode {
                OpCode::Ping => return Ok(Some(Message::Ping(payload.freeze()))),
                OpCode::Pong => return Ok(Some(Message::Pong(payload.freeze()))),
                OpCode::Close => return parse_close(payload.freeze()).map(Some),
                OpCode::Text | OpCode::Binary => {
                    let text = header.opcode == OpCode::Text;
                    if header.fin {
                        // The common case: one frame, one message, no copy.
                        if text && std::str::from_utf8(&payload).is_err() {
                            return Err(Error::InvalidUtf8);
                        }
                        return Ok(Some(if text {
                            Message::Text(payload)
                        } else {
                            Message::Binary(payload)
                        }));
                    }
                    let capacity = payload.len().saturating_mul(2).min(self.limits.max_message_bytes);
                    let mut partial = Box::new(Partial {
                        text,
                        payload: BytesMut::with_capacity(capacity),
                        utf8_checked: 0,
                    });
                    partial.payload.extend_from_slice(&payload);
                    partial.check_utf8(false)?;
                    self.partial = Some(partial);
                }
                OpCode::Continuation => {
                    let partial = self.partial.as_mut().ok_or(Error::Protocol(NO_MESSAGE_IN_PROGRESS))?;
                    partial.payload.extend_from_slice(&payload);
                    partial.check_utf8(header.fin)?;
                    if header.fin {
                        if let Some(done) = self.partial.take() {
                            let payload = done.payload;
                            return Ok(Some(if done.text {
                                Message::Text(payload)
                            } else {
                                Message::Binary(payload)
                            }));
                        }
                    }
                }
            }
        }
    }

    /// Checks a parsed header against the fragmentation state and the size limits,
    /// before any payload memory is reserved.
    fn check_header(&self, header: &Header) -> Result<(), Error> {
        // §5.4: a continuation needs a message in progress, and the fragments of one
        // message must not be interleaved with another data message.
        match (header.opcode, self.partial.is_some()) {
            (OpCode::Continuation, false) => return Err(Error::Protocol(NO_MESSAGE_IN_PROGRESS)),
            (OpCode::Text | OpCode::Binary, true) => {
                return Err(Error::Protocol(
                    "new data frame while a fragmented message is in progress",
                ))
            }
            _ => {}
        }
        if header.payload_bytes > self.limits.max_frame_bytes {
            return Err(Error::TooBig);
        }
        if !header.opcode.is_control() {
            let so_far_bytes = self.partial.as_ref().map_or(0, |p| p.payload.len());
            if so_far_bytes.saturating_add(header.payload_bytes) > self.limits.max_message_bytes {
                return Err(Error::TooBig);
            }
        }
        Ok(())
    }
}

/// Appends a frame header for a payload of `len` bytes. With `mask`, sets the mask bit
/// and writes the key (the caller masks the payload, see `apply_mask`). Returns the
/// number of bytes written.
pub fn encode_header(opcode: OpCode, fin: bool, len: usize, mask: Option<[u8; 4]>, out: &mut BytesMut) -> usize {
    let mut header = [0u8; MAX_HEADER_BYTES];
    let n = write_header(opcode, fin, len, mask, &mut header);
    out.extend_from_slice(&header[..n]);
    n
}

/// Writes a frame header like [`encode_header`] into the start of `header`; returns its
/// length.
pub fn write_header(
    opcode: OpCode,
    fin: bool,
    len: usize,
    mask: Option<[u8; 4]>,
    header: &mut [u8; MAX_HEADER_BYTES],
) -> usize {
    header[0] = if fin { FIN_BIT } else { 0 } | opcode.bits();
    let mask_bit = if mask.is_some() { MASK_BIT } else { 0 };
    // §5.2: the minimal encoding of the length.
    let mut n = 2;
    if len <= MAX_LEN7 {
        header[1] = mask_bit | len as u8;
    } else if let Ok(len16) = u16::try_from(len) {
        header[1] = mask_bit | LEN16;
        header[2..4].copy_from_slice(&len16.to_be_bytes());
        n = 4;
    } else {
        header[1] = mask_bit | LEN64;
        header[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        n = 10;
    }
    if let Some(key) = mask {
        header[n..n + 4].copy_from_slice(&key);
        n += 4;
    }
    n
}

/// Appends a whole frame (header and payload, masked when `mask` is given).
pub fn encode_frame(opcode: OpCode, payload: &[u8], mask: Option<[u8; 4]>, out: &mut BytesMut) -> usize {
    out.reserve(MAX_HEADER_BYTES + payload.len());
    let header_bytes = encode_header(opcode, true, payload.len(), mask, out);
    let start = out.len();
    out.extend_from_slice(payload);
    if let Some(key) = mask {
        apply_mask(&mut out[start..], key, 0);
    }
    header_bytes + payload.len()
}

/// Appends a close frame with `code` and `reason` (reason truncated to fit 125 bytes).
pub fn encode_close(code: u16, reason: &str, mask: Option<[u8; 4]>, out: &mut BytesMut) -> usize {
    let reason = truncate_utf8(reason, MAX_CONTROL_PAYLOAD_BYTES - 2);
    let body_bytes = 2 + reason.len();
    out.reserve(MAX_HEADER_BYTES + body_bytes);
    let header_bytes = encode_header(OpCode::Close, true, body_bytes, mask, out);
    let start = out.len();
    out.extend_from_slice(&code.to_be_bytes());
    out.extend_from_slice(reason.as_bytes());
    if let Some(key) = mask {
        apply_mask(&mut out[start..], key, 0);
    }
    header_bytes + body_bytes
}

/// XORs `data` with `mask`, starting at mask offset `offset` (§5.3).
pub fn apply_mask(data: &mut [u8], mask: [u8; 4], offset: usize) {
    // The key rotated to start at `offset`, repeated over a word: a 64-bit chunk
    // starts at a multiple of 8 (so of 4) bytes into `data`, so every chunk and the
    // tail after them see the same rotation. The compiler vectorises this loop.
    let mut key = [0u8; 8];
    for (i, k) in key.iter_mut().enumerate() {
        *k = mask[(offset + i) & 3];
    }
    let key_word = u64::from_ne_bytes(key);
    let (chunks, tail) = data.as_chunks_mut::<8>();
    for chunk in chunks {
        *chunk = (u64::from_ne_bytes(*chunk) ^ key_word).to_ne_bytes();
    }
    for (byte, k) in tail.iter_mut().zip(key) {
        *byte ^= k;
    }
}

/// A fragmented data message being reassembled.
#[derive(Debug)]
struct Partial {
    /// Text (validated as UTF-8) or binary.
    text: bool,
    /// The fragments so far, unmasked.
    payload: BytesMut,
    /// How many leading bytes of `payload` are known to be whole UTF-8 sequences.
    utf8_checked: usize,
}

impl Partial {
    /// Validates the text received since the last call. A sequence cut at the end of a
    /// fragment may be completed by the next one, unless this was the final fragment.
    fn check_utf8(&mut self, fin: bool) -> Result<(), Error> {
        if !self.text {
            return Ok(());
        }
        let unchecked = self.payload.get(self.utf8_checked..).unwrap_or_default();
        match std::str::from_utf8(unchecked) {
            Ok(_) => {
                self.utf8_checked = self.payload.len();
                Ok(())
            }
            // `error_len() == None`: the input ended inside a sequence that is valid
            // so far; std reports a broken prefix (e.g. `ED A0`) as an error at once.
            Err(e) if e.error_len().is_none() && !fin => {
                self.utf8_checked += e.valid_up_to();
                Ok(())
            }
            Err(_) => Err(Error::InvalidUtf8),
        }
    }
}

/// A parsed frame header (§5.2).
#[derive(Debug)]
struct Header {
    fin: bool,
    opcode: OpCode,
    mask: Option<[u8; 4]>,
    /// Length of the header itself: 2 to 14 bytes.
    header_bytes: usize,
    payload_bytes: usize,
}

/// Parses the frame header at the start of `buf`, checking each rule as soon as the
/// bytes it needs are there. `Ok(None)`: the header is not complete yet.
fn parse_header(buf: &[u8], role: Role) -> Result<Option<Header>, Error> {
    let Some([b0, b1]) = read_array::<2>(buf, 0) else {
        return Ok(None);
    };
    // §5.2: "MUST be 0 unless an extension is negotiated"; we negotiate none.
    if b0 & RSV_BITS != 0 {
        return Err(Error::Protocol("reserved bits set without an extension"));
    }
    let opcode = OpCode::from_bits(b0 & OPCODE_BITS).ok_or(Error::Protocol("unknown opcode"))?;
    let fin = b0 & FIN_BIT != 0;
    let masked = b1 & MASK_BIT != 0;
    // §5.1: a server MUST close on an unmasked frame, a client on a masked one.
    match (role, masked) {
        (Role::Server, false) => return Err(Error::Protocol("unmasked frame from a client")),
        (Role::Client, true) => return Err(Error::Protocol("masked frame from a server")),
        _ => {}
    }
    let len7 = b1 & !MASK_BIT;
    // §5.5: "All control frames MUST have a payload length of 125 bytes or less and
    // MUST NOT be fragmented."
    if opcode.is_control() {
        if !fin {
            return Err(Error::Protocol("fragmented control frame"));
        }
        if usize::from(len7) > MAX_CONTROL_PAYLOAD_BYTES {
            return Err(Error::Protocol("control frame payload over 125 bytes"));
        }
    }
    let (payload_len, mut header_bytes) = match len7 {
        LEN16 => match read_array::<2>(buf, 2) {
            Some(len) => (u64::from(u16::from_be_bytes(len)), 4),
            None => return Ok(None),
        },
        LEN64 => match read_array::<8>(buf, 2) {
            Some(len) => (u64::from_be_bytes(len), 10),
            None => return Ok(None),
        },
        len => (u64::from(len), 2),
    };
    // §5.2: "the most significant bit MUST be 0". Non-minimal encodings are accepted.
    if payload_len >> 63 != 0 {
        return Err(Error::Protocol("64-bit payload length with the top bit set"));
    }
    let mask = if masked {
        let Some(key) = read_array::<4>(buf, header_bytes) else {
            return Ok(None);
        };
        header_bytes += 4;
        Some(key)
    } else {
        None
    };
    // Only reachable on targets where usize is narrower than 63 bits.
    let payload_bytes = usize::try_from(payload_len).map_err(|_| Error::TooBig)?;
    Ok(Some(Header {
        fin,
        opcode,
        mask,
        header_bytes,
        payload_bytes,
    }))
}

/// Parses an unmasked close frame body (§5.5.1, §7.4).
fn parse_close(body: Bytes) -> Result<Message, Error> {
    if body.is_empty() {
        return Ok(Message::Close(None));
    }
    let Some(code) = read_array::<2>(&body, 0).map(u16::from_be_bytes) else {
        return Err(Error::Protocol("close frame body of one byte"));
    };
    if !is_wire_close_code(code) {
        return Err(Error::Protocol("close code not allowed on the wire"));
    }
    // The body holds at least the two code bytes, checked just above.
    let reason = body.slice(2..);
    if std::str::from_utf8(&reason).is_err() {
        return Err(Error::InvalidUtf8);
    }
    Ok(Message::Close(Some((code, reason))))
}

/// §7.4: codes a peer may send. 1004 is reserved, 1005/1006/1015 are for local use
/// only, the rest of 1000..=2999 is unassigned, 3000..=4999 belong to applications.
fn is_wire_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// `N` bytes of `buf` from `at`, or `None` when `buf` is too short.
fn read_array<const N: usize>(buf: &[u8], at: usize) -> Option<[u8; N]> {
    buf.get(at..at.checked_add(N)?)?.try_into().ok()
}

/// The longest prefix of `s` of at most `max_bytes` that ends on a char boundary.
fn truncate_utf8(s: &str, max_bytes: usize) -> &str {
    if s.len() <= max_bytes {
        return s;
    }
    let mut end = max_bytes;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or_default()
}

impl OpCode {
    /// The opcode for the low nibble of the first header byte, if it is defined.
    fn from_bits(bits: u8) -> Option<OpCode> {
        Some(match bits {
            0x0 => OpCode::Continuation,
            0x1 => OpCode::Text,
            0x2 => OpCode::Binary,
            0x8 => OpCode::Close,
            0x9 => OpCode::Ping,
            0xA => OpCode::Pong,
            _ => return None,
        })
    }

    /// The wire value of this opcode.
    fn bits(self) -> u8 {
        match self {
            OpCode::Continuation => 0x0,
            OpCode::Text => 0x1,
            OpCode::Binary => 0x2,
            OpCode::Close => 0x8,
            OpCode::Ping => 0x9,
            OpCode::Pong => 0xA,
        }
    }

    /// Close, Ping and Pong (opcodes with the high bit set).
    fn is_control(self) -> bool {
        self.bits() & 0x8 != 0
    }
}

const FIN_BIT: u8 = 0x80;
const RSV_BITS: u8 = 0x70;
const OPCODE_BITS: u8 = 0x0F;
const MASK_BIT: u8 = 0x80;
/// Largest length that fits the 7-bit field.
const MAX_LEN7: usize = 125;
/// 7-bit length value announcing a 16-bit length.
const LEN16: u8 = 126;
/// 7-bit length value announcing a 64-bit length.
const LEN64: u8 = 127;
/// Longest frame header: 2 bytes, an 8-byte length and a 4-byte key.
pub const MAX_HEADER_BYTES: usize = 14;
const MAX_CONTROL_PAYLOAD_BYTES: usize = 125;
const NO_MESSAGE_IN_PROGRESS: &str = "continuation frame without a message in progress";
const CLOSE_PROTOCOL_ERROR: u16 = 1002;
const CLOSE_INVALID_PAYLOAD: u16 = 1007;
const CLOSE_MESSAGE_TOO_BIG: u16 = 1009;

#[cfg(test)]
mod tests;
