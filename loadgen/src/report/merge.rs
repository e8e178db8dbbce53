//! Adding up reports of loadgen processes that ran side by side: counts add, histograms
//! add exactly (decoded from the report), rates add, ratios and per-message CPU are
//! recomputed from the sums, and a server seen by several processes counts once.

use super::hist::{self, HistReport};
use super::{per_message, reach, summarise_node, NodeReport, Report, ShardCpu, ShardReport, TimelinePoint};

/// Adds reports of processes that ran side by side into one. Counts add up; histograms
/// add exactly; rates add (the processes ran at the same time); a server seen by several
/// processes counts once (the largest reading).
pub fn merge(reports: &[Report]) -> Option<Report> {
    let mut out = reports.first()?.clone();
    out.kind = "merged".into();
    for r in &reports[1..] {
        out.run_ids.extend(&r.run_ids);
        out.processes += r.processes;
        out.interrupted |= r.interrupted;
        out.window.start_unix_ns = out.window.start_unix_ns.min(r.window.start_unix_ns);
        out.window.end_unix_ns = out.window.end_unix_ns.max(r.window.end_unix_ns);
        out.window.measured_s = out.window.measured_s.max(r.window.measured_s);
        let (c, o) = (&mut out.connections, &r.connections);
        c.attempted += o.attempted;
        c.ready += o.ready;
        c.failed += o.failed;
        c.subscribers += o.subscribers;
        c.publishers += o.publishers;
        let (m, o) = (&mut out.messages, &r.messages);
        m.sent_total += o.sent_total;
        m.sent += o.sent;
        m.unsent += o.unsent;
        m.unsent_total += o.unsent_total;
        m.expected += o.expected;
        m.delivered += o.delivered;
        m.lost += o.lost;
        m.unconfirmed += o.unconfirmed;
        m.lost_unconfirmed += o.lost_unconfirmed;
        m.duplicates += o.duplicates;
        m.reorders += o.reorders;
        m.injected += o.injected;
        m.foreign += o.foreign;
        m.unparsable += o.unparsable;
        m.reach = reach(m.delivered, m.expected);
        out.throughput.sent_per_s += r.throughput.sent_per_s;
        out.throughput.delivered_per_s += r.throughput.delivered_per_s;
        for (mine, theirs) in [
            (&mut out.latency.delivery, &r.latency.delivery),
            (&mut out.latency.broadcast, &r.latency.broadcast),
            (&mut out.latency.connect, &r.latency.connect),
            (&mut out.latency.send_lag, &r.latency.send_lag),
        ] {
            let mut h = mine.hist();
            hist::add(&mut h, &theirs.hist());
            *mine = HistReport::of(&h);
        }
        out.latency.broadcast_complete += r.latency.broadcast_complete;
        out.latency.broadcast_incomplete += r.latency.broadcast_incomplete;
        merge_nodes(&mut out.nodes, &r.nodes);
        super::reconnect::merge(&mut out.reconnect, &r.reconnect);
        for (kind, n) in &r.errors {
            *out.errors.entry(kind.clone()).or_default() += n;
        }
        let process = out.processes - 1;
        out.cpu
            .loadgen_shards
            .extend(r.cpu.loadgen_shards.iter().map(|s| ShardCpu {
                shard: format!("{process}.{}", s.shard.rsplit('.').next().unwrap_or(&s.shard)),
                ..s.clone()
            }));
        out.cpu.loadgen_s += r.cpu.loadgen_s;
        out.cpu.loadgen_process_s += r.cpu.loadgen_process_s;
        for s in &r.cpu.servers {
            match out.cpu.servers.iter_mut().find(|m| m.name == s.name) {
                Some(m) => m.cpu_s = m.cpu_s.max(s.cpu_s),
                None => out.cpu.servers.push(s.clone()),
            }
        }
        out.memory.extend(r.memory.iter().cloned());
        merge_timeline(&mut out.timeline, &r.timeline);
    }
    let messages = out.messages;
    per_message(&mut out.cpu, &messages);
    Some(out)
}

fn merge_nodes(into: &mut Vec<NodeReport>, from: &[NodeReport]) {
    for n in from {
        let node = match into.iter_mut().position(|m| m.node == n.node) {
            Some(at) => &mut into[at],
            None => {
                into.push(NodeReport {
                    shards: Vec::new(),
                    ..n.clone()
                });
                into.last_mut().expect("just pushed")
            }
        };
        for s in &n.shards {
            match node.shards.iter_mut().find(|m| m.shard == s.shard) {
                Some(m) => {
                    let mut counts = m.counts;
                    counts.add(&s.counts);
                    let (mut d, mut c, mut rc) = (m.delivery.hist(), m.connect.hist(), m.reconnect.hist());
                    hist::add(&mut d, &s.delivery.hist());
                    hist::add(&mut c, &s.connect.hist());
                    hist::add(&mut rc, &s.reconnect.hist());
                    *m = ShardReport {
                        shard: m.shard.clone(),
                        counts,
                        delivery: HistReport::of(&d),
                        connect: HistReport::of(&c),
                        reconnect: HistReport::of(&rc),
                    };
                }
                None => node.shards.push(s.clone()),
            }
        }
        summarise_node(node);
    }
    into.sort_by(|a, b| a.node.cmp(&b.node));
}

/// Adds timelines point by point (counts add; percentiles are the larger of the two, an
/// upper bound: `merge` replaces them from the merged interval log when it has one).
fn merge_timeline(into: &mut Vec<TimelinePoint>, from: &[TimelinePoint]) {
    for (i, p) in from.iter().enumerate() {
        match into.get_mut(i) {
            Some(m) => {
                m.sent += p.sent;
                m.delivered += p.delivered;
                m.errors += p.errors;
                m.disconnects += p.disconnects;
                m.reconnects += p.reconnects;
                let (a, b) = (&mut m.latency, &p.latency);
                a.count += b.count;
                a.p50_us = a.p50_us.max(b.p50_us);
                a.p90_us = a.p90_us.max(b.p90_us);
                a.p99_us = a.p99_us.max(b.p99_us);
                a.p999_us = a.p999_us.max(b.p999_us);
                a.p9999_us = a.p9999_us.max(b.p9999_us);
                a.max_us = a.max_us.max(b.max_us);
            }
            None => into.push(*p),
        }
    }
}
