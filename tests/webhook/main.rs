//! The webhook function driven as API Gateway drives it: every sample in `events/` (REST and HTTP
//! API payloads) goes through `lambda_http`'s parsing into the function's handler, with the queue
//! on SQS FIFO and the secret in Secrets Manager, both served by moto. Each case checks the
//! status and what landed on the queue.
//!
//! Only what the Lambda adds is tested here: the event shapes, the raw body and the headers
//! crossing the translation, the SQS message attributes, and the AWS adapters failing. The
//! decision table itself (which request gets 400, 401, 405, 413, 503...) is tested once, in
//! `crates/core/tests/webhook_handler.rs`.

use std::path::PathBuf;

use http::StatusCode;
use hubsync_aws::{SecretsManagerSource, SqsPushQueue};
use hubsync_core::push::{PushMessage, RefChangeType};
use hubsync_core::secrets::{CachedSecretSource, DEFAULT_SECRET_TTL};
use hubsync_core::testing::fixtures::hub_secret_json;
use hubsync_core::webhook::WebhookHandler;
use hubsync_tests::aws::{TestAws, sdk_config_for};
use hubsync_tests::lambda::{Gateway, apigw_event, request_from_event};
use lambda_http::Body;
use serde_json::Value;

const SAMPLE_SECRET: &str = "hubsync-sample-webhook-secret";

/// The handlers' clock: a minute after the samples' `date` (2026-11-24T10:15:30+0000, written by
/// `cargo xtask events`), so they are fresh deliveries whenever the suite runs, not stale ones.
fn samples_clock() -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339("2026-11-24T10:16:30Z")
        .expect("a date")
        .to_utc()
}

type Handler = WebhookHandler<SqsPushQueue, CachedSecretSource<SecretsManagerSource>>;

struct App {
    aws: TestAws,
    handler: Handler,
}

impl App {
    async fn spawn() -> Self {
        let aws = TestAws::new(&hub_secret_json(SAMPLE_SECRET, &[])).await;
        let handler = WebhookHandler::new(
            SqsPushQueue::new(aws.sqs(), aws.resources.queue_url.clone()),
            CachedSecretSource::new(
                SecretsManagerSource::new(aws.secrets(), aws.resources.secret_id.clone()),
                DEFAULT_SECRET_TTL,
            ),
        )
        .with_clock(samples_clock);
        Self { aws, handler }
    }

    async fn invoke(&self, event: &Value) -> (StatusCode, Value) {
        let response = hubsync_webhook_function::handle(&self.handler, request_from_event(event))
            .await
            .expect("infallible");
        let status = response.status();
        let body = match response.body() {
            Body::Text(t) => serde_json::from_str(t).expect("a JSON answer"),
            other => panic!("expected a text body, got {other:?}"),
        };
        (status, body)
    }

    async fn queued(&self) -> Vec<(PushMessage, String, String)> {
        self.aws
            .receive_all(&self.aws.resources.queue_url)
            .await
            .into_iter()
            .map(|m| {
                let attrs = m.attributes().cloned().unwrap_or_default();
                let get =
                    |k: aws_sdk_sqs::types::MessageSystemAttributeName| attrs.get(&k).cloned().unwrap_or_default();
                (
                    serde_json::from_str(m.body().unwrap_or_default()).expect("a push message"),
                    get(aws_sdk_sqs::types::MessageSystemAttributeName::MessageGroupId),
                    get(aws_sdk_sqs::types::MessageSystemAttributeName::MessageDeduplicationId),
                )
            })
            .collect()
    }
}

