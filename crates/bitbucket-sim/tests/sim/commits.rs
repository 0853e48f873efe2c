//! `/commits`: a branch's history as pages of `RestCommit`, newest first, between two
//! revisions, for a path, with or without merges; and what an empty repository answers.

use hubsync_bitbucket_sim::{FileOp, Repo};
use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{TOKEN, error_of, spawn_sim};

/// Commits `n` changes of `a.json` to `main`; their ids, oldest first.
fn history(repo: &Repo, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            let push = repo
                .commit_files("main", [("a.json", format!("{{\"v\": {i}}}"))], &format!("Commit {i}"))
                .expect("commit");
            push.to_hash().expect("commit").to_owned()
        })
        .collect()
}

fn ids(values: &[Value]) -> Vec<String> {
    values
        .iter()
        .map(|c| c["id"].as_str().expect("id").to_owned())
        .collect()
}

fn newest_first(commits: &[String]) -> Vec<String> {
    commits.iter().rev().cloned().collect()
}

/// Runs git on the bare repository (for what the simulator's API does not make: merges).
fn git(repo: &Repo, args: &[&str]) -> String {
    let output = std::process::Command::new("git")
        .arg("--git-dir")
        .arg(repo.git_dir())
        .args(args)
        .env("GIT_AUTHOR_NAME", "Merger")
        .env("GIT_AUTHOR_EMAIL", "merger@example.com")
        .env("GIT_COMMITTER_NAME", "Merger")
        .env("GIT_COMMITTER_EMAIL", "merger@example.com")
        .output()
        .expect("git runs");
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout).expect("utf-8").trim().to_owned()
}

#[tokio::test]
async fn the_default_branch_history_is_paged_newest_first() {
    // Arrange
    let app = spawn_sim(2, 1000).await;
    let repo = app.sim.create_repo("PROJ", "models").expect("repo");
    let commits = history(&repo, 5);
    let url = format!("{}/commits", app.repo_path(&repo));

    // Act
    let (all, pages) = app.get_all_pages(&url).await;
    let (status, middle) = app.get_json(&format!("{url}?start=2&limit=2")).await;
    let (_, last) = app.get_json(&format!("{url}?start=4")).await;
    let (_, past) = app.get_json(&format!("{url}?start=9")).await;

    // Assert
    assert_eq!(ids(&all), newest_first(&commits));
    assert_eq!(pages.len(), 3);
    assert!(pages.iter().all(|p| p["limit"] == 2));
    assert_eq!(status, StatusCode::OK);
    assert_eq!(middle["size"], 2);
    assert_eq!(middle["start"], 2);
    assert_eq!(middle["isLastPage"], false);
    assert_eq!(middle["nextPageStart"], 4);
    assert_eq!(
        ids(middle["values"].as_array().expect("values")),
        [commits[2].as_str(), commits[1].as_str()]
    );
    assert_eq!(last["size"], 1);
    assert_eq!(last["isLastPage"], true);
    assert!(last.get("nextPageStart").is_none(), "{last}");
    assert_eq!(ids(last["values"].as_array().expect("values")), [commits[0].as_str()]);
    assert_eq!(past["values"], serde_json::json!([]));
    assert_eq!(past["isLastPage"], true);
}

#[tokio::test]
async fn until_is_a_commit_id_a_full_ref_or_a_branch_name_and_values_are_rest_commits() {
    // Arrange
    let app = spawn_sim(1000, 1000).await;
    let repo = app.sim.create_repo("PROJ", "models").expect("repo");
    let commits = history(&repo, 3);
    let feature = repo
        .commit_files("feature/x", [("f.json", "{}")], "Unrelated root")
        .expect("commit");
    let feature_head = feature.to_hash().expect("commit");
    let base = app.repo_path(&repo);
    let latest = format!("/rest/api/latest/projects/PROJ/repos/{}", repo.slug());

    // Act
    // What hubsync's Bitbucket client sends to read the head of the default branch.
    let (head_status, head) = app
        .get_json(&format!("{latest}/commits?until=refs%2Fheads%2Fmain&limit=1"))
        .await;
    let (_, by_ref) = app.get_json(&format!("{base}/commits?until=refs/heads/main")).await;
    let (_, by_name) = app.get_json(&format!("{base}/commits?until=main")).await;
    let (_, by_id) = app.get_json(&format!("{base}/commits?until={}", commits[1])).await;
    let (_, other) = app.get_json(&format!("{base}/commits?until=feature/x")).await;
    let (_, single) = app.get_json(&format!("{base}/commits/{}", commits[2])).await;

    // Assert
    assert_eq!(head_status, StatusCode::OK);
    assert_eq!(head["size"], 1);
    assert_eq!(head["values"][0]["id"], commits[2]);
    assert_eq!(head["values"][0], single, "the same RestCommit as commits/{{id}}");
    assert_eq!(head["values"][0]["parents"][0]["id"], commits[1]);
    assert_eq!(
        ids(by_ref["values"].as_array().expect("values")),
        newest_first(&commits)
    );
    assert_eq!(by_name["values"], by_ref["values"]);
    assert_eq!(
        ids(by_id["values"].as_array().expect("values")),
        [commits[1].as_str(), commits[0].as_str()]
    );
    assert_eq!(ids(other["values"].as_array().expect("values")), [feature_head]);
}

