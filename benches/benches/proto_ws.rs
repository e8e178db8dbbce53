//! `proto::ws`: decoding masked client frames (128 B and 16 KiB payloads, many
//! frames in one read buffer, as a busy connection sees them), encoding server frames,
//! and unmasking. Throughput in bytes of wire data.

use std::hint::black_box;

use benches::fixtures::{self, MASK};
use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use proto::ws;

fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("ws/decode");
    for (payload, count) in [(128, 1_000), (16 * 1024, 64)] {
        let input = fixtures::masked_frames(payload, count);
        group.throughput(Throughput::Bytes(input.len() as u64));
        group.bench_function(format!("{count}x{payload}B_masked"), |b| {
            b.iter_batched(
                || (input.clone(), ws::Decoder::new(ws::Role::Server, fixtures::WS_LIMITS)),
                |(mut buf, mut decoder)| {
                    let mut n = 0;
                    while let Ok(Some(message)) = decoder.decode(&mut buf) {
                        black_box(message);
                        n += 1;
                    }
                    assert_eq!(n, count);
                },
                BatchSize::LargeInput,
            )
        });
    }
    group.finish();
}

fn encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("ws/encode");
    for payload in [128, 16 * 1024] {
        let data = fixtures::text(payload);
        let mut out = BytesMut::with_capacity(payload + 16);
        group.throughput(Throughput::Bytes(payload as u64));
        group.bench_function(format!("server_{payload}B"), |b| {
            b.iter(|| {
                out.clear();
                ws::encode_frame(ws::OpCode::Text, black_box(&data), None, &mut out)
            })
        });
        group.bench_function(format!("client_masked_{payload}B"), |b| {
            b.iter(|| {
                out.clear();
                ws::encode_frame(ws::OpCode::Text, black_box(&data), Some(MASK), &mut out)
            })
        });
    }
    group.finish();
}

fn mask(c: &mut Criterion) {
    let mut group = c.benchmark_group("ws/apply_mask");
    let mut data = fixtures::text(16 * 1024);
    group.throughput(Throughput::Bytes(data.len() as u64));
    group.bench_function("16KiB", |b| b.iter(|| ws::apply_mask(black_box(&mut data), MASK, 1)));
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(std::time::Duration::from_secs(1)).measurement_time(std::time::Duration::from_secs(3));
    targets = decode, encode, mask
}
criterion_main!(benches);
