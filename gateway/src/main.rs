//! The `arrakis-gateway` command.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use arrakis_gateway::config::{Args, Assignment, ShardSource};
use arrakis_gateway::host::{Assigned, ShardHost};
use arrakis_gateway::http::{HttpState, router};
use arrakis_gateway::identify_queue::{IdentifyQueue, SharedQueue};
use arrakis_gateway::live;
use arrakis_gateway::metrics::Metrics;
use arrakis_gateway::publisher::{JetStreamSink, Sink};
use arrakis_gateway::runner::Statuses;
use arrakis_gateway::sessions::SessionStore;
use clap::Parser;
use tokio::sync::watch;
use twilight_gateway::queue::InMemoryQueue;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    arrakis_support::init_logging();
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
        Some(url) => Some(arrakis_support::connect_nats(url, args.nats_creds.as_deref()).await?),
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
    let assigned: Assigned = Arc::default();
    if let ShardSource::Static(assignment) = &settings.source {
        *assigned.write().unwrap_or_else(|p| p.into_inner()) =
            assignment.shard_ids().map(|id| id.number()).collect();
    }
    let listener = tokio::net::TcpListener::bind(("0.0.0.0", args.http_port))
        .await
        .with_context(|| format!("binding HTTP_PORT {}", args.http_port))?;
    let app = router(HttpState {
        statuses: statuses.clone(),
        metrics: metrics.clone(),
        assigned: assigned.clone(),
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
    let host = Arc::new(ShardHost {
        token: settings.token.clone(),
        intents: settings.intents,
        queue,
        gateway_url: args.gateway_url.clone(),
        sink,
        metrics,
        statuses,
        store,
    });

    match (&settings.source, nats) {
        (ShardSource::Live { member }, Some(client)) => {
            tracing::info!(
                member,
                pool = args.pool,
                "following the live shard assignment"
            );
            live::run(
                host,
                client,
                &args.pool,
                member,
                assigned,
                arrakis_support::terminated(),
            )
            .await
        }
        (ShardSource::Static(assignment), _) => {
            tracing::info!(%assignment, "starting shards");
            run_static(host, assignment).await
        }
        (ShardSource::Live { .. }, None) => unreachable!("validated: live assignment needs NATS"),
    }
}

/// Runs a fixed set of shards until SIGTERM (then closes them resumably) or a fatal close.
async fn run_static(host: Arc<ShardHost>, assignment: &Assignment) -> anyhow::Result<()> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    for id in assignment.shard_ids() {
        let host = host.clone();
        let mut stop = stop_rx.clone();
        tasks.spawn(async move {
            host.run(id, async move {
                let _ = stop.wait_for(|stop| *stop).await;
            })
            .await
        });
    }
    let fatal =
        arrakis_support::run_until_stopped(&mut tasks, &stop_tx, "closing shards resumably").await;
    match fatal {
        Some(error) => Err(error.into()),
        None => Ok(()),
    }
}
