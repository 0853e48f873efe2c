//! What becomes of a queued push once its sync has run: the one consumer policy of both queues.
//!
//! The sync Lambda (SQS FIFO, `functions/sync`) and `hubsync serve` (the SQLite queue) receive
//! pushes differently, but decide here, the same way, and log the decision in the same words:
//!
//! - A push that synced, or had nothing to do, is acknowledged ([`Decision::Ack`]).
//! - A failed sync is tried again after a backoff ([`Decision::RetryIn`], [`RetryPolicy`]) until
//!   its [`ConsumerPolicy::max_attempts`]-th attempt fails; then it is dead-lettered
//!   ([`Decision::DeadLetter`]), so it neither blocks its repository forever nor disappears.
//! - Every sync goes to the branch head, not to the commit its push names. So once a push of a
//!   repository has failed and will be retried, the later pushes of that repository in hand are
//!   covered by that retry: they are acknowledged without a sync ([`Decision::Covered`]) instead of
//!   spending their receive counts waiting behind it. Only the failing push carries the
//!   repository's retry ([`GroupState`]).
//! - A message that is not a push cannot succeed at any attempt: it is dead-lettered at once, and
//!   since it syncs nothing it covers nothing; the pushes after it are synced as usual.
//!
//! # The default schedule
//!
//! [`ConsumerPolicy::DEFAULT`] retries a transient failure (throttling, 5xx, network) after 1, 2,
//! 4, 8 and 16 minutes, then every 30 minutes; a failure a person must fix (wrong token, missing
//! permission) after 5, 10 and 20 minutes, then every 30 minutes. The **10th** failed attempt
//! dead-letters the push. A push that keeps failing transiently is therefore tried for 2 hours 31
//! minutes ([`ConsumerPolicy::patience`]): it rides out a two-hour Bitbucket outage or maintenance
//! window, and the next attempt after the outage replicates everything pushed during it. The
//! 30-minute cap equals the SQS queue's visibility timeout, so a retry whose
//! `ChangeMessageVisibility` call fails comes back on the same schedule.
//!
//! The same number is the SQS redrive policy's `maxReceiveCount` (`infra/template.yaml`) and the
//! local queue's default `max_attempts`; both are checked against [`DEFAULT_MAX_ATTEMPTS`].

use std::error::Error;
use std::time::Duration;

use tracing::{error, info, warn};

use crate::error_chain::error_chain;
use crate::ids::DeliveryId;
use crate::sync::{SyncError, SyncOutcome};

/// Attempts (receives) of one push before it is dead-lettered; see the [module](self) docs.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 10;

/// When a push whose sync failed is tried again: exponential backoff from a base that is short for
/// transient failures and longer for ones a person must fix (who may meanwhile), capped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub transient: Duration,
    pub permanent: Duration,
    pub max: Duration,
}

impl RetryPolicy {
    /// The delay after the `attempt`-th failed attempt (1 for the first).
    pub fn delay(&self, transient: bool, attempt: u32) -> Duration {
        let base = if transient { self.transient } else { self.permanent };
        base.saturating_mul(1 << attempt.saturating_sub(1).min(16))
            .min(self.max)
    }
}

/// The consumer policy: how pushes are retried, and how many attempts a push gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsumerPolicy {
    pub retry: RetryPolicy,
    /// The attempt whose failure dead-letters the push (SQS: the redrive policy's
    /// `maxReceiveCount`).
    pub max_attempts: u32,
}

impl ConsumerPolicy {
    /// The production schedule (see the [module](self) docs): 1 minute doubling for transient
    /// failures, 5 minutes doubling for the others, at most 30 minutes; 10 attempts.
    pub const DEFAULT: Self = Self {
        retry: RetryPolicy {
            transient: Duration::from_secs(60),
            permanent: Duration::from_secs(5 * 60),
            max: Duration::from_secs(30 * 60),
        },
        max_attempts: DEFAULT_MAX_ATTEMPTS,
    };

    /// What to do with a push at its `attempt`-th attempt (1 for the first) after `outcome`.
    pub fn decide(&self, attempt: u32, outcome: &Outcome<'_>) -> Decision {
        match outcome {
            Outcome::Synced(_) => Decision::Ack,
            Outcome::Unreadable(_) => Decision::DeadLetter,
            Outcome::Failed { .. } if attempt >= self.max_attempts => Decision::DeadLetter,
            Outcome::Failed { retryable, .. } => Decision::RetryIn(self.retry.delay(*retryable, attempt)),
        }
    }

    /// How long after its first attempt a push that fails at every attempt has its last one: the
    /// longest outage it rides out.
    pub fn patience(&self, transient: bool) -> Duration {
        (1..self.max_attempts)
            .map(|attempt| self.retry.delay(transient, attempt))
            .sum()
    }
}

impl Default for ConsumerPolicy {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// How the attempt at a push ended.
#[derive(Debug, Clone, Copy)]
pub enum Outcome<'a> {
    /// The sync ran (and may have found nothing to do).
    Synced(&'a SyncOutcome),
    /// The sync failed; `retryable` says whether trying again soon can help.
    Failed {
        error: &'a (dyn Error + Send + Sync + 'static),
        retryable: bool,
    },
    /// The message is not a push (its body cannot be read): no attempt will ever succeed.
    Unreadable(&'a (dyn Error + Send + Sync + 'static)),
}

