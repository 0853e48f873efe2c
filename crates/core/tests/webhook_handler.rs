//! The webhook endpoint's decision table (see `hubsync_core::webhook`), tested once, here, with
//! in-memory ports: each row's answer, its body, and what reached the queue. The Lambda and
//! `hubsync serve` tests check only what their translation adds (event shapes, raw bodies,
//! streamed bodies, headers, their adapters' failures).

use http::{HeaderMap, HeaderValue, Method, StatusCode};
use hubsync_core::ports::{SecretError, SecretSource};
use hubsync_core::push::{RefChange, RefChangeType};
use hubsync_core::secrets::{HubSecret, StaticSecret};
use hubsync_core::signature::sign;
use hubsync_core::testing::fixtures::{commit, hub_secret_json, refs_changed, refs_changed_with, repo};
use hubsync_core::testing::memory::MemoryQueue;
use hubsync_core::webhook::{MAX_BODY_BYTES, WebhookHandler, WebhookRequest, WebhookResponse};
use secrecy::SecretString;

const SECRET: &str = "test-webhook-secret";
const PATH: &str = "/prod/gateway/public/sync";

fn handler() -> WebhookHandler<MemoryQueue, StaticSecret> {
    let secret = HubSecret::from_json(&hub_secret_json(SECRET, &["older"])).unwrap();
    WebhookHandler::new(MemoryQueue::default(), StaticSecret::new(secret))
}

fn push_body() -> Vec<u8> {
    refs_changed(&repo("DATA/models"), &commit(2))
}

fn headers(event: &str, signature: Option<String>, request_id: Option<&str>) -> HeaderMap {
    let mut h = HeaderMap::new();
    if !event.is_empty() {
        h.insert("x-event-key", HeaderValue::from_str(event).unwrap());
    }
    if let Some(id) = request_id {
        h.insert("x-request-id", HeaderValue::from_str(id).unwrap());
    }
    if let Some(s) = signature {
        h.insert("x-hub-signature", HeaderValue::from_str(&s).unwrap());
    }
    h
}

fn signed(body: &[u8], key: &str) -> Option<String> {
    Some(sign(body, &SecretString::from(key.to_owned())))
}

/// A POST of `body` to the endpoint, signed with `key` when there is one.
async fn post<Q, S>(
    h: &WebhookHandler<Q, S>,
    event: &str,
    key: Option<&str>,
    request_id: &str,
    body: &[u8],
) -> WebhookResponse
where
    Q: hubsync_core::ports::PushQueue,
    S: SecretSource,
{
    let hd = headers(event, key.and_then(|k| signed(body, k)), Some(request_id));
    request(h, &Method::POST, PATH, &hd, body).await
}

