//! Dead letters: messages that were terminated or ran out of deliveries, kept with their error
//! and delivery count in a stream of their own, to inspect and replay.
//!
//! Two ways in, both deduplicated by `Nats-Msg-Id: dead:<stream>:<sequence>`:
//! - the worker records a message itself when it terms it, or when its last allowed delivery
//!   fails again;
//! - deliveries that never came back (the worker died, or the ack wait ran out, on the last
//!   delivery) raise JetStream's max-deliveries advisory. The stream `ARRAKIS_ADVISORIES` keeps
//!   those advisories, and every worker shares one durable consumer of it, so each is handled
//!   once even while no worker runs.

use std::time::Duration;

use anyhow::Context;
use async_nats::HeaderMap;
use async_nats::jetstream::{self, AckKind, consumer, stream};
use futures::StreamExt;
use serde::Deserialize;

use crate::jobs::{JobRecord, JobState, Jobs};
use crate::outcome::DeadReason;

/// The default dead-letter stream.
pub const STREAM: &str = "DEAD_LETTERS";
const SUBJECT_ROOT: &str = "deadletter";
pub const ADVISORY_STREAM: &str = "ARRAKIS_ADVISORIES";
const ADVISORY_SUBJECTS: &str = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.>";
const ADVISORY_CONSUMER: &str = "arrakis-dead-letters";

pub const H_STREAM: &str = "Arrakis-Dead-Stream";
pub const H_SEQUENCE: &str = "Arrakis-Dead-Sequence";
pub const H_CONSUMER: &str = "Arrakis-Dead-Consumer";
pub const H_SUBJECT: &str = "Arrakis-Dead-Subject";
pub const H_DELIVERIES: &str = "Arrakis-Dead-Deliveries";
pub const H_REASON: &str = "Arrakis-Dead-Reason";
pub const H_ERROR: &str = "Arrakis-Dead-Error";

/// One message on its way to the dead letters.
pub struct DeadLetter<'a> {
    pub stream: &'a str,
    pub sequence: u64,
    pub consumer: &'a str,
    pub subject: &'a str,
    pub deliveries: u64,
    pub reason: DeadReason,
    pub error: &'a str,
    pub event_id: Option<&'a str>,
    pub payload: bytes::Bytes,
}

#[derive(Clone)]
pub struct DeadLetters {
    js: jetstream::Context,
    stream: String,
}

impl DeadLetters {
    /// Creates the dead-letter and advisory streams if they are missing.
    pub async fn open(js: &jetstream::Context, stream_name: &str) -> anyhow::Result<Self> {
        js.get_or_create_stream(stream::Config {
            name: stream_name.to_owned(),
            subjects: vec![format!("{SUBJECT_ROOT}.>")],
            description: Some(
                "arrakis-worker: dead letters, with their error and deliveries".into(),
            ),
            storage: stream::StorageType::File,
            max_age: Duration::from_secs(14 * 24 * 3600),
            ..Default::default()
        })
        .await
        .with_context(|| format!("creating the dead-letter stream {stream_name}"))?;
        js.get_or_create_stream(stream::Config {
            name: ADVISORY_STREAM.into(),
            subjects: vec![ADVISORY_SUBJECTS.into()],
            description: Some(
                "arrakis-worker: max-deliveries advisories, turned into dead letters".into(),
            ),
            storage: stream::StorageType::File,
            max_age: Duration::from_secs(7 * 24 * 3600),
            ..Default::default()
        })
        .await
        .context("creating the advisory stream")?;
        Ok(DeadLetters {
            js: js.clone(),
            stream: stream_name.to_owned(),
        })
    }

    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// Stores `dead`; a second record of the same message is dropped by JetStream.
    pub async fn record(&self, dead: &DeadLetter<'_>, jobs: &Jobs) -> anyhow::Result<()> {
        let mut headers = HeaderMap::new();
        headers.insert(
            "Nats-Msg-Id",
            format!("dead:{}:{}", dead.stream, dead.sequence).as_str(),
        );
        headers.insert(H_STREAM, dead.stream);
        headers.insert(H_SEQUENCE, dead.sequence.to_string().as_str());
        headers.insert(H_CONSUMER, dead.consumer);
        headers.insert(H_SUBJECT, dead.subject);
        headers.insert(H_DELIVERIES, dead.deliveries.to_string().as_str());
        headers.insert(H_REASON, dead.reason.as_str());
        headers.insert(H_ERROR, header_safe(dead.error).as_str());
        self.js
            .publish_with_headers(
                format!("{SUBJECT_ROOT}.{}.{}", dead.stream, dead.consumer),
                headers,
                dead.payload.clone(),
            )
            .await
            .context("publishing a dead letter")?
            .await
            .context("storing a dead letter")?;
        jobs.record(JobRecord {
            state: JobState::Dead,
            stream: dead.stream.to_owned(),
            sequence: dead.sequence,
            consumer: Some(dead.consumer.to_owned()),
            subject: Some(dead.subject.to_owned()),
            event_id: dead.event_id.map(str::to_owned),
            deliveries: dead.deliveries,
            error: Some(dead.error.to_owned()),
            updated_ms: 0,
        })
        .await;
        Ok(())
    }
}

/// Header values cannot hold line breaks; errors are also capped.
fn header_safe(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(1000)
        .collect()
}

#[derive(Deserialize)]
struct MaxDeliveries {
    stream: String,
    consumer: String,
    stream_seq: u64,
    deliveries: u64,
}

