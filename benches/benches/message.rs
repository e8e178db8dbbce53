//! `engine::message::prepare`: the simd-json parse of a `/pub/chat` body, the channel
//! lookup and the server `time` (and, with authentication, `sender`) set, once per
//! published message. Throughput in bytes of body.

use std::hint::black_box;

use benches::fixtures;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use engine::message;

fn prepare(c: &mut Criterion) {
    let mut group = c.benchmark_group("chat/prepare");
    let now = fixtures::fixed_now();
    let mut scratch = Vec::new();
    for bytes in [128, 4096] {
        let body = fixtures::chat_body(bytes);
        group.throughput(Throughput::Bytes(bytes as u64));
        group.bench_function(format!("adds_time_{bytes}B"), |b| {
            b.iter(|| message::prepare(black_box(&body), None, now, &mut scratch))
        });
    }
    let mut timed = fixtures::chat_body(128);
    timed.truncate(timed.len() - 1);
    timed.extend_from_slice(br#","time":"2026-11-18T11:06:40.123Z"}"#);
    group.throughput(Throughput::Bytes(timed.len() as u64));
    group.bench_function("replaces_time_128B", |b| {
        b.iter(|| message::prepare(black_box(&timed), None, now, &mut scratch))
    });
    // Authentication on: the token's `sub` replaces the body's `sender`.
    let body = fixtures::chat_body(128);
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("sets_sender_128B", |b| {
        b.iter(|| message::prepare(black_box(&body), Some(br#""user-7""#), now, &mut scratch))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(std::time::Duration::from_secs(1)).measurement_time(std::time::Duration::from_secs(3));
    targets = prepare
}
criterion_main!(benches);
