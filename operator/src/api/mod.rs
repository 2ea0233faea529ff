//! `arrakis.dev/v1alpha1`: the custom resources users write.

pub mod common;
pub mod nats_consumer;
pub mod nats_stream;
pub mod shard_pool;

pub use common::{GoDuration, NatsConnection, PodOverrides, SecretKeyRef};
pub use nats_consumer::{NatsConsumer, NatsConsumerSpec, NatsConsumerStatus};
pub use nats_stream::{NatsStream, NatsStreamSpec, NatsStreamStatus};
pub use shard_pool::{ShardPool, ShardPoolSpec, ShardPoolStatus};

pub const GROUP: &str = "arrakis.dev";
pub const VERSION: &str = "v1alpha1";
