//! The chat body the load generator publishes and the scan that reads it back:
//! `{"channel":"c17","sender":"lg-5","message":"xxxx","lg":[run,pub,seq,intended_ns]}`,
//! padded to the scenario's size. The engine keeps unknown fields and appends `time`, so
//! a receiver finds `"lg":[` by scanning bytes, never by a full JSON parse: the receive
//! path allocates nothing.

use bytes::{BufMut, BytesMut};

/// What a message carries to identify itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// The run that sent it (messages of other runs are counted apart).
    pub run: u64,
    /// The publisher's id.
    pub publisher: u32,
    /// The publisher's sequence number, from 0.
    pub seq: u64,
    /// When it was meant to be sent (CLOCK_REALTIME, ns since the epoch).
    pub intended_ns: u64,
}

/// Appends the body for `stamp` on `channel`, padded so the whole body is `size_bytes`
/// long when it can be (a body never gets shorter than its fixed parts).
pub fn encode(channel: &str, stamp: &Stamp, size_bytes: usize, out: &mut BytesMut) {
    let mut numbers = itoa::Buffer::new();
    let start = out.len();
    out.put_slice(b"{\"channel\":\"");
    out.put_slice(channel.as_bytes());
    out.put_slice(b"\",\"sender\":\"lg-");
    out.put_slice(numbers.format(stamp.publisher).as_bytes());
    out.put_slice(b"\",\"message\":\"");
    let padding_at = out.len();
    out.put_slice(b"\",\"lg\":[");
    for (i, n) in [stamp.run, u64::from(stamp.publisher), stamp.seq, stamp.intended_ns]
        .into_iter()
        .enumerate()
    {
        if i > 0 {
            out.put_u8(b',');
        }
        out.put_slice(numbers.format(n).as_bytes());
    }
    out.put_slice(b"]}");
    let len = out.len() - start;
    if len < size_bytes {
        let pad = size_bytes - len;
        let tail_len = out.len() - padding_at;
        out.put_bytes(b'x', pad);
        // Move the tail after the padding: the padding belongs inside "message".
        out.copy_within(padding_at..padding_at + tail_len, padding_at + pad);
        out[padding_at..padding_at + pad].fill(b'x');
    }
}

/// Finds the last `"lg":[a,b,c,d]` in `body` and reads it. `None` when absent or not
/// four unsigned integers (a message of some other client).
pub fn scan(body: &[u8]) -> Option<Stamp> {
    // The stamp sits near the end (only the engine's `time` follows): look backwards.
    let at = body.windows(MARKER.len()).rposition(|w| w == MARKER)?;
    let mut rest = body.get(at + MARKER.len()..)?;
    let mut numbers = [0u64; 4];
    for (i, slot) in numbers.iter_mut().enumerate() {
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 || digits > 20 {
            return None;
        }
        let mut n: u64 = 0;
        for &b in &rest[..digits] {
            n = n.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
        }
        *slot = n;
        let sep = if i == 3 { b']' } else { b',' };
        if rest.get(digits) != Some(&sep) {
            return None;
        }
        rest = &rest[digits + 1..];
    }
    Some(Stamp {
        run: numbers[0],
        publisher: u32::try_from(numbers[1]).ok()?,
        seq: numbers[2],
        intended_ns: numbers[3],
    })
}

const MARKER: &[u8] = b"\"lg\":[";

#[cfg(test)]
mod tests {
    use super::*;

    const STAMP: Stamp = Stamp {
        run: 42,
        publisher: 5,
        seq: 17,
        intended_ns: 1_700_000_000_123_456_789,
    };

    #[test]
    fn body_has_the_requested_size_and_round_trips() {
        for size in [0, 64, 128, 1000] {
            let mut out = BytesMut::new();
            encode("c17", &STAMP, size, &mut out);
            if size >= 100 {
                assert_eq!(out.len(), size);
            }
            let json: serde_json::Value = serde_json::from_slice(&out).expect("valid JSON");
            assert_eq!(json["channel"], "c17");
            assert_eq!(json["sender"], "lg-5");
            assert_eq!(json["lg"][2], 17);
            assert_eq!(scan(&out), Some(STAMP));
        }
    }

    #[test]
    fn scan_survives_the_engines_time_field() {
        let mut out = BytesMut::new();
        encode("c1", &STAMP, 128, &mut out);
        let mut with_time = out[..out.len() - 1].to_vec();
        with_time.extend_from_slice(br#","time":"2026-01-01T00:00:00.000Z"}"#);
        assert_eq!(scan(&with_time), Some(STAMP));
    }

    #[test]
    fn scan_rejects_foreign_bodies() {
        assert_eq!(scan(br#"{"channel":"x","message":"hi"}"#), None);
        assert_eq!(scan(br#"{"lg":[1,2,3]}"#), None);
        assert_eq!(scan(br#"{"lg":[1,2,3,x]}"#), None);
        assert_eq!(scan(br#"{"lg":[1,99999999999,3,4]}"#), None);
        assert_eq!(scan(br#"{"lg":[99999999999999999999999,1,3,4]}"#), None);
    }
}
