//! The clock task of a shard: it sleeps until the next intended send time, queues every
//! message whose time has passed (catching up when late, never skipping: latency counts
//! from the intended time, and the lateness is recorded as send lag; what falls due while a
//! publisher's connection is down is counted as unsent, not queued), wakes the writers,
//! sends an `Interval` each second, and notes the shard's CPU time from the start of the
//! measured window to the stop. Ends when `Control::stop` is set.

use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use bytes::BytesMut;
use proto::stomp::Command;

use super::{Shard, State};
use crate::body::{self, Stamp};
use crate::stats::{self, Cpu, Event, Interval};

/// Runs the clock until stop; returns the CPU time from the start of the measured window
/// to the stop (deliveries of the window's last messages included) and its length, s.
pub(super) async fn clock(shard: &Rc<Shard>) -> (Cpu, f64) {
    let control = &shard.control;
    let publish_start = loop {
        if control.stop.load(Relaxed) {
            return (Cpu::default(), 0.0);
        }
        let at = control.publish_start_ns.load(Relaxed);
        if at != 0 {
            break at;
        }
        glommio::timer::sleep(TICK).await;
    };
    let measure_start = control.measure_start_ns.load(Relaxed);
    let interval_ns = shard.scenario.publish_interval_ns;
    let publishers = u128::from(shard.scenario.publishers.max(1));
    for p in shard.state.borrow_mut().pubs.iter_mut() {
        // Spread publishers evenly over one interval, so their sends do not bunch up.
        let phase = u128::from(p.publisher) * u128::from(interval_ns) / publishers;
        p.next_ns = publish_start + phase as u64;
    }
    let mut interval = (0u64, publish_start);
    let mut cpu_at_start: Option<(Cpu, u64)> = None;
    let mut body = BytesMut::new();
    loop {
        let now = stats::now_ns();
        let stop = control.stop.load(Relaxed);
        let end = control.publish_end_ns.load(Relaxed);
        if cpu_at_start.is_none() && now >= measure_start {
            cpu_at_start = Some((Cpu::thread(), now));
        }
        let next_due = publish_due(shard, now, end, measure_start, &mut body);
        if now >= interval.1 + NS_PER_S || stop {
            let end_ns = now.min(interval.1 + NS_PER_S);
            send_interval(shard, interval.0, interval.1, end_ns);
            interval = (interval.0 + 1, end_ns);
        }
        if stop {
            break;
        }
        let wake = next_due.min(interval.1 + NS_PER_S).min(now + MAX_SLEEP_NS);
        let now = stats::now_ns();
        if wake > now + MIN_SLEEP_NS {
            glommio::timer::sleep(Duration::from_nanos(wake - now)).await;
        } else {
            // The next send is too close to sleep for: let other tasks run, then send.
            futures_lite::future::yield_now().await;
        }
    }
    match cpu_at_start {
        Some((start, at)) => (
            Cpu::thread().since(&start),
            stats::now_ns().saturating_sub(at) as f64 / 1e9,
        ),
        None => (Cpu::default(), 0.0),
    }
}

