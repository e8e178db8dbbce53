//! `proto::stomp`: parsing `SEND` frames as publishers send them (many in one
//! buffer), encoding a `MESSAGE` with the headers every subscriber gets, and header
//! escaping. Throughput in bytes of STOMP data.

use std::hint::black_box;

use benches::fixtures;
use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use proto::stomp::{self, Command, Version};

fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("stomp/decode");
    let count = 1_000;
    let input = fixtures::send_frames(128, count);
    group.throughput(Throughput::Bytes(input.len() as u64));
    group.bench_function("1000x_send_128B", |b| {
        b.iter_batched(
            || {
                let mut decoder = stomp::Decoder::new(fixtures::STOMP_LIMITS);
                decoder.set_version(Version::V1_2);
                (input.clone(), decoder)
            },
            |(mut buf, mut decoder)| {
                let mut n = 0;
                while let Ok(Some(item)) = decoder.decode(&mut buf) {
                    black_box(item);
                    n += 1;
                }
                assert_eq!(n, count);
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

fn encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("stomp/encode");
    let body = fixtures::chat_body(128);
    let length = body.len().to_string();
    let headers: [(&str, &[u8]); 5] = [
        ("destination", b"/sub/chat/bench"),
        ("content-type", b"application/json"),
        ("subscription", b"sub-0"),
        ("message-id", b"node-0-0-1234567"),
        ("content-length", length.as_bytes()),
    ];
    let mut out = BytesMut::with_capacity(512);
    stomp::encode_frame(Command::Message, &headers, &body, Version::V1_2, &mut out);
    group.throughput(Throughput::Bytes(out.len() as u64));
    group.bench_function("message_128B", |b| {
        b.iter(|| {
            out.clear();
            stomp::encode_frame(
                Command::Message,
                black_box(&headers),
                black_box(&body),
                Version::V1_2,
                &mut out,
            )
        })
    });
    let value = b"a header:with\nall\\the escapes\r and some more text around them".repeat(4);
    group.throughput(Throughput::Bytes(value.len() as u64));
    group.bench_function("escape_header_v12", |b| {
        b.iter(|| {
            out.clear();
            stomp::escape_into(black_box(&value), Version::V1_2, &mut out)
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(std::time::Duration::from_secs(1)).measurement_time(std::time::Duration::from_secs(3));
    targets = decode, encode
}
criterion_main!(benches);
