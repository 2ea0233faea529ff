//! REST under `/api/v10`: the endpoints Arrakis calls, with Discord's status codes and error bodies.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use crate::Shared;

pub(crate) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/api/v10/gateway/bot", get(gateway_bot))
        .route("/api/v10/gateway", get(gateway))
}

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        Json(json!({"message": "401: Unauthorized", "code": 0})),
    )
        .into_response()
}

fn authorized(shared: &Shared, headers: &HeaderMap) -> bool {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bot "))
        .is_some_and(|token| token == shared.config.token)
}

async fn gateway_bot(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if !authorized(&shared, &headers) {
        return unauthorized();
    }
    let remaining = shared.state().session_starts_remaining;
    Json(json!({
        "url": shared.ws_url,
        "shards": shared.config.recommended_shards,
        "session_start_limit": {
            "total": shared.config.session_start_limit,
            "remaining": remaining,
            "reset_after": 14_400_000,
            "max_concurrency": shared.config.max_concurrency,
        }
    }))
    .into_response()
}

async fn gateway(State(shared): State<Arc<Shared>>) -> Response {
    Json(json!({"url": shared.ws_url})).into_response()
}
