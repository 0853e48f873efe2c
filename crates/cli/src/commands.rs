//! The store commands (`repos`, `sync`, `models`) and `init`. Each is written once, generic over
//! the ports, and run against the backend the configuration names.

use std::io::Write;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use hubsync_bitbucket::{BitbucketConnector, ClientOptions};
use hubsync_core::deadline::{Clock, Slicing};
use hubsync_core::ids::{CommitId, RepoRef};
use hubsync_core::model::ModelStatus;
use hubsync_core::ports::{
    Ancestry, Enqueued, GitHost, GitHostConnector, ModelStore, PushQueue, QueueError, RepoRegistry, SecretSource,
    StoreError,
};
use hubsync_core::push::{PushMessage, SyncRequest};
use hubsync_core::secrets::StaticSecret;
use hubsync_core::sync::{DEFAULT_MAX_MODEL_BYTES, SyncError, SyncOptions, SyncOutcome, SyncProgress, SyncWorker};
use indicatif::{ProgressBar, ProgressStyle};
use secrecy::{ExposeSecret, SecretString};
use tokio_util::sync::CancellationToken;

use crate::config::{Backend, LocalConfig};
use crate::serve::worker::SliceLength;

#[derive(Subcommand, Debug)]
pub enum ReposCommand {
    /// The repositories the access token can read (all projects, or PROJECT), with their
    /// default branch and whether they are registered.
    Available {
        /// A project key; every project when left out.
        project: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Register a repository (PROJECT/SLUG) after checking with the access token that it exists
    /// and can be read, then run its initial full sync (locally here; on AWS it is queued for
    /// the sync function).
    Add {
        repo: RepoRef,
        /// Register only; the next push (or `hubsync sync`) replicates it.
        #[arg(long)]
        no_sync: bool,
    },
    /// List registered repositories with their sync cursor and last error.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Unregister a repository and remove its models.
    Remove { repo: RepoRef },
}

/// `hubsync sync`: the whole repository by default.
#[derive(Args, Debug)]
pub struct SyncArgs {
    pub repo: RepoRef,
    /// Only the changes since the cursor (the last head synced), as a push would bring them,
    /// instead of reconciling the whole tree.
    #[arg(long, visible_alias = "incremental", conflicts_with = "from")]
    pub recent: bool,
    /// The changes from COMMIT (a full commit id in the default branch's history) to the head,
    /// fetched at the head and applied over what the hub holds; models changed before COMMIT are
    /// left as they are.
    #[arg(long, value_name = "COMMIT")]
    pub from: Option<CommitId>,
    /// Hand the sync to the running pipeline (the sync function's SQS queue on AWS, the local
    /// queue of `hubsync serve`) in the repository's order, instead of running it here (the
    /// pipeline then cuts it into slices as it is set to, not as `--slice` says).
    #[arg(long)]
    pub queue: bool,
    /// Run the sync in slices of PERIOD (e.g. 30s, 5m; local backend): at 80 % of a slice the sync
    /// stops between files and records how far it got, as `serve --slice` does; this command
    /// then reports the slice and runs the next one itself, until the head is reached. Stopped
    /// before (Ctrl-C, an error), it queues the continuation for `hubsync serve` (or `hubsync
    /// sync --recent`): Ctrl-C ends the slice at its next safe point; a second Ctrl-C drops the
    /// files in flight and releases the repository's lease; a third stops at once.
    /// 0 or off (the default): one piece.
    #[arg(long, value_name = "PERIOD", env = "HUB_SLICE", default_value_t = SliceLength::default())]
    pub slice: SliceLength,
    /// With --slice: run the first slice only and leave its continuation on the queue for
    /// `hubsync serve`.
    #[arg(long)]
    pub one_slice: bool,
    /// Tests only (debug builds; a release binary has no such option): the slices are measured
    /// on a clock that moves this many milliseconds each time it is read, instead of the system
    /// clock (so a test needs no sleeps).
    #[cfg(debug_assertions)]
    #[arg(long, hide = true, value_name = "MS", env = "HUB_SLICE_TEST_STEP")]
    pub slice_test_step: Option<u32>,
    /// The largest file read as a model, in bytes; a larger one is listed as malformed, "too
    /// large (N bytes)".
    #[arg(long, value_name = "BYTES", env = "HUB_MAX_MODEL_BYTES", default_value_t = DEFAULT_MAX_MODEL_BYTES, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_model_bytes: u64,
}

#[derive(Subcommand, Debug)]
pub enum ModelsCommand {
    /// List the models of a repository.
    List {
        repo: RepoRef,
        #[arg(long)]
        json: bool,
    },
    /// Print one model exactly as stored (the file's bytes at the synced commit).
    Get { repo: RepoRef, path: String },
}

#[derive(Subcommand, Debug)]
pub enum QueueCommand {
    /// Pending, in-flight and dead-lettered pushes (AWS: the visible, in-flight and delayed
    /// messages of the push queue and of its dead-letter queue).
    Status,
    /// The pushes given up on, with why, and how many the queue holds. AWS: SQS cannot show a
    /// message without receiving it, and hands out a repository's later dead letters only once
    /// the earlier ones are gone, so the listing moves each dead letter to the back of its
    /// repository's line in the dead-letter queue (sent again, then deleted): none is consumed
    /// and their order is kept, but their SQS message ids change and their 14-day retention
    /// starts again. The receive count shown is the push's own (a listing does not add to it);
    /// SQS's count of the dead-letter queue is printed beside the listing.
    DeadLetters,
    /// Put dead-lettered pushes back on the queue (after fixing the cause), in their repository's
    /// order. AWS: to reach one dead letter beyond the first ten of its repository, those before
    /// it are moved to the back of their repository's line as `dead-letters` moves them.
    Redrive {
        /// Dead letter ids (see `dead-letters`: the number locally; on AWS the delivery id, or for
        /// a body that is not a push the message id it printed, or the current SQS message id);
        /// none means all of them.
        ids: Vec<String>,
        /// One dead letter to redrive (the same as giving its id).
        #[arg(long)]
        id: Option<String>,
    },
}

/// `hubsync init`. The token and the webhook secret are best given through the environment
/// (`HUB_BITBUCKET_TOKEN`, `HUB_WEBHOOK_SECRET`) or standard input (`--token-stdin`,
/// `--webhook-secret-stdin`): a value given as a flag is visible to other users in `ps`. `Debug`
/// never prints them.
#[derive(Args, Debug)]
pub struct InitArgs {
    /// Name of the queue, table and secret to create.
    #[arg(long, default_value = "hubsync")]
    pub name: String,
    /// Bitbucket Data Center base URL to put in the secret.
    #[arg(long, env = "HUB_BITBUCKET_URL")]
    pub base_url: String,
    /// Access token to put in the secret (prefer HUB_BITBUCKET_TOKEN or --token-stdin: a flag is
    /// visible in `ps`).
    #[arg(long, env = "HUB_BITBUCKET_TOKEN", hide_env_values = true)]
    pub token: Option<SecretString>,
    /// Read the access token from the first line of standard input.
    #[arg(long)]
    pub token_stdin: bool,
    /// Webhook secret to put in the secret (prefer HUB_WEBHOOK_SECRET or --webhook-secret-stdin).
    #[arg(long, env = "HUB_WEBHOOK_SECRET", hide_env_values = true)]
    pub webhook_secret: Option<SecretString>,
    /// Read the webhook secret from standard input (the line after the token's with
    /// --token-stdin, else the first).
    #[arg(long)]
    pub webhook_secret_stdin: bool,
}

/// The two secrets `init` stores, wherever they came from.
#[derive(Debug)]
pub struct InitSecrets {
    pub token: SecretString,
    pub webhook_secret: SecretString,
}

impl InitArgs {
    /// The token and webhook secret: from `input` (one per line, the token first) where a
    /// `--…-stdin` flag asks for it, else from the flag or the environment.
    pub fn secrets(&self, mut input: impl std::io::BufRead) -> anyhow::Result<InitSecrets> {
        let mut read_line = |what: &str, flag: &str| -> anyhow::Result<SecretString> {
            let mut line = String::new();
            input
                .read_line(&mut line)
                .with_context(|| format!("reading the {what} from standard input ({flag})"))?;
            let value = line.trim_end_matches(['\r', '\n']);
            if value.trim().is_empty() {
                bail!("{flag}: standard input holds no {what} (one value per line)");
            }
            Ok(SecretString::from(value.to_owned()))
        };
        let token = if self.token_stdin {
            read_line("access token", "--token-stdin")?
        } else {
            self.token
                .clone()
                .context("the access token is missing: set HUB_BITBUCKET_TOKEN or pass --token-stdin")?
        };
        let webhook_secret = if self.webhook_secret_stdin {
            read_line("webhook secret", "--webhook-secret-stdin")?
        } else {
            self.webhook_secret
                .clone()
                .context("the webhook secret is missing: set HUB_WEBHOOK_SECRET or pass --webhook-secret-stdin")?
        };
        Ok(InitSecrets { token, webhook_secret })
    }
}

/// Runs `$body` with `$store` (and `$secrets`) bound to the configured backend's adapters.
macro_rules! with_backend {
    (|$store:ident, $secrets:ident| $body:expr) => {
        match Backend::from_env()? {
            Backend::Aws(cfg) => {
                let aws = hubsync_aws::Adapters::load().await;
                let $store = aws.store(cfg.table);
                let $secrets = cfg.secret_id.map(|id| aws.secrets(id));
                $body
            }
            Backend::Local(cfg) => {
                let $store = open_local(&cfg)?;
                let $secrets = cfg.secret.map(StaticSecret::new);
                $body
            }
        }
    };
}

pub fn open_local(cfg: &LocalConfig) -> anyhow::Result<hubsync_sqlite::SqliteHub> {
    hubsync_sqlite::SqliteHub::open(&cfg.db_path)
        .with_context(|| format!("opening the local database {}", cfg.db_path.display()))
}

pub async fn repos(cmd: ReposCommand) -> anyhow::Result<()> {
    match cmd {
        ReposCommand::Available { project, json } => crate::admin::repos_available(project, json).await,
        ReposCommand::Add { repo, no_sync } => crate::admin::repos_add(repo, no_sync).await,
        cmd => with_backend!(|store, _secrets| run_repos(&store, cmd).await),
    }
}

async fn run_repos<S: RepoRegistry>(store: &S, cmd: ReposCommand) -> anyhow::Result<()> {
    match cmd {
        ReposCommand::Available { .. } | ReposCommand::Add { .. } => {
            bail!("`repos available` and `repos add` ask Bitbucket (see `crate::admin`)")
        }
        ReposCommand::Remove { repo } => {
            if store.unregister(&repo).await? {
                println!("unregistered {repo} and removed its models");
            } else {
                bail!("{repo} is not registered");
            }
        }
        ReposCommand::List { json } => {
            let repos = store.repos().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&repos)?);
                return Ok(());
            }
            if repos.is_empty() {
                println!("no repository is registered; add one with `hubsync repos add PROJECT/SLUG`");
            }
            for r in repos {
                let cursor = r.cursor.as_ref().map_or_else(
                    || "never synced".to_owned(),
                    |c| {
                        format!(
                            "at {} since {}",
                            c.commit.short(),
                            c.synced_at.format("%Y-%m-%d %H:%M:%S UTC")
                        )
                    },
                );
                println!("{}  {cursor}", r.repo);
                if let Some(e) = r.last_error {
                    println!(
                        "    last error ({}): {}",
                        e.at.format("%Y-%m-%d %H:%M:%S UTC"),
                        e.message
                    );
                }
            }
        }
    }
    Ok(())
}

