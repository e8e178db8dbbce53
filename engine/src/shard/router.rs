//! Who receives a message. Each shard indexes its own subscribers by destination and
//! publishes through the node's `Interest` table: a message goes to this shard's
//! subscribers directly and to other shards over the channel mesh only when they have
//! subscribers of that destination. Called by `conn.rs` (subscribe, publish) and by the
//! mesh and Kafka receive tasks in `shard/mod.rs` (deliver).

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use glommio::channels::channel_mesh::Senders;
use glommio::channels::shared_channel::ConnectedReceiver;

use crate::bridge::{Incoming, Outgoing};
use crate::chat::CHANNEL_PREFIX;
use crate::config::Ordering;
use crate::fanout::{self, Group, Published, Scratch, WireKey};
use crate::interest::Interest;
use crate::metrics::ShardStats;
use crate::shard::outbound::Outbound;

/// A shard's subscriber index and its links to the other shards.
pub struct Router {
    /// Id of this shard in `interest` and in the mesh.
    pub shard: usize,
    index: RefCell<HashMap<Bytes, Vec<Group>>>,
    scratch: RefCell<Scratch>,
    interest: Arc<Interest>,
    peers: Option<Senders<Arc<Published>>>,
    kafka: Option<crossbeam_channel::Sender<Outgoing>>,
    ordering: Ordering,
    stats: Arc<ShardStats>,
}

/// Why a chat message was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublishError {
    /// The shard's Kafka queue is full (Kafka is away or behind).
    KafkaFull,
}

impl Router {
    /// A router; `peers` is this shard's side of the mesh (None with one shard). The
    /// shard's id in the interest table is its mesh peer id.
    pub fn new(
        interest: Arc<Interest>,
        peers: Option<Senders<Arc<Published>>>,
        kafka: Option<crossbeam_channel::Sender<Outgoing>>,
        ordering: Ordering,
        stats: Arc<ShardStats>,
    ) -> Self {
        Self {
            kafka,
            ordering,
            shard: peers.as_ref().map_or(0, |p| p.peer_id()),
            index: RefCell::new(HashMap::new()),
            scratch: RefCell::new(Scratch::default()),
            interest,
            peers,
            stats,
        }
    }

    /// Adds a subscriber. The interest table is updated before this returns, so a message
    /// published anywhere on the node after the client's `RECEIPT` reaches it.
    pub fn subscribe(&self, destination: Bytes, key: WireKey, conn: u64, out: Rc<Outbound>) {
        let mut index = self.index.borrow_mut();
        let groups = index.entry(destination.clone()).or_default();
        if groups.is_empty() {
            self.interest.add(self.shard, &destination);
        }
        match groups.iter_mut().find(|g| g.key == key) {
            Some(group) => group.members.push((conn, out)),
            None => groups.push(Group {
                key,
                members: vec![(conn, out)],
            }),
        }
    }

    /// Removes subscription `subscription` of connection `conn` from `destination`.
    pub fn unsubscribe(&self, destination: &[u8], subscription: &[u8], conn: u64) {
        let mut index = self.index.borrow_mut();
        let Some(groups) = index.get_mut(destination) else {
            return;
        };
        if let Some(g) = groups
            .iter()
            .position(|g| g.key.subscription == subscription && g.members.iter().any(|(c, _)| *c == conn))
        {
            let members = &mut groups[g].members;
            if let Some(m) = members.iter().position(|(c, _)| *c == conn) {
                members.swap_remove(m);
            }
            if members.is_empty() {
                groups.swap_remove(g);
            }
        }
        if groups.is_empty() {
            index.remove(destination);
            self.interest.remove(self.shard, destination);
        }
    }

    /// Publishes a chat message of `channel` to the cluster: through Kafka in cluster
    /// mode (and also at once on this node with `Ordering::Local`), else to this node.
    ///
    /// # Errors
    /// `KafkaFull` when the Kafka queue is full: nothing was delivered anywhere.
    pub async fn publish_chat(&self, msg: Arc<Published>, channel: Bytes) -> Result<(), PublishError> {
        let Some(kafka) = &self.kafka else {
            self.publish(msg).await;
            return Ok(());
        };
        let record = Outgoing {
            channel,
            value: msg.body.clone(),
            id: msg.id.clone(),
        };
        kafka.try_send(record).map_err(|_| PublishError::KafkaFull)?;
        if self.ordering == Ordering::Local {
            self.publish(msg).await;
        }
        Ok(())
    }

    /// Delivers records read from Kafka to this shard's subscribers (the bridge sends
    /// each shard only records it has interest in). With `Ordering::Local`, this node's
    /// own records were delivered when published and are skipped.
    pub fn deliver_from_kafka(&self, batch: Vec<Incoming>, node_id: &str) {
        for record in batch {
            if self.ordering == Ordering::Local && record.origin == node_id.as_bytes() {
                continue;
            }
            let mut destination = BytesMut::with_capacity(CHANNEL_PREFIX.len() + record.channel.len());
            destination.put_slice(CHANNEL_PREFIX);
            destination.put_slice(&record.channel);
            self.deliver(&Published {
                destination: destination.freeze(),
                body: record.value,
                id: record.id,
            });
        }
    }

    /// Sends `msg` to every shard of this node with subscribers of its destination,
    /// this one included. Waits only when a peer shard's mesh queue is full.
    pub async fn publish(&self, msg: Arc<Published>) {
        let mask = self.interest.shards_for(&msg.destination);
        if mask & (1 << self.shard) != 0 {
            self.deliver(&msg);
        }
        let Some(peers) = &self.peers else { return };
        for peer in 0..peers.nr_consumers() {
            if peer != self.shard && mask & (1 << peer) != 0 {
                // The mesh is closed only at shutdown, when losing a message is expected.
                let _ = peers.send_to(peer, msg.clone()).await;
            }
        }
    }

    /// Delivers what one peer shard sends over the mesh, until that shard closes its
    /// end (at shutdown). The shard runs one such task per peer.
    pub async fn deliver_from_peer(&self, receiver: ConnectedReceiver<Arc<Published>>) {
        while let Some(msg) = receiver.recv().await {
            self.deliver(&msg);
        }
    }

    /// Delivers `msg` to this shard's subscribers of its destination.
    pub fn deliver(&self, msg: &Published) {
        let index = self.index.borrow();
        let Some(groups) = index.get(&msg.destination) else {
            return;
        };
        let delivered = fanout::deliver(msg, groups, &mut self.scratch.borrow_mut());
        ShardStats::add(&self.stats.messages_out, delivered);
    }
}
