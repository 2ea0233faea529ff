//! Shard ownership: two gateway processes follow the live assignment in NATS KV. Shards move
//! between them while events keep coming; every event lands once, each moved shard resumes its
//! session instead of identifying, and no shard ever runs on two connections at once.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arrakis_contract::assignment::{
    ASSIGNMENT_BUCKET, LEASE_BUCKET, ShardAssignment, assignment_key, shard_key,
};
use arrakis_e2e::nats::NatsServer;
use arrakis_e2e::wait;
use arrakis_fake_discord::FakeDiscord;
use async_nats::jetstream::{self, kv, stream};
use common::*;

const TOTAL: u32 = 4;
const POOL: &str = "default";

fn member(fake: &FakeDiscord, nats: &NatsServer, name: &str) -> Gateway {
    gateway_with(
        fake,
        Some(nats),
        "fake-token",
        TOTAL,
        "0",
        &[("LIVE_ASSIGNMENT", "true"), ("POD_NAME", name)],
    )
}

async fn assignments(nats: &NatsServer) -> kv::Store {
    let js = jetstream::new(nats.connect().await.expect("connect"));
    js.create_key_value(kv::Config {
        bucket: ASSIGNMENT_BUCKET.into(),
        history: 1,
        ..Default::default()
    })
    .await
    .expect("assignment bucket")
}

async fn assign(kv: &kv::Store, generation: u64, members: &[(&str, &[u32])]) {
    let assignment = ShardAssignment {
        generation,
        total_shards: TOTAL,
        members: members
            .iter()
            .map(|(m, s)| ((*m).to_owned(), s.to_vec()))
            .collect(),
    };
    kv.put(
        assignment_key(POOL),
        serde_json::to_vec(&assignment).unwrap().into(),
    )
    .await
    .expect("assignment written");
}

/// Waits until `gateway` is ready running exactly `shards`.
async fn await_running(gateway: &Gateway, shards: &[u32]) {
    let want: Vec<serde_json::Value> = shards.iter().map(|&s| s.into()).collect();
    await_ready_state(gateway, &format!("ready with shards {shards:?}"), |body| {
        body["ready"] == true && body["shards"].as_array() == Some(&want)
    })
    .await;
}

