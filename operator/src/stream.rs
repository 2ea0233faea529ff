//! The NatsStream reconciler: dereference (NATS connection, conflicting resources) → validate →
//! build the stream config (pure) → apply it to JetStream → status from what JetStream holds.
//!
//! Every pass re-reads the stream, so a stream deleted on the server is recreated and an
//! out-of-band edit reverted at the next requeue, and NATS coming up late or restarting heals by
//! itself. Only fields the spec sets are compared: the server's defaults never cause an update
//! and are never written back into the spec.

use std::time::Duration;

use async_nats::jetstream::{self, stream};
use kube::ResourceExt;
use kube::runtime::controller::Action;

use crate::api::nats_stream::{
    Compression, DeletionPolicy, Discard, NatsStream, NatsStreamSpec, Retention, Storage,
    StreamState,
};
use crate::claims::{OWNER_KEY, owner_of, rival};
use crate::context::Context;
use crate::jetstream_controller::{
    Error, Failure, JetStreamObject, managed, patch_status, refused, set_ready,
};

/// Finalizer that deletes the JetStream stream before the resource goes.
pub const FINALIZER: &str = "arrakis.dev/nats-stream";

impl JetStreamObject for NatsStream {
    const FINALIZER: &'static str = FINALIZER;
    const WHAT: &'static str = "stream";
    const INSTEAD: &'static str = "create a new NatsStream for a new stream";
    type Synced = StreamState;

    fn sync(&self, ctx: &Context) -> impl Future<Output = Result<StreamState, Failure>> + Send {
        sync(self, ctx)
    }

    fn write_status(
        &self,
        ctx: &Context,
        outcome: &Result<StreamState, Failure>,
    ) -> impl Future<Output = Result<(), Error>> + Send {
        write_status(self, ctx, outcome)
    }

    fn cleanup(&self, ctx: &Context) -> impl Future<Output = Result<Action, Error>> + Send {
        cleanup(self, ctx)
    }
}

async fn sync(object: &NatsStream, ctx: &Context) -> Result<StreamState, Failure> {
    let mut desired = build(&object.spec).map_err(|message| Failure::new("Invalid", message))?;
    desired.metadata.insert(OWNER_KEY.into(), owner_of(object));
    let namespace = object.namespace().unwrap_or_default();
    let js = ctx
        .nats
        .jetstream(&ctx.client, &namespace, object.spec.connection.as_ref())
        .await
        .map_err(|error| Failure::new(error.reason(), error.to_string()))?;
    let name = &object.spec.name;
    let applied = match js.get_stream(name).await {
        Ok(mut existing) => match existing.info().await {
            Ok(info) => {
                if let Some(other) =
                    rival(&ctx.client, object, info.config.metadata.get(OWNER_KEY)).await
                {
                    return Err(Failure::new(
                        "ResourceConflict",
                        format!(
                            "NatsStream {other} already manages stream {name}; delete one of the two resources"
                        ),
                    ));
                }
                let drift = differences(&desired, &info.config);
                if drift.is_empty() {
                    Ok(())
                } else {
                    let note = format!("stream {name} differs in {}: updating", drift.join(", "));
                    ctx.event(object, false, "Updating", &note).await;
                    js.update_stream(desired.clone())
                        .await
                        .map(drop)
                        .map_err(|e| refusal(e, "NotSupported"))
                }
            }
            Err(error) => Err(("NatsError", error.to_string())),
        },
        Err(error)
            if matches!(error.kind(), jetstream::context::GetStreamErrorKind::JetStream(e)
                if e.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND) =>
        {
            ctx.event(
                object,
                false,
                "Creating",
                &format!("creating stream {name}"),
            )
            .await;
            js.create_stream(desired.clone())
                .await
                .map(drop)
                .map_err(|e| refusal(e, "Rejected"))
        }
        Err(error) => Err(("NatsUnavailable", error.to_string())),
    };
    if let Err((reason, error)) = applied {
        return Err(refused(ctx, object, reason, error).await);
    }
    let mut stream = js
        .get_stream(name)
        .await
        .map_err(|error| Failure::new("NatsError", error.to_string()))?;
    let info = stream
        .info()
        .await
        .map_err(|error| Failure::new("NatsError", error.to_string()))?;
    // JetStream may accept a config and keep something else (a single server keeps one
    // replica): what it holds is the truth.
    let kept = differences(&desired, &info.config);
    if !kept.is_empty() {
        return Err(Failure::new(
            "NotSupported",
            format!(
                "JetStream accepted the spec but keeps a different {} for stream {name}; it cannot apply this here. Revert the change, or create a new NatsStream",
                kept.join(", ")
            ),
        ));
    }
    Ok(StreamState {
        messages: info.state.messages as i64,
        bytes: info.state.bytes as i64,
        first_sequence: info.state.first_sequence as i64,
        last_sequence: info.state.last_sequence as i64,
        consumer_count: info.state.consumer_count as i64,
    })
}

