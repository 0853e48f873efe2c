//! The administrator's commands, in the order of the setup guide: `repos available` (the
//! guide's "Add Repository" picker), `repos add` (checks with the token that the repository
//! exists and can be read, registers it, starts its initial full sync), `webhooks create`
//! (creates or repairs the guide's webhook with the token's webhook permission) and
//! `webhooks check` (the guide's "Troubleshooting: Recent events", for every registered
//! repository at once). Each asks Bitbucket with the hub's own access token, so what they find
//! is what the sync will find.

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use clap::Subcommand;
use futures::{StreamExt, TryStreamExt, stream};
use hubsync_aws::config::{ENV_MAX_MODEL_BYTES, max_model_bytes, optional_env};
use hubsync_bitbucket::{
    AdminError, AdminErrorKind, AvailableRepository, BitbucketClient, ClientOptions, InvocationHistory, PUSH_EVENT,
    Permission, ShownSecret, Webhook, WebhookScope, WebhookSpec,
};
use hubsync_core::ids::{DeliveryId, RepoRef};
use hubsync_core::ports::{ModelStore, PushQueue, RepoRegistry, SecretSource};
use hubsync_core::push::PushMessage;
use hubsync_core::secrets::{HubSecret, StaticSecret};
use secrecy::ExposeSecret;
use serde::Serialize;

use crate::commands::{SyncArgs, open_local, run_sync};
use crate::config::Backend;

/// The hub's webhook URL (the stack's `WebhookUrl` output); locally it defaults to
/// `http://{HUB_LISTEN}/gateway/public/sync`.
pub const ENV_HUB_WEBHOOK_URL: &str = "HUB_WEBHOOK_URL";
/// Where `hubsync serve` listens (its default address when unset).
const ENV_LISTEN: &str = "HUB_LISTEN";
const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// The path of the hub's webhook endpoint.
const WEBHOOK_PATH: &str = "/gateway/public/sync";
/// The title the setup guide gives the webhook.
pub const DEFAULT_WEBHOOK_TITLE: &str = "Hackolade Model Hub sync";

