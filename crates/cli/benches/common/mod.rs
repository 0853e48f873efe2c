//! What the end-to-end bench binaries share: whether this is a real run, the peak-memory and
//! CPU-time probes, a simulator in a child process serving one repository, a sync of it into a
//! fresh SQLite file, and the `hubsync-bench` result line `cargo xtask bench` collects into one
//! table.

#![allow(dead_code)] // each bench binary uses its own part of this module

use std::io::{BufRead, Write};
use std::process::{Child, Command, Stdio};

use anyhow::{Context, bail};
use hubsync_bitbucket::{BitbucketConnector, ClientOptions};
use hubsync_bitbucket_sim::{FileOp, SimConfig, Simulator};
use hubsync_core::ids::RepoRef;
use hubsync_core::ports::RepoRegistry;
use hubsync_core::secrets::{HubSecret, StaticSecret};
use hubsync_core::sync::{SyncOptions, SyncWorker};
use hubsync_sqlite::SqliteHub;
use secrecy::ExposeSecret;

pub const MIB: u64 = 1024 * 1024;

/// `cargo bench` passes `--bench`; `cargo test --all-targets` does not, and then a bench binary
/// does one tiny iteration only, so that it keeps compiling and working within CI's time.
pub fn is_bench_run() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// The value after `name` on the command line.
pub fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

/// `VmHWM` (peak resident set) and `VmRSS` of this process, in bytes. Linux only.
pub fn memory() -> anyhow::Result<(u64, u64)> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let field = |name: &str| -> anyhow::Result<u64> {
        let line = status
            .lines()
            .find(|l| l.starts_with(name))
            .with_context(|| format!("{name} in /proc/self/status"))?;
        let kib: u64 = line.split_whitespace().nth(1).context("a number")?.parse()?;
        Ok(kib * 1024)
    };
    Ok((field("VmHWM:")?, field("VmRSS:")?))
}

/// Resets `VmHWM` to the current resident set, so the next [`memory`] reads the peak since now.
pub fn reset_peak() -> anyhow::Result<()> {
    std::fs::write("/proc/self/clear_refs", "5").context("resetting VmHWM (Linux 4.0 or later)")
}

/// A child process (this same binary started with `child_args`) that prints one line of
/// whitespace-separated fields when ready and runs until its standard input closes.
pub struct ChildSim {
    child: Child,
    pub fields: Vec<String>,
}

impl ChildSim {
    pub fn start(child_args: &[&str]) -> anyhow::Result<Self> {
        let mut child = Command::new(std::env::current_exe()?)
            .args(child_args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("starting the simulator child")?;
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().context("child stdout")?).read_line(&mut line)?;
        let fields: Vec<String> = line.split_whitespace().map(str::to_owned).collect();
        if fields.is_empty() {
            bail!("the simulator child printed nothing");
        }
        Ok(Self { child, fields })
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stop(mut self) -> anyhow::Result<()> {
        drop(self.child.stdin.take());
        self.child.wait()?;
        Ok(())
    }
}

/// The repository the child simulator serves.
pub const REPO: &str = "DATA/models";

/// In the child: a simulator holding [`REPO`] with `files` committed on `main`; prints
/// `<base URL> <token> <head>` and then `extra`, and serves until standard input closes.
pub async fn serve_repo(files: Vec<FileOp>, extra: &[String]) -> anyhow::Result<()> {
    serve_repo_with(SimConfig::default(), files, extra).await
}

/// [`serve_repo`] from a simulator configured with `config`.
pub async fn serve_repo_with(config: SimConfig, files: Vec<FileOp>, extra: &[String]) -> anyhow::Result<()> {
    let sim = Simulator::start(config).await?;
    let (project, slug) = REPO.split_once('/').context("a project and a slug")?;
    let repo = sim.create_repo(project, slug)?;
    let committing = repo.clone();
    tokio::task::spawn_blocking(move || committing.commit("main", &files, "generated models")).await??;
    let head = repo.head("main")?.context("a head")?;
    let mut fields = vec![sim.base_url().to_owned(), sim.token().expose_secret().to_owned(), head];
    fields.extend_from_slice(extra);
    serve_until_stdin_closes(&fields).await
}

/// A sync of [`REPO`] from the child simulator into a fresh SQLite file (removed on drop).
pub struct SqliteSync {
    pub hub: SqliteHub,
    pub repo: RepoRef,
    pub worker: SyncWorker<SqliteHub, StaticSecret, BitbucketConnector>,
    dir: tempfile::TempDir,
}

impl SqliteSync {
    /// The repository registered in a new database, and a worker with the default options.
    pub async fn new(base_url: &str, token: &str) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let hub = SqliteHub::open(&dir.path().join("hub.db"))?;
        let repo = RepoRef::parse(REPO)?;
        hub.register(&repo).await?;
        let secret = HubSecret::from_json(
            &serde_json::json!({"baseUrl": base_url, "accessToken": token, "webhookSecret": "unused"}).to_string(),
        )?;
        let worker = SyncWorker {
            store: hub.clone(),
            secrets: StaticSecret::new(secret),
            connector: BitbucketConnector::new(ClientOptions::default())?,
            options: SyncOptions::default(),
        };
        Ok(Self { hub, repo, worker, dir })
    }

