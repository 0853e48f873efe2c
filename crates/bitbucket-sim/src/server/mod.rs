//! The simulator: an axum server on a loopback port serving the Bitbucket Data Center REST
//! resources hubsync uses, over repositories that are real bare git repositories in a
//! temporary directory the simulator owns.
//!
//! Every request goes through one gate (middleware) that, in order: waits while a test holds it
//! ([`Simulator::hold_next`]), takes an injected fault if one is queued
//! ([`Simulator::fail_next`]), checks `Authorization: Bearer <token>`, runs the
//! handler, and appends a [`RecordedRequest`] to the log ([`Simulator::requests`]). The token is
//! never logged.
//!
//! A raw file can also be made to *announce* a size it never sends ([`Simulator::announce_raw`]):
//! the answer's `Content-Length` says gigabytes, a few kilobytes follow and the connection is cut.
//! Tests use it to check that a client decides from the announced size without reading the body;
//! [`Simulator::announced_bytes_sent`] says how much of such bodies actually went out.

mod admin;
mod error;
mod handlers;
mod hold;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::config::{SimConfig, TokenScopes};
use crate::error::SimError;
use crate::hooks::HookStore;
use crate::push::Push;
use crate::repo::{NewRepo, Project, ProjectType, Repo};
use crate::webhook::{self, WebhookDelivery};

pub(crate) use error::ApiError;
use hold::PendingHold;
pub use hold::{Hold, RequestLine};

/// The most body bytes an announced raw answer sends before the connection is cut.
pub const ANNOUNCED_BODY_SENT_AT_MOST: u64 = 64 * 1024;

/// One request the simulator answered, for tests to inspect. Holds no credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The path and query string exactly as received (still percent-encoded).
    pub path_and_query: String,
    /// The status code answered.
    pub status: u16,
    /// Whether the request carried the configured token.
    pub authenticated: bool,
    /// Whether the answer was an injected fault.
    pub injected: bool,
}

/// A running simulator. Dropping it stops the server (use [`Simulator::shutdown`] to wait for
/// that) and deletes the repositories once no [`Repo`] handle is left.
///
/// ```no_run
/// # async fn demo() -> Result<(), hubsync_bitbucket_sim::SimError> {
/// use hubsync_bitbucket_sim::{FileOp, SimConfig, Simulator};
///
/// let sim = Simulator::start(SimConfig::with_token("t0ken")).await?;
/// let repo = sim.create_repo("PROJ", "models")?;
/// let push = repo.commit("main", &[FileOp::write("a.hck.json", "{}")], "Add a model")?;
/// let delivery = sim.webhook(&repo, &push, Some("webhook secret"))?;
/// let answer = delivery.send("http://127.0.0.1:9000/webhook").await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Simulator {
    shared: Arc<Shared>,
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<()>>,
}

/// State shared by the server and the test-facing API.
#[derive(Debug)]
pub(crate) struct Shared {
    pub config: SimConfig,
    pub base_url: String,
    storage: Arc<tempfile::TempDir>,
    registry: Mutex<Registry>,
    faults: Mutex<VecDeque<Fault>>,
    holds: Mutex<Vec<PendingHold>>,
    log: Mutex<Vec<RecordedRequest>>,
    /// Tokens other than the configured one, with their permissions.
    tokens: Mutex<Vec<(SecretString, TokenScopes)>>,
    /// The stored webhooks and their deliveries.
    hooks: Mutex<HookStore>,
    /// Raw files answered with an announced size instead of their content, keyed by (upper-case
    /// project key, lower-case slug, path).
    announced: Mutex<HashMap<(String, String, String), u64>>,
    /// Body bytes of announced answers handed to connections so far.
    announced_sent: AtomicU64,
}

#[derive(Debug, Default)]
struct Registry {
    projects: HashMap<String, Project>,
    /// Keyed by (upper-case project key, lower-case slug).
    repos: HashMap<(String, String), Repo>,
    next_project_id: u32,
    next_repo_id: u32,
}

