//! URL building. Every URL the client requests is the configured base URL (which may carry a
//! context path, `https://host/bitbucket`) followed by
//! `rest/api/latest/projects/{projectKey}/repos/{repositorySlug}/...`, each segment
//! percent-encoded. Nothing here takes a URL from elsewhere (a webhook payload, a `Location`
//! header, a `links` field of an answer): the host only ever sees URLs built from the base URL,
//! the repository, commit ids and file paths.

use hubsync_core::ids::RepoRef;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use url::Url;

use crate::error::ClientBuildError;

/// Everything except RFC 3986's unreserved characters (`A-Z a-z 0-9 - . _ ~`) is encoded: `/`
/// inside a segment, `;` (a path parameter for the servlet container), `%`, `?`, `#`, `+`,
/// spaces and every non-ASCII character (as its UTF-8 bytes).
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// The REST API root: `<base URL>/rest/api/latest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiRoot {
    /// The base URL as configured, without a trailing slash, for `Debug` and errors.
    base: String,
    /// The base URL with its path ending in `/rest/api/latest` (no trailing slash).
    root: Url,
}

/// A path segment that cannot be put in a URL: empty, `.` or `..` (a URL parser would remove
/// or collapse it, so the request would name another resource).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} {value:?} cannot be used in a URL (empty, `.` or `..` segment)")]
pub(crate) struct InvalidSegment {
    pub what: &'static str,
    pub value: String,
}

