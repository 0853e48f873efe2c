//! The webhook Lambda. Configuration and SDK clients are built once per cold start; the secret is
//! cached for five minutes (and serves for up to an hour while Secrets Manager cannot be reached).
//! See the README's Configuration section.

use hubsync_aws::config::{
    ENV_QUEUE_URL, ENV_SECRET_ID, ENV_WEBHOOK_MAX_AGE, load_sdk_config, optional_env, required_env,
};
use hubsync_aws::{SecretsManagerSource, SqsPushQueue};
use hubsync_core::secrets::{CachedSecretSource, DEFAULT_SECRET_TTL};
use hubsync_core::webhook::{DEFAULT_MAX_DELIVERY_AGE, WebhookHandler, parse_max_age};
use lambda_http::{Error, Request, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    hubsync_aws::init_lambda_logs();
    let queue_url = required_env(ENV_QUEUE_URL)?;
    let max_age = match optional_env(ENV_WEBHOOK_MAX_AGE) {
        Some(text) => parse_max_age(&text).map_err(|e| format!("{ENV_WEBHOOK_MAX_AGE}: {e}"))?,
        None => DEFAULT_MAX_DELIVERY_AGE,
    };
    let sdk = load_sdk_config().await;
    let secrets = match required_env(ENV_SECRET_ID) {
        Ok(id) => Some(CachedSecretSource::new(
            SecretsManagerSource::new(aws_sdk_secretsmanager::Client::new(&sdk), id),
            DEFAULT_SECRET_TTL,
        )),
        Err(e) => {
            tracing::error!(error = %e, "no webhook secret configured: every delivery will be refused");
            None
        }
    };
    let handler = WebhookHandler::new(SqsPushQueue::new(aws_sdk_sqs::Client::new(&sdk), queue_url), secrets)
        .with_max_age(max_age);
    let handler = &handler;
    lambda_http::run(service_fn(move |request: Request| {
        hubsync_webhook_function::handle(handler, request)
    }))
    .await
}
