//! Group commit of model writes. A full sync writes models several at a time (its fetch
//! concurrency) through one connection; one transaction each means one lock round, one lease
//! check and one commit (the table's and the index's pages written to the WAL again) per model.
//! Here a model write, once compressed, is queued, and the hub's writer thread takes the
//! connection and writes everything queued by then in one transaction, then answers each write
//! (issue 11: the sync's own CPU time).
//!
//! The writer is a thread of its own, started by the first write and stopped when the hub is
//! dropped: no caller writes the models of others. (When the first caller of a burst was the
//! writer, it wrote until the queue was empty, so under a steady stream of puts its own answer,
//! and the fetch slot of its sync, waited for every model queued after its own.)
//!
//! What each write keeps as its own:
//! - **Its answer**, given only after the transaction holding it is committed: a caller that
//!   writes the cursor after its files (the sync does) cannot commit it before them.
//! - **Its refusal**: a row is one `INSERT` statement, which SQLite applies whole or not at all,
//!   so a row that fails leaves the other rows of its group in the transaction and gets its own
//!   error; only an error that ends the whole transaction (SQLite rolls back on some I/O and
//!   memory errors) or a failed commit fails every write of the group.
//! - **Its lease**: checked once per lease in the transaction that writes; a write under a lease
//!   no longer held writes nothing and gets [`StoreError::LeaseLost`], whatever else is grouped
//!   with it.
//! - **Its place**: rows are written in the order they were queued, by one thread.

use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};

use hubsync_core::ports::{StoreError, SyncLease};
use rusqlite::{Connection, TransactionBehavior, params};
use tokio::sync::oneshot;

use crate::queue::millis;
use crate::store::{ENCODING_ZSTD, Packer, holds};
use crate::{Inner, SqliteError};

/// One model row ready to be written: everything computed, the content compressed.
pub(crate) struct ModelRow {
    pub lease: SyncLease,
    pub path: String,
    pub commit: String,
    pub synced_at: String,
    pub status: String,
    pub content_sha256: String,
    pub size: i64,
    /// The compressed content (`packed.out`), its buffer given back to the pool once written.
    pub packed: Packer,
}

/// The answer to one queued write.
pub(crate) type Answer = oneshot::Receiver<Result<(), StoreError>>;

type Queued = (ModelRow, oneshot::Sender<Result<(), StoreError>>);

/// The writes waiting for the connection; dropped with the hub, which stops its writer thread.
#[derive(Default)]
pub(crate) struct Writes {
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    state: Mutex<Waiting>,
    /// Signalled when a row is queued while the writer sleeps, and when the hub is dropped.
    queued: Condvar,
    /// Groups written so far (tests check that writes were grouped).
    #[cfg(test)]
    groups: std::sync::atomic::AtomicUsize,
    /// Called on the writer thread after each group is answered.
    #[cfg(test)]
    after_group: Mutex<Option<Box<dyn FnMut() + Send>>>,
}

