//! One simulated user on SockJS's HTTP transports (`--transport xhr-streaming` or
//! `xhr-polling`), in `conn.rs`'s shape: `conn.rs` with WebSockets and this file are the
//! only ones that touch sockets. A receiving connection POSTs `{session}/xhr_streaming`
//! (one long response, opened again when the server ends it) or `{session}/xhr` (one
//! response per batch, polled again at once on the same kept-alive connection), and
//! hands its `MESSAGE` bodies to the shard; a sending connection POSTs what the publisher
//! clock queued as one `xhr_send` (frames queued while a send is in flight go in the
//! next, as sockjs-client batches). The wire is `proto::client`'s, sans-IO.

use std::future::poll_fn;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::task::Poll;

use bytes::{Buf, BytesMut};
use proto::client::{self as wire, Codec, Event};
use proto::stomp::{Command, Version};
use proto::Framing;
use smallvec::SmallVec;

use super::conn::{self, close_kind, io_kind, read_some, release_if_empty, start, MAX_FRAME_BYTES};
use super::{Link, Shard};
use crate::cli::Transport;
use crate::net::{self, write_all, Stream};
use crate::scenario::Scenario;
use crate::stats::now_ns;
use crate::target::Target;

/// Runs connection `index` of the scenario over its HTTP transport until the run ends or
/// the session fails.
pub async fn run(shard: Rc<Shard>, index: u32) {
    let Some(plan) = shard.scenario.conns.get(index as usize) else {
        return;
    };
    let Some((mut rx, tx, link, slot)) = start(&shard, plan, handshake(&shard, index)).await else {
        return;
    };
    let writer = glommio::spawn_local(send_loop(shard.clone(), tx, link.clone()));
    if let Err(kind) = read_loop(&shard, &mut rx, &link, slot, plan.stalls).await {
        shard.error(&kind);
    }
    link.kill();
    writer.await;
}

/// CONNECTED and subscribed: the receiving side, the sending side, the link the publisher
/// clock writes to, and the subscriber slot.
type Ready = (Receiver, Sender, Rc<Link>, usize);

async fn handshake(shard: &Rc<Shard>, index: u32) -> Result<Ready, String> {
    let scenario = &shard.scenario;
    let plan = &scenario.conns[index as usize];
    let target = &scenario.targets[plan.target];
    let started_ns = now_ns();
    // A session id of this run's own: sessions of an earlier run may still linger on the
    // server for its disconnect delay.
    let session = target.session_path(u64::from(index) ^ scenario.run_id.rotate_left(17));
    let mut codec = Codec::new(Framing::SockJsHttp, MAX_FRAME_BYTES, u64::from(index) ^ scenario.run_id);
    let dial = Dial::new(scenario, target, plan.source_ip);
    let mut rx = Receiver::new(target, &session, scenario.transport, dial.clone());
    rx.request(shard).await?;
    loop {
        match rx.next_event(shard, &mut codec).await? {
            Event::Open => break,
            // The xhr_streaming prelude.
            Event::HeartBeat => continue,
            _ => return Err("sockjs_no_open".into()),
        }
    }
    let mut tx = Sender::new(target, &session, dial);
    let channel = &scenario.channel_names[plan.channel as usize];
    let destination = format!("/sub/chat/{channel}");
    let mut elements = BytesMut::new();
    let bearer = scenario.auth.bearer(plan.index);
    codec.encode(
        Command::Connect,
        &conn::connect_headers(target, bearer.as_deref()),
        b"",
        &mut elements,
    );
    let subscribe: [(&str, &[u8]); 3] = [
        ("id", b"sub-0"),
        ("destination", destination.as_bytes()),
        ("receipt", b"sub-0"),
    ];
    codec.encode(Command::Subscribe, &subscribe, b"", &mut elements);
    tx.post(shard, &elements).await?;

    let mut key_index = None;
    loop {
        let frame = match rx.next_event(shard, &mut codec).await? {
            Event::Frame(frame) => frame,
            Event::Closed(code) => return Err(close_kind(code)),
            Event::Ping(_) | Event::HeartBeat | Event::Open => continue,
        };
        match (frame.command, key_index) {
            (Command::Connected, None) => {
                codec.set_version(match frame.header(b"version") {
                    Some(b"1.0") => Version::V1_0,
                    Some(b"1.1") => Version::V1_1,
                    _ => Version::V1_2,
                });
                let (node, server_shard) = wire::server_identity(frame.header(b"server"));
                let connect_us = now_ns().saturating_sub(started_ns) / 1000;
                key_index = Some(shard.connected(node, server_shard, connect_us));
            }
            (Command::Receipt, Some(key)) => {
                if shard.control.publish_start_ns.load(Relaxed) != 0 {
                    return Err("late".into());
                }
                let link = Rc::new(Link::new(codec));
                let slot = shard.ready(key, plan.channel, plan.publisher, &link);
                return Ok((rx, tx, link, slot));
            }
            (Command::Error, _) => return Err("stomp_error".into()),
            _ => return Err("stomp_unexpected".into()),
        }
    }
}

