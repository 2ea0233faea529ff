//! Which resource manages a JetStream object: the first to claim it, recorded in the object's own
//! JetStream metadata (`arrakis.dev/owner: namespace/name/uid`). Two resources naming one stream
//! or consumer are then told apart without relying on creation timestamps, which have one-second
//! resolution.

use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;

/// The metadata key of the claim.
pub const OWNER_KEY: &str = "arrakis.dev/owner";

/// The claim `object` writes.
pub fn owner_of<K: Resource>(object: &K) -> String {
    format!(
        "{}/{}/{}",
        object.namespace().unwrap_or_default(),
        object.name_any(),
        object.uid().unwrap_or_default()
    )
}

/// The other resource of `object`'s kind that holds `claim`, if it still exists. A claim whose
/// resource is gone, replaced by a namesake, or being deleted is stale: `object` may take it over.
pub async fn rival<K>(client: &Client, object: &K, claim: Option<&String>) -> Option<String>
where
    K: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    let claim = claim?;
    if *claim == owner_of(object) {
        return None;
    }
    let mut parts = claim.splitn(3, '/');
    let (namespace, name, uid) = (parts.next()?, parts.next()?, parts.next()?);
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    match api.get_opt(name).await {
        Ok(Some(other))
            if other.uid().as_deref() == Some(uid) && other.meta().deletion_timestamp.is_none() =>
        {
            Some(format!("{namespace}/{name}"))
        }
        Ok(_) => None,
        // Unknown: assume the claim holds rather than fight over the object.
        Err(_) => Some(format!("{namespace}/{name}")),
    }
}
