//! A checked scenario and the plan derived from it: which connection goes to which target,
//! source address, shard and channel, who publishes, when each connection starts (ramp)
//! and each publisher sends (open loop). Built once on the main thread from `cli.rs`'s
//! flags; shards only read it. Errors name the flag.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::cli::{ScenarioArgs, Spread, Transport};
use crate::reconnect::Policy;
use crate::target::{self, Framing, Target};

mod lists;
pub use lists::{parse_cpu_list, parse_ip_list};

/// A scenario value that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A flag out of range; names the flag.
    #[error("--{flag}: {reason}")]
    Invalid {
        /// The flag.
        flag: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A bad target URL.
    #[error(transparent)]
    Target(#[from] target::Error),
}

/// What one connection does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnPlan {
    /// Its number, 0-based over the whole run.
    pub index: u32,
    /// Index into `Scenario::targets`.
    pub target: usize,
    /// Local address to bind, if any.
    pub source_ip: Option<IpAddr>,
    /// The channel it subscribes to.
    pub channel: u32,
    /// Its publisher id when it publishes (the first P connections do).
    pub publisher: Option<u32>,
    /// The load generator shard that runs it.
    pub shard: usize,
    /// When it starts connecting, after the start of the run (ramp).
    pub start_after: Duration,
    /// Whether it stalls its reads (test aid).
    pub stalls: bool,
}

/// The scenario as stated in the report (what a reader needs to reproduce it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Target URLs.
    pub targets: Vec<String>,
    /// Connections.
    pub connections: u32,
    /// Channels.
    pub channels: u32,
    /// `uniform`, `zipf` or `hot`.
    pub spread: String,
    /// Publishers.
    pub publishers: u32,
    /// Messages per second over all publishers.
    pub rate_per_s: f64,
    /// Body size, bytes.
    pub size_bytes: usize,
    /// Measured seconds.
    pub duration_s: f64,
    /// Warm-up seconds.
    pub warmup_s: f64,
    /// Load generator shards.
    pub shards: usize,
    /// Dropped connections reconnect (`--reconnect`).
    #[serde(default)]
    pub reconnect: bool,
    /// Reconnects resume from the last position (`--resume`).
    #[serde(default)]
    pub resume: bool,
    /// Every SEND asks for a receipt (`--confirm`).
    #[serde(default)]
    pub confirm: bool,
    /// `websocket`, `xhr-streaming` or `xhr-polling` (reports before it existed: websocket).
    #[serde(default = "websocket")]
    pub transport: String,
}

fn websocket() -> String {
    Transport::Websocket.name().to_string()
}

/// A checked scenario.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Resolved targets.
    pub targets: Vec<Target>,
    /// How users connect.
    pub transport: Transport,
    /// Every connection's plan, by index.
    pub conns: Vec<ConnPlan>,
    /// Channels.
    pub channels: u32,
    /// Channel names, by channel number.
    pub channel_names: Vec<String>,
    /// Publishers.
    pub publishers: u32,
    /// Time between two messages of one publisher, ns.
    pub publish_interval_ns: u64,
    /// Body size, bytes.
    pub size_bytes: usize,
    /// Measured time.
    pub duration: Duration,
    /// Publishing before measuring.
    pub warmup: Duration,
    /// Waiting for stragglers after the last publish.
    pub grace: Duration,
    /// Longest connect-to-receipt time.
    pub connect_timeout: Duration,
    /// Handshakes in flight per shard.
    pub connect_concurrency: usize,
    /// Shards and the core of each.
    pub cpus: Vec<usize>,
    /// io_uring memory per shard, bytes.
    pub io_memory_bytes: usize,
    /// How long each shard spins before it sleeps (None: at once).
    pub spin: Option<std::time::Duration>,
    /// Receivers look at their sockets this often instead of waiting (`--poll-us`).
    pub poll: Option<std::time::Duration>,
    /// io_uring ring depth per shard.
    pub ring_depth: usize,
    /// Metrics URLs to scrape.
    pub metrics_urls: Vec<String>,
    /// Server PIDs to read /proc of.
    pub server_pids: Vec<u32>,
    /// Output directory.
    pub out: Option<PathBuf>,
    /// Stamped into every message.
    pub run_id: u64,
    /// Print a progress line each second.
    pub progress: bool,
    /// Stall length, for `stalls` connections.
    pub stall: Duration,
    /// Stall start, after the start of the measured window.
    pub stall_at: Duration,
    /// Duplicates publisher 0 injects.
    pub inject_dup: u32,
    /// Swapped pairs publisher 0 injects.
    pub inject_reorder: u32,
    /// How dropped connections come back; `None`: they stay down (`--reconnect`).
    pub reconnect: Option<Policy>,
    /// Resubscribe from the last `x-offset` (`--resume`).
    pub resume: bool,
    /// Every SEND asks for a receipt (`--confirm`).
    pub confirm: bool,
    /// TLS settings, when a target is `wss://` or `https://`.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// How users authenticate in `CONNECT`.
    pub auth: Auth,
    /// For the report.
    pub summary: Summary,
}

