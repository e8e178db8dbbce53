//! Catching up: a subscriber that asks for what it missed (`x-since`) or for a room's
//! recent messages (`x-history`). The seam between history and live delivery is closed
//! like this. The subscriber's shard first holds the live messages of the destination
//! for it, noting the newest position it has delivered there (`through`); it then asks
//! the channel's owner, which answers from its history once that history has reached
//! `through` (so nothing delivered here is missing from the answer); what the history no
//! longer has comes from a Kafka replay. The shard then queues the replayed and
//! historical messages and the held live ones in position order, skipping what it
//! already queued, and lets the subscriber go live, all without an await between, so no
//! message falls into the seam or is doubled.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use glommio::channels::local_channel::{self, LocalSender};

use super::{Mesh, Room, Router};
use crate::bridge::{ReplayAnswer, ReplayRequest};
use crate::fanout::{self, Member, WireKey};
use crate::history::Since;
use crate::ids::{ConnId, ShardId};
use crate::message::{channel_of, Message, Position};
use crate::outbound::{Closing, Outbound};

/// What a subscriber asks to catch up on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resume {
    /// Everything after this position (`x-since`).
    Since(Position),
    /// An `x-since` that is not a position: live only, "not recovered".
    Unreadable,
    /// The last n messages (`x-history`).
    Last(usize),
}

/// A resuming subscriber's question to its channel's owner.
#[derive(Debug)]
pub struct ResumeRequest {
    token: u64,
    from: ShardId,
    destination: Bytes,
    resume: Resume,
    /// Answer only once the history has reached this position.
    through: Option<Position>,
}

/// The owner's answer: the messages it holds, and whether they are all that was asked.
#[derive(Debug)]
pub struct HistoryReply {
    token: u64,
    messages: Vec<Arc<Message>>,
    found: Found,
}

/// How much of what was asked a history holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Found {
    /// All of it.
    All,
    /// The newer part; older messages may be in Kafka.
    Part,
    /// Not a position of this channel.
    Foreign,
}

/// A subscriber catching up, and the live messages held for it meanwhile.
#[derive(Debug)]
pub(super) struct Catching {
    pub(super) conn: ConnId,
    pub(super) key: WireKey,
    out: Rc<Outbound>,
    held: Vec<Arc<Message>>,
    /// More live messages came than may be held: the subscriber cannot be caught up.
    overflowed: bool,
}

/// Something a resume waits for.
pub(super) enum Waiter {
    History(LocalSender<HistoryReply>),
    Replay(LocalSender<ReplayAnswer>),
}

/// Holds `msg` for every subscriber catching up (at most `max` each).
pub(super) fn hold(resuming: &mut [Catching], msg: &Arc<Message>, max: usize) {
    for catching in resuming {
        if catching.held.len() < max {
            catching.held.push(msg.clone());
        } else {
            catching.overflowed = true;
        }
    }
}

impl Router {
    /// Subscribes a client that asked to catch up: queues what it missed (or the last
    /// messages), then lets it go live. Returns whether everything asked for was queued
    /// (`x-recovered`). A subscriber that fell too far behind while catching up is
    /// dropped as a slow consumer.
    pub async fn subscribe_from(
        &self,
        destination: Bytes,
        key: WireKey,
        conn: ConnId,
        out: Rc<Outbound>,
        resume: Resume,
    ) -> bool {
        if resume == Resume::Unreadable {
            self.subscribe(destination, key, conn, out);
            return false;
        }
        let through = {
            let mut index = self.index.borrow_mut();
            let room = self.room(&mut index, destination.clone());
            room.resuming.push(Catching {
                conn,
                key: key.clone(),
                out,
                held: Vec::new(),
                overflowed: false,
            });
            room.head
        };
        let request = ResumeRequest {
            token: self.token(),
            from: self.shard,
            destination: destination.clone(),
            resume,
            through,
        };
        let owner = self.interest.owner(&destination);
        let reply = if owner == self.shard.0 {
            Some(self.history_reply(&request))
        } else {
            self.ask_owner(owner, request).await
        };
        let (mut messages, mut complete) = match &reply {
            Some(reply) => (reply.messages.clone(), reply.found == Found::All),
            None => (Vec::new(), false),
        };
        if let (Some(HistoryReply { found: Found::Part, .. }), Resume::Since(since)) = (&reply, resume) {
            let until = messages.first().and_then(|m| m.position).map(|p| p.seq);
            if let Some(replayed) = self.replay(&destination, since, until).await {
                complete = replayed.complete;
                if replayed.complete {
                    messages.splice(0..0, replayed.messages);
                }
            }
        }
        let since = match resume {
            Resume::Since(since) => Some(since),
            _ => None,
        };
        self.go_live(&destination, conn, &key, since, &messages) && complete
    }

