//! The webhook Lambda. Its adapters and settings are built once per cold start by `hubsync-aws`
//! (which reads the environment); the secret is cached for five minutes (and serves for up to an
//! hour while Secrets Manager cannot be reached), and first read while the runtime fetches the
//! first event. See the README's Configuration section.

use hubsync_aws::WebhookAdapters;
use hubsync_core::secrets::{CachedSecretSource, DEFAULT_SECRET_TTL, read_ahead};
use hubsync_core::webhook::WebhookHandler;
use lambda_http::{Error, Request, RequestExt, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    hubsync_aws::init_lambda_logs();
    let WebhookAdapters {
        queue,
        secrets,
        max_age,
        deliveries,
    } = WebhookAdapters::load().await?;
    if deliveries.is_none() {
        tracing::warn!("HUB_TABLE is not set: deliveries are not recorded in the delivery log");
    }
    let secrets = match secrets {
        Ok(source) => Some(CachedSecretSource::new(source, DEFAULT_SECRET_TTL)),
        Err(e) => {
            tracing::error!(error = %e, "no webhook secret configured: every delivery will be refused");
            None
        }
    };
    let handler = WebhookHandler::new(queue, secrets)
        .with_max_age(max_age)
        .with_delivery_log(deliveries);
    let handler = &handler;
    // The secret, which every delivery needs first, is read while the runtime fetches the first event.
    let run = lambda_http::run(service_fn(move |request: Request| {
        // The metrics name the function (the same for every invocation of this process).
        if let Some(context) = request.lambda_context_ref() {
            hubsync_aws::emf::enable(&context.env_config.function_name);
        }
        hubsync_webhook_function::handle(handler, request)
    }));
    let ((), ran) = tokio::join!(read_ahead(handler.secrets()), run);
    ran
}
