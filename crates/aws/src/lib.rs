//! The AWS adapters of hubsync's ports: an SQS FIFO [`PushQueue`](hubsync_core::ports::PushQueue),
//! a DynamoDB [`RepoRegistry`](hubsync_core::ports::RepoRegistry) +
//! [`ModelStore`](hubsync_core::ports::ModelStore), and a Secrets Manager
//! [`SecretSource`](hubsync_core::ports::SecretSource). Only this crate knows the AWS SDK.

pub mod config;
pub mod dynamodb;
pub mod errors;
pub mod provision;
pub mod secretsmanager;
pub mod sqs;
pub mod sqs_retries;

pub use dynamodb::DynamoStore;
pub use secretsmanager::SecretsManagerSource;
pub use sqs::SqsPushQueue;
pub use sqs_retries::SqsRetries;

/// Logs for Lambda: JSON lines (one object per event, with the current span's fields such as the
/// delivery id), level from `RUST_LOG` (default `info`). CloudWatch adds the timestamp of arrival,
/// the line keeps its own.
pub fn init_lambda_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(true)
        .with_span_list(false)
        .with_target(false)
        .init();
}
