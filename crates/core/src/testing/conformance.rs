//! The contract of [`RepoRegistry`] + [`ModelStore`] + [`DeliveryLog`], written once and run against every store:
//! the in-memory reference (`crates/core/tests/store_conformance.rs`), SQLite
//! (`crates/sqlite/tests/sqlite/conformance.rs`) and DynamoDB on moto
//! (`tests/stores/main.rs`). A store that passes behaves like the others as far as the sync, the
//! CLI and the readers can tell.
//!
//! Each case is a public async function taking a fresh, empty store; [`store_conformance!`]
//! turns them all into `#[tokio::test]`s of the calling crate:
//!
//! ```ignore
//! hubsync_core::store_conformance!(|| async { SqliteHub::in_memory().unwrap() });
//! ```
//!
//! The cases use only the ports, so adapter-specific facts (compression at rest, chunk items)
//! are checked beside the suite, in the adapter's own tests.

use std::time::Duration as StdDuration;

use chrono::Duration;

use crate::deliveries::{
    DeliveryEntry, DeliveryKind, DeliveryLog, DeliveryOutcome, DeliveryQuery, OutcomeStatus, Verdict,
};
use crate::ids::RepoRef;
use crate::model::{ModelFacts, ModelRecord, ModelStatus};
use crate::ports::{
    LastError, LeaseOwner, ModelStore, RepoRegistry, StoreError, SyncCursor, SyncLease, SyncResume, SyncStats,
};
use crate::push::{MessageKind, PushMessage};
use crate::testing::fixtures::{commit, delivery, incompressible_model, model, push, repo, t0};

/// What every case needs of the store under test.
pub trait Store: RepoRegistry + ModelStore + DeliveryLog {}
impl<T: RepoRegistry + ModelStore + DeliveryLog> Store for T {}

/// Size of the model [`a_large_incompressible_model_round_trips_byte_for_byte`] writes: it
/// compresses to far more than the 350 KB DynamoDB keeps inline, so it is stored in chunks there.
pub const LARGE_MODEL_BYTES: usize = 1_200_000;

/// The path of that large model.
pub const LARGE_MODEL_PATH: &str = "grands modèles/très grand ✓.hck.json";

/// The lease of the cases' one writer on `r`: always the same owner, so every write can take it
/// again.
pub async fn held(store: &impl Store, r: &RepoRef) -> SyncLease {
    store
        .acquire_lease(
            r,
            &LeaseOwner::from_stored("conformance writer"),
            StdDuration::from_secs(3600),
        )
        .await
        .unwrap()
}

/// A cursor at commit `n`, synced at a time with nanoseconds (stores must not round it).
pub fn cursor(n: u64) -> SyncCursor {
    SyncCursor {
        commit: commit(n),
        synced_at: t0() + Duration::nanoseconds(123_456_789),
        stats: SyncStats {
            written: n,
            removed: 1,
            malformed: 2,
            skipped: 3,
            ignored: 4,
        },
        // No `.hubignore` (kept as an empty text) at even commits.
        hubignore: Some(if n.is_multiple_of(2) {
            String::new()
        } else {
            format!("drafts/\n!drafts/keep-{n}.json\n# ünïcødé ✓\n")
        }),
    }
}

/// A resume point towards commit `n`.
pub fn resume(n: u64, after: &str) -> SyncResume {
    SyncResume {
        head: commit(n),
        after: after.to_owned(),
        full: n.is_multiple_of(2),
        hubignore: Some(String::new()),
        stats: SyncStats {
            written: 10 * n,
            ..SyncStats::default()
        },
        slices: 2,
        run: format!("run-{n}"),
        since: (n > 1).then(|| commit(n - 1)),
        listed: n.is_multiple_of(2).then_some(5 * n),
        skip: if n > 1 {
            vec![format!("{after}/done.json")]
        } else {
            Vec::new()
        },
        then_since: (n > 2).then(|| commit(1)),
    }
}

/// A valid model's status with every fact set.
pub fn valid(name: &str) -> ModelStatus {
    ModelStatus::Valid {
        facts: ModelFacts {
            model_name: name.into(),
            app_target: "PostgreSQL".into(),
            db_vendor: "PostgreSQL".into(),
            db_version: Some("v16.x".into()),
            persistence_schema_version: "8".into(),
            entities: 3,
            relationships: 2,
            views: 1,
        },
    }
}

/// A record of `path` holding `content`, at commit 9, valid.
pub fn record(path: &str, content: Vec<u8>) -> ModelRecord {
    ModelRecord::new(path.into(), commit(9), t0(), valid(path), content)
}

/// Registering twice says so the second time, and keeps the cursor and the registration time.
pub async fn registering_twice_reports_the_second_time_and_keeps_the_state(store: &impl Store) {
    let r = repo("DATA/models");

    assert!(store.register(&r).await.unwrap(), "the first registration is new");
    store
        .advance_cursor(&held(store, &r).await, None, &cursor(1))
        .await
        .unwrap();
    let before = store.repo(&r).await.unwrap().expect("registered");
    assert!(!store.register(&r).await.unwrap(), "the second registration is not");

    let after = store.repo(&r).await.unwrap().expect("still registered");
    assert_eq!(after, before);
    assert_eq!(after.cursor, Some(cursor(1)));
}

