//! The webhook endpoint, independent of how HTTP arrives (API Gateway through `lambda_http`, or
//! the local server): it verifies the signature over the raw body, answers `diagnostics:ping`, and
//! queues each accepted `repo:refs_changed` push exactly once. It never fetches anything.
//!
//! | request                                         | answer | queue effect |
//! |-------------------------------------------------|--------|--------------|
//! | path not ending in `/gateway/public/sync`      | 404    | none         |
//! | method other than POST                          | 405    | none         |
//! | body over 1 MiB                                 | 413    | none         |
//! | no usable hub secret                            | 503    | none (fail closed) |
//! | `diagnostics:ping`, unsigned or rightly signed  | 200    | none         |
//! | missing, malformed or wrong signature           | 401    | none         |
//! | `repo:refs_changed`, invalid payload            | 400    | none         |
//! | `repo:refs_changed`, `date` older than the window (default one hour) | 401 "stale delivery" | none |
//! | `repo:refs_changed`, valid                      | 202    | one message  |
//! | other event keys                                | 202    | none (ignored) |
//! | queue unavailable                               | 503    | none         |
//!
//! Every delivery that passed signature verification (a queued or duplicate push, an ignored
//! event, a signed ping) is recorded in the delivery log ([`crate::deliveries`]) with its verdict,
//! once the answer is known; refused requests are only logged. A failure to record is logged and
//! changes nothing in the answer.

pub mod payload;
mod scan;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use http::{HeaderMap, HeaderName, Method, StatusCode};
use tracing::{Instrument, error, info, info_span, warn};

use crate::deliveries::{DeliveryEntry, DeliveryKind, DeliveryLog, NoDeliveryLog, Verdict};
use crate::error_chain::error_chain;
use crate::ids::DeliveryId;
use crate::json_text;
use crate::ports::{Enqueued, PushQueue, SecretError, SecretSource};
use crate::push::PushMessage;
use crate::signature::{Signature, SignatureError};

/// The path suffix the endpoint answers at (any prefix, such as an API Gateway stage, is allowed).
pub const WEBHOOK_PATH: &str = "/gateway/public/sync";
/// Largest body accepted. Bitbucket's payloads are a few KB, even with 1,000 ref changes well under.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

pub const HEADER_EVENT_KEY: &str = "x-event-key";
pub const HEADER_REQUEST_ID: &str = "x-request-id";
pub const HEADER_SIGNATURE: &str = "x-hub-signature";

// The same names as `HeaderName`s, so looking a header up does not parse its name again.
const EVENT_KEY: HeaderName = HeaderName::from_static(HEADER_EVENT_KEY);
const REQUEST_ID: HeaderName = HeaderName::from_static(HEADER_REQUEST_ID);
const SIGNATURE: HeaderName = HeaderName::from_static(HEADER_SIGNATURE);

pub const EVENT_PUSH: &str = "repo:refs_changed";
pub const EVENT_PING: &str = "diagnostics:ping";

/// One HTTP request, as the adapters hand it over.
#[derive(Debug, Clone, Copy)]
pub struct WebhookRequest<'a> {
    pub method: &'a Method,
    pub path: &'a str,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
}

/// The answer: a status and a JSON body a person can act on.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookResponse {
    pub status: StatusCode,
    /// The JSON text of the answer, written directly (members in name order, as serde_json
    /// writes a map); [`WebhookResponse::json`] reads it back.
    pub body: String,
    /// Extra headers (`Allow` on a 405).
    pub headers: Vec<(&'static str, &'static str)>,
    /// What the answer says of the delivery (see [`WebhookResponse::verdict`]).
    verdict: &'static str,
}

impl WebhookResponse {
    /// A successful answer: `{"message": ..., "status": ...}`.
    fn status(status: StatusCode, word: &'static str, message: &str) -> Self {
        let mut body = String::with_capacity(32 + message.len());
        body.push_str("{\"message\":");
        json_text::push_str(&mut body, message);
        body.push_str(",\"status\":");
        json_text::push_str(&mut body, word);
        body.push('}');
        let verdict = match word {
            "queued" => "queued",
            "duplicate" => "duplicate",
            "ignored" => "ignored",
            _ => "ping",
        };
        Self {
            status,
            body,
            headers: Vec::new(),
            verdict,
        }
    }

