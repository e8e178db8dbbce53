//! The server role of the wire, sans-IO. [`Codec`] chains one connection's decoders:
//! bytes read from the socket in, [`Inbound`] items out (STOMP frames and heart-beats,
//! WebSocket pings and closes), with SockJS unwrapping between WebSocket and STOMP where
//! the framing asks for it. The encoders write what the server sends (replies,
//! `MESSAGE`s, heart-beats, closes) as complete WebSocket frames into a caller-owned
//! buffer, or, for SockJS's HTTP transports (`Framing::SockJsHttp`), as bare SockJS
//! frames ending in `\n`, whose STOMP bytes come in already unwrapped from `xhr_send`
//! bodies. Called by the engine's session; no socket, clock or executor here.

use bytes::{BufMut, Bytes, BytesMut};

use crate::stomp::{self, Command, Item, Version};
use crate::{sockjs, ws, Framing, ProtocolError};

/// What the client sent, one item at a time.
#[derive(Debug, Clone, PartialEq, Eq)]
// The frame is moved straight to the session; boxing it would allocate per frame.
#[allow(clippy::large_enum_variant)]
pub enum Inbound {
    /// A STOMP frame.
    Frame(stomp::Frame),
    /// A STOMP heart-beat (a lone EOL between frames).
    HeartBeat,
    /// A WebSocket ping: answer with [`encode_pong`].
    Ping(Bytes),
    /// A WebSocket close, with the client's code (1000 when it gave none).
    Close(u16),
}

/// Limits of one connection's decoders, checked before memory is reserved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest WebSocket message and STOMP frame.
    pub max_frame_bytes: usize,
    /// Most headers in one STOMP frame.
    pub max_headers: usize,
    /// Longest STOMP command or header line.
    pub max_line_bytes: usize,
}

/// The decoders of one server-side connection.
#[derive(Debug)]
pub struct Codec {
    framing: Framing,
    ws: ws::Decoder,
    stomp: stomp::Decoder,
    /// STOMP bytes not decoded yet: usually the WebSocket payload itself (raw framing
    /// cuts frames straight out of it), else what SockJS unwrapped, or the tail of a
    /// frame split over several messages.
    stream: BytesMut,
}

impl Codec {
    /// The decoders for a connection speaking `framing`.
    pub fn new(framing: Framing, limits: Limits) -> Self {
        Codec {
            framing,
            ws: ws::Decoder::new(
                ws::Role::Server,
                ws::Limits {
                    max_frame_bytes: limits.max_frame_bytes,
                    max_message_bytes: limits.max_frame_bytes,
                },
            ),
            stomp: stomp::Decoder::new(stomp::Limits {
                max_frame_bytes: limits.max_frame_bytes,
                max_headers: limits.max_headers,
                max_line_bytes: limits.max_line_bytes,
            }),
            stream: BytesMut::new(),
        }
    }

    /// The framing this codec unwraps.
    pub fn framing(&self) -> Framing {
        self.framing
    }

    /// Sets the STOMP version negotiated by `CONNECT` (header unescaping).
    pub fn set_version(&mut self, version: Version) {
        self.stomp.set_version(version);
    }

    /// The next item in `buf`, consuming its bytes; `Ok(None)` means more bytes are
    /// needed. `scratch` is reused storage for SockJS's JSON parse.
    ///
    /// # Errors
    /// A WebSocket, SockJS or STOMP rule broken by the client; the connection is then
    /// answered and closed (the caller maps each error to its one answer).
    pub fn decode(&mut self, buf: &mut BytesMut, scratch: &mut Vec<u8>) -> Result<Option<Inbound>, ProtocolError> {
        loop {
            if !self.stream.is_empty() {
                match self.stomp.decode(&mut self.stream)? {
                    Some(Item::Frame(frame)) => return Ok(Some(Inbound::Frame(frame))),
                    Some(Item::HeartBeat) => return Ok(Some(Inbound::HeartBeat)),
                    None => {}
                }
            }
            // The HTTP transports have no WebSocket layer: `buf` is the STOMP stream itself
            // (checked here, once per WebSocket message, not once per frame).
            if self.framing == Framing::SockJsHttp {
                return Ok(self.stomp.decode(buf)?.map(|item| match item {
                    Item::Frame(frame) => Inbound::Frame(frame),
                    Item::HeartBeat => Inbound::HeartBeat,
                }));
            }
            let data = match self.ws.decode(buf)? {
                None => return Ok(None),
                Some(ws::Message::Text(data) | ws::Message::Binary(data)) => data,
                Some(ws::Message::Ping(data)) => return Ok(Some(Inbound::Ping(data))),
                Some(ws::Message::Pong(_)) => continue,
                Some(ws::Message::Close(code)) => return Ok(Some(Inbound::Close(code.map_or(1000, |(c, _)| c)))),
            };
            match self.framing {
                // Most messages hold whole frames: decode them where they lie.
                Framing::Raw if self.stream.is_empty() => self.stream = data,
                Framing::Raw => self.stream.extend_from_slice(&data),
                Framing::SockJs | Framing::SockJsHttp => {
                    sockjs::decode_message(&data, scratch, &mut self.stream)?;
                }
            }
        }
    }

