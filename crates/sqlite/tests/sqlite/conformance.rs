//! The store contract every `RepoRegistry` + `ModelStore` passes
//! (`hubsync_core::testing::conformance`), on a fresh in-memory SQLite database per case.

use hubsync_sqlite::SqliteHub;

hubsync_core::store_conformance!(|| async { SqliteHub::in_memory().expect("an in-memory database opens") });
