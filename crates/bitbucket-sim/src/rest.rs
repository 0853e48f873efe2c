//! The JSON the simulated server answers and the webhooks carry, named after the schemas of
//! Atlassian's REST API document (`RestRepository`, `RestBranch`, `RestChange`, ...).
//!
//! Where the real server differs from its document, the real server wins and the difference is
//! noted on the field: `RestPath.toString`, `RestChange.properties` and `RestChange.links`,
//! `RestBranch.isDefault` (the document says `default`), and the `fromHash`/`toHash`/`properties`
//! members of a page of changes are all sent by Bitbucket but missing or different in the
//! document.

use serde::Serialize;

use crate::config::User;
use crate::git::{CommitInfo, ZERO_HASH};
use crate::repo::{ProjectType, Repo};

/// `{"errors": [RestErrorMessage]}`, the body of every 4xx/5xx answer.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ErrorBody {
    pub errors: Vec<RestErrorMessage>,
}

/// `RestErrorMessage`. `context` and `exceptionName` are sent as `null` when absent.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RestErrorMessage {
    pub context: Option<String>,
    pub message: String,
    pub exception_name: Option<String>,
}

/// `{"href": ...}` (and `name` for clone links).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Link {
    pub href: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// `links` of a repository: `clone` and `self`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct RepositoryLinks {
    pub clone: Vec<Link>,
    #[serde(rename = "self")]
    pub self_: Vec<Link>,
}

/// `links` with only `self`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct SelfLinks {
    #[serde(rename = "self")]
    pub self_: Vec<Link>,
}

/// `RestProject`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RestProject {
    pub key: String,
    pub id: u32,
    pub name: String,
    pub public: bool,
    #[serde(rename = "type")]
    pub project_type: ProjectType,
    /// Personal projects name their owner.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<User>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub links: Option<SelfLinks>,
}

/// `RestRepository`. Webhooks carry it without `links`; the REST API with them.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RestRepository {
    pub slug: String,
    pub id: u32,
    pub name: String,
    pub hierarchy_id: String,
    pub scm_id: &'static str,
    pub state: &'static str,
    pub status_message: &'static str,
    pub forkable: bool,
    pub project: RestProject,
    pub public: bool,
    pub archived: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub links: Option<RepositoryLinks>,
}

impl RestRepository {
    /// The repository as webhooks show it (no links).
    pub(crate) fn of(repo: &Repo) -> Self {
        let project = repo.project();
        let owner = (project.project_type == ProjectType::Personal).then(|| {
            let slug = project.key.trim_start_matches('~').to_lowercase();
            User {
                name: slug.clone(),
                email_address: format!("{slug}@example.com"),
                id: project.id,
                display_name: project.name.clone(),
                active: true,
                slug,
                user_type: crate::config::UserType::Normal,
            }
        });
        Self {
            slug: repo.slug().to_owned(),
            id: repo.id(),
            name: repo.name().to_owned(),
            hierarchy_id: repo.inner.hierarchy_id.clone(),
            scm_id: "git",
            state: "AVAILABLE",
            status_message: "Available",
            forkable: true,
            project: RestProject {
                key: project.key.clone(),
                id: project.id,
                name: project.name.clone(),
                public: project.public,
                project_type: project.project_type,
                owner,
                links: None,
            },
            public: false,
            archived: false,
            links: None,
        }
    }

    /// The repository as `GET .../repos/{slug}` answers it, with links under `base_url`.
    pub(crate) fn with_links(repo: &Repo, base_url: &str) -> Self {
        let mut rest = Self::of(repo);
        let key = repo.project_key();
        let scm_key = key.to_lowercase();
        let slug = repo.slug();
        let host = base_url
            .trim_start_matches("http://")
            .trim_start_matches("https://")
            .split(':')
            .next()
            .unwrap_or("localhost")
            .to_owned();
        rest.project.links = Some(SelfLinks {
            self_: vec![Link {
                href: format!("{base_url}/projects/{key}"),
                name: None,
            }],
        });
        rest.links = Some(RepositoryLinks {
            clone: vec![
                Link {
                    href: format!("{base_url}/scm/{scm_key}/{slug}.git"),
                    name: Some("http".into()),
                },
                Link {
                    href: format!("ssh://git@{host}:7999/{scm_key}/{slug}.git"),
                    name: Some("ssh".into()),
                },
            ],
            self_: vec![Link {
                href: format!("{base_url}/projects/{key}/repos/{slug}/browse"),
                name: None,
            }],
        });
        rest
    }
}

