//! The sans-IO half of reconnecting: when to try again (`Backoff`, jittered exponential,
//! as the JavaScript clients do), where to resume from (`Positions`, the last `x-offset`
//! of each subscription, stored and sent back unread), the `SUBSCRIBE` headers that ask
//! for it (`subscribe_headers`) and what the `RECEIPT` says about it (`Recovery`).
//! `shard/conn.rs` owns the sockets and the clock and calls these; nothing here sleeps,
//! reads the time or touches a socket. The header names are those of the wire contract.

use std::time::Duration;

use proto::client::Rng;
use proto::stomp::Frame;
use smallvec::SmallVec;

/// How long to wait between reconnect attempts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Policy {
    /// Wait before the first attempt after a drop.
    pub initial: Duration,
    /// Each failed attempt multiplies the wait by this.
    pub factor: f64,
    /// Longest wait, jitter included.
    pub max: Duration,
    /// Each wait is spread uniformly over ±this share of itself (0.5: ±50 %).
    pub jitter: f64,
}

impl Default for Policy {
    /// 100 ms, ×2, at most 5 s, ±50 %.
    fn default() -> Self {
        Policy {
            initial: Duration::from_millis(100),
            factor: 2.0,
            max: Duration::from_secs(5),
            jitter: 0.5,
        }
    }
}

/// The waits of one connection's reconnect attempts: attempt n waits
/// `min(initial × factorⁿ, max)`, spread by ±`jitter`, and never more than `max`.
/// `reset` after a successful resubscribe starts over at `initial`.
#[derive(Debug, Clone)]
pub struct Backoff {
    policy: Policy,
    attempt: u32,
    rng: Rng,
}

impl Backoff {
    /// A schedule following `policy`; `seed` varies the jitter between connections.
    pub fn new(policy: Policy, seed: u64) -> Self {
        Backoff {
            policy,
            attempt: 0,
            rng: Rng::new(seed),
        }
    }

    /// The wait before the next attempt (and counts the attempt).
    pub fn next_delay(&mut self) -> Duration {
        let p = &self.policy;
        let max_s = p.max.as_secs_f64();
        // powi saturates to infinity, which min() then caps: no overflow on long outages.
        let base_s = (p.initial.as_secs_f64() * p.factor.powi(self.attempt.min(1024) as i32)).min(max_s);
        self.attempt = self.attempt.saturating_add(1);
        // Uniform in [-1, 1): 53 random bits as a fraction.
        let unit = (self.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0;
        let spread_s = base_s * (1.0 + p.jitter * unit);
        Duration::from_secs_f64(spread_s.clamp(0.0, max_s))
    }

    /// Attempts since the last reset.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// Starts over at `initial` (the connection is subscribed again).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// The last `x-offset` seen on each tracked subscription. Offsets are opaque: they are
/// copied as bytes, never parsed or compared, and sent back as they came. Messages of
/// subscriptions not tracked, and offsets longer than `MAX_OFFSET_BYTES`, are ignored
/// (both come from the peer). Storing reuses each subscription's buffer: nothing is
/// allocated per message once it has grown.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Positions {
    subs: SmallVec<[Slot; 1]>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Slot {
    id: Vec<u8>,
    offset: Vec<u8>,
    known: bool,
}

impl Positions {
    /// Tracks nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts tracking subscription `id` (no position yet); tracking it again is a no-op.
    pub fn track(&mut self, id: &[u8]) {
        if !self.subs.iter().any(|s| s.id == id) {
            self.subs.push(Slot {
                id: id.to_vec(),
                ..Slot::default()
            });
        }
    }

    /// Notes a `MESSAGE`: its `subscription` and `x-offset` headers. Returns whether a
    /// position was stored.
    pub fn observe(&mut self, frame: &Frame) -> bool {
        match (frame.header(b"subscription"), frame.header(b"x-offset")) {
            (Some(id), Some(offset)) => self.store(id, offset),
            _ => false,
        }
    }

    /// Stores `offset` as the position of subscription `id`; whether it was stored.
    pub fn store(&mut self, id: &[u8], offset: &[u8]) -> bool {
        if offset.is_empty() || offset.len() > MAX_OFFSET_BYTES {
            return false;
        }
        match self.subs.iter_mut().find(|s| s.id == id) {
            Some(slot) => {
                slot.offset.clear();
                slot.offset.extend_from_slice(offset);
                slot.known = true;
                true
            }
            None => false,
        }
    }

    /// The position to resume subscription `id` from, if one was seen.
    pub fn since(&self, id: &[u8]) -> Option<&[u8]> {
        self.subs
            .iter()
            .find(|s| s.id == id && s.known)
            .map(|s| s.offset.as_slice())
    }
}

/// The headers of a `SUBSCRIBE` to `destination` as subscription `id`, asking for a
/// `RECEIPT` with id `receipt`, and, with `since`, for everything after that position
/// (`x-since`) before going live.
pub fn subscribe_headers<'a>(
    id: &'a [u8],
    destination: &'a [u8],
    receipt: &'a [u8],
    since: Option<&'a [u8]>,
) -> SmallVec<[(&'static str, &'a [u8]); 4]> {
    let mut headers: SmallVec<[(&'static str, &'a [u8]); 4]> = SmallVec::new();
    headers.push(("id", id));
    headers.push(("destination", destination));
    headers.push(("receipt", receipt));
    if let Some(position) = since {
        headers.push(("x-since", position));
    }
    headers
}

/// What the `RECEIPT` of a resuming `SUBSCRIBE` said about the range asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recovery {
    /// `x-recovered:true`: everything since the position was delivered.
    Complete,
    /// `x-recovered:false`: part of the range is gone.
    Partial,
    /// No `x-recovered` (an engine without resume), or a value that is neither.
    Unknown,
}

