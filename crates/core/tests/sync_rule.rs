//! The sync rule against the in-memory adapters: the store ends up holding exactly the models at
//! the default branch's head, whatever the history of pushes.

use std::sync::atomic::{AtomicUsize, Ordering};

use chrono::Utc;
use hubsync_core::ids::{CommitId, DeliveryId, RepoRef};
use hubsync_core::model::ModelStatus;
use hubsync_core::ports::{
    Admission, Ancestry, ChangeSet, ConnectError, DefaultBranch, GitHost, GitHostConnector, GitHostError,
    GitHostErrorKind, ModelStore, RawFile, RepoRegistry,
};
use hubsync_core::push::{MessageKind, PushMessage, SyncRequest};
use hubsync_core::secrets::{HubSecret, StaticSecret};
use hubsync_core::sync::{
    FetchBudget, FullSyncReason, NoProgress, SyncEngine, SyncError, SyncMode, SyncOptions, SyncOutcome, SyncWorker,
};
use hubsync_core::testing::fixtures::{commit, files, hub_secret, incompressible_model, model, push, push_to};
use hubsync_core::testing::memory::{MemoryGitHost, MemoryStore};

async fn stored_paths(store: &MemoryStore, repo: &RepoRef) -> Vec<String> {
    store
        .list_models(repo)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.path)
        .collect()
}

struct Fixture {
    host: MemoryGitHost,
    store: MemoryStore,
    repo: RepoRef,
}

impl Fixture {
    async fn registered() -> Self {
        let f = Self {
            host: MemoryGitHost::default(),
            store: MemoryStore::default(),
            repo: RepoRef::parse("DATA/models").unwrap(),
        };
        f.store.register(&f.repo).await.unwrap();
        f
    }

    async fn push_main(&self, head: &CommitId) -> SyncOutcome {
        let engine = SyncEngine::new(&self.host, &self.store, SyncOptions::default());
        engine.handle_push(&push(&self.repo, head)).await.unwrap()
    }
}

#[tokio::test]
async fn a_first_push_syncs_every_model_and_skips_other_json() {
    let f = Fixture::registered().await;
    let head = f.host.commit(
        &f.repo,
        files(&[
            ("a/orders.hck.json", model("Orders")),
            ("b/c/users.json", model("Users")),
            ("openapi.json", b"{\"openapi\":\"3.1.0\"}".to_vec()),
            ("README.md", b"# hi".to_vec()),
        ]),
    );
    let outcome = f.push_main(&head).await;
    let SyncOutcome::Synced { mode, stats, .. } = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(mode, SyncMode::Full(FullSyncReason::FirstSync));
    assert_eq!((stats.written, stats.skipped), (2, 1));
    assert_eq!(
        stored_paths(&f.store, &f.repo).await,
        ["a/orders.hck.json", "b/c/users.json"]
    );
    let stored = f.store.get_model(&f.repo, "a/orders.hck.json").await.unwrap().unwrap();
    assert_eq!(stored.content, model("Orders"));
    assert_eq!(
        f.store.repo(&f.repo).await.unwrap().unwrap().cursor.unwrap().commit,
        head
    );
}

#[tokio::test]
async fn later_pushes_apply_the_diff_from_the_cursor() {
    let f = Fixture::registered().await;
    let c1 = f
        .host
        .commit(&f.repo, files(&[("a.json", model("A")), ("b.json", model("B"))]));
    f.push_main(&c1).await;
    let c2 = f
        .host
        .commit(&f.repo, files(&[("a.json", model("A2")), ("c.json", model("C"))]));
    let SyncOutcome::Synced { mode, stats, from, .. } = f.push_main(&c2).await else {
        panic!()
    };
    assert_eq!(mode, SyncMode::Incremental);
    assert_eq!(from, Some(c1));
    assert_eq!((stats.written, stats.removed), (2, 1));
    assert_eq!(stored_paths(&f.store, &f.repo).await, ["a.json", "c.json"]);
    assert_eq!(
        f.store.get_model(&f.repo, "a.json").await.unwrap().unwrap().content,
        model("A2")
    );
}

#[tokio::test]
async fn the_same_push_twice_changes_nothing() {
    let f = Fixture::registered().await;
    let c1 = f.host.commit(&f.repo, files(&[("a.json", model("A"))]));
    f.push_main(&c1).await;
    assert_eq!(f.push_main(&c1).await, SyncOutcome::UpToDate { head: c1 });
}

#[tokio::test]
async fn a_lost_event_is_healed_by_the_next_push() {
    let f = Fixture::registered().await;
    let c1 = f.host.commit(&f.repo, files(&[("a.json", model("A"))]));
    f.push_main(&c1).await;
    let _lost = f
        .host
        .commit(&f.repo, files(&[("a.json", model("A")), ("b.json", model("B"))]));
    let c3 = f
        .host
        .commit(&f.repo, files(&[("b.json", model("B")), ("c.json", model("C"))]));
    f.push_main(&c3).await;
    assert_eq!(stored_paths(&f.store, &f.repo).await, ["b.json", "c.json"]);
}

