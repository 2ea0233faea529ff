//! One shard's whole stay in this process: load its saved session, run it, close it resumably,
//! wait for its events to be acked, save where it got to.

use std::collections::BTreeSet;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use twilight_gateway::{ConfigBuilder, Intents, Session, Shard, ShardId};

use crate::identify_queue::IdentifyQueue;
use crate::metrics::Metrics;
use crate::publisher::Sink;
use crate::runner::{ShardError, ShardStatus, Statuses, run_shard};
use crate::sessions::{SessionStore, ShardSession};

/// How often resume points are saved while a shard runs.
const SAVE_INTERVAL: Duration = Duration::from_secs(1);
/// How long a stopping shard waits for JetStream to ack what it published.
pub const SETTLE_DEADLINE: Duration = Duration::from_secs(20);

/// The shards this process should run now, for `/ready`.
pub type Assigned = Arc<RwLock<BTreeSet<u32>>>;

/// What every shard of the process shares.
pub struct ShardHost {
    pub token: String,
    pub intents: Intents,
    pub queue: IdentifyQueue,
    /// Fake or proxy gateway instead of Discord's.
    pub gateway_url: Option<String>,
    pub sink: Arc<Sink>,
    pub metrics: Arc<Metrics>,
    pub statuses: Statuses,
    /// None in log-only mode: sessions then live only as long as the process.
    pub store: Option<SessionStore>,
}

impl ShardHost {
    /// Runs shard `id` until `stop` resolves or Discord closes it fatally. Resumes the saved
    /// session if there is one; on the way out, saves the session up to the last acked event.
    pub async fn run(&self, id: ShardId, stop: impl Future<Output = ()>) -> Result<(), ShardError> {
        let number = id.number();
        let saved = match &self.store {
            Some(store) => store
                .load(id)
                .await
                .map_err(|error| ShardError::SessionUnreadable {
                    shard: number,
                    reason: format!("{error:#}"),
                })?,
            None => None,
        };
        let mut builder =
            ConfigBuilder::new(self.token.clone(), self.intents).queue(self.queue.clone());
        if let Some(url) = &self.gateway_url {
            builder = builder.proxy_url(url.clone());
        }
        let session = Arc::new(match &saved {
            Some(saved) => {
                tracing::info!(
                    shard = number,
                    sequence = saved.sequence,
                    "resuming the saved session"
                );
                builder = builder
                    .session(Session::new(saved.sequence, saved.session_id.clone()))
                    .resume_url(saved.resume_url.clone());
                ShardSession::resuming(saved)
            }
            None => ShardSession::default(),
        });
        self.set_status(number, Some(ShardStatus::default()));
        let saver = self
            .store
            .as_ref()
            .map(|store| tokio::spawn(save_periodically(store.clone(), id, session.clone())));

        let shard = Shard::with_config(id, builder.build());
        let result = run_shard(
            shard,
            self.sink.clone(),
            self.metrics.clone(),
            self.statuses.clone(),
            session.clone(),
            stop,
        )
        .await;

        if let Some(saver) = saver {
            saver.abort();
            let _ = saver.await;
        }
        if !session.acks.settle(SETTLE_DEADLINE).await {
            tracing::error!(
                shard = number,
                "events still unacked after {SETTLE_DEADLINE:?}; the saved session resumes before them, so Discord replays them"
            );
        }
        // Saved last: the resume point then covers every acked event.
        if let Some(store) = &self.store {
            save(store, id, &session).await;
        }
        self.set_status(number, None);
        let label = number.to_string();
        let _ = self.metrics.guilds.remove_label_values(&[label.as_str()]);
        result
    }

    fn set_status(&self, shard: u32, status: Option<ShardStatus>) {
        let mut statuses = self.statuses.lock().unwrap_or_else(|p| p.into_inner());
        match status {
            Some(status) => statuses.insert(shard, status),
            None => statuses.remove(&shard),
        };
    }
}

/// Saves a new session at once and its resume point every second while it changes, so even a
/// SIGKILL loses at most a second of progress (Discord then replays a little more, and JetStream
/// drops the repeats).
async fn save_periodically(store: SessionStore, id: ShardId, session: Arc<ShardSession>) {
    let mut interval = tokio::time::interval(SAVE_INTERVAL);
    let mut last = None;
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            () = session.started.notified() => {}
        }
        let snapshot = session.snapshot();
        if snapshot.is_some() && snapshot != last {
            save(&store, id, &session).await;
            last = snapshot;
        }
    }
}

async fn save(store: &SessionStore, id: ShardId, session: &ShardSession) {
    if let Some(snapshot) = session.snapshot()
        && let Err(error) = store.save(id, &snapshot).await
    {
        tracing::warn!(
            shard = id.number(),
            error = format!("{error:#}"),
            "could not save the session"
        );
    }
}
