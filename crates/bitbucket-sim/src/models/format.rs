//! The JSON of a Hackolade Studio model file, as Studio writes it: the top-level model with its
//! entities (`collections`), attributes (`properties`, nested), containers (`buckets`), views,
//! relationships by GUID, definitions and Polyglot lineage, with Studio's key names and order,
//! pretty-printed with tabs. Only the generator fills these types; nothing parses them.

use serde::Serialize;
use serde::ser::SerializeMap;

#[derive(Serialize)]
pub(super) struct Empty {}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Property {
    pub(super) name: String,
    pub(super) hackolade_meta: Empty,
    pub(super) is_activated: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) primary_key: Option<bool>,
    #[serde(rename = "type")]
    pub(super) type_: &'static str,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub(super) mode: &'static str,
    pub(super) description: &'static str,
    #[serde(rename = "GUID")]
    pub(super) guid: String,
    pub(super) required: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) properties: Option<Vec<Property>>,
    pub(super) error: Empty,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Definitions {
    #[serde(rename = "type")]
    pub(super) type_: &'static str,
    pub(super) properties: Vec<Property>,
    #[serde(rename = "GUID")]
    pub(super) guid: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Collection {
    pub(super) collection_name: String,
    #[serde(rename = "type")]
    pub(super) type_: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) ref_type: Option<&'static str>,
    #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
    pub(super) ref_: Option<String>,
    pub(super) properties: Vec<Property>,
    pub(super) definitions: Definitions,
    pub(super) is_activated: bool,
    pub(super) additional_properties: bool,
    pub(super) description: &'static str,
    pub(super) bucket_id: String,
    #[serde(rename = "GUID")]
    pub(super) guid: String,
    pub(super) hackolade_meta: Empty,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Bucket {
    pub(super) name: String,
    #[serde(rename = "type")]
    pub(super) type_: &'static str,
    pub(super) is_activated: bool,
    pub(super) description: &'static str,
    #[serde(rename = "GUID")]
    pub(super) guid: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct View {
    pub(super) collection_name: String,
    #[serde(rename = "type")]
    pub(super) type_: &'static str,
    pub(super) view_on: String,
    pub(super) pipeline: String,
    pub(super) is_activated: bool,
    pub(super) bucket_id: String,
    #[serde(rename = "GUID")]
    pub(super) guid: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Relationship {
    pub(super) name: String,
    pub(super) relationship_type: &'static str,
    pub(super) parent_field: Vec<[String; 2]>,
    pub(super) parent_cardinality: &'static str,
    pub(super) child_field: Vec<[String; 2]>,
    pub(super) child_cardinality: &'static str,
    #[serde(rename = "GUID")]
    pub(super) guid: String,
    pub(super) parent_collection: String,
    pub(super) child_collection: String,
    pub(super) is_activated: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct PolyglotModelPath {
    pub(super) polyglot_model_path: String,
}

#[derive(Serialize)]
pub(super) struct PluginInformation {
    #[serde(rename = "pluginName")]
    pub(super) plugin_name: String,
    #[serde(rename = "pluginVersion")]
    pub(super) plugin_version: &'static str,
    #[serde(rename = "pluginEngineVersion")]
    pub(super) plugin_engine_version: &'static str,
}

#[derive(Serialize)]
pub(super) struct ApplicationInformation {
    pub(super) version: &'static str,
}

/// A map serialized in insertion order (serde_json's map would sort it).
pub(super) struct OrderedMap<'a>(pub(super) &'a [(String, String)]);

impl Serialize for OrderedMap<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (k, v) in self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Model<'a> {
    pub(super) model_name: &'a str,
    pub(super) author: &'static str,
    pub(super) model_version: u32,
    pub(super) description: String,
    pub(super) collections: &'a [Collection],
    pub(super) buckets: &'a [Bucket],
    pub(super) views: &'a [View],
    pub(super) relationships: &'a [Relationship],
    pub(super) users: [(); 0],
    pub(super) diagram_views: [(); 0],
    pub(super) id_to_name_hash_table: OrderedMap<'a>,
    pub(super) definitions: &'a Definitions,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) polyglot_definitions: Option<&'a Definitions>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) polyglot_model_paths: Option<Vec<PolyglotModelPath>>,
    pub(super) external_definitions: Definitions,
    pub(super) sources: [(); 0],
    pub(super) decorative_symbols: [(); 0],
    pub(super) db_vendor: &'static str,
    pub(super) db_version: &'static str,
    pub(super) app_target: &'a str,
    #[serde(rename = "creationTS")]
    pub(super) creation_ts: String,
    #[serde(rename = "GUID")]
    pub(super) guid: &'a str,
    #[serde(rename = "lastModifTS")]
    pub(super) last_modif_ts: String,
    pub(super) persistence_schema_version: &'static str,
    pub(super) is_created_by_plugin: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) plugin_information: Option<PluginInformation>,
    pub(super) application_information: ApplicationInformation,
}

pub(super) fn formatter() -> serde_json::ser::PrettyFormatter<'static> {
    serde_json::ser::PrettyFormatter::with_indent(b"\t")
}