#[derive(Subcommand, Debug)]
pub enum WebhooksCommand {
    /// Check that each registered repository (or REPO) has an active webhook pointing at the hub
    /// (HUB_WEBHOOK_URL) for Repository Push with a secret, and show Bitbucket's record of its
    /// deliveries. Exits non-zero when something is wrong.
    Check {
        /// PROJECT/SLUG; every registered repository when left out.
        repo: Option<RepoRef>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Create the hub's webhook on a repository (or its project), as the setup guide does; an
    /// existing correct one is kept, a wrong one repaired. Needs the token's "Webhooks: Read and
    /// write" (project admin with --project).
    Create {
        /// PROJECT/SLUG.
        repo: RepoRef,
        /// Create it on the repository's project (it then fires for all its repositories).
        #[arg(long)]
        project: bool,
        /// The webhook's title.
        #[arg(long, default_value = DEFAULT_WEBHOOK_TITLE)]
        title: String,
    },
}

/// The Bitbucket side of the hub: its secret (base URL, token, webhook secret) and a client.
struct Bitbucket {
    secret: HubSecret,
    client: BitbucketClient,
}

impl Bitbucket {
    fn new(secret: HubSecret) -> anyhow::Result<Self> {
        let client = BitbucketClient::new(&secret.base_url, secret.access_token.clone(), ClientOptions::default())
            .context("the Bitbucket client cannot be configured from the hub secret")?;
        Ok(Self { secret, client })
    }
}

/// Runs `$body` with `$store`, `$bitbucket` and `$backend` bound to the configured backend.
macro_rules! with_admin_backend {
    (|$store:ident, $bitbucket:ident, $backend:ident| $body:expr) => {
        match Backend::from_env()? {
            Backend::Aws(cfg) => {
                let aws = hubsync_aws::Adapters::load().await;
                let $store = aws.store(cfg.table.clone());
                let secret_id = cfg
                    .secret_id
                    .clone()
                    .context("HUB_SECRET_ID is not set: the hub secret holds the Bitbucket URL and access token")?;
                let source = aws.secrets(secret_id);
                let $bitbucket = Bitbucket::new(std::sync::Arc::unwrap_or_clone(source.hub_secret().await?))?;
                let $backend = Setup::Aws(Box::new(aws));
                $body
            }
            Backend::Local(cfg) => {
                let $store = open_local(&cfg)?;
                let secret = cfg.secret.clone().context(
                    "Bitbucket is not configured: set HUB_BITBUCKET_URL, HUB_BITBUCKET_TOKEN and HUB_WEBHOOK_SECRET (or HUB_CONFIG)",
                )?;
                let $bitbucket = Bitbucket::new(secret)?;
                let $backend = Setup::Local;
                $body
            }
        }
    };
}

/// Which backend runs the sync.
enum Setup {
    /// With the AWS adapters, whose queue takes the initial sync.
    Aws(Box<hubsync_aws::Adapters>),
    Local,
}

impl Setup {
    /// The hub's webhook URL: `HUB_WEBHOOK_URL`, or locally where `hubsync serve` listens.
    fn hub_url(&self) -> anyhow::Result<String> {
        if let Some(url) = env(ENV_HUB_WEBHOOK_URL) {
            return Ok(url);
        }
        match self {
            Self::Local => Ok(format!(
                "http://{}{WEBHOOK_PATH}",
                env(ENV_LISTEN).unwrap_or_else(|| DEFAULT_LISTEN.to_owned())
            )),
            Self::Aws(_) => bail!(
                "set {ENV_HUB_WEBHOOK_URL} to the hub's webhook URL (the stack's WebhookUrl output, …/gateway/public/sync)"
            ),
        }
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// `repos available [PROJECT]`: the repositories the token can read, with their default branch.
pub async fn repos_available(project: Option<String>, json: bool) -> anyhow::Result<()> {
    with_admin_backend!(|store, bitbucket, _backend| run_available(&store, &bitbucket, project, json).await)
}

/// One line of `repos available`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Available {
    #[serde(flatten)]
    repository: AvailableRepository,
    default_branch: Option<String>,
    registered: bool,
}

async fn run_available<S: RepoRegistry>(
    store: &S,
    bitbucket: &Bitbucket,
    project: Option<String>,
    json: bool,
) -> anyhow::Result<()> {
    let repositories = bitbucket
        .client
        .repositories(project.as_deref())
        .await
        .map_err(|e| explain(e, None))?;
    let registered: Vec<RepoRef> = store.repos().await?.into_iter().map(|r| r.repo).collect();
    let client = &bitbucket.client;
    let listed: Vec<Available> = stream::iter(repositories)
        .map(|repository| async move {
            let default_branch = client.default_branch_name(&repository.repo).await?;
            Ok::<_, AdminError>((repository, default_branch))
        })
        .buffered(8)
        .map_ok(|(repository, default_branch)| Available {
            registered: registered.contains(&repository.repo),
            repository,
            default_branch,
        })
        .try_collect()
        .await
        .map_err(|e| explain(e, None))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&listed)?);
        return Ok(());
    }
    if listed.is_empty() {
        println!(
            "the access token can read no repository{}: give it \"Repositories: Read\"",
            project.map(|p| format!(" in project {p}")).unwrap_or_default()
        );
        return Ok(());
    }
    let width = listed
        .iter()
        .map(|a| a.repository.repo.to_string().len())
        .max()
        .unwrap_or(0);
    println!(
        "{:width$}  {:24}  {:16}  registered",
        "repository", "name", "default branch"
    );
    for a in listed {
        let branch = a
            .default_branch
            .as_deref()
            .map_or("(empty)", |b| b.trim_start_matches("refs/heads/"));
        println!(
            "{:width$}  {:24}  {:16}  {}",
            a.repository.repo.to_string(),
            a.repository.name,
            branch,
            if a.registered { "yes" } else { "no" }
        );
    }
    Ok(())
}

/// `repos add PROJECT/SLUG [--no-sync]`.
pub async fn repos_add(repo: RepoRef, no_sync: bool) -> anyhow::Result<()> {
    with_admin_backend!(|store, bitbucket, backend| run_add(store, bitbucket, backend, repo, no_sync).await)
}

