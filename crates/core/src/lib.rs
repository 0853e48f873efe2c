//! hubsync's domain: Bitbucket Data Center webhook payloads and their signature, the normalized
//! push that is queued, what counts as a Hackolade model, `.hubignore`, and the sync rule that makes
//! a store match the default branch, what both queue consumers do with a push once it has run
//! ([`consumer`]), and the scheduled check that queues what a lost delivery left behind
//! ([`reconcile`]). It does no I/O of its own: it talks to the [`ports`].

mod byte_words;
pub mod consumer;
pub mod deadline;
pub mod deliveries;
mod error_chain;
pub mod fetch_budget;
pub mod hubignore;
pub mod ids;
mod json_text;
pub mod model;
pub mod ports;
pub mod push;
pub mod reconcile;
pub mod secrets;
pub mod signature;
pub mod sync;
#[cfg(feature = "test-util")]
pub mod testing;
pub mod webhook;

pub use error_chain::error_chain;
