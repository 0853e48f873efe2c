//! One batch: only pushes that must come back are reported failed, each with its delay. A failed
//! sync carries its repository's retry and covers the later pushes of that repository; other
//! repositories are synced regardless.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::event::sqs::SqsEvent;
use hubsync_core::consumer::ConsumerPolicy;
use hubsync_core::ids::RepoRef;
use hubsync_core::ports::{GitHostErrorKind, ModelStore, RepoRegistry};
use hubsync_core::testing::fixtures::model;
use hubsync_core::testing::memory::MemoryGitHost;
use hubsync_sync_function::{BatchResult, process_batch};
use serde_json::json;

use super::{push_body, record, worker};

fn failed(result: &BatchResult) -> Vec<(&str, Duration)> {
    let reported: Vec<&str> = result
        .response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    let retries: Vec<&str> = result.retries.iter().map(|r| r.message_id.as_str()).collect();
    assert_eq!(reported, retries, "every reported failure has its retry scheduled");
    result
        .retries
        .iter()
        .map(|r| (r.receipt_handle.as_str(), r.delay))
        .collect()
}

fn event(records: Vec<serde_json::Value>) -> SqsEvent {
    serde_json::from_value(json!({ "Records": records })).unwrap()
}

#[tokio::test]
async fn a_failed_sync_covers_the_later_pushes_of_its_repository_but_not_other_repositories() {
    let host = Arc::new(MemoryGitHost::default());
    let (a, b) = (RepoRef::parse("P/a").unwrap(), RepoRef::parse("P/b").unwrap());
    let a_head = host.commit(&a, BTreeMap::from([("m.json".to_owned(), model("A"))]));
    let b_head = host.commit(&b, BTreeMap::from([("m.json".to_owned(), model("B"))]));
    // Only repository a fails: its head's tree is gone (a permanent failure).
    host.forget(&a_head);
    let w = worker(&host);
    w.store.register(&a).await.unwrap();
    w.store.register(&b).await.unwrap();
    let (ga, gb) = (a.message_group(), b.message_group());

    let result = process_batch(
        &w,
        event(vec![
            record("a1", &ga, &push_body("a1", &a, &a_head), 2),
            record("b1", &gb, &push_body("b1", &b, &b_head), 1),
            record("a2", &ga, &push_body("a2", &a, &a_head), 1),
            record("a3", &ga, &push_body("a3", &a, &a_head), 1),
        ]),
    )
    .await;

    let permanent = ConsumerPolicy::DEFAULT.retry.delay(false, 2);
    assert_eq!(
        failed(&result),
        [("rh-a1", permanent)],
        "a2 and a3 are covered by a1's retry and deleted; b1 succeeded"
    );
    assert_eq!(w.store.list_models(&b).await.unwrap().len(), 1);
    assert!(w.store.list_models(&a).await.unwrap().is_empty());
}

#[tokio::test]
async fn an_unreadable_message_is_dead_lettered_and_the_pushes_after_it_are_still_synced() {
    let host = Arc::new(MemoryGitHost::default());
    let a = RepoRef::parse("P/a").unwrap();
    let head = host.commit(&a, BTreeMap::from([("m.json".to_owned(), model("A"))]));
    let w = worker(&host);
    w.store.register(&a).await.unwrap();
    let group = a.message_group();

    let result = process_batch(
        &w,
        event(vec![
            record("a1", &group, "not a push", 1),
            record("a2", &group, &push_body("a2", &a, &head), 1),
        ]),
    )
    .await;

    assert_eq!(
        failed(&result),
        [("rh-a1", Duration::ZERO)],
        "visible at once, so the redrive policy moves it to the dead-letter queue"
    );
    assert_eq!(w.store.repo(&a).await.unwrap().unwrap().cursor.unwrap().commit, head);
}

#[tokio::test]
async fn a_push_failing_its_last_receive_comes_back_at_once_to_be_dead_lettered() {
    let host = Arc::new(MemoryGitHost::default());
    let a = RepoRef::parse("P/a").unwrap();
    let head = host.commit(&a, BTreeMap::new());
    let w = worker(&host);
    w.store.register(&a).await.unwrap();
    host.fail_next(GitHostErrorKind::Server);
    let last = ConsumerPolicy::DEFAULT.max_attempts;

    let result = process_batch(
        &w,
        event(vec![record(
            "a1",
            &a.message_group(),
            &push_body("a1", &a, &head),
            last,
        )]),
    )
    .await;

    assert_eq!(failed(&result), [("rh-a1", Duration::ZERO)]);
}

#[tokio::test]
async fn a_clean_batch_reports_no_failures() {
    let host = Arc::new(MemoryGitHost::default());
    let a = RepoRef::parse("P/a").unwrap();
    let head = host.commit(&a, BTreeMap::from([("m.json".to_owned(), model("A"))]));
    let w = worker(&host);
    w.store.register(&a).await.unwrap();
    let group = a.message_group();

    let result = process_batch(
        &w,
        event(vec![
            record("a1", &group, &push_body("a1", &a, &head), 1),
            record("a2", &group, &push_body("a2", &a, &head), 1),
        ]),
    )
    .await;

    assert!(failed(&result).is_empty());
    assert_eq!(w.store.repo(&a).await.unwrap().unwrap().cursor.unwrap().commit, head);
}