#[derive(Debug, Clone, Copy)]
struct Fault {
    status: StatusCode,
    retry_after: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Auth {
    Ok,
    Missing,
    Wrong,
}

impl Simulator {
    /// Checks that `git` runs, creates the storage directory, binds `config.bind` and starts
    /// serving.
    pub async fn start(config: SimConfig) -> Result<Self, SimError> {
        let mut version = crate::git::base_command();
        version.arg("--version");
        let output = crate::git::run_command(version, None)?;
        if !output.status.success() {
            return Err(SimError::Git {
                command: "--version".into(),
                status: output.status,
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
            });
        }
        let storage = tempfile::Builder::new()
            .prefix("bitbucket-sim-")
            .tempdir()
            .map_err(|e| SimError::io(std::env::temp_dir(), e))?;
        let listener = tokio::net::TcpListener::bind(config.bind)
            .await
            .map_err(SimError::Bind)?;
        let addr = listener.local_addr().map_err(SimError::Bind)?;
        let shared = Arc::new(Shared {
            config,
            base_url: format!("http://{addr}"),
            storage: Arc::new(storage),
            registry: Mutex::new(Registry {
                next_project_id: 1,
                next_repo_id: 1,
                ..Registry::default()
            }),
            faults: Mutex::new(VecDeque::new()),
            holds: Mutex::new(Vec::new()),
            log: Mutex::new(Vec::new()),
            tokens: Mutex::new(Vec::new()),
            hooks: Mutex::new(HookStore::default()),
            announced: Mutex::new(HashMap::new()),
            announced_sent: AtomicU64::new(0),
        });
        let app = router(Arc::clone(&shared));
        let (shutdown, signal) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async {
                let _ = signal.await;
            });
            if let Err(err) = serve.await {
                tracing::error!(error = %err, "simulator server stopped with an error");
            }
        });
        tracing::info!(base_url = %shared.base_url, "Bitbucket simulator started");
        Ok(Self {
            shared,
            addr,
            shutdown: Some(shutdown),
            server: Some(server),
        })
    }

    /// `http://127.0.0.1:<port>`: the Bitbucket base URL (REST resources are under `/rest/...`).
    pub fn base_url(&self) -> &str {
        &self.shared.base_url
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The access token the server accepts.
    pub fn token(&self) -> &SecretString {
        &self.shared.config.token
    }

    /// The configuration the simulator runs with.
    pub fn config(&self) -> &SimConfig {
        &self.shared.config
    }

    /// The REST URL of a repository: `<base>/rest/api/1.0/projects/<KEY>/repos/<slug>`.
    pub fn repo_api_url(&self, repo: &Repo) -> String {
        format!(
            "{}/rest/api/1.0/projects/{}/repos/{}",
            self.base_url(),
            repo.project_key(),
            repo.slug()
        )
    }

    /// Creates an empty repository named `name` in project `project_key` (created on first
    /// use; `~user` makes a personal project). The slug is derived from the name as Bitbucket
    /// does (lower case, spaces to `-`); ids are assigned in creation order from 1.
    pub fn create_repo(&self, project_key: &str, name: &str) -> Result<Repo, SimError> {
        let (key, project_type) = parse_project_key(project_key)?;
        let slug = slugify(name)?;
        let mut registry = self.shared.registry();
        if registry.repos.contains_key(&(key.clone(), slug.clone())) {
            return Err(SimError::RepositoryExists { project: key, slug });
        }
        let project = match registry.projects.get(&key) {
            Some(project) => project.clone(),
            None => {
                let project = Project {
                    id: registry.next_project_id,
                    name: match project_type {
                        ProjectType::Normal => key.clone(),
                        ProjectType::Personal => key.trim_start_matches('~').to_lowercase(),
                    },
                    key: key.clone(),
                    public: false,
                    project_type,
                };
                registry.next_project_id += 1;
                registry.projects.insert(key.clone(), project.clone());
                project
            }
        };
        let repo = Repo::create(NewRepo {
            project,
            slug: slug.clone(),
            name: name.to_owned(),
            id: registry.next_repo_id,
            actor: self.shared.config.actor.clone(),
            storage: Arc::clone(&self.shared.storage),
        })?;
        registry.next_repo_id += 1;
        registry.repos.insert((key, slug), repo.clone());
        Ok(repo)
    }

    /// The repository `project_key`/`slug`, if it exists (case-insensitive, as Bitbucket).
    pub fn repo(&self, project_key: &str, slug: &str) -> Option<Repo> {
        self.shared.find_repo(project_key, slug).ok()
    }

    /// Makes the next `n` requests (whatever they are, authenticated or not) answer `status`
    /// with an errors body, and `Retry-After: <seconds>` when given. Queues after faults
    /// already queued.
    pub fn fail_next(&self, n: usize, status: StatusCode, retry_after: Option<u32>) {
        let mut faults = lock(&self.shared.faults);
        faults.extend(std::iter::repeat_n(Fault { status, retry_after }, n));
    }

    /// Holds the next request whose request line satisfies `matcher` open inside the simulator
    /// (before it is answered) until the returned [`Hold`] is released or dropped. Holds are
    /// matched in the order they were asked for; each takes one request.
    ///
    /// ```no_run
    /// # async fn demo(sim: &hubsync_bitbucket_sim::Simulator) {
    /// let hold = sim.hold_next(|r| r.path_and_query.contains("/raw/orders.json"));
    /// // ... start writer A, which fetches orders.json ...
    /// hold.reached().await; // A is now blocked inside that fetch
    /// // ... run writer B to completion ...
    /// hold.release(); // A goes on
    /// # }
    /// ```
    pub fn hold_next(&self, matcher: impl Fn(&RequestLine) -> bool + Send + Sync + 'static) -> Hold {
        let (hold, pending) = Hold::new(matcher);
        lock(&self.shared.holds).push(pending);
        hold
    }

    /// Makes `GET .../raw/{path}` of `repo` (at any commit where `path` is a file) answer 200 with
    /// `Content-Length: <bytes>` but send at most [`ANNOUNCED_BODY_SENT_AT_MOST`] bytes of body
    /// before cutting the connection: a file too large to be read, without the simulator holding
    /// it. The file must still be committed (any content) so that it is listed.
    pub fn announce_raw(&self, repo: &Repo, path: &str, bytes: u64) {
        let key = (
            repo.project_key().to_uppercase(),
            repo.slug().to_lowercase(),
            path.to_owned(),
        );
        lock(&self.shared.announced).insert(key, bytes);
    }

    /// Body bytes of [`Simulator::announce_raw`] answers handed to connections so far (what a
    /// client could have read of them).
    pub fn announced_bytes_sent(&self) -> u64 {
        self.shared.announced_sent.load(Ordering::SeqCst)
    }

    /// Drops all queued faults.
    pub fn clear_faults(&self) {
        lock(&self.shared.faults).clear();
    }

    /// Every request answered so far, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.shared.log).clone()
    }

    /// Forgets the requests answered so far.
    pub fn clear_requests(&self) {
        lock(&self.shared.log).clear();
    }

    /// The `repo:refs_changed` delivery Bitbucket would send for `push` to `repo`, signed with
    /// `secret` if given. Each call is a new delivery (new `X-Request-Id`); send the same
    /// [`WebhookDelivery`] again to simulate a redelivery.
    pub fn webhook(&self, repo: &Repo, push: &Push, secret: Option<&str>) -> Result<WebhookDelivery, SimError> {
        webhook::refs_changed(
            repo,
            push,
            &self.shared.config.actor,
            self.shared.config.webhook_commit_details,
            secret,
        )
    }

    /// The `diagnostics:ping` delivery Bitbucket sends when "Test connection" is clicked.
    pub fn ping(&self, secret: Option<&str>) -> WebhookDelivery {
        webhook::ping(secret)
    }

    /// Stops the server and waits until it has stopped.
    pub async fn shutdown(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(server) = self.server.take()
            && let Err(err) = server.await
        {
            tracing::warn!(error = %err, "simulator server task ended abnormally");
        }
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}

