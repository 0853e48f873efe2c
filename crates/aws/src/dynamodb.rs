//! The registry and the models in one DynamoDB table (`pk`, `sk`, both strings).
//!
//! | item                 | pk                     | sk                                   |
//! |----------------------|------------------------|--------------------------------------|
//! | registered repository | `REGISTRY`            | `REPO#{project}/{slug}`              |
//! | model head           | `REPO#{project}/{slug}` | `MODEL#{path}`                       |
//! | model content chunk  | `REPO#{project}/{slug}` | `CHUNK#{sha256(path)}#{sha256(content)}#{index:05}` |
//!
//! Content is gzip-compressed. When it fits (up to [`INLINE_LIMIT`] compressed bytes) it is stored
//! in the head item itself, so a put is one atomic `PutItem`. A larger model is split into chunk
//! items keyed by its content digest: the chunks are written first, then the head is switched to
//! the new digest in one `PutItem`, so a reader sees the old version or the new one, never a mix.
//! Superseded chunks are not deleted at once (a reader may be assembling them) but given an
//! `expiresAt` time-to-live; readers re-read the head if a version's chunks are incomplete.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{AttributeValue, DeleteRequest, PutRequest, ReturnValue, WriteRequest};
use chrono::{DateTime, Utc};
use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use hubsync_core::ids::{CommitId, RepoRef};
use hubsync_core::model::{ModelFacts, ModelRecord, ModelStatus, sha256_hex};
use hubsync_core::ports::{LastError, ModelStore, ModelSummary, RepoRecord, RepoRegistry, StoreError, SyncCursor};

use crate::errors::store_error;

/// Largest compressed content kept inline in the head item (DynamoDB items are limited to 400 KB,
/// attribute names and the other attributes included).
pub const INLINE_LIMIT: usize = 350_000;
/// Size of one chunk item's data.
pub const CHUNK_SIZE: usize = 350_000;
/// How long superseded chunks are kept for readers still assembling them.
const SUPERSEDED_TTL: Duration = Duration::from_secs(3600);
const REGISTRY_PK: &str = "REGISTRY";

type Item = HashMap<String, AttributeValue>;

pub struct DynamoStore {
    client: Client,
    table: String,
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: u64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn repo_pk(repo: &RepoRef) -> String {
    format!("REPO#{repo}")
}

fn registry_sk(repo: &RepoRef) -> String {
    format!("REPO#{repo}")
}

fn model_sk(path: &str) -> String {
    format!("MODEL#{path}")
}

fn chunk_prefix(path: &str, version: &str) -> String {
    format!("CHUNK#{}#{version}#", sha256_hex(path.as_bytes()))
}

fn corrupt(what: impl Into<String>) -> StoreError {
    StoreError::Corrupt(what.into())
}

fn get_s<'a>(item: &'a Item, key: &str) -> Result<&'a str, StoreError> {
    item.get(key)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
        .ok_or_else(|| corrupt(format!("attribute {key} is missing or not a string")))
}

fn opt_s(item: &Item, key: &str) -> Option<String> {
    item.get(key).and_then(|v| v.as_s().ok()).cloned()
}

fn get_n(item: &Item, key: &str) -> Result<u64, StoreError> {
    item.get(key)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| corrupt(format!("attribute {key} is missing or not a number")))
}

fn get_time(item: &Item, key: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::parse_from_rfc3339(get_s(item, key)?)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| corrupt(format!("attribute {key}: {e}")))
}

fn gzip(bytes: &[u8]) -> Result<Vec<u8>, StoreError> {
    let mut enc = GzEncoder::new(Vec::with_capacity(bytes.len() / 6), Compression::default());
    enc.write_all(bytes)
        .and_then(|_| enc.finish())
        .map_err(|e| corrupt(format!("compression failed: {e}")))
}

fn gunzip(bytes: &[u8], size_hint: usize) -> Result<Vec<u8>, StoreError> {
    let mut out = Vec::with_capacity(size_hint);
    GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .map_err(|e| corrupt(format!("stored content does not decompress: {e}")))?;
    Ok(out)
}

