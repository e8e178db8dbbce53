//! `sweep`: runs the scenario at rising publish rates (×factor per step, each step a fresh
//! run of `--step-secs`) until the p99 or the loss objective breaks, reports the knee (the
//! last rate that met both), and sizes a cluster for `--target-users`/`--target-rate` by
//! linear extrapolation from the knee per node. Writes `sweep.json` and each step's output.

use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::cli::SweepArgs;
use crate::report::{table, Report};
use crate::scenario::{self, Scenario};
use crate::{output, run};

/// One step of a sweep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// Asked publish rate, messages per second.
    pub rate_per_s: f64,
    /// Measured publish rate.
    pub sent_per_s: f64,
    /// Measured delivery rate.
    pub delivered_per_s: f64,
    /// Delivery p99, µs.
    pub p99_us: u64,
    /// Delivery max, µs.
    pub max_us: u64,
    /// `lost / expected`.
    pub loss: f64,
    /// Ready connections.
    pub connections: u64,
    /// Distinct server nodes seen.
    pub nodes: usize,
    /// Both objectives met.
    pub ok: bool,
}

/// Cluster size for a target, extrapolated from the knee.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sizing {
    /// Users asked for.
    pub target_users: Option<u64>,
    /// Publish rate asked for.
    pub target_rate_per_s: Option<f64>,
    /// Users per node at the knee.
    pub users_per_node: f64,
    /// Publish rate per node at the knee.
    pub rate_per_node: f64,
    /// Deliveries per node at the knee.
    pub deliveries_per_node: f64,
    /// Nodes for the users alone.
    pub nodes_for_users: Option<u64>,
    /// Nodes for the rate alone.
    pub nodes_for_rate: Option<u64>,
    /// The larger of the two.
    pub nodes: u64,
    /// How this was worked out.
    pub method: String,
}

/// The whole sweep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepReport {
    /// Objective: p99 delivery latency, ms.
    pub slo_p99_ms: f64,
    /// Objective: loss ratio.
    pub slo_loss: f64,
    /// Every step, in order.
    pub steps: Vec<Step>,
    /// The highest rate that met both objectives.
    pub knee_rate_per_s: Option<f64>,
    /// Why the sweep stopped.
    pub stopped_because: String,
    /// Cluster sizing, when a target was given and a knee found.
    pub sizing: Option<Sizing>,
}

