//! The control API under `/control`, for tests, benchmarks and the demo when the fake runs as a process.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{Fault, Shared, dispatch, gateway, load_guilds, shard_of_guild, slash_command};

pub(crate) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/control/guilds", post(guilds))
        .route("/control/dispatch", post(dispatch_event))
        .route("/control/fault", post(fault))
        .route("/control/interaction", post(interaction))
        .route("/control/emit", post(emit))
        .route("/control/truth", get(truth))
}

fn refused(error: anyhow::Error) -> Response {
    (
        StatusCode::CONFLICT,
        Json(json!({"error": format!("{error:#}")})),
    )
        .into_response()
}

#[derive(Deserialize)]
struct LoadGuilds {
    guilds: usize,
    members: usize,
}

async fn guilds(State(shared): State<Arc<Shared>>, Json(body): Json<LoadGuilds>) -> Response {
    load_guilds(&shared, body.guilds, body.members);
    StatusCode::NO_CONTENT.into_response()
}

/// `{"t": "GUILD_MEMBER_ADD", "d": {...}, "shard": 0}`, or `"guild_id"` instead of `"shard"`.
#[derive(Deserialize)]
struct Dispatch {
    t: String,
    d: Value,
    shard: Option<u32>,
    guild_id: Option<String>,
}

async fn dispatch_event(State(shared): State<Arc<Shared>>, Json(body): Json<Dispatch>) -> Response {
    let shard = match (body.shard, body.guild_id.as_deref().map(str::parse::<u64>)) {
        (Some(shard), _) => Ok(shard),
        (None, Some(Ok(guild))) => shard_of_guild(&shared, guild),
        (None, Some(Err(_))) => Err(anyhow::anyhow!("guild_id must be a snowflake")),
        (None, None) => Err(anyhow::anyhow!("give shard or guild_id")),
    };
    match shard.and_then(|shard| dispatch(&shared, shard, &body.t, body.d)) {
        Ok(seq) => Json(json!({"seq": seq})).into_response(),
        Err(e) => refused(e),
    }
}

/// `{"guild_id": "…", "command": "profile"}`: a user runs a slash command.
#[derive(Deserialize)]
struct SlashCommand {
    guild_id: String,
    command: String,
}

async fn interaction(
    State(shared): State<Arc<Shared>>,
    Json(body): Json<SlashCommand>,
) -> Response {
    let created = body
        .guild_id
        .parse::<u64>()
        .map_err(|_| anyhow::anyhow!("guild_id must be a snowflake"))
        .and_then(|guild| slash_command(&shared, guild, &body.command));
    match created {
        Ok((id, token)) => Json(json!({"id": id.to_string(), "token": token})).into_response(),
        Err(e) => refused(e),
    }
}

#[derive(Deserialize)]
struct InjectFault {
    shard: u32,
    #[serde(flatten)]
    fault: Fault,
}

async fn fault(State(shared): State<Arc<Shared>>, Json(body): Json<InjectFault>) -> Response {
    match gateway::inject(&shared, body.shard, body.fault) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => refused(e),
    }
}

/// `{"kind": "member_add", "count": 1000, "rate": 500}`; answers when every event is sent.
async fn emit(
    State(shared): State<Arc<Shared>>,
    Json(spec): Json<crate::emit::EmitSpec>,
) -> Response {
    match crate::emit::run(&shared, spec).await {
        Ok(report) => Json(report).into_response(),
        Err(e) => refused(e),
    }
}

async fn truth(State(shared): State<Arc<Shared>>) -> Response {
    Json(shared.state().truth.clone()).into_response()
}
