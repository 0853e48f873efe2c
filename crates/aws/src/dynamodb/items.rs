//! The encoding of items: a registry item <-> [`RepoRecord`], a model's head item <->
//! [`ModelSummary`] / [`ModelRecord`], and the gzip encoding of content at rest. Plain functions
//! over attribute maps, so the stored layout is tested without a table.

use std::collections::HashMap;
use std::io::{Read, Write};

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};
use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use hubsync_core::ids::{CommitId, RepoRef};
use hubsync_core::model::{ModelFacts, ModelRecord, ModelStatus, cap_fact, sha256_hex};
use hubsync_core::ports::{LastError, ModelSummary, RepoRecord, StoreError, SyncCursor, SyncResume};

use super::keys::Key;

/// One item: attribute name -> value.
pub type Item = HashMap<String, AttributeValue>;

/// The longest malformed-model error kept on a head item (well inside the 400 KB item limit).
pub const MAX_MODEL_ERROR_CHARS: usize = 2000;
/// The longest last-error message kept on a registry item.
pub const MAX_LAST_ERROR_CHARS: usize = 4000;

/// The head attributes a listing reads (`#views` and `#error` are reserved words, see
/// [`SUMMARY_NAMES`]): everything but the content.
pub const SUMMARY_PROJECTION: &str = "modelPath, commitId, syncedAt, contentSha256, contentSize, modelStatus, modelName, appTarget, dbVendor, dbVersion, persistenceSchemaVersion, entities, relationships, #views, #error, chunks";
/// The placeholders of [`SUMMARY_PROJECTION`].
pub const SUMMARY_NAMES: &[(&str, &str)] = &[("#views", "views"), ("#error", "error")];

pub fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

pub fn n(v: u64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

pub fn corrupt(what: impl Into<String>) -> StoreError {
    StoreError::Corrupt(what.into())
}

pub fn get_s<'a>(item: &'a Item, key: &str) -> Result<&'a str, StoreError> {
    item.get(key)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
        .ok_or_else(|| corrupt(format!("attribute {key} is missing or not a string")))
}

pub fn opt_s(item: &Item, key: &str) -> Option<String> {
    item.get(key).and_then(|v| v.as_s().ok()).cloned()
}

