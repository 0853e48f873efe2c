//! The models on DynamoDB: the SDK calls behind [`ModelStore`], applying the chunk protocol of
//! [`chunks`](super::chunks) to the items of [`items`](super::items).

use aws_sdk_dynamodb::types::{PutRequest, ReturnValue, WriteRequest};
use hubsync_core::ids::RepoRef;
use hubsync_core::model::ModelRecord;
use hubsync_core::ports::{ModelStore, ModelSummary, StoreError};

use super::DynamoStore;
use super::chunks::{self, StoredContent};
use super::items::{self, SUMMARY_NAMES, SUMMARY_PROJECTION, corrupt};
use super::keys::{Key, MODEL_PREFIX, chunk_prefix, repo_pk};
use crate::errors::store_error;

impl ModelStore for DynamoStore {
    async fn put_model(&self, repo: &RepoRef, record: &ModelRecord) -> Result<(), StoreError> {
        let write = chunks::model_write(repo, record, items::gzip(&record.content)?);
        let puts: Vec<WriteRequest> = write
            .chunks
            .into_iter()
            .filter_map(|item| PutRequest::builder().set_item(Some(item)).build().ok())
            .map(|p| WriteRequest::builder().put_request(p).build())
            .collect();
        self.batch_write(puts).await?;
        let out = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(write.head.clone()))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(|e| store_error("DynamoDB PutItem (model)", e))?;
        if let Some(old) = chunks::superseded(out.attributes.as_ref(), Some(&write.head)) {
            self.expire_chunks(repo, &record.path, &old).await?;
        }
        Ok(())
    }

    async fn delete_model(&self, repo: &RepoRef, path: &str) -> Result<bool, StoreError> {
        let out = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(Key::model(repo, path).into_attributes()))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(|e| store_error("DynamoDB DeleteItem (model)", e))?;
        let Some(old) = out.attributes else { return Ok(false) };
        if let Some(version) = chunks::superseded(Some(&old), None) {
            self.expire_chunks(repo, path, &version).await?;
        }
        Ok(true)
    }

    async fn list_models(&self, repo: &RepoRef) -> Result<Vec<ModelSummary>, StoreError> {
        let items = self
            .query_all(repo_pk(repo), MODEL_PREFIX, Some((SUMMARY_PROJECTION, SUMMARY_NAMES)))
            .await?;
        let mut models: Vec<ModelSummary> = items.iter().map(items::model_summary).collect::<Result<_, _>>()?;
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
