//! The gateway process against fake-discord and a real nats-server: what Discord sends lands in
//! JetStream on the seed's subjects with the seed's payload, once.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use arrakis_e2e::nats::NatsServer;
use arrakis_fake_discord::{Config, FakeDiscord};
use async_nats::jetstream::stream;
use common::*;
use serde_json::json;

#[tokio::test]
async fn dispatches_land_on_the_seed_subjects_with_the_seed_payload() {
    let nats = NatsServer::start().await.expect("nats-server");
    let (mut events, mut commands) = streams(&nats, stream::StorageType::Memory).await;
    let fake = fake_discord(12, 2).await;
    let gateway = gateway(&fake, Some(&nats), "fake-token", 2, "0-1");

    // Each guild's GUILD_CREATE becomes one guild.join.
    await_messages(&mut events, 12).await;
    let guild = fake.guilds()[0].id;
    let interaction = json!({
        "id": "1180000000000000001", "application_id": "1", "type": 2, "token": "interaction-token",
        "guild_id": guild.to_string(), "channel_id": "1180000000000000002", "version": 1,
        "member": {"user": {"id": "1180000000000000003", "username": "u", "discriminator": "0", "avatar": null}},
        "data": {"id": "5", "name": "profile", "type": 1},
    });
    let join = json!({
        "guild_id": guild.to_string(),
        "user": {"id": "1180000000000000004", "username": "new", "discriminator": "0", "avatar": null},
        "roles": [], "joined_at": "2026-11-23T10:00:00.000000+00:00", "deaf": false, "mute": false, "flags": 0,
    });
    fake.dispatch_to_guild(guild, "INTERACTION_CREATE", interaction.clone())
        .expect("dispatched");
    fake.dispatch_to_guild(guild, "GUILD_MEMBER_ADD", join.clone())
        .expect("dispatched");
    await_messages(&mut commands, 1).await;
    await_messages(&mut events, 13).await;

    let stored = all_events(&events).await;
    let truth = fake.truth();
    let created: BTreeSet<String> = truth
        .events
        .iter()
        .filter(|e| e.event_type == "GUILD_CREATE")
        .map(|e| e.data["id"].as_str().unwrap().to_owned())
        .collect();
    let joined: BTreeSet<String> = stored
        .iter()
        .filter(|(subject, _, _)| subject == "events.guild.join")
        .map(|(_, _, e)| e.guild_id.clone().expect("guild.join has guild_id"))
        .collect();
    assert_eq!(joined, created, "every GUILD_CREATE once, as guild.join");
    for (_, msg_id, event) in &stored {
        assert_eq!(msg_id, &event.event_id, "event_id is the Nats-Msg-Id");
        let shard = arrakis_fake_discord::model::shard_for_guild(
            event.guild_id.as_deref().unwrap().parse().unwrap(),
            2,
        );
        assert_eq!(
            event.shard_id, shard,
            "published by the shard Discord routed it to"
        );
    }

    let (subject, msg_id, member) = stored
        .iter()
        .find(|(s, _, _)| s == "events.member.join")
        .expect("member.join stored");
    assert_eq!(subject, "events.member.join");
    assert_eq!(member.event_type, "member.join");
    assert_eq!(member.user_id.as_deref(), Some("1180000000000000004"));
    assert_eq!(member.data, join);
    assert_eq!(
        msg_id,
        "member.join:{guild}:1180000000000000004:2026-11-23T10:00:00.000000+00:00"
            .replace("{guild}", &guild.to_string())
            .as_str()
    );

    let commands = all_events(&commands).await;
    let (subject, msg_id, command) = &commands[0];
    assert_eq!(subject, "commands.interaction");
    assert_eq!(msg_id, "interaction:1180000000000000001");
    assert_eq!(command.event_type, "interaction.create");
    assert_eq!(
        (
            command.guild_id.as_deref(),
            command.channel_id.as_deref(),
            command.user_id.as_deref()
        ),
        (
            Some(guild.to_string().as_str()),
            Some("1180000000000000002"),
            Some("1180000000000000003")
        )
    );
    assert_eq!(command.data, interaction);

    terminate(gateway).await;
}

#[tokio::test]
async fn a_bad_token_exits_with_a_message_that_says_what_to_fix() {
    let fake = FakeDiscord::start(Config {
        identify_interval: Duration::ZERO,
        ..Config::default()
    })
    .await
    .expect("fake");
    let gateway = gateway(&fake, None, "not-the-token", 1, "0");
    let output = tokio::time::timeout(DEADLINE, gateway.child.wait_with_output())
        .await
        .expect("exits")
        .expect("output");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("4004") && stderr.contains("update the token Secret"),
        "stderr: {stderr}"
    );
    assert!(
        !stderr.contains("not-the-token"),
        "the token is never printed: {stderr}"
    );
}

