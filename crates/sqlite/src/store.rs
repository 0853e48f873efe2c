//! [`RepoRegistry`] and [`ModelStore`] over the `repos` and `models` tables, with the semantics of
//! `hubsync_core::testing::memory::MemoryStore`. Model content is compressed at rest (zstd;
//! rows written zlib-compressed by earlier versions still read) and checked against its SHA-256
//! when read back, so a damaged row is reported as corrupt instead of served.
//!
//! The sync lease of a repository is a `sync_leases` row; every model write and delete and the
//! cursor move check it in the same transaction, so two processes on one database file cannot
//! both write a repository.

use std::io::Read;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use flate2::read::ZlibDecoder;
use hubsync_core::ids::{CommitId, RepoRef};
use hubsync_core::model::{ModelRecord, ModelStatus, sha256_hex};
use hubsync_core::ports::{
    LastError, LeaseOwner, ModelStore, ModelSummary, RepoRecord, RepoRegistry, StoreError, SyncCursor, SyncLease,
    SyncResume, off_task,
};
use rusqlite::{OptionalExtension, Row, Transaction, TransactionBehavior, params};

use crate::error::corrupt;
use crate::group::{Answer, ModelRow, submit, unanswered};
use crate::queue::{duration_millis, from_millis, millis};
use crate::{SqliteError, SqliteHub};

/// How `models.content` is compressed: zstd, written since issue 11.
pub(crate) const ENCODING_ZSTD: &str = "zstd";
/// Written before zstd; still read.
const ENCODING_ZLIB: &str = "zlib";
/// zstd's fastest positive level.
const ZSTD_LEVEL: i32 = 1;

pub(crate) fn to_text(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

pub(crate) fn from_text(what: &str, s: &str) -> Result<DateTime<Utc>, SqliteError> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| corrupt(format!("{what} {s:?}"), e))
}

fn json<T: serde::Serialize>(value: &T) -> Result<String, SqliteError> {
    serde_json::to_string(value).map_err(|e| corrupt("value not serializable", e))
}

fn parse_json<T: serde::de::DeserializeOwned>(what: &str, s: &str) -> Result<T, SqliteError> {
    serde_json::from_str(s).map_err(|e| corrupt(what, e))
}

/// A `repos` row as read, before it is checked.
struct RepoRow {
    repo: String,
    registered_at: String,
    cursor: Option<String>,
    last_error: Option<String>,
    resume: Option<String>,
}

const REPO_COLUMNS: &str = "repo, registered_at, cursor, last_error, resume";

impl RepoRow {
    fn read(row: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            repo: row.get(0)?,
            registered_at: row.get(1)?,
            cursor: row.get(2)?,
            last_error: row.get(3)?,
            resume: row.get(4)?,
        })
    }

    fn into_record(self) -> Result<RepoRecord, SqliteError> {
        let repo = RepoRef::parse(&self.repo).map_err(|e| corrupt("repository name", e))?;
        Ok(RepoRecord {
            registered_at: from_text("registered_at", &self.registered_at)?,
            cursor: self
                .cursor
                .map(|c| parse_json::<SyncCursor>(&format!("cursor of {repo}"), &c))
                .transpose()?,
            last_error: self
                .last_error
                .map(|e| parse_json::<LastError>(&format!("last error of {repo}"), &e))
                .transpose()?,
            resume: self
                .resume
                .map(|r| parse_json::<SyncResume>(&format!("resume point of {repo}"), &r))
                .transpose()?,
            repo,
        })
    }
}

