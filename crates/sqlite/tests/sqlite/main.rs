//! The SQLite adapters against the ports' contract: the registry and model store pass the store
//! conformance suite (`hubsync_core::testing::conformance`) like every other store, and the
//! queue behaves like an SQS FIFO queue with a dead-letter queue. Time is a `ManualClock`, so
//! leases, backoffs and the deduplication window are tested without sleeping.

mod conformance;
mod queue;
mod store;

use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use hubsync_core::push::PushMessage;
use hubsync_core::testing::fixtures;
pub use hubsync_core::testing::fixtures::{commit, repo};
use hubsync_sqlite::{HubOptions, ManualClock, SqliteHub};

pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 3, 1, 12, 0, 0).unwrap()
}

/// A hub on a private in-memory database whose time moves only when the test says so.
pub fn hub_with_clock(options: HubOptions) -> (SqliteHub, ManualClock) {
    let clock = ManualClock::new(t0());
    let hub = SqliteHub::in_memory_with(HubOptions {
        clock: Arc::new(clock.clone()),
        ..options
    })
    .unwrap();
    (hub, clock)
}

pub fn open_with_clock(path: &Path, clock: &ManualClock, options: HubOptions) -> SqliteHub {
    SqliteHub::open_with(
        path,
        HubOptions {
            clock: Arc::new(clock.clone()),
            ..options
        },
    )
    .unwrap()
}

/// A queued push of `repo_name`'s default branch (commit 2) with delivery id `delivery`,
/// received at [`t0`].
pub fn push(repo_name: &str, delivery: &str) -> PushMessage {
    PushMessage {
        delivery_id: fixtures::delivery(delivery),
        received_at: t0(),
        ..fixtures::push(&repo(repo_name), &commit(2))
    }
}
