//! Fan-out of one 128-byte chat message to 100 and 10,000 subscribers spread over 2 and
//! 4 shards, through the engine's channel mesh: one glommio executor per shard with a
//! real `Router` (`benches::mesh`). Shard 0 publishes a round of messages with
//! `Router::publish`; a round's time runs from its first publish to the last delivery
//! seen on every shard. `same_shard` puts every subscriber on shard 0 of 2 (no mesh
//! traffic), as the reference. A round queues about 1 MiB in all (at least one message),
//! as `fanout/deliver` does between drains; queues are drained between rounds, outside
//! the measured time. Throughput in deliveries (elements).

use std::time::Duration;

use benches::fixtures;
use benches::mesh::{self, MeshRig};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use engine::fanout::{self, Scratch};

/// Bytes queued over all subscribers in one round (then drained).
const ROUND_BYTES: usize = 1 << 20;

fn across_shards(c: &mut Criterion) {
    let mut group = c.benchmark_group("fanout_shards");
    let msg = fixtures::published(mesh::BODY_BYTES);
    let frame_bytes = fanout::encode(&msg, &fixtures::raw_key(), &mut Scratch::default()).len();
    for subscribers in [100usize, 10_000] {
        let messages = (ROUND_BYTES / frame_bytes / subscribers).max(1);
        group.throughput(Throughput::Elements((subscribers * messages) as u64));
        let mut same_shard = vec![0; 2];
        same_shard[0] = subscribers;
        let layouts = [
            ("same_shard", same_shard),
            ("2_shards", mesh::spread(subscribers, 2)),
            ("4_shards", mesh::spread(subscribers, 4)),
        ];
        for (name, layout) in layouts {
            let rig = MeshRig::start(&layout, messages).expect("start the bench shards");
            group.bench_function(BenchmarkId::new(name, subscribers), |b| {
                b.iter_custom(|rounds| rig.run(rounds))
            });
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    targets = across_shards
}
criterion_main!(benches);
