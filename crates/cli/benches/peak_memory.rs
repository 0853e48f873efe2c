//! Peak memory of syncing one 32 MiB model (issue 11, goal 2: peak RSS at most twice the model
//! plus 32 MiB), measured end to end: the Bitbucket Data Center simulator serves the model over
//! loopback, the real client fetches it, the sync recognises it and the SQLite store writes it.
//!
//! The simulator runs in a child process (this same binary, started with `sim-child`), so that
//! its copy of the model is not counted. The figure is this process's `VmHWM` (peak resident
//! set) from `/proc/self/status`, reset (`/proc/self/clear_refs`) just before the sync starts.
//! Linux only. `cargo bench -p hubsync-cli --bench peak_memory`; `-- --bytes N` for another size.

use std::io::{BufRead, Write};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, bail};
use hubsync_bitbucket::{BitbucketConnector, ClientOptions};
use hubsync_bitbucket_sim::models::{ModelSpec, generate_model};
use hubsync_bitbucket_sim::{FileOp, SimConfig, Simulator};
use hubsync_core::ids::RepoRef;
use hubsync_core::model::ModelStatus;
use hubsync_core::ports::{ModelStore, RepoRegistry};
use hubsync_core::secrets::{HubSecret, StaticSecret};
use hubsync_core::sync::{DEFAULT_MAX_MODEL_BYTES, NoProgress, SyncOptions, SyncWorker};
use hubsync_sqlite::SqliteHub;
use secrecy::ExposeSecret;

const MIB: u64 = 1024 * 1024;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let bytes = match args.iter().position(|a| a == "--bytes") {
        Some(i) => args.get(i + 1).context("--bytes N")?.parse()?,
        // Just under the cap: the generator writes at least the target, at most one entity more.
        None => DEFAULT_MAX_MODEL_BYTES - MIB / 4,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    if args.first().map(String::as_str) == Some("sim-child") {
        return runtime.block_on(serve_simulator(bytes));
    }
    // `cargo bench` passes `--bench`; anything else is a filter this binary does not have.
    runtime.block_on(measure(bytes))
}

/// The child: a simulator holding one repository with one model; prints
/// `<base URL> <token> <model bytes>` and serves until its standard input closes.
async fn serve_simulator(bytes: u64) -> anyhow::Result<()> {
    let sim = Simulator::start(SimConfig::default()).await?;
    let repo = sim.create_repo("DATA", "models")?;
    let model = generate_model(&ModelSpec {
        seed: 32,
        name: "Thirty-two".into(),
        target_bytes: usize::try_from(bytes)?,
        ..ModelSpec::default()
    });
    repo.commit(
        "main",
        &[FileOp::write("big.hck.json", model.clone())],
        "one large model",
    )?;
    println!("{} {} {}", sim.base_url(), sim.token().expose_secret(), model.len());
    std::io::stdout().flush()?;
    drop(model);
    tokio::task::spawn_blocking(|| {
        let mut sink = String::new();
        while std::io::stdin().lock().read_line(&mut sink).is_ok_and(|n| n > 0) {}
    })
    .await?;
    Ok(())
}

/// `VmHWM` and `VmRSS` of this process, in bytes.
fn memory() -> anyhow::Result<(u64, u64)> {
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

async fn measure(bytes: u64) -> anyhow::Result<()> {
    let mut child = Command::new(std::env::current_exe()?)
        .args(["sim-child", "--bytes", &bytes.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("starting the simulator child")?;
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().context("child stdout")?).read_line(&mut line)?;
    let mut fields = line.split_whitespace();
    let (Some(base_url), Some(token), Some(model_bytes)) = (fields.next(), fields.next(), fields.next()) else {
        bail!("the simulator child printed {line:?}");
    };
    let model_bytes: u64 = model_bytes.parse()?;

    let dir = tempfile::tempdir()?;
    let hub = SqliteHub::open(&dir.path().join("hub.db"))?;
    let repo = RepoRef::parse("DATA/models")?;
    hub.register(&repo).await?;
    let secret = HubSecret::from_json(
        &serde_json::json!({"baseUrl": base_url, "accessToken": token, "webhookSecret": "unused"}).to_string(),
    )?;
    let worker = SyncWorker {
        store: hub.clone(),
        secrets: StaticSecret(secret),
        connector: BitbucketConnector::new(ClientOptions::default())?,
        options: SyncOptions::default(),
    };

    std::fs::write("/proc/self/clear_refs", "5").context("resetting VmHWM (Linux 4.0 or later)")?;
    let (_, before) = memory()?;
    let started = Instant::now();
    worker.sync_repo(&repo, true, &NoProgress).await?;
    let took = started.elapsed();
    let (peak, _) = memory()?;
    drop(child.stdin.take());
    child.wait()?;

    let stored = hub.list_models(&repo).await?;
    if !matches!(stored.first().map(|m| &m.status), Some(ModelStatus::Valid { .. })) || stored.len() != 1 {
        bail!("the model was not stored as a valid model: {stored:?}");
    }
    let goal = 2 * model_bytes + 32 * MIB;
    let mib = |n: u64| n as f64 / MIB as f64;
    println!("| figure | value | goal | ratio |");
    println!("|---|---|---|---|");
    println!(
        "| peak RSS, full sync of one {:.1} MiB model into SQLite | {:.1} MiB (before: {:.1} MiB, took {:.2} s) | <= 2 x model + 32 MiB = {:.1} MiB | {:.2} |",
        mib(model_bytes),
        mib(peak),
        mib(before),
        took.as_secs_f64(),
        mib(goal),
        peak as f64 / goal as f64
    );
    Ok(())
}
