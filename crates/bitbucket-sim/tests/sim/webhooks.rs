//! Webhook deliveries: payload, headers, signature, and delivery over HTTP.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use hmac::{KeyInit, Mac};
use hubsync_bitbucket_sim::{SimConfig, USER_AGENT, ZERO_HASH};
use sha2::Sha256;
use tokio::sync::mpsc;

use crate::helpers::{TOKEN, spawn_sim, spawn_with};

fn hmac_hex(secret: &str, body: &[u8]) -> String {
    let mut mac = <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).expect("key");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// A receiver on a free port that hands every request it gets to the test.
async fn spawn_receiver() -> (String, mpsc::UnboundedReceiver<(HeaderMap, Bytes)>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let app =
        Router::new()
            .route(
                "/webhook",
                post(
                    |State(tx): State<Arc<mpsc::UnboundedSender<(HeaderMap, Bytes)>>>,
                     headers: HeaderMap,
                     body: Bytes| async move {
                        let _ = tx.send((headers, body));
                        (StatusCode::ACCEPTED, "queued")
                    },
                ),
            )
            .with_state(Arc::new(tx));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/webhook", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, rx)
}

#[tokio::test]
async fn refs_changed_is_signed_with_the_hmac_of_the_exact_body() {
    // Arrange
    let app = spawn_sim(1000, 1000).await;
    let repo = app.sim.create_repo("PROJ", "models").expect("repo");
    let push = repo
        .commit_files("main", [("a.hck.json", "{}")], "First")
        .expect("commit");

    // Act
    let delivery = app.sim.webhook(&repo, &push, Some("s3cret")).expect("delivery");

    // Assert
    let signature = delivery.header("X-Hub-Signature").expect("signed");
    assert_eq!(signature, format!("sha256={}", hmac_hex("s3cret", &delivery.body)));
    assert_ne!(signature, format!("sha256={}", hmac_hex("other", &delivery.body)));
    assert_eq!(delivery.header("X-Event-Key"), Some("repo:refs_changed"));
    assert_eq!(delivery.header("Content-Type"), Some("application/json; charset=utf-8"));
    assert!(
        delivery
            .header("User-Agent")
            .expect("agent")
            .starts_with("Atlassian HttpClient")
    );
    assert_eq!(delivery.header("X-Request-Id"), Some(delivery.delivery_id.as_str()));
    assert!(uuid::Uuid::parse_str(&delivery.delivery_id).is_ok());
}

#[tokio::test]
async fn refs_changed_payload_carries_actor_repository_changes_and_commits() {
    // Arrange
    let app = spawn_sim(1000, 1000).await;
    let repo = app.sim.create_repo("PROJ", "models").expect("repo");
    let first = repo.commit_files("main", [("a.json", "1")], "One").expect("commit");
    let second = repo.commit_files("main", [("a.json", "2")], "Two").expect("commit");
    let tag = repo.tag("v2", "main").expect("tag");

    // Act
    let delivery = app
        .sim
        .webhook(&repo, &second.clone().and(tag), None)
        .expect("delivery");

    // Assert
    let body = delivery.json().expect("json");
    assert!(delivery.header("X-Hub-Signature").is_none());
    assert_eq!(body["eventKey"], "repo:refs_changed");
    let date = body["date"].as_str().expect("date");
    assert!(
        chrono::DateTime::parse_from_str(date, "%Y-%m-%dT%H:%M:%S%z").is_ok(),
        "{date}"
    );
    assert!(date.ends_with("+0000"));
    assert_eq!(body["actor"]["name"], "admin");
    assert_eq!(body["actor"]["type"], "NORMAL");
    assert_eq!(body["repository"]["slug"], "models");
    assert_eq!(body["repository"]["id"], repo.id());
    assert_eq!(body["repository"]["project"]["key"], "PROJ");
    assert_eq!(body["repository"]["archived"], false);
    assert!(body["repository"]["hierarchyId"].is_string());
    assert_eq!(
        body["changes"],
        serde_json::json!([
            {
                "ref": {"id": "refs/heads/main", "displayId": "main", "type": "BRANCH"},
                "refId": "refs/heads/main",
                "fromHash": first.to_hash().expect("commit"),
                "toHash": second.to_hash().expect("commit"),
                "type": "UPDATE",
            },
            {
                "ref": {"id": "refs/tags/v2", "displayId": "v2", "type": "TAG"},
                "refId": "refs/tags/v2",
                "fromHash": ZERO_HASH,
                "toHash": second.to_hash().expect("commit"),
                "type": "ADD",
            }
        ])
    );
    assert_eq!(body["commits"][0]["id"], second.to_hash().expect("commit"));
    assert_eq!(body["commits"].as_array().expect("commits").len(), 1);
    assert_eq!(body["toCommit"]["id"], second.to_hash().expect("commit"));
    assert_eq!(body["toCommit"]["parents"][0]["message"], "One");
}

