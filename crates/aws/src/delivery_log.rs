//! The delivery log on DynamoDB ([`DynamoDeliveryLog`]), in the hub's one table.
//!
//! | item     | pk                | sk         | attributes |
//! |----------|-------------------|------------|------------|
//! | delivery | `DELIVERY#{id}`   | `DELIVERY` | `entry` (JSON, as first recorded), `receipts`, `outcome` (JSON, latest attempt), `failed`, `expiresAt`, and the index keys below |
//!
//! Two global secondary indexes list entries newest first with a `Query` (never a `Scan`):
//! `deliveriesByTime` (partition `deliveryLog` = `DELIVERIES`, every entry) and `deliveriesByRepo`
//! (partition `deliveryRepo` = `DELIVERIES#{project}/{slug}`, entries that name a repository),
//! both sorted by `deliveryAt` = `{receipt time in ms, 15 digits}#{id}`. One delivery is found by
//! its id with a `GetItem`. Entries get the table's time-to-live (`expiresAt`, the receipt time
//! plus the retention, 30 days by default); DynamoDB deletes expired items lazily, so reads skip
//! them.
//!
//! Every write is one `UpdateItem` that sets the entry's attributes only if absent: the webhook's
//! record adds one receipt (a delivery received again keeps its entry and counts as a duplicate),
//! the sync's outcome replaces the outcome. Either may come first (a fast sync can record before
//! the webhook does), and neither needs to read first.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};
use hubsync_core::deliveries::{
    DEFAULT_DELIVERY_RETENTION, DeliveryEntry, DeliveryLog, DeliveryOutcome, DeliveryQuery,
};
use hubsync_core::ids::{DeliveryId, RepoRef};
use hubsync_core::ports::StoreError;

use crate::dynamodb::items::{Item, corrupt, get_n, get_s, n, opt_s, s};
use crate::errors::store_error;

/// The index of every entry, newest first.
pub const BY_TIME_INDEX: &str = "deliveriesByTime";
/// The index of each repository's entries, newest first.
pub const BY_REPO_INDEX: &str = "deliveriesByRepo";
/// The partition of [`BY_TIME_INDEX`].
pub const ALL_PARTITION: &str = "DELIVERIES";

/// The item key of delivery `id`.
pub fn key(id: &DeliveryId) -> HashMap<String, AttributeValue> {
    HashMap::from([
        ("pk".to_owned(), s(format!("DELIVERY#{id}"))),
        ("sk".to_owned(), s("DELIVERY")),
    ])
}

/// The partition of `repo` in [`BY_REPO_INDEX`].
pub fn repo_partition(repo: &RepoRef) -> String {
    format!("{ALL_PARTITION}#{repo}")
}

/// The sort key of both indexes: the receipt time in milliseconds (fixed width, so text order is
/// time order), then the id.
pub fn sort_key(received_at: DateTime<Utc>, id: &DeliveryId) -> String {
    format!("{}#{id}", time_prefix(received_at))
}

fn time_prefix(t: DateTime<Utc>) -> String {
    format!("{:015}", t.timestamp_millis().max(0))
}

/// The DynamoDB adapter of [`DeliveryLog`].
#[derive(Clone)]
pub struct DynamoDeliveryLog {
    client: Client,
    table: String,
    retention: Duration,
}

impl DynamoDeliveryLog {
    /// The SDK operations this adapter calls (checked against the code in `functions`' tests).
    pub const OPERATIONS: &'static [&'static str] = &["dynamodb:GetItem", "dynamodb:Query", "dynamodb:UpdateItem"];

    /// The operations of recording only ([`DeliveryLog::record_delivery`] and
    /// [`DeliveryLog::record_outcome`]), all the webhook function calls.
    pub const RECORD_OPERATIONS: &'static [&'static str] = &["dynamodb:UpdateItem"];

    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
            retention: DEFAULT_DELIVERY_RETENTION,
        }
    }

    /// Keeps entries for `retention` instead of 30 days.
    #[must_use]
    pub fn with_retention(mut self, retention: Duration) -> Self {
        self.retention = retention;
        self
    }

    /// One `UpdateItem` that creates the entry if absent, then applies `update` (more `SET`
    /// clauses, or an `ADD`).
    async fn upsert(
        &self,
        entry: &DeliveryEntry,
        extra_set: &str,
        add: Option<&str>,
        values: Vec<(&str, AttributeValue)>,
        operation: &str,
    ) -> Result<(), StoreError> {
        let base = DeliveryEntry {
            outcome: None,
            duplicates: 0,
            ..entry.clone()
        };
        let text = serde_json::to_string(&base).map_err(|e| corrupt(format!("delivery not serializable: {e}")))?;
        let expires = DeliveryEntry::expires_at(entry.received_at, self.retention)
            .timestamp()
            .max(0) as u64;
        let mut set = vec![
            "#entry = if_not_exists(#entry, :entry)",
            "deliveryLog = if_not_exists(deliveryLog, :all)",
            "deliveryAt = if_not_exists(deliveryAt, :at)",
            "expiresAt = if_not_exists(expiresAt, :expires)",
        ];
        if entry.repo.is_some() {
            set.push("deliveryRepo = if_not_exists(deliveryRepo, :repo)");
        }
        if !extra_set.is_empty() {
            set.push(extra_set);
        }
        let mut expression = format!("SET {}", set.join(", "));
        if let Some(add) = add {
            expression.push_str(" ADD ");
            expression.push_str(add);
        }
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(&entry.id)))
            .update_expression(expression)
            .expression_attribute_names("#entry", "entry")
            .expression_attribute_values(":entry", s(text))
            .expression_attribute_values(":all", s(ALL_PARTITION))
            .expression_attribute_values(":at", s(sort_key(entry.received_at, &entry.id)))
            .expression_attribute_values(":expires", n(expires));
        if let Some(repo) = &entry.repo {
            request = request.expression_attribute_values(":repo", s(repo_partition(repo)));
        }
        for (name, value) in values {
            request = request.expression_attribute_values(name, value);
        }
        request.send().await.map_err(|e| store_error(operation, e))?;
        Ok(())
    }

    fn now_secs() -> u64 {
        Utc::now().timestamp().max(0) as u64
    }
}

