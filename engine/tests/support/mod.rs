//! Test support: starts the real `chat-engine` binary on a free port and speaks to it
//! over real sockets, with tungstenite as an independent WebSocket client.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tungstenite::protocol::WebSocket;
use tungstenite::Message;

/// A running engine process, killed on drop.
pub struct Engine {
    child: Child,
    port: u16,
}

impl Engine {
    /// Starts `chat-engine --listen 127.0.0.1:<free port>` with `args`, waits for `/healthz`.
    pub fn start(args: &[&str]) -> Engine {
        let port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_chat-engine"))
            .args(["--listen", &format!("127.0.0.1:{port}"), "--log", "warn"])
            .args(args)
            .stdout(Stdio::null())
            .spawn()
            .expect("engine binary starts");
        let engine = Engine { child, port };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if engine.http("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").starts_with("HTTP/1.1 200") {
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

    /// Sends raw bytes, returns everything the server answers until it closes or goes
    /// quiet for 300 ms.
    pub fn raw(&self, bytes: &[u8]) -> Vec<u8> {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else { return Vec::new() };
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

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            assert!(Instant::now() < deadline, "engine did not exit after SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
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
        let mut request = tungstenite::client::IntoClientRequest::into_client_request(format!("ws://127.0.0.1:{port}{path}")).expect("request");
        if let Some(p) = protocols {
            request.headers_mut().insert("Sec-WebSocket-Protocol", p.parse().expect("header"));
        }
        let (ws, _) = tungstenite::client::client(request, stream).expect("handshake");
        ws
    }

    /// Raw STOMP 1.2 at `/ws`, CONNECTed.
    pub fn raw(port: u16) -> Client {
        let ws = Self::open(port, "/ws", Some("v12.stomp"));
        let mut c = Client { ws, sockjs: false, server: String::new() };
        c.connect("CONNECT\naccept-version:1.2\nheart-beat:0,0\n\n\0");
        c
    }

    /// SockJS WebSocket transport with the classic client's CONNECT.
    pub fn sockjs(port: u16) -> Client {
        let mut ws = Self::open(port, "/letters-chat-server/123/abcdefgh/websocket", None);
        let open = ws.read().expect("open frame");
        assert_eq!(open, Message::Text("o".into()));
        let mut c = Client { ws, sockjs: true, server: String::new() };
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
        let text = if self.sockjs { serde_json::to_string(&[frame]).expect("json") } else { frame.to_string() };
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
                    let frames: Vec<String> = serde_json::from_str(t.strip_prefix('a').expect("a[...] frame")).expect("json array");
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
        self.send(&format!("SUBSCRIBE\nid:{id}\ndestination:{destination}\nreceipt:r-{id}\n\n\0"));
        let receipt = self.frame();
        assert!(receipt.starts_with("RECEIPT\nreceipt-id:r-"), "{receipt}");
    }

    /// Publishes a chat message to /pub/chat.
    pub fn chat(&mut self, channel: &str, message: &str) {
        let body = serde_json::json!({"channel": channel, "sender": "t@letters.test", "message": message}).to_string();
        self.send(&format!("SEND\ndestination:/pub/chat\ncontent-length:{}\n\n{body}\0", body.len()));
    }

    /// The shard number from the `server` header.
    pub fn shard(&self) -> String {
        self.server.split("shard=").nth(1).unwrap_or_default().to_string()
    }
}

/// The first value of header `name` in a STOMP frame's text.
pub fn header(frame: &str, name: &str) -> Option<String> {
    let head = frame.split("\n\n").next()?;
    head.lines().skip(1).find_map(|l| l.strip_prefix(&format!("{name}:")).map(str::to_string))
}

/// The body of a STOMP frame's text (up to the NUL).
pub fn body(frame: &str) -> &str {
    frame.split_once("\n\n").map(|(_, b)| b.trim_end_matches('\0')).unwrap_or("")
}
