//! `hubsync serve`: the whole pipeline as one local process, no AWS. The webhook endpoint, the
//! queue and the sync worker are the same code the Lambda functions run, over the SQLite adapters:
//!
//! ```text
//! Bitbucket ──POST …/gateway/public/sync──▶ WebhookHandler ──enqueue──▶ SqliteHub queue
//!                                                                          │ receive (lease)
//!                                   SqliteHub models ◀── SyncWorker ◀──────┘ ack / retry / dead letter
//! ```
//!
//! - `POST {any prefix}/gateway/public/sync`: the core [`WebhookHandler`]; bodies over
//!   [`MAX_BODY_BYTES`] are refused with 413 before they are read whole.
//! - `GET /health`: queue depths and the number of registered repositories.
//! - `--workers` tasks take pushes off the queue one at a time, per repository in order. A sync that
//!   fails is retried with exponential backoff (transient errors soon, permanent ones more slowly,
//!   since a person has to fix them); after `--max-attempts` the push is dead-lettered.
//! - Ctrl-C or SIGTERM: stop accepting requests, let each worker finish the push in hand within
//!   `--shutdown-grace`, then exit 0. A push still running then keeps its lease in the database,
//!   and is delivered again once the lease expires after a restart: nothing is lost.

use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::{FutureExt, StreamExt};
use hubsync_bitbucket::{BitbucketConnector, ClientOptions};
use hubsync_core::ports::RepoRegistry;
use hubsync_core::secrets::StaticSecret;
use hubsync_core::sync::{GitHostConnector, RetryPolicy, SyncError, SyncOptions, SyncOutcome, SyncWorker};
use hubsync_core::webhook::{MAX_BODY_BYTES, WEBHOOK_PATH, WebhookHandler, WebhookRequest, WebhookResponse};
use hubsync_sqlite::{HubOptions, QueuedPush, RetryOutcome, SqliteHub};
use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{Instrument, error, info, info_span, warn};

use crate::config::LocalConfig;

#[derive(clap::Args, Debug, Clone)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:8080", env = "HUB_LISTEN")]
    pub listen: SocketAddr,
    /// Sync workers (pushes to one repository are always synced one after the other).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub workers: u16,
    /// Deliveries of a push before it is moved to the dead-letter table.
    #[arg(long, default_value_t = hubsync_sqlite::DEFAULT_MAX_ATTEMPTS, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_attempts: u32,
    /// Seconds a received push stays hidden from other workers; renewed while its sync runs.
    #[arg(long, value_name = "SECONDS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    pub visibility_timeout: u64,
    /// Seconds the workers get to finish the pushes in hand on Ctrl-C or SIGTERM.
    #[arg(long, value_name = "SECONDS", default_value_t = 25)]
    pub shutdown_grace: u64,
    /// Run the demo instead (a simulated Bitbucket with sample models) and keep serving.
    #[arg(long)]
    pub demo: bool,
}

impl Default for ServeArgs {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            workers: 2,
            max_attempts: hubsync_sqlite::DEFAULT_MAX_ATTEMPTS,
            visibility_timeout: 60,
            shutdown_grace: 25,
            demo: false,
        }
    }
}

/// How often an idle worker looks for work nobody announced (an expired lease, a backoff that ran
/// out, a push queued by another process).
const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// How long a push whose sync panicked waits before it is tried again.
const PANIC_BACKOFF: Duration = Duration::from_secs(30);

/// `hubsync serve`: runs until Ctrl-C or SIGTERM.
pub async fn run(args: ServeArgs, local: LocalConfig) -> anyhow::Result<()> {
    if args.demo {
        return crate::demo::run(crate::demo::DemoArgs {
            listen: args.listen,
            keep_running: true,
            db: None,
        })
        .await;
    }
    let server = start(args, local).await?;
    // On stdout, for people and for scripts that started it on port 0.
    println!("hubsync serve: listening on http://{}", server.addr());
    server.run_until_signal().await
}

/// Starts the server and the workers against Bitbucket Data Center, as configured in `local`.
pub async fn start(args: ServeArgs, local: LocalConfig) -> anyhow::Result<RunningServer> {
    let connector =
        BitbucketConnector::new(ClientOptions::default()).context("could not set up the Bitbucket HTTP client")?;
    start_with(args, local, connector).await
}

