//! The consumer runtime against a real nats-server: ack, nak with backoff, term, dead letters with
//! their error, job status, malformed payloads, and effects that happen once across a kill -9.

mod common;

use std::time::Duration;

use arrakis_e2e::nats::NatsServer;
use arrakis_e2e::wait;
use async_nats::jetstream::{self, consumer};
use axum::http::StatusCode;
use common::*;
use serde_json::json;

async fn setup() -> (NatsServer, jetstream::Context) {
    let nats = NatsServer::start().await.expect("nats-server");
    let js = jetstream::new(nats.connect().await.expect("connect"));
    streams(&js).await;
    (nats, js)
}

fn retrying(max_deliver: i64) -> consumer::pull::Config {
    consumer::pull::Config {
        max_deliver,
        backoff: vec![Duration::from_millis(100), Duration::from_millis(200)],
        ack_wait: Duration::from_secs(5),
        ..Default::default()
    }
}

/// An event-worker whose `routes` go to `service`; keep the config file alive while it runs.
fn event_worker_bridged(
    nats: &NatsServer,
    service: &Service,
    routes: &[&str],
    extra: &str,
) -> (Worker, tempfile::NamedTempFile) {
    let config = bridge_config(&service.url, routes, extra);
    let w = worker(
        nats,
        "EVENTS/event-worker",
        &[("HANDLERS_CONFIG", config.path().to_str().unwrap())],
    );
    (w, config)
}

async fn job_status(worker: &Worker, stream: &str, seq: u64) -> serde_json::Value {
    let url = format!("http://127.0.0.1:{}/jobs/{stream}/{seq}", worker.http_port);
    let found = wait::until(DEADLINE, || async {
        arrakis_e2e::http::get(&url, None).await.ok()
    })
    .await;
    found.expect("job status answers").json()
}

#[tokio::test]
async fn member_events_change_state_once_even_when_delivered_twice() {
    let (nats, js) = setup().await;
    durable(&js, "EVENTS", "event-worker", Default::default()).await;
    let w = worker(&nats, "EVENTS/event-worker", &[]);
    for user in 1..=3 {
        publish_event(&js, "events.member.join", &member_join(7, user)).await;
    }
    // The same event again, as a redelivery after a crash would bring it.
    publish_event(&js, "events.member.join", &member_join(7, 1)).await;
    await_settled(&js, "EVENTS", "event-worker").await;

    let members = js
        .get_key_value("arrakis-members")
        .await
        .expect("members bucket");
    for user in 1..=3u64 {
        let profile: serde_json::Value = serde_json::from_slice(
            &members
                .get(format!("7.{user}"))
                .await
                .unwrap()
                .expect("profile"),
        )
        .unwrap();
        assert_eq!(profile["active"], true);
        assert_eq!(profile["username"], format!("user{user}"));
        assert_eq!(
            profile["activity"], 1,
            "user {user}: the repeated event changed nothing"
        );
    }
    terminate(w).await;
}

#[tokio::test]
async fn retryable_failures_back_off_then_dead_letter_with_their_error() {
    let (nats, js) = setup().await;
    durable(&js, "EVENTS", "event-worker", retrying(3)).await;
    let service = Service::start(|_| {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"error": "database down"}),
        )
    })
    .await;
    let (w, _config) = event_worker_bridged(&nats, &service, &["member.join"], "");
    let seq = publish_event(&js, "events.member.join", &member_join(7, 1)).await;

    let dead = dead_letters(&js, 1).await;
    assert_eq!(dead.len(), 1);
    let (headers, payload) = &dead[0];
    assert_eq!(header(headers, "Arrakis-Dead-Reason"), "max-deliveries");
    assert_eq!(header(headers, "Arrakis-Dead-Deliveries"), "3");
    assert_eq!(header(headers, "Arrakis-Dead-Stream"), "EVENTS");
    assert_eq!(header(headers, "Arrakis-Dead-Sequence"), seq.to_string());
    assert_eq!(
        header(headers, "Arrakis-Dead-Subject"),
        "events.member.join"
    );
    assert!(
        header(headers, "Arrakis-Dead-Error").contains("503"),
        "{headers:?}"
    );
    let original: serde_json::Value = serde_json::from_slice(payload).unwrap();
    assert_eq!(
        original["event_type"], "member.join",
        "the original payload is kept"
    );
    assert_eq!(service.count(), 3, "delivered max_deliver times, no more");
    await_settled(&js, "EVENTS", "event-worker").await;
    assert_eq!(service.count(), 3);

    let status = job_status(&w, "EVENTS", seq).await;
    assert_eq!(status["state"], "dead");
    assert!(status["error"].as_str().unwrap().contains("database down"));
    terminate(w).await;
}

