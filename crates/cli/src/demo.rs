//! `hubsync demo` (and `hubsync serve --demo`): the whole flow on one machine, for someone with no
//! Bitbucket at hand. A simulated Bitbucket Data Center serves a sample repository of Hackolade
//! models; `hubsync serve` (the same server and worker as in production, over SQLite) runs against
//! it; five pushes (first commit, a change, a move, a delete, a push to another branch) and one
//! redelivery are sent to it as signed webhooks over HTTP; after each one the demo waits for the
//! queue to drain and says what the sync did; finally it prints the replicated models.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use hubsync_bitbucket_sim::models::{ModelSpec, generate_model, sample_repository};
use hubsync_bitbucket_sim::{FileOp, Push, Repo, SimConfig, Simulator, WebhookDelivery};
use hubsync_core::ids::RepoRef;
use hubsync_core::model::ModelStatus;
use hubsync_core::ports::{ModelStore, RepoRegistry, SyncCursor};
use hubsync_core::secrets::HubSecret;
use secrecy::ExposeSecret;

use crate::config::LocalConfig;
use crate::serve::{self, RunningServer, ServeArgs};

#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// Where the local hubsync server listens (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// Keep the simulator and the server running after the demo, until Ctrl-C.
    #[arg(long)]
    pub keep_running: bool,
    /// The SQLite file to replicate into (default: a temporary file, deleted at the end).
    #[arg(long)]
    pub db: Option<PathBuf>,
}

const PROJECT: &str = "DATA";
const REPOSITORY: &str = "models";
const WEBHOOK_SECRET: &str = "demo-webhook-secret";
const DEFAULT_BRANCH: &str = "refs/heads/main";
/// How long one push may take to be replicated before the demo gives up.
const SYNC_TIMEOUT: Duration = Duration::from_secs(60);

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    println!("hubsync demo: Bitbucket Data Center (simulated) -> webhook -> queue -> sync -> SQLite\n");

    let sim = Simulator::start(SimConfig::default())
        .await
        .context("could not start the Bitbucket simulator (it needs `git` 2.28 or later on PATH)")?;
    let repo = sim.create_repo(PROJECT, REPOSITORY)?;
    let repo_ref = RepoRef::new(repo.project_key(), repo.slug())?;

    let temp = tempfile::tempdir().context("could not create a temporary directory")?;
    let db_path = args.db.clone().unwrap_or_else(|| temp.path().join("hubsync-demo.db"));
    let secret = HubSecret::from_json(
        &serde_json::json!({
            "baseUrl": sim.base_url(),
            "accessToken": sim.token().expose_secret(),
            "webhookSecret": WEBHOOK_SECRET,
        })
        .to_string(),
    )?;
    let server = serve::start(
        ServeArgs {
            listen: args.listen,
            ..ServeArgs::default()
        },
        LocalConfig {
            db_path: db_path.clone(),
            secret: Some(secret),
        },
    )
    .await?;
    server.hub().register(&repo_ref).await?;

    println!("  Bitbucket (simulated)  {}  repository {repo_ref}", sim.base_url());
    println!("  hubsync serve          {}", server.webhook_url());
    println!("  database               {}", db_path.display());
    println!("\nPushes, each sent to the server as a signed webhook:");

    let result = replay(&sim, &repo, &repo_ref, &server).await;
    let result = match result {
        Ok(()) => show_models(&server, &repo_ref).await,
        Err(e) => Err(e),
    };
    if let Err(e) = result {
        server.shutdown().await?;
        sim.shutdown().await;
        return Err(e);
    }

    if args.keep_running {
        println!("\nStill running; Ctrl-C stops both servers.");
        println!("  webhook URL            {}", server.webhook_url());
        println!("  health                 http://{}/health", server.addr());
        println!("  Bitbucket base URL     {}", sim.base_url());
        println!("  webhook secret         {WEBHOOK_SECRET}");
        println!(
            "  read the models with   HUB_DB={} hubsync models list {repo_ref}",
            db_path.display()
        );
        server.run_until_signal().await?;
    } else {
        server.shutdown().await?;
    }
    sim.shutdown().await;
    // `temp` (the default database's directory) is deleted here, after the server has stopped.
    drop(temp);
    Ok(())
}

