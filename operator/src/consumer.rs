//! The NatsConsumer reconciler (the JetStream side; the worker Deployment and autoscaling are
//! still to come): dereference the NatsStream it names → build the consumer config (pure) →
//! create or update it in JetStream → status from what JetStream reports, lag included.
//!
//! Like streams, consumers are re-read every pass (a consumer deleted on the server comes back),
//! only fields the spec sets are compared, and the first resource to claim a consumer keeps it.

use async_nats::jetstream::consumer;
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};
use serde_json::json;

use crate::api::nats_consumer::{
    AckPolicy, DeliverPolicy, NatsConsumer, NatsConsumerSpec, ReplayPolicy,
};
use crate::api::nats_stream::{DeletionPolicy, NatsStream};
use crate::claims::{OWNER_KEY, owner_of, rival};
use crate::context::Context;
use crate::jetstream_controller::{
    Error, Failure, JetStreamObject, managed, patch_status, refused, set_ready,
};

/// Finalizer that deletes the JetStream consumer before the resource goes.
pub const FINALIZER: &str = "arrakis.dev/nats-consumer";

impl JetStreamObject for NatsConsumer {
    const FINALIZER: &'static str = FINALIZER;
    const WHAT: &'static str = "consumer";
    const INSTEAD: &'static str = "create a new NatsConsumer with another durableName";
    type Synced = consumer::Info;

    fn sync(&self, ctx: &Context) -> impl Future<Output = Result<consumer::Info, Failure>> + Send {
        sync(self, ctx)
    }

    fn write_status(
        &self,
        ctx: &Context,
        outcome: &Result<consumer::Info, Failure>,
    ) -> impl Future<Output = Result<(), Error>> + Send {
        write_status(self, ctx, outcome)
    }

    fn cleanup(&self, ctx: &Context) -> impl Future<Output = Result<Action, Error>> + Send {
        cleanup(self, ctx)
    }
}

/// The NatsStream `object` names, and the JetStream stream behind it, if it is there and Ready.
async fn dereference(object: &NatsConsumer, ctx: &Context) -> Result<NatsStream, Failure> {
    let namespace = object.namespace().unwrap_or_default();
    let streams: Api<NatsStream> = Api::namespaced(ctx.client.clone(), &namespace);
    let name = &object.spec.stream_ref.name;
    let stream = match streams.get_opt(name).await {
        Ok(Some(stream)) => stream,
        Ok(None) => {
            return Err(Failure::new(
                "StreamNotFound",
                format!(
                    "NatsStream {name} does not exist in namespace {namespace}: create it, or fix streamRef"
                ),
            ));
        }
        Err(error) => {
            return Err(Failure::new(
                "StreamNotFound",
                format!("could not read NatsStream {name}: {error}"),
            ));
        }
    };
    let ready = stream
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"));
    match ready {
        Some(condition) if condition.status == "True" => Ok(stream),
        other => Err(Failure::new(
            "StreamNotReady",
            format!(
                "NatsStream {name} is not Ready yet ({})",
                other.map(|c| c.reason.as_str()).unwrap_or("no status")
            ),
        )),
    }
}