    /// Gives back what is kept between messages when nothing is pending: the STOMP
    /// stream (for raw framing a slice of the read buffer, which it would keep alive)
    /// and the STOMP decoder's storage. For connections that wait to read.
    pub fn release_idle(&mut self) {
        if self.stream.is_empty() {
            self.stream = BytesMut::new();
            self.stomp.release_idle();
        }
    }

    /// Bytes held for a frame not complete yet.
    pub fn pending_bytes(&self) -> usize {
        self.stream.len()
    }
}

/// The per-subscriber parts of a `MESSAGE` and what is shared by all.
#[derive(Debug, Clone, Copy)]
pub struct MessageHead<'a> {
    /// `destination` header.
    pub destination: &'a [u8],
    /// `subscription` header: the id the subscriber chose.
    pub subscription: &'a [u8],
    /// `message-id` header.
    pub id: &'a [u8],
    /// `x-offset` header, the message's position in its channel, when it has one.
    pub offset: Option<&'a [u8]>,
}

/// Reusable buffers for [`encode_message`].
#[derive(Debug, Default)]
pub struct Scratch {
    stomp: BytesMut,
    wire: BytesMut,
}

/// The complete WebSocket frame (or, for the SockJS HTTP transports, the `a[...]\n` line)
/// carrying a JSON `MESSAGE` with `head` and `body` for a connection with `framing` and
/// `version`, in `scratch` (reused: no allocation per message once warm).
pub fn encode_message<'s>(
    head: &MessageHead<'_>,
    body: &[u8],
    version: Version,
    framing: Framing,
    scratch: &'s mut Scratch,
) -> &'s [u8] {
    let Scratch { stomp: frame, wire } = scratch;
    wire.clear();
    frame.clear();
    frame.reserve(
        180 + head.destination.len() + head.subscription.len() + head.offset.map_or(0, <[u8]>::len) + body.len(),
    );
    frame.put_slice(b"MESSAGE\ndestination:");
    stomp::escape_into(head.destination, version, frame);
    frame.put_slice(b"\ncontent-type:application/json\nsubscription:");
    stomp::escape_into(head.subscription, version, frame);
    frame.put_slice(b"\nmessage-id:");
    stomp::escape_into(head.id, version, frame);
    if let Some(offset) = head.offset {
        frame.put_slice(b"\nx-offset:");
        stomp::escape_into(offset, version, frame);
    }
    frame.put_slice(b"\ncontent-length:");
    frame.put_slice(itoa::Buffer::new().format(body.len()).as_bytes());
    frame.put_slice(b"\n\n");
    frame.put_slice(body);
    frame.put_u8(0);

    wrap(framing, frame, wire);
    wire
}

/// Appends a STOMP frame (escaped for `version`) as one WebSocket frame with `framing`
/// (one `a[...]\n` line for the SockJS HTTP transports). `scratch` is reused storage for
/// the STOMP bytes.
pub fn encode_frame(
    framing: Framing,
    command: Command,
    headers: &[(&str, &[u8])],
    body: &[u8],
    version: Version,
    scratch: &mut BytesMut,
    out: &mut BytesMut,
) {
    scratch.clear();
    stomp::encode_frame(command, headers, body, version, scratch);
    wrap(framing, scratch, out);
}

/// Appends a STOMP heart-beat (a lone EOL) as one WebSocket frame with `framing`.
pub fn encode_heartbeat(framing: Framing, out: &mut BytesMut) {
    wrap(framing, b"\n", out);
}

/// Appends SockJS's open frame `o` (nothing for raw framing).
pub fn encode_open(framing: Framing, out: &mut BytesMut) {
    match framing {
        Framing::Raw => {}
        Framing::SockJs => {
            ws::encode_frame(ws::OpCode::Text, sockjs::OPEN, None, out);
        }
        Framing::SockJsHttp => sockjs::http::encode_line(sockjs::OPEN, out),
    }
}

