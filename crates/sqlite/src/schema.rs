//! The schema and its migrations. `schema_version` holds the number of migrations applied; opening
//! a database applies the missing ones in one transaction, and refuses a database written by a
//! newer hubsync rather than guessing.
//!
//! Times the queue compares are integers (milliseconds since the epoch); times only shown are
//! RFC 3339 text. Structured values the domain owns (cursor, last error, model status) are stored as
//! their serde JSON, so the store and the domain cannot drift apart column by column.

use rusqlite::{Connection, OptionalExtension, TransactionBehavior};

use crate::SqliteError;

/// Migration `i` brings the schema from version `i` to `i + 1`. Never edit one that shipped: add
/// another.
const MIGRATIONS: &[&str] = &[
    // 1: registry, models, queue, deduplication, dead letters.
    r#"
    CREATE TABLE repos (
        repo          TEXT PRIMARY KEY NOT NULL,   -- PROJECT/slug
        project       TEXT NOT NULL,
        slug          TEXT NOT NULL,
        registered_at TEXT NOT NULL,
        cursor_commit TEXT,                        -- copy of cursor.commit, for the conditional update
        cursor        TEXT,                        -- JSON SyncCursor
        last_error    TEXT                         -- JSON LastError
    );
    CREATE UNIQUE INDEX repos_by_name ON repos (project, slug);

    CREATE TABLE models (
        repo           TEXT NOT NULL,
        path           TEXT NOT NULL,
        commit_id      TEXT NOT NULL,
        synced_at      TEXT NOT NULL,
        status         TEXT NOT NULL,              -- JSON ModelStatus
        content_sha256 TEXT NOT NULL,
        size           INTEGER NOT NULL,           -- uncompressed bytes
        encoding       TEXT NOT NULL,              -- 'zstd' (or 'zlib', written before)
        content        BLOB NOT NULL,              -- last, so listings never read it
        PRIMARY KEY (repo, path)
    );

    CREATE TABLE queue (
        seq           INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: the FIFO order
        delivery_id   TEXT NOT NULL,
        message_group TEXT NOT NULL,
        body          TEXT NOT NULL,               -- JSON PushMessage
        enqueued_at   INTEGER NOT NULL,
        visible_at    INTEGER NOT NULL,            -- backoff end, or lease end while received
        receipt       TEXT UNIQUE,                 -- set while leased
        attempts      INTEGER NOT NULL DEFAULT 0,  -- times received
        last_error    TEXT
    );
    CREATE INDEX queue_by_group ON queue (message_group, seq);

    CREATE TABLE dedup (
        delivery_id TEXT PRIMARY KEY NOT NULL,
        seen_at     INTEGER NOT NULL
    );
    CREATE INDEX dedup_by_age ON dedup (seen_at);

    CREATE TABLE dead_letters (
        id            INTEGER PRIMARY KEY AUTOINCREMENT,
        delivery_id   TEXT NOT NULL,
        message_group TEXT NOT NULL,
        body          TEXT NOT NULL,
        enqueued_at   INTEGER NOT NULL,
        dead_at       INTEGER NOT NULL,
        attempts      INTEGER NOT NULL,
        reason        TEXT NOT NULL
    );
    "#,
    // 2: one sync lease per repository; model writes are fenced on it.
    r#"
    CREATE TABLE sync_leases (
        repo       TEXT PRIMARY KEY NOT NULL,
        owner      TEXT,                       -- NULL once released
        expires_at INTEGER NOT NULL,           -- milliseconds since the epoch
        unfinished INTEGER NOT NULL DEFAULT 0  -- the last holder released it without finishing
    );
    "#,
    // 3: the delivery log (`hubsync deliveries`); entries older than the retention are purged.
    r#"
    CREATE TABLE deliveries (
        id          TEXT PRIMARY KEY NOT NULL,
        received_at INTEGER NOT NULL,            -- milliseconds since the epoch
        repo        TEXT,                        -- PROJECT/slug; NULL when the delivery names none
        entry       TEXT NOT NULL,               -- JSON DeliveryEntry as first recorded
        receipts    INTEGER NOT NULL DEFAULT 0,  -- times the webhook recorded it
        outcome     TEXT,                        -- JSON DeliveryOutcome of the latest attempt
        failed      INTEGER NOT NULL DEFAULT 0   -- the outcome is a failure
    );
    CREATE INDEX deliveries_by_time ON deliveries (received_at, id);
    CREATE INDEX deliveries_by_repo ON deliveries (repo, received_at, id);
    "#,
    // 4: how far a sync cut into slices got (the cursor keeps what `.hubignore` said in its JSON).
    r#"
    ALTER TABLE repos ADD COLUMN resume TEXT;     -- JSON SyncResume, NULL once the cursor moves
    "#,
];

pub(crate) const CURRENT_VERSION: i64 = MIGRATIONS.len() as i64;

pub(crate) fn version(conn: &Connection) -> Result<i64, SqliteError> {
    let exists: Option<i64> = conn
        .query_row(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'",
            [],
            |row| row.get(0),
        )
        .optional()?;
    if exists.is_none() {
        return Ok(0);
    }
    Ok(conn
        .query_row("SELECT version FROM schema_version", [], |row| row.get(0))
        .optional()?
        .unwrap_or(0))
}

pub(crate) fn migrate(conn: &mut Connection) -> Result<(), SqliteError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute_batch("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")?;
    let found = version(&tx)?;
    if found > CURRENT_VERSION {
        return Err(SqliteError::SchemaTooNew {
            found,
            supported: CURRENT_VERSION,
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        tracing::debug!(version = i + 1, "applying schema migration");
        tx.execute_batch(sql)?;
    }
    tx.execute("DELETE FROM schema_version", [])?;
    tx.execute("INSERT INTO schema_version (version) VALUES (?1)", [CURRENT_VERSION])?;
    tx.commit()?;
    Ok(())
}
