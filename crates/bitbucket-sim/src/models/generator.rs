//! The seeded generator: [`generate_model`] builds a [`ModelSpec`]'s model entity by entity from
//! a SplitMix64 stream until the output reaches `target_bytes`, measuring each entity's
//! pretty-printed size once as it is built (linear time), so 10 MB+ models take well under a
//! second in release. Same spec, same bytes.

use std::io::Write;

use serde::Serialize;

use super::format::{
    ApplicationInformation, Bucket, Collection, Definitions, Empty, Model, OrderedMap, PluginInformation,
    PolyglotModelPath, Property, Relationship, View, formatter,
};

/// What to generate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelSpec {
    /// Same seed, same spec ⇒ same bytes.
    pub seed: u64,
    /// `modelName`.
    pub name: String,
    /// `appTarget`: `MONGODB`, `DYNAMODB`, `PostgreSQL`, `Oracle`, `Polyglot`, `OPENAPI`, ...
    pub app_target: String,
    /// The output is at least this long (and at most about one entity longer).
    pub target_bytes: usize,
    /// Make about half the entities references to a Polyglot model (`"type": "reference",
    /// "refType": "polyglot"`) whose attributes live under `polyglotDefinitions`.
    pub polyglot_refs: bool,
    /// With `polyglot_refs`: the relative path of the parent Polyglot model, written to
    /// `polyglotModelPaths` (lineage).
    pub polyglot_model_path: Option<String>,
}

impl Default for ModelSpec {
    fn default() -> Self {
        Self {
            seed: 1,
            name: "Model".into(),
            app_target: "MONGODB".into(),
            target_bytes: 16 * 1024,
            polyglot_refs: false,
            polyglot_model_path: None,
        }
    }
}

/// Generates the model file described by `spec`.
pub fn generate_model(spec: &ModelSpec) -> Vec<u8> {
    let mut builder = Builder::new(spec);
    let mut budget = spec.target_bytes;
    loop {
        builder.grow_to(budget);
        let out = builder.render();
        if out.len() >= spec.target_bytes {
            return out;
        }
        // The size estimate fell short (it should not): grow by what is missing and retry.
        budget = builder.estimated + (spec.target_bytes - out.len());
    }
}

/// SplitMix64: tiny, fast, and stable forever (unlike a library RNG's stream).
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next_u64() % (hi - lo + 1) as u64) as usize
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next_u64() % 100 < percent
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.range(0, items.len() - 1)]
    }

    fn guid(&mut self) -> String {
        let a = self.next_u64();
        let b = self.next_u64();
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0x0fff,
            0x8000 | ((b >> 48) & 0x3fff),
            b & 0xffff_ffff_ffff
        )
    }
}

const ENTITY_WORDS: &[&str] = &[
    "customer",
    "order",
    "product",
    "invoice",
    "address",
    "payment",
    "shipment",
    "account",
    "inventory",
    "supplier",
    "employee",
    "contract",
    "warehouse",
    "category",
    "review",
    "coupon",
    "subscription",
    "ledger",
    "refund",
    "carrier",
];

const ATTRIBUTE_WORDS: &[&str] = &[
    "id",
    "name",
    "email",
    "status",
    "amount",
    "currency",
    "createdAt",
    "updatedAt",
    "quantity",
    "price",
    "description",
    "code",
    "country",
    "city",
    "street",
    "postalCode",
    "phone",
    "notes",
    "rating",
    "discount",
    "taxRate",
    "version",
    "owner",
    "tags",
    "reference",
    "channel",
];

const DESCRIPTIONS: &[&str] = &[
    "Business key assigned by the source system.",
    "Maintained by the integration layer; do not edit manually.",
    "Nullable until the record is confirmed.",
    "Denormalized for read performance.",
    "Stored in UTC.",
    "",
];

const STUDIO_VERSIONS: &[&str] = &["7.4.3", "7.6.1", "7.7.2", "7.9.0"];

