//! The administrator's view of the SQS queues (`hubsync queue status|dead-letters|redrive` on
//! AWS): the counts of the push queue and its dead-letter queue, the dead-lettered pushes, and
//! their redrive to the push queue.
//!
//! SQS has no way to read a message without receiving it (no peek), and moto (the tests'
//! emulator) has no `StartMessageMoveTask`, so both are done with the plain calls, which work for
//! FIFO queues:
//! - A FIFO queue hands out none of a group's later messages while earlier ones are received
//!   and neither deleted nor visible again: receiving and putting back would only ever show the
//!   oldest few dead letters of each repository. So listing moves each dead letter it receives
//!   to the back of its repository's line: it sends it again to the dead-letter queue (same
//!   body and group, a fresh deduplication id, and message attributes keeping its first-sent
//!   time and receive count), then deletes the one received. It goes on until each group hands
//!   out only the copies this listing made, which it makes visible again at the end. After a
//!   listing, each repository's dead letters are in the same order, with new SQS message ids and
//!   their retention period started again; the receive count shown is the push's own (what it
//!   had when it was dead-lettered: a listing does not add to it). A failure part way leaves
//!   every dead letter in the queue, some moved to the back (the order of a repository's dead
//!   letters does not matter to a redrive: every sync goes to the head); one whose delete failed
//!   is there twice, which is as harmless. A dead letter whose body is not a push is known by its
//!   first message id, kept as a message attribute too, so the id a listing prints stays valid.
//! - Redriving receives a dead letter, sends its body to the push queue in the same message group
//!   with a fresh deduplication id (its original one may still be inside SQS's five-minute
//!   deduplication window, which would drop it silently), and deletes it from the dead-letter
//!   queue only once that send succeeded. A failed delete leaves the message in both queues:
//!   syncing it twice is harmless (every sync goes to the head). Redriving all goes through each
//!   group as it deletes; redriving one goes through the queue as a listing does (one walk,
//!   [`SqsDeadLetters::walk`], written once for both), moving each letter before it to the back of
//!   its group, and once it is found finishes only the groups it began, so every group keeps its
//!   order.
//!
//! The queue's own count ([`SqsDeadLetters::status`]) is printed beside a listing, so a listing cut
//! short (at [`LIST_LIMIT`]) shows it.

use std::collections::HashSet;
use std::time::Duration;

use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{MessageAttributeValue, MessageSystemAttributeName, QueueAttributeName};
use chrono::{DateTime, Utc};
use hubsync_core::push::PushMessage;
use tracing::warn;

use crate::errors::describe;

/// How long a received dead letter stays hidden if this process dies before putting it back.
pub const HOLD: Duration = Duration::from_secs(30);
/// How long an empty receive waits before it says the queue holds nothing more (short polls may
/// miss messages on a real queue).
const EMPTY_WAIT_SECONDS: i32 = 1;
/// Dead letters a listing reads at most.
pub const LIST_LIMIT: usize = 1_000;
/// Message attribute of a dead letter moved by a listing: when SQS first received it (epoch ms).
const FIRST_SENT: &str = "hubsync.firstSent";
/// Message attribute of a dead letter moved by a listing: its receive count before it was moved.
const RECEIVE_COUNT: &str = "hubsync.receiveCount";
/// Message attribute of a dead letter moved by a listing: which listing moved it.
const LISTING: &str = "hubsync.listing";
/// Message attribute of a dead letter moved by a listing: its SQS message id before it was
/// first moved (the id a listing prints for one whose body is not a push).
const FIRST_MESSAGE_ID: &str = "hubsync.firstMessageId";

/// A call to SQS failed; the SDK error is the source.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct SqsAdminError {
    pub message: String,
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

/// One queue's approximate counts, as SQS reports them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueCounts {
    /// Waiting to be received.
    pub visible: u64,
    /// Received and neither deleted nor visible again yet (being synced, or waiting for a retry).
    pub in_flight: u64,
    /// Sent with a delay that has not run out.
    pub delayed: u64,
}