/// Dispatches GUILD_MEMBER_ADD of new users round the shards until `stop` is set; returns how many.
fn keep_dispatching(fake: Arc<FakeDiscord>, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<u64> {
    tokio::spawn(async move {
        let guild = fake.guilds()[0].id;
        let mut user = 0u64;
        while !stop.load(Ordering::Relaxed) {
            user += 1;
            let shard = (user % u64::from(TOTAL)) as u32;
            fake.dispatch(shard, "GUILD_MEMBER_ADD", member_add(guild, user))
                .expect("dispatched");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        user
    })
}

#[tokio::test]
async fn shards_move_between_processes_losing_nothing() {
    let nats = NatsServer::start().await.expect("nats-server");
    let (mut events, _) = streams(&nats, stream::StorageType::File).await;
    let fake = Arc::new(fake_discord(8, 1).await);
    let kv = assignments(&nats).await;
    assign(&kv, 1, &[("gw-a", &[0, 1, 2, 3])]).await;

    let a = member(&fake, &nats, "gw-a");
    let b = member(&fake, &nats, "gw-b");
    await_running(&a, &[0, 1, 2, 3]).await;
    await_running(&b, &[]).await;

    let stop = Arc::new(AtomicBool::new(false));
    let dispatcher = keep_dispatching(fake.clone(), stop.clone());
    await_messages_at_least(&events, 8 + 50).await;

    assign(&kv, 2, &[("gw-a", &[0, 1]), ("gw-b", &[2, 3])]).await;
    await_running(&b, &[2, 3]).await;
    await_running(&a, &[0, 1]).await;
    await_messages_at_least(&events, 8 + 150).await;

    assign(&kv, 3, &[("gw-b", &[0, 1, 2, 3])]).await;
    await_running(&b, &[0, 1, 2, 3]).await;
    await_running(&a, &[]).await;
    stop.store(true, Ordering::Relaxed);
    let dispatched = dispatcher.await.expect("dispatcher");

    // Every dispatched join lands once: the 8 GUILD_CREATEs plus one per user, nothing more.
    await_messages(&mut events, 8 + dispatched).await;
    let joined: Vec<u64> = all_events(&events)
        .await
        .iter()
        .filter(|(subject, _, _)| subject == "events.member.join")
        .map(|(_, _, e)| e.user_id.as_deref().unwrap().parse().unwrap())
        .collect();
    assert_eq!(joined.len() as u64, dispatched);
    assert_eq!(
        joined.iter().copied().collect::<BTreeSet<_>>(),
        (1..=dispatched).collect(),
        "every user's join, once"
    );

    let truth = fake.truth();
    assert_eq!(
        truth.identifies.len(),
        TOTAL as usize,
        "shards were identified once, at the start; moves resumed them"
    );
    let resumed: Vec<u32> = truth.resumes.iter().map(|r| r.shard).collect();
    assert_eq!(
        resumed.iter().copied().collect::<BTreeSet<_>>(),
        BTreeSet::from([0, 1, 2, 3]),
        "each shard moved once, by resuming: {resumed:?}"
    );
    assert_eq!(resumed.len(), TOTAL as usize, "{resumed:?}");
    assert!(
        truth.overlaps.is_empty(),
        "a shard ran on two connections at once: {:?}",
        truth.overlaps
    );

    let leases = jetstream::new(nats.connect().await.expect("connect"))
        .get_key_value(LEASE_BUCKET)
        .await
        .expect("lease bucket");
    for shard in 0..TOTAL {
        let holder = leases
            .get(shard_key(POOL, shard, TOTAL))
            .await
            .expect("lease read");
        assert_eq!(
            holder.as_deref(),
            Some(&b"gw-b"[..]),
            "lease of shard {shard}"
        );
    }

    terminate(a).await;
    terminate(b).await;
    for shard in 0..TOTAL {
        let holder = leases
            .get(shard_key(POOL, shard, TOTAL))
            .await
            .expect("lease read");
        assert_eq!(holder, None, "SIGTERM released the lease of shard {shard}");
    }
}

/// Waits until `stream` holds at least `count` messages.
async fn await_messages_at_least(stream: &stream::Stream, count: u64) {
    let reached = wait::until(DEADLINE, || {
        let mut stream = stream.clone();
        async move { (stream.info().await.ok()?.state.messages >= count).then_some(()) }
    })
    .await;
    assert!(
        reached.is_some(),
        "stream never reached {count} messages within {DEADLINE:?}"
    );
}

#[tokio::test]
async fn a_crashed_members_shards_are_taken_over_once_its_leases_expire() {
    let nats = NatsServer::start().await.expect("nats-server");
    let (mut events, _) = streams(&nats, stream::StorageType::File).await;
    let fake = Arc::new(fake_discord(8, 1).await);
    let kv = assignments(&nats).await;
    assign(&kv, 1, &[("gw-a", &[0, 1, 2, 3])]).await;
    let mut a = member(&fake, &nats, "gw-a");
    let b = member(&fake, &nats, "gw-b");
    await_running(&a, &[0, 1, 2, 3]).await;

    let stop = Arc::new(AtomicBool::new(false));
    let dispatcher = keep_dispatching(fake.clone(), stop.clone());
    await_messages_at_least(&events, 8 + 50).await;
    await_sessions_saved(&nats).await;
    a.child.kill().await.expect("SIGKILL");
    assign(&kv, 2, &[("gw-b", &[0, 1, 2, 3])]).await;

    // The dead member's leases block the takeover until they expire.
    await_running(&b, &[0, 1, 2, 3]).await;
    stop.store(true, Ordering::Relaxed);
    let dispatched = dispatcher.await.expect("dispatcher");
    await_messages(&mut events, 8 + dispatched).await;

    let truth = fake.truth();
    assert_eq!(
        truth.identifies.len(),
        TOTAL as usize,
        "the takeover resumed"
    );
    assert!(truth.overlaps.is_empty(), "{:?}", truth.overlaps);
    // The replay of ~15 s of events may overflow the publish buffer, which closes and resumes
    // again (by design), so count shards rather than resumes.
    let resumed: BTreeSet<u32> = truth.resumes.iter().map(|r| r.shard).collect();
    assert_eq!(resumed, BTreeSet::from([0, 1, 2, 3]));
    terminate(b).await;
}

/// Waits until every shard has a saved session to resume.
async fn await_sessions_saved(nats: &NatsServer) {
    let js = jetstream::new(nats.connect().await.expect("connect"));
    let saved = wait::until(DEADLINE, || {
        let js = js.clone();
        async move {
            let sessions = js.get_key_value("arrakis-gateway-sessions").await.ok()?;
            for shard in 0..TOTAL {
                sessions.get(shard_key(POOL, shard, TOTAL)).await.ok()??;
            }
            Some(())
        }
    })
    .await;
    assert!(
        saved.is_some(),
        "sessions were never saved for all {TOTAL} shards"
    );
}
