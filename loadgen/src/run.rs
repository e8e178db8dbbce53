//! One run, steered from the main thread: start the shards, wait until every connection is
//! ready or given up, open the warm-up and the measured window, let stragglers arrive,
//! stop the shards and build the report. It samples the servers at the window's edges,
//! prints a progress line each second, and on Ctrl-C (SIGINT/SIGTERM) ends the window
//! early and still reports; a second Ctrl-C exits at once. Never waits past its bounds.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crate::output::hlog::IntervalLog;
use crate::report::hist::{self, Percentiles};
use crate::report::{self, table, Report, RunInfo, TimelinePoint};
use crate::scenario::Scenario;
use crate::server::Probe;
use crate::shard::{self, Control};
use crate::stats::{self, count_error, now_ns, Cpu, Event, Hist, Interval, ShardResult};

/// What a run produced.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The report.
    pub report: Report,
    /// Delivery latency per second.
    pub log: IntervalLog,
}

/// A run that could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A shard's executor could not start.
    #[error("cannot start: {0}")]
    Start(String),
}

/// True once SIGINT or SIGTERM has arrived (a second one exits with status 130).
pub fn interrupted() -> bool {
    signal_flag().load(Relaxed)
}

fn signal_flag() -> &'static Arc<AtomicBool> {
    static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();
    FLAG.get_or_init(|| {
        let flag = Arc::new(AtomicBool::new(false));
        for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            // The conditional exit goes first: it fires only if the flag was already set.
            let _ = signal_hook::flag::register_conditional_shutdown(signal, 130, flag.clone());
            let _ = signal_hook::flag::register(signal, flag.clone());
        }
        flag
    })
}

/// Where the run is.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    Connecting,
    WarmingUp,
    Measuring,
    Draining { until_ns: u64 },
    Stopping { until: Instant },
}

