//! Owns a client's `TcpStream`: the only file that reads from or writes to a socket.
//! A connection starts as HTTP (health, metrics, SockJS `/info`, upgrades); after a
//! WebSocket upgrade, a reader loop feeds bytes to its `Session` (or echoes, on the
//! conformance endpoint) and a writer task drains its `Outbound` queue, one `send()` per
//! burst. Reads go through the shard's scratch buffer so an idle connection holds no
//! read buffer.

use std::cell::RefCell;
use std::future::poll_fn;
use std::io;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use futures_lite::{AsyncRead, AsyncWrite};
use glommio::net::TcpStream;

use crate::fanout::Framing;
use crate::metrics::{self, ErrorKind, ShardStats};
use crate::proto::{http, sockjs, ws};
use crate::shard::outbound::{Closing, Outbound};
use crate::shard::session::{push_close, push_frame, Flow, Session};
use crate::shard::Shard;

/// A socket shared by a connection's reader and writer tasks (each borrows it only
/// inside a poll, never across an await).
pub type Stream = Rc<RefCell<TcpStream>>;

/// Serves one accepted connection to its end.
pub async fn serve(shard: Rc<Shard>, stream: TcpStream) {
    let stream: Stream = Rc::new(RefCell::new(stream));
    let mut buf = BytesMut::new();
    // Boxed so that its state is freed once the connection is upgraded.
    let Some(endpoint) = Box::pin(serve_http(&shard, &stream, &mut buf)).await else {
        shutdown(&stream);
        return;
    };
    let conn = shard.next_conn_id();
    let out = Rc::new(Outbound::new(shard.node.config.max_outbound_bytes, Instant::now()));
    let writer = glommio::spawn_local(write_loop(shard.clone(), stream.clone(), out.clone(), endpoint));
    ShardStats::shift(&shard.stats.connections, 1);
    match endpoint {
        Endpoint::Echo => echo_loop(&shard, &stream, &out, &mut buf).await,
        Endpoint::Stomp(framing) => {
            shard.sessions.borrow_mut().insert(conn, (out.clone(), framing));
            if framing == Framing::SockJs {
                out.push_with(|q| push_frame(q, ws::OpCode::Text, sockjs::OPEN));
            }
            let mut session = Session::new(&shard, conn, framing, out.clone());
            stomp_loop(&shard, &stream, &mut session, &mut buf).await;
            session.end(&shard);
            shard.sessions.borrow_mut().remove(&conn);
        }
    }
    out.close(Closing::Graceful);
    writer.await;
    ShardStats::shift(&shard.stats.connections, -1);
}

/// What an upgraded connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Stomp(Framing),
    Echo,
}

async fn stomp_loop(shard: &Shard, stream: &Stream, session: &mut Session, buf: &mut BytesMut) {
    loop {
        // Boxed: the frame handling below is deep and only alive while bytes are being
        // handled, so idle connections should not carry its space.
        if !buf.is_empty() && Box::pin(session.on_bytes(shard, buf, Instant::now())).await == Flow::Close {
            return;
        }
        release_if_empty(buf);
        let deadline = session.next_deadline(shard);
        match read_until(shard, stream, buf, deadline).await {
            Read::Bytes => {}
            Read::Deadline => {
                if session.on_tick(shard, Instant::now()) == Flow::Close {
                    return;
                }
            }
            Read::Closed => return,
        }
    }
}

async fn echo_loop(shard: &Shard, stream: &Stream, out: &Outbound, buf: &mut BytesMut) {
    let limits = ws::Limits {
        max_frame_bytes: shard.node.config.max_frame_bytes,
        max_message_bytes: shard.node.config.max_frame_bytes,
    };
    let mut decoder = ws::Decoder::new(ws::Role::Server, limits);
    loop {
        loop {
            match decoder.decode(buf) {
                Ok(Some(ws::Message::Text(data))) => out.push_with(|q| push_frame(q, ws::OpCode::Text, &data)),
                Ok(Some(ws::Message::Binary(data))) => out.push_with(|q| push_frame(q, ws::OpCode::Binary, &data)),
                Ok(Some(ws::Message::Ping(data))) => out.push_with(|q| push_frame(q, ws::OpCode::Pong, &data)),
                Ok(Some(ws::Message::Pong(_))) => {}
                Ok(Some(ws::Message::Close(code))) => {
                    out.push_with(|q| push_close(q, code.map_or(1000, |(c, _)| c), ""));
                    return;
                }
                Ok(None) => break,
                Err(e) => {
                    shard.stats.error(match e {
                        ws::Error::Protocol(_) => ErrorKind::WsProtocol,
                        ws::Error::InvalidUtf8 => ErrorKind::WsUtf8,
                        ws::Error::TooBig => ErrorKind::WsTooBig,
                    });
                    out.push_with(|q| push_close(q, e.close_code(), ""));
                    return;
                }
            }
        }
        if read_until(shard, stream, buf, None).await != Read::Bytes {
            return;
        }
    }
}

