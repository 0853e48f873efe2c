//! The sync Lambda (SQS event source with `ReportBatchItemFailures`). Clients are built once per
//! cold start; the hub secret is cached for five minutes. See the README's Configuration section.

use hubsync_aws::config::{ENV_QUEUE_URL, ENV_SECRET_ID, ENV_TABLE, load_sdk_config, required_env};
use hubsync_aws::{DynamoStore, SecretsManagerSource, SqsRetries};
use hubsync_bitbucket::{BitbucketConnector, ClientOptions};
use hubsync_core::secrets::{CachedSecretSource, DEFAULT_SECRET_TTL};
use hubsync_core::sync::{SyncOptions, SyncWorker};
use lambda_runtime::{Error, LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    hubsync_aws::init_lambda_logs();
    let table = required_env(ENV_TABLE)?;
    let secret_id = required_env(ENV_SECRET_ID)?;
    let queue_url = required_env(ENV_QUEUE_URL)?;
    let sdk = load_sdk_config().await;
    let worker = SyncWorker {
        store: DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), table),
        secrets: CachedSecretSource::new(
            SecretsManagerSource::new(aws_sdk_secretsmanager::Client::new(&sdk), secret_id),
            DEFAULT_SECRET_TTL,
        ),
        connector: BitbucketConnector::new(ClientOptions::default())?,
        options: SyncOptions::default(),
    };
    let retries = SqsRetries::new(aws_sdk_sqs::Client::new(&sdk), queue_url);
    let (worker, retries) = (&worker, &retries);
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<aws_lambda_events::event::sqs::SqsEvent>| async move {
            let result = hubsync_sync_function::process_batch(worker, event.payload).await;
            for retry in &result.retries {
                // If this fails, the message simply comes back after the queue's visibility timeout.
                if let Err(e) = retries.retry_in(&retry.receipt_handle, retry.delay).await {
                    tracing::warn!(message_id = %retry.message_id, error = %e, "could not schedule the retry");
                }
            }
            Ok::<_, Error>(result.response)
        },
    ))
    .await
}