#[tokio::test]
async fn disallowed_intents_exit_with_a_message_that_says_what_to_fix() {
    let fake = FakeDiscord::start(Config {
        identify_interval: Duration::ZERO,
        ..Config::default()
    })
    .await
    .expect("fake");
    // The fake's application may use GUILD_MEMBERS only, like a bot that never enabled presences.
    let gateway = gateway_with(
        &fake,
        None,
        "fake-token",
        1,
        "0",
        &[("INTENTS", "GUILDS,GUILD_PRESENCES")],
    );
    let output = tokio::time::timeout(DEADLINE, gateway.child.wait_with_output())
        .await
        .expect("exits")
        .expect("output");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("4014") && stderr.contains("enable it in the developer portal"),
        "stderr: {stderr}"
    );
}

#[tokio::test]
async fn a_nats_outage_mid_stream_loses_nothing() {
    let mut nats = NatsServer::start().await.expect("nats-server");
    // File storage: the streams outlive the outage.
    let (mut events, _) = streams(&nats, stream::StorageType::File).await;
    let fake = fake_discord(4, 1).await;
    let gateway = gateway_with(
        &fake,
        Some(&nats),
        "fake-token",
        1,
        "0",
        &[("MAX_INFLIGHT", "8")],
    );
    await_ready_state(&gateway, "ready", |body| body["ready"] == true).await;
    await_messages(&mut events, 4).await;
    let guild = fake.guilds()[0].id;

    for user in 1..=10 {
        fake.dispatch(0, "GUILD_MEMBER_ADD", member_add(guild, user))
            .expect("dispatched");
    }
    await_messages(&mut events, 14).await;

    nats.stop();
    await_ready_state(&gateway, "NATS disconnected", |body| {
        body["nats_connected"] == false
    })
    .await;
    // Five times the publish buffer arrives while NATS is down.
    for user in 11..=50 {
        fake.dispatch(0, "GUILD_MEMBER_ADD", member_add(guild, user))
            .expect("dispatched");
    }
    // Outlast JetStream's ack timeout, so publishes fail and are retried, not just delayed.
    await_metric_above(&gateway, "gateway_route_failures_total", 0.0).await;
    nats.restart().await.expect("nats-server restarts");

    await_messages(&mut events, 54).await;
    let users: BTreeSet<u64> = all_events(&events)
        .await
        .iter()
        .filter(|(subject, _, _)| subject == "events.member.join")
        .map(|(_, _, e)| e.user_id.as_deref().unwrap().parse().unwrap())
        .collect();
    assert_eq!(
        users,
        (1..=50).collect::<BTreeSet<u64>>(),
        "every member.join, once"
    );
    let truth = fake.truth();
    assert!(
        !truth.resumes.is_empty(),
        "the full buffer closed the session resumably and it resumed"
    );
    assert_eq!(truth.identifies.len(), 1, "no new session was needed");
    await_ready_state(&gateway, "ready again", |body| body["ready"] == true).await;
    terminate(gateway).await;
}

#[tokio::test]
async fn a_malformed_frame_is_skipped_and_nothing_after_it_is_lost() {
    let nats = NatsServer::start().await.expect("nats-server");
    let (mut events, _) = streams(&nats, stream::StorageType::Memory).await;
    let fake = fake_discord(2, 1).await;
    let gateway = gateway(&fake, Some(&nats), "fake-token", 1, "0");
    await_messages(&mut events, 2).await;
    let guild = fake.guilds()[0].id;

    fake.fault(0, arrakis_fake_discord::Fault::Malformed)
        .expect("connected");
    for user in 1..=5 {
        fake.dispatch(0, "GUILD_MEMBER_ADD", member_add(guild, user))
            .expect("dispatched");
    }
    await_messages(&mut events, 7).await;
    await_ready_state(&gateway, "ready", |body| body["ready"] == true).await;
    let truth = fake.truth();
    assert!(
        truth.resumes.is_empty() && truth.identifies.len() == 1,
        "the session was kept: {truth:?}"
    );
    terminate(gateway).await;
}

#[tokio::test]
async fn without_nats_it_runs_in_log_only_mode() {
    let fake = fake_discord(3, 1).await;
    let gateway = gateway(&fake, None, "fake-token", 1, "0");
    await_ready_state(&gateway, "ready in log-only mode", |body| {
        body["ready"] == true && body["shards_ready"] == 1 && body["guilds_total"] == 3
    })
    .await;
    fake.dispatch(0, "GUILD_MEMBER_ADD", member_add(fake.guilds()[0].id, 1))
        .expect("dispatched");
    terminate(gateway).await;
}
