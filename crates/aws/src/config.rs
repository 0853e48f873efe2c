//! The environment contract with the infrastructure, read once at start-up. The template in
//! `infra/` sets exactly these variables; [`functions`](crate::functions) says which function
//! reads which, and a contract test checks that against the template.

pub use hubsync_core::sync::DEFAULT_MAX_MODEL_BYTES;

/// The SQS FIFO queue the webhook sends pushes to.
pub const ENV_QUEUE_URL: &str = "HUB_QUEUE_URL";
/// The dead-letter queue of the push queue (the stack's `DeadLetterQueueUrl` output): read by the
/// CLI only (`hubsync queue` on AWS), never by a function.
pub const ENV_DEAD_LETTER_QUEUE_URL: &str = "HUB_DEAD_LETTER_QUEUE_URL";
/// The Secrets Manager secret (name or ARN) holding the hub secret JSON.
pub const ENV_SECRET_ID: &str = "HUB_SECRET_ID";
/// The DynamoDB table of repositories and models.
pub const ENV_TABLE: &str = "HUB_TABLE";
/// The largest file the sync reads as a model, in bytes; optional (default 32 MiB). A larger file
/// is recorded as a malformed model "too large (N bytes)".
pub const ENV_MAX_MODEL_BYTES: &str = "HUB_MAX_MODEL_BYTES";
/// Webhook, optional: how old (whole seconds) a delivery's signed `date` may be before it is
/// refused as stale; `0` turns the check off. Default one hour.
pub const ENV_WEBHOOK_MAX_AGE: &str = "HUB_WEBHOOK_MAX_AGE";
/// Optional: how long the delivery log keeps an entry (`30d`, `12h`...; default 30 days).
pub const ENV_DELIVERY_RETENTION: &str = "HUB_DELIVERY_RETENTION";
/// The log filter of the Lambda functions (see [`init_lambda_logs`](crate::init_lambda_logs)).
pub const ENV_LOG: &str = "RUST_LOG";

