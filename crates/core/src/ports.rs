//! The ports: small capability traits owned by the domain. AWS (SQS, DynamoDB, Secrets Manager),
//! local (SQLite) and Bitbucket Data Center adapters implement them in their own crates; the domain
//! never names a technology.
//!
//! Methods return `impl Future + Send` so generic handlers can be spawned on a multi-threaded
//! runtime; implementations simply write `async fn`.

use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use crate::fetch_budget::Admission;
use crate::ids::{CommitId, RepoRef};
use crate::model::ModelRecord;
use crate::push::PushMessage;
use crate::secrets::HubSecret;

/// The delivery log, defined beside its entries in [`crate::deliveries`].
pub use crate::deliveries::DeliveryLog;

// ---------------------------------------------------------------------------------------------
// Queue
// ---------------------------------------------------------------------------------------------

/// What happened to a push handed to the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    /// The push is queued.
    Queued,
    /// The queue already holds a push with this delivery id; nothing new was queued.
    Duplicate,
}

#[derive(Debug, thiserror::Error)]
#[error("the push queue is unavailable: {message}")]
pub struct QueueError {
    pub message: String,
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

/// Where the webhook puts accepted pushes: FIFO per repository
/// ([`RepoRef::message_group`]), deduplicated on the delivery id.
pub trait PushQueue: Send + Sync {
    fn enqueue(&self, push: &PushMessage) -> impl Future<Output = Result<Enqueued, QueueError>> + Send;
}

// ---------------------------------------------------------------------------------------------
// Secrets
// ---------------------------------------------------------------------------------------------

// The secret port is defined in `secrets`, beside the `HubSecret` it hands out and the sources
// that wrap it, so `secrets` needs nothing from here.
pub use crate::secrets::{SecretError, SecretSource};

// ---------------------------------------------------------------------------------------------
// Git host
// ---------------------------------------------------------------------------------------------

/// A repository's default branch as the Git host reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefaultBranch {
    /// Full ref name, e.g. `refs/heads/main`.
    pub ref_id: String,
    /// The commit the branch points at now.
    pub head: CommitId,
}

/// How one file changed between two commits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileChangeKind {
    Add,
    Modify,
    Delete,
    /// Renamed from `from`; the old path no longer exists.
    Move {
        from: String,
    },
    /// Copied from `from`; the old path still exists.
    Copy {
        from: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileChange {
    /// Path from the repository root, `/`-separated, no leading slash.
    pub path: String,
    pub kind: FileChangeKind,
}

/// The files changed between two commits.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChangeSet {
    pub changes: Vec<FileChange>,
    /// The host stopped listing before the end (Bitbucket's `page.max.changes` cap): the caller
    /// must not trust the list to be complete.
    pub truncated: bool,
}

/// A file as the Git host gave it, when it exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawFile {
    /// The file's bytes, at most the limit asked for.
    Content(bytes::Bytes),
    /// The file is larger than the limit asked for; it was not read past it.
    TooLarge(Oversize),
}

/// How much larger than the limit a file is. Displays as the reason recorded for it:
/// "too large (N bytes)".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Oversize {
    /// Its size was announced (`Content-Length`) before any of it was read.
    Announced(u64),
    /// It was read up to the limit and went on (no size announced): "more than" the limit.
    Exceeded { limit: u64 },
}

impl std::fmt::Display for Oversize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Announced(bytes) => write!(f, "too large ({bytes} bytes)"),
            Self::Exceeded { limit } => write!(f, "too large (more than {limit} bytes)"),
        }
    }
}

/// Why a call to the Git host failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GitHostErrorKind {
    /// 401: the access token is wrong, expired or revoked.
    Unauthorized,
    /// 403: the token lacks a scope (Repositories: Read).
    Forbidden,
    /// 404: no such repository, commit or file (or the token cannot see it).
    NotFound,
    /// 429 after every retry.
    RateLimited,
    /// 5xx after every retry.
    Server,
    /// Connection refused, timed out, TLS failure...
    Transport,
    /// The host answered something this client cannot read.
    Protocol,
}

