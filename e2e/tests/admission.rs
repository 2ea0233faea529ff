//! Invalid objects are refused at admission by the real API server, each with a message that says
//! what to change. Every case is a valid base object plus one change, so it fails for the reason it names.

use arrakis_e2e::cluster::{self, TestNamespace};
use arrakis_e2e::objects::dynamic_api;
use kube::Client;
use kube::api::{DynamicObject, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

#[derive(Clone, Copy)]
enum Kind {
    ShardPool,
    NatsStream,
    NatsConsumer,
}

enum Change {
    /// Create the base with this merge patch applied.
    Create(Value),
    /// Create the base with the first merge patch applied, then send the second as an update.
    Update(Value, Value),
}

struct Case {
    name: &'static str,
    kind: Kind,
    change: Change,
    /// A fragment the API server's error must contain.
    expect: &'static str,
}

fn base(kind: Kind, name: &str) -> Value {
    match kind {
        Kind::ShardPool => json!({
            "apiVersion": "arrakis.dev/v1alpha1", "kind": "ShardPool",
            "metadata": {"name": name},
            "spec": {"shards": 10, "tokenSecretRef": {"name": "bot"}}
        }),
        Kind::NatsStream => json!({
            "apiVersion": "arrakis.dev/v1alpha1", "kind": "NatsStream",
            "metadata": {"name": name},
            "spec": {"name": "CASE", "subjects": ["case.>"], "storage": "Memory", "maxAge": "5m"}
        }),
        Kind::NatsConsumer => json!({
            "apiVersion": "arrakis.dev/v1alpha1", "kind": "NatsConsumer",
            "metadata": {"name": name},
            "spec": {"streamRef": {"name": "case"}, "durableName": "worker", "maxDeliver": 5}
        }),
    }
}

fn cases() -> Vec<Case> {
    use Change::{Create, Update};
    use Kind::*;
    let case = |name, kind, change, expect| Case {
        name,
        kind,
        change,
        expect,
    };
    vec![
        // ShardPool
        case(
            "shards zero",
            ShardPool,
            Create(json!({"spec": {"shards": 0}})),
            "shards must be a whole number from 1 to 100000, or \"auto\"",
        ),
        case(
            "shards words",
            ShardPool,
            Create(json!({"spec": {"shards": "lots"}})),
            "shards must be a whole number from 1 to 100000, or \"auto\"",
        ),
        case(
            "more pods than shards",
            ShardPool,
            Create(json!({"spec": {"shards": 2, "replicas": 5}})),
            "replicas must not exceed shards",
        ),
        case(
            "negative replicas",
            ShardPool,
            Create(json!({"spec": {"replicas": -1}})),
            "spec.replicas: Invalid value: -1: spec.replicas in body should be greater than or equal to 0",
        ),
        case(
            "no token secret",
            ShardPool,
            Create(json!({"spec": {"tokenSecretRef": null}})),
            "spec.tokenSecretRef: Required value",
        ),
        case(
            "unknown intent",
            ShardPool,
            Create(json!({"spec": {"intents": ["GUILDS", "GUILD_CHAT"]}})),
            "Unsupported value: \"GUILD_CHAT\"",
        ),
        case(
            "no intents",
            ShardPool,
            Create(json!({"spec": {"intents": []}})),
            "spec.intents in body should have at least 1 items",
        ),
        case(
            "duplicate intents",
            ShardPool,
            Create(json!({"spec": {"intents": ["GUILDS", "GUILDS"]}})),
            "Duplicate value: \"GUILDS\"",
        ),
        case(
            "subject prefix with wildcard",
            ShardPool,
            Create(json!({"spec": {"subjectPrefix": "bot.*"}})),
            "spec.subjectPrefix in body should match",
        ),
        case(
            "http NATS url",
            ShardPool,
            Create(json!({"spec": {"nats": {"servers": ["http://nats:4222"]}}})),
            "spec.nats.servers[0] in body should match",
        ),
        case(
            "half a client certificate",
            ShardPool,
            Create(
                json!({"spec": {"nats": {"tls": {"secretName": "nats-tls", "certKey": "tls.crt"}}}}),
            ),
            "tls.certKey and tls.keyKey go together",
        ),
        // NatsStream
        case(
            "stream name with a dot",
            NatsStream,
            Create(json!({"spec": {"name": "COM.MANDS"}})),
            "spec.name in body should match",
        ),
        case(
            "no subjects",
            NatsStream,
            Create(json!({"spec": {"subjects": []}})),
            "spec.subjects in body should have at least 1 items",
        ),
        case(
            "wildcard not last",
            NatsStream,
            Create(json!({"spec": {"subjects": ["commands.>.x"]}})),
            "spec.subjects[0] in body should match",
        ),
        case(
            "unknown storage",
            NatsStream,
            Create(json!({"spec": {"storage": "Disk"}})),
            "Unsupported value: \"Disk\"",
        ),
        case(
            "max age in words",
            NatsStream,
            Create(json!({"spec": {"maxAge": "5 minutes"}})),
            "spec.maxAge in body should match",
        ),
        case(
            "duplicate window past max age",
            NatsStream,
            Create(json!({"spec": {"maxAge": "60s", "duplicateWindow": "10m"}})),
            "duplicateWindow must not be longer than maxAge",
        ),
        case(
            "seven replicas",
            NatsStream,
            Create(json!({"spec": {"replicas": 7}})),
            "spec.replicas in body should be less than or equal to 5",
        ),
        case(
            "discard new per subject without discard new",
            NatsStream,
            Create(json!({"spec": {"discardNewPerSubject": true, "maxMsgsPerSubject": 10}})),
            "discardNewPerSubject needs discard: New",
        ),
        case(
            "rename stream",
            NatsStream,
            Update(json!({}), json!({"spec": {"name": "OTHER"}})),
            "name is immutable",
        ),
        case(
            "memory to file",
            NatsStream,
            Update(json!({}), json!({"spec": {"storage": "File"}})),
            "storage is immutable",
        ),
        case(
            "limits to workqueue",
            NatsStream,
            Update(json!({}), json!({"spec": {"retention": "WorkQueue"}})),
            "retention cannot change to or from WorkQueue",
        ),
        case(
            "deny delete back off",
            NatsStream,
            Update(
                json!({"spec": {"denyDelete": true}}),
                json!({"spec": {"denyDelete": null}}),
            ),
            "denyDelete cannot be turned off once set",
        ),
        // NatsConsumer
        case(
            "backoff longer than max deliver",
            NatsConsumer,
            Create(json!({"spec": {"maxDeliver": 3, "backoff": ["1s", "5s", "30s"]}})),
            "set maxDeliver above the number of backoff steps",
        ),
        case(
            "max deliver zero",
            NatsConsumer,
            Create(json!({"spec": {"maxDeliver": 0}})),
            "maxDeliver must be -1 (no limit) or at least 1",
        ),
        case(
            "start sequence missing",
            NatsConsumer,
            Create(json!({"spec": {"deliverPolicy": "ByStartSequence"}})),
            "optStartSeq goes with deliverPolicy ByStartSequence",
        ),
        case(
            "start time without policy",
            NatsConsumer,
            Create(json!({"spec": {"optStartTime": "2026-01-15T00:00:00Z"}})),
            "optStartTime goes with deliverPolicy ByStartTime",
        ),
        case(
            "durable name with a dot",
            NatsConsumer,
            Create(json!({"spec": {"durableName": "command.worker"}})),
            "spec.durableName in body should match",
        ),
        case(
            "ack wait in words",
            NatsConsumer,
            Create(json!({"spec": {"ackWait": "forever"}})),
            "spec.ackWait in body should match",
        ),
        case(
            "worker without explicit acks",
            NatsConsumer,
            Create(json!({"spec": {"ackPolicy": "None", "worker": {"replicas": 1}}})),
            "a worker acknowledges each message: set ackPolicy to Explicit",
        ),
        case(
            "autoscaling min above max",
            NatsConsumer,
            Create(
                json!({"spec": {"worker": {"autoscaling": {"minReplicas": 5, "maxReplicas": 2, "targetLagPerReplica": 100}}}}),
            ),
            "autoscaling.minReplicas must not exceed autoscaling.maxReplicas",
        ),
        case(
            "replicas and autoscaling",
            NatsConsumer,
            Create(
                json!({"spec": {"worker": {"replicas": 2, "autoscaling": {"maxReplicas": 4, "targetLagPerReplica": 100}}}}),
            ),
            "set either replicas or autoscaling, not both",
        ),
        case(
            "two handler sources",
            NatsConsumer,
            Create(
                json!({"spec": {"worker": {"handlers": {"configMapRef": {"name": "routes"}, "inline": "routes: []"}}}}),
            ),
            "handlers needs exactly one of configMapRef or inline",
        ),
        case(
            "rename durable",
            NatsConsumer,
            Update(json!({}), json!({"spec": {"durableName": "other"}})),
            "durableName is immutable",
        ),
        case(
            "change ack policy",
            NatsConsumer,
            Update(json!({}), json!({"spec": {"ackPolicy": "All"}})),
            "ackPolicy is immutable",
        ),
        case(
            "move to another stream",
            NatsConsumer,
            Update(json!({}), json!({"spec": {"streamRef": {"name": "other"}}})),
            "streamRef is immutable",
        ),
        case(
            "change deliver policy",
            NatsConsumer,
            Update(json!({}), json!({"spec": {"deliverPolicy": "New"}})),
            "deliverPolicy is immutable",
        ),
    ]
}

/// RFC 7386 JSON merge patch: objects merge, null deletes, anything else replaces.
fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(target), Value::Object(patch)) => {
            for (key, value) in patch {
                if value.is_null() {
                    target.remove(key);
                } else {
                    merge(target.entry(key.clone()).or_insert(Value::Null), value);
                }
            }
        }
        (target, patch) => *target = patch.clone(),
    }
}

