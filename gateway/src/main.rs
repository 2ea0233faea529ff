//! arrakis-gateway: a skeleton until issue #3 lands the shard runner.

fn main() -> std::process::ExitCode {
    eprintln!(
        "arrakis-gateway {}: the shard runner is not built yet (tracked in issue #3)",
        env!("CARGO_PKG_VERSION")
    );
    std::process::ExitCode::FAILURE
}
