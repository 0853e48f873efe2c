//! A Lambda Runtime API emulator on 127.0.0.1, so tests run the real `webhook` and `sync`
//! binaries as Lambda runs them: the binary long-polls `GET /2018-06-01/runtime/invocation/next`,
//! gets the event with its request id and deadline in headers, and posts the answer to
//! `/invocation/{id}/response` (or `/error`). An initialization error goes to `/init/error`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use serde_json::Value;
use tokio::sync::{Mutex, mpsc, oneshot};

/// What a function answered to one invocation.
#[derive(Debug)]
pub enum Invocation {
    Response(Value),
    Error(Value),
}

#[derive(Default)]
struct Shared {
    waiting: Mutex<HashMap<String, oneshot::Sender<Invocation>>>,
    init_error: Mutex<Option<Value>>,
}

struct AppState {
    events: Mutex<mpsc::Receiver<(String, Value)>>,
    shared: Arc<Shared>,
}

pub struct RuntimeApi {
    /// `host:port`, the value of `AWS_LAMBDA_RUNTIME_API`.
    pub address: String,
    events: mpsc::Sender<(String, Value)>,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

async fn next(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    let Some((id, event)) = state.events.lock().await.recv().await else {
        return (StatusCode::GONE, HeaderMap::new(), String::new());
    };
    let mut headers = HeaderMap::new();
    let deadline = chrono::Utc::now().timestamp_millis() + 60_000;
    for (name, value) in [
        ("lambda-runtime-aws-request-id", id.clone()),
        ("lambda-runtime-deadline-ms", deadline.to_string()),
        (
            "lambda-runtime-invoked-function-arn",
            "arn:aws:lambda:us-east-1:123456789012:function:test".to_owned(),
        ),
        (
            "lambda-runtime-trace-id",
            format!("Root=1-5bef4de7-{}", &id[..24.min(id.len())]),
        ),
    ] {
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(name, v);
        }
    }
    (StatusCode::OK, headers, event.to_string())
}

async fn answer(state: &AppState, id: &str, answer: Invocation) -> StatusCode {
    match state.shared.waiting.lock().await.remove(id) {
        Some(tx) => {
            let _ = tx.send(answer);
            StatusCode::ACCEPTED
        }
        None => StatusCode::BAD_REQUEST,
    }
}

fn json(body: &Bytes) -> Value {
    serde_json::from_slice(body).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()))
}

async fn response(State(state): State<Arc<AppState>>, Path(id): Path<String>, body: Bytes) -> StatusCode {
    answer(&state, &id, Invocation::Response(json(&body))).await
}

async fn error(State(state): State<Arc<AppState>>, Path(id): Path<String>, body: Bytes) -> StatusCode {
    answer(&state, &id, Invocation::Error(json(&body))).await
}

async fn init_error(State(state): State<Arc<AppState>>, body: Bytes) -> StatusCode {
    *state.shared.init_error.lock().await = Some(json(&body));
    StatusCode::ACCEPTED
}

impl RuntimeApi {
    pub async fn start() -> Self {
        let (events, rx) = mpsc::channel(16);
        let shared = Arc::new(Shared::default());
        let state = Arc::new(AppState {
            events: Mutex::new(rx),
            shared: shared.clone(),
        });
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route("/2018-06-01/runtime/invocation/{id}/response", post(response))
            .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port");
        let address = listener.local_addr().expect("an address").to_string();
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            address,
            events,
            shared,
            server,
        }
    }

    /// Hands `event` to the function and waits (at most `timeout`) for its answer.
    pub async fn invoke(&self, event: Value, timeout: Duration) -> Invocation {
        let id = uuid::Uuid::new_v4().to_string();
        let (tx, rx) = oneshot::channel();
        self.shared.waiting.lock().await.insert(id.clone(), tx);
        self.events.send((id, event)).await.expect("the emulator is running");
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(answer)) => answer,
            _ => panic!(
                "the function did not answer within {timeout:?} (init error: {:?})",
                self.shared.init_error.lock().await
            ),
        }
    }
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.server.abort();
    }
}
