//! Every sample under `crds/samples/` applies to a real API server and reads back as the typed API.

use arrakis_e2e::cluster::{self, FIELD_MANAGER, TestNamespace};
use arrakis_e2e::objects::{dynamic_api, parse_documents};
use arrakis_operator::api::shard_pool::ShardCount;
use arrakis_operator::api::{NatsConsumer, NatsStream, ShardPool};
use kube::ResourceExt;
use kube::api::{Patch, PatchParams};

#[tokio::test]
async fn every_sample_applies_and_reads_back_typed() -> anyhow::Result<()> {
    let client = cluster::client().await?;
    cluster::ensure_crds(&client).await?;
    let ns = TestNamespace::create(&client, "samples").await?;

    let dir = cluster::repo_root().join("crds/samples");
    let mut files: Vec<_> = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no samples in {}", dir.display());

    let mut applied = 0;
    for file in &files {
        for object in parse_documents(&std::fs::read_to_string(file)?)? {
            let api = dynamic_api(&client, ns.name(), &object)?;
            let name = object.name_any();
            api.patch(
                &name,
                &PatchParams::apply(FIELD_MANAGER),
                &Patch::Apply(&object),
            )
            .await
            .map_err(|e| anyhow::anyhow!("{}: applying {name}: {e}", file.display()))?;
            applied += 1;
        }
    }

    // The seed topology: four streams, four consumers, one pool; each parses as the operator reads it.
    let streams = ns.api::<NatsStream>().list(&Default::default()).await?;
    let mut stream_names: Vec<_> = streams.iter().map(|s| s.spec.name.clone()).collect();
    stream_names.sort();
    assert_eq!(
        stream_names,
        ["COMMANDS", "ELIGIBILITY", "EVENTS", "INTERNAL"]
    );
    let consumers = ns.api::<NatsConsumer>().list(&Default::default()).await?;
    let mut pending: Vec<_> = consumers
        .iter()
        .map(|c| {
            (
                c.spec.durable_name.clone(),
                c.spec.max_ack_pending,
                c.spec.ack_wait.clone().map(|d| d.0),
            )
        })
        .collect();
    pending.sort();
    assert_eq!(
        pending,
        [
            ("command-worker".into(), Some(50), Some("30s".into())),
            ("eligibility-worker".into(), Some(200), Some("60s".into())),
            ("event-worker".into(), Some(100), Some("15s".into())),
            ("sync-worker".into(), Some(10), Some("5m".into())),
        ]
    );
    let pools = ns.api::<ShardPool>().list(&Default::default()).await?;
    assert_eq!(pools.items.len(), 1);
    assert_eq!(applied, 9, "objects applied from {files:?}");
    Ok(())
}

/// `kubectl scale sp/x --replicas=N` goes through the scale subresource, including when the user
/// never set replicas, and is validated like any other write.
///
/// Found here: the API server refuses GET on /scale while spec.replicas is absent (PATCH works), so the
/// operator initialises spec.replicas from the density when it is unset (issue 5).
#[tokio::test]
async fn shard_pool_scales_through_the_scale_subresource() -> anyhow::Result<()> {
    let client = cluster::client().await?;
    cluster::ensure_crds(&client).await?;
    let ns = TestNamespace::create(&client, "scale").await?;
    let pools = ns.api::<ShardPool>();

    let pool: ShardPool = serde_yaml::from_str(
        "apiVersion: arrakis.dev/v1alpha1\nkind: ShardPool\nmetadata: {name: bot}\nspec: {shards: 8, tokenSecretRef: {name: bot}}",
    )?;
    let created = pools.create(&Default::default(), &pool).await?;
    assert_eq!(created.spec.shards, ShardCount::Fixed(8));
    assert_eq!(
        created.spec.replicas, None,
        "replicas stays unset until someone scales"
    );

    let patch = serde_json::json!({"spec": {"replicas": 4}});
    pools
        .patch_scale("bot", &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    let scaled = pools.get("bot").await?;
    assert_eq!(scaled.spec.replicas, Some(4));
    let scale = pools.get_scale("bot").await?;
    assert_eq!(scale.spec.and_then(|s| s.replicas), Some(4));

    let too_many = serde_json::json!({"spec": {"replicas": 9}});
    let error = pools
        .patch_scale("bot", &PatchParams::default(), &Patch::Merge(&too_many))
        .await
        .expect_err("more pods than shards must be refused");
    assert!(
        error
            .to_string()
            .contains("replicas must not exceed shards"),
        "unexpected error: {error}"
    );
    Ok(())
}
