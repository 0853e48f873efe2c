//! In-memory adapters for every port: the reference behaviour the real adapters are tested
//! against (see [`super::conformance`]), and fast doubles for the tests of the domain and of the
//! functions. Nothing here is for production: it is compiled only with the `test-util` feature.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;

use chrono::Utc;

use crate::ids::{CommitId, RepoRef};
use crate::model::ModelRecord;
use crate::ports::*;
use crate::push::PushMessage;
use crate::secrets::HubSecret;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A FIFO queue deduplicating on the delivery id.
#[derive(Default)]
pub struct MemoryQueue {
    inner: Mutex<(Vec<PushMessage>, HashSet<String>)>,
    /// When set, every enqueue fails (to test the 503 path).
    pub unavailable: std::sync::atomic::AtomicBool,
}

impl MemoryQueue {
    pub fn messages(&self) -> Vec<PushMessage> {
        lock(&self.inner).0.clone()
    }
}

impl PushQueue for MemoryQueue {
    async fn enqueue(&self, push: &PushMessage) -> Result<Enqueued, QueueError> {
        if self.unavailable.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(QueueError {
                message: "memory queue marked unavailable".into(),
                source: None,
            });
        }
        let mut inner = lock(&self.inner);
        if !inner.1.insert(push.delivery_id.to_string()) {
            return Ok(Enqueued::Duplicate);
        }
        inner.0.push(push.clone());
        Ok(Enqueued::Queued)
    }
}

/// Registry and model store in maps.
#[derive(Default)]
pub struct MemoryStore {
    repos: Mutex<BTreeMap<RepoRef, RepoRecord>>,
    models: Mutex<BTreeMap<(RepoRef, String), ModelRecord>>,
}

impl RepoRegistry for MemoryStore {
    async fn register(&self, repo: &RepoRef) -> Result<bool, StoreError> {
        let mut repos = lock(&self.repos);
        if repos.contains_key(repo) {
            return Ok(false);
        }
        repos.insert(
            repo.clone(),
            RepoRecord {
                repo: repo.clone(),
                registered_at: Utc::now(),
                cursor: None,
                last_error: None,
            },
        );
        Ok(true)
    }

    async fn unregister(&self, repo: &RepoRef) -> Result<bool, StoreError> {
        lock(&self.models).retain(|(r, _), _| r != repo);
        Ok(lock(&self.repos).remove(repo).is_some())
    }

    async fn repo(&self, repo: &RepoRef) -> Result<Option<RepoRecord>, StoreError> {
        Ok(lock(&self.repos).get(repo).cloned())
    }

    async fn repos(&self) -> Result<Vec<RepoRecord>, StoreError> {
        Ok(lock(&self.repos).values().cloned().collect())
    }

    async fn advance_cursor(
        &self,
        repo: &RepoRef,
        expected: Option<&CommitId>,
        cursor: &SyncCursor,
    ) -> Result<(), StoreError> {
        let mut repos = lock(&self.repos);
        let record = repos
            .get_mut(repo)
            .ok_or_else(|| StoreError::NotRegistered(repo.clone()))?;
        if record.cursor.as_ref().map(|c| &c.commit) != expected {
            return Err(StoreError::CursorMoved(repo.clone()));
        }
        record.cursor = Some(cursor.clone());
        record.last_error = None;
        Ok(())
    }

    async fn record_error(&self, repo: &RepoRef, error: &LastError) -> Result<(), StoreError> {
        if let Some(record) = lock(&self.repos).get_mut(repo) {
            record.last_error = Some(error.clone());
        }
        Ok(())
    }
}

impl ModelStore for MemoryStore {
    async fn put_model(&self, repo: &RepoRef, record: &ModelRecord) -> Result<(), StoreError> {
        lock(&self.models).insert((repo.clone(), record.path.clone()), record.clone());
        Ok(())
    }

    async fn delete_model(&self, repo: &RepoRef, path: &str) -> Result<bool, StoreError> {
        Ok(lock(&self.models).remove(&(repo.clone(), path.to_owned())).is_some())
    }

    async fn list_models(&self, repo: &RepoRef) -> Result<Vec<ModelSummary>, StoreError> {
        Ok(lock(&self.models)
            .iter()
            .filter(|((r, _), _)| r == repo)
            .map(|(_, m)| m.summary())
            .collect())
    }

    async fn get_model(&self, repo: &RepoRef, path: &str) -> Result<Option<ModelRecord>, StoreError> {
        Ok(lock(&self.models).get(&(repo.clone(), path.to_owned())).cloned())
    }
}

/// A Git host holding snapshots: each commit is a full map of path to bytes.
#[derive(Default)]
pub struct MemoryGitHost {
    inner: Mutex<MemoryGitState>,
}

