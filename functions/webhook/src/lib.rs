//! The webhook function's handler: converts the request API Gateway (REST or HTTP API) or a
//! Lambda function URL delivers into the core [`WebhookRequest`] and back. All decisions (and the
//! recording of verified deliveries in the delivery log) are in `hubsync_core::webhook`; this
//! module only translates, and counts the answer in the function's metrics
//! ([`hubsync_aws::emf`]).

use std::convert::Infallible;

use hubsync_core::ports::{DeliveryLog, PushQueue, SecretSource};
use hubsync_core::webhook::{WebhookHandler, WebhookRequest};
use lambda_http::{Body, Request, Response};

/// Answers one HTTP request. Never fails: every error is an HTTP answer with a JSON body.
pub async fn handle<Q: PushQueue, S: SecretSource, L: DeliveryLog>(
    handler: &WebhookHandler<Q, S, L>,
    request: Request,
) -> Result<Response<Body>, Infallible> {
    let body: &[u8] = match request.body() {
        Body::Empty => b"",
        Body::Text(text) => text.as_bytes(),
        Body::Binary(bytes) => bytes,
        _ => b"",
    };
    let answer = handler
        .handle(WebhookRequest {
            method: request.method(),
            path: request.uri().path(),
            headers: request.headers(),
            body,
        })
        .await;
    hubsync_aws::emf::emit_webhook(&answer);
    Ok(answer.into_http())
}
