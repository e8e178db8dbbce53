//! WebSocket framing against RFC 6455 and its examples: decoding in every split, masking,
//! limits, UTF-8, close codes, and encoding.

use super::*;
use proptest::prelude::*;

const LIMITS: Limits = Limits {
    max_frame_bytes: 1 << 20,
    max_message_bytes: 1 << 21,
};
/// The masking key of the RFC 6455 §5.7 examples.
const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// What a decoder made of a byte stream: the messages, then the first error, or
/// the bytes left over waiting for more input.
#[derive(Debug, PartialEq)]
struct Outcome {
    messages: Vec<Message>,
    error: Option<Error>,
    leftover_bytes: usize,
}

impl Outcome {
    fn ok(messages: Vec<Message>) -> Outcome {
        Outcome {
            messages,
            error: None,
            leftover_bytes: 0,
        }
    }

    fn err(messages: Vec<Message>, error: Error) -> Outcome {
        Outcome {
            messages,
            error: Some(error),
            leftover_bytes: 0,
        }
    }
}

/// Feeds `chunks` one after another, decoding everything each one completes.
fn run(role: Role, limits: Limits, chunks: &[&[u8]]) -> Outcome {
    let mut decoder = Decoder::new(role, limits);
    let mut buf = BytesMut::new();
    let mut messages = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(message)) => messages.push(message),
                Ok(None) => break,
                Err(error) => return Outcome::err(messages, error),
            }
        }
    }
    Outcome {
        messages,
        error: None,
        leftover_bytes: buf.len(),
    }
}

/// Decodes `input` all at once, byte by byte and split in two at every offset,
/// checks that all of them agree and returns the outcome.
fn decode_every_split(role: Role, limits: Limits, input: &[u8]) -> Outcome {
    let whole = run(role, limits, &[input]);
    let bytes: Vec<&[u8]> = input.chunks(1).collect();
    assert_eq!(run(role, limits, &bytes), whole, "byte by byte");
    for at in 0..=input.len() {
        let (head, tail) = input.split_at(at);
        assert_eq!(run(role, limits, &[head, tail]), whole, "split at {at}");
    }
    whole
}

