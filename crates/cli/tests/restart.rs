//! `hubsync serve` killed with SIGKILL in the middle of a sync, then started again on the same
//! database, loses nothing: the push was queued durably before the webhook was answered, its lease
//! expires, and the restarted server syncs it to completion.

mod common;

use std::time::Duration;

use common::BOUND;
use hubsync_bitbucket_sim::models::{ModelSpec, generate_model};
use hubsync_bitbucket_sim::{FileOp, SimConfig, Simulator, StatusCode};
use hubsync_core::ids::RepoRef;
use hubsync_core::ports::{ModelStore, RepoRegistry};
use hubsync_sqlite::SqliteHub;
use secrecy::ExposeSecret;
use tokio::process::{Child, Command};
use tokio::time::{Instant, timeout};

const SECRET: &str = "restart-test-secret";

async fn spawn_serve(sim: &Simulator, db: &std::path::Path) -> (Child, String) {
    let token = sim.token().expose_secret().to_owned();
    common::spawn_serve(db, sim.base_url(), &token, SECRET, &["--visibility-timeout", "2"]).await
}

/// Waits for a condition, checked again whenever `poll` says so, until a deadline.
async fn wait_until<F: AsyncFnMut() -> bool>(what: &str, mut condition: F) {
    let deadline = Instant::now() + BOUND;
    while !condition().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_serve_mid_sync_and_starting_it_again_loses_nothing() {
    // Arrange: a repository of models, registered in the local database.
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let repo = sim.create_repo("DATA", "models").unwrap();
    let files: Vec<FileOp> = (0..6u64)
        .map(|i| {
            let spec = ModelSpec {
                seed: i,
                name: format!("Model {i}"),
                app_target: "MONGODB".into(),
                target_bytes: 200_000,
                polyglot_refs: false,
                polyglot_model_path: None,
            };
            FileOp::write(format!("models/m{i}.hck.json"), generate_model(&spec))
        })
        .collect();
    let push = repo.commit("main", &files, "models").unwrap();
    let head = push.to_hash().unwrap().to_owned();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hub.db");
    let id = RepoRef::parse("DATA/models").unwrap();
    SqliteHub::open(&db).unwrap().register(&id).await.unwrap();

    // Act 1: the push is accepted, and the server is killed while the sync waits out a 503.
    sim.fail_next(3, StatusCode::SERVICE_UNAVAILABLE, Some(1));
    let (mut first, base) = spawn_serve(&sim, &db).await;
    let delivery = sim.webhook(&repo, &push, Some(SECRET)).unwrap();
    let answer = delivery.send(&format!("{base}/gateway/public/sync")).await.unwrap();
    wait_until("the sync has started and hit the injected fault", async || {
        sim.requests().iter().any(|r| r.injected)
    })
    .await;
    first.kill().await.unwrap();

    let hub = SqliteHub::open(&db).unwrap();
    let after_kill = hub.queue_stats().await.unwrap();
    let cursor_after_kill = hub.repo(&id).await.unwrap().unwrap().cursor;

    // Act 2: start again on the same database.
    sim.clear_faults();
    let (mut second, base) = spawn_serve(&sim, &db).await;
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    wait_until("the restarted server has drained its queue", async || {
        let health: serde_json::Value = http
            .get(format!("{base}/health"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        health["queue"]["pending"] == 0 && health["queue"]["inFlight"] == 0
    })
    .await;
    let _ = Command::new("kill")
        .args(["-TERM", &second.id().unwrap().to_string()])
        .status()
        .await;
    let _ = timeout(BOUND, second.wait()).await;

    // Assert: the push survived the kill, and every model is replicated exactly.
    assert_eq!(answer.status, 202);
    assert_eq!(
        after_kill.pending + after_kill.in_flight,
        1,
        "the push was still queued when the server died"
    );
    assert!(
        cursor_after_kill.is_none(),
        "the sync had not finished when the server died"
    );
    let stats = hub.queue_stats().await.unwrap();
    assert_eq!(stats.dead_letters, 0);
    let record = hub.repo(&id).await.unwrap().unwrap();
    assert_eq!(record.cursor.map(|c| c.commit.to_string()), Some(head.clone()));
    let models = hub.list_models(&id).await.unwrap();
    assert_eq!(models.len(), 6);
    for m in models {
        let stored = hub.get_model(&id, &m.path).await.unwrap().unwrap();
        assert!(
            stored.content == repo.read_file(&head, &m.path).unwrap().unwrap(),
            "{} is stored whole",
            m.path
        );
    }
}
