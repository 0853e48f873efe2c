//! The registry on DynamoDB: the SDK calls behind [`RepoRegistry`]. The items are encoded in
//! [`items`](super::items).

use std::time::Duration;

use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::types::{DeleteRequest, ReturnValue, TransactWriteItem, Update, WriteRequest};
use chrono::Utc;
use hubsync_core::ids::{CommitId, RepoRef};
use hubsync_core::ports::{
    LastError, LeaseOwner, RepoRecord, RepoRegistry, StoreError, SyncCursor, SyncLease, SyncResume,
};

use super::DynamoStore;
use super::items::{
    CURSOR_HUBIGNORE, RESUME, corrupt, cursor_attributes, last_error_attributes, registry_item, repo_record,
    resume_attribute, s,
};
use super::keys::{Key, REGISTRY_PK, REPO_PREFIX, repo_pk};
use super::lease::Fenced;
use crate::errors::store_error;

/// `update` made conditional on the registry item's cursor being `expected` (`None`: registered,
/// without a cursor).
fn expect_cursor(
    update: aws_sdk_dynamodb::types::builders::UpdateBuilder,
    expected: Option<&CommitId>,
) -> aws_sdk_dynamodb::types::builders::UpdateBuilder {
    match expected {
        None => update.condition_expression("attribute_exists(pk) AND attribute_not_exists(cursorCommit)"),
        Some(c) => update
            .condition_expression("cursorCommit = :expected")
            .expression_attribute_values(":expected", s(c.as_str())),
    }
}

impl DynamoStore {
    /// One update of the registry item, fenced on the lease: [`StoreError::CursorMoved`] (or
    /// [`StoreError::NotRegistered`]) when its condition on the cursor fails.
    async fn registry_write(&self, lease: &SyncLease, update: Update, operation: &str) -> Result<(), StoreError> {
        let repo = &lease.repo;
        let action = TransactWriteItem::builder().update(update).build();
        match self.fenced(lease, vec![action], operation).await? {
            Fenced::Applied => Ok(()),
            Fenced::ConditionFailed if self.repo(repo).await?.is_some() => Err(StoreError::CursorMoved(repo.clone())),
            Fenced::ConditionFailed => Err(StoreError::NotRegistered(repo.clone())),
        }
    }
}

impl RepoRegistry for DynamoStore {
    async fn register(&self, repo: &RepoRef) -> Result<bool, StoreError> {
        let res = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(registry_item(repo, Utc::now())))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        match res {
            Ok(_) => Ok(true),
            Err(SdkError::ServiceError(e)) if e.err().is_conditional_check_failed_exception() => Ok(false),
            Err(e) => Err(store_error("DynamoDB PutItem (register)", e)),
        }
    }

    async fn unregister(&self, repo: &RepoRef) -> Result<bool, StoreError> {
        let out = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(Key::registry(repo).into_attributes()))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(|e| store_error("DynamoDB DeleteItem (unregister)", e))?;
        let items = self.query_all(repo_pk(repo), "", Some(("pk, sk", &[]))).await?;
        let deletes = items
            .into_iter()
            .filter_map(|key| DeleteRequest::builder().set_key(Some(key)).build().ok())
            .map(|d| WriteRequest::builder().delete_request(d).build())
            .collect();
        self.batch_write(deletes).await?;
        Ok(out.attributes.is_some())
    }

    async fn repo(&self, repo: &RepoRef) -> Result<Option<RepoRecord>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(Key::registry(repo).into_attributes()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| store_error("DynamoDB GetItem (repository)", e))?;
        out.item.as_ref().map(repo_record).transpose()
    }

    async fn repos(&self) -> Result<Vec<RepoRecord>, StoreError> {
        let items = self.query_all(REGISTRY_PK.into(), REPO_PREFIX, None).await?;
        let mut records = items.iter().map(repo_record).collect::<Result<Vec<_>, _>>()?;
        // The sort keys order `A-B/y` before `A/z` ('-' < '/'); every store lists by project,
        // then slug.
        records.sort_by(|a, b| a.repo.cmp(&b.repo));
        Ok(records)
    }

    async fn acquire_lease(&self, repo: &RepoRef, owner: &LeaseOwner, ttl: Duration) -> Result<SyncLease, StoreError> {
        self.acquire_lease_item(repo, owner, ttl).await
    }

    async fn renew_lease(&self, lease: &SyncLease, ttl: Duration) -> Result<SyncLease, StoreError> {
        self.renew_lease_item(lease, ttl).await
    }

    async fn release_lease(&self, lease: &SyncLease, finished: bool) -> Result<(), StoreError> {
        self.release_lease_item(lease, finished).await
    }

    async fn advance_cursor(
        &self,
        lease: &SyncLease,
        expected: Option<&CommitId>,
        cursor: &SyncCursor,
    ) -> Result<(), StoreError> {
        let repo = &lease.repo;
        let [(_, commit), (_, at), (_, stats)] = cursor_attributes(cursor)?;
        // The resume point of a sync cut into slices goes with the cursor's move.
        let expression = match &cursor.hubignore {
            Some(_) => format!(
                "SET cursorCommit = :c, cursorAt = :at, cursorStats = :st, {CURSOR_HUBIGNORE} = :hi \
                 REMOVE lastError, lastErrorAt, {RESUME}"
            ),
            None => format!(
                "SET cursorCommit = :c, cursorAt = :at, cursorStats = :st \
                 REMOVE lastError, lastErrorAt, {RESUME}, {CURSOR_HUBIGNORE}"
            ),
        };
        let mut update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(Key::registry(repo).into_attributes()))
            .update_expression(expression)
            .expression_attribute_values(":c", commit)
            .expression_attribute_values(":at", at)
            .expression_attribute_values(":st", stats);
        if let Some(text) = &cursor.hubignore {
            update = update.expression_attribute_values(":hi", s(text));
        }
        let update = expect_cursor(update, expected)
            .build()
            .map_err(|e| corrupt(format!("cursor update: {e}")))?;
        self.registry_write(lease, update, "DynamoDB TransactWriteItems (cursor)")
            .await
    }

    async fn record_resume(
        &self,
        lease: &SyncLease,
        expected: Option<&CommitId>,
        resume: &SyncResume,
    ) -> Result<(), StoreError> {
        let update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(Key::registry(&lease.repo).into_attributes()))
            .update_expression(format!("SET {RESUME} = :r"))
            .expression_attribute_values(":r", resume_attribute(resume)?);
        let update = expect_cursor(update, expected)
            .build()
            .map_err(|e| corrupt(format!("resume point update: {e}")))?;
        self.registry_write(lease, update, "DynamoDB TransactWriteItems (resume point)")
            .await
    }

    async fn record_error(&self, repo: &RepoRef, error: &LastError) -> Result<(), StoreError> {
        let [(_, message), (_, at)] = last_error_attributes(error);
        let res = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Key::registry(repo).into_attributes()))
            .update_expression("SET lastError = :m, lastErrorAt = :at")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":m", message)
            .expression_attribute_values(":at", at)
            .send()
            .await;
        match res {
            Ok(_) => Ok(()),
            Err(SdkError::ServiceError(e)) if e.err().is_conditional_check_failed_exception() => Ok(()),
            Err(e) => Err(store_error("DynamoDB UpdateItem (last error)", e)),
        }
    }
}