#[tokio::test]
async fn older_payloads_leave_out_commit_details() {
    let app = spawn_with(SimConfig {
        webhook_commit_details: false,
        ..SimConfig::with_token(TOKEN)
    })
    .await;
    let repo = app.sim.create_repo("PROJ", "models").expect("repo");
    let push = repo.commit_files("main", [("a", "1")], "One").expect("commit");

    let body = app
        .sim
        .webhook(&repo, &push, None)
        .expect("delivery")
        .json()
        .expect("json");

    assert!(body.get("commits").is_none());
    assert!(body.get("toCommit").is_none());
}

#[tokio::test]
async fn a_deleted_branch_webhook_has_no_to_commit() {
    let app = spawn_sim(1000, 1000).await;
    let repo = app.sim.create_repo("PROJ", "models").expect("repo");
    repo.commit_files("main", [("a", "1")], "One").expect("commit");
    repo.create_branch("gone", "main").expect("branch");
    let push = repo.delete_branch("gone").expect("deleted");

    let body = app
        .sim
        .webhook(&repo, &push, None)
        .expect("delivery")
        .json()
        .expect("json");

    assert_eq!(body["changes"][0]["type"], "DELETE");
    assert_eq!(body["changes"][0]["toHash"], ZERO_HASH);
    assert!(body.get("toCommit").is_none());
    assert_eq!(body["commits"], serde_json::json!([]));
}

#[tokio::test]
async fn delivery_posts_headers_and_body_and_redelivery_keeps_the_request_id() {
    // Arrange
    let (url, mut received) = spawn_receiver().await;
    let app = spawn_sim(1000, 1000).await;
    let repo = app.sim.create_repo("PROJ", "models").expect("repo");
    let push = repo.commit_files("main", [("a", "1")], "One").expect("commit");
    let delivery = app.sim.webhook(&repo, &push, Some("k")).expect("delivery");
    let other = app.sim.webhook(&repo, &push, Some("k")).expect("delivery");

    // Act
    let answer = delivery.send(&url).await.expect("delivered");
    let again = delivery.send(&url).await.expect("redelivered");
    other.send(&url).await.expect("delivered");

    // Assert
    assert_eq!(answer.status, 202);
    assert_eq!(answer.text(), "queued");
    assert_eq!(again.status, 202);
    let (headers, body) = received.recv().await.expect("first request");
    assert_eq!(body.as_ref(), delivery.body.as_slice());
    assert_eq!(headers["x-event-key"], "repo:refs_changed");
    assert_eq!(headers["user-agent"], USER_AGENT);
    assert_eq!(
        headers["x-hub-signature"].to_str().expect("ascii"),
        format!("sha256={}", hmac_hex("k", &body))
    );
    let (again_headers, _) = received.recv().await.expect("redelivery");
    assert_eq!(again_headers["x-request-id"], headers["x-request-id"]);
    let (other_headers, _) = received.recv().await.expect("another delivery");
    assert_ne!(other_headers["x-request-id"], headers["x-request-id"]);
}

#[tokio::test]
async fn ping_is_a_signed_test_event() {
    let app = spawn_sim(1000, 1000).await;

    let ping = app.sim.ping(Some("k"));

    assert_eq!(ping.header("X-Event-Key"), Some("diagnostics:ping"));
    assert_eq!(ping.json().expect("json"), serde_json::json!({"test": true}));
    assert_eq!(
        ping.header("X-Hub-Signature").expect("signed"),
        format!("sha256={}", hmac_hex("k", &ping.body))
    );
}
