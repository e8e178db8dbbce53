//! Who receives a message, and in which order. Each shard indexes its own subscribers by
//! destination ("rooms") and publishes through the node's [`Interest`] table: a message
//! goes to this shard's subscribers directly and to other shards over the channel mesh
//! only when they have subscribers of its destination. Called by the connections'
//! drivers (`shard/conn.rs`: subscribe, unsubscribe, publish) and by the mesh and Kafka
//! receive tasks (deliver). Hands each delivery to `fanout.rs`.
//!
//! Order: one shard of the node owns each chat channel ([`Interest::owner`]). Without
//! Kafka, every message of the channel goes through its owner, which numbers it
//! ([`Position`]: the node's lifetime and a per-channel count), keeps it in its
//! [`History`] and sends it on; so the node has one order per channel. With Kafka the
//! channel's partition gives the order and the position, every shard with subscribers
//! reads the records from the bridge, and the owner also keeps the history. Resumes
//! (`x-since`, `x-history`) are served from that history (`resume.rs`).
//!
//! Fairness: a fan-out to a room bigger than [`CHUNK`] members is not done in one go: the
//! delivering task yields between chunks when other work of the shard waits. Later
//! messages of that destination, from any task, queue behind it and the same task
//! delivers them (each destination keeps one order); other destinations go on at once.

mod resume;
mod settings;

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use bytes::{BufMut, Bytes, BytesMut};
use glommio::channels::channel_mesh::Senders;
use glommio::channels::shared_channel::ConnectedReceiver;
use proto::server::Scratch;

use crate::bridge;
use crate::fanout::{self, Group, Member, WireKey};
use crate::history::History;
use crate::ids::{ConnId, ShardId};
use crate::interest::Interest;
use crate::message::{Message, Position};
use crate::metrics::ShardStats;
use crate::outbound::Outbound;
pub use resume::{HistoryReply, Resume, ResumeRequest};
pub use settings::Settings;

/// A shard's subscriber index, its part of the channels' order and history, and its
/// links to the other shards and to Kafka.
pub struct Router {
    shard: ShardId,
    index: RefCell<HashMap<Bytes, Room>>,
    /// Destinations with a chunked fan-out in progress, and the messages queued behind it.
    busy: RefCell<HashMap<Bytes, VecDeque<Arc<Message>>>>,
    scratch: RefCell<Scratch>,
    interest: Arc<Interest>,
    links: Links,
    stats: Arc<ShardStats>,
    /// `{node}-{epoch}-{shard}-`, the prefix of the message ids this shard assigns.
    id_prefix: Bytes,
    next_message: Cell<u64>,
    /// This node's lifetime: the stream of the positions it numbers itself.
    epoch: u64,
    /// The next number of each channel this shard owns (without Kafka).
    sequences: RefCell<HashMap<Bytes, u64>>,
    /// The recent messages of the channels this shard owns.
    history: RefCell<History>,
    /// What resumes wait for: answers from owners and from Kafka replays, by token.
    waiting: RefCell<HashMap<u64, resume::Waiter>>,
    /// Resume requests from other shards waiting for this shard's history to reach the
    /// position they ask through.
    parked: RefCell<HashMap<Bytes, Vec<ResumeRequest>>>,
    next_token: Cell<u64>,
    /// This shard's messages whose receipts wait for Kafka to store them, by `n`.
    storing: RefCell<HashMap<u64, Storing>>,
    settings: Settings,
}

/// A destination's subscribers on this shard.
#[derive(Debug, Default)]
struct Room {
    groups: Vec<Group>,
    /// Subscribers catching up (`x-since`, `x-history`): live messages wait in their
    /// buffers until their history is queued.
    resuming: Vec<resume::Catching>,
    /// The newest position delivered here.
    head: Option<Position>,
}

impl Room {
    fn is_empty(&self) -> bool {
        self.groups.is_empty() && self.resuming.is_empty()
    }

    /// Adds `member` to the group of its wire form `key`.
    fn join(&mut self, key: WireKey, member: Member) {
        match self.groups.iter_mut().find(|g| g.key == key) {
            Some(group) => Rc::make_mut(&mut group.members).push(member),
            None => self.groups.push(Group {
                key,
                members: Rc::new(vec![member]),
            }),
        }
    }
}

/// How a router reaches beyond its shard.
pub struct Links {
    /// This shard's side of the channel mesh (None with one shard).
    pub peers: Option<Senders<Mesh>>,
    /// This shard's ends of the Kafka bridge (cluster mode).
    pub kafka: Option<KafkaLink>,
}

