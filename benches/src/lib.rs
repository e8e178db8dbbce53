//! Measurement tooling for the chat engine: criterion benches of the hot paths (in
//! `benches/`, one file per engine module), end-to-end fan-out over real sockets, the
//! instruction-count regression gate, and the load drivers behind the flamegraphs.
//!
//! `fixtures` builds inputs, `workload` holds the gate's fixed workloads and `gate` its
//! report; `mesh` and `route` run shards' routers in process (across the channel mesh,
//! and from Kafka batches); `client`, `engine_process` and `rig` drive a real engine
//! over loopback.
#![warn(missing_docs)]

pub mod args;
pub mod client;
pub mod engine_process;
pub mod fixtures;
pub mod gate;
pub mod mesh;
pub mod rig;
pub mod route;
pub mod workload;
