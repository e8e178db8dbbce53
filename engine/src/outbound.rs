//! A connection's outbound queue ([`Outbound`]): bounded, appended to by fan-outs and by
//! the connection's own replies, drained in one `send()` per burst by the shard's writer
//! (`shard/writer.rs`), which finds the queues with bytes on its [`WriteList`], or by a
//! task that `take`s (a SockJS receiving request). A queue that would overflow closes
//! instead: its subscriber is dropped, never waited for.

use std::cell::{Cell, RefCell, UnsafeCell};
use std::collections::VecDeque;
use std::future::poll_fn;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::Instant;

/// Why a connection's writer is told to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closing {
    /// Still open.
    Open,
    /// Flush what is queued, then close the socket.
    Graceful,
    /// The queue overflowed: the connection is dropped as a slow consumer.
    Overflow,
}

/// The queues that have bytes (or a close) for their shard's writer, by the writer's
/// token for each; and the writer's waker.
#[derive(Default)]
pub struct WriteList {
    tokens: RefCell<Vec<u32>>,
    waker: Cell<Option<Waker>>,
}

impl std::fmt::Debug for WriteList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteList").field("tokens", &self.tokens).finish()
    }
}

impl WriteList {
    fn list(&self, token: u32) {
        self.tokens.borrow_mut().push(token);
        if let Some(waker) = self.waker.take() {
            waker.wake();
        }
    }

    /// Waits until tokens are listed, then moves them into `batch` (which must be empty).
    pub async fn next(&self, batch: &mut Vec<u32>) {
        poll_fn(|cx| {
            let mut tokens = self.tokens.borrow_mut();
            if tokens.is_empty() {
                self.waker.set(Some(cx.waker().clone()));
                return Poll::Pending;
            }
            std::mem::swap(&mut *tokens, batch);
            Poll::Ready(())
        })
        .await
    }
}

/// A connection's outbound queue, shared (`Rc`) by its reader, its writer and the
/// subscriber index of its shard.
pub struct Outbound {
    /// Only ever reached through `with_queue`.
    queue: UnsafeCell<Vec<u8>>,
    max_bytes: usize,
    closing: Cell<Closing>,
    /// Whether this queue's token is on its writer's list.
    listed: Cell<bool>,
    /// The shard's writer and this queue's token with it; `None`: a task of its own drains
    /// the queue (`take`), as a SockJS receiving request does.
    writer: Option<(Rc<WriteList>, u32)>,
    /// A task waiting in `take` or `released`; woken instead of listing the queue.
    waker: Cell<Option<Waker>>,
    overflow_waker: Cell<Option<Waker>>,
    last_sent: Cell<Instant>,
    /// Writes in a row that needed a quarter of the queue's storage or less (`trim`).
    oversized: Cell<u8>,
    /// Replies held back behind receipts that wait for Kafka (`None`: nothing waits).
    /// Boxed: one word in every connection's queue instead of four, for a rare state.
    #[allow(clippy::box_collection)]
    held: Cell<Option<Box<VecDeque<Held>>>>,
}

/// A reply held back so that replies leave in the order of the frames they answer.
#[derive(Debug)]
enum Held {
    /// A `SEND`'s `RECEIPT`, waiting for the delivery report of message `n`.
    Waiting(u64, Vec<u8>),
    /// Ready, waiting only for what is before it.
    Ready(Vec<u8>),
    /// The message was refused for good: the connection closes when this is reached.
    Refused,
}

impl std::fmt::Debug for Outbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbound")
            .field("queued", &self.len())
            .field("closing", &self.closing.get())
            .finish()
    }
}

impl Outbound {
    /// An empty queue holding at most `max_bytes`, drained by a task that `take`s.
    pub fn new(max_bytes: usize, now: Instant) -> Self {
        Self {
            queue: UnsafeCell::new(Vec::new()),
            max_bytes,
            closing: Cell::new(Closing::Open),
            listed: Cell::new(false),
            writer: None,
            waker: Cell::new(None),
            overflow_waker: Cell::new(None),
            last_sent: Cell::new(now),
            oversized: Cell::new(0),
            held: Cell::new(None),
        }
    }

    /// An empty queue holding at most `max_bytes`, drained by the shard's writer: its
    /// `token` goes on `list` when it has something to write.
    pub fn written_by(list: Rc<WriteList>, token: u32, max_bytes: usize, now: Instant) -> Self {
        Self {
            writer: Some((list, token)),
            ..Self::new(max_bytes, now)
        }
    }

    /// Appends `bytes` unless the queue is closing. Returns false when it was not queued
    /// (closing already, or this push overflowed the bound and closed the queue).
    #[inline]
    pub fn push(&self, bytes: &[u8]) -> bool {
        if self.closing.get() != Closing::Open || !self.append(bytes) {
            return false;
        }
        self.wake();
        true
    }

