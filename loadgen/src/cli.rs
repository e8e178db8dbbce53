//! The command line: `run`, `sweep`, `hold`, `merge` and `plan`, with the scenario flags
//! shared by the first three. `--scenario FILE` names a TOML file whose keys are the flag names
//! without `--`; flags given on the command line win over the file. `parse` turns
//! `std::env::args()` into a `Cli`; `scenario.rs` checks the values.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// The whole command line.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "loadgen",
    version,
    about = "Open-loop tail-latency load generator for STOMP/WebSocket chat clusters"
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Plays one scenario and reports latency, losses, errors and CPU.
    #[command(args_override_self = true)]
    Run(ScenarioArgs),
    /// Raises the publish rate step by step until a latency or loss objective breaks.
    #[command(args_override_self = true)]
    Sweep(SweepArgs),
    /// Opens idle subscribed connections, holds them, reports server memory per connection.
    #[command(args_override_self = true)]
    Hold(ScenarioArgs),
    /// Combines the reports (and latency logs) of several runs into one.
    Merge(MergeArgs),
    /// Capacity planning: climbs room-size mixes and densities on 1- and 2-node local
    /// clusters (`deploy/cluster.sh`) to their p99 knees and sizes a population.
    Plan(PlanArgs),
}

/// How subscribers are spread over channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Spread {
    /// The same number of subscribers in every channel (round-robin).
    Uniform,
    /// Channel k gets a share proportional to 1/(k+1)^s (`--zipf-exponent`).
    Zipf,
    /// Channel 0 gets `--hot-share` of the subscribers, the rest are uniform.
    Hot,
}

/// How a simulated user reaches the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Transport {
    /// WebSocket: raw STOMP (`ws://` targets) or SockJS's WebSocket transport (`http://`).
    Websocket,
    /// SockJS's xhr-streaming (`http://` targets): one long POST receives, `xhr_send`
    /// POSTs send.
    XhrStreaming,
    /// SockJS's xhr-polling (`http://` targets): a POST per batch received.
    XhrPolling,
}

impl Transport {
    /// Its name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Transport::Websocket => "websocket",
            Transport::XhrStreaming => "xhr-streaming",
            Transport::XhrPolling => "xhr-polling",
        }
    }
}

