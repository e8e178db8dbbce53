//! One writer per shard for its WebSocket connections.
//!
//! A connection's queue ([`Outbound`]) lists its token when bytes (or a close) arrive;
//! the shard's writer task takes the list and writes each queue straight to its socket,
//! one `send()` per queue, without waking a task per connection. Only a connection whose
//! socket does not take all its bytes at once, or that closes, gets a task of its own
//! (`write_out`) for as long as that lasts; it then hands the queue back. So an idle
//! connection holds no writer task, only its entry here.

use std::cell::RefCell;
use std::io;
use std::rc::Rc;
use std::time::{Duration, Instant};

use glommio::task::JoinHandle;
use proto::Framing;

use super::conn::{write_all, Endpoint, Stream};
use super::Shard;
use crate::metrics::{ErrorKind, ShardStats};
use crate::outbound::{Closing, Outbound, WriteList};
use crate::session;

/// The shard's writer: an entry per WebSocket connection, by token.
#[derive(Debug, Default)]
pub(super) struct Writers {
    list: Rc<WriteList>,
    entries: RefCell<Entries>,
}

#[derive(Debug, Default)]
struct Entries {
    entries: Vec<Option<Entry>>,
    free: Vec<u32>,
}

/// What the writer keeps of one connection.
#[derive(Debug)]
struct Entry {
    out: Rc<Outbound>,
    stream: Stream,
    endpoint: Endpoint,
    state: State,
}

#[derive(Debug)]
enum State {
    /// The shard's writer writes the queue.
    Shard,
    /// A task of its own does (`write_out`).
    Task(Option<JoinHandle<()>>),
    /// The socket is shut down.
    Done,
}

impl Writers {
    /// A queue for `stream`, written by this writer from now on; its token ends it
    /// (`finish`).
    pub(super) fn open(&self, stream: &Stream, endpoint: Endpoint, max_bytes: usize) -> (Rc<Outbound>, u32) {
        let mut entries = self.entries.borrow_mut();
        let token = match entries.free.pop() {
            Some(token) => token,
            None => {
                entries.entries.push(None);
                // Connections per shard stay far below 2^32 (each holds a descriptor).
                (entries.entries.len() - 1) as u32
            }
        };
        let out = Rc::new(Outbound::written_by(
            self.list.clone(),
            token,
            max_bytes,
            Instant::now(),
        ));
        entries.entries[token as usize] = Some(Entry {
            out: out.clone(),
            stream: stream.clone(),
            endpoint,
            state: State::Shard,
        });
        (out, token)
    }

    /// The queues of the STOMP connections that are not closing, with their framing.
    pub(super) fn open_sessions(&self) -> Vec<(Rc<Outbound>, Framing)> {
        let entries = self.entries.borrow();
        entries
            .entries
            .iter()
            .flatten()
            .filter(|entry| entry.out.closing() == Closing::Open)
            .filter_map(|entry| match entry.endpoint {
                Endpoint::Stomp(framing) => Some((entry.out.clone(), framing)),
                Endpoint::Echo => None,
            })
            .collect()
    }

    /// Closes the queue of `token` gracefully and waits until what it holds is written
    /// and its socket shut down; then forgets it.
    pub(super) async fn finish(shard: &Rc<Shard>, token: u32) {
        let writers = &shard.writers;
        let (task, parts) = {
            let mut entries = writers.entries.borrow_mut();
            let Some(entry) = entries.entries.get_mut(token as usize).and_then(Option::as_mut) else {
                return;
            };
            entry.out.close(Closing::Graceful);
            match &mut entry.state {
                State::Task(task) => (task.take(), None),
                State::Done => (None, None),
                State::Shard => {
                    entry.state = State::Task(None);
                    (None, Some(entry.parts()))
                }
            }
        };
        let task = task.or_else(|| parts.map(|parts| write_on_its_own(shard, token, parts, None)));
        if let Some(task) = task {
            task.await;
        }
        let mut entries = writers.entries.borrow_mut();
        if let Some(slot) = entries.entries.get_mut(token as usize) {
            *slot = None;
            entries.free.push(token);
        }
    }

    /// Writes the listed queues until the shard stops.
    pub(super) async fn run(shard: Rc<Shard>) {
        let mut batch = Vec::new();
        // Holds a burst while it is written; its storage then goes back to the queue.
        let mut spare = Vec::new();
        loop {
            shard.writers.list.next(&mut batch).await;
            for (i, &token) in batch.iter().enumerate() {
                shard.writers.flush(&shard, token, &mut spare);
                // A long list (a big room's burst) leaves room for the other task queue.
                if i % YIELD_EVERY == YIELD_EVERY - 1 {
                    glommio::yield_if_needed().await;
                }
            }
            batch.clear();
        }
    }

    /// Writes what the queue of `token` holds, if the socket takes it all at once;
    /// otherwise, or when it closes, gives it a task of its own.
    fn flush(&self, shard: &Rc<Shard>, token: u32, spare: &mut Vec<u8>) {
        let mut entries = self.entries.borrow_mut();
        let Some(entry) = entries.entries.get_mut(token as usize).and_then(Option::as_mut) else {
            return;
        };
        entry.out.unlist();
        if !matches!(entry.state, State::Shard) {
            return;
        }
        let from = match entry.out.take_now(spare) {
            None => return,
            Some(Closing::Open) => {
                let queued = spare.len();
                shard.stats.outbound_queue.observe(queued as u64);
                let mut from = 0;
                while from < queued {
                    match entry.stream.send_now(&spare[from..]) {
                        Ok(n) if n > 0 => from += n,
                        // The rest, or the error, is for `write_out`.
                        _ => break,
                    }
                }
                ShardStats::add(&shard.stats.bytes_out, from as u64);
                if from == queued {
                    entry.out.mark_sent(Instant::now());
                    entry.out.trim(spare);
                    entry.out.give_back(spare);
                    return;
                }
                from
            }
            // Closing: `write_out` writes what was taken, or says farewell instead.
            Some(_) => 0,
        };
        entry.state = State::Task(None);
        let parts = entry.parts();
        drop(entries);
        let task = write_on_its_own(shard, token, parts, Some((std::mem::take(spare), from)));
        let mut entries = self.entries.borrow_mut();
        if let Some(Entry {
            state: State::Task(slot),
            ..
        }) = entries.entries.get_mut(token as usize).and_then(Option::as_mut)
        {
            *slot = Some(task);
        }
    }
}

