//! `bench-gateway`: throughput and memory of one arrakis-gateway process running 25 shards.
//!
//! Each run starts a nats-server, a fake Discord and the gateway (release build), then:
//! - memory: the gateway's RSS once every shard is ready and every guild is published;
//! - throughput: fake-discord sends N member joins across the 25 shards as fast as it can, and the
//!   clock stops when JetStream holds all of them;
//! - baseline: in the same run, just before and just after the gateway, a plain async-nats
//!   publisher stores the same N payloads with the same message ids (pipelined, 1,000 acks in
//!   flight) on a fresh stream; the mean of the two is the baseline.
//!
//! The figure that matters is the ratio gateway / baseline, which cancels most of the machine's
//! noise. Reports the median of the runs.
//!
//! Two more scenarios:
//! - latency: events paced at a fixed rate; for each, the time from fake-discord sending it to
//!   JetStream storing it (the ack follows the store), p50 and p99;
//! - cold start: S shards over P processes with Discord's real identify pacing (5 s per bucket,
//!   max_concurrency buckets), time until every shard is READY, next to the theoretical minimum.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use arrakis_bench::{cpu_seconds, median, rss_kib};
use arrakis_contract::GatewayEvent;
use arrakis_e2e::nats::{NatsServer, stream_config};
use arrakis_e2e::wait;
use arrakis_fake_discord::{Config, FakeDiscord};
use async_nats::jetstream::{self, message::PublishMessage, stream};
use clap::Parser;
use serde_json::json;

#[derive(Parser)]
struct Args {
    /// Runs; the median is reported.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Member joins sent per run.
    #[arg(long, default_value_t = 100_000)]
    events: u64,
    #[arg(long, default_value_t = 25)]
    shards: u32,
    /// Guilds loaded into fake-discord (spread over the shards).
    #[arg(long, default_value_t = 1000)]
    guilds: usize,
    /// The gateway binary; `make bench` builds it in release mode.
    #[arg(long, env = "ARRAKIS_GATEWAY_BIN")]
    gateway: PathBuf,
    /// throughput, latency, cold-start, or all.
    #[arg(long, default_value = "all")]
    scenario: String,
    /// Events per second in the latency scenario.
    #[arg(long, default_value_t = 5000)]
    rate: u64,
    /// Seconds of paced events in the latency scenario.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Cold start: total shards, processes, and Discord's max_concurrency.
    #[arg(long, default_value_t = 100)]
    cold_shards: u32,
    #[arg(long, default_value_t = 4)]
    cold_processes: u32,
    #[arg(long, default_value_t = 16)]
    cold_concurrency: u32,
}

const DEADLINE: Duration = Duration::from_secs(300);

struct Run {
    gateway_per_s: f64,
    baseline_per_s: f64,
    rss_kib: u64,
    /// CPU time the gateway process spent per event, in microseconds.
    gateway_cpu_us: f64,
    /// CPU time this process (fake-discord, the load generator) spent per event.
    generator_cpu_us: f64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let all = args.scenario == "all";
    if all || args.scenario == "throughput" {
        throughput(&args).await?;
    }
    if all || args.scenario == "latency" {
        latency(&args).await?;
    }
    if all || args.scenario == "cold-start" {
        cold_start(&args).await?;
    }
    Ok(())
}

async fn throughput(args: &Args) -> anyhow::Result<()> {
    let mut runs = Vec::new();
    for n in 1..=args.runs {
        let run = one_run(args).await.with_context(|| format!("run {n}"))?;
        println!(
            "run {n}: gateway {:.0} events/s, baseline {:.0} events/s, ratio {:.2}, RSS {:.1} MiB ({:.2} MiB per shard), CPU per event: gateway {:.1} µs, fake-discord {:.1} µs",
            run.gateway_per_s,
            run.baseline_per_s,
            run.gateway_per_s / run.baseline_per_s,
            run.rss_kib as f64 / 1024.0,
            run.rss_kib as f64 / 1024.0 / f64::from(args.shards),
            run.gateway_cpu_us,
            run.generator_cpu_us,
        );
        runs.push(run);
    }
    println!(
        "median of {} runs ({} events, {} shards, {} guilds): gateway {:.0} events/s, baseline {:.0} events/s, ratio {:.2}, RSS {:.1} MiB",
        runs.len(),
        args.events,
        args.shards,
        args.guilds,
        median(runs.iter().map(|r| r.gateway_per_s).collect()),
        median(runs.iter().map(|r| r.baseline_per_s).collect()),
        median(
            runs.iter()
                .map(|r| r.gateway_per_s / r.baseline_per_s)
                .collect()
        ),
        median(runs.iter().map(|r| r.rss_kib as f64).collect()) / 1024.0,
    );
    Ok(())
}

