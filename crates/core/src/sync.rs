//! The sync rule: for a registered repository, make the store hold exactly the models of the
//! default branch's head.
//!
//! The diff is always taken from the repository's own cursor (the last head fully replicated),
//! never from the push's `fromHash`: Bitbucket Data Center does not retry failed deliveries, so
//! events get lost, and the next push must heal them. Without a cursor, when the host's diff was
//! capped, when `.hubignore` changed, or when the cursor commit is gone (history rewritten and
//! collected), the whole tree is reconciled instead. Every step is idempotent: running the same
//! push again finds the cursor at the head and does nothing.
//!
//! One sync writes a repository at a time: it holds the repository's [`SyncLease`], renewed by a
//! heartbeat while it runs and released at the end, and every write it makes is refused once the
//! lease is lost. A second sync of the same repository backs off with [`StoreError::LeaseHeld`]
//! (retryable). A sync that inherits an unfinished predecessor's lease, or finds the cursor moved
//! under it, reconciles the whole tree rather than trust the cursor.
//!
//! `.hubignore` is kept with the cursor ([`SyncCursor::hubignore`]) and fetched only when the diff
//! touches it, or when the whole tree is reconciled: a push of k models costs the Git host the
//! head, the diff and k files.
//!
//! Given a [`Deadline`] ([`SyncEngine::handle_push_within`]), a sync that is still running when
//! it is near stops at a safe point: no new file is started, the files in flight are written, and
//! the resume point ([`SyncResume`]: the head, the last path done in path order) is recorded
//! beside the cursor, which does not move. The lease is released and the continuation queued; the
//! next sync of the repository resumes from there, and moves the cursor when it is done.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use chrono::Utc;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tracing::{debug, info, warn};

use crate::deadline::Deadline;
pub use crate::fetch_budget::{Admission, DEFAULT_FETCH_CONCURRENCY, DEFAULT_FILE_ALLOWANCE, FetchBudget};
use crate::hubignore::{HUBIGNORE_PATH, HubIgnore};
use crate::ids::{CommitId, RepoRef};
use crate::model::{ModelRecord, ModelStatus, examine, is_candidate_path};
use crate::ports::{
    Ancestry, ConnectError, DefaultBranch, FileChangeKind, GitHost, GitHostConnector, GitHostError, GitHostErrorKind,
    LastError, LeaseOwner, MAX_KEPT_HUBIGNORE_BYTES, MAX_RESUME_SKIP_BYTES, ModelStore, PushQueue, QueueError, RawFile,
    RepoRecord, RepoRegistry, SecretError, SecretSource, StoreError, SyncCursor, SyncLease, SyncResume, SyncStats,
};
use crate::push::{MessageKind, PushMessage, SyncRequest};

/// Why a sync failed. Each variant knows whether trying again can help.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    GitHost(#[from] GitHostError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Secret(#[from] SecretError),
    /// The Git host client could not be set up from the secret (bad base URL...).
    #[error(transparent)]
    HostConfig(#[from] ConnectError),
    /// A slice's continuation could not be queued (its resume point is recorded).
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// `hubsync sync --from` named a commit the repository does not have.
    #[error("{repo} has no commit {commit}: --from takes a full commit id of its default branch")]
    UnknownCommit { repo: RepoRef, commit: CommitId },
    /// `hubsync sync --from` named a commit that is not in the default branch's history.
    #[error(
        "commit {commit} is not an ancestor of {repo}'s default branch head {head}: --from takes a commit of its history"
    )]
    NotAnAncestor {
        repo: RepoRef,
        commit: CommitId,
        head: CommitId,
    },
    /// Stopped at once by its deadline's token ([`Deadline::abandoned_by`]); the lease released.
    #[error("the sync was stopped before it finished")]
    Abandoned,
}

impl SyncError {
    /// Transient failures (throttling, 5xx, network, a concurrent writer) are worth a retry; the
    /// others need a person (wrong token, missing scope, repository gone).
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::GitHost(e) => e.is_retryable(),
            Self::Store(e) => e.is_retryable(),
            Self::Secret(e) => e.is_retryable(),
            Self::HostConfig(_) | Self::UnknownCommit { .. } | Self::NotAnAncestor { .. } => false,
            Self::Queue(_) | Self::Abandoned => true,
        }
    }
}

/// Why the whole tree was reconciled rather than a diff applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FullSyncReason {
    /// The repository had no cursor yet.
    FirstSync,
    /// Asked for (`hubsync sync`).
    Requested,
    /// The diff reached the host's cap (`page.max.changes`), so it may be incomplete.
    TooManyChanges,
    /// `.hubignore` changed: models may have become ignored or unignored.
    HubignoreChanged,
    /// The cursor commit no longer exists on the host (force-push and garbage collection).
    CursorUnreachable,
    /// The previous sync did not finish (its lease expired, or it failed after writing): the
    /// models may mix two heads.
    PreviousUnfinished,
    /// Another writer moved the cursor while this sync ran.
    CursorMoved,
    /// The next slice of a full sync cut into slices ([`SyncOutcome::Sliced`]).
    Continued,
    /// The head a sync cut into slices was replicating no longer exists on the host (force-push
    /// and garbage collection): its resume point gives way to the branch head.
    SlicedHeadUnreachable,
    /// `hubsync sync --from` asked for while another waited with a sync in slices, and neither
    /// commit is in the other's history (rewritten, or one of them gone): the whole tree holds
    /// the changes of both.
    FromCommitsApart,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncMode {
    Incremental,
    Full(FullSyncReason),
}

/// What a sync did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncOutcome {
    /// The repository is not registered: nothing is replicated.
    NotRegistered,
    /// The push moved other refs (branches, tags) only.
    NotDefaultBranch { default_branch: String },
    /// The repository has no commits, so no default branch.
    EmptyRepository,
    /// The store already matches the head.
    UpToDate { head: CommitId },
    Synced {
        from: Option<CommitId>,
        to: CommitId,
        mode: SyncMode,
        stats: SyncStats,
    },
    /// The deadline came first: every path up to `after` matches `to`, the rest is left to the
    /// continuation; the cursor has not moved yet. `stats` counts every slice so far; `run` is
    /// the sync's [`SyncResume::run`].
    Sliced {
        from: Option<CommitId>,
        to: CommitId,
        after: String,
        stats: SyncStats,
        run: String,
    },
}

/// Observes a sync's progress (the CLI draws a progress bar with it).
pub trait SyncProgress: Send + Sync {
    /// `files` files will be fetched.
    fn planned(&self, _files: usize) {}
    /// One file was fetched and applied.
    fn file_done(&self, _path: &str) {}
}

/// No progress reporting.
pub struct NoProgress;
impl SyncProgress for NoProgress {}

/// The default [`SyncOptions::max_model_bytes`]: 32 MiB, the largest model a Hackolade Model Hub
/// accepts.
pub const DEFAULT_MAX_MODEL_BYTES: u64 = 32 * 1024 * 1024;

