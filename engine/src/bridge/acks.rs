//! Delivery reports for the shards: a `SEND` that asked for a `RECEIPT` is answered only
//! once Kafka has its record (the producer's delivery report), so that a receipt means
//! "stored", not "queued on this node". A shard says it waits for one of its messages
//! ([`Acks::expect`]) before handing it to the producer; the producer's delivery callback
//! passes on the outcome of that shard's messages while it waits for any
//! ([`Acks::delivered`]); the shard's task takes them ([`Acks::next`]).
//!
//! A message is known by its shard and counter, read from its id as in `echoes.rs`.
//! Reports come on librdkafka's thread; the shard is woken through its waker, which
//! glommio allows from another thread.

use std::future::poll_fn;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Poll, Waker};

/// Every shard's delivery reports awaited.
#[derive(Debug)]
pub struct Acks {
    shards: Vec<Shard>,
    /// Receipts awaited by all shards together: with none, reports are not even read.
    waiting: AtomicUsize,
}

#[derive(Debug, Default)]
struct Shard {
    /// Receipts this shard waits for.
    waiting: AtomicUsize,
    reports: Mutex<Reports>,
}

#[derive(Debug, Default)]
struct Reports {
    /// (counter, stored) of this shard's messages reported since it last looked.
    done: Vec<(u64, bool)>,
    waker: Option<Waker>,
}

impl Acks {
    /// Reports for `shards` shards.
    pub fn new(shards: usize) -> Arc<Self> {
        Arc::new(Self {
            shards: (0..shards).map(|_| Shard::default()).collect(),
            waiting: AtomicUsize::new(0),
        })
    }

    /// Shard `shard` will wait for the report of one message it is about to hand over.
    pub fn expect(&self, shard: usize) {
        if let Some(s) = self.shards.get(shard) {
            s.waiting.fetch_add(1, Ordering::AcqRel);
            self.waiting.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Shard `shard` no longer waits for one report (it came, or the message was not
    /// handed over after all).
    pub fn settle(&self, shard: usize) {
        let Some(s) = self.shards.get(shard) else { return };
        let fewer = |n: usize| n.checked_sub(1);
        if s.waiting
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, fewer)
            .is_ok()
        {
            let _ = self.waiting.fetch_update(Ordering::AcqRel, Ordering::Acquire, fewer);
        }
    }

    /// The record with message id `id` was stored (`stored`) or refused for good.
    /// Called for every report; cheap while no shard waits.
    pub(crate) fn delivered(&self, id: Option<&[u8]>, stored: bool) {
        if self.waiting.load(Ordering::Acquire) == 0 {
            return;
        }
        let Some((shard, n)) = id.and_then(super::echoes::shard_and_counter) else {
            return;
        };
        let Some(s) = self.shards.get(shard) else { return };
        if s.waiting.load(Ordering::Acquire) == 0 {
            return;
        }
        let waker = {
            let mut reports = lock(&s.reports);
            reports.done.push((n, stored));
            reports.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Waits for reports of shard `shard`'s messages and moves them into `into`
    /// (emptied first).
    pub async fn next(&self, shard: usize, into: &mut Vec<(u64, bool)>) {
        into.clear();
        let Some(s) = self.shards.get(shard) else {
            return std::future::pending().await;
        };
        poll_fn(|cx| {
            let mut reports = lock(&s.reports);
            if reports.done.is_empty() {
                reports.waker = Some(cx.waker().clone());
                return Poll::Pending;
            }
            std::mem::swap(&mut reports.done, into);
            Poll::Ready(())
        })
        .await;
    }
}

fn lock(reports: &Mutex<Reports>) -> MutexGuard<'_, Reports> {
    // A poisoned lock only means a panic elsewhere; the list is still whole.
    reports.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use std::future::Future as _;

    use super::*;

    fn next_now(acks: &Acks, shard: usize) -> Option<Vec<(u64, bool)>> {
        let mut into = Vec::new();
        let ready = {
            let fut = std::pin::pin!(acks.next(shard, &mut into));
            fut.poll(&mut std::task::Context::from_waker(Waker::noop())).is_ready()
        };
        ready.then_some(into)
    }

    #[test]
    fn reports_reach_only_a_shard_that_waits() {
        let acks = Acks::new(2);
        acks.delivered(Some(b"n-e-0-1"), true);
        assert_eq!(next_now(&acks, 0), None, "nobody waited");
        acks.expect(1);
        acks.delivered(Some(b"n-e-0-2"), true);
        acks.delivered(Some(b"n-e-1-3"), true);
        acks.delivered(Some(b"n-e-1-4"), false);
        acks.delivered(Some(b"garbage"), true);
        acks.delivered(None, true);
        assert_eq!(next_now(&acks, 0), None, "shard 0 waits for nothing");
        assert_eq!(next_now(&acks, 1), Some(vec![(3, true), (4, false)]));
        assert_eq!(next_now(&acks, 1), None);
        acks.settle(1);
        acks.delivered(Some(b"n-e-1-5"), true);
        assert_eq!(next_now(&acks, 1), None, "settled");
        // An extra settle never underflows.
        acks.settle(1);
        acks.expect(1);
        acks.delivered(Some(b"n-e-1-6"), true);
        assert_eq!(next_now(&acks, 1), Some(vec![(6, true)]));
    }
}