/// Flags that describe a scenario (also the keys of a `--scenario` TOML file).
#[derive(Debug, Clone, Args)]
pub struct ScenarioArgs {
    /// A TOML file with any of these flags as keys (flags on the command line win).
    #[arg(long)]
    pub scenario: Option<PathBuf>,
    /// Where to connect, repeatable; connections are spread round-robin.
    /// `ws://host:port/ws` (raw STOMP) or `http://host:port/letters-chat-server` (SockJS);
    /// `wss://` and `https://` through TLS (see `--ca-file`).
    #[arg(long = "target", value_name = "URL")]
    pub targets: Vec<String>,
    /// How users connect: WebSocket, or SockJS's HTTP fallbacks (`http://` targets), to
    /// plan capacity for users whose network blocks WebSockets.
    #[arg(long, value_enum, default_value_t = Transport::Websocket)]
    pub transport: Transport,
    /// Connections (simulated users).
    #[arg(long, default_value_t = 1000)]
    pub connections: u32,
    /// Channels; each connection subscribes to one.
    #[arg(long, default_value_t = 100)]
    pub channels: u32,
    /// How subscribers are spread over channels.
    #[arg(long, value_enum, default_value_t = Spread::Uniform)]
    pub spread: Spread,
    /// Exponent of the zipf spread.
    #[arg(long, default_value_t = 1.0)]
    pub zipf_exponent: f64,
    /// Share of subscribers in channel 0 with `--spread hot`.
    #[arg(long, default_value_t = 0.5)]
    pub hot_share: f64,
    /// Publishers: the first P connections also publish to their own channel.
    #[arg(long, default_value_t = 100)]
    pub publishers: u32,
    /// Publish rate, messages per second over all publishers.
    #[arg(long, default_value_t = 2000.0)]
    pub rate: f64,
    /// Publish rate per publisher (overrides `--rate`).
    #[arg(long)]
    pub rate_per_publisher: Option<f64>,
    /// Size of each chat JSON body, bytes.
    #[arg(long, default_value_t = 128)]
    pub size: usize,
    /// Measured seconds.
    #[arg(long, default_value_t = 20.0)]
    pub duration: f64,
    /// Seconds of publishing before measuring starts.
    #[arg(long, default_value_t = 3.0)]
    pub warmup: f64,
    /// Seconds after the last publish to wait for stragglers before counting them lost.
    #[arg(long, default_value_t = 2.0)]
    pub grace: f64,
    /// New connections per second (0: as fast as `--connect-concurrency` allows).
    #[arg(long, default_value_t = 0.0)]
    pub ramp: f64,
    /// Handshakes in flight per shard while connecting.
    #[arg(long, default_value_t = 128)]
    pub connect_concurrency: u32,
    /// Seconds a connection may take from TCP connect to its subscription receipt.
    #[arg(long, default_value_t = 10.0)]
    pub connect_timeout: f64,
    /// Reconnect a connection dropped during the run (close, EOF, reset, error) with a
    /// jittered exponential backoff, handshake and resubscribe again; publishers keep
    /// their schedule (what falls due while disconnected is counted as unsent).
    #[arg(long)]
    pub reconnect: bool,
    /// Resubscribe from the last `x-offset` seen (`x-since`) with a receipt, and read
    /// `x-recovered` from it. Implies `--reconnect`.
    #[arg(long)]
    pub resume: bool,
    /// Exit with status 4 when any measured message was lost or received twice (for CI
    /// and fault drills: `cluster.sh chaos --kill 1 -- --resume --fail-on-loss`). With
    /// `--confirm`, only losses of messages the server confirmed count.
    #[arg(long)]
    pub fail_on_loss: bool,
    /// Ask a `RECEIPT` for every `SEND`, as a publisher that must know what the server
    /// stored; the report tells losses of confirmed messages from those of messages whose
    /// receipt never came (a publisher would send those again).
    #[arg(long)]
    pub confirm: bool,
    /// Exit with status 4 when any measured message arrived after a later one of its
    /// publisher.
    #[arg(long)]
    pub fail_on_reorder: bool,
    /// Wait before the first reconnect attempt, ms.
    #[arg(long, default_value_t = 100)]
    pub reconnect_initial_ms: u64,
    /// Each failed attempt multiplies the wait by this.
    #[arg(long, default_value_t = 2.0)]
    pub reconnect_factor: f64,
    /// Longest wait between attempts, ms (jitter included).
    #[arg(long, default_value_t = 5000)]
    pub reconnect_max_ms: u64,
    /// Spread of each wait, as a share of it (0.5: ±50 %).
    #[arg(long, default_value_t = 0.5)]
    pub reconnect_jitter: f64,
    /// Local source addresses, round-robin: `127.0.0.1-127.0.0.8` or `a,b,c`.
    #[arg(long)]
    pub source_ips: Option<String>,
    /// Load generator shards (executors); default: one per core of `--cpus`.
    #[arg(long)]
    pub shards: Option<usize>,
    /// Cores to pin shards to, e.g. `0,2-3`; default: all cores.
    #[arg(long)]
    pub cpus: Option<String>,
    /// Channel names are this prefix and a number.
    #[arg(long, default_value = "c")]
    pub channel_prefix: String,
    /// PEM certificates to trust for `wss://` and `https://` targets (e.g. the self-signed
    /// one of `deploy/cluster.sh up --tls`); default: the Mozilla roots.
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
    /// A JWT every connection sends in `CONNECT` (`Authorization: Bearer`).
    #[arg(long, conflicts_with = "jwt_secret_file")]
    pub token_file: Option<PathBuf>,
    /// An HS256 secret (the engine's `--auth-jwt-secret-file`): each user signs its own
    /// token, `sub` = `user-N`, valid for a day.
    #[arg(long)]
    pub jwt_secret_file: Option<PathBuf>,
    /// Metrics endpoints to scrape before and after (default: `/metrics` of each plain
    /// target).
    #[arg(long = "metrics", value_name = "URL")]
    pub metrics: Vec<String>,
    /// Server processes to read CPU and RSS of from /proc when `/metrics` lacks them.
    #[arg(long = "server-pid", value_name = "PID")]
    pub server_pids: Vec<u32>,
    /// Write report.json, latency.hlog and SVG plots into this directory.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Run id stamped into every message (default: random).
    #[arg(long)]
    pub run_id: Option<u64>,
    /// No live progress line.
    #[arg(long)]
    pub quiet: bool,
    /// io_uring buffer memory per shard, KiB (locked memory is capped per process).
    #[arg(long, default_value_t = 128)]
    pub io_memory_kib: usize,
    /// io_uring submission ring depth per shard.
    #[arg(long, default_value_t = 4096)]
    pub ring_depth: usize,
    /// Each shard spins this long, µs, before it sleeps: its receivers stay awake, so
    /// on loopback the server no longer pays for waking them (0: sleep at once).
    #[arg(long, default_value_t = 0)]
    pub spin_us: u64,
    /// Receivers look at their sockets every this many µs (a non-blocking `recv`)
    /// instead of arming a readiness wake-up (0: wait for readiness). With nothing armed
    /// in the kernel to wake them, a server's `send()` on loopback costs only its own
    /// work and the TCP path, as with remote clients (see the README). Adds up to this
    /// much latency. Plain TCP only (TLS connections wait as usual).
    #[arg(long, default_value_t = 0)]
    pub poll_us: u64,
    /// Test aid: this many subscribers stop reading for `--stall-ms`.
    #[arg(long, default_value_t = 0)]
    pub stall_subscribers: u32,
    /// Test aid: how long stalled subscribers stop reading, ms.
    #[arg(long, default_value_t = 0)]
    pub stall_ms: u64,
    /// Test aid: seconds into the measured window when the stall starts.
    #[arg(long, default_value_t = 0.5)]
    pub stall_at: f64,
    /// Test aid: publisher 0 sends this many messages twice.
    #[arg(long, default_value_t = 0)]
    pub inject_dup: u32,
    /// Test aid: publisher 0 swaps this many pairs of consecutive messages.
    #[arg(long, default_value_t = 0)]
    pub inject_reorder: u32,
}

