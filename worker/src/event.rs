//! What the worker reads out of a gateway event: the route key that picks its handler, the
//! interaction it carries (if any), and the seed's legacy payload for bridged handlers.

use arrakis_contract::{GatewayEvent, GatewayEventRaw, INTERACTION_CREATE};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The parts of an INTERACTION_CREATE the worker needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interaction {
    pub id: u64,
    pub application_id: u64,
    pub token: String,
    pub kind: InteractionKind,
    /// The command name, or a component's `custom_id`.
    pub name: String,
    pub user_id: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InteractionKind {
    Command,
    Autocomplete,
    Button,
    Select,
    Modal,
}

impl InteractionKind {
    fn route_prefix(self) -> &'static str {
        match self {
            InteractionKind::Command => "command",
            InteractionKind::Autocomplete => "autocomplete",
            InteractionKind::Button => "button",
            InteractionKind::Select => "select",
            InteractionKind::Modal => "modal",
        }
    }

    /// Whether the worker acknowledges it with a deferred response before running the handler.
    /// Autocomplete is answered with choices, never deferred.
    pub fn is_deferred(self) -> bool {
        self != InteractionKind::Autocomplete
    }
}

/// Why an event cannot be handled at all: the message is terminated with this as its error.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EventError {
    #[error("the payload is not a gateway event: {0}")]
    NotAnEvent(String),
    #[error("the interaction lacks {0}")]
    MissingField(&'static str),
    #[error("interaction type {0} is not one the worker handles (2, 3, 4 or 5)")]
    UnknownInteractionType(u64),
}

/// Parses a message payload as the wire contract's event, its `data` left raw.
pub fn parse(payload: &[u8]) -> Result<GatewayEventRaw, EventError> {
    serde_json::from_slice(payload).map_err(|e| EventError::NotAnEvent(e.to_string()))
}

#[derive(Deserialize)]
struct RawInteraction {
    id: Option<String>,
    application_id: Option<String>,
    token: Option<String>,
    #[serde(rename = "type")]
    kind: Option<u64>,
    #[serde(default)]
    data: Value,
    #[serde(default)]
    member: Value,
    #[serde(default)]
    user: Value,
}

impl Interaction {
    /// The interaction in `event`, if it is an INTERACTION_CREATE.
    pub fn of(event: &GatewayEventRaw) -> Result<Option<Interaction>, EventError> {
        if event.event_type != INTERACTION_CREATE {
            return Ok(None);
        }
        let raw: RawInteraction = serde_json::from_str(event.data.get())
            .map_err(|e| EventError::NotAnEvent(e.to_string()))?;
        let snowflake = |value: Option<String>, field| {
            value
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or(EventError::MissingField(field))
        };
        let kind_code = raw.kind.ok_or(EventError::MissingField("type"))?;
        let (kind, name_field) = match kind_code {
            2 => (InteractionKind::Command, "name"),
            4 => (InteractionKind::Autocomplete, "name"),
            3 if raw.data["component_type"] == 2 => (InteractionKind::Button, "custom_id"),
            3 => (InteractionKind::Select, "custom_id"),
            5 => (InteractionKind::Modal, "custom_id"),
            other => return Err(EventError::UnknownInteractionType(other)),
        };
        let name = raw.data[name_field]
            .as_str()
            .ok_or(EventError::MissingField(if name_field == "name" {
                "data.name"
            } else {
                "data.custom_id"
            }))?
            .to_owned();
        let user_id = raw.member["user"]["id"]
            .as_str()
            .or(raw.user["id"].as_str())
            .map(str::to_owned);
        Ok(Some(Interaction {
            id: snowflake(raw.id, "id")?,
            application_id: snowflake(raw.application_id, "application_id")?,
            token: raw.token.ok_or(EventError::MissingField("token"))?,
            kind,
            name,
            user_id,
        }))
    }

    /// The route key: `command.<name>`; components route by their `custom_id` up to the first
    /// `:` (`button.verify:42` routes as `button.verify`), so ids can carry arguments.
    pub fn route_key(&self) -> String {
        let name = match self.kind {
            InteractionKind::Command | InteractionKind::Autocomplete => self.name.as_str(),
            _ => self.name.split(':').next().unwrap_or_default(),
        };
        format!("{}.{name}", self.kind.route_prefix())
    }

    /// The seed's legacy event type: `interaction.command.<name>` and so on.
    pub fn legacy_event_type(&self) -> String {
        format!("interaction.{}", self.route_key())
    }
}

/// The route key of any event: its interaction's, or its event type (`member.join`).
pub fn route_key(event: &GatewayEventRaw, interaction: Option<&Interaction>) -> String {
    match interaction {
        Some(interaction) => interaction.route_key(),
        None => event.event_type.clone(),
    }
}

