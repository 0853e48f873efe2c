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

/// Who holds the sync leases this execution environment takes, as `hubsync repos` shows it
/// ("held by ..."): the function and the CloudWatch log stream where that sync logs (Lambda
/// sets both for every execution environment; a process id would mean nothing there). `None`
/// outside Lambda.
pub fn lambda_lease_holder(env: Env<'_>) -> Option<String> {
    let function = env("AWS_LAMBDA_FUNCTION_NAME").filter(|f| !f.is_empty())?;
    Some(match env("AWS_LAMBDA_LOG_STREAM_NAME").filter(|s| !s.is_empty()) {
        Some(stream) => format!("{function} log stream {stream}"),
        None => function,
    })
}

/// The log filter from [`ENV_LOG`] of `env`; `info` when it is unset or does not parse.
pub fn lambda_log_filter(env: Env<'_>) -> tracing_subscriber::EnvFilter {
    env(ENV_LOG)
        .and_then(|directives| tracing_subscriber::EnvFilter::builder().parse(directives).ok())
        .unwrap_or_else(|| tracing_subscriber::EnvFilter::new("info"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| vars.iter().find(|(n, _)| *n == name).map(|(_, v)| (*v).to_owned())
    }

    #[test]
    fn a_lambda_lease_holder_names_the_function_and_its_log_stream() {
        let env = env_of(&[
            ("AWS_LAMBDA_FUNCTION_NAME", "hub-sync"),
            ("AWS_LAMBDA_LOG_STREAM_NAME", "2026/11/28/[$LATEST]0123456789abcdef"),
        ]);

        let holder = lambda_lease_holder(&env);

        assert_eq!(
            holder.as_deref(),
            Some("hub-sync log stream 2026/11/28/[$LATEST]0123456789abcdef")
        );
    }

    #[test]
    fn outside_lambda_there_is_no_lambda_lease_holder() {
        assert_eq!(lambda_lease_holder(&env_of(&[])), None);
        assert_eq!(
            lambda_lease_holder(&env_of(&[("AWS_LAMBDA_FUNCTION_NAME", "hub-sync")])).as_deref(),
            Some("hub-sync")
        );
    }
}