    /// A refusal: `{"error": code, "message": ...}`.
    fn error(status: StatusCode, code: &str, message: impl AsRef<str>) -> Self {
        let message = message.as_ref();
        let mut body = String::with_capacity(32 + code.len() + message.len());
        body.push_str("{\"error\":");
        json_text::push_str(&mut body, code);
        body.push_str(",\"message\":");
        json_text::push_str(&mut body, message);
        body.push('}');
        Self {
            status,
            body,
            headers: Vec::new(),
            verdict: "rejected",
        }
    }

    /// A push queued (or already queued): `{"changes", "deliveryId", "message", "repository",
    /// "status"}`.
    fn queued(outcome: Enqueued, push: &PushMessage) -> Self {
        let (word, message) = if outcome == Enqueued::Queued {
            ("queued", "the push is queued for replication")
        } else {
            ("duplicate", "this delivery was already queued")
        };
        let (project, slug) = (push.repo.project(), push.repo.slug());
        let mut body =
            String::with_capacity(120 + push.delivery_id.as_str().len() + message.len() + project.len() + slug.len());
        body.push_str("{\"changes\":");
        json_text::push_u64(&mut body, push.changes.len() as u64);
        body.push_str(",\"deliveryId\":");
        json_text::push_str(&mut body, push.delivery_id.as_str());
        // The message and the word are fixed ASCII texts without a quote, backslash or control
        // character: written between their quotes as they are, not through the escaper.
        body.push_str(",\"message\":\"");
        body.push_str(message);
        body.push_str("\",\"repository\":");
        json_text::push_repo(&mut body, &push.repo);
        body.push_str(",\"status\":\"");
        body.push_str(word);
        body.push_str("\"}");
        Self {
            status: StatusCode::ACCEPTED,
            body,
            headers: Vec::new(),
            verdict: word,
        }
    }

    /// The body as JSON (for tests and tools; the adapters send [`WebhookResponse::body`]).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// The answer for a body over [`MAX_BODY_BYTES`], for adapters that stop reading early.
    pub fn payload_too_large() -> Self {
        Self::error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the request body is larger than {MAX_BODY_BYTES} bytes"),
        )
    }

    /// What the answer says of the delivery, for metrics: `queued`, `duplicate`, `ignored`,
    /// `ping`, or `rejected` (any 4xx or 5xx; the status says which).
    pub fn verdict(&self) -> &'static str {
        if !self.status.is_success() {
            return "rejected";
        }
        self.verdict
    }

    /// The answer as an HTTP response (JSON body), for any body type a text converts into.
    pub fn into_http<B: From<String>>(self) -> http::Response<B> {
        let mut response = http::Response::new(B::from(self.body));
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        headers.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        for (name, value) in self.headers {
            headers.insert(
                http::HeaderName::from_static(name),
                http::HeaderValue::from_static(value),
            );
        }
        response
    }
}

/// How old a delivery may be (by the `date` in its signed payload) before it is refused as stale.
pub const DEFAULT_MAX_DELIVERY_AGE: Duration = Duration::from_secs(3600);

/// A stale-delivery window that is not a whole number of seconds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the stale-delivery window must be a whole number of seconds (0 turns the check off), not {0:?}")]
pub struct InvalidMaxAge(String);

/// Parses the stale-delivery window (`HUB_WEBHOOK_MAX_AGE`): whole seconds, `0` for no check.
pub fn parse_max_age(text: &str) -> Result<Duration, InvalidMaxAge> {
    text.trim()
        .parse::<u64>()
        .map(Duration::from_secs)
        .map_err(|_| InvalidMaxAge(text.chars().take(32).collect()))
}