/// How a sync fetches and leases. Clones share one [`FetchBudget`]: a worker hands a clone to
/// every sync it runs, so all the repositories of a batch together hold at most
/// `fetch.concurrency()` files, and `fetch.byte_capacity()` bytes of them, in memory at once.
/// Build it with [`SyncOptions::with_max_model_bytes`] so that the budget's largest file is the
/// size cap (a budget smaller than the cap charges a larger file its largest size).
#[derive(Debug, Clone)]
pub struct SyncOptions {
    /// The fetch budget: how many files, and how many bytes of them, are fetched and applied at
    /// once, by this sync and every other sync given a clone of these options.
    pub fetch: FetchBudget,
    /// The largest file read as a model; a larger one is recorded as a malformed model "too
    /// large (N bytes)" without being read.
    pub max_model_bytes: u64,
    /// How long a sync lease lasts without renewal; the heartbeat renews it every third of that.
    /// A crashed sync blocks its repository for at most this long.
    pub lease_ttl: Duration,
    /// Who runs the syncs, as shown in "held by ..." (each sync adds a unique suffix).
    pub holder: String,
}

/// How long a sync lease lasts without renewal.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(120);
/// Items a sync's sweep reclaims at most.
pub const SWEEP_BUDGET: usize = 100;

impl Default for SyncOptions {
    fn default() -> Self {
        Self {
            fetch: FetchBudget::new(DEFAULT_FETCH_CONCURRENCY),
            max_model_bytes: DEFAULT_MAX_MODEL_BYTES,
            lease_ttl: DEFAULT_LEASE_TTL,
            holder: default_holder(),
        }
    }
}

impl SyncOptions {
    /// The default options with another size cap, and a fetch budget whose largest file is that
    /// cap.
    pub fn with_max_model_bytes(max_model_bytes: u64) -> Self {
        Self {
            fetch: FetchBudget::with_bytes(DEFAULT_FETCH_CONCURRENCY, max_model_bytes, DEFAULT_FILE_ALLOWANCE),
            max_model_bytes,
            ..Self::default()
        }
    }
}

/// `<program> pid <pid>`: enough for a person to find the process holding a lease.
fn default_holder() -> String {
    let program = std::env::current_exe()
        .ok()
        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "hubsync".into());
    format!("{program} pid {}", std::process::id())
}

/// The sync, over a Git host and a store.
pub struct SyncEngine<'a, G, S> {
    host: &'a G,
    store: &'a S,
    options: SyncOptions,
}

enum Plan {
    Full(FullSyncReason),
    Incremental(Vec<crate::ports::FileChange>),
}

/// What a sync does at one path. A sync's work is these, in path order, so that a slice that stops
/// before its deadline leaves a prefix of it done and can say where the next slice starts.
enum Op {
    /// Fetch the file at the head and write, replace or remove its model.
    Fetch(Known),
    /// Remove the model (deleted, moved away, or not at the head any more).
    Remove,
    /// Excluded by `.hubignore`: counted, and its model removed when `remove` (it may be stored).
    Ignore { remove: bool },
}

/// One sync's hold on its repository: the lease its writes are fenced with, and whether it wrote
/// anything yet (a failure after a write leaves the models unfinished).
struct Leased<'l> {
    lease: &'l SyncLease,
    /// Shared with the work that builds a model off the task, which sets it just before writing.
    wrote: Arc<AtomicBool>,
}

impl<'a, G: GitHost, S: RepoRegistry + ModelStore> SyncEngine<'a, G, S> {
    pub fn new(host: &'a G, store: &'a S, options: SyncOptions) -> Self {
        Self { host, store, options }
    }

    /// Applies one queued push, or reconciles the whole tree for a queued full sync request
    /// ([`MessageKind::FullSync`]). On failure the error is also recorded on the repository, and
    /// the cursor is left where it was. Without a deadline, the sync runs to its end (a sync cut
    /// into slices earlier is finished).
    pub async fn handle_push(&self, push: &PushMessage) -> Result<SyncOutcome, SyncError> {
        self.handle(push, None).await
    }

    /// Like [`SyncEngine::handle_push`], but a sync still running when `deadline` is near stops at
    /// its next safe point (between files, its writes done), records how far it got, releases
    /// its lease and queues its continuation ([`MessageKind::Continuation`]) on `queue`:
    /// [`SyncOutcome::Sliced`]. The continuation (or any later push of the repository) resumes
    /// the same head from there; the cursor moves to the head only when the last slice is done.
    pub async fn handle_push_within<Q: PushQueue>(
        &self,
        push: &PushMessage,
        deadline: &Deadline,
        queue: &Q,
    ) -> Result<SyncOutcome, SyncError> {
        let outcome = self.handle(push, Some(deadline)).await?;
        self.queue_continuation(&push.repo, outcome, queue).await
    }

    /// After a slice that stopped at its deadline ([`SyncOutcome::Sliced`]), queues its
    /// continuation on `queue`; any other outcome is answered as it is.
    async fn queue_continuation<Q: PushQueue>(
        &self,
        repo: &RepoRef,
        outcome: SyncOutcome,
        queue: &Q,
    ) -> Result<SyncOutcome, SyncError> {
        if let SyncOutcome::Sliced { to, after, run, .. } = &outcome {
            let next = PushMessage::continuation(repo.clone(), to, run, after, Utc::now());
            match queue.enqueue(&next).await {
                Ok(queued) => info!(
                    repository = %repo, continuation = %next.delivery_id, ?queued,
                    "continuation queued"
                ),
                // The resume point is recorded: this sync, retried, resumes from it.
                Err(e) => return self.record_failure(repo, Err(e.into())).await,
            }
        }
        Ok(outcome)
    }

    async fn handle(&self, push: &PushMessage, deadline: Option<&Deadline>) -> Result<SyncOutcome, SyncError> {
        let registered = self.store.repo(&push.repo).await?.is_some();
        self.handle_read(push, registered, deadline).await
    }

    /// [`SyncEngine::handle`] once the registry has said whether the push's repository is
    /// `registered`.
    async fn handle_read(
        &self,
        push: &PushMessage,
        registered: bool,
        deadline: Option<&Deadline>,
    ) -> Result<SyncOutcome, SyncError> {
        if !registered {
            info!(repository = %push.repo, "repository is not registered; push skipped");
            return Ok(SyncOutcome::NotRegistered);
        }
        let result = async move {
            let Some(branch) = self.host.default_branch(&push.repo).await? else {
                return Ok(SyncOutcome::EmptyRepository);
            };
            // The next slice of a sync: whatever the branch did since.
            if push.kind == MessageKind::Continuation {
                return self
                    .sync_to(&push.repo, branch, None, None, &NoProgress, deadline)
                    .await;
            }
            // `hubsync sync --queue`: whole tree, from the cursor, or from a commit.
            if let Some(request) = SyncRequest::of(push) {
                return self
                    .sync_requested(&push.repo, branch, &request, &NoProgress, deadline)
                    .await;
            }
            if !push.touches(&branch.ref_id) {
                return Ok(SyncOutcome::NotDefaultBranch {
                    default_branch: branch.ref_id,
                });
            }
            self.sync_to(&push.repo, branch, None, None, &NoProgress, deadline)
                .await
        }
        .await;
        self.record_failure(&push.repo, result).await
    }

