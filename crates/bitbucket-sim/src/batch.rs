//! Reading objects through long-lived `git cat-file --batch` processes, so that serving a raw
//! file does not start a git process per request (issue 11: the simulator must not be the
//! bottleneck of the fetch floor it is measured against).
//!
//! Each repository keeps a small pool of batch processes: a request takes one (or starts one when
//! all are busy), asks it for objects, and puts it back. Only full object ids are ever asked for
//! (a commit id, `<commit id>:<path>`), never ref names: those can move, and a long-lived process
//! may not see a ref update, while an object id always names the same object.

use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout};

use crate::error::SimError;
use crate::git::{Git, is_object_id};

/// Processes kept for reuse per repository; a burst beyond this starts extra ones that exit after.
const POOL: usize = 8;

/// One object as `git cat-file --batch` printed it.
#[derive(Debug)]
pub(crate) struct Object {
    pub id: String,
    pub kind: String,
    pub content: Vec<u8>,
}

/// A repository's pool of `git cat-file --batch` processes.
#[derive(Debug, Default)]
pub(crate) struct BatchPool {
    idle: std::sync::Mutex<Vec<BatchProcess>>,
}

#[derive(Debug)]
struct BatchProcess {
    _child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

/// Whether `spec` can be asked of a batch process: `<object id>` or `<object id>:<path>` on one
/// line. Anything else goes through a one-off git command.
pub(crate) fn batchable(spec: &str) -> bool {
    let id = spec.split_once(':').map_or(spec, |(id, _)| id);
    let id = id.strip_suffix("^{commit}").unwrap_or(id);
    is_object_id(id) && !spec.contains(['\n', '\r', '\0'])
}

impl BatchPool {
    /// The object `spec` names (see [`batchable`]), or `None` when it does not exist.
    pub(crate) async fn object(&self, git: &Git, spec: &str) -> Result<Option<Object>, SimError> {
        debug_assert!(batchable(spec));
        let taken = self.idle.lock().map(|mut idle| idle.pop()).unwrap_or(None);
        let mut process = match taken {
            Some(p) => p,
            None => BatchProcess::start(git)?,
        };
        // A process that failed mid-answer is dropped (and killed), never put back.
        let object = process.ask(spec).await?;
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < POOL
        {
            idle.push(process);
        }
        Ok(object)
    }
}

fn broken(detail: impl Into<String>) -> SimError {
    SimError::GitOutput {
        command: "cat-file --batch".into(),
        detail: detail.into(),
    }
}

impl BatchProcess {
    fn start(git: &Git) -> Result<Self, SimError> {
        let mut cmd = tokio::process::Command::from(git.command());
        cmd.args(["cat-file", "--batch"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(SimError::GitUnavailable)?;
        let stdin = child.stdin.take().ok_or_else(|| broken("no stdin"))?;
        let stdout = child.stdout.take().ok_or_else(|| broken("no stdout"))?;
        Ok(Self {
            _child: child,
            stdin,
            stdout: BufReader::with_capacity(256 * 1024, stdout),
        })
    }

    async fn ask(&mut self, spec: &str) -> Result<Option<Object>, SimError> {
        let io = |e: std::io::Error| broken(e.to_string());
        self.stdin.write_all(format!("{spec}\n").as_bytes()).await.map_err(io)?;
        self.stdin.flush().await.map_err(io)?;
        let mut header = String::new();
        if self.stdout.read_line(&mut header).await.map_err(io)? == 0 {
            return Err(broken("the process exited"));
        }
        // `<id> <type> <size>`, or `<spec> missing` / `<spec> ambiguous`.
        let header = header.trim_end_matches('\n');
        let mut fields = header.rsplitn(3, ' ');
        let (Some(last), Some(middle)) = (fields.next(), fields.next()) else {
            return Err(broken(format!("header {header:?}")));
        };
        if matches!(last, "missing" | "ambiguous") {
            return Ok(None);
        }
        let (Some(id), Ok(size)) = (fields.next(), last.parse::<usize>()) else {
            return Err(broken(format!("header {header:?}")));
        };
        let mut content = vec![0; size + 1];
        self.stdout.read_exact(&mut content).await.map_err(io)?;
        if content.pop() != Some(b'\n') {
            return Err(broken("an object not followed by a newline"));
        }
        Ok(Some(Object {
            id: id.to_owned(),
            kind: middle.to_owned(),
            content,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_object_ids_on_one_line_are_asked_of_a_batch_process() {
        let id = "178864a7d521b6f5e720b386b2c2b0ef8563e0dc";
        assert!(batchable(id));
        assert!(batchable(&format!("{id}^{{commit}}")));
        assert!(batchable(&format!("{id}:dir/a model.json")));
        assert!(!batchable("main:a.json"));
        assert!(!batchable(&format!("{id}:a\nb.json")));
        assert!(!batchable("refs/heads/main"));
    }
}