#[tokio::test]
async fn a_retry_that_succeeds_is_acked_and_reported_done() {
    let (nats, js) = setup().await;
    durable(&js, "EVENTS", "event-worker", retrying(5)).await;
    let service = Service::start(|n| match n {
        0 => (StatusCode::BAD_GATEWAY, json!({})),
        _ => (StatusCode::OK, json!({})),
    })
    .await;
    let (w, _config) = event_worker_bridged(&nats, &service, &["member.join"], "");
    let seq = publish_event(&js, "events.member.join", &member_join(7, 1)).await;
    await_settled(&js, "EVENTS", "event-worker").await;
    assert_eq!(service.count(), 2);
    let status = job_status(&w, "EVENTS", seq).await;
    assert_eq!(status["state"], "done");
    assert_eq!(status["deliveries"], 2);
    let requests = service.requests.lock().unwrap().clone();
    assert_eq!(
        requests[0].0.as_deref(),
        Some(requests[0].1["eventId"].as_str().unwrap()),
        "event id header"
    );
    assert_eq!(requests[0].1["eventType"], "member.join");
    terminate(w).await;
}

#[tokio::test]
async fn terminal_failures_and_malformed_payloads_are_termed_at_once() {
    let (nats, js) = setup().await;
    durable(&js, "EVENTS", "event-worker", retrying(5)).await;
    let service = Service::start(|_| {
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({"error": "unknown guild"}),
        )
    })
    .await;
    let (w, _config) = event_worker_bridged(
        &nats,
        &service,
        &["member.leave"],
        "  member.join: builtin\n",
    );
    publish(&js, "events.member.join", b"{not json".to_vec()).await;
    let mut leave = member_join(7, 2);
    leave.event_type = "member.leave".into();
    publish_event(&js, "events.member.leave", &leave).await;
    // The worker keeps going: a good event after the bad ones is applied.
    publish_event(&js, "events.member.join", &member_join(7, 3)).await;

    let dead = dead_letters(&js, 2).await;
    let reasons: Vec<(&str, &str)> = dead
        .iter()
        .map(|(h, _)| {
            (
                header(h, "Arrakis-Dead-Reason"),
                header(h, "Arrakis-Dead-Error"),
            )
        })
        .collect();
    assert!(
        reasons.iter().all(|(reason, _)| *reason == "terminated"),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|(_, e)| e.contains("the payload is not a gateway event")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|(_, e)| e.contains("422") && e.contains("unknown guild")),
        "{reasons:?}"
    );
    assert_eq!(service.count(), 1, "a terminal failure is not retried");
    await_settled(&js, "EVENTS", "event-worker").await;
    let members = js.get_key_value("arrakis-members").await.unwrap();
    assert!(
        members.get("7.3").await.unwrap().is_some(),
        "later events still processed"
    );
    terminate(w).await;
}

#[tokio::test]
async fn kill_9_mid_stream_redelivers_and_every_effect_happens_once() {
    let (nats, js) = setup().await;
    let config = consumer::pull::Config {
        ack_wait: Duration::from_secs(2),
        ..Default::default()
    };
    durable(&js, "EVENTS", "event-worker", config).await;
    const USERS: u64 = 1500;
    for user in 1..=USERS {
        publish_event(&js, "events.member.join", &member_join(9, user)).await;
    }
    let mut first = worker(&nats, "EVENTS/event-worker", &[("CONCURRENCY", "32")]);
    // Kill once some, not all, are processed.
    let started = wait::until(DEADLINE, || async {
        let mut c: consumer::PullConsumer = js
            .get_stream("EVENTS")
            .await
            .ok()?
            .get_consumer("event-worker")
            .await
            .ok()?;
        let info = c.info().await.ok()?;
        (info.ack_floor.stream_sequence >= 100).then_some(info.ack_floor.stream_sequence)
    })
    .await
    .expect("the first worker makes progress");
    first.child.kill().await.expect("SIGKILL");
    assert!(started < USERS, "killed mid-stream");

    let second = worker(&nats, "EVENTS/event-worker", &[]);
    await_settled(&js, "EVENTS", "event-worker").await;
    let members = js.get_key_value("arrakis-members").await.unwrap();
    for user in 1..=USERS {
        let profile: serde_json::Value = serde_json::from_slice(
            &members
                .get(format!("9.{user}"))
                .await
                .unwrap()
                .unwrap_or_else(|| panic!("profile {user}")),
        )
        .unwrap();
        assert_eq!(
            profile["activity"], 1,
            "user {user} joined once, counted once"
        );
    }
    terminate(second).await;
}