/// A shard's ends of the Kafka bridge.
pub struct KafkaLink {
    /// Where chat messages go to Kafka (bounded: full means Kafka is behind or away).
    pub outbound: crossbeam_channel::Sender<Message>,
    /// The byte bound of `outbound`.
    pub budget: bridge::Budget,
    /// Where resumes ask for replays from the log.
    pub replay: crossbeam_channel::Sender<bridge::ReplayRequest>,
    /// Whether Kafka is reachable, to deliver locally during an outage.
    pub stats: Arc<bridge::Stats>,
    /// This node's messages on their way through Kafka.
    pub echoes: Arc<bridge::Echoes>,
    /// Delivery reports that receipts wait for.
    pub acks: Arc<bridge::Acks>,
}

impl KafkaLink {
    /// Queues `msg` for Kafka within both bounds (messages and bytes).
    ///
    /// # Errors
    /// `KafkaFull` when either bound is reached: nothing was queued.
    fn send(&self, msg: Message) -> Result<(), PublishError> {
        let size = bridge::Budget::size(&msg);
        if !self.budget.take(size) {
            return Err(PublishError::KafkaFull);
        }
        self.outbound.try_send(msg).map_err(|_| {
            self.budget.give(size);
            PublishError::KafkaFull
        })
    }
}

/// What shards send each other over the mesh.
#[derive(Debug)]
pub enum Mesh {
    /// A message in its channel's order, for this shard's subscribers.
    Deliver(Arc<Message>),
    /// A chat message for its channel's owner to number, keep and send on (no Kafka).
    Sequence(Arc<Message>),
    /// A resuming subscriber's question to its channel's owner.
    Resume(Box<ResumeRequest>),
    /// The owner's answer.
    History(Box<HistoryReply>),
}

/// What [`Router::deliver_now`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivered {
    /// Delivered (or queued behind a fan-out in progress of its destination).
    Done,
    /// Nothing yet: the room is bigger than [`CHUNK`]; deliver it with [`Router::deliver`].
    TooBig,
}

/// Where a receipt waiting for Kafka stands. The report may come before the connection
/// has queued the receipt (the publish awaits local delivery during an outage), so each
/// side looks for the other.
#[derive(Debug)]
enum Storing {
    /// Handed to Kafka; the connection has not queued its receipt yet.
    Expected,
    /// The connection holds its receipt back in this queue.
    Holding(Rc<Outbound>),
    /// Kafka's report came first: stored, or refused for good.
    Reported(bool),
}

/// What became of an accepted message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Published {
    /// Delivered, or handed on: a receipt may go at once.
    Done,
    /// Handed to Kafka as this shard's message `n`: a receipt waits until Kafka has it.
    Storing(u64),
}

/// Why a message was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublishError {
    /// The shard's Kafka queue is full (Kafka is away or behind).
    KafkaFull,
}

impl Router {
    /// A router for `shard` of node `node_id`, whose lifetime is `epoch`.
    pub fn new(
        shard: ShardId,
        node_id: &str,
        epoch: u64,
        interest: Arc<Interest>,
        links: Links,
        settings: Settings,
        stats: Arc<ShardStats>,
    ) -> Self {
        Self {
            shard,
            index: RefCell::new(HashMap::new()),
            busy: RefCell::new(HashMap::new()),
            scratch: RefCell::new(Scratch::default()),
            interest,
            links,
            stats,
            id_prefix: Bytes::from(format!("{node_id}-{epoch:x}-{shard}-")),
            next_message: Cell::new(0),
            epoch,
            sequences: RefCell::new(HashMap::new()),
            history: RefCell::new(History::new(settings.history)),
            waiting: RefCell::new(HashMap::new()),
            parked: RefCell::new(HashMap::new()),
            next_token: Cell::new(0),
            storing: RefCell::default(),
            settings,
        }
    }

    /// This router's shard.
    pub fn shard(&self) -> ShardId {
        self.shard
    }

    /// Whether this shard publishes through Kafka.
    pub fn has_kafka(&self) -> bool {
        self.links.kafka.is_some()
    }

