//! Schedules the retry of a failed SQS message: `ChangeMessageVisibility` makes it visible again
//! after the given delay, instead of after the queue's whole visibility timeout.

use std::time::Duration;

use aws_sdk_sqs::Client;
use hubsync_core::ports::QueueError;

use crate::errors::describe;

pub struct SqsRetries {
    client: Client,
    queue_url: String,
}

impl SqsRetries {
    /// The SDK operations this adapter calls, as `service:Operation` (checked against the code in
    /// `functions`' tests).
    pub const OPERATIONS: &'static [&'static str] = &["sqs:ChangeMessageVisibility"];

    pub fn new(client: Client, queue_url: impl Into<String>) -> Self {
        Self {
            client,
            queue_url: queue_url.into(),
        }
    }

    /// Makes the received message visible again in `delay` (at most 12 hours, SQS's limit).
    pub async fn retry_in(&self, receipt_handle: &str, delay: Duration) -> Result<(), QueueError> {
        let seconds = delay.as_secs().min(12 * 3600) as i32;
        self.client
            .change_message_visibility()
            .queue_url(&self.queue_url)
            .receipt_handle(receipt_handle)
            .visibility_timeout(seconds)
            .send()
            .await
            .map_err(|e| QueueError {
                message: describe("SQS ChangeMessageVisibility", &e),
                source: Some(Box::new(e)),
            })?;
        Ok(())
    }
}
