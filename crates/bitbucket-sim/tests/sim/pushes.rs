//! Ref operations on real git, and the pushes they report.

use hubsync_bitbucket_sim::{FileOp, RefChangeType, RefType, SimError, ZERO_HASH};

use crate::helpers::spawn_sim;

#[tokio::test]
async fn the_first_commit_adds_the_branch_and_the_next_updates_it() {
    let app = spawn_sim(1000, 1000).await;
    let repo = app.sim.create_repo("PROJ", "models").expect("repo");

    let first = repo.commit_files("main", [("a.json", "{}")], "First").expect("commit");
    let second = repo.commit_files("main", [("a.json", "[]")], "Second").expect("commit");

    let add = &first.changes[0];
    assert_eq!(add.change_type, RefChangeType::Add);
    assert_eq!(add.ref_id, "refs/heads/main");
    assert_eq!(add.ref_.display_id, "main");
    assert_eq!(add.ref_.ref_type, RefType::Branch);
    assert_eq!(add.from_hash, ZERO_HASH);
    let update = &second.changes[0];
    assert_eq!(update.change_type, RefChangeType::Update);
    assert_eq!(update.from_hash, add.to_hash);
    assert_eq!(
        repo.head("main").expect("head").as_deref(),
        Some(update.to_hash.as_str())
    );
    assert_eq!(repo.read_file("main", "a.json").expect("read"), Some(b"[]".to_vec()));
}

#[tokio::test]
async fn any_branch_can_be_committed_to_without_a_work_tree() {
    let app = spawn_sim(1000, 1000).await;
    let repo = app.sim.create_repo("PROJ", "models").expect("repo");
    let main = repo.commit_files("main", [("a.json", "main")], "Main").expect("commit");
    repo.create_branch("feature/x", "main").expect("branch");

    let feature = repo
        .commit_files("feature/x", [("b.json", "feature")], "Feature")
        .expect("commit");

    assert_eq!(repo.head("main").expect("head").as_deref(), main.to_hash());
    assert_eq!(repo.files("feature/x").expect("files"), ["a.json", "b.json"]);
    assert_eq!(repo.files("main").expect("files"), ["a.json"]);
    assert_eq!(feature.changes[0].ref_id, "refs/heads/feature/x");
    assert_eq!(repo.branches().expect("branches"), ["feature/x", "main"]);
}

#[tokio::test]
async fn branches_and_tags_are_created_and_deleted_with_zero_hashes() {
    let app = spawn_sim(1000, 1000).await;
    let repo = app.sim.create_repo("PROJ", "models").expect("repo");
    let head = repo
        .commit_files("main", [("a.json", "{}")], "First")
        .expect("commit")
        .to_hash()
        .expect("commit")
        .to_owned();

    let created = repo.create_branch("release", &head).expect("branch");
    let deleted = repo.delete_branch("release").expect("deleted");
    let tagged = repo.tag("v1", "main").expect("tag");
    let annotated = repo.annotated_tag("v1-annotated", "main", "Release 1").expect("tag");
    let untagged = repo.delete_tag("v1").expect("deleted");

    assert_eq!(created.changes[0].change_type, RefChangeType::Add);
    assert_eq!(created.changes[0].to_hash, head);
    assert_eq!(deleted.changes[0].change_type, RefChangeType::Delete);
    assert_eq!(deleted.changes[0].from_hash, head);
    assert_eq!(deleted.changes[0].to_hash, ZERO_HASH);
    assert_eq!(tagged.changes[0].ref_id, "refs/tags/v1");
    assert_eq!(tagged.changes[0].ref_.ref_type, RefType::Tag);
    assert_eq!(tagged.changes[0].to_hash, head);
    assert_ne!(annotated.changes[0].to_hash, head, "the tag object, not the commit");
    assert_eq!(
        repo.resolve("v1-annotated").expect("resolve").as_deref(),
        Some(head.as_str())
    );
    assert_eq!(untagged.changes[0].change_type, RefChangeType::Delete);
    assert!(repo.head("release").expect("head").is_none());
}

#[tokio::test]
async fn force_push_moves_a_branch_back_or_to_an_unrelated_history() {
    let app = spawn_sim(1000, 1000).await;
    let repo = app.sim.create_repo("PROJ", "models").expect("repo");
    let old = repo
        .commit_files("main", [("a.json", "1")], "One")
        .expect("commit")
        .to_hash()
        .expect("commit")
        .to_owned();
    let new = repo
        .commit_files("main", [("a.json", "2")], "Two")
        .expect("commit")
        .to_hash()
        .expect("commit")
        .to_owned();
    let unrelated = repo
        .write_commit(None, &[FileOp::write("other.json", "{}")], "Unrelated root")
        .expect("commit object");

    let back = repo.force_push("main", &old).expect("force push");
    let away = repo.force_push("main", &unrelated).expect("force push");
    let same = repo.force_push("main", &unrelated).expect("force push");

    assert_eq!(back.changes[0].change_type, RefChangeType::Update);
    assert_eq!(
        (back.changes[0].from_hash.as_str(), back.changes[0].to_hash.as_str()),
        (new.as_str(), old.as_str())
    );
    assert_eq!(away.changes[0].to_hash, unrelated);
    assert_eq!(repo.files("main").expect("files"), ["other.json"]);
    assert!(same.is_empty(), "nothing moved");
}

#[tokio::test]
async fn invalid_operations_are_refused() {
    let app = spawn_sim(1000, 1000).await;
    let repo = app.sim.create_repo("PROJ", "models").expect("repo");
    repo.commit_files("main", [("a.json", "{}")], "First").expect("commit");

    assert!(matches!(
        repo.commit("main", &[FileOp::delete("missing.json")], "x"),
        Err(SimError::InvalidPath { .. })
    ));
    assert!(matches!(
        repo.commit("main", &[FileOp::rename("missing.json", "b.json")], "x"),
        Err(SimError::InvalidPath { .. })
    ));
    assert!(matches!(
        repo.commit("main", &[FileOp::write("../escape", "x")], "x"),
        Err(SimError::InvalidPath { .. })
    ));
    assert!(matches!(
        repo.commit("bad..branch", &[], "x"),
        Err(SimError::InvalidRefName(_))
    ));
    assert!(matches!(
        repo.create_branch("main", "main"),
        Err(SimError::RefExists(_))
    ));
    assert!(matches!(
        repo.create_branch("x", "nonexistent"),
        Err(SimError::NoSuchRef(_))
    ));
    assert!(matches!(
        app.sim.create_repo("proj", "Models"),
        Err(SimError::RepositoryExists { .. })
    ));
    assert_eq!(
        repo.files("main").expect("files"),
        ["a.json"],
        "failed commits change nothing"
    );
}

#[tokio::test]
async fn a_file_can_replace_a_directory_and_a_directory_a_file() {
    let app = spawn_sim(1000, 1000).await;
    let repo = app.sim.create_repo("PROJ", "models").expect("repo");
    repo.commit_files("main", [("x/inner.json", "{}"), ("y", "file")], "First")
        .expect("commit");

    repo.commit(
        "main",
        &[
            FileOp::delete("x/inner.json"),
            FileOp::write("x", "now a file"),
            FileOp::write("y/inner.json", "now a dir"),
        ],
        "Swap",
    )
    .expect("commit");

    assert_eq!(repo.files("main").expect("files"), ["x", "y/inner.json"]);
}
