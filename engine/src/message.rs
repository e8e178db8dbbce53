//! The one message type, from a client's `SEND` to the subscribers' queues: a local
//! publish, a delivery from another shard and a Kafka record are all a [`Message`].
//! Also the chat contract of `/pub/chat`: a JSON object with a non-empty string
//! `channel` (parsed once with simd-json), delivered to `/sub/chat/{channel}` with every
//! field kept as sent, the server's `time` (and, with authentication, the token's
//! `sender`) in place of any the client set. Pure: the
//! caller passes the clock reading. Called by the session for each `SEND`.

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{BufMut, Bytes, BytesMut};
use simd_json::prelude::*;

/// Where chat messages are sent.
pub const PUBLISH_DESTINATION: &[u8] = b"/pub/chat";
/// Prefix of the destination a channel's subscribers listen on: the one place it is
/// spelled.
pub const CHANNEL_PREFIX: &[u8] = b"/sub/chat/";
/// Prefix of every destination a client may subscribe or send to directly.
pub const SUBSCRIBE_PREFIX: &[u8] = b"/sub/";

/// A published message. Shared (`Arc`) between shards; its parts are reference-counted
/// slices, never copied on the way to the subscribers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Where it goes: `/sub/chat/{channel}`, or any `/sub/...` destination.
    pub destination: Bytes,
    /// The JSON body as delivered (with the server's `time` for chat messages).
    pub body: Bytes,
    /// `message-id`, the same for every subscriber; empty until the router assigns it.
    pub id: Bytes,
    /// Its place in its channel's order, once the log that orders the channel gave it
    /// one (`x-offset` on the wire).
    pub position: Option<Position>,
    /// Published while Kafka was away: its node delivered it at once, without a position,
    /// and the copy that Kafka brings back later is for the other nodes only.
    pub delivered_on_origin: bool,
}

/// Where a message sits in the one order of its channel: the log (`stream`: a Kafka
/// partition, or a node's own numbering of its lifetime) and the message's sequence
/// number in it, plus a check of the message's id, so that a position is recognised as
/// this message's and not misread in a recreated topic or a restarted node. The same for
/// one message on every node and shard; it increases within a channel. On the wire
/// (`x-offset`) it is `{stream:x}-{seq}-{check:x}`, opaque to clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    /// Which log numbered the message.
    pub stream: u64,
    /// Its number in that log.
    pub seq: u64,
    /// A 16-bit hash of the message's id.
    pub check: u16,
}

impl Position {
    /// The position `seq` of `stream` for the message with `id`.
    pub fn new(stream: u64, seq: u64, id: &[u8]) -> Self {
        // FNV-1a, folded to 16 bits: a check, not a secret.
        let hash = id.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        Position {
            stream,
            seq,
            check: (hash ^ (hash >> 16) ^ (hash >> 32) ^ (hash >> 48)) as u16,
        }
    }

    /// Appends the wire form.
    pub fn write(&self, out: &mut BytesMut) {
        out.put_slice(self.text().as_bytes());
    }

    /// The wire form, on the stack (it goes into every `MESSAGE` of a channel).
    pub fn text(&self) -> PositionText {
        let mut text = PositionText {
            bytes: [0; MAX_POSITION_BYTES],
            len: 0,
        };
        text.put_hex(self.stream);
        text.put(b"-");
        text.put(itoa::Buffer::new().format(self.seq).as_bytes());
        text.put(b"-");
        text.put_hex(u64::from(self.check));
        text
    }

    /// Parses the wire form; `None` for anything else.
    pub fn parse(text: &[u8]) -> Option<Position> {
        if text.len() > MAX_POSITION_BYTES {
            return None;
        }
        let text = std::str::from_utf8(text).ok()?;
        let mut parts = text.split('-');
        let (stream, seq, check) = (parts.next()?, parts.next()?, parts.next()?);
        let plain = |s: &str, radix: u32| !s.is_empty() && s.chars().all(|c| c.is_digit(radix));
        if parts.next().is_some() || !plain(stream, 16) || !plain(seq, 10) || !plain(check, 16) {
            return None;
        }
        Some(Position {
            stream: u64::from_str_radix(stream, 16).ok()?,
            seq: seq.parse().ok()?,
            check: u16::from_str_radix(check, 16).ok()?,
        })
    }
}

/// A position's wire form.
#[derive(Debug, Clone, Copy)]
pub struct PositionText {
    bytes: [u8; MAX_POSITION_BYTES],
    len: usize,
}

impl PositionText {
    /// The text.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    fn put(&mut self, part: &[u8]) {
        // At most 16 + 1 + 20 + 1 + 4 bytes in all: within the array.
        self.bytes[self.len..self.len + part.len()].copy_from_slice(part);
        self.len += part.len();
    }

    fn put_hex(&mut self, n: u64) {
        let digits = (64 - n.leading_zeros()).div_ceil(4).max(1) as usize;
        for i in (0..digits).rev() {
            self.put(&[b"0123456789abcdef"[((n >> (4 * i)) & 0xf) as usize]]);
        }
    }
}

