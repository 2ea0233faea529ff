//! twilight 0.18, unmodified, against the fake: it must not be able to tell it from Discord.

use std::time::Duration;

use arrakis_fake_discord::{Config, FakeDiscord, Fault, close_code};
use serde_json::json;
use twilight_gateway::queue::InMemoryQueue;
use twilight_gateway::{
    ConfigBuilder, Event, EventTypeFlags, Intents, Message, Shard, ShardId, ShardState, StreamExt,
};

const DEADLINE: Duration = Duration::from_secs(20);

fn fake_config() -> Config {
    Config {
        heartbeat_interval: Duration::from_millis(500),
        identify_interval: Duration::ZERO,
        guilds: 30,
        members_per_guild: 3,
        ..Config::default()
    }
}

fn shard(
    fake: &FakeDiscord,
    id: u32,
    total: u32,
    token: &str,
    intents: Intents,
) -> Shard<InMemoryQueue> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    // max_concurrency 0: the local queue grants at once; pacing is the fake's to enforce.
    let queue = InMemoryQueue::new(0, 1000, Duration::from_secs(14_400), 1000);
    let config = ConfigBuilder::new(token.to_owned(), intents)
        .proxy_url(fake.gateway_url().to_owned())
        .queue(queue)
        .build();
    Shard::with_config(ShardId::new(id, total), config)
}

/// Reads parsed events until `done` says stop, within the deadline.
async fn events_until(
    shard: &mut Shard<InMemoryQueue>,
    mut done: impl FnMut(&Event) -> bool,
) -> Vec<Event> {
    let mut seen = Vec::new();
    tokio::time::timeout(DEADLINE, async {
        while let Some(item) = shard.next_event(EventTypeFlags::all()).await {
            let Ok(event) = item else { continue };
            let stop = done(&event);
            seen.push(event);
            if stop {
                return;
            }
        }
        panic!("shard stream ended early; saw {} events", seen.len());
    })
    .await
    .unwrap_or_else(|_| panic!("no matching event within {DEADLINE:?}"));
    seen
}

/// A fake and one shard (0 of 1) that has received READY and every GUILD_CREATE.
async fn started_with_all_guilds() -> (FakeDiscord, Shard<InMemoryQueue>) {
    let fake = FakeDiscord::start(fake_config())
        .await
        .expect("fake starts");
    let mut shard = shard(
        &fake,
        0,
        1,
        "fake-token",
        Intents::GUILDS | Intents::GUILD_MEMBERS,
    );
    let guilds = fake.guilds().len();
    let mut creates = 0;
    events_until(&mut shard, |e| {
        creates += usize::from(matches!(e, Event::GuildCreate(_)));
        creates == guilds
    })
    .await;
    (fake, shard)
}

fn member_add(guild: u64, user: u64) -> serde_json::Value {
    json!({
        "guild_id": guild.to_string(),
        "user": {"id": user.to_string(), "username": format!("u{user}"), "discriminator": "0", "avatar": null},
        "roles": [], "joined_at": "2026-11-23T10:00:00.000000+00:00", "deaf": false, "mute": false,
        "flags": 0, "avatar": null, "nick": null, "premium_since": null, "pending": false,
    })
}

#[tokio::test]
async fn identify_ready_and_guild_creates_parse_in_twilight() {
    let fake = FakeDiscord::start(fake_config())
        .await
        .expect("fake starts");
    let expected: Vec<u64> = fake
        .guilds()
        .iter()
        .filter(|g| arrakis_fake_discord::model::shard_for_guild(g.id, 2) == 1)
        .map(|g| g.id)
        .collect();
    assert!(!expected.is_empty());

    let mut shard = shard(
        &fake,
        1,
        2,
        "fake-token",
        Intents::GUILDS | Intents::GUILD_MEMBERS,
    );
    let mut guilds = Vec::new();
    let events = events_until(&mut shard, |event| {
        if let Event::GuildCreate(guild) = event {
            guilds.push(guild.id().get());
        }
        guilds.len() == expected.len()
    })
    .await;
    let first_dispatch = events
        .iter()
        .find(|e| matches!(e, Event::Ready(_) | Event::GuildCreate(_)));
    assert!(
        matches!(first_dispatch, Some(Event::Ready(_))),
        "READY comes before any GUILD_CREATE"
    );
    guilds.sort_unstable();
    let mut expected = expected;
    expected.sort_unstable();
    assert_eq!(
        guilds, expected,
        "every guild routed to shard 1 by (id >> 22) % 2, once"
    );
    assert_eq!(shard.state(), ShardState::Active);

    let truth = fake.truth();
    assert_eq!(truth.identifies.len(), 1);
    assert_eq!(
        (truth.identifies[0].shard, truth.identifies[0].total),
        (1, 2)
    );
    let seqs: Vec<u64> = truth.events_for_shard(1).iter().map(|e| e.seq).collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "seq increases by one from READY"
    );
}

