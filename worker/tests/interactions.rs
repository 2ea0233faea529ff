//! Interactions against fake-discord's REST: every command is deferred within Discord's 3 s, then
//! answered by editing the original response; failures reach the user as a follow-up.

mod common;

use std::time::Duration;

use arrakis_contract::GatewayEvent;
use arrakis_e2e::nats::NatsServer;
use arrakis_fake_discord::{Config, FakeDiscord};
use async_nats::jetstream::{self, consumer};
use axum::http::StatusCode;
use common::*;
use serde_json::json;

async fn setup() -> (NatsServer, jetstream::Context, FakeDiscord) {
    let nats = NatsServer::start().await.expect("nats-server");
    let js = jetstream::new(nats.connect().await.expect("connect"));
    streams(&js).await;
    durable(
        &js,
        "COMMANDS",
        "command-worker",
        consumer::pull::Config {
            max_ack_pending: 5000,
            max_deliver: 3,
            backoff: vec![Duration::from_secs(1)],
            ..Default::default()
        },
    )
    .await;
    let fake = FakeDiscord::start(Config {
        guilds: 2,
        members_per_guild: 3,
        ..Config::default()
    })
    .await
    .expect("fake-discord");
    (nats, js, fake)
}

/// A user runs `command`: the fake records the interaction, the test delivers it to JetStream as
/// the gateway would.
async fn run_command(js: &jetstream::Context, fake: &FakeDiscord, command: &str) -> u64 {
    let guild = fake.guilds()[0].id;
    let (id, _, payload) = fake
        .create_interaction(guild, command)
        .expect("interaction");
    let event = GatewayEvent::from_dispatch(
        format!("interaction:{id}"),
        "INTERACTION_CREATE",
        0,
        arrakis_worker::state::now_ms(),
        payload,
    );
    publish_event(js, "commands.interaction", &event).await;
    id
}

fn worker_for(
    nats: &NatsServer,
    fake: &FakeDiscord,
    config: &tempfile::NamedTempFile,
    concurrency: &str,
) -> Worker {
    worker(
        nats,
        "COMMANDS/command-worker",
        &[
            ("HANDLERS_CONFIG", config.path().to_str().unwrap()),
            ("DISCORD_API_HOST", &fake.http_host()),
            ("CONCURRENCY", concurrency),
        ],
    )
}

#[tokio::test]
async fn commands_are_deferred_then_answered_and_failures_followed_up() {
    let (nats, js, fake) = setup().await;
    let service = Service::start(|_| (StatusCode::OK, json!({"content": "42 holders"}))).await;
    let broken =
        Service::start(|_| (StatusCode::BAD_REQUEST, json!({"error": "no such tier"}))).await;
    let config = bridge_config(
        &service.url,
        &["command.stats"],
        "  command.profile: builtin\n  command.threshold: {bridge: broken}\n",
    );
    let text = std::fs::read_to_string(config.path()).unwrap().replace(
        "routes:",
        &format!(
            "  broken: {{url: \"{}\", timeout: 2s}}\nroutes:",
            broken.url
        ),
    );
    std::fs::write(config.path(), text).unwrap();
    let w = worker_for(&nats, &fake, &config, "8");

    let stats = run_command(&js, &fake, "stats").await;
    let profile = run_command(&js, &fake, "profile").await;
    let naib = run_command(&js, &fake, "naib").await;
    let threshold = run_command(&js, &fake, "threshold").await;
    await_settled(&js, "COMMANDS", "command-worker").await;

    let truth = fake.truth();
    let record = |id: u64| {
        truth
            .interactions
            .iter()
            .find(|i| i.id == id)
            .expect("recorded")
            .clone()
    };
    for id in [stats, profile, naib, threshold] {
        let r = record(id);
        assert_eq!(r.response_type, Some(5), "{} deferred", r.command);
        assert!(
            r.answered_after_ms().unwrap() < 3000,
            "{} deferred in time",
            r.command
        );
    }
    assert_eq!(
        record(stats).edits,
        vec!["42 holders".to_string()],
        "the bridge's reply"
    );
    assert_eq!(record(profile).edits.len(), 1, "the built-in answered");
    assert_eq!(
        record(naib).edits,
        vec!["This command is not available.".to_string()]
    );
    let failed = record(threshold);
    assert!(failed.edits.is_empty());
    assert_eq!(
        failed.followups.len(),
        1,
        "the user hears about the failure"
    );
    assert!(
        failed.followups[0].contains("Sorry"),
        "{:?}",
        failed.followups
    );
    assert_eq!(
        service.requests.lock().unwrap()[0].1["eventType"],
        "interaction.command.stats"
    );
    terminate(w).await;
}

