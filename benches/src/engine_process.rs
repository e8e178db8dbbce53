//! Starts the real `chat-engine` binary for end-to-end measurements and stops it when
//! dropped. The binary is found through `CHAT_ENGINE_BIN`, then `$CARGO_TARGET_DIR/release`,
//! then the workspace's `target/release`; building it is the caller's job
//! (`cargo build --release -p chat-engine`). Also reads the engine's `/metrics`.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running engine on loopback, killed on drop.
#[derive(Debug)]
pub struct EngineProcess {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddrV4,
}

impl EngineProcess {
    /// Starts one shard pinned to core `cpu` on a free loopback port, with `extra`
    /// flags, and waits until `/healthz` answers.
    ///
    /// # Errors
    /// No binary, a failed start, or no health answer within 10 s.
    pub fn start(cpu: usize, extra: &[&str]) -> io::Result<Self> {
        let bin = find_binary()?;
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let addr = SocketAddrV4::new(Ipv4Addr::LOCALHOST, port);
        let child = Command::new(&bin)
            .args([
                "--listen",
                &addr.to_string(),
                "--shards",
                "1",
                "--cpus",
                &cpu.to_string(),
                "--log",
                "warn",
                // One publisher drives the whole load: no per-connection rate limit.
                "--max-publish-rate",
                "0",
            ])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .map_err(|e| io::Error::other(format!("cannot start {}: {e}", bin.display())))?;
        let mut engine = Self { child, addr };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = engine.child.try_wait() {
                return Err(io::Error::other(format!("{} exited at start: {status}", bin.display())));
            }
            if http_get(addr, "/healthz").is_ok_and(|r| r.starts_with("HTTP/1.1 200")) {
                return Ok(engine);
            }
            if Instant::now() > deadline {
                return Err(io::Error::other("engine did not answer /healthz within 10 s"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The engine's process id (for profilers).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A gauge or counter from `/metrics` (the first series named `name`).
    ///
    /// # Errors
    /// I/O errors or a missing series.
    pub fn metric(&self, name: &str) -> io::Result<f64> {
        let text = http_get(self.addr, "/metrics")?;
        text.lines()
            .filter(|line| line.starts_with(name) && line[name.len()..].starts_with(['{', ' ']))
            .find_map(|line| line.rsplit(' ').next()?.parse().ok())
            .ok_or_else(|| io::Error::other(format!("/metrics has no {name}")))
    }
}

impl Drop for EngineProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The engine binary: `CHAT_ENGINE_BIN`, else `release/chat-engine` under
/// `CARGO_TARGET_DIR` or the workspace's `target/`.
///
/// # Errors
/// When none exists, with the command that builds it.
pub fn find_binary() -> io::Result<PathBuf> {
    if let Some(bin) = std::env::var_os("CHAT_ENGINE_BIN") {
        return Ok(PathBuf::from(bin));
    }
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut candidates = Vec::new();
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        candidates.push(workspace.join(dir).join("release/chat-engine"));
    }
    candidates.push(workspace.join("target/release/chat-engine"));
    candidates.into_iter().find(|p| p.is_file()).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            "no chat-engine binary: run `cargo build --release -p chat-engine` first, or set CHAT_ENGINE_BIN",
        )
    })
}

/// Pins the calling thread to core `cpu`.
///
/// # Errors
/// When the core does not exist or the call is refused.
pub fn pin_current_thread(cpu: usize) -> io::Result<()> {
    // SAFETY: `set` is a plain bit set owned by this frame; the call only reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// A core from the environment variable `var`, else `default`.
pub fn cpu_from_env(var: &str, default: usize) -> usize {
    std::env::var(var).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// One `GET` with `Connection: close`; returns the whole response as text (read up to
/// its `Content-Length`, so a server that keeps the connection open is fine too).
///
/// # Errors
/// I/O errors (2 s timeouts).
pub fn http_get(addr: SocketAddrV4, path: &str) -> io::Result<String> {
    let mut stream = TcpStream::connect_timeout(&addr.into(), Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.write_all(format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").as_bytes())?;
    let mut response = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        if let Some(head) = response.windows(4).position(|w| w == b"\r\n\r\n") {
            let text = String::from_utf8_lossy(&response[..head]).to_ascii_lowercase();
            let length = text
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok());
            if length.is_some_and(|n| response.len() >= head + 4 + n) {
                break;
            }
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        response.extend_from_slice(&chunk[..n]);
    }
    Ok(String::from_utf8_lossy(&response).into_owned())
}