/// Appends SockJS's heart-beat frame `h` (nothing for raw framing).
pub fn encode_sockjs_heartbeat(framing: Framing, out: &mut BytesMut) {
    match framing {
        Framing::Raw => {}
        Framing::SockJs => {
            ws::encode_frame(ws::OpCode::Text, sockjs::HEARTBEAT, None, out);
        }
        Framing::SockJsHttp => sockjs::http::encode_line(sockjs::HEARTBEAT, out),
    }
}

/// Appends the pong that answers a ping with `payload`.
pub fn encode_pong(payload: &[u8], out: &mut BytesMut) {
    ws::encode_frame(ws::OpCode::Pong, payload, None, out);
}

/// Appends the goodbye of a closing connection: SockJS's `c[code,"reason"]` where the
/// framing has it, then the WebSocket close frame (none on the HTTP transports).
pub fn encode_close(framing: Framing, code: u16, reason: &str, out: &mut BytesMut) {
    match framing {
        Framing::Raw => {}
        Framing::SockJs => {
            let mut frame = BytesMut::with_capacity(16 + reason.len());
            sockjs::encode_close(code, reason, &mut frame);
            ws::encode_frame(ws::OpCode::Text, &frame, None, out);
        }
        Framing::SockJsHttp => {
            sockjs::encode_close(code, reason, out);
            out.put_u8(b'\n');
            return;
        }
    }
    ws::encode_close(code, reason, None, out);
}

/// Appends the end of a connection that needs no SockJS farewell: the WebSocket close
/// frame with `code` (the client closed, or sent `DISCONNECT`). The HTTP transports have
/// no such frame, so they get `c[code,""]`, the only way they learn of an end.
pub fn encode_end(framing: Framing, code: u16, out: &mut BytesMut) {
    match framing {
        Framing::Raw | Framing::SockJs => {
            ws::encode_close(code, "", None, out);
        }
        Framing::SockJsHttp => encode_close(framing, code, "", out),
    }
}

/// Appends the WebSocket frame that carries the STOMP bytes `stomp` with `framing` (for
/// the SockJS HTTP transports, the line `a["..."]\n`).
pub fn wrap(framing: Framing, stomp: &[u8], wire: &mut BytesMut) {
    match framing {
        Framing::Raw => {
            wire.reserve(MAX_HEADER + stomp.len());
            ws::encode_header(ws::OpCode::Text, true, stomp.len(), None, wire);
            wire.put_slice(stomp);
        }
        Framing::SockJs => {
            // The escaped length is known only after escaping: escape after a maximal
            // header gap, then write the real header just before the payload.
            let at = wire.len();
            wire.reserve(MAX_HEADER + 8 + stomp.len() * 6 / 5);
            wire.put_bytes(0, MAX_HEADER);
            sockjs::encode_array(&[stomp], wire);
            let payload_len = wire.len() - at - MAX_HEADER;
            let mut header = [0u8; ws::MAX_HEADER_BYTES];
            let header_len = ws::write_header(ws::OpCode::Text, true, payload_len, None, &mut header);
            let start = at + MAX_HEADER - header_len;
            wire[start..at + MAX_HEADER].copy_from_slice(&header[..header_len]);
            // Close the gap left by a header shorter than the maximum.
            wire.copy_within(start.., at);
            wire.truncate(wire.len() - (start - at));
        }
        Framing::SockJsHttp => {
            wire.reserve(8 + stomp.len() * 6 / 5);
            sockjs::encode_array(&[stomp], wire);
            wire.put_u8(b'\n');
        }
    }
}