/// Before a `--from` request is queued, when the secret can be read here: the commit must be in
/// the default branch's history, so a typo is said at once rather than retried by the pipeline.
async fn check_from<Src: SecretSource>(secrets: &Src, repo: &RepoRef, request: &SyncRequest) -> anyhow::Result<()> {
    let SyncRequest::From(commit) = request else {
        return Ok(());
    };
    let secret = secrets.hub_secret().await?;
    let host = BitbucketConnector::new(ClientOptions::default())?.connect(&secret)?;
    let Some(branch) = host.default_branch(repo).await? else {
        bail!("{repo} has no commits yet");
    };
    let error = match host.ancestry(repo, commit, &branch.head).await? {
        Ancestry::Ancestor => return Ok(()),
        Ancestry::Unknown => SyncError::UnknownCommit {
            repo: repo.clone(),
            commit: commit.clone(),
        },
        Ancestry::NotAncestor => SyncError::NotAnAncestor {
            repo: repo.clone(),
            commit: commit.clone(),
            head: branch.head,
        },
    };
    Err(anyhow::Error::new(error).context("nothing was queued"))
}

struct Bar(ProgressBar);

impl SyncProgress for Bar {
    fn planned(&self, files: usize) {
        self.0.set_length(files as u64);
    }
    fn file_done(&self, path: &str) {
        self.0.set_message(path.to_owned());
        self.0.inc(1);
    }
}

