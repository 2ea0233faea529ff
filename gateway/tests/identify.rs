//! One identify queue across processes: three gateways cold-start six shards against a fake
//! Discord that refuses any identify faster than its limit, and none is refused.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use arrakis_e2e::nats::NatsServer;
use arrakis_e2e::wait;
use arrakis_fake_discord::{Config, FakeDiscord};
use common::*;

const INTERVAL_MS: u64 = 1000;

#[tokio::test]
async fn three_processes_never_identify_a_bucket_faster_than_discord_allows() {
    let nats = NatsServer::start().await.expect("nats-server");
    let _streams = streams(&nats, async_nats::jetstream::stream::StorageType::Memory).await;
    let fake = FakeDiscord::start(Config {
        heartbeat_interval: Duration::from_millis(1000),
        identify_interval: Duration::from_millis(INTERVAL_MS),
        max_concurrency: 2,
        guilds: 6,
        members_per_guild: 1,
        ..Config::default()
    })
    .await
    .expect("fake-discord");
    let env = [("MAX_CONCURRENCY", "2"), ("IDENTIFY_INTERVAL_MS", "1000")];
    let gateways: Vec<Gateway> = ["0-1", "2-3", "4-5"]
        .into_iter()
        .map(|range| gateway_with(&fake, Some(&nats), "fake-token", 6, range, &env))
        .collect();

    let all_up = wait::until(DEADLINE, || async {
        (fake.connected_shards().len() == 6).then_some(())
    })
    .await;
    let truth = fake.truth();
    assert!(
        all_up.is_some(),
        "not every shard connected: {:?}; identifies: {:?}",
        fake.connected_shards(),
        truth.identifies
    );

    eprintln!(
        "{:?}",
        truth
            .identifies
            .iter()
            .map(|i| (i.shard, i.bucket, i.at_ms % 100_000))
            .collect::<Vec<_>>()
    );
    let refused: Vec<_> = truth.identifies.iter().filter(|i| !i.accepted).collect();
    assert!(
        refused.is_empty(),
        "identifies refused for pacing: {refused:?}"
    );
    assert_eq!(truth.identifies.len(), 6, "one identify per shard");
    let mut per_bucket: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
    for identify in &truth.identifies {
        per_bucket
            .entry(identify.bucket)
            .or_default()
            .push(identify.at_ms);
    }
    for (bucket, times) in &per_bucket {
        for pair in times.windows(2) {
            assert!(
                pair[1] - pair[0] >= INTERVAL_MS,
                "bucket {bucket}: identifies {}ms apart",
                pair[1] - pair[0]
            );
        }
    }
    for gateway in gateways {
        terminate(gateway).await;
    }
}