    /// Appends a reply of the connection's own (a `RECEIPT`, an `ERROR`, a pong, an echo),
    /// also while closing gracefully (its last words). Replies count against the same
    /// bound as deliveries: a client that sends but never reads overflows the queue and
    /// is dropped as a slow consumer, instead of growing it without end.
    pub fn push_reply(&self, bytes: &[u8]) {
        if self.closing.get() == Closing::Overflow {
            return;
        }
        self.append(bytes);
        self.wake();
    }

    /// Appends the last words of a connection that closes (a `DISCONNECT`'s receipt, a
    /// closing `ERROR`) after the receipts still held back for Kafka, so that a client
    /// that closes on them has had every receipt first.
    pub fn push_last(&self, bytes: &[u8]) {
        match self.held.take() {
            Some(mut held) => {
                match held.back_mut() {
                    Some(Held::Ready(last)) => last.extend_from_slice(bytes),
                    _ => held.push_back(Held::Ready(bytes.to_vec())),
                }
                self.held.set(Some(held));
            }
            None => self.push_reply(bytes),
        }
    }

    /// Holds `receipt` back until message `n`'s delivery report ([`Outbound::release`]).
    /// Other replies do not wait for it; last words do ([`Outbound::push_last`]).
    pub fn hold_until(&self, n: u64, receipt: &[u8]) {
        let mut held = self.held.take().unwrap_or_default();
        held.push_back(Held::Waiting(n, receipt.to_vec()));
        self.held.set(Some(held));
    }

    /// Message `n` was stored (`stored`) or refused for good: its receipt, and the
    /// replies behind it up to the next receipt still waiting, leave. A refusal closes
    /// the connection instead, once what is before it left: the client sees no receipt.
    pub fn release(&self, n: u64, stored: bool) {
        let Some(mut held) = self.held.take() else { return };
        if let Some(entry) = held.iter_mut().find(|h| matches!(h, Held::Waiting(m, _) if *m == n)) {
            *entry = match std::mem::replace(entry, Held::Refused) {
                Held::Waiting(_, receipt) if stored => Held::Ready(receipt),
                _ => Held::Refused,
            };
        }
        while let Some(front) = held.front() {
            match front {
                Held::Waiting(..) => break,
                Held::Ready(bytes) => self.push_reply(bytes),
                Held::Refused => {
                    self.close(Closing::Graceful);
                    held.clear();
                    break;
                }
            }
            held.pop_front();
        }
        if !held.is_empty() {
            self.held.set(Some(held));
        }
        self.wake();
    }

    /// Resolves once bytes are queued or no reply is held back any more.
    pub async fn released(&self) {
        poll_fn(|cx| {
            if !self.is_empty() || !self.holds_replies() {
                return Poll::Ready(());
            }
            self.waker.set(Some(cx.waker().clone()));
            Poll::Pending
        })
        .await
    }

    /// True while replies wait for delivery reports.
    pub fn holds_replies(&self) -> bool {
        let held = self.held.take();
        let holds = held.is_some();
        self.held.set(held);
        holds
    }

    /// Gives up on the replies held back (their reports never came): they are dropped.
    pub fn drop_held(&self) {
        self.held.set(None);
    }

    /// Appends `bytes` within the bound; past it, closes the queue as overflowed and
    /// returns false.
    #[inline]
    fn append(&self, bytes: &[u8]) -> bool {
        let fits = self.with_queue(|queue| {
            let fits = queue.len() + bytes.len() <= self.max_bytes;
            if fits {
                queue.extend_from_slice(bytes);
            }
            fits
        });
        if !fits {
            self.close(Closing::Overflow);
        }
        fits
    }

    /// Asks the writer to flush and close (`Graceful`) or to drop (`Overflow`).
    pub fn close(&self, how: Closing) {
        if self.closing.get() == Closing::Open {
            self.closing.set(how);
            self.wake();
            if let Some(waker) = self.overflow_waker.take() {
                waker.wake();
            }
        }
    }

    /// Resolves once the queue has overflowed (for a writer blocked on a full socket).
    pub async fn overflowed(&self) {
        poll_fn(|cx| {
            if self.closing.get() == Closing::Overflow {
                return Poll::Ready(());
            }
            self.overflow_waker.set(Some(cx.waker().clone()));
            Poll::Pending
        })
        .await
    }

    /// How the writer is asked to stop.
    pub fn closing(&self) -> Closing {
        self.closing.get()
    }