    /// Queues `messages`, then the live ones held meanwhile, and moves the subscriber into
    /// the room; false when it was dropped for falling behind or left meanwhile.
    fn go_live(
        &self,
        destination: &Bytes,
        conn: ConnId,
        key: &WireKey,
        since: Option<Position>,
        messages: &[Arc<Message>],
    ) -> bool {
        let mut index = self.index.borrow_mut();
        let Some(room) = index.get_mut(destination) else {
            return false;
        };
        let Some(at) = room
            .resuming
            .iter()
            .position(|c| c.conn == conn && c.key.subscription == key.subscription)
        else {
            return false;
        };
        let catching = room.resuming.swap_remove(at);
        if catching.overflowed {
            catching.out.close(Closing::Overflow);
            drop_if_empty(&mut index, destination, self);
            return false;
        }
        let mut last = since;
        let mut scratch = self.scratch.borrow_mut();
        for msg in messages.iter().chain(&catching.held) {
            if let (Some(p), Some(l)) = (msg.position, last) {
                if p.stream == l.stream && p.seq <= l.seq {
                    continue;
                }
            }
            last = msg.position.or(last);
            catching.out.push(fanout::encode(msg, key, &mut scratch));
        }
        room.join(
            key.clone(),
            Member {
                conn,
                out: catching.out,
            },
        );
        self.stats.count_subscriber(destination, true);
        true
    }

    /// Answers a resuming subscriber of another shard, now or once the history has
    /// reached the position it asks through.
    pub(super) async fn answer(&self, request: ResumeRequest) {
        let head = self.history.borrow().head(&request.destination);
        if request
            .through
            .is_some_and(|through| head.is_none_or(|head| head < through))
        {
            self.parked
                .borrow_mut()
                .entry(request.destination.clone())
                .or_default()
                .push(request);
            return;
        }
        let reply = self.history_reply(&request);
        if let Some(peers) = &self.links.peers {
            let _ = peers.send_to(request.from.0, Mesh::History(Box::new(reply))).await;
        }
    }

    /// Answers, in the background, the parked requests of `destination` that its history
    /// now satisfies.
    pub(super) fn wake_parked(&self, destination: &Bytes) {
        let ready: Vec<ResumeRequest> = {
            let mut parked = self.parked.borrow_mut();
            let Some(waiting) = parked.get_mut(destination) else {
                return;
            };
            let head = self.history.borrow().head(destination);
            let (ready, still): (Vec<_>, Vec<_>) = waiting
                .drain(..)
                .partition(|r| r.through.is_none_or(|through| head.is_some_and(|head| head >= through)));
            *waiting = still;
            if waiting.is_empty() {
                parked.remove(destination);
            }
            ready
        };
        for request in ready {
            let reply = self.history_reply(&request);
            if let Some(peers) = &self.links.peers {
                let _ = peers.try_send_to(request.from.0, Mesh::History(Box::new(reply)));
            }
        }
    }