/// A new registration has no cursor and no error; an unknown repository has no record.
pub async fn a_new_repository_has_no_cursor_and_an_unknown_one_no_record(store: &impl Store) {
    let r = repo("DATA/models");

    store.register(&r).await.unwrap();

    let record = store.repo(&r).await.unwrap().expect("registered");
    assert_eq!((record.repo, record.cursor, record.last_error), (r, None, None));
    assert_eq!(store.repo(&repo("DATA/ghost")).await.unwrap(), None);
    assert_eq!(store.repo(&repo("DATA/model")).await.unwrap(), None, "no prefix match");
}

/// Repositories are listed in [`RepoRef`]'s order (project, then slug), whatever the store's
/// own key order.
pub async fn repositories_are_listed_by_project_then_slug(store: &impl Store) {
    let names = ["B/x", "A-B/y", "A/z", "~jdoe/sandbox", "A/a", "AB/c", "A/a-b", "A/a.b"];
    for name in names {
        store.register(&repo(name)).await.unwrap();
    }

    let listed: Vec<RepoRef> = store.repos().await.unwrap().into_iter().map(|r| r.repo).collect();

    let mut expected: Vec<RepoRef> = names.iter().map(|n| repo(n)).collect();
    expected.sort();
    assert_eq!(listed, expected);
}

/// Unregistering removes the repository and its models, and no other repository's.
pub async fn unregistering_removes_the_repository_and_only_its_models(store: &impl Store) {
    // `DATA/model` is a prefix of `DATA/models`: a store matching keys by prefix would lose it.
    let (mine, prefix, other) = (repo("DATA/models"), repo("DATA/model"), repo("DATA/other"));
    for r in [&mine, &prefix, &other] {
        store.register(r).await.unwrap();
        store
            .put_model(&held(store, r).await, &record("a.json", b"{}".to_vec()))
            .await
            .unwrap();
    }
    store
        .put_model(&held(store, &mine).await, &record("b.json", b"{}".to_vec()))
        .await
        .unwrap();

    assert!(store.unregister(&mine).await.unwrap(), "it was registered");
    assert!(!store.unregister(&mine).await.unwrap(), "not any more");

    assert_eq!(store.repo(&mine).await.unwrap(), None);
    assert!(store.list_models(&mine).await.unwrap().is_empty());
    assert_eq!(store.get_model(&mine, "a.json").await.unwrap(), None);
    for r in [&prefix, &other] {
        assert!(store.repo(r).await.unwrap().is_some(), "{r} is still registered");
        assert_eq!(store.list_models(r).await.unwrap().len(), 1, "{r} keeps its model");
    }
    let listed: Vec<RepoRef> = store.repos().await.unwrap().into_iter().map(|r| r.repo).collect();
    assert_eq!(listed, [prefix, other]);
}

/// The cursor moves only from the commit the writer expects; otherwise `CursorMoved`.
pub async fn the_cursor_moves_only_from_the_expected_commit(store: &impl Store) {
    let r = repo("DATA/models");
    store.register(&r).await.unwrap();

    store
        .advance_cursor(&held(store, &r).await, None, &cursor(1))
        .await
        .unwrap();
    let stale = store.advance_cursor(&held(store, &r).await, None, &cursor(2)).await;
    let wrong = store
        .advance_cursor(&held(store, &r).await, Some(&commit(5)), &cursor(2))
        .await;
    store
        .advance_cursor(&held(store, &r).await, Some(&commit(1)), &cursor(2))
        .await
        .unwrap();
    let behind = store
        .advance_cursor(&held(store, &r).await, Some(&commit(1)), &cursor(3))
        .await;

    for (what, result) in [
        ("no cursor expected", &stale),
        ("a wrong one", &wrong),
        ("a stale one", &behind),
    ] {
        assert!(
            matches!(result, Err(StoreError::CursorMoved(x)) if *x == r),
            "{what}: {result:?}"
        );
        assert!(
            result.as_ref().is_err_and(StoreError::is_retryable),
            "{what}: CursorMoved is retried"
        );
    }
    assert_eq!(store.repo(&r).await.unwrap().unwrap().cursor, Some(cursor(2)));
}

/// A cursor cannot be set on a repository that is not registered.
pub async fn moving_the_cursor_of_an_unregistered_repository_is_refused(store: &impl Store) {
    let ghost = repo("DATA/ghost");

    let first = store.advance_cursor(&held(store, &ghost).await, None, &cursor(1)).await;
    let later = store
        .advance_cursor(&held(store, &ghost).await, Some(&commit(1)), &cursor(2))
        .await;

    assert!(
        matches!(first, Err(StoreError::NotRegistered(ref x)) if *x == ghost),
        "{first:?}"
    );
    assert!(
        matches!(later, Err(StoreError::NotRegistered(_) | StoreError::CursorMoved(_))),
        "{later:?}"
    );
    assert_eq!(store.repo(&ghost).await.unwrap(), None, "nothing was created");
}

