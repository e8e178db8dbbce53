//! Helpers for integration tests that run the real `chat-engine` binary.
//!
//! `Engine::start` picks a free port, spawns the binary with `--listen` on it,
//! waits until `GET /healthz` answers 200 and stops the process on drop (SIGTERM,
//! then SIGKILL). The engine's output goes to a log file under the cargo target
//! dir; its tail is shown when start-up fails. `skip_unless_required` decides
//! whether a missing external tool (node, Kafka, nginx) skips or fails a test.
#![allow(dead_code)] // Each test crate uses its own subset of these helpers.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use tungstenite::protocol::WebSocket;
use tungstenite::Message;

/// How long `Engine::start` waits for `/healthz` to answer 200.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a stop waits after SIGTERM (the engine drains) before SIGKILL.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// The engine's default SockJS endpoint path.
pub const BASE_PATH: &str = "/letters-chat-server";
/// Environment variable that turns skips for missing tools into failures.
pub const REQUIRE_EXTERNAL_ENV: &str = "CHAT_REQUIRE_EXTERNAL";
/// Environment variable naming another engine binary to test (default: the one
/// cargo built for this test).
pub const ENGINE_BIN_ENV: &str = "CHAT_ENGINE_BIN";

/// A running `chat-engine` process on 127.0.0.1, stopped when dropped.
pub struct Engine {
    child: Child,
    port: u16,
    log_path: PathBuf,
}

impl Engine {
    /// Starts the engine with `--listen 127.0.0.1:<free port>` followed by `args`
    /// and waits until its `/healthz` answers 200.
    ///
    /// # Panics
    /// When the binary cannot be spawned, exits early, or is not ready within
    /// `READY_TIMEOUT`; the message includes the tail of its log.
    pub fn start(args: &[&str]) -> Engine {
        let port = free_port();
        let log_path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("chat-engine-{port}.log"));
        let log = File::create(&log_path).expect("the cargo target tmp dir is writable");
        let log_err = log.try_clone().expect("a just-opened log file can be duplicated");
        let bin = engine_bin();
        let child = without_chat_env(&mut Command::new(&bin))
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {}: {e}", bin.display()));
        let mut engine = Engine { child, port, log_path };
        engine.wait_ready(READY_TIMEOUT);
        engine
    }

    /// The port the engine listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:<port>`, the root of the engine's HTTP endpoints.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The SockJS endpoint, `http://127.0.0.1:<port>/letters-chat-server`.
    pub fn base_url(&self) -> String {
        format!("{}{BASE_PATH}", self.url())
    }

    /// The file holding the engine's stdout and stderr.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The last `lines` lines of the engine's log.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log_path, lines)
    }

    /// `GET path` on the engine; see [`http_get`].
    pub fn get(&self, path: &str) -> Option<(u16, String)> {
        http_get(self.port, path)
    }

    /// Sends SIGTERM and waits for the engine to drain and exit (SIGKILL after
    /// `STOP_TIMEOUT`). Returns how it exited.
    pub fn stop(&mut self) -> ExitStatus {
        if let Ok(Some(status)) = self.child.try_wait() {
            return status;
        }
        if let Ok(pid) = libc::pid_t::try_from(self.child.id()) {
            // SAFETY: kill(2) only sends a signal; `pid` is our own child, which
            // has not been reaped yet (try_wait above saw it running), so the
            // pid cannot have been reused by another process.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        self.child.wait().expect("waiting on a killed child succeeds")
    }

    fn wait_ready(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "chat-engine exited ({status}) before /healthz answered 200; log {}:\n{}",
                    self.log_path.display(),
                    self.log_tail(40)
                );
            }
            let status = self.get("/healthz").map(|(code, _)| code);
            if status == Some(200) {
                return;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                panic!(
                    "chat-engine /healthz answered {status:?} for {timeout:?}; log {}:\n{}",
                    self.log_path.display(),
                    self.log_tail(40)
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The engine binary under test: `$CHAT_ENGINE_BIN` when set, else the one
/// cargo built alongside this test.
pub fn engine_bin() -> PathBuf {
    std::env::var_os(ENGINE_BIN_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_chat-engine")))
}

/// A TCP port on 127.0.0.1 that was free a moment ago: bind port 0, read the
/// port the kernel chose, and let the listener go.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("binding 127.0.0.1:0 succeeds");
    listener.local_addr().expect("a bound listener has an address").port()
}

/// A minimal HTTP/1.1 `GET` on 127.0.0.1:`port` with `Connection: close`.
/// Returns the status code and the raw body (not de-chunked), or `None` when
/// the connection fails or the answer is not HTTP within two seconds.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut response = Vec::new();
    // A read timeout after the head arrived still leaves a usable answer.
    let _ = stream.read_to_end(&mut response);
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let code = head.strip_prefix("HTTP/1.")?.get(2..5)?.parse().ok()?;
    Some((code, body.to_owned()))
}

/// Whether `CHAT_REQUIRE_EXTERNAL=1` is set (as `deploy/test.sh` does).
pub fn external_required() -> bool {
    std::env::var(REQUIRE_EXTERNAL_ENV).is_ok_and(|v| v == "1")
}

/// Reports that `missing` (a tool or service) is unavailable: prints a skip
/// note, or panics when `CHAT_REQUIRE_EXTERNAL=1`. Call it, then return.
///
/// # Panics
/// When `CHAT_REQUIRE_EXTERNAL=1`.
pub fn skip_unless_required(missing: &str) {
    if external_required() {
        panic!("{missing}, and {REQUIRE_EXTERNAL_ENV}=1 forbids skipping");
    }
    eprintln!("skipped: {missing} (set {REQUIRE_EXTERNAL_ENV}=1 to make this a failure)");
}

/// Whether `node --version` runs.
pub fn node_available() -> bool {
    Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs `command` with its output in a log file under the target dir and kills
/// it after `timeout`. Returns whether it exited with 0, and its output.
pub fn run_with_timeout(command: &mut Command, name: &str, timeout: Duration) -> (bool, String) {
    let out_path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}.log", std::process::id()));
    let out = File::create(&out_path).expect("the cargo target tmp dir is writable");
    let err = out.try_clone().expect("a just-opened log file can be duplicated");
    let mut child = command
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot spawn {name}: {e}"));
    let deadline = Instant::now() + timeout;
    let mut output = String::new();
    let success = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break status.success();
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            output = format!("({name} killed after {timeout:?})\n");
            break false;
        }
        thread::sleep(Duration::from_millis(50));
    };
    output.insert_str(0, &fs::read_to_string(&out_path).unwrap_or_default());
    (success, output)
}

