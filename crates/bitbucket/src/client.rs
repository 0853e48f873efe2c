//! The client: its options, the shared `reqwest::Client`, and one authenticated GET with its
//! retries. What each resource means is in [`crate::git_host`].

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use chrono::Utc;
use hubsync_core::ids::RepoRef;
use hubsync_core::ports::{Admission, GitHostError, GitHostErrorKind, Oversize};
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderValue, RETRY_AFTER};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use tokio::time::{Instant, timeout_at};
use tracing::Instrument;
use url::Url;

use crate::error::{ClientBuildError, chain, describe_body, redact};
use crate::paths::ApiRoot;
use crate::retry::{RetryPolicy, is_retryable_status, parse_retry_after};

/// How the client pages, retries and times out. `Default` holds values fit for production.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientOptions {
    /// Items asked per page (`limit`). The server may apply a lower hard limit; the client
    /// follows `nextPageStart` whatever it is.
    pub page_limit: u32,
    /// The server's `page.max.changes`: Bitbucket lists at most this many changes of one diff
    /// and cannot page past it. A list that reaches it is reported as truncated. Change pages
    /// ask for `min(page_limit, max_changes)` items.
    pub max_changes: usize,
    /// Attempts per request in all, the first included (at least 1).
    pub max_attempts: u32,
    /// The wait before the first retry; it doubles on each further one.
    pub initial_backoff: Duration,
    /// The longest wait between two attempts, `Retry-After` included.
    pub max_backoff: Duration,
    /// The longest one attempt may take, from connecting to the last byte of the body (not
    /// counting the time a raw file waits for the fetch budget to admit its bytes).
    pub request_timeout: Duration,
    /// The longest a TCP + TLS connection may take (used by [`BitbucketClient::http_client`]).
    pub connect_timeout: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            page_limit: 1000,
            max_changes: 1000,
            max_attempts: 5,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
        }
    }
}

impl ClientOptions {
    pub(crate) fn validate(&self) -> Result<(), ClientBuildError> {
        let invalid = |what: &str| Err(ClientBuildError::Option(what.to_owned()));
        if self.page_limit == 0 {
            return invalid("page_limit must be at least 1");
        }
        if self.max_changes == 0 {
            return invalid("max_changes must be at least 1");
        }
        if self.max_attempts == 0 {
            return invalid("max_attempts must be at least 1");
        }
        if self.request_timeout.is_zero() {
            return invalid("request_timeout must be positive");
        }
        Ok(())
    }

    pub(crate) fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy {
            max_attempts: self.max_attempts,
            initial_backoff: self.initial_backoff,
            max_backoff: self.max_backoff,
        }
    }
}

/// A read-only Bitbucket Data Center REST client for one base URL and one access token; it
/// implements [`GitHost`](hubsync_core::ports::GitHost).
///
/// It builds every URL from the base URL, the repository, commit ids and file paths, never from
/// an answer or a webhook payload, and does not follow redirects (see
/// [`BitbucketClient::http_client`]). The token is sent as `Authorization: Bearer` and appears in
/// no error, log line or `Debug` output.
#[derive(Clone)]
pub struct BitbucketClient {
    http: SharedHttp,
    api: ApiRoot,
    token: SecretString,
    options: ClientOptions,
}

impl fmt::Debug for BitbucketClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BitbucketClient")
            .field("base_url", &self.api.base())
            .field("token", &"[redacted]")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// The `reqwest::Client` (and its connection pool) that clients share: given built, or built by
/// [`BitbucketClient::http_client`] at the first request that needs it. Building it reads the
/// system's trust roots (`SSL_CERT_FILE` and `SSL_CERT_DIR` included), several milliseconds that
/// a sync function's cold start need not pay before its first answer when that answer calls no
/// Bitbucket (a push to a repository that is not registered).
#[derive(Clone)]
pub(crate) struct SharedHttp(Arc<Http>);

