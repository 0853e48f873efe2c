//! The administrator's calls, as the setup guide makes them by hand: which repositories the
//! token can read ("Add Repository"), whether a repository exists and can be read, and the
//! repository's and project's webhooks with Bitbucket's own record of their deliveries
//! ("Troubleshooting: Recent events"). Unlike the [`GitHost`](hubsync_core::ports::GitHost)
//! calls, some of these write (a webhook is created or repaired), and their errors say which
//! permission of the access token is missing.
//!
//! | call | resource (under `/rest/api/latest`) | permission |
//! |---|---|---|
//! | [`BitbucketClient::repositories`] | `GET repos` or `GET projects/{key}/repos` (paged) | Repositories: Read |
//! | [`BitbucketClient::repository`] | `GET projects/{key}/repos/{slug}` | Repositories: Read |
//! | [`BitbucketClient::default_branch_name`] | `GET projects/{key}/repos/{slug}/default-branch` | Repositories: Read |
//! | [`BitbucketClient::webhooks`] | `GET .../webhooks` (paged) | repository (or project) admin |
//! | [`BitbucketClient::create_webhook`] | `POST .../webhooks` | repository (or project) admin |
//! | [`BitbucketClient::update_webhook`] | `PUT .../webhooks/{id}` | repository (or project) admin |
//! | [`BitbucketClient::webhook_history`] | `GET .../webhooks/{id}/statistics/summary` and `.../latest` | repository (or project) admin |
//!
//! Bitbucket answers a token without the permission with 401 and an `AuthorisationException`
//! (a wrong token gets 401 too, with another exception), some proxies with 403: both are
//! [`AdminErrorKind::PermissionDenied`] naming the permission.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use hubsync_core::ids::RepoRef;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use url::Url;

use crate::client::BitbucketClient;
use crate::error::{chain, describe_body, redact};
use crate::json::{ErrorBody, Page, RestMinimalRef};
use crate::retry::{is_retryable_status, parse_retry_after};

/// The event a push sends: "Repository Push" in the webhook form.
pub const PUSH_EVENT: &str = "repo:refs_changed";

/// A permission of the access token, as the token form and the setup guide name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Permission {
    /// Read a repository, its files and its history.
    RepositoriesRead,
    /// Read and write a repository's webhooks: repository admin.
    WebhooksReadWrite,
    /// Read and write a project's webhooks: project admin.
    ProjectAdmin,
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::RepositoriesRead => "\"Repositories: Read\"",
            Self::WebhooksReadWrite => "\"Webhooks: Read and write\" (repository admin)",
            Self::ProjectAdmin => "project admin (\"Projects: Admin\"), needed for project webhooks",
        })
    }
}

/// Why an administration call failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminErrorKind {
    /// 401 without `AuthorisationException`: the token is wrong, expired or revoked.
    Unauthenticated,
    /// The token is valid but lacks this permission (401 `AuthorisationException`, or 403).
    PermissionDenied(Permission),
    /// 404: the project, repository or webhook does not exist (or the token cannot see it).
    NotFound,
    /// 400 or 409: Bitbucket refused what was sent (its message says why).
    Rejected,
    /// 429 after every retry.
    RateLimited,
    /// 5xx after every retry.
    Server,
    /// No answer: connection refused, timeout, TLS.
    Transport,
    /// An answer this client cannot read.
    Protocol,
}

/// A failed administration call: what was asked, the HTTP status and a reason that never holds
/// the token or a webhook secret.
#[derive(Debug, thiserror::Error)]
#[error("{operation} failed: {message}")]
pub struct AdminError {
    pub kind: AdminErrorKind,
    /// What was asked, e.g. "GET webhooks of DATA/models".
    pub operation: String,
    pub status: Option<u16>,
    pub message: String,
}

