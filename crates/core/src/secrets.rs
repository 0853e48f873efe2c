//! The hub secret (Bitbucket base URL, access token, webhook secrets), the port that hands it out
//! ([`SecretSource`], listed with the others in `ports`), and a time-to-live cache in front of any
//! source, so a secret store is read once per cold start and then every few
//! minutes, never once per request, and a store that cannot be reached for a while does not stop
//! the webhook (within a hard expiry) while one that was never read fails closed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use secrecy::SecretString;
use serde::Deserialize;
use tokio::sync::Mutex;
use tracing::warn;

use crate::signature::WebhookKeys;

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("the hub secret is not configured: {0}")]
    Missing(String),
    #[error("the hub secret is not valid: {0}")]
    Invalid(String),
    #[error("the hub secret could not be read: {message}")]
    Unavailable {
        message: String,
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
}

impl SecretError {
    /// A missing or invalid secret needs an administrator; an unavailable one may come back.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }
}

/// Where the Bitbucket base URL, access token and webhook secrets come from.
///
/// The secret is handed out shared ([`Arc`]): a caching source gives every request the value it
/// holds, without copying the token and the webhook secrets (or their keyed HMAC states) each time.
pub trait SecretSource: Send + Sync {
    fn hub_secret(&self) -> impl Future<Output = Result<Arc<HubSecret>, SecretError>> + Send;
}

/// The JSON object stored in the secret:
/// `{"baseUrl": "...", "accessToken": "...", "webhookSecret": "...", "previousWebhookSecrets": []}`.
///
/// Every way in ([`HubSecret::from_json`] and `Deserialize`) checks it: nothing required is empty,
/// and no accepted webhook secret is empty or blank (an empty HMAC key is one anyone can sign
/// with). `Debug` never prints the token or the webhook secrets (they are [`SecretString`]s).
///
/// The webhook secrets are read-only once checked: the HMAC-SHA256 states keyed with them
/// ([`HubSecret::webhook_keys`]) are built with the value, once per secret read.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "RawHubSecret")]
pub struct HubSecret {
    /// The Bitbucket Data Center base URL, e.g. `https://bitbucket.example.com` (with a context
    /// path if the server has one).
    pub base_url: String,
    /// The HTTP access token (Repositories: Read).
    pub access_token: SecretString,
    /// The secret every webhook signs its deliveries with.
    webhook_secret: SecretString,
    /// Secrets still accepted while webhooks are moved to a new one.
    previous_webhook_secrets: Vec<SecretString>,
    /// The accepted webhook secrets, keyed.
    webhook_keys: WebhookKeys,
}

/// The secret's JSON as written, before it is checked.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawHubSecret {
    base_url: String,
    access_token: SecretString,
    webhook_secret: SecretString,
    #[serde(default)]
    previous_webhook_secrets: Vec<SecretString>,
}

impl TryFrom<RawHubSecret> for HubSecret {
    type Error = SecretError;

    /// The checks; the error names the field, never a value.
    fn try_from(raw: RawHubSecret) -> Result<Self, SecretError> {
        use secrecy::ExposeSecret;
        let blank = |s: &SecretString| s.expose_secret().trim().is_empty();
        if raw.base_url.trim().is_empty() {
            return Err(SecretError::Invalid("baseUrl is empty".into()));
        }
        if !(raw.base_url.starts_with("https://") || raw.base_url.starts_with("http://")) {
            return Err(SecretError::Invalid(
                "baseUrl must start with https:// or http://".into(),
            ));
        }
        if blank(&raw.access_token) {
            return Err(SecretError::Invalid("accessToken is empty".into()));
        }
        if blank(&raw.webhook_secret) {
            return Err(SecretError::Invalid(
                "webhookSecret is empty or blank; every delivery is refused until it is set".into(),
            ));
        }
        if let Some(i) = raw.previous_webhook_secrets.iter().position(blank) {
            return Err(SecretError::Invalid(format!(
                "previousWebhookSecrets[{i}] is empty or blank, which would let anyone sign deliveries; remove it"
            )));
        }
        let webhook_keys = WebhookKeys::new(std::iter::once(&raw.webhook_secret).chain(&raw.previous_webhook_secrets));
        Ok(Self {
            base_url: raw.base_url,
            access_token: raw.access_token,
            webhook_secret: raw.webhook_secret,
            previous_webhook_secrets: raw.previous_webhook_secrets,
            webhook_keys,
        })
    }
}