#[tokio::test]
async fn pushes_to_other_branches_and_unregistered_repositories_are_skipped() {
    let f = Fixture::registered().await;
    let c1 = f.host.commit(&f.repo, files(&[("a.json", model("A"))]));
    let engine = SyncEngine::new(&f.host, &f.store, SyncOptions::default());
    let outcome = engine
        .handle_push(&push_to(&f.repo, "refs/heads/feature", &c1))
        .await
        .unwrap();
    assert!(matches!(outcome, SyncOutcome::NotDefaultBranch { .. }), "{outcome:?}");
    let other = RepoRef::parse("DATA/other").unwrap();
    assert_eq!(
        engine.handle_push(&push(&other, &c1)).await.unwrap(),
        SyncOutcome::NotRegistered
    );
    assert!(stored_paths(&f.store, &f.repo).await.is_empty());
}

#[tokio::test]
async fn a_hubignore_change_removes_and_restores_models_at_once() {
    let f = Fixture::registered().await;
    let c1 = f
        .host
        .commit(&f.repo, files(&[("drafts/a.json", model("A")), ("b.json", model("B"))]));
    f.push_main(&c1).await;
    let c2 = f.host.commit(
        &f.repo,
        files(&[
            (".hubignore", b"drafts/\n".to_vec()),
            ("drafts/a.json", model("A")),
            ("b.json", model("B")),
        ]),
    );
    let SyncOutcome::Synced { mode, .. } = f.push_main(&c2).await else {
        panic!()
    };
    assert_eq!(mode, SyncMode::Full(FullSyncReason::HubignoreChanged));
    assert_eq!(stored_paths(&f.store, &f.repo).await, ["b.json"]);
    let c3 = f
        .host
        .commit(&f.repo, files(&[("drafts/a.json", model("A")), ("b.json", model("B"))]));
    f.push_main(&c3).await;
    assert_eq!(stored_paths(&f.store, &f.repo).await, ["b.json", "drafts/a.json"]);
}

#[tokio::test]
async fn a_capped_diff_falls_back_to_a_full_sync() {
    let f = Fixture::registered().await;
    let c1 = f.host.commit(&f.repo, files(&[("a.json", model("A"))]));
    f.push_main(&c1).await;
    f.host.set_max_changes(Some(2));
    let many: Vec<(String, Vec<u8>)> = (0..5)
        .map(|i| (format!("m{i}.json"), model(&format!("M{i}"))))
        .collect();
    let c2 = f.host.commit(&f.repo, many.into_iter().collect());
    let SyncOutcome::Synced { mode, .. } = f.push_main(&c2).await else {
        panic!()
    };
    assert_eq!(mode, SyncMode::Full(FullSyncReason::TooManyChanges));
    assert_eq!(stored_paths(&f.store, &f.repo).await.len(), 5);
}

#[tokio::test]
async fn a_vanished_cursor_commit_falls_back_to_a_full_sync() {
    let f = Fixture::registered().await;
    let c1 = f.host.commit(&f.repo, files(&[("a.json", model("A"))]));
    f.push_main(&c1).await;
    f.host.forget(&c1);
    let c2 = f.host.commit(&f.repo, files(&[("b.json", model("B"))]));
    let SyncOutcome::Synced { mode, .. } = f.push_main(&c2).await else {
        panic!()
    };
    assert_eq!(mode, SyncMode::Full(FullSyncReason::CursorUnreachable));
    assert_eq!(stored_paths(&f.store, &f.repo).await, ["b.json"]);
}

#[tokio::test]
async fn a_malformed_model_is_recorded_with_its_error() {
    let f = Fixture::registered().await;
    let c1 = f
        .host
        .commit(&f.repo, files(&[("bad.hck.json", b"{\"modelName\": ".to_vec())]));
    let SyncOutcome::Synced { stats, .. } = f.push_main(&c1).await else {
        panic!()
    };
    assert_eq!(stats.malformed, 1);
    let stored = f.store.get_model(&f.repo, "bad.hck.json").await.unwrap().unwrap();
    assert!(matches!(stored.status, ModelStatus::Malformed { .. }));
}

#[tokio::test]
async fn a_failed_sync_keeps_the_cursor_and_records_the_error() {
    let f = Fixture::registered().await;
    let c1 = f.host.commit(&f.repo, files(&[("a.json", model("A"))]));
    f.push_main(&c1).await;
    let c2 = f.host.commit(&f.repo, files(&[("a.json", model("A2"))]));
    f.host.fail_next(GitHostErrorKind::Unauthorized);
    let engine = SyncEngine::new(&f.host, &f.store, SyncOptions::default());
    let err = engine.handle_push(&push(&f.repo, &c2)).await.unwrap_err();
    assert!(!err.is_retryable());
    let record = f.store.repo(&f.repo).await.unwrap().unwrap();
    assert_eq!(record.cursor.unwrap().commit, c1);
    assert!(record.last_error.unwrap().message.contains("DATA/models"));
    f.push_main(&c2).await;
    assert!(f.store.repo(&f.repo).await.unwrap().unwrap().last_error.is_none());
}

#[tokio::test]
async fn a_file_that_stops_being_a_model_is_removed() {
    let f = Fixture::registered().await;
    let c1 = f.host.commit(&f.repo, files(&[("a.json", model("A"))]));
    f.push_main(&c1).await;
    let c2 = f
        .host
        .commit(&f.repo, files(&[("a.json", b"{\"just\":\"data\"}".to_vec())]));
    let SyncOutcome::Synced { stats, .. } = f.push_main(&c2).await else {
        panic!()
    };
    assert_eq!((stats.removed, stats.skipped), (1, 1));
    assert!(stored_paths(&f.store, &f.repo).await.is_empty());
}

