//! Handlers of the simulated REST resources. Each reads from git (asynchronously) and answers
//! the JSON of [`crate::rest`], or an [`ApiError`].

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, Uri, header};
use axum::response::{IntoResponse, Response};
use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
use serde::Deserialize;

use super::{ANNOUNCED_BODY_SENT_AT_MOST, ApiError, Shared};
use crate::batch;
use crate::git::{self, EMPTY_TREE, LogQuery, Merges};
use crate::repo::{Repo, branch_ref};
use crate::rest::{ChangesPage, Page, RestBranch, RestChange, RestCommit, RestRepository};

type Params = Result<Query<HashMap<String, String>>, QueryRejection>;

/// `{project}/repos/{repo}`.
#[derive(Debug, Deserialize)]
pub(super) struct RepoPath {
    project: String,
    repo: String,
}

/// `{project}/repos/{repo}/.../{*path}`.
#[derive(Debug, Deserialize)]
pub(super) struct RepoFilePath {
    project: String,
    repo: String,
    path: String,
}

/// `{project}/repos/{repo}/commits/{commit}`.
#[derive(Debug, Deserialize)]
pub(super) struct RepoCommitPath {
    project: String,
    repo: String,
    commit: String,
}

/// Bitbucket's default page size when `limit` is not given.
const DEFAULT_LIMIT: u32 = 25;

/// `GET .../projects/{p}/repos/{r}` → `RestRepository`.
pub(super) async fn repository(
    State(shared): State<Arc<Shared>>,
    path: Result<Path<RepoPath>, PathRejection>,
) -> Result<Json<RestRepository>, ApiError> {
    let Path(path) = path?;
    let repo = shared.find_repo(&path.project, &path.repo)?;
    Ok(Json(RestRepository::with_links(&repo, &shared.base_url)))
}

/// `GET .../default-branch` (and the older `.../branches/default`) → `RestBranch`, or 404
/// `NoDefaultBranchException` while the configured default branch does not exist (an empty
/// repository).
pub(super) async fn default_branch(
    State(shared): State<Arc<Shared>>,
    path: Result<Path<RepoPath>, PathRejection>,
) -> Result<Json<RestBranch>, ApiError> {
    let Path(path) = path?;
    let repo = shared.find_repo(&path.project, &path.repo)?;
    let (ref_id, head) = default_branch_head(&repo).await?;
    let name = ref_id.trim_start_matches("refs/heads/").to_owned();
    Ok(Json(RestBranch {
        id: ref_id,
        display_id: name,
        ref_type: "BRANCH",
        latest_commit: head.clone(),
        latest_changeset: head,
        is_default: true,
    }))
}

/// `GET .../changes?until=&since=&start=&limit=` → a page of `RestChange`.
///
/// Without `since`, `until` is compared with its first parent (with the empty tree for a root
/// commit). At most `max_changes` (`page.max.changes`) changes are computed; pages never go
/// past them, so the last page of a capped diff says `isLastPage: true`.
pub(super) async fn changes(
    State(shared): State<Arc<Shared>>,
    path: Result<Path<RepoPath>, PathRejection>,
    params: Params,
) -> Result<Json<ChangesPage>, ApiError> {
    let Path(path) = path?;
    let Query(params) = params?;
    let repo = shared.find_repo(&path.project, &path.repo)?;
    let (start, limit) = paging(&params, shared.config.max_page_size)?;
    let until_rev = params
        .get("until")
        .filter(|v| !v.is_empty())
        .ok_or_else(|| ApiError::bad_request(Some("until"), "The until parameter is required."))?;
    let until = resolve(&repo, until_rev).await?;
    let since = match params.get("since").filter(|v| !v.is_empty()) {
        Some(rev) => Some(resolve(&repo, rev).await?),
        None => repo
            .inner
            .git
            .commit_info_async(&until)
            .await?
            .parents
            .into_iter()
            .next(),
    };

    let out = repo
        .inner
        .git
        .run_async([
            "diff-tree",
            "-r",
            "-z",
            "--raw",
            "--no-abbrev",
            "--no-color",
            "-M",
            "-C",
            since.as_deref().unwrap_or(EMPTY_TREE),
            until.as_str(),
        ])
        .await?;
    let mut raw = git::parse_raw_diff(&out)?;
    raw.truncate(shared.config.max_changes as usize);

    let commit_url = format!(
        "{}/projects/{}/repos/{}/commits/{until}",
        shared.base_url,
        repo.project_key(),
        repo.slug()
    );
    let all: Vec<RestChange> = raw
        .iter()
        .map(|change| {
            let fragment = utf8_percent_encode(&change.path, FRAGMENT);
            RestChange::from_raw(change, format!("{commit_url}#{fragment}"))
        })
        .collect();
    Ok(Json(ChangesPage {
        from_hash: since,
        to_hash: until,
        properties: serde_json::Map::new(),
        page: Page::slice(&all, start, limit),
    }))
}