#[tokio::test]
async fn since_excludes_the_commits_reachable_from_it() {
    let app = spawn_sim(1000, 1000).await;
    let repo = app.sim.create_repo("PROJ", "models").expect("repo");
    let commits = history(&repo, 4);
    repo.create_branch("release", &commits[1]).expect("branch");
    let url = format!("{}/commits", app.repo_path(&repo));

    let (status, by_id) = app
        .get_json(&format!("{url}?since={}&until={}", commits[1], commits[3]))
        .await;
    let (_, by_ref) = app.get_json(&format!("{url}?since=release")).await;
    let (_, same) = app.get_json(&format!("{url}?since=main&until=main")).await;

    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        ids(by_id["values"].as_array().expect("values")),
        [commits[3].as_str(), commits[2].as_str()]
    );
    assert_eq!(by_ref["values"], by_id["values"]);
    assert_eq!(same["values"], serde_json::json!([]));
    assert_eq!(same["isLastPage"], true);
}

#[tokio::test]
async fn path_keeps_the_commits_touching_it_and_follow_renames_goes_past_a_move() {
    // Arrange
    let app = spawn_sim(1000, 1000).await;
    let repo = app.sim.create_repo("PROJ", "models").expect("repo");
    let id = |push: hubsync_bitbucket_sim::Push| push.to_hash().expect("commit").to_owned();
    let add = id(repo
        .commit_files("main", [("models/a b.json", "{\"one\": 1}")], "Add")
        .expect("commit"));
    let other = id(repo
        .commit_files("main", [("README.md", "x")], "Other")
        .expect("commit"));
    let moved = id(repo
        .commit(
            "main",
            &[FileOp::rename("models/a b.json", "models/ü/a b.json")],
            "Move",
        )
        .expect("commit"));
    let url = format!("{}/commits", app.repo_path(&repo));

    // Act
    let (_, file) = app.get_json(&format!("{url}?path=models/%C3%BC/a%20b.json")).await;
    let (_, followed) = app
        .get_json(&format!("{url}?path=models/%C3%BC/a%20b.json&followRenames=true"))
        .await;
    let (_, directory) = app.get_json(&format!("{url}?path=models")).await;
    let (_, readme) = app.get_json(&format!("{url}?path=README.md")).await;
    let (_, nothing) = app.get_json(&format!("{url}?path=nothing.json")).await;

    // Assert
    assert_eq!(ids(file["values"].as_array().expect("values")), [moved.as_str()]);
    assert_eq!(
        ids(followed["values"].as_array().expect("values")),
        [moved.as_str(), add.as_str()]
    );
    assert_eq!(
        ids(directory["values"].as_array().expect("values")),
        [moved.as_str(), add.as_str()]
    );
    assert_eq!(ids(readme["values"].as_array().expect("values")), [other.as_str()]);
    assert_eq!(nothing["values"], serde_json::json!([]));
}

#[tokio::test]
async fn merges_are_included_by_default_and_can_be_excluded_or_listed_alone() {
    // Arrange
    let app = spawn_sim(1000, 1000).await;
    let repo = app.sim.create_repo("PROJ", "models").expect("repo");
    let root = history(&repo, 1).remove(0);
    repo.create_branch("feature", &root).expect("branch");
    let side = repo
        .commit_files("feature", [("b.json", "{}")], "Side")
        .expect("commit")
        .to_hash()
        .expect("commit")
        .to_owned();
    let main = repo
        .commit_files("main", [("c.json", "{}")], "Main")
        .expect("commit")
        .to_hash()
        .expect("commit")
        .to_owned();
    let tree = git(&repo, &["rev-parse", &format!("{main}^{{tree}}")]);
    let merge = git(
        &repo,
        &["commit-tree", &tree, "-p", &main, "-p", &side, "-m", "Merge feature"],
    );
    git(&repo, &["update-ref", "refs/heads/main", &merge, &main]);
    let url = format!("{}/commits", app.repo_path(&repo));

    // Act
    let (_, all) = app.get_json(&url).await;
    let (_, included) = app.get_json(&format!("{url}?merges=include")).await;
    let (_, excluded) = app.get_json(&format!("{url}?merges=exclude")).await;
    let (_, only) = app.get_json(&format!("{url}?merges=only")).await;
    let (bad_status, bad) = app.get_json(&format!("{url}?merges=sometimes")).await;

    // Assert
    let all = ids(all["values"].as_array().expect("values"));
    assert_eq!(all.len(), 4);
    assert_eq!(all[0], merge, "newest first");
    assert_eq!(all[3], root, "a parent never comes before its children");
    assert_eq!(ids(included["values"].as_array().expect("values")), all);
    let mut excluded = ids(excluded["values"].as_array().expect("values"));
    excluded.sort();
    let mut expected = vec![root, side, main];
    expected.sort();
    assert_eq!(excluded, expected);
    assert_eq!(only["values"].as_array().expect("values").len(), 1);
    assert_eq!(only["values"][0]["id"], merge);
    assert_eq!(only["values"][0]["parents"].as_array().expect("parents").len(), 2);
    assert_eq!(bad_status, StatusCode::BAD_REQUEST);
    assert_eq!(bad["errors"][0]["context"], "merges");
}

