//! twilight-http, unmodified, against the fake's REST: interaction callbacks with their 3 s
//! deadline, edits and follow-ups with their token lifetime, member roles.

use std::time::Duration;

use arrakis_fake_discord::{Config, FakeDiscord};
use twilight_gateway::queue::InMemoryQueue;
use twilight_gateway::{ConfigBuilder, Event, EventTypeFlags, Intents, Shard, ShardId, StreamExt};
use twilight_http::Client;
use twilight_http::error::ErrorType;
use twilight_model::http::interaction::{InteractionResponse, InteractionResponseType};
use twilight_model::id::Id;

const DEADLINE: Duration = Duration::from_secs(20);

/// A fake with one connected shard, so interactions can be created, and a REST client for it.
async fn setup(config: Config) -> (FakeDiscord, Shard<InMemoryQueue>, Client) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let fake = FakeDiscord::start(Config {
        identify_interval: Duration::ZERO,
        guilds: 2,
        ..config
    })
    .await
    .expect("fake starts");
    let queue = InMemoryQueue::new(0, 1000, Duration::from_secs(14_400), 1000);
    let gateway = ConfigBuilder::new("fake-token".into(), Intents::GUILDS)
        .proxy_url(fake.gateway_url().into())
        .queue(queue)
        .build();
    let mut shard = Shard::with_config(ShardId::ONE, gateway);
    tokio::time::timeout(DEADLINE, async {
        while let Some(event) = shard.next_event(EventTypeFlags::READY).await {
            if let Ok(Event::Ready(_)) = event {
                return;
            }
        }
    })
    .await
    .expect("READY");
    let client = Client::builder()
        .token("fake-token".into())
        .proxy(fake.http_host(), true)
        .ratelimiter(None)
        .build();
    (fake, shard, client)
}

fn deferred() -> InteractionResponse {
    InteractionResponse {
        kind: InteractionResponseType::DeferredChannelMessageWithSource,
        data: None,
    }
}

fn discord_code(error: &twilight_http::Error) -> Option<u64> {
    match error.kind() {
        ErrorType::Response {
            error: twilight_http::api_error::ApiError::General(general),
            ..
        } => Some(general.code),
        _ => None,
    }
}

#[tokio::test]
async fn defer_then_edit_and_follow_up() {
    let (fake, _shard, client) = setup(Config::default()).await;
    let app = Id::new(fake.config().application_id);
    let guild = fake.guilds()[0].id;
    let (id, token) = fake
        .slash_command(guild, "profile")
        .expect("interaction created");

    client
        .interaction(app)
        .create_response(Id::new(id), &token, &deferred())
        .await
        .expect("deferred in time");
    let again = client
        .interaction(app)
        .create_response(Id::new(id), &token, &deferred())
        .await
        .expect_err("only once");
    assert_eq!(discord_code(&again), Some(40060));
    client
        .interaction(app)
        .update_response(&token)
        .content(Some("Your profile"))
        .await
        .expect("edited");
    client
        .interaction(app)
        .create_followup(&token)
        .content("More")
        .await
        .expect("followed up");

    let record = fake
        .truth()
        .interactions
        .into_iter()
        .find(|i| i.id == id)
        .expect("recorded");
    assert_eq!(record.response_type, Some(5));
    assert!(record.answered_after_ms().expect("answered") < 3000);
    assert_eq!(
        (record.edits, record.followups),
        (vec!["Your profile".to_string()], vec!["More".to_string()])
    );
    assert_eq!(record.refused_callbacks, 1);
}

#[tokio::test]
async fn a_late_callback_is_an_unknown_interaction_and_an_old_token_is_invalid() {
    let (fake, _shard, client) = setup(Config {
        interaction_deadline: Duration::from_millis(50),
        interaction_token_ttl: Duration::from_millis(300),
        ..Config::default()
    })
    .await;
    let app = Id::new(fake.config().application_id);
    let guild = fake.guilds()[0].id;
    let (late, late_token) = fake.slash_command(guild, "stats").expect("created");
    let (on_time, token) = fake.slash_command(guild, "stats").expect("created");
    client
        .interaction(app)
        .create_response(Id::new(on_time), &token, &deferred())
        .await
        .expect("in time");

    // Time passing is the behaviour under test: the deadline, then the token's lifetime.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let refused = client
        .interaction(app)
        .create_response(Id::new(late), &late_token, &deferred())
        .await
        .expect_err("late");
    assert_eq!(discord_code(&refused), Some(10062));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let expired = client
        .interaction(app)
        .update_response(&token)
        .content(Some("too late"))
        .await
        .expect_err("expired");
    assert_eq!(discord_code(&expired), Some(50027));
    assert!(
        fake.truth()
            .interactions
            .iter()
            .find(|i| i.id == late)
            .unwrap()
            .responded_ms
            .is_none()
    );
}

#[tokio::test]
async fn member_roles_are_added_and_removed() {
    let (fake, _shard, client) = setup(Config::default()).await;
    let guild = fake.guilds()[0].clone();
    let member = guild.members[0].user_id;
    let role = *guild
        .roles
        .iter()
        .find(|r| !guild.members[0].roles.contains(r))
        .expect("a role the member lacks");

    client
        .add_guild_member_role(Id::new(guild.id), Id::new(member), Id::new(role))
        .await
        .expect("added");
    let roles = |fake: &FakeDiscord| fake.guilds()[0].members[0].roles.clone();
    assert!(roles(&fake).contains(&role));
    client
        .remove_guild_member_role(Id::new(guild.id), Id::new(member), Id::new(role))
        .await
        .expect("removed");
    assert!(!roles(&fake).contains(&role));
    let unknown = client
        .add_guild_member_role(Id::new(guild.id), Id::new(member), Id::new(42))
        .await
        .expect_err("unknown role");
    assert_eq!(discord_code(&unknown), Some(10011));
    let changes: Vec<bool> = fake.truth().role_changes.iter().map(|c| c.added).collect();
    assert_eq!(changes, [true, false]);
}
