//! Gateway v10: Hello, heartbeats, Identify, READY and GUILD_CREATE, Resume with replay,
//! Reconnect and Invalid Session, close codes and limits, as Discord documents them.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State as AxumState};
use axum::response::Response;
use axum::routing::get;
use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::{
    ALL_INTENTS, Connection, Outgoing, PRIVILEGED_INTENTS, Session, Shared, State, model, now_ms,
    sequence, truth,
};

/// Discord's gateway close codes.
pub mod close_code {
    pub const UNKNOWN_ERROR: u16 = 4000;
    pub const UNKNOWN_OPCODE: u16 = 4001;
    pub const DECODE_ERROR: u16 = 4002;
    pub const NOT_AUTHENTICATED: u16 = 4003;
    pub const AUTHENTICATION_FAILED: u16 = 4004;
    pub const ALREADY_AUTHENTICATED: u16 = 4005;
    pub const INVALID_SEQ: u16 = 4007;
    pub const RATE_LIMITED: u16 = 4008;
    pub const SESSION_TIMED_OUT: u16 = 4009;
    pub const INVALID_SHARD: u16 = 4010;
    pub const SHARDING_REQUIRED: u16 = 4011;
    pub const INVALID_API_VERSION: u16 = 4012;
    pub const INVALID_INTENTS: u16 = 4013;
    pub const DISALLOWED_INTENTS: u16 = 4014;
}
use close_code::*;

/// Client payloads allowed per connection per window.
const COMMANDS_PER_WINDOW: usize = 120;
const COMMAND_WINDOW: Duration = Duration::from_secs(60);
/// Discord refuses more guilds than this on one shard.
const MAX_GUILDS_PER_SHARD: usize = 2500;

/// Faults the control API can inject into a shard's connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Fault {
    /// Drop the TCP connection without a close frame.
    Drop,
    /// Send op 7 Reconnect.
    Reconnect,
    /// Send op 9 Invalid Session; `resumable: false` also ends the session.
    InvalidSession { resumable: bool },
    /// Stop answering heartbeats, so the client must detect a zombie connection.
    Zombie,
    /// Send a text frame that is not a valid gateway payload.
    Malformed,
}

pub(crate) fn routes() -> Router<Arc<Shared>> {
    Router::new().route("/", get(upgrade))
}

#[derive(Deserialize)]
struct ConnectParams {
    v: Option<u8>,
    encoding: Option<String>,
}

async fn upgrade(
    ws: WebSocketUpgrade,
    Query(params): Query<ConnectParams>,
    AxumState(shared): AxumState<Arc<Shared>>,
) -> Response {
    ws.on_upgrade(move |socket| serve(socket, params, shared))
}

fn frame(op: u8, d: Value) -> String {
    json!({"op": op, "d": d, "s": null, "t": null}).to_string()
}