impl SqliteHub {
    /// Runs `update` (given the repository and the expected cursor commit, answering the number
    /// of rows it changed) in one transaction, only while `lease` is held: the conditional write
    /// every cursor or resume point change is.
    async fn update_at_cursor<F>(
        &self,
        lease: &SyncLease,
        expected: Option<&CommitId>,
        update: F,
    ) -> Result<(), StoreError>
    where
        F: FnOnce(&Transaction<'_>, &str, Option<&str>) -> rusqlite::Result<usize> + Send + 'static,
    {
        let (lease, expected) = (lease.clone(), expected.map(|c| c.to_string()));
        self.blocking(move |inner| {
            let repo = lease.repo.clone();
            let now = millis(inner.now());
            let mut conn = inner.conn();
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            if !holds(&tx, &lease, now)? {
                return Ok(Err(StoreError::LeaseLost(repo)));
            }
            let updated = update(&tx, &repo.to_string(), expected.as_deref())?;
            let outcome = if updated == 1 {
                Ok(())
            } else {
                Err(cursor_mismatch(&tx, repo)?)
            };
            tx.commit()?;
            Ok(outcome)
        })
        .await?
    }
}

/// Why an update conditional on the cursor matched no row: the cursor moved, or the repository
/// is no longer registered.
fn cursor_mismatch(tx: &rusqlite::Transaction<'_>, repo: RepoRef) -> rusqlite::Result<StoreError> {
    let registered = tx
        .query_row("SELECT 1 FROM repos WHERE repo = ?1", [repo.to_string()], |_| Ok(()))
        .optional()?
        .is_some();
    Ok(if registered {
        StoreError::CursorMoved(repo)
    } else {
        StoreError::NotRegistered(repo)
    })
}

/// Whether `lease` is still held, read inside the transaction that is about to write.
pub(crate) fn holds(tx: &Transaction<'_>, lease: &SyncLease, now: i64) -> Result<bool, SqliteError> {
    Ok(tx
        .prepare_cached("SELECT 1 FROM sync_leases WHERE repo = ?1 AND owner = ?2 AND expires_at > ?3")?
        .query_row(params![lease.repo.to_string(), lease.owner.as_str(), now], |_| Ok(()))
        .optional()?
        .is_some())
}

/// Runs `write` in one immediate transaction if `lease` is still held; [`StoreError::LeaseLost`]
/// (and nothing written) otherwise.
fn fenced<T>(
    inner: &crate::Inner,
    lease: &SyncLease,
    write: impl FnOnce(&Transaction<'_>) -> Result<T, SqliteError>,
) -> Result<Result<T, StoreError>, SqliteError> {
    let now = millis(inner.now());
    let mut conn = inner.conn();
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    if !holds(&tx, lease, now)? {
        return Ok(Err(StoreError::LeaseLost(lease.repo.clone())));
    }
    let value = write(&tx)?;
    tx.commit()?;
    Ok(Ok(value))
}

impl RepoRegistry for SqliteHub {
    async fn register(&self, repo: &RepoRef) -> Result<bool, StoreError> {
        let repo = repo.clone();
        Ok(self
            .blocking(move |inner| {
                let now = to_text(&inner.now());
                let added = inner.conn().execute(
                    "INSERT INTO repos (repo, project, slug, registered_at) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (repo) DO NOTHING",
                    params![repo.to_string(), repo.project(), repo.slug(), now],
                )?;
                Ok(added == 1)
            })
            .await?)
    }

    async fn unregister(&self, repo: &RepoRef) -> Result<bool, StoreError> {
        let key = repo.to_string();
        Ok(self
            .blocking(move |inner| {
                let mut conn = inner.conn();
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                tx.execute("DELETE FROM models WHERE repo = ?1", [&key])?;
                tx.execute("DELETE FROM sync_leases WHERE repo = ?1", [&key])?;
                let removed = tx.execute("DELETE FROM repos WHERE repo = ?1", [&key])?;
                tx.commit()?;
                Ok(removed == 1)
            })
            .await?)
    }

    async fn repo(&self, repo: &RepoRef) -> Result<Option<RepoRecord>, StoreError> {
        let key = repo.to_string();
        Ok(self
            .blocking(move |inner| {
                let row = inner
                    .conn()
                    .query_row(
                        &format!("SELECT {REPO_COLUMNS} FROM repos WHERE repo = ?1"),
                        [&key],
                        RepoRow::read,
                    )
                    .optional()?;
                row.map(RepoRow::into_record).transpose()
            })
            .await?)
    }

    async fn repos(&self) -> Result<Vec<RepoRecord>, StoreError> {
        Ok(self
            .blocking(|inner| {
                let conn = inner.conn();
                let mut stmt = conn.prepare(&format!("SELECT {REPO_COLUMNS} FROM repos ORDER BY project, slug"))?;
                let rows = stmt.query_map([], RepoRow::read)?.collect::<Result<Vec<_>, _>>()?;
                rows.into_iter().map(RepoRow::into_record).collect()
            })
            .await?)
    }

    async fn acquire_lease(&self, repo: &RepoRef, owner: &LeaseOwner, ttl: Duration) -> Result<SyncLease, StoreError> {
        let (repo, owner) = (repo.clone(), owner.clone());
        self.blocking(move |inner| {
            let now = millis(inner.now());
            let mut conn = inner.conn();
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let current: Option<(Option<String>, i64, bool)> = tx
                .query_row(
                    "SELECT owner, expires_at, unfinished FROM sync_leases WHERE repo = ?1",
                    [repo.to_string()],
                    |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
                )
                .optional()?;
            let previous_unfinished = match current {
                None => false,
                Some((Some(holder), until, _)) if until > now && holder != owner.as_str() => {
                    return Ok(Err(StoreError::LeaseHeld {
                        repo,
                        owner: LeaseOwner::from_stored(holder),
                        until: from_millis(until),
                    }));
                }
                Some((Some(holder), _, unfinished)) if holder == owner.as_str() => unfinished,
                // Released (finished or not), or expired without being released: unfinished.
                Some((holder, _, unfinished)) => unfinished || holder.is_some(),
            };
            let expires_at = now.saturating_add(duration_millis(ttl));
            tx.execute(
                "INSERT INTO sync_leases (repo, owner, expires_at, unfinished) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (repo) DO UPDATE SET
                    owner = excluded.owner, expires_at = excluded.expires_at, unfinished = excluded.unfinished",
                params![repo.to_string(), owner.as_str(), expires_at, previous_unfinished],
            )?;
            tx.commit()?;
            Ok(Ok(SyncLease {
                repo,
                owner,
                expires_at: from_millis(expires_at),
                previous_unfinished,
            }))
        })
        .await?
    }

    async fn renew_lease(&self, lease: &SyncLease, ttl: Duration) -> Result<SyncLease, StoreError> {
        let lease = lease.clone();
        self.blocking(move |inner| {
            let now = millis(inner.now());
            let expires_at = now.saturating_add(duration_millis(ttl));
            let renewed = inner.conn().execute(
                "UPDATE sync_leases SET expires_at = ?1 WHERE repo = ?2 AND owner = ?3 AND expires_at > ?4",
                params![expires_at, lease.repo.to_string(), lease.owner.as_str(), now],
            )?;
            Ok(if renewed == 1 {
                Ok(SyncLease {
                    expires_at: from_millis(expires_at),
                    ..lease
                })
            } else {
                Err(StoreError::LeaseLost(lease.repo))
            })
        })
        .await?
    }

    async fn release_lease(&self, lease: &SyncLease, finished: bool) -> Result<(), StoreError> {
        let lease = lease.clone();
        Ok(self
            .blocking(move |inner| {
                let now = millis(inner.now());
                inner.conn().execute(
                    "UPDATE sync_leases SET owner = NULL, expires_at = ?1, unfinished = ?2
                     WHERE repo = ?3 AND owner = ?4",
                    params![now, !finished, lease.repo.to_string(), lease.owner.as_str()],
                )?;
                Ok(())
            })
            .await?)
    }

    async fn advance_cursor(
        &self,
        lease: &SyncLease,
        expected: Option<&CommitId>,
        cursor: &SyncCursor,
    ) -> Result<(), StoreError> {
        let cursor_json = json(cursor)?;
        let commit = cursor.commit.to_string();
        self.update_at_cursor(lease, expected, move |tx, repo, expected| {
            tx.execute(
                "UPDATE repos SET cursor_commit = ?1, cursor = ?2, last_error = NULL, resume = NULL
                     WHERE repo = ?3 AND cursor_commit IS ?4",
                params![commit, cursor_json, repo, expected],
            )
        })
        .await
    }

    async fn record_resume(
        &self,
        lease: &SyncLease,
        expected: Option<&CommitId>,
        resume: &SyncResume,
    ) -> Result<(), StoreError> {
        let resume_json = json(resume)?;
        self.update_at_cursor(lease, expected, move |tx, repo, expected| {
            tx.execute(
                "UPDATE repos SET resume = ?1 WHERE repo = ?2 AND cursor_commit IS ?3",
                params![resume_json, repo, expected],
            )
        })
        .await
    }

    async fn record_error(&self, repo: &RepoRef, error: &LastError) -> Result<(), StoreError> {
        let (key, error) = (repo.to_string(), error.clone());
        Ok(self
            .blocking(move |inner| {
                inner.conn().execute(
                    "UPDATE repos SET last_error = ?1 WHERE repo = ?2",
                    params![json(&error)?, key],
                )?;
                Ok(())
            })
            .await?)
    }
}

/// zstd at level 1. Compression is the largest CPU cost of a sync after fetching, and a full sync
/// must stay within 1.1x of the time it takes just to download the files (issue 11). Measured on
/// the generated models of the `full_sync` bench (CPU time, 200 MB): zlib at its fastest level
/// (the previous encoding) 1.13 s to 25 % of the size, zstd level 1 0.39 s to 15 %; on a real
/// JSON document zlib 0.55 s to 15 %, zstd 0.25 s to 8.5 %.
///
/// A compression context is reused rather than made per model (making one zeroes its tables:
/// 2 % of a full sync's CPU time), and so is the buffer it compresses into (a fresh one of the
/// model's size per model is memory the allocator may give back to the OS and take again, page
/// by page): at most [`KEPT_COMPRESSORS`] wait between models, as many as there are models being
/// written at once with the default fetch concurrency. The packer comes back with the bytes in
/// `out`; [`give_back`] returns it to the pool once they are written.
pub(crate) fn pack(content: &[u8]) -> Result<Packer, SqliteError> {
    let failed = |e| corrupt("could not compress a model", e);
    let pooled = COMPRESSORS.lock().unwrap_or_else(|p| p.into_inner()).pop();
    let mut packer = match pooled {
        Some(packer) => packer,
        None => Packer {
            compressor: zstd::bulk::Compressor::new(ZSTD_LEVEL).map_err(failed)?,
            out: Vec::new(),
        },
    };
    packer.out.clear();
    packer.out.reserve(zstd::zstd_safe::compress_bound(content.len()));
    packer
        .compressor
        .compress_to_buffer(content, &mut packer.out)
        .map_err(failed)?;
    Ok(packer)
}

/// Keeps `packer` for the next model, unless enough are kept.
pub(crate) fn give_back(mut packer: Packer) {
    if packer.out.capacity() > KEPT_BUFFER_BYTES {
        // A large model's buffer is not kept: it would stay resident between syncs.
        packer.out = Vec::new();
    }
    let mut pool = COMPRESSORS.lock().unwrap_or_else(|p| p.into_inner());
    if pool.len() < KEPT_COMPRESSORS {
        pool.push(packer);
    }
}

/// A compression context and the buffer it compresses into.
pub(crate) struct Packer {
    compressor: zstd::bulk::Compressor<'static>,
    pub(crate) out: Vec<u8>,
}

/// Compression contexts kept for the next models.
const KEPT_COMPRESSORS: usize = 8;

/// The largest compression buffer kept with its context: a model of up to about 1 MiB.
const KEPT_BUFFER_BYTES: usize = 1024 * 1024;

static COMPRESSORS: std::sync::Mutex<Vec<Packer>> = std::sync::Mutex::new(Vec::new());

/// `stored` decompressed, never past the recorded `size`: a damaged row cannot exhaust memory.
fn decompress(what: &str, encoding: &str, stored: &[u8], size: u64) -> Result<Vec<u8>, SqliteError> {
    let content = match encoding {
        ENCODING_ZSTD => {
            let capacity = usize::try_from(size).map_err(|e| corrupt(what, e))?;
            zstd::bulk::decompress(stored, capacity).map_err(|e| corrupt(what, e))?
        }
        ENCODING_ZLIB => {
            let mut content = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
            ZlibDecoder::new(stored)
                .take(size.saturating_add(1))
                .read_to_end(&mut content)
                .map_err(|e| corrupt(what, e))?;
            content
        }
        _ => {
            return Err(SqliteError::Corrupt(format!(
                "{what}: unknown content encoding {encoding:?}"
            )));
        }
    };
    if content.len() as u64 != size {
        return Err(SqliteError::Corrupt(format!(
            "{what}: {} bytes after decompression, {size} recorded",
            content.len()
        )));
    }
    Ok(content)
}

const SUMMARY_COLUMNS: &str = "path, commit_id, synced_at, content_sha256, size, status";

struct SummaryRow {
    path: String,
    commit: String,
    synced_at: String,
    content_sha256: String,
    size: i64,
    status: String,
}

impl SummaryRow {
    fn read(row: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            path: row.get(0)?,
            commit: row.get(1)?,
            synced_at: row.get(2)?,
            content_sha256: row.get(3)?,
            size: row.get(4)?,
            status: row.get(5)?,
        })
    }

