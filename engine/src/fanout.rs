//! Encodes a published message once per distinct wire form and queues it for every
//! subscriber. Subscribers of a destination are grouped by what their `MESSAGE` looks
//! like on the wire (framing, STOMP version, their `subscription` id); clients pick the
//! same few ids, so a room of thousands costs one or two encodings per message. Each
//! member then gets the shared bytes appended to its outbound queue (`shard/outbound.rs`),
//! which leaves in one `send()` per burst.

use std::rc::Rc;

use bytes::{BufMut, Bytes, BytesMut};

use crate::proto::{sockjs, stomp, ws};
use crate::shard::outbound::Outbound;

/// A chat message after parsing: the destination, the body as delivered and its id.
/// Shared (`Arc`) between shards; the bytes are reference-counted, never copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// `/sub/chat/{channel}` or any `/sub/...` destination.
    pub destination: Bytes,
    /// The JSON body (with the server's `time` added for `/pub/chat`).
    pub body: Bytes,
    /// `message-id`, the same for every subscriber.
    pub id: Bytes,
}

/// How a connection carries STOMP frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// STOMP frames in WebSocket messages.
    Raw,
    /// STOMP frames in SockJS `a[...]` arrays in WebSocket messages.
    SockJs,
}

/// What makes one subscriber's `MESSAGE` bytes differ from another's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireKey {
    /// Framing of the connection.
    pub framing: Framing,
    /// STOMP version of the connection (header escaping).
    pub version: stomp::Version,
    /// The subscriber's own subscription id.
    pub subscription: Bytes,
}

/// Subscribers of one destination that share a `WireKey`.
#[derive(Debug)]
pub struct Group {
    /// Their wire form.
    pub key: WireKey,
    /// (connection id, outbound queue) of each member.
    pub members: Vec<(u64, Rc<Outbound>)>,
}

/// Encodes `msg` for each group once and queues it to every member. Returns how many
/// members were queued to. `scratch` holds two reusable buffers.
pub fn deliver(msg: &Published, groups: &[Group], scratch: &mut Scratch) -> u64 {
    let mut delivered = 0;
    for group in groups {
        let frame = encode(msg, &group.key, scratch);
        for (_, out) in &group.members {
            if out.push(frame) {
                delivered += 1;
            }
        }
    }
    delivered
}

/// Reusable buffers for `encode`.
#[derive(Debug, Default)]
pub struct Scratch {
    stomp: BytesMut,
    wire: BytesMut,
}

/// The complete WebSocket frame carrying `msg` as a `MESSAGE` for subscribers with `key`,
/// in `scratch` (reused: no allocation per message once warm).
pub fn encode<'s>(msg: &Published, key: &WireKey, scratch: &'s mut Scratch) -> &'s [u8] {
    let Scratch { stomp: frame, wire } = scratch;
    wire.clear();
    frame.clear();
    frame.reserve(160 + msg.destination.len() + msg.body.len());
    frame.put_slice(b"MESSAGE\ndestination:");
    stomp::escape_into(&msg.destination, key.version, frame);
    frame.put_slice(b"\ncontent-type:application/json\nsubscription:");
    stomp::escape_into(&key.subscription, key.version, frame);
    frame.put_slice(b"\nmessage-id:");
    stomp::escape_into(&msg.id, key.version, frame);
    frame.put_slice(b"\ncontent-length:");
    frame.put_slice(itoa::Buffer::new().format(msg.body.len()).as_bytes());
    frame.put_slice(b"\n\n");
    frame.put_slice(&msg.body);
    frame.put_u8(0);

    wrap(key.framing, frame, wire);
    wire
}

/// Appends the WebSocket frame that carries the STOMP bytes `stomp` with `framing`.
pub fn wrap(framing: Framing, stomp: &[u8], wire: &mut BytesMut) {
    match framing {
        Framing::Raw => {
            wire.reserve(MAX_HEADER + stomp.len());
            ws::encode_header(ws::OpCode::Text, true, stomp.len(), None, wire);
            wire.put_slice(stomp);
        }
        Framing::SockJs => {
            // The escaped length is known only after escaping: escape after a maximal
            // header gap, then write the real header just before the payload.
            let at = wire.len();
            wire.reserve(MAX_HEADER + 8 + stomp.len() * 6 / 5);
            wire.put_bytes(0, MAX_HEADER);
            sockjs::encode_array(&[stomp], wire);
            let payload_len = wire.len() - at - MAX_HEADER;
            let mut header = BytesMut::with_capacity(MAX_HEADER);
            let header_len = ws::encode_header(ws::OpCode::Text, true, payload_len, None, &mut header);
            let start = at + MAX_HEADER - header_len;
            wire[start..at + MAX_HEADER].copy_from_slice(&header);
            // Close the gap left by a header shorter than the maximum.
            wire.copy_within(start.., at);
            wire.truncate(wire.len() - (start - at));
        }
    }
}

/// Longest server-to-client WebSocket header (no mask).
const MAX_HEADER: usize = 10;
