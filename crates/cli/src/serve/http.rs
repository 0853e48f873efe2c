//! The HTTP side of `hubsync serve`: the webhook endpoint and `/health`, as an axum [`Router`].
//!
//! - `POST {any prefix}/gateway/public/sync`: the core [`WebhookHandler`] (the same one the Lambda
//!   runs); bodies over [`MAX_BODY_BYTES`] are refused with 413 before they are read whole.
//! - `GET /health`: queue depths, the number of registered repositories, and whether a webhook
//!   secret is configured.
//!
//! Everything else goes to the core handler too, which answers 404 off the webhook path and 405
//! for other methods on it.
//!
//! [`serve`] runs the router on a listener facing a network ([`HttpLimits`]): a client gets a
//! bounded time to send its headers (hyper's header read timeout; also how long an idle
//! keep-alive connection is kept), a bounded time for the whole request (tower-http's timeout
//! layer: 408), and at most a bounded number of connections are served at once (the others wait in
//! the listen backlog); the body cap is enforced while the body streams in. So a client that sends
//! one byte a second, or many of them, cannot hold the server. When to stop is the parent
//! module's business (the lifecycle).

use std::future::Future;
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
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tower_http::timeout::TimeoutLayer;
use tracing::{debug, error, warn};

/// What the server grants one client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// Time to send a request's headers, from the connection or the previous answer on it.
    pub header_read_timeout: Duration,
    /// Time to send a whole request (headers and body) and be answered; then 408.
    pub request_timeout: Duration,
    /// Connections served at once.
    pub max_connections: u32,
}

impl Default for HttpLimits {
    /// 10 s for the headers, 30 s for the whole request (Bitbucket Data Center sends a few KB
    /// and waits about 10 s for an answer), 256 connections.
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            max_connections: 256,
        }
    }
}

/// Serves `app` on `listener` within `limits` (HTTP/1.1) until `shutdown` completes, then stops
/// accepting, lets every open connection finish the request in hand (bounded by the timeouts), and
/// returns.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: HttpLimits,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let app = app.layer(TimeoutLayer::with_status_code(
        StatusCode::REQUEST_TIMEOUT,
        limits.request_timeout,
    ));
    let slots = Arc::new(Semaphore::new(limits.max_connections as usize));
    let (stopping, stop) = watch::channel(false);
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        // A free slot first: beyond the limit, connections wait in the listen backlog.
        let slot = tokio::select! {
            slot = Arc::clone(&slots).acquire_owned() => slot.map_err(std::io::Error::other)?,
            () = &mut shutdown => break,
        };
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little rather than spin.
                    warn!(error = %e, "could not accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let connection = builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()));
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let mut connection = std::pin::pin!(connection);
            let ended = tokio::select! {
                result = connection.as_mut() => Some(result),
                _ = stop.wait_for(|stop| *stop) => None,
            };
            let result = match ended {
                Some(result) => result,
                None => {
                    // Finish the request in hand, then close.
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(e) = result {
                // Timeouts and clients that went away: the connection is closed, nothing more.
                debug!(%remote, error = %e, "connection ended");
            }
            drop(slot);
        });
    }
    drop(listener);
    stopping.send_replace(true);
    // Every slot back means every connection has ended.
    let _all = slots
        .acquire_many(limits.max_connections)
        .await
        .map_err(std::io::Error::other)?;
    Ok(())
}

#[derive(Clone)]
struct AppState {
    webhook: Arc<WebhookHandler<SqliteHub, Option<StaticSecret>, SqliteHub>>,
    hub: SqliteHub,
    secret_configured: bool,
}

/// The local server's routes over `hub`; without a secret every delivery is refused with 503. A
/// push dated more than `webhook_max_age` ago is refused as stale (zero: never).
pub fn router(hub: SqliteHub, secrets: Option<StaticSecret>, webhook_max_age: Duration) -> Router {
    let state = AppState {
        secret_configured: secrets.is_some(),
        webhook: Arc::new(
            WebhookHandler::new(hub.clone(), secrets)
                .with_max_age(webhook_max_age)
                .with_delivery_log(hub.clone()),
        ),
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
