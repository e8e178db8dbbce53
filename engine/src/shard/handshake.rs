//! A connection's HTTP requests, before it upgrades: each request is parsed, routed by
//! `endpoints.rs` and answered (an API call through `api.rs`, a SockJS HTTP transport
//! through `transport.rs`), until one upgrades to a WebSocket, the connection should
//! close, or a request belongs to another shard. `conn.rs` calls it on every accepted
//! connection and carries on from what it returns. Also the connection's place in the
//! node's counts (`Admission`).

use std::net::IpAddr;
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use proto::http;
use proto::sockjs::http::Transport;

use super::conn::{read_until, write_all, Endpoint, Read, Stream};
use super::{api, endpoints, transport, Node, Shard};
use crate::metrics::{ErrorKind, ShardStats};

/// A connection's place in the node's counts: node-wide from its accept, per client
/// address once its first request names the client. Dropping it gives both back.
#[derive(Debug)]
pub struct Admission {
    node: Arc<Node>,
    /// The address it is counted under, if any (loopback clients are not counted).
    address: Option<IpAddr>,
    /// Whether its client address was looked at already.
    claimed: bool,
}

impl Admission {
    /// Counts a new connection; `None` when the node holds `--max-connections`.
    pub(super) fn enter(node: &Arc<Node>) -> Option<Self> {
        if node.connections.fetch_add(1, Relaxed) >= node.config.max_connections {
            node.connections.fetch_sub(1, Relaxed);
            return None;
        }
        Some(Admission {
            node: node.clone(),
            address: None,
            claimed: false,
        })
    }

    /// Counts the connection under client address `ip` (once); false when that address
    /// holds `--max-connections-per-address` already. Loopback is not counted: local
    /// tools and benchmarks come from there, and so does a proxy on the same host that
    /// is not in `--trusted-proxies`.
    fn claim(&mut self, ip: Option<IpAddr>) -> bool {
        if std::mem::replace(&mut self.claimed, true) {
            return true;
        }
        let Some(ip) = ip.filter(|ip| !ip.is_loopback()) else {
            return true;
        };
        let Ok(mut counts) = self.node.per_address.lock() else {
            return true;
        };
        let count = counts.entry(ip).or_insert(0);
        if *count >= self.node.config.max_connections_per_address {
            return false;
        }
        *count += 1;
        self.address = Some(ip);
        true
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.node.connections.fetch_sub(1, Relaxed);
        if let (Some(ip), Ok(mut counts)) = (self.address, self.node.per_address.lock()) {
            if let Some(count) = counts.get_mut(&ip) {
                *count -= 1;
                if *count == 0 {
                    counts.remove(&ip);
                }
            }
        }
    }
}

/// What a connection does after its HTTP requests.
pub(super) enum Next {
    /// Speak WebSocket on this endpoint, once the upgrade is answered (with `key` and
    /// `protocol`).
    Upgrade {
        endpoint: Endpoint,
        key: String,
        protocol: Option<&'static str>,
    },
    /// Close it.
    Close,
    /// Its next request belongs to this shard (by index): hand the connection over.
    Handoff(usize),
}

