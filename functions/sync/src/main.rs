//! The sync Lambda (SQS event source with `ReportBatchItemFailures`, and the reconcile schedule,
//! which queues syncs on the same queue). Clients are built once per cold start; the hub secret is
//! cached for five minutes. See the README's Configuration section.

// The handler's future nests the sync and the reconcile over generic adapters; computing its
// layout goes deeper than the default limit of 128.
#![recursion_limit = "256"]

use hubsync_aws::config::{
    ENV_MAX_MODEL_BYTES, ENV_QUEUE_URL, ENV_SECRET_ID, ENV_TABLE, load_sdk_config, max_model_bytes, optional_env,
    required_env,
};
use hubsync_aws::{DynamoStore, SecretsManagerSource, SqsPushQueue, SqsRetries};
use hubsync_bitbucket::{BitbucketConnector, ClientOptions};
use hubsync_core::secrets::{CachedSecretSource, DEFAULT_SECRET_TTL};
use hubsync_core::sync::{SyncOptions, SyncWorker};
use hubsync_sync_function::{SyncEvent, SyncResponse};
use lambda_runtime::{Error, LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    hubsync_aws::init_lambda_logs();
    let table = required_env(ENV_TABLE)?;
    let secret_id = required_env(ENV_SECRET_ID)?;
    let queue_url = required_env(ENV_QUEUE_URL)?;
    let max_model_bytes = max_model_bytes(optional_env(ENV_MAX_MODEL_BYTES).as_deref())?;
    let sdk = load_sdk_config().await;
    let worker = SyncWorker {
        store: DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), table),
        secrets: CachedSecretSource::new(
            SecretsManagerSource::new(aws_sdk_secretsmanager::Client::new(&sdk), secret_id),
            DEFAULT_SECRET_TTL,
        ),
        connector: BitbucketConnector::new(ClientOptions::default())?,
        // One budget of concurrent fetches for the whole invocation: every repository of a batch.
        options: SyncOptions {
            max_model_bytes,
            ..SyncOptions::default()
        },
    };
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let retries = SqsRetries::new(sqs.clone(), queue_url.clone());
    let queue = SqsPushQueue::new(sqs, queue_url);
    let (worker, retries, queue) = (&worker, &retries, &queue);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SyncEvent>| async move {
        let (response, to_retry) = hubsync_sync_function::handle(worker, queue, event.payload).await?;
        for retry in &to_retry {
            // If this fails, the message simply comes back after the queue's visibility timeout.
            if let Err(e) = retries.retry_in(&retry.receipt_handle, retry.delay).await {
                tracing::warn!(message_id = %retry.message_id, error = %e, "could not schedule the retry");
            }
        }
        Ok::<SyncResponse, Error>(response)
    }))
    .await
}
