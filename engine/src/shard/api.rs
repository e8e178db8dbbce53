//! The HTTP API for an application's backend (system notices, bots), on the node's HTTP
//! port when `--api-key-file` is given. `POST /api/publish` takes a chat body as a
//! client's `SEND /pub/chat` does and publishes it the same way (`message::prepare`, then
//! the shard's router: `time`, position, history, Kafka and fan-out). `GET /api/channels`
//! lists this node's channels with their subscribers on all its shards (each shard's
//! `ShardStats::subscribers`, as `/metrics` reads every shard's numbers). Every request
//! carries `Authorization: Bearer <key>`. `endpoints.rs` routes here ([`route`], no I/O);
//! `conn.rs` reads the body and calls [`serve`].

use std::time::{Instant, SystemTime};

use bytes::BytesMut;
use proto::{http, sockjs};
use subtle::ConstantTimeEq;

use super::endpoints::Action;
use super::Shard;
use crate::message;
use crate::metrics::ErrorKind;
use crate::router::PublishError;

/// The keys an API client may present: the lines of the key file. Its `Debug` form
/// hides them.
pub struct Keys(Vec<Vec<u8>>);

impl Keys {
    /// The keys in `text`: one per line, surrounding whitespace trimmed, blank lines and
    /// lines starting with `#` skipped (several keys let a key be rotated without a
    /// moment when none works). `None` when it holds no key.
    pub fn parse(text: &str) -> Option<Self> {
        let keys: Vec<Vec<u8>> = text
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty() && !line.starts_with('#'))
            .map(|key| key.as_bytes().to_vec())
            .collect();
        (!keys.is_empty()).then_some(Self(keys))
    }

    /// Whether `authorization` (an `Authorization` header value) is `Bearer` and one of
    /// the keys. Every key is compared, each in constant time, so the time taken does not
    /// say which key or how much of one matched (only a length differs faster).
    pub fn accepts(&self, authorization: Option<&str>) -> bool {
        let Some((scheme, token)) = authorization.and_then(|value| value.split_once(' ')) else {
            return false;
        };
        // RFC 9110 §11.1: the scheme is case-insensitive.
        if !scheme.eq_ignore_ascii_case("bearer") {
            return false;
        }
        let token = token.trim().as_bytes();
        let matched = self
            .0
            .iter()
            .fold(subtle::Choice::from(0), |any, key| any | key.as_slice().ct_eq(token));
        matched.into()
    }
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Keys(<{} hidden>)", self.0.len())
    }
}

/// An authenticated API request, its body still to be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Call {
    /// `POST /api/publish`.
    Publish,
    /// `GET /api/channels`.
    Channels,
}

