//! `plan`: capacity planning. Starts a local cluster of each size in `--nodes` with
//! `deploy/cluster.sh up`, and on each climbs the scenarios that matter (room-size mixes ×
//! users per node) at rising messages per user per minute with `sweep::climb`, until the
//! p99 or the loss objective breaks. Each climb's knee (`sweep::knee`) and what limited
//! the step that broke it (`report::limit`) go into a sizing for `--users` at
//! `--msgs-per-user-per-min`: how many nodes of this size, and what limits first (CPU,
//! memory or Kafka). Writes `plan.md` (`render.rs`), SVG plots (`svg.rs`), `plan.json` and
//! every step's files; `cluster.sh down` at the end.

mod render;
pub mod svg;

use std::path::{Path, PathBuf};
use std::process::Command;

use clap::Parser as _;
use serde::{Deserialize, Serialize};

use crate::cli::{Cli, Command as Sub, Mix, PlanArgs, ScenarioArgs};
use crate::output;
use crate::report::limit::Reading;
use crate::server::{Probe, Sample};
use crate::sweep::{self, Knee, Objectives, Step};

/// One climb: a mix and a density on a cluster size.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Series {
    /// The room-size mix.
    pub mix: String,
    /// Nodes in the cluster.
    pub nodes: u32,
    /// Users (connections) per node.
    pub users_per_node: u32,
    /// Channels (rooms) over all nodes.
    pub channels: u32,
    /// Every step, with its rate in messages per second over all users.
    pub steps: Vec<Step>,
    /// Where the objectives broke, in messages per second over all users.
    pub knee: Option<Knee>,
    /// What limited the step that broke the objectives.
    pub limit: Option<Reading>,
    /// Server memory per user, bytes (the nodes' mean): RSS at the highest step above RSS
    /// when the cluster size came up, history and buffers included (an upper bound).
    pub bytes_per_connection: Option<f64>,
    /// Deliveries per second per node at the last good step.
    pub deliveries_per_node: Option<f64>,
}

impl Series {
    /// Users over all nodes.
    pub fn users(&self) -> u32 {
        self.users_per_node * self.nodes
    }

    /// A rate over all users as messages per user per minute.
    pub fn mpm(&self, rate_per_s: f64) -> f64 {
        rate_per_s * 60.0 / f64::from(self.users().max(1))
    }
}

/// The answer for one mix: nodes for the population and what limits first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sizing {
    /// The room-size mix.
    pub mix: String,
    /// Users one node serves at the asked rate within the objectives.
    pub users_per_node: f64,
    /// Nodes for the population (rounded up).
    pub nodes: u64,
    /// What limits first: the broken step's limit, or memory.
    pub limited_by: String,
    /// How it was worked out.
    pub basis: String,
}

/// The whole plan, as `plan.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// The command that made it.
    pub command: String,
    /// Quick or full.
    pub mode: String,
    /// The objectives.
    pub slo_p99_ms: f64,
    /// Loss objective.
    pub slo_loss: f64,
    /// Population sized for.
    pub users: u64,
    /// Their messages per user per minute.
    pub msgs_per_user_per_min: f64,
    /// Cores and memory of the host, GiB.
    pub host_cores: u32,
    /// Host memory, GiB.
    pub host_memory_gib: f64,
    /// Memory a node of this size has (the host's per core: a node here is one core), GiB.
    pub node_memory_gib: f64,
    /// The host's load average (1 min) when the plan started and when it ended.
    pub load_before: Option<f64>,
    /// At the end.
    pub load_after: Option<f64>,
    /// UTC start, seconds since the epoch.
    pub started_unix_s: u64,
    /// Wall time, seconds.
    pub took_s: f64,
    /// Every climb.
    pub series: Vec<Series>,
    /// One answer per mix.
    pub sizing: Vec<Sizing>,
}