    /// Syncs a registered repository now, whatever was pushed: `full` reconciles the whole tree.
    pub async fn sync_repo(
        &self,
        repo: &RepoRef,
        full: bool,
        progress: &dyn SyncProgress,
    ) -> Result<SyncOutcome, SyncError> {
        let request = if full { SyncRequest::Full } else { SyncRequest::Recent };
        self.sync_request(repo, &request, progress).await
    }

    /// Syncs a registered repository now as `request` asks (`hubsync sync`).
    pub async fn sync_request(
        &self,
        repo: &RepoRef,
        request: &SyncRequest,
        progress: &dyn SyncProgress,
    ) -> Result<SyncOutcome, SyncError> {
        self.requested(repo, request, progress, None).await
    }

    /// Like [`SyncEngine::sync_request`], within `deadline` (`hubsync sync --slice`): a sync still
    /// running when it is near stops at its next safe point, records how far it got and queues
    /// its continuation on `queue`, as [`SyncEngine::handle_push_within`] does:
    /// [`SyncOutcome::Sliced`]. [`SyncRequest::Recent`] runs the next slice (a sync not cut into
    /// slices goes from the cursor to the head).
    pub async fn sync_request_within<Q: PushQueue>(
        &self,
        repo: &RepoRef,
        request: &SyncRequest,
        progress: &dyn SyncProgress,
        deadline: &Deadline,
        queue: &Q,
    ) -> Result<SyncOutcome, SyncError> {
        let outcome = self.requested(repo, request, progress, Some(deadline)).await?;
        self.queue_continuation(repo, outcome, queue).await
    }

    async fn requested(
        &self,
        repo: &RepoRef,
        request: &SyncRequest,
        progress: &dyn SyncProgress,
        deadline: Option<&Deadline>,
    ) -> Result<SyncOutcome, SyncError> {
        self.store
            .repo(repo)
            .await?
            .ok_or_else(|| StoreError::NotRegistered(repo.clone()))?;
        let result = async {
            let Some(branch) = self.host.default_branch(repo).await? else {
                return Ok(SyncOutcome::EmptyRepository);
            };
            self.sync_requested(repo, branch, request, progress, deadline).await
        }
        .await;
        self.record_failure(repo, result).await
    }

    /// Runs `request` against the default branch `branch`. A `--from` commit is checked first:
    /// unknown, or not in the head's history, it is an error and nothing is written.
    async fn sync_requested(
        &self,
        repo: &RepoRef,
        branch: DefaultBranch,
        request: &SyncRequest,
        progress: &dyn SyncProgress,
        deadline: Option<&Deadline>,
    ) -> Result<SyncOutcome, SyncError> {
        match request {
            SyncRequest::Full => {
                let reason = Some(FullSyncReason::Requested);
                self.sync_to(repo, branch, reason, None, progress, deadline).await
            }
            SyncRequest::Recent => self.sync_to(repo, branch, None, None, progress, deadline).await,
            SyncRequest::From(commit) => {
                let (commit, head) = (commit.clone(), branch.head.clone());
                match self.host.ancestry(repo, &commit, &head).await? {
                    Ancestry::Ancestor => {
                        self.sync_to(repo, branch, None, Some(&commit), progress, deadline)
                            .await
                    }
                    Ancestry::Unknown => Err(SyncError::UnknownCommit {
                        repo: repo.clone(),
                        commit,
                    }),
                    Ancestry::NotAncestor => Err(SyncError::NotAnAncestor {
                        repo: repo.clone(),
                        commit,
                        head,
                    }),
                }
            }
        }
    }

    async fn record_failure(
        &self,
        repo: &RepoRef,
        result: Result<SyncOutcome, SyncError>,
    ) -> Result<SyncOutcome, SyncError> {
        // Another sync holding or taking the lease, or a person stopping this one, is not this
        // repository's failure.
        if let Err(e) = &result
            && !matches!(
                e,
                SyncError::Store(StoreError::LeaseHeld { .. } | StoreError::LeaseLost(_)) | SyncError::Abandoned
            )
        {
            let last = LastError {
                message: e.to_string(),
                at: Utc::now(),
            };
            if let Err(store_err) = self.store.record_error(repo, &last).await {
                warn!(repository = %repo, error = %store_err, "could not record the sync error");
            }
        }
        result
    }

    /// Takes the repository's lease, syncs to the head under it (with a heartbeat renewing it),
    /// and releases it, also on failure. `since`: the changes from that commit are applied too
    /// (`hubsync sync --from`).
    async fn sync_to(
        &self,
        repo: &RepoRef,
        branch: DefaultBranch,
        forced: Option<FullSyncReason>,
        since: Option<&CommitId>,
        progress: &dyn SyncProgress,
        deadline: Option<&Deadline>,
    ) -> Result<SyncOutcome, SyncError> {
        let owner = LeaseOwner::generate(&self.options.holder);
        let lease = self.store.acquire_lease(repo, &owner, self.options.lease_ttl).await?;
        debug!(repository = %repo, owner = %owner, "sync lease acquired");
        let leased = Leased {
            lease: &lease,
            wrote: Arc::new(AtomicBool::new(false)),
        };
        let result = self
            .with_heartbeat(
                &lease,
                deadline,
                self.sync_leased(&leased, branch, forced, since, progress, deadline),
            )
            .await;
        // A failure before any write leaves the models as they were: finished, unless they were
        // unfinished already. A slice that stopped at its deadline is finished too: its resume
        // point says exactly what is done.
        let finished = result.is_ok() || (!lease.previous_unfinished && !leased.wrote.load(Ordering::SeqCst));
        if let Err(e) = self.store.release_lease(&lease, finished).await {
            warn!(repository = %repo, error = %e, "could not release the sync lease; it expires by itself");
        }
        result
    }

    /// Runs `work` while renewing `lease` every third of its time-to-live. A lost lease stops the
    /// work (its writes would be refused anyway); a failed renewal is tried again at the next beat.
    /// The deadline's token, once cancelled, stops it too: [`SyncError::Abandoned`], and the
    /// caller releases the lease as after any failure.
    async fn with_heartbeat<T>(
        &self,
        lease: &SyncLease,
        deadline: Option<&Deadline>,
        work: impl Future<Output = Result<T, SyncError>>,
    ) -> Result<T, SyncError> {
        use futures::future::{Either, select};
        let ttl = self.options.lease_ttl;
        let heartbeat = async {
            let mut current = lease.clone();
            loop {
                tokio::time::sleep(ttl / 3).await;
                match self.store.renew_lease(&current, ttl).await {
                    Ok(renewed) => current = renewed,
                    Err(e @ StoreError::LeaseLost(_)) => return e,
                    Err(e) => warn!(repository = %lease.repo, error = %e, "could not renew the sync lease"),
                }
            }
        };
        let abandoned = async {
            match deadline {
                Some(deadline) => deadline.abandoned().await,
                None => std::future::pending().await,
            }
        };
        let (heartbeat, abandoned) = (std::pin::pin!(heartbeat), std::pin::pin!(abandoned));
        match select(std::pin::pin!(work), select(heartbeat, abandoned)).await {
            Either::Left((result, _)) => result,
            Either::Right((Either::Left((lost, _)), _)) => Err(lost.into()),
            Either::Right((Either::Right(((), _)), _)) => Err(SyncError::Abandoned),
        }
    }