impl DynamoStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    fn record_from(item: &Item) -> Result<RepoRecord, StoreError> {
        let repo = RepoRef::parse(get_s(item, "repository")?).map_err(|e| corrupt(e.to_string()))?;
        let cursor = match opt_s(item, "cursorCommit") {
            None => None,
            Some(commit) => Some(SyncCursor {
                commit: CommitId::parse(&commit).map_err(|e| corrupt(e.to_string()))?,
                synced_at: get_time(item, "cursorAt")?,
                stats: opt_s(item, "cursorStats")
                    .and_then(|j| serde_json::from_str(&j).ok())
                    .unwrap_or_default(),
            }),
        };
        let last_error = match opt_s(item, "lastError") {
            None => None,
            Some(message) => Some(LastError {
                message,
                at: get_time(item, "lastErrorAt")?,
            }),
        };
        Ok(RepoRecord {
            repo,
            registered_at: get_time(item, "registeredAt")?,
            cursor,
            last_error,
        })
    }

    fn summary_from(item: &Item) -> Result<ModelSummary, StoreError> {
        let status = match get_s(item, "modelStatus")? {
            "valid" => ModelStatus::Valid {
                facts: ModelFacts {
                    model_name: opt_s(item, "modelName").unwrap_or_default(),
                    app_target: opt_s(item, "appTarget").unwrap_or_default(),
                    db_vendor: opt_s(item, "dbVendor").unwrap_or_default(),
                    db_version: opt_s(item, "dbVersion"),
                    persistence_schema_version: opt_s(item, "persistenceSchemaVersion").unwrap_or_default(),
                    entities: get_n(item, "entities").unwrap_or(0),
                    relationships: get_n(item, "relationships").unwrap_or(0),
                    views: get_n(item, "views").unwrap_or(0),
                },
            },
            "malformed" => ModelStatus::Malformed {
                error: opt_s(item, "error").unwrap_or_default(),
            },
            other => return Err(corrupt(format!("unknown model status {other:?}"))),
        };
        Ok(ModelSummary {
            path: get_s(item, "modelPath")?.to_owned(),
            commit: CommitId::parse(get_s(item, "commitId")?).map_err(|e| corrupt(e.to_string()))?,
            synced_at: get_time(item, "syncedAt")?,
            content_sha256: get_s(item, "contentSha256")?.to_owned(),
            size: get_n(item, "contentSize")?,
            status,
        })
    }

    fn head_item(repo: &RepoRef, record: &ModelRecord) -> Item {
        let mut item: Item = HashMap::from([
            ("pk".into(), s(repo_pk(repo))),
            ("sk".into(), s(model_sk(&record.path))),
            ("modelPath".into(), s(&record.path)),
            ("commitId".into(), s(record.commit.as_str())),
            ("syncedAt".into(), s(record.synced_at.to_rfc3339())),
            ("contentSha256".into(), s(&record.content_sha256)),
            ("contentSize".into(), n(record.size())),
            ("encoding".into(), s("gzip")),
        ]);
        match &record.status {
            ModelStatus::Valid { facts } => {
                item.insert("modelStatus".into(), s("valid"));
                item.insert("modelName".into(), s(&facts.model_name));
                item.insert("appTarget".into(), s(&facts.app_target));
                item.insert("dbVendor".into(), s(&facts.db_vendor));
                if let Some(v) = &facts.db_version {
                    item.insert("dbVersion".into(), s(v));
                }
                item.insert("persistenceSchemaVersion".into(), s(&facts.persistence_schema_version));
                item.insert("entities".into(), n(facts.entities));
                item.insert("relationships".into(), n(facts.relationships));
                item.insert("views".into(), n(facts.views));
            }
            ModelStatus::Malformed { error } => {
                item.insert("modelStatus".into(), s("malformed"));
                // Keep the error well inside the item limit.
                item.insert("error".into(), s(error.chars().take(2000).collect::<String>()));
            }
        }
        item
    }

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

    /// Marks the chunks of a superseded version to expire.
    async fn expire_chunks(&self, repo: &RepoRef, path: &str, version: &str, chunks: u64) -> Result<(), StoreError> {
        let expires = (Utc::now() + SUPERSEDED_TTL).timestamp().max(0) as u64;
        let prefix = chunk_prefix(path, version);
        for index in 0..chunks {
            let res = self
                .client
                .update_item()
                .table_name(&self.table)
                .key("pk", s(repo_pk(repo)))
                .key("sk", s(format!("{prefix}{index:05}")))
                .update_expression("SET expiresAt = :e")
                .condition_expression("attribute_exists(pk)")
                .expression_attribute_values(":e", n(expires))
                .send()
                .await;
            match res {
                Ok(_) => {}
                Err(SdkError::ServiceError(e)) if e.err().is_conditional_check_failed_exception() => {}
                Err(e) => return Err(store_error("DynamoDB UpdateItem (expire chunk)", e)),
            }
        }
        Ok(())
    }

    /// The chunk version a head item points at, if it is chunked.
    fn chunked_version(item: &Item) -> Option<(String, u64)> {
        let chunks = get_n(item, "chunks").ok()?;
        Some((opt_s(item, "contentSha256")?, chunks))
    }

    /// Every item of partition `pk` whose sort key starts with `sk_prefix` (all pages), projected
    /// to `projection` (with its `#name` placeholders) when given.
    async fn query_all(
        &self,
        pk: String,
        sk_prefix: &str,
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
            // DynamoDB refuses an empty begins_with prefix: no prefix means the whole partition.
            q = if sk_prefix.is_empty() {
                q.key_condition_expression("pk = :pk")
            } else {
                q.key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
                    .expression_attribute_values(":prefix", s(sk_prefix))
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

const SUMMARY_PROJECTION: &str = "modelPath, commitId, syncedAt, contentSha256, contentSize, modelStatus, modelName, appTarget, dbVendor, dbVersion, persistenceSchemaVersion, entities, relationships, #views, #error, chunks";

impl RepoRegistry for DynamoStore {
    async fn register(&self, repo: &RepoRef) -> Result<bool, StoreError> {
        let res = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(REGISTRY_PK))
            .item("sk", s(registry_sk(repo)))
            .item("repository", s(repo.to_string()))
            .item("registeredAt", s(Utc::now().to_rfc3339()))
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
            .key("pk", s(REGISTRY_PK))
            .key("sk", s(registry_sk(repo)))
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
            .key("pk", s(REGISTRY_PK))
            .key("sk", s(registry_sk(repo)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| store_error("DynamoDB GetItem (repository)", e))?;
        out.item.as_ref().map(Self::record_from).transpose()
    }

    async fn repos(&self) -> Result<Vec<RepoRecord>, StoreError> {
        let items = self.query_all(REGISTRY_PK.into(), "REPO#", None).await?;
        items.iter().map(Self::record_from).collect()
    }

    async fn advance_cursor(
        &self,
        repo: &RepoRef,
        expected: Option<&CommitId>,
        cursor: &SyncCursor,
    ) -> Result<(), StoreError> {
        let stats = serde_json::to_string(&cursor.stats).map_err(|e| corrupt(e.to_string()))?;
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(REGISTRY_PK))
            .key("sk", s(registry_sk(repo)))
            .update_expression("SET cursorCommit = :c, cursorAt = :at, cursorStats = :st REMOVE lastError, lastErrorAt")
            .expression_attribute_values(":c", s(cursor.commit.as_str()))
            .expression_attribute_values(":at", s(cursor.synced_at.to_rfc3339()))
            .expression_attribute_values(":st", s(stats))
            .return_values_on_condition_check_failure(
                aws_sdk_dynamodb::types::ReturnValuesOnConditionCheckFailure::AllOld,
            );
        update = match expected {
            None => update.condition_expression("attribute_exists(pk) AND attribute_not_exists(cursorCommit)"),
            Some(c) => update
                .condition_expression("cursorCommit = :expected")
                .expression_attribute_values(":expected", s(c.as_str())),
        };
        match update.send().await {
            Ok(_) => Ok(()),
            Err(SdkError::ServiceError(e)) if e.err().is_conditional_check_failed_exception() => {
                let exists = match e.err() {
                    aws_sdk_dynamodb::operation::update_item::UpdateItemError::ConditionalCheckFailedException(c) => {
                        c.item.is_some()
                    }
                    _ => true,
                };
                if exists || self.repo(repo).await?.is_some() {
                    Err(StoreError::CursorMoved(repo.clone()))
                } else {
                    Err(StoreError::NotRegistered(repo.clone()))
                }
            }
            Err(e) => Err(store_error("DynamoDB UpdateItem (cursor)", e)),
        }
    }

    async fn record_error(&self, repo: &RepoRef, error: &LastError) -> Result<(), StoreError> {
        let res = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(REGISTRY_PK))
            .key("sk", s(registry_sk(repo)))
            .update_expression("SET lastError = :m, lastErrorAt = :at")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":m", s(error.message.chars().take(4000).collect::<String>()))
            .expression_attribute_values(":at", s(error.at.to_rfc3339()))
            .send()
            .await;
        match res {
            Ok(_) => Ok(()),
            Err(SdkError::ServiceError(e)) if e.err().is_conditional_check_failed_exception() => Ok(()),
            Err(e) => Err(store_error("DynamoDB UpdateItem (last error)", e)),
        }
    }
}

