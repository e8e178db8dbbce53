//! The server binary: loads the configuration, starts the shards, waits for them.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use engine::config::Config;
use engine::shard;
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
    tracing::info!(node = %config.node_id, listen = %config.listen, shards = config.shard_count()?, "starting");
    shard::run(config, draining)?;
    tracing::info!("stopped");
    Ok(())
}