/// The token each user sends in `CONNECT`.
#[derive(Clone, Default)]
pub enum Auth {
    /// None (the engine's authentication is off).
    #[default]
    None,
    /// One token for all (`--token-file`).
    Token(String),
    /// Each user signs its own HS256 token with this secret (`--jwt-secret-file`).
    Secret(Arc<[u8]>),
}

impl Auth {
    /// The `Authorization` header value of user `index`, if any.
    pub fn bearer(&self, index: u32) -> Option<String> {
        let token = match self {
            Auth::None => return None,
            Auth::Token(token) => token.clone(),
            Auth::Secret(secret) => {
                let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
                let claims = serde_json::json!({"sub": format!("user-{index}"), "exp": now + TOKEN_SECS});
                let key = jsonwebtoken::EncodingKey::from_secret(secret);
                // HS256 over JSON that serialises: cannot fail.
                jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).ok()?
            }
        };
        Some(format!("Bearer {token}"))
    }
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Auth::None => "None",
            Auth::Token(_) => "Token(<hidden>)",
            Auth::Secret(_) => "Secret(<hidden>)",
        })
    }
}

/// How long the tokens users sign stay valid, seconds.
const TOKEN_SECS: u64 = 86_400;

impl Scenario {
    /// The TLS settings and server name for connections to `target` (`None`: plain).
    pub fn tls_for<'a>(&'a self, target: &'a Target) -> Option<(&'a Arc<rustls::ClientConfig>, &'a str)> {
        Some((self.tls.as_ref()?, target.tls_name.as_deref()?))
    }

    /// Checks `args` and plans every connection.
    ///
    /// # Errors
    /// A value out of range (naming its flag) or a bad target.
    pub fn from_args(args: &ScenarioArgs) -> Result<Scenario, Error> {
        let invalid = |flag, reason: &str| Error::Invalid {
            flag,
            reason: reason.to_string(),
        };
        if args.targets.is_empty() {
            return Err(invalid("target", "give at least one target URL"));
        }
        let targets = args
            .targets
            .iter()
            .map(|t| Target::parse(t))
            .collect::<Result<Vec<_>, _>>()?;
        if args.transport != Transport::Websocket && targets.iter().any(|t| t.framing != Framing::SockJs) {
            return Err(invalid(
                "transport",
                "xhr-streaming and xhr-polling need SockJS targets (http://host:port/letters-chat-server)",
            ));
        }
        if args.connections == 0 {
            return Err(invalid("connections", "must be at least 1"));
        }
        if args.channels == 0 || args.channels > args.connections {
            return Err(invalid("channels", "must be between 1 and --connections"));
        }
        if args.publishers > args.connections {
            return Err(invalid("publishers", "must be at most --connections"));
        }
        let per_publisher = match args.rate_per_publisher {
            Some(r) => r,
            None if args.publishers == 0 => 0.0,
            None => args.rate / f64::from(args.publishers),
        };
        if args.publishers > 0 && !(per_publisher > 0.0 && per_publisher <= 1e9) {
            return Err(invalid("rate", "must be a positive number of messages per second"));
        }
        for (flag, secs) in [
            ("duration", args.duration),
            ("warmup", args.warmup),
            ("grace", args.grace),
            ("stall-at", args.stall_at),
        ] {
            if !(0.0..=86_400.0 * 7.0).contains(&secs) {
                return Err(invalid(flag, "must be between 0 and a week of seconds"));
            }
        }
        if !(args.connect_timeout > 0.0 && args.connect_timeout <= 3600.0) {
            return Err(invalid("connect-timeout", "must be between 0 and 3600 seconds"));
        }
        if !(args.ramp >= 0.0 && args.ramp.is_finite()) {
            return Err(invalid("ramp", "must be 0 (unlimited) or connections per second"));
        }
        let reconnect = reconnect_policy(args)?;
        if reconnect.is_some() && args.transport != Transport::Websocket {
            return Err(invalid("reconnect", "is implemented for --transport websocket only"));
        }
        if args.connect_concurrency == 0 {
            return Err(invalid("connect-concurrency", "must be at least 1"));
        }
        if !(args.zipf_exponent >= 0.0 && args.zipf_exponent <= 10.0) {
            return Err(invalid("zipf-exponent", "must be between 0 and 10"));
        }
        if !(args.hot_share > 0.0 && args.hot_share < 1.0) {
            return Err(invalid("hot-share", "must be between 0 and 1"));
        }
        if !(8..=32_768).contains(&args.ring_depth) || !args.ring_depth.is_power_of_two() {
            return Err(invalid("ring-depth", "must be a power of two between 8 and 32768"));
        }
        if args.io_memory_kib < 16 {
            return Err(invalid("io-memory-kib", "must be at least 16"));
        }
        if args.channel_prefix.is_empty()
            || args
                .channel_prefix
                .contains(|c: char| c == '"' || c == '\\' || c.is_control())
        {
            return Err(invalid(
                "channel-prefix",
                "must be non-empty, without quotes, backslashes or control characters",
            ));
        }
        if args.stall_subscribers > args.connections.saturating_sub(args.publishers) {
            return Err(invalid(
                "stall-subscribers",
                "must be at most the connections that do not publish",
            ));
        }
        let source_ips = match &args.source_ips {
            None => Vec::new(),
            Some(list) => {
                parse_ip_list(list).ok_or_else(|| invalid("source-ips", "expected a.b.c.d-a.b.c.e or a comma list"))?
            }
        };
        let all_cpus = match &args.cpus {
            None => (0..std::thread::available_parallelism().map_or(1, |n| n.get())).collect(),
            Some(list) => parse_cpu_list(list).ok_or_else(|| invalid("cpus", "expected a list like 0,2-3"))?,
        };
        let shards = args.shards.unwrap_or(all_cpus.len());
        if !(1..=256).contains(&shards) {
            return Err(invalid("shards", "must be between 1 and 256"));
        }
        let cpus: Vec<usize> = (0..shards).map(|i| all_cpus[i % all_cpus.len()]).collect();

        let channel_of = spread_channels(
            args.connections,
            args.channels,
            args.spread,
            args.zipf_exponent,
            args.hot_share,
        );
        let stalled = stalled_connections(&channel_of, args.publishers, args.stall_subscribers);
        let conns = (0..args.connections)
            .map(|i| {
                let start_after = if args.ramp > 0.0 {
                    Duration::from_secs_f64(f64::from(i) / args.ramp)
                } else {
                    Duration::ZERO
                };
                ConnPlan {
                    index: i,
                    target: i as usize % targets.len(),
                    source_ip: (!source_ips.is_empty()).then(|| source_ips[i as usize % source_ips.len()]),
                    channel: channel_of[i as usize],
                    publisher: (i < args.publishers).then_some(i),
                    shard: i as usize % shards,
                    start_after,
                    stalls: stalled.contains(&i),
                }
            })
            .collect();
        let mut metrics_urls = args.metrics.clone();
        if metrics_urls.is_empty() {
            for t in &targets {
                if let Some(url) = t.metrics_url().filter(|url| !metrics_urls.contains(url)) {
                    metrics_urls.push(url);
                }
            }
        }
        let tls = match targets.iter().any(|t| t.tls_name.is_some()) {
            true => Some(crate::tls::client_config(args.ca_file.as_deref()).map_err(|e| invalid("ca-file", &e))?),
            false => None,
        };
        let read_secret = |flag, path: &PathBuf| {
            std::fs::read(path)
                .map(|bytes| bytes.trim_ascii_end().to_vec())
                .map_err(|e| invalid(flag, &format!("{}: {e}", path.display())))
        };
        let auth = match (&args.token_file, &args.jwt_secret_file) {
            (Some(path), _) => Auth::Token(
                String::from_utf8_lossy(&read_secret("token-file", path)?)
                    .trim()
                    .to_string(),
            ),
            (None, Some(path)) => Auth::Secret(read_secret("jwt-secret-file", path)?.into()),
            (None, None) => Auth::None,
        };
        let rate_total = per_publisher * f64::from(args.publishers);
        let summary = Summary {
            targets: args.targets.clone(),
            connections: args.connections,
            channels: args.channels,
            spread: format!("{:?}", args.spread).to_lowercase(),
            publishers: args.publishers,
            rate_per_s: rate_total,
            size_bytes: args.size,
            duration_s: args.duration,
            warmup_s: args.warmup,
            shards,
            reconnect: reconnect.is_some(),
            resume: args.resume,
            confirm: args.confirm,
            transport: args.transport.name().to_string(),
        };
        Ok(Scenario {
            targets,
            transport: args.transport,
            conns,
            channels: args.channels,
            channel_names: (0..args.channels)
                .map(|c| format!("{}{c}", args.channel_prefix))
                .collect(),
            publishers: args.publishers,
            publish_interval_ns: if per_publisher > 0.0 {
                (1e9 / per_publisher).round().max(1.0) as u64
            } else {
                u64::MAX
            },
            size_bytes: args.size,
            duration: Duration::from_secs_f64(args.duration),
            warmup: Duration::from_secs_f64(args.warmup),
            grace: Duration::from_secs_f64(args.grace),
            connect_timeout: Duration::from_secs_f64(args.connect_timeout),
            connect_concurrency: args.connect_concurrency as usize,
            cpus,
            io_memory_bytes: args.io_memory_kib * 1024,
            spin: (args.spin_us > 0).then(|| std::time::Duration::from_micros(args.spin_us)),
            poll: (args.poll_us > 0).then(|| std::time::Duration::from_micros(args.poll_us)),
            ring_depth: args.ring_depth,
            metrics_urls,
            server_pids: args.server_pids.clone(),
            out: args.out.clone(),
            run_id: args.run_id.unwrap_or_else(random_run_id),
            progress: !args.quiet,
            stall: Duration::from_millis(args.stall_ms),
            stall_at: Duration::from_secs_f64(args.stall_at),
            inject_dup: args.inject_dup,
            inject_reorder: args.inject_reorder,
            reconnect,
            resume: args.resume,
            confirm: args.confirm,
            tls,
            auth,
            summary,
        })
    }

    /// Load generator shards.
    pub fn shards(&self) -> usize {
        self.cpus.len()
    }

    /// Subscribers planned per channel.
    pub fn planned_subscribers(&self) -> Vec<u32> {
        let mut counts = vec![0; self.channels as usize];
        for c in &self.conns {
            counts[c.channel as usize] += 1;
        }
        counts
    }
}