/// A connector whose secret names a Git host it cannot use.
struct Unconfigurable;

impl GitHostConnector for Unconfigurable {
    type Host = MemoryGitHost;

    fn connect(&self, _secret: &HubSecret) -> Result<MemoryGitHost, ConnectError> {
        Err(ConnectError::new(std::io::Error::other("the base URL has no host")))
    }
}

/// A Git host that counts the model files being fetched at once.
#[derive(Default)]
struct CountingHost {
    inner: MemoryGitHost,
    in_flight: AtomicUsize,
    most: AtomicUsize,
}

impl GitHost for CountingHost {
    async fn default_branch(&self, repo: &RepoRef) -> Result<Option<DefaultBranch>, GitHostError> {
        self.inner.default_branch(repo).await
    }

    async fn changes(&self, repo: &RepoRef, since: &CommitId, until: &CommitId) -> Result<ChangeSet, GitHostError> {
        self.inner.changes(repo, since, until).await
    }

    async fn list_files(&self, repo: &RepoRef, at: &CommitId) -> Result<Vec<String>, GitHostError> {
        self.inner.list_files(repo, at).await
    }

    async fn ancestry(&self, repo: &RepoRef, commit: &CommitId, head: &CommitId) -> Result<Ancestry, GitHostError> {
        self.inner.ancestry(repo, commit, head).await
    }

    async fn raw_file(
        &self,
        repo: &RepoRef,
        path: &str,
        at: &CommitId,
        limit: u64,
        admission: &mut Admission,
    ) -> Result<Option<RawFile>, GitHostError> {
        if !path.ends_with(".json") {
            return self.inner.raw_file(repo, path, at, limit, admission).await;
        }
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(now, Ordering::SeqCst);
        // Let every other fetch that may start now start before this one ends.
        for _ in 0..8 {
            tokio::task::yield_now().await;
        }
        let read = self.inner.raw_file(repo, path, at, limit, admission).await;
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        read
    }
}

#[tokio::test]
async fn a_git_host_that_cannot_be_configured_fails_the_push_for_a_person_to_fix() {
    let worker = SyncWorker {
        store: MemoryStore::default(),
        secrets: StaticSecret::new(hub_secret("w")),
        connector: Unconfigurable,
        options: SyncOptions::default(),
    };
    let repo = RepoRef::parse("DATA/models").unwrap();
    worker.store.register(&repo).await.unwrap();

    let error = worker.handle_push(&push(&repo, &commit(1))).await.unwrap_err();

    assert!(matches!(error, SyncError::HostConfig(_)), "{error:?}");
    assert!(!error.is_retryable());
    assert_eq!(
        error.to_string(),
        "the Git host client cannot be configured: the base URL has no host"
    );
}

mod secret_and_registry {
    //! A queued push reads the hub secret and the registry at once (a cold start's first answer
    //! waits for the slower read, not both), and fails on the secret as when it read it first.

    use std::sync::Arc;

    use hubsync_core::ports::{SecretError, SecretSource};
    use hubsync_core::secrets::HubSecret;
    use tokio::sync::Semaphore;

    use super::*;

    /// A secret store that answers only once it is opened.
    struct Gated {
        open: Semaphore,
    }

    impl SecretSource for Gated {
        async fn hub_secret(&self) -> Result<Arc<HubSecret>, SecretError> {
            let _open = self.open.acquire().await;
            Ok(Arc::new(hub_secret("w")))
        }
    }

    /// A secret store that cannot be reached.
    struct Unreachable;

    impl SecretSource for Unreachable {
        async fn hub_secret(&self) -> Result<Arc<HubSecret>, SecretError> {
            Err(SecretError::Unavailable {
                message: "connection refused".into(),
                source: None,
            })
        }
    }

    #[tokio::test]
    async fn a_push_reads_the_registry_while_the_secret_is_still_being_read() {
        // Arrange
        let worker = SyncWorker {
            store: MemoryStore::default(),
            secrets: Gated {
                open: Semaphore::new(0),
            },
            connector: Arc::new(MemoryGitHost::default()),
            options: SyncOptions::default(),
        };
        let repo = RepoRef::parse("DATA/unregistered").unwrap();
        let push = push(&repo, &commit(1));

        // Act: the sync goes as far as it can while the secret store has not answered.
        let mut sync = std::pin::pin!(worker.handle_push(&push));
        let waiting = futures::poll!(&mut sync).is_pending();
        let reads_while_waiting = worker.store.registry_reads();
        worker.secrets.open.add_permits(1);
        let outcome = sync.await;

        // Assert
        assert!(waiting, "the push waits for the secret");
        assert_eq!(
            reads_while_waiting, 1,
            "the registry is read without waiting for the secret"
        );
        assert!(matches!(outcome, Ok(SyncOutcome::NotRegistered)), "{outcome:?}");
    }

