//! `cargo xtask`: the project's chores, in Rust rather than shell scripts.
//!
//! - `cargo xtask test`: everything CI checks after fmt and clippy, on a fresh machine with Rust
//!   and Python 3: installs the Python tools into `.venv` (moto, cfn-lint, cargo-lambda, ziglang),
//!   adds the aarch64 target, builds both Lambda functions for arm64 with cargo-lambda (the deploy
//!   tests inspect the result), then runs every test of the workspace.
//! - `cargo xtask test-arm64`: hubsync-core's tests built for aarch64 (the Lambda functions'
//!   architecture, where the fast readers use NEON) and run under qemu-user (see `arm64.rs`).
//! - `cargo xtask events`: regenerates the sample events in `events/` (see `events/README.md`).
//! - `cargo xtask bench`: every benchmark in one release run, and one table of what they measured
//!   against their floors and peers (see `bench.rs`).

mod arm64;
mod bench;
mod events;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what the tests need, build the Lambda functions, and run the whole test suite.
    Test {
        /// Extra arguments for `cargo test` (after `--`).
        #[arg(last = true)]
        cargo_test_args: Vec<String>,
    },
    /// Run hubsync-core's tests on aarch64 under qemu-user (needs qemu-aarch64, an arm64 glibc
    /// sysroot and the aarch64-linux-gnu-gcc linker; says which is missing).
    TestArm64 {
        /// Extra arguments for `cargo test` (after `--`).
        #[arg(last = true)]
        cargo_test_args: Vec<String>,
    },
    /// Build both Lambda functions for arm64 into target/lambda/<name>/bootstrap.
    BuildLambdas,
    /// Regenerate events/ from the sample payloads.
    Events,
    /// Run every benchmark (release) and print one table: figure, floor or peer, ratio, goal.
    Bench,
}

fn root() -> PathBuf {
    hubsync_tests::workspace_root()
}

fn run(cmd: &mut Command) -> anyhow::Result<()> {
    eprintln!("xtask: running {cmd:?}");
    let status = cmd.status().with_context(|| format!("could not start {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

/// PATH with the virtual environment's tools first.
fn path_with_venv() -> std::ffi::OsString {
    let mut paths = vec![hubsync_tests::python::venv_bin()];
    paths.extend(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()));
    std::env::join_paths(paths).unwrap_or_default()
}

fn ensure_aarch64_target() -> anyhow::Result<()> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .context("rustup is needed to add the aarch64 target")?;
    if !String::from_utf8_lossy(&installed.stdout).contains("aarch64-unknown-linux-gnu") {
        run(Command::new("rustup").args(["target", "add", "aarch64-unknown-linux-gnu"]))?;
    }
    Ok(())
}

fn build_lambdas(root: &Path) -> anyhow::Result<()> {
    hubsync_tests::python::ensure_installed();
    ensure_aarch64_target()?;
    run(Command::new(hubsync_tests::python::venv_bin().join("cargo-lambda"))
        .args([
            "lambda",
            "build",
            "--release",
            "--arm64",
            "--bin",
            "webhook",
            "--bin",
            "sync",
        ])
        .current_dir(root)
        .env("PATH", path_with_venv()))
}

/// Runs `cargo test`, passing its output through, and ends with the totals of every test binary
/// on one line (cargo's own last line is that of the last binary, often a doc-test run of 0).
fn run_tests(cmd: &mut Command) -> anyhow::Result<()> {
    use std::io::{BufRead, BufReader};
    eprintln!("xtask: running {cmd:?}");
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("could not start {cmd:?}"))?;
    let (mut passed, mut failed, mut ignored) = (0u64, 0u64, 0u64);
    if let Some(stdout) = child.stdout.take() {
        for line in BufReader::new(stdout).lines() {
            let line = line?;
            println!("{line}");
            if let Some(counts) = line.strip_prefix("test result: ") {
                let count = |what: &str| {
                    counts
                        .split([';', '.'])
                        .find_map(|part| part.trim().strip_suffix(what)?.trim().parse::<u64>().ok())
                        .unwrap_or(0)
                };
                passed += count(" passed");
                failed += count(" failed");
                ignored += count(" ignored");
            }
        }
    }
    let status = child.wait()?;
    println!("tests: {passed} passed, {failed} failed, {ignored} skipped");
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let root = root();
    match Cli::parse().command {
        Task::Test { cargo_test_args } => {
            hubsync_tests::python::ensure_installed();
            build_lambdas(&root)?;
            let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
            cmd.args(["test", "--workspace", "--all-targets"])
                .args(&cargo_test_args)
                .current_dir(&root)
                .env("PATH", path_with_venv());
            run_tests(&mut cmd)
        }
        Task::TestArm64 { cargo_test_args } => {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            arm64::test(&root, &cargo, &cargo_test_args)
        }
        Task::BuildLambdas => build_lambdas(&root),
        Task::Events => events::write_all(&root.join("events")),
        Task::Bench => {
            hubsync_tests::python::ensure_installed();
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            bench::run(&root, &cargo, path_with_venv())
        }
    }
}
