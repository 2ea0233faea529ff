//! What a ShardPool runs, built purely from the resource and what the reconciler resolved: the
//! gateway StatefulSet, its headless Service and a PodDisruptionBudget. The gateway pods follow the
//! live shard assignment (`LIVE_ASSIGNMENT=true`), so the StatefulSet never changes when shards
//! move: only its replica count does.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EnvVar, EnvVarSource, HTTPGetAction, ObjectFieldSelector, PodSpec,
    PodTemplateSpec, Probe, SecretKeySelector, Service, ServicePort, ServiceSpec,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{Resource, ResourceExt};

use crate::api::ShardPool;

/// The gateway's HTTP port (`/health`, `/ready`, `/metrics`).
pub const HTTP_PORT: i32 = 9090;
/// Default key of the token Secret.
pub const TOKEN_KEY: &str = "token";
/// Shards per pod when `replicas` is unset.
pub const DEFAULT_SHARDS_PER_POD: i32 = 25;
/// SIGTERM gives the gateway 20 s to drain acks and save sessions; the pod gets a little more.
const GRACE_SECONDS: i64 = 30;

/// What the reconciler resolved before building.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    /// Total shards (`auto` already asked of Discord).
    pub total_shards: i32,
    /// Discord's `max_concurrency` for the bot.
    pub max_concurrency: i32,
    /// NATS URL(s) when the pool names none.
    pub default_nats: String,
    /// The gateway image when the pool names none.
    pub default_image: String,
}

/// The gateway pods of `pool` count this many when `replicas` is unset: total / shardsPerPod,
/// rounded up, at least one.
pub fn replicas(pool: &ShardPool, total_shards: i32) -> i32 {
    pool.spec.replicas.unwrap_or_else(|| {
        let per_pod = pool
            .spec
            .shards_per_pod
            .unwrap_or(DEFAULT_SHARDS_PER_POD)
            .max(1);
        ((total_shards + per_pod - 1) / per_pod).max(1)
    })
}

/// Names of the children.
pub fn workload_name(pool: &ShardPool) -> String {
    format!("{}-gateway", pool.name_any())
}

/// The pool's name in NATS KV (sessions, leases, assignment): namespace and name joined by `_`,
/// which Kubernetes names cannot hold, so two pools never share one.
pub fn kv_pool_name(pool: &ShardPool) -> String {
    format!(
        "{}_{}",
        pool.namespace().unwrap_or_default(),
        pool.name_any()
    )
}

/// The labels every child carries; the selector uses the first three.
pub fn labels(pool: &ShardPool) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".into(), "arrakis-gateway".into()),
        ("app.kubernetes.io/instance".into(), pool.name_any()),
        ("app.kubernetes.io/component".into(), "gateway".into()),
        ("app.kubernetes.io/part-of".into(), "arrakis".into()),
        (
            "app.kubernetes.io/managed-by".into(),
            "arrakis-operator".into(),
        ),
    ])
}

fn selector_labels(pool: &ShardPool) -> BTreeMap<String, String> {
    labels(pool).into_iter().take(3).collect()
}

fn metadata(pool: &ShardPool) -> ObjectMeta {
    ObjectMeta {
        name: Some(workload_name(pool)),
        namespace: pool.namespace(),
        labels: Some(labels(pool)),
        owner_references: pool.controller_owner_ref(&()).map(|r| vec![r]),
        ..Default::default()
    }
}

fn env(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        value_from: None,
    }
}

/// The gateway container's environment: the operator's settings, then the user's extras that do
/// not collide with them.
pub fn gateway_env(pool: &ShardPool, resolved: &Resolved) -> Vec<EnvVar> {
    let spec = &pool.spec;
    let intents: Vec<String> = spec
        .intents
        .iter()
        .filter_map(|i| serde_json::to_value(i).ok()?.as_str().map(str::to_owned))
        .collect();
    let nats = spec
        .nats
        .as_ref()
        .map(|n| n.servers.join(","))
        .filter(|servers| !servers.is_empty())
        .unwrap_or_else(|| resolved.default_nats.clone());
    let mut vars = vec![
        EnvVar {
            name: "DISCORD_TOKEN".into(),
            value: None,
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: spec.token_secret_ref.name.clone(),
                    key: spec
                        .token_secret_ref
                        .key
                        .clone()
                        .unwrap_or_else(|| TOKEN_KEY.into()),
                    optional: Some(false),
                }),
                ..Default::default()
            }),
        },
        env("LIVE_ASSIGNMENT", "true"),
        EnvVar {
            name: "POD_NAME".into(),
            value: None,
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    field_path: "metadata.name".into(),
                    api_version: None,
                }),
                ..Default::default()
            }),
        },
        env("POOL_NAME", kv_pool_name(pool)),
        env("NATS_URL", nats),
        env("INTENTS", intents.join(",")),
        env(
            "MAX_CONCURRENCY",
            resolved.max_concurrency.max(1).to_string(),
        ),
        env("HTTP_PORT", HTTP_PORT.to_string()),
    ];
    if let Some(prefix) = &spec.subject_prefix {
        vars.push(env("SUBJECT_PREFIX", prefix.clone()));
    }
    let ours: Vec<String> = vars.iter().map(|v| v.name.clone()).collect();
    vars.extend(
        spec.pod
            .env
            .iter()
            .filter(|v| !ours.contains(&v.name))
            .cloned(),
    );
    vars
}

