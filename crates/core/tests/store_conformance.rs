//! The store contract (`hubsync_core::testing::conformance`) on the in-memory reference store, so
//! the suite itself is known to pass on the behaviour it describes.

use hubsync_core::testing::memory::MemoryStore;

hubsync_core::store_conformance!(|| async { MemoryStore::default() });
