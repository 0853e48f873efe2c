//! The ports: small capability traits owned by the domain. AWS (SQS, DynamoDB, Secrets Manager),
//! local (SQLite) and Bitbucket Data Center adapters implement them in their own crates; the domain
//! never names a technology.
//!
//! Methods return `impl Future + Send` so generic handlers can be spawned on a multi-threaded
//! runtime; implementations simply write `async fn`.

use std::future::Future;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::{CommitId, RepoRef};
use crate::model::ModelRecord;
use crate::push::PushMessage;
use crate::secrets::HubSecret;

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

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("the hub secret is not configured: {0}")]
    Missing(String),
    #[error("the hub secret is not valid: {0}")]
    Invalid(String),
    #[error("the hub secret could not be read: {message}")]
    Unavailable {
        message: String,
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
}

impl SecretError {
    /// A missing or invalid secret needs an administrator; an unavailable one may come back.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }
}

/// Where the Bitbucket base URL, access token and webhook secrets come from.
pub trait SecretSource: Send + Sync {
    fn hub_secret(&self) -> impl Future<Output = Result<HubSecret, SecretError>> + Send;
}

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

    /// The raw bytes of a file at a commit; `None` when the file does not exist there.
    fn raw_file(
        &self,
        repo: &RepoRef,
        path: &str,
        at: &CommitId,
    ) -> impl Future<Output = Result<Option<Vec<u8>>, GitHostError>> + Send;
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

    fn raw_file(
        &self,
        repo: &RepoRef,
        path: &str,
        at: &CommitId,
    ) -> impl Future<Output = Result<Option<Vec<u8>>, GitHostError>> + Send {
        T::raw_file(self, repo, path, at)
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
            Self::CursorMoved(_) => true,
            Self::Backend { retryable, .. } => *retryable,
            Self::NotRegistered(_) | Self::Corrupt(_) => false,
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
}

/// The registry of replicated repositories and their cursors.
pub trait RepoRegistry: Send + Sync {
    /// Registers a repository; `false` if it already was (its state is kept).
    fn register(&self, repo: &RepoRef) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Unregisters a repository and removes its models; `false` if it was not registered.
    fn unregister(&self, repo: &RepoRef) -> impl Future<Output = Result<bool, StoreError>> + Send;

    fn repo(&self, repo: &RepoRef) -> impl Future<Output = Result<Option<RepoRecord>, StoreError>> + Send;

    fn repos(&self) -> impl Future<Output = Result<Vec<RepoRecord>, StoreError>> + Send;

    /// Moves the cursor to `cursor` and clears the last error, only if the stored cursor commit is
    /// still `expected` (`None`: no cursor yet). Otherwise [`StoreError::CursorMoved`].
    fn advance_cursor(
        &self,
        repo: &RepoRef,
        expected: Option<&CommitId>,
        cursor: &SyncCursor,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Records why the last sync failed; the cursor is left as it was.
    fn record_error(&self, repo: &RepoRef, error: &LastError) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// A stored model without its content, for listings. Defined beside [`ModelRecord`], which makes
/// it ([`ModelRecord::summary`]), so `model` needs nothing from the ports.
pub use crate::model::ModelSummary;

/// The replicated models, one per (repository, path).
pub trait ModelStore: Send + Sync {
    /// Writes (or replaces) the model at `record.path`. A reader sees the old version or the new
    /// one, never a mix.
    fn put_model(&self, repo: &RepoRef, record: &ModelRecord) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Removes the model at `path`; `false` if there was none.
    fn delete_model(&self, repo: &RepoRef, path: &str) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Every model of a repository, sorted by path, without content.
    fn list_models(&self, repo: &RepoRef) -> impl Future<Output = Result<Vec<ModelSummary>, StoreError>> + Send;

    /// One model with its content, exactly as it was in the repository.
    fn get_model(
        &self,
        repo: &RepoRef,
        path: &str,
    ) -> impl Future<Output = Result<Option<ModelRecord>, StoreError>> + Send;
}
