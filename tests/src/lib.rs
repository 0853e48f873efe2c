//! The test harness: starts what the integration and end-to-end tests need and stops it after.
//!
//! - [`python`]: the Python tools (moto, cfn-lint, cargo-lambda) in `.venv`, installed on first use.
//! - [`moto`]: one `moto_server` per test binary on a free 127.0.0.1 port, killed with the binary.
//! - [`aws`]: SDK configuration pointed at it, and fresh resources per test.
//! - [`lambda`]: API Gateway and SQS events built as AWS builds them.

pub mod aws;
pub mod lambda;
pub mod moto;
pub mod python;

/// The workspace root.
pub fn workspace_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(std::path::Path::to_path_buf)
        .unwrap_or_default()
}