/// Where the handler reads the time from (the system clock, or a test's).
type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// The webhook endpoint, generic over where pushes go, where the secret comes from and where
/// accepted deliveries are recorded (nowhere unless [`WebhookHandler::with_delivery_log`]).
pub struct WebhookHandler<Q, S, L = NoDeliveryLog> {
    queue: Q,
    secrets: S,
    deliveries: L,
    max_age: Duration,
    clock: Clock,
}

impl<Q: PushQueue, S: SecretSource> WebhookHandler<Q, S> {
    pub fn new(queue: Q, secrets: S) -> Self {
        Self {
            queue,
            secrets,
            deliveries: NoDeliveryLog,
            max_age: DEFAULT_MAX_DELIVERY_AGE,
            clock: Arc::new(Utc::now),
        }
    }
}

impl<Q: PushQueue, S: SecretSource, L: DeliveryLog> WebhookHandler<Q, S, L> {
    /// Records every delivery that passes signature verification in `log`.
    pub fn with_delivery_log<L2: DeliveryLog>(self, log: L2) -> WebhookHandler<Q, S, L2> {
        WebhookHandler {
            queue: self.queue,
            secrets: self.secrets,
            deliveries: log,
            max_age: self.max_age,
            clock: self.clock,
        }
    }

    pub fn delivery_log(&self) -> &L {
        &self.deliveries
    }

    /// Refuses pushes whose payload `date` is older than `max_age` ([`Duration::ZERO`]: never).
    pub fn with_max_age(mut self, max_age: Duration) -> Self {
        self.max_age = max_age;
        self
    }

