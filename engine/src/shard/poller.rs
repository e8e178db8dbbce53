//! One readiness source for all of a shard's sockets.
//!
//! glommio arms a poll request of its own for every socket a task reads: 496 bytes of
//! state per idle connection, and a cancel in the kernel's poll table whenever one closes
//! (flamegraphs/README.md, "idle10k again"). Here every socket of the shard is registered
//! once, edge-triggered, in one epoll instance, and glommio waits on that instance alone.
//! Reads, writes and accepts are plain non-blocking syscalls; a task that meets `EAGAIN`
//! leaves its waker in the socket's slot, and the shard's poller task wakes it at the
//! socket's next edge. An idle connection costs a slot here (two wakers and two flags)
//! and the kernel's epoll entry, nothing more. A busy shard looks once per window instead
//! of waking for each arrival ([`Pace`]).
//!
//! glommio 0.9 has no public way to wait for an arbitrary descriptor; its `TcpStream`
//! waits for readability by arming a poll on its descriptor as it is created, so a
//! `TcpStream` over a `dup` of the epoll descriptor, read once, is the doorbell (the read
//! itself fails with `ENOTSOCK` once the poll fired; only the wake-up matters).
//! `poller_rings_for_a_socket_edge` in this file's tests pins that behaviour.

use std::cell::RefCell;
use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// A shard's epoll instance and the slots of the sockets registered in it.
#[derive(Debug)]
pub struct Poller {
    epoll: OwnedFd,
    slots: RefCell<Slots>,
}

#[derive(Debug, Default)]
struct Slots {
    slots: Vec<Slot>,
    free: Vec<u32>,
}

/// What the poller knows of one socket: whether it may be ready each way (set by an
/// edge, cleared by `EAGAIN` or a short read), and who waits for the next edge.
#[derive(Debug, Default)]
struct Slot {
    readable: bool,
    writable: bool,
    reader: Option<Waker>,
    writer: Option<Waker>,
}

/// Which way a task waits on a socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Way {
    Read,
    Write,
}

impl Slot {
    fn ready(&self, way: Way) -> bool {
        match way {
            Way::Read => self.readable,
            Way::Write => self.writable,
        }
    }

    /// Marks `way` not ready and keeps `waker` (if any) for its next edge.
    fn park(&mut self, way: Way, waker: Option<&Waker>) {
        let (ready, parked) = match way {
            Way::Read => (&mut self.readable, &mut self.reader),
            Way::Write => (&mut self.writable, &mut self.writer),
        };
        *ready = false;
        match (parked, waker) {
            (Some(w), Some(waker)) if w.will_wake(waker) => {}
            (parked, Some(waker)) => *parked = Some(waker.clone()),
            (_, None) => {}
        }
    }
}

/// Events taken from the kernel per `epoll_wait`.
const EVENTS: usize = 256;
/// Rings in a row that found nothing before the poller pauses between rings.
const EMPTY_RINGS: u32 = 8;
/// The pause, and the wait after a failed syscall.
const FALLBACK_POLL: Duration = Duration::from_millis(1);

/// When the poller looks again once its sockets had nothing more to give: at the next
/// edge (the doorbell), or after a window (a tick).
///
/// Every wake-up of an idle shard costs a sleep and a wake in the kernel and a pass of
/// the executor, whatever it then finds. A shard whose doorbell rings within a window of
/// the last time it found events is busy: it then looks once per window, taking all
/// that arrived meanwhile in one pass (and the queues of a room written to more than
/// once in it go out in one `send()`), until a tick finds nothing. An arrival waits
/// at most one window more; a shard with arrivals further apart than a window wakes for
/// each, as without a window.
#[derive(Debug)]
struct Pace {
    window: Duration,
    /// When events were last found.
    found_at: Option<Instant>,
    /// What the last wait was, if events were not found since.
    waited: Waited,
    /// Busy: look once per window.
    ticking: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Waited {
    Nothing,
    Ring,
    Tick,
}

impl Pace {
    fn new(window: Duration) -> Self {
        Self {
            window,
            found_at: None,
            waited: Waited::Nothing,
            ticking: false,
        }
    }