/// Serves HTTP requests until one upgrades to a WebSocket (`Some`) or the connection
/// should close (`None`).
async fn serve_http(shard: &Shard, stream: &Stream, buf: &mut BytesMut) -> Option<Endpoint> {
    let mut reply = BytesMut::new();
    loop {
        let step = match http::parse_request(buf, MAX_HEAD_BYTES) {
            Ok(Some((req, n))) => Some((route(shard, &req), n + req.content_length)),
            Ok(None) => None,
            Err(e) => Some((Action::Reject(e), buf.len())),
        };
        let Some((action, used)) = step else {
            if read_until(shard, stream, buf, Some(Instant::now() + HEAD_TIMEOUT)).await != Read::Bytes {
                return None;
            }
            continue;
        };
        if buf.len() < used {
            // A request body (unused by every endpoint) is still arriving.
            if read_until(shard, stream, buf, Some(Instant::now() + HEAD_TIMEOUT)).await != Read::Bytes {
                return None;
            }
            continue;
        }
        buf.advance(used);
        reply.clear();
        let outcome = match action {
            Action::Respond {
                status,
                headers,
                body,
                keep_alive,
            } => {
                let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
                http::write_response(status, &headers, body.as_bytes(), keep_alive, &mut reply);
                keep_alive.then_some(None)
            }
            Action::Reject(e) => {
                shard.stats.error(ErrorKind::Http);
                let headers: &[(&str, &str)] = if e == http::Error::UnsupportedVersion {
                    &[("Sec-WebSocket-Version", "13")]
                } else {
                    &[]
                };
                http::write_response(e.status(), headers, e.to_string().as_bytes(), false, &mut reply);
                None
            }
            Action::Upgrade {
                key,
                protocol,
                endpoint,
            } => {
                http::write_upgrade(&key, protocol, &mut reply);
                Some(Some(endpoint))
            }
        };
        if write_all(stream, &reply).await.is_err() {
            return None;
        }
        ShardStats::add(&shard.stats.bytes_out, reply.len() as u64);
        match outcome {
            Some(Some(endpoint)) => return Some(endpoint),
            Some(None) => {}
            None => return None,
        }
    }
}