async fn request<Q, S>(
    h: &WebhookHandler<Q, S>,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> WebhookResponse
where
    Q: hubsync_core::ports::PushQueue,
    S: SecretSource,
{
    h.handle(WebhookRequest {
        method,
        path,
        headers,
        body,
    })
    .await
}

fn message(r: &WebhookResponse) -> String {
    r.json()["message"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn a_signed_push_is_queued_once_even_when_redelivered() {
    let h = handler();
    let body = push_body();

    let first = post(&h, "repo:refs_changed", Some(SECRET), "req-1", &body).await;
    let again = post(&h, "repo:refs_changed", Some(SECRET), "req-1", &body).await;

    assert_eq!(
        (first.status, &first.json()["status"]),
        (StatusCode::ACCEPTED, &"queued".into())
    );
    assert_eq!(
        (first.json()["deliveryId"].as_str(), first.json()["repository"].as_str()),
        (Some("req-1"), Some("DATA/models"))
    );
    assert_eq!(
        (again.status, &again.json()["status"]),
        (StatusCode::ACCEPTED, &"duplicate".into())
    );
    let queued = h.queue().messages();
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0].delivery_id.as_str(), "req-1");
    assert_eq!(queued[0].repo.to_string(), "DATA/models");
    assert_eq!(queued[0].repository_id, Some(1));
    assert_eq!(queued[0].actor.name.as_deref(), Some("jdoe"));
    assert_eq!(queued[0].changes[0].to_hash, commit(2));
}

#[tokio::test]
async fn a_push_without_a_request_id_is_deduplicated_on_its_body() {
    let h = handler();
    let body = push_body();
    let hd = headers("repo:refs_changed", signed(&body, SECRET), None);

    let first = request(&h, &Method::POST, PATH, &hd, &body).await;
    let again = request(&h, &Method::POST, PATH, &hd, &body).await;

    assert_eq!(
        (first.status, again.status),
        (StatusCode::ACCEPTED, StatusCode::ACCEPTED)
    );
    assert_eq!(again.json()["status"], "duplicate");
    assert_eq!(h.queue().messages().len(), 1);
}

#[tokio::test]
async fn branch_creation_deletion_and_tags_are_queued_for_the_sync_to_judge() {
    let h = handler();
    let r = repo("DATA/models");
    for (i, (ref_id, change_type)) in [
        ("refs/heads/feature/orders-v2", RefChangeType::Add),
        ("refs/heads/feature/orders-v2", RefChangeType::Delete),
        ("refs/tags/v1.0.0", RefChangeType::Add),
    ]
    .into_iter()
    .enumerate()
    {
        let change = RefChange {
            ref_id: ref_id.into(),
            change_type,
            from_hash: commit(0),
            to_hash: commit(7),
        };
        let body = refs_changed_with(&r, std::slice::from_ref(&change));

        let answer = post(&h, "repo:refs_changed", Some(SECRET), &format!("r{i}"), &body).await;

        assert_eq!(answer.status, StatusCode::ACCEPTED, "{ref_id}: {}", answer.body);
        assert_eq!(h.queue().messages()[i].changes, [change], "{ref_id}");
    }
}

#[tokio::test]
async fn wrong_missing_or_malformed_signatures_get_401_and_queue_nothing() {
    let h = handler();
    let body = push_body();
    let mut with_newline = body.clone();
    with_newline.push(b'\n');
    for (what, signature, sent) in [
        ("missing", None, &body),
        ("another key", signed(&body, "wrong"), &body),
        (
            "sha1",
            Some("sha1=0a4d55a8d778e5022fab701977c5d840bbc486d0".into()),
            &body,
        ),
        ("not hex", Some("sha256=zz".into()), &body),
        ("all zeros", Some(format!("sha256={}", "0".repeat(64))), &body),
        (
            "body changed by a trailing newline",
            signed(&body, SECRET),
            &with_newline,
        ),
    ] {
        let hd = headers("repo:refs_changed", signature, Some("req-2"));

        let answer = request(&h, &Method::POST, PATH, &hd, sent).await;

        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{what}");
        assert_eq!(answer.json()["error"], "invalid_signature", "{what}");
        assert!(
            message(&answer).contains("secret"),
            "{what}: the answer says what to check: {}",
            answer.body
        );
    }
    assert!(h.queue().messages().is_empty());
}

#[tokio::test]
async fn a_previous_secret_is_still_accepted() {
    let h = handler();
    let body = push_body();

    let answer = post(&h, "repo:refs_changed", Some("older"), "req-3", &body).await;

    assert_eq!(answer.status, StatusCode::ACCEPTED);
    assert_eq!(h.queue().messages().len(), 1);
}

#[tokio::test]
async fn pings_answer_200_unless_their_signature_is_wrong() {
    let h = handler();
    let body = br#"{"test": true}"#;

    let unsigned = post(&h, "diagnostics:ping", None, "p1", body).await;
    let signed = post(&h, "diagnostics:ping", Some(SECRET), "p2", body).await;
    let wrong = post(&h, "diagnostics:ping", Some("nope"), "p3", body).await;

    assert_eq!(
        (unsigned.status, &unsigned.json()["status"]),
        (StatusCode::OK, &"ok".into())
    );
    assert_eq!(
        (signed.status, &signed.json()["status"]),
        (StatusCode::OK, &"ok".into())
    );
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(h.queue().messages().is_empty());
}

#[tokio::test]
async fn other_events_are_acknowledged_and_ignored() {
    let h = handler();
    let body = br#"{"eventKey":"pr:opened"}"#;

    let answer = post(&h, "pr:opened", Some(SECRET), "o1", body).await;

    assert_eq!(
        (answer.status, &answer.json()["status"]),
        (StatusCode::ACCEPTED, &"ignored".into())
    );
    assert!(h.queue().messages().is_empty());
}

#[tokio::test]
async fn a_signed_request_without_an_event_key_gets_400() {
    let h = handler();
    let body = push_body();

    let answer = post(&h, "", Some(SECRET), "k1", &body).await;

    assert_eq!(
        (answer.status, &answer.json()["error"]),
        (StatusCode::BAD_REQUEST, &"missing_event_key".into())
    );
    assert!(h.queue().messages().is_empty());
}

#[tokio::test]
async fn invalid_json_or_missing_fields_get_400_saying_what_is_wrong() {
    let h = handler();
    for (body, says) in [
        (&b"{not json"[..], "not a repo:refs_changed payload"),
        (br#"{"repository":{"slug":"x","project":{"key":"P"}}}"#, "changes"),
        (
            br#"{"repository":{"slug":"x","project":{"key":"P"}},"changes":[]}"#,
            "no changes",
        ),
    ] {
        let answer = post(&h, "repo:refs_changed", Some(SECRET), "b1", body).await;

        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{says}");
        assert_eq!(answer.json()["error"], "invalid_payload");
        assert!(message(&answer).contains(says), "{says}: {}", answer.body);
    }
    assert!(h.queue().messages().is_empty());
}

#[tokio::test]
async fn a_body_over_one_mebibyte_gets_413_and_one_of_exactly_one_mebibyte_is_read() {
    let h = handler();
    let over = vec![b' '; MAX_BODY_BYTES + 1];
    let limit = vec![b' '; MAX_BODY_BYTES];

    let refused = post(&h, "repo:refs_changed", Some(SECRET), "b2", &over).await;
    let read = post(&h, "repo:refs_changed", Some(SECRET), "b3", &limit).await;

    assert_eq!(
        (refused.status, &refused.json()["error"]),
        (StatusCode::PAYLOAD_TOO_LARGE, &"payload_too_large".into())
    );
    assert_eq!(
        refused,
        WebhookResponse::payload_too_large(),
        "the answer adapters give when they stop reading early"
    );
    assert_eq!(
        read.status,
        StatusCode::BAD_REQUEST,
        "read, and refused as not a payload"
    );
    assert!(h.queue().messages().is_empty());
}

#[tokio::test]
async fn methods_other_than_post_get_405_with_allow() {
    let h = handler();
    let body = push_body();
    for method in [Method::GET, Method::PUT, Method::DELETE] {
        let hd = headers("repo:refs_changed", signed(&body, SECRET), Some("m1"));

        let answer = request(&h, &method, PATH, &hd, &body).await;

        assert_eq!(answer.status, StatusCode::METHOD_NOT_ALLOWED, "{method}");
        assert_eq!(answer.headers, [("allow", "POST")], "{method}");
    }
    assert!(h.queue().messages().is_empty());
}

#[tokio::test]
async fn the_endpoint_answers_behind_any_prefix_and_other_paths_get_404() {
    let h = handler();
    let body = push_body();
    let hd = headers("repo:refs_changed", signed(&body, SECRET), Some("x1"));

    let mut statuses = Vec::new();
    for path in [
        "/gateway/public/sync",
        "/prod/gateway/public/sync/",
        "/elsewhere",
        "/gateway/public/sync/more",
    ] {
        statuses.push(request(&h, &Method::POST, path, &hd, &body).await.status);
    }

    assert_eq!(
        statuses,
        [
            StatusCode::ACCEPTED,
            StatusCode::ACCEPTED,
            StatusCode::NOT_FOUND,
            StatusCode::NOT_FOUND
        ]
    );
    assert_eq!(h.queue().messages().len(), 1, "the same delivery, queued once");
}

#[tokio::test]
async fn an_unavailable_queue_gives_503() {
    let h = handler();
    h.queue().unavailable.store(true, std::sync::atomic::Ordering::SeqCst);
    let body = push_body();

    let answer = post(&h, "repo:refs_changed", Some(SECRET), "q1", &body).await;

    assert_eq!(
        (answer.status, &answer.json()["error"]),
        (StatusCode::SERVICE_UNAVAILABLE, &"queue_unavailable".into())
    );
}

struct NoSecret;
impl SecretSource for NoSecret {
    async fn hub_secret(&self) -> Result<std::sync::Arc<HubSecret>, SecretError> {
        Err(SecretError::Missing("HUB_SECRET_ID is not set".into()))
    }
}

#[tokio::test]
async fn without_a_secret_every_request_is_refused_with_503() {
    let h = WebhookHandler::new(MemoryQueue::default(), NoSecret);
    let body = push_body();

    let ping = post(&h, "diagnostics:ping", None, "n1", br#"{"test": true}"#).await;
    let push = post(&h, "repo:refs_changed", Some(SECRET), "n2", &body).await;

    for answer in [ping, push] {
        assert_eq!(
            (answer.status, &answer.json()["error"]),
            (StatusCode::SERVICE_UNAVAILABLE, &"secret_unavailable".into())
        );
    }
    assert!(h.queue().messages().is_empty());
}