impl SyncArgs {
    /// What the arguments ask the sync to do.
    pub fn request(&self) -> SyncRequest {
        match (&self.from, self.recent) {
            (Some(commit), _) => SyncRequest::From(commit.clone()),
            (None, true) => SyncRequest::Recent,
            (None, false) => SyncRequest::Full,
        }
    }

    /// How `--slice` cuts the sync, if it does.
    fn slicing(&self) -> anyhow::Result<Option<Slicing>> {
        let Some(length) = self.slice.0 else {
            if self.one_slice {
                bail!("--one-slice needs --slice PERIOD (or HUB_SLICE)");
            }
            return Ok(None);
        };
        #[cfg(debug_assertions)]
        if let Some(step) = self.slice_test_step {
            let clock = stepping_clock(step);
            return Ok(Some(Slicing { length, clock }));
        }
        Ok(Some(Slicing {
            length,
            clock: Clock::system(),
        }))
    }
}

/// Tests only: a clock that moves `step_ms` milliseconds each time it is read.
#[cfg(debug_assertions)]
fn stepping_clock(step_ms: u32) -> Clock {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicI64, Ordering};

    let (start, readings) = (chrono::Utc::now(), Arc::new(AtomicI64::new(0)));
    Clock::new(move || {
        start + chrono::TimeDelta::milliseconds(readings.fetch_add(1, Ordering::SeqCst) * i64::from(step_ms))
    })
}

