//! The chat engine: a thread-per-core STOMP-over-WebSocket chat server that keeps the
//! wire contract of the Spring server it replaces and scales out through Kafka.
//!
//! ```text
//!  socket ─▶ shard/conn.rs ─▶ proto::ws ─▶ proto::sockjs? ─▶ proto::stomp ─▶ shard/session.rs
//!                                                                              │ SEND
//!                  ┌──────────── shard/router.rs ◀──── chat.rs (JSON, time) ◀──┘
//!                  │   Interest: which shards want it        │ cluster mode
//!                  ▼                                          ▼
//!   fanout.rs: encode once per wire form ─▶ Outbound queues ─▶ conn.rs writer ─▶ socket
//!        ▲ other shards (channel mesh)          bridge/: Kafka out, Kafka in ─▶ router
//! ```
//!
//! Reading path for one message: `shard/conn.rs` reads bytes, `proto/ws.rs` makes frames,
//! `proto/stomp.rs` makes commands (`proto/sockjs.rs` between them for SockJS clients),
//! `shard/router.rs` decides who receives it, `fanout.rs` encodes it once and queues it.
#![warn(missing_docs)]

pub mod bridge;
pub mod chat;
pub mod config;
pub mod fanout;
pub mod interest;
pub mod metrics;
pub mod proto;
pub mod shard;
