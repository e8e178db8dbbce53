//! The report as a table for people: latency percentiles, throughput, losses, per-node
//! reach, drops and reconnects (when there were any, or `--reconnect` was on), errors and
//! CPU of both sides and of the host, in plain text that fits 100 columns, ending with the
//! one line that says what limited the run (`limit.rs`).

use std::fmt::Write as _;

use super::hist::Percentiles;
use super::Report;

/// Renders `report` as text.
pub fn render(report: &Report) -> String {
    let mut out = String::new();
    let w = &mut out;
    if report.processes > 1 {
        let _ = writeln!(
            w,
            "{} loadgen processes merged; the scenario below is the first one's",
            report.processes
        );
    }
    match &report.scenario {
        Some(s) => {
            let _ = writeln!(
                w,
                "loadgen {} {}: {} conns ({}) over {} target(s), {} channels ({}), {} publishers @ {:.0} msg/s, {} B, {} s (+{} s warm-up), {} shard(s)",
                report.kind,
                ids(&report.run_ids),
                s.connections,
                s.transport,
                s.targets.len(),
                s.channels,
                s.spread,
                s.publishers,
                s.rate_per_s,
                s.size_bytes,
                s.duration_s,
                s.warmup_s,
                s.shards,
            );
        }
        None => {
            let _ = writeln!(w, "loadgen {} {}", report.kind, ids(&report.run_ids));
        }
    }
    if report.interrupted {
        let _ = writeln!(w, "INTERRUPTED: figures cover what was measured before Ctrl-C");
    }
    let c = &report.connections;
    let _ = writeln!(
        w,
        "connections: {} ready of {} ({} failed), {} publishers; measured {:.2} s",
        c.ready, c.attempted, c.failed, c.publishers, report.window.measured_s
    );
    let _ = writeln!(w);
    let _ = writeln!(
        w,
        "{:<26}{:>10}{:>10}{:>10}{:>10}{:>10}{:>10}{:>10}",
        "latency (ms)", "count", "p50", "p90", "p99", "p99.9", "p99.99", "max"
    );
    let l = &report.latency;
    row(w, "delivery (intended→recv)", &l.delivery.percentiles);
    row(w, "broadcast completion", &l.broadcast.percentiles);
    row(w, "connect (TCP→CONNECTED)", &l.connect.percentiles);
    row(w, "publish lag (loadgen)", &l.send_lag.percentiles);
    let rc = &report.reconnect;
    if rc.reconnect_time.percentiles.count > 0 {
        row(w, "reconnect (drop→subscribed)", &rc.reconnect_time.percentiles);
    }
    let _ = writeln!(w);
    let m = &report.messages;
    let _ = writeln!(
        w,
        "throughput: sent {:.1} msg/s, delivered {:.1} msg/s",
        report.throughput.sent_per_s, report.throughput.delivered_per_s
    );
    let unsent = if m.unsent_total > 0 {
        format!(
            ", unsent {} (+{} warm-up) while the publisher was down",
            m.unsent,
            m.unsent_total.saturating_sub(m.unsent)
        )
    } else {
        String::new()
    };
    let confirmed = if m.unconfirmed > 0 || m.lost_unconfirmed > 0 {
        format!(
            " ({} of confirmed messages, {} of {} messages whose receipt never came)",
            m.lost - m.lost_unconfirmed.min(m.lost),
            m.lost_unconfirmed,
            m.unconfirmed
        )
    } else {
        String::new()
    };
    let _ = writeln!(
        w,
        "messages: sent {} (+{} warm-up){unsent}, expected {}, delivered {}, lost {}{confirmed}, duplicated {}, reordered {}, reach {}",
        m.sent,
        m.sent_total.saturating_sub(m.sent),
        m.expected,
        m.delivered,
        m.lost,
        m.duplicates,
        m.reorders,
        ratio(m.reach)
    );
    let _ = writeln!(
        w,
        "broadcasts: {} complete, {} incomplete",
        l.broadcast_complete, l.broadcast_incomplete
    );
    if m.foreign + m.unparsable + m.injected > 0 {
        let _ = writeln!(
            w,
            "also: {} of other runs, {} unstamped, {} injected duplicates",
            m.foreign, m.unparsable, m.injected
        );
    }
    let _ = writeln!(w);
    let _ = writeln!(
        w,
        "{:<16}{:>6}{:>7}{:>7}{:>11}{:>11}{:>8}{:>6}{:>6}{:>8}{:>10}{:>10}",
        "node", "shard", "conns", "subs", "expected", "delivered", "lost", "dup", "reord", "reach", "p99 ms", "max ms"
    );
    for n in &report.nodes {
        for s in &n.shards {
            let c = &s.counts;
            let p = &s.delivery.percentiles;
            let _ = writeln!(
                w,
                "{:<16}{:>6}{:>7}{:>7}{:>11}{:>11}{:>8}{:>6}{:>6}{:>8}{:>10}{:>10}",
                clip(&n.node, 15),
                clip(&s.shard, 5),
                c.connections,
                c.subscribers,
                c.expected,
                c.delivered,
                c.lost,
                c.duplicates,
                c.reorders,
                ratio(c.reach),
                ms(p.p99_us),
                ms(p.max_us)
            );
        }
        if n.shards.len() > 1 {
            let c = &n.counts;
            let _ = writeln!(
                w,
                "{:<16}{:>6}{:>7}{:>7}{:>11}{:>11}{:>8}{:>6}{:>6}{:>8}{:>10}{:>10}",
                clip(&n.node, 15),
                "all",
                c.connections,
                c.subscribers,
                c.expected,
                c.delivered,
                c.lost,
                c.duplicates,
                c.reorders,
                ratio(c.reach),
                ms(n.delivery.p99_us),
                ms(n.delivery.max_us)
            );
        }
    }
    if rc.enabled || rc.disconnects > 0 {
        reconnects(w, report);
    }
    let _ = writeln!(w);
    if report.errors.is_empty() {
        let _ = writeln!(w, "errors: none");
    } else {
        let list: Vec<String> = report.errors.iter().map(|(k, n)| format!("{k}={n}")).collect();
        let _ = writeln!(w, "errors: {}", list.join(" "));
    }
    let cpu = &report.cpu;
    let shards: Vec<String> = cpu
        .loadgen_shards
        .iter()
        .map(|s| format!("{} {:.0}%", s.shard, s.utilisation * 100.0))
        .collect();
    let _ = writeln!(
        w,
        "cpu loadgen: {:.2} s ({}), {} µs/msg handled; process {:.2} s",
        cpu.loadgen_s,
        shards.join(", "),
        opt(cpu.loadgen_us_per_message),
        cpu.loadgen_process_s
    );
    match cpu.server_s {
        Some(total) => {
            let servers: Vec<String> = cpu
                .servers
                .iter()
                .map(|s| format!("{} {:.2} s", s.name, s.cpu_s))
                .collect();
            let _ = writeln!(
                w,
                "cpu server:  {:.2} s ({}), {} µs/delivery, {} µs/publish",
                total,
                servers.join(", "),
                opt(cpu.server_us_per_delivery),
                opt(cpu.server_us_per_publish)
            );
        }
        None => {
            let _ = writeln!(
                w,
                "cpu server:  n/a (no process_cpu_seconds_total in /metrics; pass --server-pid)"
            );
        }
    }
    // Only a hold measures memory cleanly: a busy run's RSS also holds message buffers.
    for mem in report.memory.iter().filter(|_| report.kind == "hold") {
        let _ = writeln!(
            w,
            "memory {}: RSS {:.1} MiB → {:.1} MiB with {} connections = {} bytes/connection",
            mem.name,
            mem.rss_before_bytes / 1048576.0,
            mem.rss_after_bytes / 1048576.0,
            mem.connections,
            mem.bytes_per_connection
                .map_or_else(|| "n/a".to_string(), |b| format!("{b:.0}"))
        );
    }
    if let Some(busy) = report.cpu.host_busy {
        let _ = writeln!(
            w,
            "cpu host:    {:.0}% of {} core(s) busy over the window (every process on the host)",
            busy * 100.0,
            report.cpu.host_cores.map_or_else(|| "?".to_string(), |n| n.to_string())
        );
    }
    let _ = writeln!(w, "{}", super::limit::read(report));
    out
}