/// A repository the token can read, as `GET repos` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AvailableRepository {
    pub repo: RepoRef,
    pub name: String,
    pub project_name: Option<String>,
    /// Bitbucket's numeric id.
    pub id: Option<u64>,
    pub archived: bool,
    /// `AVAILABLE`, `INITIALISING`, `INITIALISATION_FAILED` or `OFFLINE`.
    pub state: Option<String>,
}

/// Where a webhook is defined: on the repository, or on its project (then it fires for every
/// repository of the project).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "level", content = "of")]
pub enum WebhookScope {
    Repository(RepoRef),
    Project(String),
}

impl fmt::Display for WebhookScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Repository(repo) => write!(f, "repository {repo}"),
            Self::Project(key) => write!(f, "project {key}"),
        }
    }
}

/// A webhook's secret as Bitbucket shows it (`configuration.secret`): the document leaves the
/// member undescribed; servers send it, masked, or leave it out.
#[derive(Debug, Clone)]
pub enum ShownSecret {
    /// No secret: deliveries are not signed.
    None,
    /// A secret is set but shown masked (`********`): it cannot be compared.
    Masked,
    /// The secret itself.
    Value(SecretString),
}

impl ShownSecret {
    fn from_configuration(configuration: &serde_json::Map<String, serde_json::Value>) -> Self {
        match configuration.get("secret").and_then(serde_json::Value::as_str) {
            None | Some("") => Self::None,
            Some(masked) if masked.chars().all(|c| c == '*') => Self::Masked,
            Some(value) => Self::Value(SecretString::from(value.to_owned())),
        }
    }

    /// Whether a secret is set at all.
    pub fn is_set(&self) -> bool {
        !matches!(self, Self::None)
    }
}

/// A webhook (`RestWebhook`), its secret kept out of `Debug`.
#[derive(Debug, Clone)]
pub struct Webhook {
    pub id: u64,
    pub scope: WebhookScope,
    pub name: String,
    pub url: String,
    pub active: bool,
    pub events: Vec<String>,
    pub secret: ShownSecret,
}

/// The webhook to create or to repair an existing one into.
#[derive(Debug, Clone)]
pub struct WebhookSpec {
    /// The title, e.g. "Hackolade Model Hub sync".
    pub name: String,
    pub url: String,
    pub active: bool,
    pub events: Vec<String>,
    pub secret: SecretString,
}

/// One delivery as Bitbucket recorded it (`RestDetailedInvocation`, or the invocations of a
/// statistics summary).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Invocation {
    pub id: Option<u64>,
    pub event: Option<String>,
    /// `SUCCESS`, `FAILURE` (the receiver answered an error status) or `ERROR` (no answer).
    pub outcome: Option<String>,
    /// What Bitbucket says of the result: the HTTP status, or the error.
    pub description: Option<String>,
    /// The receiver's HTTP status, when there was an answer.
    pub status_code: Option<u16>,
    pub at: Option<DateTime<Utc>>,
    pub duration_ms: Option<u64>,
}

impl Invocation {
    pub fn succeeded(&self) -> bool {
        self.outcome.as_deref() == Some("SUCCESS")
    }
}

/// Counts of a webhook's recent deliveries.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct InvocationCounts {
    pub successes: u64,
    pub failures: u64,
    pub errors: u64,
}

/// Bitbucket's own record of a webhook's deliveries (`statistics/summary` and `latest`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InvocationHistory {
    pub last_success: Option<Invocation>,
    pub last_failure: Option<Invocation>,
    pub last_error: Option<Invocation>,
    pub counts: Option<InvocationCounts>,
    /// The latest delivery, whatever its outcome; `None` when there was none (204).
    pub latest: Option<Invocation>,
}

/// What an administration request is, for its errors.
struct Op {
    label: String,
    needs: Permission,
}

impl Op {
    fn new(label: impl Into<String>, needs: Permission) -> Self {
        Self {
            label: label.into(),
            needs,
        }
    }
}

/// An answer, read whole (administration answers are small).
struct Answer {
    status: StatusCode,
    body: Vec<u8>,
}

