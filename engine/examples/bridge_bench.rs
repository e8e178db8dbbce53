//! Measures the Kafka bridge against a running broker (`bash deploy/kafka/kafka.sh start`).
//!
//! `throughput`: one node publishes N records of 200-byte values as fast as its shards'
//! queues take them; reports acknowledged records per second (compare with
//! `bash deploy/kafka/perf.sh`). `latency`: node a publishes at a steady rate (open
//! loop, timed from the intended send time) and nodes a and b record
//! produce-to-consume latency in HdrHistograms.
//!
//! ```text
//! cargo run --release -p chat-engine --example bridge_bench -- throughput --records 1000000
//! cargo run --release -p chat-engine --example bridge_bench -- latency --rate 1000 --seconds 30
//! ```

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use clap::{Parser, Subcommand};
use crossbeam_channel::{Sender, TrySendError};
use engine::bridge::{Bridge, Config, ShardPort};
use engine::interest::Interest;
use engine::message::Message;
use glommio::channels::shared_channel::SharedReceiver;
use glommio::{LocalExecutorBuilder, Placement};
use hdrhistogram::Histogram;

#[derive(Parser)]
struct Args {
    /// Bootstrap brokers.
    #[arg(long, env = "CHAT_KAFKA_BROKERS", default_value = "127.0.0.1:9092")]
    brokers: String,
    /// Producer linger.ms.
    #[arg(long, default_value_t = 1)]
    linger_ms: u32,
    /// Producer acks: all, 1 or 0.
    #[arg(long, default_value = "all")]
    acks: String,
    /// Partitions of the (fresh) bench topic.
    #[arg(long, default_value_t = 8)]
    partitions: i32,
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand)]
enum Mode {
    /// Publish as fast as possible and count acknowledged records per second.
    Throughput {
        /// Records to publish.
        #[arg(long, default_value_t = 1_000_000)]
        records: usize,
        /// Bytes per value.
        #[arg(long, default_value_t = 200)]
        value_bytes: usize,
        /// Shards (publishing threads) of the node.
        #[arg(long, default_value_t = 2)]
        shards: usize,
        /// Channels the records are spread over.
        #[arg(long, default_value_t = 100)]
        channels: usize,
    },
    /// Publish at a steady rate and record produce-to-consume latency.
    Latency {
        /// Records per second.
        #[arg(long, default_value_t = 1000)]
        rate: u64,
        /// Measured seconds (after one second of warm-up).
        #[arg(long, default_value_t = 30)]
        seconds: u64,
        /// Print both nodes' bridge stats every second (to watch an outage).
        #[arg(long)]
        progress: bool,
    },
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()))
        .init();
    let args = Args::parse();
    let topic = format!("bench-{}", SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis());
    let config = |node_id: &str| Config {
        brokers: args.brokers.clone(),
        topic: topic.clone(),
        partitions: args.partitions,
        node_id: node_id.to_owned(),
        linger_ms: args.linger_ms,
        acks: args.acks.clone(),
        ..Config::default()
    };
    match args.mode {
        Mode::Throughput {
            records,
            value_bytes,
            shards,
            channels,
        } => throughput(&config("a"), records, value_bytes, shards, channels),
        Mode::Latency {
            rate,
            seconds,
            progress,
        } => latency(&config("a"), &config("b"), rate, seconds, progress),
    }
}