async fn one_run(args: &Args) -> anyhow::Result<Run> {
    let Stack {
        nats,
        mut events,
        fake,
        mut gateways,
    } = pool_stack(args).await?;
    let js = jetstream::new(nats.connect().await?);
    let mut gateway = gateways.pop().context("one gateway")?;
    let pid = gateway.id().context("gateway pid")?;

    // Every guild arrives as guild.join once all shards are ready.
    let guilds = args.guilds as u64;
    await_count(&mut events, guilds).await?;
    let rss_kib = rss_kib(pid)?;

    let member_guilds: Vec<u64> = fake.guilds().iter().map(|g| g.id).collect();
    // The baseline runs just before and just after the gateway, and counts as their mean, so a
    // slow patch of the machine weighs on both sides of the ratio.
    let baseline_before = baseline(&js, "BASELINE_BEFORE", args.events, &member_guilds).await?;
    let gateway_cpu = cpu_seconds(pid)?;
    let generator_cpu = cpu_seconds(std::process::id())?;
    let started = Instant::now();
    for n in 0..args.events {
        let guild = member_guilds[(n as usize) % member_guilds.len()];
        fake.dispatch_to_guild(guild, "GUILD_MEMBER_ADD", member_join(guild, n))?;
    }
    await_count(&mut events, guilds + args.events).await?;
    let gateway_per_s = args.events as f64 / started.elapsed().as_secs_f64();
    let per_event_us = |seconds: f64| seconds * 1e6 / args.events as f64;
    let gateway_cpu_us = per_event_us(cpu_seconds(pid)? - gateway_cpu);
    let generator_cpu_us = per_event_us(cpu_seconds(std::process::id())? - generator_cpu);
    gateway.kill().await?;

    let baseline_after = baseline(&js, "BASELINE_AFTER", args.events, &member_guilds).await?;
    let baseline_per_s = (baseline_before + baseline_after) / 2.0;
    Ok(Run {
        gateway_per_s,
        baseline_per_s,
        rss_kib,
        gateway_cpu_us,
        generator_cpu_us,
    })
}

/// Everything a scenario needs running: NATS with the EVENTS stream, fake-discord, gateways.
struct Stack {
    nats: NatsServer,
    events: stream::Stream,
    fake: FakeDiscord,
    gateways: Vec<tokio::process::Child>,
}

async fn stack(
    args: &Args,
    fake_config: Config,
    shards: u32,
    processes: u32,
    env: &[(&str, String)],
) -> anyhow::Result<Stack> {
    let nats = NatsServer::start().await?;
    let js = jetstream::new(nats.connect().await?);
    let events = js
        .create_stream(stream_config(
            "EVENTS",
            "events.>",
            stream::StorageType::Memory,
        ))
        .await?;
    let fake = FakeDiscord::start(fake_config).await?;
    let per_process = shards.div_ceil(processes);
    let mut gateways = Vec::new();
    for p in 0..processes {
        let first = p * per_process;
        let last = ((p + 1) * per_process).min(shards) - 1;
        let child = tokio::process::Command::new(&args.gateway)
            .env_clear()
            .env("DISCORD_TOKEN", &fake.config().token)
            .env("TOTAL_SHARDS", shards.to_string())
            .env("SHARD_RANGE", format!("{first}-{last}"))
            .env("NATS_URL", nats.url())
            .env("DISCORD_GATEWAY_URL", fake.gateway_url())
            .env("HTTP_PORT", arrakis_e2e::net::free_port()?.to_string())
            .env("LOG_LEVEL", "error")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("starting the gateway")?;
        gateways.push(child);
    }
    Ok(Stack {
        nats,
        events,
        fake,
        gateways,
    })
}

