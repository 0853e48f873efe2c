//! The sync function's handler: one SQS batch in, a partial batch response out; or, on its
//! schedule (an EventBridge scheduled event), the core reconcile ([`hubsync_core::reconcile`]),
//! which queues a sync for each registered repository behind its default branch's head, so a lost
//! webhook delivery is healed without a push. [`SyncEvent`] tells the two events apart.
//!
//! Each message is one queued push, synced by the core [`SyncWorker`] in its own span (delivery
//! id, repository, commit). What becomes of it afterwards is decided by the core consumer policy
//! ([`hubsync_core::consumer`]), the same one `hubsync serve` follows; this module only translates
//! SQS records into it and its decisions back:
//!
//! - Acknowledged and covered pushes are left out of `batchItemFailures`, so Lambda deletes them.
//! - A push to retry is reported failed, and [`BatchResult::retries`] says when it should come
//!   back; `main` applies that with `ChangeMessageVisibility` (the queue's visibility timeout would
//!   otherwise decide).
//! - A push to dead-letter is reported failed and made visible at once: the queue's redrive policy
//!   (`maxReceiveCount` = [`DEFAULT_MAX_ATTEMPTS`]) moves it to the dead-letter queue at its next
//!   receive.
//!
//! The queue is FIFO with one message group per repository, and a batch may hold several pushes of
//! one group, in order. Groups run concurrently and independently: a failing repository never
//! holds up another one. Within a group, the pushes after a failed one are covered by its retry
//! (every sync goes to the branch head) and acknowledged unsynced, rather than reported failed
//! as the Lambda guide's stop-at-the-first-failure recipe would: that would spend their receive
//! counts and dead-letter them with the failing push during an outage.
//!
//! # The deadline
//!
//! A sync longer than the function's timeout would be killed, redelivered and killed again until
//! it is dead-lettered. So each invocation passes its deadline (the Lambda context's) to the
//! syncs of its batch ([`handle_within`]): a sync that reaches 80 % of the invocation's time stops
//! at a safe point, records how far it got, and queues its own continuation on the same queue
//! (same message group) before the batch is answered; the continuation is the next invocation.
//! The pushes after it in the batch are covered by that continuation.
//!
//! [`DEFAULT_MAX_ATTEMPTS`]: hubsync_core::consumer::DEFAULT_MAX_ATTEMPTS

use std::collections::BTreeMap;
use std::time::Duration;

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use hubsync_core::consumer::{ConsumerPolicy, Decision, GroupState, Outcome, log_decision};
use hubsync_core::deadline::Deadline;
use hubsync_core::ports::{
    DeliveryLog, Enqueued, GitHostConnector, ModelStore, PushQueue, QueueError, RepoRegistry, SecretSource,
};
use hubsync_core::push::PushMessage;
use hubsync_core::reconcile::{ReconcileError, ReconcileReport};
use hubsync_core::sync::SyncWorker;
use serde::{Deserialize, Serialize};
use tracing::{Instrument, info_span};

/// What invokes the sync function: its SQS event source mapping, or its reconcile schedule.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum SyncEvent {
    /// A batch of queued pushes.
    Sqs(SqsEvent),
    /// The reconcile schedule (`detail-type: Scheduled Event`).
    Scheduled(EventBridgeEvent),
}

/// What the function answers: the partial batch response for SQS, a summary for the schedule.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum SyncResponse {
    Batch(SqsBatchResponse),
    Reconciled(ReconcileSummary),
}

/// The answer to a scheduled invocation (it goes nowhere but the invocation record).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReconcileSummary {
    pub checked: usize,
    pub queued: usize,
    pub already_queued: usize,
    pub up_to_date: usize,
    pub failed: usize,
}

impl From<&ReconcileReport> for ReconcileSummary {
    fn from(report: &ReconcileReport) -> Self {
        Self {
            checked: report.checked,
            queued: report.queued.len(),
            already_queued: report.already_queued.len(),
            up_to_date: report.up_to_date,
            failed: report.failed.len(),
        }
    }
}

/// Handles one invocation, whichever event it is: what to answer, and (for a batch) the retries
/// to schedule.
pub async fn handle<S, Src, C, Q>(
    worker: &SyncWorker<S, Src, C>,
    queue: &Q,
    event: SyncEvent,
) -> Result<(SyncResponse, Vec<Retry>), ReconcileError>
where
    S: RepoRegistry + ModelStore + DeliveryLog,
    Src: SecretSource,
    C: GitHostConnector,
    Q: PushQueue,
{
    handle_within(worker, queue, event, None).await
}

