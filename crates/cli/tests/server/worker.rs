//! What the workers do with a push that keeps failing, and with a sync that panics.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use hubsync_cli::config::LocalConfig;
use hubsync_cli::serve::{ServeArgs, start_with};
use hubsync_core::ids::RepoRef;
use hubsync_core::ports::{ConnectError, GitHostConnector};
use hubsync_core::ports::{GitHostErrorKind, RepoRegistry};
use hubsync_core::secrets::HubSecret;
use serde_json::json;
use tokio::time::Instant;

use hubsync_core::testing::fixtures::refs_changed;

use crate::{App, SECRET, SharedHost, secret, spawn_app_with};

#[tokio::test]
async fn a_push_that_keeps_failing_is_dead_lettered_after_max_attempts() {
    let app = spawn_app_with(
        ServeArgs {
            max_attempts: 1,
            ..ServeArgs::default()
        },
        Some(secret()),
    )
    .await;
    app.server.hub().register(&app.repo).await.unwrap();
    let head = app.host.commit(&app.repo, BTreeMap::new());
    app.host.fail_next(GitHostErrorKind::Unauthorized);

    let (status, _) = app.post("d1", refs_changed(&app.repo, &head), SECRET).await;
    app.drained().await;

    assert_eq!(status, StatusCode::ACCEPTED);
    let dead = app.server.hub().dead_letters().await.unwrap();
    assert_eq!(dead.len(), 1);
    assert!(dead[0].reason.contains("Unauthorized"), "{}", dead[0].reason);
    let record = app.server.hub().repo(&app.repo).await.unwrap().unwrap();
    assert!(record.last_error.is_some());
    assert_eq!(app.health().await["queue"]["deadLetters"], json!(1));
    app.server.shutdown().await.unwrap();
}

/// Panics the first time it is asked for a host, then behaves.
#[derive(Clone, Default)]
struct PanicsOnce(SharedHost, Arc<std::sync::atomic::AtomicBool>);

impl GitHostConnector for PanicsOnce {
    type Host = SharedHost;
    fn connect(&self, secret: &HubSecret) -> Result<SharedHost, ConnectError> {
        if !self.1.swap(true, std::sync::atomic::Ordering::SeqCst) {
            panic!("injected panic");
        }
        self.0.connect(secret)
    }
}

#[tokio::test]
async fn a_panicking_sync_releases_its_push_and_the_worker_carries_on() {
    let dir = tempfile::tempdir().unwrap();
    let local = LocalConfig {
        db_path: dir.path().join("hub.db"),
        secret: Some(secret()),
    };
    let args = ServeArgs {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        workers: 1,
        ..ServeArgs::default()
    };
    let connector = PanicsOnce::default();
    let server = start_with(args, local, connector.clone()).await.unwrap();
    let app = App {
        server,
        host: connector.0.clone(),
        http: reqwest::Client::builder().no_proxy().build().unwrap(),
        repo: RepoRef::parse("DATA/models").unwrap(),
        _dir: dir,
    };
    let head = app.host.commit(&app.repo, BTreeMap::new());
    let other = RepoRef::parse("DATA/other").unwrap();

    app.post("panics", refs_changed(&app.repo, &head), SECRET).await;
    app.post("after", refs_changed(&other, &head), SECRET).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let stats = loop {
        let stats = app.server.hub().queue_stats().await.unwrap();
        if stats.pending == 1 && stats.in_flight == 0 {
            break stats;
        }
        assert!(Instant::now() < deadline, "{stats:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };

    // The panicking push waits out its backoff; the next one was handled by the same worker.
    assert_eq!(stats.dead_letters, 0);
    let leased = app.server.hub().receive(Duration::from_secs(60)).await.unwrap();
    assert!(leased.is_none(), "the released push must wait out its backoff");
    app.server.shutdown().await.unwrap();
}