/// Runs git work of the simulator off the async threads.
async fn git<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, hubsync_bitbucket_sim::SimError> + Send + 'static,
) -> anyhow::Result<T> {
    Ok(tokio::task::spawn_blocking(work).await??)
}

async fn replay(sim: &Simulator, repo: &Repo, repo_ref: &RepoRef, server: &RunningServer) -> anyhow::Result<()> {
    let r = repo.clone();
    let files = sample_repository();
    let count = files.len();
    let push = git(move || r.commit_files("main", files, "Initial models")).await?;
    step(
        sim,
        repo,
        repo_ref,
        server,
        1,
        &format!("first commit on main ({count} files)"),
        &push,
    )
    .await?;

    let bigger = generate_model(&ModelSpec {
        seed: 12,
        name: "Orders".into(),
        app_target: "PostgreSQL".into(),
        target_bytes: 120 * 1024,
        ..ModelSpec::default()
    });
    let changes = [
        (
            "change models/sales/orders.hck.json",
            FileOp::write("models/sales/orders.hck.json", bigger),
            "Add entities to Orders",
        ),
        (
            "move models/customers.hck.json to models/crm/",
            FileOp::rename("models/customers.hck.json", "models/crm/customers.hck.json"),
            "Move customers under crm/",
        ),
        (
            "delete models/sales/legacy orders.json",
            FileOp::delete("models/sales/legacy orders.json"),
            "Drop legacy orders",
        ),
    ];
    for (n, (what, op, message)) in (2..).zip(changes) {
        let r = repo.clone();
        let push = git(move || r.commit("main", &[op], message)).await?;
        step(sim, repo, repo_ref, server, n, what, &push).await?;
    }

    let r = repo.clone();
    let push = git(move || {
        let branch = r.create_branch("feature/draft", "main")?;
        let draft = generate_model(&ModelSpec {
            seed: 99,
            name: "Draft".into(),
            app_target: "MONGODB".into(),
            target_bytes: 8 * 1024,
            ..ModelSpec::default()
        });
        let commit = r.commit(
            "feature/draft",
            &[FileOp::write("models/draft.hck.json", draft)],
            "Draft model",
        )?;
        Ok(branch.and(commit))
    })
    .await?;
    let delivery = step(
        sim,
        repo,
        repo_ref,
        server,
        5,
        "push a new model to branch feature/draft",
        &push,
    )
    .await?;

    let answer = delivery.send(&server.webhook_url()).await?;
    println!("  6. Bitbucket sends delivery 5 again");
    println!(
        "     {} -> not queued twice",
        describe_answer(answer.status, &answer.text())
    );
    wait_until_drained(server).await?;
    Ok(())
}

/// Sends `push` as a signed webhook, waits until the server has handled it, and says what happened.
async fn step(
    sim: &Simulator,
    repo: &Repo,
    repo_ref: &RepoRef,
    server: &RunningServer,
    n: usize,
    what: &str,
    push: &Push,
) -> anyhow::Result<WebhookDelivery> {
    let before = cursor(server, repo_ref).await?;
    let delivery = sim.webhook(repo, push, Some(WEBHOOK_SECRET))?;
    let answer = delivery.send(&server.webhook_url()).await?;
    if answer.status != 202 {
        bail!("the server answered {} to push {n}: {}", answer.status, answer.text());
    }
    wait_until_drained(server).await?;
    let after = cursor(server, repo_ref).await?;
    println!("  {n}. {what}");
    let answered = describe_answer(answer.status, &answer.text());
    let Some(pushed) = push.change(DEFAULT_BRANCH).map(|c| c.to_hash.as_str()) else {
        let unchanged = after.as_ref().map(|c| &c.commit) == before.as_ref().map(|c| &c.commit);
        let result = if unchanged {
            "not the default branch: nothing replicated"
        } else {
            "the cursor moved!"
        };
        println!("     {answered} -> {result}");
        return Ok(delivery);
    };
    // A push to main must leave the repository's cursor at the pushed commit.
    match after {
        Some(now) if now.commit.as_str() == pushed => println!(
            "     {answered} -> synced to {}: {} written, {} removed",
            now.commit.short(),
            now.stats.written,
            now.stats.removed
        ),
        other => {
            let last_error = server.hub().repo(repo_ref).await?.and_then(|r| r.last_error);
            bail!(
                "push {n} ({pushed}) was handled but not replicated: the cursor is at {}{}; see the log above",
                other.map_or("no commit".to_owned(), |c| c.commit.to_string()),
                last_error
                    .map(|e| format!(" (last error: {})", e.message))
                    .unwrap_or_default()
            );
        }
    }
    Ok(delivery)
}