/// [`handle`] within the invocation's `deadline`: a sync that cannot finish before it continues in
/// a message of its own, queued on `queue` (see the [module](self) docs).
pub async fn handle_within<S, Src, C, Q>(
    worker: &SyncWorker<S, Src, C>,
    queue: &Q,
    event: SyncEvent,
    deadline: Option<Deadline>,
) -> Result<(SyncResponse, Vec<Retry>), ReconcileError>
where
    S: RepoRegistry + ModelStore + DeliveryLog,
    Src: SecretSource,
    C: GitHostConnector,
    Q: PushQueue,
{
    match event {
        SyncEvent::Sqs(batch) => {
            let slice = deadline.as_ref().map(|d| (d, queue));
            let result = process_batch_in(worker, &ConsumerPolicy::DEFAULT, batch, slice).await;
            Ok((SyncResponse::Batch(result.response), result.retries))
        }
        SyncEvent::Scheduled(schedule) => {
            let summary = reconcile(worker, queue, &schedule).await?;
            Ok((SyncResponse::Reconciled(summary), Vec::new()))
        }
    }
}

/// The scheduled reconcile: compares each registered repository's default-branch head with its
/// cursor and queues (on `queue`) a sync for those behind. Fails only when nothing could be
/// checked (the registry, the secret or the Git host client is unavailable); a repository that
/// cannot be checked is logged and counted, and the others are still reconciled.
pub async fn reconcile<S, Src, C, Q>(
    worker: &SyncWorker<S, Src, C>,
    queue: &Q,
    event: &EventBridgeEvent,
) -> Result<ReconcileSummary, ReconcileError>
where
    S: RepoRegistry + ModelStore + DeliveryLog,
    Src: SecretSource,
    C: GitHostConnector,
    Q: PushQueue,
{
    let span = info_span!("reconcile", event_id = event.id.as_deref().unwrap_or("-"));
    let report = worker.reconcile(queue).instrument(span).await?;
    Ok(ReconcileSummary::from(&report))
}

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

/// The push a message carries.
pub fn read_push(message: &SqsMessage) -> Result<PushMessage, serde_json::Error> {
    serde_json::from_str(message.body.as_deref().unwrap_or_default())
}

/// Processes a batch with the production policy ([`ConsumerPolicy::DEFAULT`]).
pub async fn process_batch<S, Src, C>(worker: &SyncWorker<S, Src, C>, event: SqsEvent) -> BatchResult
where
    S: RepoRegistry + ModelStore + DeliveryLog,
    Src: SecretSource,
    C: GitHostConnector,
{
    process_batch_with(worker, &ConsumerPolicy::DEFAULT, event).await
}

/// Processes a batch: which messages must come back, and when. Every sync runs to its end.
pub async fn process_batch_with<S, Src, C>(
    worker: &SyncWorker<S, Src, C>,
    policy: &ConsumerPolicy,
    event: SqsEvent,
) -> BatchResult
where
    S: RepoRegistry + ModelStore + DeliveryLog,
    Src: SecretSource,
    C: GitHostConnector,
{
    process_batch_in::<S, Src, C, NoContinuations>(worker, policy, event, None).await
}

/// Processes a batch within `deadline`, queueing on `queue` the continuation of a sync that must
/// stop first.
pub async fn process_batch_within<S, Src, C, Q>(
    worker: &SyncWorker<S, Src, C>,
    policy: &ConsumerPolicy,
    event: SqsEvent,
    deadline: &Deadline,
    queue: &Q,
) -> BatchResult
where
    S: RepoRegistry + ModelStore + DeliveryLog,
    Src: SecretSource,
    C: GitHostConnector,
    Q: PushQueue,
{
    process_batch_in(worker, policy, event, Some((deadline, queue))).await
}

/// The queue of a batch processed without a deadline: no sync stops early, so nothing is queued.
struct NoContinuations;

impl PushQueue for NoContinuations {
    async fn enqueue(&self, _push: &PushMessage) -> Result<Enqueued, QueueError> {
        Err(QueueError {
            message: "no continuation queue without a deadline".into(),
            source: None,
        })
    }
}

/// A batch's deadline, and the queue of its continuations.
type Slice<'a, Q> = Option<(&'a Deadline, &'a Q)>;

