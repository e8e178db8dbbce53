//! Fuzzes the sans-IO session (`engine::session`), not only its decoders: arbitrary client
//! bytes, cut into arbitrary chunks, on each framing (raw bytes, or each chunk wrapped in a
//! masked WebSocket text frame, for raw STOMP and SockJS; bare STOMP for SockJS's HTTP
//! transports), with the clock moving between chunks and every effect answered. No input
//! may panic, and the limits hold: never more subscriptions than allowed, no subscription
//! id or destination over its limit, nothing after the session closed.
#![no_main]

use std::time::{Duration, Instant, SystemTime};

use bytes::BytesMut;
use engine::ids::ConnId;
use engine::metrics::ShardStats;
use engine::session::{Action, Env, Outcome, Output, Rate, Session, Settings, Step};
use libfuzzer_sys::fuzz_target;
use proto::{server, ws, Framing};

const MAX_SUBSCRIPTIONS: usize = 4;
const MAX_ID_BYTES: usize = 16;
const MAX_DESTINATION_BYTES: usize = 32;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, data)) = data.split_first() else {
        return;
    };
    let (framing, wrap) = match mode % 5 {
        0 => (Framing::Raw, false),
        1 => (Framing::Raw, true),
        2 => (Framing::SockJs, true),
        3 => (Framing::SockJs, false),
        _ => (Framing::SockJsHttp, false),
    };
    let settings = Settings {
        server: "fuzz".into(),
        heartbeat_ms: 1000,
        sockjs_heartbeat: Duration::from_secs(5),
        max_subscriptions: MAX_SUBSCRIPTIONS,
        max_id_bytes: MAX_ID_BYTES,
        max_destination_bytes: MAX_DESTINATION_BYTES,
        connect_timeout: Duration::from_secs(10),
        publish_rate: Some(Rate {
            interval: Duration::from_millis(10),
            burst: 3,
        }),
        max_history: 10,
        limits: server::Limits {
            max_frame_bytes: 2048,
            max_headers: 16,
            max_line_bytes: 256,
        },
    };
    let stats = ShardStats::default();
    let mut now = Instant::now();
    let env = |now| Env {
        settings: &settings,
        stats: &stats,
        now,
        wall: SystemTime::UNIX_EPOCH,
    };
    let mut out = Output::default();
    let mut session = Session::new(ConnId(1), framing, &settings);
    session.open(&env(now), &mut out);
    let mut buf = BytesMut::new();
    let mut subscriptions = 0usize;
    let mut rest = data;
    while let Some((&len, tail)) = rest.split_first() {
        let (chunk, tail) = tail.split_at((len as usize % 64).min(tail.len()));
        rest = tail;
        if wrap {
            ws::encode_frame(ws::OpCode::Text, chunk, Some([1, 2, 3, 4]), &mut buf);
        } else {
            buf.extend_from_slice(chunk);
        }
        now += Duration::from_millis(u64::from(len % 8));
        let closed = loop {
            match session.on_bytes(&env(now), &mut buf, &mut out) {
                Step::Continue => break false,
                Step::Close => break true,
                Step::Effect(effect) => {
                    match &effect.action {
                        Action::Subscribe { destination, key, .. } => {
                            subscriptions += 1;
                            assert!(subscriptions <= MAX_SUBSCRIPTIONS);
                            assert!(key.subscription.0.len() <= MAX_ID_BYTES);
                            assert!(destination.len() <= MAX_DESTINATION_BYTES);
                        }
                        Action::Unsubscribe { .. } => subscriptions -= 1,
                        Action::Publish(message) => assert!(message.destination.len() < 4096),
                    }
                    if let Some(receipt) = &effect.receipt {
                        assert!(receipt.len() <= MAX_ID_BYTES);
                    }
                    let step = session.complete(&env(now), effect.receipt.as_deref(), Outcome::Done, &mut out);
                    if matches!(step, Step::Close) {
                        break true;
                    }
                }
            }
        };
        out.wire.clear();
        let tick = session.on_tick(&env(now), now, &mut out);
        out.wire.clear();
        if closed || matches!(tick, Step::Close) {
            // Once closed, the session takes nothing more.
            assert!(matches!(session.on_bytes(&env(now), &mut buf, &mut out), Step::Close));
            assert!(out.wire.is_empty());
            break;
        }
    }
    assert_eq!(session.take_subscriptions().len(), subscriptions);
});
