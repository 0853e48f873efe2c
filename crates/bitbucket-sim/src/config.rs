//! How a simulator is configured: the access token it accepts, its page-size and change caps,
//! and the user that pushes and authors commits.

use std::net::{Ipv4Addr, SocketAddr};

use secrecy::SecretString;
use serde::Serialize;

/// Configuration of a [`crate::Simulator`]. `Debug` never prints the token.
///
/// ```
/// # use hubsync_bitbucket_sim::SimConfig;
/// let config = SimConfig {
///     max_page_size: 3,
///     ..SimConfig::with_token("secret-token")
/// };
/// assert_eq!(config.max_changes, 1000);
/// ```
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// The HTTP access token every API request must present as `Authorization: Bearer <token>`.
    pub token: SecretString,
    /// The largest page the server returns, whatever `limit` a client asks for (Bitbucket's
    /// per-resource hard limit). Default 1000; tests set it small to exercise paging.
    pub max_page_size: u32,
    /// `page.max.changes`: at most this many changes are computed for one diff, and `/changes`
    /// never pages past them. Default 1000, as in Bitbucket.
    pub max_changes: u32,
    /// Where to listen. Default `127.0.0.1:0` (a free port).
    pub bind: SocketAddr,
    /// The user that pushes (webhook `actor`) and authors the simulator's commits.
    pub actor: User,
    /// Whether `repo:refs_changed` payloads carry the `commits` and `toCommit` members that
    /// Bitbucket 8.x and later add. Default `true`; set `false` to get the older payload.
    pub webhook_commit_details: bool,
    /// Whether raw files are answered with their `Content-Length`. Default `true`; set `false`
    /// to stream them without one (chunked), as a server streaming a blob of unknown size does.
    pub raw_content_length: bool,
}

impl SimConfig {
    /// The default configuration with the given access token.
    pub fn with_token(token: impl Into<String>) -> Self {
        Self {
            token: SecretString::from(token.into()),
            ..Self::default()
        }
    }
}

impl Default for SimConfig {
    /// A random token (read it back with [`crate::Simulator::token`]), pages of up to 1000,
    /// `page.max.changes` 1000, a free loopback port, and `admin` as the actor.
    fn default() -> Self {
        Self {
            token: SecretString::from(format!("BBDC-{}", uuid::Uuid::new_v4().simple())),
            max_page_size: 1000,
            max_changes: 1000,
            bind: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            actor: User::default(),
            webhook_commit_details: true,
            raw_content_length: true,
        }
    }
}

/// A Bitbucket user as webhooks show it (`actor`), also used as the commits' author.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct User {
    pub name: String,
    pub email_address: String,
    pub id: u32,
    pub display_name: String,
    pub active: bool,
    pub slug: String,
    #[serde(rename = "type")]
    pub user_type: UserType,
}

impl Default for User {
    fn default() -> Self {
        Self {
            name: "admin".into(),
            email_address: "admin@example.com".into(),
            id: 1,
            display_name: "Administrator".into(),
            active: true,
            slug: "admin".into(),
            user_type: UserType::Normal,
        }
    }
}

/// `NORMAL` for people, `SERVICE` for service accounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum UserType {
    Normal,
    Service,
}

/// What an access token may do, as the token form's permissions. The configured token
/// ([`SimConfig::token`]) may do everything; more tokens are added with
/// [`crate::Simulator::add_token`]. A request beyond its token's permissions gets what Bitbucket
/// sends: 401 with `com.atlassian.bitbucket.AuthorisationException` ("You are not permitted to
/// access this resource").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenScopes {
    /// "Repositories: Read": repositories, their files and history (listings show only
    /// repositories the token can read).
    pub repositories_read: bool,
    /// "Webhooks: Read and write" (repository admin): the repository's webhooks.
    pub repository_admin: bool,
    /// Project admin: the project's webhooks.
    pub project_admin: bool,
}

impl TokenScopes {
    /// Everything.
    pub const ALL: Self = Self {
        repositories_read: true,
        repository_admin: true,
        project_admin: true,
    };
    /// The setup guide's repository token: "Repositories: Read" and "Webhooks: Read and write".
    pub const GUIDE: Self = Self {
        repositories_read: true,
        repository_admin: true,
        project_admin: false,
    };
    /// "Repositories: Read" only: no webhooks.
    pub const READ_ONLY: Self = Self {
        repositories_read: true,
        repository_admin: false,
        project_admin: false,
    };
    /// Nothing but authentication.
    pub const NONE: Self = Self {
        repositories_read: false,
        repository_admin: false,
        project_admin: false,
    };
}
