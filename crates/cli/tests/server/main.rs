//! The local server (`hubsync serve` in this process) with the in-memory Git host: what
//! Bitbucket sees over HTTP (`http`), what the workers do with pushes that fail or panic
//! (`worker`), a Bitbucket outage ridden out on the SQLite queue with a clock the test moves
//! (`outage`), and a lost delivery healed by the reconcile timer (`reconcile`).

mod http;
mod outage;
mod reconcile;
mod slow_clients;
mod worker;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use hubsync_cli::config::LocalConfig;
use hubsync_cli::serve::{RunningServer, ServeArgs, start_with};
use hubsync_core::ids::RepoRef;
use hubsync_core::secrets::HubSecret;
use hubsync_core::signature::sign;
use hubsync_core::testing::fixtures::hub_secret;
use hubsync_core::testing::memory::MemoryGitHost;
use secrecy::SecretString;
use tokio::time::Instant;

const SECRET: &str = "serve-test-secret";

/// The in-memory Git host, shared between the test and the workers.
type SharedHost = Arc<MemoryGitHost>;

struct App {
    server: RunningServer,
    host: SharedHost,
    http: reqwest::Client,
    repo: RepoRef,
    _dir: tempfile::TempDir,
}

fn secret() -> HubSecret {
    hub_secret(SECRET)
}

async fn spawn_app_with(args: ServeArgs, secret: Option<HubSecret>) -> App {
    let dir = tempfile::tempdir().unwrap();
    let host = SharedHost::default();
    let local = LocalConfig {
        db_path: dir.path().join("hub.db"),
        secret,
    };
    let args = ServeArgs {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        ..args
    };
    let server = start_with(args, local, host.clone()).await.unwrap();
    App {
        server,
        host,
        http: reqwest::Client::builder().no_proxy().build().unwrap(),
        repo: RepoRef::parse("DATA/models").unwrap(),
        _dir: dir,
    }
}

async fn spawn_app() -> App {
    spawn_app_with(ServeArgs::default(), Some(secret())).await
}

impl App {
    async fn post(&self, delivery: &str, body: Vec<u8>, key: &str) -> (StatusCode, serde_json::Value) {
        let signature = sign(&body, &SecretString::from(key.to_owned()));
        let response = self
            .http
            .post(self.server.webhook_url())
            .header("X-Event-Key", "repo:refs_changed")
            .header("X-Request-Id", delivery)
            .header("X-Hub-Signature", signature)
            .body(body)
            .send()
            .await
            .unwrap();
        (response.status(), response.json().await.unwrap_or_default())
    }

    async fn health(&self) -> serde_json::Value {
        let url = format!("http://{}/health", self.server.addr());
        let response = self.http.get(url).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.unwrap()
    }

    /// Waits (bounded) until the queue has nothing pending or in flight.
    async fn drained(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.server.hub().queue_stats().await.unwrap().is_drained() {
            assert!(Instant::now() < deadline, "the queue did not drain");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
