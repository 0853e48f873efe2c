//! One writer per repository on DynamoDB (moto): two syncs of one repository racing, interleaved
//! deterministically by holding a fetch open inside the Bitbucket simulator. The models are large
//! enough to be chunked. Afterwards every model equals the head byte for byte, and no chunk that a
//! head item references carries an `expiresAt` (read from the items: moto does not expire them).

use std::collections::{BTreeMap, HashSet};

use aws_sdk_dynamodb::types::AttributeValue;
use hubsync_aws::DynamoStore;
use hubsync_aws::dynamodb::INLINE_LIMIT;
use hubsync_bitbucket::{BitbucketClient, ClientOptions};
use hubsync_bitbucket_sim::{FileOp, Hold, Repo, SimConfig, Simulator};
use hubsync_core::ids::RepoRef;
use hubsync_core::model::sha256_hex;
use hubsync_core::ports::{Admission, GitHost, ModelStore, RawFile, RepoRegistry, StoreError};
use hubsync_core::sync::{NoProgress, SyncEngine, SyncError, SyncOptions, SyncOutcome};
use hubsync_tests::aws::TestAws;
use secrecy::ExposeSecret;

/// A model of about 1 MB that gzip cannot shrink below the inline limit, so it is chunked.
fn big_model(name: &str, version: u64) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut state = version.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ name.len() as u64;
    let noise: String = (0..1_000_000)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            ALPHABET[(state % 64) as usize] as char
        })
        .collect();
    let bytes = serde_json::to_vec(&serde_json::json!({
        "modelName": name, "appTarget": "MONGODB", "dbVendor": "MongoDB",
        "collections": [{"GUID": format!("{name}-{version}"), "description": noise}],
        "relationships": [], "buckets": [], "definitions": {}, "GUID": format!("g-{name}"),
        "persistenceSchemaVersion": "8"
    }))
    .expect("json");
    assert!(bytes.len() / 2 > INLINE_LIMIT, "the model must be chunked");
    bytes
}

fn small_model(name: &str, version: u64) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
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
    aws: TestAws,
}

