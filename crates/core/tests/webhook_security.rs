//! The webhook endpoint against hostile or stale deliveries: secrets that would let anyone sign,
//! replayed deliveries, and 10,000 generated requests of every shape. Nothing that is not signed
//! with an accepted secret over the exact bytes received is ever queued, and nothing panics.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use hubsync_core::ports::{SecretError, SecretSource};
use hubsync_core::secrets::{HubSecret, StaticSecret};
use hubsync_core::signature::sign;
use hubsync_core::testing::fixtures::hub_secret_json;
use hubsync_core::testing::memory::MemoryQueue;
use hubsync_core::webhook::{
    DEFAULT_MAX_DELIVERY_AGE, MAX_BODY_BYTES, WebhookHandler, WebhookRequest, WebhookResponse,
};
use proptest::prelude::*;
use secrecy::SecretString;

const SECRET: &str = "test-webhook-secret";
const PREVIOUS: &str = "previous-webhook-secret";
const PATH: &str = "/prod/gateway/public/sync";

/// The clock of every handler here: 2026-11-24 10:15:30 UTC.
fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 24, 10, 15, 30).unwrap()
}

/// A `repo:refs_changed` body as Bitbucket Data Center sends it, dated `date`.
fn push_body(date: &str) -> Vec<u8> {
    format!(
        r#"{{"eventKey":"repo:refs_changed","date":"{date}","actor":{{"name":"admin"}},"repository":{{"slug":"models","id":1,"project":{{"key":"DATA"}}}},"changes":[{{"ref":{{"id":"refs/heads/main","displayId":"main","type":"BRANCH"}},"refId":"refs/heads/main","fromHash":"ecddabb624f6f5ba43816f5926e580a5f680a932","toHash":"178864a7d521b6f5e720b386b2c2b0ef8563e0dc","type":"UPDATE"}}]}}"#
    )
    .into_bytes()
}

/// Bitbucket's date format (`+hhmm` offset, no colon).
fn bitbucket_date(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%S%z").to_string()
}

fn hub_secret() -> HubSecret {
    HubSecret::from_json(&hub_secret_json(SECRET, &[PREVIOUS])).unwrap()
}

fn handler() -> WebhookHandler<MemoryQueue, StaticSecret> {
    WebhookHandler::new(MemoryQueue::default(), StaticSecret::new(hub_secret())).with_clock(now)
}

fn push_headers(signature: Option<String>, request_id: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("x-event-key", HeaderValue::from_static("repo:refs_changed"));
    h.insert("x-request-id", HeaderValue::from_str(request_id).unwrap());
    if let Some(s) = signature {
        h.insert("x-hub-signature", HeaderValue::from_str(&s).unwrap());
    }
    h
}

fn signed(body: &[u8], key: &str) -> Option<String> {
    Some(sign(body, &SecretString::from(key.to_owned())))
}

async fn post<S: SecretSource>(
    h: &WebhookHandler<MemoryQueue, S>,
    headers: &HeaderMap,
    body: &[u8],
) -> WebhookResponse {
    h.handle(WebhookRequest {
        method: &Method::POST,
        path: PATH,
        headers,
        body,
    })
    .await
}

/// A secret store holding JSON text, parsed on every read as the Secrets Manager adapter does.
struct JsonSecret(String);

impl SecretSource for JsonSecret {
    async fn hub_secret(&self) -> Result<std::sync::Arc<HubSecret>, SecretError> {
        HubSecret::from_json(&self.0).map(std::sync::Arc::new)
    }
}

// ---------------------------------------------------------------------------------------------
// Secrets that would accept anything
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn an_empty_previous_secret_does_not_let_anyone_sign_deliveries() {
    // Arrange: a rotation left an empty string among the previous secrets.
    let h = WebhookHandler::new(MemoryQueue::default(), JsonSecret(hub_secret_json(SECRET, &[""]))).with_clock(now);
    let body = push_body(&bitbucket_date(now()));

    // Act: an attacker signs with the empty key, which anyone can.
    let answer = post(&h, &push_headers(signed(&body, ""), "forged-1"), &body).await;

    // Assert: the secret is refused, the endpoint fails closed, nothing is queued.
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE, "{}", answer.body);
    assert!(h.queue().messages().is_empty());
}

