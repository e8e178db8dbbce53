//! The chat engine: a thread-per-core STOMP-over-WebSocket chat server that keeps the
//! wire contract of the Spring server it replaces and scales out through Kafka.
//!
//! # The publish path, socket to subscriber socket (five files)
//! ```text
//!  socket ─▶ shard/conn.rs ─▶ session.rs ─▶ message.rs ─▶ router.rs ─▶ fanout.rs ─▶ shard/conn.rs ─▶ socket
//!            read, drive      STOMP state    one Message   who wants it  encode once   writer task
//!                             (sans-IO,      type, chat    (interest,    per wire form,
//!                             decodes with   JSON + time   mesh, Kafka)  bounded queues
//!                             `proto`)
//! ```
//! 1. [`shard::conn`] reads bytes and hands them to the connection's [`session::Session`],
//!    which decodes them with the `proto` crate (WebSocket, SockJS, STOMP) and answers
//!    `SEND /pub/chat` with an effect carrying a [`message::Message`] (the JSON checked and
//!    timed by [`message::prepare`]).
//! 2. `conn.rs` carries the effect to the shard's [`router::Router`], which gives the
//!    message its id and sends it to the shards whose subscribers want it (the
//!    [`interest::Interest`] table, the channel mesh) or, in cluster mode, to Kafka
//!    ([`bridge`]), which brings it back to every node's interested shards.
//! 3. [`fanout`] encodes the `MESSAGE` once per wire form and appends it to each
//!    subscriber's bounded [`outbound::Outbound`] queue; the shard's writer
//!    (`shard/writer.rs`) sends each queue's burst with one `send()`.
//!
//! The binary (`bin/chat-engine.rs`) reads the [`config`], starts the Kafka [`bridge`]
//! and hands its ports to the [`shard`]s. [`metrics`] renders every shard's counters.
//! With a JWT key configured, the session checks each `CONNECT`'s token and the channels
//! it may use with [`auth`].
#![warn(missing_docs)]

pub mod auth;
pub mod bridge;
pub mod config;
pub mod fanout;
pub mod history;
pub mod ids;
pub mod interest;
pub mod message;
pub mod metrics;
pub mod outbound;
pub mod router;
pub mod session;
pub mod shard;
