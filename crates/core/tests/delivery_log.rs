//! What the webhook handler records in the delivery log (`hubsync_core::deliveries`): every
//! delivery that passed signature verification, with its verdict; nothing for a refused request;
//! and a log that cannot be written never costs a push.

use std::sync::Arc;

use http::{HeaderMap, HeaderValue, Method, StatusCode};
use hubsync_core::deliveries::{DeliveryEntry, DeliveryKind, DeliveryLog, DeliveryOutcome, DeliveryQuery, Verdict};
use hubsync_core::ids::DeliveryId;
use hubsync_core::ports::StoreError;
use hubsync_core::secrets::{HubSecret, StaticSecret};
use hubsync_core::signature::sign;
use hubsync_core::testing::fixtures::{commit, hub_secret_json, refs_changed, repo};
use hubsync_core::testing::memory::{MemoryQueue, MemoryStore};
use hubsync_core::webhook::{WebhookHandler, WebhookRequest, WebhookResponse};
use secrecy::SecretString;

const SECRET: &str = "test-webhook-secret";
const PATH: &str = "/gateway/public/sync";

fn handler<L: DeliveryLog>(log: L) -> WebhookHandler<MemoryQueue, StaticSecret, L> {
    let secret = HubSecret::from_json(&hub_secret_json(SECRET, &[])).unwrap();
    WebhookHandler::new(MemoryQueue::default(), StaticSecret::new(secret)).with_delivery_log(log)
}

async fn post<L: DeliveryLog>(
    h: &WebhookHandler<MemoryQueue, StaticSecret, L>,
    event: &str,
    key: &str,
    id: &str,
    body: &[u8],
) -> WebhookResponse {
    let mut headers = HeaderMap::new();
    headers.insert("x-event-key", HeaderValue::from_str(event).unwrap());
    headers.insert("x-request-id", HeaderValue::from_str(id).unwrap());
    let signature = sign(body, &SecretString::from(key.to_owned()));
    headers.insert("x-hub-signature", HeaderValue::from_str(&signature).unwrap());
    h.handle(WebhookRequest {
        method: &Method::POST,
        path: PATH,
        headers: &headers,
        body,
    })
    .await
}

/// A log whose every write fails.
struct BrokenLog;

impl DeliveryLog for BrokenLog {
    async fn record_delivery(&self, _: &DeliveryEntry) -> Result<(), StoreError> {
        Err(StoreError::Backend {
            message: "the table is throttled".into(),
            retryable: true,
            source: None,
        })
    }

    async fn record_outcome(&self, _: &DeliveryEntry, _: &DeliveryOutcome) -> Result<(), StoreError> {
        unreachable!("the webhook records no outcome")
    }

    async fn deliveries(&self, _: &DeliveryQuery) -> Result<Vec<DeliveryEntry>, StoreError> {
        Ok(Vec::new())
    }

    async fn delivery(&self, _: &DeliveryId) -> Result<Option<DeliveryEntry>, StoreError> {
        Ok(None)
    }
}

#[tokio::test]
async fn a_verified_push_is_recorded_as_queued_then_counted_as_a_duplicate() {
    let h = handler(Arc::new(MemoryStore::default()));
    let body = refs_changed(&repo("DATA/models"), &commit(2));

    post(&h, "repo:refs_changed", SECRET, "req-1", &body).await;
    let again = post(&h, "repo:refs_changed", SECRET, "req-1", &body).await;

    assert_eq!(again.json()["status"], "duplicate");
    let entry = h
        .delivery_log()
        .delivery(&DeliveryId::parse("req-1").unwrap())
        .await
        .unwrap()
        .expect("recorded");
    assert_eq!(
        (entry.kind, entry.verdict, entry.duplicates),
        (DeliveryKind::Webhook, Verdict::Queued, 1)
    );
    assert_eq!(entry.event_key, "repo:refs_changed");
    assert_eq!(entry.repo, Some(repo("DATA/models")));
    assert_eq!(entry.changes[0].to_hash, commit(2));
    assert_eq!(entry.outcome, None);
}

#[tokio::test]
async fn another_event_is_recorded_as_ignored_with_the_reason() {
    let h = handler(Arc::new(MemoryStore::default()));

    let answer = post(&h, "pr:opened", SECRET, "req-pr", b"{}").await;

    assert_eq!(answer.status, StatusCode::ACCEPTED);
    let entry = h
        .delivery_log()
        .delivery(&DeliveryId::parse("req-pr").unwrap())
        .await
        .unwrap()
        .expect("recorded");
    assert_eq!(entry.verdict, Verdict::Ignored);
    assert!(
        entry.reason.as_deref().is_some_and(|r| r.contains("pr:opened")),
        "{entry:?}"
    );
}

#[tokio::test]
async fn refused_requests_are_never_recorded() {
    let h = handler(Arc::new(MemoryStore::default()));
    let body = refs_changed(&repo("DATA/models"), &commit(2));

    let wrong = post(&h, "repo:refs_changed", "not-the-secret", "req-1", &body).await;
    let invalid = post(&h, "repo:refs_changed", SECRET, "req-2", b"{\"not\": \"a push\"}").await;

    assert_eq!(
        (wrong.status, invalid.status),
        (StatusCode::UNAUTHORIZED, StatusCode::BAD_REQUEST)
    );
    assert_eq!((wrong.verdict(), invalid.verdict()), ("rejected", "rejected"));
    let recorded = h.delivery_log().deliveries(&DeliveryQuery::default()).await.unwrap();
    assert!(recorded.is_empty(), "{recorded:?}");
}

#[tokio::test]
async fn a_log_that_cannot_be_written_still_queues_and_answers() {
    let h = handler(BrokenLog);
    let body = refs_changed(&repo("DATA/models"), &commit(2));

    let answer = post(&h, "repo:refs_changed", SECRET, "req-1", &body).await;

    assert_eq!((answer.status, answer.verdict()), (StatusCode::ACCEPTED, "queued"));
    assert_eq!(h.queue().messages().len(), 1);
}