/// Longest server-to-client WebSocket header (no mask).
const MAX_HEADER: usize = 10;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client;

    const LIMITS: Limits = Limits {
        max_frame_bytes: 64 * 1024,
        max_headers: 64,
        max_line_bytes: 8 * 1024,
    };

    #[test]
    fn an_idle_codec_keeps_no_part_of_the_read_buffer() {
        let mut codec = Codec::new(Framing::Raw, LIMITS);
        let send: ClientFrame<'_> = (Command::Send, &[("destination", b"/pub/chat")], b"{}");
        let mut buf = client_bytes(Framing::Raw, &[send]);
        assert_eq!(decode_all(&mut codec, &mut buf).len(), 1);
        // The decoded frame cut its bytes out of the read buffer's storage; the codec's
        // empty stream still points into it until released.
        // (Reclaiming more than the tail left needs the storage unshared.)
        assert!(buf.is_empty());
        let tail = buf.capacity();
        assert!(!buf.try_reclaim(tail + 1), "the codec shares the storage");
        codec.release_idle();
        assert!(buf.try_reclaim(tail + 1), "the read buffer's storage is its own again");
    }

    fn decode_all(codec: &mut Codec, buf: &mut BytesMut) -> Vec<Inbound> {
        let mut scratch = Vec::new();
        let mut items = Vec::new();
        while let Some(item) = codec.decode(buf, &mut scratch).expect("valid input") {
            items.push(item);
        }
        items
    }

    /// A frame as a client sends it: command, headers, body.
    type ClientFrame<'a> = (Command, &'a [(&'a str, &'a [u8])], &'a [u8]);

    fn client_bytes(framing: Framing, frames: &[ClientFrame<'_>]) -> BytesMut {
        let mut client = client::Codec::new(framing, 1 << 20, 7);
        let mut out = BytesMut::new();
        for (command, headers, body) in frames {
            client.encode(*command, headers, body, &mut out);
        }
        out
    }

    #[test]
    fn raw_and_sockjs_clients_decode_to_the_same_frames() {
        let frames: [ClientFrame<'_>; 2] = [
            (Command::Connect, &[("accept-version", b"1.2")], b""),
            (Command::Send, &[("destination", b"/pub/chat")], br#"{"channel":"a"}"#),
        ];
        for framing in [Framing::Raw, Framing::SockJs] {
            let input = client_bytes(framing, &frames);
            // Whole, and in every two-way split.
            for cut in 0..=input.len() {
                let mut codec = Codec::new(framing, LIMITS);
                let mut buf = BytesMut::from(&input[..cut]);
                let mut items = decode_all(&mut codec, &mut buf);
                buf.extend_from_slice(&input[cut..]);
                items.extend(decode_all(&mut codec, &mut buf));
                let commands: Vec<_> = items
                    .iter()
                    .map(|i| match i {
                        Inbound::Frame(f) => f.command,
                        other => panic!("{other:?}"),
                    })
                    .collect();
                assert_eq!(commands, [Command::Connect, Command::Send], "{framing:?} cut {cut}");
                assert!(buf.is_empty());
            }
        }
    }

    #[test]
    fn a_frame_split_over_two_messages_and_heart_beats() {
        let mut codec = Codec::new(Framing::Raw, LIMITS);
        let mut buf = BytesMut::new();
        for part in [&b"\nSEND\ndestination:/x\n\nhel"[..], b"lo\0\r\n"] {
            ws::encode_frame(ws::OpCode::Text, part, Some([1, 2, 3, 4]), &mut buf);
        }
        let items = decode_all(&mut codec, &mut buf);
        assert_eq!(items.len(), 3, "{items:?}");
        assert_eq!(items[0], Inbound::HeartBeat);
        match &items[1] {
            Inbound::Frame(f) => assert_eq!(&f.body[..], b"hello"),
            other => panic!("{other:?}"),
        }
        assert_eq!(items[2], Inbound::HeartBeat);
    }

    #[test]
    fn pings_and_closes_pass_through() {
        let mut codec = Codec::new(Framing::SockJs, LIMITS);
        let mut buf = BytesMut::new();
        ws::encode_frame(ws::OpCode::Ping, b"p", Some([9; 4]), &mut buf);
        ws::encode_close(4000, "bye", Some([9; 4]), &mut buf);
        assert_eq!(
            decode_all(&mut codec, &mut buf),
            [Inbound::Ping(Bytes::from_static(b"p")), Inbound::Close(4000)]
        );
    }

    #[test]
    fn errors_name_their_layer() {
        let mut scratch = Vec::new();
        let mut codec = Codec::new(Framing::SockJs, LIMITS);
        let mut buf = BytesMut::new();
        ws::encode_frame(ws::OpCode::Text, b"not json", Some([1; 4]), &mut buf);
        assert!(matches!(
            codec.decode(&mut buf, &mut scratch),
            Err(ProtocolError::SockJs(_))
        ));
        let mut codec = Codec::new(Framing::Raw, LIMITS);
        let mut buf = BytesMut::new();
        ws::encode_frame(ws::OpCode::Text, b"NOPE\n\n\0", Some([1; 4]), &mut buf);
        assert!(matches!(
            codec.decode(&mut buf, &mut scratch),
            Err(ProtocolError::Stomp(_))
        ));
        let mut codec = Codec::new(Framing::Raw, LIMITS);
        let mut buf = BytesMut::from(&[0x81u8, 0x00][..]); // unmasked from a client
        assert!(matches!(
            codec.decode(&mut buf, &mut scratch),
            Err(ProtocolError::Ws(_))
        ));
    }

    #[test]
    fn messages_decode_on_the_client_side() {
        let head = MessageHead {
            destination: b"/sub/chat/a:b",
            subscription: b"sub-0",
            id: b"n-0-1",
            offset: Some(b"7"),
        };
        for framing in [Framing::Raw, Framing::SockJs] {
            let mut scratch = Scratch::default();
            let wire = BytesMut::from(encode_message(&head, b"{}", Version::V1_2, framing, &mut scratch));
            let mut client = client::Codec::new(framing, 1 << 20, 1);
            let mut buf = wire;
            if framing == Framing::SockJs {
                let mut open = BytesMut::new();
                encode_open(framing, &mut open);
                open.extend_from_slice(&buf);
                buf = open;
                assert_eq!(client.decode(&mut buf), Ok(Some(client::Event::Open)));
            }
            let Ok(Some(client::Event::Frame(frame))) = client.decode(&mut buf) else {
                panic!("no MESSAGE for {framing:?}");
            };
            assert_eq!(frame.command, Command::Message);
            assert_eq!(frame.header(b"destination"), Some(&b"/sub/chat/a:b"[..]));
            assert_eq!(frame.header(b"subscription"), Some(&b"sub-0"[..]));
            assert_eq!(frame.header(b"x-offset"), Some(&b"7"[..]));
            assert_eq!(&frame.body[..], b"{}");
        }
    }

    #[test]
    fn http_transport_framing_is_bare_lines() {
        let mut out = BytesMut::new();
        encode_open(Framing::SockJsHttp, &mut out);
        encode_sockjs_heartbeat(Framing::SockJsHttp, &mut out);
        encode_heartbeat(Framing::SockJsHttp, &mut out);
        encode_close(Framing::SockJsHttp, 1008, "slow", &mut out);
        encode_end(Framing::SockJsHttp, 1000, &mut out);
        assert_eq!(&out[..], &b"o\nh\na[\"\\n\"]\nc[1008,\"slow\"]\nc[1000,\"\"]\n"[..]);
        let head = MessageHead {
            destination: b"/sub/chat/a",
            subscription: b"sub-0",
            id: b"n-0-1",
            offset: None,
        };
        let mut scratch = Scratch::default();
        let line = BytesMut::from(encode_message(
            &head,
            b"{\"m\":\"\\u2028\"}",
            Version::V1_1,
            Framing::SockJsHttp,
            &mut scratch,
        ));
        assert!(
            line.starts_with(b"a[\"MESSAGE\\n") && line.ends_with(b"\"]\n"),
            "{line:?}"
        );
        let mut client = client::Codec::new(Framing::SockJsHttp, 1 << 20, 1);
        let mut buf = line;
        let Ok(Some(client::Event::Frame(frame))) = client.decode(&mut buf) else {
            panic!("no MESSAGE");
        };
        assert_eq!(frame.header(b"subscription"), Some(&b"sub-0"[..]));
        assert!(buf.is_empty());
        // What xhr_send bodies unwrap to: STOMP bytes, decoded as they lie, in every split.
        let input = b"CONNECT\naccept-version:1.2\n\n\0\nSEND\ndestination:/pub/chat\n\n{}\0";
        for cut in 0..=input.len() {
            let mut codec = Codec::new(Framing::SockJsHttp, LIMITS);
            let mut buf = BytesMut::from(&input[..cut]);
            let mut items = decode_all(&mut codec, &mut buf);
            buf.extend_from_slice(&input[cut..]);
            items.extend(decode_all(&mut codec, &mut buf));
            let kinds: Vec<_> = items
                .iter()
                .map(|i| match i {
                    Inbound::Frame(f) => Some(f.command),
                    Inbound::HeartBeat => None,
                    other => panic!("{other:?}"),
                })
                .collect();
            assert_eq!(kinds, [Some(Command::Connect), None, Some(Command::Send)], "cut {cut}");
        }
    }

    #[test]
    fn closes_carry_sockjs_and_websocket_codes() {
        let mut out = BytesMut::new();
        encode_close(Framing::SockJs, 1008, "slow", &mut out);
        let mut client = client::Codec::new(Framing::SockJs, 1 << 20, 1);
        assert_eq!(client.decode(&mut out), Ok(Some(client::Event::Closed(Some(1008)))));
        assert_eq!(client.decode(&mut out), Ok(Some(client::Event::Closed(Some(1008)))));
        assert!(out.is_empty());
    }
}