impl BitbucketClient {
    /// Every repository the token can read, in `project` (`GET projects/{key}/repos`) or in all
    /// projects (`GET repos`), all pages.
    pub async fn repositories(&self, project: Option<&str>) -> Result<Vec<AvailableRepository>, AdminError> {
        let (op, url) = match project {
            Some(key) => (
                Op::new(
                    format!("GET repositories of project {key}"),
                    Permission::RepositoriesRead,
                ),
                self.admin_url(&["projects", key, "repos"])?,
            ),
            None => (
                Op::new("GET repositories", Permission::RepositoriesRead),
                self.admin_url(&["repos"])?,
            ),
        };
        let values: Vec<RestRepository> = self.admin_pages(&op, &url).await?;
        values
            .into_iter()
            .map(|r| {
                r.available()
                    .map_err(|m| self.admin_fail(&op, AdminErrorKind::Protocol, None, m))
            })
            .collect()
    }

    /// The repository, if it exists and the token can read it (`GET projects/{key}/repos/{slug}`).
    pub async fn repository(&self, repo: &RepoRef) -> Result<AvailableRepository, AdminError> {
        let op = Op::new(format!("GET repository {repo}"), Permission::RepositoriesRead);
        let url = self.admin_url(&["projects", repo.project(), "repos", repo.slug()])?;
        let answer = self.admin_send(&op, Method::GET, &url, None).await?;
        let rest: RestRepository = self.admin_json(&op, &answer)?;
        rest.available()
            .map_err(|m| self.admin_fail(&op, AdminErrorKind::Protocol, None, m))
    }

