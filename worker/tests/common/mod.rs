//! Helpers for the worker's suites: streams and consumers on a real nats-server, the worker as a
//! child process, a scripted HTTP handler service for the bridge, bounded waits.

#![allow(dead_code)] // Each suite uses its own subset.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrakis_contract::GatewayEvent;
use arrakis_e2e::nats::NatsServer;
use arrakis_e2e::wait;
use async_nats::jetstream::{self, consumer, stream};
use axum::Json;
use axum::http::{HeaderMap, StatusCode};
use serde_json::Value;
use tokio::process::{Child, Command};

pub const DEADLINE: Duration = Duration::from_secs(30);

pub struct Worker {
    pub child: Child,
    pub http_port: u16,
}

pub fn free_port() -> u16 {
    arrakis_e2e::net::free_port().expect("free port")
}

/// COMMANDS (work queue) and EVENTS, as the seed has them (memory storage for speed).
pub async fn streams(js: &jetstream::Context) {
    js.create_stream(stream::Config {
        name: "COMMANDS".into(),
        subjects: vec!["commands.>".into()],
        retention: stream::RetentionPolicy::WorkQueue,
        storage: stream::StorageType::Memory,
        ..Default::default()
    })
    .await
    .expect("COMMANDS");
    js.create_stream(stream::Config {
        name: "EVENTS".into(),
        subjects: vec!["events.>".into()],
        storage: stream::StorageType::Memory,
        ..Default::default()
    })
    .await
    .expect("EVENTS");
}

pub async fn durable(
    js: &jetstream::Context,
    stream: &str,
    name: &str,
    config: consumer::pull::Config,
) {
    js.get_stream(stream)
        .await
        .expect("stream")
        .create_consumer(consumer::pull::Config {
            durable_name: Some(name.into()),
            ack_policy: consumer::AckPolicy::Explicit,
            ..config
        })
        .await
        .expect("consumer");
}

pub fn worker(nats: &NatsServer, consumers: &str, env: &[(&str, &str)]) -> Worker {
    let http_port = free_port();
    let mut command = Command::new(env!("CARGO_BIN_EXE_arrakis-worker"));
    command
        .env_clear()
        .env("NATS_URL", nats.url())
        .env("CONSUMERS", consumers)
        .env("HTTP_PORT", http_port.to_string())
        .env("DRAIN_SECONDS", "5")
        .env("LOG_LEVEL", "error")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    Worker {
        child: command.spawn().expect("worker starts"),
        http_port,
    }
}

pub async fn publish(js: &jetstream::Context, subject: &str, payload: Vec<u8>) -> u64 {
    js.publish(subject.to_owned(), payload.into())
        .await
        .expect("published")
        .await
        .expect("stored")
        .sequence
}

pub async fn publish_event(js: &jetstream::Context, subject: &str, event: &GatewayEvent) -> u64 {
    publish(js, subject, serde_json::to_vec(event).unwrap()).await
}

/// Waits until `consumer` has nothing pending and nothing unacked.
pub async fn await_settled(js: &jetstream::Context, stream: &str, name: &str) {
    let settled = wait::until(DEADLINE, || async {
        let mut consumer: consumer::PullConsumer = js
            .get_stream(stream)
            .await
            .ok()?
            .get_consumer(name)
            .await
            .ok()?;
        let info = consumer.info().await.ok()?;
        (info.num_pending == 0 && info.num_ack_pending == 0 && info.delivered.stream_sequence > 0)
            .then_some(())
    })
    .await;
    assert!(
        settled.is_some(),
        "consumer {stream}/{name} did not settle within {DEADLINE:?}"
    );
}