#[tokio::test]
async fn reconnect_and_dropped_connections_resume_without_gaps() {
    let (fake, mut shard) = started_with_all_guilds().await;
    let guild = fake.guilds()[0].id;

    // op 7: twilight must resume, and the fake replays nothing it already had.
    fake.fault(0, Fault::Reconnect)
        .expect("shard 0 is connected");
    events_until(&mut shard, |e| matches!(e, Event::Resumed)).await;

    // A dropped connection: events sequenced while it is down are replayed on resume, in order.
    fake.fault(0, Fault::Drop).expect("shard 0 is connected");
    let mut sent = Vec::new();
    for user in 1..=5u64 {
        sent.push(
            fake.dispatch(0, "GUILD_MEMBER_ADD", member_add(guild, user))
                .expect("session exists"),
        );
    }
    let mut users = Vec::new();
    events_until(&mut shard, |e| {
        if let Event::MemberAdd(member) = e {
            users.push(member.user.id.get());
        }
        users.len() == 5
    })
    .await;
    assert_eq!(users, [1, 2, 3, 4, 5], "every missed event, in order, once");

    let truth = fake.truth();
    assert_eq!(truth.resumes.len(), 2, "{:?}", truth.resumes);
    assert_eq!(truth.identifies.len(), 1, "resumes, not new sessions");
    assert!(truth.resumes[1].replayed >= 5);
}

#[tokio::test]
async fn zombied_connection_is_detected_and_resumed() {
    let fake = FakeDiscord::start(fake_config())
        .await
        .expect("fake starts");
    let mut shard = shard(&fake, 0, 1, "fake-token", Intents::GUILDS);
    events_until(&mut shard, |e| matches!(e, Event::Ready(_))).await;
    fake.fault(0, Fault::Zombie).expect("connected");
    events_until(&mut shard, |e| matches!(e, Event::Resumed)).await;
    assert_eq!(fake.truth().identifies.len(), 1);
}

async fn fatal_close(token: &str, intents: Intents) -> u16 {
    let fake = FakeDiscord::start(fake_config())
        .await
        .expect("fake starts");
    let mut shard = shard(&fake, 0, 1, token, intents);
    let code = tokio::time::timeout(DEADLINE, async {
        while let Some(item) = futures::StreamExt::next(&mut shard).await {
            if let Ok(Message::Close(Some(frame))) = item {
                return frame.code;
            }
        }
        panic!("stream ended without a close frame");
    })
    .await
    .expect("closed within the deadline");
    assert_eq!(shard.state(), ShardState::FatallyClosed);
    assert!(
        futures::StreamExt::next(&mut shard).await.is_none(),
        "a fatal close ends the stream"
    );
    code
}

#[tokio::test]
async fn bad_token_closes_with_4004_and_twilight_stops() {
    assert_eq!(
        fatal_close("wrong-token", Intents::GUILDS).await,
        close_code::AUTHENTICATION_FAILED
    );
}

#[tokio::test]
async fn disallowed_privileged_intents_close_with_4014() {
    assert_eq!(
        fatal_close("fake-token", Intents::GUILDS | Intents::GUILD_PRESENCES).await,
        close_code::DISALLOWED_INTENTS
    );
}

#[tokio::test]
async fn emitted_streams_arrive_whole_and_never_faster_than_the_rate() {
    let (fake, mut shard) = started_with_all_guilds().await;

    let spec = |kind: &str| {
        serde_json::from_value(json!({"kind": kind, "count": 100, "rate": 1000})).expect("spec")
    };
    let emitter = async {
        let adds = fake.emit(spec("member_add")).await.expect("emitted");
        let updates = fake.emit(spec("member_update")).await.expect("emitted");
        (adds, updates)
    };
    let receiver = async {
        let mut counts = (0, 0);
        events_until(&mut shard, |e| {
            match e {
                Event::MemberAdd(_) => counts.0 += 1,
                Event::MemberUpdate(_) => counts.1 += 1,
                _ => {}
            }
            counts == (100, 100)
        })
        .await;
        counts
    };
    let ((adds, updates), received) = tokio::join!(emitter, receiver);
    assert_eq!(
        received,
        (100, 100),
        "every emitted event reached twilight, parsed"
    );
    assert_eq!((adds.emitted, updates.emitted), (100, 100));
    // 100 events at 1000/s take at least 99 ms: the pacing never runs ahead.
    assert!(
        adds.elapsed_ms >= 99 && updates.elapsed_ms >= 99,
        "{} ms, {} ms",
        adds.elapsed_ms,
        updates.elapsed_ms
    );
    let truth = fake.truth();
    let count = |t: &str| truth.events.iter().filter(|e| e.event_type == t).count();
    assert_eq!(
        (count("GUILD_MEMBER_ADD"), count("GUILD_MEMBER_UPDATE")),
        (100, 100)
    );
}
