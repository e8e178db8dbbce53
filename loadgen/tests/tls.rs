//! The load generator through TLS and with tokens: `wss://` and `https://` (SockJS's
//! WebSocket and `xhr-streaming` transports) through a TLS-terminating proxy made here
//! with rustls (the certificate of `tests/tls/` trusted with `--ca-file`), to an engine
//! that checks HS256 tokens each user signs with `--jwt-secret-file`. Every message must
//! arrive, as over plain sockets.

mod support;

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ServerConfig, ServerConnection};
use support::{float, num, out_dir, run, serial, start_run, Engine};

const SMALL: &[&str] = &[
    "--connections",
    "12",
    "--channels",
    "3",
    "--publishers",
    "3",
    "--rate",
    "60",
    "--duration",
    "1",
    "--warmup",
    "0.5",
];

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tls").join(name)
}

#[test]
fn wss_and_https_with_signed_tokens_deliver_everything() {
    let _serial = serial();
    let dir = out_dir("tls-secret");
    std::fs::create_dir_all(&dir).expect("out dir");
    let secret = dir.join("secret");
    std::fs::write(&secret, "loadgen tls secret\n").expect("write the secret");
    let secret = secret.to_str().expect("utf-8 path");
    let engine = Engine::start(&["--auth-jwt-secret-file", secret]);
    let proxy = tls_proxy(engine.port());
    let ca = fixture("cert.pem");
    let metrics = format!("http://127.0.0.1:{}/metrics", engine.port());
    for (name, target, transport) in [
        ("tls-wss", format!("wss://localhost:{proxy}/ws"), "websocket"),
        (
            "tls-https",
            format!("https://127.0.0.1:{proxy}/letters-chat-server"),
            "websocket",
        ),
        (
            "tls-xhr",
            format!("https://localhost:{proxy}/letters-chat-server"),
            "xhr-streaming",
        ),
    ] {
        let mut args = SMALL.to_vec();
        let ca = ca.to_str().expect("utf-8 path");
        args.extend(["--ca-file", ca, "--jwt-secret-file", secret, "--metrics", &metrics]);
        args.extend(["--transport", transport]);
        let r = run(&target, &out_dir(name), &args);
        let m = &r["messages"];
        assert_eq!(num(&r, &["connections", "ready"]), 12, "{name}: {r}");
        assert_eq!((num(m, &["sent"]), num(m, &["delivered"])), (60, 240), "{name}: {m}");
        assert_eq!((num(m, &["lost"]), num(m, &["duplicates"])), (0, 0), "{name}: {m}");
        assert_eq!(float(m, &["reach"]), 1.0, "{name}");
        assert!(
            r["errors"].as_object().is_some_and(|e| e.is_empty()),
            "{name}: {}",
            r["errors"]
        );
    }
    // Without a token the engine refuses every CONNECT: counted, and the run fails.
    let output = start_run(&engine.ws(), &out_dir("tls-no-token"), SMALL)
        .wait_with_output()
        .expect("loadgen exits");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(!output.status.success() && text.contains("stomp_error=12"), "{text}");
}

/// A TLS-terminating proxy to `127.0.0.1:upstream` on a free port, for the test's life.
fn tls_proxy(upstream: u16) -> u16 {
    let certs = CertificateDer::pem_file_iter(fixture("cert.pem"))
        .expect("cert.pem")
        .collect::<Result<Vec<_>, _>>()
        .expect("certificates");
    let key = PrivateKeyDer::from_pem_file(fixture("key.pem")).expect("key.pem");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("a usable certificate");
    let config = Arc::new(config);
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let Ok(conn) = ServerConnection::new(config.clone()) else {
                continue;
            };
            let Ok(engine) = TcpStream::connect(("127.0.0.1", upstream)) else {
                continue;
            };
            std::thread::spawn(move || {
                let _ = pump(client, conn, engine);
            });
        }
    });
    port
}

/// Moves bytes both ways between a TLS client and the engine until either side ends.
fn pump(mut client: TcpStream, mut tls: ServerConnection, mut engine: TcpStream) -> io::Result<()> {
    client.set_nonblocking(true)?;
    engine.set_nonblocking(true)?;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let mut moved = false;
        match tls.read_tls(&mut client) {
            Ok(0) => return Ok(()),
            Ok(_) => {
                moved = true;
                tls.process_new_packets().map_err(io::Error::other)?;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
        loop {
            match tls.reader().read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(n) => {
                    moved = true;
                    write_fully(&mut engine, &buf[..n])?;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        match engine.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => {
                moved = true;
                tls.writer().write_all(&buf[..n])?;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
        while tls.wants_write() {
            match tls.write_tls(&mut client) {
                Ok(_) => moved = true,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        if !moved {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// Writes all of `bytes` to a non-blocking socket.
fn write_fully(socket: &mut TcpStream, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        match socket.write(bytes) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(1)),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
