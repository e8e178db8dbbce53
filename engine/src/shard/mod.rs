//! Shards: one glommio executor per core, each with its own listener (SO_REUSEPORT),
//! connections, subscriber index and outbound queues. A connection never leaves the shard
//! that accepted it. Shards talk over a bounded channel mesh set up at startup, and to
//! the Kafka bridge over its ports. `run` starts them and returns when all have drained.

pub mod conn;
pub mod outbound;
pub mod router;
pub mod session;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use glommio::channels::channel_mesh::MeshBuilder;
use glommio::net::TcpListener;
use glommio::{LocalExecutorBuilder, Placement};

use crate::bridge::{self, Bridge, ShardPort};
use crate::config::Config;
use crate::fanout::{Framing, Published};
use crate::interest::Interest;
use crate::metrics::ShardStats;
use crate::shard::outbound::Outbound;
use crate::shard::router::Router;

/// What all shards of a node share (read-mostly).
#[derive(Debug)]
pub struct Node {
    /// The checked configuration.
    pub config: Config,
    /// Every shard's numbers, by shard index.
    pub stats: Vec<Arc<ShardStats>>,
    /// Set by SIGTERM/SIGINT: stop accepting and close clients.
    pub draining: Arc<AtomicBool>,
    /// The Kafka bridge's numbers, in cluster mode.
    pub kafka: Option<Arc<bridge::Stats>>,
}

