//! The table's keys: the partition and sort key of every kind of item. Every key the store reads
//! or writes is built here, so the layout described in docs/design.md has one source.

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

/// The longest sort key DynamoDB accepts, in bytes (UTF-8).
pub const MAX_SORT_KEY_BYTES: usize = 1024;
/// After [`MODEL_PREFIX`], marks a model key made of the digest of a path too long to be a key.
const HASHED_PATH: &str = "//sha256/";

/// The model head items whose paths may come after a path, in sort-key ranges: `from`..=`to`
/// (the models keyed by their path from that path on), and apart, the models keyed by the digest
/// of their long path when those sort before `from`. The caller drops the paths not after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelsAfter {
    pub from: String,
    pub to: String,
    pub hashed_apart: Option<String>,
}

impl ModelsAfter {
    pub fn new(after: &str) -> Self {
        let mut from = format!("{MODEL_PREFIX}{after}");
        // A longer key cannot be a condition's value; a prefix of it sorts no later.
        let mut end = from.len().min(MAX_SORT_KEY_BYTES);
        while !from.is_char_boundary(end) {
            end -= 1;
        }
        from.truncate(end);
        let hashed = format!("{MODEL_PREFIX}{HASHED_PATH}");
        Self {
            // Every model key starts with `MODEL#`, and sorts before `MODEL$`.
            to: "MODEL$".to_owned(),
            hashed_apart: (from > hashed).then_some(hashed),
            from,
        }
    }
}

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

    /// The head item of the model at `path`: `REPO#{project}/{slug}` / `MODEL#{path}`, or, when
    /// that would be longer than DynamoDB's [`MAX_SORT_KEY_BYTES`], `MODEL#//sha256/{sha256(path)}`
    /// (the path itself is kept in the item's `modelPath`). No path starts with `/`, so a hashed
    /// key is never the key of another path; every shorter path keeps the key it always had.
    pub fn model(repo: &RepoRef, path: &str) -> Self {
        let sk = format!("{MODEL_PREFIX}{path}");
        let sk = if sk.len() <= MAX_SORT_KEY_BYTES {
            sk
        } else {
            format!("{MODEL_PREFIX}{HASHED_PATH}{}", sha256_hex(path.as_bytes()))
        };
        Self { pk: repo_pk(repo), sk }
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

    #[test]
    fn the_models_after_a_path_are_its_key_onwards_and_the_hashed_keys_apart_when_they_sort_before() {
        let after = ModelsAfter::new("m/0001.json");
        let early = ModelsAfter::new("!early.json");
        let long = ModelsAfter::new(&"x".repeat(2000));

        assert_eq!(
            after,
            ModelsAfter {
                from: "MODEL#m/0001.json".into(),
                to: "MODEL$".into(),
                hashed_apart: Some("MODEL#//sha256/".into()),
            }
        );
        assert_eq!(early.hashed_apart, None, "the hashed keys are in the range");
        assert_eq!(long.from.len(), MAX_SORT_KEY_BYTES);
        for key in [
            Key::model(&repo(), "m/0002.json").sk,
            Key::model(&repo(), &"y".repeat(2000)).sk,
        ] {
            let in_range = after.from <= key && key <= after.to;
            let apart = after.hashed_apart.as_ref().is_some_and(|p| key.starts_with(p.as_str()));
            assert!(in_range != apart, "{key} is read once");
        }
    }

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
    fn a_path_whose_key_fits_keeps_it_whole_to_the_last_byte() {
        let longest = "p".repeat(MAX_SORT_KEY_BYTES - MODEL_PREFIX.len());

        let key = Key::model(&repo(), &longest);

        assert_eq!(key.sk, format!("MODEL#{longest}"));
        assert_eq!(key.sk.len(), MAX_SORT_KEY_BYTES);
    }

    #[test]
    fn a_path_too_long_for_a_sort_key_is_keyed_by_its_digest() {
        let long = format!("{}.json", "d/".repeat(550));
        let other = format!("{}.json", "e/".repeat(550));

        let key = Key::model(&repo(), &long);

        assert_eq!(key.pk, "REPO#PRJ/models");
        assert_eq!(key.sk, format!("MODEL#//sha256/{}", sha256_hex(long.as_bytes())));
        assert!(key.sk.len() <= MAX_SORT_KEY_BYTES);
        assert_ne!(key.sk, Key::model(&repo(), &other).sk);
        assert_eq!(key, Key::model(&repo(), &long), "the same path, the same key");
    }

    #[test]
    fn a_path_with_multibyte_characters_is_measured_in_bytes() {
        let path = "é".repeat(510); // 1,020 bytes: 1,026 with the prefix

        assert!(Key::model(&repo(), &path).sk.starts_with("MODEL#//sha256/"));
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