/// A plan that could not run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A step failed.
    #[error(transparent)]
    Sweep(#[from] sweep::Error),
    /// A scenario the plan built did not parse.
    #[error("scenario: {0}")]
    Scenario(String),
    /// The cluster script failed.
    #[error("{script} {what}: {reason}")]
    Cluster {
        /// The script.
        script: String,
        /// `up --nodes N` or `down`.
        what: String,
        /// Its exit or spawn error.
        reason: String,
    },
    /// A file could not be written.
    #[error(transparent)]
    Output(#[from] output::Error),
    /// A flag out of range.
    #[error("--{0}: {1}")]
    Invalid(&'static str, &'static str),
}

/// Runs the plan and writes its files; returns it.
///
/// # Errors
/// A flag out of range, a cluster that does not start, a step that cannot run, or files
/// that cannot be written.
pub fn plan(args: &PlanArgs) -> Result<Plan, Error> {
    let settings = Settings::of(args)?;
    let started = std::time::Instant::now();
    let started_unix_s = crate::stats::now_ns() / 1_000_000_000;
    let load_before = load_average();
    let objectives = Objectives {
        p99_ms: args.slo_p99_ms,
        loss: args.slo_loss,
    };
    let cluster = Cluster {
        script: args.cluster_sh.clone(),
        port: args.cluster_port,
    };
    let mut series = Vec::new();
    let mut nodes = args.nodes.clone();
    nodes.sort_unstable();
    nodes.dedup();
    for &n in &nodes {
        cluster.up(n)?;
        // Each node's memory before this size's climbs: their growth is what users cost.
        let fresh = Probe {
            urls: (1..=n)
                .map(|k| format!("http://127.0.0.1:{}/metrics", u32::from(args.cluster_port) + k))
                .collect(),
            pids: Vec::new(),
        }
        .sample();
        for &mix in &settings.mixes {
            for &users_per_node in &settings.users_per_node {
                let label = format!("plan {} nodes={n} users/node={users_per_node}", mix_name(mix));
                let dir = args.out.join(format!("{}-{n}n-{users_per_node}u", mix_name(mix)));
                let base = scenario_args(args, &settings, mix, n, users_per_node)?;
                let users = f64::from(users_per_node * n);
                let rates = std::iter::successors(Some(args.mpm_start), |m| Some(m * args.mpm_factor))
                    .take_while(|&m| m <= args.mpm_max)
                    .map(|mpm| mpm * users / 60.0);
                let climb = sweep::climb(&base, rates, settings.step_secs, objectives, true, Some(&dir), &label)?;
                series.push(series_of(mix, n, users_per_node, &base, climb, objectives, &fresh));
                if crate::run::interrupted() {
                    break;
                }
            }
        }
        if crate::run::interrupted() {
            break;
        }
    }
    cluster.down()?;
    let (host_cores, host_memory_gib) = host();
    let node_memory_gib = host_memory_gib / f64::from(host_cores.max(1));
    let sizing = settings
        .mixes
        .iter()
        .filter_map(|&mix| size(&series, mix_name(mix), args, node_memory_gib))
        .collect();
    let plan = Plan {
        command: command_line(),
        mode: if args.full { "full" } else { "quick" }.into(),
        slo_p99_ms: args.slo_p99_ms,
        slo_loss: args.slo_loss,
        users: args.users,
        msgs_per_user_per_min: args.msgs_per_user_per_min,
        host_cores,
        host_memory_gib,
        node_memory_gib,
        load_before,
        load_after: load_average(),
        started_unix_s,
        took_s: started.elapsed().as_secs_f64(),
        series,
        sizing,
    };
    render::write(&args.out, &plan)?;
    Ok(plan)
}

/// The scenario values a plan uses, `--full` or quick.
struct Settings {
    mixes: Vec<Mix>,
    users_per_node: Vec<u32>,
    step_secs: f64,
    warmup: f64,
}

impl Settings {
    fn of(args: &PlanArgs) -> Result<Self, Error> {
        let positive = |v: f64| v.is_finite() && v > 0.0;
        if !positive(args.mpm_start)
            || !positive(args.mpm_factor - 1.0)
            || args.mpm_max.is_nan()
            || args.mpm_max < args.mpm_start
        {
            return Err(Error::Invalid(
                "mpm-start",
                "mpm-start above 0, mpm-factor above 1, mpm-max at least mpm-start",
            ));
        }
        if args.nodes.is_empty() || args.nodes.iter().any(|&n| n == 0 || n > 9) {
            return Err(Error::Invalid("nodes", "a list of cluster sizes from 1 to 9"));
        }
        if args.users_per_node.contains(&0) {
            return Err(Error::Invalid("users-per-node", "must be above 0"));
        }
        let pick = |given: Option<f64>, quick: f64, full: f64| given.unwrap_or(if args.full { full } else { quick });
        let settings = Settings {
            mixes: match (&args.mixes[..], args.full) {
                ([], false) => vec![Mix::Small, Mix::Large],
                ([], true) => vec![Mix::Small, Mix::Large, Mix::Mixed],
                (given, _) => given.to_vec(),
            },
            users_per_node: match (&args.users_per_node[..], args.full) {
                ([], false) => vec![200],
                ([], true) => vec![250, 1000],
                (given, _) => given.to_vec(),
            },
            step_secs: pick(args.step_secs, 5.0, 15.0),
            warmup: pick(args.warmup, 2.0, 5.0),
        };
        if !positive(settings.step_secs) || settings.warmup.is_nan() || settings.warmup < 0.0 {
            return Err(Error::Invalid("step-secs", "step-secs above 0, warmup at least 0"));
        }
        Ok(settings)
    }
}

/// Rooms of 10, of 100, or a zipf spread averaging 25.
fn room_size(mix: Mix) -> u32 {
    match mix {
        Mix::Small => 10,
        Mix::Large => 100,
        Mix::Mixed => 25,
    }
}

fn mix_name(mix: Mix) -> &'static str {
    match mix {
        Mix::Small => "small",
        Mix::Large => "large",
        Mix::Mixed => "mixed",
    }
}

