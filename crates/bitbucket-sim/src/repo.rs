//! Simulated repositories: bare git repositories on disk, written with git plumbing only.
//!
//! A commit never touches a work tree. It loads the parent's tree into a throw-away index
//! (`GIT_INDEX_FILE` + `git read-tree`), applies [`FileOp`]s with `git hash-object -w --stdin`
//! and `git update-index -z --index-info`, writes the tree and the commit (`write-tree`,
//! `commit-tree`) and moves the branch with `git update-ref <ref> <new> <old>`, which refuses
//! if the branch moved meanwhile. So any branch can be committed to, in any order.
//!
//! Every operation that moves a ref returns the [`Push`] Bitbucket would report for it.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use serde::Serialize;

use crate::batch::BatchPool;
use crate::config::User;
use crate::error::SimError;
use crate::git::{self, Git};
use crate::push::{MinimalRef, Push, RefChange};

/// One change to the files of a branch, applied in order by [`Repo::commit`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileOp {
    /// Create or overwrite a regular file (mode `100644`). Parent folders are implicit.
    Write(String, Vec<u8>),
    /// Create or overwrite an executable file (mode `100755`).
    WriteExecutable(String, Vec<u8>),
    /// Delete a file; it must exist.
    Delete(String),
    /// Move (rename) a file, keeping its content and mode; the source must exist.
    Move(String, String),
}

impl FileOp {
    /// `FileOp::Write` from anything path-like and byte-like.
    pub fn write(path: impl Into<String>, contents: impl Into<Vec<u8>>) -> Self {
        Self::Write(path.into(), contents.into())
    }

    /// `FileOp::Delete`.
    pub fn delete(path: impl Into<String>) -> Self {
        Self::Delete(path.into())
    }

    /// `FileOp::Move`.
    pub fn rename(from: impl Into<String>, to: impl Into<String>) -> Self {
        Self::Move(from.into(), to.into())
    }
}

/// `NORMAL` projects, or a user's `PERSONAL` project (key `~USER`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum ProjectType {
    Normal,
    Personal,
}

/// The project a repository lives in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Project {
    /// Upper-case key (`PROJ`, or `~ALICE` for Alice's personal project).
    pub key: String,
    pub id: u32,
    pub name: String,
    pub public: bool,
    pub project_type: ProjectType,
}

/// A handle on one simulated repository. Cheap to clone; the repository stays on disk while
/// the simulator or any handle lives.
///
/// Its methods run short `git` commands synchronously. Calling them from an async test is
/// fine (the simulator's handlers simply wait); from a server under load, prefer
/// `tokio::task::spawn_blocking`. Writers of one repository are serialised.
#[derive(Debug, Clone)]
pub struct Repo {
    pub(crate) inner: Arc<RepoInner>,
}

#[derive(Debug)]
pub(crate) struct RepoInner {
    pub project: Project,
    pub slug: String,
    pub name: String,
    pub id: u32,
    pub hierarchy_id: String,
    pub git: Git,
    /// Long-lived `git cat-file --batch` processes serving raw files.
    pub(crate) batch: BatchPool,
    actor: User,
    scratch: PathBuf,
    /// Serialises this repository's writers, so a ref cannot move between read and update.
    write_lock: Mutex<()>,
    /// Keeps the simulator's storage directory alive as long as this handle.
    _storage: Arc<tempfile::TempDir>,
}

/// Everything needed to create a repository on disk.
pub(crate) struct NewRepo {
    pub project: Project,
    pub slug: String,
    pub name: String,
    pub id: u32,
    pub actor: User,
    pub storage: Arc<tempfile::TempDir>,
}

impl Repo {
    /// `git init --bare` a repository whose configured default branch is `main`.
    pub(crate) fn create(new: NewRepo) -> Result<Self, SimError> {
        let root = new.storage.path();
        let git_dir = root
            .join("repos")
            .join(&new.project.key)
            .join(format!("{}.git", new.slug));
        let scratch = root.join("tmp");
        for dir in [&git_dir, &scratch] {
            std::fs::create_dir_all(dir).map_err(|e| SimError::io(dir, e))?;
        }
        let mut init = git::base_command();
        init.args(["init", "--quiet", "--bare", "--initial-branch=main"])
            .arg(&git_dir);
        let output = git::run_command(init, None)?;
        if !output.status.success() {
            return Err(SimError::Git {
                command: "init --bare".into(),
                status: output.status,
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
            });
        }
        let git = Git::new(git_dir);
        git.run(["config", "core.quotepath", "false"])?;
        git.run(["config", "gc.auto", "0"])?;
        Ok(Self {
            inner: Arc::new(RepoInner {
                hierarchy_id: uuid::Uuid::new_v4().simple().to_string()[..20].to_owned(),
                project: new.project,
                slug: new.slug,
                name: new.name,
                id: new.id,
                git,
                batch: BatchPool::default(),
                actor: new.actor,
                scratch,
                write_lock: Mutex::new(()),
                _storage: new.storage,
            }),
        })
    }