/// Starts the server and the workers with any Git host.
pub async fn start_with<C>(args: ServeArgs, local: LocalConfig, connector: C) -> anyhow::Result<RunningServer>
where
    C: GitHostConnector + 'static,
{
    let options = HubOptions {
        max_attempts: args.max_attempts,
        ..HubOptions::default()
    };
    let db_path = local.db_path.clone();
    let hub = tokio::task::spawn_blocking(move || SqliteHub::open_with(&db_path, options))
        .await?
        .with_context(|| format!("could not open the local database {}", local.db_path.display()))?;

    let secrets = local.secret.clone().map(StaticSecret);
    if secrets.is_none() {
        warn!(
            "no hub secret is configured: every webhook delivery is refused with 503 until HUB_CONFIG, or \
             HUB_BITBUCKET_URL, HUB_BITBUCKET_TOKEN and HUB_WEBHOOK_SECRET, are set"
        );
    }
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("could not listen on {}", args.listen))?;
    let addr = listener.local_addr()?;

    let (stop, stopped) = watch::channel(false);
    let app = router(AppState {
        webhook: Arc::new(WebhookHandler::new(hub.clone(), secrets.clone())),
        hub: hub.clone(),
        secret_configured: secrets.is_some(),
    });
    let mut http_stopped = stopped.clone();
    let http = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = http_stopped.wait_for(|stop| *stop).await;
            })
            .await
    });

    let worker = Arc::new(SyncWorker {
        store: hub.clone(),
        secrets,
        connector,
        options: SyncOptions::default(),
    });
    let config = WorkerConfig {
        visibility: Duration::from_secs(args.visibility_timeout),
    };
    let workers = (1..=args.workers)
        .map(|n| tokio::spawn(work(n, hub.clone(), worker.clone(), config, stopped.clone())))
        .collect();

    let stats = hub.queue_stats().await?;
    info!(
        listen = %addr,
        webhook = %format!("http://{addr}{WEBHOOK_PATH}"),
        database = %local.db_path.display(),
        workers = args.workers,
        pending = stats.pending,
        dead_letters = stats.dead_letters,
        "hubsync serve started"
    );
    Ok(RunningServer {
        addr,
        hub,
        stop,
        http: Some(http),
        workers,
        grace: Duration::from_secs(args.shutdown_grace),
    })
}

/// A started server; dropping it does not stop it, [`RunningServer::shutdown`] does.
pub struct RunningServer {
    addr: SocketAddr,
    hub: SqliteHub,
    stop: watch::Sender<bool>,
    http: Option<JoinHandle<std::io::Result<()>>>,
    workers: Vec<JoinHandle<()>>,
    grace: Duration,
}

impl RunningServer {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The URL to give Bitbucket's webhook.
    pub fn webhook_url(&self) -> String {
        format!("http://{}{WEBHOOK_PATH}", self.addr)
    }

    pub fn hub(&self) -> &SqliteHub {
        &self.hub
    }

    /// Serves until Ctrl-C or SIGTERM (or until the HTTP server fails), then shuts down.
    pub async fn run_until_signal(mut self) -> anyhow::Result<()> {
        let Some(http) = self.http.as_mut() else {
            return self.shutdown().await;
        };
        let ended = tokio::select! {
            signal = shutdown_signal() => Err(signal),
            ended = http => Ok(ended),
        };
        let failure = match ended {
            Err(signal) => {
                info!(
                    signal,
                    "shutting down: no new requests; workers finish the push in hand"
                );
                None
            }
            Ok(ended) => {
                self.http = None;
                Some(match ended {
                    Ok(Ok(())) => anyhow::anyhow!("the HTTP server stopped unexpectedly"),
                    Ok(Err(e)) => anyhow::Error::new(e).context("the HTTP server failed"),
                    Err(e) => anyhow::Error::new(e).context("the HTTP server task failed"),
                })
            }
        };
        self.shutdown().await?;
        failure.map_or(Ok(()), Err)
    }

