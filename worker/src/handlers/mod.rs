//! The handler registry: a route key (`member.join`, `command.profile`, `button.verify`) picks a
//! built-in Rust handler or an HTTP bridge to a legacy handler service.

pub mod bridge;
pub mod builtin;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use arrakis_contract::GatewayEvent;

use crate::config::{HandlerConfig, Target, Word, parse_duration};
use crate::event::Interaction;
use crate::outcome::Outcome;
use crate::state::State;
use bridge::Bridge;
use builtin::Builtin;

/// What a handler answers: the outcome, and for interactions the text to show the user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Handled {
    pub outcome: Outcome,
    pub reply: Option<String>,
}

impl Handled {
    pub fn done() -> Self {
        Handled {
            outcome: Outcome::Done,
            reply: None,
        }
    }

    pub fn reply(text: impl Into<String>) -> Self {
        Handled {
            outcome: Outcome::Done,
            reply: Some(text.into()),
        }
    }

    pub fn retry(error: impl Into<String>) -> Self {
        Handled {
            outcome: Outcome::Retry(error.into()),
            reply: None,
        }
    }

    pub fn fail(error: impl Into<String>) -> Self {
        Handled {
            outcome: Outcome::Fail(error.into()),
            reply: None,
        }
    }
}

/// What a handler gets.
pub struct Request<'a> {
    pub event: &'a GatewayEvent,
    pub interaction: Option<&'a Interaction>,
    pub state: &'a State,
}

#[derive(Clone)]
pub enum Handler {
    Builtin(Builtin),
    Bridge(Arc<Bridge>),
    /// Succeeds at once (route target `ack`).
    Ack,
}

impl Handler {
    pub async fn handle(&self, request: &Request<'_>) -> Handled {
        match self {
            Handler::Builtin(builtin) => builtin.handle(request).await,
            Handler::Bridge(bridge) => bridge.handle(request).await,
            Handler::Ack => Handled::done(),
        }
    }

    /// Whether the runtime must remember done events for this handler. Built-ins apply their
    /// changes once by themselves (compare-and-set on the record they change); a bridged service's
    /// effects are out of sight, so its events are remembered for 24 h.
    pub fn needs_idempotency(&self) -> bool {
        matches!(self, Handler::Bridge(_))
    }
}

/// Route key → handler, built from the (validated) config.
#[derive(Clone)]
pub struct Registry {
    routes: BTreeMap<String, Handler>,
    default: Option<Handler>,
    limits: BTreeMap<String, Limits>,
}

/// A route's per-user limits, parsed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    pub cooldown: Option<Duration>,
    pub rate: Option<(usize, Duration)>,
}

impl Registry {
    pub fn new(config: &HandlerConfig) -> Self {
        let bridges: BTreeMap<&str, Arc<Bridge>> = config
            .bridges
            .iter()
            .map(|(name, bridge)| {
                let timeout = parse_duration(&bridge.timeout).expect("validated");
                (
                    name.as_str(),
                    Arc::new(Bridge::new(name, &bridge.url, timeout)),
                )
            })
            .collect();
        let resolve = |key: &str, target: &Target| match target {
            Target::Word(Word::Builtin) => {
                Handler::Builtin(Builtin::for_key(key).expect("validated"))
            }
            Target::Word(Word::Ack) => Handler::Ack,
            Target::Bridge { bridge } => Handler::Bridge(bridges[bridge.as_str()].clone()),
        };
        Registry {
            routes: config
                .routes
                .iter()
                .map(|(key, target)| (key.clone(), resolve(key, target)))
                .collect(),
            default: config.default.as_ref().map(|t| resolve("default", t)),
            limits: config
                .limits
                .iter()
                .map(|(key, limit)| {
                    let duration = |text: &String| parse_duration(text).expect("validated");
                    let limits = Limits {
                        cooldown: limit.cooldown.as_ref().map(duration),
                        rate: limit.rate.zip(limit.per.as_ref().map(duration)),
                    };
                    (key.clone(), limits)
                })
                .collect(),
        }
    }

    /// The per-user limits of `key`, if it has any.
    pub fn limits(&self, key: &str) -> Option<&Limits> {
        self.limits.get(key)
    }

    /// The handler for `key`, or the default route's.
    pub fn route(&self, key: &str) -> Option<&Handler> {
        self.routes.get(key).or(self.default.as_ref())
    }
}
