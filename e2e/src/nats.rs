//! A real nats-server with JetStream, started per test on a free port with a temporary store.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use async_nats::jetstream::stream;
use tempfile::TempDir;

use crate::wait::poll_until;

/// Environment variable naming the nats-server binary; `make` sets it from the build cache.
pub const NATS_SERVER_ENV: &str = "ARRAKIS_NATS_SERVER";

const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A running nats-server. Killed, and its store removed, when dropped.
pub struct NatsServer {
    child: Option<Child>,
    binary: PathBuf,
    url: String,
    /// "-1" (let the OS pick) until the first start, then the port it bound, so a restart keeps it.
    port: String,
    dir: TempDir,
}

impl NatsServer {
    /// Starts nats-server with JetStream on 127.0.0.1 and a port the OS picks.
    pub async fn start() -> anyhow::Result<Self> {
        let mut server = NatsServer {
            child: None,
            binary: nats_server_binary()?,
            url: String::new(),
            port: "-1".into(),
            dir: tempfile::Builder::new().prefix("arrakis-nats-").tempdir()?,
        };
        server.launch().await?;
        Ok(server)
    }

    /// Stops the server (SIGKILL: an outage, not a shutdown). The store is kept for [`Self::restart`].
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port with the same store.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.stop();
        self.launch().await
    }

    async fn launch(&mut self) -> anyhow::Result<()> {
        let child = Command::new(&self.binary)
            .args(["--addr", "127.0.0.1", "--port", &self.port, "--jetstream"])
            .arg("--store_dir")
            .arg(self.dir.path().join("jetstream"))
            // The server writes the ports it bound here, which avoids racing for a free port.
            .arg("--ports_file_dir")
            .arg(self.dir.path())
            .arg("--log")
            .arg(self.dir.path().join("nats-server.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", self.binary.display()))?;
        let ports_file =
            self.dir
                .path()
                .join(format!("{}_{}.ports", file_stem(&self.binary), child.id()));
        let child = self.child.insert(child);
        let found = poll_until(START_TIMEOUT, || {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(anyhow::anyhow!("nats-server exited with {status}"));
            }
            Ok(read_client_url(&ports_file))
        })
        .await;
        match found {
            Ok(Some(url)) => {
                self.port = url.rsplit(':').next().unwrap_or("-1").to_owned();
                self.url = url;
                Ok(())
            }
            Ok(None) => bail!(
                "nats-server did not report its port within {START_TIMEOUT:?}; log:\n{}",
                self.log()
            ),
            Err(e) => bail!("{e}; log:\n{}", self.log()),
        }
    }

    /// The client URL, e.g. `nats://127.0.0.1:41234`.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub async fn connect(&self) -> anyhow::Result<async_nats::Client> {
        async_nats::connect(&self.url)
            .await
            .with_context(|| format!("connecting to {}", self.url))
    }

    /// The server's log so far, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("nats-server.log")).unwrap_or_default()
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn nats_server_binary() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os(NATS_SERVER_ENV) {
        let path = PathBuf::from(path);
        if !path.is_file() {
            bail!(
                "{NATS_SERVER_ENV}={} does not exist: run `make tools` or point it at nats-server >= 2.10",
                path.display()
            );
        }
        return Ok(path);
    }
    which("nats-server").with_context(|| {
        format!(
            "nats-server not found: run the tests with `make test`, or run `make tools` and set {NATS_SERVER_ENV}"
        )
    })
}

fn which(name: &str) -> anyhow::Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .with_context(|| format!("{name} is not on PATH"))
}

fn file_stem(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "nats-server".into())
}

/// Reads `{"nats": ["nats://127.0.0.1:PORT"], ...}` once the server has written it whole.
fn read_client_url(ports_file: &Path) -> Option<String> {
    let text = std::fs::read_to_string(ports_file).ok()?;
    let ports: serde_json::Value = serde_json::from_str(&text).ok()?;
    ports["nats"][0].as_str().map(str::to_owned)
}

/// A stream capturing `subject`, with JetStream's defaults otherwise: what tests and benchmarks need.
pub fn stream_config(name: &str, subject: &str, storage: stream::StorageType) -> stream::Config {
    stream::Config {
        name: name.into(),
        subjects: vec![subject.into()],
        storage,
        ..Default::default()
    }
}
