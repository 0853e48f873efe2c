//! The SQLite adapters against the ports' contract: the registry and model store behave like
//! `hubsync_core::memory::MemoryStore`, and the queue like an SQS FIFO queue with a dead-letter
//! queue. Time is a `ManualClock`, so leases, backoffs and the deduplication window are tested
//! without sleeping.

mod queue;
mod store;

use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use hubsync_core::ids::{CommitId, DeliveryId, RepoRef};
use hubsync_core::push::{Actor, Provider, PushMessage, RefChange, RefChangeType};
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

pub fn repo(name: &str) -> RepoRef {
    RepoRef::parse(name).unwrap()
}

pub fn commit(n: u64) -> CommitId {
    CommitId::parse(&format!("{n:040x}")).unwrap()
}

pub fn push(repo_name: &str, delivery: &str) -> PushMessage {
    PushMessage {
        provider: Provider::BitbucketDataCenter,
        delivery_id: DeliveryId::parse(delivery).unwrap(),
        repo: repo(repo_name),
        repository_id: Some(7),
        changes: vec![RefChange {
            ref_id: "refs/heads/main".into(),
            change_type: RefChangeType::Update,
            from_hash: commit(1),
            to_hash: commit(2),
        }],
        actor: Actor {
            name: Some("jdoe".into()),
            display_name: Some("Jane Doe".into()),
            email_address: None,
        },
        received_at: t0(),
    }
}