/// Decides an `/api/...` request from its head: 404 when the API is off or the path
/// unknown, 401 without a valid key, 405 for another method, else the call to serve
/// once its body is read.
pub(super) fn route(shard: &Shard, req: &http::Request<'_>) -> Action {
    let keep_alive = req.keep_alive;
    let (Some(keys), Some(call)) = (&shard.node.api_keys, call_of(req.path)) else {
        return answer(404, r#"{"error":"not found"}"#.into(), keep_alive);
    };
    if !keys.accepts(req.authorization) {
        shard.stats.error(ErrorKind::ApiUnauthorized);
        let mut action = answer(401, r#"{"error":"missing or wrong API key"}"#.into(), keep_alive);
        if let Action::Respond { headers, .. } = &mut action {
            headers.push(("WWW-Authenticate", "Bearer".into()));
        }
        return action;
    }
    let method = match call {
        Call::Publish => "POST",
        Call::Channels => "GET",
    };
    if req.method != method {
        let mut action = answer(405, format!(r#"{{"error":"use {method}"}}"#), keep_alive);
        if let Action::Respond { headers, .. } = &mut action {
            headers.push(("Allow", method.into()));
        }
        return action;
    }
    Action::Api { call, keep_alive }
}

/// Serves an authenticated call with its request `body`.
pub(super) async fn serve(shard: &Shard, call: Call, keep_alive: bool, body: &[u8]) -> Action {
    match call {
        Call::Publish => publish(shard, body, keep_alive).await,
        Call::Channels => answer(200, channels(shard), keep_alive),
    }
}

/// The 413 for an API request whose body is over `--max-frame-bytes`; the connection
/// closes (the rest of the body is not read).
pub(super) fn too_large(shard: &Shard) -> Action {
    shard.stats.error(ErrorKind::ApiBadRequest);
    answer(413, r#"{"error":"body over the frame limit"}"#.into(), false)
}

/// `POST /api/publish`: as a client's `SEND /pub/chat`, from JSON check to fan-out.
async fn publish(shard: &Shard, body: &[u8], keep_alive: bool) -> Action {
    let decoded = Instant::now();
    let prepared = message::prepare(body, None, SystemTime::now(), &mut shard.json_scratch.borrow_mut());
    let msg = match prepared {
        Ok(msg) => msg,
        Err(e) => {
            shard.stats.error(ErrorKind::ApiBadRequest);
            let mut json = BytesMut::from(&br#"{"error":""#[..]);
            sockjs::escape_into(e.to_string().as_bytes(), &mut json);
            json.extend_from_slice(b"\"}");
            return answer(400, String::from_utf8_lossy(&json).into_owned(), keep_alive);
        }
    };
    let mut json = BytesMut::from(&br#"{"accepted":true,"channel":""#[..]);
    sockjs::escape_into(&msg.channel().unwrap_or_default(), &mut json);
    json.extend_from_slice(b"\"}");
    // 202: accepted, as a SEND without a receipt (not yet stored in Kafka).
    match shard.router.publish(msg, decoded, false).await {
        Ok(_) => answer(202, String::from_utf8_lossy(&json).into_owned(), keep_alive),
        Err(PublishError::KafkaFull) => {
            shard.stats.error(ErrorKind::KafkaBackpressure);
            let mut action = answer(
                503,
                r#"{"error":"cluster bus is full: message not accepted, send it again later"}"#.into(),
                keep_alive,
            );
            if let Action::Respond { headers, .. } = &mut action {
                headers.push(("Retry-After", "1".into()));
            }
            action
        }
    }
}

/// `GET /api/channels`: `{"node":..,"channels":[{"channel":..,"subscribers":n},..]}`,
/// this node's chat channels with subscribers, by name, counted over all its shards.
fn channels(shard: &Shard) -> String {
    let mut counts = std::collections::BTreeMap::<bytes::Bytes, usize>::new();
    for stats in &shard.node.stats {
        let Ok(rooms) = stats.subscribers.lock() else {
            continue;
        };
        for (destination, n) in rooms.iter() {
            if let Some(channel) = message::channel_of(destination) {
                *counts.entry(destination.slice_ref(channel)).or_default() += n;
            }
        }
    }
    let mut json = BytesMut::from(&br#"{"node":""#[..]);
    sockjs::escape_into(shard.node.config.node_id.as_bytes(), &mut json);
    json.extend_from_slice(br#"","channels":["#);
    for (i, (channel, n)) in counts.iter().enumerate() {
        if i > 0 {
            json.extend_from_slice(b",");
        }
        json.extend_from_slice(br#"{"channel":""#);
        sockjs::escape_into(channel, &mut json);
        json.extend_from_slice(br#"","subscribers":"#);
        json.extend_from_slice(itoa::Buffer::new().format(*n).as_bytes());
        json.extend_from_slice(b"}");
    }
    json.extend_from_slice(b"]}");
    String::from_utf8_lossy(&json).into_owned()
}

/// Which call `path` names.
fn call_of(path: &str) -> Option<Call> {
    match path {
        "/api/publish" => Some(Call::Publish),
        "/api/channels" => Some(Call::Channels),
        _ => None,
    }
}

/// A JSON answer.
fn answer(status: u16, json: String, keep_alive: bool) -> Action {
    Action::Respond {
        status,
        headers: vec![("Content-Type", "application/json".into())],
        body: json,
        keep_alive,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_from_a_file() {
        assert!(Keys::parse("").is_none());
        assert!(Keys::parse("# only a comment\n\n   \n").is_none());
        let keys = Keys::parse("# rotated on 2026-12-01\nold-key\n  new-key  \n").expect("two keys");
        assert_eq!(keys.0.len(), 2);
        assert!(!format!("{keys:?}").contains("key\""));
        assert!(!format!("{keys:?}").contains("new-key"));
    }

    #[test]
    fn bearer_keys_only() {
        let keys = Keys::parse("s3cret\nother").expect("keys");
        assert!(keys.accepts(Some("Bearer s3cret")));
        assert!(keys.accepts(Some("bearer other")));
        assert!(keys.accepts(Some("Bearer  s3cret ")));
        for refused in [
            None,
            Some(""),
            Some("Bearer"),
            Some("Bearer "),
            Some("Bearer s3cre"),
            Some("Bearer s3cret2"),
            Some("Basic s3cret"),
            Some("s3cret"),
            Some("Bearer # rotated"),
        ] {
            assert!(!keys.accepts(refused), "{refused:?}");
        }
    }

    #[test]
    fn calls_by_path() {
        assert_eq!(call_of("/api/publish"), Some(Call::Publish));
        assert_eq!(call_of("/api/channels"), Some(Call::Channels));
        assert_eq!(call_of("/api/publish/"), None);
        assert_eq!(call_of("/api"), None);
    }
}