    /// The sync proper, under the lease: the cursor is read again now that no other sync can move
    /// it. A cursor moved anyway (by a writer that takes no lease) means a full reconcile against
    /// the new head, never "up to date".
    ///
    /// A sync cut into slices that is not done yet (a resume point on the record) is finished
    /// first, towards its own head, whatever this sync was started for (a continuation, a later
    /// push, a reconcile); then, in the same run, the sync goes on from there to the branch head
    /// (and applies a `--from` asked for meanwhile, kept with the resume point,
    /// [`SyncResume::then_since`], should the pending sync need more slices first; a second one
    /// asked for while that waits is merged with it, see [`SyncEngine::earlier_of`]).
    /// Only a requested full sync, or one that found the cursor moved, starts over instead.
    async fn sync_leased(
        &self,
        leased: &Leased<'_>,
        mut branch: DefaultBranch,
        mut forced: Option<FullSyncReason>,
        since: Option<&CommitId>,
        progress: &dyn SyncProgress,
        deadline: Option<&Deadline>,
    ) -> Result<SyncOutcome, SyncError> {
        let repo = &leased.lease.repo;
        let mut moved_once = false;
        let mut resume_gone = false;
        let mut first = true;
        let mut done = None;
        let mut since = since.cloned();
        loop {
            let record = self
                .store
                .repo(repo)
                .await?
                .ok_or_else(|| StoreError::NotRegistered(repo.clone()))?;
            // A `--from` asked for while the pending sync was running (in an earlier slice); with
            // this one's, the changes of both.
            let waiting = record.resume.as_ref().and_then(|r| r.then_since.as_ref());
            match (since.take(), waiting) {
                (Some(asked), Some(waiting)) if first && asked != *waiting => {
                    match self.earlier_of(repo, &asked, waiting).await? {
                        Some(earlier) => {
                            info!(repository = %repo, asked = %asked, waiting = %waiting, since = %earlier, "a --from was already waiting: the changes since the earlier of the two are applied");
                            since = Some(earlier);
                        }
                        None if forced.is_none() => {
                            warn!(repository = %repo, asked = %asked, waiting = %waiting, "a --from was already waiting and neither commit is in the other's history: reconciling the whole tree");
                            forced = Some(FullSyncReason::FromCommitsApart);
                        }
                        None => {}
                    }
                }
                (Some(asked), _) => since = Some(asked),
                (None, waiting) => since = waiting.cloned(),
            }
            if std::mem::take(&mut first) && leased.lease.previous_unfinished && forced.is_none() {
                if record.resume.is_some() {
                    // The unfinished slice worked after the resume point only: resuming redoes it.
                    info!(repository = %repo, "the previous slice did not finish; resuming from its resume point");
                } else {
                    warn!(repository = %repo, "the previous sync did not finish; reconciling the whole tree");
                    forced = Some(FullSyncReason::PreviousUnfinished);
                }
            }
            let continuing = forced.is_none() && record.resume.is_some();
            // A `--from` other than the pending sync's own is applied once that is done.
            let since_left = since.is_some() && since.as_ref() != record.resume.as_ref().and_then(|r| r.since.as_ref());
            match self
                .sync_once(
                    leased,
                    &branch,
                    &record,
                    forced,
                    since.as_ref(),
                    progress,
                    deadline,
                    &mut done,
                )
                .await
            {
                // A whole tree reconciled at the branch head holds every change of a `--from`.
                Ok(outcome)
                    if continuing
                        && since_left
                        && matches!(&outcome, SyncOutcome::Synced { to, mode: SyncMode::Full(FullSyncReason::Continued), .. } if *to == branch.head) =>
                {
                    info!(repository = %repo, head = %branch.head, "sliced full sync done at the branch head: the --from changes are in it");
                    return Ok(outcome);
                }
                Ok(SyncOutcome::Synced { to, .. }) if continuing && (to != branch.head || since_left) => {
                    info!(repository = %repo, done = %to, head = %branch.head, "sliced sync done; going on to the branch head");
                }
                // Nothing was written: the plan is made before any write.
                Err(SyncError::GitHost(e))
                    if continuing
                        && !resume_gone
                        && e.kind == GitHostErrorKind::NotFound
                        && self.resume_head_gone(repo, &record, &branch).await? =>
                {
                    warn!(repository = %repo, "the head of the sync in slices is gone; reconciling the whole tree at the branch head");
                    resume_gone = true;
                    forced = Some(FullSyncReason::SlicedHeadUnreachable);
                }
                Err(SyncError::Store(StoreError::CursorMoved(_))) if !moved_once => {
                    warn!(repository = %repo, "the cursor moved under this sync; reconciling against the new head");
                    moved_once = true;
                    forced = Some(FullSyncReason::CursorMoved);
                    let Some(now) = self.host.default_branch(repo).await? else {
                        return Ok(SyncOutcome::EmptyRepository);
                    };
                    branch = now;
                }
                other => return other,
            }
        }
    }

    /// Of two `--from` commits, the one in the other's history (its changes to the head hold the
    /// other's): one ancestry request, a second if the first says no. `None` when neither is (a
    /// history rewritten), or one is gone.
    async fn earlier_of(&self, repo: &RepoRef, a: &CommitId, b: &CommitId) -> Result<Option<CommitId>, SyncError> {
        Ok(match self.host.ancestry(repo, a, b).await? {
            Ancestry::Ancestor => Some(a.clone()),
            Ancestry::Unknown => None,
            Ancestry::NotAncestor => (self.host.ancestry(repo, b, a).await? == Ancestry::Ancestor).then(|| b.clone()),
        })
    }

    /// Whether the head `record`'s resume point replicates is gone from the host (a resume point
    /// whose head was force-pushed away and collected can never be finished): one request.
    async fn resume_head_gone(
        &self,
        repo: &RepoRef,
        record: &RepoRecord,
        branch: &DefaultBranch,
    ) -> Result<bool, SyncError> {
        let Some(resume) = &record.resume else {
            return Ok(false);
        };
        let ancestry = self.host.ancestry(repo, &resume.head, &branch.head).await?;
        Ok(ancestry == Ancestry::Unknown)
    }

