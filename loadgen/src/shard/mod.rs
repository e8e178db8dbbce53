//! Load generator shards: one glommio executor per core, pinned, each running its share of
//! the connections (one reader task and one writer task each, see `conn.rs`, or `http.rs`
//! for SockJS's HTTP transports, reporting back through `events.rs`) and one clock
//! task that publishes on the open-loop schedule, sends the main thread an `Interval` each
//! second and, when told to stop, a `Done` with everything it measured. The main thread
//! steers every shard through the atomics of `Control`. A connection that drops and comes
//! back (`--reconnect`) keeps its subscriber slot, its sequence trackers and its `Link`.

pub mod conn;
mod events;
mod http;
mod publish;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::task::Waker;
use std::time::Duration;

use bytes::BytesMut;
use glommio::{LocalExecutorBuilder, Placement};
use smallvec::SmallVec;

use crate::body;
use crate::reconnect::Recovery;
use crate::scenario::Scenario;
use crate::stats::{self, count_error, Cpu, Errors, Event, Hist, KeyStats, PubResult, ShardResult, SubResult};
use crate::track::{MessageTable, Seen, SeqTracker};
use proto::client::Codec;

/// What the main thread and all shards share. Times are CLOCK_REALTIME ns; 0 means
/// "not yet" and `u64::MAX` "never".
#[derive(Debug)]
pub struct Control {
    /// Shards whose executor is up and warmed.
    pub shards_up: AtomicU64,
    /// When connecting begins (set once every shard is up).
    pub start_ns: AtomicU64,
    /// When publishing begins (set once every connection is ready or given up).
    pub publish_start_ns: AtomicU64,
    /// When measuring begins (publish start + warm-up).
    pub measure_start_ns: AtomicU64,
    /// When publishing ends (the end of the measured window; earlier on Ctrl-C).
    pub publish_end_ns: AtomicU64,
    /// Shards wrap up and report.
    pub stop: AtomicBool,
    /// Connections whose handshake has ended (ready or failed).
    pub finished: AtomicU64,
    /// Connections subscribed and ready.
    pub ready: AtomicU64,
    /// Failed connections.
    pub failed: AtomicU64,
    /// Ready subscribers per channel.
    pub subscribers: Vec<AtomicU32>,
    /// Deliveries the measured messages sent so far call for.
    pub expected: AtomicU64,
    /// Distinct measured deliveries so far.
    pub received: AtomicU64,
    /// When the first ready connection dropped (`u64::MAX`: none yet).
    pub first_drop_ns: AtomicU64,
}

impl Control {
    /// Fresh control for `channels` channels.
    pub fn new(channels: u32) -> Self {
        Control {
            shards_up: AtomicU64::new(0),
            start_ns: AtomicU64::new(0),
            publish_start_ns: AtomicU64::new(0),
            measure_start_ns: AtomicU64::new(u64::MAX),
            publish_end_ns: AtomicU64::new(u64::MAX),
            stop: AtomicBool::new(false),
            finished: AtomicU64::new(0),
            ready: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            subscribers: (0..channels).map(|_| AtomicU32::new(0)).collect(),
            expected: AtomicU64::new(0),
            received: AtomicU64::new(0),
            first_drop_ns: AtomicU64::new(u64::MAX),
        }
    }

    /// The measured window `[measure_start, publish_end)`.
    pub fn window(&self) -> (u64, u64) {
        (self.measure_start_ns.load(Relaxed), self.publish_end_ns.load(Relaxed))
    }
}

/// Starts one executor per shard; each sends its `Event`s to `events`. Returns the join
/// handles (the main thread does not need to join them: `Done` says they are finished).
///
/// # Errors
/// An executor that could not start (bad core, io_uring memory refused).
pub fn start(
    scenario: Arc<Scenario>,
    control: Arc<Control>,
    events: Sender<Event>,
) -> Result<Vec<glommio::ExecutorJoinHandle<()>>, String> {
    let mut handles = Vec::with_capacity(scenario.shards());
    for index in 0..scenario.shards() {
        let (scenario, control, events) = (scenario.clone(), control.clone(), events.clone());
        let core = scenario.cpus[index];
        let mut builder = LocalExecutorBuilder::new(Placement::Fixed(core))
            .name(&format!("lg-shard-{index}"))
            .io_memory(scenario.io_memory_bytes)
            .ring_depth(scenario.ring_depth);
        if let Some(spin) = scenario.spin {
            builder = builder.spin_before_park(spin);
        }
        let handle = builder
            .spawn(move || async move {
                let shard = Rc::new(Shard::new(index, core, scenario, control, events));
                shard.run().await;
            })
            .map_err(|e| format!("shard {index} on core {core}: {e}"))?;
        handles.push(handle);
    }
    Ok(handles)
}