impl Race {
    /// A repository with a chunked `a.json` and a small `b.json` at version 1, registered and
    /// synced.
    async fn start() -> Self {
        let sim = Simulator::start(SimConfig::default()).await.expect("simulator");
        let repo = sim.create_repo("DATA", "models").expect("repo");
        let host = BitbucketClient::new(
            sim.base_url(),
            sim.token().expose_secret().to_owned().into(),
            ClientOptions::default(),
        )
        .expect("client");
        let aws =
            TestAws::new(r#"{"baseUrl": "http://127.0.0.1:9", "accessToken": "unused", "webhookSecret": "unused"}"#)
                .await;
        let race = Self {
            sim,
            repo,
            name: RepoRef::parse("DATA/models").expect("name"),
            host,
            aws,
        };
        race.commit(&[("a.json", big_model("A", 1)), ("b.json", small_model("B", 1))]);
        let store = race.store();
        store.register(&race.name).await.expect("register");
        race.sync(&store).await.expect("first sync");
        race
    }

    /// One writer's handle on the table.
    fn store(&self) -> DynamoStore {
        DynamoStore::new(self.aws.dynamodb(), self.aws.resources.table.clone())
    }

    fn commit(&self, files: &[(&str, Vec<u8>)]) {
        let ops: Vec<FileOp> = files.iter().map(|(p, c)| FileOp::write(*p, c.clone())).collect();
        self.repo.commit("main", &ops, "change models").expect("commit");
    }

    async fn sync(&self, store: &DynamoStore) -> Result<SyncOutcome, SyncError> {
        SyncEngine::new(&self.host, store, SyncOptions::default())
            .sync_repo(&self.name, false, &NoProgress)
            .await
    }

    fn hold_fetch_of_a(&self) -> Hold {
        self.sim.hold_next(|line| line.path_and_query.contains("/raw/a.json"))
    }

    /// Every item of the repository's partition, without the content.
    async fn items(&self) -> Vec<BTreeMap<String, AttributeValue>> {
        let mut items = Vec::new();
        let mut start = None;
        loop {
            let out = self
                .aws
                .dynamodb()
                .query()
                .table_name(&self.aws.resources.table)
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(":pk", AttributeValue::S("REPO#DATA/models".into()))
                .projection_expression("sk, expiresAt, chunks, modelPath, contentSha256")
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .expect("query");
            items.extend(
                out.items
                    .unwrap_or_default()
                    .into_iter()
                    .map(|i| i.into_iter().collect()),
            );
            start = out.last_evaluated_key;
            if start.is_none() {
                return items;
            }
        }
    }

    /// Every model equals the file at the head byte for byte, the cursor is the head, no chunk a
    /// head references carries an expiry, and (when `swept`) every other chunk carries one.
    async fn assert_store_equals_head(&self, store: &DynamoStore, swept: bool) {
        let head = self
            .host
            .default_branch(&self.name)
            .await
            .expect("head")
            .expect("commits")
            .head;
        for path in ["a.json", "b.json"] {
            let at_head = self
                .host
                .raw_file(&self.name, path, &head, u64::MAX, &mut Admission::unbounded())
                .await
                .expect("raw")
                .map(|raw| match raw {
                    RawFile::Content(bytes) => bytes,
                    RawFile::TooLarge(size) => panic!("{path}: {size}"),
                });
            let stored = store.get_model(&self.name, path).await.expect("get");
            assert!(
                stored.map(|m| m.content) == at_head,
                "{path} in the store differs from the head"
            );
        }
        let cursor = store.repo(&self.name).await.expect("repo").expect("registered").cursor;
        assert_eq!(cursor.map(|c| c.commit), Some(head));

        let items = self.items().await;
        let s = |item: &BTreeMap<String, AttributeValue>, key: &str| {
            item.get(key).and_then(|v| v.as_s().ok()).cloned().unwrap_or_default()
        };
        let referenced: HashSet<String> = items
            .iter()
            .filter(|i| s(i, "sk").starts_with("MODEL#") && i.contains_key("chunks"))
            .map(|i| {
                format!(
                    "CHUNK#{}#{}#",
                    sha256_hex(s(i, "modelPath").as_bytes()),
                    s(i, "contentSha256")
                )
            })
            .collect();
        assert!(!referenced.is_empty(), "a.json is chunked");
        for chunk in items.iter().filter(|i| s(i, "sk").starts_with("CHUNK#")) {
            let sk = s(chunk, "sk");
            let prefix = &sk[..=sk.rfind('#').expect("index")];
            if referenced.contains(prefix) {
                assert!(
                    !chunk.contains_key("expiresAt"),
                    "{sk} is referenced by a head but expires"
                );
            } else if swept {
                assert!(
                    chunk.contains_key("expiresAt"),
                    "{sk} is referenced by no head but never expires"
                );
            }
        }
    }
}

/// Writer A syncs version 2 of `a.json` and is held inside its fetch; the branch moves on to
/// version 3, which reverts `a.json` to version 1 and changes `b.json`; writer B runs; A goes on.
#[tokio::test]
async fn a_second_sync_on_dynamodb_backs_off_and_no_head_ends_on_expiring_chunks() {
    // Arrange
    let race = Race::start().await;
    let (store_a, store_b) = (race.store(), race.store());
    race.commit(&[("a.json", big_model("A", 2))]);
    let hold = race.hold_fetch_of_a();
    let writer_a = race.sync(&store_a);
    let writer_b = async {
        hold.reached().await;
        race.commit(&[("a.json", big_model("A", 1)), ("b.json", small_model("B", 3))]);
        let first = race.sync(&store_b).await;
        hold.release();
        first
    };

    // Act
    let (a, b_first) = tokio::join!(writer_a, writer_b);
    // As the queue would, retryable failures are tried again later.
    if let Err(e) = &a
        && e.is_retryable()
    {
        race.sync(&store_a).await.expect("A's retry");
    }
    let b_retry = match &b_first {
        Err(e) if e.is_retryable() => Some(race.sync(&store_b).await),
        _ => None,
    };

    // Assert
    race.assert_store_equals_head(&store_b, false).await;
    assert!(
        matches!(b_first, Err(SyncError::Store(StoreError::LeaseHeld { .. }))),
        "{b_first:?}"
    );
    assert!(matches!(a, Ok(SyncOutcome::Synced { .. })), "{a:?}");
    assert!(matches!(b_retry, Some(Ok(SyncOutcome::Synced { .. }))), "{b_retry:?}");
}

/// The same race, but A stalls past its lease: B (whose clock is an hour ahead) takes it over.
/// A's head switch is refused; the chunks it wrote before are swept by the next sync.
#[tokio::test]
async fn a_sync_on_dynamodb_that_lost_its_lease_cannot_switch_a_head_and_its_chunks_are_swept() {
    // Arrange
    let race = Race::start().await;
    let store_a = race.store();
    let store_b = race
        .store()
        .with_clock(|| chrono::Utc::now() + chrono::Duration::hours(1));
    race.commit(&[("a.json", big_model("A", 2))]);
    let hold = race.hold_fetch_of_a();
    let writer_a = race.sync(&store_a);
    let writer_b = async {
        hold.reached().await;
        race.commit(&[("a.json", big_model("A", 1)), ("b.json", small_model("B", 3))]);
        let outcome = race.sync(&store_b).await;
        hold.release();
        outcome
    };

    // Act
    let (a, b) = tokio::join!(writer_a, writer_b);
    let a_retry = race.sync(&store_a).await;
    race.assert_store_equals_head(&store_a, false).await;
    race.commit(&[("b.json", small_model("B", 4))]);
    let next = race.sync(&store_a).await;

    // Assert
    race.assert_store_equals_head(&store_a, true).await;
    assert!(matches!(b, Ok(SyncOutcome::Synced { .. })), "{b:?}");
    assert!(
        matches!(a, Err(SyncError::Store(StoreError::LeaseLost(_)))),
        "A's head switch after losing the lease is refused: {a:?}"
    );
    assert!(matches!(a_retry, Ok(SyncOutcome::UpToDate { .. })), "{a_retry:?}");
    assert!(matches!(next, Ok(SyncOutcome::Synced { .. })), "{next:?}");
}
