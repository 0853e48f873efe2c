//! The administration resources of the simulated server, per Atlassian's document: the
//! repositories a token can read (`GET repos`, `GET projects/{key}/repos`), the webhooks of a
//! repository or a project (`GET`/`POST .../webhooks`, `GET`/`PUT`/`DELETE .../webhooks/{id}`),
//! and Bitbucket's record of their deliveries (`.../webhooks/{id}/statistics/summary`,
//! `.../webhooks/{id}/latest`). Also the token permissions every request is checked against,
//! and the test-facing API that stores webhooks and delivers pushes to them.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use secrecy::{ExposeSecret, SecretString};

use super::handlers::paging;
use super::{ApiError, Shared, Simulator, lock};
use crate::config::TokenScopes;
use crate::error::SimError;
use crate::hooks::{
    HookScope, Invocation, Outcome, RestDetailedInvocation, RestEventScope, RestInvocationCounts,
    RestInvocationHistory, RestWebhook, RestWebhookRequest, SimWebhook,
};
use crate::push::Push;
use crate::repo::Repo;
use crate::rest::{Page, RestRepository};
use crate::webhook;

type Params = Result<Query<HashMap<String, String>>, QueryRejection>;
type PathParams = Result<Path<HashMap<String, String>>, PathRejection>;

/// The events the webhook form offers that the simulator knows (Bitbucket refuses others).
const KNOWN_EVENTS: &[&str] = &[
    "repo:refs_changed",
    "repo:modified",
    "repo:forked",
    "repo:comment:added",
    "mirror:repo_synchronized",
    "pr:opened",
    "pr:merged",
    "pr:declined",
    "pr:deleted",
    "pr:modified",
    "pr:from_ref_updated",
    "pr:comment:added",
];

/// Adds the administration routes to the API router.
pub(super) fn routes(api: Router<Arc<Shared>>) -> Router<Arc<Shared>> {
    let mut api = api
        .route("/repos", get(all_repositories))
        .route("/projects/{project}/repos", get(project_repositories));
    for base in [
        "/projects/{project}/repos/{repo}/webhooks",
        "/projects/{project}/webhooks",
    ] {
        api = api
            .route(base, get(list_webhooks).post(create_webhook))
            .route(
                &format!("{base}/{{id}}"),
                get(get_webhook).put(update_webhook).delete(delete_webhook),
            )
            .route(&format!("{base}/{{id}}/statistics/summary"), get(statistics_summary))
            .route(&format!("{base}/{{id}}/latest"), get(latest_invocation));
    }
    api
}

/// The permission `path` needs: a repository's webhooks need repository admin, a project's
/// project admin, the listings of repositories nothing (they show only what the token can
/// read), everything else "Repositories: Read".
pub(super) fn permitted(scopes: &TokenScopes, path: &str) -> Result<(), ApiError> {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let allowed = if let Some(at) = segments.iter().position(|s| *s == "webhooks") {
        if segments[..at].contains(&"repos") {
            scopes.repository_admin
        } else {
            scopes.project_admin
        }
    } else if segments.len() >= 3
        && segments[segments.len() - 1] == "repos"
        && matches!(segments[segments.len() - 3], "api" | "projects")
    {
        true
    } else {
        scopes.repositories_read
    };
    if allowed { Ok(()) } else { Err(ApiError::NotPermitted) }
}

impl Shared {
    /// The permissions of the token in `authorization` (`Bearer <token>`): every permission for
    /// the configured token, those it was added with for another one.
    pub(super) fn scopes_of(&self, token: &str) -> Option<TokenScopes> {
        if token == self.config.token.expose_secret() {
            return Some(TokenScopes::ALL);
        }
        lock(&self.tokens)
            .iter()
            .find(|(t, _)| t.expose_secret() == token)
            .map(|(_, scopes)| *scopes)
    }
}

// ---------------------------------------------------------------------------------------------
// Repositories
// ---------------------------------------------------------------------------------------------