/// `(type, mode)` choices for leaf attributes, and the type of nested containers.
fn type_system(app_target: &str) -> (&'static [(&'static str, &'static str)], &'static str) {
    match app_target {
        "PostgreSQL" | "Oracle" | "MSSQLServer" | "MySQL" | "SQLServer" => (
            &[
                ("char", "varchar"),
                ("numeric", "integer"),
                ("numeric", "decimal"),
                ("datetime", "timestamp"),
                ("boolean", ""),
                ("char", "text"),
            ],
            "composite",
        ),
        "DYNAMODB" => (
            &[
                ("string", ""),
                ("number", ""),
                ("boolean", ""),
                ("binary", ""),
                ("string set", ""),
            ],
            "map",
        ),
        _ => (
            &[
                ("string", ""),
                ("numeric", "integer"),
                ("numeric", "double"),
                ("boolean", ""),
                ("date", ""),
                ("objectId", ""),
            ],
            "document",
        ),
    }
}

fn vendor(app_target: &str) -> (&'static str, &'static str) {
    match app_target {
        "MONGODB" => ("MongoDB", "v7.0"),
        "DYNAMODB" => ("DynamoDB", "DynamoDB"),
        "PostgreSQL" => ("PostgreSQL", "v16.x"),
        "Oracle" => ("Oracle", "23ai"),
        "Polyglot" => ("Polyglot", "Polyglot"),
        "OPENAPI" => ("OpenAPI", "3.0.3"),
        "JSONSCHEMA" => ("JSON Schema", "draft-07"),
        _ => ("Other", ""),
    }
}

/// Counts what serde_json writes: bytes and line breaks.
#[derive(Default)]
struct Counter {
    bytes: usize,
    newlines: usize,
}

impl Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.bytes += buf.len();
        self.newlines += buf.iter().filter(|b| **b == b'\n').count();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The pretty-printed size of `value` when it sits `depth` levels deep, plus its separator.
fn size_at_depth<T: Serialize>(value: &T, depth: usize) -> usize {
    let mut counter = Counter::default();
    let mut ser = serde_json::Serializer::with_formatter(&mut counter, formatter());
    if value.serialize(&mut ser).is_err() {
        return 0;
    }
    counter.bytes + (counter.newlines + 1) * depth + 2
}

struct Builder<'s> {
    spec: &'s ModelSpec,
    rng: Rng,
    guid: String,
    leaf_types: &'static [(&'static str, &'static str)],
    container_type: &'static str,
    collections: Vec<Collection>,
    buckets: Vec<Bucket>,
    views: Vec<View>,
    relationships: Vec<Relationship>,
    names: Vec<(String, String)>,
    definitions: Definitions,
    polyglot: Definitions,
    /// Collections and the GUID of their first (key) attribute, for relationships.
    keys: Vec<(String, String)>,
    estimated: usize,
}

impl<'s> Builder<'s> {
    fn new(spec: &'s ModelSpec) -> Self {
        let mut rng = Rng(spec.seed ^ 0x4861_636b_6f6c_6164);
        let (leaf_types, container_type) = type_system(&spec.app_target);
        let guid = rng.guid();
        let definitions = Definitions {
            type_: "definitions",
            properties: Vec::new(),
            guid: rng.guid(),
        };
        let polyglot = Definitions {
            type_: "polyglotDefinitions",
            properties: Vec::new(),
            guid: rng.guid(),
        };
        let mut builder = Self {
            spec,
            rng,
            guid,
            leaf_types,
            container_type,
            collections: Vec::new(),
            buckets: Vec::new(),
            views: Vec::new(),
            relationships: Vec::new(),
            names: Vec::new(),
            definitions,
            polyglot,
            keys: Vec::new(),
            estimated: 0,
        };
        let bucket_count = builder.rng.range(1, 4);
        for i in 0..bucket_count {
            let bucket = Bucket {
                name: format!("{}_{}", builder.rng.pick(&["sales", "core", "ops", "crm"]), i),
                type_: "bucket",
                is_activated: true,
                description: "",
                guid: builder.rng.guid(),
            };
            builder.remember(&bucket.guid, &bucket.name);
            builder.buckets.push(bucket);
        }
        builder.estimated = builder.render().len();
        builder
    }