/// What to do with one HTTP request.
enum Action {
    Respond {
        status: u16,
        headers: Vec<(&'static str, String)>,
        body: String,
        keep_alive: bool,
    },
    Reject(http::Error),
    Upgrade {
        key: String,
        protocol: Option<&'static str>,
        endpoint: Endpoint,
    },
}

fn route(shard: &Shard, req: &http::Request<'_>) -> Action {
    let config = &shard.node.config;
    let respond = |status, body: String| Action::Respond {
        status,
        headers: Vec::new(),
        body,
        keep_alive: req.keep_alive,
    };
    let upgrade = |endpoint, supported: &[&'static str]| match req.check_upgrade() {
        Ok(key) => Action::Upgrade {
            key: key.to_owned(),
            protocol: req.select_protocol(supported),
            endpoint,
        },
        Err(e) => Action::Reject(e),
    };
    let path = req.path;
    if req.wants_websocket() {
        if config.ws_echo_path.as_deref() == Some(path) {
            return upgrade(Endpoint::Echo, &[]);
        }
        if path == config.ws_path {
            return upgrade(Endpoint::Stomp(Framing::Raw), STOMP_PROTOCOLS);
        }
        return match sockjs::route(&config.base_path, path) {
            Some(sockjs::Route::SockJsWebSocket) => upgrade(Endpoint::Stomp(Framing::SockJs), &[]),
            Some(sockjs::Route::RawWebSocket) => upgrade(Endpoint::Stomp(Framing::Raw), STOMP_PROTOCOLS),
            Some(_) => Action::Reject(http::Error::BadUpgrade("Can \"Upgrade\" only to \"WebSocket\".")),
            None => respond(404, "not found\n".into()),
        };
    }
    match (req.method, path) {
        ("GET", "/healthz") => {
            if shard.node.draining.load(std::sync::atomic::Ordering::Relaxed) {
                respond(503, "draining\n".into())
            } else {
                // Kafka being away degrades the node but does not stop it serving its
                // own clients: still 200, with the state in the body.
                match &shard.node.kafka {
                    Some(kafka) if !kafka.healthy() => respond(200, "ok\nkafka: down\n".into()),
                    Some(_) => respond(200, "ok\nkafka: up\n".into()),
                    None => respond(200, "ok\n".into()),
                }
            }
        }
        ("GET", "/metrics") => {
            let mut body = String::with_capacity(8 * 1024);
            metrics::render(&config.node_id, &shard.node.stats, &mut body);
            if let Some(kafka) = &shard.node.kafka {
                kafka.render_prometheus(&mut body);
            }
            let headers = vec![("Content-Type", "text/plain; version=0.0.4".to_string())];
            Action::Respond {
                status: 200,
                headers,
                body,
                keep_alive: req.keep_alive,
            }
        }
        (method, _) => match sockjs::route(&config.base_path, path) {
            Some(sockjs::Route::Info) => info(method, req),
            Some(sockjs::Route::Greeting) if method == "GET" => Action::Respond {
                status: 200,
                headers: vec![("Content-Type", "text/plain; charset=UTF-8".to_string())],
                body: "Welcome to SockJS!\n".into(),
                keep_alive: req.keep_alive,
            },
            Some(_) => respond(405, "method not allowed\n".into()),
            None => respond(404, "not found\n".into()),
        },
    }
}

/// SockJS `/info`, asked cross-origin with credentials: echo the Origin, never `*`.
fn info(method: &str, req: &http::Request<'_>) -> Action {
    let mut headers = vec![(
        "Cache-Control",
        "no-store, no-cache, no-transform, must-revalidate, max-age=0".to_string(),
    )];
    match req.origin {
        Some(origin) if origin != "null" => {
            headers.push(("Access-Control-Allow-Origin", origin.to_string()));
            headers.push(("Access-Control-Allow-Credentials", "true".to_string()));
            headers.push(("Vary", "Origin".to_string()));
        }
        _ => headers.push(("Access-Control-Allow-Origin", "*".to_string())),
    }
    match method {
        "OPTIONS" => {
            headers.push(("Access-Control-Allow-Methods", "OPTIONS, GET".to_string()));
            headers.push(("Access-Control-Max-Age", "31536000".to_string()));
            if let Some(asked) = req.cors_request_headers {
                headers.push(("Access-Control-Allow-Headers", asked.to_string()));
            }
            Action::Respond {
                status: 204,
                headers,
                body: String::new(),
                keep_alive: req.keep_alive,
            }
        }
        "GET" => {
            let mut body = BytesMut::new();
            sockjs::encode_info(entropy(), &mut body);
            headers.push(("Content-Type", "application/json;charset=UTF-8".to_string()));
            Action::Respond {
                status: 200,
                headers,
                body: String::from_utf8_lossy(&body).into_owned(),
                keep_alive: req.keep_alive,
            }
        }
        _ => Action::Respond {
            status: 405,
            headers,
            body: String::new(),
            keep_alive: req.keep_alive,
        },
    }
}

fn entropy() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    nanos.wrapping_mul(2_654_435_761)
}