    fn into_summary(self) -> Result<ModelSummary, SqliteError> {
        let what = |field: &str| format!("{field} of model {:?}", self.path);
        Ok(ModelSummary {
            commit: CommitId::parse(&self.commit).map_err(|e| corrupt(what("commit"), e))?,
            synced_at: from_text(&what("synced_at"), &self.synced_at)?,
            status: parse_json::<ModelStatus>(&what("status"), &self.status)?,
            size: u64::try_from(self.size).map_err(|e| corrupt(what("size"), e))?,
            content_sha256: self.content_sha256,
            path: self.path,
        })
    }
}

/// `record` made ready to be written under `lease` (blocking): its content compressed, before
/// any connection is taken, so that other writers are not held up by it.
pub(crate) fn row_of(lease: SyncLease, record: ModelRecord) -> Result<ModelRow, SqliteError> {
    Ok(ModelRow {
        commit: record.commit.as_str().to_owned(),
        synced_at: to_text(&record.synced_at),
        status: json(&record.status)?,
        size: i64::try_from(record.size()).map_err(|e| corrupt("model too large", e))?,
        packed: pack(&record.content)?,
        lease,
        path: record.path,
        content_sha256: record.content_sha256,
    })
}

/// The answer to a queued write.
async fn answered(answer: Answer) -> Result<(), StoreError> {
    answer.await.unwrap_or_else(|_| Err(unanswered()))
}