    /// A reply from an owner: hands it to the resume waiting for it.
    pub(super) fn take_reply(&self, reply: HistoryReply) {
        if let Some(Waiter::History(sender)) = self.waiting.borrow_mut().remove(&reply.token) {
            let _ = sender.try_send(reply);
        }
    }

    /// An answer from the Kafka replayer: hands it to the resume waiting for it.
    pub fn take_replay(&self, answer: ReplayAnswer) {
        if let Some(Waiter::Replay(sender)) = self.waiting.borrow_mut().remove(&answer.token) {
            let _ = sender.try_send(answer);
        }
    }

    /// What this shard's history holds for `request`.
    fn history_reply(&self, request: &ResumeRequest) -> HistoryReply {
        let history = self.history.borrow();
        let (messages, found) = match request.resume {
            Resume::Since(since) => match history.since(&request.destination, since) {
                Since::Complete(messages) => (messages, Found::All),
                Since::Gap { messages } => (messages, Found::Part),
                Since::Foreign => (Vec::new(), Found::Foreign),
            },
            Resume::Last(n) => {
                let (messages, complete) = history.last(&request.destination, n.min(self.settings.max_history));
                (messages, if complete { Found::All } else { Found::Part })
            }
            Resume::Unreadable => (Vec::new(), Found::Foreign),
        };
        HistoryReply {
            token: request.token,
            messages,
            found,
        }
    }

    /// Asks `owner` for its history; `None` when no answer came in time.
    async fn ask_owner(&self, owner: usize, request: ResumeRequest) -> Option<HistoryReply> {
        let peers = self.links.peers.as_ref()?;
        let token = request.token;
        let (sender, receiver) = local_channel::new_bounded(1);
        self.waiting.borrow_mut().insert(token, Waiter::History(sender));
        if peers.send_to(owner, Mesh::Resume(Box::new(request))).await.is_err() {
            self.waiting.borrow_mut().remove(&token);
            return None;
        }
        self.within_timeout(token, receiver.recv()).await
    }

    /// Asks the Kafka replayer for the messages of `destination`'s channel after `since`
    /// and before offset `until`; `None` without Kafka, when its queue is full or when
    /// no answer came in time.
    async fn replay(&self, destination: &Bytes, since: Position, until: Option<u64>) -> Option<ReplayAnswer> {
        let kafka = self.links.kafka.as_ref()?;
        let channel = destination.slice_ref(channel_of(destination)?);
        let token = self.token();
        let (sender, receiver) = local_channel::new_bounded(1);
        self.waiting.borrow_mut().insert(token, Waiter::Replay(sender));
        let request = ReplayRequest {
            token,
            shard: self.shard.0,
            channel,
            since,
            until,
        };
        if kafka.replay.try_send(request).is_err() {
            self.waiting.borrow_mut().remove(&token);
            return None;
        }
        self.within_timeout(token, receiver.recv()).await
    }

    /// Waits for `answer` up to the resume timeout; forgets the token when it expires.
    async fn within_timeout<T>(&self, token: u64, answer: impl std::future::Future<Output = Option<T>>) -> Option<T> {
        let deadline = Instant::now() + self.settings.resume_timeout;
        let late = async {
            glommio::timer::sleep(deadline.saturating_duration_since(Instant::now())).await;
            None
        };
        let got = futures_lite::future::or(answer, late).await;
        if got.is_none() {
            self.waiting.borrow_mut().remove(&token);
        }
        got
    }

    fn token(&self) -> u64 {
        let token = self.next_token.get();
        self.next_token.set(token + 1);
        token
    }
}

/// Removes `destination`'s room when nobody is left in it.
fn drop_if_empty(index: &mut std::collections::HashMap<Bytes, Room>, destination: &Bytes, router: &Router) {
    if index.get(destination).is_some_and(Room::is_empty) {
        index.remove(destination);
        router.interest.remove(router.shard.0, destination);
    }
}