/// An error is kept beside the cursor (which stays) and cleared by the next success.
pub async fn an_error_is_recorded_beside_the_cursor_and_cleared_by_the_next_success(store: &impl Store) {
    let r = repo("DATA/models");
    store.register(&r).await.unwrap();
    store
        .advance_cursor(&held(store, &r).await, None, &cursor(1))
        .await
        .unwrap();
    let error = LastError {
        message: "401 from Bitbucket for DATA/models: ünïcødé ✓".into(),
        at: t0() + Duration::milliseconds(1),
    };

    store.record_error(&r, &error).await.unwrap();
    let failed = store.repo(&r).await.unwrap().unwrap();
    store
        .advance_cursor(&held(store, &r).await, Some(&commit(1)), &cursor(2))
        .await
        .unwrap();
    let healed = store.repo(&r).await.unwrap().unwrap();

    assert_eq!(
        (failed.cursor, failed.last_error),
        (Some(cursor(1)), Some(error.clone()))
    );
    assert_eq!((healed.cursor, healed.last_error), (Some(cursor(2)), None));
    // Recording an error for an unknown repository is not an error, and registers nothing.
    store.record_error(&repo("DATA/ghost"), &error).await.unwrap();
    assert_eq!(store.repo(&repo("DATA/ghost")).await.unwrap(), None);
}

/// A sync cut into slices keeps its resume point beside the cursor (which stays), under the same
/// conditions as the cursor's move; the cursor's move clears it. A cursor that kept no
/// `.hubignore` reads back without one.
pub async fn a_resume_point_is_kept_beside_the_cursor_until_the_cursor_moves(store: &impl Store) {
    let r = repo("DATA/models");
    store.register(&r).await.unwrap();
    let first = SyncCursor {
        hubignore: None,
        ..cursor(1)
    };
    store
        .advance_cursor(&held(store, &r).await, None, &first)
        .await
        .unwrap();

    store
        .record_resume(&held(store, &r).await, Some(&commit(1)), &resume(2, "a/ü.json"))
        .await
        .unwrap();
    store
        .record_resume(&held(store, &r).await, Some(&commit(1)), &resume(3, "b/ü ✓.json"))
        .await
        .unwrap();
    let sliced = store.repo(&r).await.unwrap().unwrap();
    let stale = store
        .record_resume(&held(store, &r).await, Some(&commit(9)), &resume(4, "c.json"))
        .await;
    store
        .advance_cursor(&held(store, &r).await, Some(&commit(1)), &cursor(3))
        .await
        .unwrap();
    let done = store.repo(&r).await.unwrap().unwrap();

    assert_eq!(
        (sliced.cursor, sliced.resume),
        (Some(first), Some(resume(3, "b/ü ✓.json")))
    );
    assert!(matches!(stale, Err(StoreError::CursorMoved(_))), "{stale:?}");
    assert_eq!((done.cursor, done.resume), (Some(cursor(3)), None));
}

/// A resume point can be recorded before the first cursor, and not for an unregistered
/// repository.
pub async fn a_first_sync_records_its_resume_point_without_a_cursor(store: &impl Store) {
    let r = repo("DATA/models");
    store.register(&r).await.unwrap();
    let ghost = repo("DATA/ghost");

    store
        .record_resume(&held(store, &r).await, None, &resume(1, "m/0001.json"))
        .await
        .unwrap();
    let unregistered = store
        .record_resume(&held(store, &ghost).await, None, &resume(1, "m/0001.json"))
        .await;

    let record = store.repo(&r).await.unwrap().unwrap();
    assert_eq!((record.cursor, record.resume), (None, Some(resume(1, "m/0001.json"))));
    assert!(unregistered.is_err(), "{unregistered:?}");
    assert_eq!(store.repo(&ghost).await.unwrap(), None, "nothing was created");
}

/// A model is read back exactly as written: path, commit, time, status with its facts, content
/// and digest; an unknown path reads as `None`.
pub async fn a_model_is_read_back_exactly_as_written(store: &impl Store) {
    let r = repo("DATA/models");
    let written = ModelRecord::new(
        "sales/orders.hck.json".into(),
        commit(7),
        t0() + Duration::nanoseconds(987_654_321),
        valid("Orders"),
        model("Orders"),
    );

    store.put_model(&held(store, &r).await, &written).await.unwrap();

    assert_eq!(store.get_model(&r, &written.path).await.unwrap(), Some(written.clone()));
    assert_eq!(store.list_models(&r).await.unwrap(), [written.summary()]);
    assert_eq!(store.get_model(&r, "sales/other.json").await.unwrap(), None);
    assert_eq!(store.get_model(&repo("DATA/other"), &written.path).await.unwrap(), None);
}

/// A malformed model is stored with its error, and listed with it.
pub async fn a_malformed_model_is_stored_with_its_error(store: &impl Store) {
    let r = repo("DATA/models");
    let malformed = ModelRecord::new(
        "bad.hck.json".into(),
        commit(3),
        t0(),
        ModelStatus::Malformed {
            error: "line 1 column 14: EOF while parsing an object".into(),
        },
        b"{\"modelName\": ".to_vec(),
    );

    store.put_model(&held(store, &r).await, &malformed).await.unwrap();

    assert_eq!(
        store.get_model(&r, "bad.hck.json").await.unwrap(),
        Some(malformed.clone())
    );
    assert_eq!(store.list_models(&r).await.unwrap(), [malformed.summary()]);
}

