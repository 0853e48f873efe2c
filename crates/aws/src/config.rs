//! The environment contract with the infrastructure, read once at start-up. The template in
//! `infra/` sets exactly these variables; a contract test checks both sides.

/// The SQS FIFO queue the webhook sends pushes to.
pub const ENV_QUEUE_URL: &str = "HUB_QUEUE_URL";
/// The Secrets Manager secret (name or ARN) holding the hub secret JSON.
pub const ENV_SECRET_ID: &str = "HUB_SECRET_ID";
/// The DynamoDB table of repositories and models.
pub const ENV_TABLE: &str = "HUB_TABLE";

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

/// The shared AWS configuration: region, credentials and `AWS_ENDPOINT_URL` (which points every
/// client at a local emulator) come from the standard AWS environment.
pub async fn load_sdk_config() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest()).load().await
}
