//! Serves one request of SockJS's HTTP transports on the shard that owns its session
//! (`sessions.rs` says how it got there). `xhr_send` feeds the session and answers 204
//! (500 with SockJS's message for a bad body, 404 for an unknown session). A receiving
//! request attaches to the session (creating it; 503 when the node is full) and writes
//! what its queue holds: `xhr` answers once, with whatever is queued or as soon as
//! something is (a heart-beat at the latest); `xhr_streaming` and `eventsource` write a
//! prelude, then every burst as it comes, until `--sockjs-response-limit-bytes` were sent
//! (the client then opens the next one) or the session ends. A second receiving request
//! gets `c[2010,...]`. Streaming responses carry no length and end by closing the
//! connection; the others keep it alive when the client asked to.

use std::io;
use std::rc::Rc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use proto::sockjs::http::{self as sockjs_http, Transport};
use proto::{http, server, Framing};

use super::conn::{read_until, write_all, Read, Stream};
use super::sessions::{HttpSession, Refused};
use super::Shard;
use crate::metrics::{ErrorKind, ShardStats};
use crate::outbound::Closing;
use crate::session;

/// A request for an HTTP transport, as `endpoints.rs` routed it.
#[derive(Debug)]
pub(super) struct Request {
    /// Which transport.
    pub transport: Transport,
    /// The session id from the path.
    pub session: String,
    /// The shard that owns the session.
    pub owner: usize,
    /// CORS and cache headers, as `/info` sends them.
    pub headers: Vec<(&'static str, String)>,
    /// Whether the client keeps the connection alive.
    pub keep_alive: bool,
}

/// Serves `req` with its `body`. Returns whether the connection stays open for another
/// request; `buf` keeps any bytes read after this request.
pub(super) async fn serve(shard: &Rc<Shard>, stream: &Stream, buf: &mut BytesMut, req: Request, body: Bytes) -> bool {
    ShardStats::add(&shard.stats.http_requests[req.transport.index()], 1);
    if req.transport == Transport::XhrSend {
        return send(shard, stream, &req, &body).await;
    }
    let hs = match shard.http_session(&req.session) {
        Some(hs) => hs,
        None => match shard.open_http_session(&req.session) {
            Ok(hs) => hs,
            Err(refused) => {
                let body = match refused {
                    Refused::Full => {
                        shard.stats.error(ErrorKind::SockJsSessionsFull);
                        "too many SockJS sessions on this node, try again later\n"
                    }
                    Refused::Draining => "this node is shutting down\n",
                };
                return respond(shard, stream, &req, 503, &[("Retry-After", "5")], body.as_bytes()).await;
            }
        },
    };
    if !hs.attach() {
        // As sockjs-node: the newcomer is told and closed, the first one stays.
        shard.stats.error(ErrorKind::SockJsSecondReceiver);
        let mut frames = BytesMut::new();
        let (code, reason) = sockjs_http::ANOTHER_CONNECTION;
        server::encode_close(Framing::SockJsHttp, code, reason, &mut frames);
        return answer_once(shard, stream, &req, &frames).await;
    }
    let keep = receive(shard, stream, buf, &req, &hs).await;
    hs.detach();
    keep
}

/// `xhr_send`: the body's frames go to the session.
async fn send(shard: &Shard, stream: &Stream, req: &Request, body: &[u8]) -> bool {
    let Some(hs) = shard.http_session(&req.session).filter(|hs| !hs.ended()) else {
        shard.stats.error(ErrorKind::SockJsUnknownSession);
        return respond(shard, stream, req, 404, &[], b"Session not found\n").await;
    };
    match hs.send(shard, body).await {
        Ok(()) => respond(shard, stream, req, 204, &[], b"").await,
        Err(e) => {
            shard.stats.error(ErrorKind::SockJs);
            respond(shard, stream, req, 500, &[], e.message().as_bytes()).await
        }
    }
}

/// Writes the session's frames to a receiving request until its response ends. Returns
/// whether the connection stays open.
async fn receive(shard: &Rc<Shard>, stream: &Stream, buf: &mut BytesMut, req: &Request, hs: &HttpSession) -> bool {
    let transport = req.transport;
    let mut wire = BytesMut::new();
    if transport.streams() {
        head(req, None, &mut wire);
        sockjs_http::encode_prelude(transport, &mut wire);
        if !write(shard, stream, &wire).await {
            return false;
        }
    }
    let limit = shard.node.config.sockjs_response_limit_bytes;
    let mut sent = 0;
    let mut spare = Vec::new();
    // The client may go away while nothing is being written: watch for the end of its
    // side (a pipelined request's bytes are kept in `buf`).
    let max_head = shard.node.config.max_head_bytes;
    let peer_gone =
        async { while read_until(shard, stream, buf, None).await == Read::Bytes && buf.len() <= max_head {} };
    futures_lite::pin!(peer_gone);
    loop {
        let taken = futures_lite::future::or(async { Some(hs.out.take(&mut spare).await) }, async {
            peer_gone.as_mut().await;
            None
        });
        let Some(closing) = taken.await else {
            return false;
        };
        if closing == Closing::Overflow {
            // Dropped as a slow consumer, as a WebSocket subscriber would be.
            spare.clear();
            let mut output = shard.output.borrow_mut();
            session::farewell_slow(Framing::SockJsHttp, &mut output);
            spare.extend_from_slice(&output.wire);
            output.wire.clear();
        } else if spare.is_empty() {
            // Ended with nothing left: what sockjs-node says to a late request.
            if sent > 0 {
                break;
            }
            let mut frames = BytesMut::new();
            let (code, reason) = sockjs_http::GO_AWAY;
            server::encode_close(Framing::SockJsHttp, code, reason, &mut frames);
            spare.extend_from_slice(&frames);
        }
        let queued = spare.len();
        ShardStats::shift(&shard.stats.queued_bytes, queued as i64);
        shard.stats.outbound_queue.observe(queued as u64);
        wire.clear();
        match transport {
            Transport::EventSource => sockjs_http::encode_events(&spare, &mut wire),
            Transport::Xhr => {
                head(req, Some(spare.len()), &mut wire);
                wire.extend_from_slice(&spare);
            }
            _ => {}
        }
        let bytes: &[u8] = if transport == Transport::XhrStreaming {
            &spare
        } else {
            &wire
        };
        let written = if closing == Closing::Open {
            // A client that stops reading overflows the queue meanwhile: drop it then.
            let overflow = async {
                hs.out.overflowed().await;
                Err(io::ErrorKind::TimedOut.into())
            };
            futures_lite::future::or(write_all(stream, bytes), overflow).await
        } else {
            write_all(stream, bytes).await
        };
        ShardStats::shift(&shard.stats.queued_bytes, -(queued as i64));
        if let Err(e) = written {
            if e.kind() != io::ErrorKind::TimedOut {
                shard.stats.error(ErrorKind::Io);
            }
            return false;
        }
        ShardStats::add(&shard.stats.bytes_out, bytes.len() as u64);
        hs.out.mark_sent(Instant::now());
        hs.out.trim(&mut spare);
        sent += queued;
        if transport == Transport::Xhr {
            return req.keep_alive;
        }
        if closing != Closing::Open || sent >= limit {
            break;
        }
    }
    false
}

/// A receiving request's whole answer when it gets only `frames` (a close).
async fn answer_once(shard: &Shard, stream: &Stream, req: &Request, frames: &[u8]) -> bool {
    let mut wire = BytesMut::new();
    match req.transport {
        Transport::Xhr => {
            head(req, Some(frames.len()), &mut wire);
            wire.extend_from_slice(frames);
        }
        transport => {
            head(req, None, &mut wire);
            sockjs_http::encode_prelude(transport, &mut wire);
            if transport == Transport::EventSource {
                sockjs_http::encode_events(frames, &mut wire);
            } else {
                wire.extend_from_slice(frames);
            }
        }
    }
    write(shard, stream, &wire).await && req.keep_alive && req.transport == Transport::Xhr
}

/// Writes a complete response with `status`, the request's CORS headers plus `extra`.
async fn respond(
    shard: &Shard,
    stream: &Stream,
    req: &Request,
    status: u16,
    extra: &[(&str, &str)],
    body: &[u8],
) -> bool {
    let mut headers: Vec<(&str, &str)> = req.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    headers.push(("Content-Type", Transport::XhrSend.content_type()));
    headers.extend_from_slice(extra);
    let mut wire = BytesMut::new();
    http::write_response(status, &headers, body, req.keep_alive, &mut wire);
    write(shard, stream, &wire).await && req.keep_alive
}

/// Appends the head of a 200 answer to a receiving request: with a `length` for `xhr`;
/// without one, ending when the connection closes, for the streaming transports.
fn head(req: &Request, length: Option<usize>, out: &mut BytesMut) {
    let mut headers: Vec<(&str, &str)> = req.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    headers.push(("Content-Type", req.transport.content_type()));
    http::write_head(200, &headers, length, req.keep_alive && length.is_some(), out);
}

/// Writes `bytes`, counting them; false when the socket failed.
async fn write(shard: &Shard, stream: &Stream, bytes: &[u8]) -> bool {
    let ok = write_all(stream, bytes).await.is_ok();
    if ok {
        ShardStats::add(&shard.stats.bytes_out, bytes.len() as u64);
    }
    ok
}