async fn run_add<S: RepoRegistry + ModelStore>(
    store: S,
    bitbucket: Bitbucket,
    backend: Setup,
    repo: RepoRef,
    no_sync: bool,
) -> anyhow::Result<()> {
    let queue_url = match (&backend, no_sync) {
        (Setup::Aws(_), false) => Some(env(hubsync_aws::config::ENV_QUEUE_URL).context(
            "HUB_QUEUE_URL is not set: the initial sync is queued for the sync function (or pass --no-sync); \
             nothing was registered",
        )?),
        _ => None,
    };
    let found = bitbucket
        .client
        .repository(&repo)
        .await
        .map_err(|e| explain(e, Some(&repo)).context(format!("{repo} was not registered")))?;
    let repo = found.repo;
    if store.register(&repo).await? {
        println!("registered {repo} ({})", found.name);
    } else {
        println!("{repo} was already registered");
    }
    if no_sync {
        println!("its next push (or `hubsync sync {repo}`) replicates it");
        return Ok(());
    }
    match backend {
        Setup::Local => {
            let secrets = StaticSecret::new(bitbucket.secret);
            run_sync(
                store,
                secrets,
                SyncArgs {
                    repo,
                    recent: false,
                    from: None,
                    queue: false,
                    max_model_bytes: max_model_bytes(optional_env(ENV_MAX_MODEL_BYTES).as_deref())?,
                    slice: Default::default(),
                    one_slice: false,
                    #[cfg(debug_assertions)]
                    slice_test_step: None,
                },
            )
            .await
        }
        Setup::Aws(aws) => {
            let queue_url = queue_url.context("no queue URL")?;
            let queue = aws.queue(queue_url);
            let request = full_sync_request(&repo);
            queue.enqueue(&request).await?;
            println!(
                "the initial full sync of {repo} is queued for the sync function (request {})",
                request.delivery_id
            );
            Ok(())
        }
    }
}

/// A full sync request with an id of its own (its deduplication id in the queue).
pub fn full_sync_request(repo: &RepoRef) -> PushMessage {
    let now = Utc::now();
    let seed = format!(
        "full-sync {repo} {} {}",
        now.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        std::process::id()
    );
    PushMessage::full_sync(repo.clone(), DeliveryId::from_body(seed.as_bytes()), now)
}

/// Turns a client error into what an administrator should do about it.
fn explain(error: AdminError, repo: Option<&RepoRef>) -> anyhow::Error {
    let advice = match (error.kind, repo) {
        (AdminErrorKind::NotFound, Some(repo)) => format!(
            "the repository {repo} does not exist (or the access token cannot see it: it needs \"Repositories: Read\" on it)"
        ),
        (AdminErrorKind::PermissionDenied(permission), Some(repo)) => {
            format!("the access token lacks {permission} on {repo}")
        }
        (AdminErrorKind::PermissionDenied(permission), None) => format!("the access token lacks {permission}"),
        (AdminErrorKind::Unauthenticated, _) => {
            "Bitbucket refused the access token: it is wrong, expired or revoked (create a new one with \"Repositories: Read\" and \"Webhooks: Read and write\")".to_owned()
        }
        _ => return anyhow::Error::new(error),
    };
    anyhow::Error::new(error).context(advice)
}

// ---------------------------------------------------------------------------------------------
// Webhooks
// ---------------------------------------------------------------------------------------------

pub async fn webhooks(cmd: WebhooksCommand) -> anyhow::Result<()> {
    with_admin_backend!(|store, bitbucket, backend| match cmd {
        WebhooksCommand::Check { repo, json } => run_check(&store, &bitbucket, &backend.hub_url()?, repo, json).await,
        WebhooksCommand::Create { repo, project, title } => {
            run_create(&bitbucket, &backend.hub_url()?, &repo, project, &title).await
        }
    })
}

/// `a` and `b` name the same endpoint (scheme and host case, a trailing slash aside).
fn same_url(a: &str, b: &str) -> bool {
    // Scheme and host are case-insensitive; the path is not.
    let normal = |u: &str| {
        let u = u.trim().trim_end_matches('/');
        match u.split_once("://") {
            Some((scheme, rest)) => {
                let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
                format!("{}://{}{path}", scheme.to_lowercase(), authority.to_lowercase())
            }
            None => u.to_owned(),
        }
    };
    normal(a) == normal(b)
}

/// What a webhook's secret is to the hub.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
enum SecretVerdict {
    /// The hub's current webhook secret.
    Current,
    /// One of the previous secrets, still accepted during a rotation.
    Previous,
    /// Set, but Bitbucket shows it masked: its deliveries tell whether it is right.
    Masked,
    /// Another secret: the hub refuses its deliveries (401).
    Other,
    /// None: deliveries are unsigned, and the hub refuses them.
    Missing,
}

