//! The fixed workloads of the regression gate, one per hot path. Each `gate_*` function
//! is the measured part only (inputs are built before it is called), is never inlined,
//! and has a unique name, so that `valgrind --tool=callgrind --toggle-collect` counts
//! exactly its instructions. Sizes are fixed: the counts must repeat run after run.

use std::hint::black_box;

use bytes::BytesMut;
use std::sync::Arc;

use engine::fanout::{self, Group, Scratch};
use engine::message::{self, Message};
use proto::{sockjs, stomp, ws};

use crate::fixtures;
use crate::route::{self, KafkaRoute};

/// The gate's hot paths, by name, in report order.
pub const PATHS: &[&str] = &[
    "ws_decode",
    "stomp_decode",
    "fanout_100",
    "fanout_100_http",
    "sockjs_escape",
    "chat_prepare",
    "kafka_route",
    "steady_10",
];

/// Frames or messages per workload.
pub const COUNT: usize = 2_000;
/// Messages fanned out in `fanout_100`.
pub const FANOUT_MESSAGES: usize = 200;
/// Bytes escaped per round of `sockjs_escape`.
pub const ESCAPE_BYTES: usize = 16 * 1024;
/// Rounds of `sockjs_escape`.
pub const ESCAPE_ROUNDS: usize = 20;
/// Batches routed in `kafka_route`.
pub const ROUTE_BATCHES: usize = 4;
/// Messages through the whole path in `steady_10`, each alone.
pub const STEADY_MESSAGES: usize = 500;
/// Subscribers of the room in `steady_10`.
pub const STEADY_ROOM: usize = 10;

/// Builds the inputs of `path` and runs its measured function once. Returns `None` for
/// an unknown path.
pub fn run(path: &str) -> Option<u64> {
    let result = match path {
        "ws_decode" => gate_ws_decode(fixtures::masked_frames(128, COUNT)),
        "stomp_decode" => gate_stomp_decode(fixtures::send_frames(128, COUNT)),
        "fanout_100" => {
            let groups = [fixtures::group(fixtures::raw_key(), 100, 1 << 20)];
            gate_fanout_100(
                &fixtures::published(128),
                &groups,
                &mut Scratch::default(),
                &mut Vec::new(),
            )
        }
        "fanout_100_http" => {
            let groups = [fixtures::group(fixtures::sockjs_http_key(), 100, 1 << 20)];
            gate_fanout_100_http(
                &fixtures::published(128),
                &groups,
                &mut Scratch::default(),
                &mut Vec::new(),
            )
        }
        "sockjs_escape" => gate_sockjs_escape(
            &fixtures::sockjs_payload(ESCAPE_BYTES),
            &mut BytesMut::with_capacity(2 * ESCAPE_BYTES),
        ),
        "chat_prepare" => gate_chat_prepare(&fixtures::chat_body(128), &mut Vec::new()),
        "kafka_route" => {
            let mut rig = KafkaRoute::new(route::SHARDS, route::CHANNELS, route::SUBSCRIBERS);
            let records = route::batch(route::RECORDS, route::CHANNELS, route::VALUE_BYTES);
            // One batch first, so that queues hold storage as in a running engine.
            rig.route(&records);
            gate_kafka_route(&mut rig, &records)
        }
        "steady_10" => {
            let groups = [fixtures::group(fixtures::raw_key(), STEADY_ROOM, 1 << 20)];
            gate_steady_10(fixtures::masked_sends(128, STEADY_MESSAGES), &groups)
        }
        _ => return None,
    };
    Some(black_box(result))
}

/// Decodes every masked 128-byte client frame in `buf` (server role).
#[inline(never)]
pub fn gate_ws_decode(mut buf: BytesMut) -> u64 {
    let mut decoder = ws::Decoder::new(ws::Role::Server, fixtures::WS_LIMITS);
    let mut messages = 0;
    while let Ok(Some(message)) = decoder.decode(&mut buf) {
        black_box(&message);
        messages += 1;
    }
    messages
}

/// Decodes every `SEND` frame in `buf` (STOMP 1.2).
#[inline(never)]
pub fn gate_stomp_decode(mut buf: BytesMut) -> u64 {
    let mut decoder = stomp::Decoder::new(fixtures::STOMP_LIMITS);
    decoder.set_version(stomp::Version::V1_2);
    let mut frames = 0;
    while let Ok(Some(item)) = decoder.decode(&mut buf) {
        black_box(&item);
        frames += 1;
    }
    frames
}

