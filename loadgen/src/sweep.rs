//! `sweep`: runs the scenario at rising publish rates (×factor per step, each step a fresh
//! run of `--step-secs`) until the p99 or the loss objective breaks, reports the knee (the
//! last rate that met both, and where the p99 crosses its objective by interpolation) and
//! what limited the step that broke, and sizes a cluster for `--target-users`/
//! `--target-rate` by linear extrapolation from the knee per node. Writes `sweep.json` and
//! each step's output. `plan` climbs the same way ([`climb`], [`knee`]) over many scenarios.

use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::cli::{ScenarioArgs, SweepArgs};
use crate::report::{limit, table, Report};
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
    /// What limited the step (`report::limit`).
    #[serde(default)]
    pub limit: Option<limit::Reading>,
    /// Runs at this rate: 2 when a broken step was run again to confirm it.
    #[serde(default)]
    pub tries: u32,
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
    /// The knee, interpolated to where the p99 reaches its objective.
    #[serde(default)]
    pub knee: Option<Knee>,
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

/// What a step must meet.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Objectives {
    /// Delivery p99, ms.
    pub p99_ms: f64,
    /// `lost / expected`.
    pub loss: f64,
}

/// A climb: runs at rising rates until one breaks an objective.
#[derive(Debug, Clone)]
pub struct Climb {
    /// Every step, in order.
    pub steps: Vec<Step>,
    /// The report of the last step that met the objectives.
    pub knee: Option<Report>,
    /// The report of the step that broke them.
    pub broken: Option<Report>,
    /// Why the climb stopped.
    pub stopped_because: String,
}

/// Where the objectives stop being met, from a climb's steps.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Knee {
    /// The highest rate of the leading steps that all met the objectives.
    pub last_ok: f64,
    /// Where the p99 reaches the objective, interpolated linearly between that step and
    /// the next (which broke it); `last_ok` when the next broke only the loss objective,
    /// or when no step broke anything (then the knee lies beyond what was tried).
    pub estimate: f64,
    /// Whether a step broke an objective (else `estimate` is a lower bound).
    pub reached: bool,
}

/// The knee of `steps` (in rising order): `None` when the first step already broke an
/// objective, or there is no step.
pub fn knee(steps: &[Step], objectives: Objectives) -> Option<Knee> {
    let first_broken = steps.iter().position(|s| !s.ok);
    let ok = &steps[..first_broken.unwrap_or(steps.len())];
    let last = ok.last()?;
    let Some(broken) = first_broken.and_then(|i| steps.get(i)) else {
        return Some(Knee {
            last_ok: last.rate_per_s,
            estimate: last.rate_per_s,
            reached: false,
        });
    };
    let target_us = objectives.p99_ms * 1000.0;
    let (p_ok, p_broken) = (last.p99_us as f64, broken.p99_us as f64);
    let estimate = if p_broken > target_us && p_broken > p_ok {
        let share = ((target_us - p_ok) / (p_broken - p_ok)).clamp(0.0, 1.0);
        last.rate_per_s + share * (broken.rate_per_s - last.rate_per_s)
    } else {
        last.rate_per_s
    };
    Some(Knee {
        last_ok: last.rate_per_s,
        estimate,
        reached: true,
    })
}