/// The base scenario of one climb: users spread over the nodes directly (not through
/// Nginx, so that each node's share is known), one in ten users publishing (at least
/// one per room).
fn scenario_args(
    args: &PlanArgs,
    settings: &Settings,
    mix: Mix,
    nodes: u32,
    users_per_node: u32,
) -> Result<ScenarioArgs, Error> {
    let users = users_per_node * nodes;
    let channels = users.div_ceil(room_size(mix)).max(1);
    let publishers = (users / 10).max(channels).min(users);
    let mut argv: Vec<String> = ["loadgen", "run"].map(String::from).to_vec();
    for k in 1..=nodes {
        let port = u32::from(args.cluster_port) + k;
        argv.extend(["--target".into(), format!("ws://127.0.0.1:{port}/ws")]);
    }
    argv.extend(
        [
            "--connections",
            &users.to_string(),
            "--channels",
            &channels.to_string(),
            "--publishers",
            &publishers.to_string(),
            "--spread",
            if mix == Mix::Mixed { "zipf" } else { "uniform" },
            "--warmup",
            &settings.warmup.to_string(),
            "--channel-prefix",
            &format!("plan-{}-{nodes}-{users_per_node}-", mix_name(mix)),
            "--quiet",
        ]
        .map(String::from),
    );
    if let Some(cpus) = &args.cpus {
        argv.extend(["--cpus".into(), cpus.clone()]);
    }
    match Cli::try_parse_from(&argv) {
        Ok(Cli {
            command: Sub::Run(scenario),
        }) => Ok(scenario),
        Ok(_) => Err(Error::Scenario("not a run".into())),
        Err(e) => Err(Error::Scenario(e.to_string())),
    }
}

/// One climb's series. Memory per user: each node's RSS at the start of the highest step
/// measured above its RSS when this cluster size came up (`fresh`), over its users:
/// connections, their buffers and the history of the messages so far (bounded by
/// `--history-*`), so an upper bound of what a user costs.
fn series_of(
    mix: Mix,
    nodes: u32,
    users_per_node: u32,
    base: &ScenarioArgs,
    climb: sweep::Climb,
    objectives: Objectives,
    fresh: &Sample,
) -> Series {
    let knee = sweep::knee(&climb.steps, objectives);
    let last_good = climb.knee.as_ref();
    let highest = climb.broken.as_ref().or(last_good);
    let growth: Vec<f64> = highest
        .map(|r| {
            r.memory
                .iter()
                .filter_map(|m| {
                    let before = fresh.readings.iter().find(|f| f.name == m.name)?.rss_bytes?;
                    Some((m.rss_after_bytes - before).max(0.0) / f64::from(users_per_node.max(1)))
                })
                .collect()
        })
        .unwrap_or_default();
    Series {
        mix: mix_name(mix).into(),
        nodes,
        users_per_node,
        channels: base.channels,
        knee,
        limit: climb.steps.last().filter(|s| !s.ok).and_then(|s| s.limit.clone()),
        bytes_per_connection: (!growth.is_empty()).then(|| growth.iter().sum::<f64>() / growth.len() as f64),
        deliveries_per_node: last_good.map(|r| r.throughput.delivered_per_s / f64::from(nodes.max(1))),
        steps: climb.steps,
    }
}

