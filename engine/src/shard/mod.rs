//! Shards: one glommio executor per core, each with its own listener (SO_REUSEPORT),
//! connections, subscriber index and outbound queues. A WebSocket connection never leaves
//! the shard that accepted it; an HTTP connection moves, once per request at most, to the
//! shard that owns the SockJS session of its request (`sessions.rs`). Shards talk over a
//! bounded channel mesh set up at startup (plus one hand-off channel per pair of shards),
//! and to the Kafka bridge over the ports the binary hands in. Each shard runs two task
//! queues of equal shares: connections (`conn.rs`) and the bus (mesh and Kafka
//! deliveries, big fan-outs), so neither can starve the other. `run` starts them and
//! returns when all have drained.

pub mod api;
pub mod conn;
mod endpoints;
mod handshake;
pub mod poller;
pub mod sessions;
mod transport;
mod writer;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::os::fd::OwnedFd;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use glommio::channels::channel_mesh::MeshBuilder;
use glommio::channels::shared_channel::{self, ConnectedSender, SharedReceiver, SharedSender};
use glommio::{Latency, LocalExecutorBuilder, Placement, Shares};
use proto::{server, Framing};

use crate::bridge::{self, ShardPort};
use crate::config::Config;
use crate::history;
use crate::ids::{ConnId, ShardId};
use crate::interest::Interest;
use crate::metrics::ShardStats;
use crate::router::{self, KafkaLink, Links, Mesh, Router};
use crate::session::{self, Settings};
use poller::{Poller, Socket};

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
    /// This run of the node: the stream of the positions it numbers itself (without
    /// Kafka), and part of its message ids. Never below 2^32, so never a partition.
    pub epoch: u64,
    /// SockJS HTTP-transport sessions on all shards (bounded by `--max-sockjs-sessions`).
    pub sockjs_sessions: AtomicUsize,
    /// Connections open on all shards (bounded by `--max-connections`).
    pub connections: AtomicUsize,
    /// Connections open per client address (bounded by `--max-connections-per-address`).
    /// A lock, but only taken when a connection's first request arrives and when it
    /// closes, never per frame; entries at zero are removed.
    pub per_address: Mutex<HashMap<IpAddr, usize>>,
    /// The HTTP API's keys (`--api-key-file`); the API answers 404 without them.
    pub api_keys: Option<api::Keys>,
}

/// A connection on its way to the shard that owns its next request's SockJS session: a
/// `dup` of its socket and the bytes read from it so far (moved, not copied).
#[derive(Debug)]
pub struct Handoff {
    /// The socket.
    pub fd: OwnedFd,
    /// Unread bytes, the request's head first.
    pub buf: BytesMut,
    /// Its place in the node's connection counts, which moves with it.
    pub admission: handshake::Admission,
}

