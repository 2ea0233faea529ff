//! What the NatsStream and NatsConsumer controllers share: the controller loop, the finalizer
//! that guards the JetStream object, the `managed: "false"` opt-out, and their error type.

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::watcher;
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::context::{Context, MANAGED_ANNOTATION};

/// How soon a failed pass is retried.
pub const RETRY: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("writing the status: {0}")]
    Status(#[source] kube::Error),
    #[error("finalizer: {0}")]
    Finalizer(String),
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

    /// Brings the JetStream object in line and writes the status.
    fn apply(&self, ctx: &Context) -> impl Future<Output = Result<Action, Error>> + Send;

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
            Finalizer::Apply(object) => object.apply(ctx).await,
            Finalizer::Cleanup(object) => object.cleanup(ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(e.to_string()))
}