fn probe(path: &str) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String("http".into()),
            ..Default::default()
        }),
        period_seconds: Some(5),
        ..Default::default()
    }
}

/// The gateway StatefulSet with `replicas` pods.
pub fn statefulset(pool: &ShardPool, resolved: &Resolved, replicas: i32) -> StatefulSet {
    let overrides = &pool.spec.pod;
    let mut pod_labels = overrides.pod_labels.clone();
    pod_labels.extend(labels(pool));
    let container = Container {
        name: "gateway".into(),
        image: Some(
            overrides
                .image
                .clone()
                .unwrap_or_else(|| resolved.default_image.clone()),
        ),
        image_pull_policy: overrides
            .image_pull_policy
            .and_then(|p| serde_json::to_value(p).ok()?.as_str().map(str::to_owned)),
        env: Some(gateway_env(pool, resolved)),
        ports: Some(vec![ContainerPort {
            name: Some("http".into()),
            container_port: HTTP_PORT,
            ..Default::default()
        }]),
        readiness_probe: Some(probe("/ready")),
        liveness_probe: Some(probe("/health")),
        resources: overrides.resources.clone(),
        security_context: overrides.security_context.clone(),
        ..Default::default()
    };
    StatefulSet {
        metadata: metadata(pool),
        spec: Some(StatefulSetSpec {
            replicas: Some(replicas),
            service_name: Some(workload_name(pool)),
            // Pods start and stop together: shards move by lease, not by pod order.
            pod_management_policy: Some("Parallel".into()),
            selector: LabelSelector {
                match_labels: Some(selector_labels(pool)),
                ..Default::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    annotations: (!overrides.pod_annotations.is_empty())
                        .then(|| overrides.pod_annotations.clone()),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![container],
                    termination_grace_period_seconds: Some(GRACE_SECONDS),
                    image_pull_secrets: (!overrides.image_pull_secrets.is_empty())
                        .then(|| overrides.image_pull_secrets.clone()),
                    node_selector: (!overrides.node_selector.is_empty())
                        .then(|| overrides.node_selector.clone()),
                    tolerations: (!overrides.tolerations.is_empty())
                        .then(|| overrides.tolerations.clone()),
                    affinity: overrides.affinity.clone(),
                    topology_spread_constraints: (!overrides
                        .topology_spread_constraints
                        .is_empty())
                    .then(|| overrides.topology_spread_constraints.clone()),
                    priority_class_name: overrides.priority_class_name.clone(),
                    service_account_name: overrides.service_account_name.clone(),
                    security_context: overrides.pod_security_context.clone(),
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        status: None,
    }
}

/// The headless Service that names the gateway pods.
pub fn service(pool: &ShardPool) -> Service {
    Service {
        metadata: metadata(pool),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            selector: Some(selector_labels(pool)),
            publish_not_ready_addresses: Some(true),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: HTTP_PORT,
                target_port: Some(IntOrString::String("http".into())),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        status: None,
    }
}

/// At most one gateway pod down at a time by voluntary disruption: its shards move meanwhile.
pub fn disruption_budget(pool: &ShardPool) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: metadata(pool),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(selector_labels(pool)),
                ..Default::default()
            }),
            ..Default::default()
        }),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(yaml: &str) -> ShardPool {
        let mut pool: ShardPool = serde_yaml::from_str(yaml).expect("valid ShardPool");
        pool.metadata.namespace = Some("bots".into());
        pool.metadata.uid = Some("uid-1".into());
        pool
    }

    fn resolved() -> Resolved {
        Resolved {
            total_shards: 100,
            max_concurrency: 16,
            default_nats: "nats://nats:4222".into(),
            default_image: "arrakis-gateway:0.1.0".into(),
        }
    }

    const POOL: &str = "apiVersion: arrakis.dev/v1alpha1\nkind: ShardPool\nmetadata: {name: main}\nspec:\n  shards: 100\n  tokenSecretRef: {name: discord}\n";

    fn value<'a>(vars: &'a [EnvVar], name: &str) -> Option<&'a str> {
        vars.iter().find(|v| v.name == name)?.value.as_deref()
    }

    #[test]
    fn pods_follow_the_live_assignment_with_the_token_from_the_secret() {
        let p = pool(POOL);
        let vars = gateway_env(&p, &resolved());
        assert_eq!(value(&vars, "LIVE_ASSIGNMENT"), Some("true"));
        assert_eq!(value(&vars, "POOL_NAME"), Some("bots_main"));
        assert_eq!(value(&vars, "NATS_URL"), Some("nats://nats:4222"));
        assert_eq!(value(&vars, "INTENTS"), Some("GUILDS,GUILD_MEMBERS"));
        assert_eq!(value(&vars, "MAX_CONCURRENCY"), Some("16"));
        let token = vars.iter().find(|v| v.name == "DISCORD_TOKEN").unwrap();
        assert_eq!(token.value, None, "never inline");
        let secret = token
            .value_from
            .as_ref()
            .unwrap()
            .secret_key_ref
            .as_ref()
            .unwrap();
        assert_eq!(
            (secret.name.as_str(), secret.key.as_str()),
            ("discord", "token")
        );
        let pod_name = vars.iter().find(|v| v.name == "POD_NAME").unwrap();
        assert_eq!(
            pod_name
                .value_from
                .as_ref()
                .unwrap()
                .field_ref
                .as_ref()
                .unwrap()
                .field_path,
            "metadata.name"
        );
    }

    #[test]
    fn user_env_and_labels_cannot_override_the_operators() {
        let p = pool(&format!(
            "{POOL}  pod:\n    env: [{{name: LIVE_ASSIGNMENT, value: \"false\"}}, {{name: RUST_BACKTRACE, value: \"1\"}}]\n    podLabels: {{app.kubernetes.io/name: other, team: bots}}\n"
        ));
        let vars = gateway_env(&p, &resolved());
        assert_eq!(value(&vars, "LIVE_ASSIGNMENT"), Some("true"));
        assert_eq!(value(&vars, "RUST_BACKTRACE"), Some("1"));
        let set = statefulset(&p, &resolved(), 4);
        let labels = set.spec.unwrap().template.metadata.unwrap().labels.unwrap();
        assert_eq!(labels["app.kubernetes.io/name"], "arrakis-gateway");
        assert_eq!(labels["team"], "bots");
    }

    #[test]
    fn children_are_owned_labelled_and_sized() {
        let p = pool(POOL);
        assert_eq!(replicas(&p, 100), 4, "25 shards per pod by default");
        assert_eq!(
            replicas(&pool(&format!("{POOL}  shardsPerPod: 30\n")), 100),
            4
        );
        assert_eq!(replicas(&pool(&format!("{POOL}  replicas: 7\n")), 100), 7);
        let set = statefulset(&p, &resolved(), 4);
        assert_eq!(set.metadata.name.as_deref(), Some("main-gateway"));
        assert_eq!(
            set.metadata.owner_references.as_ref().unwrap()[0].kind,
            "ShardPool"
        );
        let spec = set.spec.unwrap();
        assert_eq!(spec.replicas, Some(4));
        assert_eq!(spec.service_name.as_deref(), Some("main-gateway"));
        let template_labels = spec.template.metadata.unwrap().labels.unwrap();
        for (key, value) in spec.selector.match_labels.unwrap() {
            assert_eq!(
                template_labels[&key], value,
                "the selector matches the pods"
            );
        }
        let service = service(&p);
        assert_eq!(service.spec.unwrap().cluster_ip.as_deref(), Some("None"));
        assert_eq!(
            disruption_budget(&p).spec.unwrap().max_unavailable,
            Some(IntOrString::Int(1))
        );
    }

    #[test]
    fn every_intent_name_is_one_the_gateway_accepts() {
        use crate::api::shard_pool::Intent;
        let all: Vec<String> = schemars::schema_for!(Intent)
            .as_value()
            .pointer("/enum")
            .and_then(|v| v.as_array())
            .expect("an enum schema")
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect();
        assert!(all.len() > 10);
        arrakis_gateway::config::parse_intents(&all).expect("the gateway knows every intent name");
    }
}
