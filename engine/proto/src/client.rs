//! The client side of the wire, sans-IO, built on `proto` in the client role: the
//! HTTP upgrade request and the check of its `101` answer, masked WebSocket frames, SockJS
//! wrapping (`["..."]` out; `o`, `h`, `a[...]`, `c[...]` in) and STOMP frames. `Codec`
//! turns read bytes into `Event`s and STOMP frames into bytes; `shard/conn.rs` does the I/O.
//! For SockJS's HTTP transports (`Framing::SockJsHttp`) the codec reads the bodies of
//! `xhr`/`xhr_streaming` responses (one frame per line), and [`http_request`],
//! [`xhr_send_request`] and [`response_head`] make and read the requests around them.

use bytes::{BufMut, Bytes, BytesMut};

use crate::{http, sockjs, stomp, ws, Framing};

/// What the server sent, one item at a time.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(clippy::large_enum_variant)] // Moved once per frame; boxing would allocate per message.
pub enum Event {
    /// SockJS `o`: the session is open.
    Open,
    /// A STOMP frame.
    Frame(stomp::Frame),
    /// A STOMP heart-beat or a SockJS `h`.
    HeartBeat,
    /// A WebSocket ping; answer with `Codec::pong`.
    Ping(Bytes),
    /// A WebSocket close or SockJS `c[...]`, with its code when it had one.
    Closed(Option<u16>),
}

/// A broken rule on the server's side of the wire.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum Error {
    /// The upgrade was answered with another status than 101.
    #[error("upgrade refused with HTTP {0}")]
    Status(u16),
    /// A 101 without the right `Sec-WebSocket-Accept`.
    #[error("upgrade answered with a wrong Sec-WebSocket-Accept")]
    BadAccept,
    /// The answer to the upgrade is not HTTP.
    #[error("malformed upgrade answer")]
    MalformedHttp,
    /// Bad WebSocket framing from the server.
    #[error("websocket: {0}")]
    Ws(#[from] ws::Error),
    /// Bad STOMP from the server.
    #[error("stomp: {0}")]
    Stomp(#[from] stomp::Error),
    /// A SockJS message that is not `o`, `h`, `a[...]` or `c[...]`.
    #[error("sockjs: {0}")]
    SockJs(&'static str),
    /// An HTTP answer other than the one expected (SockJS HTTP transports).
    #[error("HTTP {0}")]
    HttpStatus(u16),
}

impl Error {
    /// A short label for counting errors by kind.
    pub fn kind(&self) -> String {
        match self {
            Error::Status(code) => format!("http_{code}"),
            Error::BadAccept => "bad_accept".into(),
            Error::MalformedHttp => "bad_http".into(),
            Error::Ws(_) => "ws_protocol".into(),
            Error::Stomp(_) => "stomp_protocol".into(),
            Error::SockJs(_) => "sockjs_protocol".into(),
            Error::HttpStatus(code) => format!("http_{code}"),
        }
    }
}

/// A small, fast generator for mask keys and handshake keys (not for secrets: masking
/// only has to be unpredictable to intermediaries, RFC 6455 §10.3).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed` (any value).
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15 | 1)
    }

    /// The next 64 random bits (xorshift64*).
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// Appends the upgrade request. Raw STOMP offers the STOMP subprotocols; SockJS none.
pub fn upgrade_request(host: &str, path: &str, key: &str, framing: Framing, out: &mut BytesMut) {
    out.put_slice(b"GET ");
    out.put_slice(path.as_bytes());
    out.put_slice(b" HTTP/1.1\r\nHost: ");
    out.put_slice(host.as_bytes());
    out.put_slice(b"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ");
    out.put_slice(key.as_bytes());
    if framing == Framing::Raw {
        out.put_slice(b"\r\nSec-WebSocket-Protocol: v12.stomp, v11.stomp, v10.stomp");
    }
    out.put_slice(b"\r\n\r\n");
}

/// A fresh `Sec-WebSocket-Key`: base64 of 16 random bytes.
pub fn new_key(rng: &mut Rng) -> String {
    use base64::Engine as _;
    let mut raw = [0u8; 16];
    raw[..8].copy_from_slice(&rng.next_u64().to_le_bytes());
    raw[8..].copy_from_slice(&rng.next_u64().to_le_bytes());
    base64::engine::general_purpose::STANDARD.encode(raw)
}

