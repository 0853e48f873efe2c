//! A seeded generator of Hackolade Studio model files, and a sample repository built from it.
//!
//! [`generate_model`] writes the structure described in `hackolade-model-format.md`: the
//! top-level keys every model carries (`modelName`, `appTarget`, `dbVendor`, `collections`,
//! `relationships`, `buckets`, `definitions`, `GUID`, `persistenceSchemaVersion`,
//! `applicationInformation`, ...), entities with nested attributes, relationships by GUID with
//! cardinalities, views, `idToNameHashTable`, and, for models derived from a Polyglot model,
//! entity references whose attributes live under `polyglotDefinitions`. The output is
//! pretty-printed with tabs, like Hackolade's, and depends only on the [`ModelSpec`].
//!
//! Entities are added until the output reaches `target_bytes`. Each entity's size is measured
//! once as it is built (linear time), so 10 MB+ models take well under a second in release.
//!
//! - `generator.rs`: [`ModelSpec`] and [`generate_model`], the seeded generator.
//! - `format.rs`: the Hackolade model file's JSON types, as Studio writes them.
//! - `sample.rs`: [`sample_repository`], the demo repository built from generated models and
//!   the other JSON files a real repository holds.

mod format;
mod generator;
mod sample;

pub use generator::{ModelSpec, generate_model};
pub use sample::sample_repository;