#[derive(Debug, thiserror::Error)]
#[error("{operation} for {repo} failed: {message}")]
pub struct GitHostError {
    pub kind: GitHostErrorKind,
    pub repo: RepoRef,
    /// What was being asked, e.g. "GET default branch".
    pub operation: String,
    /// HTTP status when there was one.
    pub status: Option<u16>,
    /// A human-readable reason, never containing the token.
    pub message: String,
}

impl GitHostError {
    pub fn is_retryable(&self) -> bool {
        matches!(
            self.kind,
            GitHostErrorKind::RateLimited | GitHostErrorKind::Server | GitHostErrorKind::Transport
        )
    }
}

/// How a commit stands to a repository's head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ancestry {
    /// The commit is the head or one of its ancestors.
    Ancestor,
    /// The commit exists but is not in the head's history.
    NotAncestor,
    /// The repository has no such commit.
    Unknown,
}

/// The Git hosting server, read-only: what the sync needs to know about a repository.
pub trait GitHost: Send + Sync {
    /// The default branch and its head; `None` for an empty repository.
    fn default_branch(
        &self,
        repo: &RepoRef,
    ) -> impl Future<Output = Result<Option<DefaultBranch>, GitHostError>> + Send;

    /// Every file changed from `since` to `until` (all pages).
    fn changes(
        &self,
        repo: &RepoRef,
        since: &CommitId,
        until: &CommitId,
    ) -> impl Future<Output = Result<ChangeSet, GitHostError>> + Send;

    /// Every file path at a commit (all pages).
    fn list_files(
        &self,
        repo: &RepoRef,
        at: &CommitId,
    ) -> impl Future<Output = Result<Vec<String>, GitHostError>> + Send;

    /// The file paths at a commit from the `start`-th of [`GitHost::list_files`]'s answer on
    /// (all pages from there): the listing at a commit never changes, so the next slice of a full
    /// sync lists only what the last one left. By default, the whole listing less its first
    /// `start` paths.
    fn list_files_from(
        &self,
        repo: &RepoRef,
        at: &CommitId,
        start: u64,
    ) -> impl Future<Output = Result<Vec<String>, GitHostError>> + Send {
        async move {
            let mut files = self.list_files(repo, at).await?;
            let skipped = usize::try_from(start).unwrap_or(usize::MAX).min(files.len());
            files.drain(..skipped);
            Ok(files)
        }
    }

    /// The raw bytes of a file at a commit, or [`RawFile::TooLarge`] when it holds more than
    /// `limit` bytes (then read no further than `limit`, nothing at all when its size is known
    /// first); `None` when the file does not exist there.
    ///
    /// The bytes are charged to `admission` (the sync's fetch budget) before they are read: a
    /// size known before the body ([`Admission::announce`], not for a file over `limit`), or as
    /// the body comes in when it is not ([`Admission::reading`] before each chunk is kept). Either
    /// may wait for other files to give their bytes back.
    fn raw_file(
        &self,
        repo: &RepoRef,
        path: &str,
        at: &CommitId,
        limit: u64,
        admission: &mut Admission,
    ) -> impl Future<Output = Result<Option<RawFile>, GitHostError>> + Send;

    /// Whether `commit` is `head` or one of its ancestors (`hubsync sync --from` applies the
    /// changes since an ancestor only).
    fn ancestry(
        &self,
        repo: &RepoRef,
        commit: &CommitId,
        head: &CommitId,
    ) -> impl Future<Output = Result<Ancestry, GitHostError>> + Send;
}

/// A shared host is a host (tests and the local server hand one host to several workers).
impl<T: GitHost> GitHost for std::sync::Arc<T> {
    fn default_branch(
        &self,
        repo: &RepoRef,
    ) -> impl Future<Output = Result<Option<DefaultBranch>, GitHostError>> + Send {
        T::default_branch(self, repo)
    }