impl Shared {
    fn registry(&self) -> MutexGuard<'_, Registry> {
        lock(&self.registry)
    }

    /// Looks a repository up the way Bitbucket does: keys and slugs are case-insensitive.
    pub(crate) fn find_repo(&self, project_key: &str, slug: &str) -> Result<Repo, ApiError> {
        let key = project_key.to_uppercase();
        let registry = self.registry();
        if !registry.projects.contains_key(&key) {
            return Err(ApiError::NoSuchProject {
                key: project_key.to_owned(),
            });
        }
        registry
            .repos
            .get(&(key.clone(), slug.to_lowercase()))
            .cloned()
            .ok_or_else(|| ApiError::NoSuchRepository {
                key,
                slug: slug.to_owned(),
            })
    }

    fn authenticate(&self, headers: &HeaderMap) -> Auth {
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return Auth::Missing;
        };
        let Ok(value) = value.to_str() else {
            return Auth::Wrong;
        };
        let Some((scheme, token)) = value.split_once(' ') else {
            return Auth::Wrong;
        };
        let expected = self.config.token.expose_secret().as_bytes();
        let known = |token: &str| {
            bool::from(token.as_bytes().ct_eq(expected))
                || lock(&self.tokens)
                    .iter()
                    .any(|(t, _)| bool::from(token.as_bytes().ct_eq(t.expose_secret().as_bytes())))
        };
        if scheme.eq_ignore_ascii_case("bearer") && known(token.trim()) {
            Auth::Ok
        } else {
            Auth::Wrong
        }
    }

    /// The first pending hold matching `line`, taken.
    fn take_hold(&self, line: &RequestLine) -> Option<PendingHold> {
        let mut holds = lock(&self.holds);
        let index = holds.iter().position(|h| h.matches(line))?;
        Some(holds.remove(index))
    }

    /// The size announced for `path` of `repo` ([`Simulator::announce_raw`]), if any.
    pub(crate) fn announced_size(&self, repo: &Repo, path: &str) -> Option<u64> {
        let key = (
            repo.project_key().to_uppercase(),
            repo.slug().to_lowercase(),
            path.to_owned(),
        );
        lock(&self.announced).get(&key).copied()
    }

    pub(crate) fn count_announced_sent(&self, bytes: u64) {
        self.announced_sent.fetch_add(bytes, Ordering::SeqCst);
    }

    fn take_fault(&self) -> Option<Fault> {
        lock(&self.faults).pop_front()
    }

    fn record(&self, request: RecordedRequest) {
        lock(&self.log).push(request);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The API under both prefixes the real server serves: `/rest/api/latest` and `/rest/api/1.0`.
fn router(shared: Arc<Shared>) -> Router {
    let repo = "/projects/{project}/repos/{repo}";
    let api: Router<Arc<Shared>> = Router::new()
        .route(repo, get(handlers::repository))
        .route(&format!("{repo}/default-branch"), get(handlers::default_branch))
        .route(&format!("{repo}/branches/default"), get(handlers::default_branch))
        .route(&format!("{repo}/changes"), get(handlers::changes))
        .route(&format!("{repo}/raw/{{*path}}"), get(handlers::raw))
        .route(&format!("{repo}/files"), get(handlers::files_root))
        .route(&format!("{repo}/files/{{*path}}"), get(handlers::files))
        .route(&format!("{repo}/commits"), get(handlers::commits))
        .route(&format!("{repo}/commits/{{commit}}"), get(handlers::commit));
    let api = admin::routes(api);
    Router::new()
        .nest("/rest/api/latest", api.clone())
        .nest("/rest/api/1.0", api)
        .fallback(handlers::no_such_resource)
        .layer(middleware::from_fn_with_state(Arc::clone(&shared), gate))
        .with_state(shared)
}

/// Fault injection, authentication and the request log, around every request.
async fn gate(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    let method = request.method().to_string();
    let path_and_query = request
        .uri()
        .path_and_query()
        .map_or_else(|| request.uri().path().to_owned(), |pq| pq.as_str().to_owned());
    let held = shared.take_hold(&RequestLine {
        method: method.clone(),
        path_and_query: path_and_query.clone(),
    });
    if let Some(held) = held {
        held.wait().await;
    }
    let auth = shared.authenticate(request.headers());
    let fault = shared.take_fault();
    let response = match (fault, auth) {
        (Some(fault), _) => ApiError::Injected {
            status: fault.status,
            retry_after: fault.retry_after,
        }
        .into_response(),
        (None, Auth::Ok) => {
            // Checked against the token's permissions, which the handlers can read too.
            let scopes = bearer_token(request.headers())
                .and_then(|token| shared.scopes_of(token))
                .unwrap_or(TokenScopes::NONE);
            match admin::permitted(&scopes, request.uri().path()) {
                Ok(()) => {
                    let mut request = request;
                    request.extensions_mut().insert(scopes);
                    next.run(request).await
                }
                Err(error) => error.into_response(),
            }
        }
        (None, Auth::Missing) => ApiError::NotPermitted.into_response(),
        (None, Auth::Wrong) => ApiError::AuthenticationFailed.into_response(),
    };
    let status = response.status().as_u16();
    tracing::info!(
        %method,
        path = %path_and_query,
        status,
        authenticated = auth == Auth::Ok,
        injected = fault.is_some(),
        "bitbucket-sim request"
    );
    shared.record(RecordedRequest {
        method,
        path_and_query,
        status,
        authenticated: auth == Auth::Ok,
        injected: fault.is_some(),
    });
    response
}

/// The token of an `Authorization: Bearer <token>` header.
fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// `PROJ` → (`PROJ`, Normal); `~alice` → (`~ALICE`, Personal).
fn parse_project_key(key: &str) -> Result<(String, ProjectType), SimError> {
    let invalid = |reason| SimError::InvalidName {
        what: "project key",
        value: key.to_owned(),
        reason,
    };
    if let Some(user) = key.strip_prefix('~') {
        if user.is_empty() || !user.chars().all(|c| c.is_ascii_alphanumeric() || "._-@".contains(c)) {
            return Err(invalid("a personal project key is ~ followed by a user slug"));
        }
        return Ok((key.to_uppercase(), ProjectType::Personal));
    }
    let mut chars = key.chars();
    let starts_with_letter = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
    if !starts_with_letter || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(invalid(
            "project keys start with a letter and hold only letters, digits and underscores",
        ));
    }
    Ok((key.to_uppercase(), ProjectType::Normal))
}

