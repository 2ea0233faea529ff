//! The `arrakis-worker` command: consume (the default), or inspect dead letters and job status.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use arrakis_worker::config::{Args, Command, DeadLetterAction, HandlerConfig};
use arrakis_worker::consumer::{self, Worker};
use arrakis_worker::dead_letters::{self, DeadLetters};
use arrakis_worker::discord::Discord;
use arrakis_worker::handlers::Registry;
use arrakis_worker::http::{HttpState, router};
use arrakis_worker::jobs::Jobs;
use arrakis_worker::metrics::Metrics;
use arrakis_worker::state::State;
use async_nats::jetstream;
use clap::Parser;
use tokio::sync::{Semaphore, watch};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    arrakis_support::init_logging();
    let args = Args::parse();
    let result = match args.command.clone() {
        None | Some(Command::Run) => run(args).await,
        Some(Command::DeadLetters { action }) => dead_letter_command(args, action).await,
        Some(Command::Job { stream, sequence }) => job_command(args, &stream, sequence).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("arrakis-worker: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn connect(args: &Args) -> anyhow::Result<async_nats::Client> {
    let url = args
        .nats_url
        .as_deref()
        .ok_or(arrakis_worker::config::ConfigError::NoNats)?;
    arrakis_support::connect_nats(url, args.nats_creds.as_deref()).await
}

async fn run(args: Args) -> anyhow::Result<()> {
    let consumers = args.consumer_refs()?;
    if args.concurrency == 0 {
        return Err(arrakis_worker::config::ConfigError::NoConcurrency.into());
    }
    let handler_config = match &args.handlers_config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading HANDLERS_CONFIG {}", path.display()))?;
            HandlerConfig::parse(&text).with_context(|| format!("in {}", path.display()))?
        }
        None => HandlerConfig::builtins_only(),
    };
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = connect(&args).await?;
    let metrics = Arc::new(Metrics::new());
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let mut bound_tx = Vec::new();
    let mut bound = Vec::new();
    for _ in &consumers {
        let (tx, rx) = watch::channel(false);
        bound_tx.push(tx);
        bound.push(rx);
    }
    // Served from the start, so probes see the worker alive (and not ready) while NATS is away.
    let jobs_slot = Arc::new(std::sync::OnceLock::new());
    let listener = tokio::net::TcpListener::bind(("0.0.0.0", args.http_port))
        .await
        .with_context(|| format!("binding HTTP_PORT {}", args.http_port))?;
    let app = router(HttpState {
        metrics: metrics.clone(),
        nats: client.clone(),
        bound,
        jobs: jobs_slot.clone(),
    });
    tokio::spawn(async move { axum::serve(listener, app).await });

    let js = jetstream::new(client.clone());
    let opened = tokio::select! {
        opened = open_state(&js, &args.dead_letter_stream) => Some(opened),
        () = arrakis_support::terminated() => None,
    };
    let Some((jobs, dead_letters, state)) = opened else {
        return Ok(());
    };
    let _ = jobs_slot.set(jobs.clone());
    let worker = Arc::new(Worker {
        state,
        jobs: jobs.clone(),
        dead_letters: dead_letters.clone(),
        registry: Registry::new(&handler_config),
        discord: Discord::new(args.discord_token.clone(), args.discord_api_host.clone()),
        metrics,
        slots: Arc::new(Semaphore::new(args.concurrency)),
        drain: Duration::from_secs(args.drain_seconds),
        js,
    });
    let advisories = tokio::spawn(dead_letters::follow_advisories(dead_letters, jobs));

    let mut tasks = tokio::task::JoinSet::new();
    for (reference, bound_tx) in consumers.into_iter().zip(bound_tx) {
        tasks.spawn(consumer::run(
            worker.clone(),
            reference,
            shutdown_rx.clone(),
            bound_tx,
        ));
    }

    let failure = arrakis_support::run_until_stopped(&mut tasks, &shutdown_tx, "draining").await;
    advisories.abort();
    let _ = client.flush().await;
    match failure {
        Some(error) => Err(error),
        None => Ok(()),
    }
}

/// Opens the worker's buckets and streams, trying again every second while NATS cannot be reached.
async fn open_state(
    js: &jetstream::Context,
    dead_letter_stream: &str,
) -> (Jobs, DeadLetters, State) {
    loop {
        let opened = async {
            Ok::<_, anyhow::Error>((
                Jobs::open(js).await?,
                DeadLetters::open(js, dead_letter_stream).await?,
                State::open(js).await?,
            ))
        };
        match opened.await {
            Ok(opened) => return opened,
            Err(error) => {
                tracing::warn!(
                    error = format!("{error:#}"),
                    "NATS is not usable yet; trying again in 1 s"
                );
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

async fn dead_letter_command(args: Args, action: DeadLetterAction) -> anyhow::Result<()> {
    let client = connect(&args).await?;
    let js = jetstream::new(client);
    let dead_letters = DeadLetters::open(&js, &args.dead_letter_stream).await?;
    match action {
        DeadLetterAction::List => {
            for listed in dead_letters.list().await? {
                println!("{}", serde_json::to_string(&listed)?);
            }
        }
        DeadLetterAction::Show { sequence } => {
            let listed = dead_letters.show(sequence, true).await?;
            println!("{}", serde_json::to_string_pretty(&listed)?);
        }
        DeadLetterAction::Replay { sequence } => {
            let (subject, stored) = dead_letters.replay(sequence).await?;
            println!("replayed dead letter {sequence} to {subject} (stored as sequence {stored})");
        }
    }
    Ok(())
}

async fn job_command(args: Args, stream: &str, sequence: u64) -> anyhow::Result<()> {
    let client = connect(&args).await?;
    let jobs = Jobs::open(&jetstream::new(client)).await?;
    let record = jobs.status(stream, sequence).await?;
    println!("{}", serde_json::to_string_pretty(&record)?);
    Ok(())
}