/// The write side of one connection, shared by its writer task and the publisher clock.
pub struct Link {
    /// Bytes waiting to be written.
    pub out: RefCell<BytesMut>,
    /// The codec (encoding needs its masks and scratch buffers).
    pub codec: RefCell<Codec>,
    waker: Cell<Option<Waker>>,
    alive: Cell<bool>,
    /// Messages in `out` (publishes; pongs are not counted).
    queued: Cell<u64>,
    /// Messages the writer took but could not write.
    failed: Cell<u64>,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("queued", &self.out.borrow().len())
            .field("alive", &self.alive.get())
            .finish()
    }
}

impl Link {
    /// A live link with `codec`.
    pub fn new(codec: Codec) -> Self {
        Link {
            out: RefCell::new(BytesMut::new()),
            codec: RefCell::new(codec),
            waker: Cell::new(None),
            alive: Cell::new(true),
            queued: Cell::new(0),
            failed: Cell::new(0),
        }
    }

    /// Brings a dead link back on a new connection, with that connection's codec and
    /// nothing queued.
    pub fn revive(&self, codec: Codec) {
        *self.codec.borrow_mut() = codec;
        self.out.borrow_mut().clear();
        self.queued.set(0);
        self.failed.set(0);
        self.alive.set(true);
    }

    /// Counts `n` messages appended to `out`.
    pub fn note_queued(&self, n: u64) {
        self.queued.set(self.queued.get() + n);
    }

    /// The writer takes what is queued: how many messages that is.
    fn take_queued(&self) -> u64 {
        self.queued.take()
    }

    /// The writer could not write `n` messages it took.
    fn note_failed(&self, n: u64) {
        self.failed.set(self.failed.get() + n);
    }

    /// Messages queued but never written, once the link is dead (and resets the count).
    pub fn take_unflushed(&self) -> u64 {
        self.queued.take() + self.failed.take()
    }

    /// Wakes the writer when bytes are queued.
    pub fn wake(&self) {
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }

    /// Whether the connection still stands.
    pub fn alive(&self) -> bool {
        self.alive.get()
    }

    /// Marks the connection gone and wakes the writer so it ends.
    pub fn kill(&self) {
        self.alive.set(false);
        self.wake();
    }
}

/// One subscriber's state on its shard.
#[derive(Debug)]
struct Sub {
    key: usize,
    channel: u32,
    received: u64,
    duplicates: u64,
    reorders: u64,
    reconnects: u64,
    resumed: u64,
    drops: u64,
    down: bool,
    trackers: SmallVec<[(u32, SeqTracker); 2]>,
}

/// One publisher's schedule on its shard.
#[derive(Debug)]
struct Pub {
    publisher: u32,
    channel: u32,
    link: Rc<Link>,
    /// Its connection's subscriber slot (receipts come in there).
    slot: usize,
    seq: u64,
    /// The first sequence number of the measured window, once sent.
    first_measured: Option<u64>,
    /// Sequence numbers whose receipt came (`--confirm`), one bit each.
    confirmed: Vec<u64>,
    next_ns: u64,
    sent_measured: u64,
    sent_total: u64,
    unsent_measured: u64,
    unsent_total: u64,
    unflushed: u64,
    /// A frame held back to be sent after the next one (injected reorder).
    held: Option<BytesMut>,
    injected_dups: u32,
    injected_reorders: u32,
}

impl Pub {
    /// Measured messages sent whose receipt never came, by sequence number.
    fn unconfirmed(&self) -> Vec<u64> {
        let Some(first) = self.first_measured else {
            return Vec::new();
        };
        (first..self.seq)
            .filter(|&seq| {
                let word = usize::try_from(seq / 64).ok().and_then(|w| self.confirmed.get(w));
                word.is_none_or(|w| w & (1 << (seq % 64)) == 0)
            })
            .collect()
    }
}

/// Mutable measurements of a shard.
struct State {
    keys: Vec<KeyStats>,
    key_index: HashMap<(String, String), usize>,
    subs: Vec<Sub>,
    pubs: Vec<Pub>,
    table: MessageTable,
    errors: Errors,
    interval: Hist,
    send_lag: Hist,
    /// Measured deliveries to subscribers that had not dropped: before the first drop of
    /// the run, and from it on.
    kept: [Hist; 2],
    interval_sent: u64,
    interval_delivered: u64,
    interval_errors: u64,
    interval_disconnects: u64,
    interval_reconnects: u64,
    reconnect_failures: u64,
    attempted: u64,
    ready: u64,
    injected: u64,
    delivered_total: u64,
    foreign: u64,
    unparsable: u64,
}

/// One load generator shard, owned by its executor.
pub struct Shard {
    index: usize,
    core: usize,
    /// The plan.
    pub scenario: Arc<Scenario>,
    /// Shared with the main thread.
    pub control: Arc<Control>,
    events: Sender<Event>,
    state: RefCell<State>,
    /// Reused read buffer: sockets are read into it, then only what is left is kept.
    pub read_scratch: RefCell<Vec<u8>>,
    /// Limits handshakes in flight.
    pub permits: glommio::sync::Semaphore,
}

