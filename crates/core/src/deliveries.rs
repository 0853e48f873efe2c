//! The hub's own delivery log: what became of every delivery that reached the hub, for the
//! administrator's "what happened to my push?" (`hubsync deliveries`).
//!
//! Bitbucket Data Center keeps only the last delivery of a webhook; the hub records every one it
//! accepted, in the store ([`DeliveryLog`], the same table or file as the models):
//!
//! - The webhook handler ([`crate::webhook`]) records each delivery that passed signature
//!   verification with its verdict ([`Verdict`]: queued, duplicate, ignored and why). Refused
//!   requests (401, 400, 413...) are only logged and counted: an unauthenticated caller can never
//!   write to the database.
//! - Once the sync has handled a queued message, [`SyncWorker::record_outcome`] records its
//!   outcome on the delivery ([`DeliveryOutcome`]: the commit reached and the counts, or the
//!   error and the attempt; covered and dead-lettered pushes say so). Reconcile and full-sync
//!   messages, which no webhook delivered, are recorded under their own id with their kind.
//!
//! Recording is best effort: a failure to record is logged as a warning and never loses, delays
//! or refuses a push. Entries are kept for a retention period ([`DEFAULT_DELIVERY_RETENTION`],
//! `HUB_DELIVERY_RETENTION`), then expire (DynamoDB's time-to-live; purged by SQLite); a store
//! never returns an expired entry.

use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tracing::warn;

use crate::consumer::{Decision, Outcome, describe};
use crate::error_chain::error_chain;
use crate::ids::{CommitId, DeliveryId, RepoRef};
use crate::ports::{GitHostConnector, SecretSource, StoreError, SyncStats};
use crate::push::{MessageKind, PushMessage, RefChange};
use crate::sync::{SyncOutcome, SyncWorker};

/// How long entries are kept by default: 30 days.
pub const DEFAULT_DELIVERY_RETENTION: Duration = Duration::from_secs(30 * 86_400);

/// The most entries one listing returns by default.
pub const DEFAULT_LIST_LIMIT: usize = 50;

/// What the entry is about: a webhook delivery, or a message the hub queued itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeliveryKind {
    /// Delivered by Bitbucket's webhook.
    Webhook,
    /// Queued by the scheduled reconcile for a repository behind its default branch.
    Reconcile,
    /// Queued by `hubsync repos add` (or asked for): a full reconciliation.
    FullSync,
    /// Queued by a sync that stopped before its deadline: its next slice.
    Continuation,
    /// Queued by `hubsync sync --recent --queue`: the changes since the cursor.
    Recent,
    /// Queued by `hubsync sync --from COMMIT --queue`: the changes since a commit.
    SyncFrom,
}

impl DeliveryKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Webhook => "webhook",
            Self::Reconcile => "reconcile",
            Self::FullSync => "full sync",
            Self::Continuation => "continuation",
            Self::Recent => "recent sync",
            Self::SyncFrom => "sync from a commit",
        }
    }
}

/// The webhook's answer to a delivery that passed signature verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// Put on the queue.
    Queued,
    /// The queue already held a delivery with this id: nothing new was queued.
    Duplicate,
    /// Not replicated (another event than a push); [`DeliveryEntry::reason`] says why.
    Ignored,
}

impl Verdict {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Duplicate => "duplicate",
            Self::Ignored => "ignored",
        }
    }
}

/// What the sync made of a queued delivery (its latest attempt).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OutcomeStatus {
    /// Synced to a new head.
    Synced,
    /// Nothing to do: already at the head, another branch, an empty or unregistered repository.
    Skipped,
    /// Not synced: an earlier failed push of the repository is retried, and its retry syncs to
    /// the head.
    Covered,
    /// The sync failed; it is tried again.
    Retrying,
    /// The sync failed for the last time; the message is in the dead-letter queue.
    DeadLettered,
}

impl OutcomeStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Synced => "synced",
            Self::Skipped => "skipped",
            Self::Covered => "covered",
            Self::Retrying => "retrying",
            Self::DeadLettered => "dead-lettered",
        }
    }
}

/// The outcome of the latest attempt at syncing a delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryOutcome {
    pub status: OutcomeStatus,
    /// When the attempt ended.
    pub at: DateTime<Utc>,
    /// Which attempt (receive) this was, from 1.
    pub attempts: u32,
    /// The head the sync reached (or found already replicated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<CommitId>,
    /// What a sync that ran wrote, removed, found malformed...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats: Option<SyncStats>,
    /// How long the attempt took, in milliseconds.
    pub duration_ms: u64,
    /// One line for a person: what the sync did, or why it was not needed.
    pub detail: String,
    /// Why it failed (the error and its causes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The delivery whose retry covers this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub covered_by: Option<DeliveryId>,
}

