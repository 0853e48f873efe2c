//! In-memory adapters for every port: the reference behaviour the real adapters are tested
//! against (see [`super::conformance`]), and fast doubles for the tests of the domain and of the
//! functions. Nothing here is for production: it is compiled only with the `test-util` feature.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::deliveries::{DEFAULT_DELIVERY_RETENTION, DeliveryEntry, DeliveryLog, DeliveryOutcome, DeliveryQuery};
use crate::ids::{CommitId, DeliveryId, RepoRef};
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

/// Registry, sync leases and model store in maps.
#[derive(Default)]
pub struct MemoryStore {
    repos: Mutex<BTreeMap<RepoRef, RepoRecord>>,
    models: Mutex<BTreeMap<(RepoRef, String), ModelRecord>>,
    leases: Mutex<BTreeMap<RepoRef, LeaseRow>>,
    /// How far this store's clock is ahead of the system's (tests expire leases with it).
    skew: Mutex<chrono::TimeDelta>,
    /// Paths whose writes with content are refused, with the reason ([`MemoryStore::refuse`]).
    refused: Mutex<BTreeMap<String, String>>,
    /// The delivery log: each entry and how many times the webhook recorded it.
    deliveries: Mutex<HashMap<DeliveryId, (DeliveryEntry, u32)>>,
    /// Reads of one repository's record ([`MemoryStore::registry_reads`]).
    registry_reads: AtomicUsize,
}

/// A repository's lease as stored: `owner` is `None` once released.
struct LeaseRow {
    owner: Option<LeaseOwner>,
    expires_at: DateTime<Utc>,
    unfinished: bool,
}

impl MemoryStore {
    /// From now on, a write of a model at `path` that carries content is refused with `reason`
    /// ([`StoreError::Refused`]), as DynamoDB refuses an item over its limits; a write without
    /// content (the malformed record the sync writes instead) is accepted.
    pub fn refuse(&self, path: &str, reason: &str) {
        lock(&self.refused).insert(path.to_owned(), reason.to_owned());
    }

    /// Moves this store's clock forward, so leases expire without waiting.
    pub fn advance_clock(&self, by: Duration) {
        *lock(&self.skew) += chrono::TimeDelta::from_std(by).unwrap_or(chrono::TimeDelta::MAX);
    }

    /// Sets a cursor without a lease, as a writer that takes none (an older hubsync) would.
    pub fn overwrite_cursor(&self, repo: &RepoRef, cursor: SyncCursor) {
        if let Some(record) = lock(&self.repos).get_mut(repo) {
            record.cursor = Some(cursor);
        }
    }

    /// How many times one repository's record was read ([`RepoRegistry::repo`]).
    pub fn registry_reads(&self) -> usize {
        self.registry_reads.load(Ordering::SeqCst)
    }

    fn now(&self) -> DateTime<Utc> {
        Utc::now() + *lock(&self.skew)
    }

    /// Runs `f` only if `lease` is still held (the fencing every write goes through).
    fn fenced<T>(&self, lease: &SyncLease, f: impl FnOnce() -> T) -> Result<T, StoreError> {
        let leases = lock(&self.leases);
        match leases.get(&lease.repo) {
            Some(row) if row.owner.as_ref() == Some(&lease.owner) && row.expires_at > self.now() => Ok(f()),
            _ => Err(StoreError::LeaseLost(lease.repo.clone())),
        }
    }

    /// Applies `f` to the repository's record if `lease` is still held and the cursor is still
    /// at `expected` (the conditional update every cursor or resume point write is).
    fn update_at_cursor(
        &self,
        lease: &SyncLease,
        expected: Option<&CommitId>,
        f: impl FnOnce(&mut RepoRecord),
    ) -> Result<(), StoreError> {
        self.fenced(lease, || {
            let mut repos = lock(&self.repos);
            let record = repos
                .get_mut(&lease.repo)
                .ok_or_else(|| StoreError::NotRegistered(lease.repo.clone()))?;
            if record.cursor.as_ref().map(|c| &c.commit) != expected {
                return Err(StoreError::CursorMoved(lease.repo.clone()));
            }
            f(record);
            Ok(())
        })?
    }
}