fn tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Raw-socket helpers for tests that send hand-made bytes.
impl Engine {
    /// Sends raw bytes, returns everything the server answers until it closes or goes
    /// quiet for 300 ms.
    pub fn raw(&self, bytes: &[u8]) -> Vec<u8> {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return Vec::new();
        };
        s.set_read_timeout(Some(Duration::from_millis(300))).expect("timeout");
        let _ = s.write_all(bytes);
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = s.read(&mut buf) {
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        out
    }

    /// A one-shot HTTP request; the answer as text.
    pub fn http(&self, request: &str) -> String {
        String::from_utf8_lossy(&self.raw(request.as_bytes())).into_owned()
    }
}

/// A WebSocket client (raw STOMP or SockJS framing).
pub struct Client {
    pub ws: WebSocket<TcpStream>,
    pub sockjs: bool,
    /// The `server` header of `CONNECTED`.
    pub server: String,
}

impl Client {
    /// Opens a WebSocket at `path` (no STOMP yet).
    pub fn open(port: u16, path: &str, protocols: Option<&str>) -> WebSocket<TcpStream> {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        stream.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
        let mut request =
            tungstenite::client::IntoClientRequest::into_client_request(format!("ws://127.0.0.1:{port}{path}"))
                .expect("request");
        if let Some(p) = protocols {
            request
                .headers_mut()
                .insert("Sec-WebSocket-Protocol", p.parse().expect("header"));
        }
        let (ws, _) = tungstenite::client::client(request, stream).expect("handshake");
        ws
    }

    /// Raw STOMP 1.2 at `/ws`, CONNECTed.
    pub fn raw(port: u16) -> Client {
        let ws = Self::open(port, "/ws", Some("v12.stomp"));
        let mut c = Client {
            ws,
            sockjs: false,
            server: String::new(),
        };
        c.connect("CONNECT\naccept-version:1.2\nheart-beat:0,0\n\n\0");
        c
    }