    /// One sync towards one head. `done`: what the sliced sync finished just before in the same
    /// run replicates (a `--from` applied next skips it); set when this one finishes a sliced one.
    #[allow(clippy::too_many_arguments)]
    async fn sync_once(
        &self,
        leased: &Leased<'_>,
        branch: &DefaultBranch,
        record: &RepoRecord,
        forced: Option<FullSyncReason>,
        since: Option<&CommitId>,
        progress: &dyn SyncProgress,
        deadline: Option<&Deadline>,
        done: &mut Option<Done>,
    ) -> Result<SyncOutcome, SyncError> {
        let done_before = done.take();
        let repo = &leased.lease.repo;
        let cursor = record.cursor.as_ref();
        let from = cursor.map(|c| c.commit.clone());
        let resume = record.resume.as_ref().filter(|_| forced.is_none());
        let head = resume.map_or_else(|| branch.head.clone(), |r| r.head.clone());
        if resume.is_none() && forced.is_none() && since.is_none() && from.as_ref() == Some(&head) {
            debug!(repository = %repo, head = %head, "already at the head");
            return Ok(SyncOutcome::UpToDate { head });
        }

        let mut plan = match (resume, forced, &from) {
            (Some(r), _, _) if r.full => Plan::Full(FullSyncReason::Continued),
            (_, Some(reason), _) => Plan::Full(reason),
            (_, None, None) => Plan::Full(FullSyncReason::FirstSync),
            (_, None, Some(cursor)) if *cursor == head => Plan::Incremental(Vec::new()),
            (_, None, Some(cursor)) => self.plan_diff(repo, cursor, &head).await?,
        };
        // `--from`: the changes since that commit as well, so the cursor's guarantee holds when
        // it moves to the head; what cannot be applied as a diff is reconciled whole. A sync in
        // slices applies its own `--from` in every slice (the same plan each time, so the paths
        // after its resume point are the ones still to do); one asked for while another is
        // pending, once that is done.
        let requested = since;
        let since = match resume {
            Some(r) => r.since.as_ref(),
            None => since,
        };
        // The changes of the `--from` that a sliced sync finished just before already did: in
        // this run, or (a later slice of this `--from`) as its first slice recorded.
        let mut skipped = Vec::new();
        if let (Some(since), Plan::Incremental(changes)) = (since, &mut plan)
            && from.as_ref() != Some(since)
        {
            match self.plan_diff(repo, since, &head).await? {
                Plan::Incremental(more) => {
                    let done = done_before.filter(|d| from.as_ref() == Some(&d.head)).or_else(|| {
                        resume
                            .filter(|r| !r.skip.is_empty() && from.as_ref() == Some(&r.head))
                            .map(|r| Done {
                                head: r.head.clone(),
                                paths: Some(r.skip.iter().cloned().collect()),
                            })
                    });
                    let more: Vec<_> = match done {
                        Some(done) => more
                            .into_iter()
                            .filter(|c| {
                                let covered = done.covers(c, changes);
                                if covered {
                                    skipped.push(c.clone());
                                }
                                !covered
                            })
                            .collect(),
                        None => more,
                    };
                    changes.extend(more);
                }
                full => plan = full,
            }
        }

        // A forced full sync starts over, whatever an earlier sliced sync did: its resume point
        // is replaced at once by one of this sync's (nothing done yet), so that if this sync
        // dies after writing, the next one reconciles this head rather than trust the old point.
        if forced.is_some() && record.resume.is_some() {
            let restart = SyncResume {
                head: head.clone(),
                after: String::new(),
                full: true,
                hubignore: None,
                stats: SyncStats::default(),
                slices: 0,
                run: SyncResume::new_run(),
                since: None,
                listed: None,
                skip: Vec::new(),
                then_since: None,
            };
            self.store.record_resume(leased.lease, from.as_ref(), &restart).await?;
        }

        // `.hubignore` at the head is what the cursor (or the resume point) kept, unless the
        // diff touched it or nothing was kept: then it is fetched.
        let kept = match (resume, &plan) {
            (Some(r), _) => r.hubignore.clone(),
            (None, Plan::Incremental(_)) => cursor.and_then(|c| c.hubignore.clone()),
            (None, Plan::Full(_)) => None,
        };
        let (ignore, hubignore) = match kept {
            Some(text) => (HubIgnore::parse(text.as_bytes()), Some(text)),
            None => self.read_hubignore(repo, &head).await?,
        };
        for line in &ignore.invalid_lines {
            warn!(repository = %repo, line = %line, "invalid .hubignore pattern skipped");
        }

        let mode = match &plan {
            Plan::Full(reason) => SyncMode::Full(*reason),
            Plan::Incremental(_) => SyncMode::Incremental,
        };
        let (ops, listing) = match plan {
            Plan::Full(_) => {
                let (ops, listing) = self.plan_tree(repo, &head, &ignore, resume).await?;
                (ops, Some(listing))
            }
            Plan::Incremental(changes) => (plan_changes(&changes, &ignore), None),
        };
        // What a sliced sync will have done when this slice ends it: every path (a full one), or
        // its plan (an incremental one plans the same in every slice).
        let planned = match (resume, &mode) {
            (Some(r), SyncMode::Full(_)) if r.full => Some(None),
            (Some(_), SyncMode::Incremental) => Some(Some(ops.keys().cloned().collect())),
            _ => None,
        };
        let stats = Mutex::new(SyncStats::default());
        let after = resume.map(|r| r.after.as_str());
        let stopped = self
            .run_ops(leased, &head, ops, after, &stats, progress, deadline)
            .await?;
        let mut total = resume.map(|r| r.stats.clone()).unwrap_or_default();
        add_stats(&mut total, &stats.into_inner().unwrap_or_default());

        if let Some(after) = stopped {
            let slices = resume.map_or(1, |r| r.slices + 1);
            let full = matches!(mode, SyncMode::Full(_));
            // The same sync as the point it resumes from; else a new one.
            let run = resume.map_or_else(SyncResume::new_run, |r| r.run.clone());
            let point = SyncResume {
                head: head.clone(),
                after: after.clone(),
                full,
                hubignore,
                stats: total.clone(),
                slices,
                run: run.clone(),
                since: since.filter(|_| !full).cloned(),
                listed: listing.and_then(|l| l.through(&after)),
                skip: skip_after(&skipped, &after),
                // A `--from` of this run that is not the pending sync's own: applied after it.
                then_since: requested.filter(|r| Some(*r) != since).cloned(),
            };
            self.store.record_resume(leased.lease, from.as_ref(), &point).await?;
            info!(
                repository = %repo, commit = %head, mode = ?mode, slices, after = %after,
                written = total.written, removed = total.removed,
                "deadline near: sync stopped at a safe point, to be continued"
            );
            return Ok(SyncOutcome::Sliced {
                from,
                to: head,
                after,
                stats: total,
                run,
            });
        }

        self.store
            .advance_cursor(
                leased.lease,
                from.as_ref(),
                &SyncCursor {
                    commit: head.clone(),
                    synced_at: Utc::now(),
                    stats: total.clone(),
                    hubignore,
                },
            )
            .await?;
        if let Some(paths) = planned {
            *done = Some(Done {
                head: head.clone(),
                paths,
            });
        }
        match self.store.sweep(leased.lease, SWEEP_BUDGET).await {
            Ok(0) => {}
            Ok(swept) => info!(repository = %repo, swept, "unreferenced content swept"),
            Err(e) => warn!(repository = %repo, error = %e, "the sweep failed; the next sync tries again"),
        }
        info!(
            repository = %repo, commit = %head, mode = ?mode,
            written = total.written, removed = total.removed, malformed = total.malformed,
            skipped = total.skipped, ignored = total.ignored,
            "repository synced"
        );
        Ok(SyncOutcome::Synced {
            from,
            to: head,
            mode,
            stats: total,
        })
    }