    /// The configured default branch's id (`refs/heads/main`); `None` for an empty repository.
    pub async fn default_branch_name(&self, repo: &RepoRef) -> Result<Option<String>, AdminError> {
        let op = Op::new(format!("GET default branch of {repo}"), Permission::RepositoriesRead);
        let url = self.admin_url(&["projects", repo.project(), "repos", repo.slug(), "default-branch"])?;
        match self.admin_send(&op, Method::GET, &url, None).await {
            Ok(answer) if answer.status == StatusCode::NO_CONTENT => Ok(None),
            Ok(answer) => Ok(Some(self.admin_json::<RestMinimalRef>(&op, &answer)?.id)),
            Err(e) if e.kind == AdminErrorKind::NotFound && e.message.contains("NoDefaultBranch") => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The webhooks defined at `scope`, all pages.
    pub async fn webhooks(&self, scope: &WebhookScope) -> Result<Vec<Webhook>, AdminError> {
        let op = Op::new(format!("GET webhooks of {scope}"), needs(scope));
        let url = self.webhooks_url(scope, &[])?;
        let values: Vec<RestWebhook> = self.admin_pages(&op, &url).await?;
        Ok(values.into_iter().map(|w| w.into_webhook(scope.clone())).collect())
    }

    /// Creates a webhook at `scope` (`POST .../webhooks`).
    pub async fn create_webhook(&self, scope: &WebhookScope, spec: &WebhookSpec) -> Result<Webhook, AdminError> {
        let op = Op::new(format!("POST webhook to {scope}"), needs(scope));
        let url = self.webhooks_url(scope, &[])?;
        let body = RestWebhookBody::of(spec);
        let answer = self
            .admin_send(&op, Method::POST, &url, Some(body.to_vec(self, &op)?))
            .await?;
        let created: RestWebhook = self.admin_json(&op, &answer)?;
        Ok(created.into_webhook(scope.clone()))
    }

    /// Replaces webhook `id` at `scope` with `spec` (`PUT .../webhooks/{id}`).
    pub async fn update_webhook(
        &self,
        scope: &WebhookScope,
        id: u64,
        spec: &WebhookSpec,
    ) -> Result<Webhook, AdminError> {
        let op = Op::new(format!("PUT webhook {id} of {scope}"), needs(scope));
        let url = self.webhooks_url(scope, &[&id.to_string()])?;
        let body = RestWebhookBody::of(spec);
        let answer = self
            .admin_send(&op, Method::PUT, &url, Some(body.to_vec(self, &op)?))
            .await?;
        let updated: RestWebhook = self.admin_json(&op, &answer)?;
        Ok(updated.into_webhook(scope.clone()))
    }

    /// Bitbucket's record of webhook `id`'s deliveries: `statistics/summary` (last success, last
    /// failure, last error, counts) and `latest` (the latest delivery; 204 when none).
    pub async fn webhook_history(&self, scope: &WebhookScope, id: u64) -> Result<InvocationHistory, AdminError> {
        let id_text = id.to_string();
        let op = Op::new(format!("GET statistics of webhook {id} of {scope}"), needs(scope));
        let url = self.webhooks_url(scope, &[&id_text, "statistics", "summary"])?;
        let answer = self.admin_send(&op, Method::GET, &url, None).await?;
        let summary: RestInvocationHistory = if answer.status == StatusCode::NO_CONTENT {
            RestInvocationHistory::default()
        } else {
            self.admin_json(&op, &answer)?
        };
        let op = Op::new(format!("GET latest delivery of webhook {id} of {scope}"), needs(scope));
        let url = self.webhooks_url(scope, &[&id_text, "latest"])?;
        let answer = self.admin_send(&op, Method::GET, &url, None).await?;
        let latest = if answer.status == StatusCode::NO_CONTENT || answer.body.is_empty() {
            None
        } else {
            Some(self.admin_json::<RestInvocation>(&op, &answer)?.into_invocation())
        };
        Ok(InvocationHistory {
            last_success: summary.last_success.map(RestInvocation::into_invocation),
            last_failure: summary.last_failure.map(RestInvocation::into_invocation),
            last_error: summary.last_error.map(RestInvocation::into_invocation),
            counts: summary.counts.map(|c| InvocationCounts {
                successes: c.successes.unwrap_or(0),
                failures: c.failures.unwrap_or(0),
                errors: c.errors.unwrap_or(0),
            }),
            latest,
        })
    }

    fn admin_url(&self, segments: &[&str]) -> Result<Url, AdminError> {
        self.api().url(segments).map_err(|e| AdminError {
            kind: AdminErrorKind::Protocol,
            operation: "building a URL".into(),
            status: None,
            message: e.to_string(),
        })
    }

    fn webhooks_url(&self, scope: &WebhookScope, rest: &[&str]) -> Result<Url, AdminError> {
        let mut segments = match scope {
            WebhookScope::Repository(repo) => vec!["projects", repo.project(), "repos", repo.slug(), "webhooks"],
            WebhookScope::Project(key) => vec!["projects", key.as_str(), "webhooks"],
        };
        segments.extend_from_slice(rest);
        self.admin_url(&segments)
    }

    fn admin_fail(&self, op: &Op, kind: AdminErrorKind, status: Option<StatusCode>, message: String) -> AdminError {
        AdminError {
            kind,
            operation: op.label.clone(),
            status: status.map(|s| s.as_u16()),
            message: redact(message, self.token()),
        }
    }

    /// The error for an answer that is not 2xx, naming the missing permission when the token
    /// was refused for lack of it.
    fn admin_status_error(&self, op: &Op, status: StatusCode, body: &[u8]) -> AdminError {
        let errors = ErrorBody::parse(body);
        let said = describe_body(body);
        let said = if said.is_empty() {
            String::new()
        } else {
            format!(": {said}")
        };
        let (kind, message) = match status {
            StatusCode::UNAUTHORIZED if !errors.has_exception("AuthorisationException") => (
                AdminErrorKind::Unauthenticated,
                format!("the access token was refused (HTTP 401): it is wrong, expired or revoked{said}"),
            ),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => (
                AdminErrorKind::PermissionDenied(op.needs),
                format!(
                    "the access token lacks the permission {} (HTTP {}){said}",
                    op.needs,
                    status.as_u16()
                ),
            ),
            StatusCode::NOT_FOUND => {
                let exception = errors
                    .errors
                    .iter()
                    .filter_map(|e| e.exception_name.as_deref())
                    .filter_map(|name| name.rsplit('.').next())
                    .next()
                    .map(|name| format!(" [{name}]"))
                    .unwrap_or_default();
                (
                    AdminErrorKind::NotFound,
                    format!("not found (HTTP 404){said}{exception}"),
                )
            }
            StatusCode::BAD_REQUEST | StatusCode::CONFLICT => {
                (AdminErrorKind::Rejected, format!("HTTP {status}{said}"))
            }
            StatusCode::TOO_MANY_REQUESTS => (AdminErrorKind::RateLimited, format!("HTTP {status}{said}")),
            s if s.is_server_error() => (AdminErrorKind::Server, format!("HTTP {status}{said}")),
            s if s.is_redirection() => (
                AdminErrorKind::Protocol,
                format!("HTTP {status} (redirects are not followed){said}"),
            ),
            _ => (AdminErrorKind::Protocol, format!("HTTP {status}{said}")),
        };
        self.admin_fail(op, kind, Some(status), message)
    }

    fn admin_json<T: DeserializeOwned>(&self, op: &Op, answer: &Answer) -> Result<T, AdminError> {
        serde_json::from_slice(&answer.body).map_err(|e| {
            let message = format!("HTTP {}: the answer is not the expected JSON: {e}", answer.status);
            self.admin_fail(op, AdminErrorKind::Protocol, Some(answer.status), message)
        })
    }

    /// Every page of a paged resource, following `nextPageStart`.
    async fn admin_pages<T: DeserializeOwned>(&self, op: &Op, url: &Url) -> Result<Vec<T>, AdminError> {
        let limit = self.options().page_limit.to_string();
        let mut values = Vec::new();
        let mut start = 0u64;
        loop {
            let mut page_url = url.clone();
            page_url
                .query_pairs_mut()
                .append_pair("start", &start.to_string())
                .append_pair("limit", &limit);
            let answer = self.admin_send(op, Method::GET, &page_url, None).await?;
            if answer.status == StatusCode::NO_CONTENT {
                return Ok(values);
            }
            let page: Page<T> = self.admin_json(op, &answer)?;
            let last = page.is_last();
            let next = page.next_page_start;
            values.extend(page.values);
            if last {
                return Ok(values);
            }
            match next {
                Some(next) if next > start => start = next,
                _ => {
                    let message = format!("the page at {start} is not the last but gives no further start");
                    return Err(self.admin_fail(op, AdminErrorKind::Protocol, Some(answer.status), message));
                }
            }
        }
    }

    /// Sends one request, retrying 429, 5xx and transport failures with the client's backoff;
    /// a POST (not idempotent) is retried only on 429, which says it was not processed. Any
    /// answer other than 2xx is an [`AdminError`].
    async fn admin_send(
        &self,
        op: &Op,
        method: Method,
        url: &Url,
        body: Option<Vec<u8>>,
    ) -> Result<Answer, AdminError> {
        let Some(authorization) = self.authorization() else {
            let message = "the access token cannot be sent in an HTTP header".to_owned();
            return Err(self.admin_fail(op, AdminErrorKind::Unauthenticated, None, message));
        };
        let policy = self.options().retry_policy();
        let idempotent = method != Method::POST;
        let mut attempt = 1;
        let http = match self.http() {
            Ok(http) => http,
            Err(error) => {
                let message = format!("the HTTP client could not be built: {}", chain(&error.without_url()));
                return Err(self.admin_fail(op, AdminErrorKind::Transport, None, message));
            }
        };
        loop {
            let mut request = http
                .request(method.clone(), url.clone())
                .header(AUTHORIZATION, authorization.clone())
                .header(ACCEPT, "application/json")
                .timeout(self.options().request_timeout);
            if let Some(body) = &body {
                request = request.header(CONTENT_TYPE, "application/json").body(body.clone());
            }
            let outcome = match request.send().await {
                Ok(response) => {
                    let status = response.status();
                    let retry_after = response
                        .headers()
                        .get(RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| parse_retry_after(v, Utc::now()));
                    match response.bytes().await {
                        Ok(bytes) => Ok((status, retry_after, bytes.to_vec())),
                        Err(_) if !status.is_success() => Ok((status, retry_after, Vec::new())),
                        Err(error) => Err(error),
                    }
                }
                Err(error) => Err(error),
            };
            tracing::debug!(method = %method, path = url.path(), operation = %op.label, attempt, "bitbucket admin request");
            let retry_after = match outcome {
                Ok((status, retry_after, body)) => {
                    let retry = is_retryable_status(status) && (idempotent || status == StatusCode::TOO_MANY_REQUESTS);
                    if status.is_success() {
                        return Ok(Answer { status, body });
                    }
                    if !retry || attempt >= policy.max_attempts {
                        return Err(self.admin_status_error(op, status, &body));
                    }
                    retry_after
                }
                Err(error) => {
                    if !idempotent || attempt >= policy.max_attempts {
                        let message = format!("after {attempt} attempts: {}", chain(&error.without_url()));
                        return Err(self.admin_fail(op, AdminErrorKind::Transport, None, message));
                    }
                    None
                }
            };
            let delay: Duration = policy.delay(attempt, retry_after, rand::random());
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }
}

fn needs(scope: &WebhookScope) -> Permission {
    match scope {
        WebhookScope::Repository(_) => Permission::WebhooksReadWrite,
        WebhookScope::Project(_) => Permission::ProjectAdmin,
    }
}

// ---------------------------------------------------------------------------------------------
// Bitbucket's JSON for these resources
// ---------------------------------------------------------------------------------------------

/// `RestRepository`: only the members read here.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RestRepository {
    slug: String,
    name: Option<String>,
    id: Option<u64>,
    #[serde(default)]
    archived: bool,
    state: Option<String>,
    project: Option<RestProject>,
}

#[derive(Debug, Deserialize)]
struct RestProject {
    key: String,
    name: Option<String>,
}

impl RestRepository {
    fn available(self) -> Result<AvailableRepository, String> {
        let project = self.project.ok_or("a repository without its project")?;
        let repo = RepoRef::new(&project.key, &self.slug).map_err(|e| e.to_string())?;
        Ok(AvailableRepository {
            name: self.name.unwrap_or_else(|| self.slug.clone()),
            repo,
            project_name: project.name,
            id: self.id,
            archived: self.archived,
            state: self.state,
        })
    }
}

/// `RestWebhook` as answered: the document lists `name`, `url`, `active`, `events`,
/// `configuration`, `scopeType`, `sslVerificationRequired`; servers also send `id`,
/// `createdDate` and `updatedDate`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RestWebhook {
    #[serde(default)]
    id: u64,
    #[serde(default)]
    name: String,
    #[serde(default)]
    url: String,
    #[serde(default)]
    active: bool,
    #[serde(default)]
    events: Vec<String>,
    #[serde(default)]
    configuration: serde_json::Map<String, serde_json::Value>,
}

impl RestWebhook {
    fn into_webhook(self, scope: WebhookScope) -> Webhook {
        Webhook {
            secret: ShownSecret::from_configuration(&self.configuration),
            id: self.id,
            scope,
            name: self.name,
            url: self.url,
            active: self.active,
            events: self.events,
        }
    }
}

/// `RestWebhook` as sent: the secret goes in `configuration.secret`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RestWebhookBody<'a> {
    name: &'a str,
    url: &'a str,
    active: bool,
    events: &'a [String],
    configuration: RestWebhookConfiguration<'a>,
    ssl_verification_required: bool,
}

