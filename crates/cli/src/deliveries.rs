//! `hubsync deliveries`: the hub's own delivery log (see `hubsync_core::deliveries`), newest first,
//! on either backend: what each webhook delivery was answered, and what its sync did (the commit
//! reached and the counts, or the error and the attempt). `hubsync deliveries show ID` prints one
//! entry in full. Written once, generic over the [`DeliveryLog`] port.

use anyhow::{Context, bail};
use chrono::{DateTime, SecondsFormat, Utc};
use clap::{Args, Subcommand};
use hubsync_core::deliveries::{
    DEFAULT_DELIVERY_RETENTION, DEFAULT_LIST_LIMIT, DeliveryEntry, DeliveryLog, DeliveryOutcome, DeliveryQuery,
    OutcomeStatus, parse_period,
};
use hubsync_core::ids::{DeliveryId, RepoRef};

use crate::config::{Backend, LocalConfig};

/// `hubsync deliveries`.
#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct DeliveriesArgs {
    #[command(subcommand)]
    pub command: Option<DeliveriesCommand>,
    #[command(flatten)]
    pub list: ListArgs,
}

#[derive(Subcommand, Debug)]
pub enum DeliveriesCommand {
    /// One delivery in full: its ref changes, verdict and the outcome of its sync.
    Show {
        /// The delivery id (Bitbucket's X-Request-Id, or the id a reconcile or full sync got).
        id: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// Which deliveries to list (newest first).
#[derive(Args, Debug, Default)]
pub struct ListArgs {
    /// Only this repository's (PROJECT/SLUG).
    pub repo: Option<RepoRef>,
    /// Only those whose sync failed (retrying or dead-lettered).
    #[arg(long)]
    pub failed: bool,
    /// Only those received in this period (30s, 15m, 2h, 7d) or since this time (RFC 3339).
    #[arg(long, value_name = "PERIOD|TIME", value_parser = parse_since)]
    pub since: Option<Since>,
    /// At most this many.
    #[arg(long, default_value_t = DEFAULT_LIST_LIMIT)]
    pub limit: usize,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `--since`: a period back from now, or a time.
#[derive(Debug, Clone, Copy)]
pub enum Since {
    Ago(std::time::Duration),
    At(DateTime<Utc>),
}

impl Since {
    fn at(self, now: DateTime<Utc>) -> DateTime<Utc> {
        match self {
            Self::Ago(period) => now - chrono::TimeDelta::from_std(period).unwrap_or(chrono::TimeDelta::MAX / 2),
            Self::At(at) => at,
        }
    }
}

fn parse_since(text: &str) -> Result<Since, String> {
    if let Ok(at) = DateTime::parse_from_rfc3339(text.trim()) {
        return Ok(Since::At(at.with_timezone(&Utc)));
    }
    parse_period(text)
        .map(Since::Ago)
        .map_err(|e| format!("{e}, or a time such as 2026-11-28T09:00:00Z"))
}

/// The retention the store reads with (`HUB_DELIVERY_RETENTION`, as the functions and `serve`).
fn retention() -> anyhow::Result<std::time::Duration> {
    let name = hubsync_aws::config::ENV_DELIVERY_RETENTION;
    match hubsync_aws::config::optional_env(name) {
        None => Ok(DEFAULT_DELIVERY_RETENTION),
        Some(text) => parse_period(&text).with_context(|| name.to_owned()),
    }
}

pub async fn deliveries(args: DeliveriesArgs) -> anyhow::Result<()> {
    let retention = retention()?;
    match Backend::from_env()? {
        Backend::Aws(cfg) => {
            let store = hubsync_aws::Adapters::load()
                .await
                .store(cfg.table)
                .with_delivery_retention(retention);
            run(&store, args).await
        }
        Backend::Local(cfg) => run(&open_local(&cfg, retention)?, args).await,
    }
}

fn open_local(cfg: &LocalConfig, retention: std::time::Duration) -> anyhow::Result<hubsync_sqlite::SqliteHub> {
    let options = hubsync_sqlite::HubOptions {
        delivery_retention: retention,
        ..hubsync_sqlite::HubOptions::default()
    };
    hubsync_sqlite::SqliteHub::open_with(&cfg.db_path, options)
        .with_context(|| format!("opening the local database {}", cfg.db_path.display()))
}

/// The command over any delivery log.
pub async fn run<L: DeliveryLog>(log: &L, args: DeliveriesArgs) -> anyhow::Result<()> {
    match args.command {
        Some(DeliveriesCommand::Show { id, json }) => {
            let id = DeliveryId::parse(&id)?;
            let Some(entry) = log.delivery(&id).await? else {
                bail!(
                    "no delivery {id} in the delivery log (entries are kept for the retention period, HUB_DELIVERY_RETENTION)"
                );
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&entry)?);
            } else {
                print!("{}", show(&entry));
            }
        }
        None => {
            let list = args.list;
            let query = DeliveryQuery {
                repo: list.repo,
                since: list.since.map(|s| s.at(Utc::now())),
                failed_only: list.failed,
                limit: list.limit,
            };
            let entries = log.deliveries(&query).await?;
            if list.json {
                println!("{}", serde_json::to_string_pretty(&entries)?);
            } else if entries.is_empty() {
                println!("no deliveries");
            } else {
                for entry in &entries {
                    println!("{}", line(entry));
                }
            }
        }
    }
    Ok(())
}

fn time(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// One line per delivery: time, id, repository, kind or verdict, and the outcome.
pub fn line(entry: &DeliveryEntry) -> String {
    let repo = entry.repo.as_ref().map_or_else(|| "-".to_owned(), ToString::to_string);
    let verdict = match entry.duplicates {
        0 => entry.verdict.as_str().to_owned(),
        n => format!("{} (+{n} dup)", entry.verdict.as_str()),
    };
    let outcome = match (&entry.outcome, &entry.reason) {
        (Some(outcome), _) => summary(outcome),
        (None, Some(reason)) => reason.clone(),
        (None, None) => "not synced yet".to_owned(),
    };
    format!(
        "{}  {:<40}  {:<24}  {:<9}  {:<18}  {}",
        time(&entry.received_at),
        entry.id,
        repo,
        entry.kind.as_str(),
        verdict,
        outcome
    )
}

/// What the sync did, in a few words.
fn summary(outcome: &DeliveryOutcome) -> String {
    let status = outcome.status.as_str();
    match outcome.status {
        OutcomeStatus::Synced => {
            let stats = outcome.stats.clone().unwrap_or_default();
            format!(
                "{status} to {}: {} written, {} removed, {} malformed ({} ms)",
                outcome.commit.as_ref().map_or("-", |c| c.short()),
                stats.written,
                stats.removed,
                stats.malformed,
                outcome.duration_ms
            )
        }
        OutcomeStatus::Retrying | OutcomeStatus::DeadLettered => format!(
            "{status} (attempt {}): {}",
            outcome.attempts,
            outcome.error.as_deref().unwrap_or(&outcome.detail)
        ),
        OutcomeStatus::Skipped | OutcomeStatus::Covered => format!("{status}: {}", outcome.detail),
    }
}

/// The whole entry, one field per line.
pub fn show(entry: &DeliveryEntry) -> String {
    let mut out = format!("delivery     {}\n", entry.id);
    out += &format!("received     {}\n", time(&entry.received_at));
    out += &format!("kind         {}\n", entry.kind.as_str());
    if !entry.event_key.is_empty() {
        out += &format!("event        {}\n", entry.event_key);
    }
    if let Some(repo) = &entry.repo {
        out += &format!("repository   {repo}\n");
    }
    for change in &entry.changes {
        out += &format!(
            "ref change   {} {:?} {} -> {}\n",
            change.ref_id,
            change.change_type,
            change.from_hash.short(),
            change.to_hash.short()
        );
    }
    out += &format!("verdict      {}\n", entry.verdict.as_str());
    if let Some(reason) = &entry.reason {
        out += &format!("reason       {reason}\n");
    }
    if entry.duplicates > 0 {
        out += &format!("duplicates   {}\n", entry.duplicates);
    }
    match &entry.outcome {
        None => out += "outcome      not synced yet\n",
        Some(o) => {
            out += &format!("outcome      {}\n", o.status.as_str());
            out += &format!("attempt      {}\n", o.attempts);
            out += &format!("at           {}\n", time(&o.at));
            out += &format!("duration     {} ms\n", o.duration_ms);
            if let Some(commit) = &o.commit {
                out += &format!("commit       {commit}\n");
            }
            if let Some(stats) = &o.stats {
                out += &format!("models       {stats}\n");
            }
            if !o.detail.is_empty() {
                out += &format!("detail       {}\n", o.detail);
            }
            if let Some(error) = &o.error {
                out += &format!("error        {error}\n");
            }
            if let Some(by) = &o.covered_by {
                out += &format!("covered by   {by}\n");
            }
        }
    }
    out
}