fn throughput(
    cfg: &Config,
    records: usize,
    value_bytes: usize,
    shards: usize,
    channels: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    let interest = Arc::new(Interest::new(shards));
    let (bridge, ports) = Bridge::start(cfg, shards, interest)?;
    let (outbound, inbound): (Vec<_>, Vec<_>) = ports.into_iter().map(|p: ShardPort| (p.outbound, p.inbound)).unzip();
    // The node also reads its own records back (every node reads every partition);
    // no shard has interest, so the reader only consumes and discards.
    let reader = drain(inbound, |_, _| {});
    let stats = bridge.stats();
    let started = Instant::now();
    std::thread::scope(|scope| {
        for (shard, sender) in outbound.iter().enumerate() {
            scope.spawn(move || {
                let padding = "x".repeat(value_bytes.saturating_sub(60));
                for i in (shard..records).step_by(shards) {
                    let channel = format!("c{}", i % channels);
                    let value =
                        format!(r#"{{"channel":"{channel}","sender":"b","message":"{padding}","time":"{i:012}"}}"#);
                    push(sender, message(&channel, value, i.to_string()));
                }
            });
        }
    });
    let queued_in = started.elapsed();
    while stats.produced() + stats.produce_errors() < records as u64 {
        std::thread::sleep(Duration::from_millis(1));
    }
    let acked_in = started.elapsed();
    println!(
        "bridge throughput: {records} records of {value_bytes} B, acks={} linger.ms={}, {shards} shards: \
         {:.0} records/s acknowledged ({:.2?}), {:.0} records/s queued ({:.2?}), errors {}",
        cfg.acks,
        cfg.linger_ms,
        records as f64 / acked_in.as_secs_f64(),
        acked_in,
        records as f64 / queued_in.as_secs_f64(),
        queued_in,
        stats.produce_errors(),
    );
    drop(outbound);
    bridge.shutdown();
    let _ = reader.join();
    Ok(())
}

fn latency(
    a_cfg: &Config,
    b_cfg: &Config,
    rate: u64,
    seconds: u64,
    progress: bool,
) -> Result<(), Box<dyn std::error::Error>> {
    let (a_interest, b_interest) = (Arc::new(Interest::new(1)), Arc::new(Interest::new(1)));
    a_interest.add(0, b"/sub/chat/lat");
    b_interest.add(0, b"/sub/chat/lat");
    let (a, a_ports) = Bridge::start(a_cfg, 1, a_interest)?;
    let (b, b_ports) = Bridge::start(b_cfg, 1, b_interest)?;
    let done = Arc::new(AtomicBool::new(false));
    let reporter = progress.then(|| {
        let (stats, done) = ([a.stats(), b.stats()], Arc::clone(&done));
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_secs(1));
                for (node, s) in ["a", "b"].iter().zip(&stats) {
                    eprintln!(
                        "{node}: connected={} produced={} consumed={} routed={} queued={} in_flight={} lag={:?} errors={} last={}",
                        s.connected(), s.produced(), s.consumed(), s.routed(), s.queued(), s.in_flight(),
                        s.consumer_lag(), s.errors(), s.last_error_kind()
                    );
                }
            }
        })
    });
    let epoch = Instant::now();
    let warmup = Duration::from_secs(1);
    let warmup_ns = u64::try_from(warmup.as_nanos()).unwrap_or(u64::MAX);
    let histograms = Arc::new(Mutex::new([new_histogram()?, new_histogram()?]));
    let measuring = Arc::new(AtomicBool::new(false));
    let mut inbound = Vec::new();
    let mut outbound = Vec::new();
    for port in a_ports.into_iter().chain(b_ports) {
        outbound.push(port.outbound);
        inbound.push(port.inbound);
    }
    let reader = {
        let (histograms, measuring) = (Arc::clone(&histograms), Arc::clone(&measuring));
        drain(inbound, move |node, record: &Arc<Message>| {
            // The id carries the intended send time, in ns since `epoch`.
            let intended_ns = std::str::from_utf8(&record.id).ok().and_then(|s| s.parse::<u64>().ok());
            let measured = intended_ns.filter(|ns| *ns >= warmup_ns && measuring.load(Ordering::Relaxed));
            if let Some(intended_ns) = measured {
                let now_ns = u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
                let micros = now_ns.saturating_sub(intended_ns) / 1000;
                if let Ok(mut h) = histograms.lock() {
                    let _ = h[node].record(micros.max(1));
                }
            }
        })
    };
    let padding = "x".repeat(140);
    let interval = Duration::from_nanos(1_000_000_000 / rate.max(1));
    let total = warmup + Duration::from_secs(seconds);
    let sender = &outbound[0];
    let mut i: u32 = 0;
    loop {
        let intended = interval * i;
        if intended >= total {
            break;
        }
        if intended >= warmup {
            measuring.store(true, Ordering::Relaxed);
        }
        let now = epoch.elapsed();
        if intended > now {
            std::thread::sleep(intended - now);
        }
        let value = format!(r#"{{"channel":"lat","sender":"bench","message":"{padding}","time":"{i:012}"}}"#);
        let id = Bytes::from(intended.as_nanos().to_string());
        push(sender, message("lat", value, id));
        i += 1;
    }
    // Let both nodes catch up (after an outage that can take a while).
    let sent = u64::from(i);
    let (a_stats, b_stats) = (a.stats(), b.stats());
    let catch_up = Instant::now();
    while (a_stats.produced() < sent || a_stats.consumed() < sent || b_stats.consumed() < sent)
        && catch_up.elapsed() < Duration::from_secs(120)
    {
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(100));
    done.store(true, Ordering::Relaxed);
    if let Some(reporter) = reporter {
        let _ = reporter.join();
    }
    drop(outbound);
    a.shutdown();
    b.shutdown();
    let _ = reader.join();
    let histograms = histograms.lock().map_err(|_| "histogram lock poisoned")?;
    for (node, h) in ["a (publishing node)", "b (other node)"].iter().zip(histograms.iter()) {
        println!(
            "latency {node}: rate {rate}/s acks={} linger.ms={} n={} p50={}us p99={}us p99.9={}us max={}us",
            a_cfg.acks,
            a_cfg.linger_ms,
            h.len(),
            h.value_at_quantile(0.50),
            h.value_at_quantile(0.99),
            h.value_at_quantile(0.999),
            h.max()
        );
    }
    Ok(())
}