    /// SockJS WebSocket transport with the classic client's CONNECT.
    pub fn sockjs(port: u16) -> Client {
        let mut ws = Self::open(port, "/letters-chat-server/123/abcdefgh/websocket", None);
        let open = ws.read().expect("open frame");
        assert_eq!(open, Message::Text("o".into()));
        let mut c = Client {
            ws,
            sockjs: true,
            server: String::new(),
        };
        c.connect("CONNECT\naccept-version:1.1,1.0\nheart-beat:10000,10000\n\n\0");
        c
    }

    fn connect(&mut self, frame: &str) {
        self.send(frame);
        let connected = self.frame();
        assert!(connected.starts_with("CONNECTED\n"), "{connected}");
        self.server = header(&connected, "server").unwrap_or_default();
    }

    /// Sends one STOMP frame (wrapped in a SockJS array when needed).
    pub fn send(&mut self, frame: &str) {
        let text = if self.sockjs {
            serde_json::to_string(&[frame]).expect("json")
        } else {
            frame.to_string()
        };
        self.ws.send(Message::Text(text)).expect("send");
    }

    /// The next STOMP frame (SockJS `h` frames and heart-beats skipped).
    pub fn frame(&mut self) -> String {
        loop {
            match self.ws.read().expect("read a frame") {
                Message::Text(t) if self.sockjs => {
                    let t = t.to_string();
                    if t == "h" {
                        continue;
                    }
                    let frames: Vec<String> =
                        serde_json::from_str(t.strip_prefix('a').expect("a[...] frame")).expect("json array");
                    let frame = frames.into_iter().next().expect("one frame");
                    if frame == "\n" {
                        continue;
                    }
                    return frame;
                }
                Message::Text(t) if t.as_str() == "\n" => continue,
                Message::Text(t) => return t.to_string(),
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    /// Subscribes with a receipt and waits for it.
    pub fn subscribe(&mut self, id: &str, destination: &str) {
        self.send(&format!(
            "SUBSCRIBE\nid:{id}\ndestination:{destination}\nreceipt:r-{id}\n\n\0"
        ));
        let receipt = self.frame();
        assert!(receipt.starts_with("RECEIPT\nreceipt-id:r-"), "{receipt}");
    }

    /// Publishes a chat message to /pub/chat.
    pub fn chat(&mut self, channel: &str, message: &str) {
        let body = serde_json::json!({"channel": channel, "sender": "t@letters.test", "message": message}).to_string();
        self.send(&format!(
            "SEND\ndestination:/pub/chat\ncontent-length:{}\n\n{body}\0",
            body.len()
        ));
    }

    /// Publishes a chat message asking for a receipt (id: `message`, spaces as dashes),
    /// without waiting for it.
    pub fn chat_asking_receipt(&mut self, channel: &str, message: &str) {
        let body = serde_json::json!({"channel": channel, "sender": "t", "message": message}).to_string();
        self.send(&format!(
            "SEND\ndestination:/pub/chat\nreceipt:{}\ncontent-length:{}\n\n{body}\0",
            message.replace(' ', "-"),
            body.len()
        ));
    }

    /// Publishes a chat message and waits for its RECEIPT (with Kafka: once Kafka has
    /// it). Returns the chat messages received meanwhile: a subscriber's own message
    /// may come back first.
    pub fn chat_with_receipt(&mut self, channel: &str, message: &str) -> Vec<String> {
        self.chat_asking_receipt(channel, message);
        let mut early = Vec::new();
        loop {
            let frame = self.frame();
            if frame.starts_with("MESSAGE\n") {
                early.push(chat_text(&frame));
                continue;
            }
            assert_eq!(header(&frame, "receipt-id"), Some(message.replace(' ', "-")), "{frame}");
            return early;
        }
    }

    /// `early` (from [`Client::chat_with_receipt`]), then the `message` field of the next
    /// chat MESSAGEs, `n` in all.
    pub fn chat_messages(&mut self, mut early: Vec<String>, n: usize) -> Vec<String> {
        while early.len() < n {
            let frame = self.frame();
            assert!(frame.starts_with("MESSAGE\n"), "{frame}");
            early.push(chat_text(&frame));
        }
        early
    }

    /// The shard number from the `server` header.
    pub fn shard(&self) -> String {
        self.server.split("shard=").nth(1).unwrap_or_default().to_string()
    }
}

/// The `message` field of a chat MESSAGE's JSON body.
pub fn chat_text(frame: &str) -> String {
    let json: serde_json::Value = serde_json::from_str(body(frame)).expect("json");
    json["message"].as_str().unwrap_or_default().to_owned()
}

/// Opens raw clients until both shards of a 2-shard engine have one.
pub fn clients_on_both_shards(engine: &Engine) -> (Client, Client) {
    let first = Client::raw(engine.port());
    for _ in 0..64 {
        let other = Client::raw(engine.port());
        if other.shard() != first.shard() {
            return (first, other);
        }
    }
    panic!("64 connections all landed on shard {}", first.shard());
}

/// The first value of header `name` in a STOMP frame's text.
pub fn header(frame: &str, name: &str) -> Option<String> {
    let head = frame.split("\n\n").next()?;
    head.lines()
        .skip(1)
        .find_map(|l| l.strip_prefix(&format!("{name}:")).map(str::to_string))
}

/// The body of a STOMP frame's text (up to the NUL).
pub fn body(frame: &str) -> &str {
    frame
        .split_once("\n\n")
        .map(|(_, b)| b.trim_end_matches('\0'))
        .unwrap_or("")
}

/// Completes a WebSocket handshake at `/ws` on a plain socket (with `extra` header lines,
/// each ending in `\r\n`), for sending hand-made frames.
pub fn upgraded_with(engine: &Engine, extra: &str) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", engine.port())).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    let request = format!("GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n");
    s.write_all(request.as_bytes()).expect("write");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).expect("handshake answer");
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&head));
    s
}

