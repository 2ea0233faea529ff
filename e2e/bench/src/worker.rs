//! `bench-worker`: messages per second through a trivial handler with explicit acks, from a
//! pre-filled stream, for arrakis-worker and for workers written the usual way on the seed's
//! stack (nats.js: `consume()` + `ack()`) and on nats-py (pull subscription, `fetch`, `ack`), with
//! `nats bench js consume` as the limit.
//!
//! Each run starts a nats-server, fills one stream with N gateway events (member joins, ~400 B)
//! and gives every contender its own durable consumer on that stream, one after the other. A
//! contender's clock starts at its first ack (so process start-up is left out) and stops when its
//! consumer's ack floor reaches N. Its CPU time over the whole run is divided by N. Figures are
//! ratios to nats.js in the same run; the median of the runs is reported.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use arrakis_bench::{cpu_seconds, median};
use arrakis_contract::GatewayEvent;
use arrakis_e2e::nats::NatsServer;
use async_nats::jetstream::{self, consumer, stream};
use clap::Parser;
use serde_json::json;
use tokio::process::Command;

#[derive(Parser)]
struct Args {
    /// Runs; the median is reported.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Messages in the stream, consumed by each contender.
    #[arg(long, default_value_t = 100_000)]
    messages: u64,
    #[arg(long, env = "ARRAKIS_WORKER_BIN")]
    worker: PathBuf,
    /// natscli, for `nats bench js consume`.
    #[arg(long, env = "ARRAKIS_NATS_CLI")]
    nats_cli: PathBuf,
    /// The nats.js contender (bench-deps.sh installs it).
    #[arg(long, env = "BENCH_NODE_SCRIPT")]
    node_script: PathBuf,
    /// The Python with nats-py (bench-deps.sh installs it).
    #[arg(long, env = "BENCH_PYTHON")]
    python: PathBuf,
}

const STREAM: &str = "BENCH";
const DEADLINE: Duration = Duration::from_secs(600);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Contender {
    Arrakis,
    NatsJs,
    NatsPy,
    NatsBench,
}

impl Contender {
    const ALL: [Contender; 4] = [
        Contender::Arrakis,
        Contender::NatsJs,
        Contender::NatsPy,
        Contender::NatsBench,
    ];

    fn name(self) -> &'static str {
        match self {
            Contender::Arrakis => "arrakis-worker",
            Contender::NatsJs => "nats.js",
            Contender::NatsPy => "nats-py",
            Contender::NatsBench => "nats bench",
        }
    }

    fn consumer(self) -> &'static str {
        match self {
            Contender::Arrakis => "c-arrakis",
            Contender::NatsJs => "c-natsjs",
            Contender::NatsPy => "c-natspy",
            Contender::NatsBench => "c-natsbench",
        }
    }
}

struct Measured {
    per_s: f64,
    cpu_us: f64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let routes = tempfile::NamedTempFile::new()?;
    std::fs::write(routes.path(), "routes:\n  member.join: ack\n")?;
    let mut by_contender: Vec<Vec<Measured>> = Contender::ALL.iter().map(|_| Vec::new()).collect();
    for n in 1..=args.runs {
        let nats = NatsServer::start().await?;
        let js = jetstream::new(nats.connect().await?);
        fill(&js, args.messages).await?;
        let mut line = format!("run {n}:");
        for (i, contender) in Contender::ALL.into_iter().enumerate() {
            let measured = measure(&args, &nats, &js, contender, routes.path())
                .await
                .with_context(|| format!("run {n}, {}", contender.name()))?;
            line.push_str(&format!(
                " {} {:.0}/s ({:.1} µs CPU/msg);",
                contender.name(),
                measured.per_s,
                measured.cpu_us
            ));
            by_contender[i].push(measured);
        }
        println!("{line}");
    }
    report(&args, &by_contender);
    Ok(())
}

fn report(args: &Args, by_contender: &[Vec<Measured>]) {
    let js_index = Contender::ALL
        .iter()
        .position(|c| *c == Contender::NatsJs)
        .expect("nats.js runs");
    let runs = by_contender[0].len();
    println!(
        "median of {runs} runs ({} messages, explicit ack, trivial handler):",
        args.messages
    );
    for (i, contender) in Contender::ALL.iter().enumerate() {
        let ratios: Vec<f64> = (0..runs)
            .map(|r| by_contender[i][r].per_s / by_contender[js_index][r].per_s)
            .collect();
        println!(
            "  {:<15} {:>8.0} msg/s  {:>5.2}× nats.js (runs: {})  {:>5.1} µs CPU/msg",
            contender.name(),
            median(by_contender[i].iter().map(|m| m.per_s).collect()),
            median(ratios.clone()),
            ratios
                .iter()
                .map(|r| format!("{r:.2}"))
                .collect::<Vec<_>>()
                .join(", "),
            median(by_contender[i].iter().map(|m| m.cpu_us).collect()),
        );
    }
}

