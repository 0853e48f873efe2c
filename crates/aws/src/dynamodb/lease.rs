//! The sync lease of a repository as one item (`pk` = `REPO#{project}/{slug}`, `sk` = `LEASE`),
//! and the fencing of every model write on it.
//!
//! The lease item holds `leaseOwner` (removed on release), `leaseUntil` (milliseconds since the
//! epoch, deliberately not the table's `expiresAt` time-to-live attribute, so DynamoDB never deletes
//! it) and `unfinished` (the last holder released it without finishing). Taking, renewing and
//! releasing it are conditional updates. A model write or delete, the cursor move and the marking
//! of superseded chunks are `TransactWriteItems` whose first action is a `ConditionCheck` that the
//! writer still holds the lease: a writer that lost it changes nothing.
//!
//! The sweep gives a time-to-live to chunks that no head references (left behind by a crash
//! between writing chunks and switching the head), a bounded number per sync.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    ConditionCheck, ReturnValue, ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update,
};
use chrono::{DateTime, TimeZone, Utc};
use hubsync_core::ids::RepoRef;
use hubsync_core::ports::{LeaseOwner, StoreError, SyncLease};

use super::DynamoStore;
use super::chunks::expires_at;
use super::items::{Item, corrupt, get_n, n, opt_s, s};
use super::keys::{CHUNK_PREFIX, Key, MODEL_PREFIX, chunk_prefix, repo_pk};
use crate::errors::store_error;

/// Actions in one `TransactWriteItems` (DynamoDB's limit), the lease check included.
const MAX_TRANSACTION: usize = 100;

fn millis(t: DateTime<Utc>) -> u64 {
    t.timestamp_millis().max(0) as u64
}

fn from_millis(ms: u64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(i64::try_from(ms).unwrap_or(i64::MAX))
        .single()
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

fn ttl_millis(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX)
}

fn lease_key(repo: &RepoRef) -> Item {
    Key::lease(repo).into_attributes()
}

fn lease_lost(repo: &RepoRef) -> StoreError {
    StoreError::LeaseLost(repo.clone())
}

/// How a fenced transaction ended when it did not succeed.
pub(crate) enum Fenced {
    /// Every action was applied.
    Applied,
    /// One of the caller's actions failed its own condition.
    ConditionFailed,
}

impl DynamoStore {
    pub(super) fn now(&self) -> DateTime<Utc> {
        (self.clock)()
    }

