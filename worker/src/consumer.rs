//! The consumer runtime: pull a durable consumer, run each message's handler under a bound, and
//! settle it with ack, nak (with the consumer's backoff) or term (into the dead letters).
//!
//! Interactions are deferred as soon as they arrive, before they wait for a handler slot, so a
//! burst never pushes them past Discord's 3 s. On shutdown the runtime stops pulling, lets running
//! handlers finish until the drain deadline, and naks whatever is left.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use async_nats::jetstream::{self, AckKind, Message, consumer};
use futures::StreamExt;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use crate::config::ConsumerRef;
use crate::dead_letters::{DeadLetter, DeadLetters};
use crate::discord::{Deferral, Discord};
use crate::event::{self, Interaction, InteractionKind, route_key};
use crate::handlers::{Handled, Handler, Registry, Request};
use crate::jobs::{JobRecord, JobState, Jobs};
use crate::metrics::Metrics;
use crate::outcome::{DeadReason, Disposition, Outcome, RetryPolicy};
use crate::state::{State, now_ms};

/// What every consumer of the process shares.
pub struct Worker {
    pub js: jetstream::Context,
    pub state: State,
    pub jobs: Jobs,
    pub dead_letters: DeadLetters,
    pub registry: Registry,
    pub discord: Discord,
    pub metrics: Arc<Metrics>,
    /// Handlers running at once.
    pub slots: Arc<Semaphore>,
    pub drain: Duration,
}

/// One consumer's settings, read from JetStream when it is bound.
struct Bound {
    stream: String,
    name: String,
    policy: RetryPolicy,
    ack_wait: Duration,
}

/// How long to wait between tries while the stream or consumer does not exist yet.
const BIND_RETRY: Duration = Duration::from_secs(1);

/// Runs `reference` until `shutdown` flips, then drains. `bound` is raised once it consumes.
pub async fn run(
    worker: Arc<Worker>,
    reference: ConsumerRef,
    mut shutdown: watch::Receiver<bool>,
    bound_tx: watch::Sender<bool>,
) -> anyhow::Result<()> {
    let (pull, bound) = loop {
        match bind(&worker.js, &reference).await {
            Ok(found) => break found,
            Err(error) => {
                tracing::warn!(
                    stream = reference.stream,
                    consumer = reference.consumer,
                    error = format!("{error:#}"),
                    "waiting for the consumer to exist"
                );
                tokio::select! {
                    () = tokio::time::sleep(BIND_RETRY) => continue,
                    _ = shutdown.changed() => return Ok(()),
                }
            }
        }
    };
    let bound = Arc::new(bound);
    tracing::info!(stream = bound.stream, consumer = bound.name, "consuming");
    let _ = bound_tx.send(true);
    let lag = tokio::spawn(report_lag(
        pull.clone(),
        bound.name.clone(),
        worker.metrics.clone(),
    ));

    let (expired_tx, expired) = watch::channel(false);
    let mut tasks = JoinSet::new();
    let mut messages = pull_messages(&pull).await?;
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            next = messages.next() => match next {
                Some(Ok(message)) => {
                    // Boxed first: the task then moves a pointer, not the whole future, into place.
                    tasks.spawn(Box::pin(process(worker.clone(), bound.clone(), message, expired.clone())));
                }
                Some(Err(error)) => tracing::warn!(consumer = bound.name, %error, "pull failed; async-nats retries"),
                None => messages = pull_messages(&pull).await?,
            },
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    // Stop pulling; what was pulled and not yet handed over is redelivered after the ack wait.
    drop(messages);
    lag.abort();
    tracing::info!(consumer = bound.name, in_flight = tasks.len(), "draining");
    let drained = tokio::time::timeout(worker.drain, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        // Every task still running naks its message on this signal.
        let _ = expired_tx.send(true);
        while tasks.join_next().await.is_some() {}
    }
    Ok(())
}

/// Messages are pulled this many at a time (async-nats' default is 200; more per request means
/// fewer round trips at high rates, and the consumer's max_ack_pending still bounds what is out).
const PULL_BATCH: usize = 500;

async fn pull_messages(pull: &consumer::PullConsumer) -> anyhow::Result<consumer::pull::Stream> {
    pull.stream()
        .max_messages_per_batch(PULL_BATCH)
        .messages()
        .await
        .context("pulling messages")
}