pub async fn sync(args: SyncArgs) -> anyhow::Result<()> {
    if args.queue {
        return queue_sync(&args).await;
    }
    if let Some(slicing) = args.slicing()? {
        let Backend::Local(cfg) = Backend::from_env()? else {
            bail!(
                "--slice runs on the local backend; on AWS, `hubsync sync --queue` hands the sync to the sync \
                 function, which cuts it into slices at its own deadline"
            );
        };
        let hub = open_local(&cfg)?;
        return run_sliced(hub.clone(), cfg.secret.map(StaticSecret::new), &hub, args, slicing).await;
    }
    with_backend!(|store, secrets| run_sync(store, secrets, args).await)
}

/// `hubsync sync --queue`: the request goes on the pipeline's queue, for the sync function (or
/// the workers of `hubsync serve`) to run in the repository's order.
async fn queue_sync(args: &SyncArgs) -> anyhow::Result<()> {
    let request = args.request();
    let message = PushMessage::on_demand(args.repo.clone(), &request, chrono::Utc::now());
    let (registered, enqueued, runner) = match Backend::from_env()? {
        Backend::Aws(cfg) => {
            let queue_url = hubsync_aws::config::optional_env(hubsync_aws::config::ENV_QUEUE_URL).context(
                "HUB_QUEUE_URL is not set: `sync --queue` puts the request on the stack's queue (its QueueUrl output)",
            )?;
            let aws = hubsync_aws::Adapters::load().await;
            let registered = aws.store(cfg.table).repo(&args.repo).await?.is_some();
            if registered && let Some(id) = cfg.secret_id {
                check_from(&aws.secrets(id), &args.repo, &request).await?;
            }
            let enqueued = if registered {
                Some(aws.queue(queue_url).enqueue(&message).await?)
            } else {
                None
            };
            (registered, enqueued, "the sync function")
        }
        Backend::Local(cfg) => {
            let hub = open_local(&cfg)?;
            let registered = hub.repo(&args.repo).await?.is_some();
            if registered && let Some(secret) = cfg.secret {
                check_from(&StaticSecret::new(secret), &args.repo, &request).await?;
            }
            let enqueued = if registered {
                Some(hub.enqueue(&message).await?)
            } else {
                None
            };
            (registered, enqueued, "`hubsync serve`")
        }
    };
    if !registered {
        bail!(
            "{} is not registered (add it with `hubsync repos add {}`)",
            args.repo,
            args.repo
        );
    }
    match enqueued {
        Some(Enqueued::Duplicate) => println!(
            "the same {request} of {} was queued less than a minute ago (request {}); not queued again",
            args.repo, message.delivery_id
        ),
        _ => println!(
            "queued a {request} of {} for {runner} (request {})",
            args.repo, message.delivery_id
        ),
    }
    Ok(())
}

type Worker<S, Src> = SyncWorker<S, Src, BitbucketConnector>;

fn worker<S, Src>(store: S, secrets: Src, args: &SyncArgs) -> anyhow::Result<Worker<S, Src>> {
    Ok(SyncWorker {
        store,
        secrets,
        connector: BitbucketConnector::new(ClientOptions::default())?,
        options: SyncOptions::with_max_model_bytes(args.max_model_bytes),
    })
}