/// `GET repos?projectkey=&name=&start=&limit=`: every repository the token can read, by
/// project key then name.
async fn all_repositories(
    State(shared): State<Arc<Shared>>,
    Extension(scopes): Extension<TokenScopes>,
    params: Params,
) -> Result<Json<Page<RestRepository>>, ApiError> {
    let Query(params) = params?;
    let (start, limit) = paging(&params, shared.config.max_page_size)?;
    let project = params.get("projectkey").map(|k| k.trim().to_uppercase());
    let name = params.get("name").map(|n| n.trim().to_lowercase());
    let repos = repositories(&shared, &scopes, |repo| {
        project.as_deref().is_none_or(|p| repo.project_key() == p)
            && name.as_deref().is_none_or(|n| repo.name().to_lowercase().contains(n))
    });
    Ok(Json(Page::slice(&repos, start, limit)))
}

/// `GET projects/{key}/repos?start=&limit=`, or 404 `NoSuchProjectException`.
async fn project_repositories(
    State(shared): State<Arc<Shared>>,
    Extension(scopes): Extension<TokenScopes>,
    path: PathParams,
    params: Params,
) -> Result<Json<Page<RestRepository>>, ApiError> {
    let Path(path) = path?;
    let Query(params) = params?;
    let (start, limit) = paging(&params, shared.config.max_page_size)?;
    let key = project_key(&shared, &path)?;
    let repos = repositories(&shared, &scopes, |repo| repo.project_key() == key);
    Ok(Json(Page::slice(&repos, start, limit)))
}

fn repositories(shared: &Shared, scopes: &TokenScopes, keep: impl Fn(&Repo) -> bool) -> Vec<RestRepository> {
    if !scopes.repositories_read {
        return Vec::new();
    }
    let mut repos: Vec<Repo> = shared.registry().repos.values().filter(|r| keep(r)).cloned().collect();
    repos.sort_by_key(|r| (r.project_key().to_owned(), r.name().to_lowercase()));
    repos
        .iter()
        .map(|r| RestRepository::with_links(r, &shared.base_url))
        .collect()
}

