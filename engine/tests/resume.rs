//! Resuming over real sockets on one node without Kafka: `x-offset` on every chat
//! MESSAGE, `x-since` after a dropped connection (every missed message once, in order,
//! then live), `x-history` on join, and the answers to positions the node cannot serve
//! (unreadable, or from before a restart).

mod common;

use common::{body, header, Client, Engine};

/// Reads `n` chat MESSAGEs; returns (message text, x-offset) of each.
fn messages(client: &mut Client, n: usize) -> Vec<(String, String)> {
    (0..n)
        .map(|_| {
            let frame = client.frame();
            assert!(frame.starts_with("MESSAGE\n"), "{frame}");
            let json: serde_json::Value = serde_json::from_str(body(&frame)).expect("json body");
            let offset = header(&frame, "x-offset").unwrap_or_else(|| panic!("no x-offset: {frame}"));
            (json["message"].as_str().unwrap_or_default().to_string(), offset)
        })
        .collect()
}

fn texts(got: &[(String, String)]) -> Vec<&str> {
    got.iter().map(|(m, _)| m.as_str()).collect()
}

fn names(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("m{i}")).collect()
}

/// Subscribes with `extra` headers and a receipt; returns the RECEIPT frame. MESSAGEs
/// that come before it (a catch-up may be written first) are appended to `early`.
fn subscribe_with(client: &mut Client, id: &str, channel: &str, extra: &str, early: &mut Vec<String>) -> String {
    client.send(&format!(
        "SUBSCRIBE\nid:{id}\ndestination:/sub/chat/{channel}\n{extra}receipt:r-{id}\n\n\0"
    ));
    loop {
        let frame = client.frame();
        if frame.starts_with("RECEIPT\n") {
            return frame;
        }
        early.push(frame);
    }
}

/// Reads frames until `n` MESSAGEs have been read, counting those already in `early`.
fn catch_up(client: &mut Client, early: Vec<String>, n: usize) -> Vec<(String, String)> {
    let mut got: Vec<(String, String)> = early
        .iter()
        .map(|frame| {
            assert!(frame.starts_with("MESSAGE\n"), "{frame}");
            let json: serde_json::Value = serde_json::from_str(body(frame)).expect("json body");
            let offset = header(frame, "x-offset").expect("x-offset");
            (json["message"].as_str().unwrap_or_default().to_string(), offset)
        })
        .collect();
    let more = n.checked_sub(got.len()).expect("no more messages than asked for");
    got.extend(messages(client, more));
    got
}

#[test]
fn a_dropped_subscriber_resumes_with_every_missed_message_once_then_live() {
    let engine = Engine::start(&["--shards", "2", "--cpus", "0"]);
    let mut publisher = Client::raw(engine.port());
    let mut steady = Client::raw(engine.port());
    steady.subscribe("s", "/sub/chat/room");
    let mut leaving = Client::raw(engine.port());
    leaving.subscribe("s", "/sub/chat/room");

    for i in 0..10 {
        publisher.chat("room", &format!("m{i}"));
    }
    let seen = messages(&mut leaving, 10);
    assert_eq!(texts(&seen), names(0..10));
    let last = seen[9].1.clone();
    drop(leaving); // the socket closes without DISCONNECT

    for i in 10..25 {
        publisher.chat("room", &format!("m{i}"));
    }
    let all = messages(&mut steady, 25);
    assert_eq!(texts(&all), names(0..25));
    let mut offsets: Vec<&str> = all.iter().map(|(_, o)| o.as_str()).collect();
    offsets.dedup();
    assert_eq!(offsets.len(), 25, "every message has its own position");
    assert_eq!(&seen[..], &all[..10], "a message has the same position on every shard");

    let mut back = Client::raw(engine.port());
    let mut early = Vec::new();
    let receipt = subscribe_with(&mut back, "s2", "room", &format!("x-since:{last}\n"), &mut early);
    assert_eq!(header(&receipt, "x-recovered").as_deref(), Some("true"), "{receipt}");
    let missed = catch_up(&mut back, early, 15);
    assert_eq!(
        &missed[..],
        &all[10..],
        "the missed messages, once, in order, with their positions"
    );

    // Live again, with no gap and no duplicate at the seam.
    for i in 25..30 {
        publisher.chat("room", &format!("m{i}"));
    }
    assert_eq!(texts(&messages(&mut back, 5)), names(25..30));
    assert_eq!(texts(&messages(&mut steady, 5)), names(25..30));
    // A position that is the newest resumes with nothing to catch up on.
    let newest = messages_after_publishing(&mut publisher, &mut steady, "room", "m30");
    let mut again = Client::raw(engine.port());
    let mut early = Vec::new();
    let receipt = subscribe_with(&mut again, "s3", "room", &format!("x-since:{newest}\n"), &mut early);
    assert_eq!(header(&receipt, "x-recovered").as_deref(), Some("true"), "{receipt}");
    assert!(early.is_empty(), "{early:?}");
    publisher.chat("room", "m31");
    assert_eq!(texts(&messages(&mut again, 1)), ["m31"]);
}

