//! The NatsStream reconciler against the local API server and a real nats-server: create to Ready,
//! drift correction (a stream deleted or edited behind its back), the conflict rule, changes
//! JetStream cannot apply, deletion policies and the `managed: "false"` annotation.

use std::sync::Arc;
use std::time::Duration;

use arrakis_e2e::cluster::{self, TestNamespace};
use arrakis_e2e::nats::NatsServer;
use arrakis_e2e::wait;
use arrakis_operator::api::NatsStream;
use arrakis_operator::context::Context;
use async_nats::jetstream;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};

const DEADLINE: Duration = Duration::from_secs(30);

fn stream(name: &str, stream_name: &str, extra: serde_json::Value) -> NatsStream {
    let mut spec = serde_json::json!({"name": stream_name, "subjects": [format!("{}.>", stream_name.to_lowercase())]});
    spec.as_object_mut()
        .unwrap()
        .extend(extra.as_object().cloned().unwrap_or_default());
    serde_json::from_value(serde_json::json!({
        "apiVersion": "arrakis.dev/v1alpha1",
        "kind": "NatsStream",
        "metadata": {"name": name},
        "spec": spec,
    }))
    .expect("valid NatsStream")
}

fn ready_with(reason: &'static str) -> impl Fn(Option<&NatsStream>) -> bool {
    move |object: Option<&NatsStream>| {
        object
            .and_then(|o| o.status.as_ref())
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
            .is_some_and(|c| c.reason == reason)
    }
}