impl HubSecret {
    /// Parses the secret's JSON text and checks it (see [`HubSecret`]). The error names the
    /// field, never a value.
    pub fn from_json(text: &str) -> Result<Self, SecretError> {
        let raw: RawHubSecret = serde_json::from_str(text).map_err(|e| {
            // serde_json's message may quote a value; keep only the position and category.
            SecretError::Invalid(format!(
                "expected a JSON object with baseUrl, accessToken and webhookSecret ({:?} error at line {} column {})",
                e.classify(),
                e.line(),
                e.column()
            ))
        })?;
        Self::try_from(raw)
    }

    /// The secret every webhook signs its deliveries with.
    pub fn webhook_secret(&self) -> &SecretString {
        &self.webhook_secret
    }

    /// Secrets still accepted while webhooks are moved to a new one.
    pub fn previous_webhook_secrets(&self) -> &[SecretString] {
        &self.previous_webhook_secrets
    }

    /// Every webhook secret currently accepted, the current one first. None is blank: the
    /// checks refuse a secret holding one, so no one may sign with an empty key.
    pub fn accepted_webhook_secrets(&self) -> impl Iterator<Item = &SecretString> {
        std::iter::once(&self.webhook_secret).chain(self.previous_webhook_secrets.iter())
    }

    /// The accepted webhook secrets as keyed HMAC-SHA256 states, in the same order, for
    /// [`crate::signature::Signature::verify_keyed`].
    pub fn webhook_keys(&self) -> &WebhookKeys {
        &self.webhook_keys
    }
}

/// How long a secret read from the store is reused.
pub const DEFAULT_SECRET_TTL: Duration = Duration::from_secs(300);

/// How long a cached secret keeps serving while the store cannot be reached.
pub const DEFAULT_SECRET_HARD_EXPIRY: Duration = Duration::from_secs(3600);
/// While the store cannot be reached, how long the cached secret serves before it is asked again.
const UNREACHABLE_RETRY: Duration = Duration::from_secs(30);

/// A [`SecretSource`] that remembers the last value read for a time-to-live (five minutes by
/// default), so the store is read once per cold start and then now and then, never per request.
///
/// When the store cannot be reached ([`SecretError::Unavailable`]) after a value was read, that
/// value keeps serving, with a warning, until a longer hard expiry (one hour by default) counted
/// from when it was read; meanwhile the store is asked again at most every 30 seconds. A cold start
/// without any value, a store that answers that the secret is missing or invalid, and a value past
/// its hard expiry all fail closed: the error is returned and the cached value is dropped.
pub struct CachedSecretSource<S> {
    inner: S,
    ttl: Duration,
    hard_expiry: Duration,
    clock: Arc<dyn Fn() -> Instant + Send + Sync>,
    cached: Mutex<Option<Cached>>,
}

struct Cached {
    secret: Arc<HubSecret>,
    /// When the store last answered with it.
    read_at: Instant,
    /// When the store is asked next.
    refresh_at: Instant,
}

impl<S: SecretSource> CachedSecretSource<S> {
    /// A cache reusing a value for `ttl`, and for [`DEFAULT_SECRET_HARD_EXPIRY`] (or `ttl` if
    /// longer) while the store cannot be reached.
    pub fn new(inner: S, ttl: Duration) -> Self {
        Self {
            inner,
            ttl,
            hard_expiry: DEFAULT_SECRET_HARD_EXPIRY.max(ttl),
            clock: Arc::new(Instant::now),
            cached: Mutex::new(None),
        }
    }

    /// How long a value may serve, from when it was read, while the store cannot be reached.
    pub fn with_hard_expiry(mut self, hard_expiry: Duration) -> Self {
        self.hard_expiry = hard_expiry.max(self.ttl);
        self
    }