impl<'a> From<&'a Result<SyncOutcome, SyncError>> for Outcome<'a> {
    fn from(result: &'a Result<SyncOutcome, SyncError>) -> Self {
        match result {
            Ok(outcome) => Self::Synced(outcome),
            Err(error) => Self::Failed {
                error,
                retryable: error.is_retryable(),
            },
        }
    }
}

/// What the consumer does with the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Done: delete it.
    Ack,
    /// Not synced, and not needed: an earlier push of the same repository (`by`) failed and will
    /// be retried, and that retry syncs to the branch head. Delete it.
    Covered { by: DeliveryId },
    /// Make it visible again after this delay.
    RetryIn(Duration),
    /// Give up on it: to the dead-letter queue, for a person to look at and redrive.
    DeadLetter,
}

impl Decision {
    /// Whether the message is deleted from the queue (acknowledged or covered).
    pub fn is_ack(&self) -> bool {
        matches!(self, Self::Ack | Self::Covered { .. })
    }
}

/// What the consumer knows about one message group (one repository) while it takes its pushes in
/// queue order: whether a push of it failed and carries the repository's retry.
#[derive(Debug, Clone, Default)]
pub struct GroupState {
    retrying: Option<DeliveryId>,
}

impl GroupState {
    /// [`Decision::Covered`] when an earlier push of the group will be retried: the next push
    /// need not be synced.
    pub fn covered(&self) -> Option<Decision> {
        self.retrying.clone().map(|by| Decision::Covered { by })
    }

    /// Decides for a push of this group that was tried (see [`ConsumerPolicy::decide`]), and
    /// remembers a failed sync that will be retried, so that it covers the pushes after it. A
    /// message that could not be read, or a push that is dead-lettered, covers nothing.
    pub fn decide(
        &mut self,
        policy: &ConsumerPolicy,
        delivery: &DeliveryId,
        attempt: u32,
        outcome: &Outcome<'_>,
    ) -> Decision {
        let decision = policy.decide(attempt, outcome);
        // A sync cut into slices is continued by the message it queued, which goes on to the
        // branch head: it covers the later pushes as a retry would.
        if matches!(
            (outcome, &decision),
            (Outcome::Failed { .. }, Decision::RetryIn(_)) | (Outcome::Synced(SyncOutcome::Sliced { .. }), _)
        ) {
            self.retrying = Some(delivery.clone());
        }
        decision
    }
}

/// Logs `decision` for a push at its `attempt`-th attempt, in the words both consumers use.
/// `outcome` is `None` for a push that was not tried (covered).
pub fn log_decision(decision: &Decision, attempt: u32, outcome: Option<&Outcome<'_>>) {
    let cause = match outcome {
        Some(Outcome::Failed { error, .. } | Outcome::Unreadable(error)) => error_chain(*error),
        _ => String::new(),
    };
    match (decision, outcome) {
        (Decision::Covered { by }, _) => info!(covered_by = %by, "covered by the retry of {by}"),
        (Decision::Ack, Some(Outcome::Synced(outcome))) => info!(outcome = %describe(outcome), "push handled"),
        (Decision::Ack, _) => info!("push handled"),
        (Decision::RetryIn(delay), Some(Outcome::Failed { retryable: true, .. })) => warn!(
            error = %cause, attempt, retry_in_secs = delay.as_secs(),
            "sync failed (transient); retrying"
        ),
        (Decision::RetryIn(delay), _) => error!(
            error = %cause, attempt, retry_in_secs = delay.as_secs(),
            "sync failed (needs a person); retrying until the last attempt"
        ),
        (Decision::DeadLetter, Some(Outcome::Unreadable(_))) => error!(
            error = %cause,
            "the message is not a hubsync push; it is dead-lettered"
        ),
        (Decision::DeadLetter, _) => error!(
            error = %cause, attempt,
            "sync failed for the last time; the push is dead-lettered (the repository's next push, \
             a redrive, or `hubsync sync` catches up)"
        ),
    }
}

