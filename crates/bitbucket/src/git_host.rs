//! [`GitHost`] for [`BitbucketClient`]: which REST resources answer each question, how their
//! pages are followed and what their error answers mean.
//!
//! | question        | resource (under `/rest/api/latest/projects/{key}/repos/{slug}`)     |
//! |-----------------|--------------------------------------------------------------------|
//! | default branch  | `GET default-branch`, then `GET commits?until={ref id}&limit=1`    |
//! | changes         | `GET changes?since=&until=&start=&limit=`                          |
//! | file list       | `GET files?at=&start=&limit=` (every file, recursively)            |
//! | file content    | `GET raw/{path}?at=`                                               |
//! | ancestry        | `GET commits?until={commit}&since={head}&limit=1` (empty: ancestor) |

use bytes::Bytes;
use hubsync_core::ids::{CommitId, RepoRef};
use hubsync_core::ports::{
    Admission, Ancestry, ChangeSet, DefaultBranch, GitHost, GitHostError, GitHostErrorKind, RawFile,
};
use reqwest::StatusCode;
use url::Url;

use crate::changes::{Mapped, map_change};
use crate::client::{BitbucketClient, Call, Expect, Reply};
use crate::json::{ErrorBody, Page, RestChange, RestCommit, RestMinimalRef};
use crate::paths::{InvalidSegment, file_segments};

/// A 404 whose body says the repository (or its project) is gone, as opposed to a missing ref,
/// commit or path inside a repository that exists.
fn names_missing_repository(body: &ErrorBody) -> bool {
    body.has_exception("NoSuchRepository") || body.has_exception("NoSuchProject")
}

/// A 2xx answer that has a body to read (not 204).
fn has_content(status: StatusCode) -> bool {
    status.is_success() && status != StatusCode::NO_CONTENT
}

impl BitbucketClient {
    fn url(&self, call: &Call<'_>, resource: &[&str]) -> Result<Url, GitHostError> {
        self.api()
            .repo_url(call.repo, resource)
            .map_err(|e: InvalidSegment| self.fail(call, GitHostErrorKind::Protocol, None, e.to_string()))
    }

    /// One page of a paged resource: `url` with `start` and `limit` added.
    async fn page<T: serde::de::DeserializeOwned>(
        &self,
        call: &Call<'_>,
        url: &Url,
        start: u64,
        limit: u64,
    ) -> Result<Page<T>, GitHostError> {
        let mut url = url.clone();
        url.query_pairs_mut()
            .append_pair("start", &start.to_string())
            .append_pair("limit", &limit.to_string());
        let reply = self.get(call, &url, Expect::Json).await?;
        if !has_content(reply.status) {
            return Err(self.status_error(call, &reply));
        }
        let page: Page<T> = self.parse_json(call, &reply)?;
        tracing::debug!(
            requested_start = start,
            start = page.start,
            size = page.size,
            values = page.values.len(),
            limit = page.limit,
            is_last_page = page.is_last_page,
            next_page_start = page.next_page_start,
            "page"
        );
        Ok(page)
    }

    /// The commit a branch points at; `None` when the branch has no commit (an empty repository,
    /// or a configured default branch never pushed).
    async fn branch_head(&self, repo: &RepoRef, ref_id: &str) -> Result<Option<CommitId>, GitHostError> {
        let call = Call::new(repo, format!("GET head of {ref_id}"));
        let mut url = self.url(&call, &["commits"])?;
        url.query_pairs_mut()
            .append_pair("until", ref_id)
            .append_pair("limit", "1");
        let reply = self.get(&call, &url, Expect::Json).await?;
        let page: Page<RestCommit> = match reply.status {
            // The repository answered a moment ago, so a 404 here is the ref that is not there,
            // unless the body says otherwise.
            StatusCode::NOT_FOUND if !names_missing_repository(&ErrorBody::parse(&reply.body)) => {
                return Ok(None);
            }
            StatusCode::NO_CONTENT => return Ok(None),
            status if has_content(status) => self.parse_json(&call, &reply)?,
            _ => return Err(self.status_error(&call, &reply)),
        };
        let Some(commit) = page.values.into_iter().next() else {
            return Ok(None);
        };
        CommitId::parse(&commit.id)
            .map(Some)
            .map_err(|e| self.fail(&call, GitHostErrorKind::Protocol, Some(reply.status), e.to_string()))
    }
}

