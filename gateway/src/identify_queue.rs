//! One identify queue for every gateway process of a bot, so N pods cold-start at Discord's limit
//! and never above it.
//!
//! Discord allows one identify per rate-limit bucket (`shard_id % max_concurrency`) per 5 s. A
//! grant is a key created in a NATS KV bucket whose entries expire after that interval: `create`
//! succeeds for exactly one caller while the key exists, and the key's expiry reopens the bucket.

use std::time::Duration;

use async_nats::jetstream::{self, kv};
use tokio::sync::oneshot;
use twilight_gateway::queue::Queue;

use arrakis_support::open_bucket;

/// KV bucket of identify grants.
pub const BUCKET: &str = "arrakis-gateway-identify";
/// How often a waiting shard asks again.
const RETRY: Duration = Duration::from_millis(100);
/// Grants outlive Discord's interval by this much, so network jitter between taking a grant and
/// the identify reaching Discord cannot put two identifies of a bucket closer than the limit.
const MARGIN: Duration = Duration::from_millis(250);

#[derive(Clone)]
pub struct SharedQueue {
    kv: kv::Store,
    pool: String,
    max_concurrency: u16,
}

impl SharedQueue {
    /// Opens the grant bucket, creating it with entries that live `interval` (Discord: 5 s).
    pub async fn open(
        client: async_nats::Client,
        pool: &str,
        max_concurrency: u16,
        interval: Duration,
    ) -> anyhow::Result<Self> {
        let lifetime = interval + MARGIN;
        let kv = open_bucket(
            &jetstream::new(client),
            kv::Config {
                bucket: format!("{BUCKET}-{}ms", lifetime.as_millis()),
                description: "arrakis-gateway: identify grants per rate-limit bucket".into(),
                history: 1,
                max_age: lifetime,
                storage: jetstream::stream::StorageType::Memory,
                ..Default::default()
            },
        )
        .await?;
        Ok(SharedQueue {
            kv,
            pool: pool.to_owned(),
            max_concurrency: max_concurrency.max(1),
        })
    }

    /// Waits for a grant for `shard`.
    pub async fn acquire(&self, shard: u32) {
        let key = grant_key(&self.pool, shard, self.max_concurrency);
        loop {
            match self.kv.create(&key, shard.to_string().into()).await {
                Ok(_) => return,
                Err(error) if error.kind() == kv::CreateErrorKind::AlreadyExists => {}
                Err(error) => tracing::warn!(shard, %error, "identify queue unavailable; retrying"),
            }
            tokio::time::sleep(RETRY).await;
        }
    }
}

impl Queue for SharedQueue {
    fn enqueue(&self, shard: u32) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        let queue = self.clone();
        tokio::spawn(async move {
            queue.acquire(shard).await;
            let _ = tx.send(());
        });
        rx
    }
}

/// The grant key of `shard`'s rate-limit bucket: Discord's key is `shard_id % max_concurrency`.
pub fn grant_key(pool: &str, shard: u32, max_concurrency: u16) -> String {
    format!("{pool}.{}", shard % u32::from(max_concurrency.max(1)))
}

/// Any of the queues a shard can wait in.
#[derive(Clone)]
pub enum IdentifyQueue {
    /// Without NATS: this process only.
    Local(twilight_gateway::queue::InMemoryQueue),
    /// Shared by every process of the pool.
    Shared(Box<SharedQueue>),
}

impl Queue for IdentifyQueue {
    fn enqueue(&self, shard: u32) -> oneshot::Receiver<()> {
        match self {
            IdentifyQueue::Local(queue) => queue.enqueue(shard),
            IdentifyQueue::Shared(queue) => queue.enqueue(shard),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::grant_key;

    #[test]
    fn buckets_follow_discords_rate_limit_key() {
        assert_eq!(grant_key("bot", 0, 16), "bot.0");
        assert_eq!(grant_key("bot", 17, 16), "bot.1");
        assert_eq!(grant_key("bot", 5, 1), "bot.0");
        assert_eq!(grant_key("bot", 5, 0), "bot.0", "0 is treated as 1");
    }
}