#[derive(Default)]
struct Waiting {
    rows: Vec<Queued>,
    /// The writer thread runs: it takes every row queued.
    writer: bool,
    /// It waits for a row (a new row must wake it).
    sleeping: bool,
    /// The hub is gone: the writer stops.
    closed: bool,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, Waiting> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Writes {
    /// Rows queued and not yet taken by the writer.
    #[cfg(test)]
    pub(crate) fn waiting(&self) -> usize {
        self.shared.state().rows.len()
    }

    /// Groups written so far.
    #[cfg(test)]
    pub(crate) fn groups(&self) -> usize {
        self.shared.groups.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Calls `hook` on the writer thread after each group is answered (`None`: no more).
    #[cfg(test)]
    pub(crate) fn after_group(&self, hook: Option<Box<dyn FnMut() + Send>>) {
        *self.shared.after_group.lock().unwrap_or_else(|p| p.into_inner()) = hook;
    }
}

impl Drop for Writes {
    fn drop(&mut self) {
        self.shared.state().closed = true;
        self.shared.queued.notify_all();
    }
}

/// Queues `row` for the writer thread (started if none runs). It does not wait for the write:
/// the answer comes once the row's group is committed (or failed). Call it off the async task
/// (it may start a thread).
pub(crate) fn submit(inner: &Arc<Inner>, row: ModelRow) -> Answer {
    let (answer, answered) = oneshot::channel();
    let shared = &inner.writes.shared;
    let mut waiting = shared.state();
    waiting.rows.push((row, answer));
    if waiting.writer {
        let wake = std::mem::take(&mut waiting.sleeping);
        drop(waiting);
        if wake {
            shared.queued.notify_one();
        }
        return answered;
    }
    waiting.writer = true;
    drop(waiting);
    let (hub, writes) = (Arc::downgrade(inner), shared.clone());
    let started = std::thread::Builder::new()
        .name("hubsync-sqlite-writer".into())
        .spawn(move || write_queued(&hub, &writes));
    if let Err(e) = started {
        // Nothing will write the rows queued meanwhile: each gets the error.
        let rows = {
            let mut waiting = shared.state();
            waiting.writer = false;
            std::mem::take(&mut waiting.rows)
        };
        let failed = || StoreError::Backend {
            message: format!("could not start the database writer: {e}"),
            retryable: true,
            source: None,
        };
        for (_, answer) in rows {
            let _ = answer.send(Err(failed()));
        }
    }
    answered
}

/// The writer thread: writes what is queued in groups, sleeping while nothing is, until the hub
/// is dropped.
fn write_queued(hub: &Weak<Inner>, shared: &Shared) {
    let _stop = StopWriting(shared);
    loop {
        {
            let mut waiting = shared.state();
            while waiting.rows.is_empty() && !waiting.closed {
                waiting.sleeping = true;
                waiting = shared.queued.wait(waiting).unwrap_or_else(|p| p.into_inner());
            }
            waiting.sleeping = false;
            if waiting.rows.is_empty() {
                return;
            }
        }
        let Some(inner) = hub.upgrade() else {
            return;
        };
        // The connection first, then the rows: what is queued while this thread waits for the
        // connection joins this group.
        let mut conn = inner.conn();
        let group = std::mem::take(&mut shared.state().rows);
        let (rows, answers): (Vec<ModelRow>, Vec<_>) = group.into_iter().unzip();
        let outcomes = write_group(&mut conn, millis(inner.now()), &rows);
        drop(conn);
        drop(inner);
        #[cfg(test)]
        shared.groups.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        for (answer, outcome) in answers.into_iter().zip(outcomes) {
            // The caller may have gone (its sync cancelled): the row is written all the same.
            let _ = answer.send(outcome);
        }
        for row in rows {
            crate::store::give_back(row.packed);
        }
        #[cfg(test)]
        if let Some(hook) = shared.after_group.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
            hook();
        }
    }
}

/// Lets the queue go when the writer stops (the hub dropped) or unwinds: the rows it had not
/// taken are dropped (their callers get an error) and the next write starts a writer again.
struct StopWriting<'a>(&'a Shared);

impl Drop for StopWriting<'_> {
    fn drop(&mut self) {
        let mut waiting = self.0.state();
        waiting.rows.clear();
        waiting.writer = false;
        waiting.sleeping = false;
    }
}

/// The error of a write whose group failed as a whole, one per write.
fn group_failed(e: &SqliteError) -> StoreError {
    StoreError::Backend {
        message: e.to_string(),
        retryable: e.is_retryable(),
        source: None,
    }
}

/// The answer when the writer went away without one (it panicked).
pub(crate) fn unanswered() -> StoreError {
    StoreError::Backend {
        message: "the database writer stopped before writing this model".into(),
        retryable: true,
        source: None,
    }
}