fn progress_bar() -> ProgressBar {
    let bar = ProgressBar::new(0).with_style(
        ProgressStyle::with_template("{spinner} [{bar:30}] {pos}/{len} files {wide_msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

pub(crate) async fn run_sync<S: RepoRegistry + ModelStore, Src: SecretSource>(
    store: S,
    secrets: Src,
    args: SyncArgs,
) -> anyhow::Result<()> {
    let worker = worker(store, secrets, &args)?;
    let bar = progress_bar();
    let outcome = worker
        .sync_request(&args.repo, &args.request(), &Bar(bar.clone()))
        .await;
    bar.finish_and_clear();
    report(
        &args.repo,
        outcome.with_context(|| format!("syncing {}", args.repo))?,
        1,
    );
    Ok(())
}

/// `hubsync sync --slice`: each slice within its deadline; then, unless `--one-slice`, the next
/// slice here, until the head is reached. A slice's continuation is held here for the next
/// slice, and put on `queue` (for `hubsync serve`) only when this command stops with work left:
/// `--one-slice`, an error, Ctrl-C, another sync holding the repository. A completed sync leaves
/// nothing queued; a crash leaves the resume point, which the reconcile queues again.
///
/// The first Ctrl-C spends the slice running ([`Interrupts::cut`]): it stops at its next safe
/// point as at its deadline (the files in flight written, its resume point recorded, its lease
/// released), so `hubsync serve` can take the continuation at once and fetches nothing again.
/// A second Ctrl-C abandons the slice (its deadline's token,
/// [`Deadline::abandoned_by`](hubsync_core::deadline::Deadline::abandoned_by)): the files in
/// flight are dropped and the lease released, so `hubsync serve` takes over at once from the last
/// resume point (fetching those files again). A third stops at once: the lease then stays until
/// it expires.
async fn run_sliced<S: RepoRegistry + ModelStore, Src: SecretSource, Q: PushQueue>(
    store: S,
    secrets: Src,
    queue: &Q,
    args: SyncArgs,
    slicing: Slicing,
) -> anyhow::Result<()> {
    let worker = worker(store, secrets, &args)?;
    let repo = &args.repo;
    let held = HeldContinuation::default();
    let mut interrupts = Interrupts::listen()?;
    let slicing = interrupts.cut(slicing);
    let mut request = args.request();
    for slice in 1.. {
        let bar = progress_bar();
        let abandon = CancellationToken::new();
        let (progress, deadline) = (Bar(bar.clone()), slicing.deadline().abandoned_by(abandon.clone()));
        if interrupts.count() > 0 {
            // Between two slices: the next one does not start.
            bar.finish_and_clear();
            let rest = held.hand_over(queue).await?;
            bail!("{}", interrupted(repo, &format!("after slice {}", slice - 1), rest));
        }
        let (outcome, stopping) = {
            let sync = worker.sync_request_within(repo, &request, &progress, &deadline, &held);
            tokio::pin!(sync);
            let mut heard = 0;
            loop {
                tokio::select! {
                    outcome = &mut sync => break (outcome, heard > 0),
                    () = interrupts.reached(heard + 1) => {
                        heard += 1;
                        let said = match heard {
                            1 => "stops once its files in flight are written (Ctrl-C again to stop sooner)",
                            2 => "is abandoned: its files in flight are dropped and its lease released \
                                  (Ctrl-C again to stop at once)",
                            _ => {
                                bar.finish_and_clear();
                                let rest = held.hand_over(queue).await?;
                                bail!(
                                    "{}; the sync lease is released when it expires",
                                    interrupted(repo, &format!("in slice {slice}"), rest)
                                );
                            }
                        };
                        if heard == 2 {
                            abandon.cancel();
                        }
                        bar.suspend(|| eprintln!("{repo}: interrupted; slice {slice} {said}"));
                    }
                }
            }
        };
        bar.finish_and_clear();
        let outcome = match outcome {
            // Another sync (`hubsync serve`) holds the repository: it finishes the sliced sync
            // first, and the continuation makes sure the rest is done.
            Err(SyncError::Store(StoreError::LeaseHeld { owner, .. })) if slice > 1 => {
                held.hand_over(queue).await?;
                println!("{repo}: slice {slice} waits for {owner}; the rest is queued for `hubsync serve`");
                return Ok(());
            }
            // A second Ctrl-C: the slice is dropped, its lease released.
            Err(SyncError::Abandoned) => {
                let rest = held.hand_over(queue).await?;
                bail!(
                    "{}; its files in flight were dropped and its lease released",
                    interrupted(repo, &format!("in slice {slice}"), rest)
                );
            }
            Err(error) => {
                let rest = match held.hand_over(queue).await {
                    Ok(true) => "; the rest is queued for `hubsync serve`".to_owned(),
                    Ok(false) => String::new(),
                    Err(lost) => format!("; {lost:#}"),
                };
                return Err(anyhow::Error::new(error).context(format!("syncing {repo} (slice {slice}){rest}")));
            }
            Ok(outcome) => outcome,
        };
        let SyncOutcome::Sliced { to, after, stats, .. } = outcome else {
            report(repo, outcome, slice);
            return Ok(());
        };
        if stopping {
            let rest = held.hand_over(queue).await?;
            let written = stats.written + stats.malformed;
            let when = format!(
                "in slice {slice} (stopped after {after} at {}, {written} models written)",
                to.short()
            );
            bail!("{}", interrupted(repo, &when, rest));
        }
        print!(
            "{repo}: slice {slice} ({}) stopped after {after} at {}, {} models written so far",
            SliceLength(Some(slicing.length)),
            to.short(),
            stats.written + stats.malformed,
        );
        if args.one_slice {
            held.hand_over(queue).await?;
            println!("; its continuation is queued");
            println!("{repo}: `hubsync serve` runs the next slices (or `hubsync sync {repo} --recent` here)");
            return Ok(());
        }
        println!();
        if slice == 1 {
            println!("{repo}: continuing here, slice after slice (interrupted, `hubsync serve` takes over)");
        }
        // The next slice resumes from the recorded point, whatever the first one was asked for.
        request = SyncRequest::Recent;
    }
    Ok(())
}

/// What an interrupted `hubsync sync --slice` says: `when` it stopped, and whether the rest of
/// the sync was queued (`queued`).
fn interrupted(repo: &RepoRef, when: &str, queued: bool) -> String {
    if queued {
        format!("interrupted {when}: the rest of {repo}'s sync is queued for `hubsync serve`")
    } else {
        format!("interrupted {when}")
    }
}

/// Where `hubsync sync --slice` has the engine queue a slice's continuation: held for the next
/// slice, which this command runs itself, and handed over to the pipeline's queue only if it
/// stops first.
#[derive(Default)]
struct HeldContinuation(std::sync::Mutex<Option<PushMessage>>);

impl PushQueue for HeldContinuation {
    async fn enqueue(&self, push: &PushMessage) -> Result<Enqueued, QueueError> {
        let mut held = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        *held = Some(push.clone());
        Ok(Enqueued::Queued)
    }
}

impl HeldContinuation {
    /// Puts the continuation held, if any, on `queue`; whether there was one.
    async fn hand_over<Q: PushQueue>(&self, queue: &Q) -> anyhow::Result<bool> {
        let held = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        let Some(next) = held else { return Ok(false) };
        queue
            .enqueue(&next)
            .await
            .context("the continuation could not be queued (the resume point is recorded: the reconcile queues it)")?;
        Ok(true)
    }
}

/// The Ctrl-Cs (SIGINT) received while `hubsync sync --slice` runs, counted from the moment it
/// starts listening.
struct Interrupts(tokio::sync::watch::Receiver<u32>);

impl Interrupts {
    /// Listens from now on (the handler is installed before this returns).
    fn listen() -> anyhow::Result<Self> {
        let (count, received) = tokio::sync::watch::channel(0);
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let mut sigint = signal(SignalKind::interrupt()).context("listening for Ctrl-C")?;
            tokio::spawn(async move {
                while sigint.recv().await.is_some() {
                    count.send_modify(|n| *n += 1);
                }
            });
        }
        #[cfg(not(unix))]
        tokio::spawn(async move {
            while tokio::signal::ctrl_c().await.is_ok() {
                count.send_modify(|n| *n += 1);
            }
        });
        Ok(Self(received))
    }

    /// How many so far.
    fn count(&self) -> u32 {
        *self.0.borrow()
    }

    /// Completes once `n` have been received (never, if the listener is gone).
    async fn reached(&mut self, n: u32) {
        if self.0.wait_for(|count| *count >= n).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// `slicing` whose slices are spent from the first Ctrl-C on: its clock then reads a whole
    /// slice later, so a running slice stops at its next safe point as at its deadline.
    fn cut(&self, slicing: Slicing) -> Slicing {
        let (received, clock) = (self.0.clone(), slicing.clock.clone());
        let slice = chrono::TimeDelta::from_std(slicing.length).unwrap_or(chrono::TimeDelta::MAX);
        let clock = Clock::new(move || {
            let now = clock.now();
            if *received.borrow() == 0 {
                return now;
            }
            now.checked_add_signed(slice)
                .unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC)
        });
        Slicing {
            length: slicing.length,
            clock,
        }
    }
}

/// What a sync did, in one line (after `slices` slices).
fn report(repo: &RepoRef, outcome: SyncOutcome, slices: usize) {
    let slices = if slices > 1 {
        format!(" in {slices} slices")
    } else {
        String::new()
    };
    match outcome {
        SyncOutcome::Synced { to, stats, mode, .. } => {
            println!("{repo} synced at {}{slices} ({mode:?}): {stats}", to.short())
        }
        SyncOutcome::UpToDate { head } => println!("{repo} is up to date at {}", head.short()),
        SyncOutcome::EmptyRepository => println!("{repo} has no commits yet"),
        other => println!("{repo}: {other:?}"),
    }
}

pub async fn models(cmd: ModelsCommand) -> anyhow::Result<()> {
    with_backend!(|store, _secrets| run_models(&store, cmd).await)
}

async fn run_models<S: ModelStore>(store: &S, cmd: ModelsCommand) -> anyhow::Result<()> {
    match cmd {
        ModelsCommand::List { repo, json } => {
            let models = store.list_models(&repo).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&models)?);
                return Ok(());
            }
            for m in models {
                let what = match &m.status {
                    ModelStatus::Valid { facts } => format!(
                        "{} ({}, {} entities, {} relationships)",
                        facts.model_name, facts.app_target, facts.entities, facts.relationships
                    ),
                    ModelStatus::Malformed { error } => format!("MALFORMED: {error}"),
                };
                println!("{}  {}  {:>10} B  {}", m.path, m.commit.short(), m.size, what);
            }
        }
        ModelsCommand::Get { repo, path } => {
            let model = store
                .get_model(&repo, &path)
                .await?
                .with_context(|| format!("{repo} has no model at {path}"))?;
            let mut out = std::io::stdout().lock();
            out.write_all(&model.content)?;
            out.flush()?;
        }
    }
    Ok(())
}

