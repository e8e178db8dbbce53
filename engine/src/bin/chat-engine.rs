//! The server binary: loads the configuration, starts the Kafka bridge (cluster mode) and
//! the shards, waits for them to drain, then stops the bridge.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use engine::bridge::Bridge;
use engine::config::Config;
use engine::interest::Interest;
use engine::shard::{self, Cluster};
use tracing_subscriber::util::SubscriberInitExt as _;

fn main() -> Result<(), shard::Error> {
    let config = match Config::load(std::env::args()) {
        Ok(config) => config,
        Err(engine::config::Error::Cli(e)) => e.exit(),
        Err(e) => return Err(e.into()),
    };
    config.log_subscriber(std::io::stderr).init();
    let draining = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        if let Err(e) = signal_hook::flag::register(signal, draining.clone()) {
            tracing::warn!(error = %e, signal, "cannot watch signal");
        }
    }
    let shards = config.shard_count()?;
    tracing::info!(node = %config.node_id, listen = %config.listen, shards, "starting");
    let interest = Arc::new(Interest::new(shards));
    let (bridge, cluster) = match config.bridge() {
        Some(cfg) => {
            let (bridge, ports) = Bridge::start(&cfg, shards, interest.clone())?;
            let stats = bridge.stats();
            (Some(bridge), Some(Cluster { stats, ports }))
        }
        None => (None, None),
    };
    let result = shard::run(config, interest, cluster, draining);
    if let Some(bridge) = bridge {
        bridge.shutdown();
    }
    result?;
    tracing::info!("stopped");
    Ok(())
}