/// Every message of the dead-letter stream: (headers as pairs, payload).
pub async fn dead_letters(
    js: &jetstream::Context,
    at_least: u64,
) -> Vec<(Vec<(String, String)>, Vec<u8>)> {
    let found = wait::until(DEADLINE, || async {
        let mut stream = js.get_stream("DEAD_LETTERS").await.ok()?;
        (stream.info().await.ok()?.state.messages >= at_least).then_some(())
    })
    .await;
    let mut stream = js
        .get_stream("DEAD_LETTERS")
        .await
        .expect("dead-letter stream");
    let state = stream.info().await.unwrap().state.clone();
    assert!(
        found.is_some(),
        "expected {at_least} dead letters within {DEADLINE:?}, found {}",
        state.messages
    );
    let mut out = Vec::new();
    for seq in state.first_sequence..=state.last_sequence {
        let message = stream.get_raw_message(seq).await.expect("dead letter");
        let headers = message
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    v.iter()
                        .map(|x| x.to_string())
                        .collect::<Vec<_>>()
                        .join(","),
                )
            })
            .collect();
        out.push((headers, message.payload.to_vec()));
    }
    out
}

pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> &'a str {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("header {name} missing in {headers:?}"))
}

/// A handler service for the bridge: answers the n-th request (from 0) with `script(n)`, and
/// records every request's JSON body and event id header.
pub struct Service {
    pub url: String,
    pub requests: Requests,
}

/// Each request's `x-arrakis-event-id` header and JSON body, in arrival order.
pub type Requests = Arc<Mutex<Vec<(Option<String>, Value)>>>;

type Script = Arc<dyn Fn(usize) -> (StatusCode, Value) + Send + Sync>;

impl Service {
    pub async fn start(
        script: impl Fn(usize) -> (StatusCode, Value) + Send + Sync + 'static,
    ) -> Self {
        Self::slow(Duration::ZERO, script).await
    }

    /// Like `start`, but every answer takes `delay`.
    pub async fn slow(
        delay: Duration,
        script: impl Fn(usize) -> (StatusCode, Value) + Send + Sync + 'static,
    ) -> Self {
        let requests: Requests = Arc::default();
        let script: Script = Arc::new(script);
        let recorded = requests.clone();
        let app = axum::Router::new().route(
            "/events",
            axum::routing::post(move |headers: HeaderMap, Json(body): Json<Value>| {
                let recorded = recorded.clone();
                let script = script.clone();
                async move {
                    let n = {
                        let mut requests = recorded.lock().unwrap();
                        let id = headers
                            .get("x-arrakis-event-id")
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_owned);
                        requests.push((id, body));
                        requests.len() - 1
                    };
                    tokio::time::sleep(delay).await;
                    let (status, body) = script(n);
                    (status, Json(body))
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/events", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Service { url, requests }
    }

    pub fn count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }
}

/// A handlers config routing `routes` to one bridge named `svc` at `url`, written to a temp file.
pub fn bridge_config(url: &str, routes: &[&str], extra: &str) -> tempfile::NamedTempFile {
    let mut text = format!("bridges:\n  svc: {{url: \"{url}\", timeout: 2s}}\nroutes:\n");
    for route in routes {
        text.push_str(&format!("  {route}: {{bridge: svc}}\n"));
    }
    text.push_str(extra);
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), text).unwrap();
    file
}

pub fn member_join(guild: u64, user: u64) -> GatewayEvent {
    GatewayEvent::from_dispatch(
        format!("member.join:{guild}:{user}:2026-11-23T10:00:00.000000+00:00"),
        "GUILD_MEMBER_ADD",
        0,
        arrakis_worker::state::now_ms(),
        serde_json::json!({
            "guild_id": guild.to_string(),
            "user": {"id": user.to_string(), "username": format!("user{user}")},
            "roles": ["1"],
            "joined_at": "2026-11-23T10:00:00.000000+00:00",
        }),
    )
}

pub async fn terminate(mut worker: Worker) {
    let pid = worker.child.id().expect("running").to_string();
    Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .expect("kill");
    let status = tokio::time::timeout(DEADLINE, worker.child.wait())
        .await
        .expect("exits after SIGTERM")
        .expect("wait");
    assert!(status.success(), "graceful shutdown exits 0, got {status}");
}