/// Sizes the population for `mix` from its climbs on the largest cluster measured (the
/// one that pays the cross-node cost), densest first: users per node at the asked rate =
/// the knee's messages per second per node ÷ the asked rate per user (linear in the
/// message rate, beyond the density measured when the asked rate is below the knee's),
/// then bounded by memory: 80 % of a node's share of RAM ÷ RSS growth per connection.
pub fn size(series: &[Series], mix: &str, args: &PlanArgs, node_memory_gib: f64) -> Option<Sizing> {
    let largest = series.iter().filter(|s| s.mix == mix).map(|s| s.nodes).max()?;
    let densest = series
        .iter()
        .filter(|s| s.mix == mix && s.nodes == largest)
        .max_by_key(|s| s.users_per_node)?;
    let per_user_per_s = args.msgs_per_user_per_min / 60.0;
    let Some(knee) = densest.knee else {
        return Some(Sizing {
            mix: mix.into(),
            users_per_node: 0.0,
            nodes: 0,
            limited_by: densest.limit.as_ref().map_or("?", |l| l.limit.name()).into(),
            basis: format!(
                "even the first step ({:.1} msgs/user/min) broke the objectives on {largest} node(s) with {} users each: no sizing",
                densest.steps.first().map_or(0.0, |s| densest.mpm(s.rate_per_s)),
                densest.users_per_node
            ),
        });
    };
    let rate_per_node = knee.estimate / f64::from(largest);
    let users_cpu = rate_per_node / per_user_per_s.max(f64::MIN_POSITIVE);
    let users_memory = densest
        .bytes_per_connection
        .filter(|&b| b > 0.0)
        .map(|b| 0.8 * node_memory_gib * f64::from(1u32 << 30) / b);
    let cpu_limit = match (&densest.limit, knee.reached) {
        (Some(reading), true) => reading.limit.name().to_string(),
        _ => "not reached (the knee lies beyond the last rate tried)".into(),
    };
    let (users_per_node, limited_by) = match users_memory {
        Some(m) if m < users_cpu => (m, "memory".to_string()),
        _ => (users_cpu, cpu_limit),
    };
    let nodes = (args.users as f64 / users_per_node.max(1.0)).ceil().max(1.0) as u64;
    let mut basis = format!(
        "knee {:.0} msg/s per node ({:.1} msgs/user/min × {} users/node) on {largest} node(s){}; {} users/node at {} msgs/user/min",
        rate_per_node,
        densest.mpm(knee.estimate),
        densest.users_per_node,
        if knee.reached { "" } else { ", a lower bound" },
        users_cpu.floor(),
        args.msgs_per_user_per_min
    );
    if users_cpu > f64::from(densest.users_per_node) {
        basis.push_str(&format!(
            " (extrapolated linearly beyond the {} users/node measured)",
            densest.users_per_node
        ));
    }
    if let Some(m) = users_memory {
        basis.push_str(&format!(
            "; memory holds {:.0} users/node ({:.0} B per user with history and buffers, 80% of {node_memory_gib:.1} GiB)",
            m,
            densest.bytes_per_connection.unwrap_or(0.0)
        ));
    }
    Some(Sizing {
        mix: mix.into(),
        users_per_node,
        nodes,
        limited_by,
        basis,
    })
}

/// Starts and stops the local cluster through its script.
struct Cluster {
    script: PathBuf,
    port: u16,
}

impl Cluster {
    fn up(&self, nodes: u32) -> Result<(), Error> {
        self.call(&["up".into(), "--nodes".into(), nodes.to_string()])
    }

    fn down(&self) -> Result<(), Error> {
        self.call(&["down".into()])
    }

    fn call(&self, args: &[String]) -> Result<(), Error> {
        let failed = |reason: String| Error::Cluster {
            script: self.script.display().to_string(),
            what: args.join(" "),
            reason,
        };
        // cluster.sh logs to stderr; its stdout (the table of a bench) is not used here.
        let status = Command::new("bash")
            .arg(&self.script)
            .args(args)
            .env("CLUSTER_PORT", self.port.to_string())
            .stdout(std::process::Stdio::null())
            .status()
            .map_err(|e| failed(e.to_string()))?;
        if status.success() {
            Ok(())
        } else {
            Err(failed(status.to_string()))
        }
    }
}

/// The command line, as typed (the program as `loadgen`), after the settings of the
/// environment that change what `cluster.sh` starts.
fn command_line() -> String {
    let mut words: Vec<String> = ["CHAT_ENGINE_ARGS", "CLUSTER_SHARDS"]
        .iter()
        .filter_map(|name| Some(format!("{name}={:?}", std::env::var(name).ok()?)))
        .collect();
    words.push("loadgen".into());
    words.extend(std::env::args().skip(1));
    words.join(" ")
}

/// The 1-minute load average.
fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Cores and memory (GiB) of this host.
fn host() -> (u32, f64) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
    let kib: f64 = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0.0);
    (cores, kib / f64::from(1u32 << 20))
}

/// Writes `text` to `dir/name`.
fn write_file(dir: &Path, name: &str, text: &str) -> Result<(), output::Error> {
    std::fs::create_dir_all(dir).map_err(|source| output::Error::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let path = dir.join(name);
    std::fs::write(&path, text).map_err(|source| output::Error::Io { path, source })
}

#[cfg(test)]
mod tests;
