//! The crate's error, and how it maps onto the ports' errors.

use std::path::PathBuf;

use hubsync_core::ports::{QueueError, StoreError};
use rusqlite::ErrorCode;

#[derive(Debug, thiserror::Error)]
pub enum SqliteError {
    #[error("could not open the database {}: {source}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("could not create the directory {}: {source}", path.display())]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the database has schema version {found}, newer than this hubsync knows ({supported}); use a newer hubsync or another database file"
    )]
    SchemaTooNew { found: i64, supported: i64 },
    #[error("SQLite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A stored item could not be read back.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("the database task stopped: {0}")]
    Task(#[from] tokio::task::JoinError),
}

impl SqliteError {
    /// Whether the same call may succeed later: the database was locked by another process or
    /// the disk failed; a corrupt item or a schema from the future needs a person.
    pub fn is_retryable(&self) -> bool {
        let code = match self {
            Self::Sqlite(e) | Self::Open { source: e, .. } => e.sqlite_error_code(),
            Self::CreateDir { .. } | Self::Task(_) => return true,
            Self::SchemaTooNew { .. } | Self::Corrupt(_) => return false,
        };
        matches!(
            code,
            Some(
                ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked | ErrorCode::SystemIoFailure | ErrorCode::DiskFull
            )
        )
    }
}

impl From<SqliteError> for StoreError {
    fn from(e: SqliteError) -> Self {
        match e {
            SqliteError::Corrupt(message) => StoreError::Corrupt(message),
            other => StoreError::Backend {
                message: other.to_string(),
                retryable: other.is_retryable(),
                source: Some(Box::new(other)),
            },
        }
    }
}

impl From<SqliteError> for QueueError {
    fn from(e: SqliteError) -> Self {
        QueueError {
            message: e.to_string(),
            source: Some(Box::new(e)),
        }
    }
}

pub(crate) fn corrupt(what: impl std::fmt::Display, e: impl std::fmt::Display) -> SqliteError {
    SqliteError::Corrupt(format!("{what}: {e}"))
}
