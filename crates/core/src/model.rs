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
//!
//! Models run to tens of megabytes, so recognition reads a file in one pass without building a
//! JSON tree of it (with the fast reader of [`scan`], or serde_json when that one is not sure): the top-level keys it needs are kept (strings borrowed from the file where
//! they hold no escapes), arrays are only counted, and everything else is checked for validity
//! and skipped. Text facts are capped at [`MAX_FACT_BYTES`] (a store keeps them beside the
//! content, and DynamoDB limits an item to 400 KB), ending with [`TRUNCATION_MARKER`] when cut.

use std::borrow::Cow;
use std::fmt;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::ids::CommitId;

mod scan;

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

/// Top-level keys whose values are kept while reading: the required ones, then the optional facts.
const KEPT_KEYS: &[&str] = &[
    "modelName",
    "appTarget",
    "dbVendor",
    "collections",
    "relationships",
    "buckets",
    "definitions",
    "GUID",
    "persistenceSchemaVersion",
    "dbVersion",
    "views",
];

/// The longest a text fact (`modelName`, `appTarget`, `dbVendor`, `dbVersion`,
/// `persistenceSchemaVersion`) is kept, in bytes, marker included.
pub const MAX_FACT_BYTES: usize = 1024;

/// Ends a text fact that was cut to [`MAX_FACT_BYTES`].
pub const TRUNCATION_MARKER: &str = "… [truncated]";

#[derive(Clone, Copy)]
enum JsonType {
    String,
    Array,
    Object,
    /// A string or a number (older tools wrote the schema version as a number).
    Scalar,
}

impl JsonType {
    fn matches(self, v: &Seen<'_>) -> bool {
        match self {
            Self::String => matches!(v, Seen::Text(_)),
            Self::Array => matches!(v, Seen::Array(_)),
            Self::Object => matches!(v, Seen::Object),
            Self::Scalar => matches!(v, Seen::Text(_) | Seen::Number(_)),
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
    /// The file's bytes, exactly as in the repository (adapters compress them at rest). Shared,
    /// not copied: the buffer the Git host filled is the one stored. Empty for a file that was
    /// not read (too large, or refused by the store).
    pub content: Bytes,
    /// Lower-case hex SHA-256 of `content`.
    pub content_sha256: String,
}

impl ModelRecord {
    pub fn new(
        path: String,
        commit: CommitId,
        synced_at: DateTime<Utc>,
        status: ModelStatus,
        content: impl Into<Bytes>,
    ) -> Self {
        let content = content.into();
        let content_sha256 = sha256_hex(&content);
        Self::examined(path, commit, synced_at, status, content, content_sha256)
    }

    /// A record of a file [`examine`] already read: its digest is not computed a second time.
    pub fn examined(
        path: String,
        commit: CommitId,
        synced_at: DateTime<Utc>,
        status: ModelStatus,
        content: Bytes,
        content_sha256: String,
    ) -> Self {
        debug_assert_eq!(content_sha256, sha256_hex(&content), "the digest of {path}");
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
    // The fast reader first; serde_json decides whenever it is not sure (and words the errors).
    let parsed = match scan::top_level(content) {
        Some(top) => Ok(top),
        None => serde_json::from_slice(content),
    };
    let top: TopLevel<'_> = match parsed {
        Ok(v) => v,
        Err(e) => {
            return if claims_model_by_name(path) || mentions_model_keys(content) {
                Classification::Malformed(format!("not valid JSON: {e}"))
            } else {
                Classification::NotAModel
            };
        }
    };
    let TopLevel::Object(fields) = top else {
        return if claims_model_by_name(path) {
            Classification::Malformed("a model must be a JSON object".into())
        } else {
            Classification::NotAModel
        };
    };
    let claims = claims_model_by_name(path) || fields.hackolade_only_keys >= 2;
    match fields.check_required() {
        Ok(()) => Classification::Model(fields.facts()),
        Err(problem) if claims => Classification::Malformed(problem),
        Err(_) => Classification::NotAModel,
    }
}

/// What a sync records of a fetched file: its status and the SHA-256 of its bytes, or `None` when
/// it is no model (skipped). The bytes are walked twice back to back (recognised, then hashed)
/// while they are still in the CPU's cache; the sync runs this off the task that drives the
/// fetches, so that the next files keep downloading meanwhile.
pub fn examine(path: &str, content: &[u8]) -> Option<(ModelStatus, String)> {
    let status = match classify(path, content) {
        Classification::Model(facts) => ModelStatus::Valid { facts },
        Classification::Malformed(error) => ModelStatus::Malformed { error },
        Classification::NotAModel => return None,
    };
    Some((status, sha256_hex(content)))
}

fn mentions_model_keys(content: &[u8]) -> bool {
    let has = |needle: &[u8]| content.windows(needle.len()).any(|w| w == needle);
    has(b"\"persistenceSchemaVersion\"") && has(b"\"modelName\"")
}

/// `text` cut to [`MAX_FACT_BYTES`] at a character boundary, ending with [`TRUNCATION_MARKER`]
/// when it was longer.
pub fn cap_fact(text: &str) -> String {
    if text.len() <= MAX_FACT_BYTES {
        return text.to_owned();
    }
    let mut end = MAX_FACT_BYTES - TRUNCATION_MARKER.len();
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{TRUNCATION_MARKER}", &text[..end])
}

// ---------------------------------------------------------------------------------------------
// One pass over the file: what the top level holds, without a tree
// ---------------------------------------------------------------------------------------------

/// A kept top-level value: only what the type rules and the facts need.
enum Seen<'de> {
    Text(Cow<'de, str>),
    /// A number, written as `serde_json` writes it.
    Number(String),
    /// An array and how many elements it has.
    Array(u64),
    Object,
    /// `true`, `false` or `null`.
    Other,
}

/// The top level of a file: an object (with its kept keys) or anything else.
enum TopLevel<'de> {
    Object(Fields<'de>),
    NotAnObject,
}

/// The kept keys of a top-level object (the last value of a repeated key wins, as in a parsed
/// JSON object) and how many distinct [`HACKOLADE_ONLY_KEYS`] it has.
struct Fields<'de> {
    kept: Vec<Option<Seen<'de>>>,
    hackolade_only_keys: usize,
}

impl<'de> Fields<'de> {
    fn get(&self, key: &str) -> Option<&Seen<'de>> {
        let i = KEPT_KEYS.iter().position(|k| *k == key)?;
        self.kept.get(i)?.as_ref()
    }

