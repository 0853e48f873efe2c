//! The webhook function driven as API Gateway drives it: every sample in `events/` (REST and HTTP
//! API payloads) goes through `lambda_http`'s parsing into the function's handler, with the queue
//! on SQS FIFO and the secret in Secrets Manager, both served by moto. Each case checks the
//! status and what landed on the queue.

use std::path::PathBuf;

use http::StatusCode;
use hubsync_aws::{SecretsManagerSource, SqsPushQueue};
use hubsync_core::push::{PushMessage, RefChangeType};
use hubsync_core::secrets::{CachedSecretSource, DEFAULT_SECRET_TTL};
use hubsync_core::webhook::WebhookHandler;
use hubsync_tests::aws::{TestAws, sdk_config_for};
use hubsync_tests::lambda::{Gateway, apigw_event, request_from_event};
use lambda_http::Body;
use serde_json::Value;

const SAMPLE_SECRET: &str = "hubsync-sample-webhook-secret";

fn secret_json(webhook_secret: &str) -> String {
    serde_json::json!({"baseUrl": "http://127.0.0.1:9", "accessToken": "sample-token", "webhookSecret": webhook_secret})
        .to_string()
}

type Handler = WebhookHandler<SqsPushQueue, CachedSecretSource<SecretsManagerSource>>;

struct App {
    aws: TestAws,
    handler: Handler,
}

impl App {
    async fn spawn() -> Self {
        let aws = TestAws::new(&secret_json(SAMPLE_SECRET)).await;
        let handler = WebhookHandler::new(
            SqsPushQueue::new(aws.sqs(), aws.resources.queue_url.clone()),
            CachedSecretSource::new(
                SecretsManagerSource::new(aws.secrets(), aws.resources.secret_id.clone()),
                DEFAULT_SECRET_TTL,
            ),
        );
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

/// Sets (or with `None` removes) a header in both header maps an event may carry.
fn set_header(event: &mut Value, name: &str, value: Option<&str>) {
    for (field, multi) in [("headers", false), ("multiValueHeaders", true)] {
        if let Some(map) = event.get_mut(field).and_then(Value::as_object_mut) {
            match value {
                None => {
                    map.remove(name);
                }
                Some(v) if multi => {
                    map.insert(name.into(), serde_json::json!([v]));
                }
                Some(v) => {
                    map.insert(name.into(), Value::String(v.into()));
                }
            }
        }
    }
}

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
        let mut unsigned = sample(gateway, "ping");
        set_header(&mut unsigned, "x-hub-signature", None);
        let (unsigned_status, _) = app.invoke(&unsigned).await;
        assert_eq!((status, unsigned_status), (StatusCode::OK, StatusCode::OK));
        assert!(app.queued().await.is_empty());
    }
}

#[tokio::test]
async fn a_wrong_signature_gets_401_and_nothing_is_queued() {
    for gateway in GATEWAYS {
        let app = App::spawn().await;
        let (status, body) = app.invoke(&sample(gateway, "bad-signature")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(body["message"].as_str().unwrap().contains("secret"), "{body}");
        let mut signed_ping_wrong = sample(gateway, "ping");
        set_header(
            &mut signed_ping_wrong,
            "x-hub-signature",
            Some(&format!("sha256={}", "0".repeat(64))),
        );
        assert_eq!(app.invoke(&signed_ping_wrong).await.0, StatusCode::UNAUTHORIZED);
        assert!(app.queued().await.is_empty());
    }
}

#[tokio::test]
async fn missing_or_sha1_signatures_get_401() {
    let app = App::spawn().await;
    let mut missing = sample(Gateway::Rest, "push-default-branch");
    set_header(&mut missing, "x-hub-signature", None);
    let mut sha1 = sample(Gateway::Rest, "push-default-branch");
    set_header(
        &mut sha1,
        "x-hub-signature",
        Some("sha1=0a4d55a8d778e5022fab701977c5d840bbc486d0"),
    );
    assert_eq!(app.invoke(&missing).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(app.invoke(&sha1).await.0, StatusCode::UNAUTHORIZED);
    assert!(app.queued().await.is_empty());
}

#[tokio::test]
async fn a_trailing_newline_breaks_the_signature() {
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

fn signed_event(gateway: Gateway, event_key: &str, body: &[u8]) -> Value {
    let mut headers = headers_of(&sample(gateway, "push-default-branch"));
    headers.retain(|(k, _)| k != "x-hub-signature" && k != "x-event-key");
    headers.push(("x-event-key".into(), event_key.into()));
    headers.push((
        "x-hub-signature".into(),
        hubsync_core::signature::sign(body, &SAMPLE_SECRET.to_owned().into()),
    ));
    apigw_event(gateway, "POST", &headers, body)
}

#[tokio::test]
async fn other_events_are_acknowledged_and_ignored() {
    let app = App::spawn().await;
    let (status, body) = app
        .invoke(&signed_event(
            Gateway::Http,
            "pr:opened",
            br#"{"eventKey":"pr:opened"}"#,
        ))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(body["status"], "ignored");
    assert!(app.queued().await.is_empty());
}

#[tokio::test]
async fn invalid_json_or_missing_fields_get_400() {
    let app = App::spawn().await;
    let (status, body) = app
        .invoke(&signed_event(Gateway::Rest, "repo:refs_changed", b"{not json"))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("not a repo:refs_changed payload"),
        "{body}"
    );
    let (status, body) = app
        .invoke(&signed_event(
            Gateway::Rest,
            "repo:refs_changed",
            br#"{"repository":{"slug":"x","project":{"key":"P"}}}"#,
        ))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["message"].as_str().unwrap().contains("changes"), "{body}");
    assert!(app.queued().await.is_empty());
}

#[tokio::test]
async fn a_body_over_one_mebibyte_gets_413() {
    let app = App::spawn().await;
    let body = vec![b' '; 1024 * 1024 + 1];
    let (status, _) = app
        .invoke(&signed_event(Gateway::Http, "repo:refs_changed", &body))
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(app.queued().await.is_empty());
}

#[tokio::test]
async fn methods_other_than_post_get_405() {
    let app = App::spawn().await;
    let event = apigw_event(Gateway::Rest, "GET", &headers_of(&sample(Gateway::Rest, "ping")), b"");
    let (status, body) = app.invoke(&event).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{body}");
}

#[tokio::test]
async fn a_rotated_secret_still_accepts_the_previous_one() {
    let aws = TestAws::new(
        &serde_json::json!({"baseUrl": "http://127.0.0.1:9", "accessToken": "t", "webhookSecret": "the-new-secret",
                            "previousWebhookSecrets": [SAMPLE_SECRET]})
        .to_string(),
    )
    .await;
    let app = App {
        handler: WebhookHandler::new(
            SqsPushQueue::new(aws.sqs(), aws.resources.queue_url.clone()),
            CachedSecretSource::new(
                SecretsManagerSource::new(aws.secrets(), aws.resources.secret_id.clone()),
                DEFAULT_SECRET_TTL,
            ),
        ),
        aws,
    };
    assert_eq!(
        app.invoke(&sample(Gateway::Http, "push-default-branch")).await.0,
        StatusCode::ACCEPTED
    );
    assert_eq!(app.queued().await.len(), 1);
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
    );
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
