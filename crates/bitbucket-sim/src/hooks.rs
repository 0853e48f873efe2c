//! The webhooks a simulated Bitbucket Data Center stores (per repository and per project), the
//! deliveries it made to them, and the JSON its webhook resources answer (`RestWebhook`,
//! `RestDetailedInvocation`, `RestInvocationHistory`). Deliveries are recorded as Bitbucket
//! records them, so `statistics/summary` and `latest` report what really happened: `SUCCESS`
//! (a 2xx answer), `FAILURE` (another status) or `ERROR` (no answer at all).

use std::fmt;

use serde::{Deserialize, Serialize};

/// Where a webhook is defined.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HookScope {
    /// On a project (upper-case key): it fires for every repository of the project.
    Project(String),
    /// On a repository (upper-case project key, lower-case slug).
    Repository { project: String, slug: String },
}

impl HookScope {
    pub(crate) fn scope_type(&self) -> &'static str {
        match self {
            Self::Project(_) => "project",
            Self::Repository { .. } => "repository",
        }
    }

    /// Whether a push to `project`/`slug` fires the webhooks of this scope.
    fn covers(&self, project: &str, slug: &str) -> bool {
        match self {
            Self::Project(key) => key == project,
            Self::Repository { project: p, slug: s } => p == project && s == slug,
        }
    }
}

/// A webhook's settings, as the "Add webhook" form holds them. `Debug` never prints the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct SimWebhook {
    pub name: String,
    pub url: String,
    pub active: bool,
    pub events: Vec<String>,
    pub secret: Option<String>,
}

impl fmt::Debug for SimWebhook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimWebhook")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("active", &self.active)
            .field("events", &self.events)
            .field("secret", &self.secret.as_ref().map(|_| "[redacted]"))
            .finish()
    }
}

impl SimWebhook {
    /// An active webhook for pushes (`repo:refs_changed`) to `url`, signed with `secret`.
    pub fn push(name: &str, url: &str, secret: Option<&str>) -> Self {
        Self {
            name: name.to_owned(),
            url: url.to_owned(),
            active: true,
            events: vec!["repo:refs_changed".to_owned()],
            secret: secret.map(str::to_owned),
        }
    }
}

/// How a delivery ended, as Bitbucket classifies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Outcome {
    /// The receiver answered 2xx.
    Success,
    /// The receiver answered another status.
    Failure,
    /// No answer (connection refused, timeout).
    Error,
}

/// One delivery the simulator made to a stored webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    pub id: u32,
    pub webhook_id: u32,
    pub event: String,
    pub url: String,
    pub outcome: Outcome,
    /// The HTTP status (as text), or the transport error.
    pub description: String,
    pub status: Option<u16>,
    /// Epoch milliseconds.
    pub start: i64,
    pub finish: i64,
    /// The `X-Request-Id` of the delivery.
    pub delivery_id: String,
}

/// A stored webhook with its deliveries.
#[derive(Debug, Clone)]
pub(crate) struct StoredHook {
    pub id: u32,
    pub scope: HookScope,
    pub hook: SimWebhook,
    pub created: i64,
    pub updated: i64,
    pub invocations: Vec<Invocation>,
}

/// Every webhook of the simulator.
#[derive(Debug, Default)]
pub(crate) struct HookStore {
    next_id: u32,
    next_invocation: u32,
    hooks: Vec<StoredHook>,
}

impl HookStore {
    pub(crate) fn create(&mut self, scope: HookScope, hook: SimWebhook) -> StoredHook {
        self.next_id += 1;
        let now = chrono::Utc::now().timestamp_millis();
        let stored = StoredHook {
            id: self.next_id,
            scope,
            hook,
            created: now,
            updated: now,
            invocations: Vec::new(),
        };
        self.hooks.push(stored.clone());
        stored
    }

    pub(crate) fn list(&self, scope: &HookScope) -> Vec<StoredHook> {
        self.hooks.iter().filter(|h| &h.scope == scope).cloned().collect()
    }

    pub(crate) fn get(&self, scope: &HookScope, id: u32) -> Option<&StoredHook> {
        self.hooks.iter().find(|h| &h.scope == scope && h.id == id)
    }

    pub(crate) fn get_mut(&mut self, scope: &HookScope, id: u32) -> Option<&mut StoredHook> {
        self.hooks.iter_mut().find(|h| &h.scope == scope && h.id == id)
    }

    pub(crate) fn delete(&mut self, scope: &HookScope, id: u32) -> bool {
        let before = self.hooks.len();
        self.hooks.retain(|h| !(&h.scope == scope && h.id == id));
        self.hooks.len() != before
    }

    pub(crate) fn all(&self) -> Vec<StoredHook> {
        self.hooks.clone()
    }

    /// The active webhooks that `event` on `project`/`slug` fires: the repository's, then its
    /// project's.
    pub(crate) fn targets(&self, project: &str, slug: &str, event: &str) -> Vec<StoredHook> {
        let mut targets: Vec<StoredHook> = self
            .hooks
            .iter()
            .filter(|h| h.hook.active && h.scope.covers(project, slug) && h.hook.events.iter().any(|e| e == event))
            .cloned()
            .collect();
        targets.sort_by_key(|h| (matches!(h.scope, HookScope::Project(_)), h.id));
        targets
    }