/// A refusal by JetStream itself becomes `reason`; anything else means NATS could not be asked.
fn refusal(
    error: jetstream::context::CreateStreamError,
    reason: &'static str,
) -> (&'static str, String) {
    match error.kind() {
        jetstream::context::CreateStreamErrorKind::JetStream(api) => (reason, api.to_string()),
        _ => ("NatsUnavailable", error.to_string()),
    }
}

async fn cleanup(object: &NatsStream, ctx: &Context) -> Result<Action, Error> {
    let retain = object.spec.deletion_policy == DeletionPolicy::Retain;
    if retain || !managed(object) {
        return Ok(Action::await_change());
    }
    let namespace = object.namespace().unwrap_or_default();
    let name = &object.spec.name;
    // Deleting must not hang forever on a NATS that is gone: report and retry.
    let js = ctx
        .nats
        .jetstream(&ctx.client, &namespace, object.spec.connection.as_ref())
        .await
        .map_err(|e| Error::Finalizer(e.to_string()))?;
    // Only the resource that manages the stream deletes it.
    let claim = match js.get_stream(name).await {
        Ok(mut existing) => existing
            .info()
            .await
            .ok()
            .and_then(|info| info.config.metadata.get(OWNER_KEY).cloned()),
        Err(_) => None,
    };
    if claim.as_deref() != Some(owner_of(object).as_str()) {
        return Ok(Action::await_change());
    }
    match js.delete_stream(name).await {
        Ok(_) => {
            ctx.event(object, false, "Deleted", &format!("deleted stream {name}"))
                .await;
            Ok(Action::await_change())
        }
        Err(error) if error.to_string().contains("not found") => Ok(Action::await_change()),
        Err(error) => Err(Error::Finalizer(format!("deleting stream {name}: {error}"))),
    }
}

async fn write_status(
    object: &NatsStream,
    ctx: &Context,
    outcome: &Result<StreamState, Failure>,
) -> Result<(), Error> {
    let current = object.status.clone().unwrap_or_default();
    let mut status = current.clone();
    let generation = object.metadata.generation;
    status.observed_generation = generation;
    let synced = format!("stream {} matches the spec", object.spec.name);
    set_ready(
        &mut status.conditions,
        outcome.as_ref().map(|_| synced),
        generation,
    );
    if let Ok(state) = outcome {
        status.state = Some(state.clone());
    }
    patch_status(ctx, object, &current, &status).await
}

/// The JetStream config the spec asks for. Unset spec fields are left at the server's defaults.
pub fn build(spec: &NatsStreamSpec) -> Result<stream::Config, String> {
    let duration = |field: &str, value: &Option<crate::api::common::GoDuration>| {
        value
            .as_ref()
            .map(|d| d.to_std().map_err(|e| format!("{field}: {e}")))
            .transpose()
    };
    let defaults = stream::Config::default();
    Ok(stream::Config {
        name: spec.name.clone(),
        description: spec.description.clone(),
        subjects: spec.subjects.clone(),
        storage: match spec.storage {
            Storage::File => stream::StorageType::File,
            Storage::Memory => stream::StorageType::Memory,
        },
        retention: match spec.retention {
            Retention::Limits => stream::RetentionPolicy::Limits,
            Retention::Interest => stream::RetentionPolicy::Interest,
            Retention::WorkQueue => stream::RetentionPolicy::WorkQueue,
        },
        discard: match spec.discard {
            Discard::Old => stream::DiscardPolicy::Old,
            Discard::New => stream::DiscardPolicy::New,
        },
        max_age: duration("maxAge", &spec.max_age)?.unwrap_or(defaults.max_age),
        max_bytes: spec.max_bytes.unwrap_or(-1),
        max_messages: spec.max_msgs.unwrap_or(-1),
        max_message_size: spec.max_msg_size.unwrap_or(-1),
        max_messages_per_subject: spec.max_msgs_per_subject.unwrap_or(-1),
        max_consumers: spec.max_consumers.unwrap_or(-1),
        discard_new_per_subject: spec.discard_new_per_subject.unwrap_or(false),
        duplicate_window: duration("duplicateWindow", &spec.duplicate_window)?
            .unwrap_or(defaults.duplicate_window),
        num_replicas: spec.replicas.unwrap_or(1).max(1) as usize,
        deny_delete: spec.deny_delete.unwrap_or(false),
        deny_purge: spec.deny_purge.unwrap_or(false),
        allow_rollup: spec.allow_rollup.unwrap_or(false),
        allow_direct: spec.allow_direct.unwrap_or(false),
        compression: spec.compression.map(|c| match c {
            Compression::None => stream::Compression::None,
            Compression::S2 => stream::Compression::S2,
        }),
        no_ack: spec.no_ack.unwrap_or(false),
        ..defaults
    })
}

