//! `DynamoStore` on moto: the store contract every store passes
//! (`hubsync_core::testing::conformance`), each case on a fresh table, and what only DynamoDB
//! adds, read back from the table itself with the SDK: a large model really is written as
//! `CHUNK#` items that its model item references, and superseded chunks are left to expire.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use hubsync_aws::DynamoStore;
use hubsync_aws::dynamodb::INLINE_LIMIT;
use hubsync_core::ids::RepoRef;
use hubsync_core::model::sha256_hex;
use hubsync_core::ports::ModelStore;
use hubsync_core::testing::conformance::{LARGE_MODEL_BYTES, held, record};
use hubsync_core::testing::fixtures::{hub_secret_json, incompressible_model, model, repo};
use hubsync_tests::aws::TestAws;

// The large fixture keeps about three quarters of its size under gzip: well above the limit.
const _: () = assert!(LARGE_MODEL_BYTES * 3 / 4 > 2 * INLINE_LIMIT);

/// A `DynamoStore` on a table of its own.
async fn fresh_store() -> DynamoStore {
    table().await.1
}

async fn table() -> (TestAws, DynamoStore) {
    let aws = TestAws::new(&hub_secret_json("stores-test-secret", &[])).await;
    let store = DynamoStore::new(aws.dynamodb(), aws.resources.table.clone());
    (aws, store)
}

mod conformance {
    hubsync_core::store_conformance!(super::fresh_store);
}

type Item = HashMap<String, AttributeValue>;

/// Every item of `repo`'s partition, straight from the table.
async fn partition(aws: &TestAws, repo: &RepoRef) -> Vec<Item> {
    let mut items = Vec::new();
    let mut start = None;
    loop {
        let out = aws
            .dynamodb()
            .query()
            .table_name(&aws.resources.table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", AttributeValue::S(format!("REPO#{repo}")))
            .set_exclusive_start_key(start)
            .consistent_read(true)
            .send()
            .await
            .expect("moto answers Query");
        items.extend(out.items.unwrap_or_default());
        start = out.last_evaluated_key;
        if start.is_none() {
            return items;
        }
    }
}

fn s<'a>(item: &'a Item, key: &str) -> Option<&'a str> {
    item.get(key).and_then(|v| v.as_s().ok()).map(String::as_str)
}

fn sk(item: &Item) -> &str {
    s(item, "sk").expect("every item has a sort key")
}

/// The model item of `path` and the chunk items of its partition, split into those left to
/// expire and those not.
struct Stored {
    model: Item,
    live_chunks: Vec<String>,
    expiring_chunks: Vec<String>,
}

async fn stored(aws: &TestAws, repo: &RepoRef, path: &str) -> Stored {
    let items = partition(aws, repo).await;
    let model = items
        .iter()
        .find(|i| sk(i) == format!("MODEL#{path}"))
        .cloned()
        .expect("the model item exists");
    let (expiring, live): (Vec<&Item>, Vec<&Item>) = items
        .iter()
        .filter(|i| sk(i).starts_with("CHUNK#"))
        .partition(|i| i.contains_key("expiresAt"));
    let names = |items: Vec<&Item>| items.into_iter().map(|i| sk(i).to_owned()).collect::<Vec<_>>();
    Stored {
        model,
        live_chunks: names(live),
        expiring_chunks: names(expiring),
    }
}

/// The chunk keys the model item of `path` names: `CHUNK#{sha256(path)}#{contentSha256}#{n}`.
fn referenced_chunks(model: &Item, path: &str) -> Vec<String> {
    let count: usize = model
        .get("chunks")
        .and_then(|v| v.as_n().ok())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let digest = s(model, "contentSha256").expect("the model item has its digest");
    (0..count)
        .map(|n| format!("CHUNK#{}#{digest}#{n:05}", sha256_hex(path.as_bytes())))
        .collect()
}

#[tokio::test]
async fn a_large_incompressible_model_is_written_as_chunks_its_model_item_references() {
    let (aws, store) = table().await;
    let r = repo("DATA/big");
    let path = "grands modèles/très grand ✓.hck.json";
    let rec = record(path, incompressible_model("Big", 1, LARGE_MODEL_BYTES));

    store.put_model(&held(&store, &r).await, &rec).await.unwrap();
    let back = store.get_model(&r, path).await.unwrap().expect("stored");

    let table = stored(&aws, &r, path).await;
    let referenced = referenced_chunks(&table.model, path);
    assert!(
        referenced.len() >= 2,
        "chunked, not inline: {} chunk(s)",
        referenced.len()
    );
    assert!(
        !table.model.contains_key("content"),
        "no inline content beside the chunks"
    );
    assert_eq!(s(&table.model, "contentSha256"), Some(rec.content_sha256.as_str()));
    let mut live = table.live_chunks.clone();
    live.sort();
    assert_eq!(
        live, referenced,
        "exactly the referenced chunks exist, none with expiresAt"
    );
    assert!(table.expiring_chunks.is_empty());
    assert!(back.content == rec.content, "read back byte for byte from the chunks");
}

#[tokio::test]
async fn replacing_or_deleting_a_chunked_model_leaves_its_old_chunks_to_expire() {
    let (aws, store) = table().await;
    let r = repo("DATA/big");
    let path = "big.hck.json";
    let first = record(path, incompressible_model("Big", 1, LARGE_MODEL_BYTES));
    let second = record(path, incompressible_model("Big", 2, LARGE_MODEL_BYTES));
    let small = record(path, model("Big"));

    store.put_model(&held(&store, &r).await, &first).await.unwrap();
    let first_chunks = referenced_chunks(&stored(&aws, &r, path).await.model, path);
    store.put_model(&held(&store, &r).await, &second).await.unwrap();
    let after_second = stored(&aws, &r, path).await;
    let second_chunks = referenced_chunks(&after_second.model, path);
    store.put_model(&held(&store, &r).await, &small).await.unwrap();
    let after_small = stored(&aws, &r, path).await;
    store.delete_model(&held(&store, &r).await, path).await.unwrap();
    let remaining = partition(&aws, &r).await;

    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    assert_eq!(
        sorted(after_second.live_chunks),
        second_chunks,
        "the new version's chunks are live"
    );
    assert_eq!(
        sorted(after_second.expiring_chunks),
        first_chunks,
        "the old version's expire"
    );
    assert!(
        after_small.model.contains_key("content"),
        "a small model is stored inline"
    );
    assert!(referenced_chunks(&after_small.model, path).is_empty());
    assert!(after_small.live_chunks.is_empty(), "{:?}", after_small.live_chunks);
    assert_eq!(
        sorted(after_small.expiring_chunks),
        sorted([first_chunks, second_chunks].concat())
    );
    assert!(
        remaining
            .iter()
            .filter(|i| sk(i) != "LEASE")
            .all(|i| sk(i).starts_with("CHUNK#") && i.contains_key("expiresAt")),
        "after the delete only expiring chunks (and the sync lease) are left"
    );
}
