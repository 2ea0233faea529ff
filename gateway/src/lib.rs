//! arrakis-gateway: runs its share of a bot's Discord shards (twilight 0.18), one task per shard,
//! and publishes every dispatch to JetStream under the wire contract of `arrakis-contract`.
//!
//! The shards come from configuration (a range, or the pod ordinal) or from the live assignment in
//! NATS KV ([`live`]), which the operator rewrites to rebalance.

pub mod config;
pub mod event_id;
pub mod host;
pub mod http;
pub mod identify_queue;
pub mod leases;
pub mod live;
pub mod metrics;
pub mod publisher;
pub mod runner;
pub mod sessions;
