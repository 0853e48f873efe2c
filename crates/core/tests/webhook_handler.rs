//! The webhook endpoint's answers and queue effects, with in-memory ports.

use http::{HeaderMap, HeaderValue, Method, StatusCode};
use hubsync_core::memory::MemoryQueue;
use hubsync_core::ports::{SecretError, SecretSource};
use hubsync_core::secrets::{HubSecret, StaticSecret};
use hubsync_core::signature::sign;
use hubsync_core::webhook::{WebhookHandler, WebhookRequest};
use secrecy::SecretString;

const SECRET: &str = "test-webhook-secret";
const BODY: &str = r#"{"eventKey":"repo:refs_changed","repository":{"slug":"models","id":1,"project":{"key":"DATA"}},"changes":[{"ref":{"id":"refs/heads/main","displayId":"main","type":"BRANCH"},"refId":"refs/heads/main","fromHash":"ecddabb624f6f5ba43816f5926e580a5f680a932","toHash":"178864a7d521b6f5e720b386b2c2b0ef8563e0dc","type":"UPDATE"}]}"#;

fn handler() -> WebhookHandler<MemoryQueue, StaticSecret> {
    let secret = HubSecret::from_json(&format!(
        r#"{{"baseUrl":"http://127.0.0.1:9","accessToken":"t","webhookSecret":"{SECRET}","previousWebhookSecrets":["older"]}}"#
    ))
    .unwrap();
    WebhookHandler::new(MemoryQueue::default(), StaticSecret(secret))
}

fn headers(event: &str, signature: Option<String>, request_id: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("x-event-key", HeaderValue::from_str(event).unwrap());
    h.insert("x-request-id", HeaderValue::from_str(request_id).unwrap());
    if let Some(s) = signature {
        h.insert("x-hub-signature", HeaderValue::from_str(&s).unwrap());
    }
    h
}

fn signed(body: &[u8], key: &str) -> Option<String> {
    Some(sign(body, &SecretString::from(key.to_owned())))
}

async fn post(h: &WebhookHandler<MemoryQueue, StaticSecret>, headers: &HeaderMap, body: &[u8]) -> StatusCode {
    h.handle(WebhookRequest {
        method: &Method::POST,
        path: "/prod/gateway/public/sync",
        headers,
        body,
    })
    .await
    .status
}

#[tokio::test]
async fn a_signed_push_is_queued_once_even_when_redelivered() {
    let h = handler();
    let hd = headers("repo:refs_changed", signed(BODY.as_bytes(), SECRET), "req-1");
    assert_eq!(post(&h, &hd, BODY.as_bytes()).await, StatusCode::ACCEPTED);
    assert_eq!(post(&h, &hd, BODY.as_bytes()).await, StatusCode::ACCEPTED);
    let queued = h.queue().messages();
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0].delivery_id.as_str(), "req-1");
    assert_eq!(queued[0].repo.to_string(), "DATA/models");
}

#[tokio::test]
async fn wrong_missing_or_sha1_signatures_get_401_and_queue_nothing() {
    let h = handler();
    for sig in [
        None,
        signed(BODY.as_bytes(), "wrong"),
        Some("sha1=abcdef".into()),
        Some("sha256=zz".into()),
    ] {
        let hd = headers("repo:refs_changed", sig, "req-2");
        assert_eq!(post(&h, &hd, BODY.as_bytes()).await, StatusCode::UNAUTHORIZED);
    }
    assert!(h.queue().messages().is_empty());
}

#[tokio::test]
async fn a_previous_secret_is_still_accepted() {
    let h = handler();
    let hd = headers("repo:refs_changed", signed(BODY.as_bytes(), "older"), "req-3");
    assert_eq!(post(&h, &hd, BODY.as_bytes()).await, StatusCode::ACCEPTED);
}

#[tokio::test]
async fn pings_answer_200_unless_their_signature_is_wrong() {
    let h = handler();
    let body = br#"{"test": true}"#;
    assert_eq!(
        post(&h, &headers("diagnostics:ping", None, "p1"), body).await,
        StatusCode::OK
    );
    assert_eq!(
        post(&h, &headers("diagnostics:ping", signed(body, SECRET), "p2"), body).await,
        StatusCode::OK
    );
    assert_eq!(
        post(&h, &headers("diagnostics:ping", signed(body, "nope"), "p3"), body).await,
        StatusCode::UNAUTHORIZED
    );
    assert!(h.queue().messages().is_empty());
}

#[tokio::test]
async fn other_events_are_acknowledged_and_ignored() {
    let h = handler();
    let body = br#"{"eventKey":"pr:opened"}"#;
    let hd = headers("pr:opened", signed(body, SECRET), "o1");
    assert_eq!(post(&h, &hd, body).await, StatusCode::ACCEPTED);
    assert!(h.queue().messages().is_empty());
}

#[tokio::test]
async fn bad_payloads_sizes_methods_and_paths_are_refused() {
    let h = handler();
    let bad = br#"{"changes":[]}"#;
    assert_eq!(
        post(&h, &headers("repo:refs_changed", signed(bad, SECRET), "b1"), bad).await,
        StatusCode::BAD_REQUEST
    );
    let big = vec![b' '; 1024 * 1024 + 1];
    assert_eq!(
        post(&h, &headers("repo:refs_changed", signed(&big, SECRET), "b2"), &big).await,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    let hd = headers("repo:refs_changed", signed(BODY.as_bytes(), SECRET), "b3");
    let get = h
        .handle(WebhookRequest {
            method: &Method::GET,
            path: "/gateway/public/sync",
            headers: &hd,
            body: b"",
        })
        .await;
    assert_eq!(get.status, StatusCode::METHOD_NOT_ALLOWED);
    let other = h
        .handle(WebhookRequest {
            method: &Method::POST,
            path: "/elsewhere",
            headers: &hd,
            body: BODY.as_bytes(),
        })
        .await;
    assert_eq!(other.status, StatusCode::NOT_FOUND);
    assert!(h.queue().messages().is_empty());
}

#[tokio::test]
async fn an_unavailable_queue_gives_503() {
    let h = handler();
    h.queue().unavailable.store(true, std::sync::atomic::Ordering::SeqCst);
    let hd = headers("repo:refs_changed", signed(BODY.as_bytes(), SECRET), "q1");
    assert_eq!(post(&h, &hd, BODY.as_bytes()).await, StatusCode::SERVICE_UNAVAILABLE);
}

struct NoSecret;
impl SecretSource for NoSecret {
    async fn hub_secret(&self) -> Result<HubSecret, SecretError> {
        Err(SecretError::Missing("HUB_SECRET_ID is not set".into()))
    }
}

#[tokio::test]
async fn without_a_secret_every_request_is_refused() {
    let h = WebhookHandler::new(MemoryQueue::default(), NoSecret);
    let body = br#"{"test": true}"#;
    let hd = headers("diagnostics:ping", None, "n1");
    let r = h
        .handle(WebhookRequest {
            method: &Method::POST,
            path: "/gateway/public/sync",
            headers: &hd,
            body,
        })
        .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(h.queue().messages().is_empty());
}