#[tokio::test]
async fn a_blank_current_secret_fails_closed_too() {
    let h = WebhookHandler::new(MemoryQueue::default(), JsonSecret(hub_secret_json("   ", &[]))).with_clock(now);
    let body = push_body(&bitbucket_date(now()));

    let answer = post(&h, &push_headers(signed(&body, "   "), "forged-2"), &body).await;

    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE, "{}", answer.body);
    assert!(h.queue().messages().is_empty());
}

// ---------------------------------------------------------------------------------------------
// Replayed deliveries
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_delivery_older_than_the_window_is_answered_401_stale_and_not_queued() {
    // Arrange: a rightly signed delivery sent an hour and a minute ago.
    let h = handler();
    let body = push_body(&bitbucket_date(now() - chrono::Duration::minutes(61)));

    // Act
    let answer = post(&h, &push_headers(signed(&body, SECRET), "old-1"), &body).await;

    // Assert
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(answer.json()["error"], "stale_delivery", "{}", answer.body);
    assert!(
        answer.json()["message"].as_str().unwrap().contains("stale delivery"),
        "{}",
        answer.body
    );
    assert!(h.queue().messages().is_empty());
}

#[tokio::test]
async fn a_delivery_within_the_window_is_queued() {
    let h = handler();
    let body = push_body(&bitbucket_date(now() - chrono::Duration::minutes(59)));

    let answer = post(&h, &push_headers(signed(&body, SECRET), "recent-1"), &body).await;

    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.body);
    assert_eq!(h.queue().messages().len(), 1);
}

#[tokio::test]
async fn the_default_window_is_one_hour() {
    assert_eq!(DEFAULT_MAX_DELIVERY_AGE, Duration::from_secs(3600));
}

#[tokio::test]
async fn the_window_is_configurable_and_off_when_zero() {
    // Arrange: a delivery sent ten minutes ago, and a day-old one.
    let ten_minutes = push_body(&bitbucket_date(now() - chrono::Duration::minutes(10)));
    let a_day = push_body(&bitbucket_date(now() - chrono::Duration::days(1)));
    let five_minutes = handler().with_max_age(Duration::from_secs(300));
    let off = handler().with_max_age(Duration::ZERO);

    // Act
    let refused = post(
        &five_minutes,
        &push_headers(signed(&ten_minutes, SECRET), "w-1"),
        &ten_minutes,
    )
    .await;
    let accepted = post(&off, &push_headers(signed(&a_day, SECRET), "w-2"), &a_day).await;

    // Assert
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{}", refused.body);
    assert!(five_minutes.queue().messages().is_empty());
    assert_eq!(accepted.status, StatusCode::ACCEPTED, "{}", accepted.body);
    assert_eq!(off.queue().messages().len(), 1);
}

#[tokio::test]
async fn the_date_offset_is_honoured() {
    // 20:00 at +1000 is 10:00 UTC: 15 minutes before the clock, inside the window...
    let h = handler();
    let body = push_body("2026-11-24T20:00:30+1000");
    let answer = post(&h, &push_headers(signed(&body, SECRET), "tz-1"), &body).await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.body);

    // ...while 20:00 UTC the day before is not.
    let body = push_body("2026-11-23T20:00:30+0000");
    let answer = post(&h, &push_headers(signed(&body, SECRET), "tz-2"), &body).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{}", answer.body);
}

#[tokio::test]
async fn the_window_follows_the_clock() {
    // Arrange: a clock the test moves, and a delivery sent at its start.
    let clock = Arc::new(Mutex::new(now()));
    let at = clock.clone();
    let h = WebhookHandler::new(MemoryQueue::default(), StaticSecret::new(hub_secret()))
        .with_clock(move || *at.lock().unwrap());
    let body = push_body(&bitbucket_date(now()));

    // Act: the same delivery, once fresh and once replayed two hours later.
    let first = post(&h, &push_headers(signed(&body, SECRET), "replay-1"), &body).await;
    *clock.lock().unwrap() += chrono::Duration::hours(2);
    let replay = post(&h, &push_headers(signed(&body, SECRET), "replay-2"), &body).await;

    // Assert
    assert_eq!(first.status, StatusCode::ACCEPTED, "{}", first.body);
    assert_eq!(replay.status, StatusCode::UNAUTHORIZED, "{}", replay.body);
    assert_eq!(h.queue().messages().len(), 1);
}

