//! A local Discord for tests, benchmarks and the demo: gateway v10 over WebSocket, the REST endpoints
//! Arrakis uses, a control API to load guilds, emit events and inject faults, and a ground-truth log.
//!
//! One port serves everything: the gateway at `ws://HOST:PORT/`, REST under `/api/v10/`, control under
//! `/control/`. Start it in-process with [`FakeDiscord::start`] or as the `fake-discord` binary.

mod control;
pub mod emit;
mod gateway;
pub mod model;
mod rest;
pub mod truth;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use axum::serve::ListenerExt;
use serde_json::Value;
use tokio::sync::mpsc;

pub use gateway::{Fault, close_code};
use model::Guild;
pub use truth::Truth;

/// Bits of the privileged intents: GUILD_MEMBERS, GUILD_PRESENCES, MESSAGE_CONTENT.
pub const PRIVILEGED_INTENTS: u64 = (1 << 1) | (1 << 8) | (1 << 15);
/// Every intent bit Discord defines.
pub const ALL_INTENTS: u64 = 0b11_0011_1111_1111_1111_1111;

#[derive(Clone, Debug)]
pub struct Config {
    /// The bot token clients must present (without the `Bot ` prefix).
    pub token: String,
    pub application_id: u64,
    pub bot_user_id: u64,
    /// What `/gateway/bot` recommends.
    pub recommended_shards: u32,
    /// Identify rate-limit buckets; shard id modulo this is the bucket key.
    pub max_concurrency: u32,
    /// One identify per bucket per this interval (Discord: 5 s). Zero disables pacing.
    pub identify_interval: Duration,
    /// Daily session starts.
    pub session_start_limit: u32,
    pub heartbeat_interval: Duration,
    /// Privileged intents the application may use.
    pub allowed_privileged_intents: u64,
    /// Members above which GUILD_CREATE is `large` and carries no member list (client may lower it).
    pub default_large_threshold: usize,
    pub seed: u64,
    pub guilds: usize,
    pub members_per_guild: usize,
    /// The first response to an interaction must come within this (Discord: 3 s).
    pub interaction_deadline: Duration,
    /// Interaction tokens work for edits and follow-ups this long (Discord: 15 min).
    pub interaction_token_ttl: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            token: "fake-token".into(),
            application_id: 100_000_000_000_000_001,
            bot_user_id: 100_000_000_000_000_002,
            recommended_shards: 1,
            max_concurrency: 1,
            identify_interval: Duration::from_secs(5),
            session_start_limit: 1000,
            heartbeat_interval: Duration::from_millis(41_250),
            allowed_privileged_intents: 1 << 1,
            default_large_threshold: 50,
            seed: 1,
            guilds: 10,
            members_per_guild: 5,
            interaction_deadline: Duration::from_secs(3),
            interaction_token_ttl: Duration::from_secs(15 * 60),
        }
    }
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

/// What a connection task is told to do.
#[derive(Debug)]
pub(crate) enum Outgoing {
    Frame(String),
    Close(u16, &'static str),
    /// Flush what the WebSocket layer queued (the echo of a client's close) and end.
    Finish,
    /// Drop the TCP connection without a close frame.
    Abort,
}

pub(crate) struct Connection {
    pub(crate) shard: Option<(u32, u32)>,
    pub(crate) session_id: Option<String>,
    pub(crate) tx: mpsc::UnboundedSender<Outgoing>,
    pub(crate) zombie: bool,
}

pub(crate) struct Session {
    pub(crate) shard: (u32, u32),
    pub(crate) seq: u64,
    /// Sequenced frames, kept for replay on resume.
    pub(crate) buffer: Vec<(u64, String)>,
    pub(crate) connection: Option<u64>,
}

pub(crate) struct State {
    pub(crate) world: Vec<Guild>,
    pub(crate) sessions: HashMap<String, Session>,
    pub(crate) connections: HashMap<u64, Connection>,
    pub(crate) next_connection: u64,
    pub(crate) sessions_started: u64,
    pub(crate) last_identify: HashMap<u32, tokio::time::Instant>,
    pub(crate) session_starts_remaining: u32,
    pub(crate) interactions_created: u64,
    pub(crate) truth: Truth,
}

pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) ws_url: String,
    state: Mutex<State>,
}

