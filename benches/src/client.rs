//! A bare STOMP-over-WebSocket client for the load drivers (`e2e`, `idle`, the
//! flamegraph driver): it opens TCP connections (optionally from a chosen 127.0.0.x
//! source address), upgrades them on the raw STOMP path, and speaks STOMP through the
//! engine's own codecs in the client role (masked frames). `FrameCounter` counts the
//! server's WebSocket frames in a byte stream without decoding payloads, so that the
//! client stays much cheaper than the engine it measures.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::os::fd::FromRawFd;
use std::time::Duration;

use bytes::BytesMut;
use engine::proto::{stomp, ws};

use crate::fixtures::MASK;

/// Opens a TCP connection to `target`, from `source` when given (to spread ephemeral
/// ports over several loopback addresses).
///
/// # Errors
/// Socket, bind or connect failures.
pub fn connect(target: SocketAddrV4, source: Option<Ipv4Addr>) -> io::Result<TcpStream> {
    let Some(source) = source else {
        return TcpStream::connect(SocketAddr::V4(target));
    };
    // SAFETY: plain socket syscalls on a descriptor this function owns until it is handed
    // to `TcpStream`, which then closes it; the sockaddr structs live across each call.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let stream = TcpStream::from_raw_fd(fd);
        let local = sockaddr(SocketAddrV4::new(source, 0));
        let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        if libc::bind(fd, (&raw const local).cast(), len) != 0 {
            return Err(io::Error::last_os_error());
        }
        let remote = sockaddr(target);
        if libc::connect(fd, (&raw const remote).cast(), len) != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(stream)
    }
}

fn sockaddr(addr: SocketAddrV4) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: addr.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*addr.ip()).to_be(),
        },
        sin_zero: [0; 8],
    }
}

/// Appends the HTTP upgrade request for raw STOMP at `path` (offering `v12.stomp`).
pub fn upgrade_request(path: &str, out: &mut BytesMut) {
    out.extend_from_slice(
        format!(
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Protocol: v12.stomp\r\n\r\n"
        )
        .as_bytes(),
    );
}

/// Appends one STOMP frame in a masked client WebSocket text frame.
pub fn push_stomp(command: stomp::Command, headers: &[(&str, &[u8])], body: &[u8], out: &mut BytesMut) {
    let mut frame = BytesMut::with_capacity(64 + body.len());
    stomp::encode_frame(command, headers, body, stomp::Version::V1_2, &mut frame);
    ws::encode_frame(ws::OpCode::Text, &frame, Some(MASK), out);
}

/// Appends `CONNECT` (STOMP 1.2, no heart-beats, so that only `MESSAGE`s arrive later).
pub fn push_connect(out: &mut BytesMut) {
    push_stomp(
        stomp::Command::Connect,
        &[("accept-version", b"1.2"), ("heart-beat", b"0,0"), ("host", b"bench")],
        b"",
        out,
    );
}

/// Appends `SUBSCRIBE` to `destination` as `id`, asking for a receipt.
pub fn push_subscribe(destination: &str, id: &str, out: &mut BytesMut) {
    let headers: [(&str, &[u8]); 3] = [
        ("id", id.as_bytes()),
        ("destination", destination.as_bytes()),
        ("receipt", b"sub"),
    ];
    push_stomp(stomp::Command::Subscribe, &headers, b"", out);
}

/// A connection that has upgraded and sent `CONNECT` plus `subscriptions` (destination,
/// id) `SUBSCRIBE`s, and has read the engine's `CONNECTED` and one `RECEIPT` per
/// subscription. The stream is left blocking with no read timeout.
///
/// # Errors
/// I/O errors, a refused upgrade, an `ERROR` frame, or 10 s without an answer.
pub fn open(
    target: SocketAddrV4,
    source: Option<Ipv4Addr>,
    path: &str,
    subscriptions: &[(&str, &str)],
) -> io::Result<TcpStream> {
    let mut stream = connect(target, source)?;
    stream.set_nodelay(true)?;
    let mut hello = BytesMut::with_capacity(512);
    upgrade_request(path, &mut hello);
    push_connect(&mut hello);
    for (destination, id) in subscriptions {
        push_subscribe(destination, id, &mut hello);
    }
    stream.write_all(&hello)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut buf = Vec::with_capacity(4096);
    let head_end = read_until(&mut stream, &mut buf, |b| find(b, b"\r\n\r\n"))? + 4;
    if !buf.starts_with(b"HTTP/1.1 101") {
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        return Err(io::Error::other(format!("upgrade refused: {head}")));
    }
    buf.drain(..head_end);
    let mut connected = false;
    let mut receipts = 0;
    while !connected || receipts < subscriptions.len() {
        let (consumed, payload) = match next_frame(&buf) {
            Some((_, payload, consumed)) => (consumed, payload),
            None => {
                read_more(&mut stream, &mut buf)?;
                continue;
            }
        };
        let frame = &buf[payload];
        if frame.starts_with(b"CONNECTED") {
            connected = true;
        } else if frame.starts_with(b"RECEIPT") {
            receipts += 1;
        } else if frame.starts_with(b"ERROR") {
            return Err(io::Error::other(format!(
                "engine answered {}",
                String::from_utf8_lossy(frame)
            )));
        }
        buf.drain(..consumed);
    }
    stream.set_read_timeout(None)?;
    Ok(stream)
}

