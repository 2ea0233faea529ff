//! `ShardPool`: a pool of Discord gateway shards run by a StatefulSet.

use std::borrow::Cow;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::common::{NatsConnection, PodOverrides, SecretKeyRef};

/// The seed's density: one gateway process runs 25 shards.
pub const DEFAULT_SHARDS_PER_POD: i32 = 25;

/// Discord refuses more than 2,500 guilds on one shard, and bots are far below a million shards.
pub const MAX_TOTAL_SHARDS: i32 = 100_000;

/// A pool of Discord gateway shards, published to JetStream.
// Repeated printcolumn keys are separate columns, not duplicates.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "arrakis.dev",
    version = "v1alpha1",
    kind = "ShardPool",
    namespaced,
    status = "ShardPoolStatus",
    shortname = "sp",
    category = "arrakis",
    doc = "A pool of Discord gateway shards run by a StatefulSet, each event published to JetStream.",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(
        name = "Shards",
        type_ = "integer",
        json_path = ".status.totalShards",
        description = "Total shards of the bot"
    ),
    printcolumn(
        name = "Replicas",
        type_ = "integer",
        json_path = ".status.replicas",
        description = "Gateway pods"
    ),
    printcolumn(
        name = "Ready",
        type_ = "integer",
        json_path = ".status.readyShards",
        description = "Shards connected and READY"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("!has(self.replicas) || type(self.shards) == string || self.replicas <= int(self.shards)")
        .message("replicas must not exceed shards: every gateway pod needs at least one shard; lower replicas or raise shards")
        .field_path(".replicas"),
)]
pub struct ShardPoolSpec {
    /// Total shards of the bot: a number, or `auto` for Discord's recommendation from `/gateway/bot`.
    #[serde(default)]
    pub shards: ShardCount,

    /// Gateway pods. `kubectl scale sp/NAME --replicas=N` sets it; shards are rebalanced by session resume.
    /// When unset, it is total shards divided by shardsPerPod, rounded up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 10000))]
    pub replicas: Option<i32>,

    /// Shards per pod used to size the pool when replicas is unset. Default 25.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub shards_per_pod: Option<i32>,

    /// The Secret holding the bot token. Default key `token`.
    pub token_secret_ref: SecretKeyRef,

    /// Gateway intents, by Discord's names. Default GUILDS and GUILD_MEMBERS.
    #[serde(default = "default_intents")]
    #[x_kube(merge_strategy = ListMerge::Set)]
    #[schemars(length(min = 1))]
    pub intents: Vec<Intent>,

    /// How the gateways reach NATS. Omit to use the operator's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nats: Option<NatsConnection>,

    /// Prefix for every subject the gateways publish, e.g. `bot1` gives `bot1.commands.interaction`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        regex(pattern = r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$"),
        length(max = 128)
    )]
    pub subject_prefix: Option<String>,

    /// Overrides for the gateway pods.
    #[serde(default, skip_serializing_if = "is_default")]
    pub pod: PodOverrides,
}

fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

pub fn default_intents() -> Vec<Intent> {
    vec![Intent::Guilds, Intent::GuildMembers]
}

/// Total shards: a fixed number, or Discord's recommendation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ShardCount {
    #[default]
    Auto,
    Fixed(i32),
}

const AUTO: &str = "auto";

impl Serialize for ShardCount {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            ShardCount::Auto => serializer.serialize_str(AUTO),
            ShardCount::Fixed(n) => serializer.serialize_i32(*n),
        }
    }
}

impl<'de> Deserialize<'de> for ShardCount {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(i64),
            Text(String),
        }
        match Raw::deserialize(deserializer)? {
            Raw::Number(n) => i32::try_from(n)
                .ok()
                .filter(|n| (1..=MAX_TOTAL_SHARDS).contains(n))
                .map(ShardCount::Fixed)
                .ok_or_else(|| {
                    serde::de::Error::custom(format!(
                        "shards must be between 1 and {MAX_TOTAL_SHARDS}, or \"auto\"; got {n}"
                    ))
                }),
            Raw::Text(text) if text == AUTO => Ok(ShardCount::Auto),
            Raw::Text(text) => Err(serde::de::Error::custom(format!(
                "shards must be a number or \"auto\"; got {text:?}"
            ))),
        }
    }
}

impl JsonSchema for ShardCount {
    fn schema_name() -> Cow<'static, str> {
        "ShardCount".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "x-kubernetes-int-or-string": true,
            // kube marks optional int-or-string fields nullable; a null here would defeat the default.
            "nullable": false,
            "default": AUTO,
            "description": "A number of shards, or \"auto\" for Discord's recommendation.",
            "x-kubernetes-validations": [{
                "rule": format!("type(self) == int ? (self >= 1 && self <= {MAX_TOTAL_SHARDS}) : self == '{AUTO}'"),
                "message": format!("shards must be a whole number from 1 to {MAX_TOTAL_SHARDS}, or \"auto\" for Discord's recommendation")
            }]
        })
    }
}

/// Discord gateway intents, by the names in Discord's documentation.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Intent {
    Guilds,
    GuildMembers,
    GuildModeration,
    GuildExpressions,
    GuildIntegrations,
    GuildWebhooks,
    GuildInvites,
    GuildVoiceStates,
    GuildPresences,
    GuildMessages,
    GuildMessageReactions,
    GuildMessageTyping,
    DirectMessages,
    DirectMessageReactions,
    DirectMessageTyping,
    MessageContent,
    GuildScheduledEvents,
    AutoModerationConfiguration,
    AutoModerationExecution,
    GuildMessagePolls,
    DirectMessagePolls,
}