/// Encodes and queues `FANOUT_MESSAGES` messages to every member of `groups`, draining
/// the queues after each message as the writers would.
#[inline(never)]
pub fn gate_fanout_100(msg: &Message, groups: &[Group], scratch: &mut Scratch, spare: &mut Vec<u8>) -> u64 {
    let mut delivered = 0;
    for _ in 0..FANOUT_MESSAGES {
        delivered += fanout::deliver(black_box(msg), groups, scratch);
        fixtures::drain(groups, spare);
    }
    delivered
}

/// `gate_fanout_100` for subscribers on SockJS's HTTP transports: the `MESSAGE` is
/// encoded once as an `a[...]` line (JSON-escaped, no WebSocket header) for all of them.
#[inline(never)]
pub fn gate_fanout_100_http(msg: &Message, groups: &[Group], scratch: &mut Scratch, spare: &mut Vec<u8>) -> u64 {
    // Not the same code as gate_fanout_100, or the linker folds the two into one symbol.
    let mut delivered = black_box(groups.len() as u64) - groups.len() as u64;
    for _ in 0..FANOUT_MESSAGES {
        delivered += fanout::deliver(black_box(msg), groups, scratch);
        fixtures::drain(groups, spare);
    }
    delivered
}

/// Escapes `payload` for SockJS `ESCAPE_ROUNDS` times.
#[inline(never)]
pub fn gate_sockjs_escape(payload: &[u8], out: &mut BytesMut) -> u64 {
    let mut bytes = 0;
    for _ in 0..ESCAPE_ROUNDS {
        out.clear();
        sockjs::escape_into(black_box(payload), out);
        bytes += out.len() as u64;
    }
    bytes
}

/// Runs `message::prepare` on `body` `COUNT` times (a time field is added each time).
#[inline(never)]
pub fn gate_chat_prepare(body: &[u8], scratch: &mut Vec<u8>) -> u64 {
    let now = fixtures::fixed_now();
    let mut bytes = 0;
    for _ in 0..COUNT {
        if let Ok(chat) = message::prepare(black_box(body), None, now, scratch) {
            bytes += chat.body.len() as u64;
        }
    }
    bytes
}

/// Routes the Kafka batch `records` `ROUTE_BATCHES` times: split per shard by interest,
/// delivered by each shard's router, queues drained.
#[inline(never)]
pub fn gate_kafka_route(rig: &mut KafkaRoute, records: &[Arc<Message>]) -> u64 {
    let mut delivered = 0;
    for _ in 0..ROUTE_BATCHES {
        delivered += rig.route(black_box(records));
    }
    delivered
}

/// Steady chat, where nothing is batched: each message alone goes from its WebSocket
/// frame to a room of `STEADY_ROOM` (WebSocket and STOMP decoding, JSON check and
/// `time`, a position, encoding, queueing), and each subscriber's queue then leaves alone
/// as its writer takes it (storage given back after a small write, as `trim` does).
#[inline(never)]
pub fn gate_steady_10(mut frames: BytesMut, groups: &[Group]) -> u64 {
    let mut ws = ws::Decoder::new(ws::Role::Server, fixtures::WS_LIMITS);
    let mut stomp = stomp::Decoder::new(fixtures::STOMP_LIMITS);
    stomp.set_version(stomp::Version::V1_2);
    let (mut scratch, mut json, mut spare) = (Scratch::default(), Vec::new(), Vec::new());
    let now = fixtures::fixed_now();
    let mut delivered = 0;
    let mut seq = 0;
    while let Ok(Some(ws::Message::Text(mut payload))) = ws.decode(&mut frames) {
        let Ok(Some(stomp::Item::Frame(frame))) = stomp.decode(&mut payload) else {
            continue;
        };
        let Ok(mut msg) = message::prepare(&frame.body, None, now, &mut json) else {
            continue;
        };
        seq += 1;
        msg.id = bytes::Bytes::from_static(b"node-0-0-1234567");
        msg.position = Some(message::Position::new(1, seq, &msg.id));
        delivered += fanout::deliver(black_box(&msg), groups, &mut scratch);
        for member in groups.iter().flat_map(|g| g.members.iter()) {
            fixtures::drain_and_trim(&member.out, &mut spare);
        }
    }
    delivered
}
