//! What the NatsStream and NatsConsumer controllers share: the controller loop, the finalizer
//! that guards the JetStream object, the `managed: "false"` opt-out, and their error type.

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::watcher;
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::conditions;
use crate::context::{Context, FIELD_MANAGER, MANAGED_ANNOTATION};

/// How soon a failed pass is retried.
pub const RETRY: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("writing the status: {0}")]
    Status(#[source] kube::Error),
    #[error("finalizer: {0}")]
    Finalizer(String),
}

/// Why a pass could not bring the JetStream object in line: `Ready=False` with this reason.
#[derive(Debug, PartialEq)]
pub struct Failure {
    pub reason: &'static str,
    pub message: String,
}

impl Failure {
    pub fn new(reason: &'static str, message: impl Into<String>) -> Self {
        Failure {
            reason,
            message: message.into(),
        }
    }
}

/// A resource that stands for one JetStream object.
pub trait JetStreamObject:
    Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
    + Clone
    + Debug
    + DeserializeOwned
    + Serialize
    + Send
    + Sync
    + 'static
{
    /// Finalizer that removes the JetStream object before the resource goes.
    const FINALIZER: &'static str;
    /// The JetStream object, in messages: `stream`, `consumer`.
    const WHAT: &'static str;
    /// What to do instead of a change JetStream cannot make in place.
    const INSTEAD: &'static str;

    /// What a pass that brought the object in line reports in the status.
    type Synced: Send + Sync;

    /// Brings the JetStream object in line with the spec.
    fn sync(&self, ctx: &Context) -> impl Future<Output = Result<Self::Synced, Failure>> + Send;

    /// Writes the status for a pass's outcome (through [`patch_status`]).
    fn write_status(
        &self,
        ctx: &Context,
        outcome: &Result<Self::Synced, Failure>,
    ) -> impl Future<Output = Result<(), Error>> + Send;

    /// Removes the JetStream object if the resource's deletion policy says so.
    fn cleanup(&self, ctx: &Context) -> impl Future<Output = Result<Action, Error>> + Send;
}

/// Whether the operator may touch the JetStream object (`arrakis.dev/managed` is not `"false"`).
pub fn managed<K: ResourceExt>(object: &K) -> bool {
    object
        .annotations()
        .get(MANAGED_ANNOTATION)
        .map(String::as_str)
        != Some("false")
}

/// Runs the controller over the resources `api` sees (all namespaces, or one in tests) until
/// `shutdown` resolves.
pub async fn run<K: JetStreamObject>(
    api: Api<K>,
    ctx: Arc<Context>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    Controller::new(api, watcher::Config::default().any_semantic())
        .graceful_shutdown_on(shutdown)
        .run(reconcile::<K>, error_policy::<K>, ctx)
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "reconcile failed");
            }
        })
        .await;
}

fn error_policy<K: JetStreamObject>(object: Arc<K>, error: &Error, _: Arc<Context>) -> Action {
    tracing::warn!(name = object.name_any(), %error, "reconcile error");
    Action::requeue(RETRY)
}

async fn reconcile<K: JetStreamObject>(object: Arc<K>, ctx: Arc<Context>) -> Result<Action, Error> {
    let kind = K::kind(&());
    let started = std::time::Instant::now();
    let result = reconcile_once(object, &ctx).await;
    let label = if result.is_ok() { "ok" } else { "error" };
    ctx.metrics
        .reconciles
        .with_label_values(&[kind.as_ref(), label])
        .inc();
    ctx.metrics
        .duration
        .with_label_values(&[kind.as_ref()])
        .observe(started.elapsed().as_secs_f64());
    result
}

async fn reconcile_once<K: JetStreamObject>(
    object: Arc<K>,
    ctx: &Context,
) -> Result<Action, Error> {
    let namespace = object.namespace().unwrap_or_default();
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &namespace);
    finalizer(&api, K::FINALIZER, object, |event| async {
        match event {
            Finalizer::Apply(object) => apply(&*object, ctx).await,
            Finalizer::Cleanup(object) => object.cleanup(ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(e.to_string()))
}

/// One pass over an object that stays: sync unless opted out, write the status, come back after
/// the resync interval (or sooner after a failure).
async fn apply<K: JetStreamObject>(object: &K, ctx: &Context) -> Result<Action, Error> {
    let outcome = if managed(object) {
        object.sync(ctx).await
    } else {
        Err(Failure::new(
            "Unmanaged",
            format!(
                "{MANAGED_ANNOTATION} is \"false\": the {} is left as it is",
                K::WHAT
            ),
        ))
    };
    let requeue = match &outcome {
        Ok(_) => ctx.resync,
        Err(failure) if failure.reason == "Unmanaged" => ctx.resync,
        Err(_) => RETRY,
    };
    object.write_status(ctx, &outcome).await?;
    Ok(Action::requeue(requeue))
}

/// Sets the Ready condition for a pass: `synced` is the message of a pass that succeeded.
pub fn set_ready(
    conditions: &mut Vec<Condition>,
    outcome: Result<String, &Failure>,
    generation: Option<i64>,
) {
    match outcome {
        Ok(message) => conditions::set(conditions, "Ready", true, "Synced", message, generation),
        Err(failure) => conditions::set(
            conditions,
            "Ready",
            false,
            failure.reason,
            failure.message.clone(),
            generation,
        ),
    }
}

/// Writes `status` with server-side apply, unless it says what `current` already says (no
/// reconcile storms from the operator's own writes).
pub async fn patch_status<K: JetStreamObject, S: Serialize + PartialEq>(
    ctx: &Context,
    object: &K,
    current: &S,
    status: &S,
) -> Result<(), Error> {
    if status == current {
        return Ok(());
    }
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &object.namespace().unwrap_or_default());
    let patch = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    api.patch_status(
        &object.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map_err(Error::Status)?;
    Ok(())
}

/// A pass that JetStream refused (`NotSupported` for a change, `Rejected` for a creation) or
/// could not be asked (`NatsUnavailable`): the failure, with what to do, recorded as an Event
/// unless NATS was just unreachable.
pub async fn refused<K: JetStreamObject>(
    ctx: &Context,
    object: &K,
    reason: &'static str,
    error: String,
) -> Failure {
    let message = match reason {
        "NotSupported" => format!(
            "JetStream cannot apply this change in place: {error}. Revert the change, or {}",
            K::INSTEAD
        ),
        "Rejected" => format!(
            "JetStream refused to create the {}: {error}. Fix the spec",
            K::WHAT
        ),
        _ => error,
    };
    if reason != "NatsUnavailable" {
        ctx.event(object, true, reason, &message).await;
    }
    Failure::new(reason, message)
}
