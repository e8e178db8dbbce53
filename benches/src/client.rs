//! The bench drivers' client (`e2e`, `idle`, the flamegraph driver): opens blocking TCP
//! connections (optionally from a chosen 127.0.0.x source address, through
//! `loadgen::net`), upgrades them on the raw STOMP path and speaks STOMP through
//! `proto::client`, the client stack the load generator uses too. `FrameCounter` counts
//! the server's WebSocket frames in a byte stream without decoding payloads, so that the
//! client stays much cheaper than the engine it measures.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use proto::client::{self, Codec, Event, Rng};
use proto::stomp::Command;
use proto::Framing;

/// A connection that has upgraded and sent `CONNECT` (STOMP 1.2, no heart-beats, so that
/// only `MESSAGE`s arrive later) plus `subscriptions` (destination, id) `SUBSCRIBE`s, and
/// has read the engine's `CONNECTED` and one `RECEIPT` per subscription. The stream is
/// left blocking with no read timeout.
///
/// # Errors
/// I/O errors, a refused upgrade, an `ERROR` frame, or 10 s without an answer.
pub fn open(
    target: SocketAddrV4,
    source: Option<Ipv4Addr>,
    path: &str,
    subscriptions: &[(&str, &str)],
) -> io::Result<TcpStream> {
    let fd = loadgen::net::connect_from(SocketAddr::V4(target), source.map(IpAddr::V4), true)?;
    let mut stream = TcpStream::from(fd);
    let mut rng = Rng::new(u64::from(target.port()) ^ u64::from(std::process::id()));
    let key = client::new_key(&mut rng);
    let mut codec = Codec::new(Framing::Raw, 1 << 20, rng.next_u64());
    let mut hello = BytesMut::with_capacity(512);
    client::upgrade_request("127.0.0.1", path, &key, Framing::Raw, &mut hello);
    let connect: [(&str, &[u8]); 2] = [("accept-version", b"1.2"), ("heart-beat", b"0,0")];
    codec.encode(Command::Connect, &connect, b"", &mut hello);
    for (destination, id) in subscriptions {
        let headers: [(&str, &[u8]); 3] = [
            ("id", id.as_bytes()),
            ("destination", destination.as_bytes()),
            ("receipt", b"sub"),
        ];
        codec.encode(Command::Subscribe, &headers, b"", &mut hello);
    }
    stream.write_all(&hello)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut buf = BytesMut::with_capacity(4096);
    loop {
        match client::upgrade_response(&buf, &key) {
            Ok(Some(n)) => {
                buf.advance(n);
                break;
            }
            Ok(None) => read_more(&mut stream, &mut buf)?,
            Err(e) => return Err(io::Error::other(format!("upgrade refused: {e}"))),
        }
    }
    let (mut connected, mut receipts) = (false, 0);
    while !connected || receipts < subscriptions.len() {
        let frame = match codec.decode(&mut buf) {
            Ok(Some(Event::Frame(frame))) => frame,
            Ok(Some(_)) => continue,
            Ok(None) => {
                read_more(&mut stream, &mut buf)?;
                continue;
            }
            Err(e) => return Err(io::Error::other(format!("engine spoke badly: {e}"))),
        };
        match frame.command {
            Command::Connected => connected = true,
            Command::Receipt => receipts += 1,
            _ => return Err(io::Error::other(format!("engine answered {frame:?}"))),
        }
    }
    stream.set_read_timeout(None)?;
    Ok(stream)
}

fn read_more(stream: &mut TcpStream, buf: &mut BytesMut) -> io::Result<()> {
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
}
