//! The administrator's commands end to end on the local backend: the `hubsync` binary against a
//! simulated Bitbucket Data Center (its tokens, repositories, webhooks and recorded deliveries)
//! and, for the deliveries, a running `hubsync serve`.

mod common;

use axum::http::StatusCode;
use hubsync_bitbucket_sim::{HookScope, Repo, SimConfig, SimWebhook, Simulator, TokenScopes, models};
use hubsync_core::ids::RepoRef;
use hubsync_core::ports::{LeaseOwner, ModelStore, RepoRegistry};
use hubsync_sqlite::SqliteHub;
use secrecy::ExposeSecret;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use tokio::time::timeout;

const SECRET: &str = "admin-test-webhook-secret";

/// A simulator with one repository of sample models, and a local database.
struct Admin {
    sim: Simulator,
    repo: Repo,
    dir: tempfile::TempDir,
}

/// What one run of the binary did.
struct Run {
    ok: bool,
    out: String,
    err: String,
}

impl Run {
    fn text(&self) -> String {
        format!("{}\n{}", self.out, self.err)
    }
}

impl Admin {
    async fn new() -> Self {
        let sim = Simulator::start(SimConfig::default()).await.expect("simulator");
        let repo = sim.create_repo("DATA", "models").expect("repo");
        repo.commit_files("main", models::sample_repository(), "Initial models")
            .expect("commit");
        sim.create_repo("DATA", "Empty one").expect("repo");
        sim.create_repo("OPS", "infra").expect("repo");
        Self {
            sim,
            repo,
            dir: tempfile::tempdir().expect("temporary directory"),
        }
    }

    fn db(&self) -> std::path::PathBuf {
        self.dir.path().join("hub.db")
    }

    fn token(&self) -> String {
        self.sim.token().expose_secret().to_owned()
    }

    fn hub(&self) -> SqliteHub {
        SqliteHub::open(&self.db()).expect("database")
    }

    /// Runs `hubsync args` with the configured token and `hub_url` as `HUB_WEBHOOK_URL`.
    async fn hubsync(&self, args: &[&str], hub_url: &str) -> Run {
        self.hubsync_with(args, &self.token(), hub_url).await
    }

    async fn hubsync_with(&self, args: &[&str], token: &str, hub_url: &str) -> Run {
        self.hubsync_env(args, token, hub_url, &[]).await
    }