    /// The changes from `since` to `head` as a plan: applied as a diff, or the whole tree when
    /// the diff cannot be trusted (capped, `.hubignore` changed, `since` gone).
    async fn plan_diff(&self, repo: &RepoRef, since: &CommitId, head: &CommitId) -> Result<Plan, SyncError> {
        Ok(match self.host.changes(repo, since, head).await {
            Ok(set) if set.truncated => Plan::Full(FullSyncReason::TooManyChanges),
            Ok(set)
                if set
                    .changes
                    .iter()
                    .any(|c| touches_path(&c.kind, &c.path, HUBIGNORE_PATH)) =>
            {
                Plan::Full(FullSyncReason::HubignoreChanged)
            }
            Ok(set) => Plan::Incremental(set.changes),
            Err(e) if e.kind == GitHostErrorKind::NotFound => Plan::Full(FullSyncReason::CursorUnreachable),
            Err(e) => return Err(e.into()),
        })
    }

    /// `.hubignore` at `at`: its rules, and its text to keep with the cursor (`""` when there is
    /// none; `None` when it is too large to keep).
    async fn read_hubignore(&self, repo: &RepoRef, at: &CommitId) -> Result<(HubIgnore, Option<String>), SyncError> {
        let mut admission = self.options.fetch.admit().await;
        Ok(
            match self
                .host
                .raw_file(repo, HUBIGNORE_PATH, at, self.options.max_model_bytes, &mut admission)
                .await?
            {
                Some(RawFile::Content(bytes)) => {
                    let kept =
                        (bytes.len() <= MAX_KEPT_HUBIGNORE_BYTES).then(|| String::from_utf8_lossy(&bytes).into_owned());
                    (HubIgnore::parse(&bytes), kept)
                }
                Some(RawFile::TooLarge(size)) => {
                    warn!(repository = %repo, reason = %size, ".hubignore is not read");
                    (HubIgnore::empty(), None)
                }
                None => (HubIgnore::empty(), Some(String::new())),
            },
        )
    }

    /// Writes a model under the lease.
    async fn put(&self, leased: &Leased<'_>, record: &ModelRecord) -> Result<(), StoreError> {
        leased.wrote.store(true, Ordering::SeqCst);
        self.store.put_model(leased.lease, record).await
    }

    /// Removes a model under the lease; `false` if there was none.
    async fn delete(&self, leased: &Leased<'_>, path: &str) -> Result<bool, StoreError> {
        leased.wrote.store(true, Ordering::SeqCst);
        self.store.delete_model(leased.lease, path).await
    }

    /// Full sync: every candidate file at the head is fetched (what the store holds there is
    /// known, so an unchanged file is not written again); stored models that are not at the head
    /// (or now ignored, or no longer models) are removed.
    ///
    /// The next slice of a full sync (`resume`) plans only the paths after its resume point: the
    /// head's listing from the entry after it on (when the slice before recorded where that is),
    /// and the stored models after it.
    async fn plan_tree(
        &self,
        repo: &RepoRef,
        head: &CommitId,
        ignore: &HubIgnore,
        resume: Option<&SyncResume>,
    ) -> Result<(BTreeMap<String, Op>, Listing), SyncError> {
        let after = resume.map(|r| r.after.as_str());
        let listing = self.list_tree(repo, head, resume).await?;
        let stored = match after {
            Some(after) => self.store.list_models_after(repo, after).await?,
            None => self.store.list_models(repo).await?,
        };
        let mut stored: BTreeMap<String, (String, ModelStatus)> = stored
            .into_iter()
            .map(|m| (m.path, (m.content_sha256, m.status)))
            .collect();
        let mut ops = BTreeMap::new();
        let left = listing
            .paths
            .iter()
            .filter(|p| is_candidate_path(p) && after.is_none_or(|after| p.as_str() > after));
        for path in left.cloned() {
            let known = stored.remove(&path);
            let op = if ignore.is_ignored(&path) {
                Op::Ignore {
                    remove: known.is_some(),
                }
            } else {
                Op::Fetch(known.map_or(Known::Absent, |(sha, status)| Known::Stored(sha, status)))
            };
            ops.insert(path, op);
        }
        for path in stored.into_keys() {
            ops.entry(path).or_insert(Op::Remove);
        }
        Ok((ops, listing))
    }

    /// The head's listing, or for the next slice of a full sync that recorded where its resume
    /// point is in it ([`SyncResume::listed`]), the rest of it. A rest that does not start after
    /// the resume point (not the listing that was counted) is not trusted: the whole is listed.
    async fn list_tree(
        &self,
        repo: &RepoRef,
        head: &CommitId,
        resume: Option<&SyncResume>,
    ) -> Result<Listing, SyncError> {
        if let Some((start, after)) = resume.and_then(|r| Some((r.listed?, r.after.as_str())))
            && start > 0
        {
            let paths = self.host.list_files_from(repo, head, start).await?;
            if paths.first().is_none_or(|first| first.as_str() > after) {
                return Ok(Listing::new(start, paths));
            }
            warn!(repository = %repo, start, "the head's listing is not where the resume point says; listing it all");
        }
        Ok(Listing::new(0, self.host.list_files(repo, head).await?))
    }

    /// Runs `ops` after the path `after` (all of them without one), in path order, a few at a
    /// time (within the budget shared by every sync of these options). With a deadline, no new
    /// op is started once it is near (the first one always is, so every slice makes progress):
    /// the ops started are a prefix of the list, and are all done when this returns. Returns the
    /// last path done when it stopped before the end.
    #[allow(clippy::too_many_arguments)]
    async fn run_ops(
        &self,
        leased: &Leased<'_>,
        head: &CommitId,
        ops: BTreeMap<String, Op>,
        after: Option<&str>,
        stats: &Mutex<SyncStats>,
        progress: &dyn SyncProgress,
        deadline: Option<&Deadline>,
    ) -> Result<Option<String>, SyncError> {
        let ops: Vec<(String, Op)> = match after {
            Some(after) => ops.into_iter().filter(|(p, _)| p.as_str() > after).collect(),
            None => ops.into_iter().collect(),
        };
        progress.planned(ops.iter().filter(|(_, op)| matches!(op, Op::Fetch(_))).count());
        let concurrency = self.options.fetch.concurrency();
        let mut in_flight = FuturesUnordered::new();
        let mut started = 0;
        loop {
            while in_flight.len() < concurrency
                && started < ops.len()
                && (started == 0 || !deadline.is_some_and(|d| d.is_near()))
            {
                let (path, op) = &ops[started];
                in_flight.push(self.run_op(leased, head, path, op, stats, progress));
                started += 1;
            }
            match in_flight.next().await {
                Some(done) => done?,
                None => break,
            }
        }
        Ok((started < ops.len()).then(|| ops[started - 1].0.clone()))
    }