impl Entry {
    /// What `write_out` needs of the entry.
    fn parts(&self) -> (Stream, Rc<Outbound>, Endpoint) {
        (self.stream.clone(), self.out.clone(), self.endpoint)
    }
}

/// Gives the queue of `token` a task of its own (`write_out`) from `rest` on; the task
/// hands the queue back to the shard's writer, or marks its socket shut down, when it
/// ends. Call it with the writer's table not borrowed: the task borrows it.
fn write_on_its_own(
    shard: &Rc<Shard>,
    token: u32,
    (stream, out, endpoint): (Stream, Rc<Outbound>, Endpoint),
    rest: Option<(Vec<u8>, usize)>,
) -> JoinHandle<()> {
    let writing = write_out(shard.clone(), stream, out, endpoint, rest);
    let shard = shard.clone();
    glommio::spawn_local(async move {
        let closed = writing.await;
        let mut entries = shard.writers.entries.borrow_mut();
        if let Some(entry) = entries.entries.get_mut(token as usize).and_then(Option::as_mut) {
            entry.state = if closed { State::Done } else { State::Shard };
        }
    })
    .detach()
}

/// List entries written between chances for the other task queue to run.
const YIELD_EVERY: usize = 64;

/// Writes a connection's queue while it needs a task: the socket is full, or the
/// connection closes. `rest` is a burst already taken from the queue and how much of it
/// was written. Returns whether the socket was shut down (false: the queue is open and
/// empty again, back to the shard's writer).
async fn write_out(
    shard: Rc<Shard>,
    stream: Stream,
    out: Rc<Outbound>,
    endpoint: Endpoint,
    mut rest: Option<(Vec<u8>, usize)>,
) -> bool {
    let mut spare = Vec::new();
    loop {
        let (closing, from) = match rest.take() {
            Some((taken, from)) => {
                spare = taken;
                (out.closing(), from)
            }
            None => match out.take_now(&mut spare) {
                None => {
                    out.give_back(&mut spare);
                    return false;
                }
                Some(closing) => {
                    shard.stats.outbound_queue.observe(spare.len() as u64);
                    (closing, 0)
                }
            },
        };
        if closing == Closing::Overflow {
            shard.stats.error(ErrorKind::SlowConsumer);
            if from > 0 {
                // Part of a frame is out: no farewell can follow it.
                break;
            }
            spare.clear();
            if let Endpoint::Stomp(framing) = endpoint {
                let mut output = shard.output.borrow_mut();
                session::farewell_slow(framing, &mut output);
                spare.extend_from_slice(&output.wire);
                output.wire.clear();
            }
        }
        let from = if closing == Closing::Overflow { 0 } else { from };
        let queued = spare.len() - from;
        ShardStats::shift(&shard.stats.queued_bytes, queued as i64);
        let bytes = &spare[from..];
        let written = match closing {
            // A subscriber whose socket stays full overflows its queue meanwhile: drop
            // it then, without waiting for the socket.
            Closing::Open => {
                let overflow = async {
                    out.overflowed().await;
                    shard.stats.error(ErrorKind::SlowConsumer);
                    Err(io::ErrorKind::TimedOut.into())
                };
                futures_lite::future::or(write_all(&stream, bytes), overflow).await
            }
            // The farewell gets a moment, not the full queue's patience.
            Closing::Overflow => {
                let late = async {
                    glommio::timer::sleep(FAREWELL_WAIT).await;
                    Err(io::ErrorKind::TimedOut.into())
                };
                futures_lite::future::or(write_all(&stream, bytes), late).await
            }
            Closing::Graceful => write_all(&stream, bytes).await,
        };
        ShardStats::shift(&shard.stats.queued_bytes, -(queued as i64));
        if let Err(e) = written {
            if e.kind() != io::ErrorKind::TimedOut {
                shard.stats.error(ErrorKind::Io);
            }
            out.close(Closing::Graceful);
            break;
        }
        ShardStats::add(&shard.stats.bytes_out, queued as u64);
        out.mark_sent(Instant::now());
        out.trim(&mut spare);
        if closing != Closing::Open && out.is_empty() {
            if closing == Closing::Graceful && out.holds_replies() {
                // Receipts waiting for Kafka go out before the close, within a bound.
                let released = futures_lite::future::or(
                    async {
                        out.released().await;
                        true
                    },
                    async {
                        glommio::timer::sleep(HELD_WAIT).await;
                        false
                    },
                )
                .await;
                if released {
                    continue;
                }
                out.drop_held();
            }
            break;
        }
    }
    stream.shutdown();
    true
}

/// How long a closing connection waits for its receipts held back for Kafka.
const HELD_WAIT: Duration = Duration::from_secs(5);
/// How long a subscriber dropped as slow gets to take its farewell.
const FAREWELL_WAIT: Duration = Duration::from_secs(1);
