//! What the tests of every crate share, compiled only with the `test-util` feature so that none
//! of it reaches the Lambda binaries or the `hubsync` release build:
//!
//! - [`memory`]: in-memory adapters for every port, the reference behaviour.
//! - [`fixtures`]: a minimal model, a `repo:refs_changed` body, a push, a secret, commit ids.
//! - [`conformance`]: the one contract suite every `RepoRegistry` + `ModelStore` runs
//!   ([`store_conformance!`](crate::store_conformance)).
//!
//! Crates use it as a dev-dependency:
//! `hubsync-core = { workspace = true, features = ["test-util"] }`.

pub mod conformance;
pub mod fixtures;
pub mod memory;
