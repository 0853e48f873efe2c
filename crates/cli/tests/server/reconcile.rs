//! The server's reconcile timer: a push whose webhook delivery was lost is synced within one
//! `--reconcile-every` period, without another push.

use std::collections::BTreeMap;
use std::time::Duration;

use hubsync_cli::serve::ServeArgs;
use hubsync_cli::serve::reconcile::ReconcileEvery;
use hubsync_core::ports::RepoRegistry;
use hubsync_core::testing::fixtures::{files, model};
use tokio::time::Instant;

use crate::{secret, spawn_app_with};

#[tokio::test]
async fn a_push_that_was_never_delivered_is_synced_within_one_reconcile_period() {
    // Arrange: a short period, a registered repository, and a commit nobody delivers.
    let app = spawn_app_with(
        ServeArgs {
            reconcile_every: ReconcileEvery(Some(Duration::from_millis(50))),
            ..ServeArgs::default()
        },
        Some(secret()),
    )
    .await;
    app.server.hub().register(&app.repo).await.unwrap();
    let head = app.host.commit(&app.repo, files(&[("a.json", model("A"))]));

    // Act: only the timer runs; wait (bounded) for the cursor to reach the head.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let record = app.server.hub().repo(&app.repo).await.unwrap().unwrap();
        if record.cursor.as_ref().map(|c| &c.commit) == Some(&head) {
            break;
        }
        assert!(Instant::now() < deadline, "not synced by the reconcile: {record:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // Assert
    app.drained().await;
    assert_eq!(app.server.hub().dead_letters().await.unwrap().len(), 0);
    app.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn with_the_timer_off_a_reconcile_still_runs_when_asked() {
    let app = spawn_app_with(
        ServeArgs {
            reconcile_every: "off".parse().unwrap(),
            ..ServeArgs::default()
        },
        Some(secret()),
    )
    .await;
    app.server.hub().register(&app.repo).await.unwrap();
    app.host.commit(&app.repo, BTreeMap::new());

    let before = app.server.hub().queue_stats().await.unwrap();
    let report = app.server.reconcile_now().await.unwrap();

    assert!(before.is_drained());
    assert_eq!(report.queued, vec![app.repo.clone()]);
    app.server.shutdown().await.unwrap();
}