#[tokio::test]
async fn an_unsigned_stale_delivery_is_refused_for_its_signature_first() {
    let h = handler();
    let body = push_body(&bitbucket_date(now() - chrono::Duration::days(3)));

    let answer = post(&h, &push_headers(signed(&body, "wrong"), "both-1"), &body).await;

    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(answer.json()["error"], "invalid_signature", "{}", answer.body);
}

#[tokio::test]
async fn an_unreadable_date_is_a_bad_request() {
    let h = handler();
    let body = push_body("yesterday");

    let answer = post(&h, &push_headers(signed(&body, SECRET), "date-1"), &body).await;

    assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{}", answer.body);
    assert!(h.queue().messages().is_empty());
}

// ---------------------------------------------------------------------------------------------
// 10,000 generated deliveries
// ---------------------------------------------------------------------------------------------

/// How a generated delivery is signed.
#[derive(Debug, Clone)]
enum Signing {
    /// Rightly, with the current or the previous secret (the only ones that may be queued).
    Valid {
        previous: bool,
    },
    /// Rightly, with upper-case hex and surrounding spaces (still valid).
    ValidReshaped,
    /// Rightly, but over the body before it was changed in transit.
    OverAnotherBody,
    WithKey(String),
    WithEmptyKey,
    Header(String),
    RawHeader(Vec<u8>),
    Missing,
}

impl Signing {
    fn is_valid(&self) -> bool {
        matches!(self, Self::Valid { .. } | Self::ValidReshaped)
    }
}

/// What a generated body is.
#[derive(Debug, Clone)]
enum Body {
    /// A real push (fresh), byte for byte.
    Push,
    /// A real push, re-encoded: UTF-16, hex, form-encoded, with a byte-order mark, or behind a
    /// gzip header.
    Encoded(u8),
    Random(Vec<u8>),
    /// `n` copies of one byte: sizes around the 1 MiB cap.
    Filled(usize, u8),
}

fn body_bytes(kind: &Body) -> Vec<u8> {
    let push = push_body(&bitbucket_date(now()));
    match kind {
        Body::Push => push,
        Body::Encoded(0) => String::from_utf8(push)
            .unwrap()
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect(),
        Body::Encoded(1) => {
            use std::fmt::Write;
            push.iter()
                .fold(String::new(), |mut s, b| {
                    let _ = write!(s, "{b:02x}");
                    s
                })
                .into_bytes()
        }
        Body::Encoded(2) => {
            let mut form = b"payload=".to_vec();
            for b in push {
                if b.is_ascii_alphanumeric() {
                    form.push(b);
                } else {
                    form.extend(format!("%{b:02X}").bytes());
                }
            }
            form
        }
        Body::Encoded(3) => [b"\xEF\xBB\xBF".as_slice(), &push].concat(),
        Body::Encoded(_) => [b"\x1f\x8b\x08\x00".as_slice(), &push].concat(),
        Body::Random(bytes) => bytes.clone(),
        Body::Filled(n, b) => vec![*b; *n],
    }
}

/// The transit change applied to a body after signing (`None`: delivered as signed).
#[derive(Debug, Clone)]
enum Tamper {
    None,
    Flip(prop::sample::Index, u8),
    Append(Vec<u8>),
    Truncate(prop::sample::Index),
}

fn apply(tamper: &Tamper, body: &mut Vec<u8>) {
    match tamper {
        Tamper::None => {}
        Tamper::Flip(i, flip) if !body.is_empty() => {
            let i = i.index(body.len());
            body[i] ^= *flip;
        }
        Tamper::Flip(..) => body.push(b' '),
        Tamper::Append(extra) => body.extend_from_slice(extra),
        Tamper::Truncate(i) if !body.is_empty() => {
            let keep = i.index(body.len());
            body.truncate(keep);
        }
        Tamper::Truncate(_) => body.push(b'x'),
    }
}

