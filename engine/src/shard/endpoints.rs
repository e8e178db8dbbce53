//! The HTTP endpoints of a node, decided from a parsed request head: health, metrics,
//! the HTTP API (`api.rs`), SockJS `/info` and greeting, which WebSocket endpoint an upgrade asks for, and which
//! SockJS HTTP transport a request is for (with the shard that owns its session). No I/O:
//! `conn.rs` writes what [`route`] decides, `transport.rs` serves the transports.

use std::net::IpAddr;
use std::sync::atomic::Ordering::Relaxed;

use bytes::BytesMut;
use proto::sockjs::http::Transport;
use proto::{http, sockjs, Framing};

use super::conn::Endpoint;
use super::{api, sessions, transport, Shard};
use crate::config::Cidr;
use crate::metrics::{self, ErrorKind, ShardStats};

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
    /// A request of a SockJS HTTP transport, for `transport.rs` on the owner shard.
    SockJs(transport::Request),
    /// An authenticated HTTP API call, for `api.rs` once its body is read.
    Api {
        call: api::Call,
        keep_alive: bool,
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
    // A page of another origin may not open a WebSocket or use SockJS (a WebSocket has
    // no CORS: this check is what stands between a foreign page and the user's cookies).
    if !config.allowed_origins.allows(req.origin) {
        shard.stats.error(ErrorKind::Origin);
        return Action::Respond {
            status: 403,
            headers: Vec::new(),
            body: "origin not allowed\n".into(),
            keep_alive: false,
        };
    }
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
    if path.starts_with("/api/") {
        return api::route(shard, req);
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
            Some(sockjs::Route::Http(transport)) => sockjs_http(shard, method, req, transport),
            Some(sockjs::Route::Iframe) => {
                ShardStats::add(&shard.stats.http_requests[Transport::Unsupported.index()], 1);
                respond(404, UNSUPPORTED.into())
            }
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

/// The client's address: the peer's, or, when the peer is one of `trusted` proxies, the
/// last address in `X-Forwarded-For` that is not a trusted proxy (the ones before it
/// were written by the client and may be forged), else `X-Real-IP`.
pub(super) fn client_ip(peer: Option<IpAddr>, req: &http::Request<'_>, trusted: &[Cidr]) -> Option<IpAddr> {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|block| block.contains(ip));
    let peer = peer?;
    if !is_trusted(peer) {
        return Some(peer);
    }
    let forwarded = req.forwarded_for.and_then(|list| {
        list.rsplit(',')
            .map(|entry| entry.trim().parse::<IpAddr>())
            .find(|ip| !ip.as_ref().is_ok_and(|ip| is_trusted(*ip)))
            .and_then(Result::ok)
    });
    let real = || req.real_ip.and_then(|ip| ip.trim().parse().ok());
    Some(forwarded.or_else(real).unwrap_or(peer))
}

/// A request of a SockJS HTTP transport: a preflight is answered here, the rest goes to
/// `transport.rs` on the shard that owns the session. `JSESSIONID=dummy` is never set:
/// `/info` says `cookie_needed:false` (no sticky-cookie balancer in front; Nginx hashes
/// on the session id in the path instead).
fn sockjs_http(shard: &Shard, method: &str, req: &http::Request<'_>, transport: Transport) -> Action {
    let count = || ShardStats::add(&shard.stats.http_requests[transport.index()], 1);
    if transport == Transport::Unsupported {
        count();
        return Action::Respond {
            status: 404,
            headers: Vec::new(),
            body: UNSUPPORTED.into(),
            keep_alive: req.keep_alive,
        };
    }
    let allowed = if transport.method() == "GET" {
        "OPTIONS, GET"
    } else {
        "OPTIONS, POST"
    };
    if method == "OPTIONS" {
        count();
        return preflight(cors(req), allowed, req);
    }
    let session = sockjs::session_id(&shard.node.config.base_path, req.path);
    match session {
        Some(session) if method == transport.method() => Action::SockJs(transport::Request {
            transport,
            session: session.to_owned(),
            owner: sessions::owner(session, shard.node.stats.len()),
            headers: cors(req),
            keep_alive: req.keep_alive,
        }),
        _ => {
            count();
            let mut headers = cors(req);
            headers.push(("Allow", allowed.to_string()));
            Action::Respond {
                status: 405,
                headers,
                body: String::new(),
                keep_alive: req.keep_alive,
            }
        }
    }
}

/// The 413 for a SockJS request whose body is over `--max-frame-bytes` (with its CORS
/// headers, so that a browser sees the status); the connection closes.
pub(super) fn too_large(r: transport::Request) -> Action {
    let mut headers = r.headers;
    headers.push(("Content-Type", Transport::XhrSend.content_type().to_string()));
    Action::Respond {
        status: 413,
        headers,
        body: "request body over the frame limit\n".into(),
        keep_alive: false,
    }
}

/// The headers of every SockJS answer, as for `/info`: no caching, and CORS with
/// credentials (echo the Origin, never `*`, when there is one: `route` has refused the
/// origins `--allowed-origins` does not allow).
fn cors(req: &http::Request<'_>) -> Vec<(&'static str, String)> {
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
    headers
}

/// The answer to a CORS preflight for `methods`.
fn preflight(mut headers: Vec<(&'static str, String)>, methods: &str, req: &http::Request<'_>) -> Action {
    headers.push(("Access-Control-Allow-Methods", methods.to_string()));
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

/// SockJS `/info`, asked cross-origin with credentials: echo the Origin, never `*`.
fn info(method: &str, req: &http::Request<'_>) -> Action {
    let mut headers = cors(req);
    match method {
        "OPTIONS" => preflight(headers, "OPTIONS, GET", req),
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

/// Why `iframe.html`, `htmlfile` and `jsonp` are 404 (see `proto::sockjs::http`).
const UNSUPPORTED: &str = "not served: use the websocket, xhr-streaming, eventsource or xhr-polling transport\n";

/// Subprotocols offered for raw STOMP, best first.
const STOMP_PROTOCOLS: &[&str] = &["v12.stomp", "v11.stomp", "v10.stomp"];

#[cfg(test)]
mod tests {
    use super::*;

    fn request(forwarded_for: Option<&'static str>, real_ip: Option<&'static str>) -> http::Request<'static> {
        let head = "GET /ws HTTP/1.1\r\nHost: x\r\n\r\n";
        let (mut req, _) = http::parse_request(head.as_bytes(), 1024)
            .ok()
            .flatten()
            .expect("a request");
        req.forwarded_for = forwarded_for;
        req.real_ip = real_ip;
        req
    }

    #[test]
    fn client_addresses_come_from_trusted_proxies_only() {
        let ip = |s: &str| s.parse::<IpAddr>().ok();
        let config =
            crate::config::Config::load(["e", "--trusted-proxies", "10.0.0.0/8"].map(String::from)).expect("config");
        let trusted = &config.trusted_proxies;
        let proxy = ip("10.1.1.1");
        // From a stranger, the headers are ignored.
        let forged = request(Some("1.2.3.4"), Some("1.2.3.4"));
        assert_eq!(client_ip(ip("203.0.113.5"), &forged, trusted), ip("203.0.113.5"));
        // Through the proxy: the last untrusted hop, not what the client wrote before it.
        let chain = request(Some("6.6.6.6, 198.51.100.7, 10.2.2.2"), None);
        assert_eq!(client_ip(proxy, &chain, trusted), ip("198.51.100.7"));
        assert_eq!(
            client_ip(proxy, &request(None, Some("198.51.100.8")), trusted),
            ip("198.51.100.8")
        );
        assert_eq!(client_ip(proxy, &request(Some("junk"), None), trusted), proxy);
        assert_eq!(client_ip(None, &chain, trusted), None);
    }
}