impl GitHost for BitbucketClient {
    /// `GET default-branch` answers a `RestMinimalRef` (the *configured* default branch, which a
    /// new repository has before anything is pushed) without its head, so the head is asked of
    /// `GET commits?until={ref}&limit=1`. The repository is empty (`None`) when:
    /// - `default-branch` answers 204 (documented for the older `branches/default`),
    /// - or 404 with a `NoDefaultBranchException` body ("its configured default branch does not
    ///   exist"; a 404 for a missing repository stays a `NotFound` error),
    /// - or the branch has no commit: `commits` answers no value, 204, or 404 for the ref.
    async fn default_branch(&self, repo: &RepoRef) -> Result<Option<DefaultBranch>, GitHostError> {
        let call = Call::new(repo, "GET default branch");
        let url = self.url(&call, &["default-branch"])?;
        let reply: Reply = self.get(&call, &url, Expect::Json).await?;
        let branch: RestMinimalRef = match reply.status {
            StatusCode::NO_CONTENT => return Ok(None),
            StatusCode::NOT_FOUND if ErrorBody::parse(&reply.body).has_exception("NoDefaultBranch") => {
                return Ok(None);
            }
            status if has_content(status) => self.parse_json(&call, &reply)?,
            _ => return Err(self.status_error(&call, &reply)),
        };
        if branch.id.trim().is_empty() {
            let message = "the default branch has an empty id".to_owned();
            return Err(self.fail(&call, GitHostErrorKind::Protocol, Some(reply.status), message));
        }
        let head = self.branch_head(repo, &branch.id).await?;
        Ok(head.map(|head| DefaultBranch {
            ref_id: branch.id,
            head,
        }))
    }

    /// Follows `nextPageStart` until `isLastPage`. Bitbucket stops a diff at `page.max.changes`
    /// without saying so, so the set is `truncated` once `max_changes` entries (files or not)
    /// have been listed, when a page is not the last but gives no further start, or when a
    /// change cannot be fully read (see the `changes` module).
    async fn changes(&self, repo: &RepoRef, since: &CommitId, until: &CommitId) -> Result<ChangeSet, GitHostError> {
        let call = Call::new(repo, format!("GET changes {}..{}", since.short(), until.short()));
        let mut url = self.url(&call, &["changes"])?;
        url.query_pairs_mut()
            .append_pair("since", since.as_str())
            .append_pair("until", until.as_str());
        let max_changes = self.options().max_changes;
        let limit = u64::from(self.options().page_limit).min(max_changes as u64);
        let mut set = ChangeSet::default();
        let mut listed = 0usize;
        let mut start = 0u64;
        loop {
            let page: Page<RestChange> = self.page(&call, &url, start, limit).await?;
            listed += page.values.len();
            for change in &page.values {
                match map_change(change) {
                    Mapped::Change(change) => set.changes.push(change),
                    Mapped::NotAFile => {}
                    Mapped::Incomplete(change) => {
                        set.truncated = true;
                        set.changes.extend(change);
                    }
                }
            }
            if listed >= max_changes {
                set.truncated = true;
                break;
            }
            if page.is_last() {
                break;
            }
            match page.next_page_start {
                Some(next) if next > start => start = next,
                _ => {
                    set.truncated = true;
                    break;
                }
            }
        }
        if set.truncated {
            tracing::debug!(listed, kept = set.changes.len(), "change list truncated");
        }
        Ok(set)
    }

    /// Follows `nextPageStart` until `isLastPage`; a page that is not the last but gives no
    /// further start is a protocol error (a partial list would look like deleted files).
    async fn list_files(&self, repo: &RepoRef, at: &CommitId) -> Result<Vec<String>, GitHostError> {
        self.list_files_from(repo, at, 0).await
    }