/// One dead-lettered message, read without consuming it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqsDeadLetter {
    /// SQS's id of the message in the dead-letter queue (a new one each time a listing moves it).
    pub message_id: String,
    /// The push's delivery id (or request id); when the body cannot be read, the message id it
    /// had before any listing moved it (so that it stays the same from listing to listing).
    pub delivery_id: String,
    /// The message group: the repository's.
    pub group: String,
    /// The queued push, when its body reads as one.
    pub push: Option<PushMessage>,
    /// When SQS received the message first (`SentTimestamp`).
    pub first_sent: Option<DateTime<Utc>>,
    /// How many times it was received before it was dead-lettered, or before the latest receive
    /// by this adapter: a listing does not count (`ApproximateReceiveCount`, kept when a listing
    /// moves the message).
    pub receive_count: u32,
    body: String,
    /// Its message id before any listing moved it.
    first_message_id: String,
    /// The listing that moved it here, if one did.
    listing: Option<String>,
}

impl SqsDeadLetter {
    /// The repository, from the push (else the message group).
    pub fn repository(&self) -> String {
        self.push
            .as_ref()
            .map_or_else(|| self.group.clone(), |p| p.repo.to_string())
    }

    /// The commit the push moved the default branch (or a ref) to, or a `--from` request's commit.
    pub fn commit(&self) -> Option<String> {
        let push = self.push.as_ref()?;
        push.from_commit
            .clone()
            .or_else(|| push.changes.iter().map(|c| c.to_hash.clone()).find(|c| !c.is_zero()))
            .map(|c| c.to_string())
    }

    /// What the message asks: `push`, `full-sync`, `reconcile`...; `unreadable` for a body that
    /// is not a push.
    pub fn kind(&self) -> String {
        match &self.push {
            Some(push) => serde_json::to_value(push.kind)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_else(|| format!("{:?}", push.kind)),
            None => "unreadable".to_owned(),
        }
    }

    /// Whether `id` names it: its delivery id, its message id, or the message id it had before
    /// any listing moved it.
    fn is(&self, id: &str) -> bool {
        id == self.delivery_id || id == self.message_id || id == self.first_message_id
    }

    fn of(message: &aws_sdk_sqs::types::Message) -> Option<(Self, String)> {
        let receipt = message.receipt_handle()?.to_owned();
        let message_id = message.message_id().unwrap_or_default().to_owned();
        let body = message.body().unwrap_or_default().to_owned();
        let push: Option<PushMessage> = serde_json::from_str(&body).ok();
        let attribute = |name: MessageSystemAttributeName| message.attributes().and_then(|a| a.get(&name)).cloned();
        let kept = |name: &str| {
            message
                .message_attributes()
                .and_then(|a| a.get(name))
                .and_then(|v| v.string_value())
                .map(str::to_owned)
        };
        let group = attribute(MessageSystemAttributeName::MessageGroupId)
            .or_else(|| push.as_ref().map(|p| p.repo.message_group()))
            .unwrap_or_default();
        let first_sent = kept(FIRST_SENT)
            .or_else(|| attribute(MessageSystemAttributeName::SentTimestamp))
            .and_then(|ms| ms.parse::<i64>().ok())
            .and_then(DateTime::<Utc>::from_timestamp_millis);
        // This receive is not one of the push's.
        let receive_count = kept(RECEIVE_COUNT).and_then(|n| n.parse().ok()).unwrap_or_else(|| {
            attribute(MessageSystemAttributeName::ApproximateReceiveCount)
                .and_then(|n| n.parse::<u32>().ok())
                .unwrap_or(0)
                .saturating_sub(1)
        });
        let first_message_id = kept(FIRST_MESSAGE_ID).unwrap_or_else(|| message_id.clone());
        let delivery_id = push
            .as_ref()
            .map_or_else(|| first_message_id.clone(), |p| p.delivery_id.as_str().to_owned());
        let letter = Self {
            message_id,
            delivery_id,
            group,
            push,
            first_sent,
            receive_count,
            body,
            first_message_id,
            listing: kept(LISTING),
        };
        Some((letter, receipt))
    }
}

