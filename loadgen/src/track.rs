//! Bookkeeping of who received what. `SeqTracker` follows one publisher's sequence as
//! one subscriber sees it and tells in-order, late (reordered) and duplicate arrivals
//! apart; `MessageTable` counts, per message, how many subscribers of a shard received it
//! and the latest of them, so merged tables give reach and broadcast completion time.
//! Both are plain data: the shard's receive path calls them, the report merges them.

use std::ops::Range;

use smallvec::SmallVec;

/// How one arrival relates to what came before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// The next sequence number, or one after a gap (the gap may still arrive).
    InOrder,
    /// A number from an earlier gap: received, but out of order.
    Late,
    /// A number already received.
    Duplicate,
}

/// One publisher's sequence as one subscriber sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SeqTracker {
    /// One past the highest number seen.
    next: u64,
    /// Numbers below `next` not seen yet, as sorted, disjoint ranges.
    missing: SmallVec<[Range<u64>; 2]>,
}

impl SeqTracker {
    /// A tracker that has seen nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Classifies the arrival of `seq` and remembers it.
    pub fn observe(&mut self, seq: u64) -> Seen {
        if seq >= self.next {
            if seq > self.next {
                if self.missing.len() >= MAX_GAPS {
                    // Give up on the oldest gap: its stragglers will read as duplicates.
                    self.missing.remove(0);
                }
                self.missing.push(self.next..seq);
            }
            self.next = seq + 1;
            return Seen::InOrder;
        }
        let at = self.missing.partition_point(|gap| gap.end <= seq);
        match self.missing.get(at) {
            Some(gap) if gap.start <= seq => {
                let (start, end) = (gap.start, gap.end);
                match (start == seq, end == seq + 1) {
                    (true, true) => {
                        self.missing.remove(at);
                    }
                    (true, false) => self.missing[at].start = seq + 1,
                    (false, true) => self.missing[at].end = seq,
                    (false, false) => {
                        self.missing[at].end = seq;
                        self.missing.insert(at + 1, seq + 1..end);
                    }
                }
                Seen::Late
            }
            _ => Seen::Duplicate,
        }
    }

    /// Numbers below the highest seen that never arrived (so far).
    pub fn gaps(&self) -> u64 {
        self.missing.iter().map(|gap| gap.end - gap.start).sum()
    }
}

/// Per message of one shard: how many of its subscribers got it, and the latest.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Receipt {
    /// Subscribers that received it (duplicates not counted).
    pub count: u32,
    /// The largest latency among them, µs.
    pub max_latency_us: u32,
}

/// Receipts indexed by publisher, then sequence number (both dense from 0).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageTable {
    by_publisher: Vec<Vec<Receipt>>,
}

impl MessageTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts one first-time receipt of (`publisher`, `seq`) after `latency_us`.
    pub fn record(&mut self, publisher: u32, seq: u64, latency_us: u64) {
        let (Ok(p), Ok(s)) = (usize::try_from(publisher), usize::try_from(seq)) else {
            return;
        };
        if p >= MAX_PUBLISHERS || s >= MAX_SEQ {
            return;
        }
        if self.by_publisher.len() <= p {
            self.by_publisher.resize_with(p + 1, Vec::new);
        }
        let seqs = &mut self.by_publisher[p];
        if seqs.len() <= s {
            seqs.resize(s + 1, Receipt::default());
        }
        let entry = &mut seqs[s];
        entry.count += 1;
        entry.max_latency_us = entry.max_latency_us.max(u32::try_from(latency_us).unwrap_or(u32::MAX));
    }

    /// Adds another shard's (or process's) table to this one.
    pub fn merge(&mut self, other: &MessageTable) {
        if self.by_publisher.len() < other.by_publisher.len() {
            self.by_publisher.resize_with(other.by_publisher.len(), Vec::new);
        }
        for (mine, theirs) in self.by_publisher.iter_mut().zip(&other.by_publisher) {
            if mine.len() < theirs.len() {
                mine.resize(theirs.len(), Receipt::default());
            }
            for (m, t) in mine.iter_mut().zip(theirs) {
                m.count += t.count;
                m.max_latency_us = m.max_latency_us.max(t.max_latency_us);
            }
        }
    }

    /// How many subscribers received (`publisher`, `seq`).
    pub fn count(&self, publisher: u32, seq: u64) -> u32 {
        let (Ok(p), Ok(s)) = (usize::try_from(publisher), usize::try_from(seq)) else {
            return 0;
        };
        self.by_publisher
            .get(p)
            .and_then(|seqs| seqs.get(s))
            .map_or(0, |r| r.count)
    }

    /// Every (publisher, seq, receipt) with at least one receipt.
    pub fn iter(&self) -> impl Iterator<Item = (u32, u64, Receipt)> + '_ {
        self.by_publisher.iter().enumerate().flat_map(|(p, seqs)| {
            seqs.iter()
                .enumerate()
                .filter(|(_, r)| r.count > 0)
                .map(move |(s, r)| (p as u32, s as u64, *r))
        })
    }
}