/// `sweep`: a scenario plus the rate steps and objectives.
#[derive(Debug, Clone, Args)]
pub struct SweepArgs {
    /// The scenario (its `--rate` is replaced by each step's rate).
    #[command(flatten)]
    pub scenario: ScenarioArgs,
    /// First rate, messages per second.
    #[arg(long, default_value_t = 1000.0)]
    pub rate_start: f64,
    /// Last rate tried.
    #[arg(long, default_value_t = 1_000_000.0)]
    pub rate_max: f64,
    /// Each step multiplies the rate by this.
    #[arg(long, default_value_t = 1.5)]
    pub rate_factor: f64,
    /// Measured seconds per step.
    #[arg(long, default_value_t = 10.0)]
    pub step_secs: f64,
    /// Latency objective: p99 of delivery latency, ms.
    #[arg(long, default_value_t = 10.0)]
    pub slo_p99_ms: f64,
    /// Loss objective: lost / expected.
    #[arg(long, default_value_t = 0.001)]
    pub slo_loss: f64,
    /// Users to size a cluster for.
    #[arg(long)]
    pub target_users: Option<u64>,
    /// Publish rate (messages per second) to size a cluster for.
    #[arg(long)]
    pub target_rate: Option<f64>,
}

/// How users are spread over rooms in a capacity plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mix {
    /// Rooms of 10.
    Small,
    /// Rooms of 100.
    Large,
    /// A zipf spread (exponent 1) over rooms averaging 25: a few big, many small.
    Mixed,
}

