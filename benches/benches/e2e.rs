//! End to end over loopback: the real `chat-engine` with one shard on core 0, this client
//! on core 1 with 100 raw STOMP subscribers of one channel and one publisher. Each
//! iteration publishes a burst of `BURST` 128-byte `/pub/chat` messages and waits for all
//! 100×`BURST` `MESSAGE` frames: elements/s is delivered messages per second at fan-out 100
//! on one engine core; a paced run then prints publish→deliver p50/p99. Build the engine
//! first (`cargo build --release -p chat-engine`, or set `CHAT_ENGINE_BIN`); cores:
//! `BENCH_ENGINE_CPU` (0), `BENCH_CLIENT_CPU` (1); paced rate: `E2E_PACED_RATE` (2000/s).

use std::time::{Duration, Instant};

use benches::engine_process::{self, EngineProcess};
use benches::rig::{self, Rig};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const SUBSCRIBERS: usize = 100;
const BODY_BYTES: usize = 128;
const BURST: usize = 100;

fn fanout_100(c: &mut Criterion) {
    let engine_cpu = engine_process::cpu_from_env("BENCH_ENGINE_CPU", 0);
    let client_cpu = engine_process::cpu_from_env("BENCH_CLIENT_CPU", 1);
    let engine = match EngineProcess::start(engine_cpu, &[]) {
        Ok(engine) => engine,
        Err(e) => {
            eprintln!("e2e: skipped: {e}");
            return;
        }
    };
    if let Err(e) = engine_process::pin_current_thread(client_cpu) {
        eprintln!("e2e: cannot pin the client to core {client_cpu}: {e}");
    }
    let mut rig = match Rig::connect(engine.addr, SUBSCRIBERS, BODY_BYTES) {
        Ok(rig) => rig,
        Err(e) => {
            eprintln!("e2e: skipped: setup failed: {e}");
            return;
        }
    };
    let cpu_before = engine.metric("process_cpu_seconds_total").unwrap_or(f64::NAN);
    let sent_before = rig.sent();
    let wall = Instant::now();

    let mut group = c.benchmark_group("e2e");
    group.sample_size(20).measurement_time(Duration::from_secs(10));
    group.throughput(Throughput::Elements((SUBSCRIBERS * BURST) as u64));
    group.bench_function(format!("fanout{SUBSCRIBERS}_{BODY_BYTES}B_burst{BURST}"), |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                if let Err(e) = rig.burst(BURST) {
                    panic!("e2e burst failed: {e}");
                }
            }
            start.elapsed()
        })
    });
    group.finish();

    let cpu = engine.metric("process_cpu_seconds_total").unwrap_or(f64::NAN) - cpu_before;
    let delivered = (rig.sent() - sent_before) * SUBSCRIBERS as u64;
    let secs = wall.elapsed().as_secs_f64();
    println!(
        "e2e: {delivered} deliveries in {secs:.1} s wall (incl. criterion overhead): engine CPU {cpu:.2} s = {:.0} deliveries per engine CPU-second",
        delivered as f64 / cpu
    );

    let rate = std::env::var("E2E_PACED_RATE")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(2_000);
    match rig.paced(rate, Duration::from_secs(3)) {
        Ok(h) => println!(
            "e2e: paced {rate} msg/s x {SUBSCRIBERS} subscribers, publish->deliver: {}",
            rig::latency_line(&h)
        ),
        Err(e) => println!("e2e: paced run failed: {e}"),
    }
}

criterion_group!(benches, fanout_100);
criterion_main!(benches);
