//! Fan-out across shards through the engine's own channel mesh. `MeshRig` starts one
//! glommio executor per shard (pinned to core `shard % cores`), each with a real `Router`
//! joined to the mesh as `shard/mod.rs` wires it, and subscribers spread over the shards.
//! Shard 0 publishes each round's messages with `Router::publish_local`, then a sentinel; each
//! other shard with subscribers notes when the sentinel lands (it follows the round's
//! messages on the same FIFO mesh queue) and reports that time over a control mesh. A
//! round lasts from the first publish to the latest such time; queues are drained after
//! it, outside the measured time.

use std::io;
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use engine::ids::{ConnId, ShardId};
use engine::interest::Interest;
use engine::message::Message;
use engine::metrics::ShardStats;
use engine::outbound::Outbound;
use engine::router::{Links, Mesh, Router, Settings};
use engine::shard::MESH_QUEUE;
use glommio::channels::channel_mesh::{Full, MeshBuilder, Receivers, Senders};
use glommio::{ExecutorJoinHandle, LocalExecutorBuilder, Placement};

use crate::fixtures;

/// Bytes of each published chat body.
pub const BODY_BYTES: usize = 128;

/// What the measuring thread asks of the publishing shard.
enum Command {
    Run(u64),
    Stop,
}

/// What the publishing shard answers.
enum Reply {
    Ready,
    Ran(Duration),
}

/// Messages between shards about rounds (the bench's own, beside the engine's mesh).
enum Control {
    /// A shard has subscribed everyone.
    Ready,
    /// A shard saw the round's last message delivered at this time.
    Done(Instant),
    /// Empty every queue now (outside the measured time).
    Drain,
    /// A shard has emptied its queues.
    Drained,
    /// The rig is going away.
    Stop,
}

/// Shards running a router each, with subscribers, driven round by round.
pub struct MeshRig {
    commands: mpsc::Sender<Command>,
    replies: mpsc::Receiver<Reply>,
    handles: Vec<ExecutorJoinHandle<()>>,
    stats: Vec<Arc<ShardStats>>,
}

/// `total` subscribers spread evenly over `shards` shards (the first ones get the rest).
pub fn spread(total: usize, shards: usize) -> Vec<usize> {
    let shards = shards.max(1);
    (0..shards)
        .map(|s| total / shards + usize::from(s < total % shards))
        .collect()
}

impl MeshRig {
    /// Starts one shard per entry of `subscribers` (2..=64 entries), entry `i` being
    /// the number of subscribers on shard `i`; shard 0 publishes `messages` per round.
    ///
    /// # Errors
    /// An executor that could not start (locked memory, a missing core), or shards
    /// that did not get ready within 10 s.
    pub fn start(subscribers: &[usize], messages: usize) -> io::Result<Self> {
        let shards = subscribers.len();
        if !(2..=64).contains(&shards) {
            return Err(io::Error::other("a mesh needs 2..=64 shards"));
        }
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let interest = Arc::new(Interest::new(shards));
        let stats: Vec<_> = (0..shards).map(|_| Arc::new(ShardStats::default())).collect();
        let data = MeshBuilder::<Mesh, _>::full(shards, MESH_QUEUE);
        let control = MeshBuilder::<Control, _>::full(shards, CONTROL_QUEUE);
        let (commands, command_rx) = mpsc::channel();
        let (reply_tx, replies) = mpsc::channel();
        let coordinator = Arc::new(Mutex::new(Some((command_rx, reply_tx))));
        let layout: Arc<[usize]> = subscribers.into();
        let mut handles = Vec::with_capacity(shards);
        for index in 0..shards {
            let shard = Shard {
                interest: interest.clone(),
                stats: stats.clone(),
                layout: layout.clone(),
                messages,
            };
            let (data, control, coordinator) = (data.clone(), control.clone(), coordinator.clone());
            let handle = LocalExecutorBuilder::new(Placement::Fixed(index % cores))
                .name(&format!("bench-shard-{index}"))
                .io_memory(IO_MEMORY_BYTES)
                .spawn(move || async move { shard.run(data, control, coordinator).await })
                .map_err(|e| io::Error::other(format!("shard {index}: {e}")))?;
            handles.push(handle);
        }
        match replies.recv_timeout(READY_WAIT) {
            Ok(Reply::Ready) => Ok(Self {
                commands,
                replies,
                handles,
                stats,
            }),
            _ => Err(io::Error::other("the shards did not get ready")),
        }
    }