/// [`upgraded_with`] without extra headers.
pub fn upgraded(engine: &Engine) -> TcpStream {
    upgraded_with(engine, "")
}

/// Reads frames until a close frame; returns its code.
pub fn close_code(s: &mut TcpStream) -> u16 {
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            break;
        }
        all.extend_from_slice(&buf[..n]);
    }
    let mut at = 0;
    while at + 2 <= all.len() {
        let (op, len) = (all[at] & 0x0f, (all[at + 1] & 0x7f) as usize);
        let (start, len) = match len {
            126 => (at + 4, u16::from_be_bytes([all[at + 2], all[at + 3]]) as usize),
            127 => panic!("huge frame"),
            n => (at + 2, n),
        };
        if op == 0x8 {
            return u16::from_be_bytes([all[start], all[start + 1]]);
        }
        at = start + len;
    }
    panic!("no close frame in {all:?}");
}

/// A masked client frame: `first_byte` (FIN, opcode) and `payload`, any length.
pub fn masked(first_byte: u8, payload: &[u8]) -> Vec<u8> {
    let key = [1u8, 2, 3, 4];
    let mut f = vec![first_byte];
    match payload.len() {
        n if n < 126 => f.push(0x80 | n as u8),
        n if n <= 0xffff => {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(0x80 | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    f.extend_from_slice(&key);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    f
}

impl Engine {
    /// The engine's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The engine's resident memory from `/proc/<pid>/status`, KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    /// `chat_errors_total` of `kind`, summed over shards.
    pub fn errors(&self, kind: &str) -> u64 {
        let metrics = self.http("GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let tag = format!("kind=\"{kind}\"}} ");
        metrics
            .lines()
            .filter(|l| l.starts_with("chat_errors_total{"))
            .filter_map(|l| l.split_once(&tag).and_then(|(_, n)| n.trim().parse::<u64>().ok()))
            .sum()
    }
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

/// Runs `deploy/kafka/kafka.sh` with `args`; true when it succeeded.
pub fn kafka_sh(args: &[&str]) -> bool {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/kafka/kafka.sh");
    Command::new("bash")
        .arg(script)
        .args(args)
        .status()
        .is_ok_and(|s| s.success())
}

/// Starts the broker again when dropped, also when a test fails half-way.
pub struct RestartGuard;

impl Drop for RestartGuard {
    fn drop(&mut self) {
        assert!(
            kafka_sh(&["start"]) || std::thread::panicking(),
            "kafka.sh start failed"
        );
    }
}