/// The pipeline's queue: the SQLite queue of `hubsync serve`, or on AWS the SQS push queue and
/// its dead-letter queue (`HUB_QUEUE_URL`, `HUB_DEAD_LETTER_QUEUE_URL`).
pub async fn queue(cmd: QueueCommand) -> anyhow::Result<()> {
    let cfg = match Backend::from_env()? {
        Backend::Local(cfg) => cfg,
        Backend::Aws(_) => return aws_queue(cmd).await,
    };
    let hub = open_local(&cfg)?;
    match cmd {
        QueueCommand::Status => {
            let stats = hub.queue_stats().await?;
            println!(
                "pending {}  in flight {}  dead letters {}",
                stats.pending, stats.in_flight, stats.dead_letters
            );
        }
        QueueCommand::DeadLetters => {
            let letters = hub.dead_letters().await?;
            if letters.is_empty() {
                println!("no dead letters");
            }
            for d in letters {
                println!(
                    "{}  {}  delivery {}  {} attempts  dead since {}\n    {}",
                    d.id,
                    d.message_group,
                    d.delivery_id,
                    d.attempts,
                    d.dead_at.format("%Y-%m-%d %H:%M:%S UTC"),
                    d.reason
                );
            }
        }
        QueueCommand::Redrive { ids, id } => {
            let named: Vec<i64> = ids
                .into_iter()
                .chain(id)
                .map(|id| {
                    id.parse().with_context(|| {
                        format!("{id:?} is not a dead letter id (a number: see `hubsync queue dead-letters`)")
                    })
                })
                .collect::<anyhow::Result<_>>()?;
            let ids = if named.is_empty() {
                hub.dead_letters().await?.into_iter().map(|d| d.id).collect()
            } else {
                named
            };
            for id in ids {
                if hub.redrive(id).await? {
                    println!("dead letter {id} is queued again");
                } else {
                    bail!("there is no dead letter {id}");
                }
            }
        }
    }
    Ok(())
}

