//! One client's STOMP session on a shard: WebSocket messages in (from `conn.rs`), STOMP
//! frames decoded and acted on (CONNECT, SUBSCRIBE, SEND, ...), replies queued to the
//! connection's `Outbound`. No socket here; the only waiting is on a full mesh queue
//! while publishing. Every protocol error maps to one answer in `fail`.

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use bytes::{Bytes, BytesMut};
use smallvec::SmallVec;

use crate::chat;
use crate::fanout::{self, Framing, Published, WireKey};
use crate::metrics::{ErrorKind, ShardStats};
use crate::proto::stomp::{self, Command, Frame, Item, Version};
use crate::proto::{sockjs, ws, ProtocolError};
use crate::shard::outbound::{Closing, Outbound};
use crate::shard::Shard;

/// What the connection should do after handing the session some input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Keep reading.
    Continue,
    /// Stop reading; the outbound queue is closing.
    Close,
}

/// A STOMP session over Raw or SockJS framing.
pub struct Session {
    /// Connection id on this shard.
    pub conn: u64,
    /// How STOMP frames are wrapped.
    pub framing: Framing,
    /// The connection's outbound queue.
    pub out: Rc<Outbound>,
    ws: ws::Decoder,
    stomp: stomp::Decoder,
    stream: BytesMut,
    version: Option<Version>,
    clock: Option<stomp::Session>,
    /// (subscription id, destination) of each subscription.
    subs: SmallVec<[(Bytes, Bytes); 2]>,
}

impl Session {
    /// A session that has not seen `CONNECT` yet.
    pub fn new(shard: &Shard, conn: u64, framing: Framing, out: Rc<Outbound>) -> Self {
        let config = &shard.node.config;
        let limits = ws::Limits {
            max_frame_bytes: config.max_frame_bytes,
            max_message_bytes: config.max_frame_bytes,
        };
        Self {
            conn,
            framing,
            out,
            ws: ws::Decoder::new(ws::Role::Server, limits),
            stomp: stomp::Decoder::new(stomp::Limits {
                max_frame_bytes: config.max_frame_bytes,
                max_headers: MAX_HEADERS,
            }),
            stream: BytesMut::new(),
            version: None,
            clock: None,
            subs: SmallVec::new(),
        }
    }

    /// Decodes and acts on every complete WebSocket message in `buf`.
    pub async fn on_bytes(&mut self, shard: &Shard, buf: &mut BytesMut, now: Instant) -> Flow {
        if let Some(clock) = &mut self.clock {
            clock.on_received(now);
        }
        loop {
            if self.out.closing() != Closing::Open {
                return Flow::Close;
            }
            let message = match self.ws.decode(buf) {
                Ok(Some(message)) => message,
                Ok(None) => return Flow::Continue,
                Err(e) => return self.fail(shard, e.into(), None),
            };
            let data = match message {
                ws::Message::Text(data) | ws::Message::Binary(data) => data,
                ws::Message::Ping(data) => {
                    self.out.push_with(|q| push_frame(q, ws::OpCode::Pong, &data));
                    continue;
                }
                ws::Message::Pong(_) => continue,
                ws::Message::Close(code) => {
                    let code = code.map_or(1000, |(c, _)| c);
                    self.out.push_with(|q| push_close(q, code, ""));
                    self.out.close(Closing::Graceful);
                    return Flow::Close;
                }
            };
            let unwrapped = match self.framing {
                Framing::Raw => {
                    self.stream.extend_from_slice(&data);
                    Ok(())
                }
                Framing::SockJs => {
                    let mut scratch = shard.json_scratch.borrow_mut();
                    sockjs::decode_message(&data, &mut scratch, &mut self.stream).map(drop)
                }
            };
            if let Err(e) = unwrapped {
                return self.fail(shard, e.into(), None);
            }
            if self.on_stream(shard).await == Flow::Close {
                return Flow::Close;
            }
        }
    }