    #[tokio::test]
    async fn a_push_whose_secret_cannot_be_read_fails_to_be_retried_registered_or_not() {
        // Arrange
        let worker = SyncWorker {
            store: MemoryStore::default(),
            secrets: Unreachable,
            connector: Arc::new(MemoryGitHost::default()),
            options: SyncOptions::default(),
        };
        let registered = RepoRef::parse("DATA/models").unwrap();
        let unregistered = RepoRef::parse("DATA/other").unwrap();
        worker.store.register(&registered).await.unwrap();

        // Act
        let results = [
            worker.handle_push(&push(&registered, &commit(1))).await,
            worker.handle_push(&push(&unregistered, &commit(1))).await,
        ];

        // Assert: as when the secret was read first: a retryable secret error, nothing recorded.
        for result in results {
            let error = result.unwrap_err();
            assert!(matches!(error, SyncError::Secret(_)), "{error:?}");
            assert!(error.is_retryable());
        }
        let record = worker.store.repo(&registered).await.unwrap().unwrap();
        assert!(record.last_error.is_none(), "{record:?}");
        assert!(record.cursor.is_none());
    }
}

mod one_writer {
    //! One writer per repository: the sync lease, its fencing, and what a sync does when the
    //! previous one did not finish or the cursor moved under it.

    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    use chrono::Utc;

    use hubsync_core::model::ModelRecord;
    use hubsync_core::ports::{
        ChangeSet, DefaultBranch, GitHost, GitHostError, LeaseOwner, StoreError, SyncCursor, SyncStats,
    };
    use hubsync_core::sync::SyncError;

    use super::*;

    #[tokio::test]
    async fn a_sync_of_a_repository_whose_lease_is_held_backs_off_saying_who_holds_it_until_when() {
        // Arrange
        let f = Fixture::registered().await;
        let head = f.host.commit(&f.repo, files(&[("a.json", model("A"))]));
        let holder = LeaseOwner::generate("hubsync pid 1");
        let held = f
            .store
            .acquire_lease(&f.repo, &holder, Duration::from_secs(60))
            .await
            .unwrap();
        let engine = SyncEngine::new(&f.host, &f.store, SyncOptions::default());

        // Act
        let result = engine.handle_push(&push(&f.repo, &head)).await;

        // Assert
        let error = result.expect_err("the lease is held");
        assert!(error.is_retryable());
        let until = held.expires_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        assert_eq!(
            error.to_string(),
            format!("sync of DATA/models is held by {holder} until {until}")
        );
        assert!(stored_paths(&f.store, &f.repo).await.is_empty());
        let record = f.store.repo(&f.repo).await.unwrap().unwrap();
        assert!(record.cursor.is_none());
        assert!(
            record.last_error.is_none(),
            "contention is not the repository's failure"
        );
    }

    #[tokio::test]
    async fn a_sync_releases_its_lease_when_it_succeeds_and_when_it_fails() {
        // Arrange
        let f = Fixture::registered().await;
        let head = f.host.commit(&f.repo, files(&[("a.json", model("A"))]));
        let engine = SyncEngine::new(&f.host, &f.store, SyncOptions::default());
        f.host.fail_next(GitHostErrorKind::Server);
        engine
            .handle_push(&push(&f.repo, &head))
            .await
            .expect_err("injected failure");

        // Act
        let outcome = engine.handle_push(&push(&f.repo, &head)).await;
        let after = f
            .store
            .acquire_lease(&f.repo, &LeaseOwner::generate("next"), Duration::from_secs(60))
            .await;

        // Assert
        assert!(matches!(outcome, Ok(SyncOutcome::Synced { .. })), "{outcome:?}");
        assert!(!after.expect("released").previous_unfinished);
    }

    #[tokio::test]
    async fn a_sync_after_one_that_died_holding_the_lease_reconciles_the_whole_tree() {
        // Arrange: C1 synced; a sync towards C2 wrote a.json's C2 version and died, lease held.
        let f = Fixture::registered().await;
        let c1 = f.host.commit(&f.repo, files(&[("a.json", model("A1"))]));
        f.push_main(&c1).await;
        let c2 = f.host.commit(&f.repo, files(&[("a.json", model("A2"))]));
        let ttl = Duration::from_secs(60);
        let dead = f
            .store
            .acquire_lease(&f.repo, &LeaseOwner::generate("dead"), ttl)
            .await
            .unwrap();
        let written = ModelRecord::new(
            "a.json".into(),
            c2,
            Utc::now(),
            ModelStatus::Malformed { error: "half".into() },
            model("A2"),
        );
        f.store.put_model(&dead, &written).await.unwrap();
        f.store.advance_clock(ttl * 2);
        // C3 reverts a.json to C1's version: the diff from the cursor C1 does not name it.
        let c3 = f.host.commit(&f.repo, files(&[("a.json", model("A1"))]));

        // Act
        let outcome = f.push_main(&c3).await;

        // Assert
        let SyncOutcome::Synced { mode, .. } = outcome else {
            panic!("{outcome:?}")
        };
        assert_eq!(mode, SyncMode::Full(FullSyncReason::PreviousUnfinished));
        let stored = f.store.get_model(&f.repo, "a.json").await.unwrap().unwrap();
        assert_eq!(stored.content, model("A1"));
    }

