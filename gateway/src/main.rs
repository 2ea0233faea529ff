//! The `arrakis-gateway` command.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use arrakis_gateway::config::Args;
use arrakis_gateway::http::{HttpState, router};
use arrakis_gateway::identify_queue::{IdentifyQueue, SharedQueue};
use arrakis_gateway::metrics::Metrics;
use arrakis_gateway::publisher::{JetStreamSink, Sink};
use arrakis_gateway::runner::{Statuses, run_shard};
use arrakis_gateway::sessions::{SessionStore, ShardSession};
use clap::Parser;
use tokio::sync::watch;
use twilight_gateway::queue::InMemoryQueue;
use twilight_gateway::{ConfigBuilder, Session, Shard, ShardId};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// How often resume points are saved.
const SAVE_INTERVAL: Duration = Duration::from_secs(1);

/// How long SIGTERM waits for published events to be acked.
const DRAIN_DEADLINE: Duration = Duration::from_secs(20);

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("LOG_LEVEL")
                .unwrap_or_else(|_| "info".into()),
        )
        .init();
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("arrakis-gateway: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let settings = args.settings()?;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let metrics = Arc::new(Metrics::new());

    let nats = match &args.nats_url {
        Some(url) => {
            let mut options = async_nats::ConnectOptions::new().retry_on_initial_connect();
            if let Some(creds) = &args.nats_creds {
                options = options
                    .credentials_file(creds)
                    .await
                    .context("reading NATS_CREDS")?;
            }
            Some(
                options
                    .connect(url.as_str())
                    .await
                    .with_context(|| format!("connecting to NATS at {url}"))?,
            )
        }
        None => {
            tracing::warn!("NATS_URL is not set: log-only mode, events are not published");
            None
        }
    };
    let sink = Arc::new(match &nats {
        Some(client) => Sink::JetStream(Box::new(JetStreamSink::new(
            client.clone(),
            args.max_inflight,
            args.subject_prefix.clone(),
            metrics.clone(),
        ))),
        None => Sink::LogOnly,
    });

    let statuses = Statuses::default();
    let assigned = settings.assignment.shard_ids().count();
    let listener = tokio::net::TcpListener::bind(("0.0.0.0", args.http_port))
        .await
        .with_context(|| format!("binding HTTP_PORT {}", args.http_port))?;
    let app = router(HttpState {
        statuses: statuses.clone(),
        metrics: metrics.clone(),
        assigned,
        nats: nats.clone(),
    });
    tokio::spawn(async move { axum::serve(listener, app).await });

    // Discord's identify limit is per bot, so with NATS every process shares one queue.
    let queue = match &nats {
        Some(client) => IdentifyQueue::Shared(Box::new(
            SharedQueue::open(
                client.clone(),
                &args.pool,
                settings.max_concurrency,
                settings.identify_interval,
            )
            .await?,
        )),
        None => IdentifyQueue::Local(InMemoryQueue::new(
            settings.max_concurrency,
            1000,
            Duration::from_secs(24 * 3600),
            1000,
        )),
    };
    let store = match &nats {
        Some(client) => Some(SessionStore::open(client.clone(), &args.pool).await?),
        None => None,
    };
    tracing::info!(assignment = %settings.assignment, "starting shards");

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    let mut sessions = Vec::new();
    for id in settings.assignment.shard_ids() {
        let mut builder =
            ConfigBuilder::new(settings.token.clone(), settings.intents).queue(queue.clone());
        if let Some(url) = &args.gateway_url {
            builder = builder.proxy_url(url.clone());
        }
        let saved = match &store {
            Some(store) => store.load(id).await?,
            None => None,
        };
        let session = Arc::new(match &saved {
            Some(saved) => {
                tracing::info!(
                    shard = id.number(),
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
        sessions.push((id, session.clone()));
        let shard = Shard::with_config(id, builder.build());
        tasks.spawn(run_shard(
            shard,
            sink.clone(),
            metrics.clone(),
            statuses.clone(),
            session,
            shutdown_rx.clone(),
        ));
    }
    let saver = store.map(|store| {
        let store = Arc::new(store);
        let sessions = Arc::new(sessions);
        let handle = tokio::spawn(save_periodically(
            store.clone(),
            sessions.clone(),
            shutdown_rx.clone(),
        ));
        (store, sessions, handle)
    });

    let mut fatal = None;
    tokio::select! {
        _ = terminated() => tracing::info!("SIGTERM: closing shards resumably"),
        Some(Ok(Err(error))) = tasks.join_next() => fatal = Some(error),
    }
    let _ = shutdown_tx.send(true);
    while let Some(result) = tasks.join_next().await {
        if let Ok(Err(error)) = result {
            fatal.get_or_insert(error);
        }
    }
    if let Sink::JetStream(sink) = sink.as_ref() {
        let left = sink.drain(DRAIN_DEADLINE).await;
        if left > 0 {
            tracing::error!(
                left,
                "events still unacked at exit; Discord will replay them on resume"
            );
        }
    }
    // Saved last, after the drain: the resume point then covers every acked event.
    if let Some((store, sessions, handle)) = saver {
        let _ = handle.await;
        save_all(&store, &sessions).await;
    }
    match fatal {
        Some(error) => Err(error.into()),
        None => Ok(()),
    }
}

type ShardSessions = Vec<(ShardId, Arc<ShardSession>)>;

/// Saves each shard's resume point every second while it changes, so even a SIGKILL loses at most
/// a second of progress (Discord then replays a little more, and JetStream drops the repeats).
async fn save_periodically(
    store: Arc<SessionStore>,
    sessions: Arc<ShardSessions>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut interval = tokio::time::interval(SAVE_INTERVAL);
    loop {
        tokio::select! {
            _ = interval.tick() => save_all(&store, &sessions).await,
            _ = shutdown.changed() => return,
        }
    }
}

async fn save_all(store: &SessionStore, sessions: &ShardSessions) {
    for (id, session) in sessions {
        if let Some(snapshot) = session.snapshot()
            && let Err(error) = store.save(*id, &snapshot).await
        {
            tracing::warn!(
                shard = id.number(),
                error = format!("{error:#}"),
                "could not save the session"
            );
        }
    }
}

async fn terminated() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
