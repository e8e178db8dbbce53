//! Builds the report from the shards' results: counts and histograms gathered per node
//! and per server shard, reach, the CPU of loadgen and of each server beside the
//! messages they handled, and memory per connection. `run.rs` calls `build` once the
//! shards are done; `merge.rs` reuses its per-node sums.

use super::*;

/// `delivered / expected`, absent when nothing was expected.
pub fn reach(delivered: u64, expected: u64) -> Option<f64> {
    (expected > 0).then(|| delivered as f64 / expected as f64)
}

/// Per (node, shard): counts and histograms, while building.
struct Agg {
    counts: Counts,
    delivery: Hist,
    connect: Hist,
    reconnect: Hist,
}

/// Turns the shards' results into a report.
pub fn build(scenario: &Scenario, results: &[ShardResult], info: &RunInfo) -> Report {
    let channels = scenario.channels as usize;
    let mut sent_per_channel = vec![0u64; channels];
    let mut subscribers_per_channel = vec![0u64; channels];
    let mut channel_of_publisher: BTreeMap<u32, usize> = BTreeMap::new();
    let mut messages = Messages::default();
    let mut connections = Connections::default();
    let mut errors = Errors::new();
    for r in results {
        for p in &r.pubs {
            if let Some(n) = sent_per_channel.get_mut(p.channel as usize) {
                *n += p.sent_measured;
            }
            channel_of_publisher.insert(p.publisher, p.channel as usize);
            messages.sent += p.sent_measured;
            messages.sent_total += p.sent_total;
            messages.unsent += p.unsent_measured;
            messages.unsent_total += p.unsent_total;
        }
        for s in &r.subs {
            if let Some(n) = subscribers_per_channel.get_mut(s.channel as usize) {
                *n += 1;
            }
        }
        connections.attempted += r.attempted;
        connections.ready += r.ready;
        connections.publishers += r.pubs.len() as u64;
        messages.injected += r.injected;
        messages.foreign += r.foreign;
        messages.unparsable += r.unparsable;
        for (kind, n) in &r.errors {
            *errors.entry(kind.clone()).or_default() += n;
        }
    }
    connections.failed = connections.attempted - connections.ready.min(connections.attempted);
    connections.subscribers = connections.ready;

    let mut aggs: BTreeMap<(String, String), Agg> = BTreeMap::new();
    for r in results {
        for k in &r.keys {
            let agg = aggs.entry((k.node.clone(), k.shard.clone())).or_insert_with(|| Agg {
                counts: Counts::default(),
                delivery: stats::new_hist(),
                connect: stats::new_hist(),
                reconnect: stats::new_hist(),
            });
            agg.counts.connections += k.connections;
            agg.counts.disconnects += k.disconnects;
            agg.counts.reconnects += k.reconnects;
            agg.counts.recovered += k.recovered;
            agg.counts.recoveries_false += k.recoveries_false;
            hist::add(&mut agg.delivery, &k.delivery);
            hist::add(&mut agg.connect, &k.connect);
            hist::add(&mut agg.reconnect, &k.reconnect);
        }
        for s in &r.subs {
            let Some(k) = r.keys.get(s.key) else { continue };
            let Some(agg) = aggs.get_mut(&(k.node.clone(), k.shard.clone())) else {
                continue;
            };
            let expected = sent_per_channel.get(s.channel as usize).copied().unwrap_or(0);
            let c = &mut agg.counts;
            c.subscribers += 1;
            c.expected += expected;
            c.delivered += s.received;
            c.lost += expected.saturating_sub(s.received);
            c.duplicates += s.duplicates;
            c.reorders += s.reorders;
            if s.drops > 0 {
                c.lost_after_drop += expected.saturating_sub(s.received);
            }
        }
    }
    let mut delivery = stats::new_hist();
    let mut connect = stats::new_hist();
    let mut nodes: Vec<NodeReport> = Vec::new();
    for ((node, shard), agg) in &mut aggs {
        agg.counts.reach = reach(agg.counts.delivered, agg.counts.expected);
        hist::add(&mut delivery, &agg.delivery);
        hist::add(&mut connect, &agg.connect);
        let shard_report = ShardReport {
            shard: shard.clone(),
            counts: agg.counts,
            delivery: HistReport::of(&agg.delivery),
            connect: HistReport::of(&agg.connect),
            reconnect: HistReport::of(&agg.reconnect),
        };
        match nodes.iter_mut().find(|n| &n.node == node) {
            Some(n) => n.shards.push(shard_report),
            None => nodes.push(NodeReport {
                node: node.clone(),
                counts: Counts::default(),
                delivery: Percentiles::default(),
                connect: Percentiles::default(),
                reconnect: Percentiles::default(),
                shards: vec![shard_report],
            }),
        }
    }
    for n in &mut nodes {
        summarise_node(n);
        messages.expected += n.counts.expected;
        messages.delivered += n.counts.delivered;
        messages.lost += n.counts.lost;
        messages.duplicates += n.counts.duplicates;
        messages.reorders += n.counts.reorders;
    }
    messages.reach = reach(messages.delivered, messages.expected);

    let mut table = MessageTable::new();
    let mut send_lag = stats::new_hist();
    for r in results {
        table.merge(&r.table);
        hist::add(&mut send_lag, &r.send_lag);
    }
    for r in results {
        for p in &r.pubs {
            let wanted = subscribers_per_channel.get(p.channel as usize).copied().unwrap_or(0);
            messages.unconfirmed += p.unconfirmed.len() as u64;
            for &seq in &p.unconfirmed {
                let got = table.count(p.publisher, seq);
                messages.lost_unconfirmed += wanted.saturating_sub(u64::from(got));
            }
        }
    }
    messages.lost_unconfirmed = messages.lost_unconfirmed.min(messages.lost);
    let mut broadcast = stats::new_hist();
    let mut complete = 0;
    for (publisher, _, receipt) in table.iter() {
        let wanted = channel_of_publisher
            .get(&publisher)
            .and_then(|&c| subscribers_per_channel.get(c))
            .copied()
            .unwrap_or(0);
        if wanted > 0 && u64::from(receipt.count) >= wanted {
            complete += 1;
            stats::record(&mut broadcast, u64::from(receipt.max_latency_us));
        }
    }

    let (start, end) = info.window_ns;
    let measured_s = end.saturating_sub(start) as f64 / 1e9;
    let per_s = |n: u64| {
        if measured_s > 0.0 {
            n as f64 / measured_s
        } else {
            0.0
        }
    };
    let throughput = Throughput {
        sent_per_s: per_s(messages.sent),
        delivered_per_s: per_s(messages.delivered),
    };
    let reconnect = reconnect::build(scenario, results, &sent_per_channel);
    let cpu = cpu_report(results, info, &messages);
    let memory = memory_report(info, &nodes, connections.ready);
    Report {
        kind: info.kind.clone(),
        run_ids: vec![scenario.run_id],
        processes: 1,
        scenario: Some(scenario.summary.clone()),
        interrupted: info.interrupted,
        window: Window {
            start_unix_ns: start,
            end_unix_ns: end,
            measured_s,
        },
        connections,
        messages,
        throughput,
        latency: Latencies {
            delivery: HistReport::of(&delivery),
            broadcast: HistReport::of(&broadcast),
            connect: HistReport::of(&connect),
            send_lag: HistReport::of(&send_lag),
            broadcast_complete: complete,
            broadcast_incomplete: messages.sent.saturating_sub(complete),
        },
        nodes,
        reconnect,
        errors,
        cpu,
        memory,
        timeline: info.timeline.clone(),
    }
}

