//! Shard leases: a member runs a shard only while it holds the shard's lease, so no shard of a
//! shard set runs in two pods at once.
//!
//! A lease is a key in a NATS KV bucket whose entries expire [`LEASE_TTL`] after their last write.
//! `create` succeeds for one member while the key exists; the holder renews it with a
//! compare-and-set on its revision every third of the TTL. A holder that cannot renew stops the
//! shard before the TTL runs out ([`Lease::fence_deadline`]), so by the time the key expires and
//! another member can take it, the old one has let go.

use std::time::Duration;

use anyhow::Context;
use arrakis_contract::assignment::{LEASE_BUCKET, LEASE_TTL, shard_key};
use async_nats::jetstream::{self, kv};
use tokio::time::Instant;
use twilight_gateway::ShardId;

use arrakis_support::open_bucket;

/// How often a holder renews.
pub const RENEW_EVERY: Duration = Duration::from_secs(5);
/// A holder stops its shard this long before its lease could expire.
const FENCE_MARGIN: Duration = Duration::from_secs(3);

#[derive(Clone)]
pub struct LeaseStore {
    kv: kv::Store,
    pool: String,
    member: String,
}

/// A held lease.
#[derive(Debug)]
pub struct Lease {
    key: String,
    revision: u64,
    /// When the last successful write was sent: the server's expiry is at least TTL after it.
    written_at: Instant,
}

/// What a renewal found.
#[derive(Debug, PartialEq, Eq)]
pub enum Renewal {
    Renewed,
    /// Someone else wrote the key: the lease is gone, stop the shard now.
    Lost,
    /// NATS did not answer; try again, and stop the shard at the fence deadline.
    Failed,
}

impl Lease {
    /// Past this instant the key may have expired: the holder must have stopped the shard.
    pub fn fence_deadline(&self) -> Instant {
        self.written_at + LEASE_TTL - FENCE_MARGIN
    }
}

impl LeaseStore {
    /// Opens (or creates) the lease bucket, for `member` of `pool`.
    pub async fn open(
        client: async_nats::Client,
        pool: &str,
        member: &str,
    ) -> anyhow::Result<Self> {
        let kv = open_bucket(
            &jetstream::new(client),
            kv::Config {
                bucket: LEASE_BUCKET.into(),
                description: "arrakis-gateway: which member runs each shard".into(),
                history: 1,
                max_age: LEASE_TTL,
                storage: jetstream::stream::StorageType::File,
                ..Default::default()
            },
        )
        .await?;
        Ok(LeaseStore {
            kv,
            pool: pool.to_owned(),
            member: member.to_owned(),
        })
    }

    /// Takes the lease of `shard` if nobody holds it, or if this member does (a restarted pod
    /// keeps its name, and the old process is gone). `None` while another member holds it.
    pub async fn try_acquire(&self, shard: ShardId) -> anyhow::Result<Option<Lease>> {
        let key = shard_key(&self.pool, shard.number(), shard.total());
        let written_at = Instant::now();
        match self.kv.create(&key, self.member.clone().into()).await {
            Ok(revision) => {
                return Ok(Some(Lease {
                    key,
                    revision,
                    written_at,
                }));
            }
            Err(error) if error.kind() == kv::CreateErrorKind::AlreadyExists => {}
            Err(error) => return Err(error).context("taking a shard lease"),
        }
        let Some(entry) = self.kv.entry(&key).await.context("reading a shard lease")? else {
            return Ok(None);
        };
        if entry.operation != kv::Operation::Put || entry.value != self.member.as_bytes() {
            return Ok(None);
        }
        let mut lease = Lease {
            key,
            revision: entry.revision,
            written_at,
        };
        Ok((self.renew(&mut lease).await == Renewal::Renewed).then_some(lease))
    }

    /// Extends `lease` by another TTL.
    pub async fn renew(&self, lease: &mut Lease) -> Renewal {
        let written_at = Instant::now();
        match self
            .kv
            .update(&lease.key, self.member.clone().into(), lease.revision)
            .await
        {
            Ok(revision) => {
                lease.revision = revision;
                lease.written_at = written_at;
                Renewal::Renewed
            }
            Err(error) if error.kind() == kv::UpdateErrorKind::WrongLastRevision => Renewal::Lost,
            Err(error) => {
                tracing::warn!(key = lease.key, %error, "could not renew a shard lease");
                Renewal::Failed
            }
        }
    }

    /// Gives the lease up, so the next member need not wait for it to expire. Only deletes the key
    /// if this lease's write is still the last one.
    pub async fn release(&self, lease: Lease) {
        if let Err(error) = self
            .kv
            .delete_expect_revision(&lease.key, Some(lease.revision))
            .await
        {
            tracing::warn!(key = lease.key, %error, "could not release a shard lease; it expires on its own");
        }
    }
}