    /// Adds a subscriber. The interest table is updated before this returns, so a message
    /// published anywhere on the node after the client's `RECEIPT` reaches it.
    pub fn subscribe(&self, destination: Bytes, key: WireKey, conn: ConnId, out: Rc<Outbound>) {
        let mut index = self.index.borrow_mut();
        self.stats.count_subscriber(&destination, true);
        let room = self.room(&mut index, destination);
        room.join(key, Member { conn, out });
    }

    /// Removes subscription `sub` (its id) of connection `conn` from `destination`.
    pub fn unsubscribe(&self, destination: &[u8], sub: &[u8], conn: ConnId) {
        let mut index = self.index.borrow_mut();
        let Some(room) = index.get_mut(destination) else {
            return;
        };
        if let Some(g) = room.groups.iter().position(|g| g.key.subscription.0 == sub) {
            let members = Rc::make_mut(&mut room.groups[g].members);
            if let Some(m) = members.iter().position(|m| m.conn == conn) {
                members.swap_remove(m);
                self.stats.count_subscriber(destination, false);
            }
            if members.is_empty() {
                room.groups.swap_remove(g);
            }
        }
        room.resuming
            .retain(|c| !(c.conn == conn && c.key.subscription.0 == sub));
        if room.is_empty() {
            index.remove(destination);
            self.interest.remove(self.shard.0, destination);
        }
    }

    /// Gives `msg` its id and publishes it. A chat message goes through its channel's
    /// order: to Kafka in cluster mode, else to its owner shard; while Kafka is away it is
    /// handed to Kafka for the other nodes and delivered on this node at once (without a
    /// position). Other destinations (`/sub/...`) go straight to the shards that want
    /// them. `started` is when its `SEND` was decoded (for the fan-out latency). With
    /// `confirm` (the client wants a receipt) a message handed to Kafka is
    /// [`Published::Storing`]: its receipt waits for the delivery report
    /// ([`Router::await_stored`]).
    ///
    /// # Errors
    /// `KafkaFull` when the Kafka queue is full: nothing was delivered anywhere.
    pub async fn publish(&self, mut msg: Message, started: Instant, confirm: bool) -> Result<Published, PublishError> {
        let n = self.next_message.get();
        self.next_message.set(n + 1);
        msg.id = self.message_id(n);
        ShardStats::add(&self.stats.published, 1);
        if msg.channel().is_none() {
            self.publish_local(Arc::new(msg), started).await;
            return Ok(Published::Done);
        }
        if let Some(kafka) = &self.links.kafka {
            let shard = self.shard.0;
            // Expected before the message leaves, so that its report is never missed.
            if confirm {
                kafka.acks.expect(shard);
                self.storing.borrow_mut().insert(n, Storing::Expected);
            }
            let stored = if confirm {
                Published::Storing(n)
            } else {
                Published::Done
            };
            let unexpect = |_: &PublishError| {
                if confirm {
                    kafka.acks.settle(shard);
                    self.storing.borrow_mut().remove(&n);
                }
            };
            if kafka.stats.connected() {
                // Tracked before it leaves, so that its echo always finds it.
                kafka.echoes.sent(shard, n, Arc::new(msg.clone()));
                return kafka
                    .send(msg)
                    .inspect_err(|e| {
                        kafka.echoes.unsent(shard, n);
                        unexpect(e);
                    })
                    .map(|()| stored);
            }
            // The broker is away. What this shard sent before it noticed is delivered
            // here first, so that each publisher's order holds on this node.
            for earlier in kafka.echoes.take(shard) {
                self.publish_local(earlier, started).await;
            }
            msg.delivered_on_origin = true;
            kafka.send(msg.clone()).inspect_err(unexpect)?;
            self.publish_local(Arc::new(msg), started).await;
            return Ok(stored);
        }
        let owner = self.interest.owner(&msg.destination);
        if owner == self.shard.0 {
            self.sequence(msg, started).await;
        } else if let Some(peers) = &self.links.peers {
            // The mesh is closed only at shutdown, when losing a message is expected.
            let _ = peers.send_to(owner, Mesh::Sequence(Arc::new(msg))).await;
        }
        Ok(Published::Done)
    }

    /// The receipt held back in `out` waits for the delivery report of this shard's
    /// message `n` (after [`Published::Storing`]); released at once if it came already.
    pub fn await_stored(&self, n: u64, out: Rc<Outbound>) {
        let mut storing = self.storing.borrow_mut();
        if let Some(Storing::Reported(stored)) = storing.remove(&n) {
            drop(storing);
            self.settle(n, &out, stored);
        } else {
            storing.insert(n, Storing::Holding(out));
        }
    }

