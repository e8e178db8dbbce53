//! Owns a client's socket: with `handshake.rs` and `transport.rs`, the only files
//! that read from or write to a socket. A connection starts as HTTP (`handshake.rs` serves
//! its requests); after a WebSocket upgrade, a reader loop feeds the bytes to its sans-IO
//! `Session` and carries out the effects it asks for through the router (or echoes, on the
//! conformance endpoint), and the shard's writer (`writer.rs`) drains its `Outbound`
//! queue, one `send()` per burst. Requests of SockJS's HTTP transports go to
//! `transport.rs` on the shard that owns their session; a connection whose request
//! belongs to another shard is handed over to it (`sessions.rs`). Reads go through the
//! shard's scratch buffer so an idle connection holds no read buffer.

use std::future::{poll_fn, Future};
use std::io;
use std::os::fd::OwnedFd;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{ready, Poll};
use std::time::{Instant, SystemTime};

use bytes::BytesMut;
use proto::{http, server, ws, Framing};

use super::handshake::{serve_http, Admission, Next};
use super::poller::Socket;
use super::writer::Writers;
use super::{Handoff, Shard};
use crate::ids::ConnId;
use crate::metrics::{ErrorKind, ShardStats};
use crate::outbound::{Closing, Outbound};
use crate::router::{PublishError, Published};
use crate::session::{self, Action, Env, Outcome, Session, Step};

/// A socket shared by a connection's reader and writer tasks.
pub(super) type Stream = Rc<Socket>;

/// What an upgraded connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Endpoint {
    Stomp(Framing),
    Echo,
}

/// Serves one accepted connection to its end; a node already holding
/// `--max-connections` answers 503 and closes.
pub(super) fn serve(shard: Rc<Shard>, stream: Socket) -> impl Future<Output = ()> {
    let admission = Admission::enter(&shard.node);
    serve_from(shard, Rc::new(stream), BytesMut::new(), admission)
}

/// Serves a connection handed over by another shard (a `dup` of its socket, made for
/// this shard alone), whose unread bytes are `buf`.
pub(super) fn serve_handed(shard: Rc<Shard>, handoff: Handoff) -> Option<impl Future<Output = ()>> {
    let stream = match Socket::new(&shard.poller, handoff.fd) {
        Ok(stream) => stream,
        Err(e) => {
            tracing::warn!(shard = %shard.id, error = %e, "could not register a handed-over connection");
            shard.stats.error(ErrorKind::Io);
            return None;
        }
    };
    Some(serve_from(shard, Rc::new(stream), handoff.buf, Some(handoff.admission)))
}

/// The connection's whole life, as one future.
///
/// Not an `async fn`, here and in the loops below that an idle connection waits in: an
/// `async fn` keeps its arguments twice in its future (as passed, and moved into its
/// body), an `async move` block once. Each connection's future is the largest part of
/// its memory while idle (flamegraphs/README.md).
#[allow(clippy::manual_async_fn)]
fn serve_from(
    shard: Rc<Shard>,
    stream: Stream,
    mut buf: BytesMut,
    mut admission: Option<Admission>,
) -> impl Future<Output = ()> {
    async move {
        // Borrowed, not moved out: a copy would take room of its own in the future.
        let Some(admitted) = admission.as_mut() else {
            shard.stats.error(ErrorKind::NodeFull);
            let mut reply = BytesMut::new();
            http::write_response(503, &[("Retry-After", "5")], b"node full\n", false, &mut reply);
            let _ = write_all(&stream, &reply).await;
            stream.shutdown();
            return;
        };
        // Boxed so that its state is freed once the connection is upgraded.
        let (endpoint, out, token) = match Box::pin(serve_http(&shard, &stream, &mut buf, admitted)).await {
            // Bound inside this arm, the upgrade's key takes no room in the connection's future.
            Next::Upgrade {
                endpoint,
                key,
                protocol,
            } => {
                let (out, token) = shard
                    .writers
                    .open(&stream, endpoint, shard.node.config.max_outbound_bytes);
                // The shard's writer runs once this task waits: the upgrade's answer leaves
                // with the session's first words, one send, not two, when the client sent
                // its CONNECT right behind the request.
                let mut output = shard.output.borrow_mut();
                http::write_upgrade(&key, protocol, &mut output.wire);
                out.push_reply(&output.wire);
                output.wire.clear();
                (endpoint, out, token)
            }
            Next::Close => {
                stream.shutdown();
                return;
            }
            Next::Handoff(owner) => {
                if let Some(admission) = admission.take() {
                    hand_off(&shard, owner, stream, buf, admission).await;
                }
                return;
            }
        };
        let conn = shard.next_conn_id();
        ShardStats::shift(&shard.stats.connections, 1);
        match endpoint {
            Endpoint::Echo => echo_loop(&shard, &stream, &out, &mut buf).await,
            Endpoint::Stomp(framing) => {
                shard.reading.set(shard.reading.get() + 1);
                let mut session = Session::new(conn, framing, &shard.settings);
                shard.step(&out, |env, o| session.open(env, o));
                stomp_loop(&shard, &stream, &mut session, &out, conn, &mut buf).await;
                let subs = session.take_subscriptions();
                ShardStats::shift(&shard.stats.subscriptions, -(subs.len() as i64));
                for sub in subs {
                    shard.router.unsubscribe(sub.destination(), sub.id(), conn);
                }
                shard.reading.set(shard.reading.get() - 1);
            }
        }
        Writers::finish(&shard, token).await;
        ShardStats::shift(&shard.stats.connections, -1);
    }
}