/// A sweep that could not run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A bad flag.
    #[error(transparent)]
    Scenario(#[from] scenario::Error),
    /// A step could not start.
    #[error(transparent)]
    Run(#[from] run::Error),
    /// Output could not be written.
    #[error(transparent)]
    Output(#[from] output::Error),
    /// A sweep flag out of range.
    #[error("--{0}: must be a positive number (and rate-factor above 1)")]
    Invalid(&'static str),
}

/// Runs the sweep and prints its table.
///
/// # Errors
/// Bad flags, a step that cannot start, or output that cannot be written.
pub fn sweep(args: &SweepArgs) -> Result<SweepReport, Error> {
    if args.rate_start.is_nan() || args.rate_start <= 0.0 {
        return Err(Error::Invalid("rate-start"));
    }
    if args.rate_factor.is_nan() || args.rate_factor <= 1.0 {
        return Err(Error::Invalid("rate-factor"));
    }
    if args.step_secs.is_nan() || args.step_secs <= 0.0 {
        return Err(Error::Invalid("step-secs"));
    }
    let mut steps: Vec<Step> = Vec::new();
    let mut knee: Option<Report> = None;
    let mut rate = args.rate_start;
    let stopped_because = loop {
        let mut scenario_args = args.scenario.clone();
        scenario_args.rate = rate;
        scenario_args.rate_per_publisher = None;
        scenario_args.duration = args.step_secs;
        scenario_args.out = None;
        let scenario = Scenario::from_args(&scenario_args)?;
        let outcome = run::run(scenario, "run")?;
        if let Some(dir) = &args.scenario.out {
            output::write(
                &dir.join(format!("step-{:02}", steps.len())),
                &outcome.report,
                &outcome.log,
            )?;
        }
        let step = evaluate(rate, &outcome.report, args);
        eprintln!(
            "sweep: rate {:.0}/s: {} → {}",
            rate,
            table::brief(&outcome.report),
            if step.ok { "ok" } else { "objective broken" }
        );
        let ok = step.ok;
        steps.push(step);
        if run::interrupted() {
            break "interrupted".to_string();
        }
        if !ok {
            break "objective broken".to_string();
        }
        knee = Some(outcome.report);
        rate *= args.rate_factor;
        if rate > args.rate_max {
            break "reached --rate-max".to_string();
        }
    };
    let knee_step = steps.iter().rev().find(|s| s.ok).cloned();
    let sizing = match (&knee, &knee_step) {
        (Some(report), Some(step)) if args.target_users.is_some() || args.target_rate.is_some() => {
            Some(size(report, step, args))
        }
        _ => None,
    };
    let report = SweepReport {
        slo_p99_ms: args.slo_p99_ms,
        slo_loss: args.slo_loss,
        knee_rate_per_s: knee_step.map(|s| s.rate_per_s),
        steps,
        stopped_because,
        sizing,
    };
    if let Some(dir) = &args.scenario.out {
        std::fs::create_dir_all(dir).map_err(|source| output::Error::Io {
            path: dir.clone(),
            source,
        })?;
        write_json(&dir.join("sweep.json"), &report)?;
    }
    Ok(report)
}

/// The sweep as text.
pub fn render(report: &SweepReport) -> String {
    let mut out = String::new();
    let w = &mut out;
    let _ = writeln!(
        w,
        "sweep: objectives p99 <= {} ms, loss <= {}",
        report.slo_p99_ms, report.slo_loss
    );
    let _ = writeln!(
        w,
        "{:>12}{:>12}{:>14}{:>10}{:>10}{:>10}{:>7}  verdict",
        "rate/s", "sent/s", "delivered/s", "p99 ms", "max ms", "loss", "nodes"
    );
    for s in &report.steps {
        let _ = writeln!(
            w,
            "{:>12.0}{:>12.0}{:>14.0}{:>10}{:>10}{:>10.5}{:>7}  {}",
            s.rate_per_s,
            s.sent_per_s,
            s.delivered_per_s,
            table::ms(s.p99_us),
            table::ms(s.max_us),
            s.loss,
            s.nodes,
            if s.ok { "ok" } else { "BROKEN" }
        );
    }
    match report.knee_rate_per_s {
        Some(k) => {
            let _ = writeln!(
                w,
                "knee: {k:.0} msg/s (highest rate meeting both objectives; stopped: {})",
                report.stopped_because
            );
        }
        None => {
            let _ = writeln!(w, "knee: none (the first step already broke an objective)");
        }
    }
    if let Some(s) = &report.sizing {
        let _ = writeln!(
            w,
            "sizing: {} node(s) — users {} node(s), rate {} node(s); {}",
            s.nodes,
            s.nodes_for_users.map_or_else(|| "-".into(), |n| n.to_string()),
            s.nodes_for_rate.map_or_else(|| "-".into(), |n| n.to_string()),
            s.method
        );
    }
    out
}

fn evaluate(rate: f64, report: &Report, args: &SweepArgs) -> Step {
    let p = &report.latency.delivery.percentiles;
    let m = &report.messages;
    let loss = if m.expected > 0 {
        m.lost as f64 / m.expected as f64
    } else {
        1.0
    };
    let nodes = report.nodes.iter().filter(|n| n.node != "?").count().max(1);
    let ok = m.expected > 0 && (p.p99_us as f64) <= args.slo_p99_ms * 1000.0 && loss <= args.slo_loss;
    Step {
        rate_per_s: rate,
        sent_per_s: report.throughput.sent_per_s,
        delivered_per_s: report.throughput.delivered_per_s,
        p99_us: p.p99_us,
        max_us: p.max_us,
        loss,
        connections: report.connections.ready,
        nodes,
        ok,
    }
}

/// Linear extrapolation from the knee, per node: nodes = max(users / users-per-node,
/// rate / rate-per-node), each rounded up.
fn size(knee: &Report, step: &Step, args: &SweepArgs) -> Sizing {
    let nodes = step.nodes as f64;
    let users_per_node = knee.connections.ready as f64 / nodes;
    let rate_per_node = knee.throughput.sent_per_s / nodes;
    let deliveries_per_node = knee.throughput.delivered_per_s / nodes;
    let need = |want: f64, per_node: f64| (per_node > 0.0).then(|| (want / per_node).ceil().max(1.0) as u64);
    let nodes_for_users = args.target_users.and_then(|u| need(u as f64, users_per_node));
    let nodes_for_rate = args.target_rate.and_then(|r| need(r, rate_per_node));
    Sizing {
        target_users: args.target_users,
        target_rate_per_s: args.target_rate,
        users_per_node,
        rate_per_node,
        deliveries_per_node,
        nodes_for_users,
        nodes_for_rate,
        nodes: nodes_for_users.unwrap_or(1).max(nodes_for_rate.unwrap_or(1)),
        method: format!(
            "linear extrapolation from the knee measured on {} node(s): {:.0} users and {:.0} msg/s ({:.0} deliveries/s) per node, same channel shape",
            step.nodes, users_per_node, rate_per_node, deliveries_per_node
        ),
    }
}

fn write_json(path: &Path, report: &SweepReport) -> Result<(), output::Error> {
    let json = serde_json::to_string_pretty(report).map_err(|e| output::Error::Json {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    std::fs::write(path, json + "\n").map_err(|source| output::Error::Io {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizing_takes_the_larger_need() {
        let step = Step {
            rate_per_s: 1000.0,
            sent_per_s: 1000.0,
            delivered_per_s: 10_000.0,
            p99_us: 1000,
            max_us: 2000,
            loss: 0.0,
            connections: 2000,
            nodes: 2,
            ok: true,
        };
        let cli = <crate::cli::Cli as clap::Parser>::try_parse_from([
            "loadgen",
            "sweep",
            "--target",
            "ws://127.0.0.1:9/ws",
            "--target-users",
            "100000",
            "--target-rate",
            "4000",
        ])
        .expect("parses");
        let crate::cli::Command::Sweep(args) = cli.command else {
            panic!("sweep")
        };
        let mut knee = crate::report::tests::empty_report();
        knee.connections.ready = 2000;
        knee.throughput.sent_per_s = 1000.0;
        knee.throughput.delivered_per_s = 10_000.0;
        let s = size(&knee, &step, &args);
        assert_eq!(s.users_per_node, 1000.0);
        assert_eq!(s.rate_per_node, 500.0);
        assert_eq!(s.nodes_for_users, Some(100));
        assert_eq!(s.nodes_for_rate, Some(8));
        assert_eq!(s.nodes, 100);
        assert!(s.method.contains("linear extrapolation"));
    }
}