/// Errors that stop the engine at startup.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration problem.
    #[error(transparent)]
    Config(#[from] crate::config::Error),
    /// The Kafka bridge could not start.
    #[error(transparent)]
    Kafka(#[from] bridge::Error),
    /// An executor or listener could not start.
    #[error("shard {shard}: {reason}")]
    Start {
        /// Which shard.
        shard: usize,
        /// What failed.
        reason: String,
    },
}

/// Starts the Kafka bridge (in cluster mode) and every shard, and blocks until all have
/// drained after `draining` is set.
///
/// # Errors
/// A shard that could not start (bad core, port in use, io_uring refused), or a bridge
/// that found no broker.
pub fn run(config: Config, draining: Arc<AtomicBool>) -> Result<(), Error> {
    let shards = config.shard_count()?;
    let cpus = config.cpus()?;
    let interest = Arc::new(Interest::new(shards));
    let (bridge, ports) = match config.bridge() {
        Some(cfg) => {
            let (bridge, ports) = Bridge::start(&cfg, shards, interest.clone())?;
            (Some(bridge), ports.into_iter().map(Some).collect())
        }
        None => (None, Vec::new()),
    };
    let ports: Arc<Mutex<Vec<Option<ShardPort>>>> = Arc::new(Mutex::new(ports));
    let stats = (0..shards).map(|_| Arc::new(ShardStats::default())).collect();
    let node = Arc::new(Node {
        config,
        stats,
        draining,
        kafka: bridge.as_ref().map(Bridge::stats),
    });
    let mesh = (shards > 1).then(|| MeshBuilder::<Arc<Published>, _>::full(shards, MESH_QUEUE));
    let io_memory = node.config.io_memory_kib * 1024;
    let first_error: Arc<Mutex<Option<Error>>> = Arc::default();

    let mut handles = Vec::with_capacity(shards);
    for index in 0..shards {
        let (node, interest, mesh, first_error, ports) = (
            node.clone(),
            interest.clone(),
            mesh.clone(),
            first_error.clone(),
            ports.clone(),
        );
        let cpu = cpus[index % cpus.len()];
        let handle = LocalExecutorBuilder::new(Placement::Fixed(cpu))
            .name(&format!("shard-{index}"))
            .io_memory(io_memory)
            .ring_depth(RING_DEPTH)
            .spawn(move || async move {
                if let Err(e) = Shard::run(index, node, interest, mesh, ports).await {
                    tracing::error!(shard = index, error = %e, "shard failed");
                    if let Ok(mut slot) = first_error.lock() {
                        slot.get_or_insert(e);
                    }
                }
            })
            .map_err(|e| Error::Start {
                shard: index,
                reason: e.to_string(),
            })?;
        handles.push(handle);
    }
    for (shard, handle) in handles.into_iter().enumerate() {
        handle.join().map_err(|e| Error::Start {
            shard,
            reason: e.to_string(),
        })?;
    }
    if let Some(bridge) = bridge {
        bridge.shutdown();
    }
    let failed = first_error.lock().ok().and_then(|mut slot| slot.take());
    failed.map_or(Ok(()), Err)
}

/// One shard's state, owned by its executor.
pub struct Shard {
    /// Index of this shard (pinning, metrics, `server` header).
    pub index: usize,
    /// What the node shares.
    pub node: Arc<Node>,
    /// This shard's numbers.
    pub stats: Arc<ShardStats>,
    /// Subscribers and routing.
    pub router: Router,
    /// Live sessions, for draining.
    pub sessions: RefCell<HashMap<u64, (Rc<Outbound>, Framing)>>,
    /// Reused read buffer: sockets are read into it, then only unread tails are kept.
    pub read_scratch: RefCell<Vec<u8>>,
    /// Reused buffer for in-place JSON parses.
    pub json_scratch: RefCell<Vec<u8>>,
    /// Reused buffer for encoding replies.
    pub encode_scratch: RefCell<BytesMut>,
    next_conn: Cell<u64>,
    next_message: Cell<u64>,
    /// `{node}-{shard}-`, the prefix of message ids.
    id_prefix: Bytes,
}

impl Shard {
    async fn run(
        index: usize,
        node: Arc<Node>,
        interest: Arc<Interest>,
        mesh: Option<MeshBuilder<Arc<Published>, glommio::channels::channel_mesh::Full>>,
        ports: Arc<Mutex<Vec<Option<ShardPort>>>>,
    ) -> Result<(), Error> {
        let start_error = |reason: String| Error::Start { shard: index, reason };
        let (senders, receivers) = match mesh {
            Some(mesh) => {
                let (s, r) = mesh
                    .join()
                    .await
                    .map_err(|_| start_error("could not join the shard mesh".into()))?;
                (Some(s), Some(r))
            }
            None => (None, None),
        };
        let listener = TcpListener::bind(node.config.listen)
            .map_err(|e| start_error(format!("listen on {}: {e}", node.config.listen)))?;
        let stats = node.stats[index].clone();
        // Interest bits and bridge ports are indexed by mesh peer id.
        let peer = senders.as_ref().map_or(0, |s| s.peer_id());
        let port = ports
            .lock()
            .ok()
            .and_then(|mut ports| ports.get_mut(peer).and_then(Option::take));
        let (kafka_out, kafka_in) = match port {
            Some(port) => (Some(port.outbound), Some(port.inbound.connect().await)),
            None => (None, None),
        };
        let ordering = node.config.ordering;
        let router = Router::new(interest, senders, kafka_out, ordering, stats.clone());
        let shard = Rc::new(Shard {
            index,
            id_prefix: Bytes::from(format!("{}-{index}-", node.config.node_id)),
            node,
            stats,
            router,
            sessions: RefCell::new(HashMap::new()),
            read_scratch: RefCell::new(vec![0; READ_SCRATCH_BYTES]),
            json_scratch: RefCell::new(Vec::new()),
            encode_scratch: RefCell::new(BytesMut::new()),
            next_conn: Cell::new(0),
            next_message: Cell::new(0),
        });
        if let Some(mut receivers) = receivers {
            for (_, receiver) in receivers.streams() {
                let shard = shard.clone();
                glommio::spawn_local(async move { shard.router.deliver_from_peer(receiver).await }).detach();
            }
        }
        if let Some(kafka_in) = kafka_in {
            let shard = shard.clone();
            glommio::spawn_local(async move {
                while let Some(batch) = kafka_in.recv().await {
                    shard.router.deliver_from_kafka(batch, &shard.node.config.node_id);
                }
            })
            .detach();
        }
        tracing::info!(shard = index, listen = %shard.node.config.listen, "shard ready");

        let accepting = glommio::spawn_local(accept_loop(shard.clone(), listener));
        while !shard.node.draining.load(Relaxed) {
            glommio::timer::sleep(DRAIN_POLL).await;
        }
        accepting.cancel().await;
        shard.drain().await;
        Ok(())
    }

    /// A fresh connection id, unique on this shard.
    pub fn next_conn_id(&self) -> u64 {
        let id = self.next_conn.get();
        self.next_conn.set(id + 1);
        id
    }

    /// A fresh `message-id`: `{node}-{shard}-{n}`.
    pub fn next_message_id(&self) -> Bytes {
        let n = self.next_message.get();
        self.next_message.set(n + 1);
        let mut id = BytesMut::with_capacity(self.id_prefix.len() + 20);
        id.put_slice(&self.id_prefix);
        id.put_slice(itoa::Buffer::new().format(n).as_bytes());
        id.freeze()
    }

    /// The SockJS `h` period.
    pub fn sockjs_heartbeat(&self) -> Duration {
        Duration::from_millis(self.node.config.sockjs_heartbeat_ms)
    }

    /// Closes every session with 1001 and waits (bounded) until they are gone.
    async fn drain(&self) {
        let sessions: Vec<_> = self.sessions.borrow().values().cloned().collect();
        tracing::info!(shard = self.index, sessions = sessions.len(), "draining");
        for (out, framing) in sessions {
            session::say_goodbye(&out, framing, 1001, "server shutting down");
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(self.node.config.drain_secs);
        while !self.sessions.borrow().is_empty() && std::time::Instant::now() < deadline {
            glommio::timer::sleep(DRAIN_POLL).await;
        }
    }
}

async fn accept_loop(shard: Rc<Shard>, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok(stream) => {
                ShardStats::add(&shard.stats.accepted, 1);
                let _ = stream.set_nodelay(true);
                glommio::spawn_local(conn::serve(shard.clone(), stream)).detach();
            }
            Err(e) => {
                // Out of file descriptors or a transient error: back off, don't spin.
                tracing::warn!(shard = shard.index, error = %e, "accept failed");
                glommio::timer::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Bounded depth of each shard-to-shard queue (messages).
pub const MESH_QUEUE: usize = 4096;
/// io_uring submission ring depth per shard.
const RING_DEPTH: usize = 256;
/// Size of the per-shard read buffer.
const READ_SCRATCH_BYTES: usize = 64 * 1024;
/// How often shards look for a drain request.
const DRAIN_POLL: Duration = Duration::from_millis(50);
