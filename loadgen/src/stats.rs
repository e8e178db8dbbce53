//! What a load generator shard measures and hands to the main thread: latency histograms
//! per server (node, shard), per-subscriber and per-publisher counts, the message table,
//! errors by kind and its own CPU time. Shards fill these on their own core; the main thread
//! receives them as `Event`s (one `Interval` a second, one `Done` at the end) and merges.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;

use crate::track::MessageTable;

/// Latency histograms: µs, 1 µs to 60 s, 3 significant digits.
pub type Hist = Histogram<u64>;

/// A histogram with the load generator's bounds.
pub fn new_hist() -> Hist {
    Histogram::new_with_bounds(1, HIST_MAX_US, 3).expect("constant bounds 1..60 s with 3 digits are valid")
}

/// Records `us`, clamped into the histogram's range.
pub fn record(hist: &mut Hist, us: u64) {
    hist.saturating_record(us.max(1));
}

/// Largest recordable value, µs (60 s).
pub const HIST_MAX_US: u64 = 60_000_000;

/// Errors counted by kind (`refused`, `reset`, `timeout`, `http_503`, `stomp_error`,
/// `close_1008`, ...).
pub type Errors = BTreeMap<String, u64>;

/// Counts one error of `kind`.
pub fn count_error(errors: &mut Errors, kind: &str) {
    match errors.get_mut(kind) {
        Some(n) => *n += 1,
        None => {
            errors.insert(kind.to_string(), 1);
        }
    }
}

/// Numbers for the connections one loadgen shard has on one server (node, shard).
#[derive(Debug, Clone)]
pub struct KeyStats {
    /// The node id from `CONNECTED`'s `server` header (`?` when absent).
    pub node: String,
    /// The server shard from the same header.
    pub shard: String,
    /// Connections that got `CONNECTED` there.
    pub connections: u64,
    /// Of them, subscriptions confirmed by a receipt.
    pub subscribers: u64,
    /// TCP connect to `CONNECTED`, µs.
    pub connect: Hist,
    /// Intended send to receipt of measured messages, µs.
    pub delivery: Hist,
    /// Ready connections that dropped while on this server.
    pub disconnects: u64,
    /// Dropped connections that came back subscribed on this server.
    pub reconnects: u64,
    /// Of them, resubscribed with `x-since`.
    pub resumed: u64,
    /// Drop to subscribed again, µs, for the reconnects that landed here.
    pub reconnect: Hist,
    /// Measured messages this server delivered to a connection resubscribed with `x-since`
    /// that were meant to be sent before that SUBSCRIBE (so they came by replay).
    pub recovered: u64,
    /// Resuming receipts with `x-recovered:true`.
    pub recoveries_true: u64,
    /// Resuming receipts with `x-recovered:false`.
    pub recoveries_false: u64,
    /// Resuming receipts without a readable `x-recovered`.
    pub recoveries_missing: u64,
}

impl KeyStats {
    /// Empty numbers for `node`/`shard`.
    pub fn new(node: String, shard: String) -> Self {
        KeyStats {
            node,
            shard,
            connections: 0,
            subscribers: 0,
            connect: new_hist(),
            delivery: new_hist(),
            disconnects: 0,
            reconnects: 0,
            resumed: 0,
            reconnect: new_hist(),
            recovered: 0,
            recoveries_true: 0,
            recoveries_false: 0,
            recoveries_missing: 0,
        }
    }
}

/// One subscriber at the end of the run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SubResult {
    /// Index into `ShardResult::keys`.
    pub key: usize,
    /// Its channel.
    pub channel: u32,
    /// Distinct measured messages received.
    pub received: u64,
    /// Measured messages received again.
    pub duplicates: u64,
    /// Measured messages received after a later one of the same publisher.
    pub reorders: u64,
    /// Times it came back after a drop.
    pub reconnects: u64,
    /// Of them, with `x-since`.
    pub resumed: u64,
    /// Times its connection dropped.
    pub drops: u64,
    /// Dropped and not back when the run ended.
    pub down: bool,
}

/// One publisher at the end of the run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PubResult {
    /// Its id.
    pub publisher: u32,
    /// Its channel.
    pub channel: u32,
    /// Messages sent inside the measured window (distinct; injected copies not counted).
    pub sent_measured: u64,
    /// All messages sent, warm-up included.
    pub sent_total: u64,
    /// Measured messages that fell due while its connection was down (or its backlog
    /// full): never sent, no sequence number, expected by nobody, so not lost either.
    pub unsent_measured: u64,
    /// All such messages, warm-up included.
    pub unsent_total: u64,
    /// Messages queued for its socket but not written when its connection dropped
    /// (counted as sent; subscribers that never got them count them lost).
    pub unflushed: u64,
    /// With `--confirm`: measured messages sent whose receipt never came.
    pub unconfirmed: Vec<u64>,
}

/// CPU time, seconds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Cpu {
    /// User time.
    pub user_s: f64,
    /// System time.
    pub sys_s: f64,
}