/// Models are listed sorted by path in byte order (as `str` sorts), with their summaries, for
/// paths with spaces, `#`, `%`, non-ASCII letters and case differences; listed after a path, only
/// those that come after it in that order.
pub async fn models_are_listed_by_path_in_byte_order_with_their_summaries(store: &impl Store) {
    let r = repo("DATA/models");
    let paths = [
        "z.json",
        "Ä/b.json",
        "a/b.json",
        "a.json",
        "日本/モデル.hck.json",
        "a b/c.json",
        "A.json",
        "a#b/MODEL#c.json",
        "100%/x.json",
        "emoji 🗂️.json",
    ];
    let mut expected = Vec::new();
    for (i, path) in paths.iter().enumerate() {
        let rec = record(path, format!("{{\"n\": {i}}}").into_bytes());
        store.put_model(&held(store, &r).await, &rec).await.unwrap();
        expected.push(rec.summary());
    }
    expected.sort_by(|a, b| a.path.cmp(&b.path));

    let listed = store.list_models(&r).await.unwrap();
    let after_a = store.list_models_after(&r, "a.json").await.unwrap();
    let after_all = store.list_models_after(&r, "日本/モデル.hck.json").await.unwrap();

    assert_eq!(listed, expected);
    let expected_after_a: Vec<_> = expected
        .iter()
        .filter(|m| m.path.as_str() > "a.json")
        .cloned()
        .collect();
    assert_eq!(after_a, expected_after_a);
    assert_eq!(after_a.first().map(|m| m.path.as_str()), Some("a/b.json"));
    assert_eq!(after_all, []);
    for path in paths {
        let back = store.get_model(&r, path).await.unwrap();
        assert_eq!(
            back.map(|m| m.path),
            Some(path.to_owned()),
            "{path} is read by its path"
        );
    }
}

/// Contents are kept byte for byte, whatever they are: empty, a byte-order mark, every byte value.
pub async fn empty_and_binary_contents_round_trip_byte_for_byte(store: &impl Store) {
    let r = repo("DATA/models");
    let binary: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();

    for (path, content) in [
        ("empty.json", Vec::new()),
        ("bom.json", b"\xEF\xBB\xBF{}".to_vec()),
        ("crlf.json", b"{\r\n  \"a\": 1\r\n}\r\n".to_vec()),
        ("bin.json", binary),
    ] {
        let rec = record(path, content);
        store.put_model(&held(store, &r).await, &rec).await.unwrap();
        let back = store.get_model(&r, path).await.unwrap().expect("stored");
        assert!(
            back.content == rec.content,
            "{path}: content differs after the round trip"
        );
        assert_eq!(back, rec, "{path}");
    }
}

/// A model far larger than any store's inline limit, and incompressible, comes back byte for
/// byte and can be replaced and deleted like any other. (On DynamoDB this is the chunked path.)
pub async fn a_large_incompressible_model_round_trips_byte_for_byte(store: &impl Store) {
    let r = repo("DATA/big");
    let big = record(LARGE_MODEL_PATH, incompressible_model("Big", 1, LARGE_MODEL_BYTES));
    let bigger = record(LARGE_MODEL_PATH, incompressible_model("Big", 2, LARGE_MODEL_BYTES + 1));

    store.put_model(&held(store, &r).await, &big).await.unwrap();
    let first = store.get_model(&r, LARGE_MODEL_PATH).await.unwrap().expect("stored");
    store.put_model(&held(store, &r).await, &bigger).await.unwrap();
    let second = store.get_model(&r, LARGE_MODEL_PATH).await.unwrap().expect("stored");

    assert!(
        first.content == big.content,
        "the first version differs after the round trip"
    );
    assert_eq!(first, big);
    assert!(
        second.content == bigger.content,
        "the second version differs after the round trip"
    );
    assert_eq!(second, bigger);
    assert_eq!(store.list_models(&r).await.unwrap(), [bigger.summary()]);
    assert!(
        store
            .delete_model(&held(store, &r).await, LARGE_MODEL_PATH)
            .await
            .unwrap()
    );
    assert_eq!(store.get_model(&r, LARGE_MODEL_PATH).await.unwrap(), None);
}

/// Writing a path again replaces the model: status, content and size, small or large, in both
/// directions.
pub async fn writing_a_model_again_replaces_it(store: &impl Store) {
    let r = repo("DATA/models");
    let small = record("m.json", b"old".to_vec());
    let malformed = ModelRecord::new(
        "m.json".into(),
        commit(10),
        t0(),
        ModelStatus::Malformed { error: "bad".into() },
        b"new".to_vec(),
    );
    let large = record("m.json", incompressible_model("M", 3, LARGE_MODEL_BYTES));
    let small_again = record("m.json", model("M"));

    for rec in [&small, &malformed, &large, &small_again] {
        store.put_model(&held(store, &r).await, rec).await.unwrap();

        let back = store.get_model(&r, "m.json").await.unwrap().expect("stored");
        assert!(
            back.content == rec.content,
            "content after replacing with {} bytes",
            rec.size()
        );
        assert_eq!(back, *rec);
        assert_eq!(store.list_models(&r).await.unwrap(), [rec.summary()]);
    }
}

/// A model built by the store's own work ([`ModelStore::put_model_built`]) is written like
/// `put_model`, answering what the build kept; a build that answers nothing leaves the store
/// untouched.
pub async fn a_built_model_is_written_like_a_put_one_and_a_build_of_nothing_writes_nothing(store: &impl Store) {
    let r = repo("DATA/models");
    let lease = held(store, &r).await;
    let built = record("built.json", model("Built"));
    let expected = built.clone();

    let written = store
        .put_model_built(&lease, move || Ok::<_, ()>((built, "kept")))
        .await
        .unwrap();
    let nothing = store
        .put_model_built(&lease, || Err::<(ModelRecord, ()), _>("not a model"))
        .await
        .unwrap();

    assert_eq!(written, Ok("kept"));
    assert_eq!(nothing, Err("not a model"));
    assert_eq!(store.get_model(&r, "built.json").await.unwrap(), Some(expected.clone()));
    assert_eq!(store.list_models(&r).await.unwrap(), [expected.summary()]);
}

