//! The single-node fan-out load driver behind the flamegraphs (and a quick way to see
//! the e2e numbers outside criterion): `--subscribers` (100) raw STOMP subscribers of
//! one channel and one publisher of `--body` (128) byte messages, against `--target` or
//! a one-shard engine it starts on core `--engine-cpu` (0). It runs pinned to core
//! `--cpu` (1) for `--seconds` (10): bursts of `--burst` (100) messages, each waited for
//! in full, or with `--paced RATE` messages a second and a latency report.

use std::net::SocketAddrV4;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use benches::args::Flags;
use benches::engine_process::{self, EngineProcess};
use benches::rig::{self, Rig};

fn main() -> ExitCode {
    match run(&Flags::from_env()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fanout_load: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(flags: &Flags) -> Result<(), String> {
    let subscribers: usize = flags.get("subscribers", 100)?;
    let body: usize = flags.get("body", 128)?;
    let burst: usize = flags.get("burst", 100)?;
    let seconds: f64 = flags.get("seconds", 10.0)?;
    let engine = match flags.raw("target") {
        Some(_) => None,
        None => Some(EngineProcess::start(flags.get("engine-cpu", 0)?, &[]).map_err(|e| e.to_string())?),
    };
    let target = match (&engine, flags.raw("target")) {
        (Some(engine), _) => engine.addr,
        (None, Some(addr)) => addr.parse::<SocketAddrV4>().map_err(|e| format!("--target: {e}"))?,
        (None, None) => return Err("no target".into()),
    };
    let cpu = flags.get("cpu", 1)?;
    if let Err(e) = engine_process::pin_current_thread(cpu) {
        eprintln!("fanout_load: cannot pin to core {cpu}: {e}");
    }
    let mut rig = Rig::connect(target, subscribers, body).map_err(|e| format!("setup: {e}"))?;
    let cpu_seconds = || {
        let text = engine_process::http_get(target, "/metrics").ok()?;
        text.lines()
            .find(|l| l.starts_with("process_cpu_seconds_total"))?
            .rsplit(' ')
            .next()?
            .parse::<f64>()
            .ok()
    };
    let duration = Duration::from_secs_f64(seconds);
    let cpu_before = cpu_seconds();
    let start = Instant::now();
    let first = rig.sent();
    if let Some(rate) = flags.raw("paced") {
        let rate: u64 = rate.parse().map_err(|_| format!("--paced: cannot parse `{rate}`"))?;
        let latency = rig.paced(rate, duration).map_err(|e| format!("paced run: {e}"))?;
        println!(
            "fanout_load: paced {rate} msg/s, fan-out {subscribers}, {body} B: {}",
            rig::latency_line(&latency)
        );
    } else {
        while start.elapsed() < duration {
            rig.burst(burst).map_err(|e| format!("burst: {e}"))?;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let delivered = (rig.sent() - first) * subscribers as u64;
    let cpu = cpu_before.zip(cpu_seconds()).map(|(a, b)| b - a);
    println!(
        "fanout_load: {} messages, {delivered} deliveries in {secs:.2} s = {:.0} delivered msgs/s{}",
        rig.sent() - first,
        delivered as f64 / secs,
        cpu.map_or(String::new(), |c| format!(
            "; engine CPU {c:.2} s = {:.0} deliveries per engine CPU-second",
            delivered as f64 / c
        ))
    );
    Ok(())
}