    /// The project key, upper case (`PROJ`, `~ALICE`).
    pub fn project_key(&self) -> &str {
        &self.inner.project.key
    }

    /// The project the repository lives in.
    pub fn project(&self) -> &Project {
        &self.inner.project
    }

    /// The repository slug (lower case).
    pub fn slug(&self) -> &str {
        &self.inner.slug
    }

    /// The repository's display name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Bitbucket's numeric repository id.
    pub fn id(&self) -> u32 {
        self.inner.id
    }

    /// The bare repository on disk (for tests that want to run git themselves).
    pub fn git_dir(&self) -> &Path {
        self.inner.git.git_dir()
    }

    /// The configured default branch (`main` unless changed), whether or not it exists yet.
    pub fn default_branch(&self) -> Result<String, SimError> {
        let out = self.inner.git.run(["symbolic-ref", "HEAD"])?;
        let full = String::from_utf8_lossy(&out).trim().to_owned();
        Ok(full.strip_prefix("refs/heads/").map(str::to_owned).unwrap_or(full))
    }

    /// Configures another default branch (it need not exist).
    pub fn set_default_branch(&self, branch: &str) -> Result<(), SimError> {
        let ref_id = branch_ref(branch)?;
        self.inner.git.run(["symbolic-ref", "HEAD", &ref_id])?;
        Ok(())
    }

    /// The commit `branch` points at, or `None` if there is no such branch.
    pub fn head(&self, branch: &str) -> Result<Option<String>, SimError> {
        self.inner.git.ref_value(&branch_ref(branch)?)
    }

    /// The names of all branches, sorted.
    pub fn branches(&self) -> Result<Vec<String>, SimError> {
        let out = self
            .inner
            .git
            .run(["for-each-ref", "--format=%(refname:strip=2)", "refs/heads/"])?;
        Ok(String::from_utf8_lossy(&out).lines().map(str::to_owned).collect())
    }

    /// Resolves a commit id, branch, tag or `refs/...` name to a commit id.
    pub fn resolve(&self, rev: &str) -> Result<Option<String>, SimError> {
        self.inner.git.resolve_commit(rev)
    }

    /// The content of `path` at `rev` (commit id or ref), or `None` if it is not a file there.
    pub fn read_file(&self, rev: &str, path: &str) -> Result<Option<Vec<u8>>, SimError> {
        let Some(commit) = self.resolve(rev)? else {
            return Ok(None);
        };
        let spec = format!("{commit}:{path}");
        let kind = self
            .inner
            .git
            .output(["cat-file", "-t", "--end-of-options", &spec], &[], None)?;
        if !kind.status.success() || String::from_utf8_lossy(&kind.stdout).trim() != "blob" {
            return Ok(None);
        }
        self.inner
            .git
            .run(["cat-file", "blob", "--end-of-options", &spec])
            .map(Some)
    }

    /// All file paths at `rev`, recursively, in git's order.
    pub fn files(&self, rev: &str) -> Result<Vec<String>, SimError> {
        let commit = self.resolve(rev)?.ok_or_else(|| SimError::NoSuchRef(rev.to_owned()))?;
        let out = self.inner.git.run(["ls-tree", "-r", "-z", "--name-only", &commit])?;
        Ok(git::split_nul(&out))
    }

    /// Commits `ops` on top of `branch` (creating the branch, as a root commit, if it does not
    /// exist) and moves the branch: the equivalent of a `git push` of one new commit.
    pub fn commit(&self, branch: &str, ops: &[FileOp], message: &str) -> Result<Push, SimError> {
        let ref_id = branch_ref(branch)?;
        let _guard = self.lock();
        let parent = self.inner.git.ref_value(&ref_id)?;
        let commit = self.build_commit(parent.as_deref(), ops, message)?;
        self.update_ref(&ref_id, Some(&commit), parent.as_deref())?;
        Ok(Push::single(RefChange::between(
            MinimalRef::branch(branch),
            parent.as_deref(),
            Some(&commit),
        )))
    }