    /// Reads the time from `clock` instead of the system clock.
    pub fn with_clock(mut self, clock: impl Fn() -> DateTime<Utc> + Send + Sync + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    pub fn queue(&self) -> &Q {
        &self.queue
    }

    pub fn secrets(&self) -> &S {
        &self.secrets
    }

    /// Handles one request. Every outcome is logged once, inside a span carrying the delivery id.
    pub async fn handle(&self, req: WebhookRequest<'_>) -> WebhookResponse {
        let header = |name: &HeaderName| req.headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
        let delivery_id = header(&REQUEST_ID)
            .and_then(|id| DeliveryId::parse(id).ok())
            .unwrap_or_else(|| DeliveryId::from_body(req.body));
        let event_key = header(&EVENT_KEY).unwrap_or_default();
        let span = info_span!(
            "webhook",
            delivery_id = %delivery_id,
            event_key = %event_key,
            repository = tracing::field::Empty,
            commit = tracing::field::Empty,
        );
        async {
            let response = self.route(req, delivery_id, event_key).await;
            let status = response.status.as_u16();
            if response.status.is_server_error() {
                error!(status, answer = %response.body, "webhook refused");
            } else if response.status.is_client_error() {
                warn!(status, answer = %response.body, "webhook refused");
            } else {
                info!(status, answer = %response.body, "webhook answered");
            }
            response
        }
        .instrument(span)
        .await
    }

    async fn route(&self, req: WebhookRequest<'_>, delivery_id: DeliveryId, event_key: &str) -> WebhookResponse {
        if !req.path.trim_end_matches('/').ends_with(WEBHOOK_PATH) {
            return WebhookResponse::error(
                StatusCode::NOT_FOUND,
                "not_found",
                format!(
                    "no endpoint at {}; Bitbucket webhooks must point at .../gateway/public/sync",
                    req.path
                ),
            );
        }
        if req.method != Method::POST {
            let mut r = WebhookResponse::error(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                format!("{} is not supported here; Bitbucket webhooks use POST", req.method),
            );
            r.headers.push(("allow", "POST"));
            return r;
        }
        if req.body.len() > MAX_BODY_BYTES {
            return WebhookResponse::payload_too_large();
        }

        let secret = match self.secrets.hub_secret().await {
            Ok(secret) => secret,
            Err(e) => {
                let detail = match &e {
                    SecretError::Missing(_) | SecretError::Invalid(_) => {
                        "the hub's webhook secret is not configured; every delivery is refused until it is set"
                    }
                    SecretError::Unavailable { .. } => "the hub's webhook secret cannot be read right now; retry later",
                };
                error!(error = %e, "no usable webhook secret, failing closed");
                return WebhookResponse::error(StatusCode::SERVICE_UNAVAILABLE, "secret_unavailable", detail);
            }
        };

        let signature = req.headers.get(&SIGNATURE).map(|v| v.to_str().unwrap_or("\u{fffd}"));
        let verified = match signature {
            None => Err(SignatureError::Missing),
            Some(value) => Signature::parse(value).and_then(|sig| sig.verify_keyed(req.body, secret.webhook_keys())),
        };

        if event_key == EVENT_PING {
            // "Test connection" may be sent unsigned; a signed ping must carry the right signature,
            // so the administrator learns at once that the secrets differ.
            return match verified {
                Ok(()) => {
                    self.record_ignored(&delivery_id, event_key, "a signed ping (Test connection): answered")
                        .await;
                    WebhookResponse::status(StatusCode::OK, "ok", "pong: the signature is valid")
                }
                Err(SignatureError::Missing) => {
                    WebhookResponse::status(StatusCode::OK, "ok", "pong (the ping was not signed)")
                }
                Err(e) => unauthorized(&e),
            };
        }
        if let Err(e) = verified {
            return unauthorized(&e);
        }

        match event_key {
            EVENT_PUSH => self.queue_push(req.body, delivery_id).await,
            "" => WebhookResponse::error(
                StatusCode::BAD_REQUEST,
                "missing_event_key",
                "the X-Event-Key header is missing; Bitbucket Data Center always sends it",
            ),
            other => {
                let message = format!("event {other:?} is not replicated; only repo:refs_changed is");
                self.record_ignored(&delivery_id, other, &message).await;
                WebhookResponse::status(StatusCode::ACCEPTED, "ignored", &message)
            }
        }
    }

    /// Records a verified delivery that is not queued.
    async fn record_ignored(&self, delivery_id: &DeliveryId, event_key: &str, reason: &str) {
        if !self.deliveries.records() {
            return;
        }
        let entry = DeliveryEntry {
            id: delivery_id.clone(),
            received_at: (self.clock)(),
            kind: DeliveryKind::Webhook,
            event_key: event_key.to_owned(),
            repo: None,
            changes: Vec::new(),
            verdict: Verdict::Ignored,
            reason: Some(reason.to_owned()),
            duplicates: 0,
            outcome: None,
        };
        self.record(&entry).await;
    }

    /// Records a queued (or duplicate) push, moving its parts into the entry (what
    /// [`DeliveryEntry::for_push`] gives, without copying every change).
    async fn record_push(&self, push: PushMessage, verdict: Verdict) {
        if !self.deliveries.records() {
            return;
        }
        let entry = DeliveryEntry {
            id: push.delivery_id,
            received_at: push.received_at,
            kind: DeliveryKind::Webhook,
            event_key: EVENT_PUSH.to_owned(),
            repo: Some(push.repo),
            changes: push.changes,
            verdict,
            reason: None,
            duplicates: 0,
            outcome: None,
        };
        self.record(&entry).await;
    }

    async fn record(&self, entry: &DeliveryEntry) {
        if let Err(e) = self.deliveries.record_delivery(entry).await {
            warn!(error = %error_chain(&e), "could not record the delivery in the delivery log; it is handled all the same");
        }
    }

    async fn queue_push(&self, body: &[u8], delivery_id: DeliveryId) -> WebhookResponse {
        let now = (self.clock)();
        let (push, sent_at) = match payload::parse_refs_changed_delivery(body, delivery_id, now) {
            Ok(delivery) => (delivery.push, delivery.sent_at),
            Err(e) => return WebhookResponse::error(StatusCode::BAD_REQUEST, "invalid_payload", e.to_string()),
        };
        if let Some(sent_at) = sent_at
            && let Some(age) = self.stale(sent_at, now)
        {
            return WebhookResponse::error(
                StatusCode::UNAUTHORIZED,
                "stale_delivery",
                format!(
                    "stale delivery: sent at {} ({} s ago), older than the {} s the hub accepts (HUB_WEBHOOK_MAX_AGE); \
                     it is not queued, and the next push catches the repository up",
                    sent_at.to_rfc3339(),
                    age.as_secs(),
                    self.max_age.as_secs()
                ),
            );
        }
        let span = tracing::Span::current();
        span.record("repository", tracing::field::display(&push.repo));
        if let Some(first) = push.changes.first() {
            span.record("commit", tracing::field::display(&first.to_hash));
        }
        match self.queue.enqueue(&push).await {
            Ok(outcome) => {
                let verdict = if outcome == Enqueued::Queued {
                    Verdict::Queued
                } else {
                    Verdict::Duplicate
                };
                let answer = WebhookResponse::queued(outcome, &push);
                self.record_push(push, verdict).await;
                answer
            }
            Err(e) => {
                error!(error = %e, cause = ?std::error::Error::source(&e), "could not queue the push");
                WebhookResponse::error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "queue_unavailable",
                    "the push could not be queued; Bitbucket will show this delivery as failed and the next push will catch up",
                )
            }
        }
    }
}

