//! `/health`, `/ready` and `/metrics`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::metrics::Metrics;
use crate::runner::Statuses;

#[derive(Clone)]
pub struct HttpState {
    pub statuses: Statuses,
    pub metrics: Arc<Metrics>,
    pub assigned: usize,
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
    let (ready, guilds) = {
        let statuses = state.statuses.lock().unwrap_or_else(|p| p.into_inner());
        (
            statuses.values().filter(|s| s.ready).count(),
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
    let is_ready = ready == state.assigned && nats_connected;
    let code = if is_ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "ready": is_ready,
        "shards_total": state.assigned,
        "shards_ready": ready,
        "nats_connected": nats_connected,
        "guilds_total": guilds,
    });
    (code, Json(body))
}

async fn metrics(State(state): State<HttpState>) -> impl IntoResponse {
    state.metrics.render()
}
