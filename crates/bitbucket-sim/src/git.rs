//! Running the `git` CLI against one bare repository, and parsing what it prints.
//!
//! Every command runs with the user's and the system's git configuration switched off, literal
//! pathspecs, and `-z` output wherever paths are printed, so unicode paths, spaces, quotes and
//! newlines in file names survive. Revisions given by HTTP clients are always passed after
//! `--end-of-options` (or validated first), so a client cannot smuggle options into git.
//!
//! The write side (used by [`crate::Repo`]) is synchronous; the read side used by the HTTP
//! handlers has async twins that run git through `tokio::process`.

use std::ffi::{OsStr, OsString};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::error::SimError;

/// The all-zero object id Bitbucket uses for "no commit" (created or deleted refs, added or
/// deleted files).
pub const ZERO_HASH: &str = "0000000000000000000000000000000000000000";

/// The id of the empty tree, which git knows without it being stored.
pub(crate) const EMPTY_TREE: &str = "4b825dc642cb6eb9a060e54bf8d69288fbee4904";

#[cfg(windows)]
const NULL_DEVICE: &str = "NUL";
#[cfg(not(windows))]
const NULL_DEVICE: &str = "/dev/null";

/// A handle on one bare repository: which `--git-dir` commands run against.
#[derive(Debug, Clone)]
pub(crate) struct Git {
    git_dir: PathBuf,
}

impl Git {
    pub(crate) fn new(git_dir: impl Into<PathBuf>) -> Self {
        Self {
            git_dir: git_dir.into(),
        }
    }

    pub(crate) fn git_dir(&self) -> &Path {
        &self.git_dir
    }

    /// A `git` command isolated from the environment it runs in.
    pub(crate) fn command(&self) -> Command {
        let mut cmd = base_command();
        cmd.arg("--git-dir").arg(&self.git_dir);
        cmd
    }

    /// Runs git, returning its output whatever the exit status (spawn errors only).
    pub(crate) fn output<I, S>(&self, args: I, env: &[(&str, &OsStr)], stdin: Option<&[u8]>) -> Result<Output, SimError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = self.command();
        cmd.args(args);
        for (key, value) in env {
            cmd.env(key, value);
        }
        run_command(cmd, stdin)
    }

    /// Runs git and returns its standard output, failing on a non-zero exit status.
    pub(crate) fn run<I, S>(&self, args: I) -> Result<Vec<u8>, SimError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.run_with(args, &[], None)
    }

    /// Like [`Git::run`], with extra environment variables and bytes to write to stdin.
    pub(crate) fn run_with<I, S>(
        &self,
        args: I,
        env: &[(&str, &OsStr)],
        stdin: Option<&[u8]>,
    ) -> Result<Vec<u8>, SimError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let args: Vec<OsString> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
        let output = self.output(&args, env, stdin)?;
        check(&args, output)
    }

    /// Async twin of [`Git::output`], for the HTTP handlers.
    pub(crate) async fn output_async<I, S>(&self, args: I) -> Result<Output, SimError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = tokio::process::Command::from(self.command());
        cmd.args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        cmd.output().await.map_err(SimError::GitUnavailable)
    }

    /// Async twin of [`Git::run`].
    pub(crate) async fn run_async<I, S>(&self, args: I) -> Result<Vec<u8>, SimError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let args: Vec<OsString> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
        let output = self.output_async(&args).await?;
        check(&args, output)
    }

    /// Resolves a revision (commit id, branch, tag, `refs/...`) to the commit it names.
    pub(crate) fn resolve_commit(&self, rev: &str) -> Result<Option<String>, SimError> {
        let output = self.output(resolve_commit_args(rev), &[], None)?;
        parse_resolved(output)
    }

    /// Async twin of [`Git::resolve_commit`].
    pub(crate) async fn resolve_commit_async(&self, rev: &str) -> Result<Option<String>, SimError> {
        let output = self.output_async(resolve_commit_args(rev)).await?;
        parse_resolved(output)
    }

    /// The value of a ref (`refs/heads/main`), if it exists. Annotated tags give the tag object.
    pub(crate) fn ref_value(&self, ref_id: &str) -> Result<Option<String>, SimError> {
        let output = self.output(
            ["rev-parse", "--verify", "--quiet", "--end-of-options", ref_id],
            &[],
            None,
        )?;
        parse_resolved(output)
    }

    /// Details of one commit.
    pub(crate) fn commit_info(&self, commit: &str) -> Result<CommitInfo, SimError> {
        let out = self.run(commit_info_args(commit))?;
        parse_commit_log(&out)?
            .into_iter()
            .next()
            .ok_or_else(|| SimError::GitOutput {
                command: "log".into(),
                detail: format!("no commit printed for {commit}"),
            })
    }

    /// Async twin of [`Git::commit_info`].
    pub(crate) async fn commit_info_async(&self, commit: &str) -> Result<CommitInfo, SimError> {
        let out = self.run_async(commit_info_args(commit)).await?;
        parse_commit_log(&out)?
            .into_iter()
            .next()
            .ok_or_else(|| SimError::GitOutput {
                command: "log".into(),
                detail: format!("no commit printed for {commit}"),
            })
    }

    /// One window of a commit history, newest first (`git log --date-order`, so a commit is
    /// never listed after one of its parents): see [`LogQuery`].
    pub(crate) async fn log_async(&self, query: &LogQuery<'_>) -> Result<Vec<CommitInfo>, SimError> {
        let out = self.run_async(query.args()).await?;
        parse_commit_log(&out)
    }

    /// Up to `max` commits reachable from `to` but not from any of `exclude`, newest first.
    pub(crate) fn commits_between(
        &self,
        to: &str,
        exclude: &[String],
        max: usize,
    ) -> Result<Vec<CommitInfo>, SimError> {
        let mut args: Vec<String> = vec![
            "log".into(),
            "-z".into(),
            format!("--max-count={max}"),
            format!("--format={COMMIT_FORMAT}"),
            to.into(),
        ];
        args.push("--not".into());
        args.extend(exclude.iter().cloned());
        args.push("--".into());
        let out = self.run(&args)?;
        parse_commit_log(&out)
    }
}