fn describe_answer(status: u16, body: &str) -> String {
    let state = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("status").and_then(|s| s.as_str()).map(str::to_owned))
        .unwrap_or_default();
    format!("{status} {state}").trim_end().to_owned()
}

async fn cursor(server: &RunningServer, repo: &RepoRef) -> anyhow::Result<Option<SyncCursor>> {
    Ok(server.hub().repo(repo).await?.and_then(|r| r.cursor))
}

/// Polls the queue until nothing is pending or in flight; a dead letter or the time limit ends the
/// demo with the reason.
async fn wait_until_drained(server: &RunningServer) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + SYNC_TIMEOUT;
    loop {
        let stats = server.hub().queue_stats().await?;
        if stats.dead_letters > 0 {
            let reasons: Vec<_> = server
                .hub()
                .dead_letters()
                .await?
                .into_iter()
                .map(|d| d.reason)
                .collect();
            bail!("a push could not be replicated: {}", reasons.join("; "));
        }
        if stats.is_drained() {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            bail!(
                "the push was not replicated within {} s ({} pending, {} in flight); see the log above",
                SYNC_TIMEOUT.as_secs(),
                stats.pending,
                stats.in_flight
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn show_models(server: &RunningServer, repo: &RepoRef) -> anyhow::Result<()> {
    let models = server.hub().list_models(repo).await?;
    let mut rows = vec![["path", "model", "target", "entities", "relationships", "size", "commit"].map(String::from)];
    for m in &models {
        let (name, target, entities, relationships) = match &m.status {
            ModelStatus::Valid { facts } => (
                facts.model_name.clone(),
                facts.app_target.clone(),
                facts.entities.to_string(),
                facts.relationships.to_string(),
            ),
            ModelStatus::Malformed { error } => (
                format!("(malformed: {error})"),
                String::new(),
                String::new(),
                String::new(),
            ),
        };
        rows.push([
            m.path.clone(),
            name,
            target,
            entities,
            relationships,
            human_size(m.size),
            m.commit.short().to_owned(),
        ]);
    }
    println!("\nReplicated models of {repo} ({}):", models.len());
    print_table(&rows, &[false, false, false, true, true, true, false]);

    if let Some(record) = server.hub().repo(repo).await? {
        match record.cursor {
            Some(c) => println!(
                "\nCursor: {} synced at {} (last sync: {})",
                c.commit,
                c.synced_at.format("%Y-%m-%d %H:%M:%S UTC"),
                c.stats
            ),
            None => println!("\nCursor: none (never synced)"),
        }
        if let Some(error) = record.last_error {
            println!("Last error: {}", error.message);
        }
    }
    Ok(())
}

fn print_table(rows: &[[String; 7]], right_aligned: &[bool; 7]) {
    let width = |s: &str| s.chars().count();
    let mut widths = [0usize; 7];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(width(cell));
        }
    }
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(i, cell)| {
                let pad = " ".repeat(widths[i] - width(cell));
                if right_aligned[i] {
                    format!("{pad}{cell}")
                } else {
                    format!("{cell}{pad}")
                }
            })
            .collect();
        println!("  {}", cells.join("  ").trim_end());
    }
}

fn human_size(bytes: u64) -> String {
    match bytes {
        b if b < 1024 => format!("{b} B"),
        b if b < 1024 * 1024 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0)),
    }
}