async fn serve(socket: WebSocket, params: ConnectParams, shared: Arc<Shared>) {
    let (mut sink, mut stream) = socket.split();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let id = {
        let mut state = shared.state();
        state.next_connection += 1;
        let id = state.next_connection;
        state.connections.insert(
            id,
            Connection {
                shard: None,
                session_id: None,
                tx: tx.clone(),
                zombie: false,
            },
        );
        id
    };

    // The writer owns the sink: frames go out in the order they were queued. Frames queued
    // together are written together and flushed once, as a busy server's socket would.
    let writer = tokio::spawn(async move {
        let mut next = rx.recv().await;
        while let Some(out) = next.take() {
            match out {
                Outgoing::Frame(text) => {
                    if sink.feed(Message::Text(text.into())).await.is_err() {
                        break;
                    }
                    match rx.try_recv() {
                        Ok(queued) => next = Some(queued),
                        Err(_) => {
                            if sink.flush().await.is_err() {
                                break;
                            }
                            next = rx.recv().await;
                        }
                    }
                    continue;
                }
                Outgoing::Close(code, reason) => {
                    let close = CloseFrame {
                        code,
                        reason: reason.into(),
                    };
                    let _ = sink.send(Message::Close(Some(close))).await;
                    break;
                }
                Outgoing::Finish => {
                    let _ = sink.close().await;
                    break;
                }
                Outgoing::Abort => break,
            }
        }
    });

    let mut conn = ConnectionState {
        id,
        shared: shared.clone(),
        tx,
        recent: VecDeque::new(),
    };
    if params.v != Some(10) {
        conn.close(INVALID_API_VERSION, "Invalid API version");
    } else if params.encoding.as_deref().is_some_and(|e| e != "json") {
        conn.close(DECODE_ERROR, "Only JSON encoding is supported");
    } else {
        let interval = shared.config.heartbeat_interval.as_millis() as u64;
        conn.send(frame(10, json!({"heartbeat_interval": interval})));
        while let Some(Ok(message)) = stream.next().await {
            let text = match message {
                Message::Text(text) => text.to_string(),
                Message::Binary(_) => {
                    conn.close(DECODE_ERROR, "Binary payloads need etf encoding");
                    break;
                }
                Message::Close(_) => {
                    // The WebSocket layer queued the echo of the client's close; flush it so the
                    // client sees the handshake complete (twilight waits for it before reconnecting).
                    let _ = conn.tx.send(Outgoing::Finish);
                    break;
                }
                _ => continue,
            };
            if !conn.handle(&text) {
                break;
            }
        }
    }
    conn.detach();
    // Dropping the last sender ends the writer, which drops the socket.
    drop(conn);
    let _ = writer.await;
}

/// Binds connection `id` to `shard`'s session, recording in the truth any other live connection
/// that already runs the same shard: Discord would happily deliver to both, which is what a
/// bot's shard ownership must never let happen.
fn claim(state: &mut State, id: u64, shard: (u32, u32), session_id: &str) {
    let others: Vec<u64> = state
        .connections
        .iter()
        .filter(|(other, c)| **other != id && c.shard == Some(shard))
        .map(|(other, _)| *other)
        .collect();
    if !others.is_empty() {
        state.truth.overlaps.push(truth::OverlapRecord {
            shard: shard.0,
            total: shard.1,
            connections: others.len() as u32 + 1,
            at_ms: now_ms(),
        });
    }
    if let Some(connection) = state.connections.get_mut(&id) {
        connection.shard = Some(shard);
        connection.session_id = Some(session_id.to_owned());
    }
}

struct ConnectionState {
    id: u64,
    shared: Arc<Shared>,
    tx: mpsc::UnboundedSender<Outgoing>,
    recent: VecDeque<tokio::time::Instant>,
}

#[derive(Deserialize)]
struct Payload {
    op: u8,
    #[serde(default)]
    d: Value,
}

#[derive(Deserialize)]
struct Identify {
    token: String,
    intents: u64,
    #[serde(default)]
    shard: Option<[u32; 2]>,
    #[serde(default)]
    large_threshold: Option<usize>,
}

#[derive(Deserialize)]
struct Resume {
    token: String,
    session_id: String,
    seq: u64,
}

impl ConnectionState {
    fn send(&self, text: String) {
        let _ = self.tx.send(Outgoing::Frame(text));
    }

    fn close(&self, code: u16, reason: &'static str) {
        let shard = self
            .shared
            .state()
            .connections
            .get(&self.id)
            .and_then(|c| c.shard.map(|s| s.0));
        self.shared.state().truth.closes.push(truth::CloseRecord {
            shard,
            code,
            reason: reason.into(),
            at_ms: now_ms(),
        });
        let _ = self.tx.send(Outgoing::Close(code, reason));
    }

    /// Forgets this connection; its session stays resumable.
    fn detach(&self) {
        let mut state = self.shared.state();
        if let Some(connection) = state.connections.remove(&self.id)
            && let Some(session) = connection
                .session_id
                .and_then(|id| state.sessions.get_mut(&id))
            && session.connection == Some(self.id)
        {
            session.connection = None;
        }
    }