    /// Records a delivery to webhook `webhook_id` (ignored if it was deleted meanwhile).
    pub(crate) fn record(&mut self, mut invocation: Invocation) -> Invocation {
        self.next_invocation += 1;
        invocation.id = self.next_invocation;
        if let Some(hook) = self.hooks.iter_mut().find(|h| h.id == invocation.webhook_id) {
            hook.invocations.push(invocation.clone());
        }
        invocation
    }
}

// ---------------------------------------------------------------------------------------------
// JSON
// ---------------------------------------------------------------------------------------------

/// What the simulator shows of a secret: masked, never the value.
pub(crate) const MASKED_SECRET: &str = "********";

/// `RestWebhook` as answered. The document's schema has no `id`, `createdDate` or `updatedDate`;
/// the real server sends them. `credentials` are only sent for basic authentication, which the
/// simulator does not offer. The secret is shown masked in `configuration.secret`, and the
/// member left out when there is none.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RestWebhook {
    pub id: u32,
    pub name: String,
    pub created_date: i64,
    pub updated_date: i64,
    pub events: Vec<String>,
    pub configuration: serde_json::Map<String, serde_json::Value>,
    pub url: String,
    pub active: bool,
    pub scope_type: &'static str,
    pub ssl_verification_required: bool,
}

impl RestWebhook {
    pub(crate) fn of(stored: &StoredHook) -> Self {
        let mut configuration = serde_json::Map::new();
        if stored.hook.secret.is_some() {
            configuration.insert("secret".into(), MASKED_SECRET.into());
        }
        Self {
            id: stored.id,
            name: stored.hook.name.clone(),
            created_date: stored.created,
            updated_date: stored.updated,
            events: stored.hook.events.clone(),
            configuration,
            url: stored.hook.url.clone(),
            active: stored.hook.active,
            scope_type: stored.scope.scope_type(),
            ssl_verification_required: true,
        }
    }
}

/// `RestWebhook` as sent by a client: every member optional (a `PUT` keeps what is left out).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RestWebhookRequest {
    pub name: Option<String>,
    pub url: Option<String>,
    pub active: Option<bool>,
    pub events: Option<Vec<String>>,
    pub configuration: Option<serde_json::Map<String, serde_json::Value>>,
}

/// `{"type": "repository", "id": "1"}`.
#[derive(Debug, Serialize)]
pub(crate) struct RestEventScope {
    #[serde(rename = "type")]
    pub scope_type: &'static str,
    pub id: String,
}

/// `RestInvocationRequest`: the method and URL delivered to.
#[derive(Debug, Serialize)]
pub(crate) struct RestInvocationRequest {
    pub method: &'static str,
    pub url: String,
}

/// `RestInvocationResult`: `outcome` and `description` (the status, or the error).
#[derive(Debug, Serialize)]
pub(crate) struct RestInvocationResult {
    pub outcome: Outcome,
    pub description: String,
}

/// `RestDetailedInvocation`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RestDetailedInvocation {
    pub id: u32,
    pub event: String,
    pub event_scope: RestEventScope,
    pub start: i64,
    pub finish: i64,
    pub duration: i64,
    pub request: RestInvocationRequest,
    pub result: RestInvocationResult,
}

impl RestDetailedInvocation {
    pub(crate) fn of(invocation: &Invocation, event_scope: RestEventScope) -> Self {
        Self {
            id: invocation.id,
            event: invocation.event.clone(),
            event_scope,
            start: invocation.start,
            finish: invocation.finish,
            duration: invocation.finish - invocation.start,
            request: RestInvocationRequest {
                method: "POST",
                url: invocation.url.clone(),
            },
            result: RestInvocationResult {
                outcome: invocation.outcome,
                description: invocation.description.clone(),
            },
        }
    }
}

/// `counts` of a statistics summary.
#[derive(Debug, Serialize)]
pub(crate) struct RestInvocationCounts {
    pub successes: usize,
    pub failures: usize,
    pub errors: usize,
}

/// `RestInvocationHistory` (an empty schema in the document): the last success, failure and
/// error, and the counts, as the real server sends them.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RestInvocationHistory {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_success: Option<RestDetailedInvocation>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<RestDetailedInvocation>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<RestDetailedInvocation>,
    pub counts: RestInvocationCounts,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo_scope(slug: &str) -> HookScope {
        HookScope::Repository {
            project: "PROJ".into(),
            slug: slug.into(),
        }
    }

    #[test]
    fn a_push_fires_the_active_hooks_of_the_repository_and_its_project_only() {
        let mut store = HookStore::default();
        let mine = store.create(
            repo_scope("models"),
            SimWebhook::push("a", "http://127.0.0.1:1/a", None),
        );
        let project = store.create(
            HookScope::Project("PROJ".into()),
            SimWebhook::push("b", "http://127.0.0.1:1/b", None),
        );
        store.create(repo_scope("other"), SimWebhook::push("c", "http://127.0.0.1:1/c", None));
        store.create(
            repo_scope("models"),
            SimWebhook {
                active: false,
                ..SimWebhook::push("d", "http://127.0.0.1:1/d", None)
            },
        );

        let targets: Vec<u32> = store
            .targets("PROJ", "models", "repo:refs_changed")
            .iter()
            .map(|h| h.id)
            .collect();

        assert_eq!(targets, [mine.id, project.id]);
        assert!(store.targets("PROJ", "models", "pr:opened").is_empty());
    }

    #[test]
    fn debug_output_does_not_show_the_secret() {
        let hook = SimWebhook::push("a", "http://127.0.0.1:1/a", Some("s3cr3t-value"));
        assert!(!format!("{hook:?}").contains("s3cr3t-value"));
    }
}
