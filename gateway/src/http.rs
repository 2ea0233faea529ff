//! `/health`, `/ready` and `/metrics`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::host::Assigned;
use crate::metrics::Metrics;
use crate::runner::Statuses;

#[derive(Clone)]
pub struct HttpState {
    pub statuses: Statuses,
    pub metrics: Arc<Metrics>,
    /// The shards this process should be running now.
    pub assigned: Assigned,
    /// None in log-only mode.
    pub nats: Option<async_nats::Client>,
}

pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/health", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .with_state(state)
}

/// Ready when every assigned shard is connected and NATS is (seed S-4.4 asked for one shard; Arrakis asks for all).
async fn ready(State(state): State<HttpState>) -> impl IntoResponse {
    let assigned = state
        .assigned
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let (ready, guilds) = {
        let statuses = state.statuses.lock().unwrap_or_else(|p| p.into_inner());
        let ready_here = |shard: &u32| statuses.get(shard).is_some_and(|s| s.ready);
        (
            assigned.iter().filter(|shard| ready_here(shard)).count(),
            statuses.values().map(|s| s.guilds).sum::<usize>(),
        )
    };
    let nats_connected = state
        .nats
        .as_ref()
        .is_none_or(|client| client.connection_state() == async_nats::connection::State::Connected);
    state.metrics.nats_connected.set(i64::from(nats_connected));
    state
        .metrics
        .shards_ready
        .with_label_values(&["0"])
        .set(ready as i64);
    let is_ready = ready == assigned.len() && nats_connected;
    let code = if is_ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "ready": is_ready,
        "shards_total": assigned.len(),
        "shards": assigned,
        "shards_ready": ready,
        "nats_connected": nats_connected,
        "guilds_total": guilds,
    });
    (code, Json(body))
}

async fn metrics(State(state): State<HttpState>) -> impl IntoResponse {
    state.metrics.render()
}