impl Shard {
    /// Runs one call of a session against the shard's output buffer, then queues what
    /// it wrote for the wire (and asks the writer to close when the session ended).
    pub(super) fn step(&self, out: &Outbound, call: impl FnOnce(&Env<'_>, &mut session::Output) -> Step) -> Step {
        self.step_as(out, None, call)
    }

    /// [`Shard::step`]; with `stored`, what it writes (a `SEND`'s receipt) is held back
    /// until message `stored` is in Kafka. When the session ends, its last words go after
    /// the receipts held back.
    fn step_as(
        &self,
        out: &Outbound,
        stored: Option<u64>,
        call: impl FnOnce(&Env<'_>, &mut session::Output) -> Step,
    ) -> Step {
        let now = Instant::now();
        let env = Env {
            settings: &self.settings,
            stats: &self.stats,
            now,
            wall: SystemTime::now(),
        };
        let mut output = self.output.borrow_mut();
        let step = call(&env, &mut output);
        if !output.wire.is_empty() {
            match (stored, &step) {
                (Some(n), _) => out.hold_until(n, &output.wire),
                (None, Step::Close) => out.push_last(&output.wire),
                (None, _) => out.push_reply(&output.wire),
            }
            out.mark_sent(now);
            output.wire.clear();
        }
        if matches!(step, Step::Close) {
            out.close(Closing::Graceful);
        }
        step
    }
}

#[allow(clippy::manual_async_fn)] // see `serve_from`
fn stomp_loop<'a>(
    shard: &'a Shard,
    stream: &'a Stream,
    session: &'a mut Session,
    out: &'a Rc<Outbound>,
    conn: ConnId,
    buf: &'a mut BytesMut,
) -> impl Future<Output = ()> + 'a {
    async move {
        loop {
            // Boxed: the frame handling below is deep and only alive while bytes are being
            // handled, so idle connections should not carry its space.
            if !buf.is_empty() && Box::pin(drive(shard, session, out, conn, buf)).await == Flow::Close {
                return;
            }
            release_if_empty(buf);
            session.release_idle();
            let deadline = session.next_deadline(&shard.settings, out.last_sent());
            match read_until(shard, stream, buf, deadline).await {
                Read::Bytes => {}
                Read::Deadline => {
                    if let Step::Close = shard.step(out, |env, o| session.on_tick(env, out.last_sent(), o)) {
                        return;
                    }
                }
                Read::Closed => return,
            }
        }
    }
}

/// Whether a connection goes on reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Flow {
    Continue,
    Close,
}