struct Http {
    client: OnceLock<reqwest::Client>,
    options: ClientOptions,
}

impl SharedHttp {
    /// Built already.
    pub(crate) fn built(client: reqwest::Client) -> Self {
        Self(Arc::new(Http {
            client: OnceLock::from(client),
            options: ClientOptions::default(),
        }))
    }

    /// Built with `options` at its first use.
    pub(crate) fn on_first_use(options: ClientOptions) -> Self {
        Self(Arc::new(Http {
            client: OnceLock::new(),
            options,
        }))
    }

    /// The client, built now if it was not yet (a failure is not kept: the next use tries again).
    pub(crate) fn get(&self) -> Result<&reqwest::Client, reqwest::Error> {
        if let Some(client) = self.0.client.get() {
            return Ok(client);
        }
        let client = BitbucketClient::build_http(&self.0.options)?;
        Ok(self.0.client.get_or_init(|| client))
    }

    /// Whether the client has been built.
    #[cfg(test)]
    pub(crate) fn is_built(&self) -> bool {
        self.0.client.get().is_some()
    }
}

/// How much of an error answer's body is read (enough for Bitbucket's `errors` JSON).
const ERROR_BODY_LIMIT: usize = 64 * 1024;
/// The most memory reserved up front from a `Content-Length` (the body may still be longer).
const PREALLOCATE_LIMIT: u64 = 64 * 1024 * 1024;

/// What a request is for: named in every error and in the request's log span.
pub(crate) struct Call<'a> {
    pub repo: &'a RepoRef,
    pub operation: String,
}

impl<'a> Call<'a> {
    pub(crate) fn new(repo: &'a RepoRef, operation: impl Into<String>) -> Self {
        Self {
            repo,
            operation: operation.into(),
        }
    }
}

/// What the body of a request should be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expect {
    Json,
    /// A file's bytes, read up to `limit`: a larger body is not read past it (not at all when
    /// its `Content-Length` says so).
    Raw {
        limit: u64,
    },
}

/// An answer that is not retried: its status and whole body (only the start of it for an error
/// status).
pub(crate) struct Reply {
    pub status: StatusCode,
    pub body: Vec<u8>,
    /// A successful raw answer larger than its limit: `body` is then empty.
    pub oversize: Option<Oversize>,
}

/// One attempt's answer, before the retry decision.
struct Answer {
    status: StatusCode,
    retry_after: Option<Duration>,
    body: Vec<u8>,
    oversize: Option<Oversize>,
}

/// Why the last attempt failed, for the error after every retry.
enum Failure {
    Status { status: StatusCode, body: Vec<u8> },
    Transport(AttemptError),
}

/// Why one attempt got no answer.
enum AttemptError {
    Http(reqwest::Error),
    /// No answer, or not all of it, within the request timeout.
    TimedOut(Duration),
}

impl AttemptError {
    /// What went wrong, without the URL (it is in the operation) nor the token.
    fn describe(self) -> String {
        match self {
            Self::Http(error) => chain(&error.without_url()),
            Self::TimedOut(after) => format!("no complete answer within {after:?}"),
        }
    }
}

impl From<reqwest::Error> for AttemptError {
    fn from(error: reqwest::Error) -> Self {
        Self::Http(error)
    }
}

impl BitbucketClient {
    /// A client with its own connection pool, built by [`BitbucketClient::http_client`].
    pub fn new(base_url: &str, token: SecretString, options: ClientOptions) -> Result<Self, ClientBuildError> {
        let http = Self::http_client(&options)?;
        Self::with_http(http, base_url, token, options)
    }

    /// A client that shares `http` (and its connection pool), so a new client can be made each
    /// time the token or base URL is rotated. Build `http` with [`BitbucketClient::http_client`]:
    /// a client that follows redirects would let a server send requests elsewhere.
    pub fn with_http(
        http: reqwest::Client,
        base_url: &str,
        token: SecretString,
        options: ClientOptions,
    ) -> Result<Self, ClientBuildError> {
        Self::with_shared_http(SharedHttp::built(http), base_url, token, options)
    }

