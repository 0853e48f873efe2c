//! A durable FIFO push queue, with the behaviour of an SQS FIFO queue and its dead-letter queue:
//!
//! - **Deduplication** on the delivery id, for [`HubOptions::dedup_window`] (SQS's 5 minutes by
//!   default; `None` = forever). A duplicate is answered [`Enqueued::Duplicate`] and not queued.
//! - **Ordering per message group** ([`RepoRef::message_group`]): only the oldest message of a
//!   group can be received, and not while it is leased or waiting out a backoff, so pushes to one
//!   repository are synced in order while other repositories proceed.
//! - **Leases**: [`SqliteHub::receive`] hides the message for a visibility timeout and hands out a
//!   fresh [`Receipt`]. [`SqliteHub::ack`] deletes it; [`SqliteHub::retry`] makes it visible again
//!   after a delay; a lease that simply expires (the worker crashed or was killed) makes it visible
//!   again too. Nothing is lost by a restart: the queue is in the database file.
//! - **Dead letters**: a message received [`HubOptions::max_attempts`] times without being
//!   acknowledged moves to the `dead_letters` table ([`SqliteHub::dead_letters`]), so it neither
//!   blocks its repository forever nor disappears silently; [`SqliteHub::dead_letter`] moves one
//!   there at once.
//!
//! What to do with a received push (acknowledge, retry after which delay, dead-letter) is the core
//! consumer policy's decision (`hubsync_core::consumer`), applied by `hubsync serve`'s workers.
//! Since only the oldest message of a group is ever received, the later pushes of a repository
//! whose push is being retried spend no attempts meanwhile: that push's retry covers them (every
//! sync goes to the branch head), and they are received, and find nothing left to do, after it.
//!
//! [`HubOptions::dedup_window`]: crate::HubOptions::dedup_window
//! [`HubOptions::max_attempts`]: crate::HubOptions::max_attempts
//! [`RepoRef::message_group`]: hubsync_core::ids::RepoRef::message_group

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use hubsync_core::ports::{Enqueued, PushQueue, QueueError};
use hubsync_core::push::PushMessage;
use rusqlite::{OptionalExtension, Transaction, TransactionBehavior, params};
use serde::Serialize;
use tokio::sync::futures::Notified;

use crate::{Inner, SqliteError, SqliteHub};

/// The handle of one lease on a message; a new one is issued at every receive, so a worker whose
/// lease expired cannot acknowledge the message another worker now holds.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Receipt(String);

impl Receipt {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Receipt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A leased message.
#[derive(Debug, Clone)]
pub struct QueuedPush {
    pub receipt: Receipt,
    pub push: PushMessage,
    /// Times the message has been received, this time included (1 on the first delivery).
    pub attempts: u32,
    pub enqueued_at: DateTime<Utc>,
    /// When the lease ends and the message becomes visible again unless acknowledged.
    pub lease_expires_at: DateTime<Utc>,
}

/// What [`SqliteHub::retry`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetryOutcome {
    /// The message will be visible again at this time.
    Scheduled { visible_at: DateTime<Utc> },
    /// It had been received `max_attempts` times: it is now in the dead-letter table.
    DeadLettered,
    /// The receipt is no longer valid (the lease expired and the message was received again, or it
    /// was acknowledged): nothing changed.
    LeaseLost,
}

/// A message that could not be processed, kept for a person to look at (and redrive).
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub id: i64,
    pub delivery_id: String,
    pub message_group: String,
    /// The message, if its JSON is still readable.
    pub push: Option<PushMessage>,
    /// The message's JSON as queued.
    pub body: String,
    pub attempts: u32,
    /// Why it was given up on (the last error).
    pub reason: String,
    pub enqueued_at: DateTime<Utc>,
    pub dead_at: DateTime<Utc>,
}

/// How many messages are where, at the hub's current time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QueueStats {
    /// Waiting to be received (including those waiting out a retry backoff).
    pub pending: u64,
    /// Received and not yet acknowledged, with an unexpired lease.
    pub in_flight: u64,
    pub dead_letters: u64,
}