    fn remember(&mut self, guid: &str, name: &str) {
        // `\t\t"<guid>": "<name>",\n`
        self.estimated += 2 + guid.len() + 2 + 2 + name.len() + 2 + 2;
        self.names.push((guid.to_owned(), name.to_owned()));
    }

    fn grow_to(&mut self, budget: usize) {
        while self.estimated < budget {
            self.add_entity();
        }
    }

    fn add_entity(&mut self) {
        let index = self.collections.len();
        let name = format!("{}_{}", self.rng.pick(ENTITY_WORDS), index);
        let guid = self.rng.guid();
        let bucket_id = self.buckets[self.rng.range(0, self.buckets.len() - 1)].guid.clone();
        let attribute_count = self.rng.range(4, 20);
        let properties = self.attributes(attribute_count, 0, true);
        let key_guid = properties[0].guid.clone();
        self.remember(&guid, &name);

        let as_reference = self.spec.polyglot_refs && self.rng.chance(50);
        let collection = if as_reference {
            let target = self.rng.guid();
            let definition = Property {
                name: name.clone(),
                hackolade_meta: Empty {},
                is_activated: true,
                primary_key: None,
                type_: self.container_type,
                mode: "",
                description: "",
                guid: target.clone(),
                required: false,
                properties: Some(properties),
                error: Empty {},
            };
            self.estimated += size_at_depth(&definition, 3);
            self.polyglot.properties.push(definition);
            Collection {
                collection_name: name,
                type_: "reference",
                ref_type: Some("polyglot"),
                ref_: Some(target),
                properties: Vec::new(),
                definitions: self.empty_definitions(),
                is_activated: true,
                additional_properties: false,
                description: "",
                bucket_id: bucket_id.clone(),
                guid: guid.clone(),
                hackolade_meta: Empty {},
            }
        } else {
            Collection {
                collection_name: name,
                type_: "object",
                ref_type: None,
                ref_: None,
                properties,
                definitions: self.empty_definitions(),
                is_activated: true,
                additional_properties: false,
                description: self.rng.pick(DESCRIPTIONS),
                bucket_id: bucket_id.clone(),
                guid: guid.clone(),
                hackolade_meta: Empty {},
            }
        };
        self.estimated += size_at_depth(&collection, 2);
        self.collections.push(collection);

        if let Some((parent, parent_key)) = (!self.keys.is_empty() && self.rng.chance(70))
            .then(|| self.keys[self.rng.range(0, self.keys.len() - 1)].clone())
        {
            let relationship = Relationship {
                name: format!("fk_{}_{}", index, self.relationships.len()),
                relationship_type: "Foreign Key",
                parent_field: vec![[parent.clone(), parent_key]],
                parent_cardinality: "1",
                child_field: vec![[guid.clone(), key_guid.clone()]],
                child_cardinality: self.rng.pick(&["0..n", "1..n", "1", "0..1"]),
                guid: self.rng.guid(),
                parent_collection: parent,
                child_collection: guid.clone(),
                is_activated: true,
            };
            self.remember(&relationship.guid, &relationship.name);
            self.estimated += size_at_depth(&relationship, 2);
            self.relationships.push(relationship);
        }
        self.keys.push((guid.clone(), key_guid));

        if index % 12 == 5 && self.views.len() < 20 {
            let view = View {
                collection_name: format!("v_{index}"),
                type_: "object",
                view_on: guid,
                pipeline: "[{\"$match\": {\"status\": \"active\"}}]".into(),
                is_activated: true,
                bucket_id,
                guid: self.rng.guid(),
            };
            self.remember(&view.guid, &view.collection_name);
            self.estimated += size_at_depth(&view, 2);
            self.views.push(view);
        }
    }

    fn empty_definitions(&mut self) -> Definitions {
        Definitions {
            type_: "definitions",
            properties: Vec::new(),
            guid: self.rng.guid(),
        }
    }