fn ttl_delta(ttl: Duration) -> chrono::TimeDelta {
    chrono::TimeDelta::from_std(ttl).unwrap_or(chrono::TimeDelta::MAX)
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
                resume: None,
            },
        );
        Ok(true)
    }

    async fn unregister(&self, repo: &RepoRef) -> Result<bool, StoreError> {
        lock(&self.models).retain(|(r, _), _| r != repo);
        lock(&self.leases).remove(repo);
        Ok(lock(&self.repos).remove(repo).is_some())
    }

    async fn repo(&self, repo: &RepoRef) -> Result<Option<RepoRecord>, StoreError> {
        self.registry_reads.fetch_add(1, Ordering::SeqCst);
        Ok(lock(&self.repos).get(repo).cloned())
    }

    async fn repos(&self) -> Result<Vec<RepoRecord>, StoreError> {
        Ok(lock(&self.repos).values().cloned().collect())
    }

    async fn acquire_lease(&self, repo: &RepoRef, owner: &LeaseOwner, ttl: Duration) -> Result<SyncLease, StoreError> {
        let now = self.now();
        let mut leases = lock(&self.leases);
        let previous_unfinished = match leases.get(repo) {
            None => false,
            Some(LeaseRow {
                owner: Some(holder),
                expires_at,
                ..
            }) if *expires_at > now && holder != owner => {
                return Err(StoreError::LeaseHeld {
                    repo: repo.clone(),
                    owner: holder.clone(),
                    until: *expires_at,
                });
            }
            Some(row) if row.owner.as_ref() == Some(owner) => row.unfinished,
            // Released (finished or not), or expired without being released: unfinished.
            Some(row) => row.unfinished || row.owner.is_some(),
        };
        let expires_at = now + ttl_delta(ttl);
        leases.insert(
            repo.clone(),
            LeaseRow {
                owner: Some(owner.clone()),
                expires_at,
                unfinished: previous_unfinished,
            },
        );
        Ok(SyncLease {
            repo: repo.clone(),
            owner: owner.clone(),
            expires_at,
            previous_unfinished,
        })
    }

    async fn renew_lease(&self, lease: &SyncLease, ttl: Duration) -> Result<SyncLease, StoreError> {
        let now = self.now();
        let mut leases = lock(&self.leases);
        match leases.get_mut(&lease.repo) {
            Some(row) if row.owner.as_ref() == Some(&lease.owner) && row.expires_at > now => {
                row.expires_at = now + ttl_delta(ttl);
                Ok(SyncLease {
                    expires_at: row.expires_at,
                    ..lease.clone()
                })
            }
            _ => Err(StoreError::LeaseLost(lease.repo.clone())),
        }
    }

    async fn release_lease(&self, lease: &SyncLease, finished: bool) -> Result<(), StoreError> {
        let now = self.now();
        if let Some(row) = lock(&self.leases).get_mut(&lease.repo)
            && row.owner.as_ref() == Some(&lease.owner)
        {
            row.owner = None;
            row.expires_at = now;
            row.unfinished = !finished;
        }
        Ok(())
    }

    async fn advance_cursor(
        &self,
        lease: &SyncLease,
        expected: Option<&CommitId>,
        cursor: &SyncCursor,
    ) -> Result<(), StoreError> {
        self.update_at_cursor(lease, expected, |record| {
            record.cursor = Some(cursor.clone());
            record.last_error = None;
            record.resume = None;
        })
    }

    async fn record_resume(
        &self,
        lease: &SyncLease,
        expected: Option<&CommitId>,
        resume: &SyncResume,
    ) -> Result<(), StoreError> {
        self.update_at_cursor(lease, expected, |record| record.resume = Some(resume.clone()))
    }

    async fn record_error(&self, repo: &RepoRef, error: &LastError) -> Result<(), StoreError> {
        if let Some(record) = lock(&self.repos).get_mut(repo) {
            record.last_error = Some(error.clone());
        }
        Ok(())
    }
}

