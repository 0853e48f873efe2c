//! `/changes`: what git computes, as Bitbucket reports it, paged and capped.

use hubsync_bitbucket_sim::{FileOp, ZERO_HASH};
use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{blob_id, error_of, spawn_sim};

/// Twenty distinct lines, so rename and copy detection have something to compare.
fn lines(tag: &str) -> Vec<u8> {
    (0..20)
        .map(|i| format!("{{\"{tag}\": {i}, \"padding\": \"line {i} of {tag}\"}}\n"))
        .collect::<String>()
        .into_bytes()
}

fn change<'a>(changes: &'a [Value], path: &str) -> &'a Value {
    changes
        .iter()
        .find(|c| c["path"]["toString"] == path)
        .unwrap_or_else(|| panic!("no change of {path} in {changes:?}"))
}

#[tokio::test]
async fn a_commit_that_adds_modifies_deletes_moves_and_copies_is_reported_change_by_change() {
    // Arrange
    let app = spawn_sim(1000, 1000).await;
    let repo = app.sim.create_repo("PROJ", "models").expect("repo");
    repo.commit(
        "main",
        &[
            FileOp::write("keep.json", lines("keep")),
            FileOp::write("gone.json", lines("gone")),
            FileOp::write("old dir/moved.hck.json", lines("moved")),
            FileOp::write("source.json", lines("source")),
        ],
        "Initial",
    )
    .expect("first commit");
    let mut source_changed = lines("source");
    source_changed.extend_from_slice(b"{\"extra\": true}\n");
    let push = repo
        .commit(
            "main",
            &[
                FileOp::write("keep.json", lines("kept and changed")),
                FileOp::delete("gone.json"),
                FileOp::rename("old dir/moved.hck.json", "new dir/ünï cödé.hck.json"),
                FileOp::write("source.json", source_changed),
                FileOp::write("copy.json", lines("source")),
                FileOp::write("added.json", lines("added")),
            ],
            "Second",
        )
        .expect("second commit");
    let until = push.to_hash().expect("commit").to_owned();
    let parent = push.changes[0].from_hash.clone();

    // Act
    let (status, page) = app
        .get_json(&format!("{}/changes?until={until}", app.repo_path(&repo)))
        .await;

    // Assert
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["fromHash"], parent.as_str());
    assert_eq!(page["toHash"], until.as_str());
    let changes = page["values"].as_array().expect("values").clone();
    assert_eq!(changes.len(), 6, "{changes:#?}");

    let modified = change(&changes, "keep.json");
    assert_eq!(modified["type"], "MODIFY");
    assert_eq!(modified["contentId"], blob_id(&repo, &until, "keep.json"));
    assert_eq!(modified["fromContentId"], blob_id(&repo, &parent, "keep.json"));
    assert_eq!(modified["nodeType"], "FILE");
    assert_eq!(modified["percentUnchanged"], -1);

    let deleted = change(&changes, "gone.json");
    assert_eq!(deleted["type"], "DELETE");
    assert_eq!(deleted["contentId"], ZERO_HASH);
    assert_eq!(deleted["fromContentId"], blob_id(&repo, &parent, "gone.json"));

    let moved = change(&changes, "new dir/ünï cödé.hck.json");
    assert_eq!(moved["type"], "MOVE");
    assert_eq!(moved["srcPath"]["toString"], "old dir/moved.hck.json");
    assert_eq!(moved["percentUnchanged"], 100);
    assert_eq!(moved["properties"]["gitChangeType"], "RENAME");
    assert_eq!(
        moved["path"],
        serde_json::json!({
            "components": ["new dir", "ünï cödé.hck.json"],
            "parent": "new dir",
            "name": "ünï cödé.hck.json",
            "extension": "json",
            "toString": "new dir/ünï cödé.hck.json",
        })
    );

    let copied = change(&changes, "copy.json");
    assert_eq!(copied["type"], "COPY");
    assert_eq!(copied["srcPath"]["toString"], "source.json");

    let added = change(&changes, "added.json");
    assert_eq!(added["type"], "ADD");
    assert_eq!(added["fromContentId"], ZERO_HASH);
    assert_eq!(added["contentId"], blob_id(&repo, &until, "added.json"));
    assert!(added.get("srcPath").is_none());
}

#[tokio::test]
async fn without_since_a_root_commit_is_compared_with_nothing() {
    let app = spawn_sim(1000, 1000).await;
    let repo = app.sim.create_repo("PROJ", "models").expect("repo");
    let push = repo
        .commit_files("main", [("a.json", "{}"), ("b/c.json", "[]")], "Root")
        .expect("commit");

    let (status, page) = app
        .get_json(&format!(
            "{}/changes?until={}",
            app.repo_path(&repo),
            push.to_hash().expect("commit")
        ))
        .await;

    assert_eq!(status, StatusCode::OK);
    let types: Vec<&str> = page["values"]
        .as_array()
        .expect("values")
        .iter()
        .map(|c| c["type"].as_str().expect("type"))
        .collect();
    assert_eq!(types, ["ADD", "ADD"]);
    assert!(page.get("fromHash").is_none());
}

