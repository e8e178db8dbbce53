//! One simulated user: with `http.rs` (its SockJS HTTP-transport twin), the only file that
//! touches a socket. It waits for its ramp slot,
//! connects (from its source address), upgrades, CONNECTs and SUBSCRIBEs with a receipt,
//! then reads until the run ends, handing `MESSAGE` bodies to the shard; a writer task
//! drains what the publisher clock queues. With `--reconnect`, a connection that drops
//! waits out its backoff, handshakes and subscribes again (with `--resume`, from the last
//! `x-offset` it saw) and carries on in the same subscriber slot; the schedule, positions
//! and receipts are `reconnect.rs`'s. Every way a connection can fail is counted by kind,
//! never unwrapped.

use std::future::{poll_fn, Future};
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use futures_lite::AsyncRead;
use proto::client::{self as wire, Codec, Event};
use proto::stomp::{Command, Version};
use proto::Framing;
use smallvec::SmallVec;

use super::{http, Link, Shard};
use crate::cli::Transport;
use crate::net::{self, write_all, Stream};
use crate::reconnect::{self, Backoff, Positions, Recovery};
use crate::scenario::ConnPlan;
use crate::stats::now_ns;
use crate::target::Target;

/// Runs connection `index` of the scenario until the run ends, or until the connection
/// fails and does not (or may not) come back.
pub async fn run(shard: Rc<Shard>, index: u32) {
    if shard.scenario.transport != Transport::Websocket {
        return http::run(shard, index).await;
    }
    let Some(plan) = shard.scenario.conns.get(index as usize) else {
        return;
    };
    let mut user = User::new(&shard, plan);
    let Some(session) = start(&shard, plan, handshake(&shard, plan, &mut user, None)).await else {
        return;
    };
    let link = Rc::new(Link::new(session.codec));
    let slot = shard.ready(session.key, plan.channel, plan.publisher, &link);
    let (mut stream, mut buf) = (session.stream, session.buf);
    loop {
        let writer = glommio::spawn_local(write_loop(shard.clone(), stream.clone(), link.clone()));
        let ended = read_loop(&shard, &stream, &link, &mut buf, slot, &mut user).await;
        let dropped_ns = now_ns();
        link.kill();
        // A writer stuck on a peer that stopped reading is cancelled rather than waited for.
        let _ = with_deadline(Instant::now() + WRITER_WAIT, writer).await;
        if shard.control.stop.load(Relaxed) {
            return;
        }
        shard.error(&ended);
        shard.disconnected(slot, plan.publisher, link.take_unflushed());
        // Close the old socket now, not when the next one replaces it.
        drop(stream);
        let Some(session) = come_back(&shard, plan, slot, &mut user).await else {
            return;
        };
        link.revive(session.codec);
        user.recover_before_ns = session.recover_before_ns;
        let reconnect_us = now_ns().saturating_sub(dropped_ns) / 1000;
        shard.reconnected(slot, reconnect_us, session.resumed, session.recovery);
        (stream, buf) = (session.stream, session.buf);
    }
}

/// Waits for the ramp slot of `plan`, then runs `handshake` under a handshake permit and
/// the connect timeout; counts the connection as finished, and as failed (with the kind
/// of error) when the handshake did not get through.
pub(super) async fn start<T>(
    shard: &Shard,
    plan: &ConnPlan,
    handshake: impl Future<Output = Result<T, String>>,
) -> Option<T> {
    let start_at = shard.control.start_ns.load(Relaxed) + plan.start_after.as_nanos() as u64;
    sleep_until_ns(start_at).await;
    let ready = {
        let Ok(_permit) = shard.permits.acquire_permit(1).await else {
            return None;
        };
        if shard.control.publish_start_ns.load(Relaxed) != 0 || shard.control.stop.load(Relaxed) {
            Err("not_started".to_string())
        } else {
            let deadline = Instant::now() + shard.scenario.connect_timeout;
            match with_deadline(deadline, handshake).await {
                Some(result) => result,
                None => Err("timeout".to_string()),
            }
        }
    };
    shard.control.finished.fetch_add(1, Relaxed);
    match ready {
        Ok(ready) => Some(ready),
        Err(kind) => {
            shard.error(&kind);
            shard.control.failed.fetch_add(1, Relaxed);
            None
        }
    }
}

