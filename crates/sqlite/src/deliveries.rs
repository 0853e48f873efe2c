//! [`DeliveryLog`] over the `deliveries` table, with the semantics of the in-memory reference
//! (the store conformance suite checks both). The entry as first recorded and the latest outcome
//! are stored as their serde JSON; the receipt time, repository and failure flag are columns, so
//! listings newest first (across repositories or for one) walk an index.
//!
//! Entries older than [`HubOptions::delivery_retention`](crate::HubOptions) are never returned,
//! and each recorded delivery purges the expired ones (an index range, cheap when there are none).

use hubsync_core::deliveries::{DeliveryEntry, DeliveryLog, DeliveryOutcome, DeliveryQuery};
use hubsync_core::ids::DeliveryId;
use hubsync_core::ports::StoreError;
use rusqlite::{OptionalExtension, Row, params};

use crate::error::corrupt;
use crate::queue::{duration_millis, millis};
use crate::{Inner, SqliteError, SqliteHub};

fn json<T: serde::Serialize>(value: &T) -> Result<String, SqliteError> {
    serde_json::to_string(value).map_err(|e| corrupt("delivery not serializable", e))
}

/// Receipts before this time (milliseconds) have expired.
fn cutoff(inner: &Inner) -> i64 {
    millis(inner.now()) - duration_millis(inner.options.delivery_retention)
}

/// An entry without its outcome, as the `entry` column holds it.
fn base(entry: &DeliveryEntry) -> DeliveryEntry {
    DeliveryEntry {
        outcome: None,
        duplicates: 0,
        ..entry.clone()
    }
}

const COLUMNS: &str = "entry, receipts, outcome";

fn read(row: &Row<'_>) -> rusqlite::Result<(String, u32, Option<String>)> {
    Ok((row.get(0)?, row.get(1)?, row.get(2)?))
}

fn into_entry((entry, receipts, outcome): (String, u32, Option<String>)) -> Result<DeliveryEntry, SqliteError> {
    let mut entry: DeliveryEntry = serde_json::from_str(&entry).map_err(|e| corrupt("delivery entry", e))?;
    entry.duplicates = receipts.saturating_sub(1);
    entry.outcome = outcome
        .map(|o| serde_json::from_str::<DeliveryOutcome>(&o).map_err(|e| corrupt("delivery outcome", e)))
        .transpose()?;
    Ok(entry)
}

impl DeliveryLog for SqliteHub {
    async fn record_delivery(&self, entry: &DeliveryEntry) -> Result<(), StoreError> {
        let entry = base(entry);
        Ok(self
            .blocking(move |inner| {
                let text = json(&entry)?;
                let conn = inner.conn();
                conn.execute("DELETE FROM deliveries WHERE received_at <= ?1", [cutoff(inner)])?;
                conn.execute(
                    "INSERT INTO deliveries (id, received_at, repo, entry, receipts) VALUES (?1, ?2, ?3, ?4, 1)
                     ON CONFLICT (id) DO UPDATE SET receipts = receipts + 1",
                    params![
                        entry.id.as_str(),
                        millis(entry.received_at),
                        entry.repo.as_ref().map(ToString::to_string),
                        text
                    ],
                )?;
                Ok(())
            })
            .await?)
    }

    async fn record_outcome(&self, entry: &DeliveryEntry, outcome: &DeliveryOutcome) -> Result<(), StoreError> {
        let (entry, outcome) = (base(entry), outcome.clone());
        Ok(self
            .blocking(move |inner| {
                inner.conn().execute(
                    "INSERT INTO deliveries (id, received_at, repo, entry, receipts, outcome, failed)
                     VALUES (?1, ?2, ?3, ?4, 0, ?5, ?6)
                     ON CONFLICT (id) DO UPDATE SET outcome = excluded.outcome, failed = excluded.failed",
                    params![
                        entry.id.as_str(),
                        millis(entry.received_at),
                        entry.repo.as_ref().map(ToString::to_string),
                        json(&entry)?,
                        json(&outcome)?,
                        outcome.is_failure(),
                    ],
                )?;
                Ok(())
            })
            .await?)
    }

    async fn deliveries(&self, query: &DeliveryQuery) -> Result<Vec<DeliveryEntry>, StoreError> {
        let query = query.clone();
        Ok(self
            .blocking(move |inner| {
                let from = query.since.map_or(i64::MIN, millis).max(cutoff(inner) + 1);
                let limit = i64::try_from(query.limit).unwrap_or(i64::MAX);
                let conn = inner.conn();
                let mut statement = conn.prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM deliveries
                     WHERE received_at >= ?1 AND (?2 IS NULL OR repo = ?2) AND (?3 = 0 OR failed = 1)
                     ORDER BY received_at DESC, id DESC LIMIT ?4"
                ))?;
                let rows = statement
                    .query_map(
                        params![
                            from,
                            query.repo.as_ref().map(ToString::to_string),
                            query.failed_only,
                            limit
                        ],
                        read,
                    )?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                rows.into_iter().map(into_entry).collect()
            })
            .await?)
    }

    async fn delivery(&self, id: &DeliveryId) -> Result<Option<DeliveryEntry>, StoreError> {
        let id = id.clone();
        Ok(self
            .blocking(move |inner| {
                let row = inner
                    .conn()
                    .query_row(
                        &format!("SELECT {COLUMNS} FROM deliveries WHERE id = ?1 AND received_at > ?2"),
                        params![id.as_str(), cutoff(inner)],
                        read,
                    )
                    .optional()?;
                row.map(into_entry).transpose()
            })
            .await?)
    }
}