/// Drops, reconnects and resumes: totals, then one line per server shard that had any.
fn reconnects(w: &mut String, report: &Report) {
    let rc = &report.reconnect;
    let mode = match (rc.enabled, rc.resume) {
        (false, _) => "off (--reconnect)",
        (true, false) => "on, plain resubscribe",
        (true, true) => "on, resume from x-offset",
    };
    let _ = writeln!(w);
    let _ = writeln!(
        w,
        "reconnect {mode}: {} disconnects, {} reconnected, {} still down, {} failed attempts",
        rc.disconnects, rc.reconnects, rc.still_down, rc.failed_attempts
    );
    if rc.resume {
        let _ = writeln!(
            w,
            "resume: {} with x-since, {} plain (no position yet); x-recovered true {}, false {}, missing {}",
            rc.resumed, rc.resubscribed_plain, rc.recoveries_true, rc.recoveries_false, rc.recoveries_missing
        );
    }
    let after = if rc.resume { "after resume" } else { "after the drop" };
    let _ = writeln!(
        w,
        "recovered by replay {}; {} subscribers that dropped: lost {} {after}, duplicated {}, reordered {}; unflushed at drop {}",
        rc.recovered,
        rc.dropped_subscribers,
        rc.lost_after_drop,
        rc.duplicates_after_drop,
        rc.reorders_after_drop,
        rc.unflushed
    );
    if rc.disconnects == 0 {
        return;
    }
    let (before, after) = (&rc.kept_before.percentiles, &rc.kept_after.percentiles);
    if before.count > 0 && after.count > 0 {
        let _ = writeln!(
            w,
            "subscribers that had not dropped: delivery p99 {} ms before the first drop, {} ms from it on ({:.1}x; max {} ms)",
            ms(before.p99_us),
            ms(after.p99_us),
            after.p99_us as f64 / before.p99_us.max(1) as f64,
            ms(after.max_us)
        );
    }
    let _ = writeln!(
        w,
        "{:<16}{:>6}{:>7}{:>7}{:>10}{:>10}{:>10}{:>10}{:>11}{:>10}",
        "node", "shard", "drops", "back", "recovered", "rec-false", "lost-drop", "p50 ms", "p99 ms", "max ms"
    );
    for n in &report.nodes {
        for s in &n.shards {
            let c = &s.counts;
            if c.disconnects + c.reconnects + c.lost_after_drop == 0 {
                continue;
            }
            let p = &s.reconnect.percentiles;
            let _ = writeln!(
                w,
                "{:<16}{:>6}{:>7}{:>7}{:>10}{:>10}{:>10}{:>10}{:>11}{:>10}",
                clip(&n.node, 15),
                clip(&s.shard, 5),
                c.disconnects,
                c.reconnects,
                c.recovered,
                c.recoveries_false,
                c.lost_after_drop,
                ms(p.p50_us),
                ms(p.p99_us),
                ms(p.max_us)
            );
        }
    }
}

