//! The normalized push: what the webhook puts on the queue and the sync takes off it. It carries
//! only names and commit ids, never a URL, so the sync cannot be sent anywhere by a payload.
//!
//! The same message, with [`MessageKind::FullSync`], asks the sync for a full reconciliation of
//! a repository without a push (`hubsync repos add` queues one for a newly registered
//! repository), so both queues (SQS and SQLite) carry it and keep it in the repository's order.

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

/// What a queued message asks of the sync.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MessageKind {
    /// A webhook delivery: sync if it moved the default branch.
    #[default]
    Push,
    /// A request to reconcile the repository's whole default branch now, whatever was pushed.
    FullSync,
}

impl MessageKind {
    /// Whether this is a push (the kind left out of the JSON, so pushes serialize as before).
    pub fn is_push(&self) -> bool {
        *self == Self::Push
    }
}

/// One accepted push, as queued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PushMessage {
    /// A push, or a full sync request; absent (a push) in messages queued by earlier versions.
    #[serde(default, skip_serializing_if = "MessageKind::is_push")]
    pub kind: MessageKind,
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
    /// A request to reconcile `repo` fully, queued in the repository's order like a push. It moves
    /// no ref; `request_id` is its deduplication id (unique per request).
    pub fn full_sync(repo: RepoRef, request_id: DeliveryId, requested_at: DateTime<Utc>) -> Self {
        Self {
            kind: MessageKind::FullSync,
            provider: Provider::BitbucketDataCenter,
            delivery_id: request_id,
            repo,
            repository_id: None,
            changes: Vec::new(),
            actor: Actor::default(),
            received_at: requested_at,
        }
    }

    /// Whether any change of this push moved `ref_id`.
    pub fn touches(&self, ref_id: &str) -> bool {
        self.changes.iter().any(|c| c.ref_id == ref_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_push_serializes_without_a_kind_and_reads_back_as_a_push() {
        let request = PushMessage::full_sync(
            RepoRef::parse("DATA/models").unwrap(),
            DeliveryId::parse("sync-1").unwrap(),
            Utc::now(),
        );
        let push = PushMessage {
            kind: MessageKind::Push,
            ..request.clone()
        };

        let push_json = serde_json::to_value(&push).unwrap();
        let request_json = serde_json::to_value(&request).unwrap();

        assert!(push_json.get("kind").is_none(), "{push_json}");
        assert_eq!(request_json["kind"], "full-sync");
        let read: PushMessage = serde_json::from_value(push_json).unwrap();
        assert_eq!(read.kind, MessageKind::Push);
        let read: PushMessage = serde_json::from_value(request_json).unwrap();
        assert_eq!(read, request);
    }
}