impl DeliveryOutcome {
    /// Whether the delivery failed (and is retried, or was dead-lettered).
    pub fn is_failure(&self) -> bool {
        matches!(self.status, OutcomeStatus::Retrying | OutcomeStatus::DeadLettered)
    }
}

/// One entry of the delivery log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryEntry {
    pub id: DeliveryId,
    pub received_at: DateTime<Utc>,
    pub kind: DeliveryKind,
    /// The webhook's `X-Event-Key` (empty for messages the hub queued itself).
    #[serde(default)]
    pub event_key: String,
    /// The repository, when the delivery names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo: Option<RepoRef>,
    /// The refs the push moved.
    #[serde(default)]
    pub changes: Vec<RefChange>,
    pub verdict: Verdict,
    /// Why it was ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// How many more times the same delivery (same id) reached the webhook.
    #[serde(default)]
    pub duplicates: u32,
    /// What the sync made of it, once it has run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<DeliveryOutcome>,
}

impl DeliveryEntry {
    /// The entry of a queued message, as the webhook (or the reconcile, or `repos add`) queued it.
    pub fn for_push(push: &PushMessage, event_key: &str, verdict: Verdict) -> Self {
        Self {
            id: push.delivery_id.clone(),
            received_at: push.received_at,
            kind: match push.kind {
                MessageKind::Push => DeliveryKind::Webhook,
                MessageKind::Reconcile => DeliveryKind::Reconcile,
                MessageKind::FullSync => DeliveryKind::FullSync,
                MessageKind::Continuation => DeliveryKind::Continuation,
                MessageKind::Recent => DeliveryKind::Recent,
                MessageKind::SyncFrom => DeliveryKind::SyncFrom,
            },
            event_key: event_key.to_owned(),
            repo: Some(push.repo.clone()),
            changes: push.changes.clone(),
            verdict,
            reason: None,
            duplicates: 0,
            outcome: None,
        }
    }

    /// Whether the delivery failed: its sync is retried or was dead-lettered.
    pub fn is_failure(&self) -> bool {
        self.outcome.as_ref().is_some_and(DeliveryOutcome::is_failure)
    }

    /// When an entry received at `received_at` expires after `retention`.
    pub fn expires_at(received_at: DateTime<Utc>, retention: Duration) -> DateTime<Utc> {
        received_at + chrono::TimeDelta::from_std(retention).unwrap_or(chrono::TimeDelta::MAX / 2)
    }
}

/// Which entries a listing returns: newest first, at most `limit`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryQuery {
    /// Only this repository's.
    pub repo: Option<RepoRef>,
    /// Only those received at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only failed ones ([`DeliveryEntry::is_failure`]).
    pub failed_only: bool,
    pub limit: usize,
}

impl Default for DeliveryQuery {
    fn default() -> Self {
        Self {
            repo: None,
            since: None,
            failed_only: false,
            limit: DEFAULT_LIST_LIMIT,
        }
    }
}

/// The delivery log port. Every store (in-memory, SQLite, DynamoDB) implements it beside
/// [`RepoRegistry`](crate::ports::RepoRegistry) and [`ModelStore`](crate::ports::ModelStore), and
/// the store conformance suite checks it. Expired entries (older than the store's retention) are
/// never returned.
pub trait DeliveryLog: Send + Sync {
    /// Records a delivery as the webhook answered it. A delivery already recorded under this id
    /// keeps its entry (and outcome); it is counted as one more duplicate. An entry first written
    /// by [`DeliveryLog::record_outcome`] (the sync was faster than the webhook's write) is not
    /// counted as a duplicate.
    fn record_delivery(&self, entry: &DeliveryEntry) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Whether [`DeliveryLog::record_delivery`] keeps anything: `false` only for a log that
    /// records nothing, so the webhook does not build entries no one keeps.
    fn records(&self) -> bool {
        true
    }

    /// Records the outcome of the latest attempt on delivery `entry.id`, replacing an earlier
    /// attempt's. A delivery not recorded yet (a reconcile or full-sync message, or a webhook
    /// whose record was lost) is recorded as `entry` first.
    fn record_outcome(
        &self,
        entry: &DeliveryEntry,
        outcome: &DeliveryOutcome,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The entries `query` selects, newest first (by receipt time, then id).
    fn deliveries(&self, query: &DeliveryQuery) -> impl Future<Output = Result<Vec<DeliveryEntry>, StoreError>> + Send;

    /// One entry by its id.
    fn delivery(&self, id: &DeliveryId) -> impl Future<Output = Result<Option<DeliveryEntry>, StoreError>> + Send;
}

/// No delivery log: nothing is recorded (what a [`WebhookHandler`](crate::webhook::WebhookHandler)
/// records to unless given one).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoDeliveryLog;

impl DeliveryLog for NoDeliveryLog {
    async fn record_delivery(&self, _: &DeliveryEntry) -> Result<(), StoreError> {
        Ok(())
    }

