//! The worker's state in NATS KV, in place of the seed's Redis StateManager.
//!
//! | bucket | key | what |
//! |---|---|---|
//! | `arrakis-idempotency` | `<scope>.<event id>` | events whose effect is done; entries live 24 h |
//! | `arrakis-members` | `<guild>.<user>` | member profiles (JSON) |
//! | `arrakis-communities` | `<guild>` | communities: the guilds the bot is in (JSON) |
//! | `arrakis-cooldowns` | `<scope>.<user>` | a cooldown, expiring on its own (per-key TTL) |
//! | `arrakis-rate-limits` | `<scope>.<user>` | recent hits of a sliding window (JSON) |
//! | `arrakis-flows` | `<flow>.<user>` | multi-step sessions (JSON), expiring on their own |
//!
//! Records changed by events are updated with compare-and-set and remember the last event ids
//! applied to them, so an event redelivered after a crash changes them once.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use arrakis_support::open_bucket as open;
use async_nats::jetstream::{self, kv};
use futures::TryStreamExt;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

const COOLDOWNS: &str = "arrakis-cooldowns";
const FLOWS: &str = "arrakis-flows";
pub const IDEMPOTENCY_TTL: Duration = Duration::from_secs(24 * 3600);
/// How many applied event ids a record remembers.
const APPLIED_MEMORY: usize = 64;