/// A writer that lost its lease cannot write a built model either, and nothing is written.
pub async fn a_writer_that_lost_its_lease_cannot_write_a_built_model(store: &impl Store) {
    let r = repo("DATA/models");
    let (lost, _taker) = lease_lost_to_another(store, &r).await;
    let stale = record("stale.json", b"{}".to_vec());

    let put = store.put_model_built(&lost, move || Ok::<_, ()>((stale, ()))).await;

    let error = put.expect_err("fenced");
    assert!(matches!(error, StoreError::LeaseLost(_)), "{error:?}");
    assert_eq!(store.list_models(&r).await.unwrap(), []);
}

/// Deleting says whether there was a model, and removes only that one.
pub async fn deleting_a_model_reports_whether_there_was_one(store: &impl Store) {
    let r = repo("DATA/models");
    store
        .put_model(&held(store, &r).await, &record("m.json", b"{}".to_vec()))
        .await
        .unwrap();
    store
        .put_model(&held(store, &r).await, &record("m.json.bak.json", b"{}".to_vec()))
        .await
        .unwrap();

    assert!(store.delete_model(&held(store, &r).await, "m.json").await.unwrap());
    assert!(!store.delete_model(&held(store, &r).await, "m.json").await.unwrap());
    assert!(!store.delete_model(&held(store, &r).await, "never.json").await.unwrap());
    assert!(
        !store
            .delete_model(&held(store, &repo("DATA/other")).await, "m.json.bak.json")
            .await
            .unwrap()
    );

    assert_eq!(store.get_model(&r, "m.json").await.unwrap(), None);
    let left: Vec<String> = store
        .list_models(&r)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.path)
        .collect();
    assert_eq!(left, ["m.json.bak.json"]);
}

/// A path longer than any store's key (DynamoDB's sort keys stop at 1,024 bytes) is kept, read,
/// listed in its place, replaced and deleted under its own path, and a path sharing its first
/// kilobyte is another model.
pub async fn a_model_at_a_very_long_path_is_kept_under_that_path(store: &impl Store) {
    let r = repo("DATA/models");
    let folder = "très/long/dossier/".repeat(120);
    let (long, twin, short) = (
        format!("{folder}a.json"),
        format!("{folder}b.json"),
        "a.json".to_owned(),
    );
    // Facts stay short: recognition caps them, whatever the path.
    let at = |path: &str, content: Vec<u8>| ModelRecord::new(path.into(), commit(9), t0(), valid("Long"), content);
    for path in [&long, &twin, &short] {
        store
            .put_model(&held(store, &r).await, &at(path, model(path)))
            .await
            .unwrap();
    }
    let replaced = at(&long, model("replaced"));

    store.put_model(&held(store, &r).await, &replaced).await.unwrap();
    let back = store.get_model(&r, &long).await.unwrap();
    let listed: Vec<String> = store
        .list_models(&r)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.path)
        .collect();
    let paths = |models: Vec<crate::model::ModelSummary>| models.into_iter().map(|m| m.path).collect::<Vec<_>>();
    let after_short = paths(store.list_models_after(&r, &short).await.unwrap());
    let after_long = paths(store.list_models_after(&r, &long).await.unwrap());
    let deleted = store.delete_model(&held(store, &r).await, &long).await.unwrap();

    assert!(long.len() > 2 * 1_024, "{} bytes", long.len());
    assert_eq!(back, Some(replaced));
    assert_eq!(listed, [short.clone(), long.clone(), twin.clone()]);
    assert_eq!(after_short, [long.clone(), twin.clone()], "listed after a short path");
    assert_eq!(after_long, std::slice::from_ref(&twin), "listed after a long path");
    assert!(deleted);
    assert_eq!(store.get_model(&r, &long).await.unwrap(), None);
    assert_eq!(
        store.get_model(&r, &twin).await.unwrap().map(|m| m.content.to_vec()),
        Some(model(&twin))
    );
}

/// Many models (more than one page of any store's listing) are all listed, and each repository
/// lists only its own.
pub async fn many_models_are_all_listed_and_only_in_their_repository(store: &impl Store) {
    let (r, neighbour) = (repo("DATA/models"), repo("DATA/models-2"));
    let mut expected = Vec::new();
    // 300 incompressible models of 4 KB: more than the 1 MB a DynamoDB query reads per page.
    for i in 0..300 {
        let rec = record(&format!("m/{i:04}.json"), incompressible_model("M", i, 4_000));
        store.put_model(&held(store, &r).await, &rec).await.unwrap();
        expected.push(rec.summary());
    }
    store
        .put_model(&held(store, &neighbour).await, &record("n.json", b"{}".to_vec()))
        .await
        .unwrap();

    let listed = store.list_models(&r).await.unwrap();

    assert_eq!(listed.len(), expected.len());
    assert_eq!(listed, expected);
    assert_eq!(store.list_models(&neighbour).await.unwrap().len(), 1);
}

