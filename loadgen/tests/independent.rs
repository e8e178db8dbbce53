//! loadgen against a server it shares no code with: a small STOMP broker written here on
//! tungstenite's server side (its own WebSocket parser checks every frame loadgen sends:
//! masking, lengths, opcodes, UTF-8) with a strict STOMP 1.2 frame reader (command,
//! `name:value` headers, `content-length` matching the body, the NUL). The run must end
//! with every message delivered, so loadgen does not only agree with its own codecs.

mod support;

use std::collections::HashMap;
use std::io::{ErrorKind, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::Duration;

use support::{num, out_dir, run};
use tungstenite::handshake::server::{Request, Response};
use tungstenite::{Message, WebSocket};

/// One STOMP frame, as read strictly.
#[derive(Debug)]
struct Frame {
    command: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl Frame {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// Reads exactly one STOMP frame (with optional heart-beat newlines before it) from a
/// WebSocket text message, or says what is wrong with it.
fn parse(text: &str) -> Result<Frame, String> {
    let text = text.trim_start_matches(['\n', '\r']);
    let (head, rest) = text.split_once("\n\n").ok_or("no blank line after the headers")?;
    let mut lines = head.lines();
    let command = lines.next().ok_or("no command")?.to_string();
    let mut headers = Vec::new();
    for line in lines {
        let (k, v) = line
            .split_once(':')
            .ok_or_else(|| format!("header without ':': {line:?}"))?;
        headers.push((k.to_string(), v.to_string()));
    }
    let frame = |body: &str| Frame {
        command: command.clone(),
        headers: headers.clone(),
        body: body.to_string(),
    };
    let body = match headers.iter().find(|(k, _)| k == "content-length") {
        Some((_, n)) => {
            let n: usize = n.parse().map_err(|_| format!("bad content-length {n:?}"))?;
            let body = rest.get(..n).ok_or("body shorter than content-length")?;
            if rest.as_bytes().get(n) != Some(&0) {
                return Err("no NUL after content-length bytes".into());
            }
            if rest.len() != n + 1 {
                return Err("bytes after the frame's NUL".into());
            }
            body
        }
        None => rest.strip_suffix('\0').ok_or("no NUL at the end")?,
    };
    Ok(frame(body))
}

fn encode(command: &str, headers: &[(&str, &str)], body: &str) -> Message {
    let mut text = String::from(command);
    text.push('\n');
    for (k, v) in headers {
        text.push_str(&format!("{k}:{v}\n"));
    }
    text.push_str(&format!("content-length:{}\n\n{body}\0", body.len()));
    Message::text(text)
}

/// A broker with one thread per connection: CONNECT, SUBSCRIBE (RECEIPT), SEND to
/// `/pub/chat` fanned out as MESSAGE to the subscribers of `/sub/chat/{channel}`.
struct Broker {
    port: u16,
    stop: Arc<AtomicBool>,
    errors: Arc<Mutex<Vec<String>>>,
}

/// Each destination's subscribers: where their connection's thread takes frames to
/// write, and their subscription id.
type Peers = Arc<Mutex<HashMap<String, Vec<(mpsc::Sender<Message>, String)>>>>;

impl Broker {
    fn start() -> Broker {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        listener.set_nonblocking(true).expect("nonblocking");
        let stop = Arc::new(AtomicBool::new(false));
        let errors = Arc::new(Mutex::new(Vec::new()));
        let subscribers: Peers = Arc::default();
        let (stop_accept, errors_accept) = (stop.clone(), errors.clone());
        thread::spawn(move || {
            while !stop_accept.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let (stop, errors, subs) = (stop_accept.clone(), errors_accept.clone(), subscribers.clone());
                        thread::spawn(move || {
                            serve(stream, &stop, &subs).unwrap_or_else(|e| errors.lock().unwrap().push(e))
                        });
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => thread::sleep(Duration::from_millis(5)),
                    Err(e) => errors_accept.lock().unwrap().push(format!("accept: {e}")),
                }
            }
        });
        Broker { port, stop, errors }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

// tungstenite's handshake callback returns its own (large) error response type.
#[allow(clippy::result_large_err)]
fn serve(mut stream: TcpStream, stop: &AtomicBool, subscribers: &Peers) -> Result<(), String> {
    stream.set_nonblocking(false).map_err(|e| e.to_string())?;
    // loadgen also asks each target for /metrics (server CPU): not an upgrade, a 404.
    let mut head = [0u8; 2048];
    let mut n = 0;
    for _ in 0..100 {
        n = stream.peek(&mut head).map_err(|e| e.to_string())?;
        if head[..n].windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
        thread::sleep(Duration::from_millis(5));
    }
    if !String::from_utf8_lossy(&head[..n])
        .to_ascii_lowercase()
        .contains("upgrade: websocket")
    {
        let _ = stream.write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        return Ok(());
    }
    let ws = tungstenite::accept_hdr(stream, |req: &Request, mut resp: Response| {
        let offered = req
            .headers()
            .get("Sec-WebSocket-Protocol")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if offered.split(',').any(|p| p.trim() == "v12.stomp") {
            resp.headers_mut()
                .insert("Sec-WebSocket-Protocol", "v12.stomp".parse().expect("header"));
        }
        Ok(resp)
    })
    .map_err(|e| format!("handshake: {e}"))?;
    let mut ws: WebSocket<TcpStream> = ws;
    ws.get_ref()
        .set_read_timeout(Some(Duration::from_millis(2)))
        .map_err(|e| e.to_string())?;
    // This thread alone writes to the socket: deliveries come through `inbox`.
    let (outbox, inbox) = mpsc::channel::<Message>();
    while !stop.load(Ordering::Relaxed) {
        while let Ok(delivery) = inbox.try_recv() {
            ws.send(delivery).map_err(|e| format!("deliver: {e}"))?;
        }
        let read = ws.read();
        let text = match read {
            Ok(Message::Text(t)) => t.to_string(),
            Ok(Message::Close(_)) => return Ok(()),
            Ok(Message::Ping(_) | Message::Pong(_)) => continue,
            Ok(other) => return Err(format!("loadgen sent a non-text message: {other:?}")),
            Err(tungstenite::Error::Io(e)) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                continue
            }
            Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => return Ok(()),
            Err(tungstenite::Error::Protocol(tungstenite::error::ProtocolError::ResetWithoutClosingHandshake)) => {
                return Ok(())
            }
            Err(e) => return Err(format!("tungstenite refused what loadgen sent: {e}")),
        };
        if text.chars().all(|c| c == '\n' || c == '\r') {
            continue; // a heart-beat
        }
        let frame = parse(&text).map_err(|e| format!("bad STOMP frame from loadgen ({e}): {text:?}"))?;
        let mut reply = |m: Message| ws.send(m).map_err(|e| format!("send: {e}"));
        match frame.command.as_str() {
            "CONNECT" | "STOMP" => {
                if frame
                    .header("accept-version")
                    .is_none_or(|v| !v.split(',').any(|v| v == "1.2"))
                {
                    return Err(format!("CONNECT without accept-version 1.2: {frame:?}"));
                }
                reply(encode("CONNECTED", &[("version", "1.2"), ("heart-beat", "0,0")], ""))?;
            }
            "SUBSCRIBE" => {
                let (Some(id), Some(destination)) = (frame.header("id"), frame.header("destination")) else {
                    return Err(format!("SUBSCRIBE without id or destination: {frame:?}"));
                };
                subscribers
                    .lock()
                    .unwrap()
                    .entry(destination.to_string())
                    .or_default()
                    .push((outbox.clone(), id.to_string()));
                if let Some(receipt) = frame.header("receipt") {
                    reply(encode("RECEIPT", &[("receipt-id", receipt)], ""))?;
                }
            }
            "SEND" => {
                if frame.header("destination") != Some("/pub/chat") {
                    return Err(format!("SEND elsewhere than /pub/chat: {frame:?}"));
                }
                let json: serde_json::Value =
                    serde_json::from_str(&frame.body).map_err(|e| format!("SEND body is not JSON ({e})"))?;
                let channel = json["channel"].as_str().ok_or("SEND body without channel")?;
                let destination = format!("/sub/chat/{channel}");
                let targets = subscribers
                    .lock()
                    .unwrap()
                    .get(&destination)
                    .cloned()
                    .unwrap_or_default();
                for (i, (peer, id)) in targets.iter().enumerate() {
                    let message_id = format!("{i}");
                    let message = encode(
                        "MESSAGE",
                        &[
                            ("destination", &destination),
                            ("subscription", id),
                            ("message-id", &message_id),
                            ("content-type", "application/json"),
                        ],
                        &frame.body,
                    );
                    // A subscriber that has gone away no longer takes deliveries.
                    let _ = peer.send(message);
                }
            }
            "DISCONNECT" => return Ok(()),
            other => return Err(format!("unexpected command {other}: {frame:?}")),
        }
    }
    Ok(())
}

#[test]
fn an_independent_websocket_and_stomp_server_accepts_every_frame_loadgen_sends() {
    let broker = Broker::start();
    let out = out_dir("independent");
    let r = run(
        &format!("ws://127.0.0.1:{}/ws", broker.port),
        &out,
        &[
            "--connections",
            "12",
            "--channels",
            "3",
            "--publishers",
            "3",
            "--rate",
            "60",
            "--size",
            "300",
            "--duration",
            "2",
            "--warmup",
            "0.5",
        ],
    );
    let errors = broker.errors.lock().unwrap().clone();
    assert!(errors.is_empty(), "{errors:?}");
    let m = &r["messages"];
    assert_eq!(num(&r, &["connections", "ready"]), 12, "{r}");
    assert_eq!(num(m, &["sent"]), 120, "{m}");
    assert_eq!(num(m, &["delivered"]), num(m, &["expected"]), "{m}");
    assert_eq!(num(m, &["expected"]), 480, "{m}");
    assert_eq!(
        (num(m, &["lost"]), num(m, &["duplicates"]), num(m, &["reorders"])),
        (0, 0, 0),
        "{m}"
    );
}
