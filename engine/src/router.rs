//! Who receives a message. Each shard indexes its own subscribers by destination and
//! publishes through the node's [`Interest`] table: a message goes to this shard's
//! subscribers directly, to other shards over the channel mesh only when they have
//! subscribers of its destination, and, in cluster mode, to Kafka. Called by the
//! connections' drivers (`shard/conn.rs`: subscribe, unsubscribe, publish) and by the
//! mesh and Kafka receive tasks (deliver). Hands each delivery to `fanout.rs`.
//!
//! Fairness: a fan-out to a room bigger than [`CHUNK`] members is not done in one go: the
//! delivering task yields between chunks when other work of the shard waits. Later
//! messages of that destination, from any task, queue behind it and the same task
//! delivers them (each destination keeps one order); other destinations go on at once.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use bytes::{BufMut, Bytes, BytesMut};
use glommio::channels::channel_mesh::Senders;
use glommio::channels::shared_channel::ConnectedReceiver;
use proto::server::Scratch;

use crate::config::Ordering;
use crate::fanout::{self, Group, Member, Outbound, WireKey};
use crate::ids::{ConnId, ShardId, SubId};
use crate::interest::Interest;
use crate::message::Message;
use crate::metrics::ShardStats;

/// A shard's subscriber index and its links to the other shards and to Kafka.
pub struct Router {
    shard: ShardId,
    index: RefCell<HashMap<Bytes, Vec<Group>>>,
    /// Destinations with a chunked fan-out in progress, and the messages queued behind it.
    busy: RefCell<HashMap<Bytes, VecDeque<Arc<Message>>>>,
    scratch: RefCell<Scratch>,
    interest: Arc<Interest>,
    links: Links,
    ordering: Ordering,
    stats: Arc<ShardStats>,
    /// `{node}-{shard}-`, the prefix of the message ids this shard assigns.
    id_prefix: Bytes,
    next_message: std::cell::Cell<u64>,
}

/// How a router reaches beyond its shard.
pub struct Links {
    /// This shard's side of the channel mesh (None with one shard).
    pub peers: Option<Senders<Arc<Message>>>,
    /// This shard's queue to the Kafka producer (cluster mode).
    pub kafka: Option<crossbeam_channel::Sender<Message>>,
}

/// What [`Router::deliver_now`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivered {
    /// Delivered (or queued behind a fan-out in progress of its destination).
    Done,
    /// Nothing yet: the room is bigger than [`CHUNK`]; deliver it with [`Router::deliver`].
    TooBig,
}

/// Why a message was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublishError {
    /// The shard's Kafka queue is full (Kafka is away or behind).
    KafkaFull,
}

impl Router {
    /// A router for `shard` of node `node_id`.
    pub fn new(
        shard: ShardId,
        node_id: &str,
        interest: Arc<Interest>,
        links: Links,
        ordering: Ordering,
        stats: Arc<ShardStats>,
    ) -> Self {
        Self {
            shard,
            index: RefCell::new(HashMap::new()),
            busy: RefCell::new(HashMap::new()),
            scratch: RefCell::new(Scratch::default()),
            interest,
            links,
            ordering,
            stats,
            id_prefix: Bytes::from(format!("{node_id}-{shard}-")),
            next_message: std::cell::Cell::new(0),
        }
    }

    /// This router's shard.
    pub fn shard(&self) -> ShardId {
        self.shard
    }

    /// Adds a subscriber. The interest table is updated before this returns, so a message
    /// published anywhere on the node after the client's `RECEIPT` reaches it.
    pub fn subscribe(&self, destination: Bytes, key: WireKey, conn: ConnId, out: Rc<Outbound>) {
        let mut index = self.index.borrow_mut();
        let groups = index.entry(destination.clone()).or_default();
        if groups.is_empty() {
            self.interest.add(self.shard.0, &destination);
        }
        let member = Member { conn, out };
        match groups.iter_mut().find(|g| g.key == key) {
            Some(group) => Rc::make_mut(&mut group.members).push(member),
            None => groups.push(Group {
                key,
                members: Rc::new(vec![member]),
            }),
        }
    }

