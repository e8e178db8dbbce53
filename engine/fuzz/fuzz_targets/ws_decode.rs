//! Feeds arbitrary bytes to a server and a client `ws::Decoder`, whole and in arbitrary
//! chunks. Neither may panic; every chunking must give the same messages and error as
//! feeding all at once; what comes out must keep the decoder's promises (UTF-8 text,
//! short control frames, limits); and re-encoding it must decode to the same messages.
#![no_main]

use bytes::BytesMut;
use proto::ws::{self, Decoder, Error, Limits, Message, OpCode, Role};
use libfuzzer_sys::fuzz_target;

const LIMITS: Limits = Limits {
    max_frame_bytes: 4096,
    max_message_bytes: 16384,
};
/// Re-encoded messages are single frames, up to a whole message long.
const REENCODED_LIMITS: Limits = Limits {
    max_frame_bytes: 16384,
    max_message_bytes: 16384,
};

fuzz_target!(|data: &[u8]| {
    // Input layout: one byte N, then N (mod 16) chunk lengths, then the byte stream.
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let (lengths, stream) = rest.split_at(usize::from(n % 16).min(rest.len()));
    let chunks = chunk(stream, lengths);
    for role in [Role::Server, Role::Client] {
        let whole = decode(role, LIMITS, &[stream]);
        assert_eq!(
            whole,
            decode(role, LIMITS, &chunks),
            "chunking changed the outcome"
        );
        for message in &whole.0 {
            check(message);
        }
        // Re-encode in the role that sends to `role` and decode again.
        let (sender_mask, receiver) = match role {
            Role::Server => (Some([1, 2, 3, 4]), Role::Server),
            Role::Client => (None, Role::Client),
        };
        let mut again = BytesMut::new();
        for message in &whole.0 {
            encode(message, sender_mask, &mut again);
        }
        assert_eq!(
            decode(receiver, REENCODED_LIMITS, &[&again]),
            (whole.0, None, 0)
        );
    }
});

/// Messages, first error, bytes left over.
type Outcome = (Vec<Message>, Option<Error>, usize);

fn decode(role: Role, limits: Limits, chunks: &[&[u8]]) -> Outcome {
    let mut decoder = Decoder::new(role, limits);
    let mut buf = BytesMut::new();
    let mut messages = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(message)) => messages.push(message),
                Ok(None) => break,
                Err(error) => return (messages, Some(error), 0),
            }
        }
    }
    (messages, None, buf.len())
}

/// Cuts `stream` into pieces of 1 to 256 bytes, cycling through `lengths`.
fn chunk<'a>(stream: &'a [u8], lengths: &[u8]) -> Vec<&'a [u8]> {
    if lengths.is_empty() {
        return vec![stream];
    }
    let mut chunks = Vec::new();
    let mut rest = stream;
    for &len in lengths.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (head, tail) = rest.split_at((usize::from(len) + 1).min(rest.len()));
        chunks.push(head);
        rest = tail;
    }
    chunks
}

fn check(message: &Message) {
    match message {
        Message::Text(payload) => {
            assert!(std::str::from_utf8(payload).is_ok());
            assert!(payload.len() <= LIMITS.max_message_bytes);
        }
        Message::Binary(payload) => assert!(payload.len() <= LIMITS.max_message_bytes),
        Message::Ping(payload) | Message::Pong(payload) => assert!(payload.len() <= 125),
        Message::Close(None) => {}
        Message::Close(Some((code, reason))) => {
            assert!(matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999));
            assert!(reason.len() <= 123);
            assert!(std::str::from_utf8(reason).is_ok());
        }
    }
}

fn encode(message: &Message, mask: Option<[u8; 4]>, out: &mut BytesMut) {
    match message {
        Message::Text(p) => ws::encode_frame(OpCode::Text, p, mask, out),
        Message::Binary(p) => ws::encode_frame(OpCode::Binary, p, mask, out),
        Message::Ping(p) => ws::encode_frame(OpCode::Ping, p, mask, out),
        Message::Pong(p) => ws::encode_frame(OpCode::Pong, p, mask, out),
        Message::Close(None) => ws::encode_frame(OpCode::Close, &[], mask, out),
        Message::Close(Some((code, reason))) => {
            let reason = std::str::from_utf8(reason).unwrap_or_default();
            ws::encode_close(*code, reason, mask, out)
        }
    };
}
