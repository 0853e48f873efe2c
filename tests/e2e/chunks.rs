//! The DynamoDB chunk protocol on moto, asserted on the stored items: a model whose compressed
//! content is above the inline limit is written as chunks keyed by its digest, reads back byte
//! for byte, and only the chunks of superseded versions are given a time-to-live (the emulator
//! does not expire items by itself, so the items show exactly what was written).

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::Utc;
use hubsync_aws::DynamoStore;
use hubsync_aws::dynamodb::keys::{chunk_prefix, repo_pk};
use hubsync_aws::dynamodb::{CHUNK_SIZE, INLINE_LIMIT};
use hubsync_core::ids::{CommitId, RepoRef};
use hubsync_core::model::{ModelRecord, ModelStatus};
use hubsync_core::ports::{LeaseOwner, ModelStore, RepoRegistry, StoreError, SyncLease};
use hubsync_tests::aws::TestAws;
use sha2::{Digest, Sha256};

const PATH: &str = "big/incompressible.json";

/// `len` bytes that gzip cannot shrink (a SHA-256 stream seeded with `seed`).
fn incompressible(seed: u8, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 32);
    let mut block = Sha256::digest([seed]);
    while out.len() < len {
        out.extend_from_slice(&block);
        block = Sha256::digest(block);
    }
    out.truncate(len);
    out
}

fn record(content: Vec<u8>) -> ModelRecord {
    ModelRecord::new(
        PATH.into(),
        CommitId::parse(&"c".repeat(40)).unwrap(),
        Utc::now(),
        ModelStatus::Malformed {
            error: "not JSON".into(),
        },
        content,
    )
}

/// The chunk items of one version: sort key -> whether it carries `expiresAt`.
async fn chunks_of(aws: &TestAws, repo: &RepoRef, version: &str) -> BTreeMap<String, bool> {
    let out = aws
        .dynamodb()
        .query()
        .table_name(&aws.resources.table)
        .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
        .expression_attribute_values(":pk", AttributeValue::S(repo_pk(repo)))
        .expression_attribute_values(":prefix", AttributeValue::S(chunk_prefix(PATH, version)))
        .consistent_read(true)
        .send()
        .await
        .expect("moto answers Query");
    out.items
        .unwrap_or_default()
        .into_iter()
        .map(|item| {
            let sk = item["sk"].as_s().unwrap().clone();
            (sk, item.contains_key("expiresAt"))
        })
        .collect()
}

/// A registered repository and the sync lease its writes are made under.
async fn store() -> (TestAws, DynamoStore, RepoRef, SyncLease) {
    let aws = TestAws::new(r#"{"baseUrl":"http://127.0.0.1:1","accessToken":"t","webhookSecret":"s"}"#).await;
    let store = DynamoStore::new(aws.dynamodb(), aws.resources.table.clone());
    let repo = RepoRef::parse("DATA/chunked").unwrap();
    assert!(store.register(&repo).await.unwrap());
    let lease = store
        .acquire_lease(&repo, &LeaseOwner::generate("chunks test"), Duration::from_secs(600))
        .await
        .unwrap();
    (aws, store, repo, lease)
}

#[tokio::test]
async fn a_model_above_the_inline_limit_is_stored_in_chunks_and_reads_back() {
    let (aws, store, repo, lease) = store().await;
    let v1 = record(incompressible(1, 2 * CHUNK_SIZE + 1000));
    assert!(v1.content.len() > INLINE_LIMIT);

    store.put_model(&lease, &v1).await.unwrap();

    let chunks = chunks_of(&aws, &repo, &v1.content_sha256).await;
    assert_eq!(chunks.len(), 3, "three chunks: {chunks:?}");
    assert!(chunks.values().all(|expires| !expires), "current chunks do not expire");
    let head = aws
        .dynamodb()
        .get_item()
        .table_name(&aws.resources.table)
        .key("pk", AttributeValue::S(repo_pk(&repo)))
        .key("sk", AttributeValue::S(format!("MODEL#{PATH}")))
        .send()
        .await
        .unwrap()
        .item
        .expect("the head item");
    assert_eq!(head["chunks"], AttributeValue::N("3".into()));
    assert!(!head.contains_key("content"));
    assert_eq!(store.get_model(&repo, PATH).await.unwrap(), Some(v1));
}

#[tokio::test]
async fn only_the_chunks_of_superseded_versions_are_given_a_time_to_live() {
    let (aws, store, repo, lease) = store().await;
    let v1 = record(incompressible(1, INLINE_LIMIT + 1000));
    let v2 = record(incompressible(2, INLINE_LIMIT + 2000));
    store.put_model(&lease, &v1).await.unwrap();

    store.put_model(&lease, &v2).await.unwrap();
    store.put_model(&lease, &v2).await.unwrap();

    let old = chunks_of(&aws, &repo, &v1.content_sha256).await;
    let current = chunks_of(&aws, &repo, &v2.content_sha256).await;
    assert_eq!(old.len(), 2);
    assert!(
        old.values().all(|expires| *expires),
        "superseded chunks expire: {old:?}"
    );
    assert_eq!(current.len(), 2);
    assert!(
        current.values().all(|expires| !expires),
        "rewriting the same version keeps its chunks: {current:?}"
    );
    assert_eq!(store.get_model(&repo, PATH).await.unwrap(), Some(v2.clone()));

    assert!(store.delete_model(&lease, PATH).await.unwrap());

    let deleted = chunks_of(&aws, &repo, &v2.content_sha256).await;
    assert!(
        deleted.values().all(|expires| *expires),
        "a deleted model's chunks expire: {deleted:?}"
    );
    assert_eq!(store.get_model(&repo, PATH).await.unwrap(), None);
}

#[tokio::test]
async fn writing_a_superseded_version_again_clears_the_expiry_of_its_chunks() {
    let (aws, store, repo, lease) = store().await;
    let v1 = record(incompressible(1, INLINE_LIMIT + 1000));
    let v2 = record(incompressible(2, INLINE_LIMIT + 2000));
    store.put_model(&lease, &v1).await.unwrap();
    store.put_model(&lease, &v2).await.unwrap();

    store.put_model(&lease, &v1).await.unwrap();

    let back = chunks_of(&aws, &repo, &v1.content_sha256).await;
    assert!(
        back.values().all(|expires| !expires),
        "the head points at v1 again, whose chunks must not expire: {back:?}"
    );
    let superseded = chunks_of(&aws, &repo, &v2.content_sha256).await;
    assert!(superseded.values().all(|expires| *expires), "{superseded:?}");
    assert_eq!(store.get_model(&repo, PATH).await.unwrap(), Some(v1));
}

#[tokio::test]
async fn a_writer_without_the_lease_cannot_switch_a_head_or_mark_its_chunks() {
    let (aws, store, repo, lease) = store().await;
    let v1 = record(incompressible(1, INLINE_LIMIT + 1000));
    let v2 = record(incompressible(2, INLINE_LIMIT + 2000));
    store.put_model(&lease, &v1).await.unwrap();
    store.release_lease(&lease, true).await.unwrap();

    let refused = store.put_model(&lease, &v2).await;
    let refused_delete = store.delete_model(&lease, PATH).await;

    assert!(matches!(refused, Err(StoreError::LeaseLost(_))), "{refused:?}");
    assert!(
        matches!(refused_delete, Err(StoreError::LeaseLost(_))),
        "{refused_delete:?}"
    );
    let current = chunks_of(&aws, &repo, &v1.content_sha256).await;
    assert!(current.values().all(|expires| !expires), "{current:?}");
    assert_eq!(store.get_model(&repo, PATH).await.unwrap(), Some(v1));
}
