//! Discord sessions that outlive the process: saved in NATS KV, resumed on start.
//!
//! The saved sequence is the last one up to which every event was acked by JetStream, never beyond,
//! so a resume after a crash makes Discord replay anything not yet stored (and JetStream drops the
//! replays that were). A missing or expired session means a fresh identify.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use async_nats::jetstream::{self, kv};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use twilight_gateway::ShardId;

use arrakis_contract::assignment::shard_key;
use arrakis_support::open_bucket;

/// KV bucket holding one entry per shard.
pub const BUCKET: &str = "arrakis-gateway-sessions";
/// Saved sessions older than this are dropped; resuming them would fail at Discord anyway.
const SESSION_TTL: Duration = Duration::from_secs(3600);

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedSession {
    pub session_id: String,
    /// Every dispatch up to and including this seq is stored in JetStream.
    pub sequence: u64,
    pub resume_url: String,
}

#[derive(Clone)]
pub struct SessionStore {
    kv: kv::Store,
    pool: String,
}

impl SessionStore {
    /// Opens (or creates) the bucket. `pool` keeps several bots apart in one NATS account.
    pub async fn open(client: async_nats::Client, pool: &str) -> anyhow::Result<Self> {
        let kv = open_bucket(
            &jetstream::new(client),
            kv::Config {
                bucket: BUCKET.into(),
                description: "arrakis-gateway: Discord sessions to resume, per shard".into(),
                history: 1,
                max_age: SESSION_TTL,
                storage: jetstream::stream::StorageType::File,
                ..Default::default()
            },
        )
        .await?;
        Ok(SessionStore {
            kv,
            pool: pool.to_owned(),
        })
    }

    fn key(&self, shard: ShardId) -> String {
        shard_key(&self.pool, shard.number(), shard.total())
    }

    pub async fn load(&self, shard: ShardId) -> anyhow::Result<Option<SavedSession>> {
        let Some(bytes) = self
            .kv
            .get(self.key(shard))
            .await
            .context("reading a saved session")?
        else {
            return Ok(None);
        };
        Ok(serde_json::from_slice(&bytes).ok())
    }

    pub async fn save(&self, shard: ShardId, session: &SavedSession) -> anyhow::Result<()> {
        let value = serde_json::to_vec(session).expect("sessions serialise");
        self.kv
            .put(self.key(shard), value.into())
            .await
            .context("saving a session")?;
        Ok(())
    }

    /// Forgets the session, so the next start identifies afresh.
    pub async fn forget(&self, shard: ShardId) -> anyhow::Result<()> {
        self.kv
            .delete(self.key(shard))
            .await
            .context("deleting a saved session")?;
        Ok(())
    }
}

/// A shard's session as the runner sees it: what to save, and where to resume.
#[derive(Default)]
pub struct ShardSession {
    pub acks: AckTracker,
    resume_url: Mutex<Option<String>>,
    /// Woken when a new session starts, so it is saved at once rather than at the next tick.
    pub started: Notify,
}

impl ShardSession {
    /// Continues a saved session (the shard will send Resume with it).
    pub fn resuming(saved: &SavedSession) -> Self {
        let session = ShardSession::default();
        session.started(&saved.session_id, saved.sequence, &saved.resume_url);
        session
    }

    /// READY: a new session, to be resumed at `resume_url`.
    pub fn started(&self, session_id: &str, seq: u64, resume_url: &str) {
        self.acks.reset(session_id, seq);
        *self.resume_url.lock().unwrap_or_else(|p| p.into_inner()) = Some(resume_url.to_owned());
        self.started.notify_one();
    }

    /// `seq` of the current session goes to JetStream; the returned token marks it stored.
    pub fn begin(self: &Arc<Self>, seq: u64) -> Pending {
        Pending {
            generation: self.acks.begin(seq),
            seq,
            session: self.clone(),
        }
    }

    /// What to save now, if there is a session.
    pub fn snapshot(&self) -> Option<SavedSession> {
        let (session_id, sequence) = self.acks.resume_point()?;
        let resume_url = self
            .resume_url
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()?;
        Some(SavedSession {
            session_id,
            sequence,
            resume_url,
        })
    }
}

/// An event of a shard's session on its way to JetStream.
pub struct Pending {
    session: Arc<ShardSession>,
    generation: u64,
    seq: u64,
}

impl Pending {
    /// JetStream acked the event.
    pub fn stored(self) {
        self.session.acks.done(self.generation, self.seq);
    }
}

