//! One writer per repository on the local backend: two syncs of one repository racing over one
//! SQLite file, interleaved deterministically by holding a fetch open inside the Bitbucket
//! simulator. Afterwards every model equals the head, byte for byte.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hubsync_bitbucket::{BitbucketClient, ClientOptions};
use hubsync_bitbucket_sim::{FileOp, Hold, Repo, SimConfig, Simulator};
use hubsync_core::ids::RepoRef;
use hubsync_core::ports::{Admission, GitHost, LeaseOwner, ModelStore, RawFile, RepoRegistry, StoreError};
use hubsync_core::sync::{NoProgress, SyncEngine, SyncError, SyncOptions, SyncOutcome};
use hubsync_sqlite::{HubOptions, ManualClock, SqliteHub};
use secrecy::ExposeSecret;

fn model(name: &str, version: u32) -> Vec<u8> {
    serde_json::to_vec_pretty(&serde_json::json!({
        "modelName": name, "appTarget": "MONGODB", "dbVendor": "MongoDB",
        "collections": [{"GUID": format!("{name}-{version}")}],
        "relationships": [], "buckets": [], "definitions": {}, "GUID": format!("g-{name}"),
        "persistenceSchemaVersion": "8"
    }))
    .expect("json")
}

struct Race {
    sim: Simulator,
    repo: Repo,
    name: RepoRef,
    host: BitbucketClient,
    _dir: tempfile::TempDir,
    db: std::path::PathBuf,
}

impl Race {
    /// A repository with `a.json` and `b.json` at version 1, registered and synced.
    async fn start() -> Self {
        let sim = Simulator::start(SimConfig::default()).await.expect("simulator");
        let repo = sim.create_repo("DATA", "models").expect("repo");
        let host = BitbucketClient::new(
            sim.base_url(),
            sim.token().expose_secret().to_owned().into(),
            ClientOptions::default(),
        )
        .expect("client");
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("hub.db");
        let name = RepoRef::parse("DATA/models").expect("name");
        let race = Self {
            sim,
            repo,
            name,
            host,
            _dir: dir,
            db,
        };
        race.commit(&[("a.json", model("A", 1)), ("b.json", model("B", 1))]);
        let hub = race.hub(HubOptions::default());
        hub.register(&race.name).await.expect("register");
        race.sync(&hub).await.expect("first sync");
        race
    }

    /// One process's handle on the database file.
    fn hub(&self, options: HubOptions) -> SqliteHub {
        SqliteHub::open_with(&self.db, options).expect("database")
    }

    fn commit(&self, files: &[(&str, Vec<u8>)]) {
        let ops: Vec<FileOp> = files.iter().map(|(p, c)| FileOp::write(*p, c.clone())).collect();
        self.repo.commit("main", &ops, "change models").expect("commit");
    }

    async fn sync(&self, hub: &SqliteHub) -> Result<SyncOutcome, SyncError> {
        SyncEngine::new(&self.host, hub, SyncOptions::default())
            .sync_repo(&self.name, false, &NoProgress)
            .await
    }

    /// Holds writer A's next fetch of `a.json` open inside the simulator.
    fn hold_fetch_of_a(&self) -> Hold {
        self.sim.hold_next(|line| line.path_and_query.contains("/raw/a.json"))
    }

    /// Every model equals the file at the head, byte for byte, and the cursor is the head.
    async fn assert_store_equals_head(&self, hub: &SqliteHub) {
        let head = self
            .host
            .default_branch(&self.name)
            .await
            .expect("head")
            .expect("commits")
            .head;
        let mut expected = BTreeMap::new();
        for path in ["a.json", "b.json"] {
            let raw = self
                .host
                .raw_file(&self.name, path, &head, u64::MAX, &mut Admission::unbounded())
                .await
                .expect("raw");
            let Some(RawFile::Content(bytes)) = raw else {
                panic!("{path} at the head: {raw:?}")
            };
            expected.insert(path.to_owned(), bytes);
        }
        let mut stored = BTreeMap::new();
        for summary in hub.list_models(&self.name).await.expect("list") {
            let model = hub
                .get_model(&self.name, &summary.path)
                .await
                .expect("get")
                .expect("listed");
            stored.insert(summary.path, model.content);
        }
        assert!(stored == expected, "the store does not hold the head's models");
        let cursor = hub.repo(&self.name).await.expect("repo").expect("registered").cursor;
        assert_eq!(cursor.map(|c| c.commit), Some(head));
    }
}

