//! The table's keys: the partition and sort key of every kind of item. Every key the store reads
//! or writes is built here, so the layout described in ARCHITECTURE.md has one source.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use hubsync_core::ids::RepoRef;
use hubsync_core::model::sha256_hex;

/// The partition of the registry: one item per registered repository.
pub const REGISTRY_PK: &str = "REGISTRY";
/// Sort-key prefix of a registered repository in [`REGISTRY_PK`].
pub const REPO_PREFIX: &str = "REPO#";
/// Sort-key prefix of a model's head item in its repository's partition.
pub const MODEL_PREFIX: &str = "MODEL#";
/// Sort-key prefix of a content chunk in its repository's partition.
pub const CHUNK_PREFIX: &str = "CHUNK#";
/// Sort key of a repository's sync lease in its partition.
pub const LEASE_SK: &str = "LEASE";

/// The primary key of one item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    pub pk: String,
    pub sk: String,
}

impl Key {
    /// The registry item of `repo`: `REGISTRY` / `REPO#{project}/{slug}`.
    pub fn registry(repo: &RepoRef) -> Self {
        Self {
            pk: REGISTRY_PK.to_owned(),
            sk: format!("{REPO_PREFIX}{repo}"),
        }
    }

    /// The head item of the model at `path`: `REPO#{project}/{slug}` / `MODEL#{path}`.
    pub fn model(repo: &RepoRef, path: &str) -> Self {
        Self {
            pk: repo_pk(repo),
            sk: format!("{MODEL_PREFIX}{path}"),
        }
    }

    /// The sync lease of `repo`: `REPO#{project}/{slug}` / `LEASE`.
    pub fn lease(repo: &RepoRef) -> Self {
        Self {
            pk: repo_pk(repo),
            sk: LEASE_SK.to_owned(),
        }
    }

    /// Chunk `index` of the version `version` (the content's digest) of the model at `path`.
    pub fn chunk(repo: &RepoRef, path: &str, version: &str, index: u64) -> Self {
        Self {
            pk: repo_pk(repo),
            sk: format!("{}{index:05}", chunk_prefix(path, version)),
        }
    }

    /// The key as the attributes `pk` and `sk`, as the SDK's `set_key` and items take it.
    pub fn into_attributes(self) -> HashMap<String, AttributeValue> {
        HashMap::from([
            ("pk".to_owned(), AttributeValue::S(self.pk)),
            ("sk".to_owned(), AttributeValue::S(self.sk)),
        ])
    }
}

/// The partition holding a repository's models and chunks.
pub fn repo_pk(repo: &RepoRef) -> String {
    format!("{REPO_PREFIX}{repo}")
}

/// The sort-key prefix shared by every chunk of one version of one model (and by no other item):
/// `CHUNK#{sha256(path)}#{version}#`. The path is hashed so that a path containing `#` cannot
/// make one model's chunks look like another's.
pub fn chunk_prefix(path: &str, version: &str) -> String {
    format!("{CHUNK_PREFIX}{}#{version}#", sha256_hex(path.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo() -> RepoRef {
        RepoRef::parse("PRJ/models").unwrap()
    }

    #[test]
    fn a_registered_repository_is_keyed_in_the_registry_partition() {
        let key = Key::registry(&repo());

        assert_eq!(key.pk, "REGISTRY");
        assert_eq!(key.sk, "REPO#PRJ/models");
    }

    #[test]
    fn a_model_is_keyed_by_its_path_in_its_repository_partition() {
        let key = Key::model(&repo(), "dir/a model.json");

        assert_eq!(key.pk, "REPO#PRJ/models");
        assert_eq!(key.sk, "MODEL#dir/a model.json");
    }

    #[test]
    fn a_chunk_is_keyed_by_the_path_digest_the_version_and_a_five_digit_index() {
        let key = Key::chunk(&repo(), "a.json", "v1", 7);

        assert_eq!(key.pk, "REPO#PRJ/models");
        assert_eq!(key.sk, format!("CHUNK#{}#v1#00007", sha256_hex(b"a.json")));
        assert!(key.sk.starts_with(&chunk_prefix("a.json", "v1")));
    }

    #[test]
    fn the_chunks_of_a_version_sort_in_index_order() {
        let sks: Vec<String> = [0, 1, 9, 10, 99, 100, 12_345]
            .iter()
            .map(|&i| Key::chunk(&repo(), "a.json", "v1", i).sk)
            .collect();

        let mut sorted = sks.clone();
        sorted.sort();

        assert_eq!(sorted, sks);
    }

    #[test]
    fn the_chunk_prefix_of_one_version_matches_no_other_path_or_version() {
        let prefix = chunk_prefix("a.json", "v1");

        assert!(!Key::chunk(&repo(), "a.json", "v10", 0).sk.starts_with(&prefix));
        assert!(!Key::chunk(&repo(), "b.json", "v1", 0).sk.starts_with(&prefix));
        assert!(!Key::model(&repo(), "a.json").sk.starts_with(CHUNK_PREFIX));
    }

    #[test]
    fn a_key_becomes_the_pk_and_sk_string_attributes() {
        let attributes = Key::model(&repo(), "a.json").into_attributes();

        assert_eq!(attributes.len(), 2);
        assert_eq!(attributes["pk"], AttributeValue::S("REPO#PRJ/models".into()));
        assert_eq!(attributes["sk"], AttributeValue::S("MODEL#a.json".into()));
    }
}