    /// Heart-beats due at `now`: sends ours, or closes a client gone silent.
    pub fn on_tick(&mut self, shard: &Shard, now: Instant) -> Flow {
        let tick = self
            .clock
            .as_mut()
            .map_or(stomp::Tick::Idle, |clock| clock.on_tick(now));
        {
            match tick {
                stomp::Tick::Idle => {}
                stomp::Tick::SendHeartBeat => {
                    self.send_stomp_bytes(shard, b"\n");
                    if let Some(clock) = &mut self.clock {
                        clock.on_sent(now);
                    }
                }
                stomp::Tick::TimedOut => {
                    shard.stats.error(ErrorKind::HeartBeatTimeout);
                    say_goodbye(&self.out, self.framing, 1002, "heart-beat timeout");
                    return Flow::Close;
                }
            }
        }
        if self.framing == Framing::SockJs && now >= self.out.last_sent() + shard.sockjs_heartbeat() {
            self.out
                .push_with(|q| push_frame(q, ws::OpCode::Text, sockjs::HEARTBEAT));
            self.out.mark_sent(now);
        }
        Flow::Continue
    }

    /// When `on_tick` is next due.
    pub fn next_deadline(&self, shard: &Shard) -> Option<Instant> {
        let stomp = self.clock.as_ref().and_then(stomp::Session::next_deadline);
        let sockjs = (self.framing == Framing::SockJs).then(|| self.out.last_sent() + shard.sockjs_heartbeat());
        match (stomp, sockjs) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Removes every subscription of this session from the shard.
    pub fn end(&mut self, shard: &Shard) {
        ShardStats::shift(&shard.stats.subscriptions, -(self.subs.len() as i64));
        for (id, destination) in self.subs.drain(..) {
            shard.router.unsubscribe(&destination, &id, self.conn);
        }
    }

    async fn on_stream(&mut self, shard: &Shard) -> Flow {
        loop {
            let frame = match self.stomp.decode(&mut self.stream) {
                Ok(Some(Item::Frame(frame))) => frame,
                Ok(Some(Item::HeartBeat)) => continue,
                Ok(None) => return Flow::Continue,
                Err(e) => return self.fail(shard, e.into(), None),
            };
            ShardStats::add(&shard.stats.frames_in, 1);
            let receipt = frame.header(b"receipt").map(Bytes::copy_from_slice);
            let outcome = match (frame.command, self.version) {
                (Command::Connect | Command::Stomp, None) => self.on_connect(shard, &frame),
                (Command::Connect | Command::Stomp, Some(_)) => Err(Refusal::Protocol("already connected")),
                (_, None) => Err(Refusal::Protocol("send CONNECT first")),
                (Command::Subscribe, Some(_)) => self.on_subscribe(shard, &frame),
                (Command::Unsubscribe, Some(_)) => self.on_unsubscribe(shard, &frame),
                (Command::Send, Some(_)) => self.on_send(shard, &frame).await,
                (Command::Disconnect, Some(_)) => {
                    self.send_receipt(shard, receipt.as_deref());
                    self.out.push_with(|q| push_close(q, 1000, ""));
                    self.out.close(Closing::Graceful);
                    return Flow::Close;
                }
                (Command::Ack | Command::Nack | Command::Begin | Command::Commit | Command::Abort, Some(_)) => {
                    Err(Refusal::Protocol("acknowledgements and transactions are not supported"))
                }
                (_, Some(_)) => Err(Refusal::Protocol("clients may not send this command")),
            };
            match outcome {
                Ok(()) => self.send_receipt(shard, receipt.as_deref()),
                Err(Refusal::Protocol(message)) => return self.refuse(shard, message, receipt.as_deref()),
                Err(Refusal::Stomp(e)) => return self.fail(shard, e.into(), receipt.as_deref()),
            }
        }
    }

    fn on_connect(&mut self, shard: &Shard, frame: &Frame) -> Result<(), Refusal> {
        let version = stomp::negotiate_version(frame.header(b"accept-version"))?;
        let hb = shard.node.config.heartbeat_ms;
        let heartbeat = stomp::negotiate_heartbeat(frame.header(b"heart-beat"), hb, hb)?;
        self.version = Some(version);
        self.stomp.set_version(version);
        self.clock = Some(stomp::Session::new(heartbeat, Instant::now()));
        let beat = format!("{},{}", heartbeat.header.0, heartbeat.header.1);
        let server = format!(
            "chat-engine/{} node={} shard={}",
            env!("CARGO_PKG_VERSION"),
            shard.node.config.node_id,
            shard.index
        );
        let session = itoa::Buffer::new().format(self.conn).to_owned();
        let headers: [(&str, &[u8]); 4] = [
            ("version", version.as_str().as_bytes()),
            ("heart-beat", beat.as_bytes()),
            ("server", server.as_bytes()),
            ("session", session.as_bytes()),
        ];
        self.send_frame(shard, Command::Connected, &headers, b"");
        Ok(())
    }

    fn on_subscribe(&mut self, shard: &Shard, frame: &Frame) -> Result<(), Refusal> {
        let destination = frame
            .header(b"destination")
            .ok_or(Refusal::Protocol("SUBSCRIBE without destination"))?;
        // STOMP 1.0 makes `id` optional; the destination then names the subscription.
        let id = match (frame.header(b"id"), self.version) {
            (Some(id), _) => id,
            (None, Some(Version::V1_0)) => destination,
            (None, _) => return Err(Refusal::Protocol("SUBSCRIBE without id")),
        };
        if self.subs.iter().any(|(existing, _)| existing == id) {
            return Err(Refusal::Protocol("subscription id already in use"));
        }
        if self.subs.len() >= shard.node.config.max_subscriptions {
            return Err(Refusal::Protocol("too many subscriptions"));
        }
        let (id, destination) = (Bytes::copy_from_slice(id), Bytes::copy_from_slice(destination));
        let key = WireKey {
            framing: self.framing,
            version: self.version.unwrap_or(Version::V1_0),
            subscription: id.clone(),
        };
        shard
            .router
            .subscribe(destination.clone(), key, self.conn, self.out.clone());
        self.subs.push((id, destination));
        ShardStats::shift(&shard.stats.subscriptions, 1);
        Ok(())
    }

    fn on_unsubscribe(&mut self, shard: &Shard, frame: &Frame) -> Result<(), Refusal> {
        let id = frame.header(b"id").ok_or(Refusal::Protocol("UNSUBSCRIBE without id"))?;
        if let Some(at) = self.subs.iter().position(|(existing, _)| existing == id) {
            let (id, destination) = self.subs.swap_remove(at);
            shard.router.unsubscribe(&destination, &id, self.conn);
            ShardStats::shift(&shard.stats.subscriptions, -1);
        }
        Ok(())
    }

    async fn on_send(&mut self, shard: &Shard, frame: &Frame) -> Result<(), Refusal> {
        let destination = frame
            .header(b"destination")
            .ok_or(Refusal::Protocol("SEND without destination"))?;
        if destination == chat::PUBLISH_DESTINATION {
            let chat = {
                let mut scratch = shard.json_scratch.borrow_mut();
                chat::prepare(&frame.body, SystemTime::now(), &mut scratch).map_err(|e| match e {
                    chat::Error::NotAnObject => Refusal::Protocol("body is not a JSON object"),
                    chat::Error::NoChannel => Refusal::Protocol("body has no non-empty string field \"channel\""),
                })?
            };
            let channel = chat.destination.slice(chat::CHANNEL_PREFIX.len()..);
            let msg = Arc::new(Published {
                destination: chat.destination,
                body: chat.body,
                id: shard.next_message_id(),
            });
            // Boxed: this rare, deep await would otherwise size every idle connection's
            // future (flamegraphs/README.md, idle10k).
            if Box::pin(shard.router.publish_chat(msg, channel)).await.is_err() {
                shard.stats.error(ErrorKind::KafkaBackpressure);
                return Err(Refusal::Protocol(
                    "cluster bus is full: message not accepted, send it again later",
                ));
            }
        } else if destination.starts_with(b"/sub/") {
            // Like Spring's simple broker: straight to this node's subscribers.
            let msg = Published {
                destination: Bytes::copy_from_slice(destination),
                body: frame.body.clone(),
                id: shard.next_message_id(),
            };
            Box::pin(shard.router.publish(Arc::new(msg))).await;
        } else {
            return Err(Refusal::Protocol("unknown destination: send to /pub/chat or /sub/..."));
        }
        ShardStats::add(&shard.stats.published, 1);
        Ok(())
    }

    fn send_receipt(&self, shard: &Shard, receipt: Option<&[u8]>) {
        if let Some(receipt) = receipt {
            self.send_frame(shard, Command::Receipt, &[("receipt-id", receipt)], b"");
        }
    }

    /// Answers a frame the server will not take: `ERROR`, then close.
    fn refuse(&mut self, shard: &Shard, message: &str, receipt: Option<&[u8]>) -> Flow {
        shard.stats.error(ErrorKind::Stomp);
        let mut headers: SmallVec<[(&str, &[u8]); 3]> = SmallVec::new();
        headers.push(("message", message.as_bytes()));
        headers.push(("content-type", b"text/plain"));
        if let Some(receipt) = receipt {
            headers.push(("receipt-id", receipt));
        }
        self.send_frame(shard, Command::Error, &headers, message.as_bytes());
        say_goodbye(&self.out, self.framing, 1000, "");
        Flow::Close
    }

    /// The one place a protocol error becomes an answer to the peer.
    fn fail(&mut self, shard: &Shard, error: ProtocolError, receipt: Option<&[u8]>) -> Flow {
        let close = |kind, code| {
            shard.stats.error(kind);
            self.out.push_with(|q| push_close(q, code, ""));
            self.out.close(Closing::Graceful);
            Flow::Close
        };
        match error {
            ProtocolError::Ws(e @ ws::Error::Protocol(_)) => close(ErrorKind::WsProtocol, e.close_code()),
            ProtocolError::Ws(e @ ws::Error::InvalidUtf8) => close(ErrorKind::WsUtf8, e.close_code()),
            ProtocolError::Ws(e @ ws::Error::TooBig) => close(ErrorKind::WsTooBig, e.close_code()),
            ProtocolError::SockJs(_) => close(ErrorKind::SockJs, 1002),
            ProtocolError::Stomp(e) => self.refuse(shard, e.message(), receipt),
            ProtocolError::Http(_) => close(ErrorKind::Http, 1002),
        }
    }

    fn send_frame(&self, shard: &Shard, command: Command, headers: &[(&str, &[u8])], body: &[u8]) {
        let mut scratch = shard.encode_scratch.borrow_mut();
        scratch.clear();
        stomp::encode_frame(
            command,
            headers,
            body,
            self.version.unwrap_or(Version::V1_2),
            &mut scratch,
        );
        let frame = scratch.split();
        self.send_stomp_bytes_with(&mut scratch, &frame);
    }

    fn send_stomp_bytes(&self, shard: &Shard, stomp: &[u8]) {
        self.send_stomp_bytes_with(&mut shard.encode_scratch.borrow_mut(), stomp);
    }

    fn send_stomp_bytes_with(&self, scratch: &mut BytesMut, stomp: &[u8]) {
        scratch.clear();
        fanout::wrap(self.framing, stomp, scratch);
        self.out.push_with(|q| q.extend_from_slice(scratch));
    }
}

/// Why a frame was refused.
enum Refusal {
    /// A rule of this server (the text is the `message` header).
    Protocol(&'static str),
    /// A STOMP codec or negotiation error.
    Stomp(stomp::Error),
}

impl From<stomp::Error> for Refusal {
    fn from(e: stomp::Error) -> Self {
        Refusal::Stomp(e)
    }
}

/// Queues a closing goodbye (SockJS `c[...]` where it applies, then a WebSocket close)
/// and asks the writer to flush and close.
pub fn say_goodbye(out: &Outbound, framing: Framing, code: u16, reason: &str) {
    if framing == Framing::SockJs {
        let mut frame = BytesMut::new();
        sockjs::encode_close(code, reason, &mut frame);
        out.push_with(|q| push_frame(q, ws::OpCode::Text, &frame));
    }
    out.push_with(|q| push_close(q, code, reason));
    out.close(Closing::Graceful);
}

/// Appends an unmasked WebSocket frame to an outbound queue.
pub fn push_frame(queue: &mut Vec<u8>, opcode: ws::OpCode, payload: &[u8]) {
    let mut frame = BytesMut::with_capacity(10 + payload.len());
    ws::encode_frame(opcode, payload, None, &mut frame);
    queue.extend_from_slice(&frame);
}

/// Appends a WebSocket close frame to an outbound queue.
pub fn push_close(queue: &mut Vec<u8>, code: u16, reason: &str) {
    let mut frame = BytesMut::with_capacity(16 + reason.len());
    ws::encode_close(code, reason, None, &mut frame);
    queue.extend_from_slice(&frame);
}

/// Most headers a client frame may carry.
const MAX_HEADERS: usize = 64;
