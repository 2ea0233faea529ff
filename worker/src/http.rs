//! `/healthz`, `/readyz`, `/metrics`, and `/jobs/{stream}/{sequence}` for job status.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use tokio::sync::watch;

use crate::jobs::Jobs;
use crate::metrics::Metrics;

#[derive(Clone)]
pub struct HttpState {
    pub metrics: Arc<Metrics>,
    pub nats: async_nats::Client,
    /// One flag per consumer: raised once it is bound and pulling.
    pub bound: Vec<watch::Receiver<bool>>,
    /// Set once NATS has been reached and the job bucket opened.
    pub jobs: Arc<std::sync::OnceLock<Jobs>>,
}

pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/readyz", get(ready))
        .route(
            "/metrics",
            get(|State(s): State<HttpState>| async move { s.metrics.render() }),
        )
        .route("/jobs/{stream}/{sequence}", get(job))
        .with_state(state)
}

/// Ready when NATS is connected and every consumer is bound.
async fn ready(State(state): State<HttpState>) -> impl IntoResponse {
    let nats = state.nats.connection_state() == async_nats::connection::State::Connected;
    let bound = state.bound.iter().filter(|b| *b.borrow()).count();
    let ready = nats && bound == state.bound.len();
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        code,
        Json(
            json!({"ready": ready, "nats_connected": nats, "consumers": state.bound.len(), "consumers_bound": bound}),
        ),
    )
}

async fn job(
    State(state): State<HttpState>,
    Path((stream, sequence)): Path<(String, u64)>,
) -> impl IntoResponse {
    let Some(jobs) = state.jobs.get() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"error": "NATS has not been reached yet"})),
        );
    };
    match jobs.status(&stream, sequence).await {
        Ok(record) => (
            StatusCode::OK,
            Json(serde_json::to_value(record).expect("records serialise")),
        ),
        Err(error) => (
            StatusCode::NOT_FOUND,
            Json(json!({"error": format!("{error:#}")})),
        ),
    }
}