fn sample(gateway: Gateway, name: &str) -> Value {
    let dir = match gateway {
        Gateway::Rest => "apigw-rest",
        Gateway::Http => "apigw-http",
    };
    let path: PathBuf = hubsync_tests::workspace_root()
        .join("events")
        .join(dir)
        .join(format!("{name}.json"));
    serde_json::from_slice(&std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .expect("sample JSON")
}

const GATEWAYS: [Gateway; 2] = [Gateway::Rest, Gateway::Http];

#[tokio::test]
async fn a_push_to_the_default_branch_is_queued_once_with_repository_group_and_delivery_dedup() {
    for gateway in GATEWAYS {
        let app = App::spawn().await;
        let event = sample(gateway, "push-default-branch");

        let (status, body) = app.invoke(&event).await;
        // Bitbucket redelivers the same request id when a delivery is retried by hand.
        let (again, _) = app.invoke(&event).await;

        assert_eq!(status, StatusCode::ACCEPTED, "{gateway:?}: {body}");
        assert_eq!(again, StatusCode::ACCEPTED);
        let queued = app.queued().await;
        assert_eq!(queued.len(), 1, "{gateway:?}: exactly one message");
        let (push, group, dedup) = &queued[0];
        assert_eq!(push.repo.to_string(), "DATA/models");
        assert_eq!(push.repository_id, Some(84));
        assert_eq!(push.changes.len(), 1);
        assert_eq!(push.changes[0].ref_id, "refs/heads/main");
        assert_eq!(push.changes[0].change_type, RefChangeType::Update);
        assert_eq!(
            push.changes[0].from_hash.as_str(),
            "ecddabb624f6f5ba43816f5926e580a5f680a932"
        );
        assert_eq!(push.actor.name.as_deref(), Some("jdoe"));
        assert_eq!(group, "DATA/models");
        assert_eq!(dedup, push.delivery_id.as_str());
        assert_eq!(body["deliveryId"], push.delivery_id.as_str());
    }
}

#[tokio::test]
async fn branch_creation_deletion_and_tags_are_queued_for_the_sync_to_judge() {
    for (name, ref_id, change_type) in [
        ("branch-created", "refs/heads/feature/orders-v2", RefChangeType::Add),
        ("branch-deleted", "refs/heads/feature/orders-v2", RefChangeType::Delete),
        ("tag-pushed", "refs/tags/v1.0.0", RefChangeType::Add),
    ] {
        let app = App::spawn().await;
        let (status, _) = app.invoke(&sample(Gateway::Http, name)).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{name}");
        let queued = app.queued().await;
        assert_eq!(queued.len(), 1, "{name}");
        assert_eq!(queued[0].0.changes[0].ref_id, ref_id);
        assert_eq!(queued[0].0.changes[0].change_type, change_type);
    }
}

#[tokio::test]
async fn a_ping_answers_200_and_queues_nothing() {
    for gateway in GATEWAYS {
        let app = App::spawn().await;
        let (status, _) = app.invoke(&sample(gateway, "ping")).await;
        assert_eq!(status, StatusCode::OK, "{gateway:?}");
        assert!(app.queued().await.is_empty());
    }
}

#[tokio::test]
async fn a_wrong_signature_gets_401_and_nothing_is_queued() {
    for gateway in GATEWAYS {
        let app = App::spawn().await;
        let (status, body) = app.invoke(&sample(gateway, "bad-signature")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{gateway:?}: {body}");
        assert!(app.queued().await.is_empty());
    }
}

#[tokio::test]
async fn the_body_reaches_the_handler_byte_for_byte_so_a_trailing_newline_breaks_the_signature() {
    let app = App::spawn().await;
    let mut event = sample(Gateway::Http, "push-default-branch");
    let body = format!("{}\n", event["body"].as_str().unwrap());
    event["body"] = Value::String(body);
    assert_eq!(app.invoke(&event).await.0, StatusCode::UNAUTHORIZED);
    assert!(app.queued().await.is_empty());
}

fn headers_of(event: &Value) -> Vec<(String, String)> {
    event["headers"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
        .collect()
}

#[tokio::test]
async fn the_method_reaches_the_handler_and_the_allow_header_comes_back() {
    let app = App::spawn().await;
    let event = apigw_event(Gateway::Rest, "GET", &headers_of(&sample(Gateway::Rest, "ping")), b"");
    let response = hubsync_webhook_function::handle(&app.handler, request_from_event(&event))
        .await
        .expect("infallible");

    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(
        response.headers().get("allow").map(|v| v.as_bytes()),
        Some(&b"POST"[..])
    );
    assert_eq!(
        response.headers().get("content-type").map(|v| v.as_bytes()),
        Some(&b"application/json"[..])
    );
}

#[tokio::test]
async fn an_unreachable_queue_gets_503() {
    let app = App::spawn().await;
    // A loopback port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let dead_sdk = sdk_config_for(&format!("http://{closed}")).await;
    let handler = WebhookHandler::new(
        SqsPushQueue::new(aws_sdk_sqs::Client::new(&dead_sdk), app.aws.resources.queue_url.clone()),
        CachedSecretSource::new(
            SecretsManagerSource::new(app.aws.secrets(), app.aws.resources.secret_id.clone()),
            DEFAULT_SECRET_TTL,
        ),
    )
    .with_clock(samples_clock);
    let response = hubsync_webhook_function::handle(
        &handler,
        request_from_event(&sample(Gateway::Rest, "push-default-branch")),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(app.queued().await.is_empty());
}

#[tokio::test]
async fn a_sample_replayed_two_hours_after_its_date_is_refused_as_stale() {
    // Arrange: the handler's clock two hours after the samples were sent.
    let app = App::spawn().await;
    let later = || samples_clock() + chrono::Duration::hours(2);
    let handler = WebhookHandler::new(
        SqsPushQueue::new(app.aws.sqs(), app.aws.resources.queue_url.clone()),
        CachedSecretSource::new(
            SecretsManagerSource::new(app.aws.secrets(), app.aws.resources.secret_id.clone()),
            DEFAULT_SECRET_TTL,
        ),
    )
    .with_clock(later);

    // Act
    let response = hubsync_webhook_function::handle(
        &handler,
        request_from_event(&sample(Gateway::Http, "push-default-branch")),
    )
    .await
    .unwrap();

    // Assert
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let Body::Text(body) = response.body() else {
        panic!("a text body")
    };
    assert!(body.contains("stale delivery"), "{body}");
    assert!(app.queued().await.is_empty());
}

#[tokio::test]
async fn without_a_secret_every_delivery_is_refused() {
    let app = App::spawn().await;
    let handler = WebhookHandler::new(
        SqsPushQueue::new(app.aws.sqs(), app.aws.resources.queue_url.clone()),
        Some(SecretsManagerSource::new(app.aws.secrets(), "no-such-secret")),
    );
    for name in ["ping", "push-default-branch"] {
        let response = hubsync_webhook_function::handle(&handler, request_from_event(&sample(Gateway::Rest, name)))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE, "{name}");
    }
    assert!(app.queued().await.is_empty());
}
