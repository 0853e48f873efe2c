//! The reconcile against the in-memory adapters: a repository whose default branch is ahead of
//! its cursor gets one sync queued, which the sync engine applies like a push, from the cursor.

use std::sync::Arc;

use chrono::Utc;
use hubsync_core::ids::RepoRef;
use hubsync_core::ports::{GitHostErrorKind, ModelStore, RepoRegistry};
use hubsync_core::push::MessageKind;
use hubsync_core::reconcile::reconcile;
use hubsync_core::secrets::StaticSecret;
use hubsync_core::sync::{SyncEngine, SyncMode, SyncOptions, SyncOutcome, SyncWorker};
use hubsync_core::testing::fixtures::{files, hub_secret, model, push};
use hubsync_core::testing::memory::{MemoryGitHost, MemoryQueue, MemoryStore};

fn repo(name: &str) -> RepoRef {
    RepoRef::parse(name).unwrap()
}

#[tokio::test]
async fn a_repository_behind_its_head_gets_one_sync_queued_and_it_applies_the_diff_from_the_cursor() {
    // Arrange: synced at a first commit; a second commit whose delivery was lost.
    let (host, store, queue) = (MemoryGitHost::default(), MemoryStore::default(), MemoryQueue::default());
    let r = repo("DATA/models");
    store.register(&r).await.unwrap();
    let first = host.commit(&r, files(&[("a.json", model("A"))]));
    let engine = SyncEngine::new(&host, &store, SyncOptions::default());
    engine.handle_push(&push(&r, &first)).await.unwrap();
    let head = host.commit(&r, files(&[("a.json", model("A")), ("b.json", model("B"))]));

    // Act
    let report = reconcile(&store, &host, &queue, Utc::now()).await.unwrap();
    let again = reconcile(&store, &host, &queue, Utc::now()).await.unwrap();

    // Assert: queued once, then deduplicated; syncing it is an incremental sync to the head.
    assert_eq!(report.queued, vec![r.clone()]);
    assert_eq!(again.already_queued, vec![r.clone()]);
    let messages = queue.messages();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].kind, MessageKind::Reconcile);
    let outcome = engine.handle_push(&messages[0]).await.unwrap();
    assert!(
        matches!(&outcome, SyncOutcome::Synced { from: Some(from), to, mode: SyncMode::Incremental, .. }
            if *from == first && *to == head),
        "{outcome:?}"
    );
    assert_eq!(store.list_models(&r).await.unwrap().len(), 2);
}

#[tokio::test]
async fn up_to_date_and_empty_repositories_queue_nothing() {
    let (host, store, queue) = (MemoryGitHost::default(), MemoryStore::default(), MemoryQueue::default());
    let synced = repo("DATA/synced");
    let empty = repo("DATA/empty");
    store.register(&synced).await.unwrap();
    store.register(&empty).await.unwrap();
    let head = host.commit(&synced, files(&[("a.json", model("A"))]));
    SyncEngine::new(&host, &store, SyncOptions::default())
        .handle_push(&push(&synced, &head))
        .await
        .unwrap();

    let report = reconcile(&store, &host, &queue, Utc::now()).await.unwrap();

    assert_eq!(report.checked, 2);
    assert_eq!(report.up_to_date, 2);
    assert!(queue.messages().is_empty());
}

#[tokio::test]
async fn a_repository_never_synced_is_queued_from_no_commit() {
    let (host, store, queue) = (MemoryGitHost::default(), MemoryStore::default(), MemoryQueue::default());
    let r = repo("DATA/models");
    store.register(&r).await.unwrap();
    host.commit(&r, files(&[("a.json", model("A"))]));

    reconcile(&store, &host, &queue, Utc::now()).await.unwrap();

    let outcome = SyncEngine::new(&host, &store, SyncOptions::default())
        .handle_push(&queue.messages()[0])
        .await
        .unwrap();
    assert!(matches!(outcome, SyncOutcome::Synced { from: None, .. }), "{outcome:?}");
}

#[tokio::test]
async fn a_repository_the_host_refuses_is_reported_and_the_others_are_still_checked() {
    let (host, store, queue) = (MemoryGitHost::default(), MemoryStore::default(), MemoryQueue::default());
    let (a, b) = (repo("DATA/a"), repo("DATA/b"));
    store.register(&a).await.unwrap();
    store.register(&b).await.unwrap();
    host.commit(&a, files(&[("a.json", model("A"))]));
    host.commit(&b, files(&[("b.json", model("B"))]));
    host.fail_next(GitHostErrorKind::Forbidden);

    let report = reconcile(&store, &host, &queue, Utc::now()).await.unwrap();

    assert_eq!(report.failed.len(), 1);
    assert_eq!(report.queued.len(), 1);
}

#[tokio::test]
async fn a_worker_reconciles_with_a_host_built_from_the_secret() {
    let host = Arc::new(MemoryGitHost::default());
    let worker = SyncWorker {
        store: MemoryStore::default(),
        secrets: StaticSecret::new(hub_secret("w")),
        connector: host.clone(),
        options: SyncOptions::default(),
    };
    let queue = MemoryQueue::default();
    let r = repo("DATA/models");
    worker.store.register(&r).await.unwrap();
    host.commit(&r, files(&[("a.json", model("A"))]));

    let report = worker.reconcile(&queue).await.unwrap();

    assert_eq!(report.queued, vec![r]);
}