/// `RestBranch`, as `default-branch` answers it. The real server sends `isDefault` (the
/// document's schema calls it `default`) and both `latestCommit` and the deprecated
/// `latestChangeset`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RestBranch {
    pub id: String,
    pub display_id: String,
    #[serde(rename = "type")]
    pub ref_type: &'static str,
    pub latest_commit: String,
    pub latest_changeset: String,
    pub is_default: bool,
}

/// A paged answer. `nextPageStart` is left out on the last page.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Page<T> {
    pub size: usize,
    pub limit: u32,
    pub is_last_page: bool,
    pub values: Vec<T>,
    pub start: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_page_start: Option<u64>,
}

impl<T: Clone> Page<T> {
    /// The page of `all` starting at `start`, of at most `limit` items.
    pub(crate) fn slice(all: &[T], start: u64, limit: u32) -> Self {
        let total = all.len() as u64;
        let from = start.min(total) as usize;
        let to = (start.saturating_add(u64::from(limit))).min(total) as usize;
        let values = all[from..to].to_vec();
        let is_last_page = to as u64 >= total;
        Self {
            size: values.len(),
            limit,
            is_last_page,
            values,
            start,
            next_page_start: (!is_last_page).then_some(to as u64),
        }
    }
}

impl<T> Page<T> {
    /// The page at `start` made of `items`, the first up to `limit + 1` items from `start` on:
    /// an item beyond `limit` only tells that another page follows, and is dropped.
    pub(crate) fn window(mut items: Vec<T>, start: u64, limit: u32) -> Self {
        let limit_items = limit as usize;
        let is_last_page = items.len() <= limit_items;
        items.truncate(limit_items);
        Self {
            size: items.len(),
            limit,
            is_last_page,
            start,
            next_page_start: (!is_last_page).then(|| start.saturating_add(items.len() as u64)),
            values: items,
        }
    }
}

/// A page of changes: the real server adds `fromHash`, `toHash` and `properties`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ChangesPage {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from_hash: Option<String>,
    pub to_hash: String,
    pub properties: serde_json::Map<String, serde_json::Value>,
    #[serde(flatten)]
    pub page: Page<RestChange>,
}

/// `RestPath`, plus the `toString` member the real server sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RestPath {
    pub components: Vec<String>,
    pub parent: String,
    pub name: String,
    /// After the last `.` of the name; absent when the name has no `.`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extension: Option<String>,
    #[serde(rename = "toString")]
    pub to_string: String,
}

impl RestPath {
    pub(crate) fn new(path: &str) -> Self {
        let components: Vec<String> = path.split('/').map(str::to_owned).collect();
        let (parent, name) = match path.rsplit_once('/') {
            Some((parent, name)) => (parent.to_owned(), name.to_owned()),
            None => (String::new(), path.to_owned()),
        };
        let extension = name.rsplit_once('.').map(|(_, ext)| ext.to_owned());
        Self {
            components,
            parent,
            name,
            extension,
            to_string: path.to_owned(),
        }
    }
}

/// `properties` of a change: the git change type (`RENAME` for a `MOVE`, ...).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ChangeProperties {
    pub git_change_type: &'static str,
}

/// `RestChange`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RestChange {
    pub content_id: String,
    pub from_content_id: String,
    pub path: RestPath,
    pub executable: bool,
    pub percent_unchanged: i32,
    #[serde(rename = "type")]
    pub change_type: &'static str,
    pub node_type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub src_path: Option<RestPath>,
    pub src_executable: bool,
    pub links: SelfLinks,
    pub properties: ChangeProperties,
}

impl RestChange {
    /// The Bitbucket view of one `git diff-tree --raw` entry; `self_href` is the change's
    /// `links.self` (the commit page, with the path as fragment).
    pub(crate) fn from_raw(raw: &crate::git::RawChange, self_href: String) -> Self {
        let (change_type, git_change_type) = match raw.status {
            'A' => ("ADD", "ADD"),
            'D' => ("DELETE", "DELETE"),
            'M' => ("MODIFY", "MODIFY"),
            'T' => ("MODIFY", "TYPE"),
            'R' => ("MOVE", "RENAME"),
            'C' => ("COPY", "COPY"),
            _ => ("UNKNOWN", "UNKNOWN"),
        };
        let is_executable = |mode: u32| mode == 0o100755;
        let node_type = |mode: u32| if mode == 0o160000 { "SUBMODULE" } else { "FILE" };
        let mode = if raw.status == 'D' { raw.old_mode } else { raw.new_mode };
        Self {
            content_id: raw.new_id.clone(),
            from_content_id: if raw.old_id.is_empty() {
                ZERO_HASH.to_owned()
            } else {
                raw.old_id.clone()
            },
            path: RestPath::new(&raw.path),
            executable: is_executable(raw.new_mode),
            percent_unchanged: raw.score.map_or(-1, i32::from),
            change_type,
            node_type: node_type(mode),
            src_path: raw.src_path.as_deref().map(RestPath::new),
            src_executable: is_executable(raw.old_mode),
            links: SelfLinks {
                self_: vec![Link {
                    href: self_href,
                    name: None,
                }],
            },
            properties: ChangeProperties { git_change_type },
        }
    }
}

