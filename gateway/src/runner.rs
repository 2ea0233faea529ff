//! One task per shard: read Discord, turn dispatches into wire-contract events, publish them.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arrakis_contract::{GatewayEventRef, PayloadIds, Text, event_type_for};
use async_nats::Subject;
use futures::StreamExt;
use prometheus::IntCounter;
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::value::RawValue;
use twilight_gateway::queue::Queue;
use twilight_gateway::{CloseFrame, Message, Shard, ShardState};

use crate::event_id::message_id;
use crate::metrics::{Metrics, ShardMetrics};
use crate::publisher::{Prepared, Sink, encode};
use crate::sessions::ShardSession;

/// What the HTTP endpoints report per shard.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ShardStatus {
    pub ready: bool,
    pub guilds: usize,
}

pub type Statuses = Arc<Mutex<BTreeMap<u32, ShardStatus>>>;

/// Why a shard stopped for good.
#[derive(Debug, thiserror::Error)]
pub enum ShardError {
    #[error("shard {shard}: Discord closed the session with {code} ({}): {}", what(*code), fix(*code))]
    Fatal { shard: u32, code: u16 },
    /// Starting without the saved session could lose the events Discord holds for it.
    #[error("shard {shard}: could not read its saved session from NATS KV: {reason}")]
    SessionUnreadable { shard: u32, reason: String },
}

fn what(code: u16) -> &'static str {
    match code {
        4004 => "authentication failed",
        4010 => "invalid shard",
        4011 => "sharding required",
        4012 => "invalid API version",
        4013 => "invalid intents",
        4014 => "disallowed intents",
        _ => "fatal close",
    }
}

fn fix(code: u16) -> &'static str {
    match code {
        4004 => "the bot token is wrong or was reset; update the token Secret",
        4010 => "the shard id is not below the total; check TOTAL_SHARDS and the assignment",
        4011 => "too many guilds per shard; raise the total shards",
        4013 => "the intents value is not valid; use Discord's intent names",
        4014 => {
            "a privileged intent is not enabled for this application; enable it in the developer portal or remove it"
        }
        _ => "see Discord's close code documentation",
    }
}

/// The parts of a gateway frame the runner needs.
/// The parts of a gateway frame the runner needs, borrowed from the text: `d` stays raw JSON.
#[derive(Deserialize)]
struct Frame<'a> {
    op: u8,
    s: Option<u64>,
    #[serde(borrow)]
    t: Option<Text<'a>>,
    #[serde(borrow)]
    d: Option<&'a RawValue>,
}

/// What READY tells the runner.
#[derive(Deserialize)]
struct Ready<'a> {
    #[serde(borrow)]
    session_id: Cow<'a, str>,
    #[serde(borrow)]
    resume_gateway_url: Cow<'a, str>,
    guilds: Vec<IgnoredAny>,
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

/// How long a resumable close may take before the connection is dropped instead.
const CLOSE_DEADLINE: Duration = Duration::from_secs(5);

/// Runs `shard` until `stop` resolves (then closes resumably) or Discord closes it fatally.
pub async fn run_shard<Q: Queue + Send + Sync + Unpin + 'static>(
    mut shard: Shard<Q>,
    sink: Arc<Sink>,
    metrics: Arc<Metrics>,
    statuses: Statuses,
    session: Arc<ShardSession>,
    stop: impl Future<Output = ()>,
) -> Result<(), ShardError> {
    let id = shard.id();
    let label = id.number().to_string();
    let mut runner = Runner {
        number: id.number(),
        total: id.total(),
        shard_metrics: Arc::new(metrics.for_shard(&label)),
        label,
        sink,
        metrics,
        statuses,
        session,
        routes: Vec::new(),
    };
    tokio::pin!(stop);
    let mut closing = false;
    let close_deadline = tokio::time::sleep(Duration::MAX);
    tokio::pin!(close_deadline);
    loop {
        let message = tokio::select! {
            message = shard.next() => message,
            () = &mut stop, if !closing => {
                // RESUME keeps the session alive at Discord so the next owner can resume it.
                closing = true;
                shard.close(CloseFrame::RESUME);
                close_deadline.as_mut().reset(tokio::time::Instant::now() + CLOSE_DEADLINE);
                continue;
            }
            () = &mut close_deadline, if closing => {
                tracing::warn!(shard = runner.number, "no close handshake in time; dropping the connection");
                break;
            }
        };
        let Some(message) = message else { break };
        match message {
            Ok(Message::Text(text)) => runner.on_text(&mut shard, &text).await,
            Ok(Message::Close(frame)) => {
                runner.set_ready(false);
                if shard.state() == ShardState::FatallyClosed {
                    let code = frame.map(|f| f.code).unwrap_or_default();
                    return Err(ShardError::Fatal {
                        shard: runner.number,
                        code,
                    });
                }
                if closing {
                    break;
                }
            }
            Err(error) => {
                tracing::warn!(shard = runner.number, %error, "gateway receive error; twilight reconnects");
            }
        }
    }
    runner.set_ready(false);
    Ok(())
}