#[tokio::test]
async fn a_burst_of_1000_commands_is_deferred_within_3_s_behind_slow_handlers() {
    let (nats, js, fake) = setup().await;
    // Each answer takes 20 ms and only 4 run at once: the last one starts ~5 s after the burst.
    let service = Service::slow(Duration::from_millis(20), |_| {
        (StatusCode::OK, json!({"content": "ok"}))
    })
    .await;
    let config = bridge_config(&service.url, &["command.stats"], "");
    let w = worker_for(&nats, &fake, &config, "4");
    // Ready before the burst, so the clock measures the worker, not its start.
    let ready = format!("http://127.0.0.1:{}/readyz", w.http_port);
    arrakis_e2e::wait::until(DEADLINE, || async {
        (arrakis_e2e::http::get(&ready, None).await.ok()?.status == 200).then_some(())
    })
    .await
    .expect("worker ready");

    let mut ids = Vec::new();
    for _ in 0..1000 {
        ids.push(run_command(&js, &fake, "stats").await);
    }
    await_settled(&js, "COMMANDS", "command-worker").await;
    let truth = fake.truth();
    let mut slowest = 0;
    for id in &ids {
        let r = truth
            .interactions
            .iter()
            .find(|i| i.id == *id)
            .expect("recorded");
        let after = r
            .answered_after_ms()
            .unwrap_or_else(|| panic!("interaction {id} was never deferred: {r:?}"));
        slowest = slowest.max(after);
        assert_eq!(r.edits, vec!["ok".to_string()]);
    }
    assert!(slowest < 3000, "slowest deferral took {slowest} ms");
    terminate(w).await;
}

#[tokio::test]
async fn limited_commands_tell_the_user_to_wait() {
    let (nats, js, fake) = setup().await;
    let service = Service::start(|_| (StatusCode::OK, json!({"content": "42 holders"}))).await;
    let config = bridge_config(
        &service.url,
        &["command.stats"],
        "limits:\n  command.stats: {cooldown: 60s}\n",
    );
    let w = worker_for(&nats, &fake, &config, "8");
    let first = run_command(&js, &fake, "stats").await;
    await_settled(&js, "COMMANDS", "command-worker").await;
    let second = run_command(&js, &fake, "stats").await;
    await_settled(&js, "COMMANDS", "command-worker").await;

    let truth = fake.truth();
    let edits = |id: u64| {
        truth
            .interactions
            .iter()
            .find(|i| i.id == id)
            .unwrap()
            .edits
            .clone()
    };
    assert_eq!(edits(first), vec!["42 holders".to_string()]);
    assert_eq!(edits(second).len(), 1);
    assert!(edits(second)[0].contains("cooldown"), "{:?}", edits(second));
    assert_eq!(
        service.count(),
        1,
        "the limited command never reached its handler"
    );
    terminate(w).await;
}

#[tokio::test]
async fn built_in_commands_answer_from_the_state_events_built() {
    let (nats, js, fake) = setup().await;
    durable(&js, "EVENTS", "event-worker", Default::default()).await;
    let guild = fake.guilds()[0].id;
    let w = worker(
        &nats,
        "EVENTS/event-worker,COMMANDS/command-worker",
        &[("DISCORD_API_HOST", &fake.http_host())],
    );
    let joined = GatewayEvent::from_dispatch(
        format!("guild.join:{guild}"),
        "GUILD_CREATE",
        0,
        arrakis_worker::state::now_ms(),
        json!({"id": guild.to_string(), "name": "Arrakis HQ", "member_count": 3}),
    );
    publish_event(&js, "events.guild.join", &joined).await;
    for user in [11, 12, 12] {
        // User 12's join arrives twice (a redelivery): it counts once.
        publish_event(&js, "events.member.join", &member_join(guild, user)).await;
    }
    await_settled(&js, "EVENTS", "event-worker").await;
    let communities = js.get_key_value("arrakis-communities").await.unwrap();
    let community: serde_json::Value =
        serde_json::from_slice(&communities.get(guild.to_string()).await.unwrap().unwrap())
            .unwrap();
    assert_eq!(community["name"], "Arrakis HQ");
    assert_eq!(community["active"], true);

    let directory = run_command(&js, &fake, "directory").await;
    let leaderboard = run_command(&js, &fake, "leaderboard").await;
    await_settled(&js, "COMMANDS", "command-worker").await;
    let truth = fake.truth();
    let edit = |id: u64| {
        truth
            .interactions
            .iter()
            .find(|i| i.id == id)
            .unwrap()
            .edits[0]
            .clone()
    };
    assert_eq!(edit(directory), "Members:\n1. user11\n2. user12");
    assert_eq!(
        edit(leaderboard),
        "Leaderboard:\n1. user11 (1)\n2. user12 (1)",
        "the repeated join (same event id) counted once"
    );
    terminate(w).await;
}
