//! The server's side of the bill: CPU seconds and resident memory of each node, read from
//! its Prometheus `/metrics` (`process_cpu_seconds_total`, `process_resident_memory_bytes`,
//! labelled `node`; also its shard count and its Kafka bridge's state and lag) or, where
//! those are missing, from `/proc/<pid>/stat` and `status` of `--server-pid`; and how busy
//! this host's cores were (`/proc/stat`). Sampled by the main thread at the edges of the
//! measured window; a node that does not answer is left out, never waited on for long.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Where server figures come from.
#[derive(Debug, Clone, Default)]
pub struct Probe {
    /// `http://host:port/metrics` URLs.
    pub urls: Vec<String>,
    /// Server process ids on this host.
    pub pids: Vec<u32>,
}

/// One server's figures at one moment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reading {
    /// The node id (from the `node` label), or `pid N`, or the URL.
    pub name: String,
    /// `metrics` or `proc`.
    pub source: String,
    /// CPU seconds used so far.
    pub cpu_s: Option<f64>,
    /// Resident memory, bytes.
    pub rss_bytes: Option<f64>,
    /// Its shards, one core each (distinct `shard` labels of `chat_connections`).
    #[serde(default)]
    pub shards: Option<u32>,
    /// Whether its Kafka bridge was connected (`chat_kafka_connected`); absent without Kafka.
    #[serde(default)]
    pub kafka_connected: Option<bool>,
    /// `chat_kafka_lag_seconds`: sum (seconds) and count so far.
    #[serde(default)]
    pub kafka_lag: Option<(f64, f64)>,
}

/// All servers at one moment.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// CLOCK_REALTIME ns.
    pub at_ns: u64,
    /// One reading per server.
    pub readings: Vec<Reading>,
    /// This host's cores: busy and total clock ticks so far, over all of them.
    #[serde(default)]
    pub host_ticks: Option<(u64, u64)>,
}

/// One server's use of a window between two samples.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServerCpu {
    /// Node id or `pid N`.
    pub name: String,
    /// `metrics` or `proc`.
    pub source: String,
    /// Seconds used in the window.
    pub cpu_s: f64,
    /// Cores it used on average over the window (`cpu_s` / the window).
    #[serde(default)]
    pub cores_used: Option<f64>,
    /// Its shards, one core each, when its `/metrics` says.
    #[serde(default)]
    pub shards: Option<u32>,
    /// Whether its Kafka bridge was disconnected at either edge of the window.
    #[serde(default)]
    pub kafka_down: Option<bool>,
    /// Mean produce-to-consume time of the Kafka records it read in the window, ms.
    #[serde(default)]
    pub kafka_lag_ms: Option<f64>,
}

impl Probe {
    /// Reads every source now.
    pub fn sample(&self) -> Sample {
        let mut readings: Vec<Reading> = Vec::new();
        for url in &self.urls {
            let Some(text) = http_get(url) else { continue };
            let reading = parse_metrics(&text, url);
            if !readings.iter().any(|r| r.name == reading.name) {
                readings.push(reading);
            }
        }
        let metrics_have_cpu = readings.iter().any(|r| r.cpu_s.is_some());
        let metrics_have_rss = readings.iter().any(|r| r.rss_bytes.is_some());
        if !metrics_have_cpu || !metrics_have_rss {
            readings.retain(|r| r.cpu_s.is_some() || r.rss_bytes.is_some());
            for &pid in &self.pids {
                readings.push(Reading {
                    name: format!("pid {pid}"),
                    source: "proc".into(),
                    cpu_s: proc_cpu_s(pid),
                    rss_bytes: proc_rss_bytes(pid),
                    shards: None,
                    kafka_connected: None,
                    kafka_lag: None,
                });
            }
        }
        Sample {
            at_ns: crate::stats::now_ns(),
            readings,
            host_ticks: host_ticks(),
        }
    }
}