    fn attributes(&mut self, count: usize, depth: usize, top: bool) -> Vec<Property> {
        (0..count)
            .map(|i| {
                let nested = depth < 3 && i > 0 && self.rng.chance(12);
                let name = if top && i == 0 {
                    "id".to_owned()
                } else {
                    format!("{}{}", self.rng.pick(ATTRIBUTE_WORDS), i)
                };
                let guid = self.rng.guid();
                self.remember(&guid, &name);
                let (type_, mode) = if nested {
                    (self.container_type, "")
                } else if top && i == 0 {
                    self.leaf_types[0]
                } else {
                    self.rng.pick(self.leaf_types)
                };
                let properties = nested.then(|| {
                    let n = self.rng.range(2, 5);
                    self.attributes(n, depth + 1, false)
                });
                Property {
                    name,
                    hackolade_meta: Empty {},
                    is_activated: true,
                    primary_key: (top && i == 0).then_some(true),
                    type_,
                    mode,
                    description: self.rng.pick(DESCRIPTIONS),
                    guid,
                    required: (top && i == 0) || self.rng.chance(30),
                    properties,
                    error: Empty {},
                }
            })
            .collect()
    }

    fn render(&self) -> Vec<u8> {
        let spec = self.spec;
        let (db_vendor, db_version) = vendor(&spec.app_target);
        let mut times = Rng(spec.seed);
        let created = 1_672_531_200 + (times.next_u64() % 31_536_000) as i64;
        let modified = created + (times.next_u64() % 10_000_000) as i64;
        let plugin = !matches!(spec.app_target.as_str(), "MONGODB" | "Polyglot" | "JSON");
        let model = Model {
            model_name: &spec.name,
            author: "Data Architecture",
            model_version: 1 + (spec.seed % 9) as u32,
            description: format!("{} (generated, seed {})", spec.name, spec.seed),
            collections: &self.collections,
            buckets: &self.buckets,
            views: &self.views,
            relationships: &self.relationships,
            users: [],
            diagram_views: [],
            id_to_name_hash_table: OrderedMap(&self.names),
            definitions: &self.definitions,
            polyglot_definitions: spec.polyglot_refs.then_some(&self.polyglot),
            polyglot_model_paths: spec
                .polyglot_refs
                .then(|| spec.polyglot_model_path.clone())
                .flatten()
                .map(|path| {
                    vec![PolyglotModelPath {
                        polyglot_model_path: path,
                    }]
                }),
            external_definitions: Definitions {
                type_: "externalDefinitions",
                properties: Vec::new(),
                guid: String::new(),
            },
            sources: [],
            decorative_symbols: [],
            db_vendor,
            db_version,
            app_target: &spec.app_target,
            creation_ts: timestamp(created),
            guid: &self.guid,
            last_modif_ts: timestamp(modified),
            persistence_schema_version: "8",
            is_created_by_plugin: plugin,
            plugin_information: plugin.then(|| PluginInformation {
                plugin_name: spec.app_target.clone(),
                plugin_version: "0.2.14",
                plugin_engine_version: "1.0.0",
            }),
            application_information: ApplicationInformation {
                version: STUDIO_VERSIONS[(spec.seed % STUDIO_VERSIONS.len() as u64) as usize],
            },
        };
        let mut out = Vec::with_capacity(self.estimated + 1024);
        let mut ser = serde_json::Serializer::with_formatter(&mut out, formatter());
        // Serializing plain structs and strings into a Vec cannot fail.
        if model.serialize(&mut ser).is_err() {
            out.clear();
        }
        out.push(b'\n');
        out
    }
}