/// Writes `rows` in one immediate transaction, each under its own lease (checked once per lease
/// at `now`); one outcome per row, in order.
fn write_group(conn: &mut Connection, now: i64, rows: &[ModelRow]) -> Vec<Result<(), StoreError>> {
    let fail_all = |e: SqliteError| rows.iter().map(|_| Err(group_failed(&e))).collect();
    let tx = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
        Ok(tx) => tx,
        Err(e) => return fail_all(e.into()),
    };
    let mut leases: Vec<(&SyncLease, bool)> = Vec::new();
    let mut outcomes = Vec::with_capacity(rows.len());
    for row in rows {
        let held = match leases.iter().find(|(lease, _)| *lease == &row.lease) {
            Some(&(_, held)) => held,
            None => match holds(&tx, &row.lease, now) {
                Ok(held) => {
                    leases.push((&row.lease, held));
                    held
                }
                Err(e) => return fail_all(e),
            },
        };
        if !held {
            outcomes.push(Err(StoreError::LeaseLost(row.lease.repo.clone())));
            continue;
        }
        match insert(&tx, row) {
            Ok(()) => outcomes.push(Ok(())),
            // SQLite ended the transaction: the rows before this one are gone too.
            Err(e) if tx.is_autocommit() => return fail_all(e),
            Err(e) => outcomes.push(Err(e.into())),
        }
    }
    if let Err(e) = tx.commit() {
        return fail_all(e.into());
    }
    outcomes
}

