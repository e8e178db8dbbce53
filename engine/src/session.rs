//! One client's STOMP session, sans-IO: the state machine of a connection after its
//! WebSocket upgrade, or of a SockJS session of the HTTP transports (`Framing::SockJsHttp`:
//! the bytes in are STOMP unwrapped from `xhr_send` bodies, the replies bare SockJS lines;
//! the session does not know HTTP). In: the bytes read from the socket ([`Session::on_bytes`]), the
//! clock ([`Session::on_tick`]) and the outcome of what it asked the shard to do
//! ([`Session::complete`]). Out: reply bytes ready for the wire, appended to an
//! [`Output`], and a [`Step`]: go on, carry out an [`Effect`] (subscribe, unsubscribe,
//! publish), or close. No socket, executor or clock of its own, so every flow is tested
//! in memory (`session/tests.rs`); `shard/conn.rs` drives it. Every protocol error maps
//! to one answer in [`Session::fail`] (`session/refusal.rs`).

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::{Bytes, BytesMut};
use proto::server::{self, Inbound};
use proto::stomp::{self, Command, Frame, Version};
use proto::Framing;
use smallvec::SmallVec;

use crate::auth::{self, Grant};
use crate::fanout::WireKey;
use crate::ids::{ConnId, SubId, Subscription};
use crate::message::{self, Message, Position};
use crate::metrics::{ErrorKind, ShardStats};
use crate::router::Resume;
use refusal::{ProtocolRule, Refused};

/// A token bucket's shape: one `SEND` every `interval` on average, up to `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Time per message at the sustained rate.
    pub interval: Duration,
    /// Messages that may come at once after a quiet spell (at least 1).
    pub burst: u32,
}

/// What every session of a shard is told by the configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The `server` header of `CONNECTED`: engine, node and shard.
    pub server: String,
    /// Shortest STOMP heart-beat period the server offers and asks for, ms.
    pub heartbeat_ms: u64,
    /// SockJS `h` period.
    pub sockjs_heartbeat: Duration,
    /// Subscriptions one connection may hold.
    pub max_subscriptions: usize,
    /// Longest subscription id and `receipt` id.
    pub max_id_bytes: usize,
    /// Longest destination of a `SUBSCRIBE` or `SEND`.
    pub max_destination_bytes: usize,
    /// How long an upgraded connection may take to send `CONNECT`.
    pub connect_timeout: Duration,
    /// The publish rate of one connection, when limited.
    pub publish_rate: Option<Rate>,
    /// Largest `x-history` a client may ask for.
    pub max_history: usize,
    /// Decoder limits.
    pub limits: server::Limits,
    /// The token verifier when authentication is on.
    pub auth: Option<Arc<auth::Verifier>>,
}

/// The world as a session sees it during one call.
#[derive(Debug, Clone, Copy)]
pub struct Env<'a> {
    /// The shard's settings.
    pub settings: &'a Settings,
    /// The shard's counters.
    pub stats: &'a ShardStats,
    /// Monotonic time, for heart-beats.
    pub now: Instant,
    /// Wall-clock time, for the `time` of chat messages.
    pub wall: SystemTime,
}

/// Where a session writes: reply bytes for the wire, and reusable buffers. One per shard,
/// borrowed by the session being driven.
#[derive(Debug, Default)]
pub struct Output {
    /// Complete WebSocket frames for this connection's outbound queue.
    pub wire: BytesMut,
    /// Storage for STOMP bytes before they are framed.
    stomp: BytesMut,
    /// Storage for in-place JSON parses.
    json: Vec<u8>,
}

/// What the connection should do next.
#[derive(Debug)]
pub enum Step {
    /// Nothing to do but read more.
    Continue,
    /// Carry this out, then call [`Session::complete`] with how it went.
    Effect(Effect),
    /// Flush the output and close; the session is over.
    Close,
}