#[tokio::test]
async fn an_empty_repository_answers_404s_that_name_no_repository() {
    // Arrange
    let app = spawn_sim(1000, 1000).await;
    let repo = app.sim.create_repo("PROJ", "empty").expect("repo");
    let base = app.repo_path(&repo);

    // Act
    let (default_status, default) = app.get_json(&format!("{base}/commits")).await;
    let (branch_status, branch) = app.get_json(&format!("{base}/default-branch")).await;
    let (ref_status, by_ref) = app
        .get_json(&format!("{base}/commits?until=refs%2Fheads%2Fmain&limit=1"))
        .await;
    let (ignored_status, ignored) = app
        .get_json(&format!("{base}/commits?until=refs/heads/main&ignoreMissing=true"))
        .await;
    let (missing_status, missing) = app
        .get_json("/rest/api/1.0/projects/PROJ/repos/other/commits?until=refs/heads/main")
        .await;

    // Assert
    assert_eq!(default_status, StatusCode::NOT_FOUND);
    assert_eq!(branch_status, StatusCode::NOT_FOUND);
    let (exception, message) = error_of(&default);
    assert_eq!(exception, "com.atlassian.bitbucket.repository.NoDefaultBranchException");
    assert_eq!(
        message,
        "refs/heads/main is set as the default branch, but this branch does not exist"
    );
    assert_eq!(default, branch, "the same answer as default-branch");
    assert_eq!(ref_status, StatusCode::NOT_FOUND);
    let (exception, message) = error_of(&by_ref);
    assert_eq!(exception, "com.atlassian.bitbucket.commit.NoSuchCommitException");
    assert_eq!(
        message,
        "Commit 'refs/heads/main' does not exist in repository 'empty'."
    );
    assert_eq!(ignored_status, StatusCode::OK);
    assert_eq!(ignored["values"], serde_json::json!([]));
    assert_eq!(ignored["isLastPage"], true);
    assert_eq!(missing_status, StatusCode::NOT_FOUND);
    assert_eq!(
        error_of(&missing).0,
        "com.atlassian.bitbucket.repository.NoSuchRepositoryException"
    );
}

#[tokio::test]
async fn an_unknown_until_or_since_is_404_no_such_commit_unless_ignored() {
    let app = spawn_sim(1000, 1000).await;
    let repo = app.sim.create_repo("PROJ", "models").expect("repo");
    let commits = history(&repo, 2);
    let url = format!("{}/commits", app.repo_path(&repo));

    let (until_status, until) = app.get_json(&format!("{url}?until=nope")).await;
    let (since_status, since) = app.get_json(&format!("{url}?since=nope")).await;
    let (option_status, _) = app.get_json(&format!("{url}?until=--all")).await;
    let (_, ignored) = app.get_json(&format!("{url}?since=nope&ignoreMissing=true")).await;

    assert_eq!(until_status, StatusCode::NOT_FOUND);
    assert_eq!(
        error_of(&until).0,
        "com.atlassian.bitbucket.commit.NoSuchCommitException"
    );
    assert_eq!(since_status, StatusCode::NOT_FOUND);
    assert_eq!(
        error_of(&since).0,
        "com.atlassian.bitbucket.commit.NoSuchCommitException"
    );
    assert_eq!(option_status, StatusCode::NOT_FOUND);
    assert_eq!(
        ids(ignored["values"].as_array().expect("values")),
        newest_first(&commits)
    );
}

#[tokio::test]
async fn commits_need_the_token_and_take_injected_faults() {
    // Arrange
    let app = spawn_sim(1000, 1000).await;
    let repo = app.sim.create_repo("PROJ", "models").expect("repo");
    history(&repo, 1);
    let url = format!("{}/commits?until=main", app.repo_path(&repo));
    app.sim
        .fail_next(1, hubsync_bitbucket_sim::StatusCode::SERVICE_UNAVAILABLE, None);

    // Act
    let faulted = app.get(&url).await;
    let without = app.get_with_token(&url, None).await;
    let wrong = app.get_with_token(&url, Some("not-the-token")).await;
    let right = app.get_with_token(&url, Some(TOKEN)).await;

    // Assert
    assert_eq!(faulted.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(without.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        error_of(&without.json().await.expect("json")).0,
        "com.atlassian.bitbucket.AuthorisationException"
    );
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(right.status(), StatusCode::OK);
    let seen: Vec<(u16, bool, bool)> = app
        .sim
        .requests()
        .iter()
        .map(|r| (r.status, r.authenticated, r.injected))
        .collect();
    assert_eq!(
        seen,
        [
            (503, true, true),
            (401, false, false),
            (401, false, false),
            (200, true, false)
        ]
    );
}