/// The one-line progress summary used by the live line's tail and sweeps.
pub fn brief(report: &Report) -> String {
    let l = &report.latency.delivery.percentiles;
    format!(
        "sent {:.0}/s delivered {:.0}/s p50 {} p99 {} max {} ms, lost {}, reach {}",
        report.throughput.sent_per_s,
        report.throughput.delivered_per_s,
        ms(l.p50_us),
        ms(l.p99_us),
        ms(l.max_us),
        report.messages.lost,
        ratio(report.messages.reach)
    )
}

fn row(w: &mut String, name: &str, p: &Percentiles) {
    let _ = writeln!(
        w,
        "{:<26}{:>10}{:>10}{:>10}{:>10}{:>10}{:>10}{:>10}",
        name,
        p.count,
        ms(p.p50_us),
        ms(p.p90_us),
        ms(p.p99_us),
        ms(p.p999_us),
        ms(p.p9999_us),
        ms(p.max_us)
    );
}

/// µs as milliseconds with three decimals.
pub fn ms(us: u64) -> String {
    format!("{:.3}", us as f64 / 1000.0)
}

fn ratio(r: Option<f64>) -> String {
    r.map_or_else(|| "n/a".to_string(), |r| format!("{r:.4}"))
}

fn opt(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a".to_string(), |v| format!("{v:.2}"))
}

fn ids(ids: &[u64]) -> String {
    ids.iter().map(|id| format!("{id:x}")).collect::<Vec<_>>().join("+")
}

fn clip(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}