impl ApiRoot {
    /// Checks the base URL: `http` or `https`, a host, no user name or password, no query or
    /// fragment. The error never repeats the URL (it might hold a password).
    pub(crate) fn parse(base_url: &str) -> Result<Self, ClientBuildError> {
        let invalid = |reason: &str| ClientBuildError::BaseUrl(reason.to_owned());
        let url = Url::parse(base_url.trim()).map_err(|e| invalid(&e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(invalid("the scheme must be http or https"));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(invalid("a host is required"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(invalid("it must not contain a user name or password"));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(invalid("it must not contain a query or a fragment"));
        }
        let context_path = url.path().trim_end_matches('/').to_owned();
        let mut root = url;
        root.set_path(&format!("{context_path}/rest/api/latest"));
        let mut base = root.clone();
        base.set_path(&context_path);
        Ok(Self {
            base: base.as_str().trim_end_matches('/').to_owned(),
            root,
        })
    }

    /// The base URL as configured (normalized, without a trailing slash).
    pub(crate) fn base(&self) -> &str {
        &self.base
    }

    /// `<root>/{segments...}`, each segment encoded (`["projects", key, "webhooks"]`).
    pub(crate) fn url(&self, segments: &[&str]) -> Result<Url, InvalidSegment> {
        let mut path = self.root.path().to_owned();
        for segment in segments {
            path.push('/');
            push_segment(&mut path, "path segment", segment)?;
        }
        let mut url = self.root.clone();
        url.set_path(&path);
        Ok(url)
    }

    /// `<root>/projects/{project}/repos/{slug}/{resource...}`, each part of `resource` being one
    /// segment (encoded, so it may contain `/` only if that is meant as data).
    pub(crate) fn repo_url(&self, repo: &RepoRef, resource: &[&str]) -> Result<Url, InvalidSegment> {
        let mut path = self.root.path().to_owned();
        for (what, segment) in [
            ("", "projects"),
            ("project key", repo.project()),
            ("", "repos"),
            ("repository slug", repo.slug()),
        ]
        .into_iter()
        .chain(resource.iter().map(|s| ("path segment", *s)))
        {
            path.push('/');
            push_segment(&mut path, what, segment)?;
        }
        let mut url = self.root.clone();
        url.set_path(&path);
        Ok(url)
    }
}

fn push_segment(out: &mut String, what: &'static str, segment: &str) -> Result<(), InvalidSegment> {
    if matches!(segment, "" | "." | "..") {
        return Err(InvalidSegment {
            what,
            value: segment.to_owned(),
        });
    }
    out.extend(utf8_percent_encode(segment, SEGMENT));
    Ok(())
}

/// The segments of a file path from the repository root (`/`-separated, no leading slash).
pub(crate) fn file_segments(path: &str) -> Result<Vec<&str>, InvalidSegment> {
    let segments: Vec<&str> = path.split('/').collect();
    match segments.iter().find(|s| matches!(**s, "" | "." | "..")) {
        Some(bad) => Err(InvalidSegment {
            what: "file path segment",
            value: (*bad).to_owned(),
        }),
        None => Ok(segments),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use percent_encoding::percent_decode_str;
    use proptest::prelude::*;

    fn repo(s: &str) -> RepoRef {
        RepoRef::parse(s).expect("valid repository in test")
    }

    #[test]
    fn repository_urls_live_under_rest_api_latest() {
        let api = ApiRoot::parse("https://bitbucket.example.com").unwrap();
        let url = api.repo_url(&repo("DATA/models"), &["default-branch"]).unwrap();
        assert_eq!(
            url.as_str(),
            "https://bitbucket.example.com/rest/api/latest/projects/DATA/repos/models/default-branch"
        );
    }

    #[test]
    fn a_context_path_is_kept_with_or_without_a_trailing_slash() {
        for base in [
            "https://host:8443/bitbucket",
            "https://host:8443/bitbucket/",
            " https://host:8443/bitbucket// ",
        ] {
            let api = ApiRoot::parse(base).unwrap();
            assert_eq!(api.base(), "https://host:8443/bitbucket");
            let url = api.repo_url(&repo("DATA/models"), &["files"]).unwrap();
            assert_eq!(
                url.as_str(),
                "https://host:8443/bitbucket/rest/api/latest/projects/DATA/repos/models/files"
            );
        }
    }

    #[test]
    fn personal_project_keys_keep_their_tilde() {
        let api = ApiRoot::parse("http://127.0.0.1:7990").unwrap();
        let url = api.repo_url(&repo("~jdoe/sandbox"), &["changes"]).unwrap();
        assert_eq!(url.path(), "/rest/api/latest/projects/~jdoe/repos/sandbox/changes");
    }

    #[test]
    fn file_path_segments_are_encoded_one_by_one() {
        let api = ApiRoot::parse("https://host").unwrap();
        let mut resource = vec!["raw"];
        resource.extend(file_segments("models/Modèle client/a;b?c#d%e+f.hck.json").unwrap());
        let url = api.repo_url(&repo("DATA/models"), &resource).unwrap();
        assert_eq!(
            url.path(),
            "/rest/api/latest/projects/DATA/repos/models/raw/models/Mod%C3%A8le%20client/a%3Bb%3Fc%23d%25e%2Bf.hck.json"
        );
        assert_eq!(url.query(), None);
    }

    #[test]
    fn dot_and_empty_segments_are_refused() {
        assert!(file_segments("a/../b").is_err());
        assert!(file_segments("./a").is_err());
        assert!(file_segments("/a").is_err());
        assert!(file_segments("a//b").is_err());
        assert!(file_segments("").is_err());
        assert_eq!(file_segments("a/.b/c..d").unwrap(), vec!["a", ".b", "c..d"]);
        let api = ApiRoot::parse("https://host").unwrap();
        assert!(api.repo_url(&repo("DATA/.."), &[]).is_err());
    }

    #[test]
    fn base_urls_with_credentials_or_other_schemes_are_refused_without_echoing_them() {
        for bad in [
            "ftp://host",
            "https://user:hunter2@host",
            "https://host?x=1",
            "https://host#f",
            "not a url",
            "",
        ] {
            let err = ApiRoot::parse(bad).unwrap_err().to_string();
            assert!(!err.contains("hunter2"), "{err}");
        }
    }

    proptest! {
        #[test]
        fn an_encoded_segment_decodes_to_itself_and_holds_only_unreserved_characters(s in "\\PC{1,40}") {
            prop_assume!(!matches!(s.as_str(), "." | ".."));
            let mut out = String::new();
            push_segment(&mut out, "test", &s).unwrap();
            prop_assert!(out.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~%".contains(&b)));
            prop_assert_eq!(percent_decode_str(&out).decode_utf8().unwrap(), s.as_str());
        }
    }
}
