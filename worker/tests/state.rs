//! The KV state primitives against a real nats-server: cooldowns that expire on their own,
//! sliding-window rate limits, and multi-step sessions.

use std::time::Duration;

use arrakis_e2e::nats::NatsServer;
use arrakis_e2e::wait;
use arrakis_worker::state::State;
use async_nats::jetstream;
use serde::{Deserialize, Serialize};

async fn state() -> (NatsServer, State) {
    let nats = NatsServer::start().await.expect("nats-server");
    let js = jetstream::new(nats.connect().await.expect("connect"));
    let state = State::open(&js).await.expect("state buckets");
    (nats, state)
}

#[tokio::test]
async fn a_cooldown_refuses_others_until_it_expires() {
    let (_nats, state) = state().await;
    let length = Duration::from_secs(1);
    assert!(
        state
            .try_cooldown("command.stats", "u1", "i1", length)
            .await
            .unwrap()
    );
    assert!(
        !state
            .try_cooldown("command.stats", "u1", "i2", length)
            .await
            .unwrap(),
        "on cooldown"
    );
    assert!(
        state
            .try_cooldown("command.stats", "u1", "i1", length)
            .await
            .unwrap(),
        "a redelivery passes"
    );
    assert!(
        state
            .try_cooldown("command.stats", "u2", "i3", length)
            .await
            .unwrap(),
        "per user"
    );
    assert!(
        state
            .try_cooldown("command.profile", "u1", "i4", length)
            .await
            .unwrap(),
        "per command"
    );
    let expired = wait::until(Duration::from_secs(10), || async {
        state
            .try_cooldown("command.stats", "u1", "i5", length)
            .await
            .unwrap()
            .then_some(())
    })
    .await;
    assert!(expired.is_some(), "the cooldown expired on its own");
    assert!(
        !state
            .try_cooldown("command.stats", "u1", "i6", length)
            .await
            .unwrap(),
        "i5 holds it now"
    );
    let again = wait::until(Duration::from_secs(10), || async {
        state
            .try_cooldown("command.stats", "u1", "i6", length)
            .await
            .unwrap()
            .then_some(())
    })
    .await;
    assert!(
        again.is_some(),
        "a cooldown taken over an expired one expires too"
    );
}

#[tokio::test]
async fn rate_limits_count_hits_in_a_sliding_window() {
    let (_nats, state) = state().await;
    let window = Duration::from_secs(60);
    for hit in 0..3 {
        assert!(
            state
                .try_rate_limit("command.stats", "u1", &hit.to_string(), 3, window)
                .await
                .unwrap()
        );
    }
    assert!(
        !state
            .try_rate_limit("command.stats", "u1", "3", 3, window)
            .await
            .unwrap(),
        "fourth in a minute"
    );
    assert!(
        state
            .try_rate_limit("command.stats", "u1", "1", 3, window)
            .await
            .unwrap(),
        "a counted hit passes again"
    );
    assert!(
        state
            .try_rate_limit("command.stats", "u2", "4", 3, window)
            .await
            .unwrap(),
        "per user"
    );
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Verification {
    step: u32,
    wallet: String,
}

#[tokio::test]
async fn sessions_keep_a_flows_state_until_they_end_or_expire() {
    let (_nats, state) = state().await;
    let step = Verification {
        step: 2,
        wallet: "0xabc".into(),
    };
    state
        .save_flow("verify", "u1", &step, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(
        state.flow::<Verification>("verify", "u1").await.unwrap(),
        Some(step)
    );
    state.end_flow("verify", "u1").await.unwrap();
    assert_eq!(
        state.flow::<Verification>("verify", "u1").await.unwrap(),
        None
    );

    let short = Verification {
        step: 1,
        wallet: "0xdef".into(),
    };
    state
        .save_flow("verify", "u2", &short, Duration::from_secs(1))
        .await
        .unwrap();
    assert!(
        state
            .flow::<Verification>("verify", "u2")
            .await
            .unwrap()
            .is_some()
    );
    let gone = wait::until(Duration::from_secs(10), || async {
        state
            .flow::<Verification>("verify", "u2")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    assert!(gone.is_some(), "the session expired on its own");
}