/// A held lease is refused to another owner, who is told who holds it and until when.
pub async fn a_held_lease_is_refused_to_another_owner_saying_who_holds_it_until_when(store: &impl Store) {
    let r = repo("DATA/models");
    store.register(&r).await.unwrap();
    let (a, b) = (LeaseOwner::generate("a"), LeaseOwner::generate("b"));
    let held = store.acquire_lease(&r, &a, StdDuration::from_secs(600)).await.unwrap();

    let refused = store.acquire_lease(&r, &b, StdDuration::from_secs(600)).await;
    let renewed = store.renew_lease(&held, StdDuration::from_secs(900)).await.unwrap();

    match refused {
        Err(StoreError::LeaseHeld { repo, owner, until }) => {
            assert_eq!((repo, owner), (r, a));
            assert_eq!(until, held.expires_at);
        }
        other => panic!("expected LeaseHeld, got {other:?}"),
    }
    assert!(!held.previous_unfinished);
    assert!(renewed.expires_at > held.expires_at);
}

/// A released lease is free at once, and tells the next holder whether its sync finished.
pub async fn a_released_lease_is_free_and_remembers_an_unfinished_sync(store: &impl Store) {
    let r = repo("DATA/models");
    store.register(&r).await.unwrap();
    let ttl = StdDuration::from_secs(600);

    let first = store.acquire_lease(&r, &LeaseOwner::generate("a"), ttl).await.unwrap();
    store.release_lease(&first, false).await.unwrap();
    let second = store.acquire_lease(&r, &LeaseOwner::generate("b"), ttl).await.unwrap();
    store.release_lease(&second, true).await.unwrap();
    let third = store.acquire_lease(&r, &LeaseOwner::generate("c"), ttl).await.unwrap();

    assert!(!first.previous_unfinished);
    assert!(second.previous_unfinished, "the first released it unfinished");
    assert!(!third.previous_unfinished, "the second finished");
}

/// `r` registered, its lease taken by "a" with no time to run, then taken over by "b": "a"'s
/// lease (lost) and "b"'s.
async fn lease_lost_to_another(store: &impl Store, r: &RepoRef) -> (SyncLease, SyncLease) {
    store.register(r).await.unwrap();
    let lost = store
        .acquire_lease(r, &LeaseOwner::generate("a"), StdDuration::ZERO)
        .await
        .unwrap();
    let taker = store
        .acquire_lease(r, &LeaseOwner::generate("b"), StdDuration::from_secs(600))
        .await
        .unwrap();
    (lost, taker)
}

/// An expired lease is taken over (and its sync counts as unfinished); its former holder can no
/// longer write, delete, move the cursor or renew, and its release leaves the new holder's lease.
pub async fn a_writer_that_lost_its_lease_cannot_write(store: &impl Store) {
    let r = repo("DATA/models");
    let (lost, taker) = lease_lost_to_another(store, &r).await;
    store
        .put_model(&taker, &record("kept.json", b"{}".to_vec()))
        .await
        .unwrap();

    let put = store.put_model(&lost, &record("stale.json", b"{}".to_vec())).await;
    let delete = store.delete_model(&lost, "kept.json").await;
    let advance = store.advance_cursor(&lost, None, &cursor(1)).await;
    let resume = store.record_resume(&lost, None, &resume(1, "a.json")).await;
    let renew = store.renew_lease(&lost, StdDuration::from_secs(600)).await;
    store.release_lease(&lost, true).await.unwrap();

    assert!(taker.previous_unfinished, "the first holder never released");
    for result in [put.map(|_| ()), delete.map(|_| ()), advance, resume, renew.map(|_| ())] {
        let error = result.expect_err("fenced");
        assert!(matches!(error, StoreError::LeaseLost(_)), "{error:?}");
        assert!(error.is_retryable());
    }
    let paths: Vec<String> = store
        .list_models(&r)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.path)
        .collect();
    assert_eq!(paths, ["kept.json"]);
    assert_eq!(store.repo(&r).await.unwrap().expect("registered").cursor, None);
    assert!(
        matches!(
            store
                .acquire_lease(&r, &LeaseOwner::generate("c"), StdDuration::from_secs(600))
                .await,
            Err(StoreError::LeaseHeld { .. })
        ),
        "the taker still holds it"
    );
    store
        .put_model(&taker, &record("new.json", b"{}".to_vec()))
        .await
        .unwrap();
}

// ---------------------------------------------------------------------------------------------
// The delivery log
// ---------------------------------------------------------------------------------------------

/// The webhook's entry for a push of `r` to commit `n`, delivery `id`, received `minutes_ago`
/// (whole milliseconds: every store keeps at least those).
pub fn push_entry(id: &str, r: &RepoRef, n: u64, minutes_ago: i64) -> DeliveryEntry {
    let mut message = push(r, &commit(n));
    message.delivery_id = delivery(id);
    let now = chrono::DateTime::from_timestamp_millis(chrono::Utc::now().timestamp_millis()).unwrap_or(t0());
    message.received_at = now - Duration::minutes(minutes_ago);
    DeliveryEntry::for_push(&message, "repo:refs_changed", Verdict::Queued)
}

/// An attempt's outcome.
pub fn outcome(status: OutcomeStatus, attempts: u32) -> DeliveryOutcome {
    let failed = matches!(status, OutcomeStatus::Retrying | OutcomeStatus::DeadLettered);
    DeliveryOutcome {
        status,
        at: t0() + Duration::milliseconds(1500),
        attempts,
        commit: (!failed).then(|| commit(7)),
        stats: (!failed).then(|| cursor(7).stats),
        duration_ms: 1234,
        detail: format!("attempt {attempts}"),
        error: failed.then(|| "GET default branch for DATA/models failed: 503".to_owned()),
        covered_by: None,
    }
}