    async fn run_op(
        &self,
        leased: &Leased<'_>,
        head: &CommitId,
        path: &str,
        op: &Op,
        stats: &Mutex<SyncStats>,
        progress: &dyn SyncProgress,
    ) -> Result<(), SyncError> {
        match op {
            Op::Fetch(known) => {
                // Held until the file is applied: its bytes live until then.
                let mut admission = self.options.fetch.admit().await;
                self.fetch_and_store(leased, head, path, known, stats, &mut admission)
                    .await?;
                progress.file_done(path);
            }
            Op::Remove => {
                if self.delete(leased, path).await? {
                    bump(stats, |s| s.removed += 1);
                }
            }
            Op::Ignore { remove } => {
                bump(stats, |s| s.ignored += 1);
                if *remove && self.delete(leased, path).await? {
                    bump(stats, |s| s.removed += 1);
                }
            }
        }
        Ok(())
    }

    /// Fetches one candidate file at the head and writes, replaces or removes its model.
    async fn fetch_and_store(
        &self,
        leased: &Leased<'_>,
        head: &CommitId,
        path: &str,
        known: &Known,
        stats: &Mutex<SyncStats>,
        admission: &mut Admission,
    ) -> Result<(), SyncError> {
        let repo = &leased.lease.repo;
        let content = match self
            .host
            .raw_file(repo, path, head, self.options.max_model_bytes, admission)
            .await?
        {
            Some(RawFile::Content(content)) => {
                admission.settle(content.len() as u64);
                content
            }
            Some(RawFile::TooLarge(size)) => {
                // Not read: recorded with the reason and no content, so that it shows in the hub.
                let error = size.to_string();
                warn!(repository = %repo, path, error = %error, "model over the size cap recorded as malformed");
                let status = ModelStatus::Malformed { error };
                let record = ModelRecord::new(path.to_owned(), head.clone(), Utc::now(), status, Bytes::new());
                return self.store_status(leased, head, record, known, stats).await;
            }
            None => {
                // Listed at the head but not readable there: treat as gone.
                if self.delete(leased, path).await? {
                    bump(stats, |s| s.removed += 1);
                }
                return Ok(());
            }
        };
        // Recognised, hashed and written in one trip off this task (`put_model_built`).
        let size = content.len();
        let (owned_path, commit, kept, wrote) = (path.to_owned(), head.clone(), known.clone(), leased.wrote.clone());
        let built = self
            .store
            .put_model_built(leased.lease, move || {
                let Some((status, digest)) = examine(&owned_path, &content) else {
                    return Err(Unwritten::NotAModel);
                };
                let malformed = match &status {
                    ModelStatus::Malformed { error } => Some(error.clone()),
                    ModelStatus::Valid { .. } => None,
                };
                if matches!(&kept, Known::Stored(sha, st) if *sha == digest && *st == status) {
                    return Err(Unwritten::Unchanged { malformed });
                }
                wrote.store(true, Ordering::SeqCst);
                let record = ModelRecord::examined(owned_path, commit, Utc::now(), status, content, digest);
                Ok((record, malformed))
            })
            .await;
        let (malformed, written) = match built {
            Ok(Ok(malformed)) => (malformed, true),
            Ok(Err(Unwritten::Unchanged { malformed })) => (malformed, false),
            Ok(Err(Unwritten::NotAModel)) => {
                bump(stats, |s| s.skipped += 1);
                if !matches!(known, Known::Absent) && self.delete(leased, path).await? {
                    bump(stats, |s| s.removed += 1);
                }
                return Ok(());
            }
            // The store refuses this one file (over one of its limits).
            Err(StoreError::Refused { message, .. }) if size > 0 => {
                return self.record_refused(leased, head, path, &message, stats).await;
            }
            Err(e) => return Err(e.into()),
        };
        match malformed {
            Some(error) => {
                warn!(repository = %repo, path, error = %error, "malformed model recorded");
                bump(stats, |s| s.malformed += 1);
            }
            None if written => bump(stats, |s| s.written += 1),
            None => {}
        }
        Ok(())
    }

    /// Writes `record`, unless the store already holds exactly that.
    async fn store_status(
        &self,
        leased: &Leased<'_>,
        head: &CommitId,
        record: ModelRecord,
        known: &Known,
        stats: &Mutex<SyncStats>,
    ) -> Result<(), SyncError> {
        let path = record.path.as_str();
        let malformed = matches!(record.status, ModelStatus::Malformed { .. });
        if matches!(known, Known::Stored(sha, st) if *sha == record.content_sha256 && *st == record.status) {
            if malformed {
                bump(stats, |s| s.malformed += 1);
            }
            return Ok(());
        }
        match self.put(leased, &record).await {
            Ok(()) => {}
            Err(StoreError::Refused { message, .. }) if !record.content.is_empty() => {
                return self.record_refused(leased, head, path, &message, stats).await;
            }
            Err(e) => return Err(e.into()),
        }
        bump(stats, |s| if malformed { s.malformed += 1 } else { s.written += 1 });
        Ok(())
    }

    /// A file the store refuses (over one of its limits) is listed with the reason and without
    /// content, and the sync goes on.
    async fn record_refused(
        &self,
        leased: &Leased<'_>,
        head: &CommitId,
        path: &str,
        message: &str,
        stats: &Mutex<SyncStats>,
    ) -> Result<(), SyncError> {
        let error = format!("cannot be stored: {message}");
        warn!(repository = %leased.lease.repo, path, error = %error, "model refused by the store recorded as malformed");
        let status = ModelStatus::Malformed { error };
        let refused = ModelRecord::new(path.to_owned(), head.clone(), Utc::now(), status, Bytes::new());
        self.put(leased, &refused).await?;
        bump(stats, |s| s.malformed += 1);
        Ok(())
    }
}

/// Why a fetched file was not written.
enum Unwritten {
    /// Not a model: skipped (and its stored model, if any, removed).
    NotAModel,
    /// The store holds exactly this already; `malformed`: its error, if it is a malformed model.
    Unchanged { malformed: Option<String> },
}

/// What a sliced sync finished in this run replicates: every path at `head` (a full one), or the
/// paths of its plan.
struct Done {
    head: CommitId,
    /// `None`: every path.
    paths: Option<BTreeSet<String>>,
}

impl Done {
    /// Whether `change` of a `--from` needs nothing more, the cursor being at `head`: every path
    /// it writes or removes is done, and not changed again by `later` (the cursor's diff).
    fn covers(&self, change: &crate::ports::FileChange, later: &[crate::ports::FileChange]) -> bool {
        let moved_from = match &change.kind {
            FileChangeKind::Move { from } => Some(from.as_str()),
            _ => None,
        };
        std::iter::once(change.path.as_str()).chain(moved_from).all(|path| {
            self.paths.as_ref().is_none_or(|paths| paths.contains(path))
                && !later.iter().any(|c| touches_path(&c.kind, &c.path, path))
        })
    }
}

/// The paths of `skipped` (changes a `--from` leaves out as done) that a later slice starting
/// after `after` could meet, for [`SyncResume::skip`]; none beyond [`MAX_RESUME_SKIP_BYTES`] (a
/// later slice then fetches them again).
fn skip_after(skipped: &[crate::ports::FileChange], after: &str) -> Vec<String> {
    let mut paths = BTreeSet::new();
    for change in skipped.iter().filter(|c| c.path.as_str() > after) {
        paths.insert(change.path.clone());
        if let FileChangeKind::Move { from } = &change.kind {
            paths.insert(from.clone());
        }
    }
    if paths.iter().map(String::len).sum::<usize>() > MAX_RESUME_SKIP_BYTES {
        return Vec::new();
    }
    paths.into_iter().collect()
}