    fn changes(
        &self,
        repo: &RepoRef,
        since: &CommitId,
        until: &CommitId,
    ) -> impl Future<Output = Result<ChangeSet, GitHostError>> + Send {
        T::changes(self, repo, since, until)
    }

    fn list_files(
        &self,
        repo: &RepoRef,
        at: &CommitId,
    ) -> impl Future<Output = Result<Vec<String>, GitHostError>> + Send {
        T::list_files(self, repo, at)
    }

    fn list_files_from(
        &self,
        repo: &RepoRef,
        at: &CommitId,
        start: u64,
    ) -> impl Future<Output = Result<Vec<String>, GitHostError>> + Send {
        T::list_files_from(self, repo, at, start)
    }

    fn raw_file(
        &self,
        repo: &RepoRef,
        path: &str,
        at: &CommitId,
        limit: u64,
        admission: &mut Admission,
    ) -> impl Future<Output = Result<Option<RawFile>, GitHostError>> + Send {
        T::raw_file(self, repo, path, at, limit, admission)
    }

    fn ancestry(
        &self,
        repo: &RepoRef,
        commit: &CommitId,
        head: &CommitId,
    ) -> impl Future<Output = Result<Ancestry, GitHostError>> + Send {
        T::ancestry(self, repo, commit, head)
    }
}

/// The Git host client could not be set up from the hub secret (a base URL or a token it cannot
/// use). A person must fix the secret: never retried. The message names fields, never values.
#[derive(Debug, thiserror::Error)]
#[error("the Git host client cannot be configured: {message}")]
pub struct ConnectError {
    pub message: String,
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl ConnectError {
    /// The error of the adapter's client constructor, kept as the source.
    pub fn new(cause: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self {
            message: cause.to_string(),
            source: Some(Box::new(cause)),
        }
    }
}

/// Builds a [`GitHost`] client from the current hub secret (base URL and token), so a rotated
/// token is picked up without a restart.
pub trait GitHostConnector: Send + Sync {
    type Host: GitHost;
    fn connect(&self, secret: &HubSecret) -> Result<Self::Host, ConnectError>;
}

// ---------------------------------------------------------------------------------------------
// Store: the registry of repositories and the replicated models
// ---------------------------------------------------------------------------------------------

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another writer moved the cursor first; the message should be processed again.
    #[error("the sync cursor of {0} was moved by another writer")]
    CursorMoved(RepoRef),
    #[error("{0} is not registered")]
    NotRegistered(RepoRef),
    /// A stored item could not be read back (corrupt, or written by an incompatible version).
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// Another sync holds the repository's lease: this one backs off and is tried again later.
    #[error("sync of {repo} is held by {owner} until {}", .until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))]
    LeaseHeld {
        repo: RepoRef,
        owner: LeaseOwner,
        until: DateTime<Utc>,
    },
    /// The writer no longer holds the repository's lease (it expired and another sync took it, or
    /// the repository was unregistered): the write was refused, nothing was changed.
    #[error("the sync lease of {0} was lost; the write was refused")]
    LeaseLost(RepoRef),
    /// The store refuses this write for itself (DynamoDB's `ValidationException`: an item or a key
    /// over its limits...): the same write can never succeed, but others can. The sync records
    /// the file as a malformed model with this reason instead.
    #[error("the store refused the write: {message}")]
    Refused {
        message: String,
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    #[error("the store failed: {message}")]
    Backend {
        message: String,
        retryable: bool,
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
}

impl StoreError {
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::CursorMoved(_) | Self::LeaseHeld { .. } | Self::LeaseLost(_) => true,
            Self::Backend { retryable, .. } => *retryable,
            Self::NotRegistered(_) | Self::Corrupt(_) | Self::Refused { .. } => false,
        }
    }
}