/// The backoff of `--reconnect` (implied by `--resume`), checked; `None` without it.
fn reconnect_policy(args: &ScenarioArgs) -> Result<Option<Policy>, Error> {
    let invalid = |flag, reason: &str| Error::Invalid {
        flag,
        reason: reason.to_string(),
    };
    if !(args.reconnect || args.resume) {
        return Ok(None);
    }
    if !(1..=3_600_000).contains(&args.reconnect_initial_ms) {
        return Err(invalid("reconnect-initial-ms", "must be between 1 and 3600000"));
    }
    if !(args.reconnect_initial_ms..=3_600_000).contains(&args.reconnect_max_ms) {
        return Err(invalid(
            "reconnect-max-ms",
            "must be between --reconnect-initial-ms and 3600000",
        ));
    }
    if !(1.0..=100.0).contains(&args.reconnect_factor) {
        return Err(invalid("reconnect-factor", "must be between 1 and 100"));
    }
    if !(0.0..1.0).contains(&args.reconnect_jitter) {
        return Err(invalid("reconnect-jitter", "must be at least 0 and below 1"));
    }
    Ok(Some(Policy {
        initial: Duration::from_millis(args.reconnect_initial_ms),
        factor: args.reconnect_factor,
        max: Duration::from_millis(args.reconnect_max_ms),
        jitter: args.reconnect_jitter,
    }))
}

