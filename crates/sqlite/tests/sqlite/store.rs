//! Registry and model store semantics.

use std::collections::BTreeMap;

use chrono::Duration as ChronoDuration;
use hubsync_core::memory::{MemoryGitHost, MemoryStore};
use hubsync_core::model::{ModelFacts, ModelRecord, ModelStatus};
use hubsync_core::ports::{LastError, ModelStore, RepoRegistry, StoreError, SyncCursor, SyncStats};
use hubsync_core::sync::{SyncEngine, SyncOptions, SyncOutcome};
use hubsync_sqlite::{HubOptions, ManualClock, SqliteHub};

use crate::{commit, hub_with_clock, open_with_clock, push, repo, t0};

fn cursor(n: u64) -> SyncCursor {
    SyncCursor {
        commit: commit(n),
        synced_at: t0() + ChronoDuration::nanoseconds(123_456_789),
        stats: SyncStats {
            written: n,
            removed: 1,
            ..SyncStats::default()
        },
    }
}

fn valid(name: &str) -> ModelStatus {
    ModelStatus::Valid {
        facts: ModelFacts {
            model_name: name.into(),
            app_target: "PostgreSQL".into(),
            entities: 3,
            ..ModelFacts::default()
        },
    }
}

fn record(path: &str, content: Vec<u8>) -> ModelRecord {
    ModelRecord::new(path.into(), commit(9), t0(), valid(path), content)
}

/// A Hackolade-shaped model of about `target` bytes, varied enough not to compress to nothing.
fn big_model(target: usize) -> Vec<u8> {
    let mut collections = Vec::new();
    let mut size = 0;
    let mut i: u64 = 0;
    while size < target {
        // A cheap deterministic mix so field values differ from entity to entity.
        let h = i.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17);
        let entity = serde_json::json!({
            "GUID": format!("{h:016x}-{i}"),
            "collectionName": format!("entity_{i}_ünïcødé"),
            "properties": [
                {"name": format!("id_{h:x}"), "type": "integer", "comments": format!("key {}", h % 9973)},
                {"name": "payload", "type": "string", "pattern": format!("^[a-z]{{{}}}$", h % 97)}
            ]
        });
        size += entity.to_string().len();
        collections.push(entity);
        i += 1;
    }
    serde_json::to_vec_pretty(&serde_json::json!({
        "modelName": "Big", "appTarget": "PostgreSQL", "dbVendor": "PostgreSQL", "collections": collections,
        "relationships": [], "buckets": [], "definitions": {}, "GUID": "big", "persistenceSchemaVersion": "8"
    }))
    .unwrap()
}

#[tokio::test]
async fn registering_twice_reports_the_second_time_and_keeps_the_state() {
    let (hub, _) = hub_with_clock(HubOptions::default());
    let r = repo("DATA/models");

    assert!(hub.register(&r).await.unwrap());
    hub.advance_cursor(&r, None, &cursor(1)).await.unwrap();
    assert!(!hub.register(&r).await.unwrap());

    let record = hub.repo(&r).await.unwrap().unwrap();
    assert_eq!(record.registered_at, t0());
    assert_eq!(record.cursor, Some(cursor(1)));
}

#[tokio::test]
async fn the_cursor_moves_only_from_the_expected_commit() {
    let (hub, _) = hub_with_clock(HubOptions::default());
    let r = repo("DATA/models");
    hub.register(&r).await.unwrap();

    hub.advance_cursor(&r, None, &cursor(1)).await.unwrap();
    let stale = hub.advance_cursor(&r, None, &cursor(2)).await;
    let wrong = hub.advance_cursor(&r, Some(&commit(5)), &cursor(2)).await;
    hub.advance_cursor(&r, Some(&commit(1)), &cursor(2)).await.unwrap();

    assert!(
        matches!(stale, Err(StoreError::CursorMoved(ref x)) if *x == r),
        "{stale:?}"
    );
    assert!(matches!(wrong, Err(StoreError::CursorMoved(_))), "{wrong:?}");
    assert_eq!(hub.repo(&r).await.unwrap().unwrap().cursor, Some(cursor(2)));
}

