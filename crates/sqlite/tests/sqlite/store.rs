//! What only the SQLite store adds to the store contract (the contract itself is
//! `conformance.rs`): compression at rest, corruption detection, durability across reopening,
//! schema versions, and the sync engine writing through it.

use std::collections::BTreeMap;

use hubsync_core::ids::RepoRef;
use hubsync_core::model::{ModelRecord, ModelStatus};
use hubsync_core::ports::{LeaseOwner, ModelStore, RepoRegistry, StoreError, SyncLease};
use hubsync_core::sync::{SyncEngine, SyncOptions, SyncOutcome};
use hubsync_core::testing::conformance::{cursor, record, valid};
use hubsync_core::testing::fixtures::model_with_entities;
use hubsync_core::testing::memory::MemoryGitHost;
use hubsync_sqlite::{HubOptions, ManualClock, SqliteHub};

use crate::{commit, hub_with_clock, open_with_clock, push, repo, t0};

/// The lease of the tests' one writer (taken again by the same owner, so any number of writes
/// can each ask for it).
async fn held(hub: &SqliteHub, r: &RepoRef) -> SyncLease {
    hub.acquire_lease(
        r,
        &LeaseOwner::from_stored("test writer"),
        std::time::Duration::from_secs(3600),
    )
    .await
    .unwrap()
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

    hub.put_model(&held(&hub, &r).await, &rec).await.unwrap();
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
async fn a_model_written_zlib_compressed_by_an_earlier_version_still_reads_byte_for_byte() {
    // Arrange: a row as hubsync wrote them before zstd, compressed with zlib.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hub.db");
    let hub = SqliteHub::open(&path).unwrap();
    let r = repo("DATA/models");
    let content = big_model(64 * 1024);
    let rec = ModelRecord::new("old.hck.json".into(), commit(1), t0(), valid("Old"), content.clone());
    hub.put_model(&held(&hub, &r).await, &rec).await.unwrap();
    let raw = rusqlite::Connection::open(&path).unwrap();
    let written: String = raw
        .query_row("SELECT encoding FROM models", [], |row| row.get(0))
        .unwrap();
    let mut zlib = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut zlib, &content).unwrap();
    raw.execute(
        "UPDATE models SET encoding = 'zlib', content = ?1",
        [zlib.finish().unwrap()],
    )
    .unwrap();

    // Act
    let back = hub.get_model(&r, &rec.path).await.unwrap().unwrap();

    // Assert
    assert_eq!(written, "zstd", "what a write uses now");
    assert!(back.content == content, "content differs after reading the zlib row");
    assert_eq!(back, rec);
}

