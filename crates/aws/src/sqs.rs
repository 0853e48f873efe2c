//! The push queue on SQS FIFO: the message group is the repository (pushes to one repository are
//! synced in order) and the deduplication id is the webhook delivery id (a redelivered webhook is
//! queued once within SQS's five-minute deduplication window).

use aws_sdk_sqs::Client;
use hubsync_core::ports::{Enqueued, PushQueue, QueueError};
use hubsync_core::push::PushMessage;

use crate::errors::describe;

pub struct SqsPushQueue {
    client: Client,
    queue_url: String,
}

impl SqsPushQueue {
    /// The SDK operations this adapter calls, as `service:Operation` (checked against the code in
    /// `functions`' tests).
    pub const OPERATIONS: &'static [&'static str] = &["sqs:SendMessage"];

    pub fn new(client: Client, queue_url: impl Into<String>) -> Self {
        Self {
            client,
            queue_url: queue_url.into(),
        }
    }
}

impl PushQueue for SqsPushQueue {
    async fn enqueue(&self, push: &PushMessage) -> Result<Enqueued, QueueError> {
        let body = push.to_json();
        self.client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body)
            .message_group_id(push.repo.message_group())
            .message_deduplication_id(push.delivery_id.as_str())
            .send()
            .await
            .map_err(|e| QueueError {
                message: describe("SQS SendMessage", &e),
                source: Some(Box::new(e)),
            })?;
        // SQS accepts a duplicate silently (it is just not delivered twice), so a redelivery is
        // reported as queued; the queue's deduplication makes it harmless.
        Ok(Enqueued::Queued)
    }
}
