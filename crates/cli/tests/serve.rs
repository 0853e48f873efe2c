//! `hubsync serve` as a process: it says where it listens, answers Bitbucket and `/health`, and a
//! SIGTERM stops it cleanly (exit 0) with the queue kept in its database.

mod common;

use common::BOUND;
use hubsync_core::signature::sign;
use secrecy::SecretString;
use tokio::process::{Child, Command};
use tokio::time::timeout;

const SECRET: &str = "process-test-secret";

struct Served {
    child: Child,
    base: String,
    _dir: tempfile::TempDir,
}

/// Starts the binary on a free port and reads the address it prints.
async fn spawn_serve() -> Served {
    let dir = tempfile::tempdir().unwrap();
    let (child, base) =
        common::spawn_serve(&dir.path().join("hub.db"), "http://127.0.0.1:9", "token", SECRET, &[]).await;
    Served { child, base, _dir: dir }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().timeout(BOUND).build().unwrap()
}

#[tokio::test]
async fn serve_answers_bitbucket_and_stops_cleanly_on_sigterm() {
    let mut served = spawn_serve().await;
    let http = client();
    let ping = br#"{"test": true}"#.to_vec();

    let health: serde_json::Value = http
        .get(format!("{}/health", served.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let pong = http
        .post(format!("{}/gateway/public/sync", served.base))
        .header("X-Event-Key", "diagnostics:ping")
        .header("X-Hub-Signature", sign(&ping, &SecretString::from(SECRET)))
        .body(ping)
        .send()
        .await
        .unwrap();
    let pid = served.child.id().unwrap().to_string();
    let kill = Command::new("kill").args(["-TERM", &pid]).status().await.unwrap();
    let exit = timeout(BOUND, served.child.wait())
        .await
        .expect("serve did not stop")
        .unwrap();

    assert_eq!(health["status"], "ok");
    assert_eq!(health["queue"]["pending"], 0);
    assert_eq!(pong.status(), reqwest::StatusCode::OK);
    assert!(kill.success());
    assert!(exit.success(), "serve exited with {exit}");
}