impl Intent {
    /// The intent's bit in Identify's `intents` field.
    pub fn bit(self) -> u64 {
        let shift = match self {
            Intent::Guilds => 0,
            Intent::GuildMembers => 1,
            Intent::GuildModeration => 2,
            Intent::GuildExpressions => 3,
            Intent::GuildIntegrations => 4,
            Intent::GuildWebhooks => 5,
            Intent::GuildInvites => 6,
            Intent::GuildVoiceStates => 7,
            Intent::GuildPresences => 8,
            Intent::GuildMessages => 9,
            Intent::GuildMessageReactions => 10,
            Intent::GuildMessageTyping => 11,
            Intent::DirectMessages => 12,
            Intent::DirectMessageReactions => 13,
            Intent::DirectMessageTyping => 14,
            Intent::MessageContent => 15,
            Intent::GuildScheduledEvents => 16,
            Intent::AutoModerationConfiguration => 20,
            Intent::AutoModerationExecution => 21,
            Intent::GuildMessagePolls => 24,
            Intent::DirectMessagePolls => 25,
        };
        1 << shift
    }

    /// Privileged intents must be enabled for the application in Discord's developer portal.
    pub fn is_privileged(self) -> bool {
        matches!(
            self,
            Intent::GuildMembers | Intent::GuildPresences | Intent::MessageContent
        )
    }
}

/// The bitfield Discord expects for a set of intents.
pub fn intents_bits(intents: &[Intent]) -> u64 {
    intents.iter().fold(0, |bits, intent| bits | intent.bit())
}

impl ShardPoolSpec {
    pub fn shards_per_pod(&self) -> i32 {
        self.shards_per_pod.unwrap_or(DEFAULT_SHARDS_PER_POD)
    }

    /// Pods to run for `total_shards`: the explicit replicas, else total / density rounded up.
    pub fn desired_replicas(&self, total_shards: i32) -> i32 {
        self.replicas.unwrap_or_else(|| {
            let per_pod = self.shards_per_pod().max(1);
            (total_shards + per_pod - 1) / per_pod
        })
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ShardPoolStatus {
    /// The generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The resolved total (Discord's recommendation when spec.shards is `auto`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_shards: Option<i32>,
    /// Gateway pods that exist.
    #[serde(default)]
    pub replicas: i32,
    /// Shards connected and past READY or RESUMED.
    #[serde(default)]
    pub ready_shards: i32,
    /// Label selector of the gateway pods, for the scale subresource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// Which pod runs which shards.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub assignments: Vec<ShardAssignment>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

/// Shards owned by one gateway pod.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ShardAssignment {
    pub pod: String,
    /// Inclusive ranges of shard ids.
    pub shards: Vec<ShardRange>,
    /// How many of this pod's shards are READY.
    #[serde(default)]
    pub ready_shards: i32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ShardRange {
    pub first: i32,
    pub last: i32,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> ShardPoolSpec {
        serde_yaml::from_str(yaml).expect("valid spec")
    }

    #[test]
    fn defaults_follow_the_seed() {
        let s = spec("tokenSecretRef: {name: bot}");
        assert_eq!(s.shards, ShardCount::Auto);
        assert_eq!(s.intents, vec![Intent::Guilds, Intent::GuildMembers]);
        assert_eq!(intents_bits(&s.intents), 0b11);
        assert_eq!(s.shards_per_pod(), 25);
    }

    #[test]
    fn replicas_default_to_density_rounded_up() {
        let s = spec("tokenSecretRef: {name: bot}\nshards: 50");
        assert_eq!(s.desired_replicas(50), 2);
        assert_eq!(s.desired_replicas(51), 3);
        assert_eq!(s.desired_replicas(1), 1);
        let s = spec("tokenSecretRef: {name: bot}\nshards: 50\nreplicas: 4");
        assert_eq!(s.desired_replicas(50), 4);
    }

    #[test]
    fn shard_count_is_a_number_or_auto() {
        assert_eq!(
            spec("tokenSecretRef: {name: b}\nshards: 7").shards,
            ShardCount::Fixed(7)
        );
        assert_eq!(
            spec("tokenSecretRef: {name: b}\nshards: auto").shards,
            ShardCount::Auto
        );
        for bad in ["shards: 0", "shards: -3", "shards: many", "shards: 100001"] {
            let err = serde_yaml::from_str::<ShardPoolSpec>(&format!(
                "tokenSecretRef: {{name: b}}\n{bad}"
            ))
            .expect_err(bad)
            .to_string();
            assert!(err.contains("shards must"), "{bad}: {err}");
        }
        assert_eq!(serde_json::to_value(ShardCount::Auto).unwrap(), "auto");
        assert_eq!(serde_json::to_value(ShardCount::Fixed(3)).unwrap(), 3);
    }

    #[test]
    fn privileged_intents_match_discord() {
        let privileged: Vec<u64> = [
            Intent::GuildMembers,
            Intent::GuildPresences,
            Intent::MessageContent,
        ]
        .iter()
        .map(|i| i.bit())
        .collect();
        assert_eq!(privileged, vec![1 << 1, 1 << 8, 1 << 15]);
        assert!(!Intent::Guilds.is_privileged());
    }
}