impl ModelStore for SqliteHub {
    async fn put_model(&self, lease: &SyncLease, record: &ModelRecord) -> Result<(), StoreError> {
        let (inner, lease, record) = (self.inner.clone(), lease.clone(), record.clone());
        let answer = off_task(move || row_of(lease, record).map(|row| submit(&inner, row))).await??;
        answered(answer).await
    }

    /// Built and compressed on one thread of the blocking pool (one hand-off per file), then
    /// written with the other models queued by then ([`crate::group`]).
    async fn put_model_built<K, N, F>(&self, lease: &SyncLease, build: F) -> Result<Result<K, N>, StoreError>
    where
        F: FnOnce() -> Result<(ModelRecord, K), N> + Send + 'static,
        K: Send + 'static,
        N: Send + 'static,
    {
        let (inner, lease) = (self.inner.clone(), lease.clone());
        let queued = off_task(move || match build() {
            Ok((record, kept)) => row_of(lease, record).map(|row| Ok((submit(&inner, row), kept))),
            Err(nothing) => Ok(Err(nothing)),
        })
        .await?;
        match queued? {
            Ok((answer, kept)) => answered(answer).await.map(|()| Ok(kept)),
            Err(nothing) => Ok(Err(nothing)),
        }
    }

    async fn delete_model(&self, lease: &SyncLease, path: &str) -> Result<bool, StoreError> {
        let (lease, path) = (lease.clone(), path.to_owned());
        self.blocking(move |inner| {
            fenced(inner, &lease, |tx| {
                let removed = tx.execute(
                    "DELETE FROM models WHERE repo = ?1 AND path = ?2",
                    params![lease.repo.to_string(), path],
                )?;
                Ok(removed == 1)
            })
        })
        .await?
    }