#[derive(Default)]
struct MemoryGitState {
    commits: HashMap<CommitId, BTreeMap<String, Vec<u8>>>,
    heads: HashMap<RepoRef, CommitId>,
    counter: u64,
    /// Changes listed per diff before the answer is marked truncated.
    max_changes: Option<usize>,
    /// Errors to return from the next calls.
    failures: Vec<GitHostErrorKind>,
    /// While set, every call fails as a server answering 503 does.
    unavailable: bool,
}

impl MemoryGitHost {
    /// Records a new commit on the default branch (`refs/heads/main`) holding exactly `files`.
    pub fn commit(&self, repo: &RepoRef, files: BTreeMap<String, Vec<u8>>) -> CommitId {
        let mut s = lock(&self.inner);
        s.counter += 1;
        let id = CommitId::parse(&format!("{:040x}", s.counter)).unwrap_or_else(|_| unreachable!("40 hex digits"));
        s.commits.insert(id.clone(), files);
        s.heads.insert(repo.clone(), id.clone());
        id
    }

    /// Forgets a commit, as garbage collection does after a force-push.
    pub fn forget(&self, commit: &CommitId) {
        lock(&self.inner).commits.remove(commit);
    }

    pub fn set_max_changes(&self, max: Option<usize>) {
        lock(&self.inner).max_changes = max;
    }

    /// The next call fails with `kind`.
    pub fn fail_next(&self, kind: GitHostErrorKind) {
        lock(&self.inner).failures.push(kind);
    }

    /// Until called again with `false`, every call fails with `503 Service Unavailable` (an
    /// outage the test ends when its clock says so).
    pub fn set_unavailable(&self, unavailable: bool) {
        lock(&self.inner).unavailable = unavailable;
    }

    fn check(&self, repo: &RepoRef, operation: &str) -> Result<(), GitHostError> {
        let mut s = lock(&self.inner);
        if s.unavailable {
            return Err(GitHostError {
                kind: GitHostErrorKind::Server,
                repo: repo.clone(),
                operation: operation.into(),
                status: Some(503),
                message: "503 Service Unavailable (injected outage)".into(),
            });
        }
        if s.failures.is_empty() {
            return Ok(());
        }
        let kind = s.failures.remove(0);
        Err(GitHostError {
            kind,
            repo: repo.clone(),
            operation: operation.into(),
            status: None,
            message: format!("injected {kind:?}"),
        })
    }

    fn tree(&self, repo: &RepoRef, at: &CommitId, operation: &str) -> Result<BTreeMap<String, Vec<u8>>, GitHostError> {
        lock(&self.inner).commits.get(at).cloned().ok_or_else(|| GitHostError {
            kind: GitHostErrorKind::NotFound,
            repo: repo.clone(),
            operation: operation.into(),
            status: Some(404),
            message: format!("commit {at} does not exist"),
        })
    }
}

impl GitHost for MemoryGitHost {
    async fn default_branch(&self, repo: &RepoRef) -> Result<Option<DefaultBranch>, GitHostError> {
        self.check(repo, "default branch")?;
        Ok(lock(&self.inner).heads.get(repo).map(|head| DefaultBranch {
            ref_id: "refs/heads/main".into(),
            head: head.clone(),
        }))
    }

    async fn changes(&self, repo: &RepoRef, since: &CommitId, until: &CommitId) -> Result<ChangeSet, GitHostError> {
        self.check(repo, "changes")?;
        let (old, new) = (self.tree(repo, since, "changes")?, self.tree(repo, until, "changes")?);
        let mut changes = Vec::new();
        for (path, bytes) in &new {
            match old.get(path) {
                None => changes.push(FileChange {
                    path: path.clone(),
                    kind: FileChangeKind::Add,
                }),
                Some(b) if b != bytes => changes.push(FileChange {
                    path: path.clone(),
                    kind: FileChangeKind::Modify,
                }),
                Some(_) => {}
            }
        }
        for path in old.keys().filter(|p| !new.contains_key(*p)) {
            changes.push(FileChange {
                path: path.clone(),
                kind: FileChangeKind::Delete,
            });
        }
        let max = lock(&self.inner).max_changes;
        let truncated = max.is_some_and(|m| changes.len() >= m);
        if let Some(m) = max {
            changes.truncate(m);
        }
        Ok(ChangeSet { changes, truncated })
    }

    async fn list_files(&self, repo: &RepoRef, at: &CommitId) -> Result<Vec<String>, GitHostError> {
        self.check(repo, "files")?;
        Ok(self.tree(repo, at, "files")?.into_keys().collect())
    }

    async fn raw_file(&self, repo: &RepoRef, path: &str, at: &CommitId) -> Result<Option<Vec<u8>>, GitHostError> {
        self.check(repo, "raw")?;
        Ok(self.tree(repo, at, "raw")?.get(path).cloned())
    }
}

/// A shared in-memory host connects to itself, whatever the secret.
impl GitHostConnector for std::sync::Arc<MemoryGitHost> {
    type Host = std::sync::Arc<MemoryGitHost>;

    fn connect(&self, _secret: &HubSecret) -> Result<Self::Host, ConnectError> {
        Ok(self.clone())
    }
}
