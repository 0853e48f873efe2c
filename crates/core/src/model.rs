//! What counts as a Hackolade model, and the facts kept about each one.
//!
//! Hackolade has no published schema. Measured on 458 public model files (persistence schema
//! versions 6 to 8), every model carries all of these top-level keys and no other JSON file seen
//! carries them all: `modelName`, `appTarget`, `dbVendor` (strings), `collections`,
//! `relationships`, `buckets` (arrays), `definitions` (object), `GUID` and
//! `persistenceSchemaVersion`. A file is a model when it is a JSON object with those keys and
//! types. Studio also writes `applicationInformation`, but files produced by plugins or scripts
//! sometimes omit it, so it is not required.
//!
//! A file that claims to be a model and is not readable as one (`*.hck.json` that does not parse,
//! or JSON that carries some of the model keys with the wrong types) is *malformed*: it is
//! recorded with its error rather than dropped, so users see it in the hub.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::ids::CommitId;

/// Keys every Hackolade model has, with the JSON type each must have.
const REQUIRED_KEYS: &[(&str, JsonType)] = &[
    ("modelName", JsonType::String),
    ("appTarget", JsonType::String),
    ("dbVendor", JsonType::String),
    ("collections", JsonType::Array),
    ("relationships", JsonType::Array),
    ("buckets", JsonType::Array),
    ("definitions", JsonType::Object),
    ("GUID", JsonType::String),
    ("persistenceSchemaVersion", JsonType::Scalar),
];

/// Keys only Hackolade writes; a JSON file with two of these claims to be a model.
const HACKOLADE_ONLY_KEYS: &[&str] = &[
    "persistenceSchemaVersion",
    "idToNameHashTable",
    "polyglotDefinitions",
    "isCreatedByPlugin",
    "pluginInformation",
    "applicationInformation",
    "modelName",
    "appTarget",
];

#[derive(Clone, Copy)]
enum JsonType {
    String,
    Array,
    Object,
    /// A string or a number (older tools wrote the schema version as a number).
    Scalar,
}

impl JsonType {
    fn matches(self, v: &Value) -> bool {
        match self {
            Self::String => v.is_string(),
            Self::Array => v.is_array(),
            Self::Object => v.is_object(),
            Self::Scalar => v.is_string() || v.is_number(),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::String => "a string",
            Self::Array => "an array",
            Self::Object => "an object",
            Self::Scalar => "a string or number",
        }
    }
}

/// Facts worth querying, taken from a model's top level.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelFacts {
    pub model_name: String,
    /// Hackolade's target id: `DYNAMODB`, `MONGODB`, `PostgreSQL`, `Polyglot`...
    pub app_target: String,
    pub db_vendor: String,
    pub db_version: Option<String>,
    pub persistence_schema_version: String,
    /// Number of entities (`collections`).
    pub entities: u64,
    /// Number of relationships.
    pub relationships: u64,
    /// Number of views (`views`, absent in some targets).
    pub views: u64,
}

/// Whether a stored file is a readable model or a malformed one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "camelCase")]
pub enum ModelStatus {
    Valid { facts: ModelFacts },
    Malformed { error: String },
}

/// One replicated file with its exact bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelRecord {
    pub path: String,
    pub commit: CommitId,
    pub synced_at: DateTime<Utc>,
    pub status: ModelStatus,
    /// The file's bytes, exactly as in the repository (adapters compress them at rest).
    pub content: Vec<u8>,
    /// Lower-case hex SHA-256 of `content`.
    pub content_sha256: String,
}

impl ModelRecord {
    pub fn new(
        path: String,
        commit: CommitId,
        synced_at: DateTime<Utc>,
        status: ModelStatus,
        content: Vec<u8>,
    ) -> Self {
        let content_sha256 = sha256_hex(&content);
        Self {
            path,
            commit,
            synced_at,
            status,
            content,
            content_sha256,
        }
    }

    pub fn size(&self) -> u64 {
        self.content.len() as u64
    }

    pub fn summary(&self) -> ModelSummary {
        ModelSummary {
            path: self.path.clone(),
            commit: self.commit.clone(),
            synced_at: self.synced_at,
            content_sha256: self.content_sha256.clone(),
            size: self.size(),
            status: self.status.clone(),
        }
    }
}

/// A stored model without its content, for listings (`ModelStore::list_models`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelSummary {
    pub path: String,
    pub commit: CommitId,
    pub synced_at: DateTime<Utc>,
    pub content_sha256: String,
    pub size: u64,
    pub status: ModelStatus,
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// What a file turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Classification {
    Model(ModelFacts),
    Malformed(String),
    /// JSON that is not a Hackolade model (an OpenAPI document, a sample...): skipped.
    NotAModel,
}

/// Whether a path can hold a model at all: only `.json` files (`*.hck.json` included) are read.
pub fn is_candidate_path(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    name.len() > 5 && name.to_ascii_lowercase().ends_with(".json")
}

fn claims_model_by_name(path: &str) -> bool {
    path.to_ascii_lowercase().ends_with(".hck.json")
}

