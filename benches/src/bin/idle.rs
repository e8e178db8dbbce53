//! Bytes of engine memory per idle connection: starts a one-shard engine (or uses
//! `--target`), opens `--connections` raw STOMP connections (10,000) that each CONNECT and
//! SUBSCRIBE to one of `--channels` channels (100, round-robin), and prints the growth of
//! `process_resident_memory_bytes` from `/metrics` per connection. Source addresses
//! 127.0.0.1 to 127.0.0.`--sources` (4) spread the ephemeral ports. Build first:
//! `cargo build --release -p chat-engine -p benches`, then `target/release/idle`.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use benches::args::Flags;
use benches::client;
use benches::engine_process::{self, EngineProcess};

/// The target: at most 1 KiB of engine memory per idle subscriber.
const TARGET_BYTES: f64 = 1024.0;

fn main() -> ExitCode {
    match run(&Flags::from_env()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("idle: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(flags: &Flags) -> Result<(), String> {
    let connections: usize = flags.get("connections", 10_000)?;
    let channels: usize = flags.get("channels", 100)?;
    let sources: u8 = flags.get("sources", 4)?;
    let settle = Duration::from_secs(flags.get("settle-secs", 2)?);
    let (engine, target) = match flags.raw("target") {
        Some(addr) => (
            None,
            addr.parse::<SocketAddrV4>().map_err(|e| format!("--target: {e}"))?,
        ),
        None => {
            let engine = EngineProcess::start(flags.get("cpu", 0)?, &[]).map_err(|e| e.to_string())?;
            let addr = engine.addr;
            (Some(engine), addr)
        }
    };
    let metric = |name: &str| -> Result<f64, String> {
        match &engine {
            Some(engine) => engine.metric(name).map_err(|e| e.to_string()),
            None => {
                let text = engine_process::http_get(target, "/metrics").map_err(|e| e.to_string())?;
                text.lines()
                    .find(|l| l.starts_with(name))
                    .and_then(|l| l.rsplit(' ').next()?.parse().ok())
                    .ok_or_else(|| format!("/metrics has no {name}"))
            }
        }
    };
    std::thread::sleep(settle);
    let rss_before = metric("process_resident_memory_bytes")?;
    let started = Instant::now();
    let mut streams = Vec::with_capacity(connections);
    let destinations: Vec<String> = (0..channels.max(1)).map(|c| format!("/sub/chat/idle-{c}")).collect();
    for i in 0..connections {
        let source = Ipv4Addr::new(127, 0, 0, 1 + (i % sources.max(1) as usize) as u8);
        let destination = &destinations[i % destinations.len()];
        let stream = client::open(target, Some(source), "/ws", &[(destination, "sub-0")])
            .map_err(|e| format!("connection {i}: {e}"))?;
        streams.push(stream);
        if (i + 1) % 2_000 == 0 {
            eprintln!(
                "idle: {} connections open ({:.1} s)",
                i + 1,
                started.elapsed().as_secs_f64()
            );
        }
    }
    std::thread::sleep(settle);
    let rss_after = metric("process_resident_memory_bytes")?;
    let open = metric("chat_connections")?;
    let subscriptions = metric("chat_subscriptions")?;
    let per_connection = (rss_after - rss_before) / connections.max(1) as f64;
    println!("idle: {connections} connections ({open} open, {subscriptions} subscriptions over {channels} channels), opened in {:.1} s", started.elapsed().as_secs_f64() - settle.as_secs_f64());
    println!(
        "idle: engine RSS {:.1} MiB before, {:.1} MiB after",
        rss_before / 1048576.0,
        rss_after / 1048576.0
    );
    println!(
        "idle: {per_connection:.0} bytes per idle connection (target <= {TARGET_BYTES:.0}: {})",
        if per_connection <= TARGET_BYTES {
            "met"
        } else {
            "NOT met"
        }
    );
    drop(streams);
    Ok(())
}