    /// Bytes waiting.
    pub fn len(&self) -> usize {
        self.with_queue(|queue| queue.len())
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// When bytes last left for the socket.
    pub fn last_sent(&self) -> Instant {
        self.last_sent.get()
    }

    /// Waits until bytes are queued or closing is asked, then swaps the queue into
    /// `spare` (which must be empty) so that appends go on while it is written.
    pub async fn take(&self, spare: &mut Vec<u8>) -> Closing {
        poll_fn(|cx| match self.take_now(spare) {
            Some(closing) => Poll::Ready(closing),
            None => {
                self.waker.set(Some(cx.waker().clone()));
                Poll::Pending
            }
        })
        .await
    }

    /// [`Outbound::take`] without waiting: `None` while the queue is open and empty.
    pub fn take_now(&self, spare: &mut Vec<u8>) -> Option<Closing> {
        let took = self.with_queue(|queue| {
            let took = !queue.is_empty();
            if took {
                std::mem::swap(queue, spare);
            }
            took
        });
        let closing = self.closing.get();
        (took || closing != Closing::Open).then_some(closing)
    }

    /// Gives the storage of `spare` (written and trimmed) back to the queue when it is
    /// empty, so that the next burst reuses it.
    pub fn give_back(&self, spare: &mut Vec<u8>) {
        self.with_queue(|queue| {
            if queue.is_empty() {
                std::mem::swap(queue, spare);
            }
        });
    }

    /// Takes the queue's token off its writer's list (the writer is at it).
    pub fn unlist(&self) {
        self.listed.set(false);
    }

    /// Records that bytes were written at `now`.
    pub fn mark_sent(&self, now: Instant) {
        self.last_sent.set(now);
    }

    /// Empties `spare` after a write of its bytes, keeping its storage for the next
    /// burst. Regrowing a queue from nothing on every burst cost more than the copy into
    /// it, and so did shrinking a large one whenever a burst was small: a busy
    /// connection's bursts vary, and each regrowth faulted fresh pages in
    /// (flamegraphs/README.md). So a small buffer is given back only after a quiet write,
    /// and a large one only after `SHRINK_AFTER` writes in a row needed a quarter of it.
    pub fn trim(&self, spare: &mut Vec<u8>) {
        let used = spare.len();
        spare.clear();
        // A quiet connection holds no storage between its rare writes.
        let keep = if used < SMALL_WRITE_BYTES { 0 } else { used };
        let oversized = spare.capacity() > TRIM_BYTES.max(used.saturating_mul(4));
        if oversized {
            let writes = self.oversized.get() + 1;
            if writes < SHRINK_AFTER {
                self.oversized.set(writes);
                return;
            }
        }
        self.oversized.set(0);
        if oversized || keep == 0 {
            spare.shrink_to(keep);
        }
    }

    /// The queue, for the length of `f`.
    #[inline(always)]
    fn with_queue<R>(&self, f: impl FnOnce(&mut Vec<u8>) -> R) -> R {
        // SAFETY: `Outbound` is not `Sync` (its `Cell`s), so only this thread reaches the
        // queue, and only through this function, whose callers are the methods above: none
        // of them calls it again or calls out (wakers, caller code) inside `f`. So the
        // reference is the only one to the queue while it lives.
        f(unsafe { &mut *self.queue.get() })
    }

    fn wake(&self) {
        if let Some(waker) = self.waker.take() {
            waker.wake();
        } else if let Some((list, token)) = &self.writer {
            if !self.listed.replace(true) {
                list.list(*token);
            }
        }
    }
}

/// Writes smaller than this leave no storage behind.
const SMALL_WRITE_BYTES: usize = 2048;
/// Queue capacity kept between bursts that need little of it; beyond it, a queue shrinks
/// to what recent bursts need.
const TRIM_BYTES: usize = 16 * 1024;
/// Writes in a row that need a quarter of a large queue's storage or less before it
/// shrinks.
const SHRINK_AFTER: u8 = 8;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_queue_goes_on_its_writers_list_once_until_taken() {
        let list = Rc::new(WriteList::default());
        let out = Outbound::written_by(list.clone(), 7, 1 << 20, Instant::now());
        let other = Outbound::written_by(list.clone(), 9, 1 << 20, Instant::now());
        assert!(out.push(b"a"));
        assert!(out.push(b"b"));
        out.push_reply(b"c");
        assert!(other.push(b"x"));
        let mut batch = Vec::new();
        futures_lite::future::block_on(list.next(&mut batch));
        assert_eq!(batch, [7, 9]);
        // The writer takes the bytes; the next ones list the queue again.
        out.unlist();
        let mut spare = Vec::new();
        assert_eq!(out.take_now(&mut spare), Some(Closing::Open));
        assert_eq!(spare, b"abc");
        assert_eq!(out.take_now(&mut Vec::new()), None);
        out.close(Closing::Graceful);
        batch.clear();
        futures_lite::future::block_on(list.next(&mut batch));
        assert_eq!(batch, [7], "a close is listed too");
        // The written storage goes back to an empty queue.
        spare.clear();
        out.give_back(&mut spare);
        assert!(spare.capacity() == 0 && out.is_empty());
    }