/// An entry as read back.
pub fn entry_from_item(item: &Item) -> Result<DeliveryEntry, StoreError> {
    let mut entry: DeliveryEntry =
        serde_json::from_str(get_s(item, "entry")?).map_err(|e| corrupt(format!("delivery entry: {e}")))?;
    let receipts = get_n(item, "receipts").unwrap_or(0);
    entry.duplicates = u32::try_from(receipts.saturating_sub(1)).unwrap_or(u32::MAX);
    entry.outcome = opt_s(item, "outcome")
        .map(|o| serde_json::from_str::<DeliveryOutcome>(&o).map_err(|e| corrupt(format!("delivery outcome: {e}"))))
        .transpose()?;
    Ok(entry)
}

fn expired(item: &Item, now: u64) -> bool {
    get_n(item, "expiresAt").is_ok_and(|at| at <= now)
}

impl DeliveryLog for DynamoDeliveryLog {
    async fn record_delivery(&self, entry: &DeliveryEntry) -> Result<(), StoreError> {
        self.upsert(
            entry,
            "",
            Some("receipts :one"),
            vec![(":one", n(1))],
            "DynamoDB UpdateItem (record delivery)",
        )
        .await
    }

    async fn record_outcome(&self, entry: &DeliveryEntry, outcome: &DeliveryOutcome) -> Result<(), StoreError> {
        let text = serde_json::to_string(outcome).map_err(|e| corrupt(format!("outcome not serializable: {e}")))?;
        self.upsert(
            entry,
            "outcome = :outcome, failed = :failed",
            None,
            vec![
                (":outcome", s(text)),
                (":failed", AttributeValue::Bool(outcome.is_failure())),
            ],
            "DynamoDB UpdateItem (record outcome)",
        )
        .await
    }

    async fn deliveries(&self, query: &DeliveryQuery) -> Result<Vec<DeliveryEntry>, StoreError> {
        let now = Utc::now();
        let cutoff = now - chrono::TimeDelta::from_std(self.retention).unwrap_or(chrono::TimeDelta::MAX / 2);
        let from = query.since.map_or(cutoff, |since| since.max(cutoff));
        let (index, partition_name, partition) = match &query.repo {
            Some(repo) => (BY_REPO_INDEX, "deliveryRepo", repo_partition(repo)),
            None => (BY_TIME_INDEX, "deliveryLog", ALL_PARTITION.to_owned()),
        };
        let mut entries = Vec::new();
        let mut start = None;
        while entries.len() < query.limit {
            let mut request = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(index)
                .key_condition_expression(format!("{partition_name} = :p AND deliveryAt >= :from"))
                .expression_attribute_values(":p", s(partition.clone()))
                .expression_attribute_values(":from", s(time_prefix(from)))
                .scan_index_forward(false)
                .set_exclusive_start_key(start);
            if query.failed_only {
                request = request
                    .filter_expression("failed = :failed")
                    .expression_attribute_values(":failed", AttributeValue::Bool(true));
            } else {
                request = request.limit(i32::try_from(query.limit.min(1000)).unwrap_or(1000));
            }
            let out = request
                .send()
                .await
                .map_err(|e| store_error("DynamoDB Query (deliveries)", e))?;
            for item in out.items.unwrap_or_default() {
                if !expired(&item, Self::now_secs()) {
                    entries.push(entry_from_item(&item)?);
                }
            }
            start = out.last_evaluated_key;
            if start.is_none() {
                break;
            }
        }
        entries.truncate(query.limit);
        Ok(entries)
    }

    async fn delivery(&self, id: &DeliveryId) -> Result<Option<DeliveryEntry>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| store_error("DynamoDB GetItem (delivery)", e))?;
        match out.item {
            Some(item) if !expired(&item, Self::now_secs()) => entry_from_item(&item).map(Some),
            _ => Ok(None),
        }
    }
}

/// The store's delivery log is the table's: [`DynamoStore`](crate::DynamoStore) delegates.
impl DeliveryLog for crate::DynamoStore {
    async fn record_delivery(&self, entry: &DeliveryEntry) -> Result<(), StoreError> {
        self.delivery_log().record_delivery(entry).await
    }

    async fn record_outcome(&self, entry: &DeliveryEntry, outcome: &DeliveryOutcome) -> Result<(), StoreError> {
        self.delivery_log().record_outcome(entry, outcome).await
    }

    async fn deliveries(&self, query: &DeliveryQuery) -> Result<Vec<DeliveryEntry>, StoreError> {
        self.delivery_log().deliveries(query).await
    }

    async fn delivery(&self, id: &DeliveryId) -> Result<Option<DeliveryEntry>, StoreError> {
        self.delivery_log().delivery(id).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_sort_keys_order_deliveries_by_time_as_text() {
        let id = DeliveryId::parse("d-1").unwrap();
        let early = DateTime::from_timestamp_millis(999).unwrap();
        let late = DateTime::from_timestamp_millis(1_764_000_000_000).unwrap();

        let (a, b) = (sort_key(early, &id), sort_key(late, &id));

        assert!(a < b, "{a} < {b}");
        assert_eq!(b, "001764000000000#d-1");
        assert_eq!(key(&id)["pk"], s("DELIVERY#d-1"));
    }
}