#[tokio::test]
async fn deliveries_that_never_come_back_reach_the_dead_letters_through_the_advisory() {
    let (nats, js) = setup().await;
    durable(&js, "EVENTS", "event-worker", Default::default()).await;
    let w = worker(&nats, "EVENTS/event-worker", &[]);
    let ready = format!("http://127.0.0.1:{}/readyz", w.http_port);
    wait::until(DEADLINE, || async {
        (arrakis_e2e::http::get(&ready, None).await.ok()?.status == 200).then_some(())
    })
    .await
    .expect("worker ready: the advisory stream exists");

    // Another consumer whose only client takes the message and dies with it, on its last delivery.
    durable(
        &js,
        "EVENTS",
        "crashing-worker",
        consumer::pull::Config {
            max_deliver: 1,
            ack_wait: Duration::from_millis(500),
            ..Default::default()
        },
    )
    .await;
    let seq = publish_event(&js, "events.member.join", &member_join(7, 1)).await;
    let crashing: consumer::PullConsumer = js
        .get_stream("EVENTS")
        .await
        .unwrap()
        .get_consumer("crashing-worker")
        .await
        .unwrap();
    let mut batch = crashing.fetch().max_messages(1).messages().await.unwrap();
    use futures::StreamExt;
    let taken = batch.next().await.expect("delivered").expect("message");
    drop(taken);

    let dead = dead_letters(&js, 1).await;
    let (headers, payload) = &dead[0];
    assert_eq!(header(headers, "Arrakis-Dead-Reason"), "max-deliveries");
    assert_eq!(header(headers, "Arrakis-Dead-Consumer"), "crashing-worker");
    assert_eq!(header(headers, "Arrakis-Dead-Sequence"), seq.to_string());
    assert!(header(headers, "Arrakis-Dead-Error").contains("no handler result"));
    assert!(!payload.is_empty(), "the original payload is kept");
    terminate(w).await;
}

