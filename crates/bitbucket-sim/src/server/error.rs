//! The error answers of the simulated REST API: each variant becomes the status code and
//! `{"errors": [...]}` body Bitbucket Data Center sends, with the Java exception name it names.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::error::SimError;
use crate::rest::{ErrorBody, RestErrorMessage};

/// An answer other than 2xx.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApiError {
    /// No `Authorization` header at all.
    #[error("no credentials")]
    NotPermitted,
    /// An `Authorization` header with the wrong token or scheme.
    #[error("authentication failed")]
    AuthenticationFailed,
    #[error("no such project {key}")]
    NoSuchProject { key: String },
    #[error("no such repository {key}/{slug}")]
    NoSuchRepository { key: String, slug: String },
    /// The configured default branch (`ref_id`, `refs/heads/main`) does not exist: an empty
    /// repository.
    #[error("default branch {ref_id} does not exist")]
    NoDefaultBranch { ref_id: String },
    #[error("no commit {rev} in {slug}")]
    NoSuchCommit { rev: String, slug: String },
    #[error("no path {path} at {at}")]
    NoSuchPath { path: String, at: String },
    #[error("{path} is not a directory at {at}")]
    NotADirectory { path: String, at: String },
    #[error("bad request: {message}")]
    BadRequest { context: Option<String>, message: String },
    #[error("no webhook {id}")]
    NoSuchWebhook { id: String },
    #[error("no such resource {path}")]
    NoSuchResource { path: String },
    /// An answer injected with `Simulator::fail_next`.
    #[error("injected {status}")]
    Injected {
        status: StatusCode,
        retry_after: Option<u32>,
    },
    #[error("simulator failure")]
    Internal(#[from] SimError),
}

impl ApiError {
    pub(crate) fn bad_request(context: Option<&str>, message: impl Into<String>) -> Self {
        Self::BadRequest {
            context: context.map(str::to_owned),
            message: message.into(),
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            Self::NotPermitted | Self::AuthenticationFailed => StatusCode::UNAUTHORIZED,
            Self::NoSuchProject { .. }
            | Self::NoSuchRepository { .. }
            | Self::NoDefaultBranch { .. }
            | Self::NoSuchCommit { .. }
            | Self::NoSuchPath { .. }
            | Self::NoSuchWebhook { .. }
            | Self::NoSuchResource { .. } => StatusCode::NOT_FOUND,
            Self::NotADirectory { .. } | Self::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Self::Injected { status, .. } => *status,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn message(&self) -> RestErrorMessage {
        let (context, message, exception): (Option<String>, String, Option<&str>) = match self {
            Self::NotPermitted => (
                None,
                "You are not permitted to access this resource".into(),
                Some("com.atlassian.bitbucket.AuthorisationException"),
            ),
            Self::AuthenticationFailed => (
                None,
                "Authentication failed. Please check your credentials and try again.".into(),
                Some("com.atlassian.bitbucket.auth.IncorrectPasswordAuthenticationException"),
            ),
            Self::NoSuchProject { key } => (
                None,
                format!("Project {key} does not exist."),
                Some("com.atlassian.bitbucket.project.NoSuchProjectException"),
            ),
            Self::NoSuchRepository { key, slug } => (
                None,
                format!("Repository {key}/{slug} does not exist."),
                Some("com.atlassian.bitbucket.repository.NoSuchRepositoryException"),
            ),
            // The message a real server (recorded) sends.
            Self::NoDefaultBranch { ref_id } => (
                None,
                format!("{ref_id} is set as the default branch, but this branch does not exist"),
                Some("com.atlassian.bitbucket.repository.NoDefaultBranchException"),
            ),
            Self::NoSuchCommit { rev, slug } => (
                None,
                format!("Commit '{rev}' does not exist in repository '{slug}'."),
                Some("com.atlassian.bitbucket.commit.NoSuchCommitException"),
            ),
            Self::NoSuchPath { path, at } => (
                None,
                format!("The path \"{path}\" does not exist at revision \"{at}\""),
                Some("com.atlassian.bitbucket.content.NoSuchPathException"),
            ),
            Self::NotADirectory { path, at } => (
                Some("path".into()),
                format!("The path \"{path}\" is not a directory at revision \"{at}\""),
                Some("com.atlassian.bitbucket.content.NotADirectoryException"),
            ),
            Self::NoSuchWebhook { id } => (
                None,
                format!("No webhook with id {id} exists."),
                Some("com.atlassian.webhooks.NoSuchWebhookException"),
            ),
            Self::BadRequest { context, message } => (context.clone(), message.clone(), None),
            Self::NoSuchResource { path } => (None, format!("No resource exists at {path}."), None),
            Self::Injected { status, .. } if *status == StatusCode::TOO_MANY_REQUESTS => (
                None,
                "You have been rate limited. Wait a moment and try again.".into(),
                Some("com.atlassian.bitbucket.throttle.ThrottledException"),
            ),
            Self::Injected { status, .. } => (
                None,
                format!(
                    "{} (injected by the simulator)",
                    status.canonical_reason().unwrap_or("Error")
                ),
                None,
            ),
            Self::Internal(err) => (None, format!("{err}"), None),
        };
        RestErrorMessage {
            context,
            message,
            exception_name: exception.map(str::to_owned),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let Self::Internal(err) = &self {
            // The whole cause chain goes to the log; the client gets the top-level message.
            tracing::error!(error = %hubsync_core::error_chain(err), "simulator failed to answer a request");
        }
        let status = self.status();
        let body = ErrorBody {
            errors: vec![self.message()],
        };
        let mut response = (status, axum::Json(body)).into_response();
        if let Self::Injected {
            retry_after: Some(seconds),
            ..
        } = self
        {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"Bitbucket\""),
            );
        }
        response
    }
}

impl From<axum::extract::rejection::PathRejection> for ApiError {
    fn from(rejection: axum::extract::rejection::PathRejection) -> Self {
        Self::bad_request(None, rejection.body_text())
    }
}

impl From<axum::extract::rejection::QueryRejection> for ApiError {
    fn from(rejection: axum::extract::rejection::QueryRejection) -> Self {
        Self::bad_request(None, rejection.body_text())
    }
}