    async fn list_models(&self, repo: &RepoRef) -> Result<Vec<ModelSummary>, StoreError> {
        let key = repo.to_string();
        Ok(self
            .blocking(move |inner| {
                let conn = inner.conn();
                // BINARY collation orders by UTF-8 bytes, as Rust orders strings.
                let mut stmt = conn.prepare(&format!(
                    "SELECT {SUMMARY_COLUMNS} FROM models WHERE repo = ?1 ORDER BY path COLLATE BINARY"
                ))?;
                let rows = stmt
                    .query_map([&key], SummaryRow::read)?
                    .collect::<Result<Vec<_>, _>>()?;
                drop(stmt);
                drop(conn);
                rows.into_iter().map(SummaryRow::into_summary).collect()
            })
            .await?)
    }

    async fn list_models_after(&self, repo: &RepoRef, after: &str) -> Result<Vec<ModelSummary>, StoreError> {
        let (key, after) = (repo.to_string(), after.to_owned());
        Ok(self
            .blocking(move |inner| {
                let conn = inner.conn();
                // A range of the primary key (repo, path): the rows up to `after` are not read.
                let mut stmt = conn.prepare(&format!(
                    "SELECT {SUMMARY_COLUMNS} FROM models WHERE repo = ?1 AND path > ?2 COLLATE BINARY
                     ORDER BY path COLLATE BINARY"
                ))?;
                let rows = stmt
                    .query_map(params![key, after], SummaryRow::read)?
                    .collect::<Result<Vec<_>, _>>()?;
                drop(stmt);
                drop(conn);
                rows.into_iter().map(SummaryRow::into_summary).collect()
            })
            .await?)
    }