    fn check_required(&self) -> Result<(), String> {
        let mut missing = Vec::new();
        for (key, ty) in REQUIRED_KEYS {
            match self.get(key) {
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

    fn facts(&self) -> ModelFacts {
        let text = |k: &str| match self.get(k) {
            Some(Seen::Text(s)) => Some(cap_fact(s)),
            Some(Seen::Number(n)) => Some(cap_fact(n)),
            _ => None,
        };
        let count = |k: &str| match self.get(k) {
            Some(Seen::Array(n)) => *n,
            _ => 0,
        };
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
}

impl<'de> Deserialize<'de> for TopLevel<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(TopLevelVisitor)
    }
}

struct TopLevelVisitor;

impl<'de> Visitor<'de> for TopLevelVisitor {
    type Value = TopLevel<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut fields = Fields {
            kept: KEPT_KEYS.iter().map(|_| None).collect(),
            hackolade_only_keys: 0,
        };
        let mut hackolade_only_seen = [false; HACKOLADE_ONLY_KEYS.len()];
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            if let Some(i) = HACKOLADE_ONLY_KEYS.iter().position(|k| *k == key)
                && let Some(seen) = hackolade_only_seen.get_mut(i)
            {
                *seen = true;
            }
            match KEPT_KEYS.iter().position(|k| *k == key) {
                Some(i) => {
                    let value = map.next_value::<Seen<'de>>()?;
                    if let Some(slot) = fields.kept.get_mut(i) {
                        *slot = Some(value);
                    }
                }
                None => {
                    map.next_value::<Skip>()?;
                }
            }
        }
        fields.hackolade_only_keys = hackolade_only_seen.iter().filter(|s| **s).count();
        Ok(TopLevel::Object(fields))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        SkipVisitor.visit_seq(seq)?;
        Ok(TopLevel::NotAnObject)
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(TopLevel::NotAnObject)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(TopLevel::NotAnObject)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(TopLevel::NotAnObject)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(TopLevel::NotAnObject)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(TopLevel::NotAnObject)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(TopLevel::NotAnObject)
    }
}

/// An object key, borrowed from the file when it holds no escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object key")
            }

            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Borrowed(v)))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

impl<'de> Deserialize<'de> for Seen<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(SeenVisitor)
    }
}

struct SeenVisitor;

