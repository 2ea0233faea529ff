//! Configuration from flags and environment, validated before anything connects.

use std::fmt;
use std::ops::RangeInclusive;

use clap::Parser;
use twilight_gateway::{Intents, ShardId};

#[derive(Parser, Clone)]
#[command(
    name = "arrakis-gateway",
    version,
    about = "Discord gateway shards → NATS JetStream"
)]
pub struct Args {
    /// Discord bot token. Never logged.
    #[arg(long, env = "DISCORD_TOKEN", hide_env_values = true)]
    pub token: String,

    /// Total shards of the bot. Not used with --live-assignment, whose assignment names the total.
    #[arg(long, env = "TOTAL_SHARDS")]
    pub total_shards: Option<u32>,

    /// Run the shards the live assignment in NATS KV gives this member, and follow its changes
    /// (the operator rebalances this way). Needs NATS_URL and POD_NAME.
    #[arg(long, env = "LIVE_ASSIGNMENT", default_value_t = false)]
    pub live_assignment: bool,

    /// This member's name in the live assignment: the pod's name.
    #[arg(long, env = "POD_NAME")]
    pub member: Option<String>,

    /// Shards this process runs, inclusive: `0-24` or `7`. Overrides ordinal/replicas.
    #[arg(long, env = "SHARD_RANGE")]
    pub shard_range: Option<String>,

    /// This pod's ordinal (StatefulSet), with --replicas: runs twilight's bucket(ordinal, replicas, total).
    #[arg(long, env = "POD_ORDINAL")]
    pub pod_ordinal: Option<u16>,

    #[arg(long, env = "REPLICAS")]
    pub replicas: Option<u16>,

    /// Gateway intents as Discord's names, comma-separated.
    #[arg(
        long,
        env = "INTENTS",
        default_value = "GUILDS,GUILD_MEMBERS",
        value_delimiter = ','
    )]
    pub intents: Vec<String>,

    /// Identify buckets (Discord's max_concurrency).
    #[arg(long, env = "MAX_CONCURRENCY", default_value_t = 1)]
    pub max_concurrency: u16,

    /// Milliseconds between identifies in one bucket (Discord: 5000). Lower only against a fake.
    #[arg(long, env = "IDENTIFY_INTERVAL_MS", default_value_t = 5000)]
    pub identify_interval_ms: u64,

    /// NATS server URL(s). Without it the gateway runs in log-only mode.
    #[arg(long, env = "NATS_URL")]
    pub nats_url: Option<String>,

    /// A NATS credentials file.
    #[arg(long, env = "NATS_CREDS")]
    pub nats_creds: Option<std::path::PathBuf>,

    /// Names this bot's saved sessions in NATS KV, to keep several bots apart.
    #[arg(long, env = "POOL_NAME", default_value = "default")]
    pub pool: String,

    /// Put every subject under this prefix.
    #[arg(long, env = "SUBJECT_PREFIX")]
    pub subject_prefix: Option<String>,

    /// Publishes awaiting a JetStream ack at once; beyond it shards wait.
    #[arg(long, env = "MAX_INFLIGHT", default_value_t = 1024)]
    pub max_inflight: usize,

    #[arg(long, env = "HTTP_PORT", default_value_t = 9090)]
    pub http_port: u16,

    /// Gateway URL to connect to instead of Discord's (e.g. fake-discord's ws://127.0.0.1:PORT).
    #[arg(long, env = "DISCORD_GATEWAY_URL")]
    pub gateway_url: Option<String>,
}

