//! The sync function's batch contract, with in-memory ports: only failed messages come back, and
//! within one repository (one FIFO message group) everything after a failure comes back too,
//! unprocessed, so pushes are never applied out of order.

use std::collections::BTreeMap;
use std::sync::Arc;

use aws_lambda_events::event::sqs::SqsEvent;
use hubsync_core::ids::{CommitId, RepoRef};
use hubsync_core::ports::{ModelStore, RepoRegistry};
use hubsync_core::push::PushMessage;
use hubsync_core::secrets::StaticSecret;
use hubsync_core::sync::{SyncOptions, SyncWorker};
use hubsync_core::testing::fixtures::{delivery, hub_secret, model, push};
use hubsync_core::testing::memory::{MemoryGitHost, MemoryStore};
use serde_json::json;

fn record(id: &str, repo: &RepoRef, to: &CommitId, body_override: Option<&str>) -> serde_json::Value {
    let body = body_override.map(str::to_owned).unwrap_or_else(|| {
        let push = PushMessage {
            delivery_id: delivery(&format!("d-{id}")),
            ..push(repo, to)
        };
        serde_json::to_string(&push).unwrap()
    });
    json!({"messageId": id, "receiptHandle": format!("rh-{id}"), "body": body, "md5OfBody": "",
           "attributes": {"MessageGroupId": repo.message_group(), "ApproximateReceiveCount": "1"},
           "messageAttributes": {}, "eventSource": "aws:sqs", "eventSourceARN": "arn:aws:sqs:eu-west-1:1:q.fifo", "awsRegion": "eu-west-1"})
}

fn worker(host: &Arc<MemoryGitHost>) -> SyncWorker<MemoryStore, StaticSecret, Arc<MemoryGitHost>> {
    SyncWorker {
        store: MemoryStore::default(),
        secrets: StaticSecret(hub_secret("w")),
        connector: host.clone(),
        options: SyncOptions::default(),
    }
}

#[tokio::test]
async fn a_failure_holds_back_the_rest_of_its_repository_but_not_other_repositories() {
    let host = Arc::new(MemoryGitHost::default());
    let (a, b) = (RepoRef::parse("P/a").unwrap(), RepoRef::parse("P/b").unwrap());
    let a_head = host.commit(&a, BTreeMap::from([("m.json".to_owned(), model("A"))]));
    let b_head = host.commit(&b, BTreeMap::from([("m.json".to_owned(), model("B"))]));
    let w = worker(&host);
    w.store.register(&a).await.unwrap();
    w.store.register(&b).await.unwrap();
    let event: SqsEvent = serde_json::from_value(json!({"Records": [
        record("a1", &a, &a_head, Some("not a push")),
        record("b1", &b, &b_head, None),
        record("a2", &a, &a_head, None),
    ]}))
    .unwrap();

    let response = hubsync_sync_function::process_batch(&w, event).await;

    let failed: Vec<&str> = response
        .response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    assert_eq!(failed, ["a1", "a2"], "a2 is held back behind a1; b1 succeeded");
    let delays: Vec<_> = response
        .retries
        .iter()
        .map(|r| (r.receipt_handle.as_str(), r.delay))
        .collect();
    let unreadable = hubsync_sync_function::RETRY_POLICY.permanent;
    assert_eq!(
        delays,
        [("rh-a1", unreadable), ("rh-a2", unreadable)],
        "the held-back push waits as long as the failed one"
    );
    assert_eq!(w.store.list_models(&b).await.unwrap().len(), 1);
    assert!(
        w.store.list_models(&a).await.unwrap().is_empty(),
        "a2 was not processed out of order"
    );
}

#[tokio::test]
async fn a_clean_batch_reports_no_failures() {
    let host = Arc::new(MemoryGitHost::default());
    let a = RepoRef::parse("P/a").unwrap();
    let head = host.commit(&a, BTreeMap::from([("m.json".to_owned(), model("A"))]));
    let w = worker(&host);
    w.store.register(&a).await.unwrap();
    let event: SqsEvent =
        serde_json::from_value(json!({"Records": [record("a1", &a, &head, None), record("a2", &a, &head, None)]}))
            .unwrap();
    let response = hubsync_sync_function::process_batch(&w, event).await;
    assert!(response.response.batch_item_failures.is_empty() && response.retries.is_empty());
    assert_eq!(w.store.repo(&a).await.unwrap().unwrap().cursor.unwrap().commit, head);
}