/// A bare `git` command with the environment neutralised (no user or system config, no
/// inherited repository variables, literal pathspecs, no prompts, C locale).
pub(crate) fn base_command() -> Command {
    let mut cmd = Command::new("git");
    for var in [
        "GIT_DIR",
        "GIT_WORK_TREE",
        "GIT_INDEX_FILE",
        "GIT_OBJECT_DIRECTORY",
        "GIT_ALTERNATE_OBJECT_DIRECTORIES",
        "GIT_NAMESPACE",
        "GIT_CEILING_DIRECTORIES",
        "GIT_COMMON_DIR",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", NULL_DEVICE)
        .env("GIT_LITERAL_PATHSPECS", "1")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_OPTIONAL_LOCKS", "0")
        .env("LC_ALL", "C")
        .args(["-c", "core.quotepath=false", "-c", "color.ui=false"])
        .stdin(Stdio::null());
    cmd
}

/// Spawns `cmd`, feeds it `stdin` from a separate thread (so neither side can block the other
/// on a full pipe) and collects its output.
pub(crate) fn run_command(mut cmd: Command, stdin: Option<&[u8]>) -> Result<Output, SimError> {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    if stdin.is_some() {
        cmd.stdin(Stdio::piped());
    }
    let mut child = cmd.spawn().map_err(SimError::GitUnavailable)?;
    let pipe = child.stdin.take();
    std::thread::scope(|scope| {
        let writer = match (pipe, stdin) {
            (Some(mut pipe), Some(bytes)) => Some(scope.spawn(move || pipe.write_all(bytes))),
            _ => None,
        };
        let output = child.wait_with_output().map_err(SimError::GitUnavailable)?;
        if let Some(writer) = writer {
            // A broken pipe means git exited early; its exit status tells the real story.
            let _ = writer.join();
        }
        Ok(output)
    })
}

fn check(args: &[OsString], output: Output) -> Result<Vec<u8>, SimError> {
    if output.status.success() {
        Ok(output.stdout)
    } else {
        Err(SimError::Git {
            command: describe(args),
            status: output.status,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        })
    }
}

fn describe(args: &[OsString]) -> String {
    args.iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

fn resolve_commit_args(rev: &str) -> [String; 5] {
    [
        "rev-parse".into(),
        "--verify".into(),
        "--quiet".into(),
        "--end-of-options".into(),
        format!("{rev}^{{commit}}"),
    ]
}

fn parse_resolved(output: Output) -> Result<Option<String>, SimError> {
    if !output.status.success() {
        return Ok(None);
    }
    let text = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    if is_object_id(&text) {
        Ok(Some(text))
    } else {
        Err(SimError::GitOutput {
            command: "rev-parse".into(),
            detail: format!("not an object id: {text:?}"),
        })
    }
}

/// Whether `s` is a full 40-hex-digit (SHA-1) object id.
pub(crate) fn is_object_id(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Fields of `git log --format` separated by US (0x1f); records separated by NUL (`-z`).
const COMMIT_FORMAT: &str = "%H%x1f%P%x1f%an%x1f%ae%x1f%at%x1f%cn%x1f%ce%x1f%ct%x1f%B";

fn commit_info_args(commit: &str) -> [String; 6] {
    [
        "log".into(),
        "-z".into(),
        "--no-walk".into(),
        format!("--format={COMMIT_FORMAT}"),
        "--end-of-options".into(),
        commit.into(),
    ]
}

/// Which merge commits (commits with more than one parent) a [`LogQuery`] lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Merges {
    /// Merge and non-merge commits alike.
    Include,
    /// Only non-merge commits (`--no-merges`).
    Exclude,
    /// Only merge commits (`--merges`).
    Only,
}

/// The commits reachable from `until` but not from `since`, touching `path` if given, filtered
/// by `merges`; `skip` of them are left out and at most `max` are listed.
#[derive(Debug, Clone)]
pub(crate) struct LogQuery<'a> {
    /// A commit id (already resolved: it is never read as an option).
    pub until: &'a str,
    /// A commit id whose history is excluded.
    pub since: Option<&'a str>,
    /// A file or directory (a literal pathspec).
    pub path: Option<&'a str>,
    /// Follow the history of the single file `path` past renames (`--follow`).
    pub follow_renames: bool,
    pub merges: Merges,
    pub skip: u64,
    pub max: u64,
}

impl LogQuery<'_> {
    fn args(&self) -> Vec<String> {
        let mut args: Vec<String> = vec![
            "log".into(),
            "-z".into(),
            "--date-order".into(),
            format!("--format={COMMIT_FORMAT}"),
            format!("--skip={}", self.skip),
            format!("--max-count={}", self.max),
        ];
        match self.merges {
            Merges::Include => {}
            Merges::Exclude => args.push("--no-merges".into()),
            Merges::Only => args.push("--merges".into()),
        }
        if self.follow_renames && self.path.is_some() {
            args.push("--follow".into());
        }
        args.push("--end-of-options".into());
        args.push(self.until.into());
        if let Some(since) = self.since {
            args.push(format!("^{since}"));
        }
        args.push("--".into());
        if let Some(path) = self.path {
            args.push(path.into());
        }
        args
    }
}