/// A raw frame with first byte `b0`, built without `encode_header`.
fn raw(b0: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    let mut out = vec![b0];
    match payload.len() {
        n @ 0..=125 => out.push(mask_bit | n as u8),
        n @ 126..=0xFFFF => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    match mask {
        Some(key) => {
            out.extend_from_slice(&key);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        }
        None => out.extend_from_slice(payload),
    }
    out
}

fn text(s: &str) -> Message {
    Message::Text(BytesMut::from(s.as_bytes()))
}

fn protocol_error(input: &[u8], role: Role) -> Error {
    let outcome = decode_every_split(role, LIMITS, input);
    let error = outcome.error.unwrap_or_else(|| panic!("no error in {outcome:?}"));
    assert!(matches!(error, Error::Protocol(_)), "{error:?}");
    error
}

// RFC 6455 §5.7 examples.

#[test]
fn rfc_single_frame_unmasked_text() {
    let input = [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
    assert_eq!(
        decode_every_split(Role::Client, LIMITS, &input),
        Outcome::ok(vec![text("Hello")])
    );
}

#[test]
fn rfc_single_frame_masked_text() {
    let input = [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58];
    assert_eq!(
        decode_every_split(Role::Server, LIMITS, &input),
        Outcome::ok(vec![text("Hello")])
    );
}

#[test]
fn rfc_fragmented_unmasked_text() {
    let input = [0x01, 0x03, 0x48, 0x65, 0x6c, 0x80, 0x02, 0x6c, 0x6f];
    assert_eq!(
        decode_every_split(Role::Client, LIMITS, &input),
        Outcome::ok(vec![text("Hello")])
    );
}

#[test]
fn rfc_ping_and_masked_pong() {
    let mut input = vec![0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
    assert_eq!(
        decode_every_split(Role::Client, LIMITS, &input),
        Outcome::ok(vec![Message::Ping(Bytes::from_static(b"Hello"))])
    );
    input = vec![0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58];
    assert_eq!(
        decode_every_split(Role::Server, LIMITS, &input),
        Outcome::ok(vec![Message::Pong(Bytes::from_static(b"Hello"))])
    );
}

#[test]
fn rfc_256_byte_binary() {
    let payload: Vec<u8> = (0..=255).collect();
    let mut input = vec![0x82, 0x7E, 0x01, 0x00];
    input.extend_from_slice(&payload);
    assert_eq!(
        decode_every_split(Role::Client, LIMITS, &input),
        Outcome::ok(vec![Message::Binary(payload[..].into())])
    );
    // The same payload masked, as a client sends it.
    let masked = raw(0x82, &payload, Some(KEY));
    assert_eq!(
        decode_every_split(Role::Server, LIMITS, &masked),
        Outcome::ok(vec![Message::Binary(payload[..].into())])
    );
}

#[test]
fn rfc_64k_binary() {
    let payload: Vec<u8> = (0..65536u32).map(|i| (i % 251) as u8).collect();
    let mut input = vec![0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0];
    input.extend_from_slice(&payload);
    assert_eq!(
        decode_every_split(Role::Client, LIMITS, &input),
        Outcome::ok(vec![Message::Binary(payload[..].into())])
    );
}

// Framing rules.

#[test]
fn server_rejects_unmasked_client_frames() {
    protocol_error(&raw(0x81, b"Hello", None), Role::Server);
    protocol_error(&raw(0x89, b"", None), Role::Server);
}

#[test]
fn client_rejects_masked_server_frames() {
    protocol_error(&raw(0x81, b"Hello", Some(KEY)), Role::Client);
}

#[test]
fn reserved_bits_are_rejected() {
    for rsv in [0x40, 0x20, 0x10] {
        protocol_error(&raw(0x81 | rsv, b"Hello", Some(KEY)), Role::Server);
    }
}

#[test]
fn unknown_opcodes_are_rejected() {
    for opcode in [0x3, 0x4, 0x5, 0x6, 0x7, 0xB, 0xC, 0xD, 0xE, 0xF] {
        protocol_error(&raw(0x80 | opcode, b"x", Some(KEY)), Role::Server);
    }
}

#[test]
fn control_frames_are_short_and_final() {
    for opcode in [0x8, 0x9, 0xA] {
        protocol_error(&raw(0x80 | opcode, &[b'a'; 126], Some(KEY)), Role::Server);
        protocol_error(&raw(opcode, b"", Some(KEY)), Role::Server);
    }
    // Exactly 125 bytes is fine.
    let outcome = decode_every_split(Role::Server, LIMITS, &raw(0x89, &[7; 125], Some(KEY)));
    assert_eq!(outcome, Outcome::ok(vec![Message::Ping(vec![7; 125].into())]));
}

#[test]
fn continuation_without_a_message_is_rejected() {
    protocol_error(&raw(0x80, b"lo", Some(KEY)), Role::Server);
    protocol_error(&raw(0x00, b"lo", Some(KEY)), Role::Server);
    // Also right after a message has been completed.
    let mut input = raw(0x81, b"Hel", Some(KEY));
    input.extend(raw(0x80, b"lo", Some(KEY)));
    let outcome = decode_every_split(Role::Server, LIMITS, &input);
    assert_eq!(outcome.messages, vec![text("Hel")]);
    assert!(matches!(outcome.error, Some(Error::Protocol(_))));
}

#[test]
fn new_data_frame_inside_a_fragmented_message_is_rejected() {
    for opcode in [0x1, 0x2, 0x81, 0x82] {
        let mut input = raw(0x01, b"Hel", Some(KEY));
        input.extend(raw(opcode, b"lo", Some(KEY)));
        protocol_error(&input, Role::Server);
    }
}

#[test]
fn control_frames_between_fragments_come_out_at_once() {
    let mut input = raw(0x02, b"He", Some(KEY));
    input.extend(raw(0x89, b"p1", Some(KEY)));
    input.extend(raw(0x00, b"l", Some(KEY)));
    input.extend(raw(0x8A, b"", Some(KEY)));
    input.extend(raw(0x88, &[0x03, 0xE8], Some(KEY)));
    input.extend(raw(0x80, b"lo", Some(KEY)));
    let outcome = decode_every_split(Role::Server, LIMITS, &input);
    let expected = vec![
        Message::Ping(Bytes::from_static(b"p1")),
        Message::Pong(Bytes::new()),
        Message::Close(Some((1000, Bytes::new()))),
        Message::Binary(BytesMut::from(&b"Hello"[..])),
    ];
    assert_eq!(outcome, Outcome::ok(expected));
}

#[test]
fn sixty_four_bit_length_with_top_bit_is_rejected() {
    let input = [0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 5, 1, 2, 3, 4];
    protocol_error(&input, Role::Server);
}

#[test]
fn non_minimal_lengths_are_accepted() {
    let mut len16 = vec![0x81, 0x7E, 0x00, 0x05];
    len16.extend_from_slice(b"Hello");
    assert_eq!(
        decode_every_split(Role::Client, LIMITS, &len16),
        Outcome::ok(vec![text("Hello")])
    );
    let mut len64 = vec![0x81, 0x7F, 0, 0, 0, 0, 0, 0, 0, 0x05];
    len64.extend_from_slice(b"Hello");
    assert_eq!(
        decode_every_split(Role::Client, LIMITS, &len64),
        Outcome::ok(vec![text("Hello")])
    );
}

#[test]
fn oversized_frame_is_rejected_from_its_header_alone() {
    let limits = Limits {
        max_frame_bytes: 100,
        max_message_bytes: 1000,
    };
    // Only the header of a 2^40-byte frame: rejected before any payload arrives
    // and without reserving memory for it.
    let header = [0x82, 0xFF, 0, 0, 0x01, 0, 0, 0, 0, 0, 1, 2, 3, 4];
    let mut buf = BytesMut::from(&header[..]);
    let mut decoder = Decoder::new(Role::Server, limits);
    assert_eq!(decoder.decode(&mut buf), Err(Error::TooBig));
    assert!(buf.capacity() < 1024);
    assert_eq!(
        decode_every_split(Role::Server, limits, &header),
        Outcome::err(vec![], Error::TooBig)
    );
    assert_eq!(Error::TooBig.close_code(), 1009);
    // Exactly at the limit is fine.
    let at_limit = raw(0x82, &[1; 100], Some(KEY));
    assert_eq!(
        run(Role::Server, limits, &[&at_limit]),
        Outcome::ok(vec![Message::Binary(BytesMut::from(&[1u8; 100][..]))])
    );
    let over = raw(0x82, &[1; 101], Some(KEY));
    assert_eq!(
        run(Role::Server, limits, &[&over[..8]]),
        Outcome::err(vec![], Error::TooBig)
    );
}

#[test]
fn oversized_message_is_rejected_at_the_fragment_that_overflows() {
    let limits = Limits {
        max_frame_bytes: 100,
        max_message_bytes: 250,
    };
    let mut input = raw(0x02, &[1; 100], Some(KEY));
    input.extend(raw(0x00, &[2; 100], Some(KEY)));
    input.extend(raw(0x80, &[3; 50], Some(KEY)));
    let outcome = decode_every_split(Role::Server, limits, &input);
    assert_eq!(outcome.messages.len(), 1);
    let mut over = raw(0x02, &[1; 100], Some(KEY));
    over.extend(raw(0x00, &[2; 100], Some(KEY)));
    over.extend(raw(0x80, &[3; 51], Some(KEY)));
    assert_eq!(
        decode_every_split(Role::Server, limits, &over),
        Outcome::err(vec![], Error::TooBig)
    );
    // A single frame is a message too.
    let limits = Limits {
        max_frame_bytes: 100,
        max_message_bytes: 50,
    };
    assert_eq!(
        run(Role::Server, limits, &[&raw(0x82, &[1; 51], Some(KEY))]),
        Outcome::err(vec![], Error::TooBig)
    );
}

#[test]
fn invalid_utf8_in_a_single_frame() {
    let outcome = decode_every_split(Role::Server, LIMITS, &raw(0x81, b"Hel\xFFlo", Some(KEY)));
    assert_eq!(outcome, Outcome::err(vec![], Error::InvalidUtf8));
    assert_eq!(Error::InvalidUtf8.close_code(), 1007);
    // Binary messages are not checked.
    let outcome = decode_every_split(Role::Server, LIMITS, &raw(0x82, b"Hel\xFFlo", Some(KEY)));
    assert_eq!(
        outcome,
        Outcome::ok(vec![Message::Binary(BytesMut::from(&b"Hel\xFFlo"[..]))])
    );
}

#[test]
fn utf8_split_across_fragments_is_valid() {
    // "κόσμε" and a 4-byte emoji, cut inside multi-byte sequences.
    let s = "κόσμε 😀".as_bytes();
    for cut1 in 0..=s.len() {
        for cut2 in cut1..=s.len() {
            let mut input = raw(0x01, &s[..cut1], None);
            input.extend(raw(0x00, &s[cut1..cut2], None));
            input.extend(raw(0x80, &s[cut2..], None));
            assert_eq!(
                run(Role::Client, LIMITS, &[&input]),
                Outcome::ok(vec![text("κόσμε 😀")])
            );
        }
    }
    let mut input = raw(0x01, &s[..3], Some(KEY));
    input.extend(raw(0x80, &s[3..], Some(KEY)));
    assert_eq!(
        decode_every_split(Role::Server, LIMITS, &input),
        Outcome::ok(vec![text("κόσμε 😀")])
    );
}

#[test]
fn invalid_utf8_fails_at_the_fragment_where_it_is_certain() {
    // `ED A0` starts a surrogate: invalid at once, before the message ends.
    let mut input = raw(0x01, b"ab\xED", Some(KEY));
    input.extend(raw(0x00, b"\xA0\x80", Some(KEY)));
    let error_at = input.len();
    input.extend(raw(0x80, b"cd", Some(KEY)));
    assert_eq!(
        run(Role::Server, LIMITS, &[&input[..error_at]]),
        Outcome::err(vec![], Error::InvalidUtf8)
    );
    assert_eq!(
        decode_every_split(Role::Server, LIMITS, &input),
        Outcome::err(vec![], Error::InvalidUtf8)
    );
    // Above U+10FFFF: `F4 90` is certain after its second byte.
    let mut input = raw(0x01, b"\xF4", Some(KEY));
    input.extend(raw(0x00, b"\x90", Some(KEY)));
    assert_eq!(
        run(Role::Server, LIMITS, &[&input]),
        Outcome::err(vec![], Error::InvalidUtf8)
    );
    // A valid prefix in a non-final fragment is not an error yet.
    let input = raw(0x01, b"\xF0\x9F\x98", Some(KEY));
    assert_eq!(
        run(Role::Server, LIMITS, &[&input]),
        Outcome {
            messages: vec![],
            error: None,
            leftover_bytes: 0
        }
    );
}

#[test]
fn incomplete_utf8_at_the_final_fragment_is_invalid() {
    let mut input = raw(0x01, b"ab", Some(KEY));
    input.extend(raw(0x80, b"\xF0\x9F\x98", Some(KEY)));
    assert_eq!(
        decode_every_split(Role::Server, LIMITS, &input),
        Outcome::err(vec![], Error::InvalidUtf8)
    );
    let input = raw(0x81, b"\xE2\x82", Some(KEY));
    assert_eq!(
        decode_every_split(Role::Server, LIMITS, &input),
        Outcome::err(vec![], Error::InvalidUtf8)
    );
}

#[test]
fn close_bodies() {
    let close = |body: &[u8]| decode_every_split(Role::Server, LIMITS, &raw(0x88, body, Some(KEY)));
    assert_eq!(close(b""), Outcome::ok(vec![Message::Close(None)]));
    assert_eq!(
        close(b"\x03\xE8bye"),
        Outcome::ok(vec![Message::Close(Some((1000, Bytes::from_static(b"bye"))))])
    );
    assert!(matches!(close(b"\x03").error, Some(Error::Protocol(_))));
    assert_eq!(close(b"\x03\xE8\xFF").error, Some(Error::InvalidUtf8));
}

#[test]
fn close_codes_allowed_on_the_wire() {
    let decode_code = |code: u16| run(Role::Server, LIMITS, &[&raw(0x88, &code.to_be_bytes(), Some(KEY))]);
    for code in (1000..=1003).chain(1007..=1014).chain([3000, 3999, 4000, 4999]) {
        assert_eq!(
            decode_code(code),
            Outcome::ok(vec![Message::Close(Some((code, Bytes::new())))]),
            "{code}"
        );
    }
    for code in [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535] {
        let outcome = decode_code(code);
        assert!(matches!(outcome.error, Some(Error::Protocol(_))), "{code}: {outcome:?}");
    }
}

#[test]
fn close_code_mapping() {
    assert_eq!(Error::Protocol("x").close_code(), 1002);
    assert_eq!(Error::InvalidUtf8.close_code(), 1007);
    assert_eq!(Error::TooBig.close_code(), 1009);
}

#[test]
fn partial_input_stays_in_the_buffer() {
    let input = raw(0x81, b"Hello", Some(KEY));
    let mut decoder = Decoder::new(Role::Server, LIMITS);
    let mut buf = BytesMut::from(&input[..input.len() - 1]);
    assert_eq!(decoder.decode(&mut buf), Ok(None));
    assert_eq!(&buf[..], &input[..input.len() - 1]);
    buf.extend_from_slice(&input[input.len() - 1..]);
    assert_eq!(decoder.decode(&mut buf), Ok(Some(text("Hello"))));
    assert!(buf.is_empty());
    assert_eq!(decoder.decode(&mut buf), Ok(None));
}

#[test]
fn several_messages_in_one_buffer() {
    let mut input = raw(0x81, b"one", Some(KEY));
    input.extend(raw(0x82, b"two", Some(KEY)));
    input.extend(raw(0x81, b"", Some(KEY)));
    input.extend(raw(0x81, b"thr", Some(KEY))[..5].iter());
    let outcome = decode_every_split(Role::Server, LIMITS, &input);
    assert_eq!(
        outcome.messages,
        vec![text("one"), Message::Binary(BytesMut::from(&b"two"[..])), text("")]
    );
    assert_eq!(outcome.leftover_bytes, 5);
}

#[test]
fn idle_decoder_is_small() {
    assert!(std::mem::size_of::<Decoder>() <= 4 * std::mem::size_of::<usize>());
}

#[test]
fn apply_mask_matches_bytewise_xor_at_every_offset() {
    let data: Vec<u8> = (0..64u8).map(|i| i.wrapping_mul(37)).collect();
    for len in 0..data.len() {
        for offset in 0..8 {
            let mut fast = data[..len].to_vec();
            apply_mask(&mut fast, KEY, offset);
            let slow: Vec<u8> = data[..len]
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ KEY[(offset + i) % 4])
                .collect();
            assert_eq!(fast, slow, "len {len} offset {offset}");
        }
    }
    // Masking in two pieces with the running offset equals masking at once.
    let mut once = data.clone();
    apply_mask(&mut once, KEY, 0);
    let mut pieces = data.clone();
    let (a, b) = pieces.split_at_mut(13);
    apply_mask(a, KEY, 0);
    apply_mask(b, KEY, 13);
    assert_eq!(once, pieces);
}

#[test]
fn encode_header_length_forms() {
    let cases: [(usize, &[u8]); 6] = [
        (0, &[0x82, 0x00]),
        (125, &[0x82, 125]),
        (126, &[0x82, 126, 0, 126]),
        (65535, &[0x82, 126, 0xFF, 0xFF]),
        (65536, &[0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0]),
        (1 << 40, &[0x82, 127, 0, 0, 1, 0, 0, 0, 0, 0]),
    ];
    for (len, expected) in cases {
        let mut out = BytesMut::new();
        assert_eq!(encode_header(OpCode::Binary, true, len, None, &mut out), expected.len());
        assert_eq!(&out[..], expected, "{len}");
    }
    let mut out = BytesMut::from(&b"prefix"[..]);
    assert_eq!(encode_header(OpCode::Text, false, 5, Some(KEY), &mut out), 6);
    assert_eq!(&out[6..], &[0x01, 0x85, 0x37, 0xfa, 0x21, 0x3d]);
    out.clear();
    encode_header(OpCode::Continuation, true, 0, None, &mut out);
    assert_eq!(&out[..], &[0x80, 0x00]);
}

#[test]
fn encode_frame_matches_the_rfc_examples() {
    let mut out = BytesMut::new();
    assert_eq!(encode_frame(OpCode::Text, b"Hello", None, &mut out), 7);
    assert_eq!(&out[..], &[0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
    out.clear();
    assert_eq!(encode_frame(OpCode::Text, b"Hello", Some(KEY), &mut out), 11);
    assert_eq!(
        &out[..],
        &[0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]
    );
    out.clear();
    encode_frame(OpCode::Pong, b"Hello", Some(KEY), &mut out);
    assert_eq!(
        &out[..],
        &[0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]
    );
}

#[test]
fn encode_close_truncates_the_reason_at_a_char_boundary() {
    let mut out = BytesMut::new();
    assert_eq!(encode_close(1000, "bye", None, &mut out), 7);
    assert_eq!(&out[..], b"\x88\x05\x03\xE8bye");
    // 100 two-byte chars: 200 bytes, cut to 61 chars (122 bytes), not mid-char.
    let reason = "é".repeat(100);
    out.clear();
    let n = encode_close(1001, &reason, Some(KEY), &mut out);
    assert_eq!(n, 2 + 4 + 2 + 122);
    let outcome = run(Role::Server, LIMITS, &[&out]);
    let expected = Message::Close(Some((1001, Bytes::from("é".repeat(61)))));
    assert_eq!(outcome, Outcome::ok(vec![expected]));
    // An ASCII reason fills all 123 bytes.
    out.clear();
    assert_eq!(encode_close(1000, &"a".repeat(300), None, &mut out), 2 + 125);
}

mod round_trip;