    /// A client over `http`, which may not be built yet (see [`SharedHttp`]).
    pub(crate) fn with_shared_http(
        http: SharedHttp,
        base_url: &str,
        token: SecretString,
        options: ClientOptions,
    ) -> Result<Self, ClientBuildError> {
        options.validate()?;
        let api = ApiRoot::parse(base_url)?;
        let client = Self {
            http,
            api,
            token,
            options,
        };
        if client.token().is_empty() || client.authorization().is_none() {
            return Err(ClientBuildError::Token);
        }
        Ok(client)
    }

    /// The `reqwest::Client` this crate expects: no redirects followed (a 3xx answer is an
    /// error), the connect timeout of `options`, a `User-Agent` naming hubsync. Share it across
    /// clients with [`BitbucketClient::with_http`].
    pub fn http_client(options: &ClientOptions) -> Result<reqwest::Client, ClientBuildError> {
        Self::build_http(options).map_err(ClientBuildError::Http)
    }

    fn build_http(options: &ClientOptions) -> Result<reqwest::Client, reqwest::Error> {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(options.connect_timeout)
            .user_agent(concat!("hubsync/", env!("CARGO_PKG_VERSION")))
            .build()
    }

    /// Whether its HTTP client has been built (see [`SharedHttp`]).
    #[cfg(test)]
    pub(crate) fn http_is_built(&self) -> bool {
        self.http.is_built()
    }

    /// The base URL, normalized (no trailing slash).
    pub fn base_url(&self) -> &str {
        self.api.base()
    }

    pub fn options(&self) -> &ClientOptions {
        &self.options
    }

    pub(crate) fn api(&self) -> &ApiRoot {
        &self.api
    }

    /// The shared HTTP client (for the administration calls of [`crate::admin`]), built now if
    /// it was not yet.
    pub(crate) fn http(&self) -> Result<&reqwest::Client, reqwest::Error> {
        self.http.get()
    }

    /// The token as sent: surrounding whitespace (a newline left in a secret) removed.
    pub(crate) fn token(&self) -> &str {
        self.token.expose_secret().trim()
    }

    pub(crate) fn authorization(&self) -> Option<HeaderValue> {
        let mut value = HeaderValue::from_str(&format!("Bearer {}", self.token())).ok()?;
        value.set_sensitive(true);
        Some(value)
    }

    /// A `GitHostError` for `call`, its message cleared of the token.
    pub(crate) fn fail(
        &self,
        call: &Call<'_>,
        kind: GitHostErrorKind,
        status: Option<StatusCode>,
        message: String,
    ) -> GitHostError {
        GitHostError {
            kind,
            repo: call.repo.clone(),
            operation: call.operation.clone(),
            status: status.map(|s| s.as_u16()),
            message: redact(message, self.token()),
        }
    }

    /// The error for an answer the caller did not expect: 401, 403 and 404 by name, other
    /// statuses as a protocol error. The message holds the status and what the server said.
    pub(crate) fn status_error(&self, call: &Call<'_>, reply: &Reply) -> GitHostError {
        self.status_failure(call, reply.status, &reply.body, None)
    }

    fn status_failure(&self, call: &Call<'_>, status: StatusCode, body: &[u8], attempts: Option<u32>) -> GitHostError {
        let kind = match status {
            StatusCode::UNAUTHORIZED => GitHostErrorKind::Unauthorized,
            StatusCode::FORBIDDEN => GitHostErrorKind::Forbidden,
            StatusCode::NOT_FOUND => GitHostErrorKind::NotFound,
            StatusCode::TOO_MANY_REQUESTS => GitHostErrorKind::RateLimited,
            s if s.is_server_error() => GitHostErrorKind::Server,
            _ => GitHostErrorKind::Protocol,
        };
        let mut message = format!("HTTP {status}");
        if status.is_redirection() {
            message.push_str(" (redirects are not followed)");
        }
        if let Some(attempts) = attempts {
            message.push_str(&format!(" after {attempts} attempts"));
        }
        let said = describe_body(body);
        if !said.is_empty() {
            message.push_str(": ");
            message.push_str(&said);
        }
        self.fail(call, kind, Some(status), message)
    }