/// Most gaps a tracker remembers.
const MAX_GAPS: usize = 4096;
/// Bounds on what a table indexes (a foreign or corrupt stamp cannot blow up memory).
const MAX_PUBLISHERS: usize = 1 << 20;
const MAX_SEQ: usize = 1 << 28;

#[cfg(test)]
mod tests {
    use super::*;

    fn run(seqs: &[u64]) -> (Vec<Seen>, u64) {
        let mut t = SeqTracker::new();
        let seen = seqs.iter().map(|&s| t.observe(s)).collect();
        (seen, t.gaps())
    }

    #[test]
    fn in_order_sequence() {
        let (seen, gaps) = run(&[0, 1, 2, 3]);
        assert!(seen.iter().all(|&s| s == Seen::InOrder));
        assert_eq!(gaps, 0);
    }

    #[test]
    fn duplicates_are_told_from_late_arrivals() {
        use Seen::*;
        let (seen, gaps) = run(&[0, 2, 1, 1, 2, 5, 3, 4, 4, 0]);
        assert_eq!(
            seen,
            vec![InOrder, InOrder, Late, Duplicate, Duplicate, InOrder, Late, Late, Duplicate, Duplicate]
        );
        assert_eq!(gaps, 0);
    }

    #[test]
    fn gaps_split_and_shrink() {
        let mut t = SeqTracker::new();
        assert_eq!(t.observe(10), Seen::InOrder);
        assert_eq!(t.gaps(), 10);
        assert_eq!(t.observe(5), Seen::Late);
        assert_eq!(t.gaps(), 9);
        assert_eq!(t.observe(0), Seen::Late);
        assert_eq!(t.observe(9), Seen::Late);
        assert_eq!(t.gaps(), 7);
        assert_eq!(t.observe(5), Seen::Duplicate);
        assert_eq!(t.observe(12), Seen::InOrder);
        assert_eq!(t.gaps(), 8);
        assert_eq!(t.observe(11), Seen::Late);
        assert_eq!(t.observe(11), Seen::Duplicate);
    }

    #[test]
    fn a_swapped_pair_is_one_late_arrival() {
        let (seen, _) = run(&[0, 1, 3, 2, 4]);
        assert_eq!(seen.iter().filter(|&&s| s == Seen::Late).count(), 1);
    }

    #[test]
    fn tables_merge_counts_and_maxima() {
        let mut a = MessageTable::new();
        a.record(0, 3, 100);
        a.record(0, 3, 300);
        a.record(2, 0, 50);
        let mut b = MessageTable::new();
        b.record(0, 3, 200);
        b.record(0, 1, 10);
        a.merge(&b);
        let all: Vec<_> = a.iter().collect();
        assert_eq!(
            all,
            vec![
                (
                    0,
                    1,
                    Receipt {
                        count: 1,
                        max_latency_us: 10
                    }
                ),
                (
                    0,
                    3,
                    Receipt {
                        count: 3,
                        max_latency_us: 300
                    }
                ),
                (
                    2,
                    0,
                    Receipt {
                        count: 1,
                        max_latency_us: 50
                    }
                ),
            ]
        );
    }
}