/// One commit as `git log` describes it. Times are seconds since the epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CommitInfo {
    pub id: String,
    pub parents: Vec<String>,
    pub author_name: String,
    pub author_email: String,
    pub author_time: i64,
    pub committer_name: String,
    pub committer_email: String,
    pub committer_time: i64,
    pub message: String,
}

pub(crate) fn parse_commit_log(out: &[u8]) -> Result<Vec<CommitInfo>, SimError> {
    let bad = |detail: String| SimError::GitOutput {
        command: "log".into(),
        detail,
    };
    let mut commits = Vec::new();
    for record in out.split(|b| *b == 0) {
        let record = String::from_utf8_lossy(record);
        let record = record.trim_start_matches('\n');
        if record.is_empty() {
            continue;
        }
        let fields: Vec<&str> = record.splitn(9, '\u{1f}').collect();
        let [id, parents, an, ae, at, cn, ce, ct, message] = fields[..] else {
            return Err(bad(format!("expected 9 fields in {record:?}")));
        };
        let time = |s: &str| s.parse::<i64>().map_err(|_| bad(format!("bad timestamp {s:?}")));
        commits.push(CommitInfo {
            id: id.to_owned(),
            parents: parents.split_whitespace().map(str::to_owned).collect(),
            author_name: an.to_owned(),
            author_email: ae.to_owned(),
            author_time: time(at)?,
            committer_name: cn.to_owned(),
            committer_email: ce.to_owned(),
            committer_time: time(ct)?,
            message: message.trim_end().to_owned(),
        });
    }
    Ok(commits)
}

/// One entry of `git diff-tree -r -z --raw` output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RawChange {
    /// Status letter: `A`, `C`, `D`, `M`, `R`, `T`, `U`, `X`.
    pub status: char,
    /// Similarity score of a rename or copy, in percent.
    pub score: Option<u8>,
    pub old_mode: u32,
    pub new_mode: u32,
    pub old_id: String,
    pub new_id: String,
    /// The source path of a rename or copy.
    pub src_path: Option<String>,
    /// The path (the destination of a rename or copy).
    pub path: String,
}