/// One stream of `count` member joins, as the gateway publishes them.
async fn fill(js: &jetstream::Context, count: u64) -> anyhow::Result<()> {
    js.create_stream(stream::Config {
        name: STREAM.into(),
        subjects: vec!["bench.>".into()],
        storage: stream::StorageType::Memory,
        ..Default::default()
    })
    .await?;
    let mut pending = std::collections::VecDeque::new();
    for n in 0..count {
        let guild = 1_000 + n % 97;
        let event = GatewayEvent::from_dispatch(
            format!("member.join:{guild}:{n}:2026-11-23T10:00:00.000000+00:00"),
            "GUILD_MEMBER_ADD",
            n % 25,
            1_795_000_000_000 + n,
            json!({
                "guild_id": guild.to_string(),
                "user": {"id": (1_100_000_000_000_000_000 + n).to_string(), "username": format!("u{n}"), "discriminator": "0", "avatar": null},
                "roles": [], "joined_at": "2026-11-23T10:00:00.000000+00:00", "deaf": false, "mute": false, "flags": 0,
            }),
        );
        pending.push_back(
            js.publish("bench.member.join", serde_json::to_vec(&event)?.into())
                .await?,
        );
        if pending.len() >= 1000
            && let Some(ack) = pending.pop_front()
        {
            ack.await?;
        }
    }
    for ack in pending {
        ack.await?;
    }
    Ok(())
}

async fn measure(
    args: &Args,
    nats: &NatsServer,
    js: &jetstream::Context,
    contender: Contender,
    routes: &std::path::Path,
) -> anyhow::Result<Measured> {
    let stream = js.get_stream(STREAM).await?;
    let mut pull: consumer::PullConsumer = stream
        .create_consumer(consumer::pull::Config {
            durable_name: Some(contender.consumer().into()),
            ack_policy: consumer::AckPolicy::Explicit,
            max_ack_pending: 20_000,
            ..Default::default()
        })
        .await?;
    let total = args.messages.to_string();
    let url = nats.url();
    let mut command = match contender {
        Contender::Arrakis => {
            let mut c = Command::new(&args.worker);
            c.env("NATS_URL", url)
                .env("CONSUMERS", format!("{STREAM}/{}", contender.consumer()))
                .env("HANDLERS_CONFIG", routes)
                .env("HTTP_PORT", arrakis_e2e::net::free_port()?.to_string())
                .env("LOG_LEVEL", "error");
            c
        }
        Contender::NatsJs => {
            let mut c = Command::new("node");
            c.arg(&args.node_script)
                .args([url, STREAM, contender.consumer(), total.as_str()]);
            c
        }
        Contender::NatsPy => {
            let script = concat!(env!("CARGO_MANIFEST_DIR"), "/py/worker.py");
            let mut c = Command::new(&args.python);
            c.arg(script)
                .args([url, STREAM, contender.consumer(), total.as_str()]);
            c
        }
        Contender::NatsBench => {
            let mut c = Command::new(&args.nats_cli);
            c.args([
                "bench",
                "js",
                "consume",
                "--server",
                url,
                "--stream",
                STREAM,
                "--consumer",
                contender.consumer(),
                "--msgs",
                total.as_str(),
                "--no-progress",
            ]);
            c
        }
    };
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", contender.name()))?;
    let pid = child.id().context("pid")?;
    let deadline = Instant::now() + DEADLINE;
    let floor = |info: &consumer::Info| info.ack_floor.stream_sequence;
    // The clock starts at the first ack: process start-up is not what is measured.
    let (started, acked_at_start) = loop {
        let info = pull.info().await?;
        if floor(info) > 0 {
            break (Instant::now(), floor(info));
        }
        if Instant::now() > deadline {
            bail!("{} acked nothing within {DEADLINE:?}", contender.name());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    loop {
        let info = pull.info().await?;
        if floor(info) >= args.messages {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "{} acked {} of {} within {DEADLINE:?}",
                contender.name(),
                floor(info),
                args.messages
            );
        }
        if let Some(status) = child.try_wait()? {
            bail!("{} exited early with {status}", contender.name());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds(pid)?;
    let _ = child.kill().await;
    Ok(Measured {
        per_s: (args.messages - acked_at_start) as f64 / elapsed,
        cpu_us: cpu * 1e6 / args.messages as f64,
    })
}