/// Per server present in both samples: what it used between them.
pub fn cpu_used(before: &Sample, after: &Sample) -> Vec<ServerCpu> {
    let window_s = after.at_ns.saturating_sub(before.at_ns) as f64 / 1e9;
    after
        .readings
        .iter()
        .filter_map(|a| {
            let b = before.readings.iter().find(|b| b.name == a.name)?;
            let cpu_s = (a.cpu_s? - b.cpu_s?).max(0.0);
            let kafka_lag_ms = match (a.kafka_lag, b.kafka_lag) {
                (Some((sum_a, n_a)), Some((sum_b, n_b))) if n_a > n_b => Some((sum_a - sum_b) * 1e3 / (n_a - n_b)),
                _ => None,
            };
            Some(ServerCpu {
                name: a.name.clone(),
                source: a.source.clone(),
                cpu_s,
                cores_used: (window_s > 0.0).then(|| cpu_s / window_s),
                shards: a.shards,
                kafka_down: match (a.kafka_connected, b.kafka_connected) {
                    (None, None) => None,
                    (a, b) => Some(a == Some(false) || b == Some(false)),
                },
                kafka_lag_ms,
            })
        })
        .collect()
}

/// How busy this host's cores were between two samples, 0..1 of all of them.
pub fn host_busy(before: &Sample, after: &Sample) -> Option<f64> {
    let ((busy_b, total_b), (busy_a, total_a)) = (before.host_ticks?, after.host_ticks?);
    let total = total_a.checked_sub(total_b).filter(|&t| t > 0)?;
    Some(busy_a.saturating_sub(busy_b) as f64 / total as f64)
}

/// Busy and total clock ticks of all cores so far, from the `cpu` line of `/proc/stat`
/// (idle and iowait are the idle part).
pub fn host_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    parse_host_ticks(stat.lines().next()?)
}

fn parse_host_ticks(cpu_line: &str) -> Option<(u64, u64)> {
    let mut fields = cpu_line.split_whitespace();
    if fields.next()? != "cpu" {
        return None;
    }
    // user nice system idle iowait irq softirq steal (guest time is inside user already).
    let ticks: Vec<u64> = fields.take(8).map(|f| f.parse().ok()).collect::<Option<_>>()?;
    let total: u64 = ticks.iter().sum();
    let idle = ticks.get(3)? + ticks.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

/// The reading of one `/metrics` text: the node label and the two process series.
pub fn parse_metrics(text: &str, url: &str) -> Reading {
    let mut node = None;
    let (mut cpu_s, mut rss_bytes) = (None, None);
    let mut shards: Vec<String> = Vec::new();
    let mut kafka_connected = None;
    let (mut lag_sum, mut lag_count) = (None, None);
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let name = series.split('{').next().unwrap_or(series);
        if node.is_none() {
            node = label(series, "node");
        }
        let value: Option<f64> = value.trim().parse().ok();
        match name {
            "process_cpu_seconds_total" => cpu_s = value.or(cpu_s),
            "process_resident_memory_bytes" => rss_bytes = value.or(rss_bytes),
            "chat_connections" => {
                if let Some(shard) = label(series, "shard").filter(|s| !shards.contains(s)) {
                    shards.push(shard);
                }
            }
            "chat_kafka_connected" => kafka_connected = value.map(|v| v > 0.0).or(kafka_connected),
            "chat_kafka_lag_seconds_sum" => lag_sum = value.or(lag_sum),
            "chat_kafka_lag_seconds_count" => lag_count = value.or(lag_count),
            _ => {}
        }
    }
    Reading {
        name: node.unwrap_or_else(|| url.to_string()),
        source: "metrics".into(),
        cpu_s,
        rss_bytes,
        shards: (!shards.is_empty()).then_some(shards.len() as u32),
        kafka_connected,
        kafka_lag: lag_sum.zip(lag_count),
    }
}

/// The value of label `name` in `series{a="x",name="y"}`.
fn label(series: &str, name: &str) -> Option<String> {
    let labels = series.split_once('{')?.1;
    let start = labels.find(&format!("{name}=\""))? + name.len() + 2;
    let len = labels[start..].find('"')?;
    Some(labels[start..start + len].to_string())
}

/// CPU seconds (user + system) of `pid` from `/proc/<pid>/stat`.
pub fn proc_cpu_s(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces: fields are counted after its closing parenthesis.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let (utime, stime): (f64, f64) = (fields.get(11)?.parse().ok()?, fields.get(12)?.parse().ok()?);
    // SAFETY: sysconf only reads a configuration value.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (ticks > 0).then(|| (utime + stime) / ticks as f64)
}

/// Resident memory of `pid` from `/proc/<pid>/status` (`VmRSS`), bytes.
pub fn proc_rss_bytes(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024.0)
}

