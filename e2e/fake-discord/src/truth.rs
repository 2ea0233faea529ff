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

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Truth {
    pub events: Vec<EmittedEvent>,
    pub identifies: Vec<IdentifyRecord>,
    pub resumes: Vec<ResumeRecord>,
    /// Connections the fake closed with a close code.
    pub closes: Vec<CloseRecord>,
}

impl Truth {
    /// The events of one shard in sequence order.
    pub fn events_for_shard(&self, shard: u32) -> Vec<&EmittedEvent> {
        let mut events: Vec<_> = self.events.iter().filter(|e| e.shard == shard).collect();
        events.sort_by_key(|e| (e.at_ms, e.seq));
        events
    }
}