/// Reads frames until the session ends; `Err` names why it ended early.
async fn read_loop(shard: &Shard, rx: &mut Receiver, link: &Link, slot: usize, stalls: bool) -> Result<(), String> {
    let mut stalled = !stalls;
    let mut bodies: SmallVec<[bytes::Bytes; 16]> = SmallVec::new();
    loop {
        if !stalled {
            let at = shard
                .control
                .measure_start_ns
                .load(Relaxed)
                .saturating_add(shard.scenario.stall_at.as_nanos() as u64);
            if at != u64::MAX && now_ns() >= at {
                stalled = true;
                glommio::timer::sleep(shard.scenario.stall).await;
            }
        }
        let received_ns = now_ns();
        let mut ended = None;
        {
            let mut codec = link.codec.borrow_mut();
            loop {
                match codec.decode(&mut rx.buf) {
                    Ok(Some(Event::Frame(frame))) => match frame.command {
                        Command::Message => bodies.push(frame.body),
                        Command::Error => shard.error("stomp_error"),
                        _ => {}
                    },
                    Ok(Some(Event::Closed(code))) => {
                        ended = Some(close_kind(code));
                        break;
                    }
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    Err(e) => {
                        ended = Some(e.kind());
                        break;
                    }
                }
                if bodies.len() == bodies.inline_size() {
                    shard.on_messages(slot, bodies.iter().map(|b| &b[..]), received_ns, 0);
                    bodies.clear();
                }
            }
        }
        if !bodies.is_empty() {
            shard.on_messages(slot, bodies.iter().map(|b| &b[..]), received_ns, 0);
            bodies.clear();
        }
        if let Some(kind) = ended {
            return Err(kind);
        }
        rx.advance(shard).await?;
    }
}

/// Posts what the publisher clock queued, one `xhr_send` at a time, until the link dies.
async fn send_loop(shard: Rc<Shard>, mut tx: Sender, link: Rc<Link>) {
    let mut elements = BytesMut::new();
    loop {
        poll_fn(|cx| {
            if !link.alive() || !link.out.borrow().is_empty() {
                Poll::Ready(())
            } else {
                link.waker.set(Some(cx.waker().clone()));
                Poll::Pending
            }
        })
        .await;
        if !link.alive() {
            return;
        }
        std::mem::swap(&mut elements, &mut *link.out.borrow_mut());
        if let Err(kind) = tx.post(&shard, &elements).await {
            shard.error(&kind);
            link.kill();
            return;
        }
        elements.clear();
    }
}

/// How the requests of one user reach its target: address, source and TLS.
#[derive(Clone)]
struct Dial {
    addr: SocketAddr,
    source_ip: Option<IpAddr>,
    tls: Option<(Arc<rustls::ClientConfig>, String)>,
}

impl Dial {
    fn new(scenario: &Scenario, target: &Target, source_ip: Option<IpAddr>) -> Self {
        Dial {
            addr: target.addr,
            source_ip,
            tls: scenario
                .tls_for(target)
                .map(|(config, name)| (config.clone(), name.to_string())),
        }
    }

    fn connect(&self) -> Result<Stream, String> {
        let tls = self.tls.as_ref().map(|(config, name)| (config, name.as_str()));
        net::connect(self.addr, self.source_ip, tls).map_err(|e| io_kind(&e))
    }
}

/// The receiving side: one response after another on `xhr_streaming` or `xhr`.
struct Receiver {
    dial: Dial,
    host: String,
    path: String,
    streaming: bool,
    stream: Option<Stream>,
    /// What was read of the current response's body (its head is cut off), for the codec.
    buf: BytesMut,
    /// How the current response's body ends.
    body: Body,
    /// Bytes of a chunked body not decoded yet.
    raw: BytesMut,
    /// The connection stays open after this response.
    keep_alive: bool,
}

/// How a response's body is framed.
enum Body {
    /// `Content-Length` (`xhr` from the engine): the length and how much was read.
    Length(usize, usize),
    /// `Transfer-Encoding: chunked`, as Nginx re-frames both transports.
    Chunked(wire::Dechunker),
    /// Until the server closes the connection (`xhr_streaming` from the engine).
    UntilClose,
}

impl Body {
    fn complete(&self) -> bool {
        match self {
            Body::Length(len, read) => read >= len,
            Body::Chunked(d) => d.is_done(),
            Body::UntilClose => false,
        }
    }
}

impl Receiver {
    fn new(target: &Target, session: &str, transport: Transport, dial: Dial) -> Self {
        let streaming = transport == Transport::XhrStreaming;
        let suffix = if streaming { "xhr_streaming" } else { "xhr" };
        Receiver {
            dial,
            host: target.host.clone(),
            path: format!("{session}/{suffix}"),
            streaming,
            stream: None,
            buf: BytesMut::new(),
            body: Body::UntilClose,
            raw: BytesMut::new(),
            keep_alive: false,
        }
    }