    /// A host that, while the sync fetches, lets a writer that takes no lease push `next` and move
    /// the cursor to it.
    struct MovesCursor<'a> {
        host: &'a MemoryGitHost,
        store: &'a MemoryStore,
        repo: RepoRef,
        next: BTreeMap<String, Vec<u8>>,
        done: AtomicBool,
    }

    impl GitHost for MovesCursor<'_> {
        async fn default_branch(&self, repo: &RepoRef) -> Result<Option<DefaultBranch>, GitHostError> {
            self.host.default_branch(repo).await
        }
        async fn changes(&self, repo: &RepoRef, since: &CommitId, until: &CommitId) -> Result<ChangeSet, GitHostError> {
            self.host.changes(repo, since, until).await
        }
        async fn list_files(&self, repo: &RepoRef, at: &CommitId) -> Result<Vec<String>, GitHostError> {
            self.host.list_files(repo, at).await
        }
        async fn ancestry(&self, repo: &RepoRef, commit: &CommitId, head: &CommitId) -> Result<Ancestry, GitHostError> {
            self.host.ancestry(repo, commit, head).await
        }
        async fn raw_file(
            &self,
            repo: &RepoRef,
            path: &str,
            at: &CommitId,
            limit: u64,
            admission: &mut Admission,
        ) -> Result<Option<RawFile>, GitHostError> {
            let answer = self.host.raw_file(repo, path, at, limit, admission).await;
            if path == "a.json" && !self.done.swap(true, Ordering::SeqCst) {
                let moved = self.host.commit(&self.repo, self.next.clone());
                self.store.overwrite_cursor(
                    &self.repo,
                    SyncCursor {
                        commit: moved,
                        synced_at: Utc::now(),
                        stats: SyncStats::default(),
                        hubignore: None,
                    },
                );
            }
            answer
        }
    }

    #[tokio::test]
    async fn a_sync_that_finds_the_cursor_moved_under_it_reconciles_against_the_new_head() {
        // Arrange
        let f = Fixture::registered().await;
        let c1 = f.host.commit(&f.repo, files(&[("a.json", model("A1"))]));
        f.push_main(&c1).await;
        let c2 = f.host.commit(&f.repo, files(&[("a.json", model("A2"))]));
        let host = MovesCursor {
            host: &f.host,
            store: &f.store,
            repo: f.repo.clone(),
            next: files(&[("a.json", model("A3")), ("b.json", model("B3"))]),
            done: AtomicBool::new(false),
        };
        let engine = SyncEngine::new(&host, &f.store, SyncOptions::default());

        // Act: as the queue would, a retryable failure is tried again.
        let mut outcome = engine.handle_push(&push(&f.repo, &c2)).await;
        if outcome.as_ref().is_err_and(SyncError::is_retryable) {
            outcome = engine.handle_push(&push(&f.repo, &c2)).await;
        }

        // Assert
        assert!(
            matches!(
                outcome,
                Ok(SyncOutcome::Synced {
                    mode: SyncMode::Full(FullSyncReason::CursorMoved),
                    ..
                })
            ),
            "{outcome:?}"
        );
        let head = f.host.default_branch(&f.repo).await.unwrap().unwrap().head;
        assert_eq!(
            f.store.repo(&f.repo).await.unwrap().unwrap().cursor.unwrap().commit,
            head
        );
        let a = f.store.get_model(&f.repo, "a.json").await.unwrap().unwrap();
        assert_eq!(a.content, model("A3"));
        assert_eq!(stored_paths(&f.store, &f.repo).await, ["a.json", "b.json"]);
    }

    #[tokio::test]
    async fn a_sync_that_loses_its_lease_stops_with_a_retryable_error() {
        // Arrange: a sync whose lease lasts zero seconds loses it before its first write.
        let f = Fixture::registered().await;
        let head = f.host.commit(&f.repo, files(&[("a.json", model("A"))]));
        let options = SyncOptions {
            lease_ttl: Duration::ZERO,
            ..SyncOptions::default()
        };
        let engine = SyncEngine::new(&f.host, &f.store, options);

        // Act
        let result = engine.handle_push(&push(&f.repo, &head)).await;

        // Assert
        let error = result.expect_err("the lease is gone");
        assert!(matches!(error, SyncError::Store(StoreError::LeaseLost(_))), "{error:?}");
        assert!(error.is_retryable());
        assert!(stored_paths(&f.store, &f.repo).await.is_empty());
    }
}

#[tokio::test]
async fn a_queued_full_sync_request_reconciles_the_repository_without_a_push() {
    // Arrange
    let f = Fixture::registered().await;
    let head = f.host.commit(&f.repo, files(&[("a.json", model("A"))]));
    let request = PushMessage::full_sync(f.repo.clone(), DeliveryId::parse("sync-1").unwrap(), Utc::now());
    let engine = SyncEngine::new(&f.host, &f.store, SyncOptions::default());

    // Act
    let outcome = engine.handle_push(&request).await.unwrap();

    // Assert
    let SyncOutcome::Synced { mode, to, stats, .. } = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(request.kind, MessageKind::FullSync);
    assert_eq!(mode, SyncMode::Full(FullSyncReason::Requested));
    assert_eq!((to, stats.written), (head, 1));
    assert_eq!(stored_paths(&f.store, &f.repo).await, ["a.json"]);
}

