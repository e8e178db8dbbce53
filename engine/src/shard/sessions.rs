//! The SockJS sessions of the HTTP transports on one shard. A session outlives the
//! requests that carry it: a receiving request (`xhr`, `xhr_streaming`, `eventsource`)
//! creates it under the client's session id and drains its [`Outbound`]; `xhr_send`
//! requests feed its STOMP [`Session`] (the same sans-IO session as a WebSocket's, with
//! `Framing::SockJsHttp`); a watcher task per session sends heart-beats and closes it once
//! no receiving request has been open for `--sockjs-disconnect-delay-ms`. `transport.rs`
//! serves the requests; `conn.rs` routes them here.
//!
//! # Where a session lives, and how its requests get there
//! A session lives on the shard that owns its id: shard `fnv1a(id) % shards` ([`owner`]).
//! The kernel spreads TCP connections over the shards' SO_REUSEPORT listeners, and a
//! keep-alive connection carries requests of any session, so a request often arrives on
//! another shard. That shard parses only the head, sees the owner, and hands the whole
//! connection over: a `dup` of the socket and the bytes read so far (moved, not copied)
//! go over a bounded channel to the owner (`Handoff`, `shard/mod.rs`), which serves this
//! request and the rest of the connection. Later requests of the session on that
//! connection are already home; a request of another session moves it again (at most one
//! move per request: the owner never hands a request on). Why not a node-wide table of
//! id → shard: the rule needs no shared state, no lock and no clean-up, and the first
//! request of a session goes straight to the shard every later one will use. Why the
//! connection and not the request: the receiving request's socket then sits on the shard
//! of the session's queue, so fan-out → queue → socket stays on one core, exactly as for a
//! WebSocket, and no frame ever crosses cores. Behind Nginx, `hash $sockjs_session
//! consistent` picks the node by the same id (deploy/nginx).

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use proto::sockjs::http::{self as sockjs_http, SendError};
use proto::Framing;

use super::{conn, Shard};
use crate::ids::ConnId;
use crate::metrics::{ErrorKind, ShardStats};
use crate::outbound::{Closing, Outbound};
use crate::session::{Session, Step};

/// The shard (executor index, `0..shards`) that owns session `id`: FNV-1a of its bytes,
/// so every shard of every node computes the same owner without asking anyone.
pub fn owner(id: &str, shards: usize) -> usize {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in id.as_bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    (hash % shards.max(1) as u64) as usize
}

/// Why a session could not be created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The node holds `--max-sockjs-sessions` already (503).
    Full,
    /// The node is draining (503).
    Draining,
}

/// One SockJS session of the HTTP transports.
pub struct HttpSession {
    /// The client's session id.
    pub id: Box<str>,
    /// Its connection id (subscriptions are keyed by it, as for WebSocket connections).
    pub conn: ConnId,
    /// Frames for the client, drained by the receiving request.
    pub out: Rc<Outbound>,
    /// The STOMP session; `None` while an `xhr_send` is driving it.
    session: RefCell<Option<Session>>,
    /// One `xhr_send` at a time, so frames are handled in the order they came.
    sending: glommio::sync::Semaphore,
    /// STOMP bytes from `xhr_send` bodies not decoded yet (a frame may span bodies).
    pending: RefCell<BytesMut>,
    /// A receiving request is attached.
    receiving: Cell<bool>,
    /// Since when no receiving request was attached (or since the session ended).
    idle_since: Cell<Instant>,
    /// The session is over: no more sends; the watcher removes it after a linger.
    ended: Cell<bool>,
    /// The watcher's wake-up.
    woken: Cell<bool>,
    waker: Cell<Option<Waker>>,
}

impl HttpSession {
    /// Attaches a receiving request; false when another one is attached (2010).
    pub fn attach(&self) -> bool {
        if self.receiving.replace(true) {
            return false;
        }
        self.wake();
        true
    }