    /// Sends the next receiving request (on a new connection unless the last one is kept
    /// alive) and reads its head.
    async fn request(&mut self, shard: &Shard) -> Result<(), String> {
        let stream = match self.stream.take().filter(|_| self.keep_alive) {
            Some(stream) => stream,
            None => self.dial.connect()?,
        };
        let mut out = BytesMut::new();
        wire::http_request("POST", &self.host, &self.path, b"", &mut out);
        write_all(&stream, &out).await.map_err(|e| io_kind(&e))?;
        self.buf.clear();
        let head = loop {
            if let Some(head) = wire::response_head(&self.buf).map_err(|e| e.kind())? {
                break head;
            }
            read_some(shard, &stream, &mut self.buf)
                .await
                .map_err(|e| io_kind(&e))?;
        };
        if head.status != 200 {
            return Err(format!("http_{}", head.status));
        }
        self.buf.advance(head.head_bytes);
        self.keep_alive = !head.close && (head.content_length.is_some() || head.chunked);
        self.body = match (head.chunked, head.content_length) {
            (true, _) => {
                self.raw = self.buf.split();
                let mut body = wire::Dechunker::default();
                body.feed(&mut self.raw, &mut self.buf).map_err(|e| e.kind())?;
                Body::Chunked(body)
            }
            (false, Some(len)) => Body::Length(len, self.buf.len()),
            (false, None) if self.streaming => Body::UntilClose,
            (false, None) => return Err("bad_http".into()),
        };
        self.stream = Some(stream);
        Ok(())
    }

    /// Reads more of the response, or starts the next one when it is over: at the end of
    /// an `xhr` body (once its lines are decoded), or when the server ends a stream.
    async fn advance(&mut self, shard: &Shard) -> Result<(), String> {
        if self.body.complete() {
            if !self.buf.is_empty() || !self.raw.is_empty() {
                return Err("sockjs_protocol".into());
            }
            return self.request(shard).await;
        }
        let Some(stream) = self.stream.clone() else {
            return self.request(shard).await;
        };
        release_if_empty(&mut self.buf);
        let before = self.buf.len();
        let read = match &mut self.body {
            Body::Chunked(_) => read_some(shard, &stream, &mut self.raw).await,
            _ => read_some(shard, &stream, &mut self.buf).await,
        };
        match read {
            Ok(()) => {
                match &mut self.body {
                    Body::Length(_, read) => *read += self.buf.len() - before,
                    Body::Chunked(body) => {
                        body.feed(&mut self.raw, &mut self.buf).map_err(|e| e.kind())?;
                    }
                    Body::UntilClose => {}
                }
                Ok(())
            }
            // A streaming response ends when the server has sent its limit: open the next.
            Err(e) if self.streaming && e.kind() == std::io::ErrorKind::UnexpectedEof => {
                self.stream = None;
                if !self.buf.is_empty() {
                    return Err("sockjs_protocol".into());
                }
                self.request(shard).await
            }
            Err(e) => Err(io_kind(&e)),
        }
    }

    /// The next event, reading (and requesting again) as needed.
    async fn next_event(&mut self, shard: &Shard, codec: &mut Codec) -> Result<Event, String> {
        loop {
            if let Some(event) = codec.decode(&mut self.buf).map_err(|e| e.kind())? {
                return Ok(event);
            }
            self.advance(shard).await?;
        }
    }
}

/// The sending side: `xhr_send` requests on one kept-alive connection.
struct Sender {
    dial: Dial,
    host: String,
    path: String,
    stream: Option<Stream>,
    out: BytesMut,
    buf: BytesMut,
}

impl Sender {
    fn new(target: &Target, session: &str, dial: Dial) -> Self {
        Sender {
            dial,
            host: target.host.clone(),
            path: format!("{session}/xhr_send"),
            stream: None,
            out: BytesMut::new(),
            buf: BytesMut::new(),
        }
    }

    /// Posts `elements` (frames `Codec::encode` queued) and waits for the 204.
    async fn post(&mut self, shard: &Shard, elements: &[u8]) -> Result<(), String> {
        let stream = match self.stream.take() {
            Some(stream) => stream,
            None => self.dial.connect()?,
        };
        self.out.clear();
        wire::xhr_send_request(&self.host, &self.path, elements, &mut self.out);
        write_all(&stream, &self.out).await.map_err(|e| io_kind(&e))?;
        self.buf.clear();
        let head = loop {
            if let Some(head) = wire::response_head(&self.buf).map_err(|e| e.kind())? {
                break head;
            }
            read_some(shard, &stream, &mut self.buf)
                .await
                .map_err(|e| io_kind(&e))?;
        };
        if head.status != 204 && head.status != 200 {
            return Err(format!("http_{}", head.status));
        }
        let body = head.content_length.unwrap_or(0);
        while self.buf.len() < head.head_bytes + body {
            read_some(shard, &stream, &mut self.buf)
                .await
                .map_err(|e| io_kind(&e))?;
        }
        if !head.close {
            self.stream = Some(stream);
        }
        Ok(())
    }
}