    /// Runs `rounds` rounds; returns their measured time, summed.
    ///
    /// # Panics
    /// When the shards have stopped (an executor failed).
    pub fn run(&self, rounds: u64) -> Duration {
        let sent = self.commands.send(Command::Run(rounds));
        match (sent, self.replies.recv()) {
            (Ok(()), Ok(Reply::Ran(elapsed))) => elapsed,
            _ => panic!("the bench shards stopped"),
        }
    }

    /// Deliveries made by all shards so far, sentinels included.
    pub fn delivered(&self) -> u64 {
        self.stats.iter().map(|s| s.messages_out.load(Relaxed)).sum()
    }
}

impl Drop for MeshRig {
    fn drop(&mut self) {
        let _ = self.commands.send(Command::Stop);
        for handle in self.handles.drain(..) {
            let _ = handle.join();
        }
    }
}

/// What one shard's executor starts with.
struct Shard {
    interest: Arc<Interest>,
    stats: Vec<Arc<ShardStats>>,
    layout: Arc<[usize]>,
    messages: usize,
}

type CoordinatorEnds = Arc<Mutex<Option<(mpsc::Receiver<Command>, mpsc::Sender<Reply>)>>>;

impl Shard {
    async fn run(
        self,
        data: MeshBuilder<Mesh, Full>,
        control: MeshBuilder<Control, Full>,
        coordinator: CoordinatorEnds,
    ) {
        let Ok((senders, mut receivers)) = data.join().await else {
            return;
        };
        let Ok((to, from)) = control.join().await else {
            return;
        };
        // As in the engine, the mesh peer id is the shard's id in the interest table.
        let peer = senders.peer_id();
        let Some(stats) = self.stats.get(peer) else {
            return;
        };
        let links = Links {
            peers: Some(senders),
            kafka: None,
        };
        let router = Rc::new(Router::new(
            ShardId(peer),
            "bench",
            1 << 32,
            self.interest.clone(),
            links,
            Settings::default(),
            stats.clone(),
        ));
        for (_, receiver) in receivers.streams() {
            let router = router.clone();
            glommio::spawn_local(async move { router.serve_peer(receiver).await }).detach();
        }
        let (queues, sentinel) = subscribe(&router, self.layout.get(peer).copied().unwrap_or(0));
        let to = Rc::new(to);
        if peer == 0 {
            let ends = coordinator.lock().ok().and_then(|mut ends| ends.take());
            if let Some((commands, replies)) = ends {
                let rounds = Rounds {
                    router,
                    queues,
                    to,
                    from,
                    layout: self.layout.clone(),
                    messages: self.messages,
                    msg: Arc::new(fixtures::published(BODY_BYTES)),
                    sentinel: Arc::new(Message {
                        destination: Bytes::from_static(SENTINEL),
                        body: Bytes::from_static(b"{}"),
                        id: Bytes::from_static(b"sentinel"),
                        position: None,
                        delivered_on_origin: false,
                    }),
                };
                rounds.serve(commands, replies).await;
            }
        } else {
            follow(queues, sentinel, to, from).await;
        }
    }
}

/// Subscribes `count` raw STOMP subscribers of the bench channel on this shard, plus a
/// sentinel subscriber on shards other than 0 that have subscribers. Returns their
/// queues and the sentinel's.
fn subscribe(router: &Router, count: usize) -> (Vec<Rc<Outbound>>, Option<Rc<Outbound>>) {
    let now = Instant::now();
    let destination = fixtures::published(BODY_BYTES).destination;
    let queues: Vec<_> = (0..count)
        .map(|conn| {
            let out = Rc::new(Outbound::new(QUEUE_BYTES, now));
            router.subscribe(
                destination.clone(),
                fixtures::raw_key(),
                ConnId(conn as u64),
                out.clone(),
            );
            out
        })
        .collect();
    let sentinel = (count > 0 && router.shard() != ShardId(0)).then(|| {
        let out = Rc::new(Outbound::new(QUEUE_BYTES, now));
        router.subscribe(
            Bytes::from_static(SENTINEL),
            fixtures::raw_key(),
            ConnId(count as u64),
            out.clone(),
        );
        out
    });
    (queues, sentinel)
}

/// The publishing shard's side of the rounds.
struct Rounds {
    router: Rc<Router>,
    queues: Vec<Rc<Outbound>>,
    to: Rc<Senders<Control>>,
    from: Receivers<Control>,
    layout: Arc<[usize]>,
    messages: usize,
    msg: Arc<Message>,
    sentinel: Arc<Message>,
}

