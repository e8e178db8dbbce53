//! `proto::sockjs`: escaping outbound STOMP text into a SockJS JSON string (the
//! per-message cost for the original browser clients), wrapping it in `a[...]`, and
//! decoding a client message (a JSON array of strings, with simd-json). Throughput in
//! bytes of input.

use std::hint::black_box;

use benches::fixtures;
use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use proto::sockjs;

fn escape(c: &mut Criterion) {
    let mut group = c.benchmark_group("sockjs/escape");
    for bytes in [256, 16 * 1024] {
        let payload = fixtures::sockjs_payload(bytes);
        let mut out = BytesMut::with_capacity(2 * bytes);
        group.throughput(Throughput::Bytes(bytes as u64));
        group.bench_function(format!("message_{bytes}B"), |b| {
            b.iter(|| {
                out.clear();
                sockjs::escape_into(black_box(&payload), &mut out)
            })
        });
        group.bench_function(format!("encode_array_{bytes}B"), |b| {
            b.iter(|| {
                out.clear();
                sockjs::encode_array(&[black_box(&payload[..])], &mut out)
            })
        });
    }
    group.finish();
}

fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("sockjs/decode");
    let mut stomp = BytesMut::new();
    fixtures::send_frame(&fixtures::chat_body(128), &mut stomp);
    let mut message = BytesMut::new();
    sockjs::encode_array(&[&stomp[..]], &mut message);
    let message = message.freeze();
    let (mut scratch, mut out) = (Vec::new(), BytesMut::with_capacity(1024));
    group.throughput(Throughput::Bytes(message.len() as u64));
    group.bench_function("send_128B", |b| {
        b.iter(|| {
            out.clear();
            sockjs::decode_message(black_box(&message), &mut scratch, &mut out)
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(std::time::Duration::from_secs(1)).measurement_time(std::time::Duration::from_secs(3));
    targets = escape, decode
}
criterion_main!(benches);
