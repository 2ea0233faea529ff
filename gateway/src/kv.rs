//! NATS KV buckets the gateway keeps its coordination state in.

use anyhow::Context;
use async_nats::jetstream::{self, kv};

/// Opens `config.bucket`, creating it with `config` if it does not exist. Creating with the same
/// config is idempotent, so processes starting together do not conflict.
pub async fn open_bucket(
    client: async_nats::Client,
    config: kv::Config,
) -> anyhow::Result<kv::Store> {
    let js = jetstream::new(client);
    if let Ok(store) = js.get_key_value(&config.bucket).await {
        return Ok(store);
    }
    let name = config.bucket.clone();
    js.create_key_value(config)
        .await
        .with_context(|| format!("creating the KV bucket {name}"))
}