/// What went wrong in the configuration, phrased as what to change.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("TOTAL_SHARDS must be at least 1")]
    NoShards,
    #[error("set TOTAL_SHARDS, or LIVE_ASSIGNMENT=true to take shards from the live assignment")]
    NoTotal,
    #[error("LIVE_ASSIGNMENT needs NATS_URL: the assignment and the shard leases live in NATS KV")]
    LiveWithoutNats,
    #[error(
        "LIVE_ASSIGNMENT needs POD_NAME, this member's name in the assignment (the downward API's metadata.name)"
    )]
    NoMember,
    #[error("POD_NAME {0:?} must be a Kubernetes name: lowercase letters, digits, '-' and '.'")]
    BadMember(String),
    #[error("SHARD_RANGE {0:?} is not `FIRST-LAST` or a single shard id")]
    BadRange(String),
    #[error("SHARD_RANGE {range} does not fit in TOTAL_SHARDS {total}: use ids from 0 to {}", total - 1)]
    RangeOutside { range: String, total: u32 },
    #[error("set SHARD_RANGE, or both POD_ORDINAL and REPLICAS")]
    NoAssignment,
    #[error("POD_ORDINAL {ordinal} must be below REPLICAS {replicas}")]
    OrdinalOutside { ordinal: u16, replicas: u16 },
    #[error("REPLICAS {replicas} exceeds TOTAL_SHARDS {total}: some pods would run no shard")]
    MorePodsThanShards { replicas: u16, total: u32 },
    #[error("unknown intent {0:?}: use Discord's names, e.g. GUILDS,GUILD_MEMBERS")]
    UnknownIntent(String),
    #[error("MAX_CONCURRENCY must be at least 1")]
    NoConcurrency,
    #[error("the Discord token is empty: set DISCORD_TOKEN")]
    EmptyToken,
    #[error("IDENTIFY_INTERVAL_MS must be at least 100 (Discord's is 5000)")]
    IdentifyInterval,
    #[error("POOL_NAME {0:?} may only hold letters, digits, '-' and '_'")]
    BadPool(String),
}

/// The shards one process runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assignment {
    pub shards: RangeInclusive<u32>,
    pub total: u32,
}

impl Assignment {
    pub fn shard_ids(&self) -> impl Iterator<Item = ShardId> + '_ {
        self.shards.clone().map(|id| ShardId::new(id, self.total))
    }
}

impl fmt::Display for Assignment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "shards {}-{} of {}",
            self.shards.start(),
            self.shards.end(),
            self.total
        )
    }
}

/// Where a process gets its shards from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ShardSource {
    /// Fixed for the life of the process.
    Static(Assignment),
    /// Whatever the live assignment in NATS KV gives `member`, changing while it runs.
    Live { member: String },
}

/// Validated settings.
pub struct Settings {
    pub token: String,
    pub source: ShardSource,
    pub intents: Intents,
    pub max_concurrency: u16,
    pub identify_interval: std::time::Duration,
}

impl Args {
    pub fn settings(&self) -> Result<Settings, ConfigError> {
        if self.token.trim().is_empty() {
            return Err(ConfigError::EmptyToken);
        }
        if self.max_concurrency == 0 {
            return Err(ConfigError::NoConcurrency);
        }
        if self.identify_interval_ms < 100 {
            return Err(ConfigError::IdentifyInterval);
        }
        let pool_ok = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
        if self.pool.is_empty() || !self.pool.chars().all(pool_ok) {
            return Err(ConfigError::BadPool(self.pool.clone()));
        }
        Ok(Settings {
            token: self.token.clone(),
            source: self.source()?,
            intents: parse_intents(&self.intents)?,
            max_concurrency: self.max_concurrency,
            identify_interval: std::time::Duration::from_millis(self.identify_interval_ms),
        })
    }
}

impl Args {
    fn source(&self) -> Result<ShardSource, ConfigError> {
        if self.live_assignment {
            if self.nats_url.is_none() {
                return Err(ConfigError::LiveWithoutNats);
            }
            let member = self.member.clone().ok_or(ConfigError::NoMember)?;
            let name_ok =
                |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.';
            if member.is_empty() || member.len() > 253 || !member.chars().all(name_ok) {
                return Err(ConfigError::BadMember(member));
            }
            return Ok(ShardSource::Live { member });
        }
        Ok(ShardSource::Static(assignment(
            self.total_shards.ok_or(ConfigError::NoTotal)?,
            self.shard_range.as_deref(),
            self.pod_ordinal,
            self.replicas,
        )?))
    }
}