/// Queues every message due by `now` (intended time before `end`); returns when the next
/// one is due (`u64::MAX`: none before `end`).
fn publish_due(shard: &Shard, now: u64, end: u64, measure_start: u64, body: &mut BytesMut) -> u64 {
    let scenario = &shard.scenario;
    let mut state = shard.state.borrow_mut();
    let State {
        pubs,
        errors,
        injected,
        interval_sent,
        send_lag,
        ..
    } = &mut *state;
    let mut expected = 0u64;
    let mut next_due = u64::MAX;
    for p in pubs.iter_mut() {
        let mut wrote = false;
        while p.next_ns <= now && p.next_ns < end {
            let intended = p.next_ns;
            p.next_ns += scenario.publish_interval_ns;
            let measured = intended >= measure_start;
            if !p.link.alive() || p.link.out.borrow().len() > MAX_BACKLOG_BYTES {
                let kind = if p.link.alive() {
                    "publish_backlog_full"
                } else {
                    "publish_on_closed"
                };
                stats::count_error(errors, kind);
                // Never sent, so it gets no sequence number and nobody expects it.
                p.unsent_total += 1;
                p.unsent_measured += u64::from(measured);
                continue;
            }
            let stamp = Stamp {
                run: scenario.run_id,
                publisher: p.publisher,
                seq: p.seq,
                intended_ns: intended,
            };
            body.clear();
            body::encode(
                &scenario.channel_names[p.channel as usize],
                &stamp,
                scenario.size_bytes,
                body,
            );
            let mut len = itoa::Buffer::new();
            let mut receipt = [0u8; 24];
            let all: [(&str, &[u8]); 3] = [
                ("destination", b"/pub/chat"),
                ("content-length", len.format(body.len()).as_bytes()),
                ("receipt", receipt_id(p.seq, &mut receipt)),
            ];
            let headers = if scenario.confirm { &all[..] } else { &all[..2] };
            let mut codec = p.link.codec.borrow_mut();
            let mut out = p.link.out.borrow_mut();
            let injecting = measured && p.publisher == 0;
            let index = p.sent_measured;
            if injecting && p.injected_reorders < scenario.inject_reorder && index % 4 == 2 && p.held.is_none() {
                // Hold this one back until after the next: the pair arrives swapped.
                let mut held = BytesMut::new();
                codec.encode(Command::Send, headers, body, &mut held);
                p.held = Some(held);
                p.injected_reorders += 1;
            } else {
                codec.encode(Command::Send, headers, body, &mut out);
                if let Some(held) = p.held.take() {
                    out.extend_from_slice(&held);
                }
            }
            if injecting && p.injected_dups < scenario.inject_dup && index % 4 == 0 {
                codec.encode(Command::Send, headers, body, &mut out);
                p.injected_dups += 1;
                *injected += 1;
            }
            p.link.note_queued(1);
            p.seq += 1;
            p.sent_total += 1;
            *interval_sent += 1;
            if measured {
                stats::record(send_lag, now.saturating_sub(intended) / 1000);
                p.first_measured.get_or_insert(p.seq - 1);
                p.sent_measured += 1;
                expected += u64::from(
                    shard
                        .control
                        .subscribers
                        .get(p.channel as usize)
                        .map_or(0, |c| c.load(Relaxed)),
                );
            }
            wrote = true;
        }
        if p.next_ns >= end {
            if let Some(held) = p.held.take() {
                p.link.out.borrow_mut().extend_from_slice(&held);
                wrote = true;
            }
        }
        if wrote {
            p.link.wake();
        }
        if p.next_ns < end {
            next_due = next_due.min(p.next_ns);
        }
    }
    if expected > 0 {
        shard.control.expected.fetch_add(expected, Relaxed);
    }
    next_due
}

/// `m{seq}`, the receipt id of message `seq` (`--confirm`), in `buf`.
fn receipt_id(seq: u64, buf: &mut [u8; 24]) -> &[u8] {
    let mut digits = itoa::Buffer::new();
    let digits = digits.format(seq).as_bytes();
    buf[0] = b'm';
    buf[1..=digits.len()].copy_from_slice(digits);
    &buf[..=digits.len()]
}

/// The sequence number a receipt id from [`receipt_id`] names.
pub(super) fn confirmed_seq(receipt_id: &[u8]) -> Option<u64> {
    std::str::from_utf8(receipt_id.strip_prefix(b"m")?).ok()?.parse().ok()
}

/// Sends the main thread this shard's numbers for `[start_ns, end_ns)` and resets them.
fn send_interval(shard: &Shard, index: u64, start_ns: u64, end_ns: u64) {
    let mut state = shard.state.borrow_mut();
    let hist = std::mem::replace(&mut state.interval, stats::new_hist());
    let interval = Interval {
        shard: shard.index,
        index,
        start_ns,
        end_ns,
        hist,
        sent: std::mem::take(&mut state.interval_sent),
        delivered: std::mem::take(&mut state.interval_delivered),
        errors: std::mem::take(&mut state.interval_errors),
        disconnects: std::mem::take(&mut state.interval_disconnects),
        reconnects: std::mem::take(&mut state.interval_reconnects),
    };
    let _ = shard.events.send(Event::Interval(Box::new(interval)));
}

/// How often the clock looks for a start or stop while nothing is due.
const TICK: Duration = Duration::from_millis(1);
/// Longest sleep between two looks at `Control`.
const MAX_SLEEP_NS: u64 = 5_000_000;
/// Shorter waits are not worth a timer.
const MIN_SLEEP_NS: u64 = 20_000;
const NS_PER_S: u64 = 1_000_000_000;
/// A publisher whose socket takes nothing has its messages counted, not queued, past this.
const MAX_BACKLOG_BYTES: usize = 64 << 20;
