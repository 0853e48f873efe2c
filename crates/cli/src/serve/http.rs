//! The HTTP side of `hubsync serve`: the webhook endpoint and `/health`, as an axum [`Router`].
//!
//! - `POST {any prefix}/gateway/public/sync`: the core [`WebhookHandler`] (the same one the Lambda
//!   runs); bodies over [`MAX_BODY_BYTES`] are refused with 413 before they are read whole.
//! - `GET /health`: queue depths, the number of registered repositories, and whether a webhook
//!   secret is configured.
//!
//! Everything else goes to the core handler too, which answers 404 off the webhook path and 405
//! for other methods on it. The server's lifecycle (listening, graceful shutdown) is in the parent
//! module.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::StreamExt;
use hubsync_core::ports::RepoRegistry;
use hubsync_core::secrets::StaticSecret;
use hubsync_core::webhook::{MAX_BODY_BYTES, WEBHOOK_PATH, WebhookHandler, WebhookRequest, WebhookResponse};
use hubsync_sqlite::SqliteHub;
use serde_json::json;
use tracing::{error, warn};

#[derive(Clone)]
struct AppState {
    webhook: Arc<WebhookHandler<SqliteHub, Option<StaticSecret>>>,
    hub: SqliteHub,
    secret_configured: bool,
}

/// The local server's routes over `hub`; without a secret every delivery is refused with 503. A
/// push dated more than `webhook_max_age` ago is refused as stale (zero: never).
pub fn router(hub: SqliteHub, secrets: Option<StaticSecret>, webhook_max_age: Duration) -> Router {
    let state = AppState {
        secret_configured: secrets.is_some(),
        webhook: Arc::new(WebhookHandler::new(hub.clone(), secrets).with_max_age(webhook_max_age)),
        hub,
    };
    Router::new()
        .route("/health", get(health))
        // Everything else goes to the core handler, which answers 404 off the webhook path and 405
        // for other methods on it, with a message saying what Bitbucket should be pointed at.
        .fallback(webhook)
        .with_state(state)
}

async fn health(State(state): State<AppState>) -> Response {
    let result = async {
        let stats = state.hub.queue_stats().await?;
        let repositories = state.hub.repos().await?.len();
        anyhow::Ok((stats, repositories))
    }
    .await;
    match result {
        Ok((queue, repositories)) => (
            StatusCode::OK,
            axum::Json(json!({
                "status": "ok",
                "queue": queue,
                "repositories": repositories,
                "webhookSecret": if state.secret_configured { "configured" } else { "missing" },
            })),
        )
            .into_response(),
        Err(e) => {
            error!(error = format!("{e:#}"), "health check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(json!({"status": "unavailable", "error": format!("{e:#}")})),
            )
                .into_response()
        }
    }
}

async fn webhook(State(state): State<AppState>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let on_endpoint = parts.uri.path().trim_end_matches('/').ends_with(WEBHOOK_PATH);
    // Only a POST to the endpoint has a body worth reading; the handler answers the rest.
    let body = if on_endpoint && parts.method == axum::http::Method::POST {
        match read_body(&parts.headers, body).await {
            Ok(bytes) => bytes,
            Err(response) => return response,
        }
    } else {
        Vec::new()
    };
    let answer = state
        .webhook
        .handle(WebhookRequest {
            method: &parts.method,
            path: parts.uri.path(),
            headers: &parts.headers,
            body: &body,
        })
        .await;
    answer.into_http()
}

/// Reads at most [`MAX_BODY_BYTES`]; a larger body is refused without reading the rest.
async fn read_body(headers: &axum::http::HeaderMap, body: Body) -> Result<Vec<u8>, Response> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return Err(WebhookResponse::payload_too_large().into_http());
    }
    let mut bytes = Vec::with_capacity(declared.map_or(8 * 1024, |n| n as usize));
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            warn!(error = %e, "could not read the request body");
            (
                StatusCode::BAD_REQUEST,
                axum::Json(json!({"error": "unreadable_body", "message": "the request body could not be read"})),
            )
                .into_response()
        })?;
        if bytes.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(WebhookResponse::payload_too_large().into_http());
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}
