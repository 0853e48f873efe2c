//! `hubsync serve` as a process: it says where it listens, answers Bitbucket and `/health`, and a
//! SIGTERM stops it cleanly (exit 0) with the queue kept in its database.

use std::process::Stdio;
use std::time::Duration;

use hubsync_core::signature::sign;
use secrecy::SecretString;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::time::timeout;

const SECRET: &str = "process-test-secret";
const BOUND: Duration = Duration::from_secs(30);

struct Served {
    child: Child,
    base: String,
    _dir: tempfile::TempDir,
}

/// Starts the binary on a free port and reads the address it prints.
async fn spawn_serve() -> Served {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_hubsync"))
        .args(["serve", "--listen", "127.0.0.1:0", "--shutdown-grace", "5"])
        .env("HUB_DB", dir.path().join("hub.db"))
        .env("HUB_BITBUCKET_URL", "http://127.0.0.1:9")
        .env("HUB_BITBUCKET_TOKEN", "token")
        .env("HUB_WEBHOOK_SECRET", SECRET)
        .env("RUST_LOG", "warn")
        .env_remove("HUB_CONFIG")
        .env_remove("HUB_TABLE")
        .env_remove("HUB_BACKEND")
        .env_remove("HUB_LISTEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = timeout(BOUND, lines.next_line())
        .await
        .expect("no address printed")
        .unwrap()
        .unwrap();
    let base = line
        .rsplit_once("listening on ")
        .map(|(_, url)| url.trim().to_owned())
        .unwrap_or_else(|| panic!("unexpected first line: {line}"));
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