async fn sync(object: &NatsConsumer, ctx: &Context) -> Result<consumer::Info, Failure> {
    let stream_object = dereference(object, ctx).await?;
    let mut desired = build(&object.spec).map_err(|message| Failure::new("Invalid", message))?;
    desired.metadata.insert(OWNER_KEY.into(), owner_of(object));
    let namespace = object.namespace().unwrap_or_default();
    let connection = object
        .spec
        .connection
        .as_ref()
        .or(stream_object.spec.connection.as_ref());
    let js = ctx
        .nats
        .jetstream(&ctx.client, &namespace, connection)
        .await
        .map_err(|error| Failure::new(error.reason(), error.to_string()))?;
    let stream_name = &stream_object.spec.name;
    let durable = &object.spec.durable_name;
    let stream = js.get_stream(stream_name).await.map_err(|error| {
        Failure::new(
            "StreamNotReady",
            format!("stream {stream_name} is not in JetStream: {error}"),
        )
    })?;
    let applied = match stream.consumer_info(durable).await {
        Ok(info) => {
            if let Some(other) =
                rival(&ctx.client, object, info.config.metadata.get(OWNER_KEY)).await
            {
                return Err(Failure::new(
                    "ResourceConflict",
                    format!(
                        "NatsConsumer {other} already manages consumer {durable} of {stream_name}; delete one of the two resources"
                    ),
                ));
            }
            let drift = differences(&object.spec, &desired, &info.config);
            if drift.is_empty() {
                Ok(())
            } else {
                let note = format!(
                    "consumer {durable} differs in {}: updating",
                    drift.join(", ")
                );
                ctx.event(object, false, "Updating", &note).await;
                stream
                    .update_consumer(desired.clone())
                    .await
                    .map(drop)
                    .map_err(|e| ("NotSupported", e.to_string()))
            }
        }
        Err(error) if error.to_string().contains("consumer not found") => {
            let note = format!("creating consumer {durable} of {stream_name}");
            ctx.event(object, false, "Creating", &note).await;
            stream
                .create_consumer(desired.clone())
                .await
                .map(drop)
                .map_err(|e| ("Rejected", e.to_string()))
        }
        Err(error) => Err(("NatsUnavailable", error.to_string())),
    };
    if let Err((reason, error)) = applied {
        return Err(refused(ctx, object, reason, error).await);
    }
    stream
        .consumer_info(durable)
        .await
        .map_err(|error| Failure::new("NatsUnavailable", error.to_string()))
}

async fn cleanup(object: &NatsConsumer, ctx: &Context) -> Result<Action, Error> {
    if object.spec.deletion_policy == DeletionPolicy::Retain || !managed(object) {
        return Ok(Action::await_change());
    }
    let namespace = object.namespace().unwrap_or_default();
    let streams: Api<NatsStream> = Api::namespaced(ctx.client.clone(), &namespace);
    // Without its NatsStream there is nothing to reach the consumer through: the stream's own
    // deletion takes its consumers along.
    let Ok(Some(stream_object)) = streams.get_opt(&object.spec.stream_ref.name).await else {
        return Ok(Action::await_change());
    };
    let connection = object
        .spec
        .connection
        .as_ref()
        .or(stream_object.spec.connection.as_ref());
    let js = ctx
        .nats
        .jetstream(&ctx.client, &namespace, connection)
        .await
        .map_err(|e| Error::Finalizer(e.to_string()))?;
    let Ok(stream) = js.get_stream(&stream_object.spec.name).await else {
        return Ok(Action::await_change());
    };
    let durable = &object.spec.durable_name;
    let claim = stream
        .consumer_info(durable)
        .await
        .ok()
        .and_then(|info| info.config.metadata.get(OWNER_KEY).cloned());
    if claim.as_deref() != Some(owner_of(object).as_str()) {
        return Ok(Action::await_change());
    }
    stream
        .delete_consumer(durable)
        .await
        .map_err(|e| Error::Finalizer(format!("deleting consumer {durable}: {e}")))?;
    ctx.event(
        object,
        false,
        "Deleted",
        &format!("deleted consumer {durable}"),
    )
    .await;
    Ok(Action::await_change())
}

async fn write_status(
    object: &NatsConsumer,
    ctx: &Context,
    outcome: &Result<consumer::Info, Failure>,
) -> Result<(), Error> {
    let current = object.status.clone().unwrap_or_default();
    let mut status = current.clone();
    let generation = object.metadata.generation;
    status.observed_generation = generation;
    let synced = format!("consumer {} matches the spec", object.spec.durable_name);
    set_ready(
        &mut status.conditions,
        outcome.as_ref().map(|_| synced),
        generation,
    );
    if let Ok(info) = outcome {
        status.num_pending = Some(info.num_pending as i64);
        status.num_ack_pending = Some(info.num_ack_pending as i64);
        status.num_redelivered = Some(info.num_redelivered as i64);
        status.num_waiting = Some(info.num_waiting as i64);
    }
    patch_status(ctx, object, &current, &status).await
}