/// Turns max-deliveries advisories into dead letters, for as long as the worker runs.
pub async fn follow_advisories(dead_letters: DeadLetters, jobs: Jobs) {
    loop {
        if let Err(error) = follow(&dead_letters, &jobs).await {
            tracing::warn!(
                error = format!("{error:#}"),
                "following max-deliveries advisories failed; again in 1 s"
            );
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn follow(dead_letters: &DeadLetters, jobs: &Jobs) -> anyhow::Result<()> {
    let js = &dead_letters.js;
    let stream = js
        .get_stream(ADVISORY_STREAM)
        .await
        .context("the advisory stream")?;
    let consumer: consumer::PullConsumer = stream
        .get_or_create_consumer(
            ADVISORY_CONSUMER,
            consumer::pull::Config {
                durable_name: Some(ADVISORY_CONSUMER.into()),
                ack_policy: consumer::AckPolicy::Explicit,
                max_deliver: 10,
                ..Default::default()
            },
        )
        .await
        .context("the advisory consumer")?;
    let mut messages = consumer.messages().await.context("pulling advisories")?;
    while let Some(message) = messages.next().await {
        let message = message.context("reading an advisory")?;
        let Ok(advisory) = serde_json::from_slice::<MaxDeliveries>(&message.payload) else {
            tracing::warn!("skipping an advisory that is not a max-deliveries advisory");
            let _ = message.ack_with(AckKind::Term).await;
            continue;
        };
        if advisory.stream == dead_letters.stream {
            let _ = message.ack().await;
            continue;
        }
        match dead_letter_of(dead_letters, jobs, &advisory).await {
            Ok(()) => {
                let _ = message.ack().await;
            }
            Err(error) => {
                tracing::warn!(
                    error = format!("{error:#}"),
                    "could not record a dead letter; retrying"
                );
                let _ = message
                    .ack_with(AckKind::Nak(Some(Duration::from_secs(1))))
                    .await;
            }
        }
    }
    Ok(())
}

async fn dead_letter_of(
    dead_letters: &DeadLetters,
    jobs: &Jobs,
    advisory: &MaxDeliveries,
) -> anyhow::Result<()> {
    let js = &dead_letters.js;
    let original = js
        .get_stream(&advisory.stream)
        .await
        .context("the advisory's stream")?
        .get_raw_message(advisory.stream_seq)
        .await
        .ok();
    let last_error = jobs
        .recorded(&advisory.stream, advisory.stream_seq)
        .await
        .ok()
        .flatten()
        .and_then(|r| r.error);
    let error = last_error.unwrap_or_else(|| {
        "no handler result on its last delivery (the worker stopped, or the ack wait ran out)"
            .into()
    });
    let subject = original
        .as_ref()
        .map(|m| m.subject.to_string())
        .unwrap_or_default();
    dead_letters
        .record(
            &DeadLetter {
                stream: &advisory.stream,
                sequence: advisory.stream_seq,
                consumer: &advisory.consumer,
                subject: &subject,
                deliveries: advisory.deliveries,
                reason: DeadReason::MaxDeliveries,
                error: &error,
                event_id: None,
                payload: original.map(|m| m.payload).unwrap_or_default(),
            },
            jobs,
        )
        .await
}

/// One dead letter, as the CLI shows it.
#[derive(Debug, serde::Serialize)]
pub struct Listed {
    pub sequence: u64,
    pub stream: String,
    pub original_sequence: String,
    pub subject: String,
    pub consumer: String,
    pub deliveries: String,
    pub reason: String,
    pub error: String,
    pub payload: Option<serde_json::Value>,
}

impl DeadLetters {
    pub async fn list(&self) -> anyhow::Result<Vec<Listed>> {
        let mut stream = self
            .js
            .get_stream(&self.stream)
            .await
            .context("the dead-letter stream")?;
        let info = stream.info().await?.state.clone();
        let mut out = Vec::new();
        if info.messages == 0 {
            return Ok(out);
        }
        for sequence in info.first_sequence..=info.last_sequence {
            if let Ok(listed) = self.show(sequence, false).await {
                out.push(listed);
            }
        }
        Ok(out)
    }

    pub async fn show(&self, sequence: u64, with_payload: bool) -> anyhow::Result<Listed> {
        let message = self.fetch(sequence).await?;
        let header = |name: &str| {
            message
                .headers
                .get(name)
                .map(|v| v.to_string())
                .unwrap_or_default()
        };
        Ok(Listed {
            sequence,
            stream: header(H_STREAM),
            original_sequence: header(H_SEQUENCE),
            subject: header(H_SUBJECT),
            consumer: header(H_CONSUMER),
            deliveries: header(H_DELIVERIES),
            reason: header(H_REASON),
            error: header(H_ERROR),
            payload: with_payload.then(|| {
                serde_json::from_slice(&message.payload).unwrap_or_else(|_| {
                    serde_json::Value::String(
                        String::from_utf8_lossy(&message.payload).into_owned(),
                    )
                })
            }),
        })
    }

    async fn fetch(&self, sequence: u64) -> anyhow::Result<jetstream::message::StreamMessage> {
        self.js
            .get_stream(&self.stream)
            .await
            .context("the dead-letter stream")?
            .get_raw_message(sequence)
            .await
            .with_context(|| format!("no dead letter {sequence} in {}", self.stream))
    }

    /// Publishes dead letter `sequence` again to its original subject; returns where it landed.
    pub async fn replay(&self, sequence: u64) -> anyhow::Result<(String, u64)> {
        let message = self.fetch(sequence).await?;
        let subject = message
            .headers
            .get(H_SUBJECT)
            .map(|v| v.to_string())
            .filter(|s| !s.is_empty())
            .context("the dead letter does not name its original subject")?;
        let ack = self
            .js
            .publish(subject.clone(), message.payload)
            .await
            .context("replaying")?
            .await
            .context("replaying")?;
        Ok((subject, ack.sequence))
    }
}