async fn create(client: &Client, ns: &str, object: Value) -> Result<(), kube::Error> {
    let object: DynamicObject =
        serde_json::from_value(object).expect("case objects are well-formed");
    let api = dynamic_api(client, ns, &object).expect("Arrakis kind");
    api.create(&PostParams::default(), &object).await.map(drop)
}

/// Runs one case; returns the API server's refusal, or a description of what went wrong instead.
async fn run(client: &Client, ns: &str, index: usize, case: &Case) -> Result<String, String> {
    let name = format!("case-{index}");
    let mut object = base(case.kind, &name);
    let outcome = match &case.change {
        Change::Create(patch) => {
            merge(&mut object, patch);
            create(client, ns, object).await
        }
        Change::Update(before, patch) => {
            merge(&mut object, before);
            create(client, ns, object.clone())
                .await
                .map_err(|e| format!("the valid base was refused: {e}"))?;
            let typed: DynamicObject = serde_json::from_value(object).expect("well-formed");
            let api = dynamic_api(client, ns, &typed).expect("Arrakis kind");
            api.patch(&name, &PatchParams::default(), &Patch::Merge(patch))
                .await
                .map(drop)
        }
    };
    match outcome {
        Ok(()) => Err("was accepted".into()),
        Err(kube::Error::Api(status)) if status.code == 422 => Ok(status.message),
        Err(e) => Err(format!("failed for another reason: {e}")),
    }
}