    pub(super) async fn acquire_lease_item(
        &self,
        repo: &RepoRef,
        owner: &LeaseOwner,
        ttl: Duration,
    ) -> Result<SyncLease, StoreError> {
        let now = self.now();
        let until = millis(now).saturating_add(ttl_millis(ttl));
        let res = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(lease_key(repo)))
            .update_expression("SET leaseOwner = :me, leaseUntil = :until")
            .condition_expression("attribute_not_exists(leaseOwner) OR leaseOwner = :me OR leaseUntil <= :now")
            .expression_attribute_values(":me", s(owner.as_str()))
            .expression_attribute_values(":until", n(until))
            .expression_attribute_values(":now", n(millis(now)))
            .return_values(ReturnValue::AllOld)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        let old = match res {
            Ok(out) => out.attributes,
            Err(SdkError::ServiceError(e)) if e.err().is_conditional_check_failed_exception() => {
                let held = match e.err() {
                    aws_sdk_dynamodb::operation::update_item::UpdateItemError::ConditionalCheckFailedException(c) => {
                        c.item.clone()
                    }
                    _ => None,
                };
                let held = match held {
                    Some(item) => Some(item),
                    None => self.lease_item(repo).await?,
                };
                let item = held.unwrap_or_default();
                return Err(StoreError::LeaseHeld {
                    repo: repo.clone(),
                    owner: LeaseOwner::from_stored(opt_s(&item, "leaseOwner").unwrap_or_default()),
                    until: from_millis(get_n(&item, "leaseUntil").unwrap_or(0)),
                });
            }
            Err(e) => return Err(store_error("DynamoDB UpdateItem (acquire lease)", e)),
        };
        let previous_unfinished = match old {
            None => false,
            Some(item) => {
                let unfinished = matches!(item.get("unfinished"), Some(v) if v.as_bool().is_ok_and(|b| *b));
                match opt_s(&item, "leaseOwner") {
                    Some(holder) if holder == owner.as_str() => unfinished,
                    // Expired without being released.
                    Some(_) => true,
                    None => unfinished,
                }
            }
        };
        Ok(SyncLease {
            repo: repo.clone(),
            owner: owner.clone(),
            expires_at: from_millis(until),
            previous_unfinished,
        })
    }

    async fn lease_item(&self, repo: &RepoRef) -> Result<Option<Item>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(lease_key(repo)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| store_error("DynamoDB GetItem (lease)", e))?;
        Ok(out.item)
    }

    pub(super) async fn renew_lease_item(&self, lease: &SyncLease, ttl: Duration) -> Result<SyncLease, StoreError> {
        let now = self.now();
        let until = millis(now).saturating_add(ttl_millis(ttl));
        let res = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(lease_key(&lease.repo)))
            .update_expression("SET leaseUntil = :until")
            .condition_expression("leaseOwner = :me AND leaseUntil > :now")
            .expression_attribute_values(":me", s(lease.owner.as_str()))
            .expression_attribute_values(":until", n(until))
            .expression_attribute_values(":now", n(millis(now)))
            .send()
            .await;
        match res {
            Ok(_) => Ok(SyncLease {
                expires_at: from_millis(until),
                ..lease.clone()
            }),
            Err(SdkError::ServiceError(e)) if e.err().is_conditional_check_failed_exception() => {
                Err(lease_lost(&lease.repo))
            }
            Err(e) => Err(store_error("DynamoDB UpdateItem (renew lease)", e)),
        }
    }

    pub(super) async fn release_lease_item(&self, lease: &SyncLease, finished: bool) -> Result<(), StoreError> {
        let res = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(lease_key(&lease.repo)))
            .update_expression("SET unfinished = :unfinished, leaseUntil = :now REMOVE leaseOwner")
            .condition_expression("leaseOwner = :me")
            .expression_attribute_values(":me", s(lease.owner.as_str()))
            .expression_attribute_values(":unfinished", aws_sdk_dynamodb::types::AttributeValue::Bool(!finished))
            .expression_attribute_values(":now", n(millis(self.now())))
            .send()
            .await;
        match res {
            // Lost meanwhile: the lease is its new owner's.
            Ok(_) => Ok(()),
            Err(SdkError::ServiceError(e)) if e.err().is_conditional_check_failed_exception() => Ok(()),
            Err(e) => Err(store_error("DynamoDB UpdateItem (release lease)", e)),
        }
    }

    /// The `ConditionCheck` that `lease` is still held, first in every fenced transaction.
    fn lease_check(&self, lease: &SyncLease) -> Result<TransactWriteItem, StoreError> {
        let check = ConditionCheck::builder()
            .table_name(&self.table)
            .set_key(Some(lease_key(&lease.repo)))
            .condition_expression("leaseOwner = :me AND leaseUntil > :now")
            .expression_attribute_values(":me", s(lease.owner.as_str()))
            .expression_attribute_values(":now", n(millis(self.now())))
            .build()
            .map_err(|e| corrupt(format!("lease check: {e}")))?;
        Ok(TransactWriteItem::builder().condition_check(check).build())
    }

    /// Applies `actions` in one transaction after the lease check: [`StoreError::LeaseLost`] if
    /// the lease is no longer held, [`Fenced::ConditionFailed`] if one of the actions' own
    /// conditions failed; nothing is applied in either case.
    pub(super) async fn fenced(
        &self,
        lease: &SyncLease,
        actions: Vec<TransactWriteItem>,
        operation: &str,
    ) -> Result<Fenced, StoreError> {
        let mut items = vec![self.lease_check(lease)?];
        items.extend(actions);
        let res = self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await;
        match res {
            Ok(_) => Ok(Fenced::Applied),
            Err(SdkError::ServiceError(e))
                if matches!(e.err(), TransactWriteItemsError::TransactionCanceledException(_)) =>
            {
                let TransactWriteItemsError::TransactionCanceledException(canceled) = e.err() else {
                    unreachable!("matched above")
                };
                let failed = canceled
                    .cancellation_reasons()
                    .iter()
                    .position(|r| r.code() == Some("ConditionalCheckFailed"));
                match failed {
                    Some(0) => Err(lease_lost(&lease.repo)),
                    Some(_) => Ok(Fenced::ConditionFailed),
                    // No reasons given: decide from the lease itself.
                    None if !self.still_holds(lease).await? => Err(lease_lost(&lease.repo)),
                    None => Err(StoreError::Backend {
                        message: format!("{operation}: the transaction was canceled (a concurrent request); try again"),
                        retryable: true,
                        source: Some(Box::new(e.into_err())),
                    }),
                }
            }
            Err(e) => Err(store_error(operation, e)),
        }
    }

    async fn still_holds(&self, lease: &SyncLease) -> Result<bool, StoreError> {
        let item = self.lease_item(&lease.repo).await?.unwrap_or_default();
        Ok(opt_s(&item, "leaseOwner").as_deref() == Some(lease.owner.as_str())
            && get_n(&item, "leaseUntil").unwrap_or(0) > millis(self.now()))
    }

    /// Gives the chunk items `sort_keys` of `lease.repo` a time-to-live, under the lease.
    pub(super) async fn expire_chunk_keys(&self, lease: &SyncLease, sort_keys: Vec<String>) -> Result<(), StoreError> {
        let expires = expires_at(self.now());
        for batch in sort_keys.chunks(MAX_TRANSACTION - 1) {
            let mut actions = Vec::with_capacity(batch.len());
            for sk in batch {
                let update = Update::builder()
                    .table_name(&self.table)
                    .key("pk", s(repo_pk(&lease.repo)))
                    .key("sk", s(sk.as_str()))
                    .update_expression("SET expiresAt = :e")
                    .expression_attribute_values(":e", n(expires))
                    .build()
                    .map_err(|e| corrupt(format!("chunk expiry: {e}")))?;
                actions.push(TransactWriteItem::builder().update(update).build());
            }
            self.fenced(lease, actions, "DynamoDB TransactWriteItems (expire chunks)")
                .await?;
        }
        Ok(())
    }

    /// Gives a time-to-live to at most `budget` chunks of `lease.repo` that no head references
    /// and that carry none yet; how many.
    pub(super) async fn sweep_chunks(&self, lease: &SyncLease, budget: usize) -> Result<u64, StoreError> {
        let pk = repo_pk(&lease.repo);
        let chunks = self
            .query_all(pk.clone(), CHUNK_PREFIX, Some(("sk, expiresAt", &[])))
            .await?;
        // Chunk sort keys without an expiry, grouped by version prefix (`CHUNK#{path}#{digest}#`).
        let mut live: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for item in &chunks {
            if item.contains_key("expiresAt") {
                continue;
            }
            let Some(sk) = opt_s(item, "sk") else { continue };
            let Some(cut) = sk.rfind('#') else { continue };
            live.entry(sk[..=cut].to_owned()).or_default().push(sk);
        }
        if live.is_empty() {
            return Ok(0);
        }
        let heads = self
            .query_all(pk, MODEL_PREFIX, Some(("modelPath, contentSha256, chunks", &[])))
            .await?;
        let referenced: HashSet<String> = heads
            .iter()
            .filter(|h| h.contains_key("chunks"))
            .filter_map(|h| Some(chunk_prefix(&opt_s(h, "modelPath")?, &opt_s(h, "contentSha256")?)))
            .collect();
        let orphans: Vec<String> = live
            .into_iter()
            .filter(|(prefix, _)| !referenced.contains(prefix))
            .flat_map(|(_, keys)| keys)
            .take(budget)
            .collect();
        let count = orphans.len() as u64;
        if count > 0 {
            self.expire_chunk_keys(lease, orphans).await?;
        }
        Ok(count)
    }
}