#[tokio::test]
async fn moving_the_cursor_of_an_unregistered_repository_is_refused() {
    let (hub, _) = hub_with_clock(HubOptions::default());

    let result = hub.advance_cursor(&repo("DATA/ghost"), None, &cursor(1)).await;

    assert!(matches!(result, Err(StoreError::NotRegistered(_))), "{result:?}");
}

#[tokio::test]
async fn an_error_is_recorded_beside_the_cursor_and_cleared_by_the_next_success() {
    let (hub, _) = hub_with_clock(HubOptions::default());
    let r = repo("DATA/models");
    hub.register(&r).await.unwrap();
    hub.advance_cursor(&r, None, &cursor(1)).await.unwrap();
    let error = LastError {
        message: "401 from Bitbucket".into(),
        at: t0(),
    };

    hub.record_error(&r, &error).await.unwrap();
    let failed = hub.repo(&r).await.unwrap().unwrap();
    hub.advance_cursor(&r, Some(&commit(1)), &cursor(2)).await.unwrap();
    let healed = hub.repo(&r).await.unwrap().unwrap();

    assert_eq!(
        (failed.cursor, failed.last_error),
        (Some(cursor(1)), Some(error.clone()))
    );
    assert_eq!(healed.last_error, None);
    // Like the reference store, recording an error for an unknown repository is not an error.
    hub.record_error(&repo("DATA/ghost"), &error).await.unwrap();
}

#[tokio::test]
async fn repositories_are_listed_in_the_reference_order() {
    let (hub, _) = hub_with_clock(HubOptions::default());
    let memory = MemoryStore::default();
    let names = ["B/x", "A-B/y", "A/z", "~jdoe/sandbox", "A/a", "AB/c"];

    for name in names {
        hub.register(&repo(name)).await.unwrap();
        memory.register(&repo(name)).await.unwrap();
    }

    let listed: Vec<_> = hub.repos().await.unwrap().into_iter().map(|r| r.repo).collect();
    let expected: Vec<_> = memory.repos().await.unwrap().into_iter().map(|r| r.repo).collect();
    assert_eq!(listed, expected);
}

#[tokio::test]
async fn unregistering_removes_the_repository_and_only_its_models() {
    let (hub, _) = hub_with_clock(HubOptions::default());
    let (mine, other) = (repo("DATA/mine"), repo("DATA/other"));
    for r in [&mine, &other] {
        hub.register(r).await.unwrap();
        hub.put_model(r, &record("a.json", b"{}".to_vec())).await.unwrap();
    }

    assert!(hub.unregister(&mine).await.unwrap());
    assert!(!hub.unregister(&mine).await.unwrap());

    assert_eq!(hub.repo(&mine).await.unwrap(), None);
    assert!(hub.list_models(&mine).await.unwrap().is_empty());
    assert_eq!(hub.list_models(&other).await.unwrap().len(), 1);
}

#[tokio::test]
async fn models_are_listed_by_path_in_byte_order_with_their_summaries() {
    let (hub, _) = hub_with_clock(HubOptions::default());
    let r = repo("DATA/models");
    let paths = [
        "z.json",
        "Ä/b.json",
        "a/b.json",
        "a.json",
        "日本/モデル.hck.json",
        "a b/c.json",
        "A.json",
    ];
    let mut expected = Vec::new();
    for (i, path) in paths.iter().enumerate() {
        let rec = record(path, format!("{{\"n\": {i}}}").into_bytes());
        hub.put_model(&r, &rec).await.unwrap();
        expected.push(rec.summary());
    }
    expected.sort_by(|a, b| a.path.cmp(&b.path));

    let listed = hub.list_models(&r).await.unwrap();

    assert_eq!(listed, expected);
}