    #[test]
    fn overflow_closes_and_refuses_more() {
        let out = Outbound::new(10, Instant::now());
        assert!(out.push(b"12345"));
        assert!(!out.push(b"123456"));
        assert_eq!(out.closing(), Closing::Overflow);
        assert!(!out.push(b"1"));
        assert_eq!(out.len(), 5);
    }

    #[test]
    fn replies_count_against_the_bound() {
        let out = Outbound::new(10, Instant::now());
        assert!(out.push(b"MSG"));
        out.push_reply(b"RECEIPT");
        assert_eq!((out.len(), out.closing()), (10, Closing::Open));
        // A client that never reads: its next pong overflows the queue and drops it.
        out.push_reply(b"PONG");
        assert_eq!((out.len(), out.closing()), (10, Closing::Overflow));
        // Last words while closing gracefully still go, within the bound.
        let out = Outbound::new(10, Instant::now());
        out.close(Closing::Graceful);
        out.push_reply(b"GOODBYE");
        assert_eq!((out.len(), out.closing()), (7, Closing::Graceful));
    }

    #[test]
    fn storage_is_kept_across_varying_bursts_and_given_back_when_quiet() {
        let out = Outbound::new(1 << 20, Instant::now());
        let write = |spare: &mut Vec<u8>, n: usize| {
            spare.resize(n, b'x');
            out.trim(spare);
            spare.capacity()
        };
        // A quiet connection holds nothing between writes.
        let mut spare = Vec::new();
        assert_eq!(write(&mut spare, 100), 0);
        // A busy one keeps its large queue while bursts are smaller for a while...
        let large = write(&mut spare, 144 * 1024);
        assert!(large >= 144 * 1024);
        for _ in 1..SHRINK_AFTER {
            assert_eq!(write(&mut spare, 20 * 1024), large);
        }
        // ... and shrinks it once they stay smaller.
        assert!(write(&mut spare, 20 * 1024) < large);
        // A burst that needs it again starts the count over.
        let large = write(&mut spare, 144 * 1024);
        for _ in 1..SHRINK_AFTER {
            assert_eq!(write(&mut spare, 20 * 1024), large);
        }
        assert_eq!(write(&mut spare, 144 * 1024), large);
        assert_eq!(write(&mut spare, 100), large);
        // A queue of modest size is kept while writes are not quiet.
        let mut spare = Vec::new();
        let modest = write(&mut spare, 12 * 1024);
        assert_eq!(write(&mut spare, 3 * 1024), modest);
        assert_eq!(write(&mut spare, 100), 0);
    }

    fn queued(out: &Outbound) -> Vec<u8> {
        let mut spare = Vec::new();
        if !out.is_empty() {
            futures_lite::future::block_on(out.take(&mut spare));
        }
        spare
    }

    /// A queue holding back receipts `R1` and `R2` for messages 1 and 2.
    fn holding_two_receipts() -> Outbound {
        let out = Outbound::new(1 << 20, Instant::now());
        out.hold_until(1, b"R1");
        out.hold_until(2, b"R2");
        out
    }

    #[test]
    fn last_words_wait_behind_receipts_held_for_kafka() {
        let out = holding_two_receipts();
        // Other replies and deliveries do not wait.
        out.push_reply(b"A");
        assert!(out.push(b"m"));
        out.push_last(b"BYE");
        assert_eq!(queued(&out), b"Am");
        assert!(out.holds_replies());
        // Reports may come out of order: receipts leave as they are stored, the last
        // words after all of them.
        out.release(2, true);
        assert_eq!(queued(&out), b"");
        out.release(1, true);
        assert_eq!(queued(&out), b"R1R2BYE");
        assert!(!out.holds_replies());
        out.push_last(b"D");
        assert_eq!(queued(&out), b"D");
    }

    #[test]
    fn a_refused_message_closes_the_connection_without_its_receipt() {
        let out = holding_two_receipts();
        out.push_last(b"C");
        out.release(1, true);
        out.release(2, false);
        assert_eq!(queued(&out), b"R1");
        assert_eq!(out.closing(), Closing::Graceful);
        assert!(!out.holds_replies());
        // Unknown reports change nothing.
        out.release(9, true);
        assert_eq!(queued(&out), b"");
    }
}