/// The shards to run: an explicit range, else twilight's bucket(ordinal, replicas, total).
pub fn assignment(
    total: u32,
    range: Option<&str>,
    ordinal: Option<u16>,
    replicas: Option<u16>,
) -> Result<Assignment, ConfigError> {
    if total == 0 {
        return Err(ConfigError::NoShards);
    }
    if let Some(text) = range {
        let parse = |s: &str| {
            s.trim()
                .parse::<u32>()
                .map_err(|_| ConfigError::BadRange(text.to_owned()))
        };
        let (first, last) = match text.split_once('-') {
            Some((a, b)) => (parse(a)?, parse(b)?),
            None => (parse(text)?, parse(text)?),
        };
        if first > last {
            return Err(ConfigError::BadRange(text.to_owned()));
        }
        if last >= total {
            return Err(ConfigError::RangeOutside {
                range: text.to_owned(),
                total,
            });
        }
        return Ok(Assignment {
            shards: first..=last,
            total,
        });
    }
    let (Some(ordinal), Some(replicas)) = (ordinal, replicas) else {
        return Err(ConfigError::NoAssignment);
    };
    if ordinal >= replicas {
        return Err(ConfigError::OrdinalOutside { ordinal, replicas });
    }
    if u32::from(replicas) > total {
        return Err(ConfigError::MorePodsThanShards { replicas, total });
    }
    let ids: Vec<u32> = twilight_gateway::bucket(ordinal, replicas, total)
        .map(|id| id.number())
        .collect();
    let (first, last) = (ids[0], ids[ids.len() - 1]);
    Ok(Assignment {
        shards: first..=last,
        total,
    })
}