    /// Reads a JSON answer; anything else is a protocol error.
    pub(crate) fn parse_json<T: DeserializeOwned>(&self, call: &Call<'_>, reply: &Reply) -> Result<T, GitHostError> {
        serde_json::from_slice(&reply.body).map_err(|e| {
            self.fail(
                call,
                GitHostErrorKind::Protocol,
                Some(reply.status),
                format!("HTTP {}: the answer is not the expected JSON: {e}", reply.status),
            )
        })
    }

    /// GETs `url`, retrying 429, 5xx and transport failures (timeouts included) with backoff.
    /// Every other answer is returned for the caller to interpret.
    pub(crate) async fn get(&self, call: &Call<'_>, url: &Url, expect: Expect) -> Result<Reply, GitHostError> {
        self.get_admitted(call, url, expect, None).await
    }

    /// [`BitbucketClient::get`], charging a raw file's bytes to `admission` before reading them
    /// (see [`hubsync_core::ports::GitHost::raw_file`]).
    pub(crate) async fn get_admitted(
        &self,
        call: &Call<'_>,
        url: &Url,
        expect: Expect,
        mut admission: Option<&mut Admission>,
    ) -> Result<Reply, GitHostError> {
        let Some(authorization) = self.authorization() else {
            // Checked when the client was built; kept as an error rather than a panic.
            let message = "the access token cannot be sent in an HTTP header".to_owned();
            return Err(self.fail(call, GitHostErrorKind::Unauthorized, None, message));
        };
        let policy = self.options.retry_policy();
        let mut attempt = 1;
        loop {
            let span = tracing::debug_span!(
                "bitbucket_request",
                method = "GET",
                path = url.path(),
                operation = %call.operation,
                repo = %call.repo,
                attempt,
            );
            let outcome = self
                .attempt(url, expect, &authorization, admission.as_deref_mut())
                .instrument(span.clone())
                .await;
            let (failure, retry_after) = match outcome {
                Ok(answer) if is_retryable_status(answer.status) => (
                    Failure::Status {
                        status: answer.status,
                        body: answer.body,
                    },
                    answer.retry_after,
                ),
                Ok(answer) => {
                    return Ok(Reply {
                        status: answer.status,
                        body: answer.body,
                        oversize: answer.oversize,
                    });
                }
                Err(AttemptError::Http(error)) if error.is_builder() => {
                    let message = format!("the request could not be built: {}", chain(&error.without_url()));
                    return Err(self.fail(call, GitHostErrorKind::Protocol, None, message));
                }
                Err(error) => (Failure::Transport(error), None),
            };
            if attempt >= policy.max_attempts {
                return Err(match failure {
                    Failure::Status { status, body } => self.status_failure(call, status, &body, Some(attempt)),
                    Failure::Transport(error) => {
                        let message = format!("after {attempt} attempts: {}", error.describe());
                        self.fail(call, GitHostErrorKind::Transport, None, message)
                    }
                });
            }
            let delay = policy.delay(attempt, retry_after, rand::random());
            span.in_scope(|| tracing::debug!(delay_ms = delay.as_millis() as u64, "retrying"));
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }

    /// One attempt. Its timeout runs from sending the request to the last byte of the body, but
    /// stops while a raw file waits for `admission` to admit its bytes (the response is then
    /// held unread: the server waits on the connection).
    async fn attempt(
        &self,
        url: &Url,
        expect: Expect,
        authorization: &HeaderValue,
        admission: Option<&mut Admission>,
    ) -> Result<Answer, AttemptError> {
        let accept = match expect {
            Expect::Json => "application/json",
            Expect::Raw { .. } => "*/*",
        };
        let timeout = self.options.request_timeout;
        let mut deadline = Instant::now() + timeout;
        let sent = self
            .http
            .get()?
            .get(url.clone())
            .header(AUTHORIZATION, authorization.clone())
            .header(ACCEPT, accept)
            .send();
        let response = match timeout_at(deadline, sent).await {
            Ok(Ok(response)) => response,
            Ok(Err(error)) => {
                tracing::debug!(error = %chain(&error), "request failed");
                return Err(error.into());
            }
            Err(_) => {
                tracing::debug!(?timeout, "request timed out");
                return Err(AttemptError::TimedOut(timeout));
            }
        };
        let status = response.status();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, Utc::now()));
        let raw_limit = match expect {
            Expect::Raw { limit } if status.is_success() => Some(limit),
            _ => None,
        };
        if let Some(limit) = raw_limit
            && let Some(announced) = response.content_length().filter(|n| *n > limit)
        {
            // Dropping the response unread closes the connection: nothing more comes.
            tracing::debug!(
                status = status.as_u16(),
                announced,
                limit,
                "answer over the limit not read"
            );
            return Ok(Answer {
                status,
                retry_after,
                body: Vec::new(),
                oversize: Some(Oversize::Announced(announced)),
            });
        }
        let read_limit = match raw_limit {
            // One byte more than the limit tells a larger body from one of exactly the limit.
            Some(limit) => Some(limit.saturating_add(1)),
            None => (!status.is_success()).then_some(ERROR_BODY_LIMIT as u64),
        };
        // Only a file's bytes are charged to the budget (an error answer's are few).
        let admission = admission.filter(|_| raw_limit.is_some());
        let body = match read_body(response, read_limit, admission, &mut deadline).await {
            Ok(body) => body,
            // An error answer cut short still says what its status says.
            Err(_) if !status.is_success() => Vec::new(),
            Err(error) => {
                let error = error.unwrap_or(AttemptError::TimedOut(timeout));
                if let AttemptError::Http(e) = &error {
                    tracing::debug!(status = status.as_u16(), error = %chain(e), "reading the answer failed");
                } else {
                    tracing::debug!(status = status.as_u16(), ?timeout, "reading the answer timed out");
                }
                return Err(error);
            }
        };
        if let Some(limit) = raw_limit
            && body.len() as u64 > limit
        {
            tracing::debug!(
                status = status.as_u16(),
                limit,
                "answer over the limit not read further"
            );
            return Ok(Answer {
                status,
                retry_after,
                body: Vec::new(),
                oversize: Some(Oversize::Exceeded { limit }),
            });
        }
        tracing::debug!(status = status.as_u16(), bytes = body.len(), "answered");
        Ok(Answer {
            status,
            retry_after,
            body,
            oversize: None,
        })
    }
}