    fn records(&self) -> bool {
        false
    }

    async fn record_outcome(&self, _: &DeliveryEntry, _: &DeliveryOutcome) -> Result<(), StoreError> {
        Ok(())
    }

    async fn deliveries(&self, _: &DeliveryQuery) -> Result<Vec<DeliveryEntry>, StoreError> {
        Ok(Vec::new())
    }

    async fn delivery(&self, _: &DeliveryId) -> Result<Option<DeliveryEntry>, StoreError> {
        Ok(None)
    }
}

/// A shared log is a log.
impl<T: DeliveryLog> DeliveryLog for std::sync::Arc<T> {
    fn record_delivery(&self, entry: &DeliveryEntry) -> impl Future<Output = Result<(), StoreError>> + Send {
        T::record_delivery(self, entry)
    }

    fn records(&self) -> bool {
        T::records(self)
    }

    fn record_outcome(
        &self,
        entry: &DeliveryEntry,
        outcome: &DeliveryOutcome,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        T::record_outcome(self, entry, outcome)
    }

    fn deliveries(&self, query: &DeliveryQuery) -> impl Future<Output = Result<Vec<DeliveryEntry>, StoreError>> + Send {
        T::deliveries(self, query)
    }

    fn delivery(&self, id: &DeliveryId) -> impl Future<Output = Result<Option<DeliveryEntry>, StoreError>> + Send {
        T::delivery(self, id)
    }
}

/// An optional log (a deployment without one records nothing).
impl<T: DeliveryLog> DeliveryLog for Option<T> {
    async fn record_delivery(&self, entry: &DeliveryEntry) -> Result<(), StoreError> {
        match self {
            Some(log) => log.record_delivery(entry).await,
            None => Ok(()),
        }
    }

    fn records(&self) -> bool {
        self.as_ref().is_some_and(T::records)
    }

    async fn record_outcome(&self, entry: &DeliveryEntry, outcome: &DeliveryOutcome) -> Result<(), StoreError> {
        match self {
            Some(log) => log.record_outcome(entry, outcome).await,
            None => Ok(()),
        }
    }

    async fn deliveries(&self, query: &DeliveryQuery) -> Result<Vec<DeliveryEntry>, StoreError> {
        match self {
            Some(log) => log.deliveries(query).await,
            None => Ok(Vec::new()),
        }
    }

    async fn delivery(&self, id: &DeliveryId) -> Result<Option<DeliveryEntry>, StoreError> {
        match self {
            Some(log) => log.delivery(id).await,
            None => Ok(None),
        }
    }
}

/// A period written `30s`, `15m`, `2h` or `30d` (a bare number is seconds); zero is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a period: write e.g. 30s, 15m, 2h or 30d")]
pub struct InvalidPeriod(String);

/// Parses a period (`HUB_DELIVERY_RETENTION`, `hubsync deliveries --since`).
pub fn parse_period(text: &str) -> Result<Duration, InvalidPeriod> {
    let s = text.trim();
    let invalid = || InvalidPeriod(s.chars().take(32).collect());
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let number: u64 = number.parse().map_err(|_| invalid())?;
    let unit = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(invalid()),
    };
    match number.checked_mul(unit) {
        Some(seconds) if seconds > 0 => Ok(Duration::from_secs(seconds)),
        _ => Err(invalid()),
    }
}