    /// Passes the delivery reports of this shard's messages on to the connections whose
    /// receipts wait for them, until the bridge stops. Runs as a task of its own.
    pub async fn serve_acks(&self) {
        let Some(kafka) = &self.links.kafka else { return };
        let mut reports = Vec::new();
        loop {
            kafka.acks.next(self.shard.0, &mut reports).await;
            for &(n, stored) in &reports {
                let mut storing = self.storing.borrow_mut();
                match storing.remove(&n) {
                    Some(Storing::Holding(out)) => {
                        drop(storing);
                        self.settle(n, &out, stored);
                    }
                    Some(Storing::Expected) => {
                        storing.insert(n, Storing::Reported(stored));
                    }
                    // Reported twice: the first report stands until the receipt asks.
                    Some(Storing::Reported(first)) => {
                        storing.insert(n, Storing::Reported(first));
                    }
                    // Not waited for (no receipt).
                    None => {}
                }
            }
        }
    }

    /// Message `n`'s receipt in `out` goes (or, refused, its connection closes). A
    /// refusal is counted by the bridge (produce errors).
    fn settle(&self, n: u64, out: &Outbound, stored: bool) {
        if let Some(kafka) = &self.links.kafka {
            kafka.acks.settle(self.shard.0);
        }
        out.release(n, stored);
    }

    /// Numbers a message of a channel this shard owns (no Kafka), keeps it and sends it to
    /// the shards that want it.
    async fn sequence(&self, mut msg: Message, started: Instant) {
        let seq = {
            let mut sequences = self.sequences.borrow_mut();
            let next = sequences.entry(msg.destination.clone()).or_insert_with(|| {
                // Everything of this channel since this node started is numbered here.
                self.history
                    .borrow_mut()
                    .set_floor(&msg.destination, Position::new(self.epoch, 0, b""));
                0
            });
            *next += 1;
            *next
        };
        msg.position = Some(Position::new(self.epoch, seq, &msg.id));
        let msg = Arc::new(msg);
        self.keep(&msg);
        self.publish_local(msg, started).await;
    }

    /// Sends `msg` to every shard of this node with subscribers of its destination,
    /// this one included. Waits only when a peer shard's mesh queue is full.
    pub async fn publish_local(&self, msg: Arc<Message>, started: Instant) {
        let mask = self.interest.shards_for(&msg.destination);
        if mask & (1 << self.shard.0) != 0 {
            self.deliver(msg.clone(), started).await;
        }
        let Some(peers) = &self.links.peers else { return };
        for peer in 0..peers.nr_consumers() {
            if peer != self.shard.0 && mask & (1 << peer) != 0 {
                // The mesh is closed only at shutdown, when losing a message is expected.
                let _ = peers.send_to(peer, Mesh::Deliver(msg.clone())).await;
            }
        }
    }

    /// Serves what one peer shard sends over the mesh, until that shard closes its end
    /// (at shutdown). The shard runs one such task per peer.
    pub async fn serve_peer(&self, receiver: ConnectedReceiver<Mesh>) {
        while let Some(item) = receiver.recv().await {
            match item {
                Mesh::Deliver(msg) => self.deliver(msg, Instant::now()).await,
                Mesh::Sequence(msg) => {
                    let msg = Arc::try_unwrap(msg).unwrap_or_else(|shared| (*shared).clone());
                    self.sequence(msg, Instant::now()).await;
                }
                Mesh::Resume(request) => self.answer(*request).await,
                Mesh::History(reply) => self.take_reply(*reply),
            }
            glommio::yield_if_needed().await;
        }
    }

    /// Delivers a batch read from Kafka (the bridge sends each shard the records it has
    /// interest in, and each channel's owner all of its records, for the history),
    /// yielding between records when other work waits.
    pub async fn deliver_from_kafka(&self, batch: Vec<Arc<Message>>) {
        let arrived = Instant::now();
        for msg in batch {
            if self.interest.owner(&msg.destination) == self.shard.0 {
                self.keep(&Arc::new(msg.compact()));
            }
            self.deliver(msg, arrived).await;
            glommio::yield_if_needed().await;
        }
    }

    /// Delivers `msg` to this shard's subscribers of its destination: at once for a room
    /// of up to [`CHUNK`] members, else chunk by chunk, yielding between chunks. The time
    /// since `started` is counted in the fan-out latency histogram.
    pub async fn deliver(&self, msg: Arc<Message>, started: Instant) {
        if self.deliver_now(&msg) == Delivered::TooBig {
            self.deliver_in_chunks(msg).await;
        }
        self.stats.fanout_latency.observe_since(started);
    }

