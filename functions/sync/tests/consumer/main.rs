//! The sync function as an SQS consumer, with in-memory ports: what each batch reports back
//! (`batch`), and a Bitbucket outage ridden out on a simulated FIFO queue with its redrive policy
//! (`outage`).

mod batch;
mod outage;

use std::sync::Arc;

use hubsync_core::ids::{CommitId, RepoRef};
use hubsync_core::push::PushMessage;
use hubsync_core::secrets::StaticSecret;
use hubsync_core::sync::{SyncOptions, SyncWorker};
use hubsync_core::testing::fixtures::{delivery, hub_secret, push};
use hubsync_core::testing::memory::{MemoryGitHost, MemoryStore};
use serde_json::json;

type Worker = SyncWorker<MemoryStore, StaticSecret, Arc<MemoryGitHost>>;

/// The queued push of delivery `d-{id}` moving `repo`'s main branch to `to`.
fn push_body(id: &str, repo: &RepoRef, to: &CommitId) -> String {
    let push = PushMessage {
        delivery_id: delivery(&format!("d-{id}")),
        ..push(repo, to)
    };
    serde_json::to_string(&push).unwrap()
}

/// One SQS record as Lambda delivers it.
fn record(id: &str, group: &str, body: &str, receive_count: u32) -> serde_json::Value {
    json!({"messageId": id, "receiptHandle": format!("rh-{id}"), "body": body, "md5OfBody": "",
           "attributes": {"MessageGroupId": group, "ApproximateReceiveCount": receive_count.to_string()},
           "messageAttributes": {}, "eventSource": "aws:sqs", "eventSourceARN": "arn:aws:sqs:eu-west-1:1:q.fifo", "awsRegion": "eu-west-1"})
}

fn worker(host: &Arc<MemoryGitHost>) -> Worker {
    SyncWorker {
        store: MemoryStore::default(),
        secrets: StaticSecret::new(hub_secret("w")),
        connector: host.clone(),
        options: SyncOptions::default(),
    }
}