    /// Commits `(path, contents)` files on top of `branch` (a shortcut for `FileOp::Write`s).
    pub fn commit_files<P, C>(
        &self,
        branch: &str,
        files: impl IntoIterator<Item = (P, C)>,
        message: &str,
    ) -> Result<Push, SimError>
    where
        P: Into<String>,
        C: Into<Vec<u8>>,
    {
        let ops: Vec<FileOp> = files.into_iter().map(|(p, c)| FileOp::write(p, c)).collect();
        self.commit(branch, &ops, message)
    }

    /// Writes a commit object with `ops` applied to `parent` (or to nothing) without moving any
    /// ref. Use it to build a history to [`Repo::force_push`], e.g. an unrelated one.
    pub fn write_commit(&self, parent: Option<&str>, ops: &[FileOp], message: &str) -> Result<String, SimError> {
        let parent = match parent {
            Some(rev) => Some(self.resolve(rev)?.ok_or_else(|| SimError::NoSuchRef(rev.to_owned()))?),
            None => None,
        };
        self.build_commit(parent.as_deref(), ops, message)
    }

    /// Creates branch `name` at `from` (a commit id or ref name). It must not exist.
    pub fn create_branch(&self, name: &str, from: &str) -> Result<Push, SimError> {
        self.create_ref(MinimalRef::branch(name), &branch_ref(name)?, from)
    }

    /// Deletes branch `name`. It must exist.
    pub fn delete_branch(&self, name: &str) -> Result<Push, SimError> {
        let ref_id = branch_ref(name)?;
        self.delete_ref(MinimalRef::branch(name), &ref_id)
    }

    /// Moves branch `name` to `commit` (any commit: older, newer, or an unrelated history),
    /// creating the branch if needed: `git push --force`.
    pub fn force_push(&self, name: &str, commit: &str) -> Result<Push, SimError> {
        let ref_id = branch_ref(name)?;
        let _guard = self.lock();
        let target = self
            .resolve(commit)?
            .ok_or_else(|| SimError::NoSuchRef(commit.to_owned()))?;
        let old = self.inner.git.ref_value(&ref_id)?;
        if old.as_deref() != Some(target.as_str()) {
            self.update_ref(&ref_id, Some(&target), old.as_deref())?;
        }
        Ok(Push::single(RefChange::between(
            MinimalRef::branch(name),
            old.as_deref(),
            Some(&target),
        )))
    }

    /// Creates the lightweight tag `name` on `target` (commit id or ref).
    pub fn tag(&self, name: &str, target: &str) -> Result<Push, SimError> {
        self.create_ref(MinimalRef::tag(name), &tag_ref(name)?, target)
    }

    /// Points the new ref `ref_id` at `target` (a commit id or ref name). It must not exist.
    fn create_ref(&self, reference: MinimalRef, ref_id: &str, target: &str) -> Result<Push, SimError> {
        let _guard = self.lock();
        let commit = self
            .resolve(target)?
            .ok_or_else(|| SimError::NoSuchRef(target.to_owned()))?;
        if self.inner.git.ref_value(ref_id)?.is_some() {
            return Err(SimError::RefExists(ref_id.to_owned()));
        }
        self.update_ref(ref_id, Some(&commit), None)?;
        Ok(Push::single(RefChange::between(reference, None, Some(&commit))))
    }

    /// Creates the annotated tag `name` on `target`. The push's `toHash` is the tag object's
    /// id, as Bitbucket reports it (the ref's new value), not the tagged commit's.
    pub fn annotated_tag(&self, name: &str, target: &str, message: &str) -> Result<Push, SimError> {
        let ref_id = tag_ref(name)?;
        let _guard = self.lock();
        let commit = self
            .resolve(target)?
            .ok_or_else(|| SimError::NoSuchRef(target.to_owned()))?;
        if self.inner.git.ref_value(&ref_id)?.is_some() {
            return Err(SimError::RefExists(ref_id));
        }
        let object = format!(
            "object {commit}\ntype commit\ntag {name}\ntagger {} <{}> {} +0000\n\n{}\n",
            self.inner.actor.display_name,
            self.inner.actor.email_address,
            chrono::Utc::now().timestamp(),
            message.trim_end()
        );
        let out = self.inner.git.run_with(["mktag"], &[], Some(object.as_bytes()))?;
        let tag_object = String::from_utf8_lossy(&out).trim().to_owned();
        self.update_ref(&ref_id, Some(&tag_object), None)?;
        Ok(Push::single(RefChange::between(
            MinimalRef::tag(name),
            None,
            Some(&tag_object),
        )))
    }

