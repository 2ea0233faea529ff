//! Configuration: the process's settings from flags and environment, and the handler routes from a
//! YAML file (the operator supplies it as a ConfigMap).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use serde::Deserialize;

use crate::handlers::builtin::Builtin;

#[derive(Parser, Clone, Debug)]
#[command(
    name = "arrakis-worker",
    version,
    about = "JetStream consumers → handlers → Discord"
)]
pub struct Args {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// NATS server URL(s).
    #[arg(long, env = "NATS_URL", global = true)]
    pub nats_url: Option<String>,

    /// A NATS credentials file.
    #[arg(long, env = "NATS_CREDS", global = true)]
    pub nats_creds: Option<PathBuf>,

    /// Durable pull consumers to consume, as STREAM/CONSUMER, comma-separated.
    #[arg(long, env = "CONSUMERS", value_delimiter = ',')]
    pub consumers: Vec<String>,

    /// Handlers running at once in this process; more messages wait.
    #[arg(long, env = "CONCURRENCY", default_value_t = 64)]
    pub concurrency: usize,

    /// The handler routes (YAML). Without it every built-in handler is routed.
    #[arg(long, env = "HANDLERS_CONFIG")]
    pub handlers_config: Option<PathBuf>,

    /// Bot token, for REST calls outside interactions (role changes). Never logged.
    #[arg(long, env = "DISCORD_TOKEN", hide_env_values = true)]
    pub discord_token: Option<String>,

    /// Discord's REST API host instead of discord.com, e.g. fake-discord's 127.0.0.1:PORT (plain HTTP).
    #[arg(long, env = "DISCORD_API_HOST")]
    pub discord_api_host: Option<String>,

    #[arg(long, env = "HTTP_PORT", default_value_t = 8080)]
    pub http_port: u16,

    /// SIGTERM: how long in-flight handlers may run before their messages are nak'd.
    #[arg(long, env = "DRAIN_SECONDS", default_value_t = 25)]
    pub drain_seconds: u64,

    /// The stream dead letters are kept in (created if missing).
    #[arg(long, env = "DEAD_LETTER_STREAM", default_value = crate::dead_letters::STREAM)]
    pub dead_letter_stream: String,
}

#[derive(clap::Subcommand, Clone, Debug)]
pub enum Command {
    /// Consume (the default).
    Run,
    /// Dead letters: list, show one, or replay it to its original subject.
    DeadLetters {
        #[command(subcommand)]
        action: DeadLetterAction,
    },
    /// The status of one message: pending, done, retrying or dead, with its error.
    Job { stream: String, sequence: u64 },
}

#[derive(clap::Subcommand, Clone, Debug)]
pub enum DeadLetterAction {
    List,
    Show { sequence: u64 },
    Replay { sequence: u64 },
}

/// A consumer to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsumerRef {
    pub stream: String,
    pub consumer: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("NATS_URL is not set: the worker consumes JetStream and keeps its state there")]
    NoNats,
    #[error(
        "CONSUMERS is empty: name at least one as STREAM/CONSUMER, e.g. COMMANDS/command-worker"
    )]
    NoConsumers,
    #[error("CONSUMERS entry {0:?} is not STREAM/CONSUMER")]
    BadConsumer(String),
    #[error("CONCURRENCY must be at least 1")]
    NoConcurrency,
    #[error("handler config: {0}")]
    Handlers(String),
}

impl Args {
    pub fn consumer_refs(&self) -> Result<Vec<ConsumerRef>, ConfigError> {
        if self.consumers.is_empty() {
            return Err(ConfigError::NoConsumers);
        }
        self.consumers
            .iter()
            .map(|entry| match entry.trim().split_once('/') {
                Some((stream, consumer)) if !stream.is_empty() && !consumer.is_empty() => {
                    Ok(ConsumerRef {
                        stream: stream.to_owned(),
                        consumer: consumer.to_owned(),
                    })
                }
                _ => Err(ConfigError::BadConsumer(entry.clone())),
            })
            .collect()
    }
}