/// Plays `scenario` once; `kind` is `run` or `hold`.
///
/// # Errors
/// A shard that could not start.
pub fn run(scenario: Scenario, kind: &str) -> Result<Outcome, Error> {
    let _ = signal_flag();
    let scenario = Arc::new(scenario);
    let probe = Probe {
        urls: scenario.metrics_urls.clone(),
        pids: scenario.server_pids.clone(),
    };
    let before_connect = probe.sample();
    let control = Arc::new(Control::new(scenario.channels));
    let (events_tx, events) = mpsc::channel();
    shard::start(scenario.clone(), control.clone(), events_tx).map_err(Error::Start)?;
    let shards = scenario.shards();
    let up_by = Instant::now() + SHARD_START_WAIT;
    while control.shards_up.load(Relaxed) < shards as u64 && Instant::now() < up_by {
        std::thread::sleep(Duration::from_millis(1));
    }
    let start_ns = now_ns();
    control.start_ns.store(start_ns, Relaxed);

    let total = scenario.conns.len() as u64;
    let last_start_ns = start_ns
        + scenario
            .conns
            .iter()
            .map(|c| c.start_after.as_nanos() as u64)
            .max()
            .unwrap_or(0);
    let mut live = Live::new(shards, scenario.progress);
    let mut results: Vec<ShardResult> = Vec::new();
    let mut info = RunInfo {
        kind: kind.to_string(),
        before_connect: Some(before_connect),
        ..RunInfo::default()
    };
    let mut phase = Phase::Connecting;
    let (mut last_finished, mut last_progress_ns) = (0, start_ns);
    let mut next_line = Instant::now() + Duration::from_secs(1);
    let mut signalled = false;
    loop {
        match events.recv_timeout(Duration::from_millis(20)) {
            Ok(Event::Interval(i)) => live.add(*i, &control),
            Ok(Event::Done(r)) => results.push(*r),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        if results.len() == shards {
            break;
        }
        let now = now_ns();
        let interrupt = interrupted() && !signalled;
        signalled |= interrupt;
        if interrupt && scenario.progress {
            eprintln!("loadgen: interrupted, finishing up (Ctrl-C again to quit at once)");
        }
        match phase {
            Phase::Connecting => {
                let finished = control.finished.load(Relaxed);
                if finished > last_finished {
                    (last_finished, last_progress_ns) = (finished, now);
                }
                let stuck = now
                    > last_start_ns.max(last_progress_ns)
                        + (scenario.connect_timeout + Duration::from_secs(1)).as_nanos() as u64;
                if finished >= total || stuck || signalled {
                    let publish_start = now + START_DELAY.as_nanos() as u64;
                    let measure_start = publish_start + scenario.warmup.as_nanos() as u64;
                    let publish_end = measure_start + scenario.duration.as_nanos() as u64;
                    control.measure_start_ns.store(measure_start, Relaxed);
                    control.publish_end_ns.store(publish_end, Relaxed);
                    control.publish_start_ns.store(publish_start, Relaxed);
                    live.publish_start_ns = publish_start;
                    if control.ready.load(Relaxed) == 0 || signalled {
                        // Nothing to measure: end at once, keeping what was counted.
                        control.publish_end_ns.store(measure_start.min(now), Relaxed);
                        control.stop.store(true, Relaxed);
                        phase = Phase::Stopping {
                            until: Instant::now() + STOP_WAIT,
                        };
                    } else {
                        phase = Phase::WarmingUp;
                    }
                }
            }
            Phase::WarmingUp | Phase::Measuring if signalled => {
                // Ctrl-C: the window ends now (empty when still warming up).
                control.publish_end_ns.store(now, Relaxed);
                if phase == Phase::WarmingUp {
                    control.measure_start_ns.store(now, Relaxed);
                }
                info.measure_start.get_or_insert_with(|| probe.sample());
                phase = Phase::Draining {
                    until_ns: now + scenario.grace.min(Duration::from_secs(1)).as_nanos() as u64,
                };
            }
            Phase::WarmingUp => {
                if now >= control.measure_start_ns.load(Relaxed) {
                    info.measure_start = Some(probe.sample());
                    phase = Phase::Measuring;
                }
            }
            Phase::Measuring => {
                if now >= control.publish_end_ns.load(Relaxed) {
                    phase = Phase::Draining {
                        until_ns: now + scenario.grace.as_nanos() as u64,
                    };
                }
            }
            Phase::Draining { until_ns } => {
                let all_in = control.received.load(Relaxed) >= control.expected.load(Relaxed);
                // Give in-flight messages a moment even when the counts already match.
                if (all_in && now > control.publish_end_ns.load(Relaxed) + SETTLE.as_nanos() as u64)
                    || now >= until_ns
                    || interrupt
                {
                    // The servers are sampled when the shards stop counting CPU.
                    info.measure_end = Some(probe.sample());
                    control.stop.store(true, Relaxed);
                    phase = Phase::Stopping {
                        until: Instant::now() + STOP_WAIT,
                    };
                }
            }
            Phase::Stopping { until } => {
                if Instant::now() > until {
                    break;
                }
            }
        }
        if phase == Phase::Connecting && scenario.progress && Instant::now() >= next_line {
            next_line += Duration::from_secs(1);
            let elapsed = now.saturating_sub(start_ns) as f64 / 1e9;
            eprintln!(
                "[{elapsed:5.1}s] connecting: {}/{} ready, {} failed",
                control.ready.load(Relaxed),
                total,
                control.failed.load(Relaxed)
            );
        }
    }
    live.flush(&control);
    results.sort_by_key(|r| r.shard);
    let unresponsive = shards.saturating_sub(results.len());
    if let Some(first) = results.first_mut() {
        for _ in 0..unresponsive {
            count_error(&mut first.errors, "shard_unresponsive");
        }
    }
    let (start, end) = control.window();
    info.window_ns = if start == u64::MAX {
        (0, 0)
    } else {
        (start, end.min(now_ns()).max(start))
    };
    info.timeline = live.timeline;
    info.process_cpu = Cpu::process();
    info.interrupted = signalled;
    let report = report::build(&scenario, &results, &info);
    Ok(Outcome { report, log: live.log })
}

/// Gathers the shards' seconds: prints the live line and keeps the timeline and log.
struct Live {
    shards: usize,
    print: bool,
    publish_start_ns: u64,
    pending: BTreeMap<u64, (usize, Interval)>,
    cumulative: Hist,
    cumulative_from_warm_up: bool,
    timeline: Vec<TimelinePoint>,
    log: IntervalLog,
    errors: u64,
    disconnects: u64,
    reconnects: u64,
}

impl Live {
    fn new(shards: usize, print: bool) -> Self {
        Live {
            shards,
            print,
            publish_start_ns: 0,
            pending: BTreeMap::new(),
            cumulative: stats::new_hist(),
            cumulative_from_warm_up: true,
            timeline: Vec::new(),
            log: IntervalLog::new(),
            errors: 0,
            disconnects: 0,
            reconnects: 0,
        }
    }

    fn add(&mut self, i: Interval, control: &Control) {
        let index = i.index;
        match self.pending.get_mut(&index) {
            Some((n, sum)) => {
                *n += 1;
                sum.start_ns = sum.start_ns.min(i.start_ns);
                sum.end_ns = sum.end_ns.max(i.end_ns);
                sum.sent += i.sent;
                sum.delivered += i.delivered;
                sum.errors += i.errors;
                sum.disconnects += i.disconnects;
                sum.reconnects += i.reconnects;
                hist::add(&mut sum.hist, &i.hist);
            }
            None => {
                self.pending.insert(index, (1, i));
            }
        }
        // Every shard reported this second (and so all earlier ones): finish them.
        while let Some(entry) = self.pending.first_entry() {
            if entry.get().0 < self.shards || *entry.key() > index {
                break;
            }
            let (_, interval) = entry.remove();
            self.finish(interval, control);
        }
    }

    fn flush(&mut self, control: &Control) {
        while let Some((_, (_, interval))) = self.pending.pop_first() {
            self.finish(interval, control);
        }
    }

    fn finish(&mut self, i: Interval, control: &Control) {
        let (measure_start, end) = control.window();
        // "So far" covers the measured window once it has begun (warm-up before that).
        if i.start_ns >= measure_start && self.cumulative_from_warm_up {
            self.cumulative = stats::new_hist();
            self.cumulative_from_warm_up = false;
        }
        hist::add(&mut self.cumulative, &i.hist);
        self.errors += i.errors;
        self.disconnects += i.disconnects;
        self.reconnects += i.reconnects;
        let secs = (i.end_ns.saturating_sub(i.start_ns) as f64 / 1e9).max(1e-3);
        let point = TimelinePoint {
            t_s: i.start_ns.saturating_sub(self.publish_start_ns) as f64 / 1e9,
            sent: i.sent,
            delivered: i.delivered,
            errors: i.errors,
            disconnects: i.disconnects,
            reconnects: i.reconnects,
            latency: Percentiles::of(&i.hist),
        };
        self.timeline.push(point);
        self.log.push(i.start_ns, i.end_ns, &i.hist);
        if self.print && !(i.start_ns >= end && i.delivered == 0) {
            let stage = if i.start_ns < measure_start {
                "warm-up"
            } else if i.start_ns < end {
                "measuring"
            } else {
                "draining"
            };
            let so_far = Percentiles::of(&self.cumulative);
            // Drops so far and how many came back, once there were any.
            let drops = if self.disconnects > 0 {
                format!(" dropped {} back {}", self.disconnects, self.reconnects)
            } else {
                String::new()
            };
            eprintln!(
                "[{:5.1}s] sent {:>8.0}/s delivered {:>9.0}/s p99 {:>8} ms (so far {} ms) max {:>8} ms errors {}{drops} | {stage}",
                point.t_s + secs,
                i.sent as f64 / secs,
                i.delivered as f64 / secs,
                table::ms(point.latency.p99_us),
                table::ms(so_far.p99_us),
                table::ms(point.latency.max_us),
                self.errors,
            );
        }
    }
}

/// Time between deciding to publish and the first publish (all shards see it first).
const START_DELAY: Duration = Duration::from_millis(100);
/// Least time after the last publish before stopping, even when all counts are in.
const SETTLE: Duration = Duration::from_millis(100);
/// How long shard executors get to start.
const SHARD_START_WAIT: Duration = Duration::from_secs(10);
/// How long stopped shards get to send their results.
const STOP_WAIT: Duration = Duration::from_secs(5);
