//! The fake's world: guilds and members, generated deterministically from a seed, as Discord JSON.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

/// Discord's epoch (2015-01-01T00:00:00Z) in Unix milliseconds.
pub const DISCORD_EPOCH_MS: u64 = 1_420_070_400_000;

/// The shard Discord routes a guild's events to.
pub fn shard_for_guild(guild_id: u64, num_shards: u64) -> u64 {
    (guild_id >> 22) % num_shards.max(1)
}

/// A snowflake created at `unix_ms` with a distinguishing low part.
pub fn snowflake(unix_ms: u64, low: u64) -> u64 {
    ((unix_ms.saturating_sub(DISCORD_EPOCH_MS)) << 22) | (low & 0x3f_ffff)
}

#[derive(Clone, Debug)]
pub struct Member {
    pub user_id: u64,
    pub username: String,
    pub roles: Vec<u64>,
    pub joined_at_ms: u64,
}

#[derive(Clone, Debug)]
pub struct Guild {
    pub id: u64,
    pub name: String,
    pub owner_id: u64,
    pub roles: Vec<u64>,
    pub members: Vec<Member>,
}

/// A world of `guilds` guilds with `members` members each; the same seed gives the same world.
pub fn generate(seed: u64, guilds: usize, members: usize) -> Vec<Guild> {
    let mut rng = StdRng::seed_from_u64(seed);
    // Spread creation times over ten years so `(id >> 22) % shards` spreads guilds across shards.
    let start = DISCORD_EPOCH_MS + 86_400_000;
    (0..guilds)
        .map(|g| {
            let created = start + rng.random_range(0..315_360_000_000u64);
            let id = snowflake(created, g as u64);
            let roles: Vec<u64> = (0..3)
                .map(|r| snowflake(created + 1 + r, g as u64))
                .collect();
            let members: Vec<Member> = (0..members)
                .map(|m| {
                    let joined = created + 1_000 + rng.random_range(0..1_000_000_000u64);
                    Member {
                        user_id: snowflake(joined, (g * members + m) as u64),
                        username: format!("user{g}x{m}"),
                        roles: vec![roles[m % roles.len()]],
                        joined_at_ms: joined,
                    }
                })
                .collect();
            Guild {
                id,
                name: format!("Guild {g}"),
                owner_id: members.first().map(|m| m.user_id).unwrap_or(id),
                roles,
                members,
            }
        })
        .collect()
}

/// An ISO-8601 timestamp as Discord writes it.
pub fn iso8601(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let millis = unix_ms % 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (hour, minute, second) = (rem / 3600, rem % 3600 / 60, rem % 60);
    // Civil-from-days (Howard Hinnant's algorithm), for dates after 1970.
    let z = days as i64 + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}.{millis:03}000+00:00")
}

pub fn user_json(id: u64, username: &str, bot: bool) -> Value {
    json!({
        "id": id.to_string(),
        "username": username,
        "discriminator": "0",
        "global_name": username,
        "avatar": null,
        "bot": bot,
    })
}

pub fn member_json(guild: &Guild, member: &Member) -> Value {
    json!({
        "user": user_json(member.user_id, &member.username, false),
        "nick": null,
        "avatar": null,
        "roles": member.roles.iter().map(u64::to_string).collect::<Vec<_>>(),
        "joined_at": iso8601(member.joined_at_ms),
        "premium_since": null,
        "deaf": false,
        "mute": false,
        "flags": 0,
        "pending": false,
        "guild_id": guild.id.to_string(),
    })
}

/// INTERACTION_CREATE's payload for slash command `command` run by `member` in `guild`.
pub fn interaction_json(
    guild: &Guild,
    member: &Member,
    id: u64,
    token: &str,
    application_id: u64,
    command: &str,
) -> Value {
    json!({
        "id": id.to_string(),
        "application_id": application_id.to_string(),
        "type": 2,
        "token": token,
        "version": 1,
        "guild_id": guild.id.to_string(),
        "channel_id": guild.id.to_string(),
        "member": member_json(guild, member),
        "locale": "en-US",
        "guild_locale": "en-US",
        "app_permissions": "2248473465835073",
        "entitlements": [],
        "authorizing_integration_owners": {"0": guild.id.to_string()},
        "context": 0,
        "data": {"id": snowflake(DISCORD_EPOCH_MS + 1, 1).to_string(), "name": command, "type": 1},
    })
}

