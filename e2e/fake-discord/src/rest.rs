//! REST under `/api/v10`: the endpoints Arrakis calls, with Discord's status codes and error bodies.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::Path;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post, put};
use serde::Deserialize;
use serde_json::json;

use crate::{Shared, model, now_ms, truth};

pub(crate) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/api/v10/gateway/bot", get(gateway_bot))
        .route("/api/v10/gateway", get(gateway))
        .route(
            "/api/v10/interactions/{id}/{token}/callback",
            post(callback),
        )
        .route(
            "/api/v10/webhooks/{application}/{token}/messages/@original",
            patch(edit_original),
        )
        .route("/api/v10/webhooks/{application}/{token}", post(followup))
        .route(
            "/api/v10/guilds/{guild}/members/{user}/roles/{role}",
            put(add_role).delete(remove_role),
        )
        .fallback(not_found)
}

/// Discord's answer to a route it does not have.
async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, 0, "404: Not Found").into_response()
}

/// Discord's error answer: a status, a JSON error code and a message.
struct ApiError {
    status: StatusCode,
    code: u32,
    message: &'static str,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(json!({"message": self.message, "code": self.code})),
        )
            .into_response()
    }
}

fn error(status: StatusCode, code: u32, message: &'static str) -> ApiError {
    ApiError {
        status,
        code,
        message,
    }
}

#[derive(Deserialize)]
struct Callback {
    #[serde(rename = "type")]
    kind: u8,
}

/// The first response to an interaction: within the deadline, once, with the interaction's token.
async fn callback(
    State(shared): State<Arc<Shared>>,
    Path((id, token)): Path<(u64, String)>,
    Json(body): Json<Callback>,
) -> Response {
    let deadline = shared.config.interaction_deadline.as_millis() as u64;
    let now = now_ms();
    let mut state = shared.state();
    let Some(record) = state.truth.interactions.iter_mut().find(|i| i.id == id) else {
        return error(StatusCode::NOT_FOUND, 10062, "Unknown interaction").into_response();
    };
    if record.token != token || now - record.created_ms > deadline {
        record.refused_callbacks += 1;
        return error(StatusCode::NOT_FOUND, 10062, "Unknown interaction").into_response();
    }
    if record.responded_ms.is_some() {
        record.refused_callbacks += 1;
        return error(
            StatusCode::BAD_REQUEST,
            40060,
            "Interaction has already been acknowledged.",
        )
        .into_response();
    }
    record.responded_ms = Some(now);
    record.response_type = Some(body.kind);
    StatusCode::NO_CONTENT.into_response()
}

#[derive(Deserialize)]
struct MessageBody {
    #[serde(default)]
    content: Option<String>,
}

/// Runs `act` on the interaction a webhook token belongs to, if the token still works.
fn with_token<R>(
    shared: &Shared,
    application: u64,
    token: &str,
    act: impl FnOnce(&mut truth::InteractionRecord) -> R,
) -> Result<R, ApiError> {
    if application != shared.config.application_id {
        return Err(error(StatusCode::NOT_FOUND, 10015, "Unknown Webhook"));
    }
    let ttl = shared.config.interaction_token_ttl.as_millis() as u64;
    let mut state = shared.state();
    let Some(record) = state
        .truth
        .interactions
        .iter_mut()
        .find(|i| i.token == token)
    else {
        return Err(error(StatusCode::NOT_FOUND, 10015, "Unknown Webhook"));
    };
    if now_ms() - record.created_ms > ttl {
        return Err(error(
            StatusCode::UNAUTHORIZED,
            50027,
            "Invalid Webhook Token",
        ));
    }
    Ok(act(record))
}

async fn edit_original(
    State(shared): State<Arc<Shared>>,
    Path((application, token)): Path<(u64, String)>,
    Json(body): Json<MessageBody>,
) -> Response {
    let content = body.content.unwrap_or_default();
    let outcome = with_token(&shared, application, &token, |record| {
        if record.responded_ms.is_none() {
            return Err(error(StatusCode::NOT_FOUND, 10008, "Unknown Message"));
        }
        record.edits.push(content.clone());
        Ok(record.guild_id)
    });
    match outcome {
        Ok(Ok(channel)) => {
            Json(model::message_json(&shared.config, channel, &content)).into_response()
        }
        Ok(Err(refusal)) | Err(refusal) => refusal.into_response(),
    }
}

async fn followup(
    State(shared): State<Arc<Shared>>,
    Path((application, token)): Path<(u64, String)>,
    Json(body): Json<MessageBody>,
) -> Response {
    let content = body.content.unwrap_or_default();
    match with_token(&shared, application, &token, |record| {
        record.followups.push(content.clone());
        record.guild_id
    }) {
        Ok(channel) => Json(model::message_json(&shared.config, channel, &content)).into_response(),
        Err(refusal) => refusal.into_response(),
    }
}

async fn add_role(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path((guild, user, role)): Path<(u64, u64, u64)>,
) -> Response {
    change_role(&shared, &headers, guild, user, role, true)
}

async fn remove_role(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path((guild, user, role)): Path<(u64, u64, u64)>,
) -> Response {
    change_role(&shared, &headers, guild, user, role, false)
}

fn change_role(
    shared: &Shared,
    headers: &HeaderMap,
    guild_id: u64,
    user_id: u64,
    role_id: u64,
    added: bool,
) -> Response {
    if !authorized(shared, headers) {
        return unauthorized();
    }
    let mut state = shared.state();
    let Some(guild) = state.world.iter_mut().find(|g| g.id == guild_id) else {
        return error(StatusCode::NOT_FOUND, 10004, "Unknown Guild").into_response();
    };
    if !guild.roles.contains(&role_id) {
        return error(StatusCode::NOT_FOUND, 10011, "Unknown Role").into_response();
    }
    let Some(member) = guild.members.iter_mut().find(|m| m.user_id == user_id) else {
        return error(StatusCode::NOT_FOUND, 10007, "Unknown Member").into_response();
    };
    member.roles.retain(|r| *r != role_id);
    if added {
        member.roles.push(role_id);
    }
    state.truth.role_changes.push(truth::RoleChange {
        guild_id,
        user_id,
        role_id,
        added,
        at_ms: now_ms(),
    });
    StatusCode::NO_CONTENT.into_response()
}

fn unauthorized() -> Response {
    error(StatusCode::UNAUTHORIZED, 0, "401: Unauthorized").into_response()
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
