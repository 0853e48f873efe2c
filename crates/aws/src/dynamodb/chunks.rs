//! The chunk protocol: when a model's content is chunked, which chunk items a write puts (before
//! the head), which chunks a write or a delete supersedes, when they expire, and how a reader
//! assembles a version. Plain functions; the SDK calls that apply them are in `models`.
//!
//! Content up to [`INLINE_LIMIT`] compressed bytes is stored in the head item itself. A larger
//! model is split into [`CHUNK_SIZE`] pieces keyed by its content digest (the *version*); the
//! chunks are written first, then the head is switched to the version in one `PutItem`, so a
//! reader sees the old version or the new one, never a mix. The chunks of the version a head no
//! longer points at are not deleted at once (a reader may be assembling them) but given an
//! `expiresAt` of [`SUPERSEDED_TTL`] from now.

use std::time::Duration;

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};
use hubsync_core::ids::RepoRef;
use hubsync_core::model::ModelRecord;
use hubsync_core::ports::StoreError;

use super::items::{Item, corrupt, get_n, head_item, n, opt_s};
use super::keys::Key;

/// Largest compressed content kept inline in the head item (DynamoDB items are limited to 400 KB,
/// attribute names and the other attributes included).
pub const INLINE_LIMIT: usize = 350_000;
/// Size of one chunk item's data.
pub const CHUNK_SIZE: usize = 350_000;
/// How long superseded chunks are kept for readers still assembling them.
pub const SUPERSEDED_TTL: Duration = Duration::from_secs(3600);

/// A chunked version of one model: the content digest its chunk keys carry, and how many chunks
/// it has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkedVersion {
    pub version: String,
    pub count: u64,
}

impl ChunkedVersion {
    /// The keys of this version's chunks of the model at `path`, in index order.
    pub fn keys(&self, repo: &RepoRef, path: &str) -> Vec<Key> {
        (0..self.count)
            .map(|index| Key::chunk(repo, path, &self.version, index))
            .collect()
    }
}

/// The items one model write puts: the chunks (written first, when the content is chunked) and
/// the head, which carries the content inline or the number of chunks.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelWrite {
    pub chunks: Vec<Item>,
    pub head: Item,
}

/// Lays out a model and its gzip-compressed content: inline up to [`INLINE_LIMIT`] bytes, else in
/// chunks of [`CHUNK_SIZE`] keyed by the content digest.
pub fn model_write(repo: &RepoRef, record: &ModelRecord, compressed: Vec<u8>) -> ModelWrite {
    let mut head = head_item(repo, record);
    if compressed.len() <= INLINE_LIMIT {
        head.insert("content".into(), AttributeValue::B(Blob::new(compressed)));
        return ModelWrite {
            chunks: Vec::new(),
            head,
        };
    }
    let chunks: Vec<Item> = compressed
        .chunks(CHUNK_SIZE)
        .enumerate()
        .map(|(index, data)| {
            let mut item = Key::chunk(repo, &record.path, &record.content_sha256, index as u64).into_attributes();
            item.insert("data".into(), AttributeValue::B(Blob::new(data.to_vec())));
            item
        })
        .collect();
    head.insert("chunks".into(), n(chunks.len() as u64));
    ModelWrite { chunks, head }
}

/// The chunk version a head item points at, if it is chunked.
pub fn chunked_version(head: &Item) -> Option<ChunkedVersion> {
    let count = get_n(head, "chunks").ok()?;
    Some(ChunkedVersion {
        version: opt_s(head, "contentSha256")?,
        count,
    })
}

/// The chunks to expire once `old` (the head a write replaced or a delete removed, if any) is
/// replaced by `new` (`None` for a delete): the old head's version, unless the new head points
/// at that same version.
pub fn superseded(old: Option<&Item>, new: Option<&Item>) -> Option<ChunkedVersion> {
    let old = chunked_version(old?)?;
    match new.and_then(chunked_version) {
        Some(current) if current.version == old.version => None,
        _ => Some(old),
    }
}

/// The `expiresAt` (seconds since the epoch) of chunks superseded at `now`.
pub fn expires_at(now: DateTime<Utc>) -> u64 {
    (now + SUPERSEDED_TTL).timestamp().max(0) as u64
}

/// Where a head's content is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoredContent {
    /// In the head: the compressed bytes.
    Inline(Vec<u8>),
    /// In chunk items.
    Chunked(ChunkedVersion),
}

/// Where the content of the head of the model at `path` is.
pub fn stored_content(head: &Item, path: &str) -> Result<StoredContent, StoreError> {
    if let Some(version) = chunked_version(head) {
        return Ok(StoredContent::Chunked(version));
    }
    match head.get("content") {
        Some(AttributeValue::B(b)) => Ok(StoredContent::Inline(b.clone().into_inner())),
        _ => Err(corrupt(format!("model {path} has neither content nor chunks"))),
    }
}

