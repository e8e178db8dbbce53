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
mod tests {
    use super::*;
    use proptest::prelude::*;

    const LIMITS: Limits = Limits {
        max_frame_bytes: 1 << 20,
        max_message_bytes: 1 << 21,
    };
    /// The masking key of the RFC 6455 §5.7 examples.
    const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

    /// What a decoder made of a byte stream: the messages, then the first error, or
    /// the bytes left over waiting for more input.
    #[derive(Debug, PartialEq)]
    struct Outcome {
        messages: Vec<Message>,
        error: Option<Error>,
        leftover_bytes: usize,
    }

    impl Outcome {
        fn ok(messages: Vec<Message>) -> Outcome {
            Outcome {
                messages,
                error: None,
                leftover_bytes: 0,
            }
        }

        fn err(messages: Vec<Message>, error: Error) -> Outcome {
            Outcome {
                messages,
                error: Some(error),
                leftover_bytes: 0,
            }
        }
    }

    /// Feeds `chunks` one after another, decoding everything each one completes.
    fn run(role: Role, limits: Limits, chunks: &[&[u8]]) -> Outcome {
        let mut decoder = Decoder::new(role, limits);
        let mut buf = BytesMut::new();
        let mut messages = Vec::new();
        for chunk in chunks {
            buf.extend_from_slice(chunk);
            loop {
                match decoder.decode(&mut buf) {
                    Ok(Some(message)) => messages.push(message),
                    Ok(None) => break,
                    Err(error) => return Outcome::err(messages, error),
                }
            }
        }
        Outcome {
            messages,
            error: None,
            leftover_bytes: buf.len(),
        }
    }

    /// Decodes `input` all at once, byte by byte and split in two at every offset,
    /// checks that all of them agree and returns the outcome.
    fn decode_every_split(role: Role, limits: Limits, input: &[u8]) -> Outcome {
        let whole = run(role, limits, &[input]);
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        assert_eq!(run(role, limits, &bytes), whole, "byte by byte");
        for at in 0..=input.len() {
            let (head, tail) = input.split_at(at);
            assert_eq!(run(role, limits, &[head, tail]), whole, "split at {at}");
        }
        whole
    }

