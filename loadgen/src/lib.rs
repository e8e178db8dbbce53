//! An open-loop, thread-per-core load generator for STOMP-over-WebSocket chat clusters.
//! It plays thousands of users against one engine, several nodes or Nginx, measures
//! delivery latency from each message's *intended* send time (no coordinated omission),
//! counts losses, duplicates and reorders, and breaks everything down per server node and
//! shard, beside its own CPU and the servers'.
//!
//! # Layout
//! - [`cli`] and [`scenario`]: flags (and TOML scenario files) into a checked plan.
//! - [`target`] and [`body`]: URLs and the stamped chat body; the client side of the wire
//!   is `proto::client`, shared with the bench drivers; [`net`] opens the sockets and
//!   [`tls`] runs rustls over them for `wss://` and `https://`.
//! - [`shard`]: the glommio executors: connections, the publish clock, measurements.
//! - [`track`] and [`stats`]: sequence tracking, message tables, histograms, CPU.
//! - [`reconnect`]: the sans-IO part of `--reconnect`/`--resume`: backoff, positions,
//!   the resuming `SUBSCRIBE` and what its `RECEIPT` says.
//! - [`run`], [`sweep`], [`merge`], [`plan`]: the subcommands; [`server`] samples the
//!   servers.
//! - [`report`] and [`output`]: the report (table, JSON), the interval log and SVG plots.
#![warn(missing_docs)]

pub mod body;
pub mod cli;
pub mod merge;
pub mod net;
pub mod output;
pub mod plan;
pub mod reconnect;
pub mod report;
pub mod run;
pub mod scenario;
pub mod server;
pub mod shard;
pub mod stats;
pub mod sweep;
pub mod target;
pub mod tls;
pub mod track;
