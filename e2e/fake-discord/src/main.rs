//! `fake-discord`: serve a local Discord until interrupted.

use std::net::SocketAddr;
use std::time::Duration;

use arrakis_fake_discord::{Config, FakeDiscord};
use clap::Parser;

#[derive(Parser)]
#[command(
    name = "fake-discord",
    about = "A local Discord gateway and REST API for tests and demos"
)]
struct Args {
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    #[arg(
        long,
        env = "FAKE_DISCORD_TOKEN",
        default_value = "fake-token",
        hide_env_values = true
    )]
    token: String,
    #[arg(long, default_value_t = 1)]
    shards: u32,
    #[arg(long, default_value_t = 1)]
    max_concurrency: u32,
    /// Seconds between identifies in one bucket (Discord: 5).
    #[arg(long, default_value_t = 5.0)]
    identify_interval: f64,
    #[arg(long, default_value_t = 41_250)]
    heartbeat_ms: u64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[arg(long, default_value_t = 10)]
    guilds: usize,
    #[arg(long, default_value_t = 5)]
    members: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let args = Args::parse();
    let config = Config {
        token: args.token,
        recommended_shards: args.shards,
        max_concurrency: args.max_concurrency,
        identify_interval: Duration::from_secs_f64(args.identify_interval),
        heartbeat_interval: Duration::from_millis(args.heartbeat_ms),
        seed: args.seed,
        guilds: args.guilds,
        members_per_guild: args.members,
        ..Config::default()
    };
    let fake = FakeDiscord::bind(config, args.listen).await?;
    println!(
        "fake-discord: gateway {} REST http://{}/api/v10 control http://{}/control",
        fake.gateway_url(),
        fake.addr(),
        fake.addr()
    );
    tokio::signal::ctrl_c().await?;
    Ok(())
}
