//! Replay speed to one resuming client: starts a one-shard engine (core `--cpu`, 0),
//! publishes `--messages` (100,000) chat messages of 128 B into one channel, then a new
//! connection SUBSCRIBEs with `x-since` the first message's `x-offset` and the time until
//! the last replayed MESSAGE is read gives messages per second. From memory by default
//! (the history holds them all); with `--kafka-brokers HOST:PORT` the node keeps a history
//! of 16, so the range is read back from the partition. Build first:
//! `cargo build --release -p chat-engine -p benches`, then `target/release/replay`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use benches::args::Flags;
use benches::client::{self, FrameCounter};
use benches::engine_process::EngineProcess;
use bytes::BytesMut;
use proto::client::{Codec, Event};
use proto::stomp::Command;
use proto::Framing;

const CHANNEL: &str = "replay";

fn main() -> ExitCode {
    match run(&Flags::from_env()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("replay: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(flags: &Flags) -> Result<(), String> {
    let messages: usize = flags.get("messages", 100_000)?;
    let n = messages.to_string();
    let topic = format!("replay-bench-{}", std::process::id());
    // Outbound queues large enough that the watcher is never dropped as a slow consumer.
    let mut extra = vec![
        "--replay-max",
        &n,
        "--history-mib",
        "1024",
        "--max-outbound-bytes",
        "268435456",
    ];
    let source = match flags.raw("kafka-brokers") {
        Some(brokers) => {
            extra.extend(["--kafka-brokers", brokers, "--kafka-topic", &topic]);
            extra.extend(["--history-messages", "16", "--max-history", "16"]);
            "Kafka"
        }
        None => {
            extra.extend(["--history-messages", &n, "--max-history", "200"]);
            "memory"
        }
    };
    let engine = EngineProcess::start(flags.get("cpu", 0)?, &extra).map_err(|e| e.to_string())?;
    let destination = format!("/sub/chat/{CHANNEL}");

    // A watcher reads the first message's position and waits until all were delivered.
    let mut watcher = client::open(engine.addr, None, "/ws", &[(&destination, "w")]).map_err(|e| e.to_string())?;
    let mut publisher = client::open(engine.addr, None, "/ws", &[]).map_err(|e| e.to_string())?;
    let started = Instant::now();
    let watching = std::thread::spawn(move || {
        let (first, rest) = first_offset(&mut watcher)?;
        count_frames(&mut watcher, &rest, messages - 1).map(|()| first)
    });
    publish(&mut publisher, messages)?;
    let first = watching.join().map_err(|_| "the watcher panicked")??;
    eprintln!(
        "replay: {messages} messages published and delivered live in {:.2} s",
        started.elapsed().as_secs_f64()
    );

    let mut resumer = client::open(engine.addr, None, "/ws", &[]).map_err(|e| e.to_string())?;
    let mut codec = Codec::new(Framing::Raw, 1 << 20, 7);
    let mut out = BytesMut::new();
    let headers: [(&str, &[u8]); 4] = [
        ("id", b"r"),
        ("destination", destination.as_bytes()),
        ("x-since", first.as_bytes()),
        ("receipt", b"resumed"),
    ];
    codec.encode(Command::Subscribe, &headers, b"", &mut out);
    let asked = Instant::now();
    resumer.write_all(&out).map_err(|e| e.to_string())?;
    // The replayed messages (all but the first) and the RECEIPT.
    count_frames(&mut resumer, &[], messages)?;
    let took = asked.elapsed().as_secs_f64();
    println!(
        "replay: {} messages from {source} to one resuming client in {:.3} s: {:.0} msgs/s",
        messages - 1,
        took,
        (messages - 1) as f64 / took
    );
    Ok(())
}

/// Writes `n` SENDs of a 128-byte chat body to `/pub/chat`, pipelined.
fn publish(stream: &mut TcpStream, n: usize) -> Result<(), String> {
    let mut codec = Codec::new(Framing::Raw, 1 << 20, 11);
    let mut out = BytesMut::with_capacity(1 << 20);
    for i in 0..n {
        let body = format!(r#"{{"channel":"{CHANNEL}","sender":"bench","message":"{i:0>80}"}}"#);
        codec.encode(
            Command::Send,
            &[("destination", b"/pub/chat")],
            body.as_bytes(),
            &mut out,
        );
        if out.len() > 1 << 19 {
            stream.write_all(&out).map_err(|e| e.to_string())?;
            out.clear();
        }
    }
    stream.write_all(&out).map_err(|e| e.to_string())
}

/// Reads until the first MESSAGE; returns its `x-offset` and the bytes read after it.
fn first_offset(stream: &mut TcpStream) -> Result<(String, BytesMut), String> {
    let mut codec = Codec::new(Framing::Raw, 1 << 20, 13);
    let mut buf = BytesMut::with_capacity(1 << 16);
    let mut chunk = vec![0u8; 1 << 16];
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    loop {
        match codec.decode(&mut buf).map_err(|e| e.to_string())? {
            Some(Event::Frame(frame)) if frame.command == Command::Message => {
                let offset = frame.header(b"x-offset").ok_or("the MESSAGE has no x-offset")?;
                return Ok((String::from_utf8_lossy(offset).into_owned(), buf));
            }
            Some(_) => {}
            None => {
                let n = stream.read(&mut chunk).map_err(|e| e.to_string())?;
                if n == 0 {
                    return Err("the engine closed the connection".into());
                }
                buf.extend_from_slice(&chunk[..n]);
            }
        }
    }
}

/// Reads until `n` WebSocket text frames have arrived, counting those in `read` (bytes
/// already read from the stream) first.
fn count_frames(stream: &mut TcpStream, read: &[u8], n: usize) -> Result<(), String> {
    let mut counter = FrameCounter::default();
    let mut chunk = vec![0u8; 1 << 16];
    let mut seen = counter.feed(read);
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    while seen < n as u64 {
        let got = stream
            .read(&mut chunk)
            .map_err(|e| format!("after {seen} of {n} frames: {e}"))?;
        if got == 0 {
            return Err(format!("the engine closed the connection after {seen} of {n} frames"));
        }
        seen += counter.feed(&chunk[..got]);
    }
    Ok(())
}