/// The compressed content of `version` from its chunk items (as a query on the version's prefix
/// returns them, in key order); `None` when some are missing (the version was superseded and its
/// chunks are going: read the head again).
pub fn assemble(version: &ChunkedVersion, parts: &[Item], path: &str) -> Result<Option<Vec<u8>>, StoreError> {
    if parts.len() as u64 != version.count {
        return Ok(None);
    }
    let mut data = Vec::new();
    for part in parts {
        match part.get("data") {
            Some(AttributeValue::B(b)) => data.extend_from_slice(b.as_ref()),
            _ => return Err(corrupt(format!("a chunk of {path} has no data"))),
        }
    }
    Ok(Some(data))
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use hubsync_core::ids::CommitId;
    use hubsync_core::model::ModelStatus;

    use super::super::items::s;
    use super::*;

    fn repo() -> RepoRef {
        RepoRef::parse("PRJ/models").unwrap()
    }

    fn model(content: &[u8]) -> ModelRecord {
        ModelRecord::new(
            "big.json".into(),
            CommitId::parse(&"a".repeat(40)).unwrap(),
            Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0).unwrap(),
            ModelStatus::Malformed { error: "test".into() },
            content.to_vec(),
        )
    }

    /// `len` bytes standing in for compressed content (the layout does not look inside).
    fn compressed(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8).collect()
    }

    fn data_of(item: &Item) -> &[u8] {
        match &item["data"] {
            AttributeValue::B(b) => b.as_ref(),
            other => panic!("data is not binary: {other:?}"),
        }
    }

    fn sk_of(item: &Item) -> &str {
        item["sk"].as_s().unwrap()
    }

    #[test]
    fn content_up_to_the_inline_limit_is_stored_in_the_head() {
        let record = model(b"x");

        let write = model_write(&repo(), &record, compressed(INLINE_LIMIT));

        assert!(write.chunks.is_empty());
        assert_eq!(
            stored_content(&write.head, "big.json").unwrap(),
            StoredContent::Inline(compressed(INLINE_LIMIT))
        );
        assert!(!write.head.contains_key("chunks"));
    }

    #[test]
    fn content_above_the_inline_limit_is_split_into_chunks_keyed_by_its_digest() {
        let record = model(b"x");

        let write = model_write(&repo(), &record, compressed(2 * CHUNK_SIZE + 1));

        let expected_keys: Vec<String> = (0..3)
            .map(|i| Key::chunk(&repo(), "big.json", &record.content_sha256, i).sk)
            .collect();
        assert_eq!(write.chunks.iter().map(sk_of).collect::<Vec<_>>(), expected_keys);
        assert!(write.chunks.iter().all(|c| c["pk"] == s("REPO#PRJ/models")));
        assert_eq!(
            write.chunks.iter().map(|c| data_of(c).len()).collect::<Vec<_>>(),
            [CHUNK_SIZE, CHUNK_SIZE, 1]
        );
        assert!(!write.head.contains_key("content"));
        assert_eq!(
            stored_content(&write.head, "big.json").unwrap(),
            StoredContent::Chunked(ChunkedVersion {
                version: record.content_sha256.clone(),
                count: 3
            })
        );
    }

    #[test]
    fn the_chunks_of_a_write_assemble_to_its_content() {
        let record = model(b"x");
        let content = compressed(INLINE_LIMIT + 10);
        let write = model_write(&repo(), &record, content.clone());
        let StoredContent::Chunked(version) = stored_content(&write.head, "big.json").unwrap() else {
            panic!("chunked")
        };

        let assembled = assemble(&version, &write.chunks, "big.json").unwrap();

        assert_eq!(assembled, Some(content));
        assert_eq!(
            version.keys(&repo(), "big.json"),
            write
                .chunks
                .iter()
                .map(|c| Key {
                    pk: c["pk"].as_s().unwrap().clone(),
                    sk: sk_of(c).to_owned()
                })
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn a_version_with_a_missing_chunk_assembles_to_none() {
        let write = model_write(&repo(), &model(b"x"), compressed(INLINE_LIMIT + 10));
        let version = chunked_version(&write.head).unwrap();

        let assembled = assemble(&version, &write.chunks[..1], "big.json").unwrap();

        assert_eq!(assembled, None);
    }

    #[test]
    fn a_chunk_without_data_is_corrupt() {
        let mut write = model_write(&repo(), &model(b"x"), compressed(INLINE_LIMIT + 10));
        write.chunks[1].remove("data");
        let version = chunked_version(&write.head).unwrap();

        let assembled = assemble(&version, &write.chunks, "big.json");

        assert!(matches!(assembled, Err(StoreError::Corrupt(_))));
    }

    #[test]
    fn a_head_with_neither_content_nor_chunks_is_corrupt() {
        let head = head_item(&repo(), &model(b"x"));

        assert!(matches!(stored_content(&head, "big.json"), Err(StoreError::Corrupt(_))));
    }

    #[test]
    fn replacing_a_chunked_head_supersedes_its_version() {
        let old = model_write(&repo(), &model(b"v1"), compressed(INLINE_LIMIT + 1)).head;
        let inline = model_write(&repo(), &model(b"v2"), compressed(10)).head;
        let other_chunked = model_write(&repo(), &model(b"v3"), compressed(INLINE_LIMIT + 1)).head;

        assert_eq!(superseded(Some(&old), Some(&inline)), chunked_version(&old));
        assert_eq!(superseded(Some(&old), Some(&other_chunked)), chunked_version(&old));
        assert_eq!(superseded(Some(&old), None), chunked_version(&old));
    }

    #[test]
    fn rewriting_the_same_chunked_version_supersedes_nothing() {
        let old = model_write(&repo(), &model(b"v1"), compressed(INLINE_LIMIT + 1)).head;
        let same = model_write(&repo(), &model(b"v1"), compressed(INLINE_LIMIT + 1)).head;

        assert_eq!(superseded(Some(&old), Some(&same)), None);
    }

    #[test]
    fn an_inline_or_absent_old_head_supersedes_nothing() {
        let inline = model_write(&repo(), &model(b"v1"), compressed(10)).head;
        let chunked = model_write(&repo(), &model(b"v2"), compressed(INLINE_LIMIT + 1)).head;

        assert_eq!(superseded(Some(&inline), Some(&chunked)), None);
        assert_eq!(superseded(Some(&inline), None), None);
        assert_eq!(superseded(None, Some(&chunked)), None);
    }

    #[test]
    fn superseded_chunks_expire_an_hour_later() {
        let now = Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0).unwrap();

        assert_eq!(expires_at(now), now.timestamp() as u64 + 3600);
    }
}
