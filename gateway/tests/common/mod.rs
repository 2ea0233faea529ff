//! Helpers shared by the gateway's suites: the gateway as a child process, streams, bounded waits.

#![allow(dead_code)] // Each suite uses its own subset.

use std::process::Stdio;
use std::time::Duration;

use arrakis_contract::GatewayEvent;
use arrakis_e2e::nats::NatsServer;
use arrakis_e2e::wait;
use arrakis_fake_discord::{Config, FakeDiscord};
use async_nats::jetstream::{self, stream};
use serde_json::json;
use tokio::process::{Child, Command};

pub const DEADLINE: Duration = Duration::from_secs(30);

pub struct Gateway {
    pub child: Child,
    pub http_port: u16,
}

pub fn gateway(
    fake: &FakeDiscord,
    nats: Option<&NatsServer>,
    token: &str,
    total: u32,
    range: &str,
) -> Gateway {
    gateway_with(fake, nats, token, total, range, &[])
}

pub fn gateway_with(
    fake: &FakeDiscord,
    nats: Option<&NatsServer>,
    token: &str,
    total: u32,
    range: &str,
    extra_env: &[(&str, &str)],
) -> Gateway {
    let http_port = free_port();
    let mut command = Command::new(env!("CARGO_BIN_EXE_arrakis-gateway"));
    command
        .env_clear()
        .env("DISCORD_TOKEN", token)
        .env("TOTAL_SHARDS", total.to_string())
        .env("SHARD_RANGE", range)
        .env("MAX_CONCURRENCY", total.to_string())
        .env("DISCORD_GATEWAY_URL", fake.gateway_url())
        .env("HTTP_PORT", http_port.to_string())
        .envs(extra_env.iter().copied())
        .env("LOG_LEVEL", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(nats) = nats {
        command.env("NATS_URL", nats.url());
    }
    Gateway {
        child: command.spawn().expect("gateway starts"),
        http_port,
    }
}

pub fn free_port() -> u16 {
    arrakis_e2e::net::free_port().expect("free port")
}

pub async fn streams(
    nats: &NatsServer,
    storage: stream::StorageType,
) -> (stream::Stream, stream::Stream) {
    let js = jetstream::new(nats.connect().await.expect("connect"));
    let make = |name: &str, subject: &str| arrakis_e2e::nats::stream_config(name, subject, storage);
    let events = js
        .create_stream(make("EVENTS", "events.>"))
        .await
        .expect("EVENTS");
    let commands = js
        .create_stream(make("COMMANDS", "commands.>"))
        .await
        .expect("COMMANDS");
    (events, commands)
}

/// Waits until `stream` holds `count` messages; bounded, with the count it saw on failure.
pub async fn await_messages(stream: &mut stream::Stream, count: u64) {
    let reached = wait::until(DEADLINE, || {
        let mut stream = stream.clone();
        async move { (stream.info().await.ok()?.state.messages >= count).then_some(()) }
    })
    .await;
    let last = stream.info().await.expect("stream info").state.messages;
    let name = &stream.cached_info().config.name;
    assert!(
        reached.is_some(),
        "stream {name} has {last} messages, expected {count} within {DEADLINE:?}"
    );
    assert_eq!(last, count, "no more than expected, either");
}

pub async fn all_events(stream: &stream::Stream) -> Vec<(String, String, GatewayEvent)> {
    let info = stream.cached_info().state.clone();
    let mut out = Vec::new();
    for seq in info.first_sequence..=info.last_sequence {
        let message = stream.get_raw_message(seq).await.expect("stored message");
        let msg_id = message
            .headers
            .get("Nats-Msg-Id")
            .map(|v| v.to_string())
            .expect("every event carries a Nats-Msg-Id");
        let event: GatewayEvent =
            serde_json::from_slice(&message.payload).expect("payload is a GatewayEvent");
        out.push((message.subject.to_string(), msg_id, event));
    }
    out
}

pub async fn terminate(Gateway { mut child, .. }: Gateway) {
    let pid = child.id().expect("running").to_string();
    let status = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .expect("kill runs");
    assert!(status.success());
    let exit = tokio::time::timeout(DEADLINE, child.wait())
        .await
        .expect("exits after SIGTERM")
        .expect("wait");
    assert!(exit.success(), "graceful shutdown exits 0, got {exit}");
}

pub fn member_add(guild: u64, user: u64) -> serde_json::Value {
    json!({
        "guild_id": guild.to_string(),
        "user": {"id": user.to_string(), "username": format!("u{user}"), "discriminator": "0", "avatar": null},
        "roles": [], "joined_at": "2026-11-23T10:00:00.000000+00:00", "deaf": false, "mute": false, "flags": 0,
    })
}

/// Polls the gateway's /ready until `want(body)` holds; bounded.
pub async fn await_ready_state(
    gateway: &Gateway,
    what: &str,
    want: impl Fn(&serde_json::Value) -> bool,
) {
    let url = format!("http://127.0.0.1:{}/ready", gateway.http_port);
    let found = wait::until(DEADLINE, || async {
        let body = arrakis_e2e::http::get(&url, None).await.ok()?.json();
        want(&body).then_some(())
    })
    .await;
    let last = arrakis_e2e::http::get(&url, None)
        .await
        .map(|r| r.body)
        .unwrap_or_default();
    assert!(
        found.is_some(),
        "gateway never reported {what}; last /ready: {last}"
    );
}

/// Polls /metrics until the sum of `name` over its labels exceeds `floor`; bounded.
pub async fn await_metric_above(gateway: &Gateway, name: &str, floor: f64) {
    let url = format!("http://127.0.0.1:{}/metrics", gateway.http_port);
    let found = wait::until(DEADLINE, || async {
        let body = arrakis_e2e::http::get(&url, None).await.ok()?.body;
        let sum: f64 = body
            .lines()
            .filter(|line| line.starts_with(name))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        (sum > floor).then_some(())
    })
    .await;
    assert!(
        found.is_some(),
        "{name} never rose above {floor} within {DEADLINE:?}"
    );
}

/// A fake Discord with `guilds` guilds of `members` members, 1 s heartbeats and no identify pacing.
pub async fn fake_discord(guilds: usize, members: usize) -> FakeDiscord {
    FakeDiscord::start(Config {
        heartbeat_interval: Duration::from_millis(1000),
        identify_interval: Duration::ZERO,
        guilds,
        members_per_guild: members,
        ..Config::default()
    })
    .await
    .expect("fake-discord starts")
}
