//! What twilight never sends: malformed frames, bad opcodes, bad identifies, floods. Each gets
//! Discord's close code; pacing and the REST auth behave as documented.

use std::time::Duration;

use arrakis_fake_discord::{Config, FakeDiscord, close_code};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

const DEADLINE: Duration = Duration::from_secs(10);

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(fake: &FakeDiscord, query: &str) -> Socket {
    let (socket, _) = tokio_tungstenite::connect_async(format!("{}/{query}", fake.gateway_url()))
        .await
        .expect("connects");
    socket
}

/// Reads until a text frame or a close; returns the JSON, or the close code.
async fn next(socket: &mut Socket) -> Result<Value, u16> {
    tokio::time::timeout(DEADLINE, async {
        loop {
            match socket.next().await {
                Some(Ok(Message::Text(text))) => {
                    return Ok(serde_json::from_str(&text).expect("JSON frame"));
                }
                Some(Ok(Message::Close(frame))) => {
                    return Err(frame.map_or(1005, |f| u16::from(f.code)));
                }
                Some(Ok(_)) => continue,
                other => panic!("connection ended without a close frame: {other:?}"),
            }
        }
    })
    .await
    .expect("answered within the deadline")
}

async fn hello(fake: &FakeDiscord) -> Socket {
    let mut socket = connect(fake, "?v=10&encoding=json").await;
    let hello = next(&mut socket).await.expect("hello");
    assert_eq!(hello["op"], 10);
    assert!(hello["d"]["heartbeat_interval"].as_u64().is_some());
    socket
}

async fn send(socket: &mut Socket, payload: Value) {
    socket
        .send(Message::Text(payload.to_string().into()))
        .await
        .expect("sent");
}

fn identify(shard: [u32; 2], intents: u64) -> Value {
    json!({"op": 2, "d": {"token": "Bot fake-token", "intents": intents, "shard": shard,
        "properties": {"os": "linux", "browser": "t", "device": "t"}}})
}

/// Reads frames until a close code arrives.
async fn close_code_after(socket: &mut Socket) -> u16 {
    loop {
        if let Err(code) = next(socket).await {
            return code;
        }
    }
}

fn fake_config() -> Config {
    Config {
        identify_interval: Duration::ZERO,
        ..Config::default()
    }
}

#[tokio::test]
async fn each_protocol_violation_gets_discords_close_code() {
    let fake = FakeDiscord::start(fake_config()).await.expect("fake");
    let cases: Vec<(&str, Vec<Value>, u16)> = vec![
        (
            "undecodable payload",
            vec![json!("not a payload")],
            close_code::DECODE_ERROR,
        ),
        (
            "payload before identify",
            vec![json!({"op": 3, "d": {}})],
            close_code::NOT_AUTHENTICATED,
        ),
        (
            "unknown opcode",
            vec![json!({"op": 99, "d": null})],
            close_code::UNKNOWN_OPCODE,
        ),
        (
            "shard id not below total",
            vec![identify([2, 2], 1)],
            close_code::INVALID_SHARD,
        ),
        (
            "undefined intent bit",
            vec![identify([0, 1], 1 << 30)],
            close_code::INVALID_INTENTS,
        ),
        (
            "privileged intent not enabled",
            vec![identify([0, 1], 1 << 8)],
            close_code::DISALLOWED_INTENTS,
        ),
        (
            "second identify",
            vec![identify([0, 1], 1), identify([0, 1], 1)],
            close_code::ALREADY_AUTHENTICATED,
        ),
        (
            "resume past the last seq",
            vec![
                json!({"op": 6, "d": {"token": "fake-token", "session_id": "SESSION", "seq": 1_000_000}}),
            ],
            close_code::INVALID_SEQ,
        ),
        (
            "flood",
            (0..121).map(|_| json!({"op": 1, "d": null})).collect(),
            close_code::RATE_LIMITED,
        ),
    ];
    // A live session to resume against.
    let mut owner = hello(&fake).await;
    send(&mut owner, identify([0, 1], 1)).await;
    let ready = next(&mut owner).await.expect("READY");
    let session = ready["d"]["session_id"]
        .as_str()
        .expect("session id")
        .to_owned();

    for (name, payloads, expected) in cases {
        let mut socket = hello(&fake).await;
        for mut payload in payloads {
            if payload["d"]["session_id"] == "SESSION" {
                payload["d"]["session_id"] = json!(session);
            }
            send(&mut socket, payload).await;
        }
        assert_eq!(close_code_after(&mut socket).await, expected, "{name}");
    }
    let mut wrong_version = connect(&fake, "?v=9&encoding=json").await;
    assert_eq!(
        close_code_after(&mut wrong_version).await,
        close_code::INVALID_API_VERSION
    );
    assert!(fake.truth().closes.len() >= 10);
}

#[tokio::test]
async fn identifies_are_paced_per_bucket_and_counted_against_the_daily_limit() {
    let fake = FakeDiscord::start(Config {
        identify_interval: Duration::from_secs(60),
        max_concurrency: 2,
        session_start_limit: 3,
        ..Config::default()
    })
    .await
    .expect("fake");
    let mut verdicts = Vec::new();
    // Shards 0 and 1 are in different buckets; shard 2 shares bucket 0 with shard 0.
    for shard in [0, 1, 2] {
        let mut socket = hello(&fake).await;
        send(&mut socket, identify([shard, 4], 1)).await;
        let answer = next(&mut socket).await.expect("a frame, not a close");
        verdicts.push((
            shard,
            answer["op"].as_u64(),
            answer["t"].as_str().map(str::to_owned),
        ));
    }
    assert_eq!(
        verdicts,
        [
            (0, Some(0), Some("READY".into())),
            (1, Some(0), Some("READY".into())),
            (2, Some(9), None)
        ],
        "the second identify in bucket 0 within the interval is refused with op 9"
    );
    let buckets: Vec<(u32, u32, bool)> = fake
        .truth()
        .identifies
        .iter()
        .map(|i| (i.shard, i.bucket, i.accepted))
        .collect();
    assert_eq!(buckets, [(0, 0, true), (1, 1, true), (2, 0, false)]);

    // With one session start left for the day, the second identify is refused whatever its bucket.
    let fake = FakeDiscord::start(Config {
        session_start_limit: 1,
        ..fake_config()
    })
    .await
    .expect("fake");
    let mut answers = Vec::new();
    for shard in [0, 1] {
        let mut socket = hello(&fake).await;
        send(&mut socket, identify([shard, 2], 1)).await;
        answers.push(next(&mut socket).await.expect("a frame")["op"].as_u64());
    }
    assert_eq!(answers, [Some(0), Some(9)]);
}

#[tokio::test]
async fn gateway_bot_needs_the_token() {
    let fake = FakeDiscord::start(Config {
        recommended_shards: 16,
        max_concurrency: 16,
        ..fake_config()
    })
    .await
    .expect("fake");
    let url = format!("http://{}/api/v10/gateway/bot", fake.http_host());
    let anonymous = arrakis_e2e::http::get(&url, None).await.expect("answers");
    assert_eq!(anonymous.status, 401);
    let response = arrakis_e2e::http::get(&url, Some("Bot fake-token"))
        .await
        .expect("answers");
    assert_eq!(response.status, 200);
    let body = response.json();
    assert_eq!(body["shards"], 16);
    assert_eq!(body["session_start_limit"]["max_concurrency"], 16);
    assert_eq!(body["url"], fake.gateway_url());
}