/// One line saying what a sync did.
pub fn describe(outcome: &SyncOutcome) -> String {
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
        SyncOutcome::Sliced {
            from, to, after, stats, ..
        } => format!(
            "deadline near: synced {} -> {} up to {after:?}, continuation queued: {stats}",
            from.as_ref().map_or("(none)", |c| c.short()),
            to.short(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::RepoRef;
    use crate::ports::{GitHostError, GitHostErrorKind};

    fn host_error(kind: GitHostErrorKind) -> SyncError {
        SyncError::GitHost(GitHostError {
            kind,
            repo: RepoRef::parse("P/r").unwrap(),
            operation: "GET".into(),
            status: None,
            message: String::new(),
        })
    }

    fn failed(error: &SyncError) -> Outcome<'_> {
        Outcome::Failed {
            error,
            retryable: error.is_retryable(),
        }
    }

    fn delivery(id: &str) -> DeliveryId {
        DeliveryId::parse(id).unwrap()
    }

    #[test]
    fn retries_back_off_from_a_base_that_depends_on_the_failure_and_are_capped() {
        let policy = RetryPolicy {
            transient: Duration::from_secs(2),
            permanent: Duration::from_secs(30),
            max: Duration::from_secs(600),
        };
        let transient: Vec<u64> = (1..=4).map(|n| policy.delay(true, n).as_secs()).collect();
        assert_eq!(transient, [2, 4, 8, 16]);
        assert_eq!(policy.delay(false, 1).as_secs(), 30);
        assert_eq!(policy.delay(false, 0).as_secs(), 30);
        assert_eq!(policy.delay(true, 40).as_secs(), 600);
    }

    #[test]
    fn the_default_schedule_rides_out_a_two_hour_outage_before_dead_lettering() {
        let policy = ConsumerPolicy::DEFAULT;

        let minutes: Vec<u64> = (1..policy.max_attempts)
            .map(|n| policy.retry.delay(true, n).as_secs() / 60)
            .collect();

        assert_eq!(minutes, [1, 2, 4, 8, 16, 30, 30, 30, 30]);
        assert_eq!(policy.patience(true), Duration::from_secs((2 * 60 + 31) * 60));
        assert!(policy.patience(true) > Duration::from_secs(2 * 60 * 60));
    }

    #[test]
    fn outages_and_throttling_come_back_soon_a_wrong_token_later_and_a_bad_message_never() {
        let policy = ConsumerPolicy::DEFAULT;
        let (server, throttled, unauthorized) = (
            host_error(GitHostErrorKind::Server),
            host_error(GitHostErrorKind::RateLimited),
            host_error(GitHostErrorKind::Unauthorized),
        );
        let unreadable = serde_json::from_str::<u8>("x").unwrap_err();

        assert_eq!(
            policy.decide(1, &failed(&server)),
            Decision::RetryIn(Duration::from_secs(60))
        );
        assert_eq!(
            policy.decide(1, &failed(&throttled)),
            Decision::RetryIn(Duration::from_secs(60))
        );
        assert_eq!(
            policy.decide(1, &failed(&unauthorized)),
            Decision::RetryIn(Duration::from_secs(300))
        );
        assert_eq!(
            policy.decide(1, &Outcome::Unreadable(&unreadable)),
            Decision::DeadLetter
        );
    }

    #[test]
    fn the_last_attempt_dead_letters_and_a_sync_that_ran_is_acknowledged() {
        let policy = ConsumerPolicy::DEFAULT;
        let error = host_error(GitHostErrorKind::Server);
        let synced = SyncOutcome::NotRegistered;

        assert_eq!(
            policy.decide(9, &failed(&error)),
            Decision::RetryIn(Duration::from_secs(30 * 60))
        );
        assert_eq!(policy.decide(10, &failed(&error)), Decision::DeadLetter);
        assert_eq!(policy.decide(10, &Outcome::Synced(&synced)), Decision::Ack);
    }

    #[test]
    fn a_retried_failure_covers_the_later_pushes_of_its_group() {
        let (policy, mut group) = (ConsumerPolicy::DEFAULT, GroupState::default());
        let error = host_error(GitHostErrorKind::Server);
        assert_eq!(group.covered(), None);

        let first = group.decide(&policy, &delivery("d1"), 1, &failed(&error));

        assert_eq!(first, Decision::RetryIn(Duration::from_secs(60)));
        assert_eq!(group.covered(), Some(Decision::Covered { by: delivery("d1") }));
        assert!(group.covered().is_some_and(|d| d.is_ack()));
    }

    #[test]
    fn a_sync_cut_into_slices_is_acknowledged_and_its_continuation_covers_the_later_pushes() {
        let (policy, mut group) = (ConsumerPolicy::DEFAULT, GroupState::default());
        let head = crate::ids::CommitId::parse(&"a".repeat(40)).unwrap();
        let sliced = SyncOutcome::Sliced {
            from: None,
            to: head,
            after: "m/0063.json".into(),
            stats: crate::ports::SyncStats::default(),
            run: "run1".into(),
        };

        let first = group.decide(&policy, &delivery("d1"), 1, &Outcome::Synced(&sliced));

        assert_eq!(first, Decision::Ack);
        assert_eq!(group.covered(), Some(Decision::Covered { by: delivery("d1") }));
    }

    #[test]
    fn an_unreadable_message_or_a_dead_lettered_push_covers_nothing() {
        let (policy, mut group) = (ConsumerPolicy::DEFAULT, GroupState::default());
        let error = host_error(GitHostErrorKind::Server);
        let unreadable = serde_json::from_str::<u8>("x").unwrap_err();

        let bad = group.decide(&policy, &delivery("d0"), 1, &Outcome::Unreadable(&unreadable));
        let last = group.decide(&policy, &delivery("d1"), policy.max_attempts, &failed(&error));

        assert_eq!((bad, last), (Decision::DeadLetter, Decision::DeadLetter));
        assert_eq!(
            group.covered(),
            None,
            "the next push is synced: it carries the repository now"
        );
    }
}