#[tokio::test]
async fn syncs_sharing_their_options_fetch_no_more_files_at_once_than_the_options_allow() {
    // Arrange
    let host = CountingHost::default();
    let store = MemoryStore::default();
    let repos = [RepoRef::parse("DATA/one").unwrap(), RepoRef::parse("DATA/two").unwrap()];
    let mut heads = Vec::new();
    for repo in &repos {
        store.register(repo).await.unwrap();
        let models: Vec<(String, Vec<u8>)> = (0..6)
            .map(|i| (format!("m{i}.json"), model(&format!("M{i}"))))
            .collect();
        heads.push(host.inner.commit(repo, models.into_iter().collect()));
    }
    let options = SyncOptions {
        fetch: FetchBudget::new(2),
        ..SyncOptions::default()
    };
    let first = SyncEngine::new(&host, &store, options.clone());
    let second = SyncEngine::new(&host, &store, options.clone());

    // Act
    let (push_one, push_two) = (push(&repos[0], &heads[0]), push(&repos[1], &heads[1]));
    let (a, b) = tokio::join!(first.handle_push(&push_one), second.handle_push(&push_two));

    // Assert
    for outcome in [a.unwrap(), b.unwrap()] {
        assert!(
            matches!(outcome, SyncOutcome::Synced { ref stats, .. } if stats.written == 6),
            "{outcome:?}"
        );
    }
    assert_eq!(
        host.most.load(Ordering::SeqCst),
        2,
        "two repositories share two fetches"
    );
}

#[tokio::test]
async fn a_file_over_the_size_cap_is_recorded_as_too_large_and_the_rest_syncs() {
    // Arrange
    let f = Fixture::registered().await;
    let big = model(&"B".repeat(2_000));
    let head = f.host.commit(
        &f.repo,
        files(&[("big.hck.json", big.clone()), ("small.json", model("Small"))]),
    );
    let options = SyncOptions {
        max_model_bytes: 1_000,
        ..SyncOptions::default()
    };
    let engine = SyncEngine::new(&f.host, &f.store, options);

    // Act
    let outcome = engine.handle_push(&push(&f.repo, &head)).await.unwrap();
    let again = engine.sync_repo(&f.repo, true, &NoProgress).await.unwrap();

    // Assert
    let SyncOutcome::Synced { stats, .. } = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!((stats.written, stats.malformed), (1, 1));
    let stored = f
        .store
        .get_model(&f.repo, "big.hck.json")
        .await
        .unwrap()
        .expect("listed");
    assert_eq!(
        stored.status,
        ModelStatus::Malformed {
            error: format!("too large ({} bytes)", big.len())
        }
    );
    assert!(stored.content.is_empty(), "nothing of it is stored");
    let SyncOutcome::Synced { stats, .. } = again else {
        panic!("{again:?}")
    };
    assert_eq!(
        (stats.written, stats.malformed),
        (0, 1),
        "a full sync does not write it again"
    );
}

#[tokio::test]
async fn a_file_the_store_refuses_is_listed_with_the_reason_and_the_rest_syncs() {
    // Arrange
    let f = Fixture::registered().await;
    f.store
        .refuse("huge.json", "Item size has exceeded the maximum allowed size");
    let first = f.host.commit(
        &f.repo,
        files(&[("huge.json", model("Huge")), ("small.json", model("Small"))]),
    );

    // Act
    let outcome = f.push_main(&first).await;
    let next = f.host.commit(
        &f.repo,
        files(&[
            ("huge.json", model("Huge")),
            ("small.json", model("Small")),
            ("next.json", model("Next")),
        ]),
    );
    let after = f.push_main(&next).await;

    // Assert
    let SyncOutcome::Synced { stats, .. } = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!((stats.written, stats.malformed), (1, 1));
    let huge = f.store.get_model(&f.repo, "huge.json").await.unwrap().expect("listed");
    assert_eq!(
        huge.status,
        ModelStatus::Malformed {
            error: "cannot be stored: Item size has exceeded the maximum allowed size".into()
        }
    );
    assert!(huge.content.is_empty());
    assert!(matches!(after, SyncOutcome::Synced { .. }), "{after:?}");
    assert_eq!(
        stored_paths(&f.store, &f.repo).await,
        ["huge.json", "next.json", "small.json"]
    );
}

/// Removes `path` from the store as a person would by hand, outside any sync.
async fn remove_by_hand(f: &Fixture, path: &str) {
    let owner = hubsync_core::ports::LeaseOwner::generate("a person");
    let lease = f
        .store
        .acquire_lease(&f.repo, &owner, std::time::Duration::from_secs(60))
        .await
        .unwrap();
    assert!(f.store.delete_model(&lease, path).await.unwrap());
    f.store.release_lease(&lease, true).await.unwrap();
}