/// The upper-case key of the `{project}` in `path`, if the project exists.
fn project_key(shared: &Shared, path: &HashMap<String, String>) -> Result<String, ApiError> {
    let key = path.get("project").map(|k| k.to_uppercase()).unwrap_or_default();
    if shared.registry().projects.contains_key(&key) {
        Ok(key)
    } else {
        Err(ApiError::NoSuchProject {
            key: path.get("project").cloned().unwrap_or_default(),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Webhooks
// ---------------------------------------------------------------------------------------------

/// The scope the path names (a repository when it has `{repo}`), and its `eventScope`.
fn scope_of(shared: &Shared, path: &HashMap<String, String>) -> Result<(HookScope, RestEventScope), ApiError> {
    match path.get("repo") {
        Some(slug) => {
            let repo = shared.find_repo(path.get("project").map_or("", String::as_str), slug)?;
            Ok((
                HookScope::of_repo(&repo),
                RestEventScope {
                    scope_type: "repository",
                    id: repo.id().to_string(),
                },
            ))
        }
        None => {
            let key = project_key(shared, path)?;
            let id = shared.registry().projects.get(&key).map_or(0, |p| p.id);
            Ok((
                HookScope::Project(key),
                RestEventScope {
                    scope_type: "project",
                    id: id.to_string(),
                },
            ))
        }
    }
}

fn hook_id(path: &HashMap<String, String>) -> Result<u32, ApiError> {
    let id = path.get("id").map_or("", String::as_str);
    id.parse().map_err(|_| ApiError::NoSuchWebhook { id: id.to_owned() })
}

/// `GET .../webhooks?event=&start=&limit=`: a page of `RestWebhook`.
async fn list_webhooks(
    State(shared): State<Arc<Shared>>,
    path: PathParams,
    params: Params,
) -> Result<Json<Page<RestWebhook>>, ApiError> {
    let Path(path) = path?;
    let Query(params) = params?;
    let (start, limit) = paging(&params, shared.config.max_page_size)?;
    let (scope, _) = scope_of(&shared, &path)?;
    let event = params.get("event").filter(|e| !e.is_empty());
    let hooks: Vec<RestWebhook> = lock(&shared.hooks)
        .list(&scope)
        .iter()
        .filter(|h| event.is_none_or(|e| h.hook.events.contains(e)))
        .map(RestWebhook::of)
        .collect();
    Ok(Json(Page::window(
        hooks
            .into_iter()
            .skip(start as usize)
            .take(limit as usize + 1)
            .collect(),
        start,
        limit,
    )))
}

/// `POST .../webhooks`: the created `RestWebhook`, or 400 naming the member at fault.
async fn create_webhook(
    State(shared): State<Arc<Shared>>,
    path: PathParams,
    body: Result<Json<RestWebhookRequest>, JsonRejection>,
) -> Result<Json<RestWebhook>, ApiError> {
    let Path(path) = path?;
    let (scope, _) = scope_of(&shared, &path)?;
    let Json(body) = body.map_err(|e| ApiError::bad_request(None, e.body_text()))?;
    let hook = SimWebhook {
        name: body.name.unwrap_or_default(),
        url: body.url.unwrap_or_default(),
        active: body.active.unwrap_or(true),
        events: body.events.unwrap_or_default(),
        secret: body.configuration.as_ref().and_then(secret_of),
    };
    validate(&hook)?;
    let stored = lock(&shared.hooks).create(scope, hook);
    Ok(Json(RestWebhook::of(&stored)))
}

/// `GET .../webhooks/{id}`.
async fn get_webhook(State(shared): State<Arc<Shared>>, path: PathParams) -> Result<Json<RestWebhook>, ApiError> {
    let Path(path) = path?;
    let (scope, _) = scope_of(&shared, &path)?;
    let id = hook_id(&path)?;
    let hooks = lock(&shared.hooks);
    let stored = hooks.get(&scope, id).ok_or_else(|| no_such_webhook(id))?;
    Ok(Json(RestWebhook::of(stored)))
}

/// `PUT .../webhooks/{id}`: the members sent replace the stored ones; `configuration`, when
/// sent, replaces the secret (no `secret` in it removes the secret).
async fn update_webhook(
    State(shared): State<Arc<Shared>>,
    path: PathParams,
    body: Result<Json<RestWebhookRequest>, JsonRejection>,
) -> Result<Json<RestWebhook>, ApiError> {
    let Path(path) = path?;
    let (scope, _) = scope_of(&shared, &path)?;
    let id = hook_id(&path)?;
    let Json(body) = body.map_err(|e| ApiError::bad_request(None, e.body_text()))?;
    let mut hooks = lock(&shared.hooks);
    let stored = hooks.get_mut(&scope, id).ok_or_else(|| no_such_webhook(id))?;
    let mut hook = stored.hook.clone();
    if let Some(name) = body.name {
        hook.name = name;
    }
    if let Some(url) = body.url {
        hook.url = url;
    }
    if let Some(active) = body.active {
        hook.active = active;
    }
    if let Some(events) = body.events {
        hook.events = events;
    }
    if let Some(configuration) = &body.configuration {
        hook.secret = secret_of(configuration);
    }
    validate(&hook)?;
    stored.hook = hook;
    stored.updated = chrono::Utc::now().timestamp_millis();
    Ok(Json(RestWebhook::of(stored)))
}

/// `DELETE .../webhooks/{id}`: 204.
async fn delete_webhook(State(shared): State<Arc<Shared>>, path: PathParams) -> Result<StatusCode, ApiError> {
    let Path(path) = path?;
    let (scope, _) = scope_of(&shared, &path)?;
    let id = hook_id(&path)?;
    if lock(&shared.hooks).delete(&scope, id) {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(no_such_webhook(id))
    }
}

/// `GET .../webhooks/{id}/statistics/summary`: `RestInvocationHistory`.
async fn statistics_summary(
    State(shared): State<Arc<Shared>>,
    path: PathParams,
) -> Result<Json<RestInvocationHistory>, ApiError> {
    let Path(path) = path?;
    let (scope, event_scope) = scope_of(&shared, &path)?;
    let id = hook_id(&path)?;
    let hooks = lock(&shared.hooks);
    let stored = hooks.get(&scope, id).ok_or_else(|| no_such_webhook(id))?;
    let last = |outcome: Outcome| {
        stored
            .invocations
            .iter()
            .rev()
            .find(|i| i.outcome == outcome)
            .map(|i| RestDetailedInvocation::of(i, copy_scope(&event_scope)))
    };
    let count = |outcome: Outcome| stored.invocations.iter().filter(|i| i.outcome == outcome).count();
    Ok(Json(RestInvocationHistory {
        last_success: last(Outcome::Success),
        last_failure: last(Outcome::Failure),
        last_error: last(Outcome::Error),
        counts: RestInvocationCounts {
            successes: count(Outcome::Success),
            failures: count(Outcome::Failure),
            errors: count(Outcome::Error),
        },
    }))
}

/// `GET .../webhooks/{id}/latest?event=&outcome=`: the latest matching `RestDetailedInvocation`,
/// or 204 when there is none.
async fn latest_invocation(
    State(shared): State<Arc<Shared>>,
    path: PathParams,
    params: Params,
) -> Result<Response, ApiError> {
    let Path(path) = path?;
    let Query(params) = params?;
    let (scope, event_scope) = scope_of(&shared, &path)?;
    let id = hook_id(&path)?;
    let event = params.get("event").filter(|e| !e.is_empty());
    let outcome = params
        .get("outcome")
        .filter(|o| !o.is_empty())
        .map(|o| o.to_uppercase());
    let hooks = lock(&shared.hooks);
    let stored = hooks.get(&scope, id).ok_or_else(|| no_such_webhook(id))?;
    let latest = stored.invocations.iter().rev().find(|i| {
        event.is_none_or(|e| &i.event == e)
            && outcome
                .as_deref()
                .is_none_or(|o| serde_json::to_value(i.outcome).ok().as_ref().and_then(|v| v.as_str()) == Some(o))
    });
    Ok(match latest {
        Some(invocation) => Json(RestDetailedInvocation::of(invocation, event_scope)).into_response(),
        None => StatusCode::NO_CONTENT.into_response(),
    })
}

fn copy_scope(scope: &RestEventScope) -> RestEventScope {
    RestEventScope {
        scope_type: scope.scope_type,
        id: scope.id.clone(),
    }
}

fn no_such_webhook(id: u32) -> ApiError {
    ApiError::NoSuchWebhook { id: id.to_string() }
}

fn secret_of(configuration: &serde_json::Map<String, serde_json::Value>) -> Option<String> {
    configuration
        .get("secret")
        .and_then(serde_json::Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// What Bitbucket checks of a webhook: a name, an http(s) URL, at least one known event.
fn validate(hook: &SimWebhook) -> Result<(), ApiError> {
    if hook.name.trim().is_empty() {
        return Err(ApiError::bad_request(Some("name"), "A webhook must have a name."));
    }
    let url_ok = reqwest::Url::parse(&hook.url)
        .map(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
        .unwrap_or(false);
    if !url_ok {
        return Err(ApiError::bad_request(
            Some("url"),
            "The URL must be a valid http or https URL.",
        ));
    }
    if hook.events.is_empty() {
        return Err(ApiError::bad_request(
            Some("events"),
            "A webhook must have at least one event.",
        ));
    }
    if let Some(unknown) = hook.events.iter().find(|e| !KNOWN_EVENTS.contains(&e.as_str())) {
        return Err(ApiError::bad_request(
            Some("events"),
            format!("Unknown event: {unknown}"),
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The test-facing API
// ---------------------------------------------------------------------------------------------

impl HookScope {
    /// The scope of `repo`'s own webhooks.
    pub fn of_repo(repo: &Repo) -> Self {
        Self::Repository {
            project: repo.project_key().to_uppercase(),
            slug: repo.slug().to_lowercase(),
        }
    }
}

impl Simulator {
    /// Accepts another access token, with only the permissions `scopes` gives it.
    pub fn add_token(&self, token: &str, scopes: TokenScopes) {
        lock(&self.shared.tokens).push((SecretString::from(token.to_owned()), scopes));
    }

    /// Stores a webhook at `scope` (as an administrator would through the UI); its id.
    pub fn add_webhook(&self, scope: HookScope, hook: SimWebhook) -> u32 {
        lock(&self.shared.hooks).create(scope, hook).id
    }

    /// Every stored webhook: its id, scope and settings.
    pub fn webhooks(&self) -> Vec<(u32, HookScope, SimWebhook)> {
        lock(&self.shared.hooks)
            .all()
            .into_iter()
            .map(|h| (h.id, h.scope, h.hook))
            .collect()
    }

    /// The deliveries made to webhook `id`, oldest first.
    pub fn invocations(&self, id: u32) -> Vec<Invocation> {
        lock(&self.shared.hooks)
            .all()
            .into_iter()
            .find(|h| h.id == id)
            .map(|h| h.invocations)
            .unwrap_or_default()
    }

    /// Delivers `push` as Bitbucket does: a signed `repo:refs_changed` to every active webhook
    /// of `repo` and of its project that subscribes to it (each with its own secret), each
    /// recorded with its outcome. Bitbucket does not retry, and neither does this. The
    /// deliveries made, in order.
    pub async fn deliver(&self, repo: &Repo, push: &Push) -> Result<Vec<Invocation>, SimError> {
        let event = "repo:refs_changed";
        let targets =
            lock(&self.shared.hooks).targets(&repo.project_key().to_uppercase(), &repo.slug().to_lowercase(), event);
        let mut made = Vec::with_capacity(targets.len());
        for target in targets {
            let delivery = webhook::refs_changed(
                repo,
                push,
                &self.shared.config.actor,
                self.shared.config.webhook_commit_details,
                target.hook.secret.as_deref(),
            )?;
            let start = chrono::Utc::now().timestamp_millis();
            let answer = delivery.send(&target.hook.url).await;
            let finish = chrono::Utc::now().timestamp_millis();
            let (outcome, description, status) = match answer {
                Ok(answer) if (200..300).contains(&answer.status) => {
                    (Outcome::Success, answer.status.to_string(), Some(answer.status))
                }
                Ok(answer) => (Outcome::Failure, answer.status.to_string(), Some(answer.status)),
                Err(error) => (Outcome::Error, error_chain(&error), None),
            };
            let invocation = lock(&self.shared.hooks).record(Invocation {
                id: 0,
                webhook_id: target.id,
                event: event.to_owned(),
                url: target.hook.url.clone(),
                outcome,
                description,
                status,
                start,
                finish,
                delivery_id: delivery.delivery_id.clone(),
            });
            tracing::info!(webhook = target.id, outcome = ?invocation.outcome, status = ?invocation.status, "bitbucket-sim webhook delivery");
            made.push(invocation);
        }
        Ok(made)
    }
}

fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhooks_need_admin_and_everything_else_read() {
        let read_only = TokenScopes::READ_ONLY;
        assert!(permitted(&read_only, "/rest/api/latest/projects/P/repos/r/files").is_ok());
        assert!(permitted(&read_only, "/rest/api/latest/projects/P/repos/r/webhooks").is_err());
        assert!(
            permitted(
                &TokenScopes::GUIDE,
                "/rest/api/latest/projects/P/repos/r/webhooks/1/latest"
            )
            .is_ok()
        );
        assert!(permitted(&TokenScopes::GUIDE, "/rest/api/latest/projects/P/webhooks").is_err());
        assert!(permitted(&TokenScopes::NONE, "/rest/api/latest/repos").is_ok());
        assert!(permitted(&TokenScopes::NONE, "/rest/api/latest/projects/P/repos").is_ok());
        assert!(permitted(&TokenScopes::NONE, "/rest/api/latest/projects/P/repos/r").is_err());
        assert!(permitted(&TokenScopes::NONE, "/rest/api/latest/projects/P/repos/repos").is_err());
    }
}