    /// A raw frame with first byte `b0`, built without `encode_header`.
    fn raw(b0: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
        let mask_bit = if mask.is_some() { 0x80 } else { 0 };
        let mut out = vec![b0];
        match payload.len() {
            n @ 0..=125 => out.push(mask_bit | n as u8),
            n @ 126..=0xFFFF => {
                out.push(mask_bit | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(mask_bit | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        match mask {
            Some(key) => {
                out.extend_from_slice(&key);
                out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
            }
            None => out.extend_from_slice(payload),
        }
        out
    }

    fn text(s: &str) -> Message {
        Message::Text(BytesMut::from(s.as_bytes()))
    }

    fn protocol_error(input: &[u8], role: Role) -> Error {
        let outcome = decode_every_split(role, LIMITS, input);
        let error = outcome.error.unwrap_or_else(|| panic!("no error in {outcome:?}"));
        assert!(matches!(error, Error::Protocol(_)), "{error:?}");
        error
    }

    // RFC 6455 §5.7 examples.

    #[test]
    fn rfc_single_frame_unmasked_text() {
        let input = [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
        assert_eq!(
            decode_every_split(Role::Client, LIMITS, &input),
            Outcome::ok(vec![text("Hello")])
        );
    }

    #[test]
    fn rfc_single_frame_masked_text() {
        let input = [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58];
        assert_eq!(
            decode_every_split(Role::Server, LIMITS, &input),
            Outcome::ok(vec![text("Hello")])
        );
    }

    #[test]
    fn rfc_fragmented_unmasked_text() {
        let input = [0x01, 0x03, 0x48, 0x65, 0x6c, 0x80, 0x02, 0x6c, 0x6f];
        assert_eq!(
            decode_every_split(Role::Client, LIMITS, &input),
            Outcome::ok(vec![text("Hello")])
        );
    }

    #[test]
    fn rfc_ping_and_masked_pong() {
        let mut input = vec![0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
        assert_eq!(
            decode_every_split(Role::Client, LIMITS, &input),
            Outcome::ok(vec![Message::Ping(Bytes::from_static(b"Hello"))])
        );
        input = vec![0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58];
        assert_eq!(
            decode_every_split(Role::Server, LIMITS, &input),
            Outcome::ok(vec![Message::Pong(Bytes::from_static(b"Hello"))])
        );
    }

    #[test]
    fn rfc_256_byte_binary() {
        let payload: Vec<u8> = (0..=255).collect();
        let mut input = vec![0x82, 0x7E, 0x01, 0x00];
        input.extend_from_slice(&payload);
        assert_eq!(
            decode_every_split(Role::Client, LIMITS, &input),
            Outcome::ok(vec![Message::Binary(payload[..].into())])
        );
        // The same payload masked, as a client sends it.
        let masked = raw(0x82, &payload, Some(KEY));
        assert_eq!(
            decode_every_split(Role::Server, LIMITS, &masked),
            Outcome::ok(vec![Message::Binary(payload[..].into())])
        );
    }

    #[test]
    fn rfc_64k_binary() {
        let payload: Vec<u8> = (0..65536u32).map(|i| (i % 251) as u8).collect();
        let mut input = vec![0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0];
        input.extend_from_slice(&payload);
        assert_eq!(
            decode_every_split(Role::Client, LIMITS, &input),
            Outcome::ok(vec![Message::Binary(payload[..].into())])
        );
    }

    // Framing rules.

    #[test]
    fn server_rejects_unmasked_client_frames() {
        protocol_error(&raw(0x81, b"Hello", None), Role::Server);
        protocol_error(&raw(0x89, b"", None), Role::Server);
    }

    #[test]
    fn client_rejects_masked_server_frames() {
        protocol_error(&raw(0x81, b"Hello", Some(KEY)), Role::Client);
    }

    #[test]
    fn reserved_bits_are_rejected() {
        for rsv in [0x40, 0x20, 0x10] {
            protocol_error(&raw(0x81 | rsv, b"Hello", Some(KEY)), Role::Server);
        }
    }

    #[test]
    fn unknown_opcodes_are_rejected() {
        for opcode in [0x3, 0x4, 0x5, 0x6, 0x7, 0xB, 0xC, 0xD, 0xE, 0xF] {
            protocol_error(&raw(0x80 | opcode, b"x", Some(KEY)), Role::Server);
        }
    }

    #[test]
    fn control_frames_are_short_and_final() {
        for opcode in [0x8, 0x9, 0xA] {
            protocol_error(&raw(0x80 | opcode, &[b'a'; 126], Some(KEY)), Role::Server);
            protocol_error(&raw(opcode, b"", Some(KEY)), Role::Server);
        }
        // Exactly 125 bytes is fine.
        let outcome = decode_every_split(Role::Server, LIMITS, &raw(0x89, &[7; 125], Some(KEY)));
        assert_eq!(outcome, Outcome::ok(vec![Message::Ping(vec![7; 125].into())]));
    }

    #[test]
    fn continuation_without_a_message_is_rejected() {
        protocol_error(&raw(0x80, b"lo", Some(KEY)), Role::Server);
        protocol_error(&raw(0x00, b"lo", Some(KEY)), Role::Server);
        // Also right after a message has been completed.
        let mut input = raw(0x81, b"Hel", Some(KEY));
        input.extend(raw(0x80, b"lo", Some(KEY)));
        let outcome = decode_every_split(Role::Server, LIMITS, &input);
        assert_eq!(outcome.messages, vec![text("Hel")]);
        assert!(matches!(outcome.error, Some(Error::Protocol(_))));
    }

    #[test]
    fn new_data_frame_inside_a_fragmented_message_is_rejected() {
        for opcode in [0x1, 0x2, 0x81, 0x82] {
            let mut input = raw(0x01, b"Hel", Some(KEY));
            input.extend(raw(opcode, b"lo", Some(KEY)));
            protocol_error(&input, Role::Server);
        }
    }

    #[test]
    fn control_frames_between_fragments_come_out_at_once() {
        let mut input = raw(0x02, b"He", Some(KEY));
        input.extend(raw(0x89, b"p1", Some(KEY)));
        input.extend(raw(0x00, b"l", Some(KEY)));
        input.extend(raw(0x8A, b"", Some(KEY)));
        input.extend(raw(0x88, &[0x03, 0xE8], Some(KEY)));
        input.extend(raw(0x80, b"lo", Some(KEY)));
        let outcome = decode_every_split(Role::Server, LIMITS, &input);
        let expected = vec![
            Message::Ping(Bytes::from_static(b"p1")),
            Message::Pong(Bytes::new()),
            Message::Close(Some((1000, Bytes::new()))),
            Message::Binary(BytesMut::from(&b"Hello"[..])),
        ];
        assert_eq!(outcome, Outcome::ok(expected));
    }

    #[test]
    fn sixty_four_bit_length_with_top_bit_is_rejected() {
        let input = [0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 5, 1, 2, 3, 4];
        protocol_error(&input, Role::Server);
    }

    #[test]
    fn non_minimal_lengths_are_accepted() {
        let mut len16 = vec![0x81, 0x7E, 0x00, 0x05];
        len16.extend_from_slice(b"Hello");
        assert_eq!(
            decode_every_split(Role::Client, LIMITS, &len16),
            Outcome::ok(vec![text("Hello")])
        );
        let mut len64 = vec![0x81, 0x7F, 0, 0, 0, 0, 0, 0, 0, 0x05];
        len64.extend_from_slice(b"Hello");
        assert_eq!(
            decode_every_split(Role::Client, LIMITS, &len64),
            Outcome::ok(vec![text("Hello")])
        );
    }

    #[test]
    fn oversized_frame_is_rejected_from_its_header_alone() {
        let limits = Limits {
            max_frame_bytes: 100,
            max_message_bytes: 1000,
        };
        // Only the header of a 2^40-byte frame: rejected before any payload arrives
        // and without reserving memory for it.
        let header = [0x82, 0xFF, 0, 0, 0x01, 0, 0, 0, 0, 0, 1, 2, 3, 4];
        let mut buf = BytesMut::from(&header[..]);
        let mut decoder = Decoder::new(Role::Server, limits);
        assert_eq!(decoder.decode(&mut buf), Err(Error::TooBig));
        assert!(buf.capacity() < 1024);
        assert_eq!(
            decode_every_split(Role::Server, limits, &header),
            Outcome::err(vec![], Error::TooBig)
        );
        assert_eq!(Error::TooBig.close_code(), 1009);
        // Exactly at the limit is fine.
        let at_limit = raw(0x82, &[1; 100], Some(KEY));
        assert_eq!(
            run(Role::Server, limits, &[&at_limit]),
            Outcome::ok(vec![Message::Binary(BytesMut::from(&[1u8; 100][..]))])
        );
        let over = raw(0x82, &[1; 101], Some(KEY));
        assert_eq!(
            run(Role::Server, limits, &[&over[..8]]),
            Outcome::err(vec![], Error::TooBig)
        );
    }

    #[test]
    fn oversized_message_is_rejected_at_the_fragment_that_overflows() {
        let limits = Limits {
            max_frame_bytes: 100,
            max_message_bytes: 250,
        };
        let mut input = raw(0x02, &[1; 100], Some(KEY));
        input.extend(raw(0x00, &[2; 100], Some(KEY)));
        input.extend(raw(0x80, &[3; 50], Some(KEY)));
        let outcome = decode_every_split(Role::Server, limits, &input);
        assert_eq!(outcome.messages.len(), 1);
        let mut over = raw(0x02, &[1; 100], Some(KEY));
        over.extend(raw(0x00, &[2; 100], Some(KEY)));
        over.extend(raw(0x80, &[3; 51], Some(KEY)));
        assert_eq!(
            decode_every_split(Role::Server, limits, &over),
            Outcome::err(vec![], Error::TooBig)
        );
        // A single frame is a message too.
        let limits = Limits {
            max_frame_bytes: 100,
            max_message_bytes: 50,
        };
        assert_eq!(
            run(Role::Server, limits, &[&raw(0x82, &[1; 51], Some(KEY))]),
            Outcome::err(vec![], Error::TooBig)
        );
    }

    #[test]
    fn invalid_utf8_in_a_single_frame() {
        let outcome = decode_every_split(Role::Server, LIMITS, &raw(0x81, b"Hel\xFFlo", Some(KEY)));
        assert_eq!(outcome, Outcome::err(vec![], Error::InvalidUtf8));
        assert_eq!(Error::InvalidUtf8.close_code(), 1007);
        // Binary messages are not checked.
        let outcome = decode_every_split(Role::Server, LIMITS, &raw(0x82, b"Hel\xFFlo", Some(KEY)));
        assert_eq!(
            outcome,
            Outcome::ok(vec![Message::Binary(BytesMut::from(&b"Hel\xFFlo"[..]))])
        );
    }

    #[test]
    fn utf8_split_across_fragments_is_valid() {
        // "κόσμε" and a 4-byte emoji, cut inside multi-byte sequences.
        let s = "κόσμε 😀".as_bytes();
        for cut1 in 0..=s.len() {
            for cut2 in cut1..=s.len() {
                let mut input = raw(0x01, &s[..cut1], None);
                input.extend(raw(0x00, &s[cut1..cut2], None));
                input.extend(raw(0x80, &s[cut2..], None));
                assert_eq!(
                    run(Role::Client, LIMITS, &[&input]),
                    Outcome::ok(vec![text("κόσμε 😀")])
                );
            }
        }
        let mut input = raw(0x01, &s[..3], Some(KEY));
        input.extend(raw(0x80, &s[3..], Some(KEY)));
        assert_eq!(
            decode_every_split(Role::Server, LIMITS, &input),
            Outcome::ok(vec![text("κόσμε 😀")])
        );
    }

    #[test]
    fn invalid_utf8_fails_at_the_fragment_where_it_is_certain() {
        // `ED A0` starts a surrogate: invalid at once, before the message ends.
        let mut input = raw(0x01, b"ab\xED", Some(KEY));
        input.extend(raw(0x00, b"\xA0\x80", Some(KEY)));
        let error_at = input.len();
        input.extend(raw(0x80, b"cd", Some(KEY)));
        assert_eq!(
            run(Role::Server, LIMITS, &[&input[..error_at]]),
            Outcome::err(vec![], Error::InvalidUtf8)
        );
        assert_eq!(
            decode_every_split(Role::Server, LIMITS, &input),
            Outcome::err(vec![], Error::InvalidUtf8)
        );
        // Above U+10FFFF: `F4 90` is certain after its second byte.
        let mut input = raw(0x01, b"\xF4", Some(KEY));
        input.extend(raw(0x00, b"\x90", Some(KEY)));
        assert_eq!(
            run(Role::Server, LIMITS, &[&input]),
            Outcome::err(vec![], Error::InvalidUtf8)
        );
        // A valid prefix in a non-final fragment is not an error yet.
        let input = raw(0x01, b"\xF0\x9F\x98", Some(KEY));
        assert_eq!(
            run(Role::Server, LIMITS, &[&input]),
            Outcome {
                messages: vec![],
                error: None,
                leftover_bytes: 0
            }
        );
    }

    #[test]
    fn incomplete_utf8_at_the_final_fragment_is_invalid() {
        let mut input = raw(0x01, b"ab", Some(KEY));
        input.extend(raw(0x80, b"\xF0\x9F\x98", Some(KEY)));
        assert_eq!(
            decode_every_split(Role::Server, LIMITS, &input),
            Outcome::err(vec![], Error::InvalidUtf8)
        );
        let input = raw(0x81, b"\xE2\x82", Some(KEY));
        assert_eq!(
            decode_every_split(Role::Server, LIMITS, &input),
            Outcome::err(vec![], Error::InvalidUtf8)
        );
    }

    #[test]
    fn close_bodies() {
        let close = |body: &[u8]| decode_every_split(Role::Server, LIMITS, &raw(0x88, body, Some(KEY)));
        assert_eq!(close(b""), Outcome::ok(vec![Message::Close(None)]));
        assert_eq!(
            close(b"\x03\xE8bye"),
            Outcome::ok(vec![Message::Close(Some((1000, Bytes::from_static(b"bye"))))])
        );
        assert!(matches!(close(b"\x03").error, Some(Error::Protocol(_))));
        assert_eq!(close(b"\x03\xE8\xFF").error, Some(Error::InvalidUtf8));
    }

    #[test]
    fn close_codes_allowed_on_the_wire() {
        let decode_code = |code: u16| run(Role::Server, LIMITS, &[&raw(0x88, &code.to_be_bytes(), Some(KEY))]);
        for code in (1000..=1003).chain(1007..=1014).chain([3000, 3999, 4000, 4999]) {
            assert_eq!(
                decode_code(code),
                Outcome::ok(vec![Message::Close(Some((code, Bytes::new())))]),
                "{code}"
            );
        }
        for code in [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535] {
            let outcome = decode_code(code);
            assert!(matches!(outcome.error, Some(Error::Protocol(_))), "{code}: {outcome:?}");
        }
    }

    #[test]
    fn close_code_mapping() {
        assert_eq!(Error::Protocol("x").close_code(), 1002);
        assert_eq!(Error::InvalidUtf8.close_code(), 1007);
        assert_eq!(Error::TooBig.close_code(), 1009);
    }

    #[test]
    fn partial_input_stays_in_the_buffer() {
        let input = raw(0x81, b"Hello", Some(KEY));
        let mut decoder = Decoder::new(Role::Server, LIMITS);
        let mut buf = BytesMut::from(&input[..input.len() - 1]);
        assert_eq!(decoder.decode(&mut buf), Ok(None));
        assert_eq!(&buf[..], &input[..input.len() - 1]);
        buf.extend_from_slice(&input[input.len() - 1..]);
        assert_eq!(decoder.decode(&mut buf), Ok(Some(text("Hello"))));
        assert!(buf.is_empty());
        assert_eq!(decoder.decode(&mut buf), Ok(None));
    }

    #[test]
    fn several_messages_in_one_buffer() {
        let mut input = raw(0x81, b"one", Some(KEY));
        input.extend(raw(0x82, b"two", Some(KEY)));
        input.extend(raw(0x81, b"", Some(KEY)));
        input.extend(raw(0x81, b"thr", Some(KEY))[..5].iter());
        let outcome = decode_every_split(Role::Server, LIMITS, &input);
        assert_eq!(
            outcome.messages,
            vec![text("one"), Message::Binary(BytesMut::from(&b"two"[..])), text("")]
        );
        assert_eq!(outcome.leftover_bytes, 5);
    }

    #[test]
    fn idle_decoder_is_small() {
        assert!(std::mem::size_of::<Decoder>() <= 4 * std::mem::size_of::<usize>());
    }

    #[test]
    fn apply_mask_matches_bytewise_xor_at_every_offset() {
        let data: Vec<u8> = (0..64u8).map(|i| i.wrapping_mul(37)).collect();
        for len in 0..data.len() {
            for offset in 0..8 {
                let mut fast = data[..len].to_vec();
                apply_mask(&mut fast, KEY, offset);
                let slow: Vec<u8> = data[..len]
                    .iter()
                    .enumerate()
                    .map(|(i, b)| b ^ KEY[(offset + i) % 4])
                    .collect();
                assert_eq!(fast, slow, "len {len} offset {offset}");
            }
        }
        // Masking in two pieces with the running offset equals masking at once.
        let mut once = data.clone();
        apply_mask(&mut once, KEY, 0);
        let mut pieces = data.clone();
        let (a, b) = pieces.split_at_mut(13);
        apply_mask(a, KEY, 0);
        apply_mask(b, KEY, 13);
        assert_eq!(once, pieces);
    }

    #[test]
    fn encode_header_length_forms() {
        let cases: [(usize, &[u8]); 6] = [
            (0, &[0x82, 0x00]),
            (125, &[0x82, 125]),
            (126, &[0x82, 126, 0, 126]),
            (65535, &[0x82, 126, 0xFF, 0xFF]),
            (65536, &[0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0]),
            (1 << 40, &[0x82, 127, 0, 0, 1, 0, 0, 0, 0, 0]),
        ];
        for (len, expected) in cases {
            let mut out = BytesMut::new();
            assert_eq!(encode_header(OpCode::Binary, true, len, None, &mut out), expected.len());
            assert_eq!(&out[..], expected, "{len}");
        }
        let mut out = BytesMut::from(&b"prefix"[..]);
        assert_eq!(encode_header(OpCode::Text, false, 5, Some(KEY), &mut out), 6);
        assert_eq!(&out[6..], &[0x01, 0x85, 0x37, 0xfa, 0x21, 0x3d]);
        out.clear();
        encode_header(OpCode::Continuation, true, 0, None, &mut out);
        assert_eq!(&out[..], &[0x80, 0x00]);
    }

    #[test]
    fn encode_frame_matches_the_rfc_examples() {
        let mut out = BytesMut::new();
        assert_eq!(encode_frame(OpCode::Text, b"Hello", None, &mut out), 7);
        assert_eq!(&out[..], &[0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
        out.clear();
        assert_eq!(encode_frame(OpCode::Text, b"Hello", Some(KEY), &mut out), 11);
        assert_eq!(
            &out[..],
            &[0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]
        );
        out.clear();
        encode_frame(OpCode::Pong, b"Hello", Some(KEY), &mut out);
        assert_eq!(
            &out[..],
            &[0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]
        );
    }

    #[test]
    fn encode_close_truncates_the_reason_at_a_char_boundary() {
        let mut out = BytesMut::new();
        assert_eq!(encode_close(1000, "bye", None, &mut out), 7);
        assert_eq!(&out[..], b"\x88\x05\x03\xE8bye");
        // 100 two-byte chars: 200 bytes, cut to 61 chars (122 bytes), not mid-char.
        let reason = "é".repeat(100);
        out.clear();
        let n = encode_close(1001, &reason, Some(KEY), &mut out);
        assert_eq!(n, 2 + 4 + 2 + 122);
        let outcome = run(Role::Server, LIMITS, &[&out]);
        let expected = Message::Close(Some((1001, Bytes::from("é".repeat(61)))));
        assert_eq!(outcome, Outcome::ok(vec![expected]));
        // An ASCII reason fills all 123 bytes.
        out.clear();
        assert_eq!(encode_close(1000, &"a".repeat(300), None, &mut out), 2 + 125);
    }

    /// One message of a round trip, with how to cut it into fragments.
    #[derive(Debug, Clone)]
    struct Case {
        message: Message,
        /// Cut points into the payload of a data message (more cuts, more fragments).
        cuts: Vec<prop::sample::Index>,
        /// A ping to send after the first fragment.
        ping: Option<Vec<u8>>,
        mask: [u8; 4],
    }

    fn message_strategy() -> impl Strategy<Value = Message> {
        let close_code = prop_oneof![1000u16..=1003, 1007u16..=1014, 3000u16..=4999];
        let reason = prop::collection::vec(any::<char>(), 0..30).prop_map(String::from_iter);
        prop_oneof![
            prop::collection::vec(any::<char>(), 0..200)
                .prop_map(|c| Message::Text(BytesMut::from(String::from_iter(c).as_bytes()))),
            prop::collection::vec(any::<u8>(), 0..300).prop_map(|b| Message::Binary(BytesMut::from(&b[..]))),
            prop::collection::vec(any::<u8>(), 0..=125).prop_map(|b| Message::Ping(b.into())),
            prop::collection::vec(any::<u8>(), 0..=125).prop_map(|b| Message::Pong(b.into())),
            prop::option::of((close_code, reason)).prop_map(|c| Message::Close(c.map(|(code, r)| (code, r.into())))),
        ]
    }

    fn case_strategy() -> impl Strategy<Value = Case> {
        (
            message_strategy(),
            prop::collection::vec(any::<prop::sample::Index>(), 0..4),
            prop::option::of(prop::collection::vec(any::<u8>(), 0..=125)),
            any::<[u8; 4]>(),
        )
            .prop_map(|(message, cuts, ping, mask)| Case {
                message,
                cuts,
                ping,
                mask,
            })
    }

    /// Appends the frames of `case`; returns the messages a decoder must yield.
    fn encode_case(case: &Case, masked: bool, out: &mut BytesMut) -> Vec<Message> {
        let mask = masked.then_some(case.mask);
        let (opcode, payload): (OpCode, &[u8]) = match &case.message {
            Message::Text(p) => (OpCode::Text, p),
            Message::Binary(p) => (OpCode::Binary, p),
            Message::Ping(p) => (OpCode::Ping, p),
            Message::Pong(p) => (OpCode::Pong, p),
            Message::Close(None) => (OpCode::Close, &[]),
            Message::Close(Some((code, reason))) => {
                let reason = std::str::from_utf8(reason).expect("generated from chars");
                encode_close(*code, reason, mask, out);
                return vec![case.message.clone()];
            }
        };
        if opcode.is_control() || case.cuts.is_empty() {
            encode_frame(opcode, payload, mask, out);
            return vec![case.message.clone()];
        }
        let mut cuts: Vec<usize> = case.cuts.iter().map(|i| i.index(payload.len() + 1)).collect();
        cuts.sort_unstable();
        let mut expected = Vec::new();
        let mut start = 0;
        for (n, end) in cuts.into_iter().chain([payload.len()]).enumerate() {
            let fin = n == case.cuts.len();
            let op = if n == 0 { opcode } else { OpCode::Continuation };
            let fragment = &payload[start..end];
            encode_header(op, fin, fragment.len(), mask, out);
            let at = out.len();
            out.extend_from_slice(fragment);
            if let Some(key) = mask {
                apply_mask(&mut out[at..], key, 0);
            }
            if n == 0 {
                if let Some(ping) = &case.ping {
                    encode_frame(OpCode::Ping, ping, mask, out);
                    expected.push(Message::Ping(ping.clone().into()));
                }
            }
            start = end;
        }
        expected.push(case.message.clone());
        expected
    }

    fn round_trip(cases: &[Case], chunk_cuts: &[prop::sample::Index], sender: Role) -> Result<(), TestCaseError> {
        let mut stream = BytesMut::new();
        let mut expected = Vec::new();
        for case in cases {
            expected.extend(encode_case(case, sender == Role::Client, &mut stream));
        }
        let mut cuts: Vec<usize> = chunk_cuts.iter().map(|i| i.index(stream.len() + 1)).collect();
        cuts.sort_unstable();
        let mut chunks: Vec<&[u8]> = Vec::new();
        let mut start = 0;
        for end in cuts.into_iter().chain([stream.len()]) {
            chunks.push(&stream[start..end]);
            start = end;
        }
        let receiver = if sender == Role::Client {
            Role::Server
        } else {
            Role::Client
        };
        prop_assert_eq!(run(receiver, LIMITS, &chunks), Outcome::ok(expected));
        Ok(())
    }

    proptest! {
        #[test]
        fn client_to_server_round_trip(
            cases in prop::collection::vec(case_strategy(), 1..8),
            chunk_cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
        ) {
            round_trip(&cases, &chunk_cuts, Role::Client)?;
        }

        #[test]
        fn server_to_client_round_trip(
            cases in prop::collection::vec(case_strategy(), 1..8),
            chunk_cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
        ) {
            round_trip(&cases, &chunk_cuts, Role::Server)?;
        }
    }
}
