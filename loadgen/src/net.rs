//! Sockets for the load generator and the bench drivers: TCP connections from a chosen
//! source address (to spread ephemeral ports over several loopback addresses), with TLS
//! on them for `wss://` and `https://` targets ([`Conn`], through `tls.rs`), and the
//! write loop of a glommio stream.

use std::cell::RefCell;
use std::future::poll_fn;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_lite::{AsyncRead, AsyncWrite};
use glommio::net::TcpStream;

use crate::tls;

/// A socket shared by a connection's reader and writer tasks (each borrows it only
/// inside a poll, never across an await).
pub type Stream = Rc<RefCell<Conn>>;

/// A TCP connection, in the clear or through TLS.
pub struct Conn {
    tcp: TcpStream,
    tls: Option<Box<tls::Session>>,
}

/// Opens a connection to `dst` from `src`; with `tls` (the client settings and the server
/// name), a TLS session over it whose handshake runs with the first reads and writes.
///
/// # Errors
/// Socket, bind or connect failures, or a server name TLS cannot use.
pub fn connect(
    dst: SocketAddr,
    src: Option<IpAddr>,
    tls: Option<(&Arc<rustls::ClientConfig>, &str)>,
) -> io::Result<Stream> {
    let tcp = open_socket(dst, src)?;
    let tls = match tls {
        Some((config, server)) => Some(Box::new(tls::Session::new(config, server)?)),
        None => None,
    };
    Ok(Rc::new(RefCell::new(Conn { tcp, tls })))
}

impl Conn {
    /// Reads what the socket holds now, without waiting and without arming anything to
    /// wake this thread: `None` when nothing is there, or for TLS (which must wait).
    pub fn read_now(&mut self, buf: &mut [u8]) -> Option<io::Result<usize>> {
        if self.tls.is_some() {
            return None;
        }
        // SAFETY: `buf` is valid for writes of its length; the descriptor is this
        // stream's, open while `self` lives.
        let n = unsafe {
            libc::recv(
                self.tcp.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT,
            )
        };
        match usize::try_from(n) {
            Ok(n) => Some(Ok(n)),
            Err(_) => match io::Error::last_os_error() {
                e if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) => None,
                e => Some(Err(e)),
            },
        }
    }

    /// Whether this connection speaks TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }
}

impl AsyncRead for Conn {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let Conn { tcp, tls } = self.get_mut();
        match tls {
            Some(tls) => tls.poll_read(tcp, cx, buf),
            None => Pin::new(tcp).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let Conn { tcp, tls } = self.get_mut();
        match tls {
            Some(tls) => tls.poll_write(tcp, cx, buf),
            None => Pin::new(tcp).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Conn { tcp, tls } = self.get_mut();
        match tls {
            Some(tls) => tls.poll_flush(tcp, cx),
            None => Pin::new(tcp).poll_flush(cx),
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_close(cx)
    }
}

/// Writes all of `bytes` to `stream`.
///
/// # Errors
/// A socket error, or `WriteZero` when the peer stops taking bytes.
pub async fn write_all(stream: &Stream, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        let n = poll_fn(|cx| Pin::new(&mut *stream.borrow_mut()).poll_write(cx, bytes)).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        bytes = &bytes[n..];
    }
    // TLS may still hold ciphertext of them.
    poll_fn(|cx| Pin::new(&mut *stream.borrow_mut()).poll_flush(cx)).await
}

/// A non-blocking TCP socket connecting to `dst` from `src` (port chosen at connect time,
/// so many sources share no port range). The first write waits for the connection.
///
/// # Errors
/// Socket, bind or connect failures.
fn open_socket(dst: SocketAddr, src: Option<IpAddr>) -> io::Result<TcpStream> {
    let fd = connect_from(dst, src, false)?;
    // SAFETY: ownership of the open descriptor moves into the stream.
    Ok(unsafe { TcpStream::from_raw_fd(fd.into_raw_fd()) })
}

/// A TCP socket connecting to `dst` from `src`, with `TCP_NODELAY`. With `blocking`,
/// connected when this returns; else the connection completes in the background.
///
/// # Errors
/// Socket, bind or connect failures.
pub fn connect_from(dst: SocketAddr, src: Option<IpAddr>, blocking: bool) -> io::Result<OwnedFd> {
    let domain = if dst.is_ipv4() { libc::AF_INET } else { libc::AF_INET6 };
    // SAFETY: socket(2) with constant arguments; the result is checked before use.
    let flags = if blocking { 0 } else { libc::SOCK_NONBLOCK };
    let fd = unsafe { libc::socket(domain, libc::SOCK_STREAM | flags | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor that nothing else owns.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    set_option(fd, libc::IPPROTO_TCP, libc::TCP_NODELAY)?;
    if let Some(src) = src {
        if src.is_ipv4() {
            set_option(fd, libc::IPPROTO_IP, libc::IP_BIND_ADDRESS_NO_PORT)?;
        }
        let (addr, len) = sockaddr(SocketAddr::new(src, 0));
        // SAFETY: `addr` is a valid sockaddr of `len` bytes for this socket's family.
        if unsafe { libc::bind(fd, std::ptr::addr_of!(addr).cast(), len) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    let (addr, len) = sockaddr(dst);
    // SAFETY: as for bind.
    if unsafe { libc::connect(fd, std::ptr::addr_of!(addr).cast(), len) } != 0 {
        let e = io::Error::last_os_error();
        if blocking || e.raw_os_error() != Some(libc::EINPROGRESS) {
            return Err(e);
        }
    }
    Ok(owned)
}

fn set_option(fd: i32, level: libc::c_int, name: libc::c_int) -> io::Result<()> {
    let one: libc::c_int = 1;
    // SAFETY: setsockopt reads `one`, a c_int that outlives the call.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            std::ptr::addr_of!(one).cast(),
            std::mem::size_of::<libc::c_int>() as u32,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `addr` as a `sockaddr_storage` and its length.
fn sockaddr(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: all-zero is a valid sockaddr_storage.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    match addr {
        SocketAddr::V4(a) => {
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
            let sin = unsafe { &mut *std::ptr::addr_of_mut!(storage).cast::<libc::sockaddr_in>() };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = a.port().to_be();
            sin.sin_addr = libc::in_addr {
                s_addr: u32::from_ne_bytes(a.ip().octets()),
            };
            (storage, std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t)
        }
        SocketAddr::V6(a) => {
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
            let sin6 = unsafe { &mut *std::ptr::addr_of_mut!(storage).cast::<libc::sockaddr_in6>() };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = a.port().to_be();
            sin6.sin6_addr = libc::in6_addr {
                s6_addr: a.ip().octets(),
            };
            sin6.sin6_scope_id = a.scope_id();
            (storage, std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t)
        }
    }
}