    /// The sockets had events at `now`.
    fn found(&mut self, now: Instant) {
        if self.waited == Waited::Ring {
            self.ticking = self
                .found_at
                .is_some_and(|at| now.saturating_duration_since(at) < self.window);
        }
        self.found_at = Some(now);
        self.waited = Waited::Nothing;
    }

    /// The doorbell rang.
    fn rung(&mut self) {
        self.waited = Waited::Ring;
    }

    /// The sockets have nothing now: how long to wait before looking again, or `None`
    /// to wait for the doorbell.
    fn idle(&mut self) -> Option<Duration> {
        if self.waited == Waited::Tick {
            // A whole window brought nothing: the shard is no longer busy.
            self.ticking = false;
        }
        if !self.ticking || self.window.is_zero() {
            return None;
        }
        self.waited = Waited::Tick;
        Some(self.window)
    }
}

impl Poller {
    /// A fresh epoll instance.
    ///
    /// # Errors
    /// `epoll_create1` failed (out of descriptors or memory).
    pub fn new() -> io::Result<Rc<Self>> {
        // SAFETY: a plain syscall; the result is checked before use.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Rc::new(Self {
            // SAFETY: `fd` is a fresh descriptor that nothing else owns.
            epoll: unsafe { OwnedFd::from_raw_fd(fd) },
            slots: RefCell::default(),
        }))
    }

    /// Takes the kernel's events and wakes who waits on them, until the shard stops.
    ///
    /// With a `window`, a busy shard looks at its sockets once per window instead of
    /// waking for each arrival (see [`Pace`]).
    pub async fn run(self: Rc<Self>, window: Duration) {
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; EVENTS];
        // Rings in a row that found nothing.
        let mut empty = 0;
        let mut pace = Pace::new(window);
        loop {
            // SAFETY: `events` has room for `EVENTS` entries; a zero timeout never blocks.
            let n = unsafe { libc::epoll_wait(self.epoll.as_raw_fd(), events.as_mut_ptr(), EVENTS as i32, 0) };
            let Ok(n) = usize::try_from(n) else {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    tracing::error!(error = %e, "epoll_wait failed");
                    glommio::timer::sleep(FALLBACK_POLL).await;
                }
                continue;
            };
            if n == 0 {
                if let Some(window) = pace.idle() {
                    glommio::timer::sleep(window).await;
                    continue;
                }
                // A doorbell that rings with nothing to take, again and again, would spin.
                if empty >= EMPTY_RINGS {
                    glommio::timer::sleep(FALLBACK_POLL).await;
                }
                self.ring().await;
                pace.rung();
                empty += 1;
                continue;
            }
            empty = 0;
            pace.found(Instant::now());
            self.dispatch(&events[..n]);
            // Let the tasks just woken run, then look again before arming the doorbell: a
            // busy shard takes its events without a ring per pass.
            futures_lite::future::yield_now().await;
        }
    }

    /// Waits until the epoll instance has events (see the module's notes).
    async fn ring(&self) {
        // SAFETY: duplicates a descriptor this poller owns; the result is checked.
        let fd = unsafe { libc::fcntl(self.epoll.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 0) };
        if fd < 0 {
            glommio::timer::sleep(FALLBACK_POLL).await;
            return;
        }
        // SAFETY: `fd` is ours alone; the stream closes it when dropped. Nothing but the
        // one read below is asked of it.
        let mut bell = unsafe { glommio::net::TcpStream::from_raw_fd(fd) };
        let _ = futures_lite::AsyncReadExt::read(&mut bell, &mut [0u8; 1]).await;
    }

    fn dispatch(&self, events: &[libc::epoll_event]) {
        const READ: u32 = (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR) as u32;
        const WRITE: u32 = (libc::EPOLLOUT | libc::EPOLLHUP | libc::EPOLLERR) as u32;
        let mut slots = self.slots.borrow_mut();
        for event in events {
            let (bits, token) = (event.events, event.u64);
            let Some(slot) = slots.slots.get_mut(token as usize) else {
                continue;
            };
            if bits & READ != 0 {
                slot.readable = true;
                if let Some(w) = slot.reader.take() {
                    w.wake();
                }
            }
            if bits & WRITE != 0 {
                slot.writable = true;
                if let Some(w) = slot.writer.take() {
                    w.wake();
                }
            }
        }
    }

    fn register(&self, fd: RawFd) -> io::Result<u32> {
        let mut slots = self.slots.borrow_mut();
        let token = match slots.free.pop() {
            Some(token) => token,
            None => {
                let token = u32::try_from(slots.slots.len()).map_err(|_| io::ErrorKind::OutOfMemory)?;
                slots.slots.push(Slot::default());
                token
            }
        };
        slots.slots[token as usize] = Slot {
            readable: true,
            writable: true,
            reader: None,
            writer: None,
        };
        let mut event = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET) as u32,
            u64: u64::from(token),
        };
        // SAFETY: `fd` is open (its owner is being built); `event` outlives the call.
        if unsafe { libc::epoll_ctl(self.epoll.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut event) } < 0 {
            slots.free.push(token);
            return Err(io::Error::last_os_error());
        }
        Ok(token)
    }

    fn deregister(&self, fd: RawFd, token: u32) {
        // SAFETY: `fd` is still open; a failure leaves nothing to undo (closing it removes
        // the entry unless a `dup` lives on, which is why this is done first).
        unsafe {
            libc::epoll_ctl(self.epoll.as_raw_fd(), libc::EPOLL_CTL_DEL, fd, std::ptr::null_mut());
        }
        let mut slots = self.slots.borrow_mut();
        if let Some(slot) = slots.slots.get_mut(token as usize) {
            *slot = Slot::default();
            slots.free.push(token);
        }
    }
}