/// Recomputes a node's counts and percentiles from its shards.
pub(crate) fn summarise_node(n: &mut NodeReport) {
    let mut counts = Counts::default();
    let (mut delivery, mut connect, mut reconnect) = (stats::new_hist(), stats::new_hist(), stats::new_hist());
    for s in &n.shards {
        counts.add(&s.counts);
        hist::add(&mut delivery, &s.delivery.hist());
        hist::add(&mut connect, &s.connect.hist());
        hist::add(&mut reconnect, &s.reconnect.hist());
    }
    n.counts = counts;
    n.delivery = Percentiles::of(&delivery);
    n.connect = Percentiles::of(&connect);
    n.reconnect = Percentiles::of(&reconnect);
}

fn cpu_report(results: &[ShardResult], info: &RunInfo, messages: &Messages) -> CpuReport {
    let loadgen_shards: Vec<ShardCpu> = results
        .iter()
        .map(|r| ShardCpu {
            shard: format!("0.{}", r.shard),
            core: r.cpu_core,
            user_s: r.cpu_measured.user_s,
            sys_s: r.cpu_measured.sys_s,
            window_s: r.cpu_window_s,
            utilisation: if r.cpu_window_s > 0.0 {
                r.cpu_measured.total_s() / r.cpu_window_s
            } else {
                0.0
            },
        })
        .collect();
    let loadgen_s: f64 = results.iter().map(|r| r.cpu_measured.total_s()).sum();
    let (servers, host_busy) = match (&info.measure_start, &info.measure_end) {
        (Some(a), Some(b)) => (server::cpu_used(a, b), server::host_busy(a, b)),
        _ => (Vec::new(), None),
    };
    let mut report = CpuReport {
        loadgen_shards,
        loadgen_s,
        loadgen_process_s: info.process_cpu.total_s(),
        servers,
        host_cores: std::thread::available_parallelism().ok().map(|n| n.get() as u32),
        host_busy,
        ..CpuReport::default()
    };
    per_message(&mut report, messages);
    report
}

/// Fills the per-message CPU figures from the totals.
pub(crate) fn per_message(cpu: &mut CpuReport, messages: &Messages) {
    let handled = messages.sent + messages.delivered;
    cpu.loadgen_us_per_message = (handled > 0).then(|| cpu.loadgen_s * 1e6 / handled as f64);
    cpu.server_s = (!cpu.servers.is_empty()).then(|| cpu.servers.iter().map(|s| s.cpu_s).sum());
    cpu.server_us_per_delivery = cpu
        .server_s
        .filter(|_| messages.delivered > 0)
        .map(|s| s * 1e6 / messages.delivered as f64);
    cpu.server_us_per_publish = cpu
        .server_s
        .filter(|_| messages.sent > 0)
        .map(|s| s * 1e6 / messages.sent as f64);
}

fn memory_report(info: &RunInfo, nodes: &[NodeReport], ready: u64) -> Vec<MemoryReport> {
    let (Some(before), Some(after)) = (&info.before_connect, &info.measure_start) else {
        return Vec::new();
    };
    after
        .readings
        .iter()
        .filter_map(|a| {
            let b = before.readings.iter().find(|b| b.name == a.name)?;
            let (rss_before_bytes, rss_after_bytes) = (b.rss_bytes?, a.rss_bytes?);
            let connections = nodes
                .iter()
                .find(|n| n.node == a.name)
                .map_or(ready, |n| n.counts.connections);
            let bytes_per_connection =
                (connections > 0).then(|| (rss_after_bytes - rss_before_bytes) / connections as f64);
            Some(MemoryReport {
                name: a.name.clone(),
                rss_before_bytes,
                rss_after_bytes,
                connections,
                bytes_per_connection,
            })
        })
        .collect()
}
