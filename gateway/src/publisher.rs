//! Publishing to JetStream: an event counts as delivered only when JetStream acks it.
//!
//! At most `max_inflight` events wait for their ack at once. When the buffer is full (NATS is down
//! or slow), the shard closes its session resumably and waits for room, so Discord keeps what it
//! has not sent and replays it on resume (see `runner`). A failed publish is retried with the same
//! `Nats-Msg-Id`, so a retry that the server had in fact stored is dropped as a duplicate.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrakis_contract::{GatewayEventRef, subject_for};
use async_nats::Subject;
use async_nats::jetstream::{self, context::PublishAckFuture, message::PublishMessage};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use crate::metrics::{Metrics, ShardMetrics};
use crate::sessions::Pending;

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
    prefix: Option<String>,
    metrics: Arc<Metrics>,
    /// To the task that awaits every ack (one task for all events, not one per event).
    acks: mpsc::UnboundedSender<(PublishAckFuture, InFlight)>,
}

impl JetStreamSink {
    pub fn new(
        client: async_nats::Client,
        max_inflight: usize,
        prefix: Option<String>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let js = Arc::new(jetstream::new(client));
        let (acks, pending) = mpsc::unbounded_channel();
        tokio::spawn(await_acks(js.clone(), metrics.clone(), pending));
        JetStreamSink {
            js,
            inflight: Arc::new(Semaphore::new(max_inflight)),
            prefix,
            metrics,
            acks,
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

    /// The subject events of `event_type` go to (resolve once per type: it validates and allocates).
    pub fn subject(&self, event_type: &str) -> Subject {
        let prefix = match self {
            Sink::JetStream(sink) => sink.prefix.as_deref(),
            Sink::LogOnly => None,
        };
        subject_for(prefix, event_type).into()
    }

    /// Hands `event` to JetStream in its reserved place; its ack is awaited in the background,
    /// then `stored` is marked.
    pub async fn publish(
        &self,
        reservation: Reservation,
        event: Prepared,
        received: Instant,
        stored: Pending,
    ) {
        match self {
            Sink::LogOnly => {
                tracing::info!(subject = %event.subject, shard = event.shard, event_id = %event.msg_id, "event (log-only mode)");
                stored.stored();
            }
            Sink::JetStream(sink) => {
                sink.metrics.publish_inflight.inc();
                let flight = InFlight {
                    event,
                    received,
                    sent: Instant::now(),
                    reservation,
                    stored,
                };
                match send(&sink.js, &flight.event).await {
                    Ok(ack) => {
                        // The ack task lives as long as the sink, so the channel is open.
                        let _ = sink.acks.send((ack, flight));
                    }
                    Err(error) => {
                        tokio::spawn(retry(sink.js.clone(), sink.metrics.clone(), flight, error));
                    }
                }
            }
        }
    }
}

/// An event between its publish and its ack.
pub struct InFlight {
    event: Prepared,
    received: Instant,
    sent: Instant,
    reservation: Reservation,
    stored: Pending,
}

async fn send(js: &jetstream::Context, event: &Prepared) -> Result<PublishAckFuture, String> {
    let message = PublishMessage::build()
        .payload(event.payload.clone())
        .message_id(&event.msg_id);
    js.send_publish(event.subject.clone(), message)
        .await
        .map_err(|e| e.to_string())
}

/// Awaits every ack as it comes; a failed one is retried in a task of its own.
async fn await_acks(
    js: Arc<jetstream::Context>,
    metrics: Arc<Metrics>,
    mut pending: mpsc::UnboundedReceiver<(PublishAckFuture, InFlight)>,
) {
    let mut waiting = FuturesUnordered::new();
    loop {
        tokio::select! {
            job = pending.recv() => match job {
                Some((ack, flight)) => waiting.push(async move { (ack.await.map_err(|e| e.to_string()), flight) }),
                None => break,
            },
            Some((outcome, flight)) = waiting.next(), if !waiting.is_empty() => match outcome {
                Ok(_) => finish(&metrics, flight),
                Err(error) => {
                    tokio::spawn(retry(js.clone(), metrics.clone(), flight, error));
                }
            },
        }
    }
    while let Some((outcome, flight)) = waiting.next().await {
        match outcome {
            Ok(_) => finish(&metrics, flight),
            Err(error) => {
                tokio::spawn(retry(js.clone(), metrics.clone(), flight, error));
            }
        }
    }
}

fn finish(metrics: &Metrics, flight: InFlight) {
    let InFlight {
        event,
        received,
        sent,
        reservation,
        stored,
    } = flight;
    metrics
        .publish_ack_latency
        .observe(sent.elapsed().as_secs_f64());
    event
        .metrics
        .route_duration
        .observe(received.elapsed().as_secs_f64());
    event.metrics.routed.inc();
    metrics.publish_inflight.dec();
    stored.stored();
    drop(reservation);
}

/// Publishes again until JetStream acks, with backoff. Never gives up: the in-flight bound turns a
/// long outage into backpressure on the shards instead of loss.
async fn retry(
    js: Arc<jetstream::Context>,
    metrics: Arc<Metrics>,
    mut flight: InFlight,
    mut error: String,
) {
    let mut backoff = Duration::from_millis(50);
    loop {
        flight.event.metrics.failures.inc();
        tracing::warn!(subject = %flight.event.subject, msg_id = %flight.event.msg_id, %error, "publish failed; retrying");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(RETRY_BACKOFF_MAX);
        flight.sent = Instant::now();
        let outcome = match send(&js, &flight.event).await {
            Ok(ack) => ack.await.map(drop).map_err(|e| e.to_string()),
            Err(e) => Err(e),
        };
        match outcome {
            Ok(()) => return finish(&metrics, flight),
            Err(next) => error = next,
        }
    }
}

/// An event ready to publish.
pub struct Prepared {
    pub subject: Subject,
    pub msg_id: String,
    pub payload: bytes::Bytes,
    pub shard: u64,
    pub metrics: Arc<ShardMetrics>,
}

/// Serialises `event` for publishing.
pub fn encode(event: &GatewayEventRef<'_>) -> bytes::Bytes {
    // Sized for the payload plus the envelope, so serialising never reallocates.
    let mut payload = Vec::with_capacity(event.data.get().len() + 256);
    serde_json::to_writer(&mut payload, event).expect("events serialise");
    payload.into()
}
