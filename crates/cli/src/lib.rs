//! The `hubsync` command line as a library: the administrator's commands (`admin`: repositories
//! the token can read, adding one, the webhook), the store commands, the configuration that picks a
//! backend (AWS or local), the local server (`serve`) and the demonstration (`demo`).
//!
//! The same commands work against AWS (DynamoDB, Secrets Manager) and against the local SQLite
//! backend, chosen by configuration (see [`config`]); `serve` runs the whole pipeline as one local
//! process and `demo` shows it working against a simulated Bitbucket Data Center. The demo, and
//! with it the simulator, is compiled only with the `demo` feature (on by default).

pub mod admin;
pub mod commands;
pub mod config;
pub mod deliveries;
#[cfg(feature = "demo")]
pub mod demo;
pub mod serve;
