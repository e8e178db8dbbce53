//! What a router takes from the configuration, with the command line's defaults.

use crate::history;

/// What a router needs from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// History bounds of this shard.
    pub history: history::Limits,
    /// Largest `x-history` a client may ask for.
    pub max_history: usize,
    /// Most live messages a catching-up subscriber may have waiting.
    pub max_catching_up: usize,
    /// How long a resume waits for its owner or a replay before answering "not recovered".
    pub resume_timeout: std::time::Duration,
}

impl Default for Settings {
    /// The command line's defaults.
    fn default() -> Self {
        Settings {
            history: history::Limits {
                per_channel: 1000,
                shard_bytes: 64 << 20,
                max_age: std::time::Duration::from_secs(3600),
            },
            max_history: 200,
            max_catching_up: 10_000,
            resume_timeout: std::time::Duration::from_secs(10),
        }
    }
}