/// The delivery log in a map, kept [`DEFAULT_DELIVERY_RETENTION`] by this store's clock.
impl DeliveryLog for MemoryStore {
    async fn record_delivery(&self, entry: &DeliveryEntry) -> Result<(), StoreError> {
        let mut log = lock(&self.deliveries);
        let row = log.entry(entry.id.clone()).or_insert_with(|| (entry.clone(), 0));
        row.1 += 1;
        Ok(())
    }

    async fn record_outcome(&self, entry: &DeliveryEntry, outcome: &DeliveryOutcome) -> Result<(), StoreError> {
        let mut log = lock(&self.deliveries);
        let row = log.entry(entry.id.clone()).or_insert_with(|| (entry.clone(), 0));
        row.0.outcome = Some(outcome.clone());
        Ok(())
    }

    async fn deliveries(&self, query: &DeliveryQuery) -> Result<Vec<DeliveryEntry>, StoreError> {
        let now = self.now();
        let mut entries: Vec<DeliveryEntry> = lock(&self.deliveries)
            .values()
            .filter(|(e, _)| DeliveryEntry::expires_at(e.received_at, DEFAULT_DELIVERY_RETENTION) > now)
            .filter(|(e, _)| query.repo.is_none() || e.repo == query.repo)
            .filter(|(e, _)| query.since.is_none_or(|since| e.received_at >= since))
            .filter(|(e, _)| !query.failed_only || e.is_failure())
            .map(|(e, receipts)| with_duplicates(e, *receipts))
            .collect();
        entries.sort_by(|a, b| (b.received_at, b.id.as_str()).cmp(&(a.received_at, a.id.as_str())));
        entries.truncate(query.limit);
        Ok(entries)
    }

    async fn delivery(&self, id: &DeliveryId) -> Result<Option<DeliveryEntry>, StoreError> {
        let now = self.now();
        Ok(lock(&self.deliveries)
            .get(id)
            .filter(|(e, _)| DeliveryEntry::expires_at(e.received_at, DEFAULT_DELIVERY_RETENTION) > now)
            .map(|(e, receipts)| with_duplicates(e, *receipts)))
    }
}

fn with_duplicates(entry: &DeliveryEntry, receipts: u32) -> DeliveryEntry {
    DeliveryEntry {
        duplicates: receipts.saturating_sub(1),
        ..entry.clone()
    }
}

impl ModelStore for MemoryStore {
    async fn put_model(&self, lease: &SyncLease, record: &ModelRecord) -> Result<(), StoreError> {
        if !record.content.is_empty()
            && let Some(reason) = lock(&self.refused).get(&record.path)
        {
            return Err(StoreError::Refused {
                message: reason.clone(),
                source: None,
            });
        }
        self.fenced(lease, || {
            lock(&self.models).insert((lease.repo.clone(), record.path.clone()), record.clone());
        })
    }

