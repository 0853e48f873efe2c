//! The registry and the models in one DynamoDB table (`pk`, `sk`, both strings).
//!
//! | item                 | pk                     | sk                                   |
//! |----------------------|------------------------|--------------------------------------|
//! | registered repository | `REGISTRY`            | `REPO#{project}/{slug}`              |
//! | model head           | `REPO#{project}/{slug}` | `MODEL#{path}`, or `MODEL#//sha256/{sha256(path)}` over 1,024 bytes |
//! | model content chunk  | `REPO#{project}/{slug}` | `CHUNK#{sha256(path)}#{sha256(content)}#{index:05}` |
//! | sync lease           | `REPO#{project}/{slug}` | `LEASE`                              |
//! | delivery log entry   | `DELIVERY#{id}`        | `DELIVERY` (see [`crate::delivery_log`]) |
//!
//! The layout is plain functions, tested without a table: the keys ([`keys`]), the encoding of
//! items ([`items`]) and the chunk protocol ([`chunks`]: when content is chunked, which chunks a
//! write puts and which it supersedes). The SDK calls that apply them are a thin layer: this
//! module (the store and its paging and batching), [`registry`] and [`models`].
//!
//! Every write is fenced on the repository's sync lease ([`lease`]): a head is switched or deleted,
//! the cursor moved and superseded chunks marked only in a transaction that checks the writer
//! still holds it. Chunks are put whole (which clears any `expiresAt` a version's chunks carried)
//! before the head is switched to them, and old chunks are marked only after the switch.

pub mod chunks;
pub mod items;
pub mod keys;
mod lease;
mod models;
mod registry;

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::WriteRequest;
use chrono::{DateTime, Utc};
use hubsync_core::ports::{StoreError, SyncLease};

pub use chunks::{CHUNK_SIZE, INLINE_LIMIT};

use crate::delivery_log::DynamoDeliveryLog;
use crate::errors::store_error;
use chunks::ChunkedVersion;
use items::{Item, s};

/// The DynamoDB adapter of [`RepoRegistry`](hubsync_core::ports::RepoRegistry) and
/// [`ModelStore`](hubsync_core::ports::ModelStore).
pub struct DynamoStore {
    client: Client,
    table: String,
    /// Where lease times come from (tests run a writer whose clock is ahead).
    clock: std::sync::Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>,
    /// The delivery log in the same table.
    deliveries: DynamoDeliveryLog,
}

impl DynamoStore {
    /// The SDK operations this adapter calls, in every file of this module (checked against the
    /// code in `functions`' tests).
    pub const OPERATIONS: &'static [&'static str] = &[
        "dynamodb:BatchWriteItem",
        "dynamodb:DeleteItem",
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "dynamodb:Query",
        "dynamodb:TransactWriteItems",
        "dynamodb:UpdateItem",
    ];

    pub fn new(client: Client, table: impl Into<String>) -> Self {
        let table = table.into();
        Self {
            deliveries: DynamoDeliveryLog::new(client.clone(), table.clone()),
            client,
            table,
            clock: std::sync::Arc::new(Utc::now),
        }
    }

    /// Keeps delivery log entries for `retention` instead of 30 days.
    #[must_use]
    pub fn with_delivery_retention(mut self, retention: Duration) -> Self {
        self.deliveries = self.deliveries.with_retention(retention);
        self
    }

    /// The delivery log in this store's table.
    pub fn delivery_log(&self) -> &DynamoDeliveryLog {
        &self.deliveries
    }

    /// The same store reading lease times from `clock` (a test's writer whose clock is ahead).
    #[must_use]
    pub fn with_clock(mut self, clock: impl Fn() -> DateTime<Utc> + Send + Sync + 'static) -> Self {
        self.clock = std::sync::Arc::new(clock);
        self
    }

    /// Writes `requests` in batches of 25, retrying unprocessed items with a backoff.
    async fn batch_write(&self, mut requests: Vec<WriteRequest>) -> Result<(), StoreError> {
        let mut backoff = Duration::from_millis(50);
        while !requests.is_empty() {
            let rest = requests.split_off(requests.len().min(25));
            let batch = std::mem::replace(&mut requests, rest);
            let mut pending = HashMap::from([(self.table.clone(), batch)]);
            for attempt in 0.. {
                let out = self
                    .client
                    .batch_write_item()
                    .set_request_items(Some(pending))
                    .send()
                    .await
                    .map_err(|e| store_error("DynamoDB BatchWriteItem", e))?;
                pending = out.unprocessed_items.unwrap_or_default();
                pending.retain(|_, v| !v.is_empty());
                if pending.is_empty() {
                    break;
                }
                if attempt >= 8 {
                    return Err(StoreError::Backend {
                        message: "DynamoDB BatchWriteItem left items unprocessed after 8 retries".into(),
                        retryable: true,
                        source: None,
                    });
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
        Ok(())
    }

    /// Gives the chunks of a superseded version of the model at `path` their time-to-live, under
    /// the lease (a writer that lost it could otherwise mark chunks a newer head points at again).
    async fn expire_chunks(&self, lease: &SyncLease, path: &str, version: &ChunkedVersion) -> Result<(), StoreError> {
        let keys = version.keys(&lease.repo, path).into_iter().map(|k| k.sk).collect();
        self.expire_chunk_keys(lease, keys).await
    }

    /// Every item of partition `pk` whose sort key starts with `sk_prefix` (all pages), projected
    /// to `projection` (with its `#name` placeholders) when given.
    async fn query_all(
        &self,
        pk: String,
        sk_prefix: &str,
        projection: Option<(&str, &[(&str, &str)])>,
    ) -> Result<Vec<Item>, StoreError> {
        self.query_keys(pk, SortKeys::Prefix(sk_prefix), projection).await
    }

    /// Every item of partition `pk` whose sort key is in `keys` (all pages), projected to
    /// `projection` (with its `#name` placeholders) when given.
    async fn query_keys(
        &self,
        pk: String,
        keys: SortKeys<'_>,
        projection: Option<(&str, &[(&str, &str)])>,
    ) -> Result<Vec<Item>, StoreError> {
        let mut items = Vec::new();
        let mut start = None;
        loop {
            let mut q = self
                .client
                .query()
                .table_name(&self.table)
                .consistent_read(true)
                .expression_attribute_values(":pk", s(pk.clone()))
                .set_exclusive_start_key(start);
            q = match keys {
                // DynamoDB refuses an empty begins_with prefix: no prefix means the whole partition.
                SortKeys::Prefix("") => q.key_condition_expression("pk = :pk"),
                SortKeys::Prefix(prefix) => q
                    .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
                    .expression_attribute_values(":prefix", s(prefix)),
                SortKeys::Between(low, high) => q
                    .key_condition_expression("pk = :pk AND sk BETWEEN :low AND :high")
                    .expression_attribute_values(":low", s(low))
                    .expression_attribute_values(":high", s(high)),
            };
            if let Some((expression, names)) = projection {
                q = q.projection_expression(expression);
                for (placeholder, name) in names {
                    q = q.expression_attribute_names(*placeholder, *name);
                }
            }
            let out = q.send().await.map_err(|e| store_error("DynamoDB Query", e))?;
            items.extend(out.items.unwrap_or_default());
            start = out.last_evaluated_key;
            if start.is_none() {
                return Ok(items);
            }
        }
    }
}

/// Which sort keys of a partition a query reads.
#[derive(Debug, Clone, Copy)]
enum SortKeys<'a> {
    /// Those that start with this.
    Prefix(&'a str),
    /// Those from the first to the second, both included.
    Between(&'a str, &'a str),
}