#[tokio::test]
async fn a_ten_megabyte_model_round_trips_byte_for_byte_and_is_compressed_at_rest() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hub.db");
    let hub = SqliteHub::open(&path).unwrap();
    let r = repo("DATA/big");
    let content = big_model(10 * 1024 * 1024);
    let rec = ModelRecord::new(
        "modèles/très grand ✓.hck.json".into(),
        commit(3),
        t0(),
        valid("Big"),
        content.clone(),
    );

    hub.put_model(&r, &rec).await.unwrap();
    let back = hub.get_model(&r, &rec.path).await.unwrap().unwrap();

    assert!(back.content == content, "content differs after the round trip");
    assert_eq!(back, rec);
    let stored: i64 = rusqlite::Connection::open(&path)
        .unwrap()
        .query_row("SELECT length(content) FROM models", [], |row| row.get(0))
        .unwrap();
    assert!(
        (stored as usize) < content.len() / 3,
        "{stored} bytes stored for {}",
        content.len()
    );
}

#[tokio::test]
async fn empty_and_binary_contents_round_trip() {
    let (hub, _) = hub_with_clock(HubOptions::default());
    let r = repo("DATA/models");
    let binary: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();

    for (path, content) in [
        ("empty.json", Vec::new()),
        ("bom.json", b"\xEF\xBB\xBF{}".to_vec()),
        ("bin.json", binary),
    ] {
        let rec = record(path, content);
        hub.put_model(&r, &rec).await.unwrap();
        assert_eq!(hub.get_model(&r, path).await.unwrap(), Some(rec));
    }
}

#[tokio::test]
async fn writing_a_model_again_replaces_it() {
    let (hub, _) = hub_with_clock(HubOptions::default());
    let r = repo("DATA/models");
    hub.put_model(&r, &record("m.json", b"old".to_vec())).await.unwrap();
    let newer = ModelRecord::new(
        "m.json".into(),
        commit(10),
        t0(),
        ModelStatus::Malformed { error: "bad".into() },
        b"new".to_vec(),
    );

    hub.put_model(&r, &newer).await.unwrap();

    assert_eq!(hub.get_model(&r, "m.json").await.unwrap(), Some(newer));
    assert_eq!(hub.list_models(&r).await.unwrap().len(), 1);
}

#[tokio::test]
async fn deleting_a_model_reports_whether_there_was_one() {
    let (hub, _) = hub_with_clock(HubOptions::default());
    let r = repo("DATA/models");
    hub.put_model(&r, &record("m.json", b"{}".to_vec())).await.unwrap();

    assert!(hub.delete_model(&r, "m.json").await.unwrap());
    assert!(!hub.delete_model(&r, "m.json").await.unwrap());
    assert_eq!(hub.get_model(&r, "m.json").await.unwrap(), None);
}

#[tokio::test]
async fn a_damaged_model_is_reported_as_corrupt_not_served() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hub.db");
    let hub = SqliteHub::open(&path).unwrap();
    let r = repo("DATA/models");
    hub.put_model(&r, &record("m.json", b"{\"modelName\": \"x\"}".to_vec()))
        .await
        .unwrap();
    hub.put_model(&r, &record("n.json", b"{\"modelName\": \"y\"}".to_vec()))
        .await
        .unwrap();
    let raw = rusqlite::Connection::open(&path).unwrap();

    raw.execute("UPDATE models SET content_sha256 = 'ff' WHERE path = 'm.json'", [])
        .unwrap();
    raw.execute("UPDATE models SET content = x'00ff' WHERE path = 'n.json'", [])
        .unwrap();

    let tampered = hub.get_model(&r, "m.json").await;
    let truncated = hub.get_model(&r, "n.json").await;
    assert!(
        matches!(tampered, Err(StoreError::Corrupt(ref m)) if m.contains("SHA-256")),
        "{tampered:?}"
    );
    assert!(matches!(truncated, Err(StoreError::Corrupt(_))), "{truncated:?}");
}

