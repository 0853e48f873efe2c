//! The hub secret (Bitbucket base URL, access token, webhook secrets) and a time-to-live cache in
//! front of any [`SecretSource`], so a secret store is read once per cold start and then every few
//! minutes, never once per request.

use std::sync::Arc;
use std::time::{Duration, Instant};

use secrecy::SecretString;
use serde::Deserialize;
use tokio::sync::Mutex;

use crate::ports::{SecretError, SecretSource};

/// The JSON object stored in the secret:
/// `{"baseUrl": "...", "accessToken": "...", "webhookSecret": "...", "previousWebhookSecrets": []}`.
///
/// `Debug` never prints the token or the webhook secrets (they are [`SecretString`]s).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HubSecret {
    /// The Bitbucket Data Center base URL, e.g. `https://bitbucket.example.com` (with a context
    /// path if the server has one).
    pub base_url: String,
    /// The HTTP access token (Repositories: Read).
    pub access_token: SecretString,
    /// The secret every webhook signs its deliveries with.
    pub webhook_secret: SecretString,
    /// Secrets still accepted while webhooks are moved to a new one.
    #[serde(default)]
    pub previous_webhook_secrets: Vec<SecretString>,
}

impl HubSecret {
    /// Parses the secret's JSON text and checks that nothing required is empty. The error names
    /// the field, never a value.
    pub fn from_json(text: &str) -> Result<Self, SecretError> {
        use secrecy::ExposeSecret;
        let secret: HubSecret = serde_json::from_str(text).map_err(|e| {
            // serde_json's message may quote a value; keep only the position and category.
            SecretError::Invalid(format!(
                "expected a JSON object with baseUrl, accessToken and webhookSecret ({:?} error at line {} column {})",
                e.classify(),
                e.line(),
                e.column()
            ))
        })?;
        if secret.base_url.trim().is_empty() {
            return Err(SecretError::Invalid("baseUrl is empty".into()));
        }
        if !(secret.base_url.starts_with("https://") || secret.base_url.starts_with("http://")) {
            return Err(SecretError::Invalid(
                "baseUrl must start with https:// or http://".into(),
            ));
        }
        if secret.access_token.expose_secret().trim().is_empty() {
            return Err(SecretError::Invalid("accessToken is empty".into()));
        }
        if secret.webhook_secret.expose_secret().is_empty() {
            return Err(SecretError::Invalid("webhookSecret is empty".into()));
        }
        Ok(secret)
    }

    /// Every webhook secret currently accepted, the current one first.
    pub fn accepted_webhook_secrets(&self) -> impl Iterator<Item = &SecretString> {
        std::iter::once(&self.webhook_secret).chain(self.previous_webhook_secrets.iter())
    }
}

/// How long a secret read from the store is reused.
pub const DEFAULT_SECRET_TTL: Duration = Duration::from_secs(300);

/// A [`SecretSource`] that remembers the last value for a time-to-live.
pub struct CachedSecretSource<S> {
    inner: S,
    ttl: Duration,
    cached: Mutex<Option<(Instant, Arc<HubSecret>)>>,
}

impl<S: SecretSource> CachedSecretSource<S> {
    pub fn new(inner: S, ttl: Duration) -> Self {
        Self {
            inner,
            ttl,
            cached: Mutex::new(None),
        }
    }

    pub fn inner(&self) -> &S {
        &self.inner
    }
}

impl<S: SecretSource> SecretSource for CachedSecretSource<S> {
    async fn hub_secret(&self) -> Result<HubSecret, SecretError> {
        let mut cached = self.cached.lock().await;
        if let Some((at, secret)) = cached.as_ref()
            && at.elapsed() < self.ttl
        {
            return Ok(HubSecret::clone(secret));
        }
        let fresh = Arc::new(self.inner.hub_secret().await?);
        *cached = Some((Instant::now(), fresh.clone()));
        Ok(HubSecret::clone(&fresh))
    }
}

/// A fixed secret, for the local process (read from its configuration) and for tests.
#[derive(Debug, Clone)]
pub struct StaticSecret(pub HubSecret);

impl SecretSource for StaticSecret {
    async fn hub_secret(&self) -> Result<HubSecret, SecretError> {
        Ok(self.0.clone())
    }
}

/// No secret configured at all: every use fails closed with [`SecretError::Missing`].
impl<S: SecretSource> SecretSource for Option<S> {
    async fn hub_secret(&self) -> Result<HubSecret, SecretError> {
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
        async fn hub_secret(&self) -> Result<HubSecret, SecretError> {
            self.0.fetch_add(1, Ordering::SeqCst);
            HubSecret::from_json(r#"{"baseUrl":"http://127.0.0.1:1","accessToken":"t","webhookSecret":"w"}"#)
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
    async fn an_expired_entry_is_read_again() {
        let cache = CachedSecretSource::new(Counting(AtomicUsize::new(0)), Duration::ZERO);
        cache.hub_secret().await.unwrap();
        cache.hub_secret().await.unwrap();
        assert_eq!(cache.inner().0.load(Ordering::SeqCst), 2);
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
