//! One simulated user: with `http.rs` (its SockJS HTTP-transport twin), the only file that
//! touches a socket. It waits for its ramp slot, connects (from its source address),
//! upgrades, CONNECTs and SUBSCRIBEs with a receipt, then reads until the run ends,
//! handing `MESSAGE` bodies to the shard; a writer task drains what the publisher clock
//! queues. Every way a connection can fail is counted by kind, never unwrapped.

use std::cell::RefCell;
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
use crate::scenario::ConnPlan;
use crate::stats::now_ns;

/// Runs connection `index` of the scenario until the run ends or the connection fails.
pub async fn run(shard: Rc<Shard>, index: u32) {
    if shard.scenario.transport != Transport::Websocket {
        return http::run(shard, index).await;
    }
    let Some(plan) = shard.scenario.conns.get(index as usize) else {
        return;
    };
    let Some((stream, link, mut buf, slot)) = start(&shard, plan, handshake(&shard, index)).await else {
        return;
    };
    let writer = glommio::spawn_local(write_loop(shard.clone(), stream.clone(), link.clone()));
    let end = read_loop(&shard, &stream, &link, &mut buf, slot, plan.stalls).await;
    if let Err(kind) = end {
        shard.error(&kind);
    }
    link.kill();
    writer.await;
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

/// Connected, upgraded, CONNECTED and subscribed: the socket, its link, unread bytes and
/// the subscriber slot.
type Ready = (Stream, Rc<Link>, BytesMut, usize);

async fn handshake(shard: &Rc<Shard>, index: u32) -> Result<Ready, String> {
    let scenario = &shard.scenario;
    let plan = &scenario.conns[index as usize];
    let target = &scenario.targets[plan.target];
    let started_ns = now_ns();
    let socket = net::open_socket(target.addr, plan.source_ip).map_err(|e| io_kind(&e))?;
    let stream: Stream = Rc::new(RefCell::new(socket));
    let mut codec = Codec::new(target.framing, MAX_FRAME_BYTES, u64::from(index) ^ scenario.run_id);
    let mut rng = wire::Rng::new(u64::from(index).wrapping_mul(31) ^ started_ns);
    let key = wire::new_key(&mut rng);
    let mut out = BytesMut::new();
    wire::upgrade_request(
        &target.host,
        &target.upgrade_path(u64::from(index)),
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
    let channel = &scenario.channel_names[plan.channel as usize];
    let destination = format!("/sub/chat/{channel}");
    let connect: [(&str, &[u8]); 3] = [
        ("accept-version", b"1.2,1.1,1.0"),
        ("host", target.host.as_bytes()),
        ("heart-beat", b"0,0"),
    ];
    codec.encode(Command::Connect, &connect, b"", &mut out);
    let subscribe: [(&str, &[u8]); 3] = [
        ("id", b"sub-0"),
        ("destination", destination.as_bytes()),
        ("receipt", b"sub-0"),
    ];
    codec.encode(Command::Subscribe, &subscribe, b"", &mut out);
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
                let connect_us = now_ns().saturating_sub(started_ns) / 1000;
                key_index = Some(shard.connected(node, server_shard, connect_us));
            }
            (Command::Receipt, Some(key)) => {
                if shard.control.publish_start_ns.load(Relaxed) != 0 {
                    return Err("late".into());
                }
                let link = Rc::new(Link::new(codec));
                let slot = shard.ready(key, plan.channel, plan.publisher, &link);
                return Ok((stream, link, buf, slot));
            }
            (Command::Error, _) => return Err("stomp_error".into()),
            _ => return Err("stomp_unexpected".into()),
        }
    }
}

/// Reads and handles frames until the connection ends; `Err` names why it ended early.
async fn read_loop(
    shard: &Shard,
    stream: &Stream,
    link: &Link,
    buf: &mut BytesMut,
    slot: usize,
    stalls: bool,
) -> Result<(), String> {
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
                match codec.decode(buf) {
                    Ok(Some(Event::Frame(frame))) => match frame.command {
                        Command::Message => bodies.push(frame.body),
                        Command::Error => shard.error("stomp_error"),
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
                    shard.on_messages(slot, bodies.iter().map(|b| &b[..]), received_ns);
                    bodies.clear();
                }
            }
        }
        if !bodies.is_empty() {
            shard.on_messages(slot, bodies.iter().map(|b| &b[..]), received_ns);
            bodies.clear();
        }
        if let Some(kind) = ended {
            return Err(kind);
        }
        release_if_empty(buf);
        read_some(shard, stream, buf).await.map_err(|e| io_kind(&e))?;
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
        if let Err(e) = write_all(&stream, &spare).await {
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

/// Read buffer capacity a connection keeps between reads.
const KEEP_READ_BYTES: usize = 16 * 1024;
/// Largest frame accepted from the server.
pub(super) const MAX_FRAME_BYTES: usize = 4 << 20;