/// A one-shot `GET` with short timeouts; the body when the status is 200.
fn http_get(url: &str) -> Option<String> {
    let rest = url.strip_prefix("http://")?;
    let (authority, path) = match rest.find('/') {
        Some(at) => (&rest[..at], &rest[at..]),
        None => (rest, "/"),
    };
    let addr = if authority.contains(':') {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    let addr = addr.to_socket_addrs().ok()?.next()?;
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT).ok()?;
    stream.set_read_timeout(Some(TIMEOUT)).ok()?;
    stream.set_write_timeout(Some(TIMEOUT)).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => response.extend_from_slice(&chunk[..n]),
            Err(_) => break,
        }
        if response.len() > MAX_RESPONSE_BYTES {
            return None;
        }
    }
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_string())
}

const TIMEOUT: Duration = Duration::from_secs(2);
const MAX_RESPONSE_BYTES: usize = 8 << 20;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_text_gives_node_cpu_and_rss() {
        let text = "# HELP chat_connections x\nchat_connections{node=\"n7\",shard=\"0\"} 3\n\
                    chat_connections{node=\"n7\",shard=\"1\"} 2\n\
                    process_cpu_seconds_total{node=\"n7\"} 12.5\nprocess_resident_memory_bytes{node=\"n7\"} 1048576\n\
                    chat_kafka_connected{node=\"n7\"} 0\n\
                    chat_kafka_lag_seconds_sum{node=\"n7\"} 0.25\nchat_kafka_lag_seconds_count{node=\"n7\"} 100\n";
        let r = parse_metrics(text, "http://x/metrics");
        assert_eq!(r.name, "n7");
        assert_eq!(r.cpu_s, Some(12.5));
        assert_eq!(r.rss_bytes, Some(1_048_576.0));
        assert_eq!(r.shards, Some(2));
        assert_eq!(r.kafka_connected, Some(false));
        assert_eq!(r.kafka_lag, Some((0.25, 100.0)));
        let bare = parse_metrics("up 1\n", "http://x/metrics");
        assert_eq!((bare.name.as_str(), bare.cpu_s), ("http://x/metrics", None));
        assert_eq!((bare.shards, bare.kafka_connected, bare.kafka_lag), (None, None, None));
    }

    #[test]
    fn proc_reads_this_process() {
        let pid = std::process::id();
        assert!(proc_cpu_s(pid).is_some());
        assert!(proc_rss_bytes(pid).is_some_and(|b| b > 0.0));
    }

    #[test]
    fn cpu_used_matches_servers_by_name() {
        let r = |name: &str, cpu, lag| Reading {
            name: name.into(),
            source: "metrics".into(),
            cpu_s: Some(cpu),
            rss_bytes: None,
            shards: Some(2),
            kafka_connected: Some(true),
            kafka_lag: Some(lag),
        };
        let before = Sample {
            at_ns: 0,
            readings: vec![r("a", 1.0, (0.0, 0.0)), r("b", 5.0, (1.0, 100.0))],
            host_ticks: Some((100, 1000)),
        };
        let after = Sample {
            at_ns: 5_000_000_000,
            readings: vec![r("b", 7.5, (1.5, 200.0)), r("c", 1.0, (0.0, 0.0))],
            host_ticks: Some((700, 2000)),
        };
        let used = cpu_used(&before, &after);
        assert_eq!(used.len(), 1);
        let b = &used[0];
        assert_eq!((b.name.as_str(), b.source.as_str(), b.cpu_s), ("b", "metrics", 2.5));
        assert_eq!(b.cores_used, Some(0.5));
        assert_eq!((b.shards, b.kafka_down), (Some(2), Some(false)));
        assert_eq!(b.kafka_lag_ms, Some(5.0));
        assert_eq!(host_busy(&before, &after), Some(0.6));
    }

    #[test]
    fn host_ticks_leave_idle_and_iowait_out() {
        assert_eq!(parse_host_ticks("cpu  10 2 8 70 5 1 1 3 0 0"), Some((25, 100)));
        assert_eq!(parse_host_ticks("cpu0 1 1 1 1"), None);
        assert!(host_ticks().is_some_and(|(busy, total)| busy <= total));
    }

    #[test]
    fn unreachable_metrics_are_skipped() {
        let probe = Probe {
            urls: vec!["http://127.0.0.1:1/metrics".into()],
            pids: vec![std::process::id()],
        };
        let s = probe.sample();
        assert_eq!(s.readings.len(), 1);
        assert_eq!(s.readings[0].source, "proc");
    }
}