async fn bind(
    js: &jetstream::Context,
    reference: &ConsumerRef,
) -> anyhow::Result<(consumer::PullConsumer, Bound)> {
    let stream = js
        .get_stream(&reference.stream)
        .await
        .with_context(|| format!("stream {}", reference.stream))?;
    let mut pull: consumer::PullConsumer = stream
        .get_consumer(&reference.consumer)
        .await
        .map_err(|e| anyhow::anyhow!(e))
        .with_context(|| format!("consumer {} of {}", reference.consumer, reference.stream))?;
    let config = pull.info().await?.config.clone();
    let bound = Bound {
        stream: reference.stream.clone(),
        name: reference.consumer.clone(),
        policy: RetryPolicy {
            backoff: config.backoff.clone(),
            max_deliver: u64::try_from(config.max_deliver).ok().filter(|m| *m > 0),
        },
        ack_wait: config.ack_wait,
    };
    Ok((pull, bound))
}

async fn report_lag(mut pull: consumer::PullConsumer, name: String, metrics: Arc<Metrics>) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tick.tick().await;
        if let Ok(info) = pull.info().await {
            metrics
                .lag
                .with_label_values(&[name.as_str()])
                .set(i64::try_from(info.num_pending).unwrap_or(i64::MAX));
        }
    }
}

/// One message, from arrival to ack, nak or term.
async fn process(
    worker: Arc<Worker>,
    bound: Arc<Bound>,
    message: Message,
    mut expired: watch::Receiver<bool>,
) {
    let arrived = Instant::now();
    let consumer = bound.name.as_str();
    let (sequence, delivered) = match message.info() {
        Ok(info) => (info.stream_sequence, info.delivered as u64),
        Err(_) => (0, 1),
    };
    if delivered > 1 {
        worker
            .metrics
            .redeliveries
            .with_label_values(&[consumer])
            .inc();
    }
    let dead = |reason: DeadReason, error: String, event_id: Option<String>| DeadEnd {
        reason,
        error,
        event_id,
        sequence,
        delivered,
    };

    let event = match event::parse(&message.payload) {
        Ok(event) => event,
        Err(error) => {
            let dead_end = dead(DeadReason::Terminated, error.to_string(), None);
            return Box::pin(finish_dead(&worker, &bound, &message, dead_end, arrived)).await;
        }
    };
    let interaction = match Interaction::of(&event) {
        Ok(interaction) => interaction,
        Err(error) => {
            let dead_end = dead(
                DeadReason::Terminated,
                error.to_string(),
                Some(event.event_id.clone()),
            );
            return Box::pin(finish_dead(&worker, &bound, &message, dead_end, arrived)).await;
        }
    };
    let key = route_key(&event, interaction.as_ref());
    let handler = worker.registry.route(&key).cloned();
    let guarded = handler.as_ref().is_some_and(Handler::needs_idempotency);
    if guarded
        && Box::pin(worker.state.is_done(consumer, &event.event_id))
            .await
            .unwrap_or(false)
    {
        worker
            .metrics
            .processed
            .with_label_values(&[consumer, "duplicate"])
            .inc();
        let _ = message.ack().await;
        return;
    }

    // From here on the message may wait for a slot, then for its handler: keep it ours.
    let progress = keep_in_progress(&message, bound.policy.ack_window(delivered, bound.ack_wait));
    tokio::pin!(progress);
    if let Some(interaction) = interaction.as_ref().filter(|i| i.kind.is_deferred()) {
        Box::pin(defer(&worker, consumer, interaction, event.timestamp)).await;
    }

    let permit = tokio::select! {
        permit = worker.slots.clone().acquire_owned() => permit.expect("never closed"),
        () = &mut progress => unreachable!("progress never ends"),
        () = raised(&mut expired) => {
            let _ = message.ack_with(AckKind::Nak(None)).await;
            worker.metrics.processed.with_label_values(&[consumer, "nak"]).inc();
            return;
        }
    };
    let limited = match (&interaction, worker.registry.limits(&key)) {
        (Some(interaction), Some(limits)) => {
            Box::pin(over_limit(&worker, &key, interaction, limits)).await
        }
        _ => None,
    };
    let handled = match &handler {
        _ if limited.is_some() => Handled::reply(limited.unwrap_or_default()),
        // Nothing to run: the payload is never parsed.
        Some(Handler::Ack) => Handled::done(),
        Some(handler) => {
            let full = match event.to_event() {
                Ok(full) => full,
                Err(error) => {
                    let error = format!("the event's data does not parse: {error}");
                    let dead_end =
                        dead(DeadReason::Terminated, error, Some(event.event_id.clone()));
                    return Box::pin(finish_dead(&worker, &bound, &message, dead_end, arrived))
                        .await;
                }
            };
            let request = Request {
                event: &full,
                interaction: interaction.as_ref(),
                state: &worker.state,
            };
            tokio::select! {
                handled = Box::pin(handler.handle(&request)) => handled,
                () = &mut progress => unreachable!("progress never ends"),
                () = raised(&mut expired) => {
                    let _ = message.ack_with(AckKind::Nak(None)).await;
                    worker.metrics.processed.with_label_values(&[consumer, "nak"]).inc();
                    return;
                }
            }
        }
        None => {
            worker
                .metrics
                .unrouted
                .with_label_values(&[consumer, key.as_str()])
                .inc();
            match &interaction {
                Some(_) => Handled::reply("This command is not available."),
                None => Handled::done(),
            }
        }
    };
    drop(permit);

    let disposition = bound.policy.disposition(&handled.outcome, delivered);
    if let Some(interaction) = &interaction {
        Box::pin(answer(&worker, interaction, &handled, &disposition)).await;
    }
    match disposition {
        Disposition::Ack => {
            if guarded
                && let Err(error) =
                    Box::pin(worker.state.mark_done(consumer, &event.event_id)).await
            {
                tracing::warn!(
                    error = format!("{error:#}"),
                    "could not record the event as done"
                );
            }
            if delivered > 1 {
                Box::pin(worker.jobs.record(job(
                    &bound,
                    &message,
                    sequence,
                    delivered,
                    JobState::Done,
                    None,
                    &event.event_id,
                )))
                .await;
            }
            let _ = message.ack().await;
            settle_metrics(&worker, consumer, "ack", arrived);
        }
        Disposition::Nak(delay) => {
            Box::pin(worker.jobs.record(job(
                &bound,
                &message,
                sequence,
                delivered,
                JobState::Retrying,
                handled.outcome.error(),
                &event.event_id,
            )))
            .await;
            let _ = message.ack_with(AckKind::Nak(Some(delay))).await;
            settle_metrics(&worker, consumer, "nak", arrived);
        }
        Disposition::Term { reason } => {
            let error = handled.outcome.error().unwrap_or_default().to_owned();
            let dead_end = dead(reason, error, Some(event.event_id.clone()));
            Box::pin(finish_dead(&worker, &bound, &message, dead_end, arrived)).await;
        }
    }
}

