//! Bitbucket Data Center's JSON, as described by Atlassian's OpenAPI document for 9.2: only the
//! fields this client reads. Unknown fields are ignored, so newer servers keep working. These
//! types never leave the crate; [`crate::changes`] turns them into the domain's.

use serde::Deserialize;

/// A page of a paged resource (the narrative "Paged APIs" of the document): `values` plus
/// `size`, `limit`, `isLastPage`, `start` and, when `isLastPage` is false, `nextPageStart`, which
/// must be used as the next `start` (ids of adjacent pages need not be contiguous).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Page<T> {
    #[serde(default = "Vec::new")]
    pub values: Vec<T>,
    pub size: Option<u64>,
    /// The page size the server applied (it may be lower than the one asked for).
    pub limit: Option<u64>,
    pub is_last_page: Option<bool>,
    pub start: Option<u64>,
    pub next_page_start: Option<u64>,
}

impl<T> Page<T> {
    /// `isLastPage`, or, from a server that leaves it out, "no `nextPageStart`".
    pub(crate) fn is_last(&self) -> bool {
        self.is_last_page.unwrap_or(self.next_page_start.is_none())
    }
}

/// `RestMinimalRef`, the answer of `GET .../default-branch`: `id` (`refs/heads/master`),
/// `displayId` and `type` (`BRANCH`/`TAG`). It names the branch only, not its head commit.
#[derive(Debug, Deserialize)]
pub(crate) struct RestMinimalRef {
    pub id: String,
}

/// `RestCommit`, an item of `GET .../commits`: only its `id` is read.
#[derive(Debug, Deserialize)]
pub(crate) struct RestCommit {
    pub id: String,
}

/// `RestChange`, an item of `GET .../changes`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RestChange {
    pub path: Option<RestPath>,
    /// The path before a `MOVE` or the origin of a `COPY`.
    pub src_path: Option<RestPath>,
    #[serde(rename = "type")]
    pub change_type: Option<ChangeType>,
    pub node_type: Option<NodeType>,
}

/// `RestChange.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub(crate) enum ChangeType {
    Add,
    Copy,
    Delete,
    Modify,
    Move,
    /// `UNKNOWN` in the document, and any type a later server may add.
    #[serde(other)]
    Unknown,
}

/// `RestChange.nodeType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub(crate) enum NodeType {
    File,
    Directory,
    Submodule,
    /// A node type a later server may add.
    #[serde(other)]
    Other,
}

/// `RestPath`: `components`, `parent`, `name`, `extension` in the document; servers also send
/// `toString`, the whole path.
#[derive(Debug, Deserialize)]
pub(crate) struct RestPath {
    #[serde(default)]
    pub components: Vec<String>,
    pub parent: Option<String>,
    pub name: Option<String>,
    #[serde(rename = "toString")]
    pub to_string: Option<String>,
}

impl RestPath {
    /// The path from the repository root, `/`-separated: the components joined, else
    /// `toString`, else `parent` and `name`. `None` if the answer holds none of them.
    pub(crate) fn repo_path(&self) -> Option<String> {
        if !self.components.is_empty() {
            return Some(self.components.join("/"));
        }
        if let Some(whole) = self.to_string.as_deref().filter(|s| !s.is_empty()) {
            return Some(whole.to_owned());
        }
        match (self.parent.as_deref().unwrap_or(""), self.name.as_deref()) {
            (_, None | Some("")) => None,
            ("", Some(name)) => Some(name.to_owned()),
            (parent, Some(name)) => Some(format!("{parent}/{name}")),
        }
    }
}

/// The body of every error answer: `{"errors": [RestErrorMessage, ...]}`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ErrorBody {
    #[serde(default)]
    pub errors: Vec<RestErrorMessage>,
}

/// `RestErrorMessage`: `context` (the parameter at fault, often null), `message` and
/// `exceptionName` (the server's Java exception, e.g.
/// `com.atlassian.bitbucket.repository.NoSuchRepositoryException`).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RestErrorMessage {
    pub context: Option<String>,
    pub message: Option<String>,
    pub exception_name: Option<String>,
}

impl ErrorBody {
    /// Reads an error body; anything else (an HTML page from a proxy, nothing) is an empty one.
    pub(crate) fn parse(body: &[u8]) -> Self {
        serde_json::from_slice(body).unwrap_or_default()
    }

    /// Whether any error's `exceptionName` contains `fragment` (matched on the simple name, so
    /// a package move does not matter).
    pub(crate) fn has_exception(&self, fragment: &str) -> bool {
        self.errors
            .iter()
            .filter_map(|e| e.exception_name.as_deref())
            .any(|name| name.contains(fragment))
    }

    /// The messages, `context: message`, joined by `; `.
    pub(crate) fn messages(&self) -> String {
        self.errors
            .iter()
            .filter_map(|e| {
                let message = e.message.as_deref().map(str::trim).filter(|m| !m.is_empty())?;
                Some(match e.context.as_deref().filter(|c| !c.is_empty()) {
                    Some(context) => format!("{context}: {message}"),
                    None => message.to_owned(),
                })
            })
            .collect::<Vec<_>>()
            .join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the document's "Paged APIs" section (its `/* result n */` comments removed).
    #[test]
    fn the_documented_page_example_is_read() {
        let page: Page<serde_json::Value> = serde_json::from_str(
            r#"{"size": 3, "limit": 3, "isLastPage": false, "values": [{}, {}, {}],
                "start": 0, "filter": null, "nextPageStart": 3}"#,
        )
        .unwrap();
        assert_eq!(page.values.len(), 3);
        assert_eq!((page.size, page.limit, page.start), (Some(3), Some(3), Some(0)));
        assert!(!page.is_last());
        assert_eq!(page.next_page_start, Some(3));
    }