/// One shard's ends of the hand-off channels: to each other shard and from each, by
/// shard index (`None` at its own index).
struct HandoffPorts {
    to: Vec<Option<SharedSender<Handoff>>>,
    from: Vec<Option<SharedReceiver<Handoff>>>,
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

/// The cluster side of a node, as the binary wired it: the bridge's figures and one port
/// per shard.
pub struct Cluster {
    /// The Kafka bridge's numbers.
    pub stats: Arc<bridge::Stats>,
    /// One port per shard, by shard index.
    pub ports: Vec<ShardPort>,
}

/// Starts every shard and blocks until all have drained after `draining` is set.
/// `interest` must be the table the bridge (if any) was started with.
///
/// # Errors
/// A shard that could not start (bad core, port in use, io_uring refused).
pub fn run(
    config: Config,
    interest: Arc<Interest>,
    cluster: Option<Cluster>,
    draining: Arc<AtomicBool>,
) -> Result<(), Error> {
    let shards = config.shard_count()?;
    let cpus = config.cpus()?;
    let (kafka, ports) = match cluster {
        Some(cluster) => (Some(cluster.stats), cluster.ports.into_iter().map(Some).collect()),
        None => (None, Vec::new()),
    };
    let ports: Arc<Mutex<Vec<Option<ShardPort>>>> = Arc::new(Mutex::new(ports));
    let stats = (0..shards).map(|_| Arc::new(ShardStats::default())).collect();
    let api_keys = config.api_keys()?;
    let node = Arc::new(Node {
        config,
        stats,
        draining,
        kafka,
        epoch: epoch(),
        sockjs_sessions: AtomicUsize::new(0),
        connections: AtomicUsize::new(0),
        per_address: Mutex::default(),
        api_keys,
    });
    let mut handoff_ports = handoff_channels(shards).into_iter();
    let mesh = (shards > 1).then(|| MeshBuilder::<Mesh, _>::full(shards, MESH_QUEUE));
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
        let handoff = handoff_ports.next().ok_or_else(|| Error::Start {
            shard: index,
            reason: "no hand-off channels".into(),
        })?;
        let cpu = cpus[index % cpus.len()];
        let handle = LocalExecutorBuilder::new(Placement::Fixed(cpu))
            .name(&format!("shard-{index}"))
            .io_memory(io_memory)
            .ring_depth(node.config.ring_depth)
            .spawn(move || async move {
                if let Err(e) = Shard::run(index, node, interest, mesh, ports, handoff).await {
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
    let failed = first_error.lock().ok().and_then(|mut slot| slot.take());
    failed.map_or(Ok(()), Err)
}

/// One shard's state, owned by its executor.
pub struct Shard {
    /// This shard (pinning, metrics, `server` header).
    pub id: ShardId,
    /// What the node shares.
    pub node: Arc<Node>,
    /// This shard's numbers.
    pub stats: Arc<ShardStats>,
    /// Subscribers and routing.
    pub router: Rc<Router>,
    /// What sessions are told by the configuration.
    pub settings: Settings,
    /// This shard's index, `0..shards` (its executor's; SockJS sessions are owned by it).
    pub index: usize,
    /// SockJS HTTP-transport sessions owned by this shard, by session id.
    pub http: RefCell<HashMap<Box<str>, Rc<sessions::HttpSession>>>,
    /// Hand-off channels to the other shards, by shard index.
    handoff: Vec<Option<ConnectedSender<Handoff>>>,
    /// Reused storage for parsing `xhr_send` bodies.
    pub json_scratch: RefCell<Vec<u8>>,
    /// Reused read buffer: sockets are read into it, then only unread tails are kept.
    pub read_scratch: RefCell<Vec<u8>>,
    /// Where the session being driven writes (borrowed only between awaits).
    pub output: RefCell<session::Output>,
    next_conn: Cell<u64>,
    /// Readiness of this shard's sockets.
    poller: Rc<Poller>,
    /// Writes its WebSocket connections' queues.
    writers: writer::Writers,
    /// WebSocket STOMP sessions still reading their client (for draining).
    reading: Cell<usize>,
}

impl Shard {
    async fn run(
        index: usize,
        node: Arc<Node>,
        interest: Arc<Interest>,
        mesh: Option<MeshBuilder<Mesh, glommio::channels::channel_mesh::Full>>,
        ports: Arc<Mutex<Vec<Option<ShardPort>>>>,
        handoff: HandoffPorts,
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
        let poller = Poller::new().map_err(|e| start_error(format!("create an epoll instance: {e}")))?;
        let listener = listen(&poller, node.config.listen)
            .map_err(|e| start_error(format!("listen on {}: {e}", node.config.listen)))?;
        let stats = node.stats[index].clone();
        // Interest bits and bridge ports are indexed by mesh peer id.
        let id = ShardId(senders.as_ref().map_or(0, |s| s.peer_id()));
        let port = ports
            .lock()
            .ok()
            .and_then(|mut ports| ports.get_mut(id.0).and_then(Option::take));
        let (kafka, kafka_in, replayed) = match (port, &node.kafka) {
            (Some(port), Some(stats)) => {
                let link = KafkaLink {
                    outbound: port.outbound,
                    budget: port.budget,
                    replay: port.replay,
                    stats: stats.clone(),
                    echoes: port.echoes,
                    acks: port.acks,
                };
                (
                    Some(link),
                    Some(port.inbound.connect().await),
                    Some(port.replayed.connect().await),
                )
            }
            _ => (None, None, None),
        };
        let executor = glommio::executor();
        let conn_queue = executor.create_task_queue(Shares::Static(1000), Latency::Matters(QUEUE_LATENCY), "conn");
        let bus_queue = executor.create_task_queue(Shares::Static(1000), Latency::Matters(QUEUE_LATENCY), "bus");
        let links = Links { peers: senders, kafka };
        let config = &node.config;
        let router_settings = router::Settings {
            history: history::Limits {
                per_channel: config.history_messages,
                shard_bytes: config.history_mib.saturating_mul(1 << 20),
                max_age: Duration::from_secs(config.history_secs),
            },
            max_history: config.max_history,
            max_catching_up: config.replay_max,
            resume_timeout: Duration::from_millis(config.resume_timeout_ms),
        };
        let router = Rc::new(Router::new(
            id,
            &config.node_id,
            node.epoch,
            interest,
            links,
            router_settings,
            stats.clone(),
        ));
        let settings = Settings {
            server: format!(
                "chat-engine/{} node={} shard={id}",
                env!("CARGO_PKG_VERSION"),
                config.node_id
            ),
            heartbeat_ms: config.heartbeat_ms,
            sockjs_heartbeat: Duration::from_millis(config.sockjs_heartbeat_ms),
            max_subscriptions: config.max_subscriptions,
            max_id_bytes: config.max_id_bytes,
            max_destination_bytes: config.max_destination_bytes,
            connect_timeout: Duration::from_millis(config.connect_timeout_ms),
            publish_rate: (config.max_publish_rate > 0).then(|| session::Rate {
                interval: Duration::from_secs(1) / config.max_publish_rate,
                burst: config.publish_burst,
            }),
            max_history: config.max_history,
            limits: server::Limits {
                max_frame_bytes: config.max_frame_bytes,
                max_headers: MAX_HEADERS,
                max_line_bytes: config.max_header_line_bytes.min(config.max_frame_bytes),
            },
            auth: config.auth.clone(),
        };
        // Each end waits for its peer's: connect all of them at once, or two shards would
        // each wait on the other's first channel.
        let handoff_senders: Vec<_> = handoff
            .to
            .into_iter()
            .map(|sender| glommio::spawn_local(async move { Some(sender?.connect().await) }))
            .collect();
        let handoff_receivers: Vec<_> = handoff
            .from
            .into_iter()
            .flatten()
            .map(|receiver| glommio::spawn_local(receiver.connect()))
            .collect();
        let mut handoff_to = Vec::with_capacity(handoff_senders.len());
        for sender in handoff_senders {
            handoff_to.push(sender.await);
        }
        let mut handoff_from = Vec::with_capacity(handoff_receivers.len());
        for receiver in handoff_receivers {
            handoff_from.push(receiver.await);
        }
        let shard = Rc::new(Shard {
            id,
            node: node.clone(),
            stats,
            router,
            settings,
            index,
            http: RefCell::new(HashMap::new()),
            handoff: handoff_to,
            json_scratch: RefCell::new(Vec::new()),
            read_scratch: RefCell::new(vec![0; READ_SCRATCH_BYTES]),
            output: RefCell::new(session::Output::default()),
            next_conn: Cell::new(0),
            poller: poller.clone(),
            writers: writer::Writers::default(),
            reading: Cell::new(0),
        });
        let spawn_bus = |task: Pin<Box<dyn Future<Output = ()>>>| match glommio::spawn_local_into(task, bus_queue) {
            Ok(task) => {
                task.detach();
                Ok(())
            }
            Err(e) => Err(start_error(format!("spawn a bus task: {e}"))),
        };
        if let Some(mut receivers) = receivers {
            for (_, receiver) in receivers.streams() {
                let router = shard.router.clone();
                spawn_bus(Box::pin(async move { router.serve_peer(receiver).await }))?;
            }
        }
        if let Some(kafka_in) = kafka_in {
            let router = shard.router.clone();
            spawn_bus(Box::pin(async move {
                while let Some(batch) = kafka_in.recv().await {
                    router.deliver_from_kafka(batch).await;
                }
            }))?;
        }
        if shard.router.has_kafka() {
            let router = shard.router.clone();
            spawn_bus(Box::pin(async move { router.serve_acks().await }))?;
        }
        if let Some(replayed) = replayed {
            let router = shard.router.clone();
            spawn_bus(Box::pin(async move {
                while let Some(answer) = replayed.recv().await {
                    router.take_replay(answer);
                }
            }))?;
        }
        for receiver in handoff_from {
            let shard = shard.clone();
            let task = async move {
                while let Some(handoff) = receiver.recv().await {
                    if let Some(serving) = conn::serve_handed(shard.clone(), handoff) {
                        glommio::spawn_local(serving).detach();
                    }
                }
            };
            glommio::spawn_local_into(task, conn_queue)
                .map_err(|e| start_error(format!("spawn a hand-off receiver: {e}")))?
                .detach();
        }
        glommio::spawn_local_into(poller.run(Duration::from_micros(node.config.coalesce_us)), conn_queue)
            .map_err(|e| start_error(format!("spawn the poller: {e}")))?
            .detach();
        glommio::spawn_local_into(writer::Writers::run(shard.clone()), conn_queue)
            .map_err(|e| start_error(format!("spawn the writer: {e}")))?
            .detach();
        tracing::info!(shard = %id, listen = %shard.node.config.listen, "shard ready");

        let accepting = glommio::spawn_local_into(accept_loop(shard.clone(), listener), conn_queue)
            .map_err(|e| start_error(format!("spawn the accept loop: {e}")))?;
        while !shard.node.draining.load(Relaxed) {
            glommio::timer::sleep(DRAIN_POLL).await;
        }
        accepting.cancel().await;
        shard.drain().await;
        Ok(())
    }

    /// A fresh connection id, unique on this shard.
    pub fn next_conn_id(&self) -> ConnId {
        let id = self.next_conn.get();
        self.next_conn.set(id + 1);
        ConnId(id)
    }

    /// Sends `handoff` to shard `owner`; false when that shard is gone.
    pub async fn hand_off(&self, owner: usize, handoff: Handoff) -> bool {
        match self.handoff.get(owner).and_then(Option::as_ref) {
            Some(sender) => sender.send(handoff).await.is_ok(),
            None => false,
        }
    }

    /// Closes every session with 1001 and waits (bounded) until they are gone.
    async fn drain(&self) {
        let mut sessions = self.writers.open_sessions();
        sessions.extend(
            self.http
                .borrow()
                .values()
                .filter(|hs| !hs.ended())
                .map(|hs| (hs.out.clone(), Framing::SockJsHttp)),
        );
        tracing::info!(shard = %self.id, sessions = sessions.len(), "draining");
        let mut goodbye = BytesMut::new();
        for (out, framing) in sessions {
            goodbye.clear();
            server::encode_close(framing, 1001, "server shutting down", &mut goodbye);
            out.push_reply(&goodbye);
            out.close(crate::outbound::Closing::Graceful);
        }
        self.wake_http_sessions();
        let deadline = std::time::Instant::now() + Duration::from_secs(self.node.config.drain_secs);
        while self.open_sessions() && std::time::Instant::now() < deadline {
            glommio::timer::sleep(DRAIN_POLL).await;
        }
    }

    /// Whether a WebSocket session is still reading its client, or an HTTP-transport
    /// session has not ended.
    fn open_sessions(&self) -> bool {
        self.reading.get() > 0 || self.http.borrow().values().any(|hs| !hs.ended())
    }
}

/// A number for this run of the node: the clock and the process id, mixed.
fn epoch() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut x = nanos ^ (u64::from(std::process::id()) << 40);
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    (x & 0xffff_ffff_ffff) | (1 << 32)
}

/// This shard's listening socket on `addr` (`SO_REUSEPORT`: every shard has its own, and
/// the kernel spreads connections over them), registered with `poller`.
fn listen(poller: &Rc<Poller>, addr: std::net::SocketAddr) -> std::io::Result<Socket> {
    use socket2::{Domain, Protocol, Type};
    let socket = socket2::Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_port(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Socket::new(poller, std::net::TcpListener::from(socket).into())
}

async fn accept_loop(shard: Rc<Shard>, listener: Socket) {
    loop {
        match std::future::poll_fn(|cx| listener.poll_accept(cx))
            .await
            .and_then(|fd| Socket::new(&shard.poller, fd))
        {
            Ok(stream) => {
                ShardStats::add(&shard.stats.accepted, 1);
                stream.set_nodelay();
                glommio::spawn_local(conn::serve(shard.clone(), stream)).detach();
            }
            Err(e) => {
                // Out of file descriptors or a transient error: back off, don't spin.
                tracing::warn!(shard = %shard.id, error = %e, "accept failed");
                glommio::timer::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// The hand-off channels of `shards` shards: one from every shard to every other, as
/// each shard's ends, by shard index.
fn handoff_channels(shards: usize) -> Vec<HandoffPorts> {
    let mut ports: Vec<HandoffPorts> = (0..shards)
        .map(|_| HandoffPorts {
            to: (0..shards).map(|_| None).collect(),
            from: (0..shards).map(|_| None).collect(),
        })
        .collect();
    for from in 0..shards {
        for to in (0..shards).filter(|&to| to != from) {
            let (sender, receiver) = shared_channel::new_bounded(HANDOFF_QUEUE);
            ports[from].to[to] = Some(sender);
            ports[to].from[from] = Some(receiver);
        }
    }
    ports
}

/// Bounded depth of each shard-to-shard queue (messages).
pub const MESH_QUEUE: usize = 4096;
/// Bounded depth of each hand-off channel (connections in flight between two shards).
const HANDOFF_QUEUE: usize = 1024;
/// Connections the kernel queues for each shard's listener before it accepts them.
const LISTEN_BACKLOG: i32 = 1024;
/// Size of the per-shard read buffer.
const READ_SCRATCH_BYTES: usize = 64 * 1024;
/// How often shards look for a drain request.
const DRAIN_POLL: Duration = Duration::from_millis(50);
/// How soon a task queue with work waiting gets its turn (glommio's preemption budget).
const QUEUE_LATENCY: Duration = Duration::from_millis(1);
/// Most headers a client frame may carry.
const MAX_HEADERS: usize = 64;