async fn await_reason(api: &Api<NatsStream>, name: &str, reason: &'static str) -> NatsStream {
    wait::await_condition(
        api,
        name,
        &format!("Ready has reason {reason}"),
        DEADLINE,
        ready_with(reason),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"))
}

/// Waits until `check` holds for the stream named `name` on the server (None when absent).
async fn await_server(
    js: &jetstream::Context,
    name: &str,
    what: &str,
    check: impl Fn(Option<&jetstream::stream::Config>) -> bool,
) {
    let found = wait::until(DEADLINE, || async {
        let config = match js.get_stream(name).await {
            Ok(mut stream) => Some(stream.info().await.ok()?.config.clone()),
            Err(_) => None,
        };
        check(config.as_ref()).then_some(())
    })
    .await;
    assert!(
        found.is_some(),
        "stream {name} never {what} within {DEADLINE:?}"
    );
}

#[tokio::test]
async fn streams_are_created_kept_in_line_and_deleted_by_policy() {
    let client = cluster::client().await.expect("cluster");
    cluster::ensure_crds(&client).await.expect("CRDs");
    let ns = TestNamespace::create(&client, "stream")
        .await
        .expect("namespace");
    let api: Api<NatsStream> = ns.api();
    let nats = NatsServer::start().await.expect("nats-server");
    let js = jetstream::new(nats.connect().await.expect("connect"));
    let mut context = Context::new(client.clone(), nats.url(), None);
    context.resync = Duration::from_millis(500);
    let metrics = context.metrics.clone();
    let controller = tokio::spawn(arrakis_operator::jetstream_controller::run(
        api.clone(),
        Arc::new(context),
        std::future::pending(),
    ));
    // Run in a task so that, if it fails, the finalizers it left are removed (with the controller
    // stopped) before the namespace is deleted.
    let outcome = tokio::spawn(scenario(js, ns.name().to_owned(), api.clone())).await;
    controller.abort();
    if let Err(failure) = outcome {
        cluster::strip_finalizers(&api).await;
        std::panic::resume_unwind(failure.into_panic());
    }
    let rendered = metrics.render();
    assert!(
        rendered.contains(r#"arrakis_operator_reconciles_total{kind="NatsStream",result="ok"}"#),
        "{rendered}"
    );
}

async fn scenario(js: jetstream::Context, namespace: String, api: Api<NatsStream>) {
    // Stream names unique to this namespace: the conflict rule looks across namespaces.
    let suffix = namespace.rsplit('-').next().unwrap().to_uppercase();
    let main_stream = format!("MAIN_{suffix}");

    // Created, Ready, with the spec's settings and the server's defaults left alone.
    api.create(
        &PostParams::default(),
        &stream(
            "main",
            &main_stream,
            serde_json::json!({"maxAge": "5m", "storage": "Memory"}),
        ),
    )
    .await
    .expect("created");
    let ready = await_reason(&api, "main", "Synced").await;
    assert!(
        ready
            .finalizers()
            .iter()
            .any(|f| f == "arrakis.dev/nats-stream")
    );
    assert_eq!(
        ready.status.as_ref().unwrap().observed_generation,
        ready.metadata.generation
    );
    assert!(
        ready.spec.duplicate_window.is_none(),
        "server defaults are not written back"
    );
    await_server(&js, &main_stream, "matched the spec", |c| {
        c.is_some_and(|c| c.max_age == Duration::from_secs(300))
    })
    .await;

    // Deleted behind the operator's back: recreated.
    js.delete_stream(&main_stream)
        .await
        .expect("deleted on the server");
    await_server(&js, &main_stream, "came back", |c| c.is_some()).await;

    // Edited behind its back: reverted.
    let mut edited = js
        .get_stream(&main_stream)
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .config
        .clone();
    edited.max_age = Duration::from_secs(240);
    js.update_stream(edited).await.expect("out-of-band edit");
    await_server(&js, &main_stream, "was reverted", |c| {
        c.is_some_and(|c| c.max_age == Duration::from_secs(300))
    })
    .await;

    // A second resource for the same stream loses to the older one.
    api.create(
        &PostParams::default(),
        &stream(
            "twin",
            &main_stream,
            serde_json::json!({"storage": "Memory"}),
        ),
    )
    .await
    .expect("created");
    let twin = await_reason(&api, "twin", "ResourceConflict").await;
    let message = &twin.status.unwrap().conditions[0].message;
    assert!(message.contains(&format!("{namespace}/main")), "{message}");

    // A change JetStream refuses in place is reported, not retried blindly: here, subjects that
    // overlap a stream the operator does not manage.
    let other = format!("other_{}", suffix.to_lowercase());
    js.create_stream(jetstream::stream::Config {
        name: format!("OTHER_{suffix}"),
        subjects: vec![format!("{other}.>")],
        storage: jetstream::stream::StorageType::Memory,
        ..Default::default()
    })
    .await
    .expect("unmanaged stream");
    let overlapping = serde_json::json!({"spec": {"subjects": [format!("{}.>", main_stream.to_lowercase()), format!("{other}.>")]}});
    api.patch("main", &PatchParams::default(), &Patch::Merge(&overlapping))
        .await
        .expect("patched");
    let refused = await_reason(&api, "main", "NotSupported").await;
    let condition = &refused.status.as_ref().unwrap().conditions[0];
    assert_eq!(condition.status, "False");
    assert!(
        condition.message.contains("overlap"),
        "{}",
        condition.message
    );
    assert!(
        condition.message.contains("Revert the change"),
        "{}",
        condition.message
    );
    let reverted =
        serde_json::json!({"spec": {"subjects": [format!("{}.>", main_stream.to_lowercase())]}});
    api.patch("main", &PatchParams::default(), &Patch::Merge(&reverted))
        .await
        .expect("reverted");
    await_reason(&api, "main", "Synced").await;

    // Deletion: the loser of a conflict leaves the stream alone; Retain keeps it; Delete removes it.
    delete_and_wait(&api, "twin").await;
    await_server(&js, &main_stream, "survived the twin's deletion", |c| {
        c.is_some()
    })
    .await;
    let kept = format!("KEPT_{suffix}");
    api.create(
        &PostParams::default(),
        &stream(
            "kept",
            &kept,
            serde_json::json!({"deletionPolicy": "Retain"}),
        ),
    )
    .await
    .expect("created");
    await_reason(&api, "kept", "Synced").await;
    delete_and_wait(&api, "kept").await;
    await_server(&js, &kept, "stayed (Retain)", |c| c.is_some()).await;
    delete_and_wait(&api, "main").await;
    await_server(&js, &main_stream, "was deleted (Delete)", |c| c.is_none()).await;

    // managed: "false" lets the resource go without touching the stream.
    let unmanaged = format!("LEFT_{suffix}");
    let mut object = stream("left", &unmanaged, serde_json::json!({}));
    api.create(&PostParams::default(), &object)
        .await
        .expect("created");
    await_reason(&api, "left", "Synced").await;
    object = api.get("left").await.unwrap();
    object
        .annotations_mut()
        .insert("arrakis.dev/managed".into(), "false".into());
    api.replace("left", &PostParams::default(), &object)
        .await
        .expect("annotated");
    await_reason(&api, "left", "Unmanaged").await;
    delete_and_wait(&api, "left").await;
    await_server(&js, &unmanaged, "stayed (unmanaged)", |c| c.is_some()).await;
}

/// Deletes `name` and waits until it is gone (the finalizer ran).
async fn delete_and_wait(api: &Api<NatsStream>, name: &str) {
    api.delete(name, &DeleteParams::default())
        .await
        .expect("deleted");
    let gone = wait::until(DEADLINE, || async {
        api.get_opt(name).await.ok()?.is_none().then_some(())
    })
    .await;
    assert!(
        gone.is_some(),
        "{name} was not finalized: {}",
        wait::describe(api, name).await
    );
}