    async fn delete_model(&self, lease: &SyncLease, path: &str) -> Result<bool, StoreError> {
        self.fenced(lease, || {
            lock(&self.models)
                .remove(&(lease.repo.clone(), path.to_owned()))
                .is_some()
        })
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
    /// Each commit's parent: the head it was committed over.
    parents: HashMap<CommitId, CommitId>,
    heads: HashMap<RepoRef, CommitId>,
    counter: u64,
    /// Changes listed per diff before the answer is marked truncated.
    max_changes: Option<usize>,
    /// Errors to return from the next calls.
    failures: Vec<GitHostErrorKind>,
    /// While set, every call fails as a server answering 503 does.
    unavailable: bool,
    /// Every call answered, in order: `default branch`, `changes`, `files`, `raw {path}`.
    calls: Vec<String>,
    /// `Some(n)`: raw files are sent without their size, `n` bytes at a time.
    chunked: Option<usize>,
    /// Bytes of the raw files being read now, and the most there ever were.
    reading: u64,
    most_reading: u64,
    /// A raw file whose next fetch never completes, and what it notifies once it is reached.
    stalled: Option<(String, Arc<tokio::sync::Notify>)>,
}

impl MemoryGitHost {
    /// Records a new commit on the default branch (`refs/heads/main`) holding exactly `files`.
    pub fn commit(&self, repo: &RepoRef, files: BTreeMap<String, Vec<u8>>) -> CommitId {
        let mut s = lock(&self.inner);
        s.counter += 1;
        let id = CommitId::parse(&format!("{:040x}", s.counter)).unwrap_or_else(|_| unreachable!("40 hex digits"));
        s.commits.insert(id.clone(), files);
        if let Some(parent) = s.heads.insert(repo.clone(), id.clone()) {
            s.parents.insert(id.clone(), parent);
        }
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

    /// With `Some(n)`, raw files are sent as a server that does not announce their size does:
    /// `n` bytes at a time (the reader yields between them), each charged to the admission before
    /// it is kept. With `None` (the default), a file's size is announced before it is read.
    pub fn set_chunked(&self, chunk: Option<usize>) {
        lock(&self.inner).chunked = chunk.map(|n| n.max(1));
    }

    /// The next fetch of the raw file `path` never completes (a host that stops answering in the
    /// middle of a sync); the notify returned is signalled once it is reached. Later fetches are
    /// answered.
    pub fn stall_next_fetch_of(&self, path: &str) -> Arc<tokio::sync::Notify> {
        let reached = Arc::new(tokio::sync::Notify::new());
        lock(&self.inner).stalled = Some((path.to_owned(), reached.clone()));
        reached
    }

    /// The most bytes of raw files ever read at once: from when a file's bytes are charged to
    /// its admission until its read returns.
    pub fn most_bytes_read_at_once(&self) -> u64 {
        lock(&self.inner).most_reading
    }

    /// Every call made so far, in order: `default branch`, `changes`, `files`, `raw {path}`
    /// (failed ones too), so tests count requests as a real host would see them.
    pub fn calls(&self) -> Vec<String> {
        lock(&self.inner).calls.clone()
    }

    /// Forgets the calls made so far.
    pub fn clear_calls(&self) {
        lock(&self.inner).calls.clear();
    }

    fn check(&self, repo: &RepoRef, operation: &str) -> Result<(), GitHostError> {
        let mut s = lock(&self.inner);
        s.calls.push(operation.to_owned());
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

    /// Recorded as `files from {start}`.
    async fn list_files_from(&self, repo: &RepoRef, at: &CommitId, start: u64) -> Result<Vec<String>, GitHostError> {
        let operation = format!("files from {start}");
        self.check(repo, &operation)?;
        let skipped = usize::try_from(start).unwrap_or(usize::MAX);
        Ok(self.tree(repo, at, &operation)?.into_keys().skip(skipped).collect())
    }

    async fn raw_file(
        &self,
        repo: &RepoRef,
        path: &str,
        at: &CommitId,
        limit: u64,
        admission: &mut Admission,
    ) -> Result<Option<RawFile>, GitHostError> {
        self.check(repo, &format!("raw {path}"))?;
        let stalled = {
            let mut s = lock(&self.inner);
            match s.stalled.take() {
                Some((stalled, reached)) if stalled == path => Some(reached),
                other => {
                    s.stalled = other;
                    None
                }
            }
        };
        if let Some(reached) = stalled {
            reached.notify_one();
            std::future::pending::<()>().await;
        }
        let Some(bytes) = self.tree(repo, at, "raw")?.remove(path) else {
            return Ok(None);
        };
        let size = bytes.len() as u64;
        let mut reading = Reading { host: self, bytes: 0 };
        let Some(chunk) = lock(&self.inner).chunked else {
            if size > limit {
                return Ok(Some(RawFile::TooLarge(Oversize::Announced(size))));
            }
            admission.announce(size).await;
            reading.add(size);
            // The body takes a turn to arrive, as over a network.
            yield_now().await;
            return Ok(Some(RawFile::Content(bytes::Bytes::from(bytes))));
        };
        // Read as a body of unknown size: no further than one byte past the limit.
        let mut read = 0u64;
        while read < size {
            let upto = (read + chunk as u64).min(size).min(limit.saturating_add(1));
            admission.reading(upto).await;
            reading.add(upto - read);
            read = upto;
            if read > limit {
                return Ok(Some(RawFile::TooLarge(Oversize::Exceeded { limit })));
            }
            yield_now().await;
        }
        Ok(Some(RawFile::Content(bytes::Bytes::from(bytes))))
    }

    async fn ancestry(&self, repo: &RepoRef, commit: &CommitId, head: &CommitId) -> Result<Ancestry, GitHostError> {
        self.check(repo, "ancestry")?;
        let s = lock(&self.inner);
        if !s.commits.contains_key(commit) {
            return Ok(Ancestry::Unknown);
        }
        let mut at = Some(head);
        while let Some(c) = at {
            if c == commit {
                return Ok(Ancestry::Ancestor);
            }
            at = s.parents.get(c);
        }
        Ok(Ancestry::NotAncestor)
    }
}

/// Lets the other tasks run once (as a read waiting for the network does).
async fn yield_now() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if std::mem::replace(&mut yielded, true) {
            std::task::Poll::Ready(())
        } else {
            cx.waker().wake_by_ref();
            std::task::Poll::Pending
        }
    })
    .await
}

