//! Reading and applying Arrakis objects as users write them: YAML documents of any of the three kinds.

use anyhow::{Context, bail};
use arrakis_operator::api::{NatsConsumer, NatsStream, ShardPool};
use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject};
use serde::Deserialize;

/// The API resource of an Arrakis kind, for dynamic clients.
pub fn api_resource(kind: &str) -> anyhow::Result<ApiResource> {
    Ok(match kind {
        "ShardPool" => ApiResource::erase::<ShardPool>(&()),
        "NatsStream" => ApiResource::erase::<NatsStream>(&()),
        "NatsConsumer" => ApiResource::erase::<NatsConsumer>(&()),
        other => bail!("{other} is not an Arrakis kind (ShardPool, NatsStream, NatsConsumer)"),
    })
}

/// A dynamic API handle for `object`'s kind in `namespace`.
pub fn dynamic_api(
    client: &Client,
    namespace: &str,
    object: &DynamicObject,
) -> anyhow::Result<Api<DynamicObject>> {
    let kind = object
        .types
        .as_ref()
        .map(|t| t.kind.as_str())
        .context("object has no kind")?;
    Ok(Api::namespaced_with(
        client.clone(),
        namespace,
        &api_resource(kind)?,
    ))
}

/// Every document of a multi-document YAML text, skipping empty ones.
pub fn parse_documents(text: &str) -> anyhow::Result<Vec<DynamicObject>> {
    serde_yaml::Deserializer::from_str(text)
        .map(|document| serde_yaml::Value::deserialize(document).context("malformed YAML document"))
        .filter(|value| !matches!(value, Ok(serde_yaml::Value::Null)))
        .map(|value| Ok(serde_yaml::from_value(value?)?))
        .collect()
}
