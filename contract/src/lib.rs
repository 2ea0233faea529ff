//! The wire contract between `arrakis-gateway` (publisher) and `arrakis-worker` (consumer).
//!
//! It is the seed's: every Discord dispatch becomes a [`GatewayEvent`] (JSON), published on the subject
//! [`subject_for`] gives. Both sides use this crate, so the contract is defined once.
//!
//! | Discord dispatch      | `event_type`         | subject                 |
//! |-----------------------|----------------------|-------------------------|
//! | `INTERACTION_CREATE`  | `interaction.create` | `commands.interaction`  |
//! | `GUILD_CREATE`        | `guild.join`         | `events.guild.join`     |
//! | `GUILD_DELETE`        | `guild.leave`        | `events.guild.leave`    |
//! | `GUILD_MEMBER_ADD`    | `member.join`        | `events.member.join`    |
//! | `GUILD_MEMBER_REMOVE` | `member.leave`       | `events.member.leave`   |
//! | `GUILD_MEMBER_UPDATE` | `member.update`      | `events.member.update`  |
//! | any other, e.g. `GUILD_ROLE_CREATE` | `guild.role.create` | `events.guild.role.create` |
//!
//! A configured prefix `p` puts every subject under `p.` (`p.commands.interaction`).

use serde::{Deserialize, Serialize};

/// The subject tree of slash commands and other interactions (the COMMANDS stream).
pub const COMMANDS_ROOT: &str = "commands";
/// The subject tree of every other gateway event (the EVENTS stream).
pub const EVENTS_ROOT: &str = "events";

pub const INTERACTION_CREATE: &str = "interaction.create";
pub const GUILD_JOIN: &str = "guild.join";
pub const GUILD_LEAVE: &str = "guild.leave";
pub const MEMBER_JOIN: &str = "member.join";
pub const MEMBER_LEAVE: &str = "member.leave";
pub const MEMBER_UPDATE: &str = "member.update";

/// One Discord gateway dispatch as the gateway publishes it (seed S-4 `GatewayEvent`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GatewayEvent {
    /// Identifies the event, stable across redeliveries: consumers use it for idempotency.
    pub event_id: String,
    /// The seed's dotted type, e.g. `member.join` (see [`event_type_for`]).
    pub event_type: String,
    pub shard_id: u64,
    /// When the gateway received the event, Unix milliseconds.
    pub timestamp: u64,
    #[serde(default)]
    pub guild_id: Option<String>,
    #[serde(default)]
    pub channel_id: Option<String>,
    #[serde(default)]
    pub user_id: Option<String>,
    /// The dispatch's `d` object, unchanged.
    pub data: serde_json::Value,
}

/// The seed's event type for a Discord dispatch name (`t`).
pub fn event_type_for(dispatch: &str) -> String {
    match dispatch {
        "INTERACTION_CREATE" => INTERACTION_CREATE.to_owned(),
        "GUILD_CREATE" => GUILD_JOIN.to_owned(),
        "GUILD_DELETE" => GUILD_LEAVE.to_owned(),
        "GUILD_MEMBER_ADD" => MEMBER_JOIN.to_owned(),
        "GUILD_MEMBER_REMOVE" => MEMBER_LEAVE.to_owned(),
        "GUILD_MEMBER_UPDATE" => MEMBER_UPDATE.to_owned(),
        other => other.to_ascii_lowercase().replace('_', "."),
    }
}

/// The NATS subject an event of `event_type` is published on, under an optional prefix.
pub fn subject_for(prefix: Option<&str>, event_type: &str) -> String {
    let subject = match event_type {
        INTERACTION_CREATE => format!("{COMMANDS_ROOT}.interaction"),
        other => format!("{EVENTS_ROOT}.{other}"),
    };
    match prefix.filter(|p| !p.is_empty()) {
        Some(prefix) => format!("{prefix}.{subject}"),
        None => subject,
    }
}

