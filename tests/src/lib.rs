//! The test harness: starts what the integration and end-to-end tests need and stops it after.
//!
//! - [`python`]: the Python tools (moto, cfn-lint, cargo-lambda) in `.venv`, installed on first use.
//! - [`moto`]: one `moto_server` per test binary on a free 127.0.0.1 port, killed with the binary.
//! - [`aws`]: SDK configuration pointed at it, and fresh resources per test.
//! - [`lambda`]: API Gateway and SQS events built as AWS builds them.
//! - [`runtime_api`]: a Lambda Runtime API emulator to run the function binaries against.
//! - [`cargo_bin`]: a binary of the workspace, built once.

pub mod aws;
pub mod lambda;
pub mod moto;
pub mod python;
pub mod runtime_api;

/// The workspace root.
pub fn workspace_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(std::path::Path::to_path_buf)
        .unwrap_or_default()
}

/// The path of binary `bin` of package `package`, built (debug) on first use. Tests in another
/// package than the binary's cannot use `CARGO_BIN_EXE_*`; cargo's lock is free while tests run.
///
/// It builds with the workspace's features (`--workspace --all-targets`, as `cargo xtask test`
/// does), so after a workspace test build this is a check that finds everything fresh: with
/// `-p <package>` cargo resolves other features and compiles the dependencies a second time.
pub fn cargo_bin(package: &str, bin: &str) -> std::path::PathBuf {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    static BUILT: OnceLock<Mutex<HashMap<String, std::path::PathBuf>>> = OnceLock::new();
    let mut built = BUILT
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    built
        .entry(bin.to_owned())
        .or_insert_with(|| {
            let out = std::process::Command::new(env!("CARGO"))
                .args(["build", "-q", "--workspace", "--all-targets", "--message-format=json"])
                .current_dir(workspace_root())
                .output()
                .expect("cargo runs");
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .filter(|v| {
                    v["package_id"]
                        .as_str()
                        .is_some_and(|id| id.contains(&format!("#{package}@")) || id.contains(&format!("/{package}#")))
                })
                .find_map(|v| {
                    v["executable"]
                        .as_str()
                        .filter(|e| e.ends_with(&format!("/{bin}")))
                        .map(std::path::PathBuf::from)
                })
                .unwrap_or_else(|| panic!("cargo reports the {bin} executable"))
        })
        .clone()
}