fn secret_verdict(shown: &ShownSecret, hub: &HubSecret) -> SecretVerdict {
    match shown {
        ShownSecret::None => SecretVerdict::Missing,
        ShownSecret::Masked => SecretVerdict::Masked,
        ShownSecret::Value(value) => {
            let value = value.expose_secret();
            if value == hub.webhook_secret().expose_secret() {
                SecretVerdict::Current
            } else if hub
                .previous_webhook_secrets()
                .iter()
                .any(|s| s.expose_secret() == value)
            {
                SecretVerdict::Previous
            } else {
                SecretVerdict::Other
            }
        }
    }
}

/// One webhook as `webhooks check` reports it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct HookReport {
    id: u64,
    scope: WebhookScope,
    name: String,
    url: String,
    points_at_hub: bool,
    active: bool,
    repository_push: bool,
    secret: SecretVerdict,
    #[serde(skip_serializing_if = "Option::is_none")]
    deliveries: Option<InvocationHistory>,
    #[serde(skip_serializing_if = "Option::is_none")]
    deliveries_error: Option<String>,
}

/// One repository as `webhooks check` reports it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct RepoReport {
    repo: RepoRef,
    hub_url: String,
    ok: bool,
    problems: Vec<String>,
    notes: Vec<String>,
    webhooks: Vec<HookReport>,
}

async fn run_check<S: RepoRegistry>(
    store: &S,
    bitbucket: &Bitbucket,
    hub_url: &str,
    repo: Option<RepoRef>,
    json: bool,
) -> anyhow::Result<()> {
    let repos = match repo {
        Some(repo) => vec![repo],
        None => store.repos().await?.into_iter().map(|r| r.repo).collect(),
    };
    if repos.is_empty() {
        bail!("no repository is registered; add one with `hubsync repos add PROJECT/SLUG`");
    }
    let mut reports = Vec::with_capacity(repos.len());
    for repo in repos {
        reports.push(check_repo(bitbucket, hub_url, repo).await);
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    } else {
        for report in &reports {
            print_report(report);
        }
    }
    let failing = reports.iter().filter(|r| !r.ok).count();
    if failing > 0 {
        bail!(
            "{failing} of {} repositories have a webhook problem (see above; `hubsync webhooks create PROJECT/SLUG` creates or repairs the hub's webhook)",
            reports.len()
        );
    }
    Ok(())
}