/// The race: writer A starts syncing version 2 and is held inside its fetch of `a.json`; the
/// branch moves on to version 3, which reverts `a.json` to version 1 (so the diff from the cursor
/// does not name it) and changes `b.json`; writer B runs; A is released.
#[tokio::test]
async fn a_second_sync_of_a_repository_backs_off_while_the_first_holds_it_and_the_store_ends_at_the_head() {
    // Arrange
    let race = Race::start().await;
    let (hub_a, hub_b) = (race.hub(HubOptions::default()), race.hub(HubOptions::default()));
    race.commit(&[("a.json", model("A", 2))]);
    let hold = race.hold_fetch_of_a();
    let writer_a = race.sync(&hub_a);
    let writer_b = async {
        hold.reached().await;
        race.commit(&[("a.json", model("A", 1)), ("b.json", model("B", 3))]);
        let first = race.sync(&hub_b).await;
        hold.release();
        first
    };

    // Act
    let (a, b_first) = tokio::join!(writer_a, writer_b);
    // As the queue would, retryable failures are tried again later.
    let b_retry = match &b_first {
        Err(e) if e.is_retryable() => Some(race.sync(&hub_b).await),
        _ => None,
    };
    if let Err(e) = &a
        && e.is_retryable()
    {
        race.sync(&hub_a).await.expect("A's retry");
    }

    // Assert
    race.assert_store_equals_head(&hub_b).await;
    let b_error = b_first.expect_err("B backs off while A holds the repository");
    assert!(
        matches!(b_error, SyncError::Store(StoreError::LeaseHeld { .. })),
        "{b_error:?}"
    );
    assert!(
        b_error.to_string().starts_with("sync of DATA/models is held by "),
        "{b_error}"
    );
    assert!(matches!(a, Ok(SyncOutcome::Synced { .. })), "{a:?}");
    assert!(matches!(b_retry, Some(Ok(SyncOutcome::Synced { .. }))), "{b_retry:?}");
}

/// The same race, but A stalls past its lease: B (whose clock is an hour ahead) takes the
/// expired lease over and syncs to the head; A's writes after that are refused.
#[tokio::test]
async fn a_sync_that_lost_its_lease_while_stalled_cannot_write_over_the_one_that_took_it() {
    // Arrange
    let race = Race::start().await;
    let hub_a = race.hub(HubOptions::default());
    let later = ManualClock::new(chrono::Utc::now() + chrono::Duration::hours(1));
    let hub_b = race.hub(HubOptions {
        clock: Arc::new(later),
        ..HubOptions::default()
    });
    race.commit(&[("a.json", model("A", 2))]);
    let hold = race.hold_fetch_of_a();
    let writer_a = async {
        let first = race.sync(&hub_a).await;
        // As the queue would, a retryable failure is tried again.
        match first {
            Err(e) if e.is_retryable() => (Some(e), race.sync(&hub_a).await),
            other => (None, other),
        }
    };
    let writer_b = async {
        hold.reached().await;
        race.commit(&[("a.json", model("A", 1)), ("b.json", model("B", 3))]);
        let outcome = race.sync(&hub_b).await;
        hold.release();
        outcome
    };

    // Act
    let ((a_first, a_retry), b) = tokio::join!(writer_a, writer_b);

    // Assert
    race.assert_store_equals_head(&hub_a).await;
    let b = b.expect("B takes the expired lease over");
    assert!(matches!(b, SyncOutcome::Synced { .. }), "{b:?}");
    assert!(
        matches!(a_first, Some(SyncError::Store(StoreError::LeaseLost(_)))),
        "A's write after losing the lease is refused: {a_first:?}"
    );
    assert!(a_retry.is_ok(), "{a_retry:?}");
}

/// `hubsync sync` says who holds the repository and until when.
#[tokio::test]
async fn hubsync_sync_says_who_holds_the_repository_and_until_when() {
    // Arrange
    let race = Race::start().await;
    let hub = race.hub(HubOptions::default());
    let holder = LeaseOwner::generate("hubsync serve pid 4242");
    let lease = hub
        .acquire_lease(&race.name, &holder, Duration::from_secs(600))
        .await
        .expect("free");

    // Act
    let output = hubsync(&race, &race.db, &["sync", "DATA/models"]).await;

    // Assert
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let until = lease.expires_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    assert!(
        stderr.contains(&format!("sync of DATA/models is held by {holder} until {until}")),
        "{stderr}"
    );
}

async fn hubsync(race: &Race, db: &Path, args: &[&str]) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_hubsync"))
        .args(args)
        .env("HUB_DB", db)
        .env("HUB_BITBUCKET_URL", race.sim.base_url())
        .env("HUB_BITBUCKET_TOKEN", race.sim.token().expose_secret())
        .env("HUB_WEBHOOK_SECRET", "unused")
        .env("RUST_LOG", "warn")
        .env_remove("HUB_CONFIG")
        .env_remove("HUB_TABLE")
        .env_remove("HUB_BACKEND")
        .output()
        .await
        .expect("hubsync runs")
}