/// One gateway running every shard, with no identify pacing (these scenarios measure steady state).
async fn pool_stack(args: &Args) -> anyhow::Result<Stack> {
    let fake_config = Config {
        identify_interval: Duration::ZERO,
        guilds: args.guilds,
        members_per_guild: 1,
        ..Config::default()
    };
    let env = [
        ("MAX_CONCURRENCY", args.shards.to_string()),
        ("IDENTIFY_INTERVAL_MS", "100".to_string()),
    ];
    stack(args, fake_config, args.shards, 1, &env).await
}

async fn latency(args: &Args) -> anyhow::Result<()> {
    let mut p50s = Vec::new();
    let mut p99s = Vec::new();
    for n in 1..=args.runs {
        let mut stack = pool_stack(args).await?;
        let guilds = args.guilds as u64;
        await_count(&mut stack.events, guilds).await?;
        let guild_ids: Vec<u64> = stack.fake.guilds().iter().map(|g| g.id).collect();
        let total = args.rate * args.seconds;
        // Paced in 1 ms ticks: rate / 1000 events per tick.
        let per_tick = (args.rate / 1000).max(1);
        let mut tick = tokio::time::interval(Duration::from_millis(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let mut sent = 0;
        while sent < total {
            tick.tick().await;
            for _ in 0..per_tick.min(total - sent) {
                let guild = guild_ids[(sent as usize) % guild_ids.len()];
                let mut payload = member_join(guild, sent);
                payload["sent_unix_ns"] = json!(unix_ns().to_string());
                stack
                    .fake
                    .dispatch_to_guild(guild, "GUILD_MEMBER_ADD", payload)?;
                sent += 1;
            }
        }
        await_count(&mut stack.events, guilds + total).await?;
        let mut latencies_us = Vec::with_capacity(total as usize);
        let info = stack.events.info().await?.state.clone();
        for seq in (info.first_sequence + guilds)..=info.last_sequence {
            let message = stack.events.get_raw_message(seq).await?;
            let event: GatewayEvent = serde_json::from_slice(&message.payload)?;
            let sent: i128 = event.data["sent_unix_ns"]
                .as_str()
                .context("sent time")?
                .parse()?;
            latencies_us.push((message.time.unix_timestamp_nanos() - sent) as f64 / 1000.0);
        }
        let (p50, p99) = (
            percentile(&mut latencies_us, 0.50),
            percentile(&mut latencies_us, 0.99),
        );
        println!(
            "latency run {n}: {total} events at {}/s: p50 {:.2} ms, p99 {:.2} ms",
            args.rate,
            p50 / 1000.0,
            p99 / 1000.0
        );
        p50s.push(p50);
        p99s.push(p99);
        for mut gateway in stack.gateways {
            gateway.kill().await?;
        }
        drop(stack.nats);
    }
    println!(
        "latency median of {} runs at {} events/s: p50 {:.2} ms, p99 {:.2} ms",
        args.runs,
        args.rate,
        median(p50s) / 1000.0,
        median(p99s) / 1000.0
    );
    Ok(())
}

fn percentile(values: &mut [f64], q: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    values[((values.len() as f64 - 1.0) * q).round() as usize]
}

fn unix_ns() -> i128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or_default()
}

async fn cold_start(args: &Args) -> anyhow::Result<()> {
    const DISCORD_INTERVAL: Duration = Duration::from_secs(5);
    let rounds = args.cold_shards.div_ceil(args.cold_concurrency);
    // The first round identifies at once; each later round waits one interval.
    let minimum = DISCORD_INTERVAL * (rounds - 1);
    let mut times = Vec::new();
    for n in 1..=args.runs.min(3) {
        let fake_config = Config {
            identify_interval: DISCORD_INTERVAL,
            max_concurrency: args.cold_concurrency,
            guilds: args.cold_shards as usize * 2,
            members_per_guild: 1,
            ..Config::default()
        };
        let env = [("MAX_CONCURRENCY", args.cold_concurrency.to_string())];
        let started = Instant::now();
        let stack = stack(
            args,
            fake_config,
            args.cold_shards,
            args.cold_processes,
            &env,
        )
        .await?;
        let all = wait::until(DEADLINE, || async {
            (stack.fake.connected_shards().len() == args.cold_shards as usize).then_some(())
        })
        .await;
        let elapsed = started.elapsed();
        if all.is_none() {
            bail!(
                "only {} of {} shards connected",
                stack.fake.connected_shards().len(),
                args.cold_shards
            );
        }
        let refused = stack
            .fake
            .truth()
            .identifies
            .iter()
            .filter(|i| !i.accepted)
            .count();
        println!(
            "cold start run {n}: {} shards over {} processes, max_concurrency {}: all READY in {:.1} s (minimum {:.0} s), identifies refused: {refused}",
            args.cold_shards,
            args.cold_processes,
            args.cold_concurrency,
            elapsed.as_secs_f64(),
            minimum.as_secs_f64()
        );
        times.push(elapsed.as_secs_f64());
    }
    println!(
        "cold start median: {:.1} s against a theoretical minimum of {:.0} s",
        median(times),
        minimum.as_secs_f64()
    );
    Ok(())
}

fn member_join(guild: u64, n: u64) -> serde_json::Value {
    json!({
        "guild_id": guild.to_string(),
        "user": {"id": (1_100_000_000_000_000_000 + n).to_string(), "username": format!("u{n}"), "discriminator": "0", "avatar": null},
        "roles": [], "joined_at": "2026-11-23T10:00:00.000000+00:00", "deaf": false, "mute": false, "flags": 0,
    })
}

/// The same payloads, published straight to JetStream with pipelined acks.
async fn baseline(
    js: &jetstream::Context,
    name: &str,
    count: u64,
    guilds: &[u64],
) -> anyhow::Result<f64> {
    let subjects = format!("{}.>", name.to_ascii_lowercase());
    let subject = format!("{}.member.join", name.to_ascii_lowercase());
    let mut stream = js
        .create_stream(stream_config(name, &subjects, stream::StorageType::Memory))
        .await?;
    const WINDOW: usize = 1000;
    let started = Instant::now();
    let mut pending = std::collections::VecDeque::with_capacity(WINDOW);
    for n in 0..count {
        let guild = guilds[(n as usize) % guilds.len()];
        let id = format!("member.join:{guild}:{n}");
        let event = GatewayEvent::from_dispatch(
            id.clone(),
            "GUILD_MEMBER_ADD",
            0,
            0,
            member_join(guild, n),
        );
        let payload = serde_json::to_vec(&event)?;
        let publish = PublishMessage::build()
            .payload(payload.into())
            .message_id(id);
        pending.push_back(js.send_publish(subject.clone(), publish).await?);
        if pending.len() >= WINDOW
            && let Some(ack) = pending.pop_front()
        {
            ack.await?;
        }
    }
    for ack in pending {
        ack.await?;
    }
    let rate = count as f64 / started.elapsed().as_secs_f64();
    if stream.info().await?.state.messages != count {
        bail!("the baseline stream does not hold every message");
    }
    Ok(rate)
}

async fn await_count(stream: &mut stream::Stream, count: u64) -> anyhow::Result<()> {
    let reached = wait::until(DEADLINE, || {
        let mut stream = stream.clone();
        async move { (stream.info().await.ok()?.state.messages >= count).then_some(()) }
    })
    .await;
    let have = stream.info().await?.state.messages;
    match reached {
        Some(()) if have == count => Ok(()),
        Some(()) => bail!("stream holds {have} messages, more than the {count} sent"),
        None => bail!("stream holds {have} of {count} messages after {DEADLINE:?}"),
    }
}