/// Bitbucket's slug of a repository name: lower case, whitespace to `-`, only `[a-z0-9._-]`.
fn slugify(name: &str) -> Result<String, SimError> {
    let slug: String = name
        .trim()
        .chars()
        .filter_map(|c| {
            if c.is_whitespace() {
                Some('-')
            } else if c.is_ascii_alphanumeric() || "._-".contains(c) {
                Some(c.to_ascii_lowercase())
            } else {
                None
            }
        })
        .collect();
    if slug.is_empty() {
        return Err(SimError::InvalidName {
            what: "repository name",
            value: name.to_owned(),
            reason: "needs at least one letter, digit, '.', '_' or '-'",
        });
    }
    Ok(slug)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_keys_are_upper_cased_and_tilde_keys_are_personal() {
        assert_eq!(
            parse_project_key("proj").expect("valid"),
            ("PROJ".into(), ProjectType::Normal)
        );
        assert_eq!(
            parse_project_key("~alice").expect("valid"),
            ("~ALICE".into(), ProjectType::Personal)
        );
        assert!(parse_project_key("1PROJ").is_err());
        assert!(parse_project_key("PR OJ").is_err());
        assert!(parse_project_key("~").is_err());
    }

    #[test]
    fn slugs_are_derived_from_names() {
        assert_eq!(slugify("Data Models").expect("valid"), "data-models");
        assert_eq!(slugify("models_v2.x").expect("valid"), "models_v2.x");
        assert!(slugify("ü").is_err());
    }
}