async fn process_batch_in<S, Src, C, Q>(
    worker: &SyncWorker<S, Src, C>,
    policy: &ConsumerPolicy,
    event: SqsEvent,
    slice: Slice<'_, Q>,
) -> BatchResult
where
    S: RepoRegistry + ModelStore + DeliveryLog,
    Src: SecretSource,
    C: GitHostConnector,
    Q: PushQueue,
{
    let mut groups: BTreeMap<String, Vec<SqsMessage>> = BTreeMap::new();
    for message in event.records {
        let group = message.attributes.get("MessageGroupId").cloned().unwrap_or_default();
        groups.entry(group).or_default().push(message);
    }
    let retries: Vec<Retry> = futures::future::join_all(
        groups
            .into_values()
            .map(|messages| process_group(worker, policy, messages, slice)),
    )
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

/// One message group (one repository), in queue order.
async fn process_group<S, Src, C, Q>(
    worker: &SyncWorker<S, Src, C>,
    policy: &ConsumerPolicy,
    messages: Vec<SqsMessage>,
    slice: Slice<'_, Q>,
) -> Vec<Retry>
where
    S: RepoRegistry + ModelStore + DeliveryLog,
    Src: SecretSource,
    C: GitHostConnector,
    Q: PushQueue,
{
    let mut group = GroupState::default();
    let mut retries = Vec::new();
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
        let decision = process_one(worker, policy, &mut group, &message, receive_count, slice)
            .instrument(span)
            .await;
        let delay = match decision {
            Decision::Ack | Decision::Covered { .. } => continue,
            Decision::RetryIn(delay) => delay,
            // Visible at once: its next receive exceeds maxReceiveCount, and the redrive policy
            // moves it to the dead-letter queue.
            Decision::DeadLetter => Duration::ZERO,
        };
        retries.push(Retry {
            message_id: id,
            receipt_handle: message.receipt_handle.clone().unwrap_or_default(),
            delay,
        });
    }
    retries
}

/// Reads one message and, unless an earlier push of its group covers it, syncs it; decides and
/// logs what becomes of it.
async fn process_one<S, Src, C, Q>(
    worker: &SyncWorker<S, Src, C>,
    policy: &ConsumerPolicy,
    group: &mut GroupState,
    message: &SqsMessage,
    receive_count: u32,
    slice: Slice<'_, Q>,
) -> Decision
where
    S: RepoRegistry + ModelStore + DeliveryLog,
    Src: SecretSource,
    C: GitHostConnector,
    Q: PushQueue,
{
    let push = match read_push(message) {
        Ok(push) => push,
        Err(e) => {
            let outcome = Outcome::Unreadable(&e);
            let decision = policy.decide(receive_count, &outcome);
            log_decision(&decision, receive_count, Some(&outcome));
            return decision;
        }
    };
    let span = tracing::Span::current();
    span.record("delivery_id", tracing::field::display(&push.delivery_id));
    span.record("repository", tracing::field::display(&push.repo));
    if let Some(change) = push.changes.first() {
        span.record("commit", tracing::field::display(&change.to_hash));
    }
    if let Some(covered) = group.covered() {
        log_decision(&covered, receive_count, None);
        let recorded = worker
            .record_outcome(&push, receive_count, None, &covered, Duration::ZERO)
            .await;
        hubsync_aws::emf::emit_sync(&recorded);
        return covered;
    }
    let started = std::time::Instant::now();
    let result = match slice {
        Some((deadline, queue)) => worker.handle_push_within(&push, deadline, queue).await,
        None => worker.handle_push(&push).await,
    };
    let outcome = Outcome::from(&result);
    let decision = group.decide(policy, &push.delivery_id, receive_count, &outcome);
    log_decision(&decision, receive_count, Some(&outcome));
    let recorded = worker
        .record_outcome(&push, receive_count, Some(&outcome), &decision, started.elapsed())
        .await;
    hubsync_aws::emf::emit_sync(&recorded);
    decision
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_sqs_batch_and_a_scheduled_event_are_told_apart() {
        let batch = serde_json::json!({"Records": [{"messageId": "m1", "body": "{}", "attributes": {}}]});
        let schedule = serde_json::json!({
            "version": "0", "id": "e1", "detail-type": "Scheduled Event", "source": "aws.events",
            "account": "123456789012", "time": "2026-11-28T12:00:00Z", "region": "us-east-1",
            "resources": [], "detail": {}
        });

        let batch: SyncEvent = serde_json::from_value(batch).unwrap();
        let schedule: SyncEvent = serde_json::from_value(schedule).unwrap();

        assert!(
            matches!(batch, SyncEvent::Sqs(ref e) if e.records.len() == 1),
            "{batch:?}"
        );
        assert!(matches!(schedule, SyncEvent::Scheduled(ref e) if e.detail_type == "Scheduled Event"));
    }
}