impl Shard {
    fn new(index: usize, core: usize, scenario: Arc<Scenario>, control: Arc<Control>, events: Sender<Event>) -> Self {
        let permits = glommio::sync::Semaphore::new(scenario.connect_concurrency as u64);
        Shard {
            index,
            core,
            control,
            events,
            state: RefCell::new(State {
                keys: Vec::new(),
                key_index: HashMap::new(),
                subs: Vec::new(),
                pubs: Vec::new(),
                table: MessageTable::new(),
                errors: Errors::new(),
                interval: stats::new_hist(),
                send_lag: stats::new_hist(),
                kept: [stats::new_hist(), stats::new_hist()],
                interval_sent: 0,
                interval_delivered: 0,
                interval_errors: 0,
                interval_disconnects: 0,
                interval_reconnects: 0,
                reconnect_failures: 0,
                attempted: 0,
                ready: 0,
                injected: 0,
                delivered_total: 0,
                foreign: 0,
                unparsable: 0,
            }),
            read_scratch: RefCell::new(vec![0; READ_SCRATCH_BYTES]),
            permits,
            scenario,
        }
    }

    async fn run(self: Rc<Self>) {
        let cpu_start = Cpu::thread();
        // A fresh executor is slow to notice I/O for its first few milliseconds: let it
        // settle before any connection is timed.
        for _ in 0..WARM_UP_TICKS {
            glommio::timer::sleep(Duration::from_millis(5)).await;
        }
        self.control.shards_up.fetch_add(1, Relaxed);
        while self.control.start_ns.load(Relaxed) == 0 && !self.control.stop.load(Relaxed) {
            glommio::timer::sleep(Duration::from_millis(1)).await;
        }
        let tasks: Vec<_> = self
            .scenario
            .conns
            .iter()
            .filter(|c| c.shard == self.index)
            .map(|c| glommio::spawn_local(conn::run(self.clone(), c.index)))
            .collect();
        self.state.borrow_mut().attempted = tasks.len() as u64;
        let (cpu_measured, cpu_window_s) = publish::clock(&self).await;
        // Cancels every connection task; their sockets close as they drop.
        drop(tasks);
        let result = self.result(cpu_measured, cpu_window_s, Cpu::thread().since(&cpu_start));
        let _ = self.events.send(Event::Done(Box::new(result)));
    }

    fn result(&self, cpu_measured: Cpu, cpu_window_s: f64, cpu_total: Cpu) -> ShardResult {
        let mut state = self.state.borrow_mut();
        let state = &mut *state;
        ShardResult {
            shard: self.index,
            cpu_core: self.core,
            keys: std::mem::take(&mut state.keys),
            subs: state
                .subs
                .iter()
                .map(|s| SubResult {
                    key: s.key,
                    channel: s.channel,
                    received: s.received,
                    duplicates: s.duplicates,
                    reorders: s.reorders,
                    reconnects: s.reconnects,
                    resumed: s.resumed,
                    drops: s.drops,
                    down: s.down,
                })
                .collect(),
            pubs: state
                .pubs
                .iter()
                .map(|p| PubResult {
                    publisher: p.publisher,
                    channel: p.channel,
                    sent_measured: p.sent_measured,
                    sent_total: p.sent_total,
                    unsent_measured: p.unsent_measured,
                    unsent_total: p.unsent_total,
                    unflushed: p.unflushed,
                    unconfirmed: if self.scenario.confirm {
                        p.unconfirmed()
                    } else {
                        Vec::new()
                    },
                })
                .collect(),
            table: std::mem::take(&mut state.table),
            send_lag: std::mem::replace(&mut state.send_lag, stats::new_hist()),
            errors: std::mem::take(&mut state.errors),
            attempted: state.attempted,
            ready: state.ready,
            reconnect_failures: state.reconnect_failures,
            kept: std::mem::replace(&mut state.kept, [stats::new_hist(), stats::new_hist()]),
            injected: state.injected,
            delivered_total: state.delivered_total,
            foreign: state.foreign,
            unparsable: state.unparsable,
            cpu_measured,
            cpu_window_s,
            cpu_total,
        }
    }
}

impl State {
    /// The index of `node`/`server_shard` in `keys` (added on first sight).
    fn key(&mut self, node: String, server_shard: String) -> usize {
        let next = self.keys.len();
        let key = *self
            .key_index
            .entry((node.clone(), server_shard.clone()))
            .or_insert(next);
        if key == next {
            self.keys.push(KeyStats::new(node, server_shard));
        }
        key
    }
}

/// The tracker of `publisher` among a subscriber's trackers (created on first sight).
fn tracker(trackers: &mut SmallVec<[(u32, SeqTracker); 2]>, publisher: u32) -> &mut SeqTracker {
    let at = match trackers.iter().position(|(p, _)| *p == publisher) {
        Some(at) => at,
        None => {
            trackers.push((publisher, SeqTracker::new()));
            trackers.len() - 1
        }
    };
    &mut trackers[at].1
}

/// Errors of reconnect attempts are counted under their kind with this prefix.
const RECONNECT_PREFIX: &str = "reconnect_";
/// 5 ms sleeps a new executor takes before connecting.
const WARM_UP_TICKS: usize = 10;
/// Size of the per-shard read buffer.
const READ_SCRATCH_BYTES: usize = 64 * 1024;