    /// Stops accepting requests, lets the workers finish the pushes in hand within the grace
    /// period, and returns when everything has stopped. A push still running after the grace period
    /// is abandoned: its lease expires and it is delivered again after a restart.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        self.stop.send_replace(true);
        let deadline = Instant::now() + self.grace;
        if let Some(http) = self.http.take() {
            match tokio::time::timeout_at(deadline, http).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) => warn!(error = %e, "the HTTP server ended with an error"),
                Ok(Err(e)) => warn!(error = %e, "the HTTP server task failed"),
                Err(_) => warn!("requests still open after the grace period were dropped"),
            }
        }
        let mut abandoned = 0;
        for mut worker in std::mem::take(&mut self.workers) {
            match tokio::time::timeout_at(deadline, &mut worker).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => error!(error = %e, "a sync worker panicked"),
                Err(_) => {
                    worker.abort();
                    abandoned += 1;
                }
            }
        }
        if abandoned > 0 {
            warn!(
                abandoned,
                "pushes still syncing after the grace period were abandoned; they are delivered again when their lease expires"
            );
        }
        let stats = self.hub.queue_stats().await?;
        info!(
            pending = stats.pending,
            in_flight = stats.in_flight,
            dead_letters = stats.dead_letters,
            "hubsync serve stopped; queued pushes are kept in the database"
        );
        Ok(())
    }
}

/// Completes on Ctrl-C, or SIGTERM on Unix; says which.
async fn shutdown_signal() -> &'static str {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            // No handler could be installed: only SIGTERM (or nothing) stops the server.
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut sigterm) => {
                sigterm.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => "SIGINT",
        () = terminate => "SIGTERM",
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------------------------

#[derive(Clone)]
struct AppState {
    webhook: Arc<WebhookHandler<SqliteHub, Option<StaticSecret>>>,
    hub: SqliteHub,
    secret_configured: bool,
}

fn router(state: AppState) -> Router {
    Router::new()
        .route("/health", get(health))
        // Everything else goes to the core handler, which answers 404 off the webhook path and 405
        // for other methods on it, with a message saying what Bitbucket should be pointed at.
        .fallback(webhook)
        .with_state(state)
}

async fn health(State(state): State<AppState>) -> Response {
    let result = async {
        let stats = state.hub.queue_stats().await?;
        let repositories = state.hub.repos().await?.len();
        anyhow::Ok((stats, repositories))
    }
    .await;
    match result {
        Ok((queue, repositories)) => (
            StatusCode::OK,
            axum::Json(json!({
                "status": "ok",
                "queue": queue,
                "repositories": repositories,
                "webhookSecret": if state.secret_configured { "configured" } else { "missing" },
            })),
        )
            .into_response(),
        Err(e) => {
            error!(error = format!("{e:#}"), "health check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(json!({"status": "unavailable", "error": format!("{e:#}")})),
            )
                .into_response()
        }
    }
}

async fn webhook(State(state): State<AppState>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let on_endpoint = parts.uri.path().trim_end_matches('/').ends_with(WEBHOOK_PATH);
    // Only a POST to the endpoint has a body worth reading; the handler answers the rest.
    let body = if on_endpoint && parts.method == axum::http::Method::POST {
        match read_body(&parts.headers, body).await {
            Ok(bytes) => bytes,
            Err(response) => return response,
        }
    } else {
        Vec::new()
    };
    let answer = state
        .webhook
        .handle(WebhookRequest {
            method: &parts.method,
            path: parts.uri.path(),
            headers: &parts.headers,
            body: &body,
        })
        .await;
    answer.into_http()
}

/// Reads at most [`MAX_BODY_BYTES`]; a larger body is refused without reading the rest.
async fn read_body(headers: &axum::http::HeaderMap, body: Body) -> Result<Vec<u8>, Response> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return Err(WebhookResponse::payload_too_large().into_http());
    }
    let mut bytes = Vec::with_capacity(declared.map_or(8 * 1024, |n| n as usize));
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            warn!(error = %e, "could not read the request body");
            (
                StatusCode::BAD_REQUEST,
                axum::Json(json!({"error": "unreadable_body", "message": "the request body could not be read"})),
            )
                .into_response()
        })?;
        if bytes.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(WebhookResponse::payload_too_large().into_http());
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

// ---------------------------------------------------------------------------------------------
// Workers
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
struct WorkerConfig {
    visibility: Duration,
}

type Worker<C> = SyncWorker<SqliteHub, Option<StaticSecret>, C>;