/// A message as Discord returns it from webhook edits and follow-ups.
pub fn message_json(config: &crate::Config, channel_id: u64, content: &str) -> Value {
    let now = crate::now_ms();
    json!({
        "id": snowflake(now, 7).to_string(),
        "channel_id": channel_id.to_string(),
        "author": user_json(config.bot_user_id, "Arrakis", true),
        "content": content,
        "timestamp": iso8601(now),
        "edited_timestamp": null,
        "tts": false,
        "mention_everyone": false,
        "mentions": [],
        "mention_roles": [],
        "attachments": [],
        "embeds": [],
        "pinned": false,
        "type": 0,
        "flags": 0,
        "components": [],
        "application_id": config.application_id.to_string(),
        "webhook_id": config.application_id.to_string(),
    })
}

fn role_json(id: u64, name: &str, position: u64) -> Value {
    json!({
        "id": id.to_string(), "name": name, "color": 0,
        "colors": {"primary_color": 0, "secondary_color": null, "tertiary_color": null},
        "hoist": false, "icon": null,
        "unicode_emoji": null, "position": position, "permissions": "0", "managed": false,
        "mentionable": false, "flags": 0,
    })
}

/// GUILD_CREATE's payload: the whole guild, with members up to `large_threshold`.
pub fn guild_create_json(guild: &Guild, large_threshold: usize, joined_at_ms: u64) -> Value {
    let large = guild.members.len() > large_threshold;
    let members: Vec<Value> = if large {
        Vec::new()
    } else {
        guild
            .members
            .iter()
            .map(|m| member_json(guild, m))
            .collect()
    };
    let mut roles = vec![role_json(guild.id, "@everyone", 0)];
    roles.extend(
        guild
            .roles
            .iter()
            .enumerate()
            .map(|(i, id)| role_json(*id, &format!("tier-{i}"), i as u64 + 1)),
    );
    json!({
        "id": guild.id.to_string(),
        "name": guild.name,
        "icon": null, "splash": null, "discovery_splash": null, "banner": null, "description": null,
        "owner_id": guild.owner_id.to_string(),
        "afk_channel_id": null, "afk_timeout": 300,
        "application_id": null,
        "verification_level": 0, "default_message_notifications": 0, "explicit_content_filter": 0,
        "roles": roles, "emojis": [], "features": [], "mfa_level": 0, "nsfw_level": 0,
        "system_channel_id": null, "system_channel_flags": 0, "rules_channel_id": null,
        "public_updates_channel_id": null, "vanity_url_code": null, "premium_tier": 0,
        "premium_progress_bar_enabled": false, "preferred_locale": "en-US",
        "joined_at": iso8601(joined_at_ms),
        "large": large, "unavailable": false,
        "member_count": guild.members.len(),
        "members": members, "channels": [], "threads": [], "presences": [], "voice_states": [],
        "stage_instances": [], "guild_scheduled_events": [],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_world() {
        let a = generate(7, 20, 3);
        let b = generate(7, 20, 3);
        let ids = |w: &[Guild]| {
            w.iter()
                .map(|g| {
                    (
                        g.id,
                        g.members.iter().map(|m| m.user_id).collect::<Vec<_>>(),
                    )
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(&a), ids(&b));
        assert_ne!(ids(&a), ids(&generate(8, 20, 3)));
    }

    #[test]
    fn guilds_spread_over_shards() {
        let world = generate(1, 400, 0);
        let mut per_shard = [0usize; 4];
        for guild in &world {
            per_shard[shard_for_guild(guild.id, 4) as usize] += 1;
        }
        assert!(per_shard.iter().all(|n| *n > 50), "{per_shard:?}");
    }

    #[test]
    fn timestamps_are_iso8601() {
        assert_eq!(
            iso8601(DISCORD_EPOCH_MS),
            "2015-01-01T00:00:00.000000+00:00"
        );
        assert_eq!(
            iso8601(1_709_251_200_123),
            "2024-03-01T00:00:00.123000+00:00"
        );
    }

    #[test]
    fn guild_create_parses_as_twilight_sees_it() {
        let world = generate(3, 1, 5);
        let guild: twilight_model::guild::Guild =
            serde_json::from_value(guild_create_json(&world[0], 50, DISCORD_EPOCH_MS + 5))
                .expect("twilight parses GUILD_CREATE");
        assert_eq!(guild.members.len(), 5);
        assert_eq!(guild.roles.len(), 4);
        let large = guild_create_json(&world[0], 2, DISCORD_EPOCH_MS);
        assert_eq!(large["large"], true);
        assert_eq!(large["members"].as_array().map(Vec::len), Some(0));
    }
}
