//! arrakis-worker: a skeleton until issue #4 lands the consumer runtime.

fn main() -> std::process::ExitCode {
    eprintln!(
        "arrakis-worker {}: the consumer runtime is not built yet (tracked in issue #4)",
        env!("CARGO_PKG_VERSION")
    );
    std::process::ExitCode::FAILURE
}