/// One worker: takes a push, syncs it, acknowledges or retries it; waits for work when there is
/// none. Stops between pushes once `stop` is set, never in the middle of one.
async fn work<C: GitHostConnector + 'static>(
    n: u16,
    hub: SqliteHub,
    worker: Arc<Worker<C>>,
    config: WorkerConfig,
    mut stop: watch::Receiver<bool>,
) {
    while !*stop.borrow() {
        // Registered before looking, so a push queued in between still wakes this worker.
        let notified = hub.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        match hub.receive(config.visibility).await {
            Ok(Some(message)) => process(&hub, &worker, config, message).await,
            Ok(None) => {
                tokio::select! {
                    () = &mut notified => {}
                    () = tokio::time::sleep(POLL_INTERVAL) => {}
                    _ = stop.changed() => {}
                }
            }
            Err(e) => {
                error!(worker = n, error = %e, "could not read the queue; trying again shortly");
                tokio::select! {
                    () = tokio::time::sleep(POLL_INTERVAL) => {}
                    _ = stop.changed() => {}
                }
            }
        }
    }
}

async fn process<C: GitHostConnector>(hub: &SqliteHub, worker: &Worker<C>, config: WorkerConfig, message: QueuedPush) {
    let push = &message.push;
    let span = info_span!(
        "push",
        delivery_id = %push.delivery_id,
        repository = %push.repo,
        commit = %push.changes.first().map_or("-", |c| c.to_hash.short()),
        attempt = message.attempts,
    );
    async {
        // A panic in a sync must not take the worker down with it: the push is released instead.
        let result = AssertUnwindSafe(with_heartbeat(hub, &message, config, worker.handle_push(push)))
            .catch_unwind()
            .await;
        match result {
            Err(panic) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".to_owned());
                error!(panic = %what, "the sync panicked; the push is released for a later attempt");
                if let Err(e) = hub
                    .retry(&message.receipt, PANIC_BACKOFF, &format!("the sync panicked: {what}"))
                    .await
                {
                    error!(error = %e, "could not release the push; it comes back when its lease expires");
                }
            }
            Ok(Err(e)) => fail(hub, &message, &e).await,
            Ok(Ok(outcome)) => {
                info!(outcome = %describe(&outcome), "push handled");
                match hub.ack(&message.receipt).await {
                    Ok(true) => {}
                    Ok(false) => warn!("the lease had expired; the push will be handled again (harmlessly)"),
                    Err(e) => error!(error = %e, "could not acknowledge the push; it will be handled again"),
                }
            }
        }
    }
    .instrument(span)
    .await;
}

/// Runs `sync`, renewing the message's lease every third of the visibility timeout so a long sync
/// is not handed to a second worker.
async fn with_heartbeat<T>(
    hub: &SqliteHub,
    message: &QueuedPush,
    config: WorkerConfig,
    sync: impl std::future::Future<Output = T>,
) -> T {
    tokio::pin!(sync);
    let period = (config.visibility / 3).max(Duration::from_millis(100));
    let mut beat = tokio::time::interval_at(Instant::now() + period, period);
    loop {
        tokio::select! {
            result = &mut sync => return result,
            _ = beat.tick() => match hub.extend_lease(&message.receipt, config.visibility).await {
                Ok(true) => {}
                Ok(false) => warn!("the lease was lost; another worker may handle this push too"),
                Err(e) => warn!(error = %e, "could not renew the lease"),
            },
        }
    }
}

/// Transient failures come back after 2 s, 4 s, 8 s...; permanent ones after 30 s, 60 s... (a
/// person has to fix them, and may meanwhile). Both are capped at 10 minutes.
const RETRY_POLICY: RetryPolicy = RetryPolicy {
    transient: Duration::from_secs(2),
    permanent: Duration::from_secs(30),
    max: Duration::from_secs(600),
};

