//! The one way to get AWS adapters: [`Adapters::load`] reads the shared SDK configuration once,
//! and every adapter (store, queue, retries, secret source, emulator provisioning) is built from
//! it. The binaries use this (or the per-function bundles in [`functions`](crate::functions)) and
//! never the SDK itself, so this crate is the only one that depends on it.

use aws_config::SdkConfig;

use crate::config::{self, Env, EnvError};
use crate::functions::{SyncAdapters, WebhookAdapters};
use crate::provision::{ProvisionError, Provisioned};
use crate::{DynamoDeliveryLog, DynamoStore, SecretsManagerSource, SqsDeadLetters, SqsPushQueue, SqsRetries};

/// The AWS SDK configuration every adapter shares (one set of credentials and HTTP connections).
#[derive(Clone, Debug)]
pub struct Adapters {
    sdk: SdkConfig,
}

impl Adapters {
    /// From the standard AWS environment: region, credentials, and `AWS_ENDPOINT_URL` (which
    /// points every client at a local emulator).
    pub async fn load() -> Self {
        Self::from_sdk_config(config::load_sdk_config().await)
    }

    /// From an SDK configuration built elsewhere (tests pointing at an emulator).
    pub fn from_sdk_config(sdk: SdkConfig) -> Self {
        Self { sdk }
    }

    /// The registry and models in the DynamoDB table `table`.
    pub fn store(&self, table: impl Into<String>) -> DynamoStore {
        DynamoStore::new(aws_sdk_dynamodb::Client::new(&self.sdk), table)
    }

    /// The delivery log in the DynamoDB table `table` (the store's, without the rest of it).
    pub fn delivery_log(&self, table: impl Into<String>) -> DynamoDeliveryLog {
        DynamoDeliveryLog::new(aws_sdk_dynamodb::Client::new(&self.sdk), table)
    }

    /// The push queue at `queue_url` (SQS FIFO).
    pub fn queue(&self, queue_url: impl Into<String>) -> SqsPushQueue {
        SqsPushQueue::new(aws_sdk_sqs::Client::new(&self.sdk), queue_url)
    }

    /// The push queue at `queue_url` and its dead-letter queue, for an administrator (`hubsync
    /// queue` on AWS).
    pub fn dead_letters(
        &self,
        queue_url: impl Into<String>,
        dead_letter_queue_url: impl Into<String>,
    ) -> SqsDeadLetters {
        SqsDeadLetters::new(aws_sdk_sqs::Client::new(&self.sdk), queue_url, dead_letter_queue_url)
    }

    /// Retries of messages received from the queue at `queue_url`.
    pub fn retries(&self, queue_url: impl Into<String>) -> SqsRetries {
        SqsRetries::new(aws_sdk_sqs::Client::new(&self.sdk), queue_url)
    }

    /// The hub secret in the Secrets Manager secret `secret_id` (uncached: wrap it in
    /// [`CachedSecretSource`](hubsync_core::secrets::CachedSecretSource) in a long-lived process).
    pub fn secrets(&self, secret_id: impl Into<String>) -> SecretsManagerSource {
        SecretsManagerSource::new(aws_sdk_secretsmanager::Client::new(&self.sdk), secret_id)
    }

    /// The webhook function's adapters and settings, from the variables of `env` it reads.
    pub fn webhook(&self, env: Env<'_>) -> Result<WebhookAdapters, EnvError> {
        let queue_url = config::required(env, config::ENV_QUEUE_URL)?;
        let max_age = config::webhook_max_age(config::optional(env, config::ENV_WEBHOOK_MAX_AGE).as_deref())?;
        let retention = config::delivery_retention(config::optional(env, config::ENV_DELIVERY_RETENTION).as_deref())?;
        Ok(WebhookAdapters {
            deliveries: config::optional(env, config::ENV_TABLE)
                .map(|table| self.delivery_log(table).with_retention(retention)),
            queue: self.queue(queue_url),
            secrets: config::required(env, config::ENV_SECRET_ID).map(|id| self.secrets(id)),
            max_age,
        })
    }

    /// The sync function's adapters and settings, from the variables of `env` it reads.
    pub fn sync(&self, env: Env<'_>) -> Result<SyncAdapters, EnvError> {
        let table = config::required(env, config::ENV_TABLE)?;
        let secret_id = config::required(env, config::ENV_SECRET_ID)?;
        let queue_url = config::required(env, config::ENV_QUEUE_URL)?;
        let max_model_bytes = config::max_model_bytes(config::optional(env, config::ENV_MAX_MODEL_BYTES).as_deref())?;
        let retention = config::delivery_retention(config::optional(env, config::ENV_DELIVERY_RETENTION).as_deref())?;
        // One SQS client for both: each client built checks its TLS set-up, which a cold start pays.
        let sqs = aws_sdk_sqs::Client::new(&self.sdk);
        Ok(SyncAdapters {
            max_model_bytes,
            store: self.store(table).with_delivery_retention(retention),
            secrets: self.secrets(secret_id),
            retries: SqsRetries::new(sqs.clone(), queue_url.clone()),
            queue: SqsPushQueue::new(sqs, queue_url),
        })
    }

    /// Creates (or reuses) the queue, table and secret `name` in an emulator; see
    /// [`provision`](crate::provision::provision).
    pub async fn provision(&self, name: &str, secret_json: &str) -> Result<Provisioned, ProvisionError> {
        crate::provision::provision(&self.sdk, name, secret_json).await
    }
}