impl Recovery {
    /// Reads `x-recovered` from a `RECEIPT`.
    pub fn of(receipt: &Frame) -> Recovery {
        match receipt.header(b"x-recovered") {
            Some(b"true") => Recovery::Complete,
            Some(b"false") => Recovery::Partial,
            _ => Recovery::Unknown,
        }
    }
}

/// Longest `x-offset` stored (a position is a short token; anything longer is refused
/// rather than kept per connection).
pub const MAX_OFFSET_BYTES: usize = 1024;

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use proto::stomp::Command;

    fn message(sub: &str, offset: Option<&str>) -> Frame {
        let mut headers: proto::stomp::Headers = SmallVec::new();
        headers.push((Bytes::from_static(b"destination"), Bytes::from_static(b"/sub/chat/c0")));
        headers.push((
            Bytes::from_static(b"subscription"),
            Bytes::copy_from_slice(sub.as_bytes()),
        ));
        if let Some(o) = offset {
            headers.push((Bytes::from_static(b"x-offset"), Bytes::copy_from_slice(o.as_bytes())));
        }
        Frame {
            command: Command::Message,
            headers,
            body: Bytes::new(),
        }
    }

    fn policy(jitter: f64) -> Policy {
        Policy {
            jitter,
            ..Policy::default()
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_without_jitter() {
        let mut b = Backoff::new(policy(0.0), 1);
        let waits: Vec<u128> = (0..9).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(waits, vec![100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000]);
        assert_eq!(b.attempts(), 9);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(100));
    }

    #[test]
    fn jitter_stays_within_its_band_and_under_the_cap() {
        let mut b = Backoff::new(policy(0.5), 42);
        let (mut low, mut high) = (u128::MAX, 0);
        for _ in 0..2000 {
            b.reset();
            let first = b.next_delay().as_micros();
            assert!((50_000..=150_000).contains(&first), "{first}");
            low = low.min(first);
            high = high.max(first);
        }
        // Spread over the band, not stuck at one value.
        assert!(low < 60_000 && high > 140_000, "{low}..{high}");
        for _ in 0..20 {
            assert!(b.next_delay() <= Duration::from_secs(5));
        }
    }

    #[test]
    fn seeds_spread_connections_apart() {
        let first = |seed| Backoff::new(policy(0.5), seed).next_delay();
        assert_ne!(first(1), first(2));
        assert_eq!(first(7), first(7));
    }

    #[test]
    fn long_outages_neither_overflow_nor_exceed_the_cap() {
        let mut b = Backoff::new(policy(0.5), 3);
        for _ in 0..5000 {
            assert!(b.next_delay() <= Duration::from_secs(5));
        }
        let extreme = Policy {
            factor: 100.0,
            ..policy(0.0)
        };
        let mut b = Backoff::new(extreme, 3);
        for _ in 0..2000 {
            assert!(b.next_delay() <= Duration::from_secs(5));
        }
    }

    #[test]
    fn positions_keep_the_last_offset_per_subscription() {
        let mut p = Positions::new();
        p.track(b"sub-0");
        p.track(b"sub-1");
        p.track(b"sub-0");
        assert_eq!(p.since(b"sub-0"), None);
        assert!(p.observe(&message("sub-0", Some("c0:17"))));
        assert!(p.observe(&message("sub-0", Some("c0:18"))));
        assert!(p.observe(&message("sub-1", Some("opaque/ä"))));
        assert_eq!(p.since(b"sub-0"), Some(&b"c0:18"[..]));
        assert_eq!(p.since(b"sub-1"), Some("opaque/ä".as_bytes()));
        // A message without a position leaves the last one in place.
        assert!(!p.observe(&message("sub-0", None)));
        assert_eq!(p.since(b"sub-0"), Some(&b"c0:18"[..]));
    }

    #[test]
    fn positions_ignore_what_they_were_not_asked_to_track() {
        let mut p = Positions::new();
        p.track(b"sub-0");
        assert!(!p.observe(&message("sub-9", Some("5"))));
        assert_eq!(p.since(b"sub-9"), None);
        assert!(!p.store(b"sub-0", b""));
        let long = vec![b'7'; MAX_OFFSET_BYTES + 1];
        assert!(!p.store(b"sub-0", &long));
        assert_eq!(p.since(b"sub-0"), None);
        assert!(p.store(b"sub-0", &long[..MAX_OFFSET_BYTES]));
        assert_eq!(p.since(b"sub-0").map(<[u8]>::len), Some(MAX_OFFSET_BYTES));
    }

    #[test]
    fn subscribe_headers_ask_for_a_receipt_and_resume_only_with_a_position() {
        let plain = subscribe_headers(b"sub-0", b"/sub/chat/c3", b"sub-0", None);
        assert_eq!(
            plain.as_slice(),
            &[
                ("id", &b"sub-0"[..]),
                ("destination", &b"/sub/chat/c3"[..]),
                ("receipt", &b"sub-0"[..])
            ]
        );
        let resumed = subscribe_headers(b"sub-0", b"/sub/chat/c3", b"sub-0", Some(b"c3:41"));
        assert_eq!(resumed.len(), 4);
        assert_eq!(resumed[3], ("x-since", &b"c3:41"[..]));
    }

    #[test]
    fn subscribe_headers_send_the_position_back_byte_for_byte() {
        // A position with STOMP's special characters survives encode (escaped) and decode.
        let position = b"p:1\\2\n3";
        let headers = subscribe_headers(b"sub-0", b"/sub/chat/c0", b"r", Some(position));
        let mut out = bytes::BytesMut::new();
        proto::stomp::encode_frame(Command::Subscribe, &headers, b"", proto::stomp::Version::V1_2, &mut out);
        let mut decoder = proto::stomp::Decoder::new(proto::stomp::Limits {
            max_frame_bytes: 4096,
            max_headers: 16,
            max_line_bytes: usize::MAX,
        });
        decoder.set_version(proto::stomp::Version::V1_2);
        let Ok(Some(proto::stomp::Item::Frame(frame))) = decoder.decode(&mut out) else {
            panic!("the SUBSCRIBE decodes")
        };
        assert_eq!(frame.header(b"x-since"), Some(&position[..]));
        assert_eq!(frame.header(b"receipt"), Some(&b"r"[..]));
    }

    #[test]
    fn receipts_say_whether_the_range_was_recovered() {
        let receipt = |value: Option<&'static [u8]>| {
            let mut headers: proto::stomp::Headers = SmallVec::new();
            headers.push((Bytes::from_static(b"receipt-id"), Bytes::from_static(b"sub-0")));
            if let Some(v) = value {
                headers.push((Bytes::from_static(b"x-recovered"), Bytes::from_static(v)));
            }
            Frame {
                command: Command::Receipt,
                headers,
                body: Bytes::new(),
            }
        };
        assert_eq!(Recovery::of(&receipt(Some(b"true"))), Recovery::Complete);
        assert_eq!(Recovery::of(&receipt(Some(b"false"))), Recovery::Partial);
        assert_eq!(Recovery::of(&receipt(Some(b"TRUE"))), Recovery::Unknown);
        assert_eq!(Recovery::of(&receipt(None)), Recovery::Unknown);
    }
}