#[tokio::test]
async fn invalid_objects_are_refused_with_a_message_saying_what_to_change() -> anyhow::Result<()> {
    let client = cluster::client().await?;
    cluster::ensure_crds(&client).await?;
    let ns = TestNamespace::create(&client, "admission").await?;

    // The bases themselves are valid, so each case fails only through its own change.
    for (i, kind) in [Kind::ShardPool, Kind::NatsStream, Kind::NatsConsumer]
        .into_iter()
        .enumerate()
    {
        create(&client, ns.name(), base(kind, &format!("valid-{i}"))).await?;
    }

    let cases = cases();
    assert!(cases.len() >= 20, "the table keeps at least 20 cases");
    let mut failures = Vec::new();
    for (index, case) in cases.iter().enumerate() {
        match run(&client, ns.name(), index, case).await {
            Ok(message) if message.contains(case.expect) => {}
            Ok(message) => failures.push(format!(
                "{}: refused, but the message lacks {:?}:\n    {message}",
                case.name, case.expect
            )),
            Err(problem) => failures.push(format!("{}: {problem}", case.name)),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases did not behave:\n  {}",
        failures.len(),
        cases.len(),
        failures.join("\n  ")
    );
    Ok(())
}

#[test]
fn merge_patch_follows_rfc_7386() {
    let mut target = json!({"a": 1, "b": {"c": 2, "d": 3}});
    merge(&mut target, &json!({"a": null, "b": {"c": 9}, "e": [1]}));
    assert_eq!(target, json!({"b": {"c": 9, "d": 3}, "e": [1]}));
}