/// `GET .../raw/{path}?at=` → the file's bytes.
pub(super) async fn raw(
    State(shared): State<Arc<Shared>>,
    path: Result<Path<RepoFilePath>, PathRejection>,
    params: Params,
) -> Result<Response, ApiError> {
    let Path(path) = path?;
    let Query(params) = params?;
    let repo = shared.find_repo(&path.project, &path.repo)?;
    let file = path.path.trim_matches('/');
    let bytes = match params.get("at").filter(|at| batch::batchable(&format!("{at}:{file}"))) {
        // A commit id (what the sync asks for): one long-lived git process answers.
        Some(at) => {
            let pool = &repo.inner.batch;
            let git = &repo.inner.git;
            let commit = match pool.object(git, &format!("{at}^{{commit}}")).await? {
                Some(object) if object.kind == "commit" => object.id,
                _ => {
                    return Err(ApiError::NoSuchCommit {
                        rev: at.clone(),
                        slug: repo.slug().to_owned(),
                    });
                }
            };
            let blob = match pool.object(git, &format!("{commit}:{file}")).await? {
                Some(object) if !file.is_empty() && object.kind == "blob" => object.content,
                _ => {
                    return Err(ApiError::NoSuchPath {
                        path: file.to_owned(),
                        at: at.clone(),
                    });
                }
            };
            if let Some(announced) = shared.announced_size(&repo, file) {
                return Ok(announced_body(shared, announced));
            }
            blob
        }
        None => {
            let (commit, at) = commit_at(&repo, params.get("at")).await?;
            let spec = format!("{commit}:{file}");
            let no_such_path = || ApiError::NoSuchPath {
                path: file.to_owned(),
                at: at.clone(),
            };
            if file.is_empty() || object_type(&repo, &spec).await?.as_deref() != Some("blob") {
                return Err(no_such_path());
            }
            if let Some(announced) = shared.announced_size(&repo, file) {
                return Ok(announced_body(shared, announced));
            }
            repo.inner
                .git
                .run_async(["cat-file", "blob", "--end-of-options", &spec])
                .await?
        }
    };
    let content_type = if !bytes.contains(&0) && std::str::from_utf8(&bytes).is_ok() {
        "text/plain;charset=UTF-8"
    } else {
        "application/octet-stream"
    };
    let mut response = if shared.config.raw_content_length {
        bytes.into_response()
    } else {
        // A body of unknown length: sent chunked, 64 KiB at a time.
        let bytes = bytes::Bytes::from(bytes);
        let chunks: Vec<Result<bytes::Bytes, std::convert::Infallible>> = (0..bytes.len())
            .step_by(64 * 1024)
            .map(|start| Ok(bytes.slice(start..bytes.len().min(start + 64 * 1024))))
            .collect();
        axum::body::Body::from_stream(futures::stream::iter(chunks)).into_response()
    };
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
        .headers_mut()
        .insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    Ok(response)
}

/// An answer that announces `bytes` in `Content-Length`, sends at most
/// [`ANNOUNCED_BODY_SENT_AT_MOST`] of them in small chunks (counting each one as it is handed to
/// the connection) and then fails, which cuts the connection: a client that reads on gets an
/// incomplete body.
fn announced_body(shared: Arc<Shared>, bytes: u64) -> Response {
    const CHUNK: u64 = 8 * 1024;
    let budget = bytes.min(ANNOUNCED_BODY_SENT_AT_MOST);
    let chunks = futures::stream::unfold(0u64, move |sent| {
        let shared = Arc::clone(&shared);
        async move {
            if sent >= budget {
                // Give the server a turn to flush what was sent before the connection is cut.
                tokio::task::yield_now().await;
                let cut = std::io::Error::new(std::io::ErrorKind::ConnectionAborted, "announced body cut short");
                return (sent < bytes).then_some((Err(cut), u64::MAX));
            }
            let n = CHUNK.min(budget - sent);
            shared.count_announced_sent(n);
            let chunk = bytes::Bytes::from(vec![b' '; usize::try_from(n).unwrap_or(0)]);
            Some((Ok(chunk), sent + n))
        }
    });
    let mut response = axum::body::Body::from_stream(chunks).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(bytes));
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    response
}

/// `GET .../files?at=` → every file path of the repository, paged.
pub(super) async fn files_root(
    State(shared): State<Arc<Shared>>,
    path: Result<Path<RepoPath>, PathRejection>,
    params: Params,
) -> Result<Json<Page<String>>, ApiError> {
    let Path(path) = path?;
    let Query(params) = params?;
    list_files(&shared, &path.project, &path.repo, "", &params).await
}