    async fn get_model(&self, repo: &RepoRef, path: &str) -> Result<Option<ModelRecord>, StoreError> {
        let (key, path) = (repo.to_string(), path.to_owned());
        Ok(self
            .blocking(move |inner| {
                let row = inner
                    .conn()
                    .query_row(
                        &format!(
                            "SELECT {SUMMARY_COLUMNS}, encoding, content FROM models WHERE repo = ?1 AND path = ?2"
                        ),
                        params![key, path],
                        |row| {
                            Ok((
                                SummaryRow::read(row)?,
                                row.get::<_, String>(6)?,
                                row.get::<_, Vec<u8>>(7)?,
                            ))
                        },
                    )
                    .optional()?;
                // Decompress after the connection is released.
                let Some((summary, encoding, stored)) = row else {
                    return Ok(None);
                };
                let what = format!("content of model {path:?}");
                let summary = summary.into_summary()?;
                let content = decompress(&what, &encoding, &stored, summary.size)?;
                let digest = sha256_hex(&content);
                if digest != summary.content_sha256 {
                    return Err(SqliteError::Corrupt(format!(
                        "{what}: SHA-256 {digest} differs from the recorded {}",
                        summary.content_sha256
                    )));
                }
                Ok(Some(ModelRecord {
                    path: summary.path,
                    commit: summary.commit,
                    synced_at: summary.synced_at,
                    status: summary.status,
                    content: content.into(),
                    content_sha256: summary.content_sha256,
                }))
            })
            .await?)
    }
}
