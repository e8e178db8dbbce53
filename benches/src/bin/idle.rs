//! Bytes of engine memory per idle connection: starts a one-shard engine (or uses
//! `--target`), opens `--connections` raw STOMP connections (10,000) that each CONNECT and
//! SUBSCRIBE to one of `--channels` channels (100, round-robin), and prints the growth of
//! `process_resident_memory_bytes` from `/metrics` per connection, and the engine's CPU
//! time while they opened (`process_cpu_seconds_total`) as connection setups (TCP,
//! upgrade, CONNECT, SUBSCRIBE) per engine CPU-second. `--parallel` client threads (16) on
//! core `--client-cpu` (1) open them, from source addresses 127.0.0.1 to
//! 127.0.0.`--sources` (4) to spread the ephemeral ports. Build first:
//! `cargo build --release -p chat-engine -p benches`, then `target/release/idle`.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use benches::args::Flags;
use benches::client;
use benches::engine_process::{self, EngineProcess};

/// The target: at most 1 KiB of engine memory per idle subscriber.
const TARGET_BYTES: f64 = 1024.0;
/// The target: at least 20,000 connection setups per engine CPU-second (one shard).
const TARGET_SETUPS: f64 = 20_000.0;

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
    let client_cpu = flags.get("client-cpu", 1)?;
    if let Err(e) = engine_process::pin_current_thread(client_cpu) {
        eprintln!("idle: cannot pin to core {client_cpu}: {e}");
    }
    std::thread::sleep(settle);
    let rss_before = metric("process_resident_memory_bytes")?;
    let cpu_before = metric("process_cpu_seconds_total")?;
    let started = Instant::now();
    let destinations: Vec<String> = (0..channels.max(1)).map(|c| format!("/sub/chat/idle-{c}")).collect();
    // `--parallel` clients (16) open their share at once, as users arriving together do,
    // so the engine sees several setups per wake-up rather than one at a time.
    let parallel = flags.get("parallel", 16usize)?.clamp(1, connections.max(1));
    let opened_so_far = std::sync::atomic::AtomicUsize::new(0);
    let streams = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..parallel)
            .map(|t| {
                let (destinations, opened_so_far) = (&destinations, &opened_so_far);
                scope.spawn(move || -> Result<Vec<std::net::TcpStream>, String> {
                    let _ = engine_process::pin_current_thread(client_cpu);
                    let mut mine = Vec::new();
                    for i in (t..connections).step_by(parallel) {
                        let source = Ipv4Addr::new(127, 0, 0, 1 + (i % sources.max(1) as usize) as u8);
                        let destination = &destinations[i % destinations.len()];
                        let stream = client::open(target, Some(source), "/ws", &[(destination, "sub-0")])
                            .map_err(|e| format!("connection {i}: {e}"))?;
                        mine.push(stream);
                        let n = opened_so_far.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                        if n % 2_000 == 0 {
                            eprintln!("idle: {n} connections open ({:.1} s)", started.elapsed().as_secs_f64());
                        }
                    }
                    Ok(mine)
                })
            })
            .collect();
        let mut all = Vec::with_capacity(connections);
        for worker in workers {
            all.extend(worker.join().map_err(|_| "a client thread panicked".to_string())??);
        }
        Ok::<_, String>(all)
    })?;
    let opened = started.elapsed().as_secs_f64();
    let cpu_open = metric("process_cpu_seconds_total")? - cpu_before;
    std::thread::sleep(settle);
    let rss_after = metric("process_resident_memory_bytes")?;
    let open = metric("chat_connections")?;
    let subscriptions = metric("chat_subscriptions")?;
    let per_connection = (rss_after - rss_before) / connections.max(1) as f64;
    println!("idle: {connections} connections ({open} open, {subscriptions} subscriptions over {channels} channels), opened in {opened:.1} s");
    let setups = connections as f64 / cpu_open.max(0.001);
    println!(
        "idle: engine CPU {cpu_open:.2} s while they opened ({:.0}% of its core): {setups:.0} setups per engine CPU-second (target >= {TARGET_SETUPS:.0}: {})",
        cpu_open / opened.max(0.001) * 100.0,
        if setups >= TARGET_SETUPS { "met" } else { "NOT met" }
    );
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