/// `hubsync queue` on AWS, with the administrator's credentials (see the README for the IAM).
async fn aws_queue(cmd: QueueCommand) -> anyhow::Result<()> {
    use hubsync_aws::config::{ENV_DEAD_LETTER_QUEUE_URL, ENV_QUEUE_URL, optional_env};
    let queue_url = optional_env(ENV_QUEUE_URL)
        .context("HUB_QUEUE_URL is not set: `hubsync queue` on AWS needs the stack's QueueUrl output")?;
    let dead_letter_queue_url = optional_env(ENV_DEAD_LETTER_QUEUE_URL).context(
        "HUB_DEAD_LETTER_QUEUE_URL is not set: `hubsync queue` on AWS needs the stack's DeadLetterQueueUrl output",
    )?;
    let queues = hubsync_aws::Adapters::load()
        .await
        .dead_letters(queue_url, dead_letter_queue_url);
    let when = |t: Option<chrono::DateTime<chrono::Utc>>| {
        t.map_or_else(
            || "unknown".to_owned(),
            |t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
        )
    };
    match cmd {
        QueueCommand::Status => {
            let (queue, dead) = queues.status().await?;
            for (name, c) in [("queue       ", queue), ("dead letters", dead)] {
                println!(
                    "{name}  visible {}  in flight {}  delayed {}",
                    c.visible, c.in_flight, c.delayed
                );
            }
        }
        QueueCommand::DeadLetters => {
            let letters = queues.list().await?;
            let listed = letters.len();
            for d in letters {
                println!(
                    "{}  {}  commit {}  {}  first sent {}  received {} times",
                    d.delivery_id,
                    d.repository(),
                    d.commit().as_deref().map_or("none", |c| &c[..c.len().min(12)]),
                    d.kind(),
                    when(d.first_sent),
                    d.receive_count
                );
            }
            let (_, dead) = queues.status().await?;
            let counted = dead.visible + dead.in_flight + dead.delayed;
            let listed = match listed {
                0 => "no dead letters listed".to_owned(),
                1 => "1 dead letter listed".to_owned(),
                n => format!("{n} dead letters listed"),
            };
            println!("{listed} (SQS counts {counted} in the dead-letter queue)");
        }
        QueueCommand::Redrive { ids, id } => {
            let named: Vec<String> = ids.into_iter().chain(id).collect();
            if named.is_empty() {
                let moved = queues.redrive(None).await?;
                if moved.is_empty() {
                    println!("no dead letters");
                }
                for d in moved {
                    println!("dead letter {} of {} is queued again", d.delivery_id, d.repository());
                }
            }
            for id in named {
                match queues.redrive(Some(&id)).await?.first() {
                    Some(d) if d.delivery_id != id => println!(
                        "dead letter {} (message {id}) of {} is queued again",
                        d.delivery_id,
                        d.repository()
                    ),
                    Some(d) => println!("dead letter {} of {} is queued again", d.delivery_id, d.repository()),
                    None => bail!("there is no dead letter {id}"),
                }
            }
        }
    }
    Ok(())
}