/// Runs the worker binary's CLI and returns its stdout; it must succeed.
async fn cli(nats: &NatsServer, args: &[&str]) -> String {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_arrakis-worker"))
        .env_clear()
        .env("NATS_URL", nats.url())
        .args(args)
        .output()
        .await
        .expect("cli runs");
    assert!(
        output.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[tokio::test]
async fn dead_letters_can_be_listed_inspected_and_replayed() {
    let (nats, js) = setup().await;
    durable(&js, "EVENTS", "event-worker", retrying(5)).await;
    // Refuses the first request, accepts the replay.
    let service = Service::start(|n| match n {
        0 => (StatusCode::BAD_REQUEST, json!({"error": "not yet"})),
        _ => (StatusCode::OK, json!({})),
    })
    .await;
    let (w, _config) = event_worker_bridged(&nats, &service, &["member.join"], "");
    let seq = publish_event(&js, "events.member.join", &member_join(7, 1)).await;
    dead_letters(&js, 1).await;

    let listed: serde_json::Value =
        serde_json::from_str(cli(&nats, &["dead-letters", "list"]).await.trim()).unwrap();
    assert_eq!(listed["original_sequence"], seq.to_string());
    assert_eq!(listed["reason"], "terminated");
    assert!(listed["error"].as_str().unwrap().contains("not yet"));
    let shown: serde_json::Value =
        serde_json::from_str(&cli(&nats, &["dead-letters", "show", "1"]).await).unwrap();
    assert_eq!(shown["payload"]["event_type"], "member.join");
    let job: serde_json::Value =
        serde_json::from_str(&cli(&nats, &["job", "EVENTS", &seq.to_string()]).await).unwrap();
    assert_eq!(job["state"], "dead");

    let replayed = cli(&nats, &["dead-letters", "replay", "1"]).await;
    assert!(replayed.contains("to events.member.join"), "{replayed}");
    let replay_seq: u64 = replayed
        .trim()
        .rsplit(' ')
        .next()
        .unwrap()
        .trim_end_matches(')')
        .parse()
        .unwrap();
    await_settled(&js, "EVENTS", "event-worker").await;
    assert_eq!(service.count(), 2, "the replay reached the handler");
    let job: serde_json::Value =
        serde_json::from_str(&cli(&nats, &["job", "EVENTS", &replay_seq.to_string()]).await)
            .unwrap();
    assert_eq!(job["state"], "done");
    terminate(w).await;
}

#[tokio::test]
async fn the_worker_waits_for_nats_and_reports_the_seeds_metrics() {
    let (mut nats, js) = setup().await;
    durable(&js, "EVENTS", "event-worker", Default::default()).await;
    nats.stop();
    let w = worker(&nats, "EVENTS/event-worker", &[]);
    let ready = format!("http://127.0.0.1:{}/readyz", w.http_port);
    // Up and answering, not ready: NATS is down.
    let answered = wait::until(DEADLINE, || async {
        let response = arrakis_e2e::http::get(&ready, None).await.ok()?;
        (response.status == 503).then_some(())
    });
    assert!(
        answered.await.is_some(),
        "/readyz answers 503 while NATS is down"
    );
    nats.restart().await.expect("nats-server again");
    let js = jetstream::new(nats.connect().await.expect("connect"));
    // Memory streams do not survive the restart.
    streams(&js).await;
    durable(&js, "EVENTS", "event-worker", Default::default()).await;
    publish_event(&js, "events.member.join", &member_join(7, 1)).await;
    await_settled(&js, "EVENTS", "event-worker").await;

    let metrics = format!("http://127.0.0.1:{}/metrics", w.http_port);
    // The counter moves just after the ack is sent, so the server may see the ack first.
    let acked = r#"nats_consumer_messages_processed_total{consumer="event-worker",status="ack"} 1"#;
    let counted = wait::until(DEADLINE, || async {
        let body = arrakis_e2e::http::get(&metrics, None).await.ok()?.body;
        body.contains(acked).then_some(body)
    })
    .await;
    let body = counted.expect("the ack is counted under the seed's metric name");
    assert!(
        body.contains("nats_consumer_message_processing_duration_seconds_count"),
        "{body}"
    );
    terminate(w).await;
}

#[tokio::test]
async fn sigterm_lets_running_handlers_finish_and_naks_what_cannot() {
    let (nats, js) = setup().await;
    durable(&js, "EVENTS", "event-worker", Default::default()).await;
    let slow = Service::slow(Duration::from_millis(1500), |_| (StatusCode::OK, json!({}))).await;
    let config = bridge_config(&slow.url, &["member.join"], "");
    let mut w = worker(
        &nats,
        "EVENTS/event-worker",
        &[
            ("HANDLERS_CONFIG", config.path().to_str().unwrap()),
            ("CONCURRENCY", "1"),
            ("DRAIN_SECONDS", "2"),
        ],
    );
    for user in 1..=3 {
        publish_event(&js, "events.member.join", &member_join(7, user)).await;
    }
    wait::until(DEADLINE, || async { (slow.count() >= 1).then_some(()) })
        .await
        .expect("the first handler runs");
    let pid = w.child.id().unwrap().to_string();
    tokio::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    let status = tokio::time::timeout(DEADLINE, w.child.wait())
        .await
        .expect("exits")
        .unwrap();
    assert!(status.success(), "{status}");
    // One finished inside the drain; the next started and was cut off; the last never ran.
    assert_eq!(slow.count(), 2);
    // Nothing is lost: the nak'd ones come back to the next worker.
    let fast = Service::start(|_| (StatusCode::OK, json!({}))).await;
    let (next, _config) = event_worker_bridged(&nats, &fast, &["member.join"], "");
    await_settled(&js, "EVENTS", "event-worker").await;
    let ids: std::collections::BTreeSet<String> = fast
        .requests
        .lock()
        .unwrap()
        .iter()
        .filter_map(|(id, _)| id.clone())
        .collect();
    // Which of the three ran first is up to the scheduler; what matters is that the one acked
    // during the drain is not redone and the two nak'd ones are, each once.
    assert_eq!(ids.len(), 2, "the two nak'd events, each once: {ids:?}");
    let finished = slow.requests.lock().unwrap()[0]
        .0
        .clone()
        .expect("event id");
    assert!(
        !ids.contains(&finished),
        "the event finished during the drain is not redone"
    );
    terminate(next).await;
}

#[tokio::test]
async fn a_bridge_that_does_not_answer_in_time_is_retried_then_dead_lettered() {
    let (nats, js) = setup().await;
    durable(&js, "EVENTS", "event-worker", retrying(2)).await;
    // The config gives the bridge 2 s; the service takes 3.
    let silent = Service::slow(Duration::from_secs(3), |_| (StatusCode::OK, json!({}))).await;
    let (w, _config) = event_worker_bridged(&nats, &silent, &["member.join"], "");
    publish_event(&js, "events.member.join", &member_join(7, 1)).await;
    let dead = dead_letters(&js, 1).await;
    let error = header(&dead[0].0, "Arrakis-Dead-Error");
    assert!(
        error.contains("no answer") && error.contains("within 2s"),
        "{error}"
    );
    assert_eq!(
        header(&dead[0].0, "Arrakis-Dead-Deliveries"),
        "2",
        "timeouts are retried"
    );
    terminate(w).await;
}
