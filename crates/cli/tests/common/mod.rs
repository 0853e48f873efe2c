//! Starting the `hubsync serve` binary in the process tests.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::time::timeout;

/// How long a process test waits for any one thing.
pub const BOUND: Duration = Duration::from_secs(60);

/// Starts `hubsync serve` on a free port with the local backend in `db` and the given Bitbucket
/// settings; returns the process and the base URL it printed.
pub async fn spawn_serve(
    db: &Path,
    bitbucket_url: &str,
    token: &str,
    webhook_secret: &str,
    extra_args: &[&str],
) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hubsync"))
        .args(["serve", "--listen", "127.0.0.1:0", "--shutdown-grace", "5"])
        .args(extra_args)
        .env("HUB_DB", db)
        .env("HUB_BITBUCKET_URL", bitbucket_url)
        .env("HUB_BITBUCKET_TOKEN", token)
        .env("HUB_WEBHOOK_SECRET", webhook_secret)
        .env("RUST_LOG", "warn")
        .env_remove("HUB_CONFIG")
        .env_remove("HUB_TABLE")
        .env_remove("HUB_BACKEND")
        .env_remove("HUB_LISTEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("hubsync starts");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let line = timeout(BOUND, lines.next_line())
        .await
        .expect("an address is printed")
        .expect("stdout is readable")
        .expect("a first line");
    let base = line
        .rsplit_once("listening on ")
        .map(|(_, url)| url.trim().to_owned())
        .unwrap_or_else(|| panic!("unexpected first line: {line}"));
    (child, base)
}