/// The outcome to record for a message at its `attempt`-th attempt, after `decision`.
/// `outcome` is `None` for a push that was not tried (covered).
pub fn outcome_of(
    attempt: u32,
    outcome: Option<&Outcome<'_>>,
    decision: &Decision,
    duration: Duration,
    at: DateTime<Utc>,
) -> DeliveryOutcome {
    let mut record = DeliveryOutcome {
        status: OutcomeStatus::Skipped,
        at,
        attempts: attempt,
        commit: None,
        stats: None,
        duration_ms: u64::try_from(duration.as_millis()).unwrap_or(u64::MAX),
        detail: String::new(),
        error: None,
        covered_by: None,
    };
    match outcome {
        Some(Outcome::Synced(synced)) => {
            record.detail = describe(synced);
            match synced {
                // A slice is recorded as synced: its detail says it is to be continued.
                SyncOutcome::Synced { to, stats, .. } | SyncOutcome::Sliced { to, stats, .. } => {
                    record.status = OutcomeStatus::Synced;
                    record.commit = Some(to.clone());
                    record.stats = Some(stats.clone());
                }
                SyncOutcome::UpToDate { head } => record.commit = Some(head.clone()),
                _ => {}
            }
        }
        Some(Outcome::Failed { error, .. } | Outcome::Unreadable(error)) => {
            record.error = Some(error_chain(*error));
        }
        None => {}
    }
    match decision {
        Decision::Ack => {}
        Decision::Covered { by } => {
            record.status = OutcomeStatus::Covered;
            record.detail = format!("covered by the retry of {by}");
            record.covered_by = Some(by.clone());
        }
        Decision::RetryIn(delay) => {
            record.status = OutcomeStatus::Retrying;
            record.detail = format!("sync failed at attempt {attempt}; retrying in {} s", delay.as_secs());
        }
        Decision::DeadLetter => {
            record.status = OutcomeStatus::DeadLettered;
            record.detail = format!("sync failed at attempt {attempt}, the last; dead-lettered");
        }
    }
    record
}

impl<S: DeliveryLog, Src: SecretSource, C: GitHostConnector> SyncWorker<S, Src, C> {
    /// Records what became of `push` at its `attempt`-th attempt (its sync's `outcome`, `None`
    /// when covered, and the consumer's `decision`) on its delivery, and returns it (for the
    /// metrics). Both consumers (the sync function and `hubsync serve`) call it after each
    /// decision. A failure to record is logged, never returned: the push is handled the same.
    pub async fn record_outcome(
        &self,
        push: &PushMessage,
        attempt: u32,
        outcome: Option<&Outcome<'_>>,
        decision: &Decision,
        duration: Duration,
    ) -> DeliveryOutcome {
        let record = outcome_of(attempt, outcome, decision, duration, Utc::now());
        let event_key = if push.kind == MessageKind::Push {
            crate::webhook::EVENT_PUSH
        } else {
            ""
        };
        let entry = DeliveryEntry::for_push(push, event_key, Verdict::Queued);
        if let Err(e) = self.store.record_outcome(&entry, &record).await {
            warn!(delivery_id = %push.delivery_id, error = %error_chain(&e), "could not record the delivery's outcome");
        }
        record
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_are_written_with_a_unit_and_zero_or_junk_is_refused() {
        assert_eq!(parse_period("30d").unwrap(), Duration::from_secs(30 * 86_400));
        assert_eq!(parse_period(" 2h ").unwrap(), Duration::from_secs(7200));
        assert_eq!(parse_period("15m").unwrap(), Duration::from_secs(900));
        assert_eq!(parse_period("60").unwrap(), Duration::from_secs(60));
        for wrong in ["0", "0d", "", "d", "1w", "-1h", "1.5h"] {
            assert!(parse_period(wrong).is_err(), "{wrong}");
        }
    }

    #[test]
    fn a_failed_attempt_is_recorded_with_its_error_and_attempt() {
        let error = serde_json::from_str::<u8>("x").unwrap_err();
        let failed = Outcome::Failed {
            error: &error,
            retryable: true,
        };

        let retrying = outcome_of(
            3,
            Some(&failed),
            &Decision::RetryIn(Duration::from_secs(240)),
            Duration::from_millis(12),
            Utc::now(),
        );
        let dead = outcome_of(10, Some(&failed), &Decision::DeadLetter, Duration::ZERO, Utc::now());

        assert_eq!(retrying.status, OutcomeStatus::Retrying);
        assert_eq!(retrying.attempts, 3);
        assert_eq!(retrying.duration_ms, 12);
        assert!(
            retrying.error.as_deref().is_some_and(|e| e.contains("expected value")),
            "{retrying:?}"
        );
        assert!(retrying.is_failure());
        assert_eq!(dead.status, OutcomeStatus::DeadLettered);
        assert!(dead.is_failure());
    }

    #[test]
    fn a_covered_push_names_the_delivery_whose_retry_covers_it() {
        let by = DeliveryId::parse("d1").unwrap();

        let covered = outcome_of(
            1,
            None,
            &Decision::Covered { by: by.clone() },
            Duration::ZERO,
            Utc::now(),
        );

        assert_eq!(covered.status, OutcomeStatus::Covered);
        assert_eq!(covered.covered_by, Some(by));
        assert!(!covered.is_failure());
    }
}