fn ids(entries: &[DeliveryEntry]) -> Vec<&str> {
    entries.iter().map(|e| e.id.as_str()).collect()
}

fn all() -> DeliveryQuery {
    DeliveryQuery::default()
}

/// A recorded delivery is found by its id exactly as recorded, and listed.
pub async fn a_recorded_delivery_is_found_by_id_exactly_as_recorded(store: &impl Store) {
    let entry = push_entry("d-1", &repo("DATA/models"), 1, 5);
    let mut ignored = push_entry("d-2", &repo("DATA/models"), 2, 4);
    ignored.repo = None;
    ignored.changes.clear();
    ignored.event_key = "pr:opened".into();
    ignored.verdict = Verdict::Ignored;
    ignored.reason = Some("event \"pr:opened\" is not replicated".into());

    store.record_delivery(&entry).await.unwrap();
    store.record_delivery(&ignored).await.unwrap();

    assert_eq!(store.delivery(&entry.id).await.unwrap(), Some(entry.clone()));
    assert_eq!(store.delivery(&ignored.id).await.unwrap(), Some(ignored.clone()));
    assert_eq!(store.delivery(&delivery("unknown")).await.unwrap(), None);
    assert_eq!(store.deliveries(&all()).await.unwrap(), [ignored, entry]);
}

/// Deliveries are listed newest first, across repositories or for one, up to the limit.
pub async fn deliveries_are_listed_newest_first_across_repositories_and_per_repository(store: &impl Store) {
    let (a, b) = (repo("DATA/models"), repo("DATA/other"));
    for (id, r, minutes_ago) in [("d-3", &a, 30), ("d-1", &b, 50), ("d-4", &b, 20), ("d-2", &a, 40)] {
        store.record_delivery(&push_entry(id, r, 1, minutes_ago)).await.unwrap();
    }

    let everything = store.deliveries(&all()).await.unwrap();
    let of_a = store
        .deliveries(&DeliveryQuery {
            repo: Some(a.clone()),
            ..all()
        })
        .await
        .unwrap();
    let newest_two = store.deliveries(&DeliveryQuery { limit: 2, ..all() }).await.unwrap();

    assert_eq!(ids(&everything), ["d-4", "d-3", "d-2", "d-1"]);
    assert_eq!(ids(&of_a), ["d-3", "d-2"]);
    assert_eq!(ids(&newest_two), ["d-4", "d-3"]);
}

/// A delivery received again keeps its first verdict and is counted as a duplicate.
pub async fn a_delivery_received_again_keeps_its_verdict_and_counts_a_duplicate(store: &impl Store) {
    let first = push_entry("d-1", &repo("DATA/models"), 1, 5);
    let again = DeliveryEntry {
        verdict: Verdict::Duplicate,
        ..push_entry("d-1", &repo("DATA/models"), 1, 1)
    };

    store.record_delivery(&first).await.unwrap();
    store.record_delivery(&again).await.unwrap();
    store.record_delivery(&again).await.unwrap();

    let read = store.delivery(&first.id).await.unwrap().expect("recorded");
    assert_eq!(read.verdict, Verdict::Queued);
    assert_eq!(read.received_at, first.received_at);
    assert_eq!(read.duplicates, 2);
    assert_eq!(store.deliveries(&all()).await.unwrap().len(), 1);
}

/// The outcome of each attempt replaces the previous one on its delivery.
pub async fn an_outcome_is_recorded_on_its_delivery_and_replaced_by_the_next_attempt(store: &impl Store) {
    let entry = push_entry("d-1", &repo("DATA/models"), 1, 5);
    store.record_delivery(&entry).await.unwrap();

    store
        .record_outcome(&entry, &outcome(OutcomeStatus::Retrying, 1))
        .await
        .unwrap();
    let failed = store.delivery(&entry.id).await.unwrap().expect("recorded");
    store
        .record_outcome(&entry, &outcome(OutcomeStatus::Synced, 2))
        .await
        .unwrap();
    let synced = store.delivery(&entry.id).await.unwrap().expect("recorded");

    assert_eq!(failed.outcome, Some(outcome(OutcomeStatus::Retrying, 1)));
    assert!(failed.is_failure());
    assert_eq!(synced.outcome, Some(outcome(OutcomeStatus::Synced, 2)));
    assert_eq!((synced.verdict, synced.duplicates), (Verdict::Queued, 0));
}

/// A message no webhook delivered (a reconcile) is recorded under its own id with its kind; a
/// webhook's record that arrives after its sync's outcome is no duplicate.
pub async fn an_outcome_without_a_delivery_is_recorded_under_the_message_id(store: &impl Store) {
    let r = repo("DATA/models");
    let reconcile = PushMessage::reconcile(r.clone(), "refs/heads/main", &commit(3), None, t0());
    let reconcile_entry = DeliveryEntry::for_push(&reconcile, "", Verdict::Queued);
    let late = push_entry("d-late", &r, 4, 1);

    store
        .record_outcome(&reconcile_entry, &outcome(OutcomeStatus::Synced, 1))
        .await
        .unwrap();
    store
        .record_outcome(&late, &outcome(OutcomeStatus::Synced, 1))
        .await
        .unwrap();
    store.record_delivery(&late).await.unwrap();

    let read = store.delivery(&reconcile.delivery_id).await.unwrap().expect("recorded");
    assert_eq!(reconcile.kind, MessageKind::Reconcile);
    assert_eq!(read.kind, DeliveryKind::Reconcile);
    assert_eq!(read.outcome, Some(outcome(OutcomeStatus::Synced, 1)));
    let late = store.delivery(&late.id).await.unwrap().expect("recorded");
    assert_eq!(late.duplicates, 0, "{late:?}");
    assert!(late.outcome.is_some());
}