    /// Detaches the receiving request: the disconnect delay starts now.
    pub fn detach(&self) {
        self.receiving.set(false);
        self.idle_since.set(Instant::now());
        self.wake();
    }

    /// True once the session is over.
    pub fn ended(&self) -> bool {
        self.ended.get()
    }

    /// Feeds an `xhr_send` body to the session and carries out what it asks, as
    /// `conn.rs` does for WebSocket bytes.
    ///
    /// # Errors
    /// The body is not a JSON array of strings; the session is unchanged.
    pub async fn send(&self, shard: &Shard, body: &[u8]) -> Result<(), SendError> {
        let Ok(_permit) = self.sending.acquire_permit(1).await else {
            return Ok(());
        };
        if self.ended() {
            return Ok(());
        }
        sockjs_http::decode_send(
            body,
            &mut shard.json_scratch.borrow_mut(),
            &mut self.pending.borrow_mut(),
        )?;
        let Some(mut session) = self.session.borrow_mut().take() else {
            return Ok(());
        };
        // The pending bytes move out for the drive (they are only ever touched here,
        // under the permit) and back after it.
        let mut pending = std::mem::take(&mut *self.pending.borrow_mut());
        let flow = conn::drive(shard, &mut session, &self.out, self.conn, &mut pending).await;
        *self.pending.borrow_mut() = pending;
        *self.session.borrow_mut() = Some(session);
        if flow == conn::Flow::Close || self.ended() {
            self.end(shard);
        }
        Ok(())
    }

    /// Ends the session: its subscriptions go (the router's `unsubscribe` for each, as
    /// `conn.rs` does when a connection ends) and its queue closes, keeping what is queued
    /// (its last frames, `c[...]` among them) for a receiving request. Counts a slow
    /// consumer when the queue overflowed. Safe to call again.
    pub fn end(&self, shard: &Shard) {
        if !self.ended.replace(true) {
            if self.out.closing() == Closing::Overflow {
                shard.stats.error(ErrorKind::SlowConsumer);
            }
            self.out.close(Closing::Graceful);
            if !self.receiving.get() {
                self.idle_since.set(Instant::now());
            }
            self.wake();
        }
        // A send in progress holds the session; it calls `end` again when done.
        if let Some(session) = self.session.borrow_mut().as_mut() {
            let subs = session.take_subscriptions();
            ShardStats::shift(&shard.stats.subscriptions, -(subs.len() as i64));
            for sub in subs {
                shard.router.unsubscribe(sub.destination(), sub.id(), self.conn);
            }
        }
        self.pending.borrow_mut().clear();
    }

    fn wake(&self) {
        self.woken.set(true);
        if let Some(waker) = self.waker.take() {
            waker.wake();
        }
    }

    /// Resolves once `wake` was called since the last time.
    async fn woken(&self) {
        poll_fn(|cx| {
            if self.woken.replace(false) {
                return Poll::Ready(());
            }
            self.waker.set(Some(cx.waker().clone()));
            Poll::Pending
        })
        .await;
    }
}

impl Shard {
    /// The HTTP-transport session `id` of this shard, if it has one.
    pub fn http_session(&self, id: &str) -> Option<Rc<HttpSession>> {
        self.http.borrow().get(id).cloned()
    }