#[tokio::test]
async fn since_compares_any_two_commits_and_accepts_branch_names() {
    let app = spawn_sim(1000, 1000).await;
    let repo = app.sim.create_repo("PROJ", "models").expect("repo");
    let first = repo.commit_files("main", [("a.json", "1")], "One").expect("commit");
    repo.commit_files("main", [("b.json", "2")], "Two").expect("commit");
    repo.commit_files("main", [("c.json", "3")], "Three").expect("commit");

    let (status, page) = app
        .get_json(&format!(
            "{}/changes?since={}&until=refs/heads/main",
            app.repo_path(&repo),
            first.to_hash().expect("commit")
        ))
        .await;

    assert_eq!(status, StatusCode::OK, "{page}");
    let paths: Vec<&str> = page["values"]
        .as_array()
        .expect("values")
        .iter()
        .map(|c| c["path"]["toString"].as_str().expect("path"))
        .collect();
    assert_eq!(paths, ["b.json", "c.json"]);
}

#[tokio::test]
async fn paging_with_page_size_two_follows_next_page_start_to_the_end() {
    // Arrange
    let app = spawn_sim(2, 1000).await;
    let repo = app.sim.create_repo("PROJ", "models").expect("repo");
    let files: Vec<(String, String)> = (0..7)
        .map(|i| (format!("m{i}.hck.json"), format!("{{\"n\": {i}}}")))
        .collect();
    let push = repo.commit_files("main", files, "Seven").expect("commit");

    // Act
    let (values, pages) = app
        .get_all_pages(&format!(
            "{}/changes?until={}",
            app.repo_path(&repo),
            push.to_hash().expect("commit")
        ))
        .await;

    // Assert
    assert_eq!(pages.len(), 4);
    for page in &pages {
        assert_eq!(page["limit"], 2, "the server caps the requested limit of 100");
    }
    assert_eq!(pages[0]["nextPageStart"], 2);
    assert!(pages[3].get("nextPageStart").is_none());
    assert_eq!(pages[3]["size"], 1);
    let paths: Vec<String> = values
        .iter()
        .map(|c| c["path"]["toString"].as_str().expect("path").to_owned())
        .collect();
    let expected: Vec<String> = (0..7).map(|i| format!("m{i}.hck.json")).collect();
    assert_eq!(paths, expected);
}

#[tokio::test]
async fn no_more_than_max_changes_are_ever_reported() {
    // Arrange
    let app = spawn_sim(2, 5).await;
    let repo = app.sim.create_repo("PROJ", "models").expect("repo");
    let files: Vec<(String, String)> = (0..8).map(|i| (format!("f{i}"), i.to_string())).collect();
    let push = repo.commit_files("main", files, "Eight").expect("commit");
    let changes = format!(
        "{}/changes?until={}",
        app.repo_path(&repo),
        push.to_hash().expect("commit")
    );

    // Act
    let (values, pages) = app.get_all_pages(&changes).await;
    let (status, beyond) = app.get_json(&format!("{changes}&start=5")).await;

    // Assert
    assert_eq!(values.len(), 5);
    assert_eq!(pages.last().expect("a page")["isLastPage"], true);
    assert_eq!(status, StatusCode::OK);
    assert_eq!(beyond["values"], serde_json::json!([]));
    assert_eq!(beyond["isLastPage"], true);
}

#[tokio::test]
async fn unknown_commits_and_a_missing_until_are_errors() {
    let app = spawn_sim(1000, 1000).await;
    let repo = app.sim.create_repo("PROJ", "models").expect("repo");
    repo.commit_files("main", [("a", "1")], "One").expect("commit");
    let base = format!("{}/changes", app.repo_path(&repo));

    let (missing_status, missing) = app.get_json(&format!("{base}?until={}", "f".repeat(40))).await;
    let (option_status, _) = app.get_json(&format!("{base}?until=--all")).await;
    let (since_status, _) = app.get_json(&format!("{base}?until=main&since=nonexistent")).await;
    let (no_until_status, no_until) = app.get_json(&base).await;

    assert_eq!(missing_status, StatusCode::NOT_FOUND);
    assert_eq!(
        error_of(&missing).0,
        "com.atlassian.bitbucket.commit.NoSuchCommitException"
    );
    assert_eq!(option_status, StatusCode::NOT_FOUND);
    assert_eq!(since_status, StatusCode::NOT_FOUND);
    assert_eq!(no_until_status, StatusCode::BAD_REQUEST);
    assert_eq!(no_until["errors"][0]["context"], "until");
}