/// What a walk through the dead-letter queue ([`SqsDeadLetters::walk`]) does with a letter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Visit {
    /// Sends it again to the back of its group, then deletes the one received.
    MoveToBack,
    /// Sends it to the push queue, then deletes it.
    Redrive,
    /// Leaves it where it is (visible again at the end of the walk).
    Hold,
}

/// The letters a walk moved, each in the order it did.
#[derive(Debug, Default)]
struct Walked {
    moved_to_back: Vec<SqsDeadLetter>,
    redriven: Vec<SqsDeadLetter>,
}

/// The push queue and its dead-letter queue, for an administrator.
pub struct SqsDeadLetters {
    client: Client,
    queue_url: String,
    dead_letter_queue_url: String,
}

impl SqsDeadLetters {
    /// The SDK operations this adapter calls, as `service:Operation` (checked against the code in
    /// `functions`' tests; the README lists them as the administrator's IAM actions).
    pub const OPERATIONS: &'static [&'static str] = &[
        "sqs:ChangeMessageVisibility",
        "sqs:DeleteMessage",
        "sqs:GetQueueAttributes",
        "sqs:ReceiveMessage",
        "sqs:SendMessage",
    ];

    pub fn new(client: Client, queue_url: impl Into<String>, dead_letter_queue_url: impl Into<String>) -> Self {
        Self {
            client,
            queue_url: queue_url.into(),
            dead_letter_queue_url: dead_letter_queue_url.into(),
        }
    }

    /// The counts of the push queue and of the dead-letter queue.
    pub async fn status(&self) -> Result<(QueueCounts, QueueCounts), SqsAdminError> {
        Ok((
            self.counts(&self.queue_url).await?,
            self.counts(&self.dead_letter_queue_url).await?,
        ))
    }

    async fn counts(&self, queue_url: &str) -> Result<QueueCounts, SqsAdminError> {
        let out = self
            .client
            .get_queue_attributes()
            .queue_url(queue_url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
            .send()
            .await
            .map_err(|e| error("SQS GetQueueAttributes", e))?;
        let count = |name: QueueAttributeName| {
            out.attributes()
                .and_then(|a| a.get(&name))
                .and_then(|n| n.parse().ok())
                .unwrap_or(0)
        };
        Ok(QueueCounts {
            visible: count(QueueAttributeName::ApproximateNumberOfMessages),
            in_flight: count(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
            delayed: count(QueueAttributeName::ApproximateNumberOfMessagesDelayed),
        })
    }

    /// Every dead letter (up to [`LIST_LIMIT`]), oldest first per repository, each moved to the
    /// back of its repository's line in the dead-letter queue (see the module's doc) and visible
    /// again.
    pub async fn list(&self) -> Result<Vec<SqsDeadLetter>, SqsAdminError> {
        Ok(self.walk(|_| Visit::MoveToBack).await?.moved_to_back)
    }

    /// Receives the dead letters (see the module's doc), doing with each what `visit` says,
    /// until every group hands out only letters this walk holds (copies it moved to the back,
    /// or letters it left in place) or it moved [`LIST_LIMIT`] to the back; then makes those it
    /// holds visible again. A letter moved to the back comes back as a copy of this walk's and is
    /// held: each letter is seen once.
    async fn walk(&self, mut visit: impl FnMut(&SqsDeadLetter) -> Visit) -> Result<Walked, SqsAdminError> {
        let walk = format!("{}-{}", std::process::id(), Utc::now().timestamp_micros());
        let mut walked = Walked::default();
        let mut held = Vec::new();
        let received = async {
            while walked.moved_to_back.len() < LIST_LIMIT {
                let batch = self.receive().await?;
                if batch.is_empty() {
                    break;
                }
                let mut batch = batch.into_iter();
                while let Some((letter, receipt)) = batch.next() {
                    let step = if letter.listing.as_deref() == Some(walk.as_str()) {
                        Visit::Hold
                    } else {
                        visit(&letter)
                    };
                    let done = match step {
                        Visit::Hold => {
                            held.push(receipt);
                            continue;
                        }
                        Visit::MoveToBack => self.move_to_back(&letter, &receipt, &walk).await,
                        Visit::Redrive => self.redrive_one(&letter, &receipt).await,
                    };
                    if let Err(e) = done {
                        held.push(receipt);
                        held.extend(batch.map(|(_, receipt)| receipt));
                        return Err(e);
                    }
                    match step {
                        Visit::Redrive => walked.redriven.push(letter),
                        _ => walked.moved_to_back.push(letter),
                    }
                }
            }
            Ok::<_, SqsAdminError>(())
        }
        .await;
        self.release(&held).await;
        received.map(|()| walked)
    }

    /// Sends a received dead letter again to the back of its group, keeping its first-sent time
    /// and receive count, then deletes the one received.
    async fn move_to_back(&self, letter: &SqsDeadLetter, receipt: &str, listing: &str) -> Result<(), SqsAdminError> {
        let text = |value: String| {
            MessageAttributeValue::builder()
                .data_type("String")
                .string_value(value)
                .build()
                .map_err(|e| SqsAdminError {
                    message: format!("a message attribute could not be built: {e}"),
                    source: Some(Box::new(e)),
                })
        };
        let mut dedup = format!("listed-{listing}-{}", letter.message_id);
        dedup.truncate(128);
        let mut send = self
            .client
            .send_message()
            .queue_url(&self.dead_letter_queue_url)
            .message_body(&letter.body)
            .message_group_id(&letter.group)
            .message_deduplication_id(dedup)
            .message_attributes(RECEIVE_COUNT, text(letter.receive_count.to_string())?)
            .message_attributes(LISTING, text(listing.to_owned())?)
            .message_attributes(FIRST_MESSAGE_ID, text(letter.first_message_id.clone())?);
        if let Some(first_sent) = letter.first_sent {
            send = send.message_attributes(FIRST_SENT, text(first_sent.timestamp_millis().to_string())?);
        }
        send.send()
            .await
            .map_err(|e| error("SQS SendMessage (to the dead-letter queue, listing)", e))?;
        if let Err(e) = self
            .client
            .delete_message()
            .queue_url(&self.dead_letter_queue_url)
            .receipt_handle(receipt)
            .send()
            .await
        {
            warn!(
                error = %describe("SQS DeleteMessage", &e),
                delivery = %letter.delivery_id,
                "a listed dead letter is now in the dead-letter queue twice"
            );
        }
        Ok(())
    }

    /// Moves dead letters back to the push queue: all of them, or only the first whose delivery
    /// id or message id (or first message id, see [`SqsDeadLetter::message_id`]) is `only`;
    /// returns those moved, in the order they were sent.
    ///
    /// All: each is received, sent and deleted, so the next of its repository comes. One: the
    /// letters before it are moved to the back of their repository's line as a listing moves
    /// them, so that one beyond the first ten of its repository is reached; once it is found,
    /// only the repositories begun are gone through to their end (keeping their order), the
    /// others are left where they are.
    pub async fn redrive(&self, only: Option<&str>) -> Result<Vec<SqsDeadLetter>, SqsAdminError> {
        let Some(only) = only else {
            return Ok(self.walk(|_| Visit::Redrive).await?.redriven);
        };
        let mut found = false;
        let mut begun = HashSet::new();
        let walked = self
            .walk(|letter| {
                if !found && letter.is(only) {
                    found = true;
                    Visit::Redrive
                } else if !found || begun.contains(&letter.group) {
                    begun.insert(letter.group.clone());
                    Visit::MoveToBack
                } else {
                    Visit::Hold
                }
            })
            .await?;
        Ok(walked.redriven)
    }

    /// Sends a received dead letter to the push queue, then deletes it from the dead-letter queue.
    async fn redrive_one(&self, letter: &SqsDeadLetter, receipt: &str) -> Result<(), SqsAdminError> {
        self.send_back(letter).await?;
        self.client
            .delete_message()
            .queue_url(&self.dead_letter_queue_url)
            .receipt_handle(receipt)
            .send()
            .await
            .map_err(|e| {
                error(
                    "SQS DeleteMessage (the message is queued again and still dead-lettered)",
                    e,
                )
            })?;
        Ok(())
    }

    /// Sends a dead letter's body to the push queue, in its group, with a deduplication id of
    /// its own (the redrive's, not the delivery's).
    async fn send_back(&self, letter: &SqsDeadLetter) -> Result<(), SqsAdminError> {
        let mut dedup = format!("redrive-{}-{}", letter.message_id, Utc::now().timestamp_millis());
        dedup.truncate(128);
        self.client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(&letter.body)
            .message_group_id(&letter.group)
            .message_deduplication_id(dedup)
            .send()
            .await
            .map_err(|e| error("SQS SendMessage", e))?;
        Ok(())
    }

    async fn receive(&self) -> Result<Vec<(SqsDeadLetter, String)>, SqsAdminError> {
        let out = self
            .client
            .receive_message()
            .queue_url(&self.dead_letter_queue_url)
            .max_number_of_messages(10)
            .visibility_timeout(HOLD.as_secs() as i32)
            .wait_time_seconds(EMPTY_WAIT_SECONDS)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .message_attribute_names("hubsync.*")
            .send()
            .await
            .map_err(|e| error("SQS ReceiveMessage", e))?;
        Ok(out.messages().iter().filter_map(SqsDeadLetter::of).collect())
    }

    /// Makes received dead letters visible again; one that cannot be comes back after [`HOLD`].
    async fn release(&self, receipts: &[String]) {
        for receipt in receipts {
            if let Err(e) = self
                .client
                .change_message_visibility()
                .queue_url(&self.dead_letter_queue_url)
                .receipt_handle(receipt)
                .visibility_timeout(0)
                .send()
                .await
            {
                warn!(error = %describe("SQS ChangeMessageVisibility", &e), "a dead letter stays hidden for {HOLD:?}");
            }
        }
    }
}

fn error<E, R>(operation: &str, e: aws_sdk_sqs::error::SdkError<E, R>) -> SqsAdminError
where
    E: aws_sdk_sqs::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    SqsAdminError {
        message: describe(operation, &e),
        source: Some(Box::new(e)),
    }
}

#[cfg(test)]
mod tests {
    use hubsync_core::push::MessageKind;

    use super::*;

    #[test]
    fn a_dead_letter_names_its_kind_as_the_queue_writes_it() {
        let full = PushMessage::full_sync(
            hubsync_core::ids::RepoRef::parse("DATA/models").unwrap(),
            hubsync_core::ids::DeliveryId::parse("d-1").unwrap(),
            Utc::now(),
        );
        let push = PushMessage {
            kind: MessageKind::Push,
            ..full.clone()
        };
        let letter = |push: PushMessage| SqsDeadLetter {
            message_id: "m".into(),
            delivery_id: push.delivery_id.as_str().into(),
            group: push.repo.message_group(),
            push: Some(push),
            first_sent: None,
            receive_count: 1,
            body: String::new(),
            first_message_id: "m".into(),
            listing: None,
        };

        assert_eq!(letter(push).kind(), "push");
        assert_eq!(letter(full).kind(), "full-sync");
    }
}
