//! The webhook function's handler: converts the request API Gateway (REST or HTTP API) or a
//! Lambda function URL delivers into the core [`WebhookRequest`] and back. All decisions are in
//! `hubsync_core::webhook`; this module only translates.

use std::convert::Infallible;

use hubsync_core::ports::{PushQueue, SecretSource};
use hubsync_core::webhook::{WebhookHandler, WebhookRequest};
use lambda_http::{Body, Request, Response};

/// Answers one HTTP request. Never fails: every error is an HTTP answer with a JSON body.
pub async fn handle<Q: PushQueue, S: SecretSource>(
    handler: &WebhookHandler<Q, S>,
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
    Ok(answer.into_http())
}
