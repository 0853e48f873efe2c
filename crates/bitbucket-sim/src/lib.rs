//! A Bitbucket Data Center simulator for hubsync's tests and demo mode.
//!
//! Bitbucket Data Center cannot run in a test, so this crate serves the REST resources hubsync
//! reads, field for field as Atlassian's REST API document (9.2) and the real server describe
//! them, over repositories that are **real bare git repositories** written with git plumbing:
//!
//! | Resource (under `/rest/api/latest` and `/rest/api/1.0`) | Answer |
//! |---|---|
//! | `GET /projects/{p}/repos/{r}` | `RestRepository` |
//! | `GET .../default-branch`, `.../branches/default` | `RestBranch`; 404 `NoDefaultBranchException` while empty |
//! | `GET .../changes?until=&since=&start=&limit=` | page of `RestChange` (ADD, MODIFY, DELETE, MOVE, COPY), capped at `page.max.changes` |
//! | `GET .../raw/{path}?at=` | the file's bytes (or an announced size, see [`Simulator::announce_raw`]) |
//! | `GET .../files[/{dir}]?at=&start=&limit=` | page of file paths, recursive |
//! | `GET .../commits?until=&since=&path=&merges=&start=&limit=` | page of `RestCommit`, newest first; 404 `NoDefaultBranchException` without `until` while empty |
//! | `GET .../commits/{commitId}` | `RestCommit` |
//! | `GET /repos`, `GET /projects/{p}/repos` | page of `RestRepository` the token can read |
//! | `GET`/`POST .../webhooks`, `GET`/`PUT`/`DELETE .../webhooks/{id}` (repository and project) | page of `RestWebhook`, `RestWebhook` (secret masked) |
//! | `GET .../webhooks/{id}/statistics/summary`, `.../latest` | `RestInvocationHistory`, `RestDetailedInvocation` (204 when none) |
//!
//! Every request needs `Authorization: Bearer <token>` (401 otherwise); pages are at most
//! [`SimConfig::max_page_size`] long; faults can be injected ([`Simulator::fail_next`]); every
//! request is logged for assertions ([`Simulator::requests`]).
//!
//! Repositories change through [`Repo`] (commit, branch, tag, force-push), each change giving
//! the [`Push`] Bitbucket would report; [`Simulator::webhook`] turns a push into the signed
//! `repo:refs_changed` [`WebhookDelivery`] Bitbucket would POST, which
//! [`WebhookDelivery::send`] delivers; [`Simulator::deliver`] sends a push to the stored
//! webhooks ([`Simulator::add_webhook`], or the REST resources) and records each delivery, so
//! their statistics are real. More tokens, with fewer permissions, are added with
//! [`Simulator::add_token`]. [`models`] generates Hackolade model files of any size.
//!
//! ```no_run
//! # async fn demo() -> Result<(), hubsync_bitbucket_sim::SimError> {
//! use hubsync_bitbucket_sim::{FileOp, SimConfig, Simulator, models};
//!
//! let sim = Simulator::start(SimConfig { max_page_size: 3, ..SimConfig::with_token("t") }).await?;
//! let repo = sim.create_repo("PROJ", "models")?;
//! let first = repo.commit_files("main", models::sample_repository(), "Initial models")?;
//! let second = repo.commit("main", &[FileOp::rename("README.md", "docs/README.md")], "Move")?;
//! let delivery = sim.webhook(&repo, &second, Some("secret"))?;
//! # Ok(()) }
//! ```
//!
//! Requires the `git` CLI (2.28 or later) on `PATH`.

mod batch;
mod config;
mod error;
mod git;
mod hooks;
pub mod models;
mod push;
mod repo;
mod rest;
mod server;
mod webhook;

pub use config::{SimConfig, TokenScopes, User, UserType};
pub use error::SimError;
pub use git::ZERO_HASH;
pub use hooks::{HookScope, Invocation, Outcome, SimWebhook};
pub use push::{MinimalRef, Push, RefChange, RefChangeType, RefType};
pub use repo::{FileOp, Project, ProjectType, Repo};
pub use server::{ANNOUNCED_BODY_SENT_AT_MOST, Hold, RecordedRequest, RequestLine, Simulator};
pub use webhook::{DeliveryResponse, USER_AGENT, WebhookDelivery, signature};

/// Re-exported so callers of [`Simulator::fail_next`] need no `http` dependency.
pub use http::StatusCode;