/// What one shard's loop needs to turn frames into published events.
struct Runner {
    number: u32,
    total: u32,
    label: String,
    shard_metrics: Arc<ShardMetrics>,
    sink: Arc<Sink>,
    metrics: Arc<Metrics>,
    statuses: Statuses,
    session: Arc<ShardSession>,
    /// Per dispatch type seen so far; a shard sees a handful of types, so a scan beats hashing.
    routes: Vec<Route>,
}

/// Where one dispatch type goes, resolved the first time the shard sees it.
struct Route {
    dispatch: String,
    event_type: Cow<'static, str>,
    subject: Subject,
    received: IntCounter,
}

impl Runner {
    fn update_status(&self, update: impl FnOnce(&mut ShardStatus)) {
        let mut statuses = self.statuses.lock().unwrap_or_else(|p| p.into_inner());
        update(statuses.entry(self.number).or_default());
    }

    fn set_ready(&self, ready: bool) {
        self.update_status(|s| s.ready = ready);
    }

    async fn on_text<Q: Queue + Send + Sync + Unpin + 'static>(
        &mut self,
        shard: &mut Shard<Q>,
        text: &str,
    ) {
        let received = Instant::now();
        let Ok(frame) = serde_json::from_str::<Frame<'_>>(text) else {
            tracing::warn!(shard = self.number, "malformed gateway frame skipped");
            return;
        };
        let (0, Some(event_type), Some(seq), Some(data)) = (frame.op, frame.t, frame.s, frame.d)
        else {
            return;
        };
        let route = self.route(&event_type);
        self.routes[route].received.inc();
        match event_type.as_ref() {
            "READY" => self.on_ready(seq, data),
            "RESUMED" => self.on_resumed(seq),
            _ => self.on_dispatch(shard, route, seq, data, received).await,
        }
    }

    /// The index of `dispatch`'s route, resolving it on first sight.
    fn route(&mut self, dispatch: &str) -> usize {
        if let Some(found) = self.routes.iter().position(|r| r.dispatch == dispatch) {
            return found;
        }
        let event_type = event_type_for(dispatch);
        self.routes.push(Route {
            dispatch: dispatch.to_owned(),
            subject: self.sink.subject(&event_type),
            received: self
                .metrics
                .events_received
                .with_label_values(&[self.label.as_str(), dispatch]),
            event_type,
        });
        self.routes.len() - 1
    }

    fn on_ready(&self, seq: u64, data: &RawValue) {
        let Ok(ready) = serde_json::from_str::<Ready<'_>>(data.get()) else {
            tracing::warn!(shard = self.number, "READY without a session; skipped");
            return;
        };
        self.session
            .started(&ready.session_id, seq, &ready.resume_gateway_url);
        let guilds = ready.guilds.len();
        self.update_status(|s| {
            *s = ShardStatus {
                ready: true,
                guilds,
            }
        });
        self.metrics
            .guilds
            .with_label_values(&[self.label.as_str()])
            .set(guilds as i64);
        self.metrics
            .sessions
            .with_label_values(&[self.label.as_str(), "identify"])
            .inc();
        tracing::info!(shard = self.number, guilds, "session ready");
    }

    fn on_resumed(&self, seq: u64) {
        self.session.acks.seen(seq);
        self.set_ready(true);
        self.metrics
            .sessions
            .with_label_values(&[self.label.as_str(), "resume"])
            .inc();
        tracing::info!(shard = self.number, "session resumed");
    }

    async fn on_dispatch<Q: Queue + Send + Sync + Unpin + 'static>(
        &self,
        shard: &mut Shard<Q>,
        route: usize,
        seq: u64,
        data: &RawValue,
        received: Instant,
    ) {
        let route = &self.routes[route];
        let ids: PayloadIds<'_> = serde_json::from_str(data.get()).unwrap_or_default();
        let session_id = shard.session().map(|s| s.id()).unwrap_or_default();
        let id = message_id(
            &route.dispatch,
            &ids,
            self.number,
            self.total,
            session_id,
            seq,
        );
        let event = GatewayEventRef::new(
            &id,
            &route.dispatch,
            &route.event_type,
            u64::from(self.number),
            unix_ms(),
            &ids,
            data,
        );
        let prepared = Prepared {
            payload: encode(&event),
            subject: route.subject.clone(),
            msg_id: id,
            shard: u64::from(self.number),
            metrics: self.shard_metrics.clone(),
        };
        let reservation = match self.sink.try_reserve() {
            Some(reservation) => reservation,
            None => {
                // The buffer is full: stop taking events from Discord rather than growing without
                // bound. A resumable close makes Discord keep the rest for us; twilight resumes from
                // this event's seq once we poll again, after there is room.
                tracing::warn!(
                    shard = self.number,
                    "publish buffer full; closing the session resumably until NATS catches up"
                );
                self.set_ready(false);
                self.metrics
                    .buffer_full_closes
                    .with_label_values(&[self.label.as_str()])
                    .inc();
                shard.close(CloseFrame::RESUME);
                self.sink.reserve().await
            }
        };
        let pending = self.session.begin(seq);
        self.sink
            .publish(reservation, prepared, received, pending)
            .await;
    }
}