#[derive(Debug, Clone)]
struct Delivery {
    method: Method,
    path: String,
    event_key: Option<Vec<u8>>,
    request_id: Option<String>,
    body: Body,
    signing: Signing,
    tamper: Tamper,
    extra_headers: Vec<(String, Vec<u8>)>,
    duplicate_signature: Option<String>,
}

fn header_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        "[ -~]{0,40}".prop_map(String::into_bytes),
        proptest::collection::vec(any::<u8>(), 0..40),
    ]
}

fn delivery() -> impl Strategy<Value = Delivery> {
    let method = prop_oneof![
        8 => Just(Method::POST),
        1 => Just(Method::GET),
        1 => Just(Method::PUT),
        1 => "[A-Z]{1,10}".prop_map(|m| Method::from_bytes(m.as_bytes()).unwrap()),
    ];
    let path = prop_oneof![
        8 => Just(PATH.to_owned()),
        1 => Just("/gateway/public/sync/".to_owned()),
        1 => "/[ -~]{0,60}".prop_map(|p| p),
    ];
    let event_key = prop_oneof![
        6 => Just(Some(b"repo:refs_changed".to_vec())),
        1 => Just(Some(b"diagnostics:ping".to_vec())),
        1 => Just(None),
        1 => header_bytes().prop_map(Some),
    ];
    let request_id = prop_oneof![
        3 => "[a-zA-Z0-9-]{1,40}".prop_map(Some),
        1 => Just(None),
        1 => "[ -~]{0,80}".prop_map(Some),
    ];
    let body = prop_oneof![
        6 => Just(Body::Push),
        2 => (0u8..5).prop_map(Body::Encoded),
        3 => proptest::collection::vec(any::<u8>(), 0..2048).prop_map(Body::Random),
        1 => (
            // Bodies around the cap are few: hashing a MiB is slow in a debug build.
            prop_oneof![
                1 => Just(MAX_BODY_BYTES - 1),
                1 => Just(MAX_BODY_BYTES),
                1 => Just(MAX_BODY_BYTES + 1),
                1 => (MAX_BODY_BYTES + 1)..(2 * MAX_BODY_BYTES),
                40 => 0usize..20_000,
            ],
            any::<u8>()
        )
            .prop_map(|(n, b)| Body::Filled(n, b)),
    ];
    let signing = prop_oneof![
        6 => any::<bool>().prop_map(|previous| Signing::Valid { previous }),
        1 => Just(Signing::ValidReshaped),
        2 => Just(Signing::OverAnotherBody),
        1 => "[ -~]{0,32}"
            .prop_filter("another key", |k| k != SECRET && k != PREVIOUS)
            .prop_map(Signing::WithKey),
        1 => Just(Signing::WithEmptyKey),
        1 => prop_oneof![
            "sha256=[0-9a-f]{64}",
            "sha1=[0-9a-f]{40}",
            "(sha256|SHA256|md5)=[ -~]{0,70}",
            "[ -~]{0,80}",
        ]
        .prop_map(Signing::Header),
        1 => proptest::collection::vec(any::<u8>(), 0..80).prop_map(Signing::RawHeader),
        1 => Just(Signing::Missing),
    ];
    let tamper = prop_oneof![
        6 => Just(Tamper::None),
        1 => (any::<prop::sample::Index>(), 1u8..=255).prop_map(|(i, f)| Tamper::Flip(i, f)),
        1 => proptest::collection::vec(any::<u8>(), 1..8).prop_map(Tamper::Append),
        1 => any::<prop::sample::Index>().prop_map(Tamper::Truncate),
    ];
    let extra_headers = proptest::collection::vec(("x-[a-z-]{1,20}", header_bytes()), 0..4);
    let duplicate_signature = proptest::option::weighted(0.1, "sha256=[0-9a-f]{64}");
    (
        method,
        path,
        event_key,
        request_id,
        body,
        signing,
        tamper,
        extra_headers,
        duplicate_signature,
    )
        .prop_map(
            |(method, path, event_key, request_id, body, signing, tamper, extra_headers, duplicate_signature)| {
                Delivery {
                    method,
                    path,
                    event_key,
                    request_id,
                    body,
                    signing,
                    tamper,
                    extra_headers,
                    duplicate_signature,
                }
            },
        )
}