    /// Creates session `id` on this shard: queues its `o` and starts its watcher.
    ///
    /// # Errors
    /// The node is full or draining.
    pub fn open_http_session(self: &Rc<Self>, id: &str) -> Result<Rc<HttpSession>, Refused> {
        if self.node.draining.load(Relaxed) {
            return Err(Refused::Draining);
        }
        let max = self.node.config.max_sockjs_sessions;
        if self.node.sockjs_sessions.fetch_add(1, Relaxed) >= max {
            self.node.sockjs_sessions.fetch_sub(1, Relaxed);
            return Err(Refused::Full);
        }
        let conn = self.next_conn_id();
        let now = Instant::now();
        let out = Rc::new(Outbound::new(self.node.config.max_outbound_bytes, now));
        let mut session = Session::new(conn, Framing::SockJsHttp, &self.settings);
        self.step(&out, |env, o| session.open(env, o));
        let hs = Rc::new(HttpSession {
            id: id.into(),
            conn,
            out: out.clone(),
            session: RefCell::new(Some(session)),
            sending: glommio::sync::Semaphore::new(1),
            pending: RefCell::new(BytesMut::new()),
            receiving: Cell::new(false),
            idle_since: Cell::new(now),
            ended: Cell::new(false),
            woken: Cell::new(false),
            waker: Cell::new(None),
        });
        self.http.borrow_mut().insert(hs.id.clone(), hs.clone());
        ShardStats::shift(&self.stats.http_sessions, 1);
        glommio::spawn_local(watch(self.clone(), hs.clone())).detach();
        Ok(hs)
    }

    /// Wakes every HTTP-transport session's watcher (the drain has closed their queues).
    pub(super) fn wake_http_sessions(&self) {
        for hs in self.http.borrow().values() {
            hs.wake();
        }
    }
}

/// A session's clock: heart-beats (STOMP's and SockJS's `h`), the end of a session whose
/// queue closed, the disconnect delay, and the removal of an ended session once a
/// receiving request had the chance to read its last frames.
async fn watch(shard: Rc<Shard>, hs: Rc<HttpSession>) {
    let delay = Duration::from_millis(shard.node.config.sockjs_disconnect_delay_ms);
    loop {
        let now = Instant::now();
        let idle_until = hs.idle_since.get() + delay;
        let deadline = if hs.ended() {
            if hs.receiving.get() {
                // Its last frames are being read: wait for the request to go.
                hs.woken().await;
                continue;
            }
            if now >= idle_until {
                break;
            }
            idle_until
        } else if hs.out.closing() != Closing::Open {
            hs.end(&shard);
            continue;
        } else if !hs.receiving.get() && now >= idle_until {
            // Nobody polled for the disconnect delay: nobody is left to tell.
            shard.stats.error(ErrorKind::SockJsAbandoned);
            hs.end(&shard);
            break;
        } else {
            let tick = {
                let mut slot = hs.session.borrow_mut();
                slot.as_mut().map(|session| {
                    let last_sent = hs.out.last_sent();
                    let step = shard.step(&hs.out, |env, o| session.on_tick(env, last_sent, o));
                    (step, session.next_deadline(&shard.settings, hs.out.last_sent()))
                })
            };
            let stomp = match tick {
                Some((Step::Close, _)) => {
                    hs.end(&shard);
                    continue;
                }
                Some((_, deadline)) => deadline,
                // An xhr_send is driving it: look again soon.
                None => Some(now + BUSY_RETRY),
            };
            let idle = (!hs.receiving.get()).then_some(idle_until);
            match (stomp, idle) {
                (Some(a), Some(b)) => a.min(b),
                (a, b) => a.or(b).unwrap_or(now + delay),
            }
        };
        let timer = glommio::timer::sleep(deadline.saturating_duration_since(Instant::now()));
        futures_lite::future::or(timer, hs.woken()).await;
    }
    shard.http.borrow_mut().remove(&hs.id);
    shard.node.sockjs_sessions.fetch_sub(1, Relaxed);
    ShardStats::shift(&shard.stats.http_sessions, -1);
}

/// How soon the watcher looks again while an `xhr_send` holds the session.
const BUSY_RETRY: Duration = Duration::from_millis(50);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_are_stable_and_spread() {
        assert_eq!(owner("abc", 1), 0);
        assert_eq!(owner("abcdefgh", 4), owner("abcdefgh", 4));
        let mut counts = [0; 4];
        for i in 0..4000 {
            counts[owner(&format!("s{i:07}"), 4)] += 1;
        }
        assert!(counts.iter().all(|&n| (800..1200).contains(&n)), "{counts:?}");
    }
}