/// The handler routes file.
///
/// ```yaml
/// bridges:
///   legacy: {url: "http://legacy-handlers:8080/events", timeout: 10s}
/// routes:
///   command.profile: builtin
///   command.stats: {bridge: legacy}
///   button.verify: {bridge: legacy}
///   member.join: builtin
/// default: {bridge: legacy}   # optional: anything not routed above
/// ```
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HandlerConfig {
    #[serde(default)]
    pub bridges: BTreeMap<String, BridgeConfig>,
    #[serde(default)]
    pub routes: BTreeMap<String, Target>,
    #[serde(default)]
    pub default: Option<Target>,
    /// Per-user limits of interaction routes (seed GW-3 StateManager: cooldowns, rate limits).
    #[serde(default)]
    pub limits: BTreeMap<String, Limit>,
}

/// `{cooldown: 10s}`: once per user per 10 s. `{rate: 5, per: 1m}`: at most 5 per user in any minute.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Limit {
    pub cooldown: Option<String>,
    pub rate: Option<usize>,
    pub per: Option<String>,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BridgeConfig {
    pub url: String,
    /// A duration such as `500ms`, `10s` or `1m`.
    #[serde(default = "default_timeout")]
    pub timeout: String,
}

fn default_timeout() -> String {
    "10s".into()
}

/// Where a route goes.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum Target {
    /// `builtin` or `ack`.
    Word(Word),
    /// `{bridge: NAME}`.
    Bridge { bridge: String },
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Word {
    /// The built-in handler of the same key.
    Builtin,
    /// Acknowledge and do nothing: events a deployment does not care about.
    Ack,
}

impl HandlerConfig {
    /// Every built-in handler on its own key.
    pub fn builtins_only() -> Self {
        HandlerConfig {
            routes: Builtin::ALL
                .iter()
                .map(|b| (b.route_key().to_owned(), Target::Word(Word::Builtin)))
                .collect(),
            ..Default::default()
        }
    }

    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let config: HandlerConfig =
            serde_yaml::from_str(text).map_err(|e| ConfigError::Handlers(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let fail = |message: String| Err(ConfigError::Handlers(message));
        for (name, bridge) in &self.bridges {
            if !(bridge.url.starts_with("http://") || bridge.url.starts_with("https://")) {
                return fail(format!(
                    "bridge {name:?}: url {:?} must start with http:// or https://",
                    bridge.url
                ));
            }
            if bridge.url.starts_with("https://") {
                return fail(format!(
                    "bridge {name:?}: https is not supported yet; reach the handler service over http inside the cluster"
                ));
            }
            parse_duration(&bridge.timeout)
                .map_err(|e| ConfigError::Handlers(format!("bridge {name:?}: timeout: {e}")))?;
        }
        for (key, limit) in &self.limits {
            let interaction = ["command.", "autocomplete.", "button.", "select.", "modal."]
                .iter()
                .any(|kind| key.starts_with(kind));
            if !interaction || !valid_route_key(key) {
                return fail(format!(
                    "limit {key:?}: limits apply to interaction routes (command.NAME, button.ID, …)"
                ));
            }
            if let Some(cooldown) = &limit.cooldown {
                parse_duration(cooldown)
                    .map_err(|e| ConfigError::Handlers(format!("limit {key:?}: cooldown: {e}")))?;
            }
            match (limit.rate, &limit.per) {
                (Some(0), _) => return fail(format!("limit {key:?}: rate must be at least 1")),
                (Some(_), Some(per)) => {
                    parse_duration(per)
                        .map_err(|e| ConfigError::Handlers(format!("limit {key:?}: per: {e}")))?;
                }
                (None, None) => {}
                _ => return fail(format!("limit {key:?}: rate and per go together")),
            }
            if limit.cooldown.is_none() && limit.rate.is_none() {
                return fail(format!("limit {key:?}: set cooldown, or rate and per"));
            }
        }
        let targets = self
            .routes
            .iter()
            .map(|(key, target)| (key.as_str(), target))
            .chain(self.default.iter().map(|target| ("default", target)));
        for (key, target) in targets {
            if key != "default" && !valid_route_key(key) {
                return fail(format!(
                    "route {key:?} is not an event type (member.join) or KIND.NAME with KIND one of command, autocomplete, button, select, modal"
                ));
            }
            match target {
                Target::Bridge { bridge } if !self.bridges.contains_key(bridge) => {
                    let known: Vec<&str> = self.bridges.keys().map(String::as_str).collect();
                    return fail(format!(
                        "route {key:?} names bridge {bridge:?}, which is not defined (bridges: {known:?})"
                    ));
                }
                Target::Word(Word::Builtin) if Builtin::for_key(key).is_none() => {
                    let known: Vec<&str> = Builtin::ALL.iter().map(|b| b.route_key()).collect();
                    return fail(format!(
                        "route {key:?} asks for a built-in handler, and there is none for it (built-ins: {known:?})"
                    ));
                }
                _ => {}
            }
        }
        Ok(())
    }
}

fn valid_route_key(key: &str) -> bool {
    let segment_ok = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    };
    match key.split_once('.') {
        Some((kind, name))
            if ["command", "autocomplete", "button", "select", "modal"].contains(&kind) =>
        {
            segment_ok(name)
        }
        _ => key
            .split('.')
            .all(|s| segment_ok(s) && s == s.to_ascii_lowercase()),
    }
}