/// The request for `d`, and whether it is signed with an accepted secret over the bytes sent.
fn request(d: &Delivery) -> (HeaderMap, Vec<u8>, bool) {
    let signed_body = body_bytes(&d.body);
    let mut body = signed_body.clone();
    apply(&d.tamper, &mut body);
    let tampered = body != signed_body;
    let key = |k: &str| SecretString::from(k.to_owned());
    let signature: Option<Vec<u8>> = match &d.signing {
        Signing::Valid { previous } => {
            Some(sign(&signed_body, &key(if *previous { PREVIOUS } else { SECRET })).into_bytes())
        }
        Signing::ValidReshaped => Some(
            format!(
                "  {}  ",
                sign(&signed_body, &key(SECRET))
                    .to_uppercase()
                    .replacen("SHA256", "sha256", 1)
            )
            .into_bytes(),
        ),
        Signing::OverAnotherBody => {
            let mut other = signed_body.clone();
            other.extend_from_slice(b" ");
            Some(sign(&other, &key(SECRET)).into_bytes())
        }
        Signing::WithKey(k) => Some(sign(&signed_body, &key(k)).into_bytes()),
        Signing::WithEmptyKey => Some(sign(&signed_body, &key("")).into_bytes()),
        Signing::Header(h) => Some(h.clone().into_bytes()),
        Signing::RawHeader(h) => Some(h.clone()),
        Signing::Missing => None,
    };
    let mut headers = HeaderMap::new();
    for (name, value) in &d.extra_headers {
        if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_bytes(value)) {
            headers.append(name, value);
        }
    }
    let mut valid = d.signing.is_valid() && !tampered;
    match signature.as_deref().map(HeaderValue::from_bytes) {
        Some(Ok(value)) => {
            headers.insert("x-hub-signature", value);
        }
        // A value HTTP cannot carry never reaches the handler: the delivery arrives unsigned.
        Some(Err(_)) | None => valid = false,
    }
    if let Some(second) = &d.duplicate_signature {
        headers.append("x-hub-signature", HeaderValue::from_str(second).unwrap());
    }
    if let Some(Ok(key)) = d.event_key.as_deref().map(HeaderValue::from_bytes) {
        headers.insert("x-event-key", key);
    }
    if let Some(Ok(id)) = d.request_id.as_deref().map(HeaderValue::from_str) {
        headers.insert("x-request-id", id);
    }
    (headers, body, valid)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 10_000,
        failure_persistence: None,
        // A cheaper generator than the default ChaCha: the cases need variety, not cryptography.
        rng_algorithm: proptest::test_runner::RngAlgorithm::XorShift,
        ..ProptestConfig::default()
    })]

    #[test]
    fn no_generated_delivery_without_a_valid_signature_is_queued_and_none_panics(d in delivery()) {
        // Arrange
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let h = handler();
        let (headers, body, validly_signed) = request(&d);

        // Act
        let answer = runtime.block_on(h.handle(WebhookRequest {
            method: &d.method,
            path: &d.path,
            headers: &headers,
            body: &body,
        }));

        // Assert
        let queued = h.queue().messages().len();
        prop_assert!(queued <= 1);
        if !validly_signed {
            prop_assert_eq!(queued, 0, "queued without a valid signature: {}", answer.body);
            prop_assert_ne!(answer.verdict(), "queued");
        }
        if queued == 1 {
            prop_assert_eq!(answer.status, StatusCode::ACCEPTED);
        }
        prop_assert!(answer.status.is_client_error() || answer.status.is_success(), "{} {}", answer.status, answer.body);
    }
}