/// The fields where `live` differs from `desired`, among those the spec controls. A field the
/// spec leaves unset matches whatever the server chose.
pub fn differences(desired: &stream::Config, live: &stream::Config) -> Vec<&'static str> {
    let mut out = Vec::new();
    let mut check = |field: &'static str, differs: bool| {
        if differs {
            out.push(field);
        }
    };
    let mut subjects = desired.subjects.clone();
    let mut live_subjects = live.subjects.clone();
    subjects.sort();
    live_subjects.sort();
    check("subjects", subjects != live_subjects);
    check(
        "description",
        desired.description.as_deref().unwrap_or("") != live.description.as_deref().unwrap_or(""),
    );
    check("storage", desired.storage != live.storage);
    check("retention", desired.retention != live.retention);
    check("discard", desired.discard != live.discard);
    check("maxAge", desired.max_age != live.max_age);
    check("maxBytes", desired.max_bytes != live.max_bytes);
    check("maxMsgs", desired.max_messages != live.max_messages);
    check(
        "maxMsgSize",
        desired.max_message_size != live.max_message_size,
    );
    check(
        "maxMsgsPerSubject",
        desired.max_messages_per_subject != live.max_messages_per_subject,
    );
    check("maxConsumers", desired.max_consumers != live.max_consumers);
    check(
        "discardNewPerSubject",
        desired.discard_new_per_subject != live.discard_new_per_subject,
    );
    // The server fills in its own window when none is asked for (2 m).
    check(
        "duplicateWindow",
        desired.duplicate_window != Duration::ZERO
            && desired.duplicate_window != live.duplicate_window,
    );
    check("replicas", desired.num_replicas != live.num_replicas.max(1));
    check("denyDelete", desired.deny_delete != live.deny_delete);
    check("denyPurge", desired.deny_purge != live.deny_purge);
    check("allowRollup", desired.allow_rollup != live.allow_rollup);
    check("allowDirect", desired.allow_direct != live.allow_direct);
    check(
        "compression",
        desired.compression.is_some()
            && desired
                .compression
                .clone()
                .unwrap_or(stream::Compression::None)
                != live
                    .compression
                    .clone()
                    .unwrap_or(stream::Compression::None),
    );
    check("noAck", desired.no_ack != live.no_ack);
    check(
        "metadata",
        desired.metadata.get(OWNER_KEY) != live.metadata.get(OWNER_KEY),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> NatsStreamSpec {
        serde_yaml::from_str(yaml).expect("valid spec")
    }

    #[test]
    fn builds_the_seeds_commands_stream() {
        let config = build(&spec(
            "name: COMMANDS\nsubjects: [commands.>]\nstorage: Memory\nretention: WorkQueue\nmaxAge: 60s",
        ))
        .unwrap();
        assert_eq!(config.name, "COMMANDS");
        assert_eq!(config.storage, stream::StorageType::Memory);
        assert_eq!(config.retention, stream::RetentionPolicy::WorkQueue);
        assert_eq!(config.max_age, Duration::from_secs(60));
        assert_eq!(config.max_bytes, -1, "unset limits are unlimited");
    }

    #[test]
    fn server_defaults_are_not_drift() {
        let desired = build(&spec("name: S\nsubjects: [b.>, a.>]")).unwrap();
        let mut live = desired.clone();
        // What nats-server fills in.
        live.duplicate_window = Duration::from_secs(120);
        live.subjects = vec!["a.>".into(), "b.>".into()];
        live.compression = Some(stream::Compression::None);
        assert_eq!(differences(&desired, &live), Vec::<&str>::new());
    }

    #[test]
    fn out_of_band_edits_are_drift() {
        let desired = build(&spec(
            "name: S\nsubjects: [a.>]\nmaxAge: 5m\nduplicateWindow: 1m",
        ))
        .unwrap();
        let mut live = desired.clone();
        live.max_age = Duration::from_secs(60);
        live.subjects.push("extra.>".into());
        live.duplicate_window = Duration::from_secs(120);
        assert_eq!(
            differences(&desired, &live),
            vec!["subjects", "maxAge", "duplicateWindow"]
        );
    }

    #[test]
    fn bad_durations_say_which_field() {
        let mut bad = spec("name: S\nsubjects: [a.>]");
        bad.max_age = Some(crate::api::common::GoDuration::new("soon"));
        assert!(build(&bad).unwrap_err().starts_with("maxAge:"));
    }
}