/// `plan`: which clusters and scenarios to climb, the objectives and the population.
#[derive(Debug, Clone, Args)]
pub struct PlanArgs {
    /// The local cluster script: `up --nodes N` before each size, `down` at the end.
    #[arg(long, default_value = "deploy/cluster.sh")]
    pub cluster_sh: PathBuf,
    /// The cluster's port (its `CLUSTER_PORT`): node K listens on port + K, and loadgen
    /// connects to the nodes directly.
    #[arg(long, default_value_t = 8080)]
    pub cluster_port: u16,
    /// Cluster sizes to measure, e.g. `1,2`.
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    pub nodes: Vec<u32>,
    /// Room-size mixes (default small,large; with --full also mixed).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub mixes: Vec<Mix>,
    /// Users (connections) per node (default 200; with --full 250,1000).
    #[arg(long, value_delimiter = ',')]
    pub users_per_node: Vec<u32>,
    /// First step: messages per user per minute.
    #[arg(long, default_value_t = 6.0)]
    pub mpm_start: f64,
    /// Each step multiplies the messages per user per minute by this.
    #[arg(long, default_value_t = 2.0)]
    pub mpm_factor: f64,
    /// Last step tried.
    #[arg(long, default_value_t = 1920.0)]
    pub mpm_max: f64,
    /// Measured seconds per step (default 5; with --full 15).
    #[arg(long)]
    pub step_secs: Option<f64>,
    /// Warm-up seconds per step (default 2; with --full 5).
    #[arg(long)]
    pub warmup: Option<f64>,
    /// The full plan: three mixes, two densities, longer steps (about an hour on 2
    /// cores); without it the quick plan (a few minutes).
    #[arg(long)]
    pub full: bool,
    /// Latency objective: p99 of delivery latency, ms.
    #[arg(long, default_value_t = 50.0)]
    pub slo_p99_ms: f64,
    /// Loss objective: lost / expected.
    #[arg(long, default_value_t = 0.001)]
    pub slo_loss: f64,
    /// The population to size for, users.
    #[arg(long, default_value_t = 100_000)]
    pub users: u64,
    /// Their messages per user per minute.
    #[arg(long, default_value_t = 2.0)]
    pub msgs_per_user_per_min: f64,
    /// Cores for the load generator's shards (each run's `--cpus`); default all.
    #[arg(long)]
    pub cpus: Option<String>,
    /// Where plan.md, plan.json, the plots and every step's files go.
    #[arg(long)]
    pub out: PathBuf,
}

/// `merge DIR... --out DIR`.
#[derive(Debug, Clone, Args)]
pub struct MergeArgs {
    /// Directories holding report.json (and latency.hlog) of earlier runs.
    #[arg(required = true)]
    pub dirs: Vec<PathBuf>,
    /// Where the merged report goes.
    #[arg(long)]
    pub out: PathBuf,
}

/// A scenario file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The command line did not parse.
    #[error("{0}")]
    Cli(#[from] clap::Error),
    /// The scenario file could not be read or is not a table of flags.
    #[error("scenario file {path}: {reason}")]
    File {
        /// The file.
        path: String,
        /// What went wrong.
        reason: String,
    },
}

/// Parses `args` (program name first), merging a `--scenario` file under the flags.
///
/// # Errors
/// A bad flag (`Cli`, which prints itself with `exit()`) or an unusable file.
pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<Cli, Error> {
    let args: Vec<String> = args.into_iter().collect();
    let first = Cli::try_parse_from(&args)?;
    let scenario = match &first.command {
        Command::Run(s) | Command::Hold(s) => s.scenario.clone(),
        Command::Sweep(s) => s.scenario.scenario.clone(),
        Command::Merge(_) | Command::Plan(_) => None,
    };
    let Some(path) = scenario else {
        return Ok(first);
    };
    let given: Vec<&str> = args
        .iter()
        .filter_map(|a| a.strip_prefix("--"))
        .map(|a| a.split('=').next().unwrap_or(a))
        .collect();
    let file = file_args(&path, &given)?;
    // argv[0], the subcommand, the file's flags, then the command line's own flags.
    let mut merged: Vec<String> = args.iter().take(2).cloned().collect();
    merged.extend(file);
    merged.extend(args.iter().skip(2).cloned());
    Ok(Cli::try_parse_from(merged)?)
}