/// Publishes one message and returns its position as `steady` saw it.
fn messages_after_publishing(publisher: &mut Client, steady: &mut Client, channel: &str, text: &str) -> String {
    publisher.chat(channel, text);
    let got = messages(steady, 1);
    assert_eq!(got[0].0, text);
    got[0].1.clone()
}

#[test]
fn history_on_join_gives_the_last_messages_then_live() {
    let engine = Engine::start(&["--shards", "2", "--cpus", "0", "--max-history", "50"]);
    let mut publisher = Client::raw(engine.port());
    for i in 0..20 {
        publisher.chat("lobby", &format!("m{i}"));
    }
    // Wait until the node has all 20 (a subscriber of the channel sees the last one).
    let mut watcher = Client::raw(engine.port());
    let mut early = Vec::new();
    subscribe_with(&mut watcher, "w", "lobby", "x-history:20\n", &mut early);
    assert_eq!(texts(&catch_up(&mut watcher, early, 20)), names(0..20));

    let mut joining = Client::raw(engine.port());
    let mut early = Vec::new();
    subscribe_with(&mut joining, "j", "lobby", "x-history:5\n", &mut early);
    assert_eq!(texts(&catch_up(&mut joining, early, 5)), names(15..20));
    publisher.chat("lobby", "m20");
    assert_eq!(texts(&messages(&mut joining, 1)), ["m20"]);

    // Above the cap: an ERROR naming the header, and the connection closes.
    let mut greedy = Client::raw(engine.port());
    greedy.send("SUBSCRIBE\nid:g\ndestination:/sub/chat/lobby\nx-history:51\n\n\0");
    let error = greedy.frame();
    assert!(error.starts_with("ERROR\n"), "{error}");
    assert!(
        header(&error, "message").is_some_and(|m| m.contains("x-history")),
        "{error}"
    );
    // Others are unaffected.
    publisher.chat("lobby", "m21");
    assert_eq!(texts(&messages(&mut joining, 1)), ["m21"]);
}

#[test]
fn positions_the_node_cannot_serve_answer_not_recovered() {
    let mut first = Engine::start(&["--shards", "1"]);
    let mut publisher = Client::raw(first.port());
    let mut sub = Client::raw(first.port());
    sub.subscribe("s", "/sub/chat/r");
    publisher.chat("r", "before");
    let before = messages(&mut sub, 1)[0].1.clone();
    drop((publisher, sub));
    first.stop();

    // A new process keeps nothing of the old one: the position is refused, not misread.
    let second = Engine::start(&["--shards", "1"]);
    let mut publisher = Client::raw(second.port());
    for (id, since) in [("old", before.as_str()), ("junk", "not-a-position"), ("empty", "")] {
        let mut client = Client::raw(second.port());
        let mut early = Vec::new();
        let receipt = subscribe_with(&mut client, id, "r", &format!("x-since:{since}\n"), &mut early);
        assert_eq!(
            header(&receipt, "x-recovered").as_deref(),
            Some("false"),
            "{id}: {receipt}"
        );
        assert!(early.is_empty(), "{id}: {early:?}");
        // Live delivery works all the same.
        publisher.chat("r", id);
        assert_eq!(texts(&messages(&mut client, 1)), [id]);
    }
}
