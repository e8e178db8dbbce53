//! The HTTP endpoints of a node, decided from a parsed request head: health, metrics,
//! SockJS `/info` and greeting, and which WebSocket endpoint an upgrade asks for. No I/O:
//! `conn.rs` writes what [`route`] decides.

use std::sync::atomic::Ordering::Relaxed;

use bytes::BytesMut;
use proto::{http, sockjs, Framing};

use super::conn::Endpoint;
use super::Shard;
use crate::metrics;

/// What to do with one HTTP request.
pub(super) enum Action {
    Respond {
        status: u16,
        headers: Vec<(&'static str, String)>,
        body: String,
        keep_alive: bool,
    },
    Reject(http::Error),
    Upgrade {
        key: String,
        protocol: Option<&'static str>,
        endpoint: Endpoint,
    },
}

pub(super) fn route(shard: &Shard, req: &http::Request<'_>) -> Action {
    let config = &shard.node.config;
    let respond = |status, body: String| Action::Respond {
        status,
        headers: Vec::new(),
        body,
        keep_alive: req.keep_alive,
    };
    let upgrade = |endpoint, supported: &[&'static str]| match req.check_upgrade() {
        Ok(key) => Action::Upgrade {
            key: key.to_owned(),
            protocol: req.select_protocol(supported),
            endpoint,
        },
        Err(e) => Action::Reject(e),
    };
    let path = req.path;
    if req.wants_websocket() {
        if config.ws_echo_path.as_deref() == Some(path) {
            return upgrade(Endpoint::Echo, &[]);
        }
        if path == config.ws_path {
            return upgrade(Endpoint::Stomp(Framing::Raw), STOMP_PROTOCOLS);
        }
        return match sockjs::route(&config.base_path, path) {
            Some(sockjs::Route::SockJsWebSocket) => upgrade(Endpoint::Stomp(Framing::SockJs), &[]),
            Some(sockjs::Route::RawWebSocket) => upgrade(Endpoint::Stomp(Framing::Raw), STOMP_PROTOCOLS),
            Some(_) => Action::Reject(http::Error::BadUpgrade("Can \"Upgrade\" only to \"WebSocket\".")),
            None => respond(404, "not found\n".into()),
        };
    }
    match (req.method, path) {
        ("GET", "/healthz") => {
            if shard.node.draining.load(Relaxed) {
                respond(503, "draining\n".into())
            } else {
                // Kafka being away degrades the node but does not stop it serving its
                // own clients: still 200, with the state in the body.
                match &shard.node.kafka {
                    Some(kafka) if !kafka.healthy() => respond(200, "ok\nkafka: down\n".into()),
                    Some(_) => respond(200, "ok\nkafka: up\n".into()),
                    None => respond(200, "ok\n".into()),
                }
            }
        }
        ("GET", "/metrics") => {
            let mut body = String::with_capacity(8 * 1024);
            metrics::render(&config.node_id, &shard.node.stats, &mut body);
            if let Some(kafka) = &shard.node.kafka {
                kafka.render_prometheus(&config.node_id, &mut body);
            }
            let headers = vec![("Content-Type", "text/plain; version=0.0.4".to_string())];
            Action::Respond {
                status: 200,
                headers,
                body,
                keep_alive: req.keep_alive,
            }
        }
        (method, _) => match sockjs::route(&config.base_path, path) {
            Some(sockjs::Route::Info) => info(method, req),
            Some(sockjs::Route::Greeting) if method == "GET" => Action::Respond {
                status: 200,
                headers: vec![("Content-Type", "text/plain; charset=UTF-8".to_string())],
                body: "Welcome to SockJS!\n".into(),
                keep_alive: req.keep_alive,
            },
            Some(_) => respond(405, "method not allowed\n".into()),
            None => respond(404, "not found\n".into()),
        },
    }
}

/// SockJS `/info`, asked cross-origin with credentials: echo the Origin, never `*`.
fn info(method: &str, req: &http::Request<'_>) -> Action {
    let mut headers = vec![(
        "Cache-Control",
        "no-store, no-cache, no-transform, must-revalidate, max-age=0".to_string(),
    )];
    match req.origin {
        Some(origin) if origin != "null" => {
            headers.push(("Access-Control-Allow-Origin", origin.to_string()));
            headers.push(("Access-Control-Allow-Credentials", "true".to_string()));
            headers.push(("Vary", "Origin".to_string()));
        }
        _ => headers.push(("Access-Control-Allow-Origin", "*".to_string())),
    }
    match method {
        "OPTIONS" => {
            headers.push(("Access-Control-Allow-Methods", "OPTIONS, GET".to_string()));
            headers.push(("Access-Control-Max-Age", "31536000".to_string()));
            if let Some(asked) = req.cors_request_headers {
                headers.push(("Access-Control-Allow-Headers", asked.to_string()));
            }
            Action::Respond {
                status: 204,
                headers,
                body: String::new(),
                keep_alive: req.keep_alive,
            }
        }
        "GET" => {
            let mut body = BytesMut::new();
            sockjs::encode_info(entropy(), &mut body);
            headers.push(("Content-Type", "application/json;charset=UTF-8".to_string()));
            Action::Respond {
                status: 200,
                headers,
                body: String::from_utf8_lossy(&body).into_owned(),
                keep_alive: req.keep_alive,
            }
        }
        _ => Action::Respond {
            status: 405,
            headers,
            body: String::new(),
            keep_alive: req.keep_alive,
        },
    }
}

fn entropy() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    nanos.wrapping_mul(2_654_435_761)
}

/// Subprotocols offered for raw STOMP, best first.
const STOMP_PROTOCOLS: &[&str] = &["v12.stomp", "v11.stomp", "v10.stomp"];