/// `GET .../files/{path}?at=` → every file under a directory, relative to it, paged.
pub(super) async fn files(
    State(shared): State<Arc<Shared>>,
    path: Result<Path<RepoFilePath>, PathRejection>,
    params: Params,
) -> Result<Json<Page<String>>, ApiError> {
    let Path(path) = path?;
    let Query(params) = params?;
    list_files(&shared, &path.project, &path.repo, &path.path, &params).await
}

async fn list_files(
    shared: &Shared,
    project: &str,
    slug: &str,
    dir: &str,
    params: &HashMap<String, String>,
) -> Result<Json<Page<String>>, ApiError> {
    let repo = shared.find_repo(project, slug)?;
    let (start, limit) = paging(params, shared.config.max_page_size)?;
    let dir = dir.trim_matches('/');
    let (commit, at) = commit_at(&repo, params.get("at")).await?;
    let spec = if dir.is_empty() {
        format!("{commit}^{{tree}}")
    } else {
        format!("{commit}:{dir}")
    };
    match object_type(&repo, &spec).await?.as_deref() {
        Some("tree") => {}
        Some(_) => {
            return Err(ApiError::NotADirectory {
                path: dir.to_owned(),
                at,
            });
        }
        None => {
            return Err(ApiError::NoSuchPath {
                path: dir.to_owned(),
                at,
            });
        }
    }
    let out = repo
        .inner
        .git
        .run_async(["ls-tree", "-r", "-z", "--name-only", "--end-of-options", &spec])
        .await?;
    let all = git::split_nul(&out);
    Ok(Json(Page::slice(&all, start, limit)))
}

/// `GET .../commits?until=&since=&path=&merges=&followRenames=&ignoreMissing=&start=&limit=` →
/// a page of `RestCommit` (as `commits/{commitId}` answers it), newest first.
///
/// - `until` (a commit id or a ref: `refs/heads/main`, `main`, a tag; inclusive) defaults to
///   the head of the default branch. Without `until` while the default branch does not exist
///   (an empty repository) the answer is 404 `NoDefaultBranchException`, as a real server
///   answers (recorded). An `until` or `since` that names no commit (`refs/heads/main` in an
///   empty repository too) is 404 `NoSuchCommitException`, as for `changes` and
///   `commits/{commitId}` (the document only lists 400 for "invalid" ids or refs), unless
///   `ignoreMissing=true`: then a missing `until` gives an empty page and a missing `since` is
///   ignored. Either 404 names no repository or project, so clients read it as "no commits".
/// - `since` (exclusive): commits reachable from it are left out.
/// - `path`: only commits touching that file or directory; `followRenames=true` follows a
///   single file's history past renames.
/// - `merges`: `include` (default), `exclude` or `only`; anything else is 400.
///
/// `withCounts`, `avatarSize` and `avatarScheme` are accepted and ignored.
pub(super) async fn commits(
    State(shared): State<Arc<Shared>>,
    path: Result<Path<RepoPath>, PathRejection>,
    params: Params,
) -> Result<Json<Page<RestCommit>>, ApiError> {
    let Path(path) = path?;
    let Query(params) = params?;
    let repo = shared.find_repo(&path.project, &path.repo)?;
    let (start, limit) = paging(&params, shared.config.max_page_size)?;
    let merges = match params.get("merges").map(|v| v.to_ascii_lowercase()).as_deref() {
        None | Some("" | "include") => Merges::Include,
        Some("exclude") => Merges::Exclude,
        Some("only") => Merges::Only,
        Some(other) => {
            return Err(ApiError::bad_request(
                Some("merges"),
                format!("Invalid merges filter '{other}': use include, exclude or only."),
            ));
        }
    };
    let ignore_missing = flag(&params, "ignoreMissing");
    let non_empty = |name: &str| params.get(name).filter(|v| !v.is_empty());

    let until = match non_empty("until") {
        Some(rev) => match resolve(&repo, rev).await {
            Ok(commit) => commit,
            Err(ApiError::NoSuchCommit { .. }) if ignore_missing => {
                return Ok(Json(Page::window(Vec::new(), start, limit)));
            }
            Err(err) => return Err(err),
        },
        None => default_branch_head(&repo).await?.1,
    };
    let since = match non_empty("since") {
        Some(rev) => match resolve(&repo, rev).await {
            Ok(commit) => Some(commit),
            Err(ApiError::NoSuchCommit { .. }) if ignore_missing => None,
            Err(err) => return Err(err),
        },
        None => None,
    };
    let file = non_empty("path").map(|p| p.trim_matches('/')).filter(|p| !p.is_empty());

    let found = repo
        .inner
        .git
        .log_async(&LogQuery {
            until: &until,
            since: since.as_deref(),
            path: file,
            follow_renames: flag(&params, "followRenames"),
            merges,
            skip: start,
            max: u64::from(limit) + 1,
        })
        .await?;
    let values = found.iter().map(RestCommit::new).collect();
    Ok(Json(Page::window(values, start, limit)))
}