/// What one simulated user keeps across its connections.
struct User {
    /// The last `x-offset` of its subscription (tracked with `--resume` only).
    positions: Positions,
    /// Waits between reconnect attempts (`None`: no `--reconnect`).
    backoff: Option<Backoff>,
    /// When the current subscription was resubscribed with `x-since` (0 otherwise):
    /// messages meant to be sent before then that arrive now came by replay.
    recover_before_ns: u64,
    /// Connections opened so far (varies the SockJS session and the masks).
    generation: u64,
    /// Whether its read stall (test aid) is behind it, or never was planned.
    stalled: bool,
}

impl User {
    fn new(shard: &Shard, plan: &ConnPlan) -> Self {
        let mut positions = Positions::new();
        if shard.scenario.resume {
            positions.track(SUB_ID);
        }
        let seed = u64::from(plan.index).wrapping_mul(0x9E37_79B9) ^ shard.scenario.run_id;
        User {
            positions,
            backoff: shard.scenario.reconnect.map(|policy| Backoff::new(policy, seed)),
            recover_before_ns: 0,
            generation: 0,
            stalled: !plan.stalls,
        }
    }
}

/// Connected, upgraded, CONNECTED and subscribed.
struct Session {
    stream: Stream,
    codec: Codec,
    /// Bytes read past the receipt.
    buf: BytesMut,
    /// The server (node, shard) key of a first connection.
    key: usize,
    /// When a resuming SUBSCRIBE went out (0 for a plain one), CLOCK_REALTIME ns: what was
    /// meant to be sent before it and arrives on this connection came by replay.
    recover_before_ns: u64,
    /// Whether the SUBSCRIBE carried `x-since`.
    resumed: bool,
    /// What its receipt said about the range.
    recovery: Recovery,
}

/// Waits out the backoff and tries again until a connection is subscribed; `None` when
/// the user does not reconnect or the run is stopping.
async fn come_back(shard: &Rc<Shard>, plan: &ConnPlan, slot: usize, user: &mut User) -> Option<Session> {
    loop {
        let wait = user.backoff.as_mut()?.next_delay();
        glommio::timer::sleep(wait).await;
        if shard.control.stop.load(Relaxed) {
            return None;
        }
        let attempt = {
            let Ok(_permit) = shard.permits.acquire_permit(1).await else {
                return None;
            };
            let deadline = Instant::now() + shard.scenario.connect_timeout;
            with_deadline(deadline, handshake(shard, plan, user, Some(slot))).await
        };
        match attempt {
            Some(Ok(session)) => {
                if let Some(b) = user.backoff.as_mut() {
                    b.reset();
                }
                return Some(session);
            }
            Some(Err(kind)) => shard.reconnect_failed(&kind),
            None => shard.reconnect_failed("timeout"),
        }
    }
}