async fn fail(hub: &SqliteHub, message: &QueuedPush, error: &SyncError) {
    let cause = error_chain(error);
    let delay = RETRY_POLICY.delay(error.is_retryable(), message.attempts);
    let kind = if error.is_retryable() { "transient" } else { "permanent" };
    match hub.retry(&message.receipt, delay, &cause).await {
        Ok(RetryOutcome::Scheduled { visible_at }) if error.is_retryable() => warn!(
            error = %cause, retry_in_secs = delay.as_secs(), %visible_at,
            "sync failed ({kind}); retrying"
        ),
        Ok(RetryOutcome::Scheduled { visible_at }) => error!(
            error = %cause, retry_in_secs = delay.as_secs(), %visible_at,
            max_attempts = hub.options().max_attempts,
            "sync failed ({kind}: needs a person); retrying until max attempts"
        ),
        Ok(RetryOutcome::DeadLettered) => error!(
            error = %cause, attempts = message.attempts,
            "sync failed for the last time; the push is in the dead-letter table (the repository's next push, or `hubsync sync`, catches up)"
        ),
        Ok(RetryOutcome::LeaseLost) => {
            warn!(error = %cause, "sync failed after the lease expired; it is handled again")
        }
        Err(e) => {
            error!(error = %cause, queue_error = %e, "sync failed and could not be released; it comes back when its lease expires")
        }
    }
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let more = cause.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = cause.source();
    }
    text
}

fn describe(outcome: &SyncOutcome) -> String {
    match outcome {
        SyncOutcome::NotRegistered => "repository not registered; nothing replicated".into(),
        SyncOutcome::NotDefaultBranch { default_branch } => {
            format!("not the default branch ({default_branch}); skipped")
        }
        SyncOutcome::EmptyRepository => "empty repository; nothing to replicate".into(),
        SyncOutcome::UpToDate { head } => format!("already at {}", head.short()),
        SyncOutcome::Synced { from, to, mode, stats } => format!(
            "synced {} -> {} ({mode:?}): {stats}",
            from.as_ref().map_or("(none)", |c| c.short()),
            to.short(),
        ),
    }
}

#[cfg(test)]
mod tests {
    //! The local server end to end over HTTP, with the in-memory Git host: what Bitbucket sees,
    //! what the worker replicates, and how it stops.

    use std::collections::BTreeMap;

    use hubsync_core::ids::RepoRef;
    use hubsync_core::ports::{GitHostErrorKind, ModelStore};
    use hubsync_core::secrets::HubSecret;
    use hubsync_core::signature::sign;
    use hubsync_core::testing::fixtures::{hub_secret, model, refs_changed};
    use hubsync_core::testing::memory::MemoryGitHost;
    use hubsync_core::webhook::MAX_BODY_BYTES;
    use secrecy::SecretString;
    use tower::ServiceExt;

    use super::*;

    const SECRET: &str = "serve-test-secret";

    /// The in-memory Git host, shared between the test and the workers.
    type SharedHost = Arc<MemoryGitHost>;

    struct App {
        server: RunningServer,
        host: SharedHost,
        http: reqwest::Client,
        repo: RepoRef,
        _dir: tempfile::TempDir,
    }

    fn secret() -> HubSecret {
        hub_secret(SECRET)
    }

    async fn spawn_app_with(args: ServeArgs, secret: Option<HubSecret>) -> App {
        let dir = tempfile::tempdir().unwrap();
        let host = SharedHost::default();
        let local = LocalConfig {
            db_path: dir.path().join("hub.db"),
            secret,
        };
        let args = ServeArgs {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            ..args
        };
        let server = start_with(args, local, host.clone()).await.unwrap();
        App {
            server,
            host,
            http: reqwest::Client::builder().no_proxy().build().unwrap(),
            repo: RepoRef::parse("DATA/models").unwrap(),
            _dir: dir,
        }
    }

    async fn spawn_app() -> App {
        spawn_app_with(ServeArgs::default(), Some(secret())).await
    }

    impl App {
        async fn post(&self, delivery: &str, body: Vec<u8>, key: &str) -> (StatusCode, serde_json::Value) {
            let signature = sign(&body, &SecretString::from(key.to_owned()));
            let response = self
                .http
                .post(self.server.webhook_url())
                .header("X-Event-Key", "repo:refs_changed")
                .header("X-Request-Id", delivery)
                .header("X-Hub-Signature", signature)
                .body(body)
                .send()
                .await
                .unwrap();
            (response.status(), response.json().await.unwrap_or_default())
        }

        async fn health(&self) -> serde_json::Value {
            let url = format!("http://{}/health", self.server.addr());
            let response = self.http.get(url).send().await.unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            response.json().await.unwrap()
        }

