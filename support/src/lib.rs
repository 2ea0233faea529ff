//! Process plumbing shared by `arrakis-gateway` and `arrakis-worker`, so both behave the same:
//! logs to stderr filtered by `LOG_LEVEL`, SIGTERM handling, Prometheus registration, KV buckets.

use anyhow::Context;
use async_nats::jetstream::{self, kv};
use prometheus::core::Collector;
use prometheus::{Encoder, Registry, TextEncoder};

/// Connects to NATS at `url`, with a credentials file if given. The client keeps trying in the
/// background, so a process can start before NATS does.
pub async fn connect_nats(
    url: &str,
    creds: Option<&std::path::Path>,
) -> anyhow::Result<async_nats::Client> {
    let mut options = async_nats::ConnectOptions::new().retry_on_initial_connect();
    if let Some(creds) = creds {
        options = options
            .credentials_file(creds)
            .await
            .context("reading NATS_CREDS")?;
    }
    options
        .connect(url)
        .await
        .with_context(|| format!("connecting to NATS at {url}"))
}

/// Logs to stderr, filtered by `LOG_LEVEL` (a tracing filter; `info` by default).
pub fn init_logging() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("LOG_LEVEL")
                .unwrap_or_else(|_| "info".into()),
        )
        .init();
}

/// Resolves on SIGTERM (Kubernetes stopping the pod) or Ctrl-C.
pub async fn terminated() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// Registers a freshly built metric and hands it back. Names and labels are constants, so a
/// failure here is a programming error.
pub fn registered<M: Collector + Clone + 'static>(
    registry: &Registry,
    metric: prometheus::Result<M>,
) -> M {
    let metric = metric.expect("valid metric");
    registry
        .register(Box::new(metric.clone()))
        .expect("registered once");
    metric
}

/// The registry in Prometheus' text format.
pub fn render(registry: &Registry) -> String {
    let mut out = Vec::new();
    TextEncoder::new()
        .encode(&registry.gather(), &mut out)
        .expect("text encoding");
    String::from_utf8(out).expect("prometheus text is UTF-8")
}

/// Opens `config.bucket`, creating it with `config` if it does not exist. Creating with the same
/// config is idempotent, so processes starting together do not conflict.
pub async fn open_bucket(js: &jetstream::Context, config: kv::Config) -> anyhow::Result<kv::Store> {
    if let Ok(store) = js.get_key_value(&config.bucket).await {
        return Ok(store);
    }
    let name = config.bucket.clone();
    js.create_key_value(config)
        .await
        .with_context(|| format!("creating the KV bucket {name}"))
}

/// Runs `tasks` until SIGTERM or the first of them fails, then raises `stop` and waits for all of
/// them to finish. Returns the first error, if any.
pub async fn run_until_stopped<E: Send + 'static>(
    tasks: &mut tokio::task::JoinSet<Result<(), E>>,
    stop: &tokio::sync::watch::Sender<bool>,
    on_sigterm: &str,
) -> Option<E> {
    let mut first = None;
    tokio::select! {
        () = terminated() => tracing::info!("SIGTERM: {on_sigterm}"),
        Some(Ok(Err(error))) = tasks.join_next() => first = Some(error),
    }
    let _ = stop.send(true);
    while let Some(result) = tasks.join_next().await {
        if let Ok(Err(error)) = result {
            first.get_or_insert(error);
        }
    }
    first
}
