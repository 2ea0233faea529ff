//! The committed CRDs install on a real API server, become Established, and are served as documented.

use arrakis_e2e::cluster;
use kube::discovery::{Discovery, Scope};

#[tokio::test]
async fn crds_install_become_established_and_are_served() -> anyhow::Result<()> {
    let client = cluster::client().await?;
    let installed = cluster::ensure_crds(&client).await?;
    let mut names: Vec<_> = installed
        .iter()
        .filter_map(|c| c.metadata.name.clone())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "natsconsumers.arrakis.dev",
            "natsstreams.arrakis.dev",
            "shardpools.arrakis.dev"
        ]
    );

    // The API server has accepted every CEL rule (it compiles them and checks their cost on apply)
    // and serves each kind, namespaced, in the arrakis category.
    let discovery = Discovery::new(client)
        .filter(&["arrakis.dev"])
        .run()
        .await?;
    let group = discovery
        .groups()
        .find(|g| g.name() == "arrakis.dev")
        .expect("arrakis.dev is served");
    let mut kinds: Vec<String> = group
        .recommended_resources()
        .into_iter()
        .map(|(resource, capabilities)| {
            assert_eq!(
                capabilities.scope,
                Scope::Namespaced,
                "{} scope",
                resource.kind
            );
            assert!(
                capabilities
                    .subresources
                    .iter()
                    .any(|(sub, _)| sub.plural == "status"),
                "{} has a status subresource",
                resource.kind
            );
            format!("{}/{}", resource.version, resource.kind)
        })
        .collect();
    kinds.sort();
    assert_eq!(
        kinds,
        [
            "v1alpha1/NatsConsumer",
            "v1alpha1/NatsStream",
            "v1alpha1/ShardPool"
        ]
    );
    Ok(())
}