/// Feeds the bytes read to the session and carries out the effects it asks for, until
/// it needs more bytes or ends. (`sessions.rs` drives HTTP-transport sessions with it too.)
pub(super) async fn drive(
    shard: &Shard,
    session: &mut Session,
    out: &Rc<Outbound>,
    conn: ConnId,
    buf: &mut BytesMut,
) -> Flow {
    loop {
        if out.closing() != Closing::Open {
            return Flow::Close;
        }
        let decoded = Instant::now();
        let effect = match shard.step(out, |env, o| session.on_bytes(env, buf, o)) {
            Step::Continue => return Flow::Continue,
            Step::Close => return Flow::Close,
            Step::Effect(effect) => effect,
        };
        let outcome = match effect.action {
            Action::Subscribe {
                destination,
                key,
                resume: None,
            } => {
                shard.router.subscribe(destination, key, conn, out.clone());
                Outcome::Done
            }
            Action::Subscribe {
                destination,
                key,
                resume: Some(resume),
            } => Outcome::Recovered(
                shard
                    .router
                    .subscribe_from(destination, key, conn, out.clone(), resume)
                    .await,
            ),
            Action::Unsubscribe(sub) => {
                shard.router.unsubscribe(sub.destination(), sub.id(), conn);
                Outcome::Done
            }
            Action::Publish(message) => {
                let confirm = effect.receipt.is_some();
                match shard.router.publish(message, decoded, confirm).await {
                    Ok(Published::Done) => Outcome::Done,
                    Ok(Published::Storing(n)) => {
                        // The receipt is held back first, then leaves once Kafka has the
                        // message (`Router::serve_acks`).
                        let receipt = effect.receipt.as_deref();
                        let step =
                            shard.step_as(out, Some(n), |env, o| session.complete(env, receipt, Outcome::Done, o));
                        shard.router.await_stored(n, out.clone());
                        if let Step::Close = step {
                            return Flow::Close;
                        }
                        continue;
                    }
                    Err(PublishError::KafkaFull) => {
                        shard.stats.error(ErrorKind::KafkaBackpressure);
                        Outcome::Rejected("cluster bus is full: message not accepted, send it again later")
                    }
                }
            }
        };
        let receipt = effect.receipt.as_deref();
        if let Step::Close = shard.step(out, |env, o| session.complete(env, receipt, outcome, o)) {
            return Flow::Close;
        }
    }
}

async fn echo_loop(shard: &Shard, stream: &Stream, out: &Outbound, buf: &mut BytesMut) {
    let limits = ws::Limits {
        max_frame_bytes: shard.node.config.max_frame_bytes,
        max_message_bytes: shard.node.config.max_frame_bytes,
    };
    let mut decoder = ws::Decoder::new(ws::Role::Server, limits);
    let mut reply = BytesMut::new();
    loop {
        loop {
            reply.clear();
            let done = match decoder.decode(buf) {
                Ok(Some(ws::Message::Text(data))) => {
                    ws::encode_frame(ws::OpCode::Text, &data, None, &mut reply);
                    false
                }
                Ok(Some(ws::Message::Binary(data))) => {
                    ws::encode_frame(ws::OpCode::Binary, &data, None, &mut reply);
                    false
                }
                Ok(Some(ws::Message::Ping(data))) => {
                    server::encode_pong(&data, &mut reply);
                    false
                }
                Ok(Some(ws::Message::Pong(_))) => false,
                Ok(Some(ws::Message::Close(code))) => {
                    ws::encode_close(code.map_or(1000, |(c, _)| c), "", None, &mut reply);
                    true
                }
                Ok(None) => break,
                Err(e) => {
                    shard.stats.error(match e {
                        ws::Error::Protocol(_) => ErrorKind::WsProtocol,
                        ws::Error::InvalidUtf8 => ErrorKind::WsUtf8,
                        ws::Error::TooBig => ErrorKind::WsTooBig,
                    });
                    ws::encode_close(e.close_code(), "", None, &mut reply);
                    true
                }
            };
            out.push_reply(&reply);
            if done {
                return;
            }
        }
        if read_until(shard, stream, buf, None).await != Read::Bytes {
            return;
        }
    }
}

/// Hands the connection to shard `owner`: a `dup` of its socket and its unread bytes go
/// over the hand-off channel; this shard's descriptor closes (and leaves its poller) when
/// `stream` drops. The socket is not shut down: it lives on in the owner.
async fn hand_off(shard: &Shard, owner: usize, stream: Stream, buf: BytesMut, admission: Admission) {
    let fd: OwnedFd = match stream.dup() {
        Ok(fd) => fd,
        Err(_) => {
            shard.stats.error(ErrorKind::Io);
            stream.shutdown();
            return;
        }
    };
    drop(stream);
    if !shard.hand_off(owner, Handoff { fd, buf, admission }).await {
        shard.stats.error(ErrorKind::Io);
    }
}