/// Connects, upgrades, CONNECTs and SUBSCRIBEs. `again`: the subscriber slot of a user
/// coming back, whose messages before the receipt (a replay) count, and whose SUBSCRIBE
/// resumes from its last position with `--resume`.
async fn handshake(
    shard: &Rc<Shard>,
    plan: &ConnPlan,
    user: &mut User,
    again: Option<usize>,
) -> Result<Session, String> {
    let scenario = &shard.scenario;
    let index = u64::from(plan.index);
    let target = scenario
        .targets
        .get(plan.target)
        .ok_or_else(|| "no_target".to_string())?;
    let started_ns = now_ns();
    user.generation += 1;
    let conn_id = index | ((user.generation - 1) << 32);
    let stream = net::connect(target.addr, plan.source_ip, scenario.tls_for(target)).map_err(|e| io_kind(&e))?;
    let mut codec = Codec::new(target.framing, MAX_FRAME_BYTES, conn_id ^ scenario.run_id);
    let mut rng = wire::Rng::new(index.wrapping_mul(31) ^ started_ns);
    let key = wire::new_key(&mut rng);
    let mut out = BytesMut::new();
    wire::upgrade_request(
        &target.host,
        &target.upgrade_path(conn_id),
        &key,
        target.framing,
        &mut out,
    );
    write_all(&stream, &out).await.map_err(|e| io_kind(&e))?;

    let mut buf = BytesMut::new();
    loop {
        match wire::upgrade_response(&buf, &key) {
            Ok(Some(n)) => {
                buf.advance(n);
                break;
            }
            Ok(None) => read_some(shard, &stream, &mut buf).await.map_err(|e| io_kind(&e))?,
            Err(e) => return Err(e.kind()),
        }
    }
    if target.framing == Framing::SockJs {
        match next_event(shard, &stream, &mut codec, &mut buf).await? {
            Event::Open => {}
            _ => return Err("sockjs_no_open".into()),
        }
    }
    out.clear();
    let channel = scenario
        .channel_names
        .get(plan.channel as usize)
        .ok_or_else(|| "no_channel".to_string())?;
    let destination = format!("/sub/chat/{channel}");
    let bearer = scenario.auth.bearer(plan.index);
    codec.encode(
        Command::Connect,
        &connect_headers(target, bearer.as_deref()),
        b"",
        &mut out,
    );
    let resumed = {
        let since = match again {
            Some(_) if scenario.resume => user.positions.since(SUB_ID),
            _ => None,
        };
        let subscribe = reconnect::subscribe_headers(SUB_ID, destination.as_bytes(), SUB_ID, since);
        codec.encode(Command::Subscribe, &subscribe, b"", &mut out);
        since.is_some()
    };
    // Only a resuming SUBSCRIBE can bring back older messages: after a plain one, those
    // still in flight are simply delivered.
    let recover_before_ns = if resumed { now_ns() } else { 0 };
    write_all(&stream, &out).await.map_err(|e| io_kind(&e))?;

    let mut key_index = None;
    loop {
        let frame = match next_event(shard, &stream, &mut codec, &mut buf).await? {
            Event::Frame(frame) => frame,
            Event::Closed(code) => return Err(close_kind(code)),
            Event::Ping(_) | Event::HeartBeat | Event::Open => continue,
        };
        match (frame.command, key_index) {
            (Command::Connected, None) => {
                let version = match frame.header(b"version") {
                    Some(b"1.0") => Version::V1_0,
                    Some(b"1.1") => Version::V1_1,
                    _ => Version::V1_2,
                };
                codec.set_version(version);
                let (node, server_shard) = wire::server_identity(frame.header(b"server"));
                key_index = Some(match again {
                    None => {
                        let connect_us = now_ns().saturating_sub(started_ns) / 1000;
                        shard.connected(node, server_shard, connect_us)
                    }
                    Some(slot) => {
                        shard.landed(slot, node, server_shard);
                        0
                    }
                });
            }
            (Command::Message, Some(_)) => {
                // Before the receipt: a replay when resuming; before the first receipt
                // nothing of this run is published yet.
                if let Some(slot) = again {
                    if scenario.resume {
                        user.positions.observe(&frame);
                    }
                    shard.on_messages(slot, std::iter::once(&frame.body[..]), now_ns(), recover_before_ns);
                }
            }
            (Command::Receipt, Some(key)) => {
                if again.is_none() && shard.control.publish_start_ns.load(Relaxed) != 0 {
                    return Err("late".into());
                }
                return Ok(Session {
                    stream,
                    codec,
                    buf,
                    key,
                    recover_before_ns,
                    resumed,
                    recovery: Recovery::of(&frame),
                });
            }
            (Command::Error, _) => return Err("stomp_error".into()),
            _ => return Err("stomp_unexpected".into()),
        }
    }
}