    async fn hubsync_env(&self, args: &[&str], token: &str, hub_url: &str, env: &[(&str, &str)]) -> Run {
        let out = self
            .command(args, token, hub_url, env)
            .output()
            .await
            .expect("hubsync runs");
        Run {
            ok: out.status.success(),
            out: String::from_utf8_lossy(&out.stdout).into_owned(),
            err: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Starts `hubsync args` (with `env`, and no `HUB_WEBHOOK_URL`) with its output piped.
    fn spawn(&self, args: &[&str], env: &[(&str, &str)]) -> tokio::process::Child {
        self.command(args, &self.token(), NOWHERE, env)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("hubsync starts")
    }

    fn command(&self, args: &[&str], token: &str, hub_url: &str, env: &[(&str, &str)]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_hubsync"));
        command
            .args(args)
            .env("HUB_DB", self.db())
            .env("HUB_BITBUCKET_URL", self.sim.base_url())
            .env("HUB_BITBUCKET_TOKEN", token)
            .env("HUB_WEBHOOK_SECRET", SECRET)
            .env("HUB_WEBHOOK_URL", hub_url)
            .env("RUST_LOG", "warn")
            .env_remove("HUB_CONFIG")
            .env_remove("HUB_TABLE")
            .env_remove("HUB_BACKEND")
            .env_remove("HUB_LISTEN")
            .env_remove("HUB_SLICE")
            .envs(env.iter().copied());
        command
    }

    async fn registered(&self) -> Vec<RepoRef> {
        self.hub()
            .repos()
            .await
            .expect("repos")
            .into_iter()
            .map(|r| r.repo)
            .collect()
    }
}

fn id() -> RepoRef {
    RepoRef::parse("DATA/models").expect("repo")
}

/// A receiver on a free port that answers `status` to everything.
async fn spawn_receiver(status: StatusCode) -> String {
    let app = axum::Router::new().fallback(move || async move { status });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/gateway/public/sync", listener.local_addr().expect("address"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    url
}

const NOWHERE: &str = "http://127.0.0.1:9/gateway/public/sync";

// ---------------------------------------------------------------------------------------------
// sync --slice
// ---------------------------------------------------------------------------------------------

/// Each time the sync's clock is read it moves by a whole `--slice 1s`: every slice starts one
/// file, then is spent (no sleeps, no timing).
const ONE_FILE_PER_SLICE: [(&str, &str); 1] = [("HUB_SLICE_TEST_STEP", "1000")];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_with_a_slice_reports_each_slice_and_runs_them_until_the_head_fetching_each_file_once_leaving_nothing_queued()
 {
    // Arrange
    let a = Admin::new().await;
    let registered = a.hubsync(&["repos", "add", "DATA/models", "--no-sync"], NOWHERE).await;
    assert!(registered.ok, "{}", registered.text());
    a.sim.clear_requests();

    // Act
    let synced = a
        .hubsync_env(
            &["sync", "DATA/models", "--slice", "1s"],
            &a.token(),
            NOWHERE,
            &ONE_FILE_PER_SLICE,
        )
        .await;
    let status = a.hubsync(&["queue", "status"], NOWHERE).await;

    // Assert
    assert!(synced.ok, "{}", synced.text());
    assert!(
        status.out.contains("pending 0"),
        "no continuation is left queued: {}",
        status.text()
    );
    let slices = synced.out.lines().filter(|l| l.contains(") stopped after ")).count();
    assert!(slices >= 3, "several slices, each reported as it ends:\n{}", synced.out);
    assert!(
        synced.out.contains("slice 1 (1s) stopped after") && synced.out.contains("continuing here"),
        "{}",
        synced.out
    );
    let last = synced.out.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("DATA/models synced at") && last.contains(&format!("in {} slices", slices + 1)),
        "{}",
        synced.out
    );
    let record = a.hub().repo(&id()).await.expect("record").expect("registered");
    assert!(record.cursor.is_some() && record.resume.is_none(), "{record:?}");
    assert_sample_replicated_fetching_each_file_once(&a).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_with_one_slice_leaves_the_rest_to_the_queue_and_serve_completes_it_fetching_each_file_once() {
    // Arrange
    let a = Admin::new().await;
    let registered = a.hubsync(&["repos", "add", "DATA/models", "--no-sync"], NOWHERE).await;
    assert!(registered.ok, "{}", registered.text());
    a.sim.clear_requests();

    // Act 1: the first slice only.
    let synced = a
        .hubsync_env(
            &["sync", "DATA/models", "--one-slice"],
            &a.token(),
            NOWHERE,
            &[("HUB_SLICE", "1s"), ONE_FILE_PER_SLICE[0]],
        )
        .await;
    let status = a.hubsync(&["queue", "status"], NOWHERE).await;
    let between = a.hub().repo(&id()).await.expect("record").expect("registered");

    // Act 2: `hubsync serve` takes the continuation from the queue.
    serve_until_synced(&a).await;
    let hub = a.hub();

    // Assert
    assert!(synced.ok, "{}", synced.text());
    assert!(
        synced.out.contains("slice 1 (1s) stopped after") && synced.out.contains("`hubsync serve` runs the next"),
        "{}",
        synced.out
    );
    assert!(status.out.contains("pending 1"), "{}", status.text());
    assert!(between.cursor.is_none() && between.resume.is_some(), "{between:?}");
    let record = hub.repo(&id()).await.expect("record").expect("registered");
    assert!(record.resume.is_none(), "{record:?}");
    assert_sample_replicated_fetching_each_file_once(&a).await;
}

/// The raw file of the sample repository that a sync of one file per slice fetches in its fourth
/// slice.
const FOURTH_SLICE_FILE: &str = "/raw/models/derived/";

fn fourth_slice_file(line: &hubsync_bitbucket_sim::RequestLine) -> bool {
    line.path_and_query.contains(FOURTH_SLICE_FILE)
}

/// `hubsync sync DATA/models --slice 1s` of one file per slice (the repository registered, not
/// synced), running with its output piped, once it fetches its fourth slice's file, which the
/// simulator holds.
async fn sliced_sync_held_in_its_fourth_slice(a: &Admin) -> (tokio::process::Child, hubsync_bitbucket_sim::Hold) {
    let registered = a.hubsync(&["repos", "add", "DATA/models", "--no-sync"], NOWHERE).await;
    assert!(registered.ok, "{}", registered.text());
    a.sim.clear_requests();
    let held = a.sim.hold_next(fourth_slice_file);
    let sync = a.spawn(&["sync", "DATA/models", "--slice", "1s"], &ONE_FILE_PER_SLICE);
    timeout(common::BOUND, held.reached())
        .await
        .expect("the fourth slice fetches the held file");
    (sync, held)
}

/// Sends Ctrl-C (SIGINT) to `child`; whether `kill` did.
async fn interrupt(child: &tokio::process::Child) -> bool {
    let pid = child.id().expect("running").to_string();
    Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .await
        .expect("kill runs")
        .success()
}

/// Appends the lines `err` gives to `said`, up to the first holding `until` (`None`: to the end).
async fn read_lines(
    err: &mut tokio::io::Lines<BufReader<tokio::process::ChildStderr>>,
    said: &mut String,
    until: Option<&str>,
) {
    while let Ok(Ok(Some(line))) = timeout(common::BOUND, err.next_line()).await {
        said.push_str(&line);
        said.push('\n');
        if until.is_some_and(|until| line.contains(until)) {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_in_a_sliced_sync_stops_its_slice_at_a_safe_point_queues_the_rest_once_and_serve_completes_it_fetching_each_file_once()
 {
    // Arrange: a sync of one file per slice, its fourth slice's file held inside the simulator.
    let a = Admin::new().await;
    let (mut sync, held) = sliced_sync_held_in_its_fourth_slice(&a).await;

    // Act 1: Ctrl-C while that file is being fetched; once the command says it heard it, the
    // file is answered.
    let kill = interrupt(&sync).await;
    let mut err = BufReader::new(sync.stderr.take().expect("stderr")).lines();
    let mut said = String::new();
    read_lines(&mut err, &mut said, Some("Ctrl-C again")).await;
    held.release();
    let exited = timeout(common::BOUND, sync.wait_with_output())
        .await
        .expect("the sync stops")
        .expect("its status");
    read_lines(&mut err, &mut said, None).await;
    let status = a.hubsync(&["queue", "status"], NOWHERE).await;
    let between = a.hub().repo(&id()).await.expect("record").expect("registered");

    // Act 2: `hubsync serve` takes the continuation from the queue.
    serve_until_synced(&a).await;

    // Assert
    assert!(kill);
    assert!(
        !exited.status.success(),
        "an interrupted sync exits with an error:\n{said}"
    );
    assert!(
        said.contains("DATA/models: interrupted; slice 4 stops once its files in flight are written"),
        "{said}"
    );
    let last = said.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("error: interrupted in slice 4 (stopped after models/derived/")
            && last.ends_with("the rest of DATA/models's sync is queued for `hubsync serve`"),
        "{said}"
    );
    assert!(
        status.out.contains("pending 1"),
        "queued exactly once: {}",
        status.text()
    );
    assert!(between.cursor.is_none() && between.resume.is_some(), "{between:?}");
    let record = a.hub().repo(&id()).await.expect("record").expect("registered");
    assert!(record.resume.is_none(), "{record:?}");
    assert_sample_replicated_fetching_each_file_once(&a).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_ctrl_c_in_a_sliced_sync_drops_the_file_in_flight_releases_the_lease_and_serve_completes_it_at_once() {
    // Arrange: a sync of one file per slice, its fourth slice's file held inside the simulator
    // (and never answered to this command).
    let a = Admin::new().await;
    let (mut sync, held) = sliced_sync_held_in_its_fourth_slice(&a).await;

    // Act 1: Ctrl-C twice while that file is being fetched, the second once the command says it
    // heard the first.
    let first = interrupt(&sync).await;
    let mut err = BufReader::new(sync.stderr.take().expect("stderr")).lines();
    let mut said = String::new();
    read_lines(&mut err, &mut said, Some("Ctrl-C again")).await;
    let second = interrupt(&sync).await;
    let exited = timeout(common::BOUND, sync.wait_with_output())
        .await
        .expect("the sync stops without its file")
        .expect("its status");
    read_lines(&mut err, &mut said, None).await;
    // The lease is free now, long before it would expire.
    let hub = a.hub();
    let taken = hub
        .acquire_lease(&id(), &LeaseOwner::generate("test"), std::time::Duration::from_secs(60))
        .await;
    if let Ok(lease) = &taken {
        hub.release_lease(lease, true).await.expect("released");
    }
    let between = hub.repo(&id()).await.expect("record").expect("registered");
    held.release();

    // Act 2: `hubsync serve` takes the continuation from the queue.
    serve_until_synced(&a).await;

    // Assert
    assert!(first && second);
    assert!(
        !exited.status.success(),
        "an abandoned sync exits with an error:\n{said}"
    );
    assert!(
        said.contains("DATA/models: interrupted; slice 4 is abandoned: its files in flight are dropped"),
        "{said}"
    );
    let last = said.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("error: interrupted in slice 4: the rest of DATA/models's sync is queued")
            && last.ends_with("its files in flight were dropped and its lease released"),
        "{said}"
    );
    assert!(taken.is_ok(), "the lease is released: {taken:?}");
    assert!(
        between.cursor.is_none() && between.resume.is_some() && between.last_error.is_none(),
        "{between:?}"
    );
    // The dropped fetch was never answered: `serve` fetched that file, every other one was
    // fetched once, by the slice that wrote it.
    assert_sample_replicated_fetching_each_file_once(&a).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sliced_sync_failing_in_a_later_slice_says_so_queues_the_rest_once_and_serve_completes_it() {
    // Arrange: a sync of one file per slice, its fourth slice's file held inside the simulator.
    let a = Admin::new().await;
    let (sync, held) = sliced_sync_held_in_its_fourth_slice(&a).await;

    // Act 1: that file is answered 403.
    a.sim.fail_next(1, StatusCode::FORBIDDEN, None);
    held.release();
    let exited = timeout(common::BOUND, sync.wait_with_output())
        .await
        .expect("the sync stops")
        .expect("its status");
    let said = String::from_utf8_lossy(&exited.stderr).into_owned();
    let status = a.hubsync(&["queue", "status"], NOWHERE).await;

    // Act 2: `hubsync serve` takes the continuation from the queue.
    serve_until_synced(&a).await;

    // Assert
    assert!(!exited.status.success(), "{said}");
    assert!(
        said.contains("syncing DATA/models (slice 4); the rest is queued for `hubsync serve`") && said.contains("403"),
        "the slice, what is left and the cause: {said}"
    );
    assert!(
        status.out.contains("pending 1"),
        "queued exactly once: {}",
        status.text()
    );
    let injected: Vec<_> = a.sim.requests().into_iter().filter(|r| r.injected).collect();
    assert!(
        injected.len() == 1 && injected[0].path_and_query.contains(FOURTH_SLICE_FILE),
        "only the held fetch failed: {injected:?}"
    );
    assert_sample_replicated_fetching_each_file_once(&a).await;
}

/// Runs `hubsync serve` until the repository has a cursor and the queue is drained.
async fn serve_until_synced(a: &Admin) {
    let (mut serve, base) = common::spawn_serve(&a.db(), a.sim.base_url(), &a.token(), SECRET, &[]).await;
    let hub = a.hub();
    let deadline = tokio::time::Instant::now() + common::BOUND;
    while hub.repo(&id()).await.expect("record").and_then(|r| r.cursor).is_none()
        || !hub.queue_stats().await.expect("queue").is_drained()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "serve did not complete the sync ({base})"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    serve.kill().await.expect("serve stops");
}

/// Every model of the sample repository is stored byte-equal, and each of its JSON files was
/// fetched once (answers injected by the simulator aside).
async fn assert_sample_replicated_fetching_each_file_once(a: &Admin) {
    let files: std::collections::BTreeMap<String, Vec<u8>> = models::sample_repository().into_iter().collect();
    let hub = a.hub();
    let stored = hub.list_models(&id()).await.expect("models");
    assert_eq!(stored.len(), 6, "every model of the sample repository: {stored:?}");
    for summary in stored {
        let model = hub
            .get_model(&id(), &summary.path)
            .await
            .expect("read")
            .expect("stored");
        assert!(files[&summary.path] == model.content, "{} is byte-equal", summary.path);
    }
    let mut fetches = std::collections::BTreeMap::<String, usize>::new();
    for r in a
        .sim
        .requests()
        .iter()
        .filter(|r| r.path_and_query.contains("/raw/") && !r.injected)
    {
        *fetches.entry(r.path_and_query.clone()).or_default() += 1;
    }
    assert!(fetches.len() >= 9, "every JSON file: {fetches:?}");
    assert!(fetches.values().all(|&n| n == 1), "fetched twice: {fetches:?}");
}

// ---------------------------------------------------------------------------------------------
// repos available / repos add
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repos_available_lists_what_the_token_can_read_with_default_branches() {
    // Arrange
    let a = Admin::new().await;

    // Act
    let all = a.hubsync(&["repos", "available"], NOWHERE).await;
    let data = a.hubsync(&["repos", "available", "DATA", "--json"], NOWHERE).await;
    let missing = a.hubsync(&["repos", "available", "NOPE"], NOWHERE).await;

    // Assert
    assert!(all.ok, "{}", all.text());
    assert!(
        all.out.contains("DATA/models") && all.out.contains("OPS/infra"),
        "{}",
        all.out
    );
    assert!(all.out.contains("main") && all.out.contains("(empty)"), "{}", all.out);
    let listed: Value = serde_json::from_str(&data.out).expect("JSON");
    let repos: Vec<(&str, Option<&str>)> = listed
        .as_array()
        .expect("array")
        .iter()
        .map(|r| (r["repo"].as_str().expect("repo"), r["defaultBranch"].as_str()))
        .collect();
    assert_eq!(
        repos,
        [("DATA/empty-one", None), ("DATA/models", Some("refs/heads/main"))]
    );
    assert!(
        !missing.ok && missing.err.contains("NoSuchProject"),
        "{}",
        missing.text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repos_add_checks_the_repository_registers_it_and_runs_the_initial_sync() {
    // Arrange
    let a = Admin::new().await;

    // Act
    let added = a.hubsync(&["repos", "add", "data/models"], NOWHERE).await;

    // Assert
    assert!(added.ok, "{}", added.text());
    assert!(added.out.contains("registered DATA/models"), "{}", added.out);
    assert!(added.out.contains("synced at"), "{}", added.out);
    assert_eq!(a.registered().await, [id()]);
    let stored = a.hub().list_models(&id()).await.expect("models");
    assert!(!stored.is_empty());
    let record = a.hub().repo(&id()).await.expect("record").expect("registered");
    assert!(record.cursor.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repos_add_with_no_sync_only_registers() {
    // Arrange
    let a = Admin::new().await;

    // Act
    let added = a.hubsync(&["repos", "add", "DATA/models", "--no-sync"], NOWHERE).await;

    // Assert
    assert!(added.ok, "{}", added.text());
    assert_eq!(a.registered().await, [id()]);
    assert!(a.hub().list_models(&id()).await.expect("models").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adding_a_missing_repository_says_so_and_registers_nothing() {
    // Arrange
    let a = Admin::new().await;

    // Act
    let added = a.hubsync(&["repos", "add", "DATA/nothing-here"], NOWHERE).await;

    // Assert
    assert!(!added.ok);
    assert!(
        added.err.contains("the repository DATA/nothing-here does not exist")
            && added.err.contains("was not registered"),
        "{}",
        added.err
    );
    assert!(a.registered().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adding_with_a_token_that_cannot_read_names_the_missing_permission_and_registers_nothing() {
    // Arrange
    let a = Admin::new().await;
    a.sim.add_token("no-read", TokenScopes::NONE);

    // Act
    let added = a
        .hubsync_with(&["repos", "add", "DATA/models"], "no-read", NOWHERE)
        .await;
    let wrong = a
        .hubsync_with(&["repos", "add", "DATA/models"], "not-a-token", NOWHERE)
        .await;

    // Assert
    assert!(!added.ok);
    assert!(added.err.contains("lacks \"Repositories: Read\""), "{}", added.err);
    assert!(!wrong.ok);
    assert!(wrong.err.contains("refused the access token"), "{}", wrong.err);
    assert!(a.registered().await.is_empty());
    assert!(!added.text().contains(&a.token()) && !wrong.text().contains("not-a-token"));
}

// ---------------------------------------------------------------------------------------------
// webhooks create / check
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_create_creates_the_guide_webhook_then_keeps_or_repairs_it() {
    // Arrange
    let a = Admin::new().await;
    let hub_url = "https://hub.example.com/gateway/public/sync";

    // Act
    let created = a.hubsync(&["webhooks", "create", "DATA/models"], hub_url).await;
    let kept = a.hubsync(&["webhooks", "create", "DATA/models"], hub_url).await;
    let moved = a
        .hubsync(
            &["webhooks", "create", "DATA/models"],
            "https://new-hub.example.com/gateway/public/sync",
        )
        .await;

    // Assert
    assert!(created.ok, "{}", created.text());
    assert!(created.out.contains("created webhook"), "{}", created.out);
    assert!(kept.ok && kept.out.contains("kept webhook"), "{}", kept.text());
    assert!(moved.ok && moved.out.contains("repaired webhook"), "{}", moved.text());
    assert!(moved.out.contains(&format!("it pointed at {hub_url}")), "{}", moved.out);
    let hooks = a.sim.webhooks();
    assert_eq!(hooks.len(), 1, "{hooks:?}");
    let (_, scope, hook) = &hooks[0];
    assert_eq!(scope, &HookScope::of_repo(&a.repo));
    assert_eq!(hook.name, "Hackolade Model Hub sync");
    assert_eq!(hook.url, "https://new-hub.example.com/gateway/public/sync");
    assert!(hook.active);
    assert_eq!(hook.events, ["repo:refs_changed"]);
    assert_eq!(hook.secret.as_deref(), Some(SECRET));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_create_without_the_webhook_permission_names_it() {
    // Arrange
    let a = Admin::new().await;
    a.sim.add_token("read-only", TokenScopes::READ_ONLY);

    // Act
    let repo_level = a
        .hubsync_with(&["webhooks", "create", "DATA/models"], "read-only", NOWHERE)
        .await;
    let project_level = a
        .hubsync(&["webhooks", "create", "DATA/models", "--project"], NOWHERE)
        .await;

    // Assert
    assert!(!repo_level.ok);
    assert!(
        repo_level.err.contains("\"Webhooks: Read and write\""),
        "{}",
        repo_level.err
    );
    assert!(project_level.ok, "{}", project_level.text());
    assert!(matches!(a.sim.webhooks()[0].1, HookScope::Project(ref key) if key == "DATA"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_check_reports_a_wrong_url_an_inactive_webhook_and_a_missing_scope() {
    // Arrange
    let a = Admin::new().await;
    let ops = a.sim.repo("OPS", "infra").expect("repo");
    a.hub().register(&id()).await.expect("register");
    a.hub()
        .register(&RepoRef::parse("OPS/infra").expect("repo"))
        .await
        .expect("register");
    let hub_url = spawn_receiver(StatusCode::OK).await;
    a.sim.add_webhook(
        HookScope::of_repo(&a.repo),
        SimWebhook::push("old hub", "https://old.example.com/gateway/public/sync", Some(SECRET)),
    );
    a.sim.add_webhook(
        HookScope::of_repo(&ops),
        SimWebhook {
            active: false,
            ..SimWebhook::push("hub", &hub_url, Some(SECRET))
        },
    );
    a.sim.add_token("read-only", TokenScopes::READ_ONLY);

    // Act
    let checked = a.hubsync(&["webhooks", "check"], &hub_url).await;
    let json = a.hubsync(&["webhooks", "check", "--json"], &hub_url).await;
    let no_scope = a
        .hubsync_with(&["webhooks", "check", "DATA/models"], "read-only", &hub_url)
        .await;

    // Assert
    assert!(!checked.ok);
    assert!(checked.out.contains("DATA/models: PROBLEM"), "{}", checked.out);
    assert!(
        checked.out.contains("no webhook points at the hub")
            && checked.out.contains("https://old.example.com/gateway/public/sync"),
        "{}",
        checked.out
    );
    assert!(
        checked.out.contains("OPS/infra: PROBLEM") && checked.out.contains("is inactive"),
        "{}",
        checked.out
    );
    assert!(checked.err.contains("2 of 2 repositories"), "{}", checked.err);
    let reports: Value = serde_json::from_str(&json.out).expect("JSON");
    assert!(!json.ok);
    assert_eq!(reports[0]["ok"], false);
    assert_eq!(reports[1]["webhooks"][0]["active"], false);
    assert!(!no_scope.ok);
    assert!(
        no_scope.out.contains("lacks \"Webhooks: Read and write\""),
        "{}",
        no_scope.out
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_check_shows_bitbucket_deliveries_to_the_running_hub_and_a_failing_last_one() {
    // Arrange: the hub running, its webhook created by the command, a push delivered to it.
    let a = Admin::new().await;
    a.hub().register(&id()).await.expect("register");
    let (mut serve, base) = common::spawn_serve(&a.db(), a.sim.base_url(), &a.token(), SECRET, &[]).await;
    let hub_url = format!("{base}/gateway/public/sync");
    let created = a.hubsync(&["webhooks", "create", "DATA/models"], &hub_url).await;
    assert!(created.ok, "{}", created.text());
    let push = a
        .repo
        .commit_files("main", [("extra.json", "{}")], "A push")
        .expect("commit");
    let delivered = a.sim.deliver(&a.repo, &push).await.expect("delivered");

    // Act 1
    let healthy = a.hubsync(&["webhooks", "check", "DATA/models"], &hub_url).await;

    // Arrange 2: the webhook's secret changed in Bitbucket; the hub refuses the next delivery.
    let hook_id = a.sim.webhooks()[0].0;
    let client = reqwest::Client::builder().no_proxy().build().expect("client");
    let changed = client
        .put(format!(
            "{}/rest/api/latest/projects/DATA/repos/models/webhooks/{hook_id}",
            a.sim.base_url()
        ))
        .bearer_auth(a.token())
        .json(&serde_json::json!({"configuration": {"secret": "someone-else's"}}))
        .send()
        .await
        .expect("answered");
    assert!(changed.status().is_success());
    let push = a
        .repo
        .commit_files("main", [("extra.json", "{\"a\":1}")], "Another push")
        .expect("commit");
    let refused = a.sim.deliver(&a.repo, &push).await.expect("delivered");

    // Act 2
    let failing = a
        .hubsync(&["webhooks", "check", "DATA/models", "--json"], &hub_url)
        .await;
    let repaired = a.hubsync(&["webhooks", "create", "DATA/models"], &hub_url).await;
    serve.kill().await.expect("serve stops");

    // Assert
    assert_eq!(delivered[0].status, Some(202), "{delivered:?}");
    assert!(healthy.ok, "{}", healthy.text());
    assert!(healthy.out.contains("DATA/models: OK"), "{}", healthy.out);
    assert!(
        healthy.out.contains("deliveries: 1 succeeded, 0 failed"),
        "{}",
        healthy.out
    );
    assert!(
        healthy.out.contains("last success: ") && healthy.out.contains("(202)"),
        "{}",
        healthy.out
    );
    assert_eq!(refused[0].status, Some(401), "{refused:?}");
    assert!(!failing.ok);
    let report: Value = serde_json::from_str(&failing.out).expect("JSON");
    let problems = report[0]["problems"].to_string();
    assert!(problems.contains("the latest delivery failed (401"), "{problems}");
    let deliveries = &report[0]["webhooks"][0]["deliveries"];
    assert_eq!(deliveries["lastFailure"]["statusCode"], 401);
    assert_eq!(deliveries["lastSuccess"]["statusCode"], 202);
    assert!(deliveries["lastFailure"]["at"].is_string());
    assert!(
        repaired.ok && repaired.out.contains("repaired webhook"),
        "{}",
        repaired.text()
    );
    assert_eq!(a.sim.webhooks()[0].2.secret.as_deref(), Some(SECRET));
}
