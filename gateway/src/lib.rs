//! arrakis-gateway: runs its share of a bot's Discord shards (twilight 0.18), one task per shard,
//! and publishes every dispatch to JetStream under the wire contract of `arrakis-contract`.

pub mod config;
pub mod event_id;
pub mod http;
pub mod identify_queue;
pub mod kv;
pub mod metrics;
pub mod publisher;
pub mod runner;
pub mod sessions;