async fn check_repo(bitbucket: &Bitbucket, hub_url: &str, repo: RepoRef) -> RepoReport {
    let mut problems = Vec::new();
    let mut notes = Vec::new();
    let mut hooks: Vec<Webhook> = Vec::new();
    match bitbucket.client.webhooks(&WebhookScope::Repository(repo.clone())).await {
        Ok(found) => hooks.extend(found),
        Err(e) => problems.push(format!(
            "the repository's webhooks cannot be read: {}",
            describe(&e, &repo)
        )),
    }
    match bitbucket
        .client
        .webhooks(&WebhookScope::Project(repo.project().to_owned()))
        .await
    {
        Ok(found) => hooks.extend(found),
        Err(e) if matches!(e.kind, AdminErrorKind::PermissionDenied(_)) => notes.push(format!(
            "project {}'s webhooks were not checked: the token lacks {}",
            repo.project(),
            Permission::ProjectAdmin
        )),
        Err(e) => notes.push(format!("project {}'s webhooks cannot be read: {e}", repo.project())),
    }
    let mut reports = Vec::with_capacity(hooks.len());
    for hook in hooks {
        let points_at_hub = same_url(&hook.url, hub_url);
        let (deliveries, deliveries_error) = if points_at_hub {
            match bitbucket.client.webhook_history(&hook.scope, hook.id).await {
                Ok(history) => (Some(history), None),
                Err(e) => (None, Some(e.to_string())),
            }
        } else {
            (None, None)
        };
        reports.push(HookReport {
            id: hook.id,
            points_at_hub,
            active: hook.active,
            repository_push: hook.events.iter().any(|e| e == PUSH_EVENT),
            secret: secret_verdict(&hook.secret, &bitbucket.secret),
            scope: hook.scope,
            name: hook.name,
            url: hook.url,
            deliveries,
            deliveries_error,
        });
    }
    let at_hub: Vec<&HookReport> = reports.iter().filter(|h| h.points_at_hub).collect();
    if at_hub.is_empty() && problems.is_empty() {
        let elsewhere: Vec<String> = reports.iter().map(|h| format!("{} ({})", h.url, h.name)).collect();
        problems.push(if elsewhere.is_empty() {
            format!("no webhook points at the hub ({hub_url})")
        } else {
            format!(
                "no webhook points at the hub ({hub_url}); the webhooks found point at: {}",
                elsewhere.join(", ")
            )
        });
    }
    for hook in at_hub {
        let which = format!("webhook {} \"{}\" ({})", hook.id, hook.name, hook.scope);
        if !hook.active {
            problems.push(format!("{which} is inactive: Bitbucket sends it nothing"));
        }
        if !hook.repository_push {
            problems.push(format!("{which} does not subscribe to Repository Push ({PUSH_EVENT})"));
        }
        match hook.secret {
            SecretVerdict::Missing => problems.push(format!(
                "{which} has no secret: its deliveries are unsigned and the hub refuses them"
            )),
            SecretVerdict::Other => problems.push(format!(
                "{which} has a secret that is not the hub's webhook secret: the hub refuses its deliveries"
            )),
            SecretVerdict::Previous => notes.push(format!(
                "{which} still uses a previous webhook secret; `hubsync webhooks create` moves it to the current one"
            )),
            SecretVerdict::Current | SecretVerdict::Masked => {}
        }
        if let Some(error) = &hook.deliveries_error {
            notes.push(format!("{which}: its deliveries cannot be read: {error}"));
        }
        if let Some(latest) = hook.deliveries.as_ref().and_then(|d| d.latest.as_ref())
            && !latest.succeeded()
        {
            problems.push(format!(
                "{which}: the latest delivery failed ({}{}); Bitbucket does not retry it",
                latest.description.as_deref().unwrap_or("no answer"),
                latest.at.map(|t| format!(" at {}", when(t))).unwrap_or_default()
            ));
        }
    }
    RepoReport {
        ok: problems.is_empty(),
        repo,
        hub_url: hub_url.to_owned(),
        problems,
        notes,
        webhooks: reports,
    }
}

/// An error of a webhook call, in the administrator's words.
fn describe(error: &AdminError, repo: &RepoRef) -> String {
    match error.kind {
        AdminErrorKind::PermissionDenied(permission) => format!("the access token lacks {permission}"),
        AdminErrorKind::NotFound => format!("the repository {repo} does not exist (or the token cannot see it)"),
        AdminErrorKind::Unauthenticated => "Bitbucket refused the access token (wrong, expired or revoked)".to_owned(),
        _ => error.to_string(),
    }
}

