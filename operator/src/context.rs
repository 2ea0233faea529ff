//! What every reconciler gets: the Kubernetes client, NATS connections, an Events recorder.

use std::sync::Arc;
use std::time::Duration;

use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Client, Resource};

use crate::metrics::Metrics;
use crate::nats::Connections;

/// The one field manager of every server-side apply the operator makes.
pub const FIELD_MANAGER: &str = "arrakis-operator";
/// `"false"` lets a resource go without touching what it manages in JetStream.
pub const MANAGED_ANNOTATION: &str = "arrakis.dev/managed";

pub struct Context {
    pub client: Client,
    pub nats: Connections,
    pub metrics: Arc<Metrics>,
    /// How often objects in sync are checked again, to correct drift made behind the operator's back.
    pub resync: Duration,
    recorder: Recorder,
}

/// The default of [`Context::resync`].
pub const RESYNC: Duration = Duration::from_secs(30);

impl Context {
    /// `default_nats`: the NATS URL(s) resources without their own `connection` use.
    pub fn new(client: Client, default_nats: &str, instance: Option<String>) -> Self {
        let reporter = Reporter {
            controller: FIELD_MANAGER.into(),
            instance,
        };
        Context {
            recorder: Recorder::new(client.clone(), reporter),
            nats: Connections::new(default_nats),
            metrics: Arc::default(),
            resync: RESYNC,
            client,
        }
    }

    /// Records a Kubernetes Event about `object`; a failure to record is logged, not fatal.
    pub async fn event<K: Resource<DynamicType = ()>>(
        &self,
        object: &K,
        warning: bool,
        reason: &str,
        note: &str,
    ) {
        let event = Event {
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: reason.to_owned(),
            note: Some(note.to_owned()),
            action: "Reconcile".to_owned(),
            secondary: None,
        };
        if let Err(error) = self.recorder.publish(&event, &object.object_ref(&())).await {
            tracing::debug!(%error, "could not record an Event");
        }
    }
}