/// Longest `x-offset` value accepted (the longest one written is 42 bytes).
const MAX_POSITION_BYTES: usize = 48;

impl Message {
    /// A message for `destination` with `body`, not yet given an id.
    pub fn new(destination: Bytes, body: Bytes) -> Self {
        Message {
            destination,
            body,
            id: Bytes::new(),
            position: None,
            delivered_on_origin: false,
        }
    }

    /// A copy whose parts share one allocation of their own, so that keeping it (in a
    /// history) does not keep alive the buffer it was cut from (a Kafka poll's).
    pub fn compact(&self) -> Message {
        let mut bytes = BytesMut::with_capacity(self.destination.len() + self.body.len() + self.id.len());
        bytes.put_slice(&self.destination);
        bytes.put_slice(&self.body);
        bytes.put_slice(&self.id);
        let bytes = bytes.freeze();
        let (d, b) = (self.destination.len(), self.destination.len() + self.body.len());
        Message {
            destination: bytes.slice(..d),
            body: bytes.slice(d..b),
            id: bytes.slice(b..),
            position: self.position,
            delivered_on_origin: self.delivered_on_origin,
        }
    }

    /// The channel of a chat message (`/sub/chat/{channel}`), else `None`.
    pub fn channel(&self) -> Option<Bytes> {
        channel_of(&self.destination).map(|c| self.destination.slice_ref(c))
    }
}

/// The channel named by a chat destination `/sub/chat/{channel}` (non-empty).
pub fn channel_of(destination: &[u8]) -> Option<&[u8]> {
    destination.strip_prefix(CHANNEL_PREFIX).filter(|c| !c.is_empty())
}

/// Writes the destination of `channel` into `out`.
pub fn put_destination(channel: &[u8], out: &mut BytesMut) {
    out.reserve(CHANNEL_PREFIX.len() + channel.len());
    out.put_slice(CHANNEL_PREFIX);
    out.put_slice(channel);
}

/// Why a chat body was refused (the text goes into the `ERROR`'s `message`).
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// Not a JSON object.
    #[error("body is not a JSON object")]
    NotAnObject,
    /// No non-empty string `channel` field.
    #[error("body has no non-empty string field \"channel\"")]
    NoChannel,
}

/// Validates a chat `body`, reads its channel and sets the server's `time` (ISO 8601
/// UTC, ms), replacing one the client sent; with `sender` (a JSON string: the token's
/// `sub` when authentication is on) the body's `sender` is replaced too. Every other
/// field is kept. `scratch` is reused storage for the in-place parse.
///
/// # Errors
/// `NotAnObject` or `NoChannel`.
pub fn prepare(body: &[u8], sender: Option<&[u8]>, now: SystemTime, scratch: &mut Vec<u8>) -> Result<Message, Error> {
    scratch.clear();
    scratch.extend_from_slice(body);
    let value = simd_json::to_borrowed_value(scratch).map_err(|_| Error::NotAnObject)?;
    let object = value.as_object().ok_or(Error::NotAnObject)?;
    let channel = object
        .get("channel")
        .and_then(|c| c.as_str())
        .filter(|c| !c.is_empty())
        .ok_or(Error::NoChannel)?;

    let mut destination = BytesMut::with_capacity(CHANNEL_PREFIX.len() + channel.len());
    put_destination(channel.as_bytes(), &mut destination);
    let replaced = |key: &str| key == "time" || (key == "sender" && sender.is_some());
    let mut out = BytesMut::with_capacity(body.len() + 64);
    if object.keys().any(|key| replaced(key)) {
        // Written anew without the replaced fields; the rest as parsed.
        out.put_u8(b'{');
        let mut writer = out.writer();
        for (key, value) in object.iter().filter(|(key, _)| !replaced(key)) {
            // Writing to memory cannot fail.
            let _ = simd_json::BorrowedValue::from(&**key).write(&mut writer);
            let _ = writer.write_all(b":");
            let _ = value.write(&mut writer);
            let _ = writer.write_all(b",");
        }
        out = writer.into_inner();
        out.truncate(out.len() - 1);
    } else {
        // The common case: the body as sent, up to its closing brace.
        let end = body.iter().rposition(|&b| b == b'}').unwrap_or(body.len());
        out.put_slice(&body[..end]);
    }
    if let Some(sender) = sender {
        out.put_slice(b",\"sender\":");
        out.put_slice(sender);
    }
    out.put_slice(b",\"time\":\"");
    put_iso8601(now, &mut out);
    out.put_slice(b"\"}");
    Ok(Message::new(destination.freeze(), out.freeze()))
}

