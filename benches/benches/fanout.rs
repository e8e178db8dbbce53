//! `engine::fanout`: encoding a `MESSAGE` once per wire form (raw WebSocket, SockJS),
//! and delivering one 128-byte chat message to 1, 100 and 10,000 subscribers of one
//! shard (one `Group`, each member with its own `Rc<Outbound>`). Queues are drained the
//! way the writers drain them (swap out, clear), every few messages so that memory stays
//! bounded; the drain is part of the measured cost, as it is in the engine. Throughput
//! in deliveries (elements). Fan-out across shards and Kafka batch encode/route are not
//! measured here yet.

use std::hint::black_box;
use std::time::Instant;

use benches::fixtures;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use engine::fanout::{self, Scratch};

fn encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("fanout/encode");
    let msg = fixtures::published(128);
    let mut scratch = Scratch::default();
    for (name, key) in [("raw", fixtures::raw_key()), ("sockjs", fixtures::sockjs_key())] {
        let wire_len = fanout::encode(&msg, &key, &mut scratch).len();
        group.throughput(Throughput::Bytes(wire_len as u64));
        group.bench_function(format!("{name}_128B"), |b| {
            b.iter(|| fanout::encode(black_box(&msg), &key, &mut scratch).len())
        });
    }
    group.finish();
}

fn deliver(c: &mut Criterion) {
    let mut group = c.benchmark_group("fanout/deliver");
    let msg = fixtures::published(128);
    let frame_bytes = fanout::encode(&msg, &fixtures::raw_key(), &mut Scratch::default()).len();
    for members in [1usize, 100, 10_000] {
        // Drain after about 1 MiB per member queue has built up, at least every message.
        let drain_every = ((1 << 20) / frame_bytes / members).max(1) as u64;
        let groups = [fixtures::group(fixtures::raw_key(), members, 4 << 20)];
        let (mut scratch, mut spare) = (Scratch::default(), Vec::new());
        if members >= 10_000 {
            group.sample_size(20);
        }
        group.throughput(Throughput::Elements(members as u64));
        group.bench_function(format!("raw_128B_to_{members}"), |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for i in 0..iters {
                    let n = fanout::deliver(black_box(&msg), &groups, &mut scratch);
                    debug_assert_eq!(n, members as u64);
                    if i % drain_every == drain_every - 1 {
                        fixtures::drain(&groups, &mut spare);
                    }
                }
                let elapsed = start.elapsed();
                fixtures::drain(&groups, &mut spare);
                elapsed
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(std::time::Duration::from_secs(1)).measurement_time(std::time::Duration::from_secs(3));
    targets = encode, deliver
}
criterion_main!(benches);