/// The headers of a `CONNECT` to `target`, with `Authorization` when there is a token.
pub(super) fn connect_headers<'a>(
    target: &'a Target,
    bearer: Option<&'a str>,
) -> SmallVec<[(&'static str, &'a [u8]); 4]> {
    let mut headers: SmallVec<[(&'static str, &'a [u8]); 4]> = SmallVec::new();
    headers.push(("accept-version", b"1.2,1.1,1.0"));
    headers.push(("host", target.host.as_bytes()));
    headers.push(("heart-beat", b"0,0"));
    if let Some(bearer) = bearer {
        headers.push(("Authorization", bearer.as_bytes()));
    }
    headers
}

/// Reads and handles frames until the connection ends; returns why it ended.
async fn read_loop(
    shard: &Shard,
    stream: &Stream,
    link: &Link,
    buf: &mut BytesMut,
    slot: usize,
    user: &mut User,
) -> String {
    let track_positions = shard.scenario.resume;
    let mut bodies: SmallVec<[bytes::Bytes; 16]> = SmallVec::new();
    loop {
        if !user.stalled {
            let at = shard
                .control
                .measure_start_ns
                .load(Relaxed)
                .saturating_add(shard.scenario.stall_at.as_nanos() as u64);
            if at != u64::MAX && now_ns() >= at {
                user.stalled = true;
                glommio::timer::sleep(shard.scenario.stall).await;
            }
        }
        let received_ns = now_ns();
        let recover_before = user.recover_before_ns;
        let mut ended = None;
        {
            let mut codec = link.codec.borrow_mut();
            loop {
                match codec.decode(buf) {
                    Ok(Some(Event::Frame(frame))) => match frame.command {
                        Command::Message => {
                            if track_positions {
                                user.positions.observe(&frame);
                            }
                            bodies.push(frame.body);
                        }
                        Command::Error => shard.error("stomp_error"),
                        Command::Receipt => {
                            let seq = frame.header(b"receipt-id").and_then(super::publish::confirmed_seq);
                            if let Some(seq) = seq {
                                shard.on_confirmed(slot, seq);
                            }
                        }
                        _ => {}
                    },
                    Ok(Some(Event::Ping(payload))) => {
                        codec.pong(&payload, &mut link.out.borrow_mut());
                        link.wake();
                    }
                    Ok(Some(Event::Closed(code))) => {
                        ended = Some(close_kind(code));
                        break;
                    }
                    Ok(Some(Event::HeartBeat | Event::Open)) => {}
                    Ok(None) => break,
                    Err(e) => {
                        ended = Some(e.kind());
                        break;
                    }
                }
                if bodies.len() == bodies.inline_size() {
                    shard.on_messages(slot, bodies.iter().map(|b| &b[..]), received_ns, recover_before);
                    bodies.clear();
                }
            }
        }
        if !bodies.is_empty() {
            shard.on_messages(slot, bodies.iter().map(|b| &b[..]), received_ns, recover_before);
            bodies.clear();
        }
        if let Some(kind) = ended {
            return kind;
        }
        release_if_empty(buf);
        if let Err(e) = read_some(shard, stream, buf).await {
            return io_kind(&e);
        }
    }
}

/// Drains the link's queue to the socket until the link dies.
async fn write_loop(shard: Rc<Shard>, stream: Stream, link: Rc<Link>) {
    let mut spare = BytesMut::new();
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
        std::mem::swap(&mut spare, &mut *link.out.borrow_mut());
        let writing = link.take_queued();
        if let Err(e) = write_all(&stream, &spare).await {
            link.note_failed(writing);
            shard.error(&io_kind(&e));
            link.kill();
            return;
        }
        spare.clear();
    }
}

/// The next event, reading as needed.
async fn next_event(shard: &Shard, stream: &Stream, codec: &mut Codec, buf: &mut BytesMut) -> Result<Event, String> {
    loop {
        match codec.decode(buf) {
            Ok(Some(event)) => return Ok(event),
            Ok(None) => read_some(shard, stream, buf).await.map_err(|e| io_kind(&e))?,
            Err(e) => return Err(e.kind()),
        }
    }
}