/// Three commits: `a` and `b` first, `c` added second, `c` modified and `d` added third; synced
/// to the third, then `a` and `c` removed from the store by hand. Returns the three commits.
async fn three_commits_synced_then_a_and_c_removed_by_hand(f: &Fixture) -> [CommitId; 3] {
    let c1 = f
        .host
        .commit(&f.repo, files(&[("a.json", model("A")), ("b.json", model("B"))]));
    let c2 = f.host.commit(
        &f.repo,
        files(&[("a.json", model("A")), ("b.json", model("B")), ("c.json", model("C"))]),
    );
    let c3 = f.host.commit(
        &f.repo,
        files(&[
            ("a.json", model("A")),
            ("b.json", model("B")),
            ("c.json", model("C2")),
            ("d.json", model("D")),
        ]),
    );
    f.push_main(&c3).await;
    remove_by_hand(f, "a.json").await;
    remove_by_hand(f, "c.json").await;
    [c1, c2, c3]
}

#[tokio::test]
async fn each_sync_on_demand_changes_exactly_what_it_asks_for() {
    // Arrange
    let f = Fixture::registered().await;
    let [_, c2, c3] = three_commits_synced_then_a_and_c_removed_by_hand(&f).await;
    let engine = SyncEngine::new(&f.host, &f.store, SyncOptions::default());

    // Act: from the cursor (at the head), then the changes since c2, then the whole tree.
    let recent = engine
        .sync_request(&f.repo, &SyncRequest::Recent, &NoProgress)
        .await
        .unwrap();
    let after_recent = stored_paths(&f.store, &f.repo).await;
    let from = engine
        .sync_request(&f.repo, &SyncRequest::From(c2.clone()), &NoProgress)
        .await
        .unwrap();
    let after_from = stored_paths(&f.store, &f.repo).await;
    let full = engine
        .sync_request(&f.repo, &SyncRequest::Full, &NoProgress)
        .await
        .unwrap();

    // Assert
    assert_eq!(recent, SyncOutcome::UpToDate { head: c3.clone() });
    assert_eq!(after_recent, ["b.json", "d.json"], "nothing changed since the cursor");
    let SyncOutcome::Synced { mode, stats, to, .. } = from else {
        panic!("{from:?}")
    };
    assert_eq!((mode, to, stats.written), (SyncMode::Incremental, c3.clone(), 2));
    assert_eq!(
        after_from,
        ["b.json", "c.json", "d.json"],
        "c and d changed since c2; a did not and stays removed"
    );
    assert_eq!(
        f.store.get_model(&f.repo, "c.json").await.unwrap().unwrap().content,
        model("C2"),
        "written at the head, not at c2"
    );
    let SyncOutcome::Synced { mode, stats, .. } = full else {
        panic!("{full:?}")
    };
    assert_eq!((mode, stats.written), (SyncMode::Full(FullSyncReason::Requested), 1));
    assert_eq!(
        stored_paths(&f.store, &f.repo).await,
        ["a.json", "b.json", "c.json", "d.json"]
    );
    assert_eq!(f.store.repo(&f.repo).await.unwrap().unwrap().cursor.unwrap().commit, c3);
}

#[tokio::test]
async fn a_sync_from_a_commit_older_than_the_cursor_also_applies_the_cursors_changes() {
    // Arrange: a is A at c1, A2 at c2 (the cursor), A again at c3 (the head): the diff from c1
    // to c3 does not name a, the one from the cursor does.
    let f = Fixture::registered().await;
    let c1 = f.host.commit(&f.repo, files(&[("a.json", model("A"))]));
    let c2 = f.host.commit(&f.repo, files(&[("a.json", model("A2"))]));
    f.push_main(&c2).await;
    let c3 = f
        .host
        .commit(&f.repo, files(&[("a.json", model("A")), ("c.json", model("C"))]));
    let engine = SyncEngine::new(&f.host, &f.store, SyncOptions::default());

    // Act
    let outcome = engine
        .sync_request(&f.repo, &SyncRequest::From(c1), &NoProgress)
        .await
        .unwrap();

    // Assert: the store matches the head the cursor now names.
    assert!(
        matches!(
            outcome,
            SyncOutcome::Synced {
                mode: SyncMode::Incremental,
                ..
            }
        ),
        "{outcome:?}"
    );
    assert_eq!(stored_paths(&f.store, &f.repo).await, ["a.json", "c.json"]);
    assert_eq!(
        f.store.get_model(&f.repo, "a.json").await.unwrap().unwrap().content,
        model("A")
    );
    assert_eq!(f.store.repo(&f.repo).await.unwrap().unwrap().cursor.unwrap().commit, c3);
}

#[tokio::test]
async fn a_sync_from_an_unknown_commit_or_one_outside_the_history_is_an_error_and_writes_nothing() {
    // Arrange
    let f = Fixture::registered().await;
    let [_, _, c3] = three_commits_synced_then_a_and_c_removed_by_hand(&f).await;
    let elsewhere = f
        .host
        .commit(&RepoRef::parse("DATA/other").unwrap(), files(&[("x.json", model("X"))]));
    let unknown = CommitId::parse(&"f".repeat(40)).unwrap();
    let engine = SyncEngine::new(&f.host, &f.store, SyncOptions::default());

    // Act
    let not_ancestor = engine
        .sync_request(&f.repo, &SyncRequest::From(elsewhere.clone()), &NoProgress)
        .await
        .unwrap_err();
    let missing = engine
        .sync_request(&f.repo, &SyncRequest::From(unknown.clone()), &NoProgress)
        .await
        .unwrap_err();

    // Assert
    assert!(
        matches!(not_ancestor, SyncError::NotAnAncestor { ref commit, .. } if *commit == elsewhere),
        "{not_ancestor:?}"
    );
    assert!(not_ancestor.to_string().contains("not an ancestor"), "{not_ancestor}");
    assert!(
        matches!(missing, SyncError::UnknownCommit { ref commit, .. } if *commit == unknown),
        "{missing:?}"
    );
    assert!(
        missing.to_string().contains(&format!("has no commit {unknown}")),
        "{missing}"
    );
    assert!(!missing.is_retryable() && !not_ancestor.is_retryable());
    assert_eq!(stored_paths(&f.store, &f.repo).await, ["b.json", "d.json"]);
    assert_eq!(f.store.repo(&f.repo).await.unwrap().unwrap().cursor.unwrap().commit, c3);
}