    /// Removes subscription `sub` of connection `conn` from `destination`.
    pub fn unsubscribe(&self, destination: &[u8], sub: &SubId, conn: ConnId) {
        let mut index = self.index.borrow_mut();
        let Some(groups) = index.get_mut(destination) else {
            return;
        };
        if let Some(g) = groups.iter().position(|g| &g.key.subscription == sub) {
            let members = Rc::make_mut(&mut groups[g].members);
            if let Some(m) = members.iter().position(|m| m.conn == conn) {
                members.swap_remove(m);
            }
            if members.is_empty() {
                groups.swap_remove(g);
            }
        }
        if groups.is_empty() {
            index.remove(destination);
            self.interest.remove(self.shard.0, destination);
        }
    }

    /// Gives `msg` its id and publishes it: a chat message goes to Kafka in cluster mode
    /// (and also at once to this node with `Ordering::Local`); everything else, and every
    /// message without Kafka, to the shards of this node that want it.
    ///
    /// # Errors
    /// `KafkaFull` when the Kafka queue is full: nothing was delivered anywhere.
    /// `started` is when its `SEND` was decoded (for the fan-out latency histogram).
    pub async fn publish(&self, mut msg: Message, started: Instant) -> Result<(), PublishError> {
        msg.id = self.next_message_id();
        ShardStats::add(&self.stats.published, 1);
        if let (Some(kafka), Some(_)) = (&self.links.kafka, msg.channel()) {
            kafka.try_send(msg.clone()).map_err(|_| PublishError::KafkaFull)?;
            if self.ordering == Ordering::Kafka {
                return Ok(());
            }
        }
        self.publish_local(Arc::new(msg), started).await;
        Ok(())
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
                let _ = peers.send_to(peer, msg.clone()).await;
            }
        }
    }

    /// Delivers what one peer shard sends over the mesh, until that shard closes its
    /// end (at shutdown). The shard runs one such task per peer.
    pub async fn deliver_from_peer(&self, receiver: ConnectedReceiver<Arc<Message>>) {
        while let Some(msg) = receiver.recv().await {
            self.deliver(msg, Instant::now()).await;
            glommio::yield_if_needed().await;
        }
    }

    /// Delivers a batch read from Kafka (the bridge sends each shard only records it
    /// has interest in), yielding between records when other work waits.
    pub async fn deliver_from_kafka(&self, batch: Vec<Arc<Message>>) {
        let arrived = Instant::now();
        for msg in batch {
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
        let index = self.index.borrow();
        let Some(groups) = index.get(&msg.destination) else {
            return Delivered::Done;
        };
        if groups.iter().map(|g| g.members.len()).sum::<usize>() > CHUNK {
            return Delivered::TooBig;
        }
        let delivered = fanout::deliver(msg, groups, &mut self.scratch.borrow_mut());
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
        loop {
            let Some(msg) = self.busy.borrow().get(&destination).and_then(|q| q.front().cloned()) else {
                return;
            };
            // A snapshot: members that join or leave meanwhile copy the list instead.
            let groups: Vec<(Bytes, Rc<Vec<Member>>)> = {
                let index = self.index.borrow();
                let mut scratch = self.scratch.borrow_mut();
                index.get(&destination).map_or_else(Vec::new, |groups| {
                    groups
                        .iter()
                        .map(|g| (fanout::encode_shared(&msg, &g.key, &mut scratch), g.members.clone()))
                        .collect()
                })
            };
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

    /// A fresh `message-id`: `{node}-{shard}-{n}`.
    fn next_message_id(&self) -> Bytes {
        let n = self.next_message.get();
        self.next_message.set(n + 1);
        let mut id = BytesMut::with_capacity(self.id_prefix.len() + 20);
        id.put_slice(&self.id_prefix);
        id.put_slice(itoa::Buffer::new().format(n).as_bytes());
        id.freeze()
    }
}

/// Members a fan-out serves before it gives other work of the shard a chance.
pub const CHUNK: usize = 1024;
