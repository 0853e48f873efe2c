//! What Bitbucket (and a load balancer) sees: `/health`, the webhook endpoint and its answers,
//! and that a stopped server accepts nothing.

use std::collections::BTreeMap;

use axum::body::Body;
use axum::extract::Request;
use axum::http::StatusCode;
use hubsync_cli::serve::http::router;
use hubsync_core::ports::{ModelStore, RepoRegistry};
use hubsync_core::secrets::StaticSecret;
use hubsync_core::webhook::{DEFAULT_MAX_DELIVERY_AGE, MAX_BODY_BYTES, WEBHOOK_PATH};
use hubsync_sqlite::SqliteHub;
use serde_json::json;
use tower::ServiceExt;

use hubsync_core::testing::fixtures::{model, refs_changed};

use crate::{SECRET, ServeArgs, secret, spawn_app, spawn_app_with};

#[tokio::test]
async fn health_reports_the_queue_and_the_registered_repositories() {
    let app = spawn_app().await;
    app.server.hub().register(&app.repo).await.unwrap();

    let health = app.health().await;

    assert_eq!(
        health,
        json!({
            "status": "ok",
            "queue": {"pending": 0, "inFlight": 0, "deadLetters": 0},
            "repositories": 1,
            "webhookSecret": "configured"
        })
    );
    app.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_signed_push_is_queued_once_and_replicated_by_a_worker() {
    let app = spawn_app().await;
    app.server.hub().register(&app.repo).await.unwrap();
    let head = app.host.commit(
        &app.repo,
        BTreeMap::from([
            ("orders.hck.json".to_string(), model("Orders")),
            ("README.md".to_string(), b"hi".to_vec()),
        ]),
    );

    let (status, answer) = app.post("delivery-1", refs_changed(&app.repo, &head), SECRET).await;
    let (again, duplicate) = app.post("delivery-1", refs_changed(&app.repo, &head), SECRET).await;
    app.drained().await;

    assert_eq!((status, &answer["status"]), (StatusCode::ACCEPTED, &json!("queued")));
    assert_eq!(
        (again, &duplicate["status"]),
        (StatusCode::ACCEPTED, &json!("duplicate"))
    );
    let models = app.server.hub().list_models(&app.repo).await.unwrap();
    assert_eq!(
        models.iter().map(|m| m.path.as_str()).collect::<Vec<_>>(),
        ["orders.hck.json"]
    );
    let record = app.server.hub().repo(&app.repo).await.unwrap().unwrap();
    assert_eq!(record.cursor.map(|c| c.commit), Some(head));
    app.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn without_a_secret_every_delivery_is_refused_with_503() {
    let app = spawn_app_with(ServeArgs::default(), None).await;

    let (status, answer) = app.post("d", b"{}".to_vec(), SECRET).await;

    assert_eq!(
        (status, &answer["error"]),
        (StatusCode::SERVICE_UNAVAILABLE, &json!("secret_unavailable"))
    );
    assert_eq!(app.health().await["webhookSecret"], json!("missing"));
    app.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_delivery_older_than_the_configured_window_is_refused_as_stale_unless_the_check_is_off() {
    // Arrange: a push sent two hours ago, and two servers: a one-minute window, and none.
    let strict = spawn_app_with(
        ServeArgs {
            webhook_max_age: 60,
            ..ServeArgs::default()
        },
        Some(secret()),
    )
    .await;
    let off = spawn_app_with(
        ServeArgs {
            webhook_max_age: 0,
            ..ServeArgs::default()
        },
        Some(secret()),
    )
    .await;
    let dated = |app: &crate::App| {
        let mut body: serde_json::Value =
            serde_json::from_slice(&refs_changed(&app.repo, &app.host.commit(&app.repo, BTreeMap::new()))).unwrap();
        let sent = chrono::Utc::now() - chrono::Duration::hours(2);
        body["date"] = json!(sent.format("%Y-%m-%dT%H:%M:%S%z").to_string());
        serde_json::to_vec(&body).unwrap()
    };

    // Act
    let (refused, answer) = strict.post("old", dated(&strict), SECRET).await;
    let (accepted, _) = off.post("old", dated(&off), SECRET).await;

    // Assert
    assert_eq!(
        (refused, &answer["error"]),
        (StatusCode::UNAUTHORIZED, &json!("stale_delivery"))
    );
    assert_eq!(strict.server.hub().queue_stats().await.unwrap(), Default::default());
    assert_eq!(accepted, StatusCode::ACCEPTED);
    strict.server.shutdown().await.unwrap();
    off.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn other_methods_on_the_webhook_path_get_405_with_allow() {
    let app = spawn_app().await;

    let response = app.http.get(app.server.webhook_url()).send().await.unwrap();

    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(response.headers().get("allow").unwrap(), "POST");
    app.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_webhook_behind_a_stage_prefix_is_accepted_and_other_paths_get_404() {
    let app = spawn_app().await;
    let url = |path: &str| format!("http://{}{path}", app.server.addr());

    let prefixed = app
        .http
        .post(url("/prod/gateway/public/sync"))
        .body("{}")
        .send()
        .await
        .unwrap();
    let elsewhere = app.http.post(url("/hooks")).body("{}").send().await.unwrap();

    // Unsigned: refused by the signature check, which proves the handler was reached. (Which
    // request gets which answer is tested once, in `crates/core/tests/webhook_handler.rs`.)
    assert_eq!(prefixed.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(elsewhere.status(), StatusCode::NOT_FOUND);
    app.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_body_over_one_mebibyte_is_refused_with_413() {
    let app = spawn_app().await;

    let big = vec![b' '; MAX_BODY_BYTES + 1];
    let (status, answer) = app.post("d", big, SECRET).await;

    assert_eq!(
        (status, &answer["error"]),
        (StatusCode::PAYLOAD_TOO_LARGE, &json!("payload_too_large"))
    );
    app.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_chunked_body_over_the_limit_is_refused_without_reading_it_all() {
    let app = router(
        SqliteHub::in_memory().unwrap(),
        Some(StaticSecret::new(secret())),
        DEFAULT_MAX_DELIVERY_AGE,
    );
    let chunks = (0..20).map(|_| Ok::<_, std::io::Error>(vec![b' '; 64 * 1024]));
    let request = Request::post(WEBHOOK_PATH)
        .body(Body::from_stream(futures::stream::iter(chunks)))
        .unwrap();

    let response = app.oneshot(request).await.unwrap();

    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn after_shutdown_the_server_accepts_no_more_connections() {
    let app = spawn_app().await;
    let addr = app.server.addr();

    app.server.shutdown().await.unwrap();

    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}
