//! The normalized push: what the webhook puts on the queue and the sync takes off it. It carries
//! only names and commit ids, never a URL, so the sync cannot be sent anywhere by a payload.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::{CommitId, DeliveryId, RepoRef};

/// The Git host that sent the push.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Provider {
    BitbucketDataCenter,
}

/// How a ref moved, as Bitbucket Data Center reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum RefChangeType {
    Add,
    Update,
    Delete,
}

/// One ref moved by the push.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RefChange {
    /// Full ref name: `refs/heads/main`, `refs/tags/v1`.
    pub ref_id: String,
    #[serde(rename = "type")]
    pub change_type: RefChangeType,
    pub from_hash: CommitId,
    pub to_hash: CommitId,
}

/// Who pushed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Actor {
    pub name: Option<String>,
    pub display_name: Option<String>,
    pub email_address: Option<String>,
}

/// One accepted push, as queued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PushMessage {
    pub provider: Provider,
    pub delivery_id: DeliveryId,
    pub repo: RepoRef,
    /// Bitbucket's numeric repository id (stable across renames).
    pub repository_id: Option<u64>,
    pub changes: Vec<RefChange>,
    pub actor: Actor,
    pub received_at: DateTime<Utc>,
}

impl PushMessage {
    /// Whether any change of this push moved `ref_id`.
    pub fn touches(&self, ref_id: &str) -> bool {
        self.changes.iter().any(|c| c.ref_id == ref_id)
    }
}
