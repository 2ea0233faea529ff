//! The Kubernetes side of the tests: a client for the local (or any) cluster, the CRDs,
//! and a temporary namespace per test.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::wait::conditions;
use kube::{Client, Config};

use crate::wait::await_condition;

/// The field manager tests use for server-side apply.
pub const FIELD_MANAGER: &str = "arrakis-e2e";

/// Label on every namespace a test creates, so leftovers can be found and removed.
pub const TEST_NAMESPACE_LABEL: &str = "arrakis.dev/e2e";

const CRD_ESTABLISHED_TIMEOUT: Duration = Duration::from_secs(60);
const NAMESPACE_DELETE_TIMEOUT: Duration = Duration::from_secs(60);

/// A client for the cluster in `$KUBECONFIG` (`make test` points it at the local control plane).
pub async fn client() -> anyhow::Result<Client> {
    if std::env::var_os("KUBECONFIG").is_none() {
        anyhow::bail!(
            "KUBECONFIG is not set: run the cluster suites with `make test` (it starts the local control plane), \
             or `make cluster-up` and export the KUBECONFIG it prints, or point KUBECONFIG at a kind cluster"
        );
    }
    let config = Config::infer().await.context("reading KUBECONFIG")?;
    Client::try_from(config).context("building a Kubernetes client")
}

/// The repository's top directory, where `crds/` lives.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("e2e sits inside the workspace")
        .to_path_buf()
}

/// The committed CRD files under `crds/`, as users apply them.
pub fn committed_crds() -> anyhow::Result<Vec<CustomResourceDefinition>> {
    let dir = repo_root().join("crds");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|path| {
            let text = std::fs::read_to_string(path)?;
            serde_yaml::from_str(&text).with_context(|| format!("parsing {}", path.display()))
        })
        .collect()
}

/// Applies the committed CRDs (server-side apply, so it is idempotent and safe to race)
/// and waits until each is Established.
pub async fn ensure_crds(client: &Client) -> anyhow::Result<Vec<CustomResourceDefinition>> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let mut established = Vec::new();
    for crd in committed_crds()? {
        let name = crd.metadata.name.clone().context("CRD without a name")?;
        api.patch(&name, &params, &Patch::Apply(&crd))
            .await
            .with_context(|| format!("applying CRD {name}"))?;
        let crd = await_condition(
            &api,
            &name,
            &format!("CRD {name} is Established"),
            CRD_ESTABLISHED_TIMEOUT,
            conditions::is_crd_established(),
        )
        .await?;
        established.push(crd);
    }
    Ok(established)
}

/// A namespace that exists for one test and is deleted when dropped, even if the test panics.
pub struct TestNamespace {
    name: String,
    client: Client,
    // Drop needs a client of its own: `client` runs on the test's runtime, which Drop blocks.
    config: Config,
}

impl TestNamespace {
    /// Creates `arrakis-<prefix>-<random>`.
    pub async fn create(client: &Client, prefix: &str) -> anyhow::Result<Self> {
        let suffix: String = {
            use rand::Rng;
            let mut rng = rand::rng();
            (0..6)
                .map(|_| char::from(b'a' + rng.random_range(0..26u8)))
                .collect()
        };
        let name = format!("arrakis-{prefix}-{suffix}");
        let namespace: Namespace = serde_json::from_value(serde_json::json!({
            "metadata": { "name": name, "labels": { TEST_NAMESPACE_LABEL: "true" } }
        }))?;
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &namespace)
            .await
            .with_context(|| format!("creating namespace {name}"))?;
        Ok(TestNamespace {
            name,
            client: client.clone(),
            config: Config::infer().await.context("reading KUBECONFIG")?,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// An API handle for namespaced resources of type `K` in this namespace.
    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = kube::core::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.name)
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        let name = self.name.clone();
        let config = self.config.clone();
        // Drop cannot await; delete from a thread with its own runtime and wait for it,
        // so the namespace is gone (or reported) before the test binary exits.
        let outcome = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async { delete_namespace(Client::try_from(config)?, &name).await })
        })
        .join();
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("warning: cleaning up namespace {}: {e:#}", self.name),
            Err(_) => eprintln!("warning: cleaning up namespace {} panicked", self.name),
        }
    }
}

async fn delete_namespace(client: Client, name: &str) -> anyhow::Result<()> {
    let api: Api<Namespace> = Api::all(client);
    let uid = match api.get_opt(name).await? {
        Some(ns) => ns.metadata.uid.unwrap_or_default(),
        None => return Ok(()),
    };
    api.delete(name, &DeleteParams::background()).await?;
    tokio::time::timeout(
        NAMESPACE_DELETE_TIMEOUT,
        kube::runtime::wait::await_condition(api, name, conditions::is_deleted(&uid)),
    )
    .await
    .with_context(|| {
        format!("namespace {name} still terminating after {NAMESPACE_DELETE_TIMEOUT:?}")
    })??;
    Ok(())
}

/// Removes the finalizers of every `K` that `api` sees, best effort: for tests whose controller
/// has stopped (after a failure), so their namespace can still be deleted.
pub async fn strip_finalizers<K>(api: &Api<K>)
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned,
{
    let strip = serde_json::json!({"metadata": {"finalizers": null}});
    let Ok(list) = api.list(&Default::default()).await else {
        return;
    };
    for object in list.items {
        if let Some(name) = object.meta().name.as_deref() {
            let _ = api
                .patch(name, &PatchParams::default(), &Patch::Merge(&strip))
                .await;
        }
    }
}