/// `failed_only` keeps the deliveries whose sync is retried or dead-lettered; `since` the recent.
pub async fn the_failed_and_since_filters_select_deliveries(store: &impl Store) {
    let r = repo("DATA/models");
    let (old_failed, synced, retrying, pending) = (
        push_entry("d-1", &r, 1, 180),
        push_entry("d-2", &r, 2, 60),
        push_entry("d-3", &r, 3, 30),
        push_entry("d-4", &r, 4, 10),
    );
    for entry in [&old_failed, &synced, &retrying, &pending] {
        store.record_delivery(entry).await.unwrap();
    }
    store
        .record_outcome(&old_failed, &outcome(OutcomeStatus::DeadLettered, 10))
        .await
        .unwrap();
    store
        .record_outcome(&synced, &outcome(OutcomeStatus::Synced, 1))
        .await
        .unwrap();
    store
        .record_outcome(&retrying, &outcome(OutcomeStatus::Retrying, 2))
        .await
        .unwrap();

    let failed = store
        .deliveries(&DeliveryQuery {
            failed_only: true,
            ..all()
        })
        .await
        .unwrap();
    let recent = store
        .deliveries(&DeliveryQuery {
            since: Some(synced.received_at),
            ..all()
        })
        .await
        .unwrap();
    let recent_failed = store
        .deliveries(&DeliveryQuery {
            since: Some(synced.received_at),
            failed_only: true,
            limit: 1,
            ..all()
        })
        .await
        .unwrap();

    assert_eq!(ids(&failed), ["d-3", "d-1"]);
    assert_eq!(ids(&recent), ["d-4", "d-3", "d-2"]);
    assert_eq!(ids(&recent_failed), ["d-3"]);
}

/// An entry older than the retention (30 days by default) is neither listed nor found.
pub async fn an_entry_older_than_the_retention_is_neither_listed_nor_found(store: &impl Store) {
    let expired = push_entry("d-old", &repo("DATA/models"), 1, 31 * 24 * 60);
    let kept = push_entry("d-new", &repo("DATA/models"), 2, 29 * 24 * 60);

    store.record_delivery(&expired).await.unwrap();
    store.record_delivery(&kept).await.unwrap();

    assert_eq!(store.delivery(&expired.id).await.unwrap(), None);
    assert_eq!(ids(&store.deliveries(&all()).await.unwrap()), ["d-new"]);
}

/// Turns every case of this module into a `#[tokio::test]` of the calling crate, each on a fresh
/// store made by `$factory`, an expression that evaluates to a closure returning a future of the
/// store: `hubsync_core::store_conformance!(|| async { MemoryStore::default() });`.
#[macro_export]
macro_rules! store_conformance {
    ($factory:expr) => {
        $crate::store_conformance!(@cases $factory;
            registering_twice_reports_the_second_time_and_keeps_the_state,
            a_new_repository_has_no_cursor_and_an_unknown_one_no_record,
            repositories_are_listed_by_project_then_slug,
            unregistering_removes_the_repository_and_only_its_models,
            the_cursor_moves_only_from_the_expected_commit,
            moving_the_cursor_of_an_unregistered_repository_is_refused,
            an_error_is_recorded_beside_the_cursor_and_cleared_by_the_next_success,
            a_resume_point_is_kept_beside_the_cursor_until_the_cursor_moves,
            a_first_sync_records_its_resume_point_without_a_cursor,
            a_model_is_read_back_exactly_as_written,
            a_malformed_model_is_stored_with_its_error,
            models_are_listed_by_path_in_byte_order_with_their_summaries,
            empty_and_binary_contents_round_trip_byte_for_byte,
            a_large_incompressible_model_round_trips_byte_for_byte,
            writing_a_model_again_replaces_it,
            a_built_model_is_written_like_a_put_one_and_a_build_of_nothing_writes_nothing,
            a_writer_that_lost_its_lease_cannot_write_a_built_model,
            deleting_a_model_reports_whether_there_was_one,
            many_models_are_all_listed_and_only_in_their_repository,
            a_model_at_a_very_long_path_is_kept_under_that_path,
            a_held_lease_is_refused_to_another_owner_saying_who_holds_it_until_when,
            a_released_lease_is_free_and_remembers_an_unfinished_sync,
            a_writer_that_lost_its_lease_cannot_write,
            a_recorded_delivery_is_found_by_id_exactly_as_recorded,
            deliveries_are_listed_newest_first_across_repositories_and_per_repository,
            a_delivery_received_again_keeps_its_verdict_and_counts_a_duplicate,
            an_outcome_is_recorded_on_its_delivery_and_replaced_by_the_next_attempt,
            an_outcome_without_a_delivery_is_recorded_under_the_message_id,
            the_failed_and_since_filters_select_deliveries,
            an_entry_older_than_the_retention_is_neither_listed_nor_found,
        );
    };
    (@cases $factory:expr; $($case:ident),+ $(,)?) => {
        $(
            #[::tokio::test]
            async fn $case() {
                let store = ($factory)().await;
                $crate::testing::conformance::$case(&store).await;
            }
        )+
    };
}