/// Why `interaction`'s user may not run `key` now, if they may not: a running cooldown or a full
/// rate window. Checks that cannot reach NATS let the command through.
async fn over_limit(
    worker: &Worker,
    key: &str,
    interaction: &Interaction,
    limits: &crate::handlers::Limits,
) -> Option<String> {
    let user = interaction.user_id.as_deref()?;
    let by = interaction.id.to_string();
    if let Some((rate, per)) = limits.rate
        && !worker
            .state
            .try_rate_limit(key, user, &by, rate, per)
            .await
            .unwrap_or(true)
    {
        return Some(format!("Slow down: at most {rate} of these per {per:?}."));
    }
    if let Some(cooldown) = limits.cooldown
        && !worker
            .state
            .try_cooldown(key, user, &by, cooldown)
            .await
            .unwrap_or(true)
    {
        return Some(format!(
            "That is on cooldown; try again in up to {cooldown:?}."
        ));
    }
    None
}

/// Resolves once `flag` is raised (or its sender is gone).
async fn raised(flag: &mut watch::Receiver<bool>) {
    let _ = flag.wait_for(|raised| *raised).await;
}

struct DeadEnd {
    reason: DeadReason,
    error: String,
    event_id: Option<String>,
    sequence: u64,
    delivered: u64,
}