/// A non-blocking socket registered with its shard's poller; deregistered and closed
/// when dropped. All methods take `&self`: a connection's reader and writer share it.
#[derive(Debug)]
pub struct Socket {
    fd: OwnedFd,
    token: u32,
    poller: Rc<Poller>,
}

impl Socket {
    /// Registers `fd` (a socket, made non-blocking here) with `poller`.
    ///
    /// # Errors
    /// The kernel refused the registration (out of memory or `max_user_watches`).
    pub fn new(poller: &Rc<Poller>, fd: OwnedFd) -> io::Result<Self> {
        // SAFETY: plain fcntl calls on a descriptor `fd` owns.
        unsafe {
            let flags = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
            if flags >= 0 && flags & libc::O_NONBLOCK == 0 {
                libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK);
            }
        }
        let token = poller.register(fd.as_raw_fd())?;
        Ok(Self {
            fd,
            token,
            poller: poller.clone(),
        })
    }

    /// Reads into `buf`; pending until the socket has bytes (or its end).
    pub fn poll_read(&self, cx: &Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let read = self.poll_io(Some(cx.waker()), Way::Read, || {
            // SAFETY: `buf` is valid for `buf.len()` bytes for the call's duration.
            unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT,
                )
            }
        });
        if let Poll::Ready(Ok(n)) = read {
            if n > 0 && n < buf.len() {
                // A short read took all the socket had: the next bytes come with an edge.
                self.with_slot(|slot| slot.readable = false);
            }
        }
        read
    }

    /// Writes from `buf`; pending while the socket's send buffer is full.
    pub fn poll_write(&self, cx: &Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.poll_io(Some(cx.waker()), Way::Write, || self.send(buf))
    }

    /// Writes what the socket takes of `buf` now; `WouldBlock` when it takes nothing.
    /// Nobody is woken at the next edge: a writer that must wait uses `poll_write`.
    pub fn send_now(&self, buf: &[u8]) -> io::Result<usize> {
        match self.poll_io(None, Way::Write, || self.send(buf)) {
            Poll::Ready(written) => written,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }

    fn send(&self, buf: &[u8]) -> isize {
        // SAFETY: `buf` is valid for `buf.len()` bytes for the call's duration.
        unsafe {
            libc::send(
                self.fd.as_raw_fd(),
                buf.as_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            )
        }
    }

    /// Accepts a connection on a listening socket: its descriptor, non-blocking.
    pub fn poll_accept(&self, cx: &Context<'_>) -> Poll<io::Result<OwnedFd>> {
        self.poll_io(Some(cx.waker()), Way::Read, || {
            // SAFETY: null address pointers are allowed: the peer's address is not wanted.
            unsafe {
                libc::accept4(
                    self.fd.as_raw_fd(),
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                    libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                ) as isize
            }
        })
        // SAFETY: a successful accept4 returns a fresh descriptor that nothing else owns.
        .map_ok(|fd| unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
    }

    /// Runs `call` (a non-blocking syscall) once the socket may be ready `way`; on
    /// `EAGAIN`, parks `waker` (when given) for the next edge.
    fn poll_io(&self, waker: Option<&Waker>, way: Way, mut call: impl FnMut() -> isize) -> Poll<io::Result<usize>> {
        loop {
            let ready = self.with_slot(|slot| {
                let ready = slot.ready(way);
                if !ready {
                    slot.park(way, waker);
                }
                ready
            });
            if !ready {
                return Poll::Pending;
            }
            match usize::try_from(call()) {
                Ok(n) => return Poll::Ready(Ok(n)),
                Err(_) => {
                    let e = io::Error::last_os_error();
                    match e.kind() {
                        io::ErrorKind::Interrupted => {}
                        io::ErrorKind::WouldBlock => self.with_slot(|slot| slot.park(way, waker)),
                        // A connection that died in the accept queue: take the next one.
                        _ if way == Way::Read && e.raw_os_error() == Some(libc::ECONNABORTED) => {}
                        _ => return Poll::Ready(Err(e)),
                    }
                }
            }
        }
    }

    fn with_slot<T>(&self, f: impl FnOnce(&mut Slot) -> T) -> T {
        let mut slots = self.poller.slots.borrow_mut();
        // The slot lives as long as this socket: `register` made it, `drop` frees it.
        let mut spare = Slot::default();
        f(slots.slots.get_mut(self.token as usize).unwrap_or(&mut spare))
    }

    /// The peer's address, when the socket has one.
    pub fn peer_ip(&self) -> Option<IpAddr> {
        socket2::SockRef::from(&self.fd)
            .peer_addr()
            .ok()?
            .as_socket()
            .map(|a| a.ip())
    }

    /// Sends small writes at once (no Nagle delay).
    pub fn set_nodelay(&self) {
        let _ = socket2::SockRef::from(&self.fd).set_nodelay(true);
    }

    /// Shuts both directions down, which wakes a task waiting on the socket.
    pub fn shutdown(&self) {
        // SAFETY: shutdown(2) neither closes nor invalidates the descriptor.
        unsafe {
            libc::shutdown(self.fd.as_raw_fd(), libc::SHUT_RDWR);
        }
    }

    /// A `dup` of the descriptor, for another shard (which registers it with its own
    /// poller once this socket is dropped).
    ///
    /// # Errors
    /// Out of descriptors.
    pub fn dup(&self) -> io::Result<OwnedFd> {
        self.fd.try_clone()
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        self.poller.deregister(self.fd.as_raw_fd(), self.token);
    }
}

#[cfg(test)]
mod tests {
    use std::future::poll_fn;
    use std::io::{Read, Write};
    use std::os::fd::OwnedFd;
    use std::os::unix::net::UnixStream;

    use glommio::LocalExecutorBuilder;

    use std::time::{Duration, Instant};

    use super::{Pace, Poller, Socket};

    #[test]
    fn a_ticking_poller_still_wakes_its_sockets() {
        let window = Duration::from_millis(5);
        let ran = LocalExecutorBuilder::default()
            .spawn(move || async move {
                let poller = Poller::new().expect("epoll");
                glommio::spawn_local(poller.clone().run(window)).detach();
                let (ours, mut theirs) = UnixStream::pair().expect("socketpair");
                let socket = Socket::new(&poller, OwnedFd::from(ours)).expect("register");
                // The second word rings within the window of the first, so the poller
                // ticks from then on: the third is seen only by a tick.
                for word in [&b"one"[..], b"two", b"six"] {
                    let mut buf = [0u8; 16];
                    let mut read = Box::pin(poll_fn(|cx| socket.poll_read(cx, &mut buf)));
                    assert!(futures_lite::future::poll_once(read.as_mut()).await.is_none());
                    theirs.write_all(word).expect("write");
                    let late = async {
                        glommio::timer::sleep(Duration::from_secs(10)).await;
                        Err(std::io::ErrorKind::TimedOut.into())
                    };
                    let n = futures_lite::future::or(read, late).await.expect("read within 10 s");
                    assert_eq!(&buf[..n], word);
                }
                true
            })
            .expect("executor")
            .join()
            .expect("join");
        assert!(ran);
    }

    #[test]
    fn only_a_shard_woken_again_within_the_window_ticks() {
        let window = Duration::from_millis(1);
        let t0 = Instant::now();
        let mut pace = Pace::new(window);
        // Arrivals further apart than the window: the doorbell each time.
        pace.rung();
        pace.found(t0);
        assert_eq!(pace.idle(), None);
        pace.rung();
        pace.found(t0 + 3 * window);
        assert_eq!(pace.idle(), None);
        // Woken again within the window of the last events: tick.
        pace.rung();
        pace.found(t0 + 3 * window + window / 2);
        assert_eq!(pace.idle(), Some(window));
        // Ticks go on while they find events...
        pace.found(t0 + 5 * window);
        assert_eq!(pace.idle(), Some(window));
        // ... and the first that finds nothing goes back to the doorbell.
        assert_eq!(pace.idle(), None);
        assert_eq!(pace.idle(), None);
        // Events found without a wait in between (a busy pass) change nothing.
        pace.found(t0 + 9 * window);
        pace.found(t0 + 9 * window);
        assert_eq!(pace.idle(), None);
    }

    #[test]
    fn no_window_never_ticks() {
        let t0 = Instant::now();
        let mut pace = Pace::new(Duration::ZERO);
        for _ in 0..3 {
            pace.rung();
            pace.found(t0);
            assert_eq!(pace.idle(), None);
        }
    }

    #[test]
    fn poller_rings_for_a_socket_edge() {
        let ran = LocalExecutorBuilder::default()
            .spawn(|| async {
                let poller = Poller::new().expect("epoll");
                glommio::spawn_local(poller.clone().run(Duration::ZERO)).detach();
                let (ours, mut theirs) = UnixStream::pair().expect("socketpair");
                let socket = Socket::new(&poller, OwnedFd::from(ours)).expect("register");
                let mut buf = [0u8; 16];
                // Nothing yet: the first read finds EAGAIN and parks.
                let mut first = Box::pin(poll_fn(|cx| socket.poll_read(cx, &mut buf)));
                assert!(futures_lite::future::poll_once(first.as_mut()).await.is_none());
                theirs.write_all(b"hello").expect("write");
                let n = first.await.expect("read");
                assert_eq!(n, 5);
                // A short read cleared readiness; the next bytes wake the reader again.
                let later = glommio::spawn_local(async move {
                    let mut buf = [0u8; 16];
                    let n = poll_fn(|cx| socket.poll_read(cx, &mut buf)).await.expect("read");
                    (buf, n, socket)
                });
                glommio::timer::sleep(std::time::Duration::from_millis(20)).await;
                theirs.write_all(b"again").expect("write");
                let (buf, n, socket) = later.await;
                assert_eq!(&buf[..n], b"again");
                // Writes go straight out; a shut-down socket reads its end.
                let n = poll_fn(|cx| socket.poll_write(cx, b"back")).await.expect("write");
                assert_eq!(n, 4);
                let mut back = [0u8; 4];
                theirs.read_exact(&mut back).expect("read back");
                assert_eq!(&back, b"back");
                drop(theirs);
                let mut end = [0u8; 4];
                assert_eq!(poll_fn(|cx| socket.poll_read(cx, &mut end)).await.expect("eof"), 0);
                true
            })
            .expect("executor")
            .join()
            .expect("join");
        assert!(ran);
    }
}
