//! Errors of the simulator's own API (starting it, creating repositories, committing,
//! delivering webhooks). Errors the simulated REST API answers to HTTP clients live in
//! `server::error`, because they are part of the simulation, not failures of it.

use std::path::PathBuf;

/// Why a simulator operation failed.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The `git` executable could not be started (not installed, not on `PATH`).
    #[error("cannot run git (is it installed and on PATH?)")]
    GitUnavailable(#[source] std::io::Error),

    /// A git command ran but failed.
    #[error("`git {command}` failed with {status}: {stderr}")]
    Git {
        command: String,
        status: std::process::ExitStatus,
        stderr: String,
    },

    /// Git printed something the simulator could not understand.
    #[error("unexpected output from `git {command}`: {detail}")]
    GitOutput { command: String, detail: String },

    /// A file-system operation on the simulator's storage failed.
    #[error("I/O error on {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The HTTP listener could not be bound.
    #[error("cannot bind the simulator's HTTP listener")]
    Bind(#[source] std::io::Error),

    /// A repository with this project key and slug already exists.
    #[error("repository {project}/{slug} already exists")]
    RepositoryExists { project: String, slug: String },

    /// A project key or repository slug that Bitbucket would refuse.
    #[error("invalid {what} {value:?}: {reason}")]
    InvalidName {
        what: &'static str,
        value: String,
        reason: &'static str,
    },

    /// A branch or tag name that git refuses.
    #[error("invalid ref name {0:?}")]
    InvalidRefName(String),

    /// A commit, branch or tag that does not exist.
    #[error("{0} does not exist")]
    NoSuchRef(String),

    /// A ref that exists where the operation needs it not to.
    #[error("{0} already exists")]
    RefExists(String),

    /// The ref moved between reading it and updating it (another writer got there first).
    #[error("{ref_id} was updated concurrently")]
    ConcurrentUpdate { ref_id: String },

    /// A file operation names a path that does not exist, or an invalid path.
    #[error("path {path:?}: {reason}")]
    InvalidPath { path: String, reason: &'static str },

    /// A webhook payload could not be serialized.
    #[error("cannot serialize the webhook payload")]
    Payload(#[source] serde_json::Error),

    /// Delivering a webhook over HTTP failed before a response arrived.
    #[error("webhook delivery to {url} failed")]
    Delivery {
        url: String,
        #[source]
        source: reqwest::Error,
    },
}

impl SimError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}
