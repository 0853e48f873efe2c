//! The sync function's handler: one SQS batch in, a partial batch response out.
//!
//! Each message is one queued push, processed by the core [`SyncWorker`] in its own span (delivery
//! id, repository, commit). A failed message is reported in `batchItemFailures` so only it comes
//! back; the queue's redrive policy moves it to the dead-letter queue after repeated failures, so
//! nothing is lost silently. The queue is FIFO with one message group per repository: once a
//! message of a group fails, the later messages of that group in the batch are reported failed
//! too, unprocessed, so a repository's pushes are never applied out of order. Groups run
//! concurrently.

use std::collections::BTreeMap;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use hubsync_core::ports::{ModelStore, RepoRegistry, SecretSource};
use hubsync_core::push::PushMessage;
use hubsync_core::sync::{GitHostConnector, SyncError, SyncOutcome, SyncWorker};
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

/// Processes a batch and lists the messages that must come back.
pub async fn process_batch<S, Src, C>(worker: &SyncWorker<S, Src, C>, event: SqsEvent) -> SqsBatchResponse
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
    let failures =
        futures::future::join_all(groups.into_values().map(|messages| process_group(worker, messages))).await;
    let mut response = SqsBatchResponse::default();
    response.batch_item_failures = failures.into_iter().flatten().collect();
    response
}

async fn process_group<S, Src, C>(worker: &SyncWorker<S, Src, C>, messages: Vec<SqsMessage>) -> Vec<BatchItemFailure>
where
    S: RepoRegistry + ModelStore,
    Src: SecretSource,
    C: GitHostConnector,
{
    let mut failures = Vec::new();
    let mut failed = false;
    for message in messages {
        let id = message.message_id.clone().unwrap_or_default();
        let span = info_span!(
            "message",
            message_id = %id,
            receive_count = message.attributes.get("ApproximateReceiveCount").map(String::as_str).unwrap_or("?"),
            delivery_id = tracing::field::Empty,
            repository = tracing::field::Empty,
            commit = tracing::field::Empty,
        );
        let result = if failed {
            Err(MessageError::EarlierFailed)
        } else {
            process_one(worker, &message).instrument(span.clone()).await
        };
        span.in_scope(|| match &result {
            Ok(outcome) => info!(outcome = ?outcome, "push handled"),
            Err(MessageError::EarlierFailed) => warn!("left for a retry: an earlier push of this repository failed"),
            Err(e) => {
                let retryable = matches!(e, MessageError::Sync(s) if s.is_retryable());
                error!(error = %e, retryable, "push failed; it will be retried, then dead-lettered");
            }
        });
        if result.is_err() {
            failed = true;
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = id;
            failures.push(failure);
        }
    }
    failures
}
