//! The environment contract with the infrastructure, read once at start-up. The template in
//! `infra/` sets exactly these variables; a contract test checks both sides.

/// The SQS FIFO queue the webhook sends pushes to.
pub const ENV_QUEUE_URL: &str = "HUB_QUEUE_URL";
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

/// An optional variable: `None` when unset or blank.
pub fn optional_env(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

pub use hubsync_core::sync::DEFAULT_MAX_MODEL_BYTES;

/// A required variable, or an error naming it.
pub fn required_env(name: &str) -> Result<String, MissingEnv> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => Ok(v.trim().to_owned()),
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

/// The shared AWS configuration: region, credentials and `AWS_ENDPOINT_URL` (which points every
/// client at a local emulator) come from the standard AWS environment.
pub async fn load_sdk_config() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest()).load().await
}

#[cfg(test)]
mod tests {
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
}