pub fn parse_intents(names: &[String]) -> Result<Intents, ConfigError> {
    names
        .iter()
        .map(|n| n.trim())
        .filter(|n| !n.is_empty())
        .try_fold(Intents::empty(), |all, name| {
            let one = match name {
                "GUILDS" => Intents::GUILDS,
                "GUILD_MEMBERS" => Intents::GUILD_MEMBERS,
                "GUILD_MODERATION" => Intents::GUILD_MODERATION,
                "GUILD_EXPRESSIONS" => Intents::GUILD_EMOJIS_AND_STICKERS,
                "GUILD_INTEGRATIONS" => Intents::GUILD_INTEGRATIONS,
                "GUILD_WEBHOOKS" => Intents::GUILD_WEBHOOKS,
                "GUILD_INVITES" => Intents::GUILD_INVITES,
                "GUILD_VOICE_STATES" => Intents::GUILD_VOICE_STATES,
                "GUILD_PRESENCES" => Intents::GUILD_PRESENCES,
                "GUILD_MESSAGES" => Intents::GUILD_MESSAGES,
                "GUILD_MESSAGE_REACTIONS" => Intents::GUILD_MESSAGE_REACTIONS,
                "GUILD_MESSAGE_TYPING" => Intents::GUILD_MESSAGE_TYPING,
                "DIRECT_MESSAGES" => Intents::DIRECT_MESSAGES,
                "DIRECT_MESSAGE_REACTIONS" => Intents::DIRECT_MESSAGE_REACTIONS,
                "DIRECT_MESSAGE_TYPING" => Intents::DIRECT_MESSAGE_TYPING,
                "MESSAGE_CONTENT" => Intents::MESSAGE_CONTENT,
                "GUILD_SCHEDULED_EVENTS" => Intents::GUILD_SCHEDULED_EVENTS,
                "AUTO_MODERATION_CONFIGURATION" => Intents::AUTO_MODERATION_CONFIGURATION,
                "AUTO_MODERATION_EXECUTION" => Intents::AUTO_MODERATION_EXECUTION,
                "GUILD_MESSAGE_POLLS" => Intents::GUILD_MESSAGE_POLLS,
                "DIRECT_MESSAGE_POLLS" => Intents::DIRECT_MESSAGE_POLLS,
                other => return Err(ConfigError::UnknownIntent(other.to_owned())),
            };
            Ok(all | one)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_ranges() {
        assert_eq!(
            assignment(25, Some("0-24"), None, None).unwrap().shards,
            0..=24
        );
        assert_eq!(assignment(25, Some("7"), None, None).unwrap().shards, 7..=7);
        assert_eq!(
            assignment(25, Some("20-25"), None, None),
            Err(ConfigError::RangeOutside {
                range: "20-25".into(),
                total: 25
            })
        );
        assert_eq!(
            assignment(25, Some("5-2"), None, None),
            Err(ConfigError::BadRange("5-2".into()))
        );
        assert_eq!(
            assignment(25, Some("a-b"), None, None),
            Err(ConfigError::BadRange("a-b".into()))
        );
    }

    #[test]
    fn ordinals_follow_twilights_buckets() {
        // bucket(0, 2, 25) = 13 shards, bucket(1, 2, 25) = 12.
        assert_eq!(
            assignment(25, None, Some(0), Some(2)).unwrap().shards,
            0..=12
        );
        assert_eq!(
            assignment(25, None, Some(1), Some(2)).unwrap().shards,
            13..=24
        );
        assert_eq!(
            assignment(25, None, Some(2), Some(2)),
            Err(ConfigError::OrdinalOutside {
                ordinal: 2,
                replicas: 2
            })
        );
        assert_eq!(
            assignment(2, None, Some(0), Some(3)),
            Err(ConfigError::MorePodsThanShards {
                replicas: 3,
                total: 2
            })
        );
        assert_eq!(
            assignment(25, None, Some(0), None),
            Err(ConfigError::NoAssignment)
        );
        assert_eq!(
            assignment(0, Some("0"), None, None),
            Err(ConfigError::NoShards)
        );
    }

    #[test]
    fn every_shard_is_owned_once_across_pods() {
        for total in 1..60u32 {
            for replicas in 1..=total.min(9) as u16 {
                let mut owned: Vec<u32> = (0..replicas)
                    .flat_map(|ordinal| {
                        assignment(total, None, Some(ordinal), Some(replicas))
                            .unwrap()
                            .shards
                    })
                    .collect();
                owned.sort_unstable();
                assert_eq!(
                    owned,
                    (0..total).collect::<Vec<_>>(),
                    "total {total}, replicas {replicas}"
                );
            }
        }
    }

    fn args(env: &[&str]) -> Args {
        let mut argv = vec!["arrakis-gateway", "--token", "t"];
        argv.extend_from_slice(env);
        Args::try_parse_from(argv).expect("parses")
    }

    #[test]
    fn live_assignment_needs_nats_and_a_member_name() {
        let live = |extra: &[&str]| {
            let mut all = vec!["--live-assignment"];
            all.extend_from_slice(extra);
            args(&all).source()
        };
        assert_eq!(live(&[]), Err(ConfigError::LiveWithoutNats));
        assert_eq!(
            live(&["--nats-url", "nats://n:4222"]),
            Err(ConfigError::NoMember)
        );
        assert_eq!(
            live(&["--nats-url", "nats://n:4222", "--member", "Gateway_0"]),
            Err(ConfigError::BadMember("Gateway_0".into()))
        );
        assert_eq!(
            live(&["--nats-url", "nats://n:4222", "--member", "bot-gateway-0"]),
            Ok(ShardSource::Live {
                member: "bot-gateway-0".into()
            })
        );
        assert_eq!(
            args(&["--shard-range", "0"]).source(),
            Err(ConfigError::NoTotal)
        );
    }

    #[test]
    fn intents_by_name() {
        let names = ["GUILDS".to_string(), "GUILD_MEMBERS".to_string()];
        assert_eq!(
            parse_intents(&names).unwrap(),
            Intents::GUILDS | Intents::GUILD_MEMBERS
        );
        assert_eq!(
            parse_intents(&["GUILD_CHAT".to_string()]),
            Err(ConfigError::UnknownIntent("GUILD_CHAT".into()))
        );
    }
}
