//! Job status: what became of each message — pending, done, retrying or dead, with its error.
//! This is what the BullMQ-to-NATS migration in the seed lost.
//!
//! Only messages that did not succeed at once get a record (KV bucket `arrakis-jobs`, key
//! `<stream>.<sequence>`, kept 7 days), so the common path costs nothing. Without a record, the
//! status is read from JetStream: done once every consumer of the stream has acked past it,
//! pending while it is still in the stream.

use std::time::Duration;

use anyhow::Context;
use async_nats::jetstream::{self, kv};
use futures::TryStreamExt;
use serde::{Deserialize, Serialize};

use crate::state::{key, now_ms};

pub const BUCKET: &str = "arrakis-jobs";
const KEEP: Duration = Duration::from_secs(7 * 24 * 3600);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Pending,
    Done,
    Retrying,
    Dead,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRecord {
    pub state: JobState,
    pub stream: String,
    pub sequence: u64,
    pub consumer: Option<String>,
    pub subject: Option<String>,
    pub event_id: Option<String>,
    pub deliveries: u64,
    pub error: Option<String>,
    pub updated_ms: u64,
}

#[derive(Clone)]
pub struct Jobs {
    js: jetstream::Context,
    kv: kv::Store,
}

impl Jobs {
    pub async fn open(js: &jetstream::Context) -> anyhow::Result<Self> {
        let kv = arrakis_support::open_bucket(
            js,
            kv::Config {
                bucket: BUCKET.into(),
                description: "arrakis-worker: outcome of messages that did not succeed at once"
                    .into(),
                history: 1,
                max_age: KEEP,
                storage: jetstream::stream::StorageType::File,
                ..Default::default()
            },
        )
        .await?;
        Ok(Jobs { js: js.clone(), kv })
    }

    pub async fn record(&self, mut record: JobRecord) {
        record.updated_ms = now_ms();
        let k = key(&[&record.stream, &record.sequence.to_string()]);
        let value = serde_json::to_vec(&record).expect("job records serialise");
        if let Err(error) = self.kv.put(k, value.into()).await {
            tracing::warn!(stream = record.stream, sequence = record.sequence, %error, "could not record job status");
        }
    }

    pub async fn recorded(&self, stream: &str, sequence: u64) -> anyhow::Result<Option<JobRecord>> {
        let Some(bytes) = self
            .kv
            .get(key(&[stream, &sequence.to_string()]))
            .await
            .context("reading job status")?
        else {
            return Ok(None);
        };
        Ok(serde_json::from_slice(&bytes).ok())
    }

    /// The status of message `sequence` of `stream`.
    pub async fn status(&self, stream_name: &str, sequence: u64) -> anyhow::Result<JobRecord> {
        if let Some(record) = self.recorded(stream_name, sequence).await? {
            return Ok(record);
        }
        let mut stream = self
            .js
            .get_stream(stream_name)
            .await
            .with_context(|| format!("no stream {stream_name}"))?;
        let info = stream.info().await.context("reading the stream")?;
        if sequence == 0 || sequence > info.state.last_sequence {
            anyhow::bail!(
                "stream {stream_name} has no message {sequence} (its sequences run {}..={})",
                info.state.first_sequence,
                info.state.last_sequence
            );
        }
        let consumers: Vec<jetstream::consumer::Info> = stream
            .consumers()
            .try_collect()
            .await
            .context("listing the stream's consumers")?;
        let acked = !consumers.is_empty()
            && consumers
                .iter()
                .all(|c| c.ack_floor.stream_sequence >= sequence);
        let message = stream.get_raw_message(sequence).await.ok();
        let state = if acked || message.is_none() {
            JobState::Done
        } else {
            JobState::Pending
        };
        Ok(JobRecord {
            state,
            stream: stream_name.to_owned(),
            sequence,
            consumer: None,
            subject: message.map(|m| m.subject.to_string()),
            event_id: None,
            deliveries: 0,
            error: None,
            updated_ms: now_ms(),
        })
    }
}