impl Rounds {
    /// Answers the measuring thread's commands until it says stop (or goes away).
    async fn serve(self, commands: mpsc::Receiver<Command>, replies: mpsc::Sender<Reply>) {
        let followers = 1..self.layout.len();
        for peer in followers.clone() {
            if !matches!(self.from.recv_from(peer).await, Ok(Some(Control::Ready))) {
                return;
            }
        }
        let _ = replies.send(Reply::Ready);
        // Blocking this executor between runs is fine: nothing is in flight then.
        while let Ok(Command::Run(rounds)) = commands.recv() {
            let mut elapsed = Duration::ZERO;
            for _ in 0..rounds {
                let Some(round) = self.round().await else {
                    return;
                };
                elapsed += round;
            }
            if replies.send(Reply::Ran(elapsed)).is_err() {
                break;
            }
        }
        for peer in followers {
            let _ = self.to.send_to(peer, Control::Stop).await;
        }
    }

    /// One measured round, then the drain. `None` when a follower went away.
    async fn round(&self) -> Option<Duration> {
        let watched: Vec<usize> = (1..self.layout.len()).filter(|&p| self.layout[p] > 0).collect();
        let start = Instant::now();
        for _ in 0..self.messages {
            self.router.publish_local(self.msg.clone(), Instant::now()).await;
        }
        // Local deliveries happen inside `publish`: this shard is done.
        let mut last = Instant::now();
        if !watched.is_empty() {
            self.router.publish_local(self.sentinel.clone(), Instant::now()).await;
        }
        for &peer in &watched {
            match self.from.recv_from(peer).await {
                Ok(Some(Control::Done(at))) => last = last.max(at),
                _ => return None,
            }
        }
        let elapsed = last.saturating_duration_since(start);
        for peer in 1..self.layout.len() {
            self.to.send_to(peer, Control::Drain).await.ok()?;
        }
        fixtures::drain_queues(&self.queues, &mut Vec::new());
        for peer in 1..self.layout.len() {
            if !matches!(self.from.recv_from(peer).await, Ok(Some(Control::Drained))) {
                return None;
            }
        }
        Some(elapsed)
    }
}

/// A shard other than 0: reports when each round's sentinel lands, drains on request.
async fn follow(
    queues: Vec<Rc<Outbound>>,
    sentinel: Option<Rc<Outbound>>,
    to: Rc<Senders<Control>>,
    from: Receivers<Control>,
) {
    if to.send_to(0, Control::Ready).await.is_err() {
        return;
    }
    if let Some(sentinel) = sentinel {
        let to = to.clone();
        // Ends with the executor, when this function returns.
        glommio::spawn_local(async move {
            let mut spare = Vec::new();
            loop {
                // Wakes like a connection's writer when its queue gets bytes.
                sentinel.take(&mut spare).await;
                let at = Instant::now();
                spare.clear();
                if to.send_to(0, Control::Done(at)).await.is_err() {
                    break;
                }
            }
        })
        .detach();
    }
    let mut spare = Vec::new();
    // Anything but `Drain` (`Stop`, a closed mesh) ends the shard.
    while let Ok(Some(Control::Drain)) = from.recv_from(0).await {
        fixtures::drain_queues(&queues, &mut spare);
        if to.send_to(0, Control::Drained).await.is_err() {
            break;
        }
    }
}

/// The sentinel's destination (no bench subscriber has it).
const SENTINEL: &[u8] = b"/sub/chat/bench-sentinel";
/// Bound of each subscriber's queue: a round's messages stay in it until the drain.
const QUEUE_BYTES: usize = 8 << 20;
/// Depth of the control mesh's queues (at most two messages are in flight).
const CONTROL_QUEUE: usize = 4;
/// io_uring buffer memory per executor: the engine's default (locked memory is scarce).
const IO_MEMORY_BYTES: usize = 256 * 1024;
/// How long `start` waits for every shard to subscribe.
const READY_WAIT: Duration = Duration::from_secs(10);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spreads_evenly() {
        assert_eq!(spread(10, 4), [3, 3, 2, 2]);
        assert_eq!(spread(100, 2), [50, 50]);
    }

    #[test]
    fn every_subscriber_gets_every_message() {
        let rig = MeshRig::start(&[3, 2, 4], 5).expect("rig");
        rig.run(2);
        rig.run(1);
        // Two sentinels per round (shards 1 and 2).
        assert_eq!(rig.delivered(), 3 * (9 * 5 + 2));
    }

    #[test]
    fn same_shard_needs_no_sentinel() {
        let rig = MeshRig::start(&[4, 0], 5).expect("rig");
        rig.run(3);
        assert_eq!(rig.delivered(), 3 * 4 * 5);
    }
}