    /// Handles one client payload; false when the connection must end.
    fn handle(&mut self, text: &str) -> bool {
        let now = tokio::time::Instant::now();
        while self
            .recent
            .front()
            .is_some_and(|t| now.duration_since(*t) > COMMAND_WINDOW)
        {
            self.recent.pop_front();
        }
        self.recent.push_back(now);
        if self.recent.len() > COMMANDS_PER_WINDOW {
            self.close(RATE_LIMITED, "You are being rate limited.");
            return false;
        }
        let Ok(payload) = serde_json::from_str::<Payload>(text) else {
            self.close(DECODE_ERROR, "Error while decoding payload.");
            return false;
        };
        let identified = self
            .shared
            .state()
            .connections
            .get(&self.id)
            .is_some_and(|c| c.shard.is_some());
        match payload.op {
            1 => {
                let zombie = self
                    .shared
                    .state()
                    .connections
                    .get(&self.id)
                    .is_some_and(|c| c.zombie);
                if !zombie {
                    self.send(frame(11, Value::Null));
                }
                true
            }
            2 if identified => {
                self.close(
                    ALREADY_AUTHENTICATED,
                    "You sent more than one identify payload.",
                );
                false
            }
            2 => match serde_json::from_value::<Identify>(payload.d) {
                Ok(identify) => self.identify(identify),
                Err(_) => {
                    self.close(DECODE_ERROR, "Error while decoding payload.");
                    false
                }
            },
            6 => match serde_json::from_value::<Resume>(payload.d) {
                Ok(resume) => self.resume(resume),
                Err(_) => {
                    self.close(DECODE_ERROR, "Error while decoding payload.");
                    false
                }
            },
            // Presence, voice state, request guild members: accepted, not modelled.
            3 | 4 | 8 if identified => true,
            3 | 4 | 8 => {
                self.close(
                    NOT_AUTHENTICATED,
                    "You sent a payload prior to identifying.",
                );
                false
            }
            _ => {
                self.close(UNKNOWN_OPCODE, "You sent an invalid Gateway opcode.");
                false
            }
        }
    }