    /// Deletes tag `name`. It must exist.
    pub fn delete_tag(&self, name: &str) -> Result<Push, SimError> {
        let ref_id = tag_ref(name)?;
        self.delete_ref(MinimalRef::tag(name), &ref_id)
    }

    fn delete_ref(&self, ref_: MinimalRef, ref_id: &str) -> Result<Push, SimError> {
        let _guard = self.lock();
        let old = self
            .inner
            .git
            .ref_value(ref_id)?
            .ok_or_else(|| SimError::NoSuchRef(ref_id.to_owned()))?;
        self.update_ref(ref_id, None, Some(&old))?;
        Ok(Push::single(RefChange::between(ref_, Some(&old), None)))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.inner.write_lock.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `git update-ref` with the old value checked (`None` = must not exist / delete).
    fn update_ref(&self, ref_id: &str, new: Option<&str>, old: Option<&str>) -> Result<(), SimError> {
        let git = &self.inner.git;
        let result = match new {
            Some(new) => git.run([
                "update-ref",
                "-m",
                "hubsync-bitbucket-sim",
                ref_id,
                new,
                old.unwrap_or(git::ZERO_HASH),
            ]),
            None => git.run(["update-ref", "-d", ref_id, old.unwrap_or(git::ZERO_HASH)]),
        };
        match result {
            Ok(_) => Ok(()),
            Err(err) => {
                if git.ref_value(ref_id)?.as_deref() != old {
                    Err(SimError::ConcurrentUpdate {
                        ref_id: ref_id.to_owned(),
                    })
                } else {
                    Err(err)
                }
            }
        }
    }

    /// Builds a commit with `ops` applied to `parent`'s tree, using a temporary index.
    fn build_commit(&self, parent: Option<&str>, ops: &[FileOp], message: &str) -> Result<String, SimError> {
        let git = &self.inner.git;
        let index_dir = tempfile::Builder::new()
            .prefix("index-")
            .tempdir_in(&self.inner.scratch)
            .map_err(|e| SimError::io(&self.inner.scratch, e))?;
        let index = index_dir.path().join("index");
        let env: [(&str, &OsStr); 1] = [("GIT_INDEX_FILE", index.as_os_str())];

        if let Some(parent) = parent {
            git.run_with(["read-tree", parent], &env, None)?;
        }
        for op in ops {
            match op {
                FileOp::Write(path, contents) => {
                    self.write_entry(&env, path, 0o100644, contents)?;
                }
                FileOp::WriteExecutable(path, contents) => {
                    self.write_entry(&env, path, 0o100755, contents)?;
                }
                FileOp::Delete(path) => {
                    check_path(path)?;
                    self.index_entry(&env, path)?;
                    update_index(git, &env, &[(0, git::ZERO_HASH, path)])?;
                }
                FileOp::Move(from, to) => {
                    check_path(from)?;
                    check_path(to)?;
                    let (mode, id) = self.index_entry(&env, from)?;
                    update_index(git, &env, &[(0, git::ZERO_HASH, from), (mode, &id, to)])?;
                }
            }
        }

        let tree = object_id(git.run_with(["write-tree"], &env, None)?, "write-tree")?;
        let mut args = vec!["commit-tree".to_owned(), tree];
        if let Some(parent) = parent {
            args.push("-p".into());
            args.push(parent.into());
        }
        args.push("-F".into());
        args.push("-".into());
        let actor = &self.inner.actor;
        let identity: [(&str, &OsStr); 4] = [
            ("GIT_AUTHOR_NAME", OsStr::new(&actor.display_name)),
            ("GIT_AUTHOR_EMAIL", OsStr::new(&actor.email_address)),
            ("GIT_COMMITTER_NAME", OsStr::new(&actor.display_name)),
            ("GIT_COMMITTER_EMAIL", OsStr::new(&actor.email_address)),
        ];
        let out = git.run_with(&args, &identity, Some(message.as_bytes()))?;
        object_id(out, "commit-tree")
    }

    fn write_entry(&self, env: &[(&str, &OsStr)], path: &str, mode: u32, contents: &[u8]) -> Result<(), SimError> {
        check_path(path)?;
        let git = &self.inner.git;
        let blob = object_id(
            git.run_with(["hash-object", "-w", "--stdin"], env, Some(contents))?,
            "hash-object",
        )?;
        update_index(git, env, &[(mode, &blob, path)])
    }

    /// The mode and blob id of `path` in the temporary index; an error if it is not a file.
    fn index_entry(&self, env: &[(&str, &OsStr)], path: &str) -> Result<(u32, String), SimError> {
        let out = self
            .inner
            .git
            .run_with(["ls-files", "--stage", "-z", "--", path], env, None)?;
        for record in out.split(|b| *b == 0) {
            let record = String::from_utf8_lossy(record);
            // "<mode> <id> <stage>\t<path>"
            let Some((meta, entry_path)) = record.split_once('\t') else {
                continue;
            };
            if entry_path != path {
                continue;
            }
            let mut parts = meta.split(' ');
            if let (Some(mode), Some(id)) = (parts.next(), parts.next()) {
                let mode = u32::from_str_radix(mode, 8).map_err(|_| SimError::GitOutput {
                    command: "ls-files --stage".into(),
                    detail: format!("bad mode in {record:?}"),
                })?;
                return Ok((mode, id.to_owned()));
            }
        }
        Err(SimError::InvalidPath {
            path: path.to_owned(),
            reason: "no such file on the branch",
        })
    }
}

/// `git update-index -z --index-info`: mode 0 removes a path.
fn update_index(git: &Git, env: &[(&str, &OsStr)], entries: &[(u32, &str, &str)]) -> Result<(), SimError> {
    let mut input = Vec::new();
    for (mode, id, path) in entries {
        input.extend_from_slice(format!("{mode:o} {id}\t").as_bytes());
        input.extend_from_slice(path.as_bytes());
        input.push(0);
    }
    git.run_with(
        ["update-index", "--add", "--remove", "--replace", "-z", "--index-info"],
        env,
        Some(&input),
    )?;
    Ok(())
}

fn object_id(out: Vec<u8>, command: &str) -> Result<String, SimError> {
    let id = String::from_utf8_lossy(&out).trim().to_owned();
    if git::is_object_id(&id) {
        Ok(id)
    } else {
        Err(SimError::GitOutput {
            command: command.to_owned(),
            detail: format!("not an object id: {id:?}"),
        })
    }
}

/// Rejects paths git would refuse or misread: empty, absolute, `.`/`..`/`.git` components,
/// empty components, NUL bytes.
fn check_path(path: &str) -> Result<(), SimError> {
    let invalid = |reason| {
        Err(SimError::InvalidPath {
            path: path.to_owned(),
            reason,
        })
    };
    if path.is_empty() {
        return invalid("empty path");
    }
    if path.contains('\0') {
        return invalid("NUL byte in path");
    }
    for component in path.split('/') {
        match component {
            "" => return invalid("empty path component (leading, trailing or double slash)"),
            "." | ".." => return invalid("relative path component"),
            c if c.eq_ignore_ascii_case(".git") => return invalid(".git path component"),
            _ => {}
        }
    }
    Ok(())
}

pub(crate) fn branch_ref(name: &str) -> Result<String, SimError> {
    full_ref("refs/heads/", name)
}

fn tag_ref(name: &str) -> Result<String, SimError> {
    full_ref("refs/tags/", name)
}

/// `prefix + name`, if `git check-ref-format` accepts it.
fn full_ref(prefix: &str, name: &str) -> Result<String, SimError> {
    let ref_id = format!("{prefix}{name}");
    if name.is_empty() || name.starts_with('-') {
        return Err(SimError::InvalidRefName(name.to_owned()));
    }
    let mut cmd = git::base_command();
    cmd.args(["check-ref-format", &ref_id]);
    if git::run_command(cmd, None)?.status.success() {
        Ok(ref_id)
    } else {
        Err(SimError::InvalidRefName(name.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_git_would_misread_are_rejected() {
        for bad in ["", "/abs", "a//b", "a/", "./a", "a/../b", ".git/config", "x/.GIT/y"] {
            assert!(check_path(bad).is_err(), "{bad:?} should be rejected");
        }
        for good in ["a", "a b/ü.json", ".hubignore", "deep/er/path.hck.json"] {
            assert!(check_path(good).is_ok(), "{good:?} should be accepted");
        }
    }

    #[test]
    fn ref_names_are_checked_by_git() {
        assert_eq!(branch_ref("feature/x").expect("valid"), "refs/heads/feature/x");
        assert!(branch_ref("bad..name").is_err());
        assert!(branch_ref("-option").is_err());
        assert!(tag_ref("v1.0").is_ok());
    }
}
