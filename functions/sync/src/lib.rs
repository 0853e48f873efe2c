//! The sync function's handler: one SQS batch in, a partial batch response out.
//!
//! Each message is one queued push, processed by the core [`SyncWorker`] in its own span (delivery
//! id, repository, commit). A failed message is reported in `batchItemFailures` so only it comes
//! back; the queue's redrive policy moves it to the dead-letter queue after repeated failures, so
//! nothing is lost silently. The queue is FIFO with one message group per repository: once a
//! message of a group fails, the later messages of that group in the batch are reported failed
//! too, unprocessed, so a repository's pushes are never applied out of order. Groups run
//! concurrently.
//!
//! A failed message would otherwise come back only when the queue's visibility timeout (six times
//! the function's timeout) runs out, holding up its repository meanwhile. [`BatchResult::retries`]
//! says when each should come back instead ([`RETRY_POLICY`]: soon for transient failures, later
//! for ones a person must fix); `main` applies it with `ChangeMessageVisibility`.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use hubsync_core::ports::{ModelStore, RepoRegistry, SecretSource};
use hubsync_core::push::PushMessage;
use hubsync_core::sync::{GitHostConnector, RetryPolicy, SyncError, SyncOutcome, SyncWorker};
use tracing::{Instrument, error, info, info_span, warn};

/// Why one message failed.
#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    #[error("the message is not a hubsync push: {0}")]
    Unreadable(serde_json::Error),
    #[error(transparent)]
    Sync(#[from] SyncError),
    #[error("an earlier message of the same repository failed in this batch")]
    EarlierFailed,
}

impl MessageError {
    /// Whether trying again soon can help (throttling, 5xx, network, a concurrent writer).
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Sync(e) if e.is_retryable())
    }
}

/// When a failed push comes back: after 1 minute for a transient failure, 5 for one a person must
/// fix, doubling at each receive, at most 15 minutes (SQS allows up to 12 hours).
pub const RETRY_POLICY: RetryPolicy = RetryPolicy {
    transient: Duration::from_secs(60),
    permanent: Duration::from_secs(300),
    max: Duration::from_secs(15 * 60),
};

/// A failed message and when it should be delivered again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retry {
    pub message_id: String,
    pub receipt_handle: String,
    pub delay: Duration,
}

/// What a batch came to: the answer for Lambda, and the retries to schedule.
#[derive(Debug, Default)]
pub struct BatchResult {
    pub response: SqsBatchResponse,
    pub retries: Vec<Retry>,
}

/// Processes one SQS message: parses the push and syncs it.
pub async fn process_one<S, Src, C>(
    worker: &SyncWorker<S, Src, C>,
    message: &SqsMessage,
) -> Result<SyncOutcome, MessageError>
where
    S: RepoRegistry + ModelStore,
    Src: SecretSource,
    C: GitHostConnector,
{
    let body = message.body.as_deref().unwrap_or_default();
    let push: PushMessage = serde_json::from_str(body).map_err(MessageError::Unreadable)?;
    let span = tracing::Span::current();
    span.record("delivery_id", tracing::field::display(&push.delivery_id));
    span.record("repository", tracing::field::display(&push.repo));
    if let Some(change) = push.changes.first() {
        span.record("commit", tracing::field::display(&change.to_hash));
    }
    Ok(worker.handle_push(&push).await?)
}

/// Processes a batch: which messages must come back, and when.
pub async fn process_batch<S, Src, C>(worker: &SyncWorker<S, Src, C>, event: SqsEvent) -> BatchResult
where
    S: RepoRegistry + ModelStore,
    Src: SecretSource,
    C: GitHostConnector,
{
    let mut groups: BTreeMap<String, Vec<SqsMessage>> = BTreeMap::new();
    for message in event.records {
        let group = message.attributes.get("MessageGroupId").cloned().unwrap_or_default();
        groups.entry(group).or_default().push(message);
    }
    let retries: Vec<Retry> =
        futures::future::join_all(groups.into_values().map(|messages| process_group(worker, messages)))
            .await
            .into_iter()
            .flatten()
            .collect();
    let mut response = SqsBatchResponse::default();
    response.batch_item_failures = retries
        .iter()
        .map(|r| {
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = r.message_id.clone();
            failure
        })
        .collect();
    BatchResult { response, retries }
}

async fn process_group<S, Src, C>(worker: &SyncWorker<S, Src, C>, messages: Vec<SqsMessage>) -> Vec<Retry>
where
    S: RepoRegistry + ModelStore,
    Src: SecretSource,
    C: GitHostConnector,
{
    let mut retries = Vec::new();
    // Once a message fails, the rest of its group waits as long as it does.
    let mut held_back: Option<Duration> = None;
    for message in messages {
        let id = message.message_id.clone().unwrap_or_default();
        let receive_count: u32 = message
            .attributes
            .get("ApproximateReceiveCount")
            .and_then(|n| n.parse().ok())
            .unwrap_or(1);
        let span = info_span!(
            "message",
            message_id = %id,
            receive_count,
            delivery_id = tracing::field::Empty,
            repository = tracing::field::Empty,
            commit = tracing::field::Empty,
        );
        let result = if held_back.is_some() {
            Err(MessageError::EarlierFailed)
        } else {
            process_one(worker, &message).instrument(span.clone()).await
        };
        let Err(e) = result else {
            span.in_scope(|| info!(outcome = ?result.as_ref().ok(), "push handled"));
            continue;
        };
        let delay = *held_back.get_or_insert_with(|| RETRY_POLICY.delay(e.is_transient(), receive_count));
        span.in_scope(|| match &e {
            MessageError::EarlierFailed => warn!("held back: an earlier push of this repository failed"),
            e => error!(
                error = %e,
                transient = e.is_transient(),
                retry_in_secs = delay.as_secs(),
                "push failed; it will be retried, then dead-lettered"
            ),
        });
        retries.push(Retry {
            message_id: id,
            receipt_handle: message.receipt_handle.clone().unwrap_or_default(),
            delay,
        });
    }
    retries
}

#[cfg(test)]
mod tests {
    use super::*;
    use hubsync_core::ports::{GitHostError, GitHostErrorKind};

    fn host_error(kind: GitHostErrorKind) -> MessageError {
        MessageError::Sync(SyncError::GitHost(GitHostError {
            kind,
            repo: hubsync_core::ids::RepoRef::parse("P/r").unwrap(),
            operation: "GET".into(),
            status: None,
            message: String::new(),
        }))
    }

    #[test]
    fn throttling_and_outages_are_transient_but_a_wrong_token_or_a_bad_message_is_not() {
        assert!(host_error(GitHostErrorKind::Server).is_transient());
        assert!(host_error(GitHostErrorKind::RateLimited).is_transient());
        assert!(!host_error(GitHostErrorKind::Unauthorized).is_transient());
        assert!(!MessageError::Unreadable(serde_json::from_str::<u8>("x").unwrap_err()).is_transient());
    }
}