#[tokio::test]
async fn the_registry_and_models_survive_reopening_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/dir/hub.db");
    let clock = ManualClock::new(t0());
    let r = repo("DATA/models");
    let rec = record("ü/m.json", b"{\"a\": 1}".to_vec());
    {
        let hub = open_with_clock(&path, &clock, HubOptions::default());
        hub.register(&r).await.unwrap();
        hub.advance_cursor(&r, None, &cursor(4)).await.unwrap();
        hub.put_model(&r, &rec).await.unwrap();
    }

    let hub = open_with_clock(&path, &clock, HubOptions::default());

    assert_eq!(hub.repo(&r).await.unwrap().unwrap().cursor, Some(cursor(4)));
    assert_eq!(hub.get_model(&r, &rec.path).await.unwrap(), Some(rec));
    assert_eq!(hub.schema_version().await.unwrap(), 1);
}

#[tokio::test]
async fn a_database_from_a_newer_hubsync_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hub.db");
    drop(SqliteHub::open(&path).unwrap());
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute("UPDATE schema_version SET version = 99", [])
        .unwrap();

    let result = SqliteHub::open(&path);

    assert!(
        matches!(result, Err(hubsync_sqlite::SqliteError::SchemaTooNew { found: 99, .. })),
        "{result:?}"
    );
}

fn model_bytes(name: &str, entities: usize) -> Vec<u8> {
    let collections: Vec<_> = (0..entities)
        .map(|i| serde_json::json!({"GUID": format!("{name}-{i}")}))
        .collect();
    serde_json::to_vec_pretty(&serde_json::json!({
        "modelName": name, "appTarget": "MONGODB", "dbVendor": "MongoDB", "collections": collections,
        "relationships": [], "buckets": [], "definitions": {}, "GUID": format!("g-{name}"), "persistenceSchemaVersion": "8"
    }))
    .unwrap()
}

#[tokio::test]
async fn the_sync_engine_keeps_the_sqlite_store_equal_to_the_default_branch() {
    let (hub, _) = hub_with_clock(HubOptions::default());
    let host = MemoryGitHost::default();
    let r = repo("DATA/models");
    hub.register(&r).await.unwrap();
    let engine = SyncEngine::new(&host, &hub, SyncOptions::default());
    let first = host.commit(
        &r,
        BTreeMap::from([
            ("orders.hck.json".to_string(), model_bytes("Orders", 2)),
            ("crm/customers.json".to_string(), model_bytes("Customers", 1)),
            ("README.md".to_string(), b"# hi".to_vec()),
        ]),
    );
    engine.handle_push(&push("DATA/models", "d1")).await.unwrap();
    let second = host.commit(
        &r,
        BTreeMap::from([
            ("orders.hck.json".to_string(), model_bytes("Orders", 5)),
            ("sales/customers.json".to_string(), model_bytes("Customers", 1)),
        ]),
    );

    let outcome = engine.handle_push(&push("DATA/models", "d2")).await.unwrap();

    assert!(
        matches!(outcome, SyncOutcome::Synced { ref from, ref to, .. } if *from == Some(first) && *to == second),
        "{outcome:?}"
    );
    let paths: Vec<_> = hub.list_models(&r).await.unwrap().into_iter().map(|m| m.path).collect();
    assert_eq!(paths, ["orders.hck.json", "sales/customers.json"]);
    let orders = hub.get_model(&r, "orders.hck.json").await.unwrap().unwrap();
    assert_eq!(orders.content, model_bytes("Orders", 5));
    assert!(matches!(orders.status, ModelStatus::Valid { ref facts } if facts.entities == 5));
    assert_eq!(hub.repo(&r).await.unwrap().unwrap().cursor.unwrap().commit, second);
}