/// Reads the answer to an upgrade with `key` from the start of `buf`. `Ok(None)`: not
/// complete yet. `Ok(Some(n))`: a valid `101`; the bytes after `n` are WebSocket frames.
///
/// # Errors
/// Another status, a wrong accept key, or not HTTP.
pub fn upgrade_response(buf: &[u8], key: &str) -> Result<Option<usize>, Error> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    let n = match response.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD_BYTES => return Err(Error::MalformedHttp),
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(Error::MalformedHttp),
    };
    let code = response.code.unwrap_or(0);
    if code != 101 {
        return Err(Error::Status(code));
    }
    let accept = response
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("sec-websocket-accept"))
        .map(|h| h.value);
    if accept != Some(http::accept_key(key).as_bytes()) {
        return Err(Error::BadAccept);
    }
    Ok(Some(n))
}

/// The STOMP-over-WebSocket client codec of one connection.
#[derive(Debug)]
pub struct Codec {
    framing: Framing,
    ws: ws::Decoder,
    stomp: stomp::Decoder,
    /// STOMP bytes unwrapped from WebSocket (and SockJS) messages, not yet decoded.
    stream: BytesMut,
    json_scratch: Vec<u8>,
    frame_scratch: BytesMut,
    wrap_scratch: BytesMut,
    rng: Rng,
}

impl Codec {
    /// A codec for `framing`, refusing frames over `max_frame_bytes`; `seed` varies masks.
    pub fn new(framing: Framing, max_frame_bytes: usize, seed: u64) -> Self {
        let limits = ws::Limits {
            max_frame_bytes,
            max_message_bytes: max_frame_bytes,
        };
        Codec {
            framing,
            ws: ws::Decoder::new(ws::Role::Client, limits),
            stomp: stomp::Decoder::new(stomp::Limits {
                max_frame_bytes,
                max_headers: 64,
                max_line_bytes: usize::MAX,
            }),
            stream: BytesMut::new(),
            json_scratch: Vec::new(),
            frame_scratch: BytesMut::new(),
            wrap_scratch: BytesMut::new(),
            rng: Rng::new(seed),
        }
    }

    /// Sets the STOMP version the server chose (header unescaping).
    pub fn set_version(&mut self, version: stomp::Version) {
        self.stomp.set_version(version);
    }

    /// The next event in `buf`, consuming its bytes; `Ok(None)`: more bytes are needed.
    /// With `Framing::SockJsHttp`, `buf` holds the body of an `xhr` or `xhr_streaming`
    /// response (its prelude reads as a heart-beat).
    ///
    /// # Errors
    /// Bad framing; the connection is then given up.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Event>, Error> {
        loop {
            if !self.stream.is_empty() {
                match self.stomp.decode(&mut self.stream)? {
                    Some(stomp::Item::Frame(frame)) => return Ok(Some(Event::Frame(frame))),
                    Some(stomp::Item::HeartBeat) => return Ok(Some(Event::HeartBeat)),
                    None => {}
                }
            }
            if self.framing == Framing::SockJsHttp {
                let Some(line) = sockjs::http::next_line(buf) else {
                    return Ok(None);
                };
                match self.sockjs_frame(&line)? {
                    Some(event) => return Ok(Some(event)),
                    None => continue,
                }
            }
            let data = match self.ws.decode(buf)? {
                None => return Ok(None),
                Some(ws::Message::Text(data) | ws::Message::Binary(data)) => data,
                Some(ws::Message::Ping(data)) => return Ok(Some(Event::Ping(data))),
                Some(ws::Message::Pong(_)) => continue,
                Some(ws::Message::Close(code)) => return Ok(Some(Event::Closed(code.map(|(c, _)| c)))),
            };
            match self.framing {
                // Most messages hold whole frames: decode them where they lie.
                Framing::Raw if self.stream.is_empty() => self.stream = data,
                Framing::Raw => self.stream.extend_from_slice(&data),
                Framing::SockJs | Framing::SockJsHttp => {
                    if let Some(event) = self.sockjs_frame(&data)? {
                        return Ok(Some(event));
                    }
                }
            }
        }
    }

    /// Handles one SockJS frame: an event, or `None` when it was `a[...]`, whose strings
    /// went to the STOMP stream.
    fn sockjs_frame(&mut self, data: &[u8]) -> Result<Option<Event>, Error> {
        match data.first() {
            Some(b'o') => Ok(Some(Event::Open)),
            Some(b'h') => Ok(Some(Event::HeartBeat)),
            Some(b'c') => Ok(Some(Event::Closed(sockjs_close_code(&data[1..])))),
            Some(b'a') => {
                sockjs::decode_message(&data[1..], &mut self.json_scratch, &mut self.stream)
                    .map_err(|_| Error::SockJs("a[...] is not a JSON array of strings"))?;
                Ok(None)
            }
            _ => Err(Error::SockJs("unknown frame type")),
        }
    }

    /// Appends `command` with `headers` and `body` as one masked WebSocket message
    /// (inside a SockJS array when the framing asks for it). With `Framing::SockJsHttp` it
    /// appends the frame as one JSON string and a comma, an element of the next
    /// [`xhr_send_request`] body (frames queued meanwhile go out in one request).
    pub fn encode(&mut self, command: stomp::Command, headers: &[(&str, &[u8])], body: &[u8], out: &mut BytesMut) {
        self.frame_scratch.clear();
        stomp::encode_frame(command, headers, body, stomp::Version::V1_2, &mut self.frame_scratch);
        if self.framing == Framing::SockJsHttp {
            out.reserve(self.frame_scratch.len() + 4);
            out.put_u8(b'"');
            sockjs::escape_into(&self.frame_scratch, out);
            out.put_slice(b"\",");
            return;
        }
        let mask = self.mask();
        match self.framing {
            Framing::Raw => {
                ws::encode_frame(ws::OpCode::Text, &self.frame_scratch, Some(mask), out);
            }
            Framing::SockJs | Framing::SockJsHttp => {
                self.wrap_scratch.clear();
                self.wrap_scratch.put_slice(b"[\"");
                sockjs::escape_into(&self.frame_scratch, &mut self.wrap_scratch);
                self.wrap_scratch.put_slice(b"\"]");
                ws::encode_frame(ws::OpCode::Text, &self.wrap_scratch, Some(mask), out);
            }
        }
    }

    /// Appends a masked pong echoing `payload`.
    pub fn pong(&mut self, payload: &[u8], out: &mut BytesMut) {
        let mask = self.mask();
        ws::encode_frame(ws::OpCode::Pong, payload, Some(mask), out);
    }

    /// Appends a masked close frame with `code`.
    pub fn close(&mut self, code: u16, out: &mut BytesMut) {
        let mask = self.mask();
        ws::encode_close(code, "", Some(mask), out);
    }

    fn mask(&mut self) -> [u8; 4] {
        (self.rng.next_u64() as u32).to_le_bytes()
    }
}