/// Where variables are read from: the process environment ([`process_env`]), or a map in tests.
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The process environment.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// An optional variable of `env`, trimmed: `None` when unset or blank.
pub fn optional(env: Env<'_>, name: &str) -> Option<String> {
    env(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

/// An optional variable of the process environment, trimmed: `None` when unset or blank.
pub fn optional_env(name: &str) -> Option<String> {
    optional(&process_env, name)
}

/// A required variable of `env`, trimmed, or an error naming it (unset and blank are missing).
pub fn required(env: Env<'_>, name: &str) -> Result<String, MissingEnv> {
    match env(name) {
        Some(v) if !v.trim().is_empty() => Ok(v.trim().to_owned()),
        _ => Err(MissingEnv(name.to_owned())),
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the environment variable {0} is not set; see the README's Configuration section")]
pub struct MissingEnv(pub String);

#[derive(Debug, thiserror::Error)]
#[error("the environment variable {name} must be {expected}, not {value:?}")]
pub struct InvalidEnv {
    pub name: String,
    pub value: String,
    pub expected: &'static str,
}

/// A variable that is missing, or set to a value that does not parse.
#[derive(Debug, thiserror::Error)]
pub enum EnvError {
    #[error(transparent)]
    Missing(#[from] MissingEnv),
    #[error(transparent)]
    Invalid(#[from] InvalidEnv),
}

/// The value of [`ENV_MAX_MODEL_BYTES`] (`None`: unset): a positive whole number of bytes,
/// [`DEFAULT_MAX_MODEL_BYTES`] when unset.
pub fn max_model_bytes(value: Option<&str>) -> Result<u64, InvalidEnv> {
    match value {
        None => Ok(DEFAULT_MAX_MODEL_BYTES),
        Some(text) => text.parse::<u64>().ok().filter(|n| *n > 0).ok_or_else(|| InvalidEnv {
            name: ENV_MAX_MODEL_BYTES.to_owned(),
            value: text.to_owned(),
            expected: "a positive whole number of bytes",
        }),
    }
}

/// The value of [`ENV_WEBHOOK_MAX_AGE`] (`None`: unset): whole seconds, `0` for no check,
/// [`DEFAULT_MAX_DELIVERY_AGE`](hubsync_core::webhook::DEFAULT_MAX_DELIVERY_AGE) when unset.
pub fn webhook_max_age(value: Option<&str>) -> Result<std::time::Duration, InvalidEnv> {
    match value {
        None => Ok(hubsync_core::webhook::DEFAULT_MAX_DELIVERY_AGE),
        Some(text) => hubsync_core::webhook::parse_max_age(text).map_err(|_| InvalidEnv {
            name: ENV_WEBHOOK_MAX_AGE.to_owned(),
            value: text.to_owned(),
            expected: "a whole number of seconds (0 turns the check off)",
        }),
    }
}

/// The value of [`ENV_DELIVERY_RETENTION`] (`None`: unset): a period such as `30d`,
/// [`DEFAULT_DELIVERY_RETENTION`](hubsync_core::deliveries::DEFAULT_DELIVERY_RETENTION) when unset.
pub fn delivery_retention(value: Option<&str>) -> Result<std::time::Duration, InvalidEnv> {
    match value {
        None => Ok(hubsync_core::deliveries::DEFAULT_DELIVERY_RETENTION),
        Some(text) => hubsync_core::deliveries::parse_period(text).map_err(|_| InvalidEnv {
            name: ENV_DELIVERY_RETENTION.to_owned(),
            value: text.to_owned(),
            expected: "a period such as 30d, 12h or 90m",
        }),
    }
}

/// The shared AWS configuration: region, credentials and `AWS_ENDPOINT_URL` (which points every
/// client at a local emulator) come from the standard AWS environment.
pub async fn load_sdk_config() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest()).load().await
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn the_model_size_cap_defaults_to_32_mib_and_must_be_a_positive_number_of_bytes() {
        assert_eq!(max_model_bytes(None).unwrap(), 32 * 1024 * 1024);
        assert_eq!(max_model_bytes(Some("1048576")).unwrap(), 1_048_576);
        for wrong in ["0", "-1", "32MiB", "1e6"] {
            let error = max_model_bytes(Some(wrong)).unwrap_err();
            assert!(error.to_string().contains(ENV_MAX_MODEL_BYTES), "{error}");
        }
    }

    #[test]
    fn the_stale_delivery_window_defaults_to_an_hour_and_zero_turns_it_off() {
        assert_eq!(webhook_max_age(None).unwrap(), Duration::from_secs(3600));
        assert_eq!(webhook_max_age(Some("0")).unwrap(), Duration::ZERO);
        let error = webhook_max_age(Some("1h")).unwrap_err();
        assert!(error.to_string().contains(ENV_WEBHOOK_MAX_AGE), "{error}");
    }

    #[test]
    fn a_required_variable_is_trimmed() {
        let env = |_: &str| Some("  table  ".to_owned());

        assert_eq!(required(&env, ENV_TABLE).unwrap(), "table");
    }

    #[test]
    fn an_optional_variable_that_is_blank_is_unset() {
        let blank = |_: &str| Some(" \t".to_owned());
        let set = |_: &str| Some(" 60 ".to_owned());

        assert_eq!(optional(&blank, ENV_WEBHOOK_MAX_AGE), None);
        assert_eq!(optional(&set, ENV_WEBHOOK_MAX_AGE).as_deref(), Some("60"));
    }

    #[test]
    fn an_unset_or_blank_variable_is_missing_and_named() {
        let unset = |_: &str| None;
        let blank = |_: &str| Some(" ".to_owned());

        for env in [&unset as Env<'_>, &blank] {
            let err = required(env, ENV_TABLE).unwrap_err();
            assert_eq!(err.0, "HUB_TABLE");
        }
    }
}