/// What a session asks of its shard, with the `receipt` the client wants afterwards.
#[derive(Debug)]
pub struct Effect {
    /// What to do.
    pub action: Action,
    /// The client's `receipt` header, answered once the action is done.
    pub receipt: Option<Bytes>,
}

/// Changes to the shard's state that a frame asks for.
#[derive(Debug)]
pub enum Action {
    /// Add a subscriber of `destination`, queued with the wire form `key`, after what it
    /// asked to catch up on (`x-since`, `x-history`), if anything.
    Subscribe {
        /// The destination.
        destination: Bytes,
        /// How this subscriber's `MESSAGE`s look (its `subscription` id among them).
        key: WireKey,
        /// What it asked to catch up on.
        resume: Option<Resume>,
    },
    /// Remove this subscription.
    Unsubscribe(Subscription),
    /// Publish a message (its id is assigned by the router).
    Publish(Message),
}

/// How an effect went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Done: the client gets its `RECEIPT`.
    Done,
    /// A subscription that caught up: its `RECEIPT` says whether all it asked for was
    /// delivered (`x-recovered`).
    Recovered(bool),
    /// Refused: the client gets an `ERROR` with this text, then the connection closes.
    Refused(&'static str),
    /// Not done for now (a full Kafka buffer): the client gets an `ERROR` with this text
    /// and may send again; the connection stays open.
    Rejected(&'static str),
}

/// A STOMP session over raw or SockJS framing.
#[derive(Debug)]
pub struct Session {
    conn: ConnId,
    codec: server::Codec,
    version: Option<Version>,
    clock: Option<stomp::Clock>,
    /// Its subscriptions. One inline: a chat client watches its room, and every idle
    /// connection carries the inline room.
    subs: SmallVec<[Subscription; 1]>,
    /// What the client's token allows (authentication on), and when it expires.
    /// Boxed: most deployments run without authentication, and an idle connection
    /// should not carry room for a grant it never has.
    grant: Option<Box<(Grant, Instant)>>,
    /// Until when the client may still send `CONNECT` (set by `open`, cleared by it).
    connect_by: Option<Instant>,
    /// The publish bucket's theoretical arrival time (GCRA): a `SEND` is over the rate
    /// when this is more than the burst's tolerance ahead of now.
    publish_at: Option<Instant>,
    closed: bool,
}

impl Session {
    /// A session that has not seen `CONNECT` yet. Call [`Session::open`] first.
    pub fn new(conn: ConnId, framing: Framing, settings: &Settings) -> Self {
        Session {
            conn,
            codec: server::Codec::new(framing, settings.limits),
            version: None,
            clock: None,
            subs: SmallVec::new(),
            grant: None,
            connect_by: None,
            publish_at: None,
            closed: false,
        }
    }

    /// Greets the client where the framing asks for it (SockJS's `o`) and starts the
    /// clock within which it must send `CONNECT`.
    pub fn open(&mut self, env: &Env<'_>, out: &mut Output) -> Step {
        self.connect_by = Some(env.now + env.settings.connect_timeout);
        server::encode_open(self.framing(), &mut out.wire);
        Step::Continue
    }

    /// Gives back storage kept between frames while nothing is pending; call before
    /// waiting for the client (an idle connection then holds none).
    pub fn release_idle(&mut self) {
        self.codec.release_idle();
    }

    /// The framing of this session's connection.
    pub fn framing(&self) -> Framing {
        self.codec.framing()
    }

    /// Decodes `buf` and acts on each item until one needs the shard (an effect), the
    /// session ends, or more bytes are needed. Call again after an effect is complete.
    pub fn on_bytes(&mut self, env: &Env<'_>, buf: &mut BytesMut, out: &mut Output) -> Step {
        if self.closed {
            return Step::Close;
        }
        if let Some(clock) = &mut self.clock {
            clock.on_received(env.now);
        }
        loop {
            let item = match self.codec.decode(buf, &mut out.json) {
                Ok(Some(item)) => item,
                Ok(None) => return Step::Continue,
                Err(e) => return self.fail(env, e, None, out),
            };
            let frame = match item {
                Inbound::Frame(frame) => frame,
                Inbound::HeartBeat => continue,
                Inbound::Ping(data) => {
                    server::encode_pong(&data, &mut out.wire);
                    continue;
                }
                Inbound::Close(code) => {
                    // §5.5.1: echo the close, then the connection is over.
                    server::encode_end(self.framing(), code, &mut out.wire);
                    return self.end();
                }
            };
            ShardStats::add(&env.stats.frames_in, 1);
            let receipt = match frame.header(b"receipt") {
                // Not echoed: the point is not to hold or send it back.
                Some(r) if r.len() > env.settings.max_id_bytes => {
                    let rule = ProtocolRule::limit(ErrorKind::IdTooLong, "receipt id too long");
                    return self.refuse_for(env, rule.into(), None, out);
                }
                r => r.map(Bytes::copy_from_slice),
            };
            let action = match (frame.command, self.version) {
                (Command::Connect | Command::Stomp, None) => self.on_connect(env, &frame, out).map(|()| None),
                (Command::Connect | Command::Stomp, Some(_)) => Err(ProtocolRule::stomp("already connected").into()),
                (_, None) => Err(ProtocolRule::stomp("send CONNECT first").into()),
                (Command::Subscribe, Some(_)) => self.on_subscribe(env, &frame).map(Some),
                (Command::Unsubscribe, Some(_)) => self.on_unsubscribe(env, &frame).map_err(Refused::from),
                (Command::Send, Some(_)) if !self.take_publish_token(env) => {
                    env.stats.error(ErrorKind::PublishRate);
                    self.send_error(PUBLISH_RATE, receipt.as_deref(), out);
                    continue;
                }
                (Command::Send, Some(_)) => self.on_send(env, &frame, out).map(Some),
                (Command::Disconnect, Some(_)) => {
                    self.send_receipt(receipt.as_deref(), out);
                    server::encode_end(self.framing(), 1000, &mut out.wire);
                    return self.end();
                }
                (Command::Ack | Command::Nack | Command::Begin | Command::Commit | Command::Abort, Some(_)) => {
                    Err(ProtocolRule::stomp("acknowledgements and transactions are not supported").into())
                }
                (_, Some(_)) => Err(ProtocolRule::stomp("clients may not send this command").into()),
            };
            match action {
                Ok(Some(action)) => return Step::Effect(Effect { action, receipt }),
                Ok(None) => self.send_receipt(receipt.as_deref(), out),
                Err(refused) => return self.refuse_for(env, refused, receipt.as_deref(), out),
            }
        }
    }

    /// Answers an effect carried out by the shard: a `RECEIPT` when asked for, or an
    /// `ERROR` and the end of the session when it was refused.
    pub fn complete(&mut self, env: &Env<'_>, receipt: Option<&[u8]>, outcome: Outcome, out: &mut Output) -> Step {
        match outcome {
            Outcome::Done => {
                self.send_receipt(receipt, out);
                Step::Continue
            }
            Outcome::Recovered(recovered) => {
                if let Some(receipt) = receipt {
                    let flag: &[u8] = if recovered { b"true" } else { b"false" };
                    self.send_frame(
                        Command::Receipt,
                        &[("receipt-id", receipt), ("x-recovered", flag)],
                        b"",
                        out,
                    );
                }
                Step::Continue
            }
            Outcome::Refused(message) => self.refuse(env, ErrorKind::Stomp, message, receipt, out),
            Outcome::Rejected(message) => {
                self.send_error(message, receipt, out);
                Step::Continue
            }
        }
    }

    /// Heart-beats due at `env.now`: sends ours (STOMP's and SockJS's `h`) when nothing
    /// was sent since `last_sent`, or closes a client gone silent.
    pub fn on_tick(&mut self, env: &Env<'_>, last_sent: Instant, out: &mut Output) -> Step {
        if self.closed {
            return Step::Close;
        }
        if self.grant.as_deref().is_some_and(|(_, expires)| env.now >= *expires) {
            return self.refuse(env, ErrorKind::Auth, auth::Refusal::Expired.message(), None, out);
        }
        let framing = self.framing();
        if self.connect_by.is_some_and(|by| env.now >= by) {
            env.stats.error(ErrorKind::ConnectTimeout);
            return self.goodbye(1008, "no CONNECT in time", out);
        }
        if let Some(clock) = &mut self.clock {
            clock.on_sent(last_sent);
            match clock.on_tick(env.now) {
                stomp::Tick::Idle => {}
                stomp::Tick::SendHeartBeat => server::encode_heartbeat(framing, &mut out.wire),
                stomp::Tick::TimedOut => {
                    env.stats.error(ErrorKind::HeartBeatTimeout);
                    return self.goodbye(1002, "heart-beat timeout", out);
                }
            }
        }
        if framing.is_sockjs() && out.wire.is_empty() && env.now >= last_sent + env.settings.sockjs_heartbeat {
            server::encode_sockjs_heartbeat(framing, &mut out.wire);
        }
        Step::Continue
    }

    /// When [`Session::on_tick`] is next due, given that bytes last left at `last_sent`.
    pub fn next_deadline(&self, settings: &Settings, last_sent: Instant) -> Option<Instant> {
        let stomp = self.clock.as_ref().and_then(stomp::Clock::next_deadline);
        let sockjs = self
            .framing()
            .is_sockjs()
            .then(|| last_sent + settings.sockjs_heartbeat);
        let expiry = self.grant.as_deref().map(|&(_, expires)| expires);
        [stomp, sockjs, expiry, self.connect_by].into_iter().flatten().min()
    }

    /// Ends the session with a close `code` and `reason` (SockJS `c[...]` first where
    /// it applies); the connection flushes and closes.
    pub fn goodbye(&mut self, code: u16, reason: &str, out: &mut Output) -> Step {
        server::encode_close(self.framing(), code, reason, &mut out.wire);
        self.end()
    }

    /// The subscriptions still held, for the shard to remove when the connection is gone.
    pub fn take_subscriptions(&mut self) -> SmallVec<[Subscription; 1]> {
        std::mem::take(&mut self.subs)
    }

    fn on_connect(&mut self, env: &Env<'_>, frame: &Frame, out: &mut Output) -> Result<(), Refused> {
        let version = stomp::negotiate_version(frame.header(b"accept-version")).map_err(ProtocolRule::from)?;
        let hb = env.settings.heartbeat_ms;
        let heartbeat = stomp::negotiate_heartbeat(frame.header(b"heart-beat"), hb, hb).map_err(ProtocolRule::from)?;
        if let Some(verifier) = &env.settings.auth {
            let token = bearer_token(frame).ok_or(Refused::Auth(auth::Refusal::Missing))?;
            let grant = verifier.verify(token, env.wall).map_err(Refused::Auth)?;
            let left = grant.expires.duration_since(env.wall).unwrap_or_default();
            self.grant = Some(Box::new((grant, env.now + left)));
        }
        self.version = Some(version);
        self.connect_by = None;
        self.codec.set_version(version);
        self.clock = Some(stomp::Clock::new(heartbeat, env.now));
        let mut beat = itoa::Buffer::new().format(heartbeat.header.0).to_owned();
        beat.push(',');
        beat.push_str(itoa::Buffer::new().format(heartbeat.header.1));
        let session = itoa::Buffer::new().format(self.conn.0).to_owned();
        let headers: [(&str, &[u8]); 4] = [
            ("version", version.as_str().as_bytes()),
            ("heart-beat", beat.as_bytes()),
            ("server", env.settings.server.as_bytes()),
            ("session", session.as_bytes()),
        ];
        self.send_frame(Command::Connected, &headers, b"", out);
        Ok(())
    }

    fn on_subscribe(&mut self, env: &Env<'_>, frame: &Frame) -> Result<Action, Refused> {
        let destination = frame
            .header(b"destination")
            .ok_or(ProtocolRule::stomp("SUBSCRIBE without destination"))?;
        check_destination(env, destination)?;
        if self
            .grant
            .as_deref()
            .is_some_and(|(grant, _)| !grant.may_subscribe(destination))
        {
            return Err(Refused::Denied {
                kind: ErrorKind::Forbidden,
                reason: "forbidden: this token may not subscribe to",
                destination: Bytes::copy_from_slice(destination),
            });
        }
        // STOMP 1.0 makes `id` optional; the destination then names the subscription.
        let id = match (frame.header(b"id"), self.version) {
            (Some(id), _) => id,
            (None, Some(Version::V1_0)) => destination,
            (None, _) => return Err(ProtocolRule::stomp("SUBSCRIBE without id").into()),
        };
        // Each distinct id costs one more encoding of every message of the destination.
        if id.len() > env.settings.max_id_bytes {
            return Err(ProtocolRule::limit(ErrorKind::IdTooLong, "subscription id too long").into());
        }
        if self.subs.iter().any(|existing| existing.id() == id) {
            return Err(ProtocolRule::stomp("subscription id already in use").into());
        }
        if self.subs.len() >= env.settings.max_subscriptions {
            return Err(ProtocolRule::limit(ErrorKind::TooManySubscriptions, "too many subscriptions").into());
        }
        // Catching up is for chat channels, the destinations that have an order.
        let resume = match (frame.header(b"x-since"), frame.header(b"x-history")) {
            _ if message::channel_of(destination).is_none() => None,
            (Some(since), _) => Some(Position::parse(since).map_or(Resume::Unreadable, Resume::Since)),
            (None, Some(n)) => {
                let n = std::str::from_utf8(n)
                    .ok()
                    .and_then(|n| n.parse::<usize>().ok())
                    .ok_or(ProtocolRule::stomp("x-history must be a number of messages"))?;
                if n > env.settings.max_history {
                    return Err(ProtocolRule::stomp("x-history asks for more messages than this server keeps").into());
                }
                Some(Resume::Last(n))
            }
            (None, None) => None,
        };
        self.subs.push(Subscription::new(id, destination));
        // The router's copies: a room and a group that exist already keep theirs.
        let (sub, destination) = (SubId(Bytes::copy_from_slice(id)), Bytes::copy_from_slice(destination));
        ShardStats::shift(&env.stats.subscriptions, 1);
        let key = WireKey {
            framing: self.framing(),
            version: self.version.unwrap_or(Version::V1_0),
            subscription: sub,
        };
        Ok(Action::Subscribe {
            destination,
            key,
            resume,
        })
    }

    fn on_unsubscribe(&mut self, env: &Env<'_>, frame: &Frame) -> Result<Option<Action>, ProtocolRule> {
        let id = frame
            .header(b"id")
            .ok_or(ProtocolRule::stomp("UNSUBSCRIBE without id"))?;
        let Some(at) = self.subs.iter().position(|existing| existing.id() == id) else {
            return Ok(None);
        };
        ShardStats::shift(&env.stats.subscriptions, -1);
        Ok(Some(Action::Unsubscribe(self.subs.swap_remove(at))))
    }

    fn on_send(&mut self, env: &Env<'_>, frame: &Frame, out: &mut Output) -> Result<Action, Refused> {
        let destination = frame
            .header(b"destination")
            .ok_or(ProtocolRule::stomp("SEND without destination"))?;
        check_destination(env, destination)?;
        if destination != message::PUBLISH_DESTINATION {
            if destination.starts_with(message::SUBSCRIBE_PREFIX) {
                // Only the server speaks on subscription destinations: it sets `sender`
                // and `time` on what reaches them.
                return Err(Refused::Denied {
                    kind: ErrorKind::Stomp,
                    reason: "clients may not SEND to a subscription destination (send chat messages to /pub/chat):",
                    destination: Bytes::copy_from_slice(destination),
                });
            }
            return Err(ProtocolRule::stomp("unknown destination: send to /pub/chat").into());
        }
        let sender = self.grant.as_deref().map(|(grant, _)| &grant.sender_json[..]);
        let message = message::prepare(&frame.body, sender, env.wall, &mut out.json).map_err(|e| match e {
            message::Error::NotAnObject => ProtocolRule::stomp("body is not a JSON object"),
            message::Error::NoChannel => ProtocolRule::stomp("body has no non-empty string field \"channel\""),
        })?;
        if self
            .grant
            .as_deref()
            .is_some_and(|(grant, _)| !grant.may_publish(&message.destination))
        {
            return Err(Refused::Denied {
                kind: ErrorKind::Forbidden,
                reason: "forbidden: this token may not publish to",
                destination: message.destination,
            });
        }
        Ok(Action::Publish(message))
    }

    fn send_receipt(&self, receipt: Option<&[u8]>, out: &mut Output) {
        if let Some(receipt) = receipt {
            self.send_frame(Command::Receipt, &[("receipt-id", receipt)], b"", out);
        }
    }

    /// Takes one token from the publish bucket; false when the connection is over its rate.
    fn take_publish_token(&mut self, env: &Env<'_>) -> bool {
        let Some(rate) = env.settings.publish_rate else {
            return true;
        };
        let at = self.publish_at.map_or(env.now, |at| at.max(env.now));
        if at > env.now + rate.interval * rate.burst.saturating_sub(1) {
            return false;
        }
        self.publish_at = Some(at + rate.interval);
        true
    }

    fn send_frame(&self, command: Command, headers: &[(&str, &[u8])], body: &[u8], out: &mut Output) {
        let version = self.version.unwrap_or(Version::V1_2);
        server::encode_frame(
            self.framing(),
            command,
            headers,
            body,
            version,
            &mut out.stomp,
            &mut out.wire,
        );
    }

    fn end(&mut self) -> Step {
        self.closed = true;
        Step::Close
    }
}

/// The last words to a subscriber dropped for falling behind: `ERROR` and close 1008.
pub fn farewell_slow(framing: Framing, out: &mut Output) {
    const REASON: &str = "slow consumer: outbound queue full";
    let headers: [(&str, &[u8]); 1] = [("message", REASON.as_bytes())];
    server::encode_frame(
        framing,
        Command::Error,
        &headers,
        b"",
        Version::V1_2,
        &mut out.stomp,
        &mut out.wire,
    );
    server::encode_close(framing, 1008, REASON, &mut out.wire);
}

/// Refuses a destination over `--max-destination-bytes`.
fn check_destination(env: &Env<'_>, destination: &[u8]) -> Result<(), ProtocolRule> {
    if destination.len() > env.settings.max_destination_bytes {
        return Err(ProtocolRule::limit(
            ErrorKind::DestinationTooLong,
            "destination too long",
        ));
    }
    Ok(())
}

/// The `message` of the `ERROR` for a `SEND` over the publish rate.
const PUBLISH_RATE: &str = "publish rate exceeded: message not accepted, send it again later";

/// The token of a `CONNECT`: `Authorization:Bearer <token>`, else `passcode`.
fn bearer_token(frame: &Frame) -> Option<&[u8]> {
    let authorization = frame
        .header(b"Authorization")
        .or_else(|| frame.header(b"authorization"));
    let bearer = authorization.and_then(|value| {
        let (scheme, token) = value.split_at_checked(BEARER.len())?;
        scheme.eq_ignore_ascii_case(BEARER).then(|| token.trim_ascii())
    });
    bearer
        .or_else(|| frame.header(b"passcode"))
        .filter(|token| !token.is_empty())
}

/// The scheme of an `Authorization` header carrying a token (RFC 6750 §2.1).
const BEARER: &[u8] = b"Bearer ";

mod refusal;
#[cfg(test)]
mod tests;
