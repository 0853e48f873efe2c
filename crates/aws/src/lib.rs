//! The AWS adapters of hubsync's ports: an SQS FIFO [`PushQueue`](hubsync_core::ports::PushQueue),
//! a DynamoDB [`RepoRegistry`](hubsync_core::ports::RepoRegistry) +
//! [`ModelStore`](hubsync_core::ports::ModelStore), and a Secrets Manager
//! [`SecretSource`](hubsync_core::ports::SecretSource). Only this crate knows the AWS SDK: the
//! binaries get their adapters from [`Adapters`] (the CLI) or the bundles of [`functions`] (the
//! Lambda functions, with their contract with the template).

pub mod adapters;
pub mod config;
pub mod delivery_log;
pub mod dynamodb;
pub mod emf;
pub mod errors;
pub mod functions;
pub mod provision;
pub mod secretsmanager;
pub mod sqs;
pub mod sqs_dead_letters;
pub mod sqs_retries;

pub use adapters::Adapters;
pub use delivery_log::DynamoDeliveryLog;
pub use dynamodb::DynamoStore;
pub use functions::{SyncAdapters, WebhookAdapters};
pub use secretsmanager::SecretsManagerSource;
pub use sqs::SqsPushQueue;
pub use sqs_dead_letters::SqsDeadLetters;
pub use sqs_retries::SqsRetries;

use config::{ENV_LOG, Env, process_env};

/// Logs for Lambda: JSON lines (one object per event, with the current span's fields such as the
/// delivery id), level from `RUST_LOG` (default `info`). CloudWatch adds the timestamp of arrival,
/// the line keeps its own.
pub fn init_lambda_logs() {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(lambda_log_filter(&process_env))
        .with_current_span(true)
        .with_span_list(false)
        .with_target(false)
        .init();
}

/// The log filter from [`ENV_LOG`] of `env`; `info` when it is unset or does not parse.
pub fn lambda_log_filter(env: Env<'_>) -> tracing_subscriber::EnvFilter {
    env(ENV_LOG)
        .and_then(|directives| tracing_subscriber::EnvFilter::builder().parse(directives).ok())
        .unwrap_or_else(|| tracing_subscriber::EnvFilter::new("info"))
}
