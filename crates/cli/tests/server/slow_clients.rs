//! `hubsync serve` facing a network: a client that sends one byte a second cannot hold the server.
//! Its headers are cut off after the header read timeout, its body after the whole-request timeout
//! (408), other clients are served meanwhile, and connections beyond the limit wait for a free
//! slot instead of piling up. The timeouts are short here (a second or two) so the tests are quick.

use std::time::Duration;

use axum::http::StatusCode;
use hubsync_cli::serve::ServeArgs;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use crate::{App, secret, spawn_app_with};

/// How long a test waits for the server to act before it fails: a bound on a broken server, not
/// a speed target.
const PATIENCE: Duration = Duration::from_secs(30);

/// A raw connection whose request is written one byte a second, and what the server sends back.
struct Trickle {
    /// Everything the server sent until it closed the connection.
    answer: JoinHandle<Vec<u8>>,
    writer: JoinHandle<()>,
}

impl Trickle {
    /// Connects to `app` and starts writing `request` one byte a second (the first at once).
    async fn start(app: &App, request: Vec<u8>) -> Self {
        let stream = TcpStream::connect(app.server.addr()).await.unwrap();
        let (mut read, mut write) = stream.into_split();
        let answer = tokio::spawn(async move {
            let mut answer = Vec::new();
            // A reset after the server closed counts as closed too.
            let _ = read.read_to_end(&mut answer).await;
            answer
        });
        let writer = tokio::spawn(async move {
            for byte in request {
                if write.write_all(&[byte]).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            // Then keep the connection open, as a stalled client would.
            std::future::pending::<()>().await;
        });
        Self { answer, writer }
    }

    fn is_closed(&self) -> bool {
        self.answer.is_finished()
    }

    /// Waits until the server closes the connection; returns what it answered.
    async fn closed_by_the_server(self) -> String {
        let answer = tokio::time::timeout(PATIENCE, self.answer)
            .await
            .expect("the server kept a client that sends one byte a second connected")
            .unwrap();
        self.writer.abort();
        String::from_utf8_lossy(&answer).into_owned()
    }
}

fn args(header_read_timeout: u64, request_timeout: u64, max_connections: u32) -> ServeArgs {
    ServeArgs {
        header_read_timeout,
        request_timeout,
        max_connections,
        ..ServeArgs::default()
    }
}

#[tokio::test]
async fn a_client_sending_its_headers_one_byte_a_second_is_cut_off_and_others_are_served_meanwhile() {
    // Arrange: a two-second header read timeout.
    let app = spawn_app_with(args(2, 30, 16), Some(secret())).await;
    let request = b"POST /gateway/public/sync HTTP/1.1\r\nHost: hub\r\nX-Event-Key: repo:refs_changed\r\n\r\n";

    // Act: one client trickles its headers while another asks for /health.
    let slow = Trickle::start(&app, request.to_vec()).await;
    let health = app.health().await;
    let open_meanwhile = !slow.is_closed();
    let answer = slow.closed_by_the_server().await;

    // Assert: the other client was served while the slow one was connected, and the slow one
    // was disconnected before it finished its headers (with a 408 if anything).
    assert_eq!(health["status"], "ok");
    assert!(
        open_meanwhile,
        "the slow client was cut off before the other was served"
    );
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 408"), "{answer}");
    app.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_client_sending_its_body_one_byte_a_second_gets_408() {
    // Arrange: the whole request must arrive within two seconds.
    let app = spawn_app_with(args(10, 2, 16), Some(secret())).await;
    let body = "x".repeat(64);
    let headers = format!(
        "POST /gateway/public/sync HTTP/1.1\r\nHost: hub\r\nX-Event-Key: repo:refs_changed\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );

    // Act: the headers at once, then the body a byte a second.
    let stream = TcpStream::connect(app.server.addr()).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    write.write_all(headers.as_bytes()).await.unwrap();
    let writer = tokio::spawn(async move {
        for byte in body.into_bytes() {
            if write.write_all(&[byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        std::future::pending::<()>().await;
    });
    let mut answer = Vec::new();
    let read = tokio::time::timeout(PATIENCE, read.read_to_end(&mut answer)).await;
    writer.abort();

    // Assert
    assert!(
        read.is_ok(),
        "the server kept a client that sends its body one byte a second"
    );
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert_eq!(app.server.hub().queue_stats().await.unwrap(), Default::default());
    app.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_connection_beyond_the_limit_waits_until_one_is_free() {
    // Arrange: one connection at a time, held by an idle client (long timeouts, so only the
    // limit is at play).
    let app = spawn_app_with(args(60, 60, 1), Some(secret())).await;
    let idle = TcpStream::connect(app.server.addr()).await.unwrap();
    let url = format!("http://{}/health", app.server.addr());
    let http = app.http.clone();
    let mut second = tokio::spawn(async move { http.get(url).send().await.map(|r| r.status()) });

    // Act and assert: the second client is not served while the first holds the only slot...
    let early = tokio::time::timeout(Duration::from_millis(500), &mut second).await;
    assert!(
        early.is_err(),
        "a second connection was served beyond the limit: {early:?}"
    );

    // ...and is served as soon as the slot is free.
    drop(idle);
    let status = tokio::time::timeout(PATIENCE, second)
        .await
        .expect("served once the slot was free");
    assert_eq!(status.unwrap().unwrap(), StatusCode::OK);
    app.server.shutdown().await.unwrap();
}
