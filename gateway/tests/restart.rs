//! Sessions survive restarts: a gateway that stops (SIGTERM) or dies (SIGKILL) mid-stream is
//! replaced by one that resumes the saved session, with no gap and, after JetStream's dedup, no
//! duplicate.

mod common;

use std::collections::BTreeSet;

use arrakis_e2e::nats::NatsServer;
use arrakis_e2e::wait;
use arrakis_fake_discord::FakeDiscord;
use async_nats::jetstream::{self, stream};
use common::*;

async fn setup() -> (NatsServer, stream::Stream, FakeDiscord) {
    let nats = NatsServer::start().await.expect("nats-server");
    let (events, _) = streams(&nats, stream::StorageType::File).await;
    let fake = fake_discord(3, 1).await;
    (nats, events, fake)
}

fn start(fake: &FakeDiscord, nats: &NatsServer) -> Gateway {
    gateway(fake, Some(nats), "fake-token", 1, "0")
}

fn dispatch_joins(fake: &FakeDiscord, users: std::ops::RangeInclusive<u64>) -> u64 {
    let guild = fake.guilds()[0].id;
    users
        .map(|user| {
            fake.dispatch(0, "GUILD_MEMBER_ADD", member_add(guild, user))
                .expect("dispatched")
        })
        .max()
        .expect("at least one")
}

async fn joined_users(events: &stream::Stream) -> BTreeSet<u64> {
    all_events(events)
        .await
        .iter()
        .filter(|(subject, _, _)| subject == "events.member.join")
        .map(|(_, _, e)| e.user_id.as_deref().unwrap().parse().unwrap())
        .collect()
}

/// Waits until the saved session of shard 0/1 covers `seq`.
async fn await_saved(nats: &NatsServer, seq: u64) {
    let js = jetstream::new(nats.connect().await.expect("connect"));
    let saved = wait::until(DEADLINE, || {
        let js = js.clone();
        async move {
            let kv = js.get_key_value("arrakis-gateway-sessions").await.ok()?;
            let value: serde_json::Value =
                serde_json::from_slice(&kv.get("default.0.1").await.ok()??).ok()?;
            (value["sequence"].as_u64()? >= seq).then_some(())
        }
    })
    .await;
    assert!(
        saved.is_some(),
        "the session was never saved up to seq {seq}"
    );
}

#[tokio::test]
async fn sigterm_then_restart_resumes_with_no_gap_and_no_duplicate() {
    let (nats, mut events, fake) = setup().await;
    let first = start(&fake, &nats);
    await_messages(&mut events, 3).await;
    dispatch_joins(&fake, 1..=10);
    await_messages(&mut events, 13).await;
    terminate(first).await;

    // Discord keeps the session's events while nobody is connected.
    dispatch_joins(&fake, 11..=20);
    let second = start(&fake, &nats);
    await_ready_state(&second, "ready", |body| body["ready"] == true).await;
    await_messages(&mut events, 23).await;

    assert_eq!(joined_users(&events).await, (1..=20).collect());
    let truth = fake.truth();
    assert_eq!(
        truth.identifies.len(),
        1,
        "the replacement resumed instead of identifying"
    );
    assert_eq!(truth.resumes.len(), 1);
    assert_eq!(
        truth.resumes[0].replayed, 10,
        "exactly the events sent while it was down"
    );
    terminate(second).await;
}

#[tokio::test]
async fn sigkill_mid_stream_then_restart_loses_nothing() {
    let (nats, mut events, fake) = setup().await;
    let mut first = start(&fake, &nats);
    await_messages(&mut events, 3).await;
    let last = dispatch_joins(&fake, 1..=10);
    await_messages(&mut events, 13).await;
    await_saved(&nats, last).await;
    // More events, then death before their progress can be saved.
    dispatch_joins(&fake, 11..=15);
    first.child.kill().await.expect("SIGKILL");

    dispatch_joins(&fake, 16..=20);
    let second = start(&fake, &nats);
    await_ready_state(&second, "ready", |body| body["ready"] == true).await;
    // await_messages also checks there is nothing beyond: replays of stored events were dropped.
    await_messages(&mut events, 23).await;
    assert_eq!(joined_users(&events).await, (1..=20).collect());
    assert_eq!(
        fake.truth().identifies.len(),
        1,
        "the replacement resumed the saved session"
    );
    terminate(second).await;
}