fn insert(tx: &rusqlite::Transaction<'_>, row: &ModelRow) -> Result<(), SqliteError> {
    tx.prepare_cached(
        "INSERT INTO models (repo, path, commit_id, synced_at, status, content_sha256, size, encoding, content)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
         ON CONFLICT (repo, path) DO UPDATE SET
            commit_id = excluded.commit_id, synced_at = excluded.synced_at, status = excluded.status,
            content_sha256 = excluded.content_sha256, size = excluded.size,
            encoding = excluded.encoding, content = excluded.content",
    )?
    .execute(params![
        row.lease.repo.to_string(),
        row.path,
        row.commit,
        row.synced_at,
        row.status,
        row.content_sha256,
        row.size,
        ENCODING_ZSTD,
        row.packed.out,
    ])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use hubsync_core::ids::RepoRef;
    use hubsync_core::ports::{LeaseOwner, ModelStore, RepoRegistry, StoreError, SyncLease};
    use hubsync_core::testing::conformance::record;

    use crate::{SqliteHub, store::row_of};

    use super::{Answer, submit};

    use std::sync::{Arc, Mutex};

    async fn registered(hub: &SqliteHub, name: &str) -> (RepoRef, SyncLease) {
        let repo = RepoRef::parse(name).unwrap();
        hub.register(&repo).await.unwrap();
        let owner = LeaseOwner::from_stored("group writer");
        let lease = hub
            .acquire_lease(&repo, &owner, Duration::from_secs(3600))
            .await
            .unwrap();
        (repo, lease)
    }

    /// Queues one write per `(lease, path)` while the test holds the connection, so that they
    /// all wait for it, then lets it go; the answers, in order.
    #[allow(clippy::await_holding_lock)] // held on purpose: the writes queue behind it
    async fn written_together(hub: &SqliteHub, writes: Vec<(SyncLease, String)>) -> Vec<Result<(), StoreError>> {
        let count = writes.len();
        let held = hub.inner.conn();
        let mut answers: Vec<tokio::task::JoinHandle<Answer>> = Vec::new();
        for (lease, path) in writes {
            let inner = hub.inner.clone();
            let row = row_of(
                lease.clone(),
                record(&path, format!("{{\"path\":{path:?}}}").into_bytes()),
            )
            .unwrap();
            answers.push(tokio::task::spawn_blocking(move || submit(&inner, row)));
        }
        // The first write waits for the connection with its row queued, the others queue theirs.
        while hub.inner.writes.waiting() < count {
            tokio::task::yield_now().await;
        }
        let before = hub.inner.writes.groups();
        drop(held);
        let mut outcomes = Vec::new();
        for answer in answers {
            outcomes.push(answer.await.unwrap().await.unwrap());
        }
        assert_eq!(hub.inner.writes.groups() - before, 1, "one group");
        outcomes
    }

    async fn stored_paths(hub: &SqliteHub, repo: &RepoRef) -> Vec<String> {
        hub.list_models(repo)
            .await
            .unwrap()
            .into_iter()
            .map(|m| m.path)
            .collect()
    }

    #[tokio::test]
    async fn writes_queued_at_once_are_committed_in_one_group_and_each_answered() {
        let hub = SqliteHub::in_memory().unwrap();
        let (repo, lease) = registered(&hub, "PRJ/one").await;
        let paths: Vec<String> = (0..6).map(|i| format!("m{i}.hck.json")).collect();

        let outcomes = written_together(&hub, paths.iter().map(|p| (lease.clone(), p.clone())).collect()).await;

        assert!(outcomes.iter().all(Result::is_ok), "{outcomes:?}");
        let stored = stored_paths(&hub, &repo).await;
        assert_eq!(stored, paths);
    }

    #[tokio::test]
    async fn a_write_refused_by_the_database_fails_alone_and_the_rest_of_its_group_is_written() {
        let hub = SqliteHub::in_memory().unwrap();
        let (repo, lease) = registered(&hub, "PRJ/one").await;
        hub.inner
            .conn()
            .execute_batch(
                "CREATE TEMP TRIGGER refuse BEFORE INSERT ON models WHEN NEW.path = 'refused.hck.json'
                 BEGIN SELECT RAISE(ABORT, 'refused by the test'); END",
            )
            .unwrap();
        let paths = ["a.hck.json", "refused.hck.json", "b.hck.json"];

        let outcomes = written_together(&hub, paths.iter().map(|p| (lease.clone(), p.to_string())).collect()).await;

        assert!(outcomes[0].is_ok() && outcomes[2].is_ok(), "{outcomes:?}");
        let refused = outcomes[1].as_ref().unwrap_err().to_string();
        assert!(refused.contains("refused by the test"), "{refused}");
        let stored = stored_paths(&hub, &repo).await;
        assert_eq!(stored, ["a.hck.json", "b.hck.json"]);
    }

    #[tokio::test]
    async fn writes_under_a_lost_lease_write_nothing_while_another_lease_of_the_group_writes() {
        let hub = SqliteHub::in_memory().unwrap();
        let (lost_repo, lost) = registered(&hub, "PRJ/lost").await;
        let (kept_repo, kept) = registered(&hub, "PRJ/kept").await;
        hub.release_lease(&lost, false).await.unwrap();
        let writes = vec![
            (lost.clone(), "a.hck.json".to_owned()),
            (kept.clone(), "a.hck.json".to_owned()),
            (lost.clone(), "b.hck.json".to_owned()),
        ];

        let outcomes = written_together(&hub, writes).await;

        assert!(
            matches!(&outcomes[0], Err(StoreError::LeaseLost(r)) if *r == lost_repo),
            "{outcomes:?}"
        );
        assert!(outcomes[1].is_ok(), "{outcomes:?}");
        assert!(
            matches!(&outcomes[2], Err(StoreError::LeaseLost(r)) if *r == lost_repo),
            "{outcomes:?}"
        );
        assert!(hub.list_models(&lost_repo).await.unwrap().is_empty());
        assert_eq!(hub.list_models(&kept_repo).await.unwrap().len(), 1);
    }

    #[tokio::test]
    #[allow(clippy::await_holding_lock)] // held on purpose: the writes queue behind it
    async fn a_write_is_answered_only_once_its_group_is_committed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hub.db");
        let hub = SqliteHub::open(&path).unwrap();
        let (repo, lease) = registered(&hub, "PRJ/one").await;
        let held = hub.inner.conn();
        let (inner, row) = (
            hub.inner.clone(),
            row_of(lease.clone(), record("a.hck.json", b"{}".to_vec())).unwrap(),
        );
        let queued = tokio::task::spawn_blocking(move || submit(&inner, row));
        while hub.inner.writes.waiting() < 1 {
            tokio::task::yield_now().await;
        }
        let (inner, row) = (
            hub.inner.clone(),
            row_of(lease.clone(), record("b.hck.json", b"{}".to_vec())).unwrap(),
        );
        let mut follower = tokio::task::spawn_blocking(move || submit(&inner, row)).await.unwrap();

        let early = follower.try_recv();
        drop(held);
        queued.await.unwrap().await.unwrap().unwrap();
        if early.is_err() {
            follower.await.unwrap().unwrap();
        }

        assert!(early.is_err(), "answered before the commit: {early:?}");
        let reader = rusqlite::Connection::open(&path).unwrap();
        let rows: i64 = reader
            .query_row("SELECT count(*) FROM models WHERE repo = ?1", [repo.to_string()], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(rows, 2, "both visible to another connection once answered");
    }

    #[tokio::test]
    async fn a_put_is_not_held_to_write_the_groups_of_puts_that_keep_coming_after_it() {
        // Arrange: after each group is written, another put arrives (six groups in all), and the
        // thread each group is written on is noted.
        let hub = SqliteHub::in_memory().unwrap();
        let (repo, lease) = registered(&hub, "PRJ/one").await;
        let writers = Arc::new(Mutex::new(Vec::new()));
        let (hub_ref, more, noted) = (Arc::downgrade(&hub.inner), lease.clone(), writers.clone());
        hub.inner.writes.after_group(Some(Box::new(move || {
            let mut noted = noted.lock().unwrap();
            noted.push(std::thread::current().id());
            if let Some(inner) = hub_ref.upgrade().filter(|_| noted.len() < 6) {
                let path = format!("more-{}.hck.json", noted.len());
                let _answer = submit(&inner, row_of(more.clone(), record(&path, b"{}".to_vec())).unwrap());
            }
        })));
        let (inner, row) = (
            hub.inner.clone(),
            row_of(lease.clone(), record("first.hck.json", b"{}".to_vec())).unwrap(),
        );

        // Act
        let (submitter, answer) =
            tokio::task::spawn_blocking(move || (std::thread::current().id(), submit(&inner, row)))
                .await
                .unwrap();
        answer.await.unwrap().unwrap();

        // Assert
        let written_by_submitter = writers.lock().unwrap().iter().filter(|t| **t == submitter).count();
        assert!(
            written_by_submitter <= 1,
            "the put's own thread wrote {written_by_submitter} groups before its caller had it back"
        );
        assert!(stored_paths(&hub, &repo).await.contains(&"first.hck.json".to_owned()));
        hub.inner.writes.after_group(None);
    }

    #[tokio::test]
    async fn the_writer_thread_stops_once_the_hub_is_dropped() {
        let hub = SqliteHub::in_memory().unwrap();
        let (_, lease) = registered(&hub, "PRJ/one").await;
        let (inner, row) = (
            hub.inner.clone(),
            row_of(lease, record("a.hck.json", b"{}".to_vec())).unwrap(),
        );
        let answer = tokio::task::spawn_blocking(move || submit(&inner, row)).await.unwrap();
        answer.await.unwrap().unwrap();
        let shared = Arc::downgrade(&hub.inner.writes.shared);

        drop(hub);

        // The writer thread holds the queue until it returns; a writer that never does fails the
        // test instead of hanging it.
        let bound = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while shared.strong_count() > 0 {
            assert!(std::time::Instant::now() < bound, "the writer thread still runs");
            std::thread::yield_now();
        }
    }
}
