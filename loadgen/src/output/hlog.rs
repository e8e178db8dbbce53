//! The HdrHistogram interval log (`latency.hlog`): one delivery-latency histogram per
//! second of publishing, written with hdrhistogram's interval log writer (V2 deflate,
//! timestamps relative to `BaseTime`), read back and added up by `merge`. Intervals are
//! kept compressed in memory while the run goes on.

use std::collections::BTreeMap;
use std::time::{Duration, UNIX_EPOCH};

use hdrhistogram::serialization::interval_log::{IntervalLogIterator, IntervalLogWriterBuilder, LogEntry};
use hdrhistogram::serialization::{Serializer, V2DeflateSerializer};

use crate::report::hist;
use crate::stats::Hist;

/// Intervals of one run, compressed.
#[derive(Debug, Clone, Default)]
pub struct IntervalLog {
    /// (start, end) CLOCK_REALTIME ns and the V2 deflate bytes of each interval.
    intervals: Vec<(u64, u64, Vec<u8>)>,
}

impl IntervalLog {
    /// An empty log.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the interval `[start_ns, end_ns)`.
    pub fn push(&mut self, start_ns: u64, end_ns: u64, hist: &Hist) {
        let mut bytes = Vec::new();
        if V2DeflateSerializer::new().serialize(hist, &mut bytes).is_ok() {
            self.intervals.push((start_ns, end_ns, bytes));
        }
    }

    /// Intervals held.
    pub fn len(&self) -> usize {
        self.intervals.len()
    }

    /// True when it holds no interval.
    pub fn is_empty(&self) -> bool {
        self.intervals.is_empty()
    }

    /// Every interval: start, end (ns) and histogram.
    pub fn iter(&self) -> impl Iterator<Item = (u64, u64, Hist)> + '_ {
        self.intervals
            .iter()
            .filter_map(|(s, e, bytes)| Some((*s, *e, hist::decode_bytes(bytes)?)))
    }

    /// The log as text, with `BaseTime` at the first interval's start.
    pub fn to_text(&self, comment: &str) -> String {
        let base_ns = self.intervals.first().map_or(0, |i| i.0);
        let base = UNIX_EPOCH + Duration::from_nanos(base_ns);
        let mut out = Vec::new();
        let mut serializer = V2DeflateSerializer::new();
        let mut builder = IntervalLogWriterBuilder::new();
        builder
            .add_comment(comment)
            .add_comment("values in microseconds")
            .with_start_time(base)
            .with_base_time(base);
        if let Ok(mut writer) = builder.begin_log_with(&mut out, &mut serializer) {
            for (start, end, hist) in self.iter() {
                let at = Duration::from_nanos(start.saturating_sub(base_ns));
                let _ = writer.write_histogram(&hist, at, Duration::from_nanos(end.saturating_sub(start)), None);
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    /// Reads a log written by `to_text` (or any V2 interval log), making timestamps
    /// absolute with its `BaseTime`.
    pub fn parse(text: &str) -> IntervalLog {
        let mut base_ns = 0u64;
        let mut log = IntervalLog::new();
        for entry in IntervalLogIterator::new(text.as_bytes()).flatten() {
            match entry {
                LogEntry::BaseTime(t) => base_ns = t.as_nanos() as u64,
                LogEntry::StartTime(t) if base_ns == 0 => base_ns = t.as_nanos() as u64,
                LogEntry::StartTime(_) => {}
                LogEntry::Interval(i) => {
                    let Some(h) = hist::decode(i.encoded_histogram()) else {
                        continue;
                    };
                    let start = base_ns + i.start_timestamp().as_nanos() as u64;
                    log.push(start, start + i.duration().as_nanos() as u64, &h);
                }
            }
        }
        log
    }

    /// Adds logs of processes that ran side by side: intervals starting within the same
    /// second (counted from the earliest start) are added into one.
    pub fn merge(logs: &[IntervalLog]) -> IntervalLog {
        let origin = logs
            .iter()
            .filter_map(|l| l.intervals.first().map(|i| i.0))
            .min()
            .unwrap_or(0);
        let mut slots: BTreeMap<u64, (u64, u64, Hist)> = BTreeMap::new();
        for log in logs {
            for (start, end, h) in log.iter() {
                let second = (start.saturating_sub(origin) + 500_000_000) / 1_000_000_000;
                let slot = slots
                    .entry(second)
                    .or_insert_with(|| (start, end, crate::stats::new_hist()));
                slot.0 = slot.0.min(start);
                slot.1 = slot.1.max(end);
                hist::add(&mut slot.2, &h);
            }
        }
        let mut out = IntervalLog::new();
        for (start, end, h) in slots.values() {
            out.push(*start, *end, h);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{new_hist, record};

    fn hist_of(values: &[u64]) -> Hist {
        let mut h = new_hist();
        for &v in values {
            record(&mut h, v);
        }
        h
    }

    #[test]
    fn text_round_trips() {
        let mut log = IntervalLog::new();
        let t0 = 1_700_000_000_000_000_000;
        log.push(t0, t0 + 1_000_000_000, &hist_of(&[10, 20, 30]));
        log.push(t0 + 1_000_000_000, t0 + 2_000_000_000, &hist_of(&[5000]));
        let text = log.to_text("test");
        assert!(text.contains("#[BaseTime: 1700000000.000"), "{text}");
        let back = IntervalLog::parse(&text);
        let all: Vec<_> = back.iter().collect();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].2.len(), 3);
        assert_eq!(all[1].2.max(), hist_of(&[5000]).max());
        assert!(all[1].0.abs_diff(t0 + 1_000_000_000) < 2_000_000, "ms precision");
    }

    #[test]
    fn merge_adds_same_seconds() {
        let t0 = 1_700_000_000_000_000_000u64;
        let mut a = IntervalLog::new();
        a.push(t0, t0 + 1_000_000_000, &hist_of(&[1, 2]));
        a.push(t0 + 1_000_000_000, t0 + 2_000_000_000, &hist_of(&[3]));
        let mut b = IntervalLog::new();
        b.push(t0 + 30_000_000, t0 + 1_030_000_000, &hist_of(&[4]));
        let merged = IntervalLog::merge(&[a, b]);
        let counts: Vec<u64> = merged.iter().map(|(_, _, h)| h.len()).collect();
        assert_eq!(counts, vec![3, 1]);
    }
}