/// Parses `git diff-tree -r -z --raw --no-abbrev` output:
/// `:<old mode> <new mode> <old id> <new id> <status>[score]` NUL `<path>` NUL
/// (`<src>` NUL `<dst>` NUL for renames and copies).
pub(crate) fn parse_raw_diff(out: &[u8]) -> Result<Vec<RawChange>, SimError> {
    let bad = |detail: String| SimError::GitOutput {
        command: "diff-tree".into(),
        detail,
    };
    let mut fields = out.split(|b| *b == 0);
    let mut changes = Vec::new();
    while let Some(header) = fields.next() {
        let header = String::from_utf8_lossy(header);
        let header = header.trim_start_matches('\n');
        if header.is_empty() {
            continue;
        }
        let Some(meta) = header.strip_prefix(':') else {
            return Err(bad(format!("expected a raw diff header, got {header:?}")));
        };
        let parts: Vec<&str> = meta.split(' ').collect();
        let [old_mode, new_mode, old_id, new_id, status] = parts[..] else {
            return Err(bad(format!("malformed raw diff header {header:?}")));
        };
        let mode = |s: &str| u32::from_str_radix(s, 8).map_err(|_| bad(format!("bad mode {s:?}")));
        let mut letters = status.chars();
        let letter = letters.next().ok_or_else(|| bad("empty status".to_owned()))?;
        let score = match letters.as_str() {
            "" => None,
            digits => Some(digits.parse::<u8>().map_err(|_| bad(format!("bad score {digits:?}")))?),
        };
        let mut next_path = || {
            fields
                .next()
                .filter(|p| !p.is_empty())
                .map(|p| String::from_utf8_lossy(p).into_owned())
                .ok_or_else(|| bad(format!("missing path after {header:?}")))
        };
        let (src_path, path) = if matches!(letter, 'R' | 'C') {
            let src = next_path()?;
            (Some(src), next_path()?)
        } else {
            (None, next_path()?)
        };
        changes.push(RawChange {
            status: letter,
            score,
            old_mode: mode(old_mode)?,
            new_mode: mode(new_mode)?,
            old_id: old_id.to_owned(),
            new_id: new_id.to_owned(),
            src_path,
            path,
        });
    }
    Ok(changes)
}

/// Splits NUL-terminated names (`ls-tree -z --name-only`, `ls-files -z`).
pub(crate) fn split_nul(out: &[u8]) -> Vec<String> {
    out.split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_diff_with_rename_copy_and_unicode_paths_is_parsed() {
        let out = b":000000 100644 0000000000000000000000000000000000000000 1111111111111111111111111111111111111111 A\0new file.json\0\
:100644 100755 2222222222222222222222222222222222222222 3333333333333333333333333333333333333333 M\0m\xc3\xa4p/x.json\0\
:100644 100644 4444444444444444444444444444444444444444 4444444444444444444444444444444444444444 R100\0old/a.json\0new/a.json\0\
:100644 100644 5555555555555555555555555555555555555555 6666666666666666666666666666666666666666 C075\0src.json\0copy.json\0";

        let changes = parse_raw_diff(out).expect("parses");

        assert_eq!(changes.len(), 4);
        assert_eq!(changes[0].status, 'A');
        assert_eq!(changes[0].path, "new file.json");
        assert_eq!(changes[1].path, "mäp/x.json");
        assert_eq!(changes[1].new_mode, 0o100755);
        assert_eq!(changes[2].status, 'R');
        assert_eq!(changes[2].score, Some(100));
        assert_eq!(changes[2].src_path.as_deref(), Some("old/a.json"));
        assert_eq!(changes[2].path, "new/a.json");
        assert_eq!(changes[3].status, 'C');
        assert_eq!(changes[3].score, Some(75));
        assert_eq!(changes[3].path, "copy.json");
    }

    #[test]
    fn truncated_raw_diff_is_an_error() {
        let out = b":100644 100644 2222222222222222222222222222222222222222 3333333333333333333333333333333333333333 R090\0only-source\0";
        assert!(parse_raw_diff(out).is_err());
    }

    #[test]
    fn commit_log_records_are_split_on_nul_and_fields_on_unit_separator() {
        let out = "aaaa\u{1f}bbbb cccc\u{1f}Ann\u{1f}ann@example.com\u{1f}10\u{1f}Cid\u{1f}cid@example.com\u{1f}20\u{1f}Subject\n\nBody\n\0\
                   dddd\u{1f}\u{1f}Ann\u{1f}ann@example.com\u{1f}1\u{1f}Cid\u{1f}cid@example.com\u{1f}2\u{1f}Root\n";

        let commits = parse_commit_log(out.as_bytes()).expect("parses");

        assert_eq!(commits.len(), 2);
        assert_eq!(commits[0].parents, vec!["bbbb", "cccc"]);
        assert_eq!(commits[0].message, "Subject\n\nBody");
        assert_eq!(commits[0].committer_time, 20);
        assert!(commits[1].parents.is_empty());
    }
}