fn when(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

fn print_report(report: &RepoReport) {
    println!("{}: {}", report.repo, if report.ok { "OK" } else { "PROBLEM" });
    for problem in &report.problems {
        println!("  ✗ {problem}");
    }
    for note in &report.notes {
        println!("  ! {note}");
    }
    for hook in &report.webhooks {
        let secret = match hook.secret {
            SecretVerdict::Current => "the hub's secret",
            SecretVerdict::Previous => "a previous hub secret",
            SecretVerdict::Masked => "a secret (masked by Bitbucket)",
            SecretVerdict::Other => "another secret",
            SecretVerdict::Missing => "no secret",
        };
        println!(
            "  {} webhook {} \"{}\" → {}{}",
            match hook.scope {
                WebhookScope::Repository(_) => "repository",
                WebhookScope::Project(_) => "project",
            },
            hook.id,
            hook.name,
            hook.url,
            if hook.points_at_hub { "" } else { " (not the hub)" }
        );
        if !hook.points_at_hub {
            continue;
        }
        println!(
            "    {}, {}, {secret}",
            if hook.active { "active" } else { "INACTIVE" },
            if hook.repository_push {
                "Repository Push"
            } else {
                "NO Repository Push"
            }
        );
        if let Some(d) = &hook.deliveries {
            if let Some(c) = &d.counts {
                println!(
                    "    deliveries: {} succeeded, {} failed, {} errors",
                    c.successes, c.failures, c.errors
                );
            }
            let show = |label: &str, i: Option<&hubsync_bitbucket::Invocation>| match i {
                Some(i) => println!(
                    "    {label}: {}{}",
                    i.at.map(when).unwrap_or_else(|| "(time unknown)".into()),
                    i.description.as_deref().map(|d| format!(" ({d})")).unwrap_or_default()
                ),
                None => println!("    {label}: none"),
            };
            show("last success", d.last_success.as_ref());
            show("last failure", d.last_failure.as_ref().or(d.last_error.as_ref()));
            if d.latest.is_none() {
                println!("    no delivery yet (push to the default branch, or \"Test connection\")");
            }
        }
    }
}

/// `webhooks create PROJECT/SLUG [--project]`.
async fn run_create(
    bitbucket: &Bitbucket,
    hub_url: &str,
    repo: &RepoRef,
    project: bool,
    title: &str,
) -> anyhow::Result<()> {
    let scope = if project {
        WebhookScope::Project(repo.project().to_owned())
    } else {
        WebhookScope::Repository(repo.clone())
    };
    let refused = |e: AdminError| explain(e, Some(repo)).context(format!("the webhook of {scope} was not created"));
    let existing = bitbucket.client.webhooks(&scope).await.map_err(refused)?;
    let found = existing
        .iter()
        .find(|h| same_url(&h.url, hub_url))
        .or_else(|| existing.iter().find(|h| h.name == title));
    let mut spec = WebhookSpec {
        name: title.to_owned(),
        url: hub_url.to_owned(),
        active: true,
        events: vec![PUSH_EVENT.to_owned()],
        secret: bitbucket.secret.webhook_secret().clone(),
    };
    let Some(hook) = found else {
        let created = bitbucket.client.create_webhook(&scope, &spec).await.map_err(refused)?;
        println!(
            "created webhook {} \"{}\" on {scope}: {} for Repository Push, active, signed with the hub's webhook secret",
            created.id, created.name, created.url
        );
        return Ok(());
    };
    let mut wrong = Vec::new();
    if !same_url(&hook.url, hub_url) {
        wrong.push(format!("it pointed at {}", hook.url));
    }
    if !hook.active {
        wrong.push("it was inactive".to_owned());
    }
    if !hook.events.iter().any(|e| e == PUSH_EVENT) {
        wrong.push("it did not subscribe to Repository Push".to_owned());
    }
    match secret_verdict(&hook.secret, &bitbucket.secret) {
        SecretVerdict::Current => {}
        SecretVerdict::Missing => wrong.push("it had no secret".to_owned()),
        SecretVerdict::Other | SecretVerdict::Previous => {
            wrong.push("its secret was not the hub's current one".to_owned())
        }
        SecretVerdict::Masked => {
            // The secret cannot be compared: a latest delivery the hub refused (401) says it
            // is wrong.
            let history = bitbucket
                .client
                .webhook_history(&hook.scope, hook.id)
                .await
                .map_err(refused)?;
            if history.latest.as_ref().is_some_and(|l| l.status_code == Some(401)) {
                wrong.push("its latest delivery was refused by the hub (401: a wrong secret)".to_owned());
            }
        }
    }
    if wrong.is_empty() {
        println!(
            "kept webhook {} \"{}\" on {scope}: it already points at {hub_url}, is active and sends Repository Push",
            hook.id, hook.name
        );
        return Ok(());
    }
    for event in &hook.events {
        if !spec.events.contains(event) {
            spec.events.push(event.clone());
        }
    }
    if hook.name != title && same_url(&hook.url, hub_url) {
        spec.name = hook.name.clone();
    }
    let repaired = bitbucket
        .client
        .update_webhook(&scope, hook.id, &spec)
        .await
        .map_err(refused)?;
    println!(
        "repaired webhook {} \"{}\" on {scope}: {}",
        repaired.id,
        repaired.name,
        wrong.join("; ")
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_the_same_whatever_the_case_of_their_host_or_a_trailing_slash() {
        assert!(same_url(
            "https://Hub.Example.com/gateway/public/sync/",
            "https://hub.example.com/gateway/public/sync"
        ));
        assert!(!same_url(
            "https://hub.example.com/Gateway/public/sync",
            "https://hub.example.com/gateway/public/sync"
        ));
        assert!(!same_url(
            "https://old.example.com/gateway/public/sync",
            "https://hub.example.com/gateway/public/sync"
        ));
    }
}
