//! The Python tools the suite needs (`tests/requirements.txt`), installed into `.venv` at the
//! workspace root on first use. Several test binaries may ask at once: a file lock makes one of
//! them install while the others wait, and a stamp holding the requirements' digest makes later
//! runs skip the install.

use std::fs::File;
use std::path::PathBuf;
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::workspace_root;

/// The virtual environment's `bin` folder.
pub fn venv_bin() -> PathBuf {
    workspace_root().join(".venv").join("bin")
}

/// A tool from the virtual environment, installing the environment first if needed.
pub fn tool(name: &str) -> PathBuf {
    ensure_installed();
    venv_bin().join(name)
}

/// Creates `.venv` and installs the requirements, once.
pub fn ensure_installed() {
    let root = workspace_root();
    let requirements = root.join("tests").join("requirements.txt");
    let wanted = hex::encode(Sha256::digest(
        std::fs::read(&requirements).expect("tests/requirements.txt is readable"),
    ));
    let venv = root.join(".venv");
    let stamp = venv.join("hubsync-requirements.sha256");
    if std::fs::read_to_string(&stamp).is_ok_and(|s| s.trim() == wanted) {
        return;
    }
    std::fs::create_dir_all(root.join("target")).expect("target/ can be created");
    let lock = File::create(root.join("target").join(".venv.lock")).expect("the venv lock file can be created");
    lock.lock().expect("the venv lock can be taken");
    if std::fs::read_to_string(&stamp).is_ok_and(|s| s.trim() == wanted) {
        return;
    }
    if !venv.join("bin").join("pip").exists() {
        run(Command::new("python3").args(["-m", "venv"]).arg(&venv));
    }
    run(Command::new(venv.join("bin").join("pip"))
        .args(["install", "--quiet", "--disable-pip-version-check", "-r"])
        .arg(&requirements));
    std::fs::write(&stamp, &wanted).expect("the venv stamp can be written");
}

fn run(cmd: &mut Command) {
    let status = cmd.status().unwrap_or_else(|e| panic!("could not run {cmd:?}: {e}"));
    assert!(status.success(), "{cmd:?} failed with {status}");
}