impl<Q, S, L> WebhookHandler<Q, S, L> {
    /// How old a delivery sent at `sent_at` is, if that is beyond the window. A date in the future
    /// (clocks differ) is not stale.
    fn stale(&self, sent_at: DateTime<Utc>, now: DateTime<Utc>) -> Option<Duration> {
        if self.max_age.is_zero() {
            return None;
        }
        let age = (now - sent_at).to_std().ok()?;
        (age > self.max_age).then_some(age)
    }
}

fn unauthorized(e: &SignatureError) -> WebhookResponse {
    WebhookResponse::error(
        StatusCode::UNAUTHORIZED,
        "invalid_signature",
        format!("{e}; check that the webhook's secret in Bitbucket equals the hub's webhook secret"),
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::ids::{CommitId, RepoRef};
    use crate::push::{RefChange, RefChangeType};

    const TRICKY: &str = "a \"quoted\" \\ name\n\u{1}\t é/日";

    #[test]
    fn answers_are_the_bytes_serde_json_wrote_for_them() {
        let error = WebhookResponse::error(StatusCode::BAD_REQUEST, "invalid_payload", TRICKY);
        let ignored = WebhookResponse::status(StatusCode::ACCEPTED, "ignored", TRICKY);

        assert_eq!(
            error.body,
            json!({"error": "invalid_payload", "message": TRICKY}).to_string()
        );
        assert_eq!(
            ignored.body,
            json!({"status": "ignored", "message": TRICKY}).to_string()
        );
        assert_eq!((error.verdict(), ignored.verdict()), ("rejected", "ignored"));
    }

    #[test]
    fn the_queued_answer_is_the_bytes_serde_json_wrote_for_it() {
        let mut push = PushMessage::full_sync(
            RepoRef::new("~j\"doe", "mod\\èles").unwrap(),
            DeliveryId::parse("d\"\\-1").unwrap(),
            chrono::Utc::now(),
        );
        let hash = CommitId::parse("ecddabb624f6f5ba43816f5926e580a5f680a932").unwrap();
        push.changes = vec![
            RefChange {
                ref_id: "refs/heads/main".into(),
                change_type: RefChangeType::Update,
                from_hash: hash.clone(),
                to_hash: hash,
            };
            12
        ];

        for (outcome, word, message) in [
            (Enqueued::Queued, "queued", "the push is queued for replication"),
            (Enqueued::Duplicate, "duplicate", "this delivery was already queued"),
        ] {
            let answer = WebhookResponse::queued(outcome, &push);

            let expected = json!({"status": word, "message": message, "deliveryId": push.delivery_id.as_str(),
                "repository": push.repo.to_string(), "changes": push.changes.len()});
            assert_eq!(answer.body, expected.to_string());
            assert_eq!(answer.verdict(), word);
        }
    }
}