/// Serves HTTP requests until one upgrades to a WebSocket, the connection should close,
/// or a request must be served by another shard (`buf` then still holds it whole). Each
/// request, head and body, must be complete within `--handshake-timeout-ms` of the end
/// of the one before (or of the accept), however it trickles in.
pub(super) async fn serve_http(
    shard: &Rc<Shard>,
    stream: &Stream,
    buf: &mut BytesMut,
    admission: &mut Admission,
) -> Next {
    let peer = stream.peer_ip();
    let mut reply = BytesMut::new();
    let mut chunked = BytesMut::new();
    let config = &shard.node.config;
    let max_head = config.max_head_bytes;
    let handshake = Duration::from_millis(config.handshake_timeout_ms);
    let mut deadline = Instant::now() + handshake;
    loop {
        let step = match http::parse_request(buf, max_head) {
            Ok(Some((req, n))) => {
                if !admission.claim(endpoints::client_ip(peer, &req, &config.trusted_proxies)) {
                    shard.stats.error(ErrorKind::AddressFull);
                    reply.clear();
                    http::write_response(
                        503,
                        &[("Retry-After", "5")],
                        b"too many connections from this address\n",
                        false,
                        &mut reply,
                    );
                    let _ = write_all(stream, &reply).await;
                    return Next::Close;
                }
                let action = endpoints::route(shard, &req);
                // Only `xhr_send` and the API take a body (at most a frame); any other gets 413.
                let max_body = match &action {
                    endpoints::Action::SockJs(r) if r.transport == Transport::XhrSend => config.max_frame_bytes,
                    endpoints::Action::Api { .. } => config.max_frame_bytes,
                    _ => 0,
                };
                if let endpoints::Action::SockJs(r) = &action {
                    if r.owner != shard.index {
                        ShardStats::add(&shard.stats.handoffs, 1);
                        return Next::Handoff(r.owner);
                    }
                }
                // Where the body ends: `Some(used)` once it is all here.
                chunked.clear();
                let body = if req.chunked {
                    match http::decode_chunked(&buf[n..], max_body, &mut chunked) {
                        Ok(Some(len)) => Ok(Some(n + len)),
                        // Chunk framing costs a few bytes per chunk: bound the raw bytes too.
                        Ok(None) if buf.len() - n > 2 * max_body + max_head => Err(http::Error::BodyTooLarge),
                        Ok(None) => Ok(None),
                        Err(e) => Err(e),
                    }
                } else {
                    match n.checked_add(req.content_length) {
                        Some(end) if req.content_length <= max_body => Ok((buf.len() >= end).then_some(end)),
                        _ => Err(http::Error::BodyTooLarge),
                    }
                };
                match body {
                    Ok(Some(used)) => Some((action, n, used, req.chunked)),
                    Ok(None) => None,
                    Err(e) => {
                        let answer = match action {
                            endpoints::Action::SockJs(r) if e == http::Error::BodyTooLarge => {
                                shard.stats.error(ErrorKind::SockJsTooBig);
                                endpoints::too_large(r)
                            }
                            endpoints::Action::Api { .. } if e == http::Error::BodyTooLarge => api::too_large(shard),
                            // The API's own refusals (404 when off, 401, 405) need no body:
                            // answered as they are, and the connection closes unread.
                            endpoints::Action::Respond {
                                status, headers, body, ..
                            } if e == http::Error::BodyTooLarge && req.path.starts_with("/api/") => {
                                endpoints::Action::Respond {
                                    status,
                                    headers,
                                    body,
                                    keep_alive: false,
                                }
                            }
                            _ => endpoints::Action::Reject(e),
                        };
                        Some((answer, n, buf.len(), false))
                    }
                }
            }
            Ok(None) => None,
            Err(e) => Some((endpoints::Action::Reject(e), 0, buf.len(), false)),
        };
        let Some((action, head_bytes, used, chunked_body)) = step else {
            match read_until(shard, stream, buf, Some(deadline)).await {
                Read::Bytes => continue,
                Read::Closed => return Next::Close,
                // Silence between keep-alive requests just ends; a request begun gets 408.
                Read::Deadline if buf.is_empty() => return Next::Close,
                Read::Deadline => {
                    shard.stats.error(ErrorKind::HttpTimeout);
                    reply.clear();
                    http::write_response(408, &[], b"request not complete in time\n", false, &mut reply);
                    let _ = write_all(stream, &reply).await;
                    return Next::Close;
                }
            }
        };
        let mut request = buf.split_to(used);
        let body: Bytes = if chunked_body {
            chunked.split().freeze()
        } else {
            request.split_off(head_bytes.min(request.len())).freeze()
        };
        reply.clear();
        let action = match action {
            endpoints::Action::Api { call, keep_alive } => api::serve(shard, call, keep_alive, &body).await,
            action => action,
        };
        let keep_alive = match action {
            endpoints::Action::Respond {
                status,
                headers,
                body,
                keep_alive,
            } => {
                let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
                http::write_response(status, &headers, body.as_bytes(), keep_alive, &mut reply);
                keep_alive
            }
            endpoints::Action::Reject(e) => {
                shard.stats.error(match e {
                    http::Error::TooLarge | http::Error::BodyTooLarge => ErrorKind::HttpTooLarge,
                    _ => ErrorKind::Http,
                });
                let headers: &[(&str, &str)] = if e == http::Error::UnsupportedVersion {
                    &[("Sec-WebSocket-Version", "13")]
                } else {
                    &[]
                };
                http::write_response(e.status(), headers, e.to_string().as_bytes(), false, &mut reply);
                false
            }
            endpoints::Action::Upgrade {
                key,
                protocol,
                endpoint,
            } => {
                return Next::Upgrade {
                    endpoint,
                    key,
                    protocol,
                }
            }
            // Served into a `Respond` just above.
            endpoints::Action::Api { .. } => false,
            endpoints::Action::SockJs(r) => {
                drop(request);
                if !transport::serve(shard, stream, buf, r, body).await {
                    return Next::Close;
                }
                deadline = Instant::now() + handshake;
                continue;
            }
        };
        if write_all(stream, &reply).await.is_err() {
            return Next::Close;
        }
        ShardStats::add(&shard.stats.bytes_out, reply.len() as u64);
        if !keep_alive {
            return Next::Close;
        }
        deadline = Instant::now() + handshake;
    }
}
