//! The NatsConsumer reconciler against the local API server and a real nats-server: it waits for
//! its NatsStream, creates the consumer, reports lag, brings back a consumer deleted behind its
//! back, and deletes it with the resource.

use std::sync::Arc;
use std::time::Duration;

use arrakis_e2e::cluster::{self, TestNamespace};
use arrakis_e2e::nats::NatsServer;
use arrakis_e2e::wait;
use arrakis_operator::api::{NatsConsumer, NatsStream};
use arrakis_operator::context::Context;
use async_nats::jetstream;
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use serde_json::json;

const DEADLINE: Duration = Duration::from_secs(30);

async fn await_reason(api: &Api<NatsConsumer>, name: &str, reason: &'static str) -> NatsConsumer {
    let has_reason = move |object: Option<&NatsConsumer>| {
        object
            .and_then(|o| o.status.as_ref())
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
            .is_some_and(|c| c.reason == reason)
    };
    wait::await_condition(
        api,
        name,
        &format!("Ready has reason {reason}"),
        DEADLINE,
        has_reason,
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test]
async fn consumers_follow_their_stream_report_lag_and_come_back() {
    let client = cluster::client().await.expect("cluster");
    cluster::ensure_crds(&client).await.expect("CRDs");
    let ns = TestNamespace::create(&client, "consumer")
        .await
        .expect("namespace");
    let streams: Api<NatsStream> = ns.api();
    let consumers: Api<NatsConsumer> = ns.api();
    let nats = NatsServer::start().await.expect("nats-server");
    let js = jetstream::new(nats.connect().await.expect("connect"));
    let mut context = Context::new(client.clone(), nats.url(), None);
    context.resync = Duration::from_millis(500);
    let context = Arc::new(context);
    let controllers = [
        tokio::spawn(arrakis_operator::jetstream_controller::run(
            streams.clone(),
            context.clone(),
            std::future::pending(),
        )),
        tokio::spawn(arrakis_operator::jetstream_controller::run(
            consumers.clone(),
            context,
            std::future::pending(),
        )),
    ];
    let suffix = ns.name().rsplit('-').next().unwrap().to_uppercase();
    let outcome = tokio::spawn(scenario(js, suffix, streams.clone(), consumers.clone())).await;
    for controller in controllers {
        controller.abort();
    }
    if let Err(failure) = outcome {
        // The controllers are gone: let the namespace go.
        cluster::strip_finalizers(&consumers).await;
        cluster::strip_finalizers(&streams).await;
        std::panic::resume_unwind(failure.into_panic());
    }
}

async fn scenario(
    js: jetstream::Context,
    suffix: String,
    streams: Api<NatsStream>,
    consumers: Api<NatsConsumer>,
) {
    let stream_name = format!("WORK_{suffix}");
    let subject_root = stream_name.to_lowercase();
    let consumer: NatsConsumer = serde_json::from_value(json!({
        "apiVersion": "arrakis.dev/v1alpha1", "kind": "NatsConsumer",
        "metadata": {"name": "worker"},
        "spec": {"streamRef": {"name": "work"}, "durableName": "worker", "ackWait": "10s", "maxDeliver": 5},
    }))
    .unwrap();
    // Before its stream exists it says so.
    consumers
        .create(&PostParams::default(), &consumer)
        .await
        .expect("created");
    let waiting = await_reason(&consumers, "worker", "StreamNotFound").await;
    assert!(
        waiting.status.unwrap().conditions[0]
            .message
            .contains("NatsStream work does not exist")
    );

    let stream: NatsStream = serde_json::from_value(json!({
        "apiVersion": "arrakis.dev/v1alpha1", "kind": "NatsStream",
        "metadata": {"name": "work"},
        "spec": {"name": stream_name, "subjects": [format!("{subject_root}.>")], "storage": "Memory"},
    }))
    .unwrap();
    streams
        .create(&PostParams::default(), &stream)
        .await
        .expect("created");
    await_reason(&consumers, "worker", "Synced").await;
    let info = js
        .get_stream(&stream_name)
        .await
        .unwrap()
        .consumer_info("worker")
        .await
        .expect("consumer exists");
    assert_eq!(info.config.ack_wait, Duration::from_secs(10));
    assert_eq!(info.config.max_deliver, 5);

    // Lag: three messages nobody consumed.
    for n in 0..3 {
        js.publish(format!("{subject_root}.x"), format!("{n}").into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    wait::await_condition(
        &consumers,
        "worker",
        "numPending is 3",
        DEADLINE,
        |o: Option<&NatsConsumer>| {
            o.and_then(|o| o.status.as_ref())
                .and_then(|s| s.num_pending)
                == Some(3)
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));

    // Deleted on the server: back.
    js.get_stream(&stream_name)
        .await
        .unwrap()
        .delete_consumer("worker")
        .await
        .expect("deleted on the server");
    let back = wait::until(DEADLINE, || async {
        js.get_stream(&stream_name)
            .await
            .ok()?
            .consumer_info("worker")
            .await
            .ok()
            .map(|_| ())
    })
    .await;
    assert!(back.is_some(), "the consumer was not recreated");

    // Deleted with its resource.
    consumers
        .delete("worker", &DeleteParams::default())
        .await
        .expect("deleted");
    let gone = wait::until(DEADLINE, || async {
        let resource_gone = consumers.get_opt("worker").await.ok()?.is_none();
        let server_gone = js
            .get_stream(&stream_name)
            .await
            .ok()?
            .consumer_info("worker")
            .await
            .is_err();
        (resource_gone && server_gone).then_some(())
    })
    .await;
    assert!(
        gone.is_some(),
        "the consumer outlived its resource: {}",
        wait::describe(&consumers, "worker").await
    );
    streams
        .delete("work", &DeleteParams::default())
        .await
        .expect("deleted");
    let stream_gone = wait::until(DEADLINE, || async {
        streams.get_opt("work").await.ok()?.is_none().then_some(())
    })
    .await;
    assert!(
        stream_gone.is_some(),
        "the stream resource was not finalized"
    );
}