/// Which dispatches of the current session are safely stored, for the session's resume point.
#[derive(Default)]
pub struct AckTracker {
    state: Mutex<TrackerState>,
    /// Woken when the last in-flight event is acked.
    settled: Notify,
}

#[derive(Default)]
struct TrackerState {
    session: String,
    /// Counts sessions, so acks of an earlier one are told apart without comparing ids.
    generation: u64,
    in_flight: BTreeSet<u64>,
    highest: u64,
}

impl AckTracker {
    /// A new session starts (READY): earlier sequences belong to the old one.
    pub fn reset(&self, session: &str, seq: u64) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        *state = TrackerState {
            session: session.to_owned(),
            generation: state.generation + 1,
            in_flight: BTreeSet::new(),
            highest: seq,
        };
    }

    /// `seq` was received and needs no ack (READY, RESUMED, skipped frames).
    pub fn seen(&self, seq: u64) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.highest = state.highest.max(seq);
    }

    /// `seq` of the current session was handed to JetStream; returns the session's generation.
    pub fn begin(&self, seq: u64) -> u64 {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.in_flight.insert(seq);
        state.highest = state.highest.max(seq);
        state.generation
    }

    /// JetStream acked `seq` of the session of `generation`.
    pub fn done(&self, generation: u64, seq: u64) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.generation == generation {
            state.in_flight.remove(&seq);
            if state.in_flight.is_empty() {
                self.settled.notify_waiters();
            }
        }
    }

    /// Waits until every event handed to JetStream is acked, or `deadline` passes; true if settled.
    pub async fn settle(&self, deadline: Duration) -> bool {
        let wait = async {
            loop {
                let notified = self.settled.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if self.is_settled() {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(deadline, wait).await.is_ok()
    }

    fn is_settled(&self) -> bool {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.in_flight.is_empty()
    }

    /// The session and the last seq up to which everything is stored.
    pub fn resume_point(&self) -> Option<(String, u64)> {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.session.is_empty() {
            return None;
        }
        let safe = match state.in_flight.first() {
            Some(oldest_unacked) => oldest_unacked - 1,
            None => state.highest,
        };
        Some((state.session.clone(), safe))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_resumes_past_an_unacked_event() {
        let tracker = AckTracker::default();
        assert_eq!(tracker.resume_point(), None);
        tracker.reset("s1", 1);
        let mut generation = 0;
        for seq in 2..=6 {
            generation = tracker.begin(seq);
        }
        assert_eq!(tracker.resume_point(), Some(("s1".into(), 1)));
        // Acks arrive out of order: 3 and 5 first.
        tracker.done(generation, 3);
        tracker.done(generation, 5);
        assert_eq!(
            tracker.resume_point(),
            Some(("s1".into(), 1)),
            "2 is still out"
        );
        tracker.done(generation, 2);
        assert_eq!(
            tracker.resume_point(),
            Some(("s1".into(), 3)),
            "4 is still out"
        );
        tracker.done(generation, 4);
        tracker.done(generation, 6);
        tracker.seen(7);
        assert_eq!(tracker.resume_point(), Some(("s1".into(), 7)));
    }

    #[tokio::test]
    async fn settles_when_the_last_event_is_acked() {
        let tracker = std::sync::Arc::new(AckTracker::default());
        tracker.reset("s1", 1);
        assert!(tracker.settle(Duration::ZERO).await, "nothing in flight");
        let generation = tracker.begin(2);
        tracker.begin(3);
        assert!(!tracker.settle(Duration::from_millis(10)).await);
        let acker = tracker.clone();
        let waiter = tokio::spawn(async move { tracker.settle(Duration::from_secs(10)).await });
        acker.done(generation, 2);
        acker.done(generation, 3);
        assert!(waiter.await.unwrap(), "woken by the last ack");
    }

    #[test]
    fn a_new_session_ignores_the_old_ones_acks() {
        let tracker = AckTracker::default();
        tracker.reset("old", 1);
        let old = tracker.begin(2);
        tracker.reset("new", 1);
        let new = tracker.begin(2);
        tracker.done(old, 2);
        assert_eq!(
            tracker.resume_point(),
            Some(("new".into(), 1)),
            "the old session's ack of seq 2 is not the new one's"
        );
        tracker.done(new, 2);
        assert_eq!(tracker.resume_point(), Some(("new".into(), 2)));
    }
}