/// Publishes like a shard would, but waits instead of dropping when the queue is full.
/// A chat message of `channel` with the JSON `value` and `id`, as a shard publishes it.
fn message(channel: &str, value: String, id: impl Into<Bytes>) -> Message {
    let mut message = Message::new(Bytes::from(format!("/sub/chat/{channel}")), value.into());
    message.id = id.into();
    message
}

fn push(sender: &Sender<Message>, mut message: Message) {
    loop {
        match sender.try_send(message) {
            Ok(()) => return,
            Err(TrySendError::Full(back)) => {
                message = back;
                std::thread::yield_now();
            }
            Err(TrySendError::Disconnected(_)) => return,
        }
    }
}

/// Plays the shards: connects every inbound channel on one executor and hands each
/// record, with the index of its channel, to `on_record`.
fn drain<F>(inbound: Vec<SharedReceiver<Vec<Arc<Message>>>>, on_record: F) -> glommio::ExecutorJoinHandle<()>
where
    F: Fn(usize, &Arc<Message>) + Send + Sync + 'static,
{
    let on_record = Arc::new(on_record);
    LocalExecutorBuilder::new(Placement::Unbound)
        .name("bench-shards")
        .io_memory(64 * 1024)
        .ring_depth(32)
        .spawn(move || async move {
            let mut tasks = Vec::new();
            for (index, receiver) in inbound.into_iter().enumerate() {
                let on_record = Arc::clone(&on_record);
                tasks.push(glommio::spawn_local(async move {
                    let receiver = receiver.connect().await;
                    while let Some(batch) = receiver.recv().await {
                        for record in &batch {
                            on_record(index, record);
                        }
                    }
                }));
            }
            for task in tasks {
                task.await;
            }
        })
        .expect("bench executor starts")
}

fn new_histogram() -> Result<Histogram<u64>, hdrhistogram::CreationError> {
    Histogram::new_with_bounds(1, 60_000_000, 3)
}
