//! The local adapters of hubsync, in one SQLite file: the repository registry and the model store
//! ([`RepoRegistry`], [`ModelStore`]) and a durable FIFO push queue ([`PushQueue`] plus the
//! worker's side: [`SqliteHub::receive`], [`SqliteHub::ack`], [`SqliteHub::retry`]). They are what
//! `hubsync serve` runs on instead of DynamoDB and SQS, with the same semantics as the in-memory
//! reference adapters of `hubsync_core::testing::memory` (checked by the store conformance suite).
//!
//! One [`SqliteHub`] holds one connection behind a mutex; every call runs on tokio's blocking pool
//! (model writes are compressed there and written in groups by the hub's writer thread), so async
//! callers are never blocked by SQLite. The file is opened in WAL mode with a busy
//! timeout, so other processes (the `hubsync` commands) can read while the server writes.
//!
//! [`RepoRegistry`]: hubsync_core::ports::RepoRegistry
//! [`ModelStore`]: hubsync_core::ports::ModelStore
//! [`PushQueue`]: hubsync_core::ports::PushQueue

mod clock;
mod deliveries;
mod error;
mod group;
mod queue;
mod schema;
mod store;

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::Connection;
use tokio::sync::Notify;

pub use clock::{Clock, ManualClock, SystemClock};
pub use error::SqliteError;
pub use queue::{DeadLetter, QueueStats, QueuedPush, Receipt, RetryOutcome};

/// How a [`SqliteHub`] behaves.
#[derive(Clone)]
pub struct HubOptions {
    /// A message received this many times without being acknowledged is moved to the dead-letter
    /// table (like an SQS redrive policy's `maxReceiveCount`).
    pub max_attempts: u32,
    /// How long a delivery id is remembered for deduplication. `Some(5 minutes)` (the default) is
    /// SQS FIFO's window, so the local queue and the AWS one accept the same redeliveries; `None`
    /// remembers every delivery id forever.
    pub dedup_window: Option<Duration>,
    /// How long a writer waits for another process's lock before giving up.
    pub busy_timeout: Duration,
    /// Where the time comes from (tests use a [`ManualClock`]).
    pub clock: Arc<dyn Clock>,
    /// How long delivery log entries are kept (`HUB_DELIVERY_RETENTION`, default 30 days).
    pub delivery_retention: Duration,
}

/// SQS FIFO's deduplication interval.
pub const DEFAULT_DEDUP_WINDOW: Duration = Duration::from_secs(5 * 60);
/// Deliveries of one message before it is dead-lettered: the consumer policy's number, the same
/// as the SQS redrive policy's `maxReceiveCount`.
pub const DEFAULT_MAX_ATTEMPTS: u32 = hubsync_core::consumer::DEFAULT_MAX_ATTEMPTS;

impl Default for HubOptions {
    fn default() -> Self {
        Self {
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            dedup_window: Some(DEFAULT_DEDUP_WINDOW),
            busy_timeout: Duration::from_secs(5),
            clock: Arc::new(SystemClock),
            delivery_retention: hubsync_core::deliveries::DEFAULT_DELIVERY_RETENTION,
        }
    }
}

impl std::fmt::Debug for HubOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubOptions")
            .field("max_attempts", &self.max_attempts)
            .field("dedup_window", &self.dedup_window)
            .field("busy_timeout", &self.busy_timeout)
            .field("delivery_retention", &self.delivery_retention)
            .finish_non_exhaustive()
    }
}

/// The registry, the model store and the push queue in one SQLite database. Cloning is cheap and
/// shares the connection.
#[derive(Clone)]
pub struct SqliteHub {
    inner: Arc<Inner>,
}

struct Inner {
    conn: Mutex<Connection>,
    options: HubOptions,
    /// Poked when a message may have become available to [`SqliteHub::receive`].
    changed: Notify,
    /// Model writes waiting to be written together ([`group`]).
    writes: group::Writes,
}

impl Inner {
    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while the lock was held cannot leave a transaction open (it rolls back on drop),
        // so the connection is still usable.
        self.conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.options.clock.now()
    }
}

impl std::fmt::Debug for SqliteHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteHub")
            .field("options", &self.inner.options)
            .finish_non_exhaustive()
    }
}

impl SqliteHub {
    /// Opens (or creates) the database at `path` and brings its schema up to date. Blocks briefly:
    /// call it at start-up.
    pub fn open(path: &Path) -> Result<Self, SqliteError> {
        Self::open_with(path, HubOptions::default())
    }

    pub fn open_with(path: &Path, options: HubOptions) -> Result<Self, SqliteError> {
        let open_error = |source| SqliteError::Open {
            path: path.to_owned(),
            source,
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|source| SqliteError::CreateDir {
                path: parent.to_owned(),
                source,
            })?;
        }
        let conn = Connection::open(path).map_err(open_error)?;
        conn.busy_timeout(options.busy_timeout).map_err(open_error)?;
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
            .map_err(open_error)?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(path = %path.display(), mode, "SQLite refused WAL mode; readers may wait for writers");
        }
        // WAL with synchronous=NORMAL is durable across a process crash; only a power loss can
        // lose the last transactions.
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(open_error)?;
        Self::from_connection(conn, options)
    }

    /// A private in-memory database, for tests.
    pub fn in_memory() -> Result<Self, SqliteError> {
        Self::in_memory_with(HubOptions::default())
    }

    pub fn in_memory_with(options: HubOptions) -> Result<Self, SqliteError> {
        let conn = Connection::open_in_memory()?;
        Self::from_connection(conn, options)
    }

    fn from_connection(mut conn: Connection, options: HubOptions) -> Result<Self, SqliteError> {
        conn.pragma_update(None, "foreign_keys", "ON")?;
        schema::migrate(&mut conn)?;
        Ok(Self {
            inner: Arc::new(Inner {
                conn: Mutex::new(conn),
                options,
                changed: Notify::new(),
                writes: group::Writes::default(),
            }),
        })
    }

    pub fn options(&self) -> &HubOptions {
        &self.inner.options
    }

    /// The schema version of the open database.
    pub async fn schema_version(&self) -> Result<i64, SqliteError> {
        self.blocking(|inner| schema::version(&inner.conn())).await
    }

    /// Runs `f` on tokio's blocking pool; `f` takes the connection lock itself, so it can do CPU
    /// work (compression) before or after without holding it.
    async fn blocking<T, F>(&self, f: F) -> Result<T, SqliteError>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> Result<T, SqliteError> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || f(&inner)).await?
    }
}
