//! The plan as files: `plan.md` (the answer first, then each mix's climbs as a table and a
//! plot, scaling from one node to two, the host and its caveats), one SVG per mix
//! (delivery p99 against messages per user per minute, a line per cluster size and
//! density, the objective dashed) and `plan.json`.

use std::fmt::Write as _;
use std::path::Path;

use super::svg::{self, Line};
use super::{write_file, Plan, Series};
use crate::output;
use crate::report::table;

/// Writes `plan.md`, `plan.json` and the plots into `dir`.
///
/// # Errors
/// A file that cannot be written.
pub fn write(dir: &Path, plan: &Plan) -> Result<(), output::Error> {
    for mix in mixes(plan) {
        write_file(dir, &format!("p99-{mix}.svg"), &plot(plan, &mix))?;
    }
    let json = serde_json::to_string_pretty(plan).map_err(|e| output::Error::Json {
        path: dir.join("plan.json"),
        reason: e.to_string(),
    })?;
    write_file(dir, "plan.json", &(json + "\n"))?;
    write_file(dir, "plan.md", &markdown(plan))
}

/// The Markdown report.
pub fn markdown(plan: &Plan) -> String {
    let mut out = String::new();
    let w = &mut out;
    let _ = writeln!(w, "# Capacity plan ({} mode)\n", plan.mode);
    let _ = writeln!(w, "Made by:\n\n```\n{}\n```\n", plan.command);
    let _ = writeln!(
        w,
        "Objectives: delivery p99 ≤ {} ms and loss ≤ {} for every step. Population: **{} users at {} messages per user per minute**. Took {:.0} s.\n",
        plan.slo_p99_ms,
        plan.slo_loss,
        plan.users,
        plan.msgs_per_user_per_min,
        plan.took_s
    );
    let _ = writeln!(w, "## Answer\n");
    let _ = writeln!(
        w,
        "| room mix | nodes of this size | users per node | limits first | how |\n|---|---:|---:|---|---|"
    );
    for s in &plan.sizing {
        let _ = writeln!(
            w,
            "| {} | **{}** | {:.0} | {} | {} |",
            s.mix, s.nodes, s.users_per_node, s.limited_by, s.basis
        );
    }
    let _ = writeln!(
        w,
        "\nA node here is one engine process on one core (one shard) with {:.1} GiB, the host's memory per core; Kafka runs on the same host.\n",
        plan.node_memory_gib
    );
    let _ = writeln!(w, "## Caveats\n");
    let _ = writeln!(
        w,
        "- Loopback networking and {} cores shared by everything: Kafka, the engine nodes and the load generator all ran on this host ({:.1} GiB). Production nodes on their own hosts, with Kafka elsewhere and real NICs, will do better per node; read the ratios and the shapes, not the absolute figures.",
        plan.host_cores, plan.host_memory_gib
    );
    match (plan.load_before, plan.load_after) {
        (Some(before), Some(after)) if before.max(after) >= 1.0 => {
            let _ = writeln!(
                w,
                "- Other work shared the machine while the plan ran: load average {before:.2} at the start and {after:.2} at the end (1 min) on {} cores. Knees measured so are lower than on an idle host.",
                plan.host_cores
            );
        }
        (Some(before), Some(after)) => {
            let _ = writeln!(
                w,
                "- The host was otherwise idle: load average {before:.2} at the start, {after:.2} at the end."
            );
        }
        _ => {}
    }
    let _ = writeln!(
        w,
        "- Sizing is a linear extrapolation from each knee (messages per node per second, memory per user), stated as such; steps are {} runs, a broken step is run a second time and counts only if it breaks again, and a knee is known to about one step of the ladder (the estimate interpolates the p99 between the last good step and the first broken one).\n",
        if plan.mode == "quick" { "short (quick mode)" } else { "full-length" }
    );
    for mix in mixes(plan) {
        section(w, plan, &mix);
    }
    scaling(w, plan);
    out
}