/// Appends an HTTP/1.1 request with a `Content-Length` body (kept alive).
pub fn http_request(method: &str, host: &str, path: &str, body: &[u8], out: &mut BytesMut) {
    out.reserve(96 + host.len() + path.len() + body.len());
    out.put_slice(method.as_bytes());
    out.put_u8(b' ');
    out.put_slice(path.as_bytes());
    out.put_slice(b" HTTP/1.1\r\nHost: ");
    out.put_slice(host.as_bytes());
    out.put_slice(b"\r\nContent-Type: text/plain;charset=UTF-8\r\nContent-Length: ");
    out.put_slice(itoa::Buffer::new().format(body.len()).as_bytes());
    out.put_slice(b"\r\n\r\n");
    out.put_slice(body);
}

/// Appends a `POST {path}` (a session's `.../xhr_send`) whose body is the JSON array of
/// the `elements` that [`Codec::encode`] queued (each a string and a comma).
pub fn xhr_send_request(host: &str, path: &str, elements: &[u8], out: &mut BytesMut) {
    let elements = elements.strip_suffix(b",").unwrap_or(elements);
    let mut body = BytesMut::with_capacity(elements.len() + 2);
    body.put_u8(b'[');
    body.put_slice(elements);
    body.put_u8(b']');
    http_request("POST", host, path, &body, out);
}

/// The head of an HTTP response, as a client of the SockJS HTTP transports needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseHead {
    /// Status code.
    pub status: u16,
    /// Bytes of the head; the body follows.
    pub head_bytes: usize,
    /// `Content-Length`, when given; else the body ends when the connection closes.
    pub content_length: Option<usize>,
    /// `Transfer-Encoding: chunked` (a proxy such as Nginx re-frames a streaming
    /// response this way): read the body through a [`Dechunker`].
    pub chunked: bool,
    /// The server closes the connection after this response.
    pub close: bool,
}

/// Decodes a `Transfer-Encoding: chunked` body as it arrives, in any pieces: raw bytes
/// in, body bytes out. Chunk extensions and trailer fields are skipped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dechunker {
    state: ChunkState,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum ChunkState {
    /// Expecting a chunk-size line.
    #[default]
    Size,
    /// This many data bytes of the current chunk still to come.
    Data(usize),
    /// Expecting the CRLF after a chunk's data.
    DataEnd,
    /// After the last (empty) chunk: trailer lines up to an empty one.
    Trailer,
    /// The body is complete.
    Done,
}