/// The bytes of one raw file being read, counted in [`MemoryGitState::reading`] until it returns.
struct Reading<'h> {
    host: &'h MemoryGitHost,
    bytes: u64,
}

impl Reading<'_> {
    fn add(&mut self, bytes: u64) {
        self.bytes += bytes;
        let mut s = lock(&self.host.inner);
        s.reading += bytes;
        s.most_reading = s.most_reading.max(s.reading);
    }
}

impl Drop for Reading<'_> {
    fn drop(&mut self) {
        lock(&self.host.inner).reading -= self.bytes;
    }
}

/// A shared in-memory host connects to itself, whatever the secret.
impl GitHostConnector for std::sync::Arc<MemoryGitHost> {
    type Host = std::sync::Arc<MemoryGitHost>;

    fn connect(&self, _secret: &HubSecret) -> Result<Self::Host, ConnectError> {
        Ok(self.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ModelStatus, sha256_hex};

    const TTL: Duration = Duration::from_secs(60);

    fn repo() -> RepoRef {
        RepoRef::parse("DATA/models").unwrap_or_else(|_| unreachable!("a valid name"))
    }

    fn model(path: &str) -> ModelRecord {
        let commit = CommitId::parse(&"a".repeat(40)).unwrap_or_else(|_| unreachable!("40 hex digits"));
        let status = ModelStatus::Malformed { error: "test".into() };
        ModelRecord::new(path.into(), commit, Utc::now(), status, b"{}".to_vec())
    }

    async fn registered() -> MemoryStore {
        let store = MemoryStore::default();
        store.register(&repo()).await.expect("register");
        store
    }

    #[tokio::test]
    async fn a_free_lease_is_acquired_and_a_held_one_names_its_holder_and_expiry() {
        // Arrange
        let store = registered().await;
        let (a, b) = (LeaseOwner::generate("a"), LeaseOwner::generate("b"));

        // Act
        let lease = store.acquire_lease(&repo(), &a, TTL).await.expect("free");
        let refused = store.acquire_lease(&repo(), &b, TTL).await;

        // Assert
        assert!(!lease.previous_unfinished);
        match refused {
            Err(StoreError::LeaseHeld { owner, until, .. }) => {
                assert_eq!(owner, a);
                assert_eq!(until, lease.expires_at);
            }
            other => panic!("expected LeaseHeld, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn an_expired_lease_is_taken_over_and_marked_unfinished() {
        // Arrange
        let store = registered().await;
        let first = store
            .acquire_lease(&repo(), &LeaseOwner::generate("a"), TTL)
            .await
            .expect("free");
        store.advance_clock(TTL + Duration::from_secs(1));

        // Act
        let second = store.acquire_lease(&repo(), &LeaseOwner::generate("b"), TTL).await;

        // Assert
        let second = second.expect("expired leases are free");
        assert!(second.previous_unfinished, "the first holder never released");
        assert!(second.expires_at > first.expires_at);
    }

    #[tokio::test]
    async fn a_renewed_lease_outlives_its_first_expiry() {
        // Arrange
        let store = registered().await;
        let lease = store
            .acquire_lease(&repo(), &LeaseOwner::generate("a"), TTL)
            .await
            .expect("free");
        store.advance_clock(TTL / 2);

        // Act
        let renewed = store.renew_lease(&lease, TTL).await.expect("still held");
        store.advance_clock(TTL * 3 / 4);

        // Assert
        assert!(renewed.expires_at > lease.expires_at);
        assert!(matches!(
            store.acquire_lease(&repo(), &LeaseOwner::generate("b"), TTL).await,
            Err(StoreError::LeaseHeld { .. })
        ));
        store.put_model(&renewed, &model("a.json")).await.expect("still held");
    }

    #[tokio::test]
    async fn a_released_lease_is_free_and_remembers_whether_its_sync_finished() {
        // Arrange
        let store = registered().await;
        let a = store
            .acquire_lease(&repo(), &LeaseOwner::generate("a"), TTL)
            .await
            .expect("free");

        // Act
        store.release_lease(&a, false).await.expect("release");
        let b = store
            .acquire_lease(&repo(), &LeaseOwner::generate("b"), TTL)
            .await
            .expect("released");
        store.release_lease(&b, true).await.expect("release");
        let c = store
            .acquire_lease(&repo(), &LeaseOwner::generate("c"), TTL)
            .await
            .expect("released");

        // Assert
        assert!(b.previous_unfinished, "a released its lease unfinished");
        assert!(!c.previous_unfinished, "b finished");
    }

    #[tokio::test]
    async fn a_writer_that_lost_its_lease_cannot_write_delete_or_move_the_cursor() {
        // Arrange
        let store = registered().await;
        let lost = store
            .acquire_lease(&repo(), &LeaseOwner::generate("a"), TTL)
            .await
            .expect("free");
        store.put_model(&lost, &model("kept.json")).await.expect("held");
        store.advance_clock(TTL * 2);
        let taker = store
            .acquire_lease(&repo(), &LeaseOwner::generate("b"), TTL)
            .await
            .expect("expired");
        let cursor = SyncCursor {
            commit: CommitId::parse(&"b".repeat(40)).expect("40 hex digits"),
            synced_at: Utc::now(),
            stats: SyncStats::default(),
            hubignore: None,
        };

        // Act
        let put = store.put_model(&lost, &model("stale.json")).await;
        let delete = store.delete_model(&lost, "kept.json").await;
        let advance = store.advance_cursor(&lost, None, &cursor).await;
        let renew = store.renew_lease(&lost, TTL).await;
        store
            .release_lease(&lost, true)
            .await
            .expect("a lost lease is left alone");

        // Assert
        for result in [put.map(|_| ()), delete.map(|_| ()), advance, renew.map(|_| ())] {
            let error = result.expect_err("fenced");
            assert!(matches!(error, StoreError::LeaseLost(_)), "{error:?}");
            assert!(error.is_retryable());
        }
        let kept = store.get_model(&repo(), "kept.json").await.expect("read");
        assert_eq!(kept.map(|m| m.content_sha256), Some(sha256_hex(b"{}")));
        assert_eq!(store.get_model(&repo(), "stale.json").await.expect("read"), None);
        store
            .put_model(&taker, &model("new.json"))
            .await
            .expect("the taker writes");
    }
}
