//! A real nats-server with JetStream: create a stream, publish, consume, ack.

use std::time::Duration;

use arrakis_e2e::nats::NatsServer;
use async_nats::jetstream::{self, consumer, stream};
use futures::StreamExt;

#[tokio::test]
async fn publish_consume_and_ack_on_a_workqueue_stream() -> anyhow::Result<()> {
    let server = NatsServer::start().await?;
    let js = jetstream::new(server.connect().await?);

    // Shaped like the seed's COMMANDS stream.
    let mut stream = js
        .create_stream(stream::Config {
            name: "COMMANDS".into(),
            subjects: vec!["commands.>".into()],
            storage: stream::StorageType::Memory,
            retention: stream::RetentionPolicy::WorkQueue,
            max_age: Duration::from_secs(60),
            ..Default::default()
        })
        .await?;

    const COUNT: usize = 50;
    let mut acks = Vec::with_capacity(COUNT);
    for i in 0..COUNT {
        acks.push(
            js.publish("commands.interaction", format!("{{\"n\":{i}}}").into())
                .await?,
        );
    }
    for (i, ack) in acks.into_iter().enumerate() {
        let ack = ack.await?;
        assert_eq!(ack.sequence, i as u64 + 1, "publish acks arrive in order");
    }
    assert_eq!(stream.info().await?.state.messages, COUNT as u64);

    let consumer = stream
        .create_consumer(consumer::pull::Config {
            durable_name: Some("command-worker".into()),
            ack_policy: consumer::AckPolicy::Explicit,
            max_ack_pending: 50,
            ack_wait: Duration::from_secs(30),
            ..Default::default()
        })
        .await?;
    let mut messages = consumer
        .fetch()
        .max_messages(COUNT)
        .expires(Duration::from_secs(5))
        .messages()
        .await?;
    let mut seen = Vec::new();
    while let Some(message) = messages.next().await {
        let message = message.map_err(|e| anyhow::anyhow!("{e}"))?;
        let body: serde_json::Value = serde_json::from_slice(&message.payload)?;
        seen.push(body["n"].as_u64().expect("n"));
        message
            .double_ack()
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    assert_eq!(
        seen,
        (0..COUNT as u64).collect::<Vec<_>>(),
        "every message, in order, once"
    );

    let mut consumer = consumer;
    let info = consumer.info().await?;
    assert_eq!((info.num_pending, info.num_ack_pending), (0, 0));
    // A work queue drops what was acked.
    assert_eq!(stream.info().await?.state.messages, 0);
    Ok(())
}
