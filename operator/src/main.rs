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
        Command::Run { nats_url, pod_name } => run(&nats_url, pod_name).await,
    }
}

async fn run(nats_url: &str, pod_name: Option<String>) -> anyhow::Result<()> {
    arrakis_support::init_logging();
    let client = kube::Client::try_default()
        .await
        .context("connecting to the Kubernetes API")?;
    let ctx = std::sync::Arc::new(arrakis_operator::context::Context::new(
        client.clone(),
        nats_url,
        pod_name,
    ));
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
