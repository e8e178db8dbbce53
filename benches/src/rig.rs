//! The single-node fan-out scenario over real sockets: N raw STOMP subscribers of one
//! channel and one publisher, all driven by one thread with epoll. `burst` publishes K
//! messages and waits until every subscriber has read K more `MESSAGE` frames (delivered
//! messages per second); `paced` publishes on a fixed schedule and records each
//! delivery's latency from its intended send time (so stalls are not hidden). Used by
//! the `e2e` criterion bench and the `fanout_load` driver behind the flamegraphs.

use std::io::{self, Read, Write};
use std::net::{SocketAddrV4, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use hdrhistogram::Histogram;
use proto::ws;

use crate::client::{self, FrameCounter};
use crate::fixtures::{self, MASK};

/// Where subscribers listen.
pub const DESTINATION: &str = "/sub/chat/bench";

/// How long a burst or a paced run may wait for its deliveries.
const STALL: Duration = Duration::from_secs(10);

/// Subscribers and a publisher connected to one engine.
#[derive(Debug)]
pub struct Rig {
    subs: Vec<TcpStream>,
    counters: Vec<FrameCounter>,
    received: Vec<u64>,
    publisher: TcpStream,
    epoll: OwnedFd,
    sent: u64,
    one: Vec<u8>,
    burst: (usize, Vec<u8>),
    buf: Vec<u8>,
}

impl Rig {
    /// Connects `subscribers` subscribers of `DESTINATION` (raw STOMP 1.2 at `/ws`, id
    /// `sub-0`) and one publisher whose `SEND /pub/chat` bodies are `body_bytes` long.
    ///
    /// # Errors
    /// Any connection or setup failure.
    pub fn connect(target: SocketAddrV4, subscribers: usize, body_bytes: usize) -> io::Result<Self> {
        // SAFETY: epoll_create1 returns a new descriptor that `OwnedFd` then owns.
        let epoll = unsafe {
            let fd = libc::epoll_create1(libc::EPOLL_CLOEXEC);
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            OwnedFd::from_raw_fd(fd)
        };
        let mut subs = Vec::with_capacity(subscribers);
        for index in 0..subscribers {
            let stream = client::open(target, None, "/ws", &[(DESTINATION, "sub-0")])?;
            stream.set_nonblocking(true)?;
            let mut event = libc::epoll_event {
                events: libc::EPOLLIN as u32,
                u64: index as u64,
            };
            // SAFETY: both descriptors are open; `event` lives across the call.
            if unsafe { libc::epoll_ctl(epoll.as_raw_fd(), libc::EPOLL_CTL_ADD, stream.as_raw_fd(), &mut event) } != 0 {
                return Err(io::Error::last_os_error());
            }
            subs.push(stream);
        }
        let publisher = client::open(target, None, "/ws", &[])?;
        publisher.set_nonblocking(true)?;
        let mut one = BytesMut::new();
        let mut frame = BytesMut::new();
        fixtures::send_frame(&fixtures::chat_body(body_bytes), &mut frame);
        ws::encode_frame(ws::OpCode::Text, &frame, Some(MASK), &mut one);
        Ok(Self {
            counters: vec![FrameCounter::default(); subs.len()],
            received: vec![0; subs.len()],
            subs,
            publisher,
            epoll,
            sent: 0,
            one: one.to_vec(),
            burst: (0, Vec::new()),
            buf: vec![0; 256 * 1024],
        })
    }

    /// Messages published so far.
    pub fn sent(&self) -> u64 {
        self.sent
    }

    /// Publishes `k` messages at once and waits until every subscriber has them all.
    ///
    /// # Errors
    /// I/O errors, or deliveries missing after 10 s.
    pub fn burst(&mut self, k: usize) -> io::Result<()> {
        if self.burst.0 != k {
            self.burst = (k, self.one.repeat(k));
        }
        let burst = std::mem::take(&mut self.burst.1);
        let written = self.publish(&burst);
        self.burst.1 = burst;
        written?;
        self.sent += k as u64;
        self.wait_all(|_, _, _, _| {})
    }

    /// Publishes `rate_per_s` messages a second for `duration` and returns the latency
    /// of every delivery, in nanoseconds from the message's intended send time.
    ///
    /// # Errors
    /// I/O errors, or deliveries missing 10 s after the last send.
    pub fn paced(&mut self, rate_per_s: u64, duration: Duration) -> io::Result<Histogram<u64>> {
        let mut latency = Histogram::<u64>::new_with_bounds(1_000, 60_000_000_000, 3).map_err(io::Error::other)?;
        let interval = Duration::from_secs(1) / rate_per_s.max(1) as u32;
        let total = (duration.as_secs_f64() * rate_per_s as f64) as u64;
        let base = self.sent;
        let mut intended = Vec::with_capacity(total as usize);
        let start = Instant::now();
        let mut next = start;
        let one = std::mem::take(&mut self.one);
        let mut record = |_: usize, from: u64, to: u64, at: Instant, intended: &[Instant]| {
            for m in from..to {
                if let Some(t) = intended.get((m - base) as usize) {
                    let _ = latency.record(at.saturating_duration_since(*t).as_nanos() as u64);
                }
            }
        };
        let result = loop {
            if self.sent - base < total && Instant::now() >= next {
                if let Err(e) = self.publish(&one) {
                    break Err(e);
                }
                intended.push(next);
                self.sent += 1;
                next += interval;
            }
            if self.sent - base == total {
                break self.wait_all(|i, from, to, at| record(i, from, to, at, &intended));
            }
            if let Err(e) = self.poll(0, &mut |i, from, to, at| record(i, from, to, at, &intended)) {
                break Err(e);
            }
        };
        self.one = one;
        result.map(|()| latency)
    }

    /// Writes `bytes` to the publisher, reading deliveries whenever its socket is full.
    fn publish(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            match self.publisher.write(bytes) {
                Ok(0) => return Err(io::Error::new(io::ErrorKind::WriteZero, "publisher closed")),
                Ok(n) => bytes = &bytes[n..],
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.poll(1, &mut |_, _, _, _| {})?,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Reads until every subscriber has received every message sent so far.
    fn wait_all(&mut self, mut on_frames: impl FnMut(usize, u64, u64, Instant)) -> io::Result<()> {
        let deadline = Instant::now() + STALL;
        while self.received.iter().any(|&r| r < self.sent) {
            if Instant::now() > deadline {
                let missing: u64 = self.received.iter().map(|&r| self.sent.saturating_sub(r)).sum();
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("{missing} deliveries missing after {STALL:?}"),
                ));
            }
            self.poll(100, &mut on_frames)?;
        }
        Ok(())
    }

    /// One epoll round: reads every ready subscriber dry and counts its frames;
    /// `on_frames(subscriber, before, after, when)` sees each count change.
    fn poll(&mut self, timeout_ms: i32, on_frames: &mut dyn FnMut(usize, u64, u64, Instant)) -> io::Result<()> {
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; 128];
        // SAFETY: `events` is writable for its whole length, which is what we pass.
        let ready = unsafe {
            libc::epoll_wait(
                self.epoll.as_raw_fd(),
                events.as_mut_ptr(),
                events.len() as i32,
                timeout_ms,
            )
        };
        if ready < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::Interrupted {
                Ok(())
            } else {
                Err(e)
            };
        }
        for event in &events[..ready as usize] {
            let index = event.u64 as usize;
            loop {
                let n = match self.subs[index].read(&mut self.buf) {
                    Ok(0) => {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "engine closed a subscriber",
                        ))
                    }
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e),
                };
                let at = Instant::now();
                let frames = self.counters[index].feed(&self.buf[..n]);
                if frames > 0 {
                    let before = self.received[index];
                    self.received[index] += frames;
                    on_frames(index, before, before + frames, at);
                }
                if n < self.buf.len() {
                    break;
                }
            }
        }
        Ok(())
    }
}

/// p50, p99, p99.9 and max of `h` (nanoseconds) as a line in microseconds.
pub fn latency_line(h: &Histogram<u64>) -> String {
    let us = |q: f64| h.value_at_quantile(q) as f64 / 1_000.0;
    format!(
        "deliveries={} p50={:.0}us p99={:.0}us p99.9={:.0}us max={:.0}us",
        h.len(),
        us(0.5),
        us(0.99),
        us(0.999),
        h.max() as f64 / 1_000.0
    )
}