/// The paths of a head's listing that a full sync planned from: the listing's entries from the
/// `start`-th on.
struct Listing {
    start: u64,
    paths: Vec<String>,
    /// The paths are in byte order (as Bitbucket lists a commit's tree), so an entry's position
    /// says which paths come before it.
    ordered: bool,
}

impl Listing {
    fn new(start: u64, paths: Vec<String>) -> Self {
        let ordered = paths.is_sorted();
        Self { start, paths, ordered }
    }

    /// How many entries of the whole listing come up to `after` ([`SyncResume::listed`]), when
    /// the listing is in path order.
    fn through(&self, after: &str) -> Option<u64> {
        let here = self.paths.partition_point(|p| p.as_str() <= after);
        self.ordered.then(|| self.start + here as u64)
    }
}

/// What the store holds at a path before the file is fetched.
#[derive(Clone)]
enum Known {
    /// Not looked up (an incremental sync: the path changed anyway).
    Unknown,
    Absent,
    /// Its content digest and status.
    Stored(String, ModelStatus),
}

/// Incremental sync: removals (deleted files, move sources), and every added, modified, copied or
/// moved-to path fetched at the head and written (what the store holds there is not looked up:
/// it changed anyway).
fn plan_changes(changes: &[crate::ports::FileChange], ignore: &HubIgnore) -> BTreeMap<String, Op> {
    let mut removals = BTreeSet::new();
    let mut writes = BTreeSet::new();
    for change in changes {
        match &change.kind {
            FileChangeKind::Delete => {
                removals.insert(change.path.clone());
            }
            FileChangeKind::Move { from } => {
                removals.insert(from.clone());
                writes.insert(change.path.clone());
            }
            FileChangeKind::Add | FileChangeKind::Modify | FileChangeKind::Copy { .. } => {
                writes.insert(change.path.clone());
            }
        }
    }
    let mut ops = BTreeMap::new();
    for path in removals
        .into_iter()
        .filter(|p| is_candidate_path(p) && !writes.contains(p))
    {
        ops.insert(path, Op::Remove);
    }
    for path in writes.into_iter().filter(|p| is_candidate_path(p)) {
        let op = if ignore.is_ignored(&path) {
            Op::Ignore { remove: true }
        } else {
            Op::Fetch(Known::Unknown)
        };
        ops.insert(path, op);
    }
    ops
}

fn add_stats(total: &mut SyncStats, more: &SyncStats) {
    total.written += more.written;
    total.removed += more.removed;
    total.malformed += more.malformed;
    total.skipped += more.skipped;
    total.ignored += more.ignored;
}

/// Everything one sync worker needs: the store, the secret, and a way to reach the Git host. The
/// Lambda sync function and the local worker both run pushes through this.
pub struct SyncWorker<S, Src, C> {
    pub store: S,
    pub secrets: Src,
    pub connector: C,
    pub options: SyncOptions,
}

impl<S: RepoRegistry + ModelStore, Src: SecretSource, C: GitHostConnector> SyncWorker<S, Src, C> {
    /// Applies one queued push (see [`SyncEngine::handle_push`]). The registry is read at the
    /// same time as the secret (see [`SyncWorker::host_and_registration`]).
    pub async fn handle_push(&self, push: &PushMessage) -> Result<SyncOutcome, SyncError> {
        let (host, registered) = self.host_and_registration(&push.repo).await?;
        SyncEngine::new(&host, &self.store, self.options.clone())
            .handle_read(push, registered, None)
            .await
    }

    /// Applies one queued push within a deadline, queueing its continuation on `queue` if it
    /// must stop first (see [`SyncEngine::handle_push_within`]).
    pub async fn handle_push_within<Q: PushQueue>(
        &self,
        push: &PushMessage,
        deadline: &Deadline,
        queue: &Q,
    ) -> Result<SyncOutcome, SyncError> {
        let (host, registered) = self.host_and_registration(&push.repo).await?;
        let engine = SyncEngine::new(&host, &self.store, self.options.clone());
        let outcome = engine.handle_read(push, registered, Some(deadline)).await?;
        engine.queue_continuation(&push.repo, outcome, queue).await
    }

    /// Syncs a registered repository now as `request` asks (see [`SyncEngine::sync_request`]).
    pub async fn sync_request(
        &self,
        repo: &RepoRef,
        request: &SyncRequest,
        progress: &dyn SyncProgress,
    ) -> Result<SyncOutcome, SyncError> {
        let host = self.host().await?;
        SyncEngine::new(&host, &self.store, self.options.clone())
            .sync_request(repo, request, progress)
            .await
    }

    /// Syncs a registered repository now as `request` asks, within a deadline, queueing its
    /// continuation on `queue` if it must stop first (see [`SyncEngine::sync_request_within`]).
    pub async fn sync_request_within<Q: PushQueue>(
        &self,
        repo: &RepoRef,
        request: &SyncRequest,
        progress: &dyn SyncProgress,
        deadline: &Deadline,
        queue: &Q,
    ) -> Result<SyncOutcome, SyncError> {
        let host = self.host().await?;
        SyncEngine::new(&host, &self.store, self.options.clone())
            .sync_request_within(repo, request, progress, deadline, queue)
            .await
    }

    /// Syncs a registered repository now (see [`SyncEngine::sync_repo`]).
    pub async fn sync_repo(
        &self,
        repo: &RepoRef,
        full: bool,
        progress: &dyn SyncProgress,
    ) -> Result<SyncOutcome, SyncError> {
        let host = self.host().await?;
        SyncEngine::new(&host, &self.store, self.options.clone())
            .sync_repo(repo, full, progress)
            .await
    }

    async fn host(&self) -> Result<C::Host, SyncError> {
        let secret = self.secrets.hub_secret().await?;
        Ok(self.connector.connect(&secret)?)
    }

    /// The Git host, and whether `repo` is registered, for a queued push. The registry read does
    /// not need the secret, so it does not wait for it: on a cold start the push's first answer
    /// waits for the slower of the two reads, not for both in turn. The errors come in the order
    /// of the reads one after the other: the secret's, then the Git host's set-up, then the
    /// registry's; so a push that cannot read the secret fails as before, registered or not.
    async fn host_and_registration(&self, repo: &RepoRef) -> Result<(C::Host, bool), SyncError> {
        let (secret, record) = futures::join!(self.secrets.hub_secret(), self.store.repo(repo));
        let host = self.connector.connect(&*secret?)?;
        Ok((host, record?.is_some()))
    }
}

fn touches_path(kind: &FileChangeKind, path: &str, target: &str) -> bool {
    path == target
        || match kind {
            FileChangeKind::Move { from } | FileChangeKind::Copy { from } => from == target,
            _ => false,
        }
}

fn bump(stats: &Mutex<SyncStats>, f: impl FnOnce(&mut SyncStats)) {
    if let Ok(mut s) = stats.lock() {
        f(&mut s);
    }
}