/// Drains `out` to the socket until it closes; then shuts the socket down, which also
/// ends the reader.
async fn write_loop(shard: Rc<Shard>, stream: Stream, out: Rc<Outbound>, endpoint: Endpoint) {
    let mut spare = Vec::new();
    loop {
        let closing = out.take(&mut spare).await;
        if closing == Closing::Overflow {
            shard.stats.error(ErrorKind::SlowConsumer);
            spare.clear();
            farewell_slow(endpoint, &mut spare);
            if let Ok(s) = stream.try_borrow() {
                let _ = s.set_write_timeout(Some(Duration::from_secs(1)));
            }
        }
        let queued = spare.len();
        ShardStats::shift(&shard.stats.queued_bytes, queued as i64);
        let written = if closing == Closing::Open {
            // A subscriber whose socket stays full overflows its queue meanwhile: drop it
            // then, without waiting for the socket.
            let overflow = async {
                out.overflowed().await;
                shard.stats.error(ErrorKind::SlowConsumer);
                Err(io::ErrorKind::TimedOut.into())
            };
            futures_lite::future::or(write_all(&stream, &spare), overflow).await
        } else {
            write_all(&stream, &spare).await
        };
        ShardStats::shift(&shard.stats.queued_bytes, -(queued as i64));
        if let Err(e) = written {
            if e.kind() != io::ErrorKind::TimedOut {
                shard.stats.error(ErrorKind::Io);
            }
            out.close(Closing::Graceful);
            break;
        }
        ShardStats::add(&shard.stats.bytes_out, queued as u64);
        out.mark_sent(Instant::now());
        out.trim(&mut spare);
        if closing != Closing::Open && out.is_empty() {
            break;
        }
    }
    shutdown(&stream);
}

/// The last words to a subscriber dropped for falling behind.
fn farewell_slow(endpoint: Endpoint, queue: &mut Vec<u8>) {
    const REASON: &str = "slow consumer: outbound queue full";
    if let Endpoint::Stomp(framing) = endpoint {
        let mut frame = BytesMut::new();
        crate::proto::stomp::encode_frame(
            crate::proto::stomp::Command::Error,
            &[("message", REASON.as_bytes())],
            b"",
            crate::proto::stomp::Version::V1_2,
            &mut frame,
        );
        let mut wire = BytesMut::new();
        crate::fanout::wrap(framing, &frame, &mut wire);
        queue.extend_from_slice(&wire);
    }
    push_close(queue, 1008, REASON);
}

/// How a read ended.
#[derive(Debug, PartialEq, Eq)]
enum Read {
    Bytes,
    Deadline,
    Closed,
}

/// Reads what the socket has into `buf` (through the shard's scratch buffer), or
/// returns at `deadline`.
async fn read_until(shard: &Shard, stream: &Stream, buf: &mut BytesMut, deadline: Option<Instant>) -> Read {
    let read = async {
        let n = poll_fn(|cx| {
            let mut scratch = shard.read_scratch.borrow_mut();
            let mut socket = stream.borrow_mut();
            match Pin::new(&mut *socket).poll_read(cx, &mut scratch[..]) {
                std::task::Poll::Ready(Ok(n)) => {
                    buf.extend_from_slice(&scratch[..n]);
                    std::task::Poll::Ready(Ok(n))
                }
                other => other,
            }
        })
        .await;
        match n {
            Ok(0) => Read::Closed,
            Ok(n) => {
                ShardStats::add(&shard.stats.bytes_in, n as u64);
                Read::Bytes
            }
            Err(_) => Read::Closed,
        }
    };
    match deadline {
        None => read.await,
        Some(at) => {
            let timer = async {
                glommio::timer::sleep(at.saturating_duration_since(Instant::now())).await;
                Read::Deadline
            };
            futures_lite::future::or(read, timer).await
        }
    }
}

/// Writes all of `bytes` to `stream`.
///
/// # Errors
/// A socket error, or `WriteZero` when the peer stops taking bytes.
pub async fn write_all(stream: &Stream, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        let n = poll_fn(|cx| Pin::new(&mut *stream.borrow_mut()).poll_write(cx, bytes)).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        bytes = &bytes[n..];
    }
    Ok(())
}

/// Shuts both directions down, waking a reader blocked on this socket.
fn shutdown(stream: &Stream) {
    if let Ok(socket) = stream.try_borrow() {
        // SAFETY: the descriptor is owned by `socket`, open for as long as it lives;
        // shutdown(2) neither closes nor invalidates it.
        unsafe {
            libc::shutdown(socket.as_raw_fd(), libc::SHUT_RDWR);
        }
    }
}

/// Gives back an empty read buffer's storage, so idle connections hold none.
fn release_if_empty(buf: &mut BytesMut) {
    if buf.is_empty() && buf.capacity() > 0 {
        *buf = BytesMut::new();
    }
}

/// Subprotocols offered for raw STOMP, best first.
const STOMP_PROTOCOLS: &[&str] = &["v12.stomp", "v11.stomp", "v10.stomp"];
/// Largest HTTP request head.
const MAX_HEAD_BYTES: usize = 8 * 1024;
/// How long a client may take to send a request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