/// Reads a body chunk by chunk into one buffer, reserved from `Content-Length` when there is
/// one: tens of megabytes are copied once, not re-concatenated. With `limit`, stops there (the
/// rest is never read: the response is dropped with it).
///
/// With an admission, the body's bytes are charged to it before they are kept: the announced
/// size before anything is read, otherwise before each chunk. The time spent waiting for it
/// moves `deadline` (the request timeout measures the server, not the budget). `Err(None)`: the
/// deadline passed.
async fn read_body(
    mut response: reqwest::Response,
    limit: Option<u64>,
    mut admission: Option<&mut Admission>,
    deadline: &mut Instant,
) -> Result<Vec<u8>, Option<AttemptError>> {
    let announced = response.content_length();
    if let (Some(admission), Some(size)) = (admission.as_deref_mut(), announced) {
        let waiting = Instant::now();
        admission.announce(limit.map_or(size, |l| size.min(l))).await;
        *deadline += waiting.elapsed();
    }
    let expected = announced.unwrap_or(0).min(PREALLOCATE_LIMIT);
    let reserve = limit.map_or(expected, |l| expected.min(l));
    let limit = limit.map(|l| usize::try_from(l).unwrap_or(usize::MAX));
    let mut body = Vec::with_capacity(usize::try_from(reserve).unwrap_or(0));
    loop {
        let chunk = match timeout_at(*deadline, response.chunk()).await {
            Ok(Ok(Some(chunk))) => chunk,
            Ok(Ok(None)) => break,
            Ok(Err(error)) => return Err(Some(error.into())),
            Err(_) => return Err(None),
        };
        let keep = match limit {
            Some(limit) => chunk.len().min(limit - body.len()),
            None => chunk.len(),
        };
        if let Some(admission) = admission.as_deref_mut().filter(|_| announced.is_none()) {
            let waiting = Instant::now();
            admission.reading((body.len() + keep) as u64).await;
            *deadline += waiting.elapsed();
            // The buffer takes the room the budget charged at once: growing it by doubling
            // would copy tens of megabytes, the old buffer and the new one both in memory.
            let charged = usize::try_from(admission.reserved().min(PREALLOCATE_LIMIT)).unwrap_or(0);
            let room = limit.map_or(charged, |limit| charged.min(limit));
            if room > body.capacity() {
                body.reserve_exact(room - body.len());
            }
        }
        body.extend_from_slice(&chunk[..keep]);
        if limit.is_some_and(|limit| body.len() >= limit) {
            break;
        }
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "BBDC-c2VjcmV0LXRva2VuLXZhbHVl";

    fn client() -> BitbucketClient {
        BitbucketClient::new(
            "https://bitbucket.example.com/",
            SecretString::from(TOKEN),
            ClientOptions::default(),
        )
        .expect("valid client in test")
    }

    #[test]
    fn debug_output_does_not_contain_the_token() {
        let printed = format!("{:?}", client());
        assert!(!printed.contains(TOKEN), "{printed}");
        assert!(printed.contains("https://bitbucket.example.com"), "{printed}");
    }

    #[test]
    fn error_messages_do_not_contain_the_token_even_when_the_server_echoes_it() {
        let client = client();
        let repo = RepoRef::parse("DATA/models").unwrap();
        let call = Call::new(&repo, "GET files");
        let body =
            format!(r#"{{"errors":[{{"context":null,"message":"token {TOKEN} is revoked","exceptionName":null}}]}}"#);
        let reply = Reply {
            status: StatusCode::UNAUTHORIZED,
            body: body.into_bytes(),
            oversize: None,
        };

        let error = client.status_error(&call, &reply);

        let printed = format!("{error} / {error:?}");
        assert!(!printed.contains(TOKEN), "{printed}");
        assert!(printed.contains("DATA/models") && printed.contains("401"), "{printed}");
        assert!(printed.contains("is revoked"), "{printed}");
        assert_eq!(error.kind, GitHostErrorKind::Unauthorized);
    }

    #[test]
    fn a_token_that_cannot_be_a_header_is_refused_without_being_printed() {
        for bad in ["", "  ", "abc\u{7}def"] {
            let err = BitbucketClient::new("https://h", SecretString::from(bad), ClientOptions::default()).unwrap_err();
            assert!(matches!(err, ClientBuildError::Token));
        }
        let client = BitbucketClient::new(
            "https://h",
            SecretString::from(format!("{TOKEN}\n")),
            ClientOptions::default(),
        );
        assert!(client.is_ok(), "a trailing newline is trimmed");
    }

    #[test]
    fn options_that_would_never_finish_are_refused() {
        let zero_attempts = ClientOptions {
            max_attempts: 0,
            ..ClientOptions::default()
        };
        let zero_page = ClientOptions {
            page_limit: 0,
            ..ClientOptions::default()
        };
        for options in [zero_attempts, zero_page] {
            let err = BitbucketClient::new("https://h", SecretString::from(TOKEN), options).unwrap_err();
            assert!(matches!(err, ClientBuildError::Option(_)));
        }
    }
}