/// Reads into `buf` until `found` finds something in it; returns what it found.
fn read_until(stream: &mut TcpStream, buf: &mut Vec<u8>, found: impl Fn(&[u8]) -> Option<usize>) -> io::Result<usize> {
    loop {
        if let Some(at) = found(buf) {
            return Ok(at);
        }
        read_more(stream, buf)?;
    }
}

fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<()> {
    let mut chunk = [0u8; 4096];
    let n = stream.read(&mut chunk)?;
    if n == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "engine closed the connection",
        ));
    }
    buf.extend_from_slice(&chunk[..n]);
    Ok(())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The first complete unmasked server frame in `buf`: (opcode bits, payload range,
/// total frame length).
pub fn next_frame(buf: &[u8]) -> Option<(u8, std::ops::Range<usize>, usize)> {
    let (&b0, &b1) = (buf.first()?, buf.get(1)?);
    let (len, header) = match b1 & 0x7f {
        126 => (u16::from_be_bytes([*buf.get(2)?, *buf.get(3)?]) as usize, 4),
        127 => (u64::from_be_bytes(buf.get(2..10)?.try_into().ok()?) as usize, 10),
        n => (n as usize, 2),
    };
    let end = header + len;
    (buf.len() >= end).then_some((b0 & 0x0f, header..end, end))
}

/// Counts the text frames in the server's byte stream, fed in arbitrary pieces. Only
/// frame headers are looked at; payloads are skipped by length.
#[derive(Debug, Default, Clone)]
pub struct FrameCounter {
    skip: usize,
    header: [u8; 14],
    header_len: usize,
}

impl FrameCounter {
    /// Feeds the next bytes of the stream; returns how many text frames began in them.
    pub fn feed(&mut self, mut data: &[u8]) -> u64 {
        let mut frames = 0;
        loop {
            if self.skip > 0 {
                let n = self.skip.min(data.len());
                self.skip -= n;
                data = &data[n..];
            }
            let Some((&byte, rest)) = data.split_first() else {
                return frames;
            };
            data = rest;
            self.header[self.header_len] = byte;
            self.header_len += 1;
            let Some(need) = self.header_need() else {
                continue;
            };
            if self.header_len < need {
                continue;
            }
            let h = &self.header;
            let mask = if h[1] & 0x80 != 0 { 4 } else { 0 };
            self.skip = match need - mask {
                4 => u16::from_be_bytes([h[2], h[3]]) as usize,
                10 => u64::from_be_bytes([h[2], h[3], h[4], h[5], h[6], h[7], h[8], h[9]]) as usize,
                _ => (h[1] & 0x7f) as usize,
            };
            if h[0] & 0x0f == 0x1 {
                frames += 1;
            }
            self.header_len = 0;
        }
    }

    /// The full header length once the first two bytes are in.
    fn header_need(&self) -> Option<usize> {
        if self.header_len < 2 {
            return None;
        }
        let mask = if self.header[1] & 0x80 != 0 { 4 } else { 0 };
        Some(
            mask + match self.header[1] & 0x7f {
                126 => 4,
                127 => 10,
                _ => 2,
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server_frames(sizes: &[usize]) -> Vec<u8> {
        let mut out = Vec::new();
        for &n in sizes {
            out.push(0x81);
            match n {
                0..=125 => out.push(n as u8),
                126..=0xffff => {
                    out.push(126);
                    out.extend_from_slice(&(n as u16).to_be_bytes());
                }
                _ => {
                    out.push(127);
                    out.extend_from_slice(&(n as u64).to_be_bytes());
                }
            }
            out.extend(std::iter::repeat_n(b'M', n));
        }
        // A close frame, which is not counted.
        out.extend_from_slice(&[0x88, 0x02, 0x03, 0xe8]);
        out
    }

    #[test]
    fn counts_frames_in_every_split() {
        let stream = server_frames(&[0, 5, 125, 126, 300, 70_000]);
        for at in 0..stream.len() {
            let mut counter = FrameCounter::default();
            let n = counter.feed(&stream[..at]) + counter.feed(&stream[at..]);
            assert_eq!(n, 6, "split at {at}");
        }
        let mut counter = FrameCounter::default();
        assert_eq!(stream.chunks(1).map(|c| counter.feed(c)).sum::<u64>(), 6);
    }

    #[test]
    fn finds_whole_frames() {
        let stream = server_frames(&[3, 200]);
        let (op, payload, end) = next_frame(&stream).expect("complete");
        assert_eq!((op, payload, end), (1, 2..5, 5));
        let (_, payload, _) = next_frame(&stream[end..]).expect("complete");
        assert_eq!(payload.len(), 200);
        assert_eq!(next_frame(&stream[end..end + 100]), None);
    }
}