/// Runs `base` at each of `rates` in turn, a fresh run of `step_secs` measured seconds
/// each, until one breaks `objectives` or the rates run out. With `confirm`, a step that
/// breaks them is run once more and counts as broken only if it breaks them again (on a
/// shared host one pause can spoil a short step). Each step's files go to `out/step-NN`
/// when `out` is given; `label` prefixes the progress lines.
///
/// # Errors
/// A bad scenario, a step that cannot start, or output that cannot be written.
pub fn climb(
    base: &ScenarioArgs,
    rates: impl IntoIterator<Item = f64>,
    step_secs: f64,
    objectives: Objectives,
    confirm: bool,
    out: Option<&Path>,
    label: &str,
) -> Result<Climb, Error> {
    let mut steps: Vec<Step> = Vec::new();
    let (mut knee, mut broken) = (None, None);
    let mut stopped_because = "tried every rate".to_string();
    for rate in rates {
        let mut tries = 0;
        let (step, outcome) = loop {
            let mut scenario_args = base.clone();
            scenario_args.rate = rate;
            scenario_args.rate_per_publisher = None;
            scenario_args.duration = step_secs;
            scenario_args.out = None;
            let scenario = Scenario::from_args(&scenario_args)?;
            let outcome = run::run(scenario, "run")?;
            if let Some(dir) = out {
                let name = match tries {
                    0 => format!("step-{:02}", steps.len()),
                    n => format!("step-{:02}-try-{}", steps.len(), n + 1),
                };
                output::write(&dir.join(name), &outcome.report, &outcome.log)?;
            }
            let mut step = evaluate(rate, &outcome.report, objectives);
            step.tries = tries + 1;
            eprintln!(
                "{label}: rate {:.0}/s: {} → {}",
                rate,
                table::brief(&outcome.report),
                if step.ok { "ok" } else { "objective broken" }
            );
            tries += 1;
            if step.ok || !confirm || tries > 1 || run::interrupted() {
                break (step, outcome);
            }
        };
        let ok = step.ok;
        steps.push(step);
        if run::interrupted() {
            stopped_because = "interrupted".to_string();
            break;
        }
        if !ok {
            broken = Some(outcome.report);
            stopped_because = "objective broken".to_string();
            break;
        }
        knee = Some(outcome.report);
    }
    Ok(Climb {
        steps,
        knee,
        broken,
        stopped_because,
    })
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
    let objectives = Objectives {
        p99_ms: args.slo_p99_ms,
        loss: args.slo_loss,
    };
    let rates = std::iter::successors(Some(args.rate_start), |r| Some(r * args.rate_factor))
        .take_while(|&r| r <= args.rate_max.max(args.rate_start));
    let climb = climb(
        &args.scenario,
        rates,
        args.step_secs,
        objectives,
        false,
        args.scenario.out.as_deref(),
        "sweep",
    )?;
    let stopped_because = if climb.stopped_because == "tried every rate" {
        "reached --rate-max".to_string()
    } else {
        climb.stopped_because
    };
    let knee_step = climb.steps.iter().rev().find(|s| s.ok).cloned();
    let sizing = match (&climb.knee, &knee_step) {
        (Some(report), Some(step)) if args.target_users.is_some() || args.target_rate.is_some() => {
            Some(size(report, step, args))
        }
        _ => None,
    };
    let report = SweepReport {
        slo_p99_ms: args.slo_p99_ms,
        slo_loss: args.slo_loss,
        knee: knee(&climb.steps, objectives),
        knee_rate_per_s: knee_step.map(|s| s.rate_per_s),
        steps: climb.steps,
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
            match (s.ok, &s.limit) {
                (true, _) => "ok".to_string(),
                (false, Some(reading)) => format!("BROKEN ({})", reading.limit.name()),
                (false, None) => "BROKEN".to_string(),
            }
        );
    }
    match report.knee_rate_per_s {
        Some(k) => {
            let _ = writeln!(
                w,
                "knee: {k:.0} msg/s (highest rate meeting both objectives; stopped: {}){}",
                report.stopped_because,
                report.knee.filter(|k| k.reached).map_or_else(String::new, |k| format!(
                    "; p99 reaches {} ms near {:.0} msg/s",
                    report.slo_p99_ms, k.estimate
                ))
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

fn evaluate(rate: f64, report: &Report, objectives: Objectives) -> Step {
    let p = &report.latency.delivery.percentiles;
    let m = &report.messages;
    let loss = if m.expected > 0 {
        m.lost as f64 / m.expected as f64
    } else {
        1.0
    };
    let nodes = report.nodes.iter().filter(|n| n.node != "?").count().max(1);
    let ok = m.expected > 0 && (p.p99_us as f64) <= objectives.p99_ms * 1000.0 && loss <= objectives.loss;
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
        limit: Some(limit::read(report)),
        tries: 1,
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

    fn step(rate_per_s: f64, p99_ms: f64, loss: f64) -> Step {
        let objectives = OBJECTIVES;
        Step {
            rate_per_s,
            sent_per_s: rate_per_s,
            delivered_per_s: rate_per_s * 10.0,
            p99_us: (p99_ms * 1000.0) as u64,
            max_us: (p99_ms * 2000.0) as u64,
            loss,
            connections: 100,
            nodes: 1,
            ok: p99_ms <= objectives.p99_ms && loss <= objectives.loss,
            limit: None,
            tries: 1,
        }
    }

    const OBJECTIVES: Objectives = Objectives {
        p99_ms: 50.0,
        loss: 0.001,
    };

    #[test]
    fn the_knee_is_interpolated_where_the_p99_crosses_its_objective() {
        // A hockey stick: flat, then up past the objective between 400 and 800.
        let steps = [
            step(100.0, 5.0, 0.0),
            step(200.0, 6.0, 0.0),
            step(400.0, 10.0, 0.0),
            step(800.0, 90.0, 0.0),
        ];
        let k = knee(&steps, OBJECTIVES).expect("a knee");
        assert_eq!(k.last_ok, 400.0);
        assert!(k.reached);
        // 10 ms at 400, 90 ms at 800: 50 ms is half-way.
        assert!((k.estimate - 600.0).abs() < 1e-9, "{k:?}");
    }

    #[test]
    fn a_loss_break_keeps_the_last_good_rate() {
        let steps = [step(100.0, 5.0, 0.0), step(200.0, 8.0, 0.01)];
        let k = knee(&steps, OBJECTIVES).expect("a knee");
        assert_eq!((k.last_ok, k.estimate, k.reached), (100.0, 100.0, true));
    }

    #[test]
    fn no_break_is_a_lower_bound_and_an_early_break_no_knee() {
        let steps = [step(100.0, 5.0, 0.0), step(200.0, 8.0, 0.0)];
        let k = knee(&steps, OBJECTIVES).expect("a knee");
        assert_eq!((k.last_ok, k.estimate, k.reached), (200.0, 200.0, false));
        assert_eq!(knee(&[step(100.0, 70.0, 0.0)], OBJECTIVES), None);
        assert_eq!(knee(&[], OBJECTIVES), None);
        // Only the leading run of good steps counts: a good step after a broken one
        // (noise) does not move the knee past the break.
        let noisy = [step(100.0, 5.0, 0.0), step(200.0, 60.0, 0.0), step(400.0, 9.0, 0.0)];
        let k = knee(&noisy, OBJECTIVES).expect("a knee");
        assert_eq!(k.last_ok, 100.0);
        assert!(k.estimate > 100.0 && k.estimate < 200.0, "{k:?}");
    }

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
            limit: None,
            tries: 1,
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
