//! Property tests: any messages, fragmented any way and cut into any chunks, decode back
//! to themselves in both roles.

use super::*;

/// One message of a round trip, with how to cut it into fragments.
#[derive(Debug, Clone)]
struct Case {
    message: Message,
    /// Cut points into the payload of a data message (more cuts, more fragments).
    cuts: Vec<prop::sample::Index>,
    /// A ping to send after the first fragment.
    ping: Option<Vec<u8>>,
    mask: [u8; 4],
}

fn message_strategy() -> impl Strategy<Value = Message> {
    let close_code = prop_oneof![1000u16..=1003, 1007u16..=1014, 3000u16..=4999];
    let reason = prop::collection::vec(any::<char>(), 0..30).prop_map(String::from_iter);
    prop_oneof![
        prop::collection::vec(any::<char>(), 0..200)
            .prop_map(|c| Message::Text(BytesMut::from(String::from_iter(c).as_bytes()))),
        prop::collection::vec(any::<u8>(), 0..300).prop_map(|b| Message::Binary(BytesMut::from(&b[..]))),
        prop::collection::vec(any::<u8>(), 0..=125).prop_map(|b| Message::Ping(b.into())),
        prop::collection::vec(any::<u8>(), 0..=125).prop_map(|b| Message::Pong(b.into())),
        prop::option::of((close_code, reason)).prop_map(|c| Message::Close(c.map(|(code, r)| (code, r.into())))),
    ]
}

fn case_strategy() -> impl Strategy<Value = Case> {
    (
        message_strategy(),
        prop::collection::vec(any::<prop::sample::Index>(), 0..4),
        prop::option::of(prop::collection::vec(any::<u8>(), 0..=125)),
        any::<[u8; 4]>(),
    )
        .prop_map(|(message, cuts, ping, mask)| Case {
            message,
            cuts,
            ping,
            mask,
        })
}

/// Appends the frames of `case`; returns the messages a decoder must yield.
fn encode_case(case: &Case, masked: bool, out: &mut BytesMut) -> Vec<Message> {
    let mask = masked.then_some(case.mask);
    let (opcode, payload): (OpCode, &[u8]) = match &case.message {
        Message::Text(p) => (OpCode::Text, p),
        Message::Binary(p) => (OpCode::Binary, p),
        Message::Ping(p) => (OpCode::Ping, p),
        Message::Pong(p) => (OpCode::Pong, p),
        Message::Close(None) => (OpCode::Close, &[]),
        Message::Close(Some((code, reason))) => {
            let reason = std::str::from_utf8(reason).expect("generated from chars");
            encode_close(*code, reason, mask, out);
            return vec![case.message.clone()];
        }
    };
    if opcode.is_control() || case.cuts.is_empty() {
        encode_frame(opcode, payload, mask, out);
        return vec![case.message.clone()];
    }
    let mut cuts: Vec<usize> = case.cuts.iter().map(|i| i.index(payload.len() + 1)).collect();
    cuts.sort_unstable();
    let mut expected = Vec::new();
    let mut start = 0;
    for (n, end) in cuts.into_iter().chain([payload.len()]).enumerate() {
        let fin = n == case.cuts.len();
        let op = if n == 0 { opcode } else { OpCode::Continuation };
        let fragment = &payload[start..end];
        encode_header(op, fin, fragment.len(), mask, out);
        let at = out.len();
        out.extend_from_slice(fragment);
        if let Some(key) = mask {
            apply_mask(&mut out[at..], key, 0);
        }
        if n == 0 {
            if let Some(ping) = &case.ping {
                encode_frame(OpCode::Ping, ping, mask, out);
                expected.push(Message::Ping(ping.clone().into()));
            }
        }
        start = end;
    }
    expected.push(case.message.clone());
    expected
}

fn round_trip(cases: &[Case], chunk_cuts: &[prop::sample::Index], sender: Role) -> Result<(), TestCaseError> {
    let mut stream = BytesMut::new();
    let mut expected = Vec::new();
    for case in cases {
        expected.extend(encode_case(case, sender == Role::Client, &mut stream));
    }
    let mut cuts: Vec<usize> = chunk_cuts.iter().map(|i| i.index(stream.len() + 1)).collect();
    cuts.sort_unstable();
    let mut chunks: Vec<&[u8]> = Vec::new();
    let mut start = 0;
    for end in cuts.into_iter().chain([stream.len()]) {
        chunks.push(&stream[start..end]);
        start = end;
    }
    let receiver = if sender == Role::Client {
        Role::Server
    } else {
        Role::Client
    };
    prop_assert_eq!(run(receiver, LIMITS, &chunks), Outcome::ok(expected));
    Ok(())
}

proptest! {
    #[test]
    fn client_to_server_round_trip(
        cases in prop::collection::vec(case_strategy(), 1..8),
        chunk_cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
    ) {
        round_trip(&cases, &chunk_cuts, Role::Client)?;
    }

    #[test]
    fn server_to_client_round_trip(
        cases in prop::collection::vec(case_strategy(), 1..8),
        chunk_cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
    ) {
        round_trip(&cases, &chunk_cuts, Role::Server)?;
    }
}