    fn identify(&mut self, identify: Identify) -> bool {
        let config = &self.shared.config;
        let token = identify
            .token
            .strip_prefix("Bot ")
            .unwrap_or(&identify.token);
        if token != config.token {
            self.close(AUTHENTICATION_FAILED, "Authentication failed.");
            return false;
        }
        let [shard, total] = identify.shard.unwrap_or([0, 1]);
        if total == 0 || shard >= total {
            self.close(INVALID_SHARD, "Invalid shard.");
            return false;
        }
        if identify.intents & !ALL_INTENTS != 0 {
            self.close(INVALID_INTENTS, "Invalid intent(s).");
            return false;
        }
        if identify.intents & PRIVILEGED_INTENTS & !config.allowed_privileged_intents != 0 {
            self.close(DISALLOWED_INTENTS, "Disallowed intent(s).");
            return false;
        }
        let bucket = shard % config.max_concurrency.max(1);
        let mut state = self.shared.state();
        let guilds: Vec<model::Guild> = state
            .world
            .iter()
            .filter(|g| model::shard_for_guild(g.id, u64::from(total)) == u64::from(shard))
            .cloned()
            .collect();
        if guilds.len() > MAX_GUILDS_PER_SHARD {
            drop(state);
            self.close(SHARDING_REQUIRED, "Sharding is required.");
            return false;
        }
        let now = tokio::time::Instant::now();
        let paced = !config.identify_interval.is_zero()
            && state
                .last_identify
                .get(&bucket)
                .is_some_and(|last| now.duration_since(*last) < config.identify_interval);
        let accepted = !paced && state.session_starts_remaining > 0;
        state.truth.identifies.push(truth::IdentifyRecord {
            shard,
            total,
            bucket,
            at_ms: now_ms(),
            accepted,
        });
        if !accepted {
            // Discord answers an identify over the limits with a non-resumable Invalid Session.
            drop(state);
            self.send(frame(9, json!(false)));
            return true;
        }
        state.last_identify.insert(bucket, now);
        state.session_starts_remaining -= 1;
        state.sessions_started += 1;
        let session_id = format!(
            "{:08x}{:024x}",
            state.sessions_started,
            config.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15)
        );
        let large_threshold = identify
            .large_threshold
            .unwrap_or(config.default_large_threshold);
        state.sessions.insert(
            session_id.clone(),
            Session {
                shard: (shard, total),
                seq: 0,
                buffer: Vec::new(),
                connection: Some(self.id),
            },
        );
        claim(&mut state, self.id, (shard, total), &session_id);
        let ready = json!({
            "v": 10,
            "user": {
                "id": config.bot_user_id.to_string(), "username": "Arrakis", "discriminator": "0",
                "global_name": null, "avatar": null, "bot": true, "mfa_enabled": true, "verified": true,
                "flags": 0,
            },
            "guilds": guilds.iter().map(|g| json!({"id": g.id.to_string(), "unavailable": true})).collect::<Vec<_>>(),
            "session_id": session_id,
            "resume_gateway_url": self.shared.ws_url,
            "shard": [shard, total],
            "application": {"id": config.application_id.to_string(), "flags": 0},
        });
        sequence(&mut state, &session_id, "READY", ready);
        let joined = now_ms();
        for guild in &guilds {
            sequence(
                &mut state,
                &session_id,
                "GUILD_CREATE",
                model::guild_create_json(guild, large_threshold, joined),
            );
        }
        true
    }

    fn resume(&mut self, resume: Resume) -> bool {
        let token = resume.token.strip_prefix("Bot ").unwrap_or(&resume.token);
        if token != self.shared.config.token {
            self.close(AUTHENTICATION_FAILED, "Authentication failed.");
            return false;
        }
        let mut state = self.shared.state();
        let Some(session) = state.sessions.get_mut(&resume.session_id) else {
            drop(state);
            self.send(frame(9, json!(false)));
            return true;
        };
        if resume.seq > session.seq {
            drop(state);
            self.close(INVALID_SEQ, "Invalid seq.");
            return false;
        }
        // A resume takes the session over from any connection still holding it.
        let previous = session.connection.replace(self.id);
        let shard = session.shard;
        let replay: Vec<String> = session
            .buffer
            .iter()
            .filter(|(seq, _)| *seq > resume.seq)
            .map(|(_, f)| f.clone())
            .collect();
        if let Some(old) = previous
            .filter(|old| *old != self.id)
            .and_then(|old| state.connections.get(&old))
        {
            let _ = old.tx.send(Outgoing::Close(
                SESSION_TIMED_OUT,
                "Session resumed elsewhere.",
            ));
        }
        claim(&mut state, self.id, shard, &resume.session_id);
        state.truth.resumes.push(truth::ResumeRecord {
            shard: shard.0,
            session_id: resume.session_id.clone(),
            from_seq: resume.seq,
            replayed: replay.len() as u64,
            at_ms: now_ms(),
        });
        for frame in replay {
            self.send(frame);
        }
        sequence(&mut state, &resume.session_id, "RESUMED", json!({}));
        true
    }
}

/// Injects `fault` into the live connection of `shard`.
pub(crate) fn inject(shared: &Shared, shard: u32, fault: Fault) -> anyhow::Result<()> {
    let mut state = shared.state();
    let connection = state
        .connections
        .values_mut()
        .find(|c| c.shard.is_some_and(|s| s.0 == shard))
        .with_context(|| format!("shard {shard} has no live connection"))?;
    match fault {
        Fault::Drop => {
            let _ = connection.tx.send(Outgoing::Abort);
        }
        Fault::Reconnect => {
            let _ = connection.tx.send(Outgoing::Frame(frame(7, Value::Null)));
        }
        Fault::Zombie => connection.zombie = true,
        Fault::Malformed => {
            let _ = connection
                .tx
                .send(Outgoing::Frame(r#"{"op":0,"s":"#.to_owned()));
        }
        Fault::InvalidSession { resumable } => {
            let _ = connection
                .tx
                .send(Outgoing::Frame(frame(9, json!(resumable))));
            if !resumable {
                let session_id = connection.session_id.take();
                connection.shard = None;
                if let Some(session_id) = session_id {
                    state.sessions.remove(&session_id);
                }
            }
        }
    }
    Ok(())
}
