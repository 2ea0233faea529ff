//! Publishing to JetStream: an event counts as delivered only when JetStream acks it.
//!
//! At most `max_inflight` events wait for their ack at once. When the buffer is full (NATS is down
//! or slow), the shard closes its session resumably and waits for room, so Discord keeps what it
//! has not sent and replays it on resume (see `runner`). A failed publish is retried with the same
//! `Nats-Msg-Id`, so a retry that the server had in fact stored is dropped as a duplicate.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrakis_contract::{GatewayEventRef, subject_for};
use async_nats::jetstream::{self, message::PublishMessage};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::metrics::{Metrics, ShardMetrics};

const RETRY_BACKOFF_MAX: Duration = Duration::from_secs(5);

pub enum Sink {
    JetStream(Box<JetStreamSink>),
    /// No NATS configured: events are logged, not published (seed AD-S4.2).
    LogOnly,
}

pub struct JetStreamSink {
    // Shared, not cloned per event: a Context clone allocates.
    js: Arc<jetstream::Context>,
    inflight: Arc<Semaphore>,
    max_inflight: usize,
    prefix: Option<String>,
    metrics: Arc<Metrics>,
}

impl JetStreamSink {
    pub fn new(
        client: async_nats::Client,
        max_inflight: usize,
        prefix: Option<String>,
        metrics: Arc<Metrics>,
    ) -> Self {
        JetStreamSink {
            js: Arc::new(jetstream::new(client)),
            inflight: Arc::new(Semaphore::new(max_inflight)),
            max_inflight,
            prefix,
            metrics,
        }
    }

    /// Waits until every published event has been acked, for at most `deadline`. Returns how many were still out.
    pub async fn drain(&self, deadline: Duration) -> usize {
        let all = u32::try_from(self.max_inflight).unwrap_or(u32::MAX);
        match tokio::time::timeout(deadline, self.inflight.acquire_many(all)).await {
            Ok(_) => 0,
            Err(_) => self.max_inflight - self.inflight.available_permits(),
        }
    }
}

/// A place in the publish buffer, held until the event's ack arrives.
pub struct Reservation {
    // Held for its Drop: releasing it frees the place.
    _permit: Option<OwnedSemaphorePermit>,
}

impl Sink {
    /// Waits for room in the buffer.
    pub async fn reserve(&self) -> Reservation {
        match self {
            Sink::LogOnly => Reservation { _permit: None },
            Sink::JetStream(sink) => {
                let permit = sink
                    .inflight
                    .clone()
                    .acquire_owned()
                    .await
                    .expect("semaphore never closes");
                Reservation {
                    _permit: Some(permit),
                }
            }
        }
    }

    /// Room in the buffer right now, if there is any.
    pub fn try_reserve(&self) -> Option<Reservation> {
        match self {
            Sink::LogOnly => Some(Reservation { _permit: None }),
            Sink::JetStream(sink) => sink
                .inflight
                .clone()
                .try_acquire_owned()
                .ok()
                .map(|p| Reservation { _permit: Some(p) }),
        }
    }

    /// Serialises `event` for publishing: subject, `Nats-Msg-Id` and payload.
    pub fn prepare(&self, event: &GatewayEventRef<'_>, shard_metrics: &ShardMetrics) -> Prepared {
        let prefix = match self {
            Sink::JetStream(sink) => sink.prefix.as_deref(),
            Sink::LogOnly => None,
        };
        Prepared {
            subject: subject_for(prefix, &event.event_type),
            msg_id: event.event_id.to_owned(),
            payload: serde_json::to_vec(event).expect("events serialise").into(),
            shard: event.shard_id,
            metrics: shard_metrics.clone(),
        }
    }

    /// Hands `event` to JetStream in its reserved place; its ack is awaited in the background,
    /// then `stored` runs.
    pub fn publish(
        &self,
        reservation: Reservation,
        event: Prepared,
        received: Instant,
        stored: impl FnOnce() + Send + 'static,
    ) {
        match self {
            Sink::LogOnly => {
                tracing::info!(subject = %event.subject, shard = %event.shard, event_id = %event.msg_id, "event (log-only mode)");
                stored();
            }
            Sink::JetStream(sink) => {
                sink.metrics.publish_inflight.inc();
                let js = sink.js.clone();
                let metrics = sink.metrics.clone();
                tokio::spawn(async move {
                    deliver(&js, &metrics, &event).await;
                    event
                        .metrics
                        .route_duration
                        .observe(received.elapsed().as_secs_f64());
                    event.metrics.routed.inc();
                    metrics.publish_inflight.dec();
                    stored();
                    drop(reservation);
                });
            }
        }
    }
}

/// An event ready to publish.
pub struct Prepared {
    pub subject: String,
    pub msg_id: String,
    pub payload: bytes::Bytes,
    pub shard: u64,
    pub metrics: ShardMetrics,
}

/// Publishes until JetStream acks, retrying with backoff. Never gives up: the in-flight bound
/// turns a long outage into backpressure on the shards instead of loss.
async fn deliver(js: &jetstream::Context, metrics: &Metrics, event: &Prepared) {
    let Prepared {
        subject,
        msg_id,
        payload,
        ..
    } = event;
    let mut backoff = Duration::from_millis(50);
    loop {
        let started = Instant::now();
        let publish = PublishMessage::build()
            .payload(payload.clone())
            .message_id(msg_id);
        let outcome = match js.send_publish(subject.clone(), publish).await {
            Ok(ack) => ack.await.map(drop).map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match outcome {
            Ok(()) => {
                metrics
                    .publish_ack_latency
                    .observe(started.elapsed().as_secs_f64());
                return;
            }
            Err(error) => {
                event.metrics.failures.inc();
                tracing::warn!(%subject, %msg_id, %error, "publish failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(RETRY_BACKOFF_MAX);
            }
        }
    }
}
