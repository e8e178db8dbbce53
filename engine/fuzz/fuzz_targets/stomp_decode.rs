//! Fuzzes `stomp::Decoder`: arbitrary bytes, decoded whole and in chunks, must give
//! the same frames and the same error, never a panic. Frames decoded under 1.2 with
//! escaped headers must also survive `encode_frame` and a second decode unchanged.
#![no_main]

use bytes::BytesMut;
use proto::stomp::{encode_frame, Command, Decoder, Error, Frame, Item, Limits, Version};
use libfuzzer_sys::fuzz_target;

const LIMITS: Limits = Limits {
    max_frame_bytes: 4096,
    max_headers: 16,
    max_line_bytes: 8 * 1024,
};

fuzz_target!(|data: &[u8]| {
    let Some((&control, input)) = data.split_first() else {
        return;
    };
    let version = match control % 3 {
        0 => Version::V1_0,
        1 => Version::V1_1,
        _ => Version::V1_2,
    };
    let chunk_len = usize::from(control / 3) % 64 + 1;
    let whole = decode(&[input], version);
    let chunks: Vec<&[u8]> = input.chunks(chunk_len).collect();
    assert_eq!(decode(&chunks, version), whole, "chunks of {chunk_len}");
    if version == Version::V1_2 {
        for item in &whole.0 {
            if let Item::Frame(frame) = item {
                check_round_trip(frame);
            }
        }
    }
});

/// Items decoded until the end of the input or the first error.
fn decode(chunks: &[&[u8]], version: Version) -> (Vec<Item>, Option<Error>) {
    let mut decoder = Decoder::new(LIMITS);
    decoder.set_version(version);
    let mut buf = BytesMut::new();
    let mut items = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(item)) => items.push(item),
                Ok(None) => break,
                Err(e) => return (items, Some(e)),
            }
        }
    }
    (items, None)
}

/// Re-encodes a 1.2 frame whose values are escaped and whose names need no escaping,
/// and expects to decode the same frame.
fn check_round_trip(frame: &Frame) {
    if matches!(
        frame.command,
        Command::Connect | Command::Stomp | Command::Connected
    ) {
        return;
    }
    let mut headers = Vec::new();
    for (name, value) in &frame.headers {
        let Ok(name) = std::str::from_utf8(name) else {
            return;
        };
        if name
            .bytes()
            .any(|b| matches!(b, b'\r' | b'\n' | b':' | b'\\'))
        {
            return;
        }
        headers.push((name, value.as_ref()));
    }
    let mut wire = BytesMut::new();
    encode_frame(
        frame.command,
        &headers,
        &frame.body,
        Version::V1_2,
        &mut wire,
    );
    let (items, error) = decode(&[&wire], Version::V1_2);
    assert_eq!(error, None);
    assert_eq!(items, [Item::Frame(frame.clone())]);
}
