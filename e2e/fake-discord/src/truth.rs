//! Ground truth: what the fake did, for tests and benchmarks to assert against.

use serde::Serialize;

/// A dispatch the fake sequenced on a session (sent now, or buffered for a resume).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EmittedEvent {
    pub shard: u32,
    pub session_id: String,
    pub seq: u64,
    pub event_type: String,
    pub data: serde_json::Value,
    pub at_ms: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct IdentifyRecord {
    pub shard: u32,
    pub total: u32,
    /// Discord's rate-limit key: shard id modulo max_concurrency.
    pub bucket: u32,
    pub at_ms: u64,
    /// False when the identify was refused (pacing, session-start limit).
    pub accepted: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ResumeRecord {
    pub shard: u32,
    pub session_id: String,
    /// The sequence the client said it had.
    pub from_seq: u64,
    /// How many buffered events were replayed.
    pub replayed: u64,
    pub at_ms: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CloseRecord {
    pub shard: Option<u32>,
    pub code: u16,
    pub reason: String,
    pub at_ms: u64,
}

/// A moment when more than one live connection ran the same shard.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct OverlapRecord {
    pub shard: u32,
    pub total: u32,
    /// Live connections on the shard, counting the new one.
    pub connections: u32,
    pub at_ms: u64,
}

/// An interaction the fake created, and how the bot answered it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct InteractionRecord {
    pub id: u64,
    pub token: String,
    pub guild_id: u64,
    pub command: String,
    pub created_ms: u64,
    /// When the first callback arrived in time (none if never, or too late).
    pub responded_ms: Option<u64>,
    /// The callback's response type (5 = deferred channel message).
    pub response_type: Option<u8>,
    /// Callbacks refused: late, repeated, or with the wrong token.
    pub refused_callbacks: u32,
    /// Contents of the edits of the original response, in order.
    pub edits: Vec<String>,
    /// Contents of follow-up messages, in order.
    pub followups: Vec<String>,
}

impl InteractionRecord {
    /// Milliseconds from creation to the first accepted callback.
    pub fn answered_after_ms(&self) -> Option<u64> {
        Some(self.responded_ms? - self.created_ms)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RoleChange {
    pub guild_id: u64,
    pub user_id: u64,
    pub role_id: u64,
    pub added: bool,
    pub at_ms: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Truth {
    pub events: Vec<EmittedEvent>,
    pub identifies: Vec<IdentifyRecord>,
    pub resumes: Vec<ResumeRecord>,
    /// Connections the fake closed with a close code.
    pub closes: Vec<CloseRecord>,
    /// Shards that ran on two connections at once.
    pub overlaps: Vec<OverlapRecord>,
    pub interactions: Vec<InteractionRecord>,
    pub role_changes: Vec<RoleChange>,
}

impl Truth {
    /// The events of one shard in sequence order.
    pub fn events_for_shard(&self, shard: u32) -> Vec<&EmittedEvent> {
        let mut events: Vec<_> = self.events.iter().filter(|e| e.shard == shard).collect();
        events.sort_by_key(|e| (e.at_ms, e.seq));
        events
    }
}