impl Cpu {
    /// This thread's CPU time so far (`getrusage(RUSAGE_THREAD)`).
    pub fn thread() -> Cpu {
        rusage(libc::RUSAGE_THREAD)
    }

    /// The whole process's CPU time so far.
    pub fn process() -> Cpu {
        rusage(libc::RUSAGE_SELF)
    }

    /// `self - earlier`.
    pub fn since(&self, earlier: &Cpu) -> Cpu {
        Cpu {
            user_s: (self.user_s - earlier.user_s).max(0.0),
            sys_s: (self.sys_s - earlier.sys_s).max(0.0),
        }
    }

    /// User plus system.
    pub fn total_s(&self) -> f64 {
        self.user_s + self.sys_s
    }
}

fn rusage(who: libc::c_int) -> Cpu {
    // SAFETY: getrusage writes into the zeroed struct we own and reads nothing else.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        if libc::getrusage(who, &mut usage) != 0 {
            return Cpu::default();
        }
        usage
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Cpu {
        user_s: secs(usage.ru_utime),
        sys_s: secs(usage.ru_stime),
    }
}

/// Everything one shard measured.
#[derive(Debug, Clone)]
pub struct ShardResult {
    /// The shard.
    pub shard: usize,
    /// The core it ran on.
    pub cpu_core: usize,
    /// Per server (node, shard).
    pub keys: Vec<KeyStats>,
    /// Every subscriber that was subscribed when publishing began.
    pub subs: Vec<SubResult>,
    /// Every publisher that was connected when publishing began.
    pub pubs: Vec<PubResult>,
    /// Receipts per message (measured, distinct).
    pub table: MessageTable,
    /// How late measured messages left the load generator (send time - intended), µs.
    pub send_lag: Hist,
    /// Errors by kind.
    pub errors: Errors,
    /// Connections tried.
    pub attempted: u64,
    /// Connections subscribed when publishing began.
    pub ready: u64,
    /// Reconnect attempts that failed (each also counted in `errors` as `reconnect_<kind>`).
    pub reconnect_failures: u64,
    /// Measured deliveries to subscribers that had not dropped, before the run's first
    /// drop and from it on, µs.
    pub kept: [Hist; 2],
    /// Frames sent as injected duplicates.
    pub injected: u64,
    /// Messages of this run received, warm-up and duplicates included.
    pub delivered_total: u64,
    /// Messages of other runs (another loadgen on the same channels).
    pub foreign: u64,
    /// `MESSAGE` bodies without a readable `lg` stamp.
    pub unparsable: u64,
    /// CPU used from the start of the measured window to the stop (so the deliveries of
    /// the window's last messages count too).
    pub cpu_measured: Cpu,
    /// Length of that CPU window, seconds.
    pub cpu_window_s: f64,
    /// CPU used over the whole run.
    pub cpu_total: Cpu,
}

/// One second of one shard, for the live line and the interval log.
#[derive(Debug, Clone)]
pub struct Interval {
    /// The shard.
    pub shard: usize,
    /// Seconds since publishing began.
    pub index: u64,
    /// Start, CLOCK_REALTIME ns.
    pub start_ns: u64,
    /// End, CLOCK_REALTIME ns.
    pub end_ns: u64,
    /// Delivery latency of everything received in it (warm-up included), µs.
    pub hist: Hist,
    /// Messages sent.
    pub sent: u64,
    /// Messages received.
    pub delivered: u64,
    /// Errors.
    pub errors: u64,
    /// Ready connections that dropped.
    pub disconnects: u64,
    /// Dropped connections subscribed again.
    pub reconnects: u64,
}

/// What shards tell the main thread.
#[derive(Debug)]
pub enum Event {
    /// A second has passed.
    Interval(Box<Interval>),
    /// The shard has finished.
    Done(Box<ShardResult>),
}

/// CLOCK_REALTIME now, ns since the epoch (comparable across processes on one host).
pub fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_clamp_instead_of_failing() {
        let mut h = new_hist();
        record(&mut h, 0);
        record(&mut h, 10 * HIST_MAX_US);
        assert_eq!(h.len(), 2);
        assert_eq!(h.min(), 1);
        assert!(h.max() >= HIST_MAX_US);
    }

    #[test]
    fn errors_count_by_kind() {
        let mut e = Errors::new();
        count_error(&mut e, "refused");
        count_error(&mut e, "refused");
        count_error(&mut e, "close_1008");
        assert_eq!(e.get("refused"), Some(&2));
        assert_eq!(e.len(), 2);
    }

    #[test]
    fn thread_cpu_moves_forward() {
        let before = Cpu::thread();
        let mut x = 0u64;
        for i in 0..3_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        let after = Cpu::thread();
        assert!(after.since(&before).total_s() >= 0.0);
        assert!(Cpu::process().total_s() >= after.total_s() - 1e-3);
    }
}
