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

pub mod assignment;

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

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
///
/// `D` is how `data` is held: parsed (`serde_json::Value`, the default), or raw JSON in
/// [`GatewayEventRaw`] for consumers that parse the payload only when a handler needs it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GatewayEvent<D = serde_json::Value> {
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
    pub data: D,
}

/// The event with its payload as raw JSON (most of a message's parsing cost is the payload).
pub type GatewayEventRaw = GatewayEvent<Box<RawValue>>;

impl GatewayEventRaw {
    /// The whole event, `data` parsed.
    pub fn to_event(&self) -> serde_json::Result<GatewayEvent> {
        Ok(GatewayEvent {
            event_id: self.event_id.clone(),
            event_type: self.event_type.clone(),
            shard_id: self.shard_id,
            timestamp: self.timestamp,
            guild_id: self.guild_id.clone(),
            channel_id: self.channel_id.clone(),
            user_id: self.user_id.clone(),
            data: serde_json::from_str(self.data.get())?,
        })
    }
}

/// The seed's event type for a Discord dispatch name (`t`).
pub fn event_type_for(dispatch: &str) -> Cow<'static, str> {
    match dispatch {
        "INTERACTION_CREATE" => INTERACTION_CREATE.into(),
        "GUILD_CREATE" => GUILD_JOIN.into(),
        "GUILD_DELETE" => GUILD_LEAVE.into(),
        "GUILD_MEMBER_ADD" => MEMBER_JOIN.into(),
        "GUILD_MEMBER_REMOVE" => MEMBER_LEAVE.into(),
        "GUILD_MEMBER_UPDATE" => MEMBER_UPDATE.into(),
        other => other.to_ascii_lowercase().replace('_', ".").into(),
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

/// A JSON string borrowed from the text it was read from, copied only if it has escapes.
///
/// serde borrows a `Cow<str>` field only when it is the field's whole type; inside an `Option`
/// it always copies. Wrapping it keeps the borrow.
#[derive(Debug, Default, Deserialize, PartialEq, Eq)]
pub struct Text<'a>(#[serde(borrow)] pub Cow<'a, str>);

impl std::ops::Deref for Text<'_> {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

/// The ids a dispatch payload carries, read without building the whole payload.
#[derive(Debug, Default, Deserialize)]
pub struct PayloadIds<'a> {
    #[serde(borrow, default)]
    pub id: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub guild_id: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub channel_id: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub user_id: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub joined_at: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub user: Option<IdOf<'a>>,
    #[serde(borrow, default)]
    pub author: Option<IdOf<'a>>,
    #[serde(borrow, default)]
    pub member: Option<MemberOf<'a>>,
}

#[derive(Debug, Default, Deserialize)]
pub struct IdOf<'a> {
    #[serde(borrow, default)]
    pub id: Option<Text<'a>>,
}

#[derive(Debug, Default, Deserialize)]
pub struct MemberOf<'a> {
    #[serde(borrow, default)]
    pub user: Option<IdOf<'a>>,
}

/// The top-level ids of the seed's payload, lifted out of a dispatch's `d`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct LiftedIds<'a> {
    pub guild_id: Option<&'a str>,
    pub channel_id: Option<&'a str>,
    pub user_id: Option<&'a str>,
}

impl PayloadIds<'_> {
    /// The user a payload is about: `user`, a member's user, a message's author, or `user_id`.
    pub fn user(&self) -> Option<&str> {
        fn id_of<'s>(holder: Option<&'s IdOf<'_>>) -> Option<&'s str> {
            holder.and_then(|h| h.id.as_deref())
        }
        id_of(self.user.as_ref())
            .or_else(|| id_of(self.member.as_ref().and_then(|m| m.user.as_ref())))
            .or_else(|| id_of(self.author.as_ref()))
            .or(self.user_id.as_deref())
    }

    /// Lifts the ids the seed's payload carries at the top level, for dispatch `dispatch`.
    pub fn lift(&self, dispatch: &str) -> LiftedIds<'_> {
        let guild_id = match dispatch {
            // GUILD_CREATE, GUILD_UPDATE and GUILD_DELETE carry the guild itself.
            "GUILD_CREATE" | "GUILD_DELETE" | "GUILD_UPDATE" => self.id.as_deref(),
            _ => self.guild_id.as_deref(),
        };
        let channel_id = self.channel_id.as_deref().or(match dispatch {
            d if d.starts_with("CHANNEL_") || d.starts_with("THREAD_") => self.id.as_deref(),
            _ => None,
        });
        LiftedIds {
            guild_id,
            channel_id,
            user_id: self.user(),
        }
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
        let ids = PayloadIds::deserialize(&data).unwrap_or_default();
        let lifted = ids.lift(dispatch);
        let owned = |id: Option<&str>| id.map(str::to_owned);
        GatewayEvent {
            event_id,
            event_type: event_type_for(dispatch).into_owned(),
            shard_id,
            timestamp,
            guild_id: owned(lifted.guild_id),
            channel_id: owned(lifted.channel_id),
            user_id: owned(lifted.user_id),
            data,
        }
    }

    /// The subject this event is published on.
    pub fn subject(&self, prefix: Option<&str>) -> String {
        subject_for(prefix, &self.event_type)
    }
}