fn timestamp(seconds: i64) -> String {
    chrono::DateTime::from_timestamp(seconds, 0)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(seed: u64, target_bytes: usize) -> ModelSpec {
        ModelSpec {
            seed,
            name: "Test model".into(),
            app_target: "MONGODB".into(),
            target_bytes,
            ..ModelSpec::default()
        }
    }

    #[test]
    fn same_spec_gives_same_bytes_and_another_seed_other_bytes() {
        let a = generate_model(&spec(7, 50_000));
        let b = generate_model(&spec(7, 50_000));
        let c = generate_model(&spec(8, 50_000));

        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn output_reaches_the_target_without_overshooting_much() {
        for target in [1_000, 20_000, 300_000] {
            let out = generate_model(&spec(3, target));

            assert!(out.len() >= target, "{} < {target}", out.len());
            assert!(
                out.len() < target + target / 5 + 40_000,
                "{} far above {target}",
                out.len()
            );
        }
    }

    #[test]
    fn size_estimate_matches_the_rendered_output() {
        let spec = spec(5, 0);
        let mut builder = Builder::new(&spec);
        builder.grow_to(200_000);

        let rendered = builder.render().len();

        assert!(
            rendered.abs_diff(builder.estimated) < 64,
            "estimated {} but rendered {rendered}",
            builder.estimated
        );
    }

    #[test]
    fn model_carries_every_key_hackolade_models_have() {
        let out = generate_model(&spec(1, 30_000));
        let model: serde_json::Value = serde_json::from_slice(&out).expect("valid JSON");

        for key in ["modelName", "appTarget", "dbVendor"] {
            assert!(model[key].is_string(), "{key}");
        }
        for key in ["collections", "relationships", "buckets"] {
            assert!(model[key].is_array(), "{key}");
        }
        assert!(model["definitions"].is_object());
        assert!(model["GUID"].is_string());
        assert_eq!(model["persistenceSchemaVersion"], "8");
        assert!(model["applicationInformation"]["version"].is_string());
        assert!(model["idToNameHashTable"].is_object());
        assert!(model["creationTS"].as_str().is_some_and(|ts| ts.ends_with('Z')));
    }

    #[test]
    fn relationships_link_existing_collections_by_guid() {
        let out = generate_model(&spec(9, 80_000));
        let model: serde_json::Value = serde_json::from_slice(&out).expect("valid JSON");
        let guids: Vec<&str> = model["collections"]
            .as_array()
            .expect("array")
            .iter()
            .filter_map(|c| c["GUID"].as_str())
            .collect();
        let relationships = model["relationships"].as_array().expect("array");

        assert!(!relationships.is_empty());
        for rel in relationships {
            assert!(guids.contains(&rel["parentCollection"].as_str().expect("parent")));
            assert!(guids.contains(&rel["childCollection"].as_str().expect("child")));
            assert!(rel["childCardinality"].is_string());
        }
    }

    #[test]
    fn polyglot_references_point_into_polyglot_definitions() {
        let out = generate_model(&ModelSpec {
            polyglot_refs: true,
            polyglot_model_path: Some("../polyglot/core.hck.json".into()),
            ..spec(4, 100_000)
        });
        let model: serde_json::Value = serde_json::from_slice(&out).expect("valid JSON");
        let definitions: Vec<&str> = model["polyglotDefinitions"]["properties"]
            .as_array()
            .expect("array")
            .iter()
            .filter_map(|d| d["GUID"].as_str())
            .collect();
        let references: Vec<&serde_json::Value> = model["collections"]
            .as_array()
            .expect("array")
            .iter()
            .filter(|c| c["type"] == "reference")
            .collect();

        assert!(!references.is_empty());
        for reference in references {
            assert_eq!(reference["refType"], "polyglot");
            assert!(definitions.contains(&reference["ref"].as_str().expect("ref")));
        }
        assert_eq!(
            model["polyglotModelPaths"][0]["polyglotModelPath"],
            "../polyglot/core.hck.json"
        );
    }

    #[test]
    fn attributes_are_nested() {
        let out = generate_model(&spec(2, 100_000));
        let text = String::from_utf8(out).expect("utf-8");

        // A sub-attribute's object opens 6 tabs deep (collections, entity, properties,
        // attribute, properties, sub-attribute).
        assert!(text.contains("\n\t\t\t\t\t\t{"));
    }
}
