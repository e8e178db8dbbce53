//! The chat engine: a thread-per-core STOMP-over-WebSocket chat server.
#![warn(missing_docs)]

pub mod proto;
pub mod interest;
pub mod bridge;
