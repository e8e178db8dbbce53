//! The Kafka path without a broker (`benches::route`). `route`: one polled batch of 1024
//! records over 100 channels (200-byte JSON values, slices of one shared buffer) split
//! per shard by interest with `bridge::split` and delivered by each of 2 shards'
//! `Router::deliver_from_kafka` to 10 subscribers per channel (20 deliveries a record),
//! queues drained after each batch as writers drain them. `encode`: the producer's
//! per-record build (`bridge::encode_record`: key, value, `origin`/`id` headers) for
//! 1024 records. Throughput in records (elements).

use std::hint::black_box;
use std::time::Duration;

use benches::route::{self, KafkaRoute};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use engine::bridge;

fn route_batch(c: &mut Criterion) {
    let mut group = c.benchmark_group("kafka");
    let records = route::batch(route::RECORDS, route::CHANNELS, route::VALUE_BYTES);
    let mut rig = KafkaRoute::new(route::SHARDS, route::CHANNELS, route::SUBSCRIBERS);
    group.throughput(Throughput::Elements(records.len() as u64));
    group.bench_function("route", |b| b.iter(|| rig.route(black_box(&records))));
    group.finish();
}

fn encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("kafka");
    let records = route::outgoing(route::RECORDS, route::CHANNELS, route::VALUE_BYTES);
    group.throughput(Throughput::Elements(records.len() as u64));
    group.bench_function("encode", |b| {
        b.iter(|| {
            for record in &records {
                black_box(bridge::encode_record(
                    "chat",
                    route::NODE_ID.as_bytes(),
                    black_box(record),
                ));
            }
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    targets = route_batch, encode
}
criterion_main!(benches);