/// The same event as [`GatewayEvent`], serialised identically, but carrying Discord's payload as
/// the raw JSON it arrived in: the gateway's hot path neither parses nor rebuilds `d`.
/// Everything is borrowed, so building one allocates nothing.
#[derive(Debug, Serialize)]
pub struct GatewayEventRef<'a> {
    pub event_id: &'a str,
    /// The seed's type for the dispatch: [`event_type_for`] its name.
    pub event_type: &'a str,
    pub shard_id: u64,
    pub timestamp: u64,
    pub guild_id: Option<&'a str>,
    pub channel_id: Option<&'a str>,
    pub user_id: Option<&'a str>,
    pub data: &'a RawValue,
}

impl<'a> GatewayEventRef<'a> {
    /// `event_type` is [`event_type_for`] the dispatch `dispatch`, which callers resolve once per type.
    pub fn new(
        event_id: &'a str,
        dispatch: &str,
        event_type: &'a str,
        shard_id: u64,
        timestamp: u64,
        ids: &'a PayloadIds<'_>,
        data: &'a RawValue,
    ) -> Self {
        let lifted = ids.lift(dispatch);
        GatewayEventRef {
            event_id,
            event_type,
            shard_id,
            timestamp,
            guild_id: lifted.guild_id,
            channel_id: lifted.channel_id,
            user_id: lifted.user_id,
            data,
        }
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
    fn the_raw_form_serialises_exactly_like_the_owned_one() {
        let payloads = [
            (
                "GUILD_MEMBER_ADD",
                r#"{"guild_id":"1","user":{"id":"2"},"joined_at":"2026-11-23T10:00:00+00:00"}"#,
            ),
            (
                "INTERACTION_CREATE",
                r#"{"id":"7","guild_id":"1","channel_id":"3","member":{"user":{"id":"4"}}}"#,
            ),
            ("GUILD_CREATE", r#"{"id":"9","name":"G\u00e9","roles":[]}"#),
            (
                "MESSAGE_CREATE",
                r#"{"id":"5","channel_id":"6","author":{"id":"8"}}"#,
            ),
            ("CHANNEL_UPDATE", r#"{"id":"10","guild_id":"1"}"#),
            ("TYPING_START", r#"{"user_id":"11","channel_id":"12"}"#),
        ];
        for (dispatch, text) in payloads {
            let raw: Box<RawValue> = serde_json::from_str(text).unwrap();
            let ids: PayloadIds<'_> = serde_json::from_str(raw.get()).unwrap();
            let event_type = event_type_for(dispatch);
            let by_ref = GatewayEventRef::new("e", dispatch, &event_type, 2, 3, &ids, &raw);
            let owned = GatewayEvent::from_dispatch(
                "e".into(),
                dispatch,
                2,
                3,
                serde_json::from_str(text).unwrap(),
            );
            let by_ref: serde_json::Value = serde_json::to_value(&by_ref).unwrap();
            assert_eq!(by_ref, serde_json::to_value(&owned).unwrap(), "{dispatch}");
        }
    }

    #[test]
    fn the_raw_form_reads_what_the_gateway_writes() {
        let event = GatewayEvent::from_dispatch(
            "member.join:1:2:t".into(),
            "GUILD_MEMBER_ADD",
            3,
            4,
            json!({"guild_id": "1", "user": {"id": "2"}, "joined_at": "t"}),
        );
        let text = serde_json::to_string(&event).unwrap();
        let raw: GatewayEventRaw = serde_json::from_str(&text).unwrap();
        assert_eq!(raw.event_type, "member.join");
        assert_eq!(raw.to_event().unwrap(), event);
    }

    #[test]
    fn ids_are_borrowed_from_the_payload_unless_escaped() {
        let text = r#"{"guild_id":"1","user":{"id":"2"},"joined_at":"t\u0031"}"#;
        let ids: PayloadIds<'_> = serde_json::from_str(text).unwrap();
        assert!(matches!(
            ids.guild_id.as_ref().unwrap().0,
            Cow::Borrowed("1")
        ));
        assert!(matches!(
            ids.user.as_ref().unwrap().id.as_ref().unwrap().0,
            Cow::Borrowed("2")
        ));
        assert_eq!(ids.joined_at.as_deref(), Some("t1"), "escapes are decoded");
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