/// Records the message as a dead letter, then terms it. If the record cannot be written the
/// message is nak'd instead, so it is never dropped unrecorded.
async fn finish_dead(
    worker: &Worker,
    bound: &Bound,
    message: &Message,
    dead: DeadEnd,
    arrived: Instant,
) {
    let consumer = bound.name.as_str();
    tracing::warn!(
        consumer,
        sequence = dead.sequence,
        reason = dead.reason.as_str(),
        error = dead.error,
        "dead letter"
    );
    let letter = DeadLetter {
        stream: &bound.stream,
        sequence: dead.sequence,
        consumer,
        subject: message.subject.as_str(),
        deliveries: dead.delivered,
        reason: dead.reason,
        error: &dead.error,
        event_id: dead.event_id.as_deref(),
        payload: message.payload.clone(),
    };
    match worker.dead_letters.record(&letter, &worker.jobs).await {
        Ok(()) => {
            let _ = message.ack_with(AckKind::Term).await;
            worker
                .metrics
                .dead_letters
                .with_label_values(&[consumer, dead.reason.as_str()])
                .inc();
            settle_metrics(worker, consumer, "term", arrived);
        }
        Err(error) => {
            tracing::error!(
                error = format!("{error:#}"),
                "could not record a dead letter; nak so it comes back"
            );
            let _ = message
                .ack_with(AckKind::Nak(Some(Duration::from_secs(5))))
                .await;
            settle_metrics(worker, consumer, "nak", arrived);
        }
    }
}

fn settle_metrics(worker: &Worker, consumer: &str, status: &str, arrived: Instant) {
    worker
        .metrics
        .processed
        .with_label_values(&[consumer, status])
        .inc();
    worker
        .metrics
        .duration
        .with_label_values(&[consumer])
        .observe(arrived.elapsed().as_secs_f64());
}

fn job(
    bound: &Bound,
    message: &Message,
    sequence: u64,
    delivered: u64,
    state: JobState,
    error: Option<&str>,
    event_id: &str,
) -> JobRecord {
    JobRecord {
        state,
        stream: bound.stream.clone(),
        sequence,
        consumer: Some(bound.name.clone()),
        subject: Some(message.subject.to_string()),
        event_id: Some(event_id.to_owned()),
        deliveries: delivered,
        error: error.map(str::to_owned),
        updated_ms: 0,
    }
}

/// Tells JetStream the message is still being worked on, three times per ack window, so it is not
/// redelivered while it waits for a slot or its handler runs long.
async fn keep_in_progress(message: &Message, window: Duration) {
    let every = (window / 3).max(Duration::from_millis(20));
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    loop {
        tick.tick().await;
        let _ = message.ack_with(AckKind::Progress).await;
    }
}

async fn defer(worker: &Worker, consumer: &str, interaction: &Interaction, created_ms: u64) {
    let result = match worker.discord.defer(interaction).await {
        Ok(Deferral::Deferred) => "deferred",
        Ok(Deferral::AlreadyDeferred) => "already",
        Ok(Deferral::Expired) => "expired",
        Err(error) => {
            tracing::warn!(interaction = interaction.id, %error, "could not defer the interaction");
            "failed"
        }
    };
    worker
        .metrics
        .defers
        .with_label_values(&[consumer, result])
        .inc();
    if result == "deferred" {
        let after = now_ms().saturating_sub(created_ms) as f64 / 1000.0;
        worker
            .metrics
            .defer_latency
            .with_label_values(&[consumer])
            .observe(after);
    }
}

/// Shows the user the handler's answer, or an error: never silence.
async fn answer(
    worker: &Worker,
    interaction: &Interaction,
    handled: &Handled,
    disposition: &Disposition,
) {
    let result = match (disposition, interaction.kind) {
        (Disposition::Ack, InteractionKind::Autocomplete) => {
            worker
                .discord
                .autocomplete(interaction, handled.reply.as_deref().unwrap_or_default())
                .await
        }
        (Disposition::Ack, _) => {
            worker
                .discord
                .reply(interaction, handled.reply.as_deref().unwrap_or("Done."))
                .await
        }
        // Another delivery will answer.
        (Disposition::Nak(_), _) => return,
        (Disposition::Term { .. }, InteractionKind::Autocomplete) => return,
        (Disposition::Term { .. }, _) => {
            worker
                .discord
                .followup(
                    interaction,
                    "Sorry, that did not work. The team has been told; please try again later.",
                )
                .await
        }
    };
    if let Err(error) = result {
        tracing::warn!(interaction = interaction.id, %error, "could not answer the interaction");
    }
    if let Outcome::Fail(error) | Outcome::Retry(error) = &handled.outcome {
        tracing::debug!(interaction = interaction.id, error, "handler failed");
    }
}
