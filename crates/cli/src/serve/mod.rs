//! `hubsync serve`: the whole pipeline as one local process, no AWS. The webhook endpoint, the
//! queue and the sync worker are the same code the Lambda functions run, over the SQLite adapters,
//! and failed pushes are retried and dead-lettered by the same consumer policy:
//!
//! ```text
//! Bitbucket ──POST …/gateway/public/sync──▶ WebhookHandler ──enqueue──▶ SqliteHub queue
//!                                                                          │ receive (lease)
//!                                   SqliteHub models ◀── SyncWorker ◀──────┘ ack / retry / dead letter
//! ```
//!
//! - [`http`]: `POST {any prefix}/gateway/public/sync` (the core webhook handler) and
//!   `GET /health`, served within limits a slow or greedy client cannot get round
//!   (`--header-read-timeout`, `--request-timeout`, `--max-connections`, the 1 MiB body cap).
//! - [`worker`]: `--workers` tasks take pushes off the queue one at a time, per repository in
//!   order, and apply the core consumer policy ([`hubsync_core::consumer`]): a failed sync is
//!   retried with exponential backoff (transient errors soon, permanent ones more slowly, since a
//!   person has to fix them); after `--max-attempts` the push is dead-lettered.
//! - [`reconcile`]: every `--reconcile-every` (15 minutes by default), queues a sync for each
//!   registered repository whose default branch is ahead of its cursor, so a lost webhook
//!   delivery is healed without a push.
//! - This module: the lifecycle. [`start_with`] opens the database, binds the port and starts
//!   both; on Ctrl-C or SIGTERM the server stops accepting requests, lets each worker finish the
//!   push in hand within `--shutdown-grace`, then exits 0. A push still running then keeps its
//!   lease in the database, and is delivered again once the lease expires after a restart:
//!   nothing is lost.
//!
//! `hubsync serve --demo` is dispatched by `main` to the demo, which starts this server itself.

pub mod http;
pub mod reconcile;
pub mod worker;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use hubsync_bitbucket::{BitbucketConnector, ClientOptions};
use hubsync_core::consumer::ConsumerPolicy;
use hubsync_core::deadline::{Clock, Slicing};
use hubsync_core::ports::GitHostConnector;
use hubsync_core::secrets::StaticSecret;
use hubsync_core::sync::{DEFAULT_MAX_MODEL_BYTES, SyncOptions, SyncWorker};
use hubsync_core::webhook::{DEFAULT_MAX_DELIVERY_AGE, WEBHOOK_PATH};
use hubsync_sqlite::{HubOptions, SqliteHub};
use reconcile::{DEFAULT_RECONCILE_EVERY, ReconcileEvery, Reconciler};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{error, info, warn};
use worker::{SliceLength, WorkerConfig};

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
    /// Seconds a client gets to send a request's headers (also how long an idle connection is
    /// kept); a slower client is disconnected.
    #[arg(long, value_name = "SECONDS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub header_read_timeout: u64,
    /// Seconds a client gets to send a whole request and be answered; then it gets 408.
    #[arg(long, value_name = "SECONDS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    pub request_timeout: u64,
    /// Connections served at once; more wait (in the listen backlog) until one is free.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=65_536))]
    pub max_connections: u32,
    /// Seconds a push delivery's signed `date` may be old before it is refused as stale (401);
    /// 0 turns the check off.
    #[arg(long, value_name = "SECONDS", env = "HUB_WEBHOOK_MAX_AGE", default_value_t = DEFAULT_MAX_DELIVERY_AGE.as_secs())]
    pub webhook_max_age: u64,
    /// How often to check every registered repository's default branch against its cursor and
    /// queue a sync for those behind (heals lost webhook deliveries): e.g. 30s, 15m, 2h; 0 or off
    /// turns it off.
    #[arg(long, value_name = "PERIOD", default_value_t = DEFAULT_RECONCILE_EVERY, env = "HUB_RECONCILE_EVERY")]
    pub reconcile_every: ReconcileEvery,
    /// The largest file read as a model, in bytes; a larger one is listed as malformed, "too
    /// large (N bytes)".
    #[arg(long, value_name = "BYTES", env = "HUB_MAX_MODEL_BYTES", default_value_t = DEFAULT_MAX_MODEL_BYTES, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_model_bytes: u64,
    /// How long one sync may run (e.g. 10m): a longer one stops at a safe point and continues in
    /// a message of its own on the queue, as the sync function does at its deadline; 0 or off
    /// (the default): no limit.
    #[arg(long, value_name = "PERIOD", default_value_t = SliceLength::default(), env = "HUB_SLICE")]
    pub slice: SliceLength,
    /// The clock `--slice` is measured on (tests set their own); the system clock by default.
    #[arg(skip)]
    pub slice_clock: Option<Clock>,
    /// How long the delivery log (`hubsync deliveries`) keeps an entry: 30d, 12h...
    #[arg(long, value_name = "PERIOD", env = "HUB_DELIVERY_RETENTION", default_value = "30d", value_parser = parse_retention)]
    pub delivery_retention: Duration,
    /// Run the demo instead (a simulated Bitbucket with sample models) and keep serving.
    #[cfg(feature = "demo")]
    #[arg(long)]
    pub demo: bool,
}

