//! Routers in memory: one executor per shard, joined by a real channel mesh, subscribers
//! that are bare outbound queues read back with the client codec. Each test plays one
//! order or resume flow and checks what each subscriber would see.

use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use glommio::channels::channel_mesh::MeshBuilder;
use glommio::{LocalExecutorBuilder, Placement};
use proto::client::{self, Event};
use proto::stomp::Version;
use proto::Framing;

use super::*;
use crate::ids::SubId;
use crate::outbound::Outbound;

fn settings() -> Settings {
    Settings {
        history: crate::history::Limits {
            per_channel: 100,
            shard_bytes: 1 << 20,
            max_age: Duration::from_secs(60),
        },
        max_history: 50,
        max_catching_up: 1000,
        resume_timeout: Duration::from_secs(5),
    }
}

fn key(id: &'static str) -> WireKey {
    WireKey {
        framing: Framing::Raw,
        version: Version::V1_2,
        subscription: SubId(Bytes::from_static(id.as_bytes())),
    }
}

fn chat(channel: &str, text: &str) -> Message {
    Message::new(
        Bytes::from(format!("/sub/chat/{channel}")),
        Bytes::from(format!(r#"{{"channel":"{channel}","message":"{text}"}}"#)),
    )
}

/// The (message text, x-offset) of every `MESSAGE` queued to `out` so far.
fn received(out: &Outbound) -> Vec<(String, String)> {
    let mut spare = Vec::new();
    if out.is_empty() {
        return Vec::new();
    }
    futures_lite::future::block_on(out.take(&mut spare));
    let mut wire = BytesMut::from(&spare[..]);
    let mut codec = client::Codec::new(Framing::Raw, 1 << 20, 0);
    let mut got = Vec::new();
    while let Ok(Some(event)) = codec.decode(&mut wire) {
        if let Event::Frame(frame) = event {
            let body: serde_json::Value = serde_json::from_slice(&frame.body).unwrap_or_default();
            let offset = String::from_utf8_lossy(frame.header(b"x-offset").unwrap_or_default()).into_owned();
            got.push((body["message"].as_str().unwrap_or_default().to_owned(), offset));
        }
    }
    got
}

fn texts(got: &[(String, String)]) -> Vec<&str> {
    got.iter().map(|(t, _)| t.as_str()).collect()
}

/// A router for shard 0 of 1 with `links`.
fn lone_router(links: Links) -> Rc<Router> {
    Rc::new(Router::new(
        ShardId(0),
        "n",
        1 << 32,
        Arc::new(Interest::new(1)),
        links,
        settings(),
        Arc::new(ShardStats::default()),
    ))
}

/// Runs `test` on one executor with a router for shard 0 of 1.
fn one_shard<F, T>(test: F)
where
    F: FnOnce(Rc<Router>) -> T + Send + 'static,
    T: std::future::Future<Output = ()> + 'static,
{
    let handle = LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(64 * 1024)
        .ring_depth(16)
        .spawn(move || async move {
            let links = Links {
                peers: None,
                kafka: None,
            };
            test(lone_router(links)).await;
        })
        .expect("an executor starts");
    handle.join().expect("the test ran");
}

#[test]
fn one_order_with_positions_and_resume_from_any_of_them() {
    one_shard(|router| async move {
        let live = Rc::new(Outbound::new(1 << 20, Instant::now()));
        router.subscribe(Bytes::from_static(b"/sub/chat/a"), key("s"), ConnId(1), live.clone());
        for i in 0..5 {
            router
                .publish(chat("a", &i.to_string()), Instant::now(), false)
                .await
                .expect("accepted");
        }
        let got = received(&live);
        assert_eq!(texts(&got), ["0", "1", "2", "3", "4"]);
        let positions: Vec<Position> = got
            .iter()
            .map(|(_, o)| Position::parse(o.as_bytes()).expect("every MESSAGE has an x-offset"))
            .collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");

        // A client that saw up to "1" resumes: exactly 2, 3, 4, then live.
        let back = Rc::new(Outbound::new(1 << 20, Instant::now()));
        let recovered = router
            .subscribe_from(
                Bytes::from_static(b"/sub/chat/a"),
                key("s"),
                ConnId(2),
                back.clone(),
                Resume::Since(positions[1]),
            )
            .await;
        assert!(recovered);
        router
            .publish(chat("a", "5"), Instant::now(), false)
            .await
            .expect("accepted");
        assert_eq!(texts(&received(&back)), ["2", "3", "4", "5"]);

        // The last two, then live.
        let join = Rc::new(Outbound::new(1 << 20, Instant::now()));
        let recovered = router
            .subscribe_from(
                Bytes::from_static(b"/sub/chat/a"),
                key("t"),
                ConnId(3),
                join.clone(),
                Resume::Last(2),
            )
            .await;
        assert!(recovered);
        assert_eq!(texts(&received(&join)), ["4", "5"]);

        // A position of another run of the node, or of nothing: live only, not recovered.
        for resume in [
            Resume::Since(Position::new(5 << 32, 2, b"x")),
            Resume::Since(Position::new(positions[0].stream, 2, b"not that message")),
            Resume::Unreadable,
        ] {
            let other = Rc::new(Outbound::new(1 << 20, Instant::now()));
            let recovered = router
                .subscribe_from(
                    Bytes::from_static(b"/sub/chat/a"),
                    key("u"),
                    ConnId(9),
                    other.clone(),
                    resume,
                )
                .await;
            assert!(!recovered, "{resume:?}");
            assert!(received(&other).is_empty(), "{resume:?}");
            router.unsubscribe(b"/sub/chat/a", b"u", ConnId(9));
        }
    });
}

#[test]
fn other_destinations_have_no_positions() {
    one_shard(|router| async move {
        let out = Rc::new(Outbound::new(1 << 20, Instant::now()));
        router.subscribe(Bytes::from_static(b"/sub/notice"), key("s"), ConnId(1), out.clone());
        let notice = Message::new(
            Bytes::from_static(b"/sub/notice"),
            Bytes::from_static(br#"{"message":"n"}"#),
        );
        router.publish(notice, Instant::now(), false).await.expect("accepted");
        assert_eq!(received(&out), [("n".to_owned(), String::new())]);
    });
}

/// Two shards on two executors joined by a mesh; `play` runs on shard 0, shard 1 serves
/// its mesh until shard 0 is done. Returns what `play` returns.
fn two_shards<F, T>(play: F)
where
    F: FnOnce(Rc<Router>, Arc<Interest>) -> T + Send + Clone + 'static,
    T: std::future::Future<Output = ()> + 'static,
{
    let interest = Arc::new(Interest::new(2));
    let mesh = MeshBuilder::<Mesh, _>::full(2, 64);
    let done = Arc::new(Mutex::new(false));
    let handles: Vec<_> = (0..2)
        .map(|_| {
            let (interest, mesh, done, play) = (interest.clone(), mesh.clone(), done.clone(), play.clone());
            LocalExecutorBuilder::new(Placement::Unbound)
                .io_memory(64 * 1024)
                .ring_depth(16)
                .spawn(move || async move {
                    let (senders, mut receivers) = mesh.join().await.expect("joined");
                    let shard = senders.peer_id();
                    let links = Links {
                        peers: Some(senders),
                        kafka: None,
                    };
                    let stats = Arc::new(ShardStats::default());
                    let router = Rc::new(Router::new(
                        ShardId(shard),
                        "n",
                        1 << 32,
                        interest.clone(),
                        links,
                        settings(),
                        stats,
                    ));
                    for (_, receiver) in receivers.streams() {
                        let router = router.clone();
                        glommio::spawn_local(async move { router.serve_peer(receiver).await }).detach();
                    }
                    if shard == 0 {
                        play(router, interest).await;
                        if let Ok(mut done) = done.lock() {
                            *done = true;
                        }
                    } else {
                        while !done.lock().map(|d| *d).unwrap_or(true) {
                            glommio::timer::sleep(Duration::from_millis(5)).await;
                        }
                    }
                })
                .expect("an executor starts")
        })
        .collect();
    for handle in handles {
        handle.join().expect("the test ran");
    }
}

/// A channel name owned by `shard` of 2.
fn owned_by(interest: &Interest, shard: usize) -> String {
    (0..)
        .map(|i| format!("room-{i}"))
        .find(|c| interest.owner(format!("/sub/chat/{c}").as_bytes()) == shard)
        .unwrap_or_default()
}

#[test]
fn the_owner_orders_and_answers_resumes_across_shards() {
    two_shards(|router, interest| async move {
        // Owned by the other shard: every publish from here goes there and back.
        let channel = owned_by(&interest, 1);
        let destination = Bytes::from(format!("/sub/chat/{channel}"));
        let live = Rc::new(Outbound::new(1 << 20, Instant::now()));
        router.subscribe(destination.clone(), key("s"), ConnId(1), live.clone());
        for i in 0..20 {
            router
                .publish(chat(&channel, &i.to_string()), Instant::now(), false)
                .await
                .expect("accepted");
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut got = Vec::new();
        while got.len() < 20 && Instant::now() < deadline {
            glommio::timer::sleep(Duration::from_millis(5)).await;
            got.extend(received(&live));
        }
        let expected: Vec<String> = (0..20).map(|i| i.to_string()).collect();
        assert_eq!(texts(&got), expected.iter().map(String::as_str).collect::<Vec<_>>());
        let fifth = Position::parse(got[4].1.as_bytes()).expect("positioned");

        // Resume on this shard from the owner's history on the other one, while more
        // messages are being published: no gap, no duplicate at the seam.
        let back = Rc::new(Outbound::new(1 << 20, Instant::now()));
        let (resumed, ()) = futures_lite::future::zip(
            router.subscribe_from(
                destination.clone(),
                key("r"),
                ConnId(2),
                back.clone(),
                Resume::Since(fifth),
            ),
            async {
                for i in 20..40 {
                    router
                        .publish(chat(&channel, &i.to_string()), Instant::now(), false)
                        .await
                        .expect("accepted");
                }
            },
        )
        .await;
        assert!(resumed);
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut got = Vec::new();
        while got.len() < 35 && Instant::now() < deadline {
            glommio::timer::sleep(Duration::from_millis(5)).await;
            got.extend(received(&back));
        }
        let expected: Vec<String> = (5..40).map(|i| i.to_string()).collect();
        assert_eq!(texts(&got), expected.iter().map(String::as_str).collect::<Vec<_>>());
    });
}

/// A SEND's receipt waits for Kafka's report of its message, whichever of the two comes
/// first: the connection holding its receipt back, or the report (even one reported twice).
#[test]
fn a_receipt_leaves_on_the_report_whichever_comes_first() {
    let handle = LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(64 * 1024)
        .ring_depth(16)
        .spawn(|| async {
            let (outbound, to_kafka) = crossbeam_channel::bounded(16);
            let acks = bridge::Acks::new(1);
            let kafka = KafkaLink {
                outbound,
                budget: bridge::Budget::new(1 << 20),
                replay: crossbeam_channel::bounded(1).0,
                stats: Arc::new(bridge::Stats::new()),
                echoes: bridge::Echoes::new(1, 100),
                acks: acks.clone(),
            };
            let links = Links {
                peers: None,
                kafka: Some(kafka),
            };
            let router = lone_router(links);
            let serving = router.clone();
            glommio::spawn_local(async move { serving.serve_acks().await }).detach();
            let out = Rc::new(Outbound::new(1 << 20, Instant::now()));
            let publish = |text: &'static str| {
                let router = router.clone();
                async move {
                    match router.publish(chat("a", text), Instant::now(), true).await {
                        Ok(Published::Storing(n)) => n,
                        other => panic!("{other:?}"),
                    }
                }
            };
            let queued = |out: &Outbound| {
                let mut spare = Vec::new();
                if !out.is_empty() {
                    futures_lite::future::block_on(out.take(&mut spare));
                }
                String::from_utf8_lossy(&spare).into_owned()
            };
            let settle = || glommio::timer::sleep(Duration::from_millis(5));

            // The connection holds its receipt back, then the report comes.
            let n = publish("one").await;
            out.hold_until(n, b"R1");
            router.await_stored(n, out.clone());
            let sent = to_kafka.try_recv().expect("handed to Kafka");
            settle().await;
            assert_eq!(queued(&out), "", "no receipt before the report");
            acks.delivered(Some(&sent.id), true);
            settle().await;
            assert_eq!(queued(&out), "R1");

            // The report comes before the connection held its receipt back.
            let n = publish("two").await;
            let sent = to_kafka.try_recv().expect("handed to Kafka");
            acks.delivered(Some(&sent.id), true);
            settle().await;
            out.hold_until(n, b"R2");
            router.await_stored(n, out.clone());
            assert_eq!(queued(&out), "R2");
            assert!(!out.holds_replies());

            // A report that comes twice before the receipt is held back: the first stands.
            let n = publish("three").await;
            let sent = to_kafka.try_recv().expect("handed to Kafka");
            acks.delivered(Some(&sent.id), true);
            acks.delivered(Some(&sent.id), true);
            settle().await;
            out.hold_until(n, b"R3");
            router.await_stored(n, out.clone());
            assert_eq!(queued(&out), "R3");
            assert!(!out.holds_replies());
        })
        .expect("an executor starts");
    handle.join().expect("the test ran");
}
