//! Target URLs: what a scenario's `--target` strings mean. `ws://host:port/path` is raw
//! STOMP over WebSocket at that path; `http://host:port/base` is a SockJS endpoint whose
//! WebSocket transport lives at `{base}/<3 digits>/<8 chars>/websocket`; `wss://` and
//! `https://` are the same through TLS. Parsed and resolved
//! once at startup, so connections only copy a `SocketAddr`.

use std::net::{SocketAddr, ToSocketAddrs};

pub use proto::Framing;

/// One place to connect to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The URL as given.
    pub url: String,
    /// The resolved address.
    pub addr: SocketAddr,
    /// `host:port` for the `Host` header.
    pub host: String,
    /// Raw STOMP: the upgrade path. SockJS: the base path (no trailing slash).
    pub path: String,
    /// Raw or SockJS.
    pub framing: Framing,
    /// Through TLS: the server name its certificate must carry (`wss://`, `https://`).
    pub tls_name: Option<String>,
}

/// A target URL that cannot be used.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum Error {
    /// Not `ws://`, `wss://`, `http://` or `https://`.
    #[error("target `{0}`: scheme must be ws:// or wss:// (raw STOMP), http:// or https:// (SockJS)")]
    Scheme(String),
    /// No host, or a port that is not a number.
    #[error("target `{0}`: expected scheme://host[:port]/path")]
    Malformed(String),
    /// The host name did not resolve.
    #[error("target `{url}`: cannot resolve: {reason}")]
    Resolve {
        /// The URL.
        url: String,
        /// What the resolver said.
        reason: String,
    },
}

impl Target {
    /// Parses and resolves `url`.
    ///
    /// # Errors
    /// A bad scheme, a malformed URL or a name that does not resolve.
    pub fn parse(url: &str) -> Result<Target, Error> {
        let schemes = [
            ("ws://", Framing::Raw, false),
            ("wss://", Framing::Raw, true),
            ("http://", Framing::SockJs, false),
            ("https://", Framing::SockJs, true),
        ];
        let Some((framing, tls, rest)) = schemes
            .iter()
            .find_map(|&(scheme, framing, tls)| Some((framing, tls, url.strip_prefix(scheme)?)))
        else {
            return Err(Error::Scheme(url.to_string()));
        };
        let (authority, path) = match rest.find('/') {
            Some(at) => (&rest[..at], &rest[at..]),
            None => (rest, ""),
        };
        if authority.is_empty() {
            return Err(Error::Malformed(url.to_string()));
        }
        let host = match (has_port(authority), tls) {
            (true, _) => authority.to_string(),
            (false, false) => format!("{authority}:80"),
            (false, true) => format!("{authority}:443"),
        };
        let tls_name = tls.then(|| {
            let name = host.rsplit_once(':').map_or(&host[..], |(name, _)| name);
            name.trim_start_matches('[').trim_end_matches(']').to_string()
        });
        let addr = host
            .to_socket_addrs()
            .map_err(|e| Error::Resolve {
                url: url.to_string(),
                reason: e.to_string(),
            })?
            .next()
            .ok_or_else(|| Error::Resolve {
                url: url.to_string(),
                reason: "no address".into(),
            })?;
        let path = match framing {
            Framing::Raw if path.is_empty() => "/".to_string(),
            Framing::Raw => path.to_string(),
            Framing::SockJs | Framing::SockJsHttp => path.trim_end_matches('/').to_string(),
        };
        Ok(Target {
            url: url.to_string(),
            addr,
            host,
            path,
            framing,
            tls_name,
        })
    }

    /// The request path of the WebSocket upgrade. For SockJS, `server` and `session`
    /// make up the `/<3 digits>/<8 chars>` part (from the connection's number).
    pub fn upgrade_path(&self, conn: u64) -> String {
        match self.framing {
            Framing::Raw => self.path.clone(),
            Framing::SockJs | Framing::SockJsHttp => format!("{}/websocket", self.session_path(conn)),
        }
    }

    /// `{base}/<3 digits>/<8 chars>`: the SockJS session of connection `conn`, to which
    /// the HTTP transports append `/xhr_streaming`, `/xhr` or `/xhr_send`.
    pub fn session_path(&self, conn: u64) -> String {
        format!("{}/{:03}/{}", self.path, conn % 1000, session_id(conn))
    }

    /// `http://host:port/metrics` of the node behind this target; `None` through TLS (a
    /// TLS port is a proxy's: name the nodes' metrics with `--metrics`).
    pub fn metrics_url(&self) -> Option<String> {
        self.tls_name.is_none().then(|| format!("http://{}/metrics", self.host))
    }
}

/// Eight lowercase letters and digits that differ per connection.
fn session_id(conn: u64) -> String {
    const ALPHABET: &[u8; 36] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut x = conn.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5DEE_CE66_D1CE_4E5B;
    (0..8)
        .map(|_| {
            let c = ALPHABET[(x % 36) as usize];
            x /= 36;
            c as char
        })
        .collect()
}

/// True when `authority` ends with `:digits` (an IPv6 literal keeps its brackets).
fn has_port(authority: &str) -> bool {
    match authority.rsplit_once(':') {
        Some((host, port)) => {
            !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) && (!host.contains(':') || host.ends_with(']'))
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_and_sockjs_urls() {
        let raw = Target::parse("ws://127.0.0.1:8080/ws").expect("raw");
        assert_eq!(raw.framing, Framing::Raw);
        assert_eq!(raw.upgrade_path(7), "/ws");
        assert_eq!(raw.addr.port(), 8080);
        assert_eq!(raw.host, "127.0.0.1:8080");
        let sockjs = Target::parse("http://127.0.0.1:9/letters-chat-server/").expect("sockjs");
        assert_eq!(sockjs.framing, Framing::SockJs);
        let path = sockjs.upgrade_path(1234);
        assert!(path.starts_with("/letters-chat-server/234/"), "{path}");
        assert!(path.ends_with("/websocket"));
        assert_eq!(path.split('/').nth(3).map(str::len), Some(8));
        assert_eq!(format!("{}/websocket", sockjs.session_path(1234)), path);
        assert_eq!(sockjs.metrics_url().as_deref(), Some("http://127.0.0.1:9/metrics"));
        assert_eq!(raw.tls_name, None);
    }

    #[test]
    fn tls_urls() {
        let wss = Target::parse("wss://localhost/ws").expect("wss");
        assert_eq!((wss.framing, wss.addr.port()), (Framing::Raw, 443));
        assert_eq!(wss.tls_name.as_deref(), Some("localhost"));
        assert_eq!(wss.metrics_url(), None);
        let https = Target::parse("https://127.0.0.1:8443/letters-chat-server").expect("https");
        assert_eq!((https.framing, https.addr.port()), (Framing::SockJs, 8443));
        assert_eq!(https.tls_name.as_deref(), Some("127.0.0.1"));
    }

    #[test]
    fn bad_urls() {
        assert!(matches!(Target::parse("ftp://x/ws"), Err(Error::Scheme(_))));
        assert!(matches!(Target::parse("ws:///ws"), Err(Error::Malformed(_))));
        assert!(Target::parse("ws://127.0.0.1/").is_ok_and(|t| t.addr.port() == 80));
    }
}