#[tokio::test]
async fn queued_sync_requests_are_handled_like_the_same_request_made_at_once() {
    // Arrange
    let f = Fixture::registered().await;
    let [_, c2, _] = three_commits_synced_then_a_and_c_removed_by_hand(&f).await;
    let engine = SyncEngine::new(&f.host, &f.store, SyncOptions::default());
    let queued = |request: &SyncRequest| {
        let message = PushMessage::on_demand(f.repo.clone(), request, Utc::now());
        // As read back from the queue.
        serde_json::from_str::<PushMessage>(&serde_json::to_string(&message).unwrap()).unwrap()
    };

    // Act
    let recent = engine.handle_push(&queued(&SyncRequest::Recent)).await.unwrap();
    let from = engine.handle_push(&queued(&SyncRequest::From(c2))).await.unwrap();
    let after_from = stored_paths(&f.store, &f.repo).await;
    let full = engine.handle_push(&queued(&SyncRequest::Full)).await.unwrap();

    // Assert
    assert!(matches!(recent, SyncOutcome::UpToDate { .. }), "{recent:?}");
    assert!(
        matches!(
            from,
            SyncOutcome::Synced {
                mode: SyncMode::Incremental,
                ..
            }
        ),
        "{from:?}"
    );
    assert_eq!(after_from, ["b.json", "c.json", "d.json"]);
    assert!(
        matches!(
            full,
            SyncOutcome::Synced {
                mode: SyncMode::Full(FullSyncReason::Requested),
                ..
            }
        ),
        "{full:?}"
    );
    assert_eq!(
        stored_paths(&f.store, &f.repo).await,
        ["a.json", "b.json", "c.json", "d.json"]
    );
}

/// Two repositories of small and large models (and one over the cap), synced at once with one
/// small fetch budget from `host`: both complete (a deadlock would leave the runtime idle, and the
/// guard below fails the test instead of hanging), and the bytes being read at once never pass
/// the budget's pool.
async fn sync_a_batch_within_a_small_budget(host: MemoryGitHost) {
    // Arrange: 4 files, the largest 16 KiB, a 1 KiB allowance: a pool of 19 KiB, so two of the
    // large files never fit together.
    let store = MemoryStore::default();
    let options = SyncOptions {
        fetch: FetchBudget::with_bytes(4, 16 * 1024, 1024),
        max_model_bytes: 16 * 1024,
        ..SyncOptions::default()
    };
    let repos = [RepoRef::parse("DATA/one").unwrap(), RepoRef::parse("DATA/two").unwrap()];
    let mut pushes = Vec::new();
    for repo in &repos {
        store.register(repo).await.unwrap();
        let mut models: Vec<(String, Vec<u8>)> = (0..6)
            .map(|i| (format!("small-{i}.json"), model(&format!("S{i}"))))
            .collect();
        for (i, kib) in [5, 9, 15].into_iter().enumerate() {
            models.push((
                format!("large-{i}.json"),
                incompressible_model("L", i as u64, kib * 1024),
            ));
        }
        models.push(("over.json".into(), incompressible_model("O", 9, 20 * 1024)));
        pushes.push(push(repo, &host.commit(repo, models.into_iter().collect())));
    }
    let first = SyncEngine::new(&host, &store, options.clone());
    let second = SyncEngine::new(&host, &store, options.clone());

    // Act
    let both = async { tokio::join!(first.handle_push(&pushes[0]), second.handle_push(&pushes[1])) };
    let (a, b) = tokio::time::timeout(std::time::Duration::from_secs(60), both)
        .await
        .expect("the syncs deadlocked");

    // Assert
    for outcome in [a.unwrap(), b.unwrap()] {
        assert!(
            matches!(outcome, SyncOutcome::Synced { ref stats, .. } if (stats.written, stats.malformed) == (9, 1)),
            "{outcome:?}"
        );
    }
    let most = host.most_bytes_read_at_once();
    assert!(
        most <= options.fetch.byte_capacity(),
        "{most} bytes read at once, over the pool of {}",
        options.fetch.byte_capacity()
    );
}

#[tokio::test]
async fn large_files_whose_size_comes_only_with_their_bytes_sync_within_the_byte_budget() {
    let host = MemoryGitHost::default();
    host.set_chunked(Some(512));
    sync_a_batch_within_a_small_budget(host).await;
}

#[tokio::test]
async fn large_files_whose_size_is_announced_sync_within_the_byte_budget() {
    sync_a_batch_within_a_small_budget(MemoryGitHost::default()).await;
}
