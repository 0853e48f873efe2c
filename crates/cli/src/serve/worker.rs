//! The sync workers of `hubsync serve`: they take pushes off the SQLite queue, sync them with the
//! core [`SyncWorker`], and apply the core consumer policy's decision ([`hubsync_core::consumer`],
//! the same the sync Lambda follows) through the queue: acknowledge, retry after a delay, or move
//! to the dead-letter table.
//!
//! What is local is the lease: a received push is hidden from the other workers for the
//! visibility timeout, renewed while its sync runs ([`with_heartbeat`]), and comes back if the
//! process dies. The queue hands out only the oldest push of each repository, so a push never
//! waits behind a failing one of the same repository while spending attempts: the later pushes
//! are simply not received until the failing one is done (the local equivalent of the Lambda
//! acknowledging them as covered). A panicking sync is caught and counts as a failed attempt.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use hubsync_core::consumer::{ConsumerPolicy, Decision, Outcome, log_decision};
use hubsync_core::deadline::Slicing;
use hubsync_core::error_chain;
use hubsync_core::ports::GitHostConnector;
use hubsync_core::secrets::StaticSecret;
use hubsync_core::sync::SyncWorker;
use hubsync_sqlite::{QueuedPush, RetryOutcome, SqliteHub};
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{Instrument, error, info_span, warn};

/// How often an idle worker looks for work nobody announced (an expired lease, a backoff that ran
/// out, a push queued by another process).
const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// How the workers treat a push.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// How long a received push stays hidden from the other workers; renewed while it syncs.
    pub visibility: Duration,
    /// When a failed push comes back, and when it is given up on.
    pub policy: ConsumerPolicy,
    /// `--slice`: each sync gets this long; one that cannot finish stops at a safe point and
    /// queues its continuation on the local queue, as the sync function does at its deadline.
    pub slice: Option<Slicing>,
}

/// `hubsync serve --slice`: how long one sync may run before it continues in a message of its
/// own. Written like a period (`30s`, `10m`, `1h`); `0` or `off` (the default): no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SliceLength(pub Option<Duration>);

impl std::str::FromStr for SliceLength {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse::<super::reconcile::ReconcileEvery>()
            .map(|period| Self(period.0))
    }
}

impl std::fmt::Display for SliceLength {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        super::reconcile::ReconcileEvery(self.0).fmt(f)
    }
}

/// The sync worker of `hubsync serve`, over the local database.
pub type LocalWorker<C> = SyncWorker<SqliteHub, Option<StaticSecret>, C>;

/// One worker: takes a push, syncs it, acknowledges or retries it; waits for work when there is
/// none. Stops between pushes once `stop` is set, never in the middle of one.
pub(super) async fn work<C: GitHostConnector + 'static>(
    n: u16,
    hub: SqliteHub,
    worker: Arc<LocalWorker<C>>,
    config: WorkerConfig,
    mut stop: watch::Receiver<bool>,
) {
    while !*stop.borrow() {
        // Registered before looking, so a push queued in between still wakes this worker.
        let notified = hub.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        match hub.receive(config.visibility).await {
            Ok(Some(message)) => {
                process(&hub, &worker, &config, message).await;
            }
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

/// A sync that panicked, as an error for the consumer policy and the dead-letter reason.
#[derive(Debug)]
struct Panicked(String);

impl std::fmt::Display for Panicked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the sync panicked: {}", self.0)
    }
}

impl std::error::Error for Panicked {}

/// Syncs one received push and applies the policy's decision to it through the queue; returns the
/// decision. The workers call it for every push they receive; tests call it to drive the queue
/// with a clock of their own.
pub async fn process<C: GitHostConnector>(
    hub: &SqliteHub,
    worker: &LocalWorker<C>,
    config: &WorkerConfig,
    message: QueuedPush,
) -> Decision {
    let push = &message.push;
    let span = info_span!(
        "push",
        delivery_id = %push.delivery_id,
        repository = %push.repo,
        commit = %push.changes.first().map_or("-", |c| c.to_hash.short()),
        attempt = message.attempts,
    );
    async {
        let started = Instant::now();
        // A panic in a sync must not take the worker down with it: it counts as a failed attempt
        // that needs a person.
        let sync = async {
            match &config.slice {
                Some(slicing) => worker.handle_push_within(push, &slicing.deadline(), hub).await,
                None => worker.handle_push(push).await,
            }
        };
        let result = AssertUnwindSafe(with_heartbeat(hub, &message, config, sync))
            .catch_unwind()
            .await;
        let panicked;
        let outcome = match &result {
            Ok(result) => Outcome::from(result),
            Err(panic) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".to_owned());
                panicked = Panicked(what);
                Outcome::Failed {
                    error: &panicked,
                    retryable: false,
                }
            }
        };
        // Only the oldest push of a repository is ever received, so nothing is covered here.
        let decision = config.policy.decide(message.attempts, &outcome);
        log_decision(&decision, message.attempts, Some(&outcome));
        worker
            .record_outcome(push, message.attempts, Some(&outcome), &decision, started.elapsed())
            .await;
        apply(hub, &message, &decision, &outcome).await;
        decision
    }
    .instrument(span)
    .await
}

/// Carries out `decision` on the queue, and says when the queue could not.
async fn apply(hub: &SqliteHub, message: &QueuedPush, decision: &Decision, outcome: &Outcome<'_>) {
    let reason = match outcome {
        Outcome::Failed { error, .. } | Outcome::Unreadable(error) => error_chain(*error),
        Outcome::Synced(_) => String::new(),
    };
    match decision {
        Decision::Ack | Decision::Covered { .. } => match hub.ack(&message.receipt).await {
            Ok(true) => {}
            Ok(false) => warn!("the lease had expired; the push will be handled again (harmlessly)"),
            Err(e) => error!(error = %e, "could not acknowledge the push; it will be handled again"),
        },
        Decision::RetryIn(delay) => match hub.retry(&message.receipt, *delay, &reason).await {
            Ok(RetryOutcome::Scheduled { .. }) => {}
            Ok(RetryOutcome::DeadLettered) => error!(
                max_attempts = hub.options().max_attempts,
                "the queue's max attempts were reached first: the push is in the dead-letter table"
            ),
            Ok(RetryOutcome::LeaseLost) => warn!("the lease had expired; the push is handled again"),
            Err(e) => error!(error = %e, "could not release the push; it comes back when its lease expires"),
        },
        Decision::DeadLetter => match hub.dead_letter(&message.receipt, &reason).await {
            Ok(true) => {}
            Ok(false) => warn!("the lease had expired; the push is handled again"),
            Err(e) => error!(error = %e, "could not dead-letter the push; it comes back when its lease expires"),
        },
    }
}

/// Runs `sync`, renewing the message's lease every third of the visibility timeout so a long sync
/// is not handed to a second worker.
async fn with_heartbeat<T>(
    hub: &SqliteHub,
    message: &QueuedPush,
    config: &WorkerConfig,
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
