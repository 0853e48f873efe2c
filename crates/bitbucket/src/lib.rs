//! The Bitbucket Data Center adapter of hubsync: a read-only REST client that implements the
//! domain's [`GitHost`](hubsync_core::ports::GitHost) port, following Atlassian's OpenAPI
//! document for Bitbucket Data Center 9.2 (`/rest/api/latest/...`).
//!
//! - `admin`: the administrator's calls (repositories the token can read, webhooks and their
//!   deliveries), whose errors name the permission the token lacks.
//! - `client`: options, the shared HTTP client, one authenticated GET with retries.
//! - `git_host`: the four questions the sync asks and the resources that answer them.
//! - `json`: Bitbucket's JSON; only this crate knows it.
//! - `changes`: a Bitbucket change as a domain file change.
//! - `paths`: URL building and percent-encoding.
//! - `retry`: backoff and `Retry-After`.
//! - `error`: the build error and redacted error text.
//! - `memory`: large bodies given back to the OS once freed (glibc's malloc).
//!
//! ```no_run
//! use hubsync_bitbucket::{BitbucketClient, ClientOptions};
//! use secrecy::SecretString;
//!
//! let options = ClientOptions::default();
//! let http = BitbucketClient::http_client(&options)?;
//! let token = SecretString::from("token from the secret store");
//! let client = BitbucketClient::with_http(http.clone(), "https://bitbucket.example.com", token, options)?;
//! # Ok::<(), hubsync_bitbucket::ClientBuildError>(())
//! ```

mod admin;
mod changes;
mod client;
mod error;
mod git_host;
mod json;
mod memory;
mod paths;
mod retry;

pub use admin::{
    AdminError, AdminErrorKind, AvailableRepository, Invocation, InvocationCounts, InvocationHistory, PUSH_EVENT,
    Permission, ShownSecret, Webhook, WebhookScope, WebhookSpec,
};
pub use client::{BitbucketClient, ClientOptions};
pub use error::ClientBuildError;
pub use memory::give_large_bodies_back_to_the_os;

mod connector;
pub use connector::BitbucketConnector;
