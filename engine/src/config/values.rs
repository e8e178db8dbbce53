//! The typed values of flags that are more than a number or a string: origins, Kafka
//! properties, CIDR ranges and the log format. `Config` holds them; each parses and
//! checks its own text.

use clap::ValueEnum;

/// The origins `--allowed-origins` lets in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowedOrigins {
    /// Any origin (`*`), as the original server allowed.
    Any,
    /// These origins only (compared ignoring ASCII case).
    List(Vec<String>),
}

impl AllowedOrigins {
    pub(super) fn parse(list: &str) -> Result<Self, String> {
        let origins: Vec<String> = list
            .split(',')
            .map(str::trim)
            .filter(|o| !o.is_empty())
            .map(|o| o.trim_end_matches('/').to_owned())
            .collect();
        if origins.iter().any(|o| o == "*") {
            return Ok(AllowedOrigins::Any);
        }
        if origins.is_empty() {
            return Err("lists no origin (use * for any)".into());
        }
        match origins.iter().find(|o| !o.contains("://")) {
            Some(bad) => Err(format!("`{bad}` is not an origin like https://chat.example.com")),
            None => Ok(AllowedOrigins::List(origins)),
        }
    }

    /// Whether a request with this `Origin` header (or none) may go on.
    pub fn allows(&self, origin: Option<&str>) -> bool {
        match (self, origin) {
            (AllowedOrigins::Any, _) | (_, None) => true,
            (AllowedOrigins::List(list), Some(origin)) => list.iter().any(|o| o.eq_ignore_ascii_case(origin)),
        }
    }
}

/// One `--kafka-property` entry as given, `key=value`; checked by [`Config::load`].
/// Its `Debug` form hides the value, which may be a password.
#[derive(Clone, PartialEq, Eq)]
pub struct KafkaProperty(pub(super) String);

impl KafkaProperty {
    pub(super) fn parse(entry: &str) -> Result<Self, std::convert::Infallible> {
        Ok(Self(entry.to_owned()))
    }

    /// The key (trimmed) and the value (as given), or `None` without a `=` or a key.
    pub fn split(&self) -> Option<(&str, &str)> {
        let (key, value) = self.0.split_once('=')?;
        let key = key.trim();
        (!key.is_empty()).then_some((key, value))
    }
}

impl std::fmt::Debug for KafkaProperty {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.split() {
            Some((key, _)) => write!(f, "{key}=<hidden>"),
            None => f.write_str("<malformed>"),
        }
    }
}

/// An address block of `--trusted-proxies`: an address, or an address and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: std::net::IpAddr,
    prefix: u8,
}

impl Cidr {
    pub(super) fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let addr: std::net::IpAddr = addr
            .parse()
            .map_err(|_| format!("`{text}` is not an address or CIDR block"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("`{text}`: bad prefix length"))?,
        };
        Ok(Cidr { addr, prefix })
    }

    /// Whether `ip` lies in this block (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        use std::net::IpAddr::{V4, V6};
        let ip = match ip {
            V6(v6) => v6.to_ipv4_mapped().map_or(ip, V4),
            v4 => v4,
        };
        let (a, b, bits) = match (self.addr, ip) {
            (V4(a), V4(b)) => (
                u128::from(u32::from(a)) << 96,
                u128::from(u32::from(b)) << 96,
                self.prefix,
            ),
            (V6(a), V6(b)) => (u128::from(a), u128::from(b), self.prefix),
            _ => return false,
        };
        let mask = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
        a & mask == b & mask
    }
}

/// How log lines are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// `tracing`'s human-readable lines.
    Text,
    /// One JSON object per line (`timestamp`, `level`, `fields`, `target`, ...).
    Json,
}