/// The seed's `DiscordEventPayload`, what `toDiscordEventPayload()` built for legacy handlers
/// (seed S-6.1): POSTed as JSON by the HTTP bridge.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LegacyPayload {
    pub event_id: String,
    /// `interaction.command.<name>` for interactions, else the event type (`member.join`).
    pub event_type: String,
    pub timestamp: u64,
    pub shard_id: u64,
    pub guild_id: Option<String>,
    pub channel_id: Option<String>,
    pub user_id: Option<String>,
    pub interaction_id: Option<String>,
    pub interaction_token: Option<String>,
    pub application_id: Option<String>,
    pub command_name: Option<String>,
    pub custom_id: Option<String>,
    /// The Discord payload, unchanged.
    pub data: Value,
}

impl LegacyPayload {
    pub fn from_event(event: &GatewayEvent, interaction: Option<&Interaction>) -> Self {
        let (command_name, custom_id) = match interaction.map(|i| (i.kind, i.name.clone())) {
            Some((InteractionKind::Command | InteractionKind::Autocomplete, name)) => {
                (Some(name), None)
            }
            Some((_, custom_id)) => (None, Some(custom_id)),
            None => (None, None),
        };
        LegacyPayload {
            event_id: event.event_id.clone(),
            event_type: interaction
                .map(Interaction::legacy_event_type)
                .unwrap_or_else(|| event.event_type.clone()),
            timestamp: event.timestamp,
            shard_id: event.shard_id,
            guild_id: event.guild_id.clone(),
            channel_id: event.channel_id.clone(),
            user_id: event.user_id.clone(),
            interaction_id: interaction.map(|i| i.id.to_string()),
            interaction_token: interaction.map(|i| i.token.clone()),
            application_id: interaction.map(|i| i.application_id.to_string()),
            command_name,
            custom_id,
            data: event.data.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn interaction_event(data: Value) -> GatewayEventRaw {
        let event = GatewayEvent::from_dispatch(
            "interaction:1".into(),
            "INTERACTION_CREATE",
            0,
            1_000,
            data,
        );
        parse(&serde_json::to_vec(&event).unwrap()).unwrap()
    }

    #[test]
    fn commands_route_by_name_and_components_by_custom_id_prefix() {
        let command = interaction_event(json!({
            "id": "1", "application_id": "2", "token": "t", "type": 2,
            "data": {"name": "profile"}, "member": {"user": {"id": "9"}},
        }));
        let i = Interaction::of(&command).unwrap().unwrap();
        assert_eq!(i.route_key(), "command.profile");
        assert_eq!(i.legacy_event_type(), "interaction.command.profile");
        assert_eq!(i.user_id.as_deref(), Some("9"));

        let button = interaction_event(json!({
            "id": "1", "application_id": "2", "token": "t", "type": 3,
            "data": {"custom_id": "verify:42", "component_type": 2},
        }));
        assert_eq!(
            Interaction::of(&button).unwrap().unwrap().route_key(),
            "button.verify"
        );
        let select = interaction_event(json!({
            "id": "1", "application_id": "2", "token": "t", "type": 3,
            "data": {"custom_id": "tier", "component_type": 3},
        }));
        assert_eq!(
            Interaction::of(&select).unwrap().unwrap().route_key(),
            "select.tier"
        );
    }

    #[test]
    fn broken_interactions_say_what_is_missing() {
        let no_token = interaction_event(
            json!({"id": "1", "application_id": "2", "type": 2, "data": {"name": "x"}}),
        );
        assert_eq!(
            Interaction::of(&no_token),
            Err(EventError::MissingField("token"))
        );
        let ping =
            interaction_event(json!({"id": "1", "application_id": "2", "token": "t", "type": 1}));
        assert_eq!(
            Interaction::of(&ping),
            Err(EventError::UnknownInteractionType(1))
        );
        assert!(matches!(
            parse(b"{\"nope\":1}"),
            Err(EventError::NotAnEvent(_))
        ));
    }

    #[test]
    fn legacy_payload_has_the_seeds_field_names() {
        let event = interaction_event(json!({
            "id": "1", "application_id": "2", "token": "t", "type": 2, "guild_id": "5",
            "data": {"name": "stats"},
        }));
        let interaction = Interaction::of(&event).unwrap();
        let legacy = serde_json::to_value(LegacyPayload::from_event(
            &event.to_event().unwrap(),
            interaction.as_ref(),
        ))
        .unwrap();
        assert_eq!(legacy["eventId"], "interaction:1");
        assert_eq!(legacy["eventType"], "interaction.command.stats");
        assert_eq!(legacy["timestamp"], 1_000);
        assert_eq!(legacy["guildId"], "5");
        assert_eq!(legacy["commandName"], "stats");
        assert_eq!(legacy["interactionToken"], "t");
    }
}
