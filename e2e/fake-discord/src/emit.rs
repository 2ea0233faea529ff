//! Streams of dispatches at a set rate, for tests, benchmarks and the demo.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::{Shared, dispatch, model, now_ms, shard_of_guild, slash_command};

/// What to emit.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum EmitKind {
    /// INTERACTION_CREATE for slash command `command`.
    Interaction { command: String },
    /// GUILD_MEMBER_ADD of new users.
    MemberAdd,
    /// GUILD_MEMBER_REMOVE of existing members.
    MemberRemove,
    /// GUILD_MEMBER_UPDATE toggling a role of existing members.
    MemberUpdate,
}

#[derive(Clone, Debug, Deserialize)]
pub struct EmitSpec {
    #[serde(flatten)]
    pub kind: EmitKind,
    pub count: u64,
    /// Events per second; the stream never runs faster.
    pub rate: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct EmitReport {
    pub emitted: u64,
    pub elapsed_ms: u64,
}

/// Emits in 1 ms ticks, each allowed the events that `rate` has accrued so far.
pub(crate) async fn run(shared: &Shared, spec: EmitSpec) -> anyhow::Result<EmitReport> {
    if spec.rate == 0 {
        bail!("rate must be at least 1 event per second");
    }
    let guilds = shared.state().world.clone();
    if guilds.is_empty() {
        bail!("no guilds loaded: POST /control/guilds first");
    }
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    let mut emitted = 0u64;
    while emitted < spec.count {
        tick.tick().await;
        let allowed = (started.elapsed().as_secs_f64() * spec.rate as f64) as u64;
        while emitted < spec.count.min(allowed.max(1)) {
            let guild = &guilds[(emitted as usize) % guilds.len()];
            emit_one(shared, &spec.kind, guild, emitted)?;
            emitted += 1;
        }
    }
    Ok(EmitReport {
        emitted,
        elapsed_ms: started.elapsed().as_millis() as u64,
    })
}

fn emit_one(shared: &Shared, kind: &EmitKind, guild: &model::Guild, n: u64) -> anyhow::Result<()> {
    let existing = || {
        guild
            .members
            .get((n as usize) % guild.members.len().max(1))
            .with_context(|| format!("guild {} has no members to remove or update", guild.id))
    };
    let (event_type, payload) = match kind {
        EmitKind::Interaction { command } => {
            slash_command(shared, guild.id, command)?;
            return Ok(());
        }
        EmitKind::MemberAdd => {
            let joined = now_ms();
            let member = model::Member {
                user_id: model::snowflake(joined, n),
                username: format!("joiner{n}"),
                roles: Vec::new(),
                joined_at_ms: joined,
            };
            ("GUILD_MEMBER_ADD", model::member_json(guild, &member))
        }
        EmitKind::MemberRemove => {
            let member = existing()?;
            let user = model::user_json(member.user_id, &member.username, false);
            (
                "GUILD_MEMBER_REMOVE",
                json!({"guild_id": guild.id.to_string(), "user": user}),
            )
        }
        EmitKind::MemberUpdate => {
            // Alternate a role on and off, so identical payloads legitimately repeat.
            let mut updated = existing()?.clone();
            let role = guild.roles[(n as usize / guild.members.len().max(1)) % guild.roles.len()];
            if n.is_multiple_of(2) {
                updated.roles.push(role);
            } else {
                updated.roles.retain(|r| *r != role);
            }
            ("GUILD_MEMBER_UPDATE", model::member_json(guild, &updated))
        }
    };
    dispatch(
        shared,
        shard_of_guild(shared, guild.id)?,
        event_type,
        payload,
    )?;
    Ok(())
}