    /// Delivers `msg` without waiting when its room has at most [`CHUNK`] members, or
    /// queues it behind a fan-out in progress of its destination.
    pub fn deliver_now(&self, msg: &Arc<Message>) -> Delivered {
        if let Some(queue) = self.busy.borrow_mut().get_mut(&msg.destination) {
            queue.push_back(msg.clone());
            return Delivered::Done;
        }
        let mut index = self.index.borrow_mut();
        let Some(room) = index.get_mut(&msg.destination) else {
            return Delivered::Done;
        };
        if msg.position.is_some() {
            room.head = msg.position;
        }
        if !room.resuming.is_empty() {
            resume::hold(&mut room.resuming, msg, self.settings.max_catching_up);
        }
        if room.groups.iter().map(|g| g.members.len()).sum::<usize>() > CHUNK {
            return Delivered::TooBig;
        }
        let delivered = fanout::deliver(msg, &room.groups, &mut self.scratch.borrow_mut());
        ShardStats::add(&self.stats.messages_out, delivered);
        self.stats.fanout_size.observe(delivered);
        Delivered::Done
    }

    /// Delivers `msg` to a big room, then whatever other tasks queued behind it for the
    /// same destination meanwhile, yielding between chunks of members.
    async fn deliver_in_chunks(&self, msg: Arc<Message>) {
        let destination = msg.destination.clone();
        self.busy
            .borrow_mut()
            .insert(destination.clone(), VecDeque::from([msg]));
        let mut first = true;
        loop {
            let Some(msg) = self.busy.borrow().get(&destination).and_then(|q| q.front().cloned()) else {
                return;
            };
            // A snapshot: members that join or leave meanwhile copy the list instead.
            let groups: Vec<(Bytes, Rc<Vec<Member>>)> = {
                let mut index = self.index.borrow_mut();
                let mut scratch = self.scratch.borrow_mut();
                index.get_mut(&destination).map_or_else(Vec::new, |room| {
                    if !first {
                        // The first one went through `deliver_now` already.
                        if msg.position.is_some() {
                            room.head = msg.position;
                        }
                        if !room.resuming.is_empty() {
                            resume::hold(&mut room.resuming, &msg, self.settings.max_catching_up);
                        }
                    }
                    room.groups
                        .iter()
                        .map(|g| (fanout::encode_shared(&msg, &g.key, &mut scratch), g.members.clone()))
                        .collect()
                })
            };
            first = false;
            let mut delivered = 0;
            for (frame, members) in groups {
                for chunk in members.chunks(CHUNK) {
                    delivered += fanout::push_all(&frame, chunk);
                    glommio::yield_if_needed().await;
                }
            }
            ShardStats::add(&self.stats.messages_out, delivered);
            self.stats.fanout_size.observe(delivered);
            let mut busy = self.busy.borrow_mut();
            if let Some(queue) = busy.get_mut(&destination) {
                queue.pop_front();
                if queue.is_empty() {
                    busy.remove(&destination);
                    return;
                }
            }
        }
    }

    /// Keeps a message of a channel this shard owns in its history, and answers the
    /// resumes that waited for it.
    fn keep(&self, msg: &Arc<Message>) {
        self.history.borrow_mut().push(msg.clone(), Instant::now());
        self.wake_parked(&msg.destination);
    }

    /// The room of `destination`, created (and announced in the interest table) if new.
    fn room<'i>(&self, index: &'i mut HashMap<Bytes, Room>, destination: Bytes) -> &'i mut Room {
        index.entry(destination).or_insert_with_key(|destination| {
            self.interest.add(self.shard.0, destination);
            Room::default()
        })
    }

    /// The `message-id` of this shard's `n`th message: `{node}-{epoch}-{shard}-{n}`,
    /// unique across restarts.
    fn message_id(&self, n: u64) -> Bytes {
        let mut id = BytesMut::with_capacity(self.id_prefix.len() + 20);
        id.put_slice(&self.id_prefix);
        id.put_slice(itoa::Buffer::new().format(n).as_bytes());
        id.freeze()
    }
}

/// Members a fan-out serves before it gives other work of the shard a chance.
pub const CHUNK: usize = 1024;

#[cfg(test)]
mod tests;