#[derive(Serialize)]
struct RestWebhookConfiguration<'a> {
    secret: &'a str,
}

impl<'a> RestWebhookBody<'a> {
    fn of(spec: &'a WebhookSpec) -> Self {
        Self {
            name: &spec.name,
            url: &spec.url,
            active: spec.active,
            events: &spec.events,
            configuration: RestWebhookConfiguration {
                secret: spec.secret.expose_secret(),
            },
            ssl_verification_required: true,
        }
    }

    fn to_vec(&self, client: &BitbucketClient, op: &Op) -> Result<Vec<u8>, AdminError> {
        serde_json::to_vec(self).map_err(|e| {
            client.admin_fail(
                op,
                AdminErrorKind::Protocol,
                None,
                format!("the webhook could not be encoded: {e}"),
            )
        })
    }
}

/// `RestInvocationHistory` (an empty schema in the document): what servers send.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RestInvocationHistory {
    last_success: Option<RestInvocation>,
    last_failure: Option<RestInvocation>,
    last_error: Option<RestInvocation>,
    counts: Option<RestInvocationCounts>,
}

#[derive(Debug, Deserialize)]
struct RestInvocationCounts {
    successes: Option<u64>,
    failures: Option<u64>,
    errors: Option<u64>,
}

/// `RestDetailedInvocation`: `id`, `event`, `eventScope`, `start`, `finish` (epoch
/// milliseconds), `duration`, `request` and `result` (`outcome`, `description`, and the
/// receiver's `statusCode` when there was an answer).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RestInvocation {
    id: Option<u64>,
    event: Option<String>,
    start: Option<i64>,
    finish: Option<i64>,
    duration: Option<u64>,
    result: Option<RestInvocationResult>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RestInvocationResult {
    outcome: Option<String>,
    description: Option<String>,
    status_code: Option<u16>,
}