impl<'de> Visitor<'de> for SeenVisitor {
    type Value = Seen<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Seen::Text(Cow::Borrowed(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Seen::Text(Cow::Owned(v.to_owned())))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Seen::Text(Cow::Owned(v)))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Seen::Number(serde_json::Number::from(v).to_string()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Seen::Number(serde_json::Number::from(v).to_string()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Seen::Number(
            serde_json::Number::from_f64(v).map_or_else(|| v.to_string(), |n| n.to_string()),
        ))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Seen::Other)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Seen::Other)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut n = 0u64;
        while seq.next_element::<Skip>()?.is_some() {
            n += 1;
        }
        Ok(Seen::Array(n))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        SkipVisitor.visit_map(map)?;
        Ok(Seen::Object)
    }
}

/// A value read for its validity only and dropped. Unlike `serde::de::IgnoredAny`, strings are
/// decoded (escapes and UTF-8 checked, without allocating unless they hold escapes), so a file is
/// valid JSON here exactly when it parses into a `serde_json::Value`.
struct Skip;

impl<'de> Deserialize<'de> for Skip {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(SkipVisitor)
    }
}

struct SkipVisitor;

impl<'de> Visitor<'de> for SkipVisitor {
    type Value = Skip;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(Skip)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Skip)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Skip)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Skip)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Skip)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Skip)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<Skip>()?.is_some() {}
        Ok(Skip)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<Skip, Skip>()?.is_some() {}
        Ok(Skip)
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
    fn a_long_model_name_is_cut_at_a_character_boundary_with_a_marker() {
        let mut v = model_json();
        v["modelName"] = "Ω".repeat(250_000).into();
        v["dbVendor"] = "x".repeat(MAX_FACT_BYTES).into();
        let Classification::Model(f) = classify("m.json", &serde_json::to_vec(&v).unwrap()) else {
            panic!()
        };
        assert!(f.model_name.len() <= MAX_FACT_BYTES, "{}", f.model_name.len());
        assert!(f.model_name.ends_with(TRUNCATION_MARKER));
        assert!(
            f.model_name
                .trim_end_matches(TRUNCATION_MARKER)
                .chars()
                .all(|c| c == 'Ω')
        );
        assert_eq!(
            f.db_vendor.len(),
            MAX_FACT_BYTES,
            "a fact of exactly the limit is kept whole"
        );
    }

    #[test]
    fn an_invalid_escape_anywhere_makes_the_file_invalid_json_as_a_full_parse_would() {
        let mut bytes = serde_json::to_vec(&model_json()).unwrap();
        bytes.pop();
        bytes.extend_from_slice(br#","deep":{"x":["\ud800"]}}"#);
        assert!(serde_json::from_slice::<serde_json::Value>(&bytes).is_err());
        assert!(matches!(classify("m.json", &bytes), Classification::Malformed(e) if e.starts_with("not valid JSON")));
    }

    #[test]
    fn invalid_utf8_in_a_skipped_string_makes_the_file_invalid_json() {
        let mut bytes = serde_json::to_vec(&model_json()).unwrap();
        bytes.pop();
        bytes.extend_from_slice(b",\"description\":\"caf\xE9\"}");
        assert!(matches!(classify("m.hck.json", &bytes), Classification::Malformed(_)));
    }

    #[test]
    fn a_repeated_key_counts_its_last_value() {
        let bytes = serde_json::to_vec(&model_json()).unwrap();
        let mut text = String::from_utf8(bytes).unwrap();
        text.pop();
        text.push_str(r#","modelName":"Later","collections":[1,2,3]}"#);
        let Classification::Model(f) = classify("m.json", text.as_bytes()) else {
            panic!()
        };
        assert_eq!((f.model_name.as_str(), f.entities), ("Later", 3));
    }

    #[test]
    fn only_json_files_are_candidates() {
        assert!(is_candidate_path("a/b/model.hck.json"));
        assert!(is_candidate_path("M.JSON"));
        assert!(!is_candidate_path("README.md"));
        assert!(!is_candidate_path("dir/.json"));
        assert!(!is_candidate_path("json"));
    }

    /// The recognition as it was written over a full `serde_json::Value` tree: the one-pass
    /// reader must give exactly its answers.
    fn classify_over_a_tree(path: &str, content: &[u8]) -> Classification {
        use serde_json::{Map, Value};
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
        let matches = |ty: JsonType, v: &Value| match ty {
            JsonType::String => v.is_string(),
            JsonType::Array => v.is_array(),
            JsonType::Object => v.is_object(),
            JsonType::Scalar => v.is_string() || v.is_number(),
        };
        let claims =
            claims_model_by_name(path) || HACKOLADE_ONLY_KEYS.iter().filter(|k| map.contains_key(**k)).count() >= 2;
        let mut missing = Vec::new();
        for (key, ty) in REQUIRED_KEYS {
            match map.get(*key) {
                None => missing.push(format!("{key} is missing")),
                Some(v) if !matches(*ty, v) => missing.push(format!("{key} must be {}", ty.name())),
                Some(_) => {}
            }
        }
        if !missing.is_empty() {
            let problem = format!("not a readable Hackolade model: {}", missing.join(", "));
            return if claims {
                Classification::Malformed(problem)
            } else {
                Classification::NotAModel
            };
        }
        let text = |k: &str| match map.get(k) {
            Some(Value::String(s)) => Some(cap_fact(s)),
            Some(Value::Number(n)) => Some(cap_fact(&n.to_string())),
            _ => None,
        };
        let count = |m: &Map<String, Value>, k: &str| m.get(k).and_then(Value::as_array).map_or(0, |a| a.len() as u64);
        Classification::Model(ModelFacts {
            model_name: text("modelName").unwrap_or_default(),
            app_target: text("appTarget").unwrap_or_default(),
            db_vendor: text("dbVendor").unwrap_or_default(),
            db_version: text("dbVersion").filter(|s| !s.is_empty()),
            persistence_schema_version: text("persistenceSchemaVersion").unwrap_or_default(),
            entities: count(&map, "collections"),
            relationships: count(&map, "relationships"),
            views: count(&map, "views"),
        })
    }

    pub(in crate::model) mod same_answers_as_a_full_parse {
        use super::*;
        use proptest::prelude::*;

        const STRINGS: &str = "[a-zA-Z0-9 é\"\\\\]{0,8}";

        /// Any JSON value, a few levels deep, its strings made of `strings` (a regex).
        pub(in crate::model) fn json_value(strings: &'static str) -> impl Strategy<Value = serde_json::Value> {
            let leaf = prop_oneof![
                Just(serde_json::Value::Null),
                any::<bool>().prop_map(serde_json::Value::from),
                any::<i64>().prop_map(serde_json::Value::from),
                any::<f64>()
                    .prop_filter("finite", |f| f.is_finite())
                    .prop_map(serde_json::Value::from),
                strings.prop_map(serde_json::Value::from),
            ];
            leaf.prop_recursive(3, 24, 4, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
                    prop::collection::btree_map("[a-z]{1,3}", inner, 0..4)
                        .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
                ]
            })
        }

        /// A top-level object mixing model keys (with any type) and others.
        fn candidate() -> impl Strategy<Value = Vec<u8>> {
            let keys: Vec<&'static str> = KEPT_KEYS
                .iter()
                .chain(HACKOLADE_ONLY_KEYS)
                .copied()
                .chain(["x", "y"])
                .collect();
            (
                prop::collection::vec((prop::sample::select(keys), json_value(STRINGS)), 0..14),
                prop::collection::vec(any::<u8>(), 0..3),
                any::<bool>(),
                any::<usize>(),
            )
                .prop_map(|(entries, noise, cut, at)| {
                    // Entries are written by hand so that keys may repeat, as in a real file.
                    let mut text = String::from("{");
                    for (i, (k, v)) in entries.iter().enumerate() {
                        if i > 0 {
                            text.push(',');
                        }
                        text.push_str(&format!("{}:{v}", serde_json::Value::from(*k)));
                    }
                    text.push('}');
                    let mut bytes = text.into_bytes();
                    if cut && !bytes.is_empty() {
                        bytes.truncate(at % bytes.len());
                        bytes.extend(noise);
                    }
                    bytes
                })
        }

        proptest! {
            #[test]
            fn for_any_top_level_object(bytes in candidate(), hck in any::<bool>()) {
                let path = if hck { "m.hck.json" } else { "m.json" };
                prop_assert_eq!(classify(path, &bytes), classify_over_a_tree(path, &bytes));
            }

            #[test]
            fn for_any_json_value(value in json_value(STRINGS)) {
                let bytes = serde_json::to_vec(&value).unwrap();
                prop_assert_eq!(classify("m.hck.json", &bytes), classify_over_a_tree("m.hck.json", &bytes));
            }
        }

        #[test]
        fn for_a_complete_model_and_every_cut_of_it() {
            let bytes = serde_json::to_vec(&model_json()).unwrap();
            for end in 0..=bytes.len() {
                assert_eq!(
                    classify("m.json", &bytes[..end]),
                    classify_over_a_tree("m.json", &bytes[..end])
                );
            }
        }
    }
}