/// The consumer config the spec asks for, written as JetStream's own JSON so its types (times,
/// deliver policies) are parsed by async-nats exactly as the server would send them.
pub fn build(spec: &NatsConsumerSpec) -> Result<consumer::pull::Config, String> {
    let nanos = |field: &str, value: &crate::api::common::GoDuration| {
        value
            .to_std()
            .map(|d| d.as_nanos() as u64)
            .map_err(|e| format!("{field}: {e}"))
    };
    let mut config = json!({
        "durable_name": spec.durable_name,
        "ack_policy": match spec.ack_policy {
            AckPolicy::Explicit => "explicit",
            AckPolicy::All => "all",
            AckPolicy::None => "none",
        },
        "replay_policy": match spec.replay_policy {
            ReplayPolicy::Instant => "instant",
            ReplayPolicy::Original => "original",
        },
        "deliver_policy": match spec.deliver_policy {
            DeliverPolicy::All => "all",
            DeliverPolicy::Last => "last",
            DeliverPolicy::New => "new",
            DeliverPolicy::ByStartSequence => "by_start_sequence",
            DeliverPolicy::ByStartTime => "by_start_time",
            DeliverPolicy::LastPerSubject => "last_per_subject",
        },
    });
    let fields = config.as_object_mut().expect("an object");
    if let Some(description) = &spec.description {
        fields.insert("description".into(), json!(description));
    }
    match spec.filter_subjects.as_slice() {
        [] => {}
        [one] => {
            fields.insert("filter_subject".into(), json!(one));
        }
        many => {
            fields.insert("filter_subjects".into(), json!(many));
        }
    }
    if let Some(wait) = &spec.ack_wait {
        fields.insert("ack_wait".into(), json!(nanos("ackWait", wait)?));
    }
    if let Some(max) = spec.max_deliver {
        fields.insert("max_deliver".into(), json!(max));
    }
    if let Some(max) = spec.max_ack_pending {
        fields.insert("max_ack_pending".into(), json!(max));
    }
    if let Some(steps) = &spec.backoff {
        let steps: Result<Vec<u64>, String> = steps.iter().map(|s| nanos("backoff", s)).collect();
        fields.insert("backoff".into(), json!(steps?));
    }
    if let Some(seq) = spec.opt_start_seq {
        fields.insert("opt_start_seq".into(), json!(seq));
    }
    if let Some(time) = &spec.opt_start_time {
        fields.insert("opt_start_time".into(), json!(time));
    }
    if let Some(batch) = spec.max_request_batch {
        fields.insert("max_batch".into(), json!(batch));
    }
    if let Some(headers_only) = spec.headers_only {
        fields.insert("headers_only".into(), json!(headers_only));
    }
    if let Some(replicas) = spec.replicas {
        fields.insert("num_replicas".into(), json!(replicas));
    }
    serde_json::from_value(config)
        .map_err(|e| format!("the consumer settings do not form a JetStream config: {e}"))
}