#[tokio::test]
async fn a_damaged_model_is_reported_as_corrupt_not_served() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hub.db");
    let hub = SqliteHub::open(&path).unwrap();
    let r = repo("DATA/models");
    hub.put_model(
        &held(&hub, &r).await,
        &record("m.json", b"{\"modelName\": \"x\"}".to_vec()),
    )
    .await
    .unwrap();
    hub.put_model(
        &held(&hub, &r).await,
        &record("n.json", b"{\"modelName\": \"y\"}".to_vec()),
    )
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
        hub.advance_cursor(&held(&hub, &r).await, None, &cursor(4))
            .await
            .unwrap();
        hub.put_model(&held(&hub, &r).await, &rec).await.unwrap();
    }

    let hub = open_with_clock(&path, &clock, HubOptions::default());

    assert_eq!(hub.repo(&r).await.unwrap().unwrap().cursor, Some(cursor(4)));
    assert_eq!(hub.get_model(&r, &rec.path).await.unwrap(), Some(rec));
    assert_eq!(hub.schema_version().await.unwrap(), 4);
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
            ("orders.hck.json".to_string(), model_with_entities("Orders", 2)),
            ("crm/customers.json".to_string(), model_with_entities("Customers", 1)),
            ("README.md".to_string(), b"# hi".to_vec()),
        ]),
    );
    engine.handle_push(&push("DATA/models", "d1")).await.unwrap();
    let second = host.commit(
        &r,
        BTreeMap::from([
            ("orders.hck.json".to_string(), model_with_entities("Orders", 5)),
            ("sales/customers.json".to_string(), model_with_entities("Customers", 1)),
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
    assert_eq!(orders.content, model_with_entities("Orders", 5));
    assert!(matches!(orders.status, ModelStatus::Valid { ref facts } if facts.entities == 5));
    assert_eq!(hub.repo(&r).await.unwrap().unwrap().cursor.unwrap().commit, second);
}

#[tokio::test]
async fn two_processes_on_one_database_file_never_write_a_repository_at_once() {
    // Arrange: two hubs on one file, as two `hubsync serve` processes would be.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hub.db");
    let (clock_a, clock_b) = (ManualClock::new(t0()), ManualClock::new(t0()));
    let a = open_with_clock(&path, &clock_a, HubOptions::default());
    let b = open_with_clock(&path, &clock_b, HubOptions::default());
    let r = repo("DATA/models");
    a.register(&r).await.unwrap();
    let ttl = std::time::Duration::from_secs(60);
    let owner_a = LeaseOwner::generate("a");
    let lease_a = a.acquire_lease(&r, &owner_a, ttl).await.unwrap();
    a.put_model(&lease_a, &record("a.json", b"{\"by\": \"a\"}".to_vec()))
        .await
        .unwrap();

    // Act
    let refused = b.acquire_lease(&r, &LeaseOwner::generate("b"), ttl).await;
    clock_b.advance(ttl * 2);
    let lease_b = b.acquire_lease(&r, &LeaseOwner::generate("b"), ttl).await.unwrap();
    let stale_put = a
        .put_model(&lease_a, &record("a.json", b"{\"by\": \"stale a\"}".to_vec()))
        .await;
    let stale_delete = a.delete_model(&lease_a, "a.json").await;
    let stale_cursor = a.advance_cursor(&lease_a, None, &cursor(1)).await;
    let renewal = a.renew_lease(&lease_a, ttl).await;
    a.release_lease(&lease_a, true).await.unwrap();
    b.put_model(&lease_b, &record("a.json", b"{\"by\": \"b\"}".to_vec()))
        .await
        .unwrap();

    // Assert
    assert!(
        matches!(refused, Err(StoreError::LeaseHeld { ref owner, until, .. }) if *owner == owner_a && until == lease_a.expires_at),
        "{refused:?}"
    );
    assert!(lease_b.previous_unfinished, "a never released its lease");
    for result in [stale_put, stale_delete.map(|_| ()), stale_cursor, renewal.map(|_| ())] {
        assert!(matches!(result, Err(StoreError::LeaseLost(_))), "{result:?}");
    }
    let model = b.get_model(&r, "a.json").await.unwrap().unwrap();
    assert_eq!(model.content.as_ref(), b"{\"by\": \"b\"}");
    assert_eq!(b.repo(&r).await.unwrap().unwrap().cursor, None);
}

#[tokio::test]
async fn a_released_lease_is_free_at_once_and_remembers_an_unfinished_sync() {
    let (hub, _) = hub_with_clock(HubOptions::default());
    let r = repo("DATA/models");
    let ttl = std::time::Duration::from_secs(60);

    let first = hub.acquire_lease(&r, &LeaseOwner::generate("a"), ttl).await.unwrap();
    hub.release_lease(&first, false).await.unwrap();
    let second = hub.acquire_lease(&r, &LeaseOwner::generate("b"), ttl).await.unwrap();
    hub.release_lease(&second, true).await.unwrap();
    let third = hub.acquire_lease(&r, &LeaseOwner::generate("c"), ttl).await.unwrap();

    assert!(!first.previous_unfinished);
    assert!(second.previous_unfinished);
    assert!(!third.previous_unfinished);
}