/// `RestPerson`: `{"name", "emailAddress"}`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RestPerson {
    pub name: String,
    pub email_address: String,
}

/// `RestMinimalCommit`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RestMinimalCommit {
    pub id: String,
    pub display_id: String,
}

impl RestMinimalCommit {
    pub(crate) fn new(id: &str) -> Self {
        Self {
            id: id.to_owned(),
            display_id: display_id(id),
        }
    }
}

/// `RestCommit`; timestamps in milliseconds. `toCommit` in webhooks has full parents (`P` =
/// `RestCommit`), everything else minimal ones.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RestCommit<P = RestMinimalCommit> {
    pub id: String,
    pub display_id: String,
    pub author: RestPerson,
    pub author_timestamp: i64,
    pub committer: RestPerson,
    pub committer_timestamp: i64,
    pub message: String,
    pub parents: Vec<P>,
}

impl<P> RestCommit<P> {
    pub(crate) fn with_parents(info: &CommitInfo, parents: Vec<P>) -> Self {
        Self {
            id: info.id.clone(),
            display_id: display_id(&info.id),
            author: RestPerson {
                name: info.author_name.clone(),
                email_address: info.author_email.clone(),
            },
            author_timestamp: info.author_time * 1000,
            committer: RestPerson {
                name: info.committer_name.clone(),
                email_address: info.committer_email.clone(),
            },
            committer_timestamp: info.committer_time * 1000,
            message: info.message.clone(),
            parents,
        }
    }
}

impl RestCommit {
    pub(crate) fn new(info: &CommitInfo) -> Self {
        let parents = info.parents.iter().map(|p| RestMinimalCommit::new(p)).collect();
        Self::with_parents(info, parents)
    }
}

/// Bitbucket shows 11 characters of a commit id.
pub(crate) fn display_id(id: &str) -> String {
    id.chars().take(11).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rest_path_splits_parent_name_and_extension() {
        let path = RestPath::new("models/sales/Ordér list.hck.json");

        assert_eq!(path.components, ["models", "sales", "Ordér list.hck.json"]);
        assert_eq!(path.parent, "models/sales");
        assert_eq!(path.name, "Ordér list.hck.json");
        assert_eq!(path.extension.as_deref(), Some("json"));
        assert_eq!(path.to_string, "models/sales/Ordér list.hck.json");
    }

    #[test]
    fn rest_path_of_a_root_file_without_extension_has_empty_parent_and_no_extension() {
        let path = RestPath::new("LICENSE");
        let json = serde_json::to_value(&path).expect("serializes");

        assert_eq!(json["parent"], "");
        assert!(json.get("extension").is_none());
    }

    #[test]
    fn last_page_has_no_next_page_start() {
        let all: Vec<u32> = (0..5).collect();

        let first = Page::slice(&all, 0, 2);
        let last = Page::slice(&all, 4, 2);
        let past = Page::slice(&all, 9, 2);

        assert_eq!(first.next_page_start, Some(2));
        assert!(!first.is_last_page);
        assert_eq!(last.values, vec![4]);
        assert!(last.is_last_page);
        assert!(last.next_page_start.is_none());
        assert!(past.values.is_empty() && past.is_last_page);
    }

    #[test]
    fn a_window_with_one_item_more_than_the_limit_is_not_the_last_page() {
        let full = Page::window(vec![10, 11, 12], 4, 2);
        let last = Page::window(vec![10, 11], 4, 2);
        let empty = Page::<u32>::window(Vec::new(), 0, 2);

        assert_eq!((full.values, full.size), (vec![10, 11], 2));
        assert!(!full.is_last_page);
        assert_eq!(full.next_page_start, Some(6));
        assert!(last.is_last_page && last.next_page_start.is_none());
        assert_eq!(last.size, 2);
        assert!(empty.values.is_empty() && empty.is_last_page && empty.size == 0);
    }
}