/// How a read ended.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Read {
    Bytes,
    Deadline,
    Closed,
}

/// Reads what the socket has into `buf` (through the shard's scratch buffer), or
/// returns at `deadline`.
pub(super) fn read_until<'a>(
    shard: &'a Shard,
    stream: &'a Stream,
    buf: &'a mut BytesMut,
    deadline: Option<Instant>,
) -> impl Future<Output = Read> + 'a {
    // One `poll_fn` over the read and the timer, not two futures raced: an idle
    // connection waits here, and this is the smallest state the wait can have.
    let mut timer = deadline.map(|at| glommio::timer::Timer::new(at.saturating_duration_since(Instant::now())));
    poll_fn(move |cx| {
        let read = {
            let mut scratch = shard.read_scratch.borrow_mut();
            match stream.poll_read(cx, &mut scratch[..]) {
                Poll::Ready(Ok(n)) => {
                    buf.extend_from_slice(&scratch[..n]);
                    Poll::Ready(Ok(n))
                }
                other => other,
            }
        };
        match read {
            Poll::Ready(Ok(0) | Err(_)) => Poll::Ready(Read::Closed),
            Poll::Ready(Ok(n)) => {
                ShardStats::add(&shard.stats.bytes_in, n as u64);
                Poll::Ready(Read::Bytes)
            }
            Poll::Pending => match timer.as_mut().map(|timer| Pin::new(timer).poll(cx)) {
                Some(Poll::Ready(_)) => Poll::Ready(Read::Deadline),
                _ => Poll::Pending,
            },
        }
    })
}

/// Writes all of `bytes` to `stream`.
///
/// # Errors
/// A socket error, or `WriteZero` when the peer stops taking bytes.
pub(super) fn write_all<'a>(stream: &'a Stream, mut bytes: &'a [u8]) -> impl Future<Output = io::Result<()>> + 'a {
    // A `poll_fn`, not an `async fn`: it is part of every connection's writer future.
    poll_fn(move |cx| {
        while !bytes.is_empty() {
            match ready!(stream.poll_write(cx, bytes)) {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Ok(n) => bytes = &bytes[n..],
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        Poll::Ready(Ok(()))
    })
}

/// Gives back an empty read buffer's storage, so idle connections hold none.
///
/// Not `capacity() > 0`: a buffer read to the very end of its storage (the first read of
/// a connection allocates exactly what arrived, and the handshake consumes all of it) has
/// no capacity left but still holds that storage.
fn release_if_empty(buf: &mut BytesMut) {
    if buf.is_empty() {
        *buf = BytesMut::new();
    }
}

#[cfg(test)]
mod tests {
    use bytes::{Buf, BytesMut};

    use super::{release_if_empty, serve};

    /// The most a connection's future may take: every connection holds one, idle or not.
    /// It was 568 bytes when this bound was set, and 672 while it awaited its last
    /// writes inline.
    const CONN_FUTURE_MAX: usize = 600;

    #[test]
    fn a_connections_future_stays_small() {
        fn future_of<A, B, F>(_: fn(A, B) -> F) -> usize {
            std::mem::size_of::<F>()
        }
        let size = future_of(serve);
        assert!(
            size <= CONN_FUTURE_MAX,
            "a connection's future is {size} bytes (at most {CONN_FUTURE_MAX}): a state it \
             awaits inline (a connection's last writes, say) may have grown; box it"
        );
    }

    #[test]
    fn a_buffer_read_to_the_end_of_its_storage_gives_it_back() {
        // A connection's first read allocates what arrived, and the handshake takes it all.
        let mut buf = BytesMut::new();
        buf.extend_from_slice(b"GET /ws HTTP/1.1\r\nHost: a\r\n\r\n");
        buf.advance(buf.len());
        assert_eq!(buf.capacity(), 0, "nothing left to read into, yet the storage is held");
        let held = buf.as_ptr();
        release_if_empty(&mut buf);
        assert_ne!(buf.as_ptr(), held, "the storage was given back");
        // A fresh buffer, left as it is.
        release_if_empty(&mut buf);
        assert_eq!(buf.capacity(), 0);
    }
}