    #[test]
    fn a_page_without_is_last_page_ends_when_there_is_no_next_start() {
        let page: Page<String> = serde_json::from_str(r#"{"values": ["a"]}"#).unwrap();
        assert!(page.is_last());
        let page: Page<String> = serde_json::from_str(r#"{"values": [], "nextPageStart": 7}"#).unwrap();
        assert!(!page.is_last());
    }

    /// The `/files` answer: a page of path strings (`FileListResource`).
    #[test]
    fn a_files_page_is_a_page_of_strings() {
        let page: Page<String> = serde_json::from_str(
            r#"{"size":2,"limit":2,"isLastPage":true,"start":0,"values":["a.json","dir/b c.hck.json"]}"#,
        )
        .unwrap();
        assert_eq!(page.values, ["a.json", "dir/b c.hck.json"]);
        assert!(page.is_last());
    }

    /// `RestMinimalRef`'s documented examples.
    #[test]
    fn the_default_branch_answer_is_read() {
        let r: RestMinimalRef =
            serde_json::from_str(r#"{"displayId": "master", "id": "refs/heads/master", "type": "BRANCH"}"#).unwrap();
        assert_eq!(r.id, "refs/heads/master");
    }

    /// `RestChange` with every documented example value.
    #[test]
    fn a_change_with_the_documented_examples_is_read() {
        let change: RestChange = serde_json::from_str(
            r#"{
                "contentId": "abcdef0123abcdef4567abcdef8987abcdef6543",
                "executable": false,
                "fromContentId": "bcdef0123abcdef4567abcdef8987abcdef6543a",
                "links": {},
                "nodeType": "FILE",
                "path": {"components": ["path", "to", "file.txt"], "extension": "txt",
                         "name": "file.txt", "parent": "path/to", "toString": "path/to/file.txt"},
                "percentUnchanged": 98,
                "srcExecutable": false,
                "srcPath": {"components": ["path", "to", "old.txt"], "extension": "txt",
                            "name": "old.txt", "parent": "path/to"},
                "type": "MOVE"
            }"#,
        )
        .unwrap();
        assert_eq!(change.change_type, Some(ChangeType::Move));
        assert_eq!(change.node_type, Some(NodeType::File));
        assert_eq!(change.path.unwrap().repo_path().as_deref(), Some("path/to/file.txt"));
        assert_eq!(change.src_path.unwrap().repo_path().as_deref(), Some("path/to/old.txt"));
    }

    #[test]
    fn unknown_change_and_node_types_are_kept_apart() {
        let change: RestChange =
            serde_json::from_str(r#"{"type": "UNKNOWN", "nodeType": "SYMLINK", "path": {"toString": "x"}}"#).unwrap();
        assert_eq!(change.change_type, Some(ChangeType::Unknown));
        assert_eq!(change.node_type, Some(NodeType::Other));
        let change: RestChange = serde_json::from_str(r#"{"type": "RENAME_AND_EDIT"}"#).unwrap();
        assert_eq!(change.change_type, Some(ChangeType::Unknown));
    }

    #[test]
    fn a_path_falls_back_to_to_string_then_parent_and_name() {
        let path: RestPath = serde_json::from_str(r#"{"toString": "a/b.json"}"#).unwrap();
        assert_eq!(path.repo_path().as_deref(), Some("a/b.json"));
        let path: RestPath = serde_json::from_str(r#"{"parent": "a", "name": "b.json"}"#).unwrap();
        assert_eq!(path.repo_path().as_deref(), Some("a/b.json"));
        let path: RestPath = serde_json::from_str(r#"{"parent": "", "name": "b.json"}"#).unwrap();
        assert_eq!(path.repo_path().as_deref(), Some("b.json"));
        let path: RestPath = serde_json::from_str(r#"{"parent": "a"}"#).unwrap();
        assert_eq!(path.repo_path(), None);
    }

    /// The examples of the document's "Errors & Validation" section.
    #[test]
    fn the_documented_error_bodies_are_read() {
        let body = ErrorBody::parse(
            br#"{"errors": [
                {"context": "name", "message": "The name should be between 1 and 255 characters.", "exceptionName": null},
                {"context": "email", "message": "The email should be a valid email address.", "exceptionName": null}
            ]}"#,
        );
        assert_eq!(
            body.messages(),
            "name: The name should be between 1 and 255 characters.; email: The email should be a valid email address."
        );
        let body = ErrorBody::parse(
            br#"{"errors": [{"context": null, "message": "A detailed error message.", "exceptionName": null}]}"#,
        );
        assert_eq!(body.messages(), "A detailed error message.");
        assert!(!body.has_exception("NoSuchRepository"));
    }

    #[test]
    fn exception_names_are_matched_and_non_json_bodies_are_empty() {
        let body = ErrorBody::parse(
            br#"{"errors":[{"context":null,"message":"Repository DATA/x does not exist.","exceptionName":"com.atlassian.bitbucket.repository.NoSuchRepositoryException"}]}"#,
        );
        assert!(body.has_exception("NoSuchRepositoryException"));
        assert!(ErrorBody::parse(b"<html>Bad gateway</html>").errors.is_empty());
    }
}