/// Reads what the socket has into `buf` through the shard's scratch buffer. End of
/// stream is an error (`UnexpectedEof`): the server closed first.
pub(super) async fn read_some(shard: &Shard, stream: &Stream, buf: &mut BytesMut) -> io::Result<()> {
    if let Some(every) = shard.scenario.poll.filter(|_| !stream.borrow().is_tls()) {
        return polled_read(shard, stream, buf, every).await;
    }
    let n = poll_fn(|cx| {
        let mut scratch = shard.read_scratch.borrow_mut();
        let mut socket = stream.borrow_mut();
        match Pin::new(&mut *socket).poll_read(cx, &mut scratch[..]) {
            Poll::Ready(Ok(n)) => {
                buf.extend_from_slice(&scratch[..n]);
                Poll::Ready(Ok(n))
            }
            other => other,
        }
    })
    .await?;
    if n == 0 {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(())
}

/// The error kind of a socket error.
/// `read_some` for `--poll-us`: tries the socket, and when it is empty sleeps `every`
/// (a timer of the shard's own) before trying again.
async fn polled_read(shard: &Shard, stream: &Stream, buf: &mut BytesMut, every: Duration) -> io::Result<()> {
    loop {
        let read = {
            let mut scratch = shard.read_scratch.borrow_mut();
            let read = stream.borrow_mut().read_now(&mut scratch[..]);
            if let Some(Ok(n)) = read {
                buf.extend_from_slice(&scratch[..n]);
            }
            read
        };
        match read {
            Some(Ok(0)) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Some(Ok(_)) => return Ok(()),
            Some(Err(e)) => return Err(e),
            None => glommio::timer::sleep(every).await,
        }
    }
}

pub(super) fn io_kind(e: &io::Error) -> String {
    let kind = match e.raw_os_error() {
        Some(libc::ECONNREFUSED) => "refused",
        Some(libc::ECONNRESET) | Some(libc::EPIPE) => "reset",
        Some(libc::ETIMEDOUT) => "timeout",
        Some(libc::ENETUNREACH) | Some(libc::EHOSTUNREACH) => "unreachable",
        Some(libc::EADDRNOTAVAIL) => "no_local_port",
        Some(libc::EMFILE) | Some(libc::ENFILE) => "too_many_open_files",
        _ => match e.kind() {
            io::ErrorKind::UnexpectedEof => "eof",
            io::ErrorKind::TimedOut => "timeout",
            _ => "io",
        },
    };
    kind.to_string()
}

/// The error kind of a close (WebSocket code or SockJS `c[...]`).
pub(super) fn close_kind(code: Option<u16>) -> String {
    match code {
        Some(code) => format!("close_{code}"),
        None => "close".to_string(),
    }
}

/// Runs `fut` until `deadline`; `None` when the deadline came first.
async fn with_deadline<T>(deadline: Instant, fut: impl Future<Output = T>) -> Option<T> {
    let timer = async {
        glommio::timer::sleep(deadline.saturating_duration_since(Instant::now())).await;
        None
    };
    futures_lite::future::or(async { Some(fut.await) }, timer).await
}

/// Sleeps until CLOCK_REALTIME reaches `at_ns`.
pub(super) async fn sleep_until_ns(at_ns: u64) {
    let now = now_ns();
    if at_ns > now {
        glommio::timer::sleep(Duration::from_nanos(at_ns - now)).await;
    }
}

/// Gives back an empty read buffer's storage when it grew large, so idle connections
/// stay small while busy ones keep reusing theirs.
pub(super) fn release_if_empty(buf: &mut BytesMut) {
    if buf.is_empty() && buf.capacity() > KEEP_READ_BYTES {
        *buf = BytesMut::new();
    }
}

/// The one subscription of each connection: its id, and the id of its receipt.
const SUB_ID: &[u8] = b"sub-0";
/// How long a dropped connection waits for its writer to notice.
const WRITER_WAIT: Duration = Duration::from_secs(1);
/// Read buffer capacity a connection keeps between reads.
const KEEP_READ_BYTES: usize = 16 * 1024;
/// Largest frame accepted from the server.
pub(super) const MAX_FRAME_BYTES: usize = 4 << 20;