impl GatewayEvent {
    /// Builds the event for dispatch `dispatch` with payload `data`, lifting the ids the seed's
    /// payload carries at the top level. `event_id` is chosen by the caller (the gateway derives it
    /// from the Discord event, so a replay gets the same id).
    pub fn from_dispatch(
        event_id: String,
        dispatch: &str,
        shard_id: u64,
        timestamp: u64,
        data: serde_json::Value,
    ) -> Self {
        let text = |value: &serde_json::Value| value.as_str().map(str::to_owned);
        let guild_id = match dispatch {
            // GUILD_CREATE and GUILD_DELETE carry the guild itself.
            "GUILD_CREATE" | "GUILD_DELETE" | "GUILD_UPDATE" => text(&data["id"]),
            _ => text(&data["guild_id"]),
        };
        let user_id = text(&data["user"]["id"])
            .or_else(|| text(&data["member"]["user"]["id"]))
            .or_else(|| text(&data["author"]["id"]))
            .or_else(|| text(&data["user_id"]));
        let channel_id = text(&data["channel_id"]).or_else(|| match dispatch {
            d if d.starts_with("CHANNEL_") || d.starts_with("THREAD_") => text(&data["id"]),
            _ => None,
        });
        GatewayEvent {
            event_id,
            event_type: event_type_for(dispatch),
            shard_id,
            timestamp,
            guild_id,
            channel_id,
            user_id,
            data,
        }
    }

    /// The subject this event is published on.
    pub fn subject(&self, prefix: Option<&str>) -> String {
        subject_for(prefix, &self.event_type)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn routes_like_the_seed() {
        let cases = [
            (
                "INTERACTION_CREATE",
                "interaction.create",
                "commands.interaction",
            ),
            ("GUILD_CREATE", "guild.join", "events.guild.join"),
            ("GUILD_DELETE", "guild.leave", "events.guild.leave"),
            ("GUILD_MEMBER_ADD", "member.join", "events.member.join"),
            ("GUILD_MEMBER_REMOVE", "member.leave", "events.member.leave"),
            (
                "GUILD_MEMBER_UPDATE",
                "member.update",
                "events.member.update",
            ),
            (
                "GUILD_ROLE_CREATE",
                "guild.role.create",
                "events.guild.role.create",
            ),
            ("MESSAGE_CREATE", "message.create", "events.message.create"),
        ];
        for (dispatch, event_type, subject) in cases {
            assert_eq!(event_type_for(dispatch), event_type, "{dispatch}");
            assert_eq!(subject_for(None, event_type), subject, "{dispatch}");
        }
    }

    #[test]
    fn prefix_goes_in_front() {
        assert_eq!(
            subject_for(Some("bot1"), INTERACTION_CREATE),
            "bot1.commands.interaction"
        );
        assert_eq!(
            subject_for(Some("a.b"), MEMBER_JOIN),
            "a.b.events.member.join"
        );
        assert_eq!(subject_for(Some(""), MEMBER_JOIN), "events.member.join");
    }

    #[test]
    fn lifts_ids_from_the_payload() {
        let member_add = GatewayEvent::from_dispatch(
            "id".into(),
            "GUILD_MEMBER_ADD",
            3,
            1_700_000_000_000,
            json!({"guild_id": "81384788765712384", "user": {"id": "80351110224678912"}, "roles": []}),
        );
        assert_eq!(member_add.guild_id.as_deref(), Some("81384788765712384"));
        assert_eq!(member_add.user_id.as_deref(), Some("80351110224678912"));
        assert_eq!(member_add.channel_id, None);

        let interaction = GatewayEvent::from_dispatch(
            "id".into(),
            "INTERACTION_CREATE",
            0,
            0,
            json!({"id": "1", "guild_id": "2", "channel_id": "3", "member": {"user": {"id": "4"}}}),
        );
        assert_eq!(
            (
                interaction.guild_id.as_deref(),
                interaction.channel_id.as_deref(),
                interaction.user_id.as_deref()
            ),
            (Some("2"), Some("3"), Some("4"))
        );

        let guild =
            GatewayEvent::from_dispatch("id".into(), "GUILD_CREATE", 0, 0, json!({"id": "9"}));
        assert_eq!(guild.guild_id.as_deref(), Some("9"));
    }

    #[test]
    fn payload_has_the_seeds_field_names() {
        let event =
            GatewayEvent::from_dispatch("e".into(), "GUILD_DELETE", 1, 2, json!({"id": "5"}));
        let json = serde_json::to_value(&event).expect("serialises");
        let mut keys: Vec<_> = json.as_object().expect("object").keys().cloned().collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "channel_id",
                "data",
                "event_id",
                "event_type",
                "guild_id",
                "shard_id",
                "timestamp",
                "user_id"
            ]
        );
        let back: GatewayEvent = serde_json::from_value(json).expect("round-trips");
        assert_eq!(back, event);
    }
}
