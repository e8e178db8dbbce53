//! TLS for `wss://` and `https://` targets, with rustls's sans-IO `ClientConnection`
//! between a glommio `TcpStream` and the connection's own buffers: ciphertext read from
//! the socket goes into the connection, plaintext comes out into the reader's buffer;
//! plaintext written goes in, ciphertext comes out to the socket. No second runtime.
//! [`client_config`] trusts the PEM certificates of `--ca-file` (e.g. the self-signed one
//! `deploy/cluster.sh up --tls` makes) or, without it, the Mozilla roots.

use std::io::{self, Read, Write};
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use futures_lite::{AsyncRead, AsyncWrite};
use glommio::net::TcpStream;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore};

/// The client settings of every TLS connection of a run.
///
/// # Errors
/// An unreadable `ca_file`, or one without a certificate rustls accepts.
pub fn client_config(ca_file: Option<&Path>) -> Result<Arc<ClientConfig>, String> {
    let mut roots = RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("{}: {e}", path.display()))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("{}: {e}", path.display()))?;
            let (added, _) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(format!("{}: no usable PEM certificate", path.display()));
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// One TLS session over a socket: the rustls state and the ciphertext on its way out.
pub struct Session {
    conn: ClientConnection,
    /// Ciphertext not yet written to the socket, from `sent` on.
    outgoing: Vec<u8>,
    sent: usize,
    /// Ciphertext read from the socket that the connection has not taken yet.
    incoming: Vec<u8>,
    /// The handshake is over and its last bytes are written: from then on only writes
    /// (the writer task) touch the socket's sending side, so that the reader never takes
    /// the writer's wake-up.
    established: bool,
}

impl Session {
    /// A session with `server` (its name is checked against the certificate).
    ///
    /// # Errors
    /// A name rustls cannot use.
    pub fn new(config: &Arc<ClientConfig>, server: &str) -> io::Result<Self> {
        let name =
            ServerName::try_from(server.to_owned()).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let mut conn = ClientConnection::new(config.clone(), name).map_err(io::Error::other)?;
        // Writes made before the handshake ends are kept whole, so a write never returns 0.
        conn.set_buffer_limit(None);
        Ok(Session {
            conn,
            outgoing: Vec::new(),
            sent: 0,
            incoming: Vec::new(),
            established: false,
        })
    }

    /// Reads plaintext into `buf`, reading ciphertext from `tcp` (and writing what the
    /// handshake needs) as needed. `Ok(0)`: the server closed.
    pub fn poll_read(&mut self, tcp: &mut TcpStream, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        loop {
            match self.conn.reader().read(buf) {
                Ok(n) => return Poll::Ready(Ok(n)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
            if !self.established {
                ready!(self.poll_flush(tcp, cx))?;
                self.established = !self.conn.is_handshaking();
            }
            if !self.incoming.is_empty() {
                let mut rest = &self.incoming[..];
                let taken = self.conn.read_tls(&mut rest)?;
                self.incoming.drain(..taken);
                self.conn
                    .process_new_packets()
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                continue;
            }
            let mut chunk = [0u8; READ_CHUNK_BYTES];
            let n = ready!(Pin::new(&mut *tcp).poll_read(cx, &mut chunk))?;
            if n == 0 {
                return Poll::Ready(Ok(0));
            }
            self.incoming.extend_from_slice(&chunk[..n]);
        }
    }

    /// Takes all of `buf` as plaintext and starts writing its ciphertext to `tcp`.
    pub fn poll_write(&mut self, tcp: &mut TcpStream, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        ready!(self.poll_flush(tcp, cx))?;
        let n = self.conn.writer().write(buf)?;
        // What is left goes out with the next write or flush.
        if let Poll::Ready(Err(e)) = self.poll_flush(tcp, cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(n))
    }

    /// Writes every pending ciphertext byte to `tcp`.
    pub fn poll_flush(&mut self, tcp: &mut TcpStream, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            if self.sent == self.outgoing.len() {
                self.outgoing.clear();
                self.sent = 0;
                if !self.conn.wants_write() {
                    return Poll::Ready(Ok(()));
                }
                self.conn.write_tls(&mut self.outgoing)?;
                continue;
            }
            let n = ready!(Pin::new(&mut *tcp).poll_write(cx, &self.outgoing[self.sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
        }
    }
}

/// Ciphertext read from the socket at a time (one TLS record and a bit).
const READ_CHUNK_BYTES: usize = 17 * 1024;
