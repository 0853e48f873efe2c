//! A Bitbucket outage on the local queue: the workers' own processing (`serve::worker::process`)
//! over an SQLite hub whose clock the test moves, with the configuration `hubsync serve` runs by
//! default.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use hubsync_cli::serve::ServeArgs;
use hubsync_cli::serve::worker::{LocalWorker, WorkerConfig, process};
use hubsync_core::ids::RepoRef;
use hubsync_core::ports::{ModelStore, PushQueue, RepoRegistry};
use hubsync_core::secrets::StaticSecret;
use hubsync_core::sync::{SyncOptions, SyncWorker};
use hubsync_core::testing::fixtures::{model, push, t0};
use hubsync_core::testing::memory::MemoryGitHost;
use hubsync_sqlite::{HubOptions, ManualClock, SqliteHub};

use crate::{SharedHost, secret};

const MINUTE: Duration = Duration::from_secs(60);

#[tokio::test]
async fn a_ninety_minute_outage_dead_letters_nothing_and_the_hub_then_reaches_the_head() {
    let clock = ManualClock::new(t0());
    let args = ServeArgs::default();
    let hub = SqliteHub::in_memory_with(HubOptions {
        max_attempts: args.max_attempts,
        clock: Arc::new(clock.clone()),
        ..HubOptions::default()
    })
    .unwrap();
    let host = SharedHost::default();
    let worker: LocalWorker<Arc<MemoryGitHost>> = SyncWorker {
        store: hub.clone(),
        secrets: Some(StaticSecret::new(secret())),
        connector: host.clone(),
        options: SyncOptions::default(),
    };
    let config = WorkerConfig::from(&args);
    let repo = RepoRef::parse("DATA/models").unwrap();
    hub.register(&repo).await.unwrap();
    // Pushed during the outage, at these minutes; each commit adds one model.
    let pushes = [0u32, 20, 50, 80];
    let outage_ends = 90 * MINUTE;
    host.set_unavailable(true);

    let mut files = BTreeMap::new();
    let mut head = None;
    let mut now = Duration::ZERO;
    while now <= 6 * 60 * MINUTE {
        if let Some(n) = pushes.iter().position(|&at| at * MINUTE == now) {
            files.insert(format!("m{n}.json"), model(&format!("M{n}")));
            let commit = host.commit(&repo, files.clone());
            hub.enqueue(&push(&repo, &commit)).await.unwrap();
            head = Some(commit);
        }
        if now == outage_ends {
            host.set_unavailable(false);
        }
        while let Some(message) = hub.receive(config.visibility).await.unwrap() {
            process(&hub, &worker, &config, message).await;
        }
        if now > outage_ends && hub.queue_stats().await.unwrap().is_drained() {
            break;
        }
        clock.advance(MINUTE);
        now += MINUTE;
    }

    let dead: Vec<String> = hub
        .dead_letters()
        .await
        .unwrap()
        .into_iter()
        .map(|d| format!("{} after {} attempts: {}", d.delivery_id, d.attempts, d.reason))
        .collect();
    assert!(dead.is_empty(), "dead-lettered during the outage: {dead:?}");
    assert!(hub.queue_stats().await.unwrap().is_drained(), "the queue drained");
    let record = hub.repo(&repo).await.unwrap().unwrap();
    assert_eq!(record.cursor.map(|c| c.commit), head, "the hub reached the branch head");
    assert_eq!(hub.list_models(&repo).await.unwrap().len(), pushes.len());
}