impl Dechunker {
    /// True once the body, trailers included, was read.
    pub fn is_done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// Moves what `raw` holds of the body into `out`, consuming it from `raw`; returns
    /// true once the body is complete (what follows it stays in `raw`).
    ///
    /// # Errors
    /// `MalformedHttp` for bad chunk syntax.
    pub fn feed(&mut self, raw: &mut BytesMut, out: &mut BytesMut) -> Result<bool, Error> {
        loop {
            match self.state {
                ChunkState::Done => return Ok(true),
                ChunkState::Data(0) => self.state = ChunkState::DataEnd,
                ChunkState::Data(left) => {
                    if raw.is_empty() {
                        return Ok(false);
                    }
                    let n = left.min(raw.len());
                    out.extend_from_slice(&raw.split_to(n));
                    self.state = ChunkState::Data(left - n);
                }
                ChunkState::Size | ChunkState::DataEnd | ChunkState::Trailer => {
                    let Some(end) = raw.windows(2).position(|w| w == b"\r\n") else {
                        // A size line is short; anything longer is not HTTP.
                        if raw.len() > MAX_HEAD_BYTES {
                            return Err(Error::MalformedHttp);
                        }
                        return Ok(false);
                    };
                    let line = raw.split_to(end + 2);
                    let line = &line[..end];
                    self.state = match self.state {
                        ChunkState::DataEnd if line.is_empty() => ChunkState::Size,
                        ChunkState::DataEnd => return Err(Error::MalformedHttp),
                        ChunkState::Trailer if line.is_empty() => ChunkState::Done,
                        ChunkState::Trailer => ChunkState::Trailer,
                        _ => match chunk_size(line)? {
                            0 => ChunkState::Trailer,
                            n => ChunkState::Data(n),
                        },
                    };
                }
            }
        }
    }
}

/// The size of a chunk-size line (hex, at most 8 digits), extensions ignored.
fn chunk_size(line: &[u8]) -> Result<usize, Error> {
    let digits = line.split(|&b| b == b';').next().unwrap_or_default().trim_ascii();
    if digits.is_empty() || digits.len() > 8 {
        return Err(Error::MalformedHttp);
    }
    let text = std::str::from_utf8(digits).map_err(|_| Error::MalformedHttp)?;
    usize::from_str_radix(text, 16).map_err(|_| Error::MalformedHttp)
}

/// Reads a response head from the start of `buf`; `Ok(None)`: not complete yet.
///
/// # Errors
/// `MalformedHttp` when it is not HTTP, or uses a transfer coding other than chunked.
pub fn response_head(buf: &[u8]) -> Result<Option<ResponseHead>, Error> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    let head_bytes = match response.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD_BYTES => return Err(Error::MalformedHttp),
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(Error::MalformedHttp),
    };
    let mut head = ResponseHead {
        status: response.code.unwrap_or(0),
        head_bytes,
        content_length: None,
        chunked: false,
        close: response.version == Some(0),
    };
    for h in response.headers.iter() {
        let value = std::str::from_utf8(h.value).map_err(|_| Error::MalformedHttp)?.trim();
        if h.name.eq_ignore_ascii_case("content-length") {
            head.content_length = Some(value.parse().map_err(|_| Error::MalformedHttp)?);
        } else if h.name.eq_ignore_ascii_case("connection") {
            head.close |= value.split(',').any(|t| t.trim().eq_ignore_ascii_case("close"));
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            if !value.eq_ignore_ascii_case("chunked") {
                return Err(Error::MalformedHttp);
            }
            head.chunked = true;
        }
    }
    Ok(Some(head))
}

/// The code of a SockJS `c[code,"reason"]` (after the `c`).
fn sockjs_close_code(rest: &[u8]) -> Option<u16> {
    let inner = rest.strip_prefix(b"[")?;
    let digits = inner.iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&inner[..digits]).ok()?.parse().ok()
}

/// Parses `chat-engine/0.1.0 node=<id> shard=<n>` into (node, shard); unknown parts `?`.
pub fn server_identity(server: Option<&[u8]>) -> (String, String) {
    let text = server.map(String::from_utf8_lossy).unwrap_or_default();
    let field = |name: &str| {
        text.split_whitespace()
            .find_map(|w| w.strip_prefix(name))
            .filter(|v| !v.is_empty())
            .map_or_else(|| "?".to_string(), str::to_string)
    };
    (field("node="), field("shard="))
}

/// Longest upgrade answer head accepted.
const MAX_HEAD_BYTES: usize = 16 * 1024;

#[cfg(test)]
mod tests;
