//! How one Bitbucket `RestChange` becomes a domain [`FileChange`].
//!
//! - Only files matter: `DIRECTORY` and `SUBMODULE` entries are skipped. A change without a
//!   `nodeType`, or with one this client does not know, is taken as a file: listing a path that
//!   holds no model costs one read, missing a model would leave it stale.
//! - `ADD`, `MODIFY`, `DELETE` map one to one; `MOVE` and `COPY` carry their `srcPath` as `from`.
//! - `UNKNOWN`, and any type a later server may add, is taken as `MODIFY`: the sync then reads the
//!   file again, which is right whatever happened to it (a missing file reads as deleted).
//! - A change this client cannot describe completely (no path, or a `MOVE` without `srcPath`, so
//!   the old path would never be removed) makes the list incomplete: the caller marks the
//!   [`ChangeSet`](hubsync_core::ports::ChangeSet) truncated and the sync falls back to a full one.

use hubsync_core::ports::{FileChange, FileChangeKind};

use crate::json::{ChangeType, NodeType, RestChange};

/// What became of one `RestChange`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Mapped {
    Change(FileChange),
    /// A directory or a submodule.
    NotAFile,
    /// Known only in part: the change that could be read, if any; the list is incomplete.
    Incomplete(Option<FileChange>),
}

pub(crate) fn map_change(change: &RestChange) -> Mapped {
    if matches!(change.node_type, Some(NodeType::Directory | NodeType::Submodule)) {
        return Mapped::NotAFile;
    }
    let Some(path) = change.path.as_ref().and_then(|p| p.repo_path()) else {
        return Mapped::Incomplete(None);
    };
    let from = change.src_path.as_ref().and_then(|p| p.repo_path());
    let kind = match (change.change_type.unwrap_or(ChangeType::Unknown), from) {
        (ChangeType::Add, _) => FileChangeKind::Add,
        (ChangeType::Delete, _) => FileChangeKind::Delete,
        (ChangeType::Modify | ChangeType::Unknown, _) => FileChangeKind::Modify,
        (ChangeType::Move, Some(from)) => FileChangeKind::Move { from },
        (ChangeType::Copy, Some(from)) => FileChangeKind::Copy { from },
        // The source of a copy still exists, so the copy is an addition.
        (ChangeType::Copy, None) => FileChangeKind::Add,
        (ChangeType::Move, None) => {
            return Mapped::Incomplete(Some(FileChange {
                path,
                kind: FileChangeKind::Add,
            }));
        }
    };
    Mapped::Change(FileChange { path, kind })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(json: &str) -> Mapped {
        map_change(&serde_json::from_str(json).expect("valid RestChange in test"))
    }

    fn file(path: &str, kind: FileChangeKind) -> Mapped {
        Mapped::Change(FileChange {
            path: path.into(),
            kind,
        })
    }

    #[test]
    fn simple_changes_map_one_to_one() {
        for (ty, kind) in [
            ("ADD", FileChangeKind::Add),
            ("MODIFY", FileChangeKind::Modify),
            ("DELETE", FileChangeKind::Delete),
        ] {
            let json = format!(r#"{{"type":"{ty}","nodeType":"FILE","path":{{"components":["m","a.json"]}}}}"#);
            assert_eq!(change(&json), file("m/a.json", kind));
        }
    }

    #[test]
    fn moves_and_copies_carry_their_source() {
        assert_eq!(
            change(r#"{"type":"MOVE","path":{"components":["new.json"]},"srcPath":{"components":["old","x.json"]}}"#),
            file(
                "new.json",
                FileChangeKind::Move {
                    from: "old/x.json".into()
                }
            )
        );
        assert_eq!(
            change(r#"{"type":"COPY","path":{"components":["b.json"]},"srcPath":{"components":["a.json"]}}"#),
            file("b.json", FileChangeKind::Copy { from: "a.json".into() })
        );
    }

    #[test]
    fn unknown_types_are_modifications() {
        assert_eq!(
            change(r#"{"type":"UNKNOWN","path":{"components":["a.json"]}}"#),
            file("a.json", FileChangeKind::Modify)
        );
        assert_eq!(
            change(r#"{"type":"TELEPORT","path":{"components":["a.json"]}}"#),
            file("a.json", FileChangeKind::Modify)
        );
        assert_eq!(
            change(r#"{"path":{"components":["a.json"]}}"#),
            file("a.json", FileChangeKind::Modify)
        );
    }

    #[test]
    fn directories_and_submodules_are_skipped_but_unknown_node_types_are_files() {
        assert_eq!(
            change(r#"{"type":"ADD","nodeType":"DIRECTORY","path":{"components":["d"]}}"#),
            Mapped::NotAFile
        );
        assert_eq!(
            change(r#"{"type":"ADD","nodeType":"SUBMODULE","path":{"components":["lib"]}}"#),
            Mapped::NotAFile
        );
        assert_eq!(
            change(r#"{"type":"ADD","nodeType":"SYMLINK","path":{"components":["l.json"]}}"#),
            file("l.json", FileChangeKind::Add)
        );
    }

    #[test]
    fn a_move_without_its_source_or_a_change_without_a_path_is_incomplete() {
        assert_eq!(
            change(r#"{"type":"MOVE","path":{"components":["new.json"]}}"#),
            Mapped::Incomplete(Some(FileChange {
                path: "new.json".into(),
                kind: FileChangeKind::Add
            }))
        );
        assert_eq!(change(r#"{"type":"ADD","nodeType":"FILE"}"#), Mapped::Incomplete(None));
        assert_eq!(
            change(r#"{"type":"COPY","path":{"components":["b.json"]}}"#),
            file("b.json", FileChangeKind::Add)
        );
    }
}