/// Writes `t` as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
fn put_iso8601(t: SystemTime, out: &mut BytesMut) {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    let (y, m, d) = civil_from_days(days);
    let mut two = |n: u64, sep: u8| {
        out.put_u8(b'0' + (n / 10) as u8);
        out.put_u8(b'0' + (n % 10) as u8);
        if sep != 0 {
            out.put_u8(sep);
        }
    };
    two((y / 100) as u64, 0);
    two((y % 100) as u64, b'-');
    two(m as u64, b'-');
    two(d as u64, b'T');
    two(rem / 3600, b':');
    two(rem % 3600 / 60, b':');
    two(rem % 60, b'.');
    let ms = since.subsec_millis();
    out.put_slice(&[
        b'0' + (ms / 100) as u8,
        b'0' + (ms / 10 % 10) as u8,
        b'0' + (ms % 10) as u8,
        b'Z',
    ]);
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const ALICE: &[u8] = br#"{"channel":"global","sender":"alice@letters.test","message":"hello from alice"}"#;

    #[test]
    fn keeps_fields_and_adds_time() {
        let now = UNIX_EPOCH + Duration::from_millis(1_795_000_000_123);
        let chat = prepare(ALICE, None, now, &mut Vec::new()).expect("valid");
        assert_eq!(&chat.destination[..], b"/sub/chat/global");
        let v: serde_json::Value = serde_json::from_slice(&chat.body).expect("json");
        assert_eq!(v["sender"], "alice@letters.test");
        assert_eq!(v["message"], "hello from alice");
        assert_eq!(v["time"], "2026-11-18T11:06:40.123Z");
    }

    #[test]
    fn replaces_a_client_time_and_keeps_unknown_fields() {
        let now = UNIX_EPOCH + Duration::from_millis(1_795_000_000_123);
        let body = br#"{"channel":"c","time":"1999-01-01","image":"x.png","n":[1,{"a":null}],"sender":"me"}"#;
        let chat = prepare(body, None, now, &mut Vec::new()).expect("valid");
        let v: serde_json::Value = serde_json::from_slice(&chat.body).expect("json");
        assert_eq!(
            v,
            serde_json::json!({"channel":"c","image":"x.png","n":[1,{"a":null}],"sender":"me","time":"2026-11-18T11:06:40.123Z"})
        );
    }

    #[test]
    fn a_given_sender_replaces_the_clients() {
        let now = UNIX_EPOCH + Duration::from_millis(1_795_000_000_123);
        let mut scratch = Vec::new();
        let chat = prepare(ALICE, Some(br#""bob \"B\"""#), now, &mut scratch).expect("valid");
        let v: serde_json::Value = serde_json::from_slice(&chat.body).expect("json");
        assert_eq!(v["sender"], "bob \"B\"");
        assert_eq!(v["message"], "hello from alice");
        assert_eq!(v["time"], "2026-11-18T11:06:40.123Z");
        let anonymous = prepare(
            br#"{"channel":"c","message":"hi"}"#,
            Some(br#""bob""#),
            now,
            &mut scratch,
        )
        .expect("valid");
        let v: serde_json::Value = serde_json::from_slice(&anonymous.body).expect("json");
        assert_eq!(
            v,
            serde_json::json!({"channel":"c","message":"hi","sender":"bob","time":"2026-11-18T11:06:40.123Z"})
        );
    }

    #[test]
    fn refuses_bodies_without_a_channel() {
        let mut s = Vec::new();
        assert_eq!(
            prepare(b"[1]", None, SystemTime::now(), &mut s),
            Err(Error::NotAnObject)
        );
        assert_eq!(
            prepare(b"{nope", None, SystemTime::now(), &mut s),
            Err(Error::NotAnObject)
        );
        assert_eq!(
            prepare(br#"{"channel":""}"#, None, SystemTime::now(), &mut s),
            Err(Error::NoChannel)
        );
        assert_eq!(
            prepare(br#"{"channel":5}"#, None, SystemTime::now(), &mut s),
            Err(Error::NoChannel)
        );
    }

    #[test]
    fn channels_come_from_chat_destinations_only() {
        let chat = prepare(ALICE, None, SystemTime::now(), &mut Vec::new()).expect("valid");
        assert_eq!(chat.channel().as_deref(), Some(&b"global"[..]));
        let other = Message::new(Bytes::from_static(b"/sub/notice"), Bytes::new());
        assert_eq!(other.channel(), None);
        assert_eq!(channel_of(b"/sub/chat/"), None);
    }

    #[test]
    fn positions_round_trip_and_refuse_anything_else() {
        let p = Position::new(0x1f, 1042, b"node-1-0-7");
        let mut text = BytesMut::new();
        p.write(&mut text);
        assert_eq!(Position::parse(&text), Some(p));
        assert_ne!(
            Position::new(0x1f, 1042, b"node-1-0-8"),
            p,
            "another message, another check"
        );
        for bad in [
            &b""[..],
            b"1-2",
            b"1-2-3-4",
            b"g-1-1",
            b"1--1",
            b"-1-1",
            b"1-+2-1",
            b"1-2-10000",
            b"1-99999999999999999999-1",
        ] {
            assert_eq!(Position::parse(bad), None, "{}", String::from_utf8_lossy(bad));
        }
        assert_eq!(Position::parse(&[b'1'; 60]), None);
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
    }
}