        /// Waits (bounded) until the queue has nothing pending or in flight.
        async fn drained(&self) {
            let deadline = Instant::now() + Duration::from_secs(30);
            while !self.server.hub().queue_stats().await.unwrap().is_drained() {
                assert!(Instant::now() < deadline, "the queue did not drain");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }

    #[tokio::test]
    async fn health_reports_the_queue_and_the_registered_repositories() {
        let app = spawn_app().await;
        app.server.hub().register(&app.repo).await.unwrap();

        let health = app.health().await;

        assert_eq!(
            health,
            json!({
                "status": "ok",
                "queue": {"pending": 0, "inFlight": 0, "deadLetters": 0},
                "repositories": 1,
                "webhookSecret": "configured"
            })
        );
        app.server.shutdown().await.unwrap();
    }

    #[tokio::test]
    async fn a_signed_push_is_queued_once_and_replicated_by_a_worker() {
        let app = spawn_app().await;
        app.server.hub().register(&app.repo).await.unwrap();
        let head = app.host.commit(
            &app.repo,
            BTreeMap::from([
                ("orders.hck.json".to_string(), model("Orders")),
                ("README.md".to_string(), b"hi".to_vec()),
            ]),
        );

        let (status, answer) = app.post("delivery-1", refs_changed(&app.repo, &head), SECRET).await;
        let (again, duplicate) = app.post("delivery-1", refs_changed(&app.repo, &head), SECRET).await;
        app.drained().await;

        assert_eq!((status, &answer["status"]), (StatusCode::ACCEPTED, &json!("queued")));
        assert_eq!(
            (again, &duplicate["status"]),
            (StatusCode::ACCEPTED, &json!("duplicate"))
        );
        let models = app.server.hub().list_models(&app.repo).await.unwrap();
        assert_eq!(
            models.iter().map(|m| m.path.as_str()).collect::<Vec<_>>(),
            ["orders.hck.json"]
        );
        let record = app.server.hub().repo(&app.repo).await.unwrap().unwrap();
        assert_eq!(record.cursor.map(|c| c.commit), Some(head));
        app.server.shutdown().await.unwrap();
    }

    #[tokio::test]
    async fn without_a_secret_every_delivery_is_refused_with_503() {
        let app = spawn_app_with(ServeArgs::default(), None).await;

        let (status, answer) = app.post("d", b"{}".to_vec(), SECRET).await;

        assert_eq!(
            (status, &answer["error"]),
            (StatusCode::SERVICE_UNAVAILABLE, &json!("secret_unavailable"))
        );
        assert_eq!(app.health().await["webhookSecret"], json!("missing"));
        app.server.shutdown().await.unwrap();
    }

    #[tokio::test]
    async fn other_methods_on_the_webhook_path_get_405_with_allow() {
        let app = spawn_app().await;

        let response = app.http.get(app.server.webhook_url()).send().await.unwrap();

        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(response.headers().get("allow").unwrap(), "POST");
        app.server.shutdown().await.unwrap();
    }

    #[tokio::test]
    async fn a_webhook_behind_a_stage_prefix_is_accepted_and_other_paths_get_404() {
        let app = spawn_app().await;
        let url = |path: &str| format!("http://{}{path}", app.server.addr());

        let prefixed = app
            .http
            .post(url("/prod/gateway/public/sync"))
            .body("{}")
            .send()
            .await
            .unwrap();
        let elsewhere = app.http.post(url("/hooks")).body("{}").send().await.unwrap();

        // Unsigned: refused by the signature check, which proves the handler was reached. (Which
        // request gets which answer is tested once, in `crates/core/tests/webhook_handler.rs`.)
        assert_eq!(prefixed.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(elsewhere.status(), StatusCode::NOT_FOUND);
        app.server.shutdown().await.unwrap();
    }

    #[tokio::test]
    async fn a_body_over_one_mebibyte_is_refused_with_413() {
        let app = spawn_app().await;

        let big = vec![b' '; MAX_BODY_BYTES + 1];
        let (status, answer) = app.post("d", big, SECRET).await;

        assert_eq!(
            (status, &answer["error"]),
            (StatusCode::PAYLOAD_TOO_LARGE, &json!("payload_too_large"))
        );
        app.server.shutdown().await.unwrap();
    }

    #[tokio::test]
    async fn a_chunked_body_over_the_limit_is_refused_without_reading_it_all() {
        let (hub, secrets) = (SqliteHub::in_memory().unwrap(), Some(StaticSecret(secret())));
        let app = router(AppState {
            webhook: Arc::new(WebhookHandler::new(hub.clone(), secrets)),
            hub,
            secret_configured: true,
        });
        let chunks = (0..20).map(|_| Ok::<_, std::io::Error>(vec![b' '; 64 * 1024]));
        let request = Request::post(WEBHOOK_PATH)
            .body(Body::from_stream(futures::stream::iter(chunks)))
            .unwrap();

        let response = app.oneshot(request).await.unwrap();

        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    }

    #[tokio::test]
    async fn a_push_that_keeps_failing_is_dead_lettered_after_max_attempts() {
        let app = spawn_app_with(
            ServeArgs {
                max_attempts: 1,
                ..ServeArgs::default()
            },
            Some(secret()),
        )
        .await;
        app.server.hub().register(&app.repo).await.unwrap();
        let head = app.host.commit(&app.repo, BTreeMap::new());
        app.host.fail_next(GitHostErrorKind::Unauthorized);

        let (status, _) = app.post("d1", refs_changed(&app.repo, &head), SECRET).await;
        app.drained().await;

        assert_eq!(status, StatusCode::ACCEPTED);
        let dead = app.server.hub().dead_letters().await.unwrap();
        assert_eq!(dead.len(), 1);
        assert!(dead[0].reason.contains("Unauthorized"), "{}", dead[0].reason);
        let record = app.server.hub().repo(&app.repo).await.unwrap().unwrap();
        assert!(record.last_error.is_some());
        assert_eq!(app.health().await["queue"]["deadLetters"], json!(1));
        app.server.shutdown().await.unwrap();
    }

    /// Panics the first time it is asked for a host, then behaves.
    #[derive(Clone, Default)]
    struct PanicsOnce(SharedHost, Arc<std::sync::atomic::AtomicBool>);

    impl GitHostConnector for PanicsOnce {
        type Host = SharedHost;
        fn connect(&self, secret: &HubSecret) -> Result<SharedHost, String> {
            if !self.1.swap(true, std::sync::atomic::Ordering::SeqCst) {
                panic!("injected panic");
            }
            self.0.connect(secret)
        }
    }

    #[tokio::test]
    async fn a_panicking_sync_releases_its_push_and_the_worker_carries_on() {
        let dir = tempfile::tempdir().unwrap();
        let local = LocalConfig {
            db_path: dir.path().join("hub.db"),
            secret: Some(secret()),
        };
        let args = ServeArgs {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            workers: 1,
            ..ServeArgs::default()
        };
        let connector = PanicsOnce::default();
        let server = start_with(args, local, connector.clone()).await.unwrap();
        let app = App {
            server,
            host: connector.0.clone(),
            http: reqwest::Client::builder().no_proxy().build().unwrap(),
            repo: RepoRef::parse("DATA/models").unwrap(),
            _dir: dir,
        };
        let head = app.host.commit(&app.repo, BTreeMap::new());
        let other = RepoRef::parse("DATA/other").unwrap();

        app.post("panics", refs_changed(&app.repo, &head), SECRET).await;
        app.post("after", refs_changed(&other, &head), SECRET).await;
        let deadline = Instant::now() + Duration::from_secs(30);
        let stats = loop {
            let stats = app.server.hub().queue_stats().await.unwrap();
            if stats.pending == 1 && stats.in_flight == 0 {
                break stats;
            }
            assert!(Instant::now() < deadline, "{stats:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        };

        // The panicking push waits out its backoff; the next one was handled by the same worker.
        assert_eq!(stats.dead_letters, 0);
        let leased = app.server.hub().receive(Duration::from_secs(60)).await.unwrap();
        assert!(leased.is_none(), "the released push must wait out its backoff");
        app.server.shutdown().await.unwrap();
    }

    #[tokio::test]
    async fn after_shutdown_the_server_accepts_no_more_connections() {
        let app = spawn_app().await;
        let addr = app.server.addr();

        app.server.shutdown().await.unwrap();

        assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    }
}
