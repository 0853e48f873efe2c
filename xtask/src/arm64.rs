//! `cargo xtask test-arm64`: hubsync-core's tests on aarch64, the Lambda functions' architecture,
//! run under qemu-user on any Linux machine. The core holds the NEON code (the fast readers) that
//! no x86-64 test run compiles; CI has no qemu, so this is a developer's command.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::bail;

const TARGET: &str = "aarch64-unknown-linux-gnu";
/// What runs the arm64 test binaries (Debian and Ubuntu: `qemu-user`, or `qemu-user-static`).
const EMULATORS: [&str; 2] = ["qemu-aarch64", "qemu-aarch64-static"];
/// The cross linker (Debian and Ubuntu: `gcc-aarch64-linux-gnu`).
const LINKER: &str = "aarch64-linux-gnu-gcc";
/// The arm64 glibc the test binaries load under qemu (Debian and Ubuntu: `libc6-arm64-cross`).
const DEFAULT_SYSROOT: &str = "/usr/aarch64-linux-gnu";
/// The sysroot's dynamic loader: the file that says the sysroot is there.
const LOADER: &str = "lib/ld-linux-aarch64.so.1";

/// The tools the run needs, each found or named as missing.
struct Tools {
    emulator: PathBuf,
    linker: PathBuf,
    sysroot: PathBuf,
}

/// The first file named `name` in the directories of `path`.
fn find_in_path(path: &OsString, name: &str) -> Option<PathBuf> {
    std::env::split_paths(path)
        .map(|dir| dir.join(name))
        .find(|file| file.is_file())
}

/// Finds qemu, the linker and the sysroot (`AARCH64_SYSROOT` overrides the Debian place; a
/// linker set in `CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER` is used as it is), or fails with
/// everything that is missing and the package that provides it.
fn find_tools() -> anyhow::Result<Tools> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let emulator = EMULATORS.iter().find_map(|name| find_in_path(&path, name));
    let linker = match std::env::var_os("CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER") {
        Some(set) => Some(PathBuf::from(set)),
        None => find_in_path(&path, LINKER),
    };
    let sysroot = std::env::var_os("AARCH64_SYSROOT").map_or_else(|| PathBuf::from(DEFAULT_SYSROOT), PathBuf::from);
    let has_loader = sysroot.join(LOADER).is_file();

    let mut missing = Vec::new();
    if emulator.is_none() {
        missing.push(format!(
            "{} on PATH (Debian/Ubuntu package qemu-user)",
            EMULATORS.join(" or ")
        ));
    }
    if linker.is_none() {
        missing.push(format!(
            "the linker {LINKER} on PATH (Debian/Ubuntu package gcc-aarch64-linux-gnu)"
        ));
    }
    if !has_loader {
        missing.push(format!(
            "an arm64 glibc sysroot: {} not found (Debian/Ubuntu package libc6-arm64-cross, or set AARCH64_SYSROOT)",
            sysroot.join(LOADER).display()
        ));
    }
    match (emulator, linker) {
        (Some(emulator), Some(linker)) if missing.is_empty() => Ok(Tools {
            emulator,
            linker,
            sysroot,
        }),
        _ => bail!(
            "cargo xtask test-arm64 cannot run; missing:\n  - {}",
            missing.join("\n  - ")
        ),
    }
}

/// Builds hubsync-core's tests for aarch64 and runs them under qemu; `cargo_test_args` go to
/// `cargo test` (a test name filter, `-- --nocapture`, ...).
pub fn test(root: &Path, cargo: &str, cargo_test_args: &[String]) -> anyhow::Result<()> {
    let tools = find_tools()?;
    super::ensure_aarch64_target()?;
    let runner = format!("{} -L {}", tools.emulator.display(), tools.sysroot.display());
    let mut cmd = Command::new(cargo);
    cmd.args(["test", "-p", "hubsync-core", "--target", TARGET])
        .args(cargo_test_args)
        .current_dir(root)
        .env("CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER", &tools.linker)
        .env("CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER", runner);
    super::run_tests(&mut cmd)
}
