//! Bounded waits. Every wait has a deadline and says what it was waiting for when it gives up.

use std::fmt::Debug;
use std::time::Duration;

use anyhow::bail;
use kube::api::{Api, ListParams};
use kube::runtime::wait::{Condition, await_condition as kube_await};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

const POLL_INTERVAL: Duration = Duration::from_millis(25);

/// Calls `check` until it returns `Some`, an error, or `timeout` passes (then `Ok(None)`).
/// For state that has no watch API, such as a file another process writes.
pub async fn poll_until<T>(
    timeout: Duration,
    mut check: impl FnMut() -> anyhow::Result<Option<T>>,
) -> anyhow::Result<Option<T>> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check()? {
            return Ok(Some(value));
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok(None);
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Awaits `check` every `POLL_INTERVAL` until it yields `Some`, for at most `timeout`.
/// For state only reachable by asking (a stream's message count, an HTTP endpoint).
pub async fn until<T, Fut: std::future::Future<Output = Option<T>>>(
    timeout: Duration,
    mut check: impl FnMut() -> Fut,
) -> Option<T> {
    tokio::time::timeout(timeout, async {
        loop {
            if let Some(value) = check().await {
                return value;
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    })
    .await
    .ok()
}

/// Watches `name` until `condition` holds, for at most `timeout`.
/// On timeout the error carries the object as YAML and the Events about it.
pub async fn await_condition<K>(
    api: &Api<K>,
    name: &str,
    what: &str,
    timeout: Duration,
    condition: impl Condition<K>,
) -> anyhow::Result<K>
where
    K: Resource + Clone + Debug + DeserializeOwned + Serialize + Send + Sync + 'static,
    K::DynamicType: Default,
{
    match tokio::time::timeout(timeout, kube_await(api.clone(), name, condition)).await {
        Ok(Ok(Some(object))) => Ok(object),
        Ok(Ok(None)) => bail!(
            "{} {name} was deleted while waiting until {what}",
            K::kind(&Default::default())
        ),
        Ok(Err(e)) => bail!("watch of {name} failed while waiting until {what}: {e}"),
        Err(_) => {
            let state = describe(api, name).await;
            bail!(
                "timed out after {timeout:?} waiting until {what}\n--- state of {} {name} ---\n{state}",
                K::kind(&Default::default())
            )
        }
    }
}

/// The object as YAML plus the Events that name it, for failure messages.
pub async fn describe<K>(api: &Api<K>, name: &str) -> String
where
    K: Resource + Clone + Debug + DeserializeOwned + Serialize,
    K::DynamicType: Default,
{
    match api.get_opt(name).await {
        Ok(Some(mut object)) => {
            let events = events_about(&object).await;
            object.managed_fields_mut().clear();
            let yaml =
                serde_yaml::to_string(&object).unwrap_or_else(|e| format!("(unprintable: {e})"));
            format!("{yaml}{events}")
        }
        Ok(None) => "(not found)".to_owned(),
        Err(e) => format!("(could not read it: {e})"),
    }
}

async fn events_about<K: Resource>(object: &K) -> String {
    let (Some(namespace), Some(uid)) = (object.meta().namespace.clone(), object.meta().uid.clone())
    else {
        return String::new();
    };
    let Ok(client) = crate::cluster::client().await else {
        return String::new();
    };
    let events: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(client, &namespace);
    let selector = format!("involvedObject.uid={uid}");
    match events.list(&ListParams::default().fields(&selector)).await {
        Ok(list) if !list.items.is_empty() => {
            let lines: Vec<String> = list
                .items
                .iter()
                .map(|e| {
                    format!(
                        "  {} {}: {}",
                        e.type_.as_deref().unwrap_or("-"),
                        e.reason.as_deref().unwrap_or("-"),
                        e.message.as_deref().unwrap_or("")
                    )
                })
                .collect();
            format!("--- events ---\n{}\n", lines.join("\n"))
        }
        _ => String::new(),
    }
}