/// A record that events change.
pub trait Applied {
    fn applied(&mut self) -> &mut Vec<String>;
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberProfile {
    pub guild_id: String,
    pub user_id: String,
    pub username: Option<String>,
    pub roles: Vec<String>,
    pub joined_at: Option<String>,
    pub active: bool,
    /// Member events seen for this member: the leaderboard's score.
    pub activity: u64,
    pub badges: Vec<String>,
    pub updated_ms: u64,
    #[serde(default)]
    pub applied: Vec<String>,
}

impl Applied for MemberProfile {
    fn applied(&mut self) -> &mut Vec<String> {
        &mut self.applied
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Community {
    pub guild_id: String,
    pub name: Option<String>,
    pub active: bool,
    /// As Discord reported it when the bot joined.
    pub member_count: Option<u64>,
    pub joined_ms: Option<u64>,
    pub left_ms: Option<u64>,
    #[serde(default)]
    pub applied: Vec<String>,
}

impl Applied for Community {
    fn applied(&mut self) -> &mut Vec<String> {
        &mut self.applied
    }
}

#[derive(Clone)]
pub struct State {
    js: jetstream::Context,
    idempotency: kv::Store,
    members: kv::Store,
    communities: kv::Store,
    cooldowns: kv::Store,
    rate_limits: kv::Store,
    flows: kv::Store,
}

/// Whether an update changed the record.
#[derive(Debug, PartialEq, Eq)]
pub enum Change {
    Applied,
    /// This event had already been applied (a redelivery).
    AlreadyApplied,
}

impl State {
    pub async fn open(js: &jetstream::Context) -> anyhow::Result<Self> {
        let bucket =
            |name: &str, description: &str, max_age: Duration, ttl_markers: bool| kv::Config {
                bucket: name.to_owned(),
                description: description.to_owned(),
                history: 1,
                max_age,
                storage: jetstream::stream::StorageType::File,
                limit_markers: ttl_markers.then_some(Duration::from_secs(1)),
                ..Default::default()
            };
        Ok(State {
            js: js.clone(),
            idempotency: open(
                js,
                bucket(
                    "arrakis-idempotency",
                    "events whose effect is done",
                    IDEMPOTENCY_TTL,
                    false,
                ),
            )
            .await?,
            members: open(
                js,
                bucket("arrakis-members", "member profiles", Duration::ZERO, false),
            )
            .await?,
            communities: open(
                js,
                bucket(
                    "arrakis-communities",
                    "communities (guilds)",
                    Duration::ZERO,
                    false,
                ),
            )
            .await?,
            cooldowns: open(
                js,
                bucket(
                    COOLDOWNS,
                    "cooldowns per user and command",
                    Duration::ZERO,
                    true,
                ),
            )
            .await?,
            rate_limits: open(
                js,
                bucket(
                    "arrakis-rate-limits",
                    "sliding-window rate limits",
                    Duration::from_secs(24 * 3600),
                    false,
                ),
            )
            .await?,
            flows: open(
                js,
                bucket(FLOWS, "multi-step sessions", Duration::ZERO, true),
            )
            .await?,
        })
    }

    /// Whether `event_id`'s effect in `scope` (a consumer) is already done.
    pub async fn is_done(&self, scope: &str, event_id: &str) -> anyhow::Result<bool> {
        Ok(self
            .idempotency
            .get(key(&[scope, event_id]))
            .await
            .context("reading the idempotency record")?
            .is_some())
    }

    pub async fn mark_done(&self, scope: &str, event_id: &str) -> anyhow::Result<()> {
        self.idempotency
            .put(key(&[scope, event_id]), now_ms().to_string().into())
            .await
            .context("writing the idempotency record")?;
        Ok(())
    }

    pub async fn member(&self, guild: &str, user: &str) -> anyhow::Result<Option<MemberProfile>> {
        Ok(read::<MemberProfile>(&self.members, &key(&[guild, user]))
            .await?
            .map(|(v, _)| v))
    }

    /// Every profile of `guild`.
    pub async fn members_of(&self, guild: &str) -> anyhow::Result<Vec<MemberProfile>> {
        let prefix = format!("{}.", key(&[guild]));
        let keys: Vec<String> = self
            .members
            .keys()
            .await
            .context("listing members")?
            .try_filter(|k| futures::future::ready(k.starts_with(&prefix)))
            .try_collect()
            .await
            .context("listing members")?;
        let mut profiles = Vec::with_capacity(keys.len());
        for k in keys {
            if let Some((profile, _)) = read::<MemberProfile>(&self.members, &k).await? {
                profiles.push(profile);
            }
        }
        Ok(profiles)
    }

    /// Applies `event_id`'s change to a member's profile, once.
    pub async fn update_member(
        &self,
        guild: &str,
        user: &str,
        event_id: &str,
        change: impl Fn(&mut MemberProfile),
    ) -> anyhow::Result<Change> {
        update_once(
            &self.members,
            &key(&[guild, user]),
            event_id,
            |profile: &mut MemberProfile| {
                profile.guild_id = guild.to_owned();
                profile.user_id = user.to_owned();
                profile.updated_ms = now_ms();
                change(profile);
            },
        )
        .await
    }

    pub async fn update_community(
        &self,
        guild: &str,
        event_id: &str,
        change: impl Fn(&mut Community),
    ) -> anyhow::Result<Change> {
        update_once(
            &self.communities,
            &key(&[guild]),
            event_id,
            |community: &mut Community| {
                community.guild_id = guild.to_owned();
                change(community);
            },
        )
        .await
    }

    /// Starts a cooldown of `user` in `scope` for `by` (an interaction id) unless one runs; false
    /// while it runs. The one that started it passes again, so a redelivery is not refused.
    pub async fn try_cooldown(
        &self,
        scope: &str,
        user: &str,
        by: &str,
        length: Duration,
    ) -> anyhow::Result<bool> {
        let k = key(&[scope, user]);
        let expected = match self
            .cooldowns
            .entry(&k)
            .await
            .context("reading a cooldown")?
        {
            Some(entry) if entry.operation == kv::Operation::Put => {
                return Ok(entry.value == by.as_bytes());
            }
            // Expired or deleted: the marker's revision is the one to replace.
            Some(entry) => entry.revision,
            None => 0,
        };
        self.put_expiring(COOLDOWNS, &k, by.to_owned().into(), length, Some(expected))
            .await
    }

    /// Counts hit `by` (an interaction id) of `user` in `scope`; false when `limit` hits already
    /// fell in the last `window`. A hit already counted passes again (a redelivery).
    pub async fn try_rate_limit(
        &self,
        scope: &str,
        user: &str,
        by: &str,
        limit: usize,
        window: Duration,
    ) -> anyhow::Result<bool> {
        let k = key(&[scope, user]);
        loop {
            let (mut hits, revision) = read::<Vec<Hit>>(&self.rate_limits, &k)
                .await?
                .unwrap_or_default();
            if hits.iter().any(|hit| hit.by == by) {
                return Ok(true);
            }
            if !sliding_window(&mut hits, now_ms(), by, limit, window) {
                return Ok(false);
            }
            if write(&self.rate_limits, &k, &hits, revision).await? {
                return Ok(true);
            }
        }
    }

    /// A multi-step session's state, if it has not expired.
    pub async fn flow<T: DeserializeOwned>(
        &self,
        flow: &str,
        user: &str,
    ) -> anyhow::Result<Option<T>> {
        Ok(read::<T>(&self.flows, &key(&[flow, user]))
            .await?
            .map(|(v, _)| v))
    }

    /// Saves a multi-step session for `ttl`.
    pub async fn save_flow<T: Serialize>(
        &self,
        flow: &str,
        user: &str,
        value: &T,
        ttl: Duration,
    ) -> anyhow::Result<()> {
        let bytes = serde_json::to_vec(value).expect("flows serialise");
        self.put_expiring(FLOWS, &key(&[flow, user]), bytes.into(), ttl, None)
            .await?;
        Ok(())
    }

    /// Writes `value` under `k` in `bucket`, expiring after `ttl` (whole seconds, at least one),
    /// if the key's last revision is `expected` (0: never written; `None`: any). Written by hand:
    /// async-nats' `create_with_ttl` drops the TTL when the key was deleted or had expired.
    async fn put_expiring(
        &self,
        bucket: &str,
        k: &str,
        value: bytes::Bytes,
        ttl: Duration,
        expected: Option<u64>,
    ) -> anyhow::Result<bool> {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-TTL", ttl.as_secs().max(1).to_string().as_str());
        if let Some(expected) = expected {
            headers.insert(
                "Nats-Expected-Last-Subject-Sequence",
                expected.to_string().as_str(),
            );
        }
        let stored = self
            .js
            .publish_with_headers(format!("$KV.{bucket}.{k}"), headers, value)
            .await
            .context("writing an expiring key")?
            .await;
        match stored {
            Ok(_) => Ok(true),
            Err(error)
                if error.kind()
                    == async_nats::jetstream::context::PublishErrorKind::WrongLastSequence =>
            {
                Ok(false)
            }
            Err(error) => Err(error).context("writing an expiring key"),
        }
    }

    pub async fn end_flow(&self, flow: &str, user: &str) -> anyhow::Result<()> {
        self.flows
            .purge(key(&[flow, user]))
            .await
            .context("ending a session")?;
        Ok(())
    }
}

/// One counted use of a rate-limited route.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hit {
    pub at_ms: u64,
    pub by: String,
}

/// The sliding window: drops hits older than `window`, then takes one if fewer than `limit` remain.
pub fn sliding_window(
    hits: &mut Vec<Hit>,
    now_ms: u64,
    by: &str,
    limit: usize,
    window: Duration,
) -> bool {
    let since = now_ms.saturating_sub(window.as_millis() as u64);
    hits.retain(|hit| hit.at_ms > since);
    if hits.len() >= limit {
        return false;
    }
    hits.push(Hit {
        at_ms: now_ms,
        by: by.to_owned(),
    });
    true
}

async fn read<T: DeserializeOwned>(store: &kv::Store, k: &str) -> anyhow::Result<Option<(T, u64)>> {
    let Some(entry) = store.entry(k).await.context("reading state")? else {
        return Ok(None);
    };
    if entry.operation != kv::Operation::Put {
        return Ok(None);
    }
    let value = serde_json::from_slice(&entry.value)
        .with_context(|| format!("state record {k} is not valid JSON"))?;
    Ok(Some((value, entry.revision)))
}

/// Writes `value` if the key is still at `revision` (0: absent); false if someone wrote first.
async fn write<T: Serialize>(
    store: &kv::Store,
    k: &str,
    value: &T,
    revision: u64,
) -> anyhow::Result<bool> {
    let bytes: bytes::Bytes = serde_json::to_vec(value).expect("state serialises").into();
    let result = if revision == 0 {
        store.create(k, bytes).await.map(drop).map_err(|e| {
            (
                e.kind() == kv::CreateErrorKind::AlreadyExists,
                anyhow::Error::new(e),
            )
        })
    } else {
        store
            .update(k, bytes, revision)
            .await
            .map(drop)
            .map_err(|e| {
                (
                    e.kind() == kv::UpdateErrorKind::WrongLastRevision,
                    anyhow::Error::new(e),
                )
            })
    };
    match result {
        Ok(()) => Ok(true),
        Err((true, _)) => Ok(false),
        Err((false, error)) => Err(error.context("writing state")),
    }
}

async fn update_once<T>(
    store: &kv::Store,
    k: &str,
    event_id: &str,
    change: impl Fn(&mut T),
) -> anyhow::Result<Change>
where
    T: Applied + Default + Serialize + DeserializeOwned,
{
    loop {
        let (mut record, revision) = read::<T>(store, k).await?.unwrap_or_default();
        if record.applied().iter().any(|id| id == event_id) {
            return Ok(Change::AlreadyApplied);
        }
        change(&mut record);
        let applied = record.applied();
        applied.push(event_id.to_owned());
        if applied.len() > APPLIED_MEMORY {
            applied.remove(0);
        }
        if write(store, k, &record, revision).await? {
            return Ok(Change::Applied);
        }
    }
}

/// A KV key from parts joined by `.`: characters KV keys cannot hold are written `=XX` (hex).
pub fn key(parts: &[&str]) -> String {
    let mut out = String::new();
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        for byte in part.bytes() {
            if byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_' {
                out.push(byte as char);
            } else {
                out.push_str(&format!("={byte:02X}"));
            }
        }
    }
    out
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_escape_what_kv_cannot_hold() {
        assert_eq!(
            key(&["event-worker", "member.join:1:2:2026"]),
            "event-worker.member=2Ejoin=3A1=3A2=3A2026"
        );
        assert_eq!(key(&["a=b", "c/d"]), "a=3Db.c=2Fd");
        assert_ne!(
            key(&["a.b"]),
            key(&["a", "b"]),
            "a dot inside a part is not a separator"
        );
    }

    #[test]
    fn the_window_slides() {
        let window = Duration::from_secs(10);
        let mut hits = Vec::new();
        assert!(sliding_window(&mut hits, 1_000, "a", 2, window));
        assert!(sliding_window(&mut hits, 2_000, "b", 2, window));
        assert!(
            !sliding_window(&mut hits, 3_000, "c", 2, window),
            "two in the last 10 s"
        );
        assert!(
            sliding_window(&mut hits, 11_500, "d", 2, window),
            "the first hit left the window"
        );
        let at: Vec<u64> = hits.iter().map(|h| h.at_ms).collect();
        assert_eq!(at, vec![2_000, 11_500]);
    }
}
