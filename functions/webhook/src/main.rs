//! The webhook Lambda. Its adapters and settings are built once per cold start by `hubsync-aws`
//! (which reads the environment); the secret is cached for five minutes (and serves for up to an
//! hour while Secrets Manager cannot be reached). See the README's Configuration section.

use hubsync_aws::WebhookAdapters;
use hubsync_core::secrets::{CachedSecretSource, DEFAULT_SECRET_TTL};
use hubsync_core::webhook::WebhookHandler;
use lambda_http::{Error, Request, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    hubsync_aws::init_lambda_logs();
    let WebhookAdapters {
        queue,
        secrets,
        max_age,
    } = WebhookAdapters::load().await?;
    let secrets = match secrets {
        Ok(source) => Some(CachedSecretSource::new(source, DEFAULT_SECRET_TTL)),
        Err(e) => {
            tracing::error!(error = %e, "no webhook secret configured: every delivery will be refused");
            None
        }
    };
    let handler = WebhookHandler::new(queue, secrets).with_max_age(max_age);
    let handler = &handler;
    lambda_http::run(service_fn(move |request: Request| {
        hubsync_webhook_function::handle(handler, request)
    }))
    .await
}