/// `500ms`, `10s`, `2m`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("{text:?} has no unit: use ms, s or m"))?;
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} does not start with a number"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(number)),
        "s" => Ok(Duration::from_secs(number)),
        "m" => Ok(Duration::from_secs(number * 60)),
        _ => Err(format!("{text:?}: unit {unit:?} is not ms, s or m")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_config_parses() {
        let config = HandlerConfig::parse(
            r#"
bridges:
  legacy: {url: "http://legacy:8080/events", timeout: 500ms}
routes:
  command.profile: builtin
  command.stats: {bridge: legacy}
  button.verify: {bridge: legacy}
  member.join: builtin
  typing.start: ack
default: {bridge: legacy}
"#,
        )
        .unwrap();
        assert_eq!(config.routes.len(), 5);
        assert_eq!(config.routes["typing.start"], Target::Word(Word::Ack));
        assert_eq!(
            config.routes["command.stats"],
            Target::Bridge {
                bridge: "legacy".into()
            }
        );
    }

    #[test]
    fn mistakes_are_named() {
        let error = |text: &str| HandlerConfig::parse(text).unwrap_err().to_string();
        assert!(
            error("routes: {command.stats: {bridge: nope}}")
                .contains("bridge \"nope\", which is not defined")
        );
        assert!(error("routes: {command.stats: builtin}").contains("there is none for it"));
        assert!(error("routes: {Command.x: builtin}").contains("is not an event type"));
        assert!(error("bridges: {b: {url: \"ftp://x\"}}").contains("must start with http://"));
        assert!(error("bridges: {b: {url: \"http://x\", timeout: 10}}").contains("timeout"));
        assert!(error("route: {}").contains("unknown field"));
    }

    #[test]
    fn limits_are_checked() {
        let config = HandlerConfig::parse(
            "limits:\n  command.stats: {cooldown: 10s}\n  command.profile: {rate: 5, per: 1m}\n",
        )
        .unwrap();
        assert_eq!(config.limits["command.profile"].rate, Some(5));
        let error = |text: &str| HandlerConfig::parse(text).unwrap_err().to_string();
        assert!(error("limits: {member.join: {cooldown: 1s}}").contains("interaction routes"));
        assert!(error("limits: {command.x: {rate: 5}}").contains("rate and per go together"));
        assert!(error("limits: {command.x: {}}").contains("set cooldown"));
        assert!(error("limits: {command.x: {cooldown: soon}}").contains("cooldown"));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("10h").is_err());
    }

    #[test]
    fn consumers_are_stream_slash_consumer() {
        let args = Args::try_parse_from([
            "w",
            "--consumers",
            "COMMANDS/command-worker,EVENTS/event-worker",
        ])
        .unwrap();
        assert_eq!(args.consumer_refs().unwrap()[1].consumer, "event-worker");
        let args = Args::try_parse_from(["w", "--consumers", "COMMANDS"]).unwrap();
        assert_eq!(
            args.consumer_refs(),
            Err(ConfigError::BadConsumer("COMMANDS".into()))
        );
    }
}
