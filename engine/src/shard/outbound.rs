//! The outbound queue of one connection: a bounded byte buffer that fan-out and the
//! connection's own replies append to, and that the connection's writer task drains with
//! one `send()` per burst. Appending never waits: a subscriber whose queue would pass the
//! bound is marked overflowed and dropped by its writer, so it never slows the shard.

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
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

/// A connection's outbound queue, shared (`Rc`) by its reader, its writer and the
/// subscriber index of its shard.
pub struct Outbound {
    queue: RefCell<Vec<u8>>,
    max_bytes: usize,
    closing: Cell<Closing>,
    waker: Cell<Option<Waker>>,
    overflow_waker: Cell<Option<Waker>>,
    last_sent: Cell<Instant>,
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
    /// An empty queue holding at most `max_bytes`.
    pub fn new(max_bytes: usize, now: Instant) -> Self {
        Self {
            queue: RefCell::new(Vec::new()),
            max_bytes,
            closing: Cell::new(Closing::Open),
            waker: Cell::new(None),
            overflow_waker: Cell::new(None),
            last_sent: Cell::new(now),
        }
    }

    /// Appends `bytes` unless the queue is closing. Returns false when it was not queued
    /// (closing already, or this push overflowed the bound and closed the queue).
    #[inline]
    pub fn push(&self, bytes: &[u8]) -> bool {
        if self.closing.get() != Closing::Open {
            return false;
        }
        {
            let mut queue = self.queue.borrow_mut();
            if queue.len() + bytes.len() > self.max_bytes {
                drop(queue);
                self.close(Closing::Overflow);
                return false;
            }
            queue.extend_from_slice(bytes);
        }
        self.wake();
        true
    }

    /// Appends with a caller-supplied encoder (for replies built in place). Replies are
    /// small and always queued while open, even past the bound, so a client always gets
    /// its `ERROR` or `RECEIPT`.
    pub fn push_with(&self, encode: impl FnOnce(&mut Vec<u8>)) {
        if self.closing.get() == Closing::Overflow {
            return;
        }
        encode(&mut self.queue.borrow_mut());
        self.wake();
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
        self.queue.borrow().len()
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
        poll_fn(|cx| {
            let mut queue = self.queue.borrow_mut();
            if !queue.is_empty() {
                std::mem::swap(&mut *queue, spare);
                return Poll::Ready(self.closing.get());
            }
            if self.closing.get() != Closing::Open {
                return Poll::Ready(self.closing.get());
            }
            self.waker.set(Some(cx.waker().clone()));
            Poll::Pending
        })
        .await
    }

    /// Records that bytes were written at `now`.
    pub fn mark_sent(&self, now: Instant) {
        self.last_sent.set(now);
    }

    /// Empties `spare` after a write of its bytes, keeping its storage for the next
    /// burst unless it is much larger than this burst needed. Regrowing a queue from
    /// nothing on every burst cost more than the copy into it (flamegraphs/README.md).
    pub fn trim(&self, spare: &mut Vec<u8>) {
        let used = spare.len();
        spare.clear();
        if used < SMALL_WRITE_BYTES {
            // A quiet connection: hold no storage between its rare writes.
            *spare = Vec::new();
        } else if spare.capacity() > TRIM_BYTES.max(used.saturating_mul(4)) {
            spare.shrink_to(used);
        }
    }

    fn wake(&self) {
        if let Some(waker) = self.waker.take() {
            waker.wake();
        }
    }
}

/// Writes smaller than this leave no storage behind.
const SMALL_WRITE_BYTES: usize = 2048;
/// Queue capacity always kept between bursts; beyond it, what four recent bursts need.
const TRIM_BYTES: usize = 16 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

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
    fn replies_pass_the_bound_while_open() {
        let out = Outbound::new(4, Instant::now());
        out.push_with(|q| q.extend_from_slice(b"RECEIPT"));
        assert_eq!(out.len(), 7);
    }
}