impl QueueStats {
    /// No message is waiting or being processed (dead letters aside).
    pub fn is_drained(&self) -> bool {
        self.pending == 0 && self.in_flight == 0
    }
}

pub(crate) fn millis(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

pub(crate) fn from_millis(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms)
        .single()
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

pub(crate) fn duration_millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Moves one queued message to the dead-letter table.
fn dead_letter(tx: &Transaction<'_>, seq: i64, now: i64, reason: &str) -> Result<(), SqliteError> {
    tx.execute(
        "INSERT INTO dead_letters (delivery_id, message_group, body, enqueued_at, dead_at, attempts, reason)
         SELECT delivery_id, message_group, body, enqueued_at, ?2, attempts, ?3 FROM queue WHERE seq = ?1",
        params![seq, now, reason],
    )?;
    tx.execute("DELETE FROM queue WHERE seq = ?1", [seq])?;
    Ok(())
}

impl PushQueue for SqliteHub {
    async fn enqueue(&self, push: &PushMessage) -> Result<Enqueued, QueueError> {
        let push = push.clone();
        let outcome = self
            .blocking(move |inner| {
                let body = push.to_json();
                let now = millis(inner.now());
                let mut conn = inner.conn();
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                if let Some(window) = inner.options.dedup_window {
                    tx.execute("DELETE FROM dedup WHERE seen_at <= ?1", [now.saturating_sub(duration_millis(window))])?;
                }
                let fresh = tx.execute(
                    "INSERT INTO dedup (delivery_id, seen_at) VALUES (?1, ?2) ON CONFLICT (delivery_id) DO NOTHING",
                    params![push.delivery_id.as_str(), now],
                )? == 1;
                if fresh {
                    tx.execute(
                        "INSERT INTO queue (delivery_id, message_group, body, enqueued_at, visible_at) VALUES (?1, ?2, ?3, ?4, ?4)",
                        params![push.delivery_id.as_str(), push.repo.message_group(), body, now],
                    )?;
                }
                tx.commit()?;
                Ok(if fresh { Enqueued::Queued } else { Enqueued::Duplicate })
            })
            .await?;
        if outcome == Enqueued::Queued {
            self.inner.changed.notify_waiters();
        }
        Ok(outcome)
    }
}

impl SqliteHub {
    /// Completes when a message may have become receivable (a push was queued, a message was
    /// acknowledged and unblocked its group, or released without delay). Create it *before*
    /// calling [`receive`](Self::receive) and [`enable`](Notified::enable) it, so a wake-up in
    /// between is not missed. Leases and backoffs that run out do not wake anyone: poll as well.
    pub fn notified(&self) -> Notified<'_> {
        self.inner.changed.notified()
    }

    /// Leases the next receivable message for `visibility`, or `None` if there is none now.
    ///
    /// A message whose lease expired after its last allowed attempt is dead-lettered here, and a
    /// message whose JSON cannot be read any more is dead-lettered at once: neither blocks its
    /// repository.
    pub async fn receive(&self, visibility: Duration) -> Result<Option<QueuedPush>, SqliteError> {
        self.blocking(move |inner| receive(inner, visibility)).await
    }

    /// Acknowledges (deletes) a processed message. `false`: the receipt is no longer valid, because
    /// the lease expired and the message was received again; it will be (or is being) processed
    /// again, which the sync tolerates.
    pub async fn ack(&self, receipt: &Receipt) -> Result<bool, SqliteError> {
        let receipt = receipt.0.clone();
        let deleted = self
            .blocking(move |inner| {
                Ok(inner
                    .conn()
                    .execute("DELETE FROM queue WHERE receipt = ?1", [receipt])?
                    == 1)
            })
            .await?;
        if deleted {
            // The next message of the same group can now be received.
            self.inner.changed.notify_waiters();
        }
        Ok(deleted)
    }

    /// Releases a message that failed: visible again after `delay`, or dead-lettered with `error`
    /// as the reason if it has been received `max_attempts` times.
    pub async fn retry(&self, receipt: &Receipt, delay: Duration, error: &str) -> Result<RetryOutcome, SqliteError> {
        let (receipt, error) = (receipt.0.clone(), error.to_owned());
        let outcome = self
            .blocking(move |inner| {
                let now = millis(inner.now());
                let mut conn = inner.conn();
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let row: Option<(i64, u32)> = tx
                    .query_row(
                        "SELECT seq, attempts FROM queue WHERE receipt = ?1",
                        [&receipt],
                        |row| Ok((row.get(0)?, row.get(1)?)),
                    )
                    .optional()?;
                let outcome = match row {
                    None => RetryOutcome::LeaseLost,
                    Some((seq, attempts)) if attempts >= inner.options.max_attempts => {
                        dead_letter(&tx, seq, now, &error)?;
                        RetryOutcome::DeadLettered
                    }
                    Some((seq, _)) => {
                        let visible_at = now.saturating_add(duration_millis(delay));
                        tx.execute(
                            "UPDATE queue SET receipt = NULL, visible_at = ?2, last_error = ?3 WHERE seq = ?1",
                            params![seq, visible_at, error],
                        )?;
                        RetryOutcome::Scheduled {
                            visible_at: from_millis(visible_at),
                        }
                    }
                };
                tx.commit()?;
                Ok(outcome)
            })
            .await?;
        match &outcome {
            RetryOutcome::Scheduled { visible_at } if *visible_at <= self.inner.now() => {
                self.inner.changed.notify_waiters()
            }
            RetryOutcome::DeadLettered => self.inner.changed.notify_waiters(),
            _ => {}
        }
        Ok(outcome)
    }

    /// Moves a received message to the dead-letter table with `reason`, now (the consumer policy
    /// gave up on it). `false`: the receipt is no longer valid, and nothing changed.
    pub async fn dead_letter(&self, receipt: &Receipt, reason: &str) -> Result<bool, SqliteError> {
        let (receipt, reason) = (receipt.0.clone(), reason.to_owned());
        let moved = self
            .blocking(move |inner| {
                let now = millis(inner.now());
                let mut conn = inner.conn();
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let seq: Option<i64> = tx
                    .query_row("SELECT seq FROM queue WHERE receipt = ?1", [&receipt], |row| row.get(0))
                    .optional()?;
                if let Some(seq) = seq {
                    dead_letter(&tx, seq, now, &reason)?;
                }
                tx.commit()?;
                Ok(seq.is_some())
            })
            .await?;
        if moved {
            // The next message of the same group can now be received.
            self.inner.changed.notify_waiters();
        }
        Ok(moved)
    }

    /// Extends a lease to `visibility` from now (a heartbeat for long syncs, like SQS's
    /// `ChangeMessageVisibility`). `false`: the receipt is no longer valid.
    pub async fn extend_lease(&self, receipt: &Receipt, visibility: Duration) -> Result<bool, SqliteError> {
        let receipt = receipt.0.clone();
        self.blocking(move |inner| {
            let until = millis(inner.now()).saturating_add(duration_millis(visibility));
            Ok(inner.conn().execute(
                "UPDATE queue SET visible_at = ?2 WHERE receipt = ?1",
                params![receipt, until],
            )? == 1)
        })
        .await
    }

    /// Counts of pending, in-flight and dead-lettered messages.
    pub async fn queue_stats(&self) -> Result<QueueStats, SqliteError> {
        self.blocking(|inner| {
            let now = millis(inner.now());
            let conn = inner.conn();
            let (pending, in_flight): (i64, i64) = conn.query_row(
                "SELECT COALESCE(SUM(receipt IS NULL OR visible_at <= ?1), 0),
                        COALESCE(SUM(receipt IS NOT NULL AND visible_at > ?1), 0)
                 FROM queue",
                [now],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )?;
            let dead_letters: i64 = conn.query_row("SELECT COUNT(*) FROM dead_letters", [], |row| row.get(0))?;
            let count = |n: i64| u64::try_from(n).unwrap_or(0);
            Ok(QueueStats {
                pending: count(pending),
                in_flight: count(in_flight),
                dead_letters: count(dead_letters),
            })
        })
        .await
    }

    /// Every dead-lettered message, oldest first.
    pub async fn dead_letters(&self) -> Result<Vec<DeadLetter>, SqliteError> {
        self.blocking(|inner| {
            let conn = inner.conn();
            let mut stmt = conn.prepare(
                "SELECT id, delivery_id, message_group, body, attempts, reason, enqueued_at, dead_at
                 FROM dead_letters ORDER BY id",
            )?;
            let letters = stmt
                .query_map([], |row| {
                    let body: String = row.get(3)?;
                    Ok(DeadLetter {
                        id: row.get(0)?,
                        delivery_id: row.get(1)?,
                        message_group: row.get(2)?,
                        push: serde_json::from_str(&body).ok(),
                        body,
                        attempts: row.get(4)?,
                        reason: row.get(5)?,
                        enqueued_at: from_millis(row.get(6)?),
                        dead_at: from_millis(row.get(7)?),
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(letters)
        })
        .await
    }

    /// Puts a dead letter back at the end of its group's queue with its attempts reset (after the
    /// cause was fixed). `false` if there is no dead letter with this id.
    pub async fn redrive(&self, dead_letter_id: i64) -> Result<bool, SqliteError> {
        let moved = self
            .blocking(move |inner| {
                let now = millis(inner.now());
                let mut conn = inner.conn();
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let inserted = tx.execute(
                    "INSERT INTO queue (delivery_id, message_group, body, enqueued_at, visible_at)
                     SELECT delivery_id, message_group, body, enqueued_at, ?2 FROM dead_letters WHERE id = ?1",
                    params![dead_letter_id, now],
                )?;
                tx.execute("DELETE FROM dead_letters WHERE id = ?1", [dead_letter_id])?;
                tx.commit()?;
                Ok(inserted == 1)
            })
            .await?;
        if moved {
            self.inner.changed.notify_waiters();
        }
        Ok(moved)
    }
}

fn receive(inner: &Inner, visibility: Duration) -> Result<Option<QueuedPush>, SqliteError> {
    let now = millis(inner.now());
    let max_attempts = inner.options.max_attempts;
    let mut conn = inner.conn();
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let leased = loop {
        // The oldest message of each group is the only one that may go; it goes when visible
        // (never leased, backoff over, or lease expired).
        let head: Option<(i64, String, u32, i64)> = tx
            .query_row(
                "SELECT seq, body, attempts, enqueued_at FROM queue AS q
                 WHERE visible_at <= ?1
                   AND seq = (SELECT MIN(seq) FROM queue WHERE message_group = q.message_group)
                 ORDER BY seq LIMIT 1",
                [now],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)),
            )
            .optional()?;
        let Some((seq, body, attempts, enqueued_at)) = head else {
            break None;
        };
        if attempts >= max_attempts {
            let last: Option<String> =
                tx.query_row("SELECT last_error FROM queue WHERE seq = ?1", [seq], |row| row.get(0))?;
            let reason = format!(
                "received {attempts} times without being acknowledged (the worker stopped or its lease expired){}",
                last.map(|e| format!("; last error: {e}")).unwrap_or_default()
            );
            tracing::error!(seq, attempts, reason, "push moved to the dead-letter table");
            dead_letter(&tx, seq, now, &reason)?;
            continue;
        }
        let push: PushMessage = match serde_json::from_str(&body) {
            Ok(push) => push,
            Err(e) => {
                let reason = format!("the queued message cannot be read: {e}");
                tracing::error!(seq, reason, "push moved to the dead-letter table");
                dead_letter(&tx, seq, now, &reason)?;
                continue;
            }
        };
        let receipt = Receipt(uuid::Uuid::new_v4().to_string());
        let lease_expires_at = now.saturating_add(duration_millis(visibility));
        tx.execute(
            "UPDATE queue SET receipt = ?2, visible_at = ?3, attempts = attempts + 1 WHERE seq = ?1",
            params![seq, receipt.0, lease_expires_at],
        )?;
        break Some(QueuedPush {
            receipt,
            push,
            attempts: attempts + 1,
            enqueued_at: from_millis(enqueued_at),
            lease_expires_at: from_millis(lease_expires_at),
        });
    };
    tx.commit()?;
    Ok(leased)
}
