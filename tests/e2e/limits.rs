//! DynamoDB's own limits on moto: a model at a path too long for a sort key (1,024 bytes) is keyed
//! by the path's digest and reads, lists and deletes under its path; an item DynamoDB refuses
//! (over 400 KB) is a refused write, not a failure of the store, and other writes go on.

use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::Utc;
use hubsync_aws::DynamoStore;
use hubsync_aws::dynamodb::keys::{MODEL_PREFIX, repo_pk};
use hubsync_core::ids::{CommitId, RepoRef};
use hubsync_core::model::{ModelFacts, ModelRecord, ModelStatus};
use hubsync_core::ports::{LeaseOwner, ModelStore, RepoRegistry, StoreError, SyncLease};
use hubsync_tests::aws::TestAws;

fn record(path: &str) -> ModelRecord {
    ModelRecord::new(
        path.to_owned(),
        CommitId::parse(&"d".repeat(40)).unwrap(),
        Utc::now(),
        ModelStatus::Valid {
            facts: ModelFacts {
                model_name: "Deep".into(),
                ..ModelFacts::default()
            },
        },
        br#"{"modelName": "Deep"}"#.to_vec(),
    )
}

/// A registered repository and the sync lease its writes are made under.
async fn store() -> (TestAws, DynamoStore, RepoRef, SyncLease) {
    let aws = TestAws::new(r#"{"baseUrl":"http://127.0.0.1:1","accessToken":"t","webhookSecret":"s"}"#).await;
    let store = DynamoStore::new(aws.dynamodb(), aws.resources.table.clone());
    let repo = RepoRef::parse("DATA/limits").unwrap();
    assert!(store.register(&repo).await.unwrap());
    let lease = store
        .acquire_lease(&repo, &LeaseOwner::generate("limits test"), Duration::from_secs(600))
        .await
        .unwrap();
    (aws, store, repo, lease)
}

/// The sort keys of the repository's model heads.
async fn model_sort_keys(aws: &TestAws, repo: &RepoRef) -> Vec<String> {
    let out = aws
        .dynamodb()
        .query()
        .table_name(&aws.resources.table)
        .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
        .expression_attribute_values(":pk", AttributeValue::S(repo_pk(repo)))
        .expression_attribute_values(":prefix", AttributeValue::S(MODEL_PREFIX.into()))
        .consistent_read(true)
        .send()
        .await
        .expect("moto answers Query");
    out.items
        .unwrap_or_default()
        .iter()
        .map(|item| item["sk"].as_s().unwrap().clone())
        .collect()
}

#[tokio::test]
async fn a_model_at_a_path_too_long_for_a_sort_key_is_keyed_by_its_digest_and_kept_under_its_path() {
    // Arrange
    let (aws, store, repo, lease) = store().await;
    let path = format!("{}/model.hck.json", "folder/".repeat(156));
    assert!(path.len() > 1_024);
    let model = record(&path);

    // Act
    store.put_model(&lease, &model).await.unwrap();

    // Assert
    let keys = model_sort_keys(&aws, &repo).await;
    assert_eq!(keys.len(), 1);
    assert!(
        keys[0].starts_with("MODEL#//sha256/") && keys[0].len() <= 1_024,
        "{keys:?}"
    );
    let listed: Vec<String> = store
        .list_models(&repo)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.path)
        .collect();
    assert_eq!(listed.as_slice(), std::slice::from_ref(&path));
    assert_eq!(store.get_model(&repo, &path).await.unwrap(), Some(model));
    assert!(store.delete_model(&lease, &path).await.unwrap());
    assert!(store.list_models(&repo).await.unwrap().is_empty());
}

#[tokio::test]
async fn an_item_dynamodb_refuses_is_a_refused_write_and_other_writes_go_on() {
    // Arrange: a path of 420 KB, so that the head item alone is over DynamoDB's 400 KB.
    let (_aws, store, repo, lease) = store().await;
    let huge = format!("{}model.json", "p/".repeat(210_000));
    let small = record("small.json");

    // Act
    let refused = store.put_model(&lease, &record(&huge)).await;
    let accepted = store.put_model(&lease, &small).await;

    // Assert
    let error = refused.expect_err("DynamoDB refuses the item");
    assert!(matches!(error, StoreError::Refused { .. }), "{error:?}");
    assert!(!error.is_retryable());
    assert!(error.to_string().contains("ValidationException"), "{error}");
    accepted.expect("another model is written");
    assert_eq!(store.get_model(&repo, "small.json").await.unwrap(), Some(small));
}