fn section(w: &mut String, plan: &Plan, mix: &str) {
    let _ = writeln!(w, "## Room mix: {mix}\n");
    let _ = writeln!(w, "![p99 by messages per user per minute](p99-{mix}.svg)\n");
    let _ = writeln!(
        w,
        "| nodes | users/node | rooms | msgs/user/min | sent/s | delivered/s | p99 ms | loss | verdict |\n|---:|---:|---:|---:|---:|---:|---:|---:|---|"
    );
    for s in plan.series.iter().filter(|s| s.mix == mix) {
        for step in &s.steps {
            let again = if step.tries > 1 { " (second try)" } else { "" };
            let verdict = match (&step.ok, &step.limit) {
                (true, _) => format!("ok{again}"),
                (false, Some(reading)) => format!("broken{again}: {reading}"),
                (false, None) => format!("broken{again}"),
            };
            let _ = writeln!(
                w,
                "| {} | {} | {} | {:.1} | {:.0} | {:.0} | {} | {:.5} | {} |",
                s.nodes,
                s.users_per_node,
                s.channels,
                s.mpm(step.rate_per_s),
                step.sent_per_s,
                step.delivered_per_s,
                table::ms(step.p99_us),
                step.loss,
                verdict.replace('|', "/")
            );
        }
    }
    let _ = writeln!(w);
    for s in plan.series.iter().filter(|s| s.mix == mix) {
        let _ = writeln!(w, "- {}", knee_line(s, plan.slo_p99_ms));
    }
    let _ = writeln!(w);
}

fn knee_line(s: &Series, slo_p99_ms: f64) -> String {
    let head = format!("{} node(s) × {} users", s.nodes, s.users_per_node);
    let memory = s.bytes_per_connection.map_or_else(String::new, |b| {
        format!("; {b:.0} B of RSS per user (history and buffers included)")
    });
    let deliveries = s.deliveries_per_node.map_or_else(String::new, |d| {
        format!("; {d:.0} deliveries/s per node at the last good step")
    });
    match s.knee {
        Some(k) if k.reached => format!(
            "{head}: knee at {:.1} msgs/user/min (p99 reaches {slo_p99_ms} ms near {:.1}){deliveries}{memory}; limited by {}",
            s.mpm(k.last_ok),
            s.mpm(k.estimate),
            s.limit.as_ref().map_or("?", |l| l.limit.name())
        ),
        Some(k) => format!(
            "{head}: no knee up to {:.1} msgs/user/min (the last rate tried){deliveries}{memory}",
            s.mpm(k.last_ok)
        ),
        None => format!(
            "{head}: the first step already broke the objectives ({})",
            s.limit.as_ref().map_or_else(|| "?".to_string(), ToString::to_string)
        ),
    }
}

/// How much of twice one node's knee two nodes reached, per mix and density.
fn scaling(w: &mut String, plan: &Plan) {
    let mut lines = Vec::new();
    for one in plan.series.iter().filter(|s| s.nodes == 1) {
        let Some(two) = plan
            .series
            .iter()
            .find(|s| s.nodes == 2 && s.mix == one.mix && s.users_per_node == one.users_per_node)
        else {
            continue;
        };
        if let (Some(k1), Some(k2)) = (one.knee, two.knee) {
            lines.push(format!(
                "- {} rooms, {} users/node: one node's knee {:.0} msg/s, two nodes' {:.0} msg/s = {:.0}% of twice one node's{}",
                one.mix,
                one.users_per_node,
                k1.estimate,
                k2.estimate,
                100.0 * k2.estimate / (2.0 * k1.estimate).max(f64::MIN_POSITIVE),
                if k1.reached && k2.reached {
                    ""
                } else {
                    " (a knee not reached: a lower bound)"
                }
            ));
        }
    }
    if lines.is_empty() {
        return;
    }
    let _ = writeln!(w, "## From one node to two\n");
    let _ = writeln!(
        w,
        "Every message crosses Kafka (`--ordering kafka`), so one node already pays the bridge; the second node adds a consumer and the other node's fan-out. On this host the two nodes also share its cores with Kafka and the load generator, so a ratio under 100% here is mostly the shared host, not the engine.\n"
    );
    for line in lines {
        let _ = writeln!(w, "{line}");
    }
    let _ = writeln!(w);
}

fn plot(plan: &Plan, mix: &str) -> String {
    let lines: Vec<Line> = plan
        .series
        .iter()
        .filter(|s| s.mix == mix)
        .map(|s| Line {
            name: format!("{} node(s), {} users/node", s.nodes, s.users_per_node),
            points: s
                .steps
                .iter()
                .map(|step| (s.mpm(step.rate_per_s), (step.p99_us as f64 / 1000.0).max(0.001)))
                .collect(),
        })
        .collect();
    svg::line_plot(
        &format!("Delivery p99, {mix} rooms"),
        "messages per user per minute",
        "p99 delivery latency, ms",
        &lines,
        Some((plan.slo_p99_ms, "p99 objective")),
    )
}

fn mixes(plan: &Plan) -> Vec<String> {
    let mut mixes: Vec<String> = Vec::new();
    for s in &plan.series {
        if !mixes.contains(&s.mix) {
            mixes.push(s.mix.clone());
        }
    }
    mixes
}