    /// Bytes of the database on disk: its file, and its write-ahead log (with the shared-memory
    /// index). Both, and their sum, depend on when SQLite last copied the log into the file (the
    /// log is reused, not shrunk, and may hold pages the file holds too), not only on the content.
    pub fn database_bytes(&self) -> anyhow::Result<(u64, u64)> {
        let (mut file, mut log) = (0, 0);
        for entry in std::fs::read_dir(self.dir.path())? {
            let entry = entry?;
            let bytes = entry.metadata()?.len();
            if entry.file_name() == "hub.db" {
                file += bytes
            } else {
                log += bytes
            }
        }
        Ok((file, log))
    }
}

/// CPU seconds (user + system) used so far by this process alone (not its children), from
/// `/proc/self/stat`. Linux only.
pub fn own_cpu_seconds() -> anyhow::Result<f64> {
    Ok(own_ticks(std::process::id())?.0 as f64 / CLOCK_TICKS_PER_SECOND)
}

/// CPU seconds (user + system) used so far by process `pid` and by its live children (the
/// simulator's `git cat-file` processes), from `/proc/<pid>/stat`. Linux only.
pub fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let mut ticks = own_ticks(pid)?.0;
    for entry in std::fs::read_dir("/proc")? {
        let Some(child) = entry?.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        // A process may end between listing and reading: not counted.
        if let Ok((child_ticks, parent)) = own_ticks(child)
            && parent == pid
        {
            ticks += child_ticks;
        }
    }
    Ok(ticks as f64 / CLOCK_TICKS_PER_SECOND)
}

/// `sysconf(_SC_CLK_TCK)`: 100 on every Linux architecture that hubsync runs on.
const CLOCK_TICKS_PER_SECOND: f64 = 100.0;

/// `utime + stime` of one process, in clock ticks, and its parent's pid.
fn own_ticks(pid: u32) -> anyhow::Result<(u64, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name (field 2) is in parentheses and may hold spaces: fields after its end.
    let rest = stat.rsplit_once(')').context("a /proc stat line")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3).context("a /proc stat field");
    let ppid = field(4)?.parse()?;
    Ok((field(14)?.parse::<u64>()? + field(15)?.parse::<u64>()?, ppid))
}

/// In the child: prints `fields` on one line, then blocks until standard input closes.
pub async fn serve_until_stdin_closes(fields: &[String]) -> anyhow::Result<()> {
    println!("{}", fields.join(" "));
    std::io::stdout().flush()?;
    tokio::task::spawn_blocking(|| {
        let mut sink = String::new();
        while std::io::stdin().lock().read_line(&mut sink).is_ok_and(|n| n > 0) {}
    })
    .await?;
    Ok(())
}

/// One result, printed as `hubsync-bench {json}` for `cargo xtask bench`.
pub struct Figure<'a> {
    pub figure: String,
    pub value: f64,
    pub unit: &'a str,
    pub floor: Option<String>,
    pub floor_value: Option<f64>,
    pub goal: Option<String>,
    /// Why the goal is not met, when it is not (shown in the table).
    pub note: Option<String>,
}

impl Figure<'_> {
    /// Prints the line; the ratio is value / floor when there is a floor.
    pub fn print(&self) {
        let ratio = self.floor_value.filter(|f| *f > 0.0).map(|f| self.value / f);
        let line = serde_json::json!({
            "figure": self.figure, "value": round(self.value), "unit": self.unit,
            "floor": self.floor, "floor_value": self.floor_value.map(round),
            "ratio": ratio.map(round), "goal": self.goal, "note": self.note,
        });
        println!("hubsync-bench {line}");
    }
}

/// `x` to four significant digits.
fn round(x: f64) -> f64 {
    if x == 0.0 || !x.is_finite() {
        return x;
    }
    let scale = 10f64.powi(3 - x.abs().log10().floor() as i32);
    (x * scale).round() / scale
}
