//! `.hubignore`: a file at the repository root, in `.gitignore` syntax, listing models or folders
//! not to publish to the hub. Matching is delegated to the `ignore` crate (ripgrep's gitignore
//! implementation), so negations (`!keep.json`), anchored (`/drafts/`) and `**` patterns behave
//! exactly as in Git.

use ignore::gitignore::{Gitignore, GitignoreBuilder};

/// The path of the file, from the repository root.
pub const HUBIGNORE_PATH: &str = ".hubignore";

/// The parsed patterns of one `.hubignore`.
#[derive(Debug, Clone)]
pub struct HubIgnore {
    matcher: Option<Gitignore>,
    /// Lines that are not valid patterns, with their errors (reported, otherwise skipped).
    pub invalid_lines: Vec<String>,
}

impl HubIgnore {
    /// No patterns: everything is published.
    pub fn empty() -> Self {
        Self {
            matcher: None,
            invalid_lines: Vec::new(),
        }
    }

    /// Parses the file's text (UTF-8, lossily decoded).
    pub fn parse(content: &[u8]) -> Self {
        let text = String::from_utf8_lossy(content);
        let mut builder = GitignoreBuilder::new("/");
        let mut invalid_lines = Vec::new();
        for line in text.lines() {
            if let Err(e) = builder.add_line(None, line) {
                invalid_lines.push(format!("{line:?}: {e}"));
            }
        }
        match builder.build() {
            Ok(matcher) if matcher.num_ignores() + matcher.num_whitelists() > 0 => Self {
                matcher: Some(matcher),
                invalid_lines,
            },
            Ok(_) => Self {
                matcher: None,
                invalid_lines,
            },
            Err(e) => Self {
                matcher: None,
                invalid_lines: vec![e.to_string()],
            },
        }
    }

    /// Whether the file at `path` (repository-relative, `/`-separated) is excluded, by a pattern
    /// on the file itself or on any folder above it.
    pub fn is_ignored(&self, path: &str) -> bool {
        match &self.matcher {
            None => false,
            Some(m) => m
                .matched_path_or_any_parents(format!("/{}", path.trim_start_matches('/')), false)
                .is_ignore(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_files_and_globs_are_ignored() {
        let ig = HubIgnore::parse(b"# drafts are private\ndrafts/\n*.tmp.json\n/root-only.json\n");
        assert!(ig.is_ignored("drafts/a.json"));
        assert!(ig.is_ignored("x/drafts/deep/b.hck.json"));
        assert!(ig.is_ignored("sub/m.tmp.json"));
        assert!(ig.is_ignored("root-only.json"));
        assert!(!ig.is_ignored("sub/root-only.json"));
        assert!(!ig.is_ignored("models/a.json"));
    }

    #[test]
    fn negation_re_includes_a_file() {
        let ig = HubIgnore::parse(b"archive/*.json\n!archive/keep.json\n");
        assert!(ig.is_ignored("archive/old.json"));
        assert!(!ig.is_ignored("archive/keep.json"));
    }

    #[test]
    fn double_star_matches_any_depth() {
        let ig = HubIgnore::parse(b"**/generated/**\n");
        assert!(ig.is_ignored("a/b/generated/c/d.json"));
        assert!(!ig.is_ignored("a/b/c.json"));
    }

    #[test]
    fn an_empty_file_ignores_nothing() {
        assert!(!HubIgnore::parse(b"\n# only comments\n").is_ignored("a.json"));
        assert!(!HubIgnore::empty().is_ignored("a.json"));
    }
}