impl RestInvocation {
    fn into_invocation(self) -> Invocation {
        let result = self.result;
        let description = result.as_ref().and_then(|r| r.description.clone());
        let status_code = result
            .as_ref()
            .and_then(|r| r.status_code)
            .or_else(|| description.as_deref().and_then(|d| d.trim().parse().ok()));
        Invocation {
            id: self.id,
            event: self.event,
            outcome: result.and_then(|r| r.outcome),
            description,
            status_code,
            at: self
                .finish
                .or(self.start)
                .and_then(DateTime::<Utc>::from_timestamp_millis),
            duration_ms: self.duration,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_is_told_apart_when_absent_masked_or_shown() {
        let config = |v: serde_json::Value| v.as_object().cloned().unwrap_or_default();
        assert!(matches!(
            ShownSecret::from_configuration(&config(serde_json::json!({}))),
            ShownSecret::None
        ));
        assert!(matches!(
            ShownSecret::from_configuration(&config(serde_json::json!({"secret": ""}))),
            ShownSecret::None
        ));
        assert!(matches!(
            ShownSecret::from_configuration(&config(serde_json::json!({"secret": "********"}))),
            ShownSecret::Masked
        ));
        let ShownSecret::Value(value) = ShownSecret::from_configuration(&config(serde_json::json!({"secret": "s3"})))
        else {
            panic!("a shown secret is kept")
        };
        assert_eq!(value.expose_secret(), "s3");
    }

    #[test]
    fn an_invocation_reads_its_status_from_the_result() {
        let invocation: RestInvocation = serde_json::from_value(serde_json::json!({
            "id": 7, "event": "repo:refs_changed", "eventScope": {"type": "repository", "id": "1"},
            "start": 1714644930000i64, "finish": 1714644930250i64, "duration": 250,
            "request": {"method": "POST", "url": "https://hub.example.com/gateway/public/sync"},
            "result": {"outcome": "FAILURE", "description": "401"}
        }))
        .unwrap();

        let invocation = invocation.into_invocation();

        assert_eq!(invocation.status_code, Some(401));
        assert!(!invocation.succeeded());
        assert_eq!(invocation.at.map(|t| t.timestamp_millis()), Some(1714644930250));
    }
}