fn parse_retention(text: &str) -> Result<Duration, String> {
    hubsync_core::deliveries::parse_period(text).map_err(|e| e.to_string())
}

impl Default for ServeArgs {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            workers: 2,
            max_attempts: hubsync_sqlite::DEFAULT_MAX_ATTEMPTS,
            visibility_timeout: 60,
            shutdown_grace: 25,
            header_read_timeout: 10,
            request_timeout: 30,
            max_connections: 256,
            webhook_max_age: DEFAULT_MAX_DELIVERY_AGE.as_secs(),
            reconcile_every: DEFAULT_RECONCILE_EVERY,
            max_model_bytes: DEFAULT_MAX_MODEL_BYTES,
            slice: SliceLength::default(),
            slice_clock: None,
            delivery_retention: hubsync_core::deliveries::DEFAULT_DELIVERY_RETENTION,
            #[cfg(feature = "demo")]
            demo: false,
        }
    }
}

/// The workers' configuration: the production retry schedule, with `--max-attempts`,
/// `--visibility-timeout` and `--slice`.
impl From<&ServeArgs> for WorkerConfig {
    fn from(args: &ServeArgs) -> Self {
        Self {
            visibility: Duration::from_secs(args.visibility_timeout),
            policy: ConsumerPolicy {
                max_attempts: args.max_attempts,
                ..ConsumerPolicy::DEFAULT
            },
            slice: args.slice.0.map(|length| Slicing {
                length,
                clock: args.slice_clock.clone().unwrap_or_else(Clock::system),
            }),
        }
    }
}

/// `hubsync serve` (without `--demo`): runs until Ctrl-C or SIGTERM.
pub async fn run(args: ServeArgs, local: LocalConfig) -> anyhow::Result<()> {
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
        delivery_retention: args.delivery_retention,
        ..HubOptions::default()
    };
    let db_path = local.db_path.clone();
    let hub = tokio::task::spawn_blocking(move || SqliteHub::open_with(&db_path, options))
        .await?
        .with_context(|| format!("could not open the local database {}", local.db_path.display()))?;

    let secrets = local.secret.clone().map(StaticSecret::new);
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
    let app = http::router(hub.clone(), secrets.clone(), Duration::from_secs(args.webhook_max_age));
    let mut http_stopped = stopped.clone();
    let limits = http::HttpLimits {
        header_read_timeout: Duration::from_secs(args.header_read_timeout),
        request_timeout: Duration::from_secs(args.request_timeout),
        max_connections: args.max_connections,
    };
    let http = tokio::spawn(http::serve(listener, app, limits, async move {
        let _ = http_stopped.wait_for(|stop| *stop).await;
    }));

    // One budget of concurrent fetches shared by every worker.
    let worker = Arc::new(SyncWorker {
        store: hub.clone(),
        secrets,
        connector,
        options: SyncOptions::with_max_model_bytes(args.max_model_bytes),
    });
    let config = WorkerConfig::from(&args);
    let workers = (1..=args.workers)
        .map(|n| {
            tokio::spawn(worker::work(
                n,
                hub.clone(),
                worker.clone(),
                config.clone(),
                stopped.clone(),
            ))
        })
        .collect();
    let reconciler = Reconciler::start(hub.clone(), worker, args.reconcile_every, stopped.clone());

    let stats = hub.queue_stats().await?;
    info!(
        listen = %addr,
        webhook = %format!("http://{addr}{WEBHOOK_PATH}"),
        database = %local.db_path.display(),
        workers = args.workers,
        reconcile_every = %args.reconcile_every,
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
        reconciler: Some(reconciler),
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
    reconciler: Option<Reconciler>,
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

    /// Runs one reconcile now, as the `--reconcile-every` timer does, and returns what it queued.
    pub async fn reconcile_now(&self) -> anyhow::Result<hubsync_core::reconcile::ReconcileReport> {
        let reconciler = self
            .reconciler
            .as_ref()
            .context("the server is stopping: no reconcile")?;
        reconciler.reconcile_now().await
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
        if let Some(reconciler) = self.reconciler.take() {
            reconciler.stopped(deadline).await;
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
