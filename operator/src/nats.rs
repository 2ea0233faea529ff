//! NATS connections for reconcilers: per resource, from its `connection` or the operator's default,
//! with credentials read from a Secret. Connections are shared by everything that uses the same
//! servers and credentials.

use std::collections::HashMap;
use std::sync::Arc;

use async_nats::jetstream;
use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};
use tokio::sync::Mutex;

use crate::api::common::NatsConnection;

/// Default key of a credentials Secret.
const CREDS_KEY: &str = "nats.creds";

/// Why a resource's NATS cannot be used; each becomes a condition reason.
#[derive(Debug, thiserror::Error)]
pub enum NatsError {
    #[error(
        "Secret {name} (key {key}) for the NATS credentials does not exist in namespace {namespace}: create it, or fix connection.credentialsSecretRef"
    )]
    MissingSecret {
        namespace: String,
        name: String,
        key: String,
    },
    #[error("could not read Secret {name}: {source}")]
    SecretUnreadable {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("NATS at {servers} is not reachable: {reason}")]
    Unreachable { servers: String, reason: String },
    #[error(
        "TLS settings for NATS are not supported by this operator version yet: remove connection.tls or use a tls:// URL the server accepts without client certificates"
    )]
    TlsUnsupported,
}

impl NatsError {
    pub fn reason(&self) -> &'static str {
        match self {
            NatsError::MissingSecret { .. } => "SecretNotFound",
            NatsError::SecretUnreadable { .. } => "SecretUnreadable",
            NatsError::Unreachable { .. } => "NatsUnavailable",
            NatsError::TlsUnsupported => "NotSupported",
        }
    }
}

#[derive(Clone)]
pub struct Connections {
    default_servers: String,
    clients: Arc<Mutex<HashMap<String, async_nats::Client>>>,
}

impl Connections {
    /// `default_servers`: the operator's NATS URL(s), comma-separated.
    pub fn new(default_servers: impl Into<String>) -> Self {
        Connections {
            default_servers: default_servers.into(),
            clients: Arc::default(),
        }
    }

    /// JetStream for a resource in `namespace` with `connection`.
    pub async fn jetstream(
        &self,
        client: &Client,
        namespace: &str,
        connection: Option<&NatsConnection>,
    ) -> Result<jetstream::Context, NatsError> {
        let servers = match connection.map(|c| &c.servers) {
            Some(servers) if !servers.is_empty() => servers.join(","),
            _ => self.default_servers.clone(),
        };
        if connection.is_some_and(|c| c.tls.is_some()) {
            return Err(NatsError::TlsUnsupported);
        }
        let creds = match connection.and_then(|c| c.credentials_secret_ref.as_ref()) {
            Some(reference) => {
                let key = reference.key.clone().unwrap_or_else(|| CREDS_KEY.into());
                let secret = Api::<Secret>::namespaced(client.clone(), namespace)
                    .get_opt(&reference.name)
                    .await
                    .map_err(|source| NatsError::SecretUnreadable {
                        name: reference.name.clone(),
                        source,
                    })?;
                let value = secret
                    .and_then(|s| s.data)
                    .and_then(|mut data| data.remove(&key))
                    .ok_or_else(|| NatsError::MissingSecret {
                        namespace: namespace.to_owned(),
                        name: reference.name.clone(),
                        key: key.clone(),
                    })?;
                Some(String::from_utf8_lossy(&value.0).into_owned())
            }
            None => None,
        };
        // Keyed by servers and a digest-free marker of the credentials' Secret: never the secret itself.
        let cache_key = format!(
            "{servers}|{}",
            connection
                .and_then(|c| c.credentials_secret_ref.as_ref())
                .map(|r| format!("{namespace}/{}", r.name))
                .unwrap_or_default()
        );
        let mut clients = self.clients.lock().await;
        if let Some(existing) = clients.get(&cache_key)
            && existing.connection_state() != async_nats::connection::State::Disconnected
        {
            return Ok(jetstream::new(existing.clone()));
        }
        let options = match &creds {
            Some(creds) => async_nats::ConnectOptions::with_credentials(creds).map_err(|e| {
                NatsError::Unreachable {
                    servers: servers.clone(),
                    reason: format!("the credentials in the Secret do not parse: {e}"),
                }
            })?,
            None => async_nats::ConnectOptions::new(),
        };
        let connected = options
            .connection_timeout(std::time::Duration::from_secs(3))
            .connect(servers.as_str())
            .await
            .map_err(|e| NatsError::Unreachable {
                servers: servers.clone(),
                reason: e.to_string(),
            })?;
        clients.insert(cache_key, connected.clone());
        Ok(jetstream::new(connected))
    }
}