/// Decides what a candidate file is, from its path and bytes.
pub fn classify(path: &str, content: &[u8]) -> Classification {
    let content = content.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(content);
    let value: Value = match serde_json::from_slice(content) {
        Ok(v) => v,
        Err(e) => {
            return if claims_model_by_name(path) || mentions_model_keys(content) {
                Classification::Malformed(format!("not valid JSON: {e}"))
            } else {
                Classification::NotAModel
            };
        }
    };
    let Value::Object(map) = value else {
        return if claims_model_by_name(path) {
            Classification::Malformed("a model must be a JSON object".into())
        } else {
            Classification::NotAModel
        };
    };
    let claims =
        claims_model_by_name(path) || HACKOLADE_ONLY_KEYS.iter().filter(|k| map.contains_key(**k)).count() >= 2;
    match check_required(&map) {
        Ok(()) => Classification::Model(facts(&map)),
        Err(problem) if claims => Classification::Malformed(problem),
        Err(_) => Classification::NotAModel,
    }
}

fn mentions_model_keys(content: &[u8]) -> bool {
    let has = |needle: &[u8]| content.windows(needle.len()).any(|w| w == needle);
    has(b"\"persistenceSchemaVersion\"") && has(b"\"modelName\"")
}

fn check_required(map: &Map<String, Value>) -> Result<(), String> {
    let mut missing = Vec::new();
    for (key, ty) in REQUIRED_KEYS {
        match map.get(*key) {
            None => missing.push(format!("{key} is missing")),
            Some(v) if !ty.matches(v) => missing.push(format!("{key} must be {}", ty.name())),
            Some(_) => {}
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!("not a readable Hackolade model: {}", missing.join(", ")))
    }
}

fn facts(map: &Map<String, Value>) -> ModelFacts {
    let text = |k: &str| match map.get(k) {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    let count = |k: &str| map.get(k).and_then(Value::as_array).map_or(0, |a| a.len() as u64);
    ModelFacts {
        model_name: text("modelName").unwrap_or_default(),
        app_target: text("appTarget").unwrap_or_default(),
        db_vendor: text("dbVendor").unwrap_or_default(),
        db_version: text("dbVersion").filter(|s| !s.is_empty()),
        persistence_schema_version: text("persistenceSchemaVersion").unwrap_or_default(),
        entities: count("collections"),
        relationships: count("relationships"),
        views: count("views"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model_json() -> serde_json::Value {
        serde_json::json!({
            "modelName": "Orders", "appTarget": "PostgreSQL", "dbVendor": "PostgreSQL", "dbVersion": "v16.x",
            "collections": [{"GUID": "a"}, {"GUID": "b"}], "relationships": [{"parentCollection": "a"}],
            "buckets": [], "definitions": {}, "GUID": "g", "persistenceSchemaVersion": "8",
            "applicationInformation": {"version": "7.9.0"}, "views": []
        })
    }

    #[test]
    fn a_model_is_recognised_and_its_facts_are_counted() {
        let bytes = serde_json::to_vec_pretty(&model_json()).unwrap();
        let Classification::Model(f) = classify("a/orders.json", &bytes) else {
            panic!()
        };
        assert_eq!(f.model_name, "Orders");
        assert_eq!(f.app_target, "PostgreSQL");
        assert_eq!(f.db_version.as_deref(), Some("v16.x"));
        assert_eq!((f.entities, f.relationships), (2, 1));
        assert_eq!(f.persistence_schema_version, "8");
    }

    #[test]
    fn other_json_is_not_a_model() {
        assert_eq!(
            classify("openapi.json", br#"{"openapi":"3.0.0","paths":{}}"#),
            Classification::NotAModel
        );
        assert_eq!(classify("list.json", b"[1,2]"), Classification::NotAModel);
        assert_eq!(classify("broken.json", b"{oops"), Classification::NotAModel);
    }

    #[test]
    fn a_broken_hck_json_is_malformed_not_skipped() {
        assert!(matches!(
            classify("m.hck.json", b"{\"modelName\": "),
            Classification::Malformed(_)
        ));
        assert!(matches!(classify("m.HCK.JSON", b"[]"), Classification::Malformed(_)));
    }

    #[test]
    fn a_model_with_a_wrong_key_type_is_malformed_with_the_reason() {
        let mut v = model_json();
        v["collections"] = serde_json::json!("nope");
        let Classification::Malformed(why) = classify("m.json", &serde_json::to_vec(&v).unwrap()) else {
            panic!()
        };
        assert!(why.contains("collections must be an array"), "{why}");
    }

    #[test]
    fn truncated_model_json_is_malformed_even_without_the_hck_suffix() {
        let bytes = serde_json::to_vec(&model_json()).unwrap();
        assert!(matches!(
            classify("m.json", &bytes[..bytes.len() - 3]),
            Classification::Malformed(_)
        ));
    }

    #[test]
    fn a_byte_order_mark_is_tolerated() {
        let mut bytes = b"\xEF\xBB\xBF".to_vec();
        bytes.extend(serde_json::to_vec(&model_json()).unwrap());
        assert!(matches!(classify("m.json", &bytes), Classification::Model(_)));
    }

    #[test]
    fn only_json_files_are_candidates() {
        assert!(is_candidate_path("a/b/model.hck.json"));
        assert!(is_candidate_path("M.JSON"));
        assert!(!is_candidate_path("README.md"));
        assert!(!is_candidate_path("dir/.json"));
        assert!(!is_candidate_path("json"));
    }
}