impl Shared {
    pub(crate) fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock is a bug in the fake; keep serving what it has.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A running fake Discord. Stops when dropped.
pub struct FakeDiscord {
    shared: Arc<Shared>,
    addr: SocketAddr,
    server: tokio::task::JoinHandle<()>,
}

impl FakeDiscord {
    /// Binds 127.0.0.1 on a free port and serves until dropped.
    pub async fn start(config: Config) -> anyhow::Result<Self> {
        Self::bind(config, SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    pub async fn bind(config: Config, addr: SocketAddr) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding {addr}"))?;
        let addr = listener.local_addr()?;
        let world = model::generate(config.seed, config.guilds, config.members_per_guild);
        let shared = Arc::new(Shared {
            ws_url: format!("ws://{addr}"),
            state: Mutex::new(State {
                world,
                sessions: HashMap::new(),
                connections: HashMap::new(),
                next_connection: 0,
                sessions_started: 0,
                last_identify: HashMap::new(),
                session_starts_remaining: config.session_start_limit,
                interactions_created: 0,
                truth: Truth::default(),
            }),
            config,
        });
        let app = gateway::routes()
            .merge(rest::routes())
            .merge(control::routes())
            .with_state(shared.clone());
        // No Nagle: a frame written while an earlier one awaits its ACK would otherwise wait for
        // the client's delayed ACK (tens of ms), which real Discord does not add.
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let server = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!("fake-discord stopped: {e}");
            }
        });
        Ok(FakeDiscord {
            shared,
            addr,
            server,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The gateway URL, as `/gateway/bot` and READY's `resume_gateway_url` give it.
    pub fn gateway_url(&self) -> &str {
        &self.shared.ws_url
    }

    /// `host:port`, the form twilight-http's proxy setting takes.
    pub fn http_host(&self) -> String {
        self.addr.to_string()
    }

    pub fn config(&self) -> &Config {
        &self.shared.config
    }

    /// A copy of the ground truth so far.
    pub fn truth(&self) -> Truth {
        self.shared.state().truth.clone()
    }

    /// Replaces the world with `guilds` guilds of `members` members (deterministic for the seed).
    pub fn load_guilds(&self, guilds: usize, members: usize) {
        load_guilds(&self.shared, guilds, members);
    }

    pub fn guilds(&self) -> Vec<Guild> {
        self.shared.state().world.clone()
    }

    /// Sequences a dispatch on the live session of `shard` and sends it. Returns its seq.
    pub fn dispatch(&self, shard: u32, event_type: &str, data: Value) -> anyhow::Result<u64> {
        dispatch(&self.shared, shard, event_type, data)
    }

    /// Sequences a dispatch on the shard that owns `guild_id`.
    pub fn dispatch_to_guild(
        &self,
        guild_id: u64,
        event_type: &str,
        data: Value,
    ) -> anyhow::Result<u64> {
        let shard = shard_of_guild(&self.shared, guild_id)?;
        dispatch(&self.shared, shard, event_type, data)
    }

    /// A user runs slash command `command` in `guild_id`: INTERACTION_CREATE on the guild's shard.
    /// Returns the interaction's id and token.
    pub fn slash_command(&self, guild_id: u64, command: &str) -> anyhow::Result<(u64, String)> {
        slash_command(&self.shared, guild_id, command)
    }

    /// A user runs slash command `command` in `guild_id`, but the interaction is not sent on the
    /// gateway: the caller delivers the returned INTERACTION_CREATE payload itself (for worker tests
    /// that publish straight to JetStream). Returns id, token and payload.
    pub fn create_interaction(
        &self,
        guild_id: u64,
        command: &str,
    ) -> anyhow::Result<(u64, String, Value)> {
        create_interaction(&self.shared, guild_id, command)
    }

    /// Sends `spec.count` events of one kind at `spec.rate` per second across the world's guilds.
    pub async fn emit(&self, spec: emit::EmitSpec) -> anyhow::Result<emit::EmitReport> {
        emit::run(&self.shared, spec).await
    }

    pub fn fault(&self, shard: u32, fault: Fault) -> anyhow::Result<()> {
        gateway::inject(&self.shared, shard, fault)
    }

    /// Shards with a live, identified connection.
    pub fn connected_shards(&self) -> Vec<u32> {
        let state = self.shared.state();
        let mut shards: Vec<u32> = state
            .connections
            .values()
            .filter_map(|c| c.shard.map(|(id, _)| id))
            .collect();
        shards.sort_unstable();
        shards
    }
}

impl Drop for FakeDiscord {
    fn drop(&mut self) {
        self.server.abort();
        for connection in self.shared.state().connections.values() {
            let _ = connection.tx.send(Outgoing::Abort);
        }
    }
}

pub(crate) fn load_guilds(shared: &Shared, guilds: usize, members: usize) {
    shared.state().world = model::generate(shared.config.seed, guilds, members);
}

/// The session a shard's events go to: the newest one identified for that shard id.
fn live_session(state: &State, shard: u32) -> Option<String> {
    state
        .sessions
        .iter()
        .filter(|(_, s)| s.shard.0 == shard)
        .max_by_key(|(id, _)| id.as_str())
        .map(|(id, _)| id.clone())
}

pub(crate) fn shard_of_guild(shared: &Shared, guild_id: u64) -> anyhow::Result<u32> {
    let state = shared.state();
    let Some(total) = state.sessions.values().map(|s| s.shard.1).max() else {
        bail!("no shard has identified yet, so no shard owns guild {guild_id}");
    };
    Ok(model::shard_for_guild(guild_id, u64::from(total)) as u32)
}

pub(crate) fn slash_command(
    shared: &Shared,
    guild_id: u64,
    command: &str,
) -> anyhow::Result<(u64, String)> {
    let shard = shard_of_guild(shared, guild_id)?;
    let (id, token, payload) = create_interaction(shared, guild_id, command)?;
    dispatch(shared, shard, "INTERACTION_CREATE", payload)?;
    Ok((id, token))
}

/// Records a new slash-command interaction (so its callback and webhooks are accepted) and returns
/// its id, token and INTERACTION_CREATE payload, without sending it anywhere.
pub(crate) fn create_interaction(
    shared: &Shared,
    guild_id: u64,
    command: &str,
) -> anyhow::Result<(u64, String, Value)> {
    Ok({
        let mut state = shared.state();
        let guild = state
            .world
            .iter()
            .find(|g| g.id == guild_id)
            .with_context(|| format!("no guild {guild_id}"))?
            .clone();
        let member = guild
            .members
            .first()
            .with_context(|| format!("guild {guild_id} has no members"))?;
        state.interactions_created += 1;
        let n = state.interactions_created;
        let created = now_ms();
        let id = model::snowflake(created, n);
        // Deterministic for the seed and count; unrelated to the id.
        let token = format!(
            "aW50ZXJhY3Rpb24{:016x}{n:08x}",
            shared.config.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ n
        );
        let payload = model::interaction_json(
            &guild,
            member,
            id,
            &token,
            shared.config.application_id,
            command,
        );
        state.truth.interactions.push(truth::InteractionRecord {
            id,
            token: token.clone(),
            guild_id,
            command: command.to_owned(),
            created_ms: created,
            responded_ms: None,
            response_type: None,
            refused_callbacks: 0,
            edits: Vec::new(),
            followups: Vec::new(),
        });
        (id, token, payload)
    })
}

pub(crate) fn dispatch(
    shared: &Shared,
    shard: u32,
    event_type: &str,
    data: Value,
) -> anyhow::Result<u64> {
    let mut state = shared.state();
    let session_id = live_session(&state, shard)
        .with_context(|| format!("shard {shard} has no session to dispatch on"))?;
    Ok(sequence(&mut state, &session_id, event_type, data))
}

/// Gives the dispatch the session's next seq, keeps it for replay, records it, and sends it if connected.
pub(crate) fn sequence(state: &mut State, session_id: &str, event_type: &str, data: Value) -> u64 {
    let session = state
        .sessions
        .get_mut(session_id)
        .expect("caller holds a live session id");
    session.seq += 1;
    let seq = session.seq;
    // Written directly: `json!` would copy `data` first.
    let event_name = serde_json::to_string(event_type).expect("strings serialise");
    let frame = format!(r#"{{"op":0,"s":{seq},"t":{event_name},"d":{data}}}"#);
    session.buffer.push((seq, frame.clone()));
    let (shard, connection) = (session.shard.0, session.connection);
    state.truth.events.push(truth::EmittedEvent {
        shard,
        session_id: session_id.to_owned(),
        seq,
        event_type: event_type.to_owned(),
        data,
        at_ms: now_ms(),
    });
    if let Some(connection) = connection.and_then(|id| state.connections.get(&id)) {
        let _ = connection.tx.send(Outgoing::Frame(frame));
    }
    seq
}
