//! The sync Lambda (SQS event source with `ReportBatchItemFailures`). Clients are built once per
//! cold start; the hub secret is cached for five minutes. See the README's Configuration section.

use hubsync_aws::config::{ENV_SECRET_ID, ENV_TABLE, load_sdk_config, required_env};
use hubsync_aws::{DynamoStore, SecretsManagerSource};
use hubsync_bitbucket::{BitbucketConnector, ClientOptions};
use hubsync_core::secrets::{CachedSecretSource, DEFAULT_SECRET_TTL};
use hubsync_core::sync::{SyncOptions, SyncWorker};
use lambda_runtime::{Error, LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    hubsync_aws::init_lambda_logs();
    let table = required_env(ENV_TABLE)?;
    let secret_id = required_env(ENV_SECRET_ID)?;
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
    let worker = &worker;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<aws_lambda_events::event::sqs::SqsEvent>| async move {
            Ok::<_, Error>(hubsync_sync_function::process_batch(worker, event.payload).await)
        },
    ))
    .await
}
