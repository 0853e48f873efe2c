//! The models on DynamoDB: the SDK calls behind [`ModelStore`], applying the chunk protocol of
//! [`chunks`](super::chunks) to the items of [`items`](super::items).

use aws_sdk_dynamodb::types::{Delete, Put, PutRequest, TransactWriteItem, WriteRequest};
use hubsync_core::ids::RepoRef;
use hubsync_core::model::ModelRecord;
use hubsync_core::ports::{ModelStore, ModelSummary, StoreError, SyncLease};

use super::chunks::{self, StoredContent};
use super::items::Item;
use super::items::{self, SUMMARY_NAMES, SUMMARY_PROJECTION, corrupt};
use super::keys::{Key, MODEL_PREFIX, ModelsAfter, chunk_prefix, repo_pk};
use super::{DynamoStore, SortKeys};
use crate::errors::store_error;

impl DynamoStore {
    /// The head item of the model at `path`, projected to its chunk version. Under the lease no
    /// other writer switches it, so it is what the next switch or delete supersedes.
    async fn head_version(&self, repo: &RepoRef, path: &str) -> Result<Option<Item>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(Key::model(repo, path).into_attributes()))
            .projection_expression("contentSha256, chunks")
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| store_error("DynamoDB GetItem (model head)", e))?;
        Ok(out.item)
    }
}

impl ModelStore for DynamoStore {
    async fn put_model(&self, lease: &SyncLease, record: &ModelRecord) -> Result<(), StoreError> {
        let repo = &lease.repo;
        let write = chunks::model_write(repo, record, items::gzip(&record.content)?);
        // PutItem replaces a chunk whole: a version written again carries no expiry.
        let puts: Vec<WriteRequest> = write
            .chunks
            .into_iter()
            .filter_map(|item| PutRequest::builder().set_item(Some(item)).build().ok())
            .map(|p| WriteRequest::builder().put_request(p).build())
            .collect();
        self.batch_write(puts).await?;
        let old = self.head_version(repo, &record.path).await?;
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(write.head.clone()))
            .build()
            .map_err(|e| corrupt(format!("model put: {e}")))?;
        self.fenced(
            lease,
            vec![TransactWriteItem::builder().put(put).build()],
            "DynamoDB TransactWriteItems (model)",
        )
        .await?;
        if let Some(old) = chunks::superseded(old.as_ref(), Some(&write.head)) {
            self.expire_chunks(lease, &record.path, &old).await?;
        }
        Ok(())
    }

    async fn delete_model(&self, lease: &SyncLease, path: &str) -> Result<bool, StoreError> {
        let repo = &lease.repo;
        let Some(old) = self.head_version(repo, path).await? else {
            return Ok(false);
        };
        let delete = Delete::builder()
            .table_name(&self.table)
            .set_key(Some(Key::model(repo, path).into_attributes()))
            .build()
            .map_err(|e| corrupt(format!("model delete: {e}")))?;
        self.fenced(
            lease,
            vec![TransactWriteItem::builder().delete(delete).build()],
            "DynamoDB TransactWriteItems (delete model)",
        )
        .await?;
        if let Some(version) = chunks::superseded(Some(&old), None) {
            self.expire_chunks(lease, path, &version).await?;
        }
        Ok(true)
    }

    async fn sweep(&self, lease: &SyncLease, budget: usize) -> Result<u64, StoreError> {
        self.sweep_chunks(lease, budget).await
    }

    async fn list_models(&self, repo: &RepoRef) -> Result<Vec<ModelSummary>, StoreError> {
        let items = self
            .query_all(repo_pk(repo), MODEL_PREFIX, Some((SUMMARY_PROJECTION, SUMMARY_NAMES)))
            .await?;
        let mut models: Vec<ModelSummary> = items.iter().map(items::model_summary).collect::<Result<_, _>>()?;
        models.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(models)
    }

    /// A range of the partition's model keys (and the long paths' hashed keys apart, when they
    /// sort before it): the models up to `after` are not read.
    async fn list_models_after(&self, repo: &RepoRef, after: &str) -> Result<Vec<ModelSummary>, StoreError> {
        let range = ModelsAfter::new(after);
        let projection = Some((SUMMARY_PROJECTION, SUMMARY_NAMES));
        let mut items = self
            .query_keys(repo_pk(repo), SortKeys::Between(&range.from, &range.to), projection)
            .await?;
        if let Some(hashed) = &range.hashed_apart {
            items.extend(self.query_all(repo_pk(repo), hashed, projection).await?);
        }
        let mut models: Vec<ModelSummary> = items.iter().map(items::model_summary).collect::<Result<_, _>>()?;
        models.retain(|m| m.path.as_str() > after);
        models.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(models)
    }

    async fn get_model(&self, repo: &RepoRef, path: &str) -> Result<Option<ModelRecord>, StoreError> {
        // A writer may switch the head while chunks are read: re-read the head a few times.
        for _ in 0..3 {
            let out = self
                .client
                .get_item()
                .table_name(&self.table)
                .set_key(Some(Key::model(repo, path).into_attributes()))
                .consistent_read(true)
                .send()
                .await
                .map_err(|e| store_error("DynamoDB GetItem (model)", e))?;
            let Some(head) = out.item else { return Ok(None) };
            let summary = items::model_summary(&head)?;
            let compressed = match chunks::stored_content(&head, path)? {
                StoredContent::Inline(bytes) => bytes,
                StoredContent::Chunked(version) => {
                    let parts = self
                        .query_all(repo_pk(repo), &chunk_prefix(path, &version.version), None)
                        .await?;
                    match chunks::assemble(&version, &parts, path)? {
                        Some(bytes) => bytes,
                        None => continue,
                    }
                }
            };
            if let Some(record) = items::model_record(summary, &compressed)? {
                return Ok(Some(record));
            }
        }
        Err(corrupt(format!(
            "model {path} of {repo} could not be read consistently"
        )))
    }
}
