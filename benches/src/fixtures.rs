//! Inputs shared by the criterion benches, the regression gate and the load drivers:
//! masked client WebSocket frames, STOMP `SEND` frames, chat bodies of an exact size,
//! published messages and subscriber groups, plus `drain`, which empties outbound
//! queues the way a connection's writer does. Everything is deterministic (fixed masks,
//! fixed clock) so that instruction counts repeat run after run.

use std::future::Future;
use std::pin::pin;
use std::rc::Rc;
use std::task::{Context, Waker};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{BufMut, Bytes, BytesMut};
use engine::fanout::{Group, Member, WireKey};
use engine::ids::{ConnId, SubId};
use engine::message::Message;
use engine::outbound::Outbound;
use proto::{stomp, ws, Framing};

/// The mask key of every client frame built here (any key will do; a fixed one keeps
/// runs comparable).
pub const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// The channel the benches publish to.
pub const CHANNEL: &str = "bench";

/// Limits generous enough for every fixture.
pub const WS_LIMITS: ws::Limits = ws::Limits {
    max_frame_bytes: 1 << 20,
    max_message_bytes: 1 << 20,
};

/// STOMP limits generous enough for every fixture.
pub const STOMP_LIMITS: stomp::Limits = stomp::Limits {
    max_frame_bytes: 1 << 20,
    max_headers: 64,
    max_line_bytes: 8 * 1024,
};

/// A fixed wall-clock reading (2026-11-18T11:06:40.123Z) for `chat::prepare`.
pub fn fixed_now() -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(1_795_000_000_123)
}

/// `count` masked client text frames of `payload_bytes` each, back to back in one buffer.
pub fn masked_frames(payload_bytes: usize, count: usize) -> BytesMut {
    let payload = text(payload_bytes);
    let mut out = BytesMut::with_capacity(count * (payload_bytes + 14));
    for _ in 0..count {
        ws::encode_frame(ws::OpCode::Text, &payload, Some(MASK), &mut out);
    }
    out
}

/// ASCII text of exactly `bytes` bytes that looks like chat (words, spaces, a quote).
pub fn text(bytes: usize) -> Vec<u8> {
    const WORDS: &[u8] = b"hello from alice, \"how\" are you all doing today? ";
    WORDS.iter().copied().cycle().take(bytes).collect()
}