/// Counts from one sync run, kept on the repository record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncStats {
    /// Models written (new or changed).
    pub written: u64,
    /// Models removed (deleted, moved away, ignored, or no longer a model).
    pub removed: u64,
    /// Files recorded as malformed models.
    pub malformed: u64,
    /// JSON files that are not Hackolade models.
    pub skipped: u64,
    /// Models excluded by `.hubignore`.
    pub ignored: u64,
}

impl std::fmt::Display for SyncStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} written, {} removed, {} malformed, {} other JSON skipped, {} ignored",
            self.written, self.removed, self.malformed, self.skipped, self.ignored
        )
    }
}

/// The last commit of the default branch fully replicated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncCursor {
    pub commit: CommitId,
    pub synced_at: DateTime<Utc>,
    pub stats: SyncStats,
    /// What `.hubignore` said at `commit` (its text, empty when there is none), so that a sync
    /// whose diff does not touch it need not fetch it again. `None`: not known (kept by an earlier
    /// version, or too large to keep: see [`MAX_KEPT_HUBIGNORE_BYTES`]); it is then fetched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hubignore: Option<String>,
}

/// The largest `.hubignore` kept with the cursor (its text lives in the registry item, which
/// DynamoDB caps at 400 KB); a larger one is fetched again by every sync.
pub const MAX_KEPT_HUBIGNORE_BYTES: usize = 64 * 1024;

/// How far a sync cut into slices got (it could not finish before its deadline, see
/// [`crate::deadline`]): every candidate path up to `after`, in byte order, matches `head`; the
/// paths after it still match the cursor, or some earlier slice's progress. The cursor itself
/// moves to `head` only once the last slice is done.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncResume {
    /// The head this sync replicates.
    pub head: CommitId,
    /// The last path done.
    pub after: String,
    /// A reconciliation of the whole tree (otherwise the diff from the cursor to `head`).
    pub full: bool,
    /// What `.hubignore` said at `head` (as [`SyncCursor::hubignore`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hubignore: Option<String>,
    /// Counts of the slices so far.
    pub stats: SyncStats,
    /// Slices done so far.
    pub slices: u32,
    /// Which sync this is, the same for all its slices (empty in a point recorded before syncs
    /// were told apart). Its continuations are deduplicated on it: another sync of the same head
    /// that stops at the same path (a requested full sync of an unchanged head) queues its own,
    /// rather than one the queue drops as a repeat of the earlier sync's.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub run: String,
    /// `hubsync sync --from`: the commit whose changes to `head` this (incremental) sync applies
    /// as well as the cursor's, in every slice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<CommitId>,
    /// A full sync: how many paths of `head`'s listing ([`GitHost::list_files`]) come up to
    /// `after`, so that the next slice lists the rest only ([`GitHost::list_files_from`]).
    /// Recorded only when that listing is in path order; otherwise the next slice lists it all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listed: Option<u64>,
    /// A `--from` applied once a sliced sync pending before it was done, in the same run: the
    /// paths of its plan after `after` that the sliced sync already did at `head` (its later
    /// slices do not fetch them again). Left empty beyond [`MAX_RESUME_SKIP_BYTES`]: they are
    /// then fetched again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skip: Vec<String>,
    /// `hubsync sync --from` asked for while this sync was pending, to be applied once it is
    /// done (this sync's own `since` is another). Another asked for meanwhile is merged with it:
    /// the earlier of the two is kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub then_since: Option<CommitId>,
}

/// The most path bytes a resume point keeps in [`SyncResume::skip`], so that it stays a small item.
pub const MAX_RESUME_SKIP_BYTES: usize = 32 * 1024;

impl SyncResume {
    /// A fresh [`SyncResume::run`] for a sync recording its first resume point.
    pub fn new_run() -> String {
        uuid::Uuid::new_v4().simple().to_string()[..16].to_owned()
    }
}

/// The last failed sync of a repository; cleared by the next success.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LastError {
    pub message: String,
    pub at: DateTime<Utc>,
}

