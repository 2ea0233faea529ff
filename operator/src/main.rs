//! The `arrakis-operator` command.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "arrakis-operator",
    version,
    about = "The Arrakis Kubernetes operator"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the controllers (today: NatsStream, NatsConsumer) until SIGTERM.
    Run {
        /// NATS for resources that name no servers of their own.
        #[arg(long, env = "NATS_URL", default_value = "nats://nats:4222")]
        nats_url: String,
        /// This replica's name in Events (the downward API's metadata.name).
        #[arg(long, env = "POD_NAME")]
        pod_name: Option<String>,
        /// `/healthz`, `/readyz` and `/metrics`.
        #[arg(long, env = "HTTP_PORT", default_value_t = 8080)]
        http_port: u16,
    },
    /// Print the CustomResourceDefinitions as YAML (all in one stream), or write one file each.
    Crd {
        /// Write `<plural>.arrakis.dev.yaml` files into this directory instead of printing.
        #[arg(long, value_name = "DIR")]
        out_dir: Option<PathBuf>,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Crd { out_dir } => print_crds(out_dir),
        Command::Run {
            nats_url,
            pod_name,
            http_port,
        } => run(&nats_url, pod_name, http_port).await,
    }
}

async fn run(nats_url: &str, pod_name: Option<String>, http_port: u16) -> anyhow::Result<()> {
    arrakis_support::init_logging();
    let client = kube::Client::try_default()
        .await
        .context("connecting to the Kubernetes API")?;
    let ctx = std::sync::Arc::new(arrakis_operator::context::Context::new(
        client.clone(),
        nats_url,
        pod_name,
    ));
    let ready = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let listener = tokio::net::TcpListener::bind(("0.0.0.0", http_port))
        .await
        .with_context(|| format!("binding HTTP_PORT {http_port}"))?;
    let app = endpoints(ctx.metrics.clone(), ready.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    tokio::select! {
        () = wait_for_crds(&client) => {}
        () = arrakis_support::terminated() => return Ok(()),
    }
    ready.store(true, std::sync::atomic::Ordering::Relaxed);
    tracing::info!(nats = nats_url, "reconciling NatsStreams and NatsConsumers");
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let streams = arrakis_operator::jetstream_controller::run(
        kube::Api::<arrakis_operator::api::NatsStream>::all(client.clone()),
        ctx.clone(),
        stopped(stop_rx.clone()),
    );
    let consumers = arrakis_operator::jetstream_controller::run(
        kube::Api::<arrakis_operator::api::NatsConsumer>::all(client),
        ctx,
        stopped(stop_rx),
    );
    let signal = async {
        arrakis_support::terminated().await;
        let _ = stop_tx.send(true);
    };
    tokio::join!(streams, consumers, signal);
    Ok(())
}

fn print_crds(out_dir: Option<PathBuf>) -> anyhow::Result<()> {
    let crds = arrakis_operator::crd::all();
    match out_dir {
        Some(dir) => {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            for crd in &crds {
                let path = dir.join(arrakis_operator::crd::file_name(crd));
                std::fs::write(&path, arrakis_operator::crd::to_yaml(crd)?)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
        }
        None => {
            let mut out = std::io::stdout().lock();
            for crd in &crds {
                writeln!(out, "---\n{}", arrakis_operator::crd::to_yaml(crd)?)?;
            }
        }
    }
    Ok(())
}

/// `/healthz` (the process answers), `/readyz` (the CRDs are there and the controllers run) and
/// `/metrics`.
fn endpoints(
    metrics: std::sync::Arc<arrakis_operator::metrics::Metrics>,
    ready: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> axum::Router {
    use axum::http::StatusCode;
    use axum::routing::get;
    axum::Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(move || async move {
                if ready.load(std::sync::atomic::Ordering::Relaxed) {
                    (StatusCode::OK, "ready")
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "waiting for the CRDs")
                }
            }),
        )
        .route("/metrics", get(move || async move { metrics.render() }))
}

/// Waits until the API server serves every Arrakis CRD (Established), saying what is missing.
async fn wait_for_crds(client: &kube::Client) {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let api: kube::Api<CustomResourceDefinition> = kube::Api::all(client.clone());
    let names: Vec<String> = arrakis_operator::crd::all()
        .iter()
        .filter_map(|crd| crd.metadata.name.clone())
        .collect();
    let mut last_report = None::<std::time::Instant>;
    loop {
        let mut missing = Vec::new();
        for name in &names {
            let established = api.get_opt(name).await.ok().flatten().is_some_and(|crd| {
                crd.status
                    .and_then(|s| s.conditions)
                    .unwrap_or_default()
                    .iter()
                    .any(|c| c.type_ == "Established" && c.status == "True")
            });
            if !established {
                missing.push(name.as_str());
            }
        }
        if missing.is_empty() {
            return;
        }
        if last_report.is_none_or(|at| at.elapsed() > std::time::Duration::from_secs(10)) {
            tracing::warn!(
                ?missing,
                "waiting for the CRDs: install them with `arrakis-operator crd | kubectl apply -f -`"
            );
            last_report = Some(std::time::Instant::now());
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}
