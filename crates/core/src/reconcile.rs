//! The scheduled reconcile: heal a lost delivery without waiting for the next push.
//!
//! Bitbucket Data Center does not retry a failed webhook delivery and suspends a failing webhook
//! for hours, so the last push before a quiet period can be lost, and the next push (which would
//! heal it, see [`crate::sync`]) may be days away. The reconcile asks the Git host for each
//! registered repository's default-branch head (one request per repository) and, for every
//! repository whose cursor is behind it, queues a [`MessageKind::Reconcile`] message: the
//! default branch's move from the cursor to the head, synced like a push by the queue's consumer,
//! in the repository's order. Its deduplication id is derived from the repository and the head,
//! so reconciles that see the same head again do not pile up. A repository at the head whose
//! sync cut into slices is not finished (a requested full sync of an unchanged head whose
//! continuation was lost) gets that continuation queued again.
//!
//! The same code runs on both backends: the sync function on a schedule (`infra/template.yaml`)
//! over SQS, and `hubsync serve --reconcile-every` over the SQLite queue.
//!
//! [`MessageKind::Reconcile`]: crate::push::MessageKind::Reconcile

use chrono::{DateTime, Utc};
use tracing::{info, warn};

use crate::ids::RepoRef;
use crate::ports::{
    ConnectError, Enqueued, GitHost, GitHostConnector, PushQueue, RepoRegistry, SecretError, SecretSource, StoreError,
};
use crate::push::PushMessage;
use crate::sync::SyncWorker;

/// Why a reconcile could not run at all. A failure for one repository does not stop the others;
/// it is in [`ReconcileReport::failed`].
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// The registered repositories could not be listed.
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error(transparent)]
    HostConfig(#[from] ConnectError),
}

/// What one reconcile found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReconcileReport {
    /// Registered repositories looked at.
    pub checked: usize,
    /// Repositories behind their default branch's head (or with a sync cut into slices to
    /// finish), for which a sync was queued.
    pub queued: Vec<RepoRef>,
    /// Repositories behind, whose sync for that head was already queued (deduplicated).
    pub already_queued: Vec<RepoRef>,
    /// Repositories whose cursor is at the head, or that have no commits.
    pub up_to_date: usize,
    /// Repositories that could not be checked or queued, with the reason (never a secret).
    pub failed: Vec<(RepoRef, String)>,
}

/// Compares each registered repository's default-branch head with its cursor and queues a sync
/// for those behind. `now` stamps the queued messages.
pub async fn reconcile<R, G, Q>(
    registry: &R,
    host: &G,
    queue: &Q,
    now: DateTime<Utc>,
) -> Result<ReconcileReport, ReconcileError>
where
    R: RepoRegistry,
    G: GitHost,
    Q: PushQueue,
{
    let repos = registry.repos().await?;
    let mut report = ReconcileReport {
        checked: repos.len(),
        ..ReconcileReport::default()
    };
    for record in repos {
        let repo = record.repo;
        let branch = match host.default_branch(&repo).await {
            Ok(Some(branch)) => branch,
            Ok(None) => {
                report.up_to_date += 1;
                continue;
            }
            Err(e) => {
                warn!(repository = %repo, error = %e, "reconcile: could not read the default branch");
                report.failed.push((repo, e.to_string()));
                continue;
            }
        };
        let cursor = record.cursor.as_ref().map(|c| &c.commit);
        let message = match &record.resume {
            _ if cursor != Some(&branch.head) => {
                PushMessage::reconcile(repo.clone(), &branch.ref_id, &branch.head, cursor, now)
            }
            None => {
                report.up_to_date += 1;
                continue;
            }
            // A sync cut into slices while the cursor is at the head (a requested full sync):
            // only its continuation finishes it, so that is queued again in case it was lost
            // (deduplicated against the slice's own if that is still queued).
            Some(resume) => PushMessage::continuation(repo.clone(), &resume.head, &resume.run, &resume.after, now),
        };
        match queue.enqueue(&message).await {
            Ok(Enqueued::Queued) => {
                info!(
                    repository = %repo,
                    cursor = %cursor.map_or("-", |c| c.short()),
                    head = %branch.head.short(),
                    delivery_id = %message.delivery_id,
                    "reconcile: the default branch is ahead of the cursor; sync queued"
                );
                report.queued.push(repo);
            }
            Ok(Enqueued::Duplicate) => report.already_queued.push(repo),
            Err(e) => {
                warn!(repository = %repo, error = %e, "reconcile: could not queue the sync");
                report.failed.push((repo, e.to_string()));
            }
        }
    }
    info!(
        checked = report.checked,
        queued = report.queued.len(),
        already_queued = report.already_queued.len(),
        up_to_date = report.up_to_date,
        failed = report.failed.len(),
        "reconcile done"
    );
    Ok(report)
}

impl<S, Src, C> SyncWorker<S, Src, C>
where
    S: RepoRegistry,
    Src: SecretSource,
    C: GitHostConnector,
{
    /// [`reconcile`] with this worker's registry and a Git host client built from the current
    /// hub secret: what the sync function runs on its schedule and `hubsync serve` on its timer.
    pub async fn reconcile<Q: PushQueue>(&self, queue: &Q) -> Result<ReconcileReport, ReconcileError> {
        let secret = self.secrets.hub_secret().await?;
        let host = self.connector.connect(&secret)?;
        reconcile(&self.store, &host, queue, Utc::now()).await
    }
}