/// A `/pub/chat` JSON body of exactly `bytes` bytes (at least 64) without a `time` field,
/// so the server adds one, as it does for the original clients.
pub fn chat_body(bytes: usize) -> Vec<u8> {
    let head = format!(r#"{{"channel":"{CHANNEL}","sender":"alice@letters.test","message":""#);
    let tail = b"\"}";
    let fill = bytes.saturating_sub(head.len() + tail.len());
    let mut body = Vec::with_capacity(bytes);
    body.extend_from_slice(head.as_bytes());
    body.extend(std::iter::repeat_n(b'x', fill));
    body.extend_from_slice(tail);
    body
}

/// One `SEND /pub/chat` STOMP frame carrying `body`, with `content-length`.
pub fn send_frame(body: &[u8], out: &mut BytesMut) {
    let length = body.len().to_string();
    let headers: [(&str, &[u8]); 2] = [("destination", b"/pub/chat"), ("content-length", length.as_bytes())];
    stomp::encode_frame(stomp::Command::Send, &headers, body, stomp::Version::V1_2, out);
}

/// `count` `SEND` frames with `body_bytes`-byte chat bodies, back to back.
pub fn send_frames(body_bytes: usize, count: usize) -> BytesMut {
    let body = chat_body(body_bytes);
    let mut out = BytesMut::with_capacity(count * (body_bytes + 64));
    for _ in 0..count {
        send_frame(&body, &mut out);
    }
    out
}

/// `count` masked WebSocket text frames, each carrying one `SEND` with a
/// `body_bytes`-byte chat body: what publishers send.
pub fn masked_sends(body_bytes: usize, count: usize) -> BytesMut {
    let mut frame = BytesMut::new();
    send_frame(&chat_body(body_bytes), &mut frame);
    let mut out = BytesMut::with_capacity(count * (frame.len() + 14));
    for _ in 0..count {
        ws::encode_frame(ws::OpCode::Text, &frame, Some(MASK), &mut out);
    }
    out
}

/// A published message on the bench channel with a `body_bytes`-byte body.
pub fn published(body_bytes: usize) -> Message {
    Message {
        destination: Bytes::from(format!("/sub/chat/{CHANNEL}")),
        body: Bytes::from(chat_body(body_bytes)),
        id: Bytes::from_static(b"node-0-0-1234567"),
        position: None,
        delivered_on_origin: false,
    }
}

/// The wire key most subscribers have: raw STOMP 1.2, subscription `sub-0`.
pub fn raw_key() -> WireKey {
    WireKey {
        framing: Framing::Raw,
        version: stomp::Version::V1_2,
        subscription: SubId(Bytes::from_static(b"sub-0")),
    }
}

/// The wire key of the original browser client: SockJS, STOMP 1.1, `sub-0`.
pub fn sockjs_key() -> WireKey {
    WireKey {
        framing: Framing::SockJs,
        version: stomp::Version::V1_1,
        subscription: SubId(Bytes::from_static(b"sub-0")),
    }
}

/// The wire key of the original client on SockJS's HTTP transports (xhr-streaming,
/// eventsource, xhr-polling): STOMP 1.1, `sub-0`.
pub fn sockjs_http_key() -> WireKey {
    WireKey {
        framing: Framing::SockJsHttp,
        version: stomp::Version::V1_1,
        subscription: SubId(Bytes::from_static(b"sub-0")),
    }
}

/// One group of `members` subscribers sharing `key`, each with an outbound queue of
/// `max_bytes`.
pub fn group(key: WireKey, members: usize, max_bytes: usize) -> Group {
    let now = Instant::now();
    let members = (0..members as u64)
        .map(|conn| Member {
            conn: ConnId(conn),
            out: Rc::new(Outbound::new(max_bytes, now)),
        })
        .collect();
    Group {
        key,
        members: Rc::new(members),
    }
}

/// Empties every member's queue as the writer does (swap the queue out, "write" it),
/// keeping `spare`'s storage for the next swap. Returns the bytes drained.
pub fn drain(groups: &[Group], spare: &mut Vec<u8>) -> usize {
    let mut drained = 0;
    for group in groups {
        for member in group.members.iter() {
            drained += drain_one(&member.out, spare);
        }
    }
    drained
}

/// Empties every queue in `queues` as the writer does (see [`drain`]). Returns the bytes
/// drained.
pub fn drain_queues(queues: &[Rc<Outbound>], spare: &mut Vec<u8>) -> usize {
    queues.iter().map(|out| drain_one(out, spare)).sum()
}

/// Empties one queue as the writer does, then gives back the storage as the writer's
/// `trim` does (none kept after a small write). Returns the bytes drained.
pub fn drain_and_trim(out: &Outbound, spare: &mut Vec<u8>) -> usize {
    let drained = drain_one(out, spare);
    out.trim(spare);
    drained
}

/// Empties one queue as the writer does; returns the bytes drained.
fn drain_one(out: &Outbound, spare: &mut Vec<u8>) -> usize {
    if out.is_empty() {
        return 0;
    }
    let ready = {
        let mut take = pin!(out.take(spare));
        // The queue is not empty, so `take` is ready at once and never registers the waker.
        take.as_mut().poll(&mut Context::from_waker(Waker::noop())).is_ready()
    };
    let drained = if ready { spare.len() } else { 0 };
    spare.clear();
    drained
}

/// Exactly `bytes` bytes of STOMP `MESSAGE` frames with chat bodies: what SockJS
/// escapes on the way out (quotes, newlines, the NUL that ends each frame).
pub fn sockjs_payload(bytes: usize) -> Vec<u8> {
    let mut out = BytesMut::with_capacity(bytes);
    let body = chat_body(128);
    while out.len() < bytes {
        out.put_slice(b"MESSAGE\ndestination:/sub/chat/bench\ncontent-type:application/json\nsubscription:sub-0\n\n");
        out.put_slice(&body);
        out.put_u8(0);
    }
    out.truncate(bytes);
    out.to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_bodies_have_the_exact_size() {
        for n in [64, 128, 1000] {
            let body = chat_body(n);
            assert_eq!(body.len(), n);
            assert!(body.starts_with(b"{\"channel\":\"bench\""));
            assert!(body.ends_with(b"\"}"));
        }
    }

    #[test]
    fn text_has_the_exact_size() {
        assert_eq!(text(16 * 1024).len(), 16 * 1024);
        assert_eq!(sockjs_payload(5000).len(), 5000);
    }
}