/// A registered repository and its sync state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RepoRecord {
    pub repo: RepoRef,
    pub registered_at: DateTime<Utc>,
    pub cursor: Option<SyncCursor>,
    pub last_error: Option<LastError>,
    /// A sync cut into slices that is not done yet; cleared when the cursor moves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume: Option<SyncResume>,
}

/// Who holds a sync lease: unique to one sync run (process, invocation and attempt), and readable
/// by a person wondering who is syncing ("hubsync pid 4242#1f0c9a6e2b7d").
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LeaseOwner(String);

impl LeaseOwner {
    /// A new owner id: `holder` (who runs the sync) and a random suffix.
    pub fn generate(holder: &str) -> Self {
        let id = uuid::Uuid::new_v4().simple().to_string();
        Self(format!("{holder}#{}", &id[..12]))
    }

    /// An owner id as an adapter stored it.
    pub fn from_stored(owner: impl Into<String>) -> Self {
        Self(owner.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for LeaseOwner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The right to write one repository's models and cursor, held by one sync at a time until
/// `expires_at` (renewed while the sync runs). Every model write and delete and the cursor move
/// are conditional on still holding it (fencing), so a sync that lost it cannot write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncLease {
    pub repo: RepoRef,
    pub owner: LeaseOwner,
    pub expires_at: DateTime<Utc>,
    /// The previous sync of this repository did not finish: its lease expired without being
    /// released, or it failed after writing. The models may then mix two heads, so the next sync
    /// reconciles the whole tree instead of trusting the cursor.
    pub previous_unfinished: bool,
}

/// The registry of replicated repositories, their cursors and their sync leases.
pub trait RepoRegistry: Send + Sync {
    /// Registers a repository; `false` if it already was (its state is kept).
    fn register(&self, repo: &RepoRef) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Unregisters a repository and removes its models; `false` if it was not registered.
    fn unregister(&self, repo: &RepoRef) -> impl Future<Output = Result<bool, StoreError>> + Send;

    fn repo(&self, repo: &RepoRef) -> impl Future<Output = Result<Option<RepoRecord>, StoreError>> + Send;

    fn repos(&self) -> impl Future<Output = Result<Vec<RepoRecord>, StoreError>> + Send;

    /// Takes the sync lease of `repo` for `owner` for `ttl`: free, released, or expired (a
    /// crashed or stalled holder). Held by another owner: [`StoreError::LeaseHeld`].
    fn acquire_lease(
        &self,
        repo: &RepoRef,
        owner: &LeaseOwner,
        ttl: Duration,
    ) -> impl Future<Output = Result<SyncLease, StoreError>> + Send;

    /// Extends a held lease to `ttl` from now; [`StoreError::LeaseLost`] if it is no longer held.
    fn renew_lease(
        &self,
        lease: &SyncLease,
        ttl: Duration,
    ) -> impl Future<Output = Result<SyncLease, StoreError>> + Send;

    /// Gives the lease up, if still held (a lost lease is left to its new owner). `finished`: the
    /// models match the cursor (the sync succeeded, or failed before writing anything over an
    /// unfinished predecessor); otherwise the next holder sees `previous_unfinished`.
    fn release_lease(&self, lease: &SyncLease, finished: bool) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Moves the cursor to `cursor` and clears the last error and the resume point, only if
    /// `lease` is still held ([`StoreError::LeaseLost`]) and the stored cursor commit is still
    /// `expected` (`None`: no cursor yet; otherwise [`StoreError::CursorMoved`]).
    fn advance_cursor(
        &self,
        lease: &SyncLease,
        expected: Option<&CommitId>,
        cursor: &SyncCursor,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Records how far a sync cut into slices got, leaving the cursor where it is, under the same
    /// conditions as [`RepoRegistry::advance_cursor`] (the lease held, the cursor still
    /// `expected`).
    fn record_resume(
        &self,
        lease: &SyncLease,
        expected: Option<&CommitId>,
        resume: &SyncResume,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Records why the last sync failed; the cursor is left as it was.
    fn record_error(&self, repo: &RepoRef, error: &LastError) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// A stored model without its content, for listings. Defined beside [`ModelRecord`], which makes
/// it ([`ModelRecord::summary`]), so `model` needs nothing from the ports.
pub use crate::model::ModelSummary;

/// `work` run on tokio's blocking pool. A panic goes on unwinding, as if it had run here; a
/// runtime shutting down (the work never ran) is a retryable store failure.
pub async fn off_task<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T, StoreError> {
    match tokio::task::spawn_blocking(work).await {
        Ok(done) => Ok(done),
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => Err(StoreError::Backend {
            message: "the runtime is shutting down".into(),
            retryable: true,
            source: Some(Box::new(e)),
        }),
    }
}

/// The replicated models, one per (repository, path). Writes are made under the repository's
/// [`SyncLease`] and refused with [`StoreError::LeaseLost`] once it is no longer held.
pub trait ModelStore: Send + Sync {
    /// Writes (or replaces) the model at `record.path` of `lease.repo`. A reader sees the old
    /// version or the new one, never a mix.
    fn put_model(&self, lease: &SyncLease, record: &ModelRecord)
    -> impl Future<Output = Result<(), StoreError>> + Send;

    /// [`ModelStore::put_model`] of the record `build` makes, if it makes one: `build` is CPU
    /// work (recognising a fetched file, hashing it) that must not run on the task driving the
    /// fetches. It answers the record with what the caller keeps of it (`Ok(Ok(kept))` once the
    /// record is written), or why nothing is to be written (`Ok(Err(..))`, the store untouched).
    /// Store errors, a refusal included, are `put_model`'s.
    ///
    /// By default the record is built on tokio's blocking pool, then put. A store that does its
    /// own work on a thread (compressing, a blocking database call) builds it there, so that a
    /// file costs one hand-off between threads rather than two (issue 11).
    fn put_model_built<K, N, F>(
        &self,
        lease: &SyncLease,
        build: F,
    ) -> impl Future<Output = Result<Result<K, N>, StoreError>> + Send
    where
        F: FnOnce() -> Result<(ModelRecord, K), N> + Send + 'static,
        K: Send + 'static,
        N: Send + 'static,
    {
        async move {
            match off_task(build).await? {
                Ok((record, kept)) => self.put_model(lease, &record).await.map(|()| Ok(kept)),
                Err(nothing) => Ok(Err(nothing)),
            }
        }
    }

    /// Removes the model at `path` of `lease.repo`; `false` if there was none.
    fn delete_model(&self, lease: &SyncLease, path: &str) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Reclaims at most `budget` items that no model references any more (content stored apart
    /// from its model and left behind by a crash); how many were reclaimed. Stores that keep
    /// content with its model have nothing to sweep.
    fn sweep(&self, lease: &SyncLease, budget: usize) -> impl Future<Output = Result<u64, StoreError>> + Send {
        let _ = (lease, budget);
        async { Ok(0) }
    }

    /// Every model of a repository, sorted by path, without content.
    fn list_models(&self, repo: &RepoRef) -> impl Future<Output = Result<Vec<ModelSummary>, StoreError>> + Send;

    /// The models of a repository whose paths come after `after` (byte order), sorted by path,
    /// without content: what the next slice of a full sync still compares. By default,
    /// [`ModelStore::list_models`] less the paths up to `after`.
    fn list_models_after(
        &self,
        repo: &RepoRef,
        after: &str,
    ) -> impl Future<Output = Result<Vec<ModelSummary>, StoreError>> + Send {
        async move {
            let mut models = self.list_models(repo).await?;
            models.retain(|m| m.path.as_str() > after);
            Ok(models)
        }
    }

    /// One model with its content, exactly as it was in the repository.
    fn get_model(
        &self,
        repo: &RepoRef,
        path: &str,
    ) -> impl Future<Output = Result<Option<ModelRecord>, StoreError>> + Send;
}