/// Turns a TOML table into `--key value` arguments, leaving out keys in `given`.
fn file_args(path: &PathBuf, given: &[&str]) -> Result<Vec<String>, Error> {
    let file_error = |reason: String| Error::File {
        path: path.display().to_string(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| file_error(e.to_string()))?;
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| file_error(e.to_string()))?;
    let mut args = Vec::new();
    for (key, value) in table {
        let flag = match key.as_str() {
            "targets" => "target".to_string(),
            "server-pids" | "server_pids" => "server-pid".to_string(),
            other => other.replace('_', "-"),
        };
        if given.contains(&flag.as_str()) || flag == "scenario" {
            continue;
        }
        let scalar = |v: &toml::Value| match v {
            toml::Value::String(s) => Ok(s.clone()),
            toml::Value::Integer(i) => Ok(i.to_string()),
            toml::Value::Float(f) => Ok(f.to_string()),
            other => Err(file_error(format!("key `{key}`: unsupported value {other}"))),
        };
        match value {
            toml::Value::Boolean(true) => args.push(format!("--{flag}")),
            toml::Value::Boolean(false) => {}
            toml::Value::Array(items) => {
                for item in &items {
                    args.push(format!("--{flag}"));
                    args.push(scalar(item)?);
                }
            }
            other => {
                args.push(format!("--{flag}"));
                args.push(scalar(&other)?);
            }
        }
    }
    Ok(args)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_args(args: &[&str]) -> Result<Cli, Error> {
        parse(std::iter::once("loadgen").chain(args.iter().copied()).map(String::from))
    }

    #[test]
    fn the_shipped_scenarios_parse_and_plan() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios");
        let mut names = Vec::new();
        for entry in std::fs::read_dir(dir).expect("loadgen/scenarios") {
            let path = entry.expect("entry").path();
            let file = path.to_str().expect("utf-8 path");
            let Ok(Cli {
                command: Command::Run(args),
            }) = parse_args(&["run", "--scenario", file, "--target", "ws://127.0.0.1:1/ws"])
            else {
                panic!("{file} does not parse");
            };
            let scenario = crate::scenario::Scenario::from_args(&args).unwrap_or_else(|e| panic!("{file}: {e}"));
            assert!(scenario.publishers > 0, "{file}");
            names.push(path.file_stem().map(|s| s.to_string_lossy().into_owned()));
        }
        names.sort();
        let names: Vec<String> = names.into_iter().flatten().collect();
        assert_eq!(names, ["burst-b", "room-10k", "steady-c", "steady-d"]);
    }

    #[test]
    fn defaults_match_the_deploy_scripts() {
        let Ok(Cli {
            command: Command::Run(s),
        }) = parse_args(&["run", "--target", "ws://127.0.0.1:1/ws"])
        else {
            panic!("run parses")
        };
        assert_eq!((s.connections, s.channels, s.publishers, s.size), (1000, 100, 100, 128));
        assert_eq!((s.rate, s.duration, s.warmup), (2000.0, 20.0, 3.0));
        assert_eq!(s.transport, Transport::Websocket);
        let Ok(Cli {
            command: Command::Run(s),
        }) = parse_args(&["run", "--target", "http://h:1/b", "--transport", "xhr-streaming"])
        else {
            panic!("run parses")
        };
        assert_eq!(s.transport.name(), "xhr-streaming");
    }

    #[test]
    fn scenario_file_sits_under_flags() {
        let dir = std::env::temp_dir().join(format!("loadgen-cli-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("s.toml");
        std::fs::write(&path, "targets = [\"ws://127.0.0.1:1/ws\", \"ws://127.0.0.1:2/ws\"]\nconnections = 50\nrate = 10.5\nquiet = true\n")
            .expect("write");
        let p = path.to_str().unwrap_or_default();
        let Ok(Cli {
            command: Command::Run(s),
        }) = parse_args(&["run", "--scenario", p, "--connections", "7"])
        else {
            panic!("run parses")
        };
        assert_eq!(s.targets.len(), 2);
        assert_eq!(s.connections, 7);
        assert_eq!(s.rate, 10.5);
        assert!(s.quiet);
        let Ok(Cli {
            command: Command::Run(s),
        }) = parse_args(&["run", "--scenario", p, "--target", "ws://h:3/ws"])
        else {
            panic!("run parses")
        };
        assert_eq!(s.targets, vec!["ws://h:3/ws".to_string()]);
    }
}