pub fn get_n(item: &Item, key: &str) -> Result<u64, StoreError> {
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

// ---- the registry ----

/// The item `register` writes: the key, `repository` and `registeredAt`.
pub fn registry_item(repo: &RepoRef, registered_at: DateTime<Utc>) -> Item {
    let mut item = Key::registry(repo).into_attributes();
    item.insert("repository".into(), s(repo.to_string()));
    item.insert("registeredAt".into(), s(registered_at.to_rfc3339()));
    item
}

/// The attributes a cursor is stored as: `cursorCommit`, `cursorAt`, `cursorStats` (JSON).
pub fn cursor_attributes(cursor: &SyncCursor) -> Result<[(&'static str, AttributeValue); 3], StoreError> {
    let stats = serde_json::to_string(&cursor.stats).map_err(|e| corrupt(e.to_string()))?;
    Ok([
        ("cursorCommit", s(cursor.commit.as_str())),
        ("cursorAt", s(cursor.synced_at.to_rfc3339())),
        ("cursorStats", s(stats)),
    ])
}

/// What `.hubignore` said at the cursor commit ([`SyncCursor::hubignore`]): `cursorHubignore`,
/// absent when not known.
pub const CURSOR_HUBIGNORE: &str = "cursorHubignore";

/// How far a sync cut into slices got ([`SyncResume`]): `resume`, its JSON.
pub const RESUME: &str = "resume";

/// The attribute a resume point is stored as.
pub fn resume_attribute(resume: &SyncResume) -> Result<AttributeValue, StoreError> {
    serde_json::to_string(resume).map(s).map_err(|e| corrupt(e.to_string()))
}

/// The attributes a last error is stored as: `lastError` (truncated) and `lastErrorAt`.
pub fn last_error_attributes(error: &LastError) -> [(&'static str, AttributeValue); 2] {
    [
        (
            "lastError",
            s(error.message.chars().take(MAX_LAST_ERROR_CHARS).collect::<String>()),
        ),
        ("lastErrorAt", s(error.at.to_rfc3339())),
    ]
}

/// Reads a registry item back. A cursor's stats that do not parse read as zero counts.
pub fn repo_record(item: &Item) -> Result<RepoRecord, StoreError> {
    let repo = RepoRef::parse(get_s(item, "repository")?).map_err(|e| corrupt(e.to_string()))?;
    let cursor = match opt_s(item, "cursorCommit") {
        None => None,
        Some(commit) => Some(SyncCursor {
            commit: CommitId::parse(&commit).map_err(|e| corrupt(e.to_string()))?,
            synced_at: get_time(item, "cursorAt")?,
            stats: opt_s(item, "cursorStats")
                .and_then(|j| serde_json::from_str(&j).ok())
                .unwrap_or_default(),
            hubignore: opt_s(item, CURSOR_HUBIGNORE),
        }),
    };
    let resume = opt_s(item, RESUME)
        .map(|j| serde_json::from_str::<SyncResume>(&j).map_err(|e| corrupt(format!("attribute {RESUME}: {e}"))))
        .transpose()?;
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
        resume,
    })
}

// ---- models ----

/// A model's head item without its content (see [`chunks`](super::chunks) for where the content
/// goes): the key, the version's metadata and the model's status and facts.
pub fn head_item(repo: &RepoRef, record: &ModelRecord) -> Item {
    let mut item = Key::model(repo, &record.path).into_attributes();
    item.extend([
        ("modelPath".into(), s(&record.path)),
        ("commitId".into(), s(record.commit.as_str())),
        ("syncedAt".into(), s(record.synced_at.to_rfc3339())),
        ("contentSha256".into(), s(&record.content_sha256)),
        ("contentSize".into(), n(record.size())),
        ("encoding".into(), s("gzip")),
    ]);
    match &record.status {
        ModelStatus::Valid { facts } => {
            // Text facts are capped (with a marker) so that they cannot push the item over
            // DynamoDB's 400 KB: the recognition caps them the same way, so both stores agree.
            item.insert("modelStatus".into(), s("valid"));
            item.insert("modelName".into(), s(cap_fact(&facts.model_name)));
            item.insert("appTarget".into(), s(cap_fact(&facts.app_target)));
            item.insert("dbVendor".into(), s(cap_fact(&facts.db_vendor)));
            if let Some(v) = &facts.db_version {
                item.insert("dbVersion".into(), s(cap_fact(v)));
            }
            item.insert(
                "persistenceSchemaVersion".into(),
                s(cap_fact(&facts.persistence_schema_version)),
            );
            item.insert("entities".into(), n(facts.entities));
            item.insert("relationships".into(), n(facts.relationships));
            item.insert("views".into(), n(facts.views));
        }
        ModelStatus::Malformed { error } => {
            item.insert("modelStatus".into(), s("malformed"));
            item.insert(
                "error".into(),
                s(error.chars().take(MAX_MODEL_ERROR_CHARS).collect::<String>()),
            );
        }
    }
    item
}

/// Reads a head item (whole, or projected to [`SUMMARY_PROJECTION`]) as a listing entry.
pub fn model_summary(item: &Item) -> Result<ModelSummary, StoreError> {
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

/// The model a head describes, from its compressed content; `None` when the content is not the
/// version the head names (a writer switched the head meanwhile: read it again).
pub fn model_record(summary: ModelSummary, compressed: &[u8]) -> Result<Option<ModelRecord>, StoreError> {
    let content = gunzip(compressed, summary.size as usize)?;
    if sha256_hex(&content) != summary.content_sha256 {
        return Ok(None);
    }
    Ok(Some(ModelRecord {
        path: summary.path,
        commit: summary.commit,
        synced_at: summary.synced_at,
        status: summary.status,
        content: content.into(),
        content_sha256: summary.content_sha256,
    }))
}

// ---- content at rest ----

/// Content as stored: gzip (the head's `encoding`).
pub fn gzip(bytes: &[u8]) -> Result<Vec<u8>, StoreError> {
    let mut enc = GzEncoder::new(Vec::with_capacity(bytes.len() / 6), Compression::default());
    enc.write_all(bytes)
        .and_then(|_| enc.finish())
        .map_err(|e| corrupt(format!("compression failed: {e}")))
}

pub fn gunzip(bytes: &[u8], size_hint: usize) -> Result<Vec<u8>, StoreError> {
    let mut out = Vec::with_capacity(size_hint);
    GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .map_err(|e| corrupt(format!("stored content does not decompress: {e}")))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use hubsync_core::model::{MAX_FACT_BYTES, TRUNCATION_MARKER};
    use hubsync_core::ports::SyncStats;

    use super::*;

    fn repo() -> RepoRef {
        RepoRef::parse("PRJ/models").unwrap()
    }

    fn at(second: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, second).unwrap()
    }

    fn commit(c: char) -> CommitId {
        CommitId::parse(&c.to_string().repeat(40)).unwrap()
    }

    fn valid_model(content: &[u8]) -> ModelRecord {
        ModelRecord::new(
            "dir/model.json".into(),
            commit('a'),
            at(1),
            ModelStatus::Valid {
                facts: ModelFacts {
                    model_name: "Shop".into(),
                    app_target: "MONGODB".into(),
                    db_vendor: "MongoDB".into(),
                    db_version: Some("6.0".into()),
                    persistence_schema_version: "7".into(),
                    entities: 3,
                    relationships: 2,
                    views: 1,
                },
            },
            content.to_vec(),
        )
    }

    fn summary_of(record: &ModelRecord) -> ModelSummary {
        ModelSummary {
            path: record.path.clone(),
            commit: record.commit.clone(),
            synced_at: record.synced_at,
            content_sha256: record.content_sha256.clone(),
            size: record.size(),
            status: record.status.clone(),
        }
    }

    #[test]
    fn long_text_facts_are_cut_with_a_marker_so_the_head_stays_small() {
        let mut record = valid_model(b"{}");
        let ModelStatus::Valid { facts } = &mut record.status else {
            unreachable!("a valid model")
        };
        facts.model_name = "Ω".repeat(250_000);
        facts.app_target = "T".repeat(100_000);
        facts.db_vendor = "V".repeat(100_000);

        let item = head_item(&repo(), &record);

        for name in ["modelName", "appTarget", "dbVendor"] {
            let value = item[name].as_s().unwrap();
            assert!(value.len() <= MAX_FACT_BYTES, "{name}: {} bytes", value.len());
            assert!(value.ends_with(TRUNCATION_MARKER), "{name}");
        }
        assert_eq!(item["dbVersion"], s("6.0"), "a short fact is kept whole");
    }

    #[test]
    fn a_head_at_a_long_path_is_keyed_by_its_digest_and_keeps_the_path() {
        let mut record = valid_model(b"{}");
        record.path = format!("{}/model.json", "deep".repeat(300));

        let item = head_item(&repo(), &record);

        assert!(item["sk"].as_s().unwrap().starts_with("MODEL#//sha256/"));
        assert_eq!(model_summary(&item).unwrap().path, record.path);
    }

    #[test]
    fn a_registered_repository_reads_back_without_cursor_or_error() {
        let item = registry_item(&repo(), at(0));

        let record = repo_record(&item).unwrap();

        assert_eq!(
            record,
            RepoRecord {
                repo: repo(),
                registered_at: at(0),
                cursor: None,
                last_error: None,
                resume: None,
            }
        );
        assert_eq!(item["pk"], s("REGISTRY"));
        assert_eq!(item["sk"], s("REPO#PRJ/models"));
    }

    #[test]
    fn a_cursor_and_a_last_error_read_back_as_written() {
        let cursor = SyncCursor {
            commit: commit('b'),
            synced_at: at(2),
            stats: SyncStats {
                written: 4,
                removed: 1,
                malformed: 1,
                skipped: 2,
                ignored: 3,
            },
            hubignore: Some("drafts/\n".into()),
        };
        let error = LastError {
            message: "Bitbucket answered 503".into(),
            at: at(3),
        };
        let mut item = registry_item(&repo(), at(0));
        item.extend(cursor_attributes(&cursor).unwrap().map(|(k, v)| (k.to_owned(), v)));
        item.insert(CURSOR_HUBIGNORE.into(), s("drafts/\n"));
        item.extend(last_error_attributes(&error).map(|(k, v)| (k.to_owned(), v)));

        let record = repo_record(&item).unwrap();

        assert_eq!(record.cursor, Some(cursor));
        assert_eq!(record.last_error, Some(error));
    }

    #[test]
    fn cursor_stats_that_do_not_parse_read_as_zero_counts() {
        let mut item = registry_item(&repo(), at(0));
        item.insert("cursorCommit".into(), s(commit('c').as_str()));
        item.insert("cursorAt".into(), s(at(4).to_rfc3339()));
        item.insert("cursorStats".into(), s("not json"));

        let record = repo_record(&item).unwrap();

        assert_eq!(record.cursor.unwrap().stats, SyncStats::default());
    }

    #[test]
    fn a_long_last_error_is_truncated_to_its_limit() {
        let error = LastError {
            message: "é".repeat(MAX_LAST_ERROR_CHARS + 10),
            at: at(0),
        };

        let [(name, message), _] = last_error_attributes(&error);

        assert_eq!(name, "lastError");
        assert_eq!(message.as_s().unwrap().chars().count(), MAX_LAST_ERROR_CHARS);
    }

    #[test]
    fn a_registry_item_without_registration_time_is_corrupt() {
        let mut item = registry_item(&repo(), at(0));
        item.remove("registeredAt");

        let err = repo_record(&item).unwrap_err();

        assert!(matches!(err, StoreError::Corrupt(m) if m.contains("registeredAt")));
    }

    #[test]
    fn the_head_of_a_valid_model_reads_back_as_its_summary() {
        let record = valid_model(b"{}");

        let item = head_item(&repo(), &record);

        assert_eq!(model_summary(&item).unwrap(), summary_of(&record));
        assert_eq!(item["pk"], s("REPO#PRJ/models"));
        assert_eq!(item["sk"], s("MODEL#dir/model.json"));
        assert_eq!(item["encoding"], s("gzip"));
        assert_eq!(item["contentSize"], n(2));
        assert!(!item.contains_key("content") && !item.contains_key("chunks"));
    }

    #[test]
    fn a_model_without_a_database_version_has_no_db_version_attribute() {
        let mut record = valid_model(b"{}");
        if let ModelStatus::Valid { facts } = &mut record.status {
            facts.db_version = None;
        }

        let item = head_item(&repo(), &record);

        assert!(!item.contains_key("dbVersion"));
        assert_eq!(model_summary(&item).unwrap(), summary_of(&record));
    }

    #[test]
    fn a_malformed_model_keeps_the_start_of_its_error() {
        let mut record = valid_model(b"not json");
        record.status = ModelStatus::Malformed {
            error: "x".repeat(MAX_MODEL_ERROR_CHARS + 1),
        };

        let summary = model_summary(&head_item(&repo(), &record)).unwrap();

        assert_eq!(
            summary.status,
            ModelStatus::Malformed {
                error: "x".repeat(MAX_MODEL_ERROR_CHARS)
            }
        );
    }

    #[test]
    fn a_head_with_an_unknown_status_is_corrupt() {
        let mut item = head_item(&repo(), &valid_model(b"{}"));
        item.insert("modelStatus".into(), s("pending"));

        assert!(matches!(model_summary(&item), Err(StoreError::Corrupt(_))));
    }

    #[test]
    fn compressed_content_reads_back_as_the_model() {
        let record = valid_model(br#"{"modelName":"Shop"}"#);
        let compressed = gzip(&record.content).unwrap();

        let read = model_record(summary_of(&record), &compressed).unwrap();

        assert_eq!(read, Some(record));
    }

    #[test]
    fn content_of_another_version_reads_as_none() {
        let record = valid_model(b"version 2");
        let older = gzip(b"version 1").unwrap();

        let read = model_record(summary_of(&record), &older).unwrap();

        assert_eq!(read, None);
    }

    #[test]
    fn content_that_is_not_gzip_is_corrupt() {
        let record = valid_model(b"{}");

        let read = model_record(summary_of(&record), b"plain");

        assert!(matches!(read, Err(StoreError::Corrupt(m)) if m.contains("decompress")));
    }
}
