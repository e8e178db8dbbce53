//! Test support: starts the real `chat-engine` binary on a free port and runs the real
//! `loadgen` binary against it, reading back what it wrote. The engine binary comes from
//! `CHAT_ENGINE_BIN`, else from beside the loadgen binary (built there when missing).
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// One test at a time: every test runs two busy processes, and timings are what we test.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A running engine process, killed on drop.
pub struct Engine {
    child: Child,
    port: u16,
    args: Vec<String>,
}

impl Engine {
    /// Starts `chat-engine --listen 127.0.0.1:<free port> --shards 1` with `args` and
    /// waits for `/healthz`.
    pub fn start(args: &[&str]) -> Engine {
        Engine::start_on(free_port(), args)
    }

    /// As `start`, on `port`.
    pub fn start_on(port: u16, args: &[&str]) -> Engine {
        let child = without_chat_env(&mut Command::new(engine_bin()))
            .args([
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--shards",
                "1",
                "--log",
                "warn",
            ])
            .args(args)
            .stdout(Stdio::null())
            .spawn()
            .expect("engine binary starts");
        let args = args.iter().map(|a| a.to_string()).collect();
        let engine = Engine { child, port, args };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if engine.get("/healthz").starts_with("HTTP/1.1 200") {
                return engine;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("engine did not become healthy on port {port}");
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `ws://127.0.0.1:<port>/ws`.
    pub fn ws(&self) -> String {
        format!("ws://127.0.0.1:{}/ws", self.port)
    }

    /// The SockJS endpoint.
    pub fn sockjs(&self) -> String {
        format!("http://127.0.0.1:{}/letters-chat-server", self.port)
    }

    /// The engine's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` to the engine (SIGKILL, SIGSTOP, SIGCONT, ...).
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as i32, signal);
        }
    }

    /// SIGTERM (the engine closes its clients with 1001 and exits), then the same engine
    /// again on the same port once the old one is gone; returns when it is healthy.
    /// Returns how long the port was closed.
    pub fn restart(&mut self) -> Duration {
        self.signal(libc::SIGTERM);
        let _ = self.child.wait();
        let down = Instant::now();
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        let fresh = Engine::start_on(self.port, &args);
        // The old child is reaped: its drop must not signal a pid that may be reused.
        let old = std::mem::replace(self, fresh);
        std::mem::forget(old);
        down.elapsed()
    }

    /// A one-shot GET; the whole answer as text.
    pub fn get(&self, path: &str) -> String {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return String::new();
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        let _ = write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.signal(libc::SIGCONT);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port nothing listens on (right now).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// The engine binary: `CHAT_ENGINE_BIN`, else the one beside the loadgen binary (which
/// `cargo test --workspace` builds), else one built now into a target directory of its own
/// (the running `cargo test` may hold the lock of the main one).
pub fn engine_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("CHAT_ENGINE_BIN") {
        return PathBuf::from(path);
    }
    let loadgen = Path::new(env!("CARGO_BIN_EXE_loadgen"));
    let beside = loadgen.with_file_name("chat-engine");
    if beside.exists() {
        return beside;
    }
    let profile_dir = loadgen.parent().expect("the loadgen binary has a directory");
    let target_dir = profile_dir.with_file_name("loadgen-tests-engine");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "-p", "chat-engine", "--bin", "chat-engine", "--target-dir"])
        .arg(&target_dir)
        .status();
    assert!(
        status.is_ok_and(|s| s.success()),
        "could not build chat-engine; set CHAT_ENGINE_BIN"
    );
    target_dir.join("debug").join("chat-engine")
}

/// A fresh, empty directory for one test's output.
pub fn out_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("loadgen-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// Runs `loadgen` with `args` (quietly, on one shard) and returns its output.
pub fn loadgen(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(args)
        .output()
        .expect("loadgen runs")
}

/// `loadgen run` against `target` with `args`, writing into `out`; returns report.json.
pub fn run(target: &str, out: &Path, args: &[&str]) -> serde_json::Value {
    let output = start_run(target, out, args).wait_with_output().expect("loadgen exits");
    assert!(
        output.status.success(),
        "loadgen {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    report(out)
}

/// Starts `loadgen run` against `target` with `args` (one shard, quiet), writing into
/// `out`; stdout and stderr are piped.
pub fn start_run(target: &str, out: &Path, args: &[&str]) -> std::process::Child {
    let out_str = out.to_str().expect("utf-8 temp path");
    Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["run", "--target", target, "--out", out_str, "--shards", "1", "--quiet"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("loadgen starts")
}

/// Reads `dir/report.json`.
pub fn report(dir: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(dir.join("report.json")).expect("report.json written");
    serde_json::from_str(&text).expect("report.json is JSON")
}

/// `v[a][b]...` as u64 (0 when absent).
pub fn num(v: &serde_json::Value, path: &[&str]) -> u64 {
    path.iter().fold(v, |v, k| &v[*k]).as_u64().unwrap_or(0)
}

/// `v[a][b]...` as f64 (NaN when absent).
pub fn float(v: &serde_json::Value, path: &[&str]) -> f64 {
    path.iter().fold(v, |v, k| &v[*k]).as_f64().unwrap_or(f64::NAN)
}

/// Removes the test runner's `CHAT_*` variables from `command`: the engine reads its
/// settings from them too, and `CHAT_KAFKA_BROKERS` (set for the Kafka tests) would put
/// every engine of every test on one shared topic.
pub fn without_chat_env(command: &mut Command) -> &mut Command {
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("CHAT_") {
            command.env_remove(key);
        }
    }
    command
}