    /// The pages from `start` on: a listing at a commit id is the same each time.
    async fn list_files_from(&self, repo: &RepoRef, at: &CommitId, start: u64) -> Result<Vec<String>, GitHostError> {
        let call = Call::new(repo, format!("GET files at {}", at.short()));
        let mut url = self.url(&call, &["files"])?;
        url.query_pairs_mut().append_pair("at", at.as_str());
        let limit = u64::from(self.options().page_limit);
        let mut files = Vec::new();
        let mut start = start;
        loop {
            let page: Page<String> = self.page(&call, &url, start, limit).await?;
            let last = page.is_last();
            let next = page.next_page_start;
            files.extend(page.values);
            if last {
                return Ok(files);
            }
            match next {
                Some(next) if next > start => start = next,
                _ => {
                    let message = format!(
                        "the page at {start} is not the last but its nextPageStart is {next:?}; the file list would be incomplete"
                    );
                    return Err(self.fail(&call, GitHostErrorKind::Protocol, Some(StatusCode::OK), message));
                }
            }
        }
    }

    /// `None` on a 404 for the path; a 404 whose body names a missing repository, project or
    /// commit stays a `NotFound` error (a file that "disappears" would be deleted from the store).
    /// A file over `limit` is [`RawFile::TooLarge`]: not read at all when `Content-Length` says
    /// so, otherwise not past `limit` (the body is streamed, never buffered whole first). The
    /// bytes are charged to `admission` from `Content-Length` before the body is read, or chunk
    /// by chunk when there is none.
    async fn raw_file(
        &self,
        repo: &RepoRef,
        path: &str,
        at: &CommitId,
        limit: u64,
        admission: &mut Admission,
    ) -> Result<Option<RawFile>, GitHostError> {
        let call = Call::new(repo, format!("GET raw {path} at {}", at.short()));
        let segments =
            file_segments(path).map_err(|e| self.fail(&call, GitHostErrorKind::Protocol, None, e.to_string()))?;
        let mut resource = Vec::with_capacity(segments.len() + 1);
        resource.push("raw");
        resource.extend(segments);
        let mut url = self.url(&call, &resource)?;
        url.query_pairs_mut().append_pair("at", at.as_str());
        let reply = self
            .get_admitted(&call, &url, Expect::Raw { limit }, Some(admission))
            .await?;
        match reply.status {
            StatusCode::NOT_FOUND => {
                let body = ErrorBody::parse(&reply.body);
                if names_missing_repository(&body) || body.has_exception("NoSuchCommit") {
                    Err(self.status_error(&call, &reply))
                } else {
                    Ok(None)
                }
            }
            StatusCode::NO_CONTENT => Ok(Some(RawFile::Content(Bytes::new()))),
            status if status.is_success() => Ok(Some(match reply.oversize {
                Some(size) => RawFile::TooLarge(size),
                // The buffer the body was read into becomes the content: no copy.
                None => RawFile::Content(Bytes::from(reply.body)),
            })),
            _ => Err(self.status_error(&call, &reply)),
        }
    }

    /// The commits reachable from `commit` but not from `head` (`git log head..commit`): none
    /// when `commit` is `head` or one of its ancestors. A 404 that names no missing repository
    /// or project is the commit that is not there.
    async fn ancestry(&self, repo: &RepoRef, commit: &CommitId, head: &CommitId) -> Result<Ancestry, GitHostError> {
        let call = Call::new(repo, format!("GET commits {}..{}", head.short(), commit.short()));
        let mut url = self.url(&call, &["commits"])?;
        url.query_pairs_mut()
            .append_pair("until", commit.as_str())
            .append_pair("since", head.as_str())
            .append_pair("limit", "1");
        let reply = self.get(&call, &url, Expect::Json).await?;
        let page: Page<RestCommit> = match reply.status {
            StatusCode::NOT_FOUND if !names_missing_repository(&ErrorBody::parse(&reply.body)) => {
                return Ok(Ancestry::Unknown);
            }
            StatusCode::NO_CONTENT => return Ok(Ancestry::Ancestor),
            status if has_content(status) => self.parse_json(&call, &reply)?,
            _ => return Err(self.status_error(&call, &reply)),
        };
        Ok(if page.values.is_empty() {
            Ancestry::Ancestor
        } else {
            Ancestry::NotAncestor
        })
    }
}