/// `GET .../commits/{commitId}` → `RestCommit`.
pub(super) async fn commit(
    State(shared): State<Arc<Shared>>,
    path: Result<Path<RepoCommitPath>, PathRejection>,
) -> Result<Json<RestCommit>, ApiError> {
    let Path(path) = path?;
    let repo = shared.find_repo(&path.project, &path.repo)?;
    let id = resolve(&repo, &path.commit).await?;
    let info = repo.inner.git.commit_info_async(&id).await?;
    Ok(Json(RestCommit::new(&info)))
}

/// Anything else under the server: 404 with an errors body.
pub(super) async fn no_such_resource(uri: Uri) -> ApiError {
    ApiError::NoSuchResource {
        path: uri.path().to_owned(),
    }
}

/// Characters escaped in the `#path` fragment of change links.
const FRAGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'<')
    .add(b'>')
    .add(b'`')
    .add(b'#')
    .add(b'%');

/// `start` (default 0) and the applied `limit`: the requested one (default 25), at least 1,
/// at most the configured maximum page size.
pub(super) fn paging(params: &HashMap<String, String>, max_page_size: u32) -> Result<(u64, u32), ApiError> {
    let start = match params.get("start").filter(|v| !v.is_empty()) {
        Some(v) => v
            .parse::<u64>()
            .map_err(|_| ApiError::bad_request(Some("start"), format!("Invalid start: {v}")))?,
        None => 0,
    };
    let limit = match params.get("limit").filter(|v| !v.is_empty()) {
        Some(v) => v
            .parse::<u32>()
            .map_err(|_| ApiError::bad_request(Some("limit"), format!("Invalid limit: {v}")))?,
        None => DEFAULT_LIMIT,
    };
    Ok((start, limit.clamp(1, max_page_size.max(1))))
}

/// The commit a client-supplied revision names, or 404 `NoSuchCommitException`.
async fn resolve(repo: &Repo, rev: &str) -> Result<String, ApiError> {
    let no_such_commit = || ApiError::NoSuchCommit {
        rev: rev.to_owned(),
        slug: repo.slug().to_owned(),
    };
    if rev.starts_with('-') || rev.contains(['\0', '\n']) {
        return Err(no_such_commit());
    }
    repo.inner
        .git
        .resolve_commit_async(rev)
        .await?
        .ok_or_else(no_such_commit)
}

/// The commit of the `at` parameter, or of the default branch when absent; with the text to
/// name it by in errors.
async fn commit_at(repo: &Repo, at: Option<&String>) -> Result<(String, String), ApiError> {
    match at.filter(|v| !v.is_empty()) {
        Some(at) => Ok((resolve(repo, at).await?, at.clone())),
        None => {
            let (ref_id, commit) = default_branch_head(repo).await?;
            Ok((commit, ref_id))
        }
    }
}

/// The configured default branch's ref id and head commit, or 404 `NoDefaultBranchException`
/// while it does not exist (an empty repository).
async fn default_branch_head(repo: &Repo) -> Result<(String, String), ApiError> {
    let ref_id = branch_ref(&repo_default_branch(repo).await?)?;
    match repo.inner.git.resolve_commit_async(&ref_id).await? {
        Some(head) => Ok((ref_id, head)),
        None => Err(ApiError::NoDefaultBranch { ref_id }),
    }
}

/// Whether a boolean query parameter is `true` (case-insensitive, as Bitbucket reads them).
fn flag(params: &HashMap<String, String>, name: &str) -> bool {
    params.get(name).is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

/// The configured default branch's name.
async fn repo_default_branch(repo: &Repo) -> Result<String, ApiError> {
    let out = repo.inner.git.run_async(["symbolic-ref", "--short", "HEAD"]).await?;
    Ok(String::from_utf8_lossy(&out).trim().to_owned())
}

/// `blob`, `tree`, `commit` (submodule) for an object spec like `<commit>:<path>`, or `None`.
async fn object_type(repo: &Repo, spec: &str) -> Result<Option<String>, ApiError> {
    let output = repo
        .inner
        .git
        .output_async(["cat-file", "-t", "--end-of-options", spec])
        .await?;
    Ok(output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn limit_defaults_to_25_and_is_capped_by_the_configured_page_size() {
        assert_eq!(paging(&params(&[]), 1000).expect("valid"), (0, 25));
        assert_eq!(paging(&params(&[("limit", "500")]), 3).expect("valid"), (0, 3));
        assert_eq!(
            paging(&params(&[("start", "7"), ("limit", "0")]), 3).expect("valid"),
            (7, 1)
        );
        assert!(paging(&params(&[("start", "x")]), 3).is_err());
    }
}
