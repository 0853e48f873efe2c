//! What a push did to a repository's refs, in the exact shape Bitbucket Data Center reports it
//! in the `changes` array of a `repo:refs_changed` webhook (`RestRefChange` in the REST API
//! document): `ref` (`id`, `displayId`, `type`), `refId`, `fromHash`, `toHash` and `type`.
//! Created refs have an all-zero `fromHash`, deleted refs an all-zero `toHash`.

use serde::{Deserialize, Serialize};

use crate::git::ZERO_HASH;

/// Whether a ref is a branch or a tag (`RefType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum RefType {
    Branch,
    Tag,
}

impl RefType {
    /// The namespace refs of this type live in: `refs/heads/` or `refs/tags/`.
    pub fn prefix(self) -> &'static str {
        match self {
            RefType::Branch => "refs/heads/",
            RefType::Tag => "refs/tags/",
        }
    }
}

/// A ref by name (`RestMinimalRef`): `{"id": "refs/heads/main", "displayId": "main", "type": "BRANCH"}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MinimalRef {
    pub id: String,
    pub display_id: String,
    #[serde(rename = "type")]
    pub ref_type: RefType,
}

impl MinimalRef {
    /// The branch `name` (`refs/heads/<name>`).
    pub fn branch(name: &str) -> Self {
        Self::new(RefType::Branch, name)
    }

    /// The tag `name` (`refs/tags/<name>`).
    pub fn tag(name: &str) -> Self {
        Self::new(RefType::Tag, name)
    }

    fn new(ref_type: RefType, name: &str) -> Self {
        Self {
            id: format!("{}{name}", ref_type.prefix()),
            display_id: name.to_owned(),
            ref_type,
        }
    }
}

/// How a ref moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum RefChangeType {
    Add,
    Update,
    Delete,
}

/// One ref moved by a push (`RestRefChange`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RefChange {
    #[serde(rename = "ref")]
    pub ref_: MinimalRef,
    pub ref_id: String,
    pub from_hash: String,
    pub to_hash: String,
    #[serde(rename = "type")]
    pub change_type: RefChangeType,
}

impl RefChange {
    /// The change that moves `ref_` from `from` to `to` (`None` = the ref did not / does not
    /// exist), or `None` if the ref did not move.
    pub(crate) fn between(ref_: MinimalRef, from: Option<&str>, to: Option<&str>) -> Option<Self> {
        let change_type = match (from, to) {
            (None, None) => return None,
            (Some(a), Some(b)) if a == b => return None,
            (None, Some(_)) => RefChangeType::Add,
            (Some(_), None) => RefChangeType::Delete,
            (Some(_), Some(_)) => RefChangeType::Update,
        };
        Some(Self {
            ref_id: ref_.id.clone(),
            ref_,
            from_hash: from.unwrap_or(ZERO_HASH).to_owned(),
            to_hash: to.unwrap_or(ZERO_HASH).to_owned(),
            change_type,
        })
    }
}

/// The ref changes of one push, in order. A push made by the simulator's repository API moves
/// one ref; combine several with [`Push::and`] to simulate a push of many refs at once.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Push {
    pub changes: Vec<RefChange>,
}

impl Push {
    pub(crate) fn single(change: Option<RefChange>) -> Self {
        Self {
            changes: change.into_iter().collect(),
        }
    }

    /// This push followed by `other`'s changes, as if both were pushed at once.
    #[must_use]
    pub fn and(mut self, other: Push) -> Push {
        self.changes.extend(other.changes);
        self
    }

    /// Whether the push moved nothing (e.g. a force push to the commit the branch was on).
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// The commit (or annotated tag object) the push left on its first ref, unless deleted.
    pub fn to_hash(&self) -> Option<&str> {
        self.changes
            .first()
            .filter(|c| c.change_type != RefChangeType::Delete)
            .map(|c| c.to_hash.as_str())
    }

    /// The change of `ref_id` (`refs/heads/main`), if the push moved it.
    pub fn change(&self, ref_id: &str) -> Option<&RefChange> {
        self.changes.iter().find(|c| c.ref_id == ref_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_branch_serializes_like_bitbucket() {
        let change = RefChange::between(MinimalRef::branch("main"), None, Some(&"a".repeat(40))).expect("moved");

        let json = serde_json::to_value(&change).expect("serializes");

        assert_eq!(
            json,
            serde_json::json!({
                "ref": {"id": "refs/heads/main", "displayId": "main", "type": "BRANCH"},
                "refId": "refs/heads/main",
                "fromHash": ZERO_HASH,
                "toHash": "a".repeat(40),
                "type": "ADD",
            })
        );
    }

    #[test]
    fn deleted_tag_has_zero_to_hash() {
        let change = RefChange::between(MinimalRef::tag("v1"), Some(&"b".repeat(40)), None).expect("moved");

        assert_eq!(change.change_type, RefChangeType::Delete);
        assert_eq!(change.to_hash, ZERO_HASH);
        assert_eq!(change.ref_id, "refs/tags/v1");
    }

    #[test]
    fn a_ref_that_did_not_move_is_no_change() {
        let same = "c".repeat(40);
        assert!(RefChange::between(MinimalRef::branch("x"), Some(&same), Some(&same)).is_none());
    }
}