/// The fields where `live` differs from `desired`, among those `spec` sets (the server fills in
/// the rest, and those are not drift).
pub fn differences(
    spec: &NatsConsumerSpec,
    desired: &consumer::pull::Config,
    live: &consumer::Config,
) -> Vec<&'static str> {
    let mut out = Vec::new();
    let mut check = |field: &'static str, differs: bool| {
        if differs {
            out.push(field);
        }
    };
    let filters = |one: &String, many: &Vec<String>| {
        let mut all = many.clone();
        if !one.is_empty() {
            all.push(one.clone());
        }
        all.sort();
        all
    };
    check(
        "filterSubjects",
        filters(&desired.filter_subject, &desired.filter_subjects)
            != filters(&live.filter_subject, &live.filter_subjects),
    );
    check(
        "description",
        spec.description.is_some() && desired.description != live.description,
    );
    check("ackPolicy", desired.ack_policy != live.ack_policy);
    check(
        "ackWait",
        spec.ack_wait.is_some() && desired.ack_wait != live.ack_wait,
    );
    check(
        "maxDeliver",
        spec.max_deliver.is_some() && desired.max_deliver != live.max_deliver,
    );
    check(
        "maxAckPending",
        spec.max_ack_pending.is_some() && desired.max_ack_pending != live.max_ack_pending,
    );
    check(
        "backoff",
        spec.backoff.is_some() && desired.backoff != live.backoff,
    );
    check(
        "deliverPolicy",
        desired.deliver_policy != live.deliver_policy,
    );
    check("replayPolicy", desired.replay_policy != live.replay_policy);
    check(
        "maxRequestBatch",
        spec.max_request_batch.is_some() && desired.max_batch != live.max_batch,
    );
    check(
        "headersOnly",
        spec.headers_only.is_some() && desired.headers_only != live.headers_only,
    );
    check(
        "replicas",
        spec.replicas.is_some() && desired.num_replicas != live.num_replicas,
    );
    check(
        "metadata",
        desired.metadata.get(OWNER_KEY) != live.metadata.get(OWNER_KEY),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn spec(yaml: &str) -> NatsConsumerSpec {
        serde_yaml::from_str(yaml).expect("valid spec")
    }

    #[test]
    fn builds_the_seeds_command_worker() {
        let config = build(&spec(
            "streamRef: {name: commands}\ndurableName: command-worker\nackWait: 30s\nmaxAckPending: 50\nmaxDeliver: 5\nbackoff: [1s, 5s]\nfilterSubjects: [commands.interaction]",
        ))
        .unwrap();
        assert_eq!(config.durable_name.as_deref(), Some("command-worker"));
        assert_eq!(config.ack_wait, Duration::from_secs(30));
        assert_eq!(config.max_ack_pending, 50);
        assert_eq!(config.max_deliver, 5);
        assert_eq!(
            config.backoff,
            vec![Duration::from_secs(1), Duration::from_secs(5)]
        );
        assert_eq!(config.filter_subject, "commands.interaction");
        assert_eq!(config.ack_policy, consumer::AckPolicy::Explicit);
    }

    #[test]
    fn start_points_parse_and_bad_ones_are_named() {
        let by_time = build(&spec(
            "streamRef: {name: s}\ndurableName: d\ndeliverPolicy: ByStartTime\noptStartTime: \"2026-11-23T10:00:00Z\"",
        ))
        .unwrap();
        assert!(matches!(
            by_time.deliver_policy,
            consumer::DeliverPolicy::ByStartTime { .. }
        ));
        let mut bad = spec("streamRef: {name: s}\ndurableName: d\ndeliverPolicy: ByStartTime");
        bad.opt_start_time = Some("yesterday".into());
        assert!(
            build(&bad)
                .unwrap_err()
                .contains("do not form a JetStream config")
        );
    }

    #[test]
    fn server_filled_fields_are_not_drift() {
        let s = spec("streamRef: {name: s}\ndurableName: d");
        let desired = build(&s).unwrap();
        let mut live = consumer::IntoConsumerConfig::into_consumer_config(desired.clone());
        live.ack_wait = Duration::from_secs(30);
        live.max_ack_pending = 1000;
        live.max_deliver = -1;
        assert!(differences(&s, &desired, &live).is_empty());
        live.ack_policy = consumer::AckPolicy::All;
        assert_eq!(differences(&s, &desired, &live), vec!["ackPolicy"]);
    }
}