impl ModelStore for DynamoStore {
    async fn put_model(&self, repo: &RepoRef, record: &ModelRecord) -> Result<(), StoreError> {
        let compressed = gzip(&record.content)?;
        let mut head = Self::head_item(repo, record);
        let chunk_count = if compressed.len() <= INLINE_LIMIT {
            head.insert("content".into(), AttributeValue::B(Blob::new(compressed)));
            0
        } else {
            let prefix = chunk_prefix(&record.path, &record.content_sha256);
            let puts: Vec<WriteRequest> = compressed
                .chunks(CHUNK_SIZE)
                .enumerate()
                .filter_map(|(index, data)| {
                    let item = HashMap::from([
                        ("pk".to_owned(), s(repo_pk(repo))),
                        ("sk".to_owned(), s(format!("{prefix}{index:05}"))),
                        ("data".to_owned(), AttributeValue::B(Blob::new(data.to_vec()))),
                    ]);
                    PutRequest::builder().set_item(Some(item)).build().ok()
                })
                .map(|p| WriteRequest::builder().put_request(p).build())
                .collect();
            let count = puts.len() as u64;
            self.batch_write(puts).await?;
            head.insert("chunks".into(), n(count));
            count
        };
        let out = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(head))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(|e| store_error("DynamoDB PutItem (model)", e))?;
        if let Some((old_version, old_chunks)) = out.attributes.as_ref().and_then(Self::chunked_version)
            && !(chunk_count > 0 && old_version == record.content_sha256)
        {
            self.expire_chunks(repo, &record.path, &old_version, old_chunks).await?;
        }
        Ok(())
    }

    async fn delete_model(&self, repo: &RepoRef, path: &str) -> Result<bool, StoreError> {
        let out = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(repo_pk(repo)))
            .key("sk", s(model_sk(path)))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(|e| store_error("DynamoDB DeleteItem (model)", e))?;
        let Some(old) = out.attributes else { return Ok(false) };
        if let Some((version, chunks)) = Self::chunked_version(&old) {
            self.expire_chunks(repo, path, &version, chunks).await?;
        }
        Ok(true)
    }

    async fn list_models(&self, repo: &RepoRef) -> Result<Vec<ModelSummary>, StoreError> {
        let names: &[(&str, &str)] = &[("#views", "views"), ("#error", "error")];
        let items = self
            .query_all(repo_pk(repo), "MODEL#", Some((SUMMARY_PROJECTION, names)))
            .await?;
        let mut models: Vec<ModelSummary> = items.iter().map(Self::summary_from).collect::<Result<_, _>>()?;
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
                .key("pk", s(repo_pk(repo)))
                .key("sk", s(model_sk(path)))
                .consistent_read(true)
                .send()
                .await
                .map_err(|e| store_error("DynamoDB GetItem (model)", e))?;
            let Some(item) = out.item else { return Ok(None) };
            let summary = Self::summary_from(&item)?;
            let compressed = match Self::chunked_version(&item) {
                None => match item.get("content") {
                    Some(AttributeValue::B(b)) => b.clone().into_inner(),
                    _ => return Err(corrupt(format!("model {path} has neither content nor chunks"))),
                },
                Some((version, chunks)) => {
                    let parts = self
                        .query_all(repo_pk(repo), &chunk_prefix(path, &version), None)
                        .await?;
                    if parts.len() as u64 != chunks {
                        continue;
                    }
                    let mut data = Vec::new();
                    for part in &parts {
                        match part.get("data") {
                            Some(AttributeValue::B(b)) => data.extend_from_slice(b.as_ref()),
                            _ => return Err(corrupt(format!("a chunk of {path} has no data"))),
                        }
                    }
                    data
                }
            };
            let content = gunzip(&compressed, summary.size as usize)?;
            if sha256_hex(&content) != summary.content_sha256 {
                continue;
            }
            return Ok(Some(ModelRecord {
                path: summary.path,
                commit: summary.commit,
                synced_at: summary.synced_at,
                status: summary.status,
                content,
                content_sha256: summary.content_sha256,
            }));
        }
        Err(corrupt(format!(
            "model {path} of {repo} could not be read consistently"
        )))
    }
}