    /// Reads the time from `clock` instead of the system's monotonic clock (for tests).
    pub fn with_clock(mut self, clock: impl Fn() -> Instant + Send + Sync + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    pub fn inner(&self) -> &S {
        &self.inner
    }
}

impl<S: SecretSource> SecretSource for CachedSecretSource<S> {
    async fn hub_secret(&self) -> Result<Arc<HubSecret>, SecretError> {
        let now = (self.clock)();
        let mut cached = self.cached.lock().await;
        if let Some(entry) = cached.as_ref()
            && now < entry.refresh_at
        {
            return Ok(Arc::clone(&entry.secret));
        }
        match self.inner.hub_secret().await {
            Ok(secret) => {
                *cached = Some(Cached {
                    secret: secret.clone(),
                    read_at: now,
                    refresh_at: now + self.ttl,
                });
                Ok(secret)
            }
            Err(e @ SecretError::Unavailable { .. }) => match cached.as_mut() {
                Some(entry) if now.duration_since(entry.read_at) < self.hard_expiry => {
                    let age = now.duration_since(entry.read_at);
                    let left = self.hard_expiry - age;
                    warn!(
                        error = %e,
                        age_secs = age.as_secs(),
                        serving_for_at_most_secs = left.as_secs(),
                        "the secret store cannot be reached; the secret read earlier keeps serving until its hard expiry"
                    );
                    entry.refresh_at = now + UNREACHABLE_RETRY.min(self.ttl).min(left);
                    Ok(Arc::clone(&entry.secret))
                }
                _ => {
                    *cached = None;
                    Err(e)
                }
            },
            Err(e) => {
                *cached = None;
                Err(e)
            }
        }
    }
}

/// A fixed secret, for the local process (read from its configuration) and for tests.
#[derive(Debug, Clone)]
pub struct StaticSecret(Arc<HubSecret>);

impl StaticSecret {
    pub fn new(secret: HubSecret) -> Self {
        Self(Arc::new(secret))
    }
}

impl SecretSource for StaticSecret {
    async fn hub_secret(&self) -> Result<Arc<HubSecret>, SecretError> {
        Ok(Arc::clone(&self.0))
    }
}

/// Reads the secret of `source` once, ahead of the first request that needs it: a function calls
/// this while its runtime fetches the first event, so a cold start's first answer does not wait
/// for Secrets Manager. A failure is only logged (at debug): nothing is kept, and the first
/// request asks again and fails or is refused as it would have been.
pub async fn read_ahead(source: &impl SecretSource) {
    if let Err(e) = source.hub_secret().await {
        tracing::debug!(error = %e, "the hub secret could not be read ahead of the first event");
    }
}

/// No secret configured at all: every use fails closed with [`SecretError::Missing`].
impl<S: SecretSource> SecretSource for Option<S> {
    async fn hub_secret(&self) -> Result<Arc<HubSecret>, SecretError> {
        match self {
            Some(source) => source.hub_secret().await,
            None => Err(SecretError::Missing(
                "no hub secret is configured (HUB_SECRET_ID or the local configuration)".into(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Counting(AtomicUsize);
    impl SecretSource for Counting {
        async fn hub_secret(&self) -> Result<Arc<HubSecret>, SecretError> {
            self.0.fetch_add(1, Ordering::SeqCst);
            HubSecret::from_json(r#"{"baseUrl":"http://127.0.0.1:1","accessToken":"t","webhookSecret":"w"}"#)
                .map(Arc::new)
        }
    }

    #[tokio::test]
    async fn the_cache_reads_the_source_once_within_the_ttl() {
        let cache = CachedSecretSource::new(Counting(AtomicUsize::new(0)), Duration::from_secs(60));
        for _ in 0..5 {
            cache.hub_secret().await.unwrap();
        }
        assert_eq!(cache.inner().0.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn every_request_within_the_ttl_shares_the_value_read_instead_of_a_copy() {
        let cache = CachedSecretSource::new(Counting(AtomicUsize::new(0)), Duration::from_secs(60));

        let (first, second) = (cache.hub_secret().await.unwrap(), cache.hub_secret().await.unwrap());

        assert!(Arc::ptr_eq(&first, &second));
        assert_eq!(first.webhook_keys().len(), 1);
    }

    #[tokio::test]
    async fn an_expired_entry_is_read_again() {
        let cache = CachedSecretSource::new(Counting(AtomicUsize::new(0)), Duration::ZERO);
        cache.hub_secret().await.unwrap();
        cache.hub_secret().await.unwrap();
        assert_eq!(cache.inner().0.load(Ordering::SeqCst), 2);
    }

    /// What a scripted source answers, call after call (the last answer repeats).
    #[derive(Clone, Copy)]
    enum Answer {
        Value(&'static str),
        Unreachable,
        Invalid,
    }

    struct Scripted {
        answers: std::sync::Mutex<std::collections::VecDeque<Answer>>,
        calls: AtomicUsize,
    }

    impl Scripted {
        fn new(answers: &[Answer]) -> Self {
            Self {
                answers: std::sync::Mutex::new(answers.iter().copied().collect()),
                calls: AtomicUsize::new(0),
            }
        }
        fn calls(&self) -> usize {
            self.calls.load(Ordering::SeqCst)
        }
    }

    impl SecretSource for Scripted {
        async fn hub_secret(&self) -> Result<Arc<HubSecret>, SecretError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let answer = {
                let mut answers = self.answers.lock().unwrap();
                if answers.len() > 1 {
                    answers.pop_front()
                } else {
                    answers.front().copied()
                }
            };
            match answer {
                Some(Answer::Value(hook)) => HubSecret::from_json(&format!(
                    r#"{{"baseUrl":"http://127.0.0.1:1","accessToken":"t","webhookSecret":"{hook}"}}"#
                ))
                .map(Arc::new),
                Some(Answer::Invalid) => Err(SecretError::Invalid("webhookSecret is empty".into())),
                Some(Answer::Unreachable) | None => Err(SecretError::Unavailable {
                    message: "connection refused".into(),
                    source: None,
                }),
            }
        }
    }

    fn hook(secret: &HubSecret) -> &str {
        use secrecy::ExposeSecret;
        secret.webhook_secret().expose_secret()
    }

    const TTL: Duration = Duration::from_secs(300);

    /// A clock the test moves by hand.
    #[derive(Clone)]
    struct TestClock(Arc<std::sync::Mutex<Instant>>);

    impl TestClock {
        fn new() -> Self {
            Self(Arc::new(std::sync::Mutex::new(Instant::now())))
        }
        fn advance(&self, by: Duration) {
            *self.0.lock().unwrap() += by;
        }
        fn cache(&self, source: Scripted) -> CachedSecretSource<Scripted> {
            let clock = self.clone();
            CachedSecretSource::new(source, TTL).with_clock(move || *clock.0.lock().unwrap())
        }
    }

    #[tokio::test]
    async fn an_unreachable_store_keeps_the_cached_secret_serving_until_the_hard_expiry() {
        // Arrange: one good read, then the store cannot be reached any more.
        let clock = TestClock::new();
        let cache = clock.cache(Scripted::new(&[Answer::Value("w1"), Answer::Unreachable]));
        assert_eq!(hook(&cache.hub_secret().await.unwrap()), "w1");

        // Act and assert: past the time-to-live the cached value still serves...
        clock.advance(TTL + Duration::from_secs(1));
        assert_eq!(hook(&cache.hub_secret().await.unwrap()), "w1");
        clock.advance(DEFAULT_SECRET_HARD_EXPIRY - TTL - Duration::from_secs(2));
        assert_eq!(hook(&cache.hub_secret().await.unwrap()), "w1");

        // ...until the hard expiry, after which every request fails closed.
        clock.advance(Duration::from_secs(1));
        let err = cache.hub_secret().await.unwrap_err();
        assert!(err.is_retryable(), "{err}");
        assert!(cache.hub_secret().await.is_err());
    }

    #[tokio::test]
    async fn a_cold_start_with_an_unreachable_store_fails_closed() {
        let cache = TestClock::new().cache(Scripted::new(&[Answer::Unreachable]));
        assert!(matches!(cache.hub_secret().await, Err(SecretError::Unavailable { .. })));
    }

    #[tokio::test]
    async fn a_secret_that_became_invalid_is_not_served_from_the_cache() {
        let clock = TestClock::new();
        let cache = clock.cache(Scripted::new(&[Answer::Value("w1"), Answer::Invalid]));
        cache.hub_secret().await.unwrap();
        clock.advance(TTL);
        assert!(matches!(cache.hub_secret().await, Err(SecretError::Invalid(_))));
        // The invalid answer is not hidden by the old value on the next request either.
        assert!(cache.hub_secret().await.is_err());
    }

    #[tokio::test]
    async fn while_the_store_is_unreachable_it_is_asked_again_now_and_then_and_its_return_is_seen() {
        // Arrange
        let clock = TestClock::new();
        let cache = clock.cache(Scripted::new(&[
            Answer::Value("w1"),
            Answer::Unreachable,
            Answer::Value("w2"),
        ]));
        cache.hub_secret().await.unwrap();
        clock.advance(TTL);
        assert_eq!(hook(&cache.hub_secret().await.unwrap()), "w1");
        let calls = cache.inner().calls();

        // Act: requests right after a failed read are served from the cache without asking...
        for _ in 0..10 {
            assert_eq!(hook(&cache.hub_secret().await.unwrap()), "w1");
        }
        assert_eq!(cache.inner().calls(), calls);
        // ...and a while later the store is asked again, and answers.
        clock.advance(UNREACHABLE_RETRY);

        // Assert
        assert_eq!(hook(&cache.hub_secret().await.unwrap()), "w2");
        assert_eq!(cache.inner().calls(), calls + 1);
    }

    #[test]
    fn invalid_secret_errors_never_quote_values() {
        let err = HubSecret::from_json(r#"{"baseUrl":"http://x","accessToken":"tok-SECRET-123","webhookSecret":5}"#)
            .unwrap_err()
            .to_string();
        assert!(!err.contains("SECRET-123"), "{err}");
        let err = HubSecret::from_json(r#"{"baseUrl":"ftp://x","accessToken":"tok-SECRET-123","webhookSecret":"w"}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("baseUrl") && !err.contains("SECRET-123"), "{err}");
    }

    #[test]
    fn empty_or_blank_webhook_secrets_are_refused_at_load_naming_the_field() {
        for (secrets, field) in [
            (r#""webhookSecret":"""#, "webhookSecret"),
            (r#""webhookSecret":"  \t ""#, "webhookSecret"),
            (
                r#""webhookSecret":"w","previousWebhookSecrets":[""]"#,
                "previousWebhookSecrets[0]",
            ),
            (
                r#""webhookSecret":"w","previousWebhookSecrets":["old","   "]"#,
                "previousWebhookSecrets[1]",
            ),
        ] {
            let err = HubSecret::from_json(&format!(r#"{{"baseUrl":"http://x","accessToken":"t",{secrets}}}"#))
                .expect_err(secrets)
                .to_string();
            assert!(err.contains(field), "{secrets}: {err}");
        }
    }

    #[test]
    fn deserializing_directly_checks_the_secret_too() {
        let parsed: Result<HubSecret, _> = serde_json::from_str(
            r#"{"baseUrl":"http://x","accessToken":"t","webhookSecret":"w","previousWebhookSecrets":[""]}"#,
        );
        assert!(parsed.is_err());
    }

    #[test]
    fn debug_output_hides_the_token() {
        let s = HubSecret::from_json(
            r#"{"baseUrl":"http://x","accessToken":"tok-SECRET-123","webhookSecret":"hook-SECRET-456","previousWebhookSecrets":["old-SECRET-789"]}"#,
        )
        .unwrap();
        let printed = format!("{s:?}");
        assert!(!printed.contains("SECRET-"), "{printed}");
        assert_eq!(s.accepted_webhook_secrets().count(), 2);
    }
}