pub async fn init(args: InitArgs) -> anyhow::Result<()> {
    let endpoint = std::env::var("AWS_ENDPOINT_URL").unwrap_or_default();
    if endpoint.trim().is_empty() {
        bail!(
            "hubsync init creates resources in a local emulator only; set AWS_ENDPOINT_URL (in AWS, deploy infra/template.yaml)"
        );
    }
    let secrets = if args.token_stdin || args.webhook_secret_stdin {
        args.secrets(std::io::stdin().lock())?
    } else {
        args.secrets(std::io::empty())?
    };
    let secret = serde_json::json!({
        "baseUrl": args.base_url,
        "accessToken": secrets.token.expose_secret(),
        "webhookSecret": secrets.webhook_secret.expose_secret(),
        "previousWebhookSecrets": [],
    });
    hubsync_core::secrets::HubSecret::from_json(&secret.to_string())?;
    let made = hubsync_aws::Adapters::load()
        .await
        .provision(&args.name, &secret.to_string())
        .await?;
    println!("export AWS_ENDPOINT_URL={endpoint}");
    println!("export HUB_QUEUE_URL={}", made.queue_url);
    println!("export HUB_DEAD_LETTER_QUEUE_URL={}", made.dead_letter_queue_url);
    println!("export HUB_TABLE={}", made.table);
    println!("export HUB_SECRET_ID={}", made.secret_id);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        init: InitArgs,
    }

    fn parse(args: &[&str]) -> InitArgs {
        Cli::try_parse_from(std::iter::once("hubsync-init").chain(args.iter().copied()))
            .unwrap()
            .init
    }

    #[test]
    fn init_arguments_print_neither_the_token_nor_the_webhook_secret() {
        let args = parse(&[
            "--base-url",
            "http://127.0.0.1:7990",
            "--token",
            "tok-SECRET-123",
            "--webhook-secret",
            "hook-SECRET-456",
        ]);

        let printed = format!("{args:?} {args:#?}");

        assert!(!printed.contains("SECRET-"), "{printed}");
        assert!(printed.contains("127.0.0.1:7990"), "{printed}");
    }

    #[test]
    fn the_token_and_webhook_secret_can_come_from_standard_input() {
        // Arrange: nothing secret on the command line.
        let args = parse(&[
            "--base-url",
            "http://127.0.0.1:7990",
            "--token-stdin",
            "--webhook-secret-stdin",
        ]);

        // Act
        let secrets = args
            .secrets(std::io::Cursor::new("tok-from-stdin\r\nhook-from-stdin\n"))
            .unwrap();

        // Assert
        assert_eq!(secrets.token.expose_secret(), "tok-from-stdin");
        assert_eq!(secrets.webhook_secret.expose_secret(), "hook-from-stdin");
    }

    #[test]
    fn a_missing_or_empty_token_is_an_error_that_says_where_to_put_it() {
        let without = parse(&["--base-url", "http://x", "--webhook-secret", "w"]);
        let err = without.secrets(std::io::empty()).unwrap_err().to_string();
        assert!(
            err.contains("HUB_BITBUCKET_TOKEN") && err.contains("--token-stdin"),
            "{err}"
        );

        let from_stdin = parse(&["--base-url", "http://x", "--token-stdin", "--webhook-secret", "w"]);
        let err = from_stdin.secrets(std::io::Cursor::new("\n")).unwrap_err().to_string();
        assert!(err.contains("--token-stdin"), "{err}");
    }
}