/// The channel of each connection. Channel quotas follow the spread; connections are then
/// dealt round-robin over channels that still have room, so the first connections (the
/// publishers) cover as many channels as possible.
pub fn spread_channels(
    connections: u32,
    channels: u32,
    spread: Spread,
    zipf_exponent: f64,
    hot_share: f64,
) -> Vec<u32> {
    let n = channels as usize;
    let weights: Vec<f64> = match spread {
        Spread::Uniform => vec![1.0; n],
        Spread::Zipf => (0..n).map(|k| 1.0 / ((k + 1) as f64).powf(zipf_exponent)).collect(),
        Spread::Hot if n == 1 => vec![1.0],
        Spread::Hot => (0..n)
            .map(|k| {
                if k == 0 {
                    hot_share
                } else {
                    (1.0 - hot_share) / (n - 1) as f64
                }
            })
            .collect(),
    };
    let quotas = apportion(connections, &weights);
    let mut left = quotas;
    let mut out = Vec::with_capacity(connections as usize);
    let mut channel = 0;
    while out.len() < connections as usize {
        if left[channel] > 0 {
            left[channel] -= 1;
            out.push(channel as u32);
        }
        channel = (channel + 1) % n;
    }
    out
}

/// Splits `total` over `weights` (largest remainder), giving every channel at least one
/// while there are enough to go round.
fn apportion(total: u32, weights: &[f64]) -> Vec<u32> {
    let n = weights.len();
    let floor_each = u32::from(total as usize >= n);
    let rest = total - floor_each * n as u32;
    let sum: f64 = weights.iter().sum::<f64>().max(f64::MIN_POSITIVE);
    let exact: Vec<f64> = weights.iter().map(|w| f64::from(rest) * w / sum).collect();
    let mut quotas: Vec<u32> = exact.iter().map(|e| floor_each + e.floor() as u32).collect();
    let given: u32 = quotas.iter().sum();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| {
        (exact[b] - exact[b].floor())
            .total_cmp(&(exact[a] - exact[a].floor()))
            .then(a.cmp(&b))
    });
    for &k in order.iter().cycle().take(total.saturating_sub(given) as usize) {
        quotas[k] += 1;
    }
    quotas
}

/// The last `k` non-publishing connections whose channel has a publisher.
fn stalled_connections(channel_of: &[u32], publishers: u32, k: u32) -> Vec<u32> {
    let published: Vec<u32> = channel_of.iter().take(publishers as usize).copied().collect();
    let mut picked: Vec<u32> = (publishers..channel_of.len() as u32)
        .rev()
        .filter(|&i| published.contains(&channel_of[i as usize]))
        .take(k as usize)
        .collect();
    if picked.len() < k as usize {
        let more: Vec<u32> = (publishers..channel_of.len() as u32)
            .rev()
            .filter(|i| !picked.contains(i))
            .collect();
        picked.extend(more.into_iter().take(k as usize - picked.len()));
    }
    picked
}

/// A run id below 2^48 (exact in any JSON reader), from the clock and the pid.
fn random_run_id() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut x = nanos ^ (u64::from(std::process::id()) << 32);
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x & ((1 << 48) - 1)
}

#[cfg(test)]
mod tests;
