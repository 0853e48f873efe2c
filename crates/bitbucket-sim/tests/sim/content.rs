//! Repository, default branch, raw content, file lists and commits.

use hubsync_bitbucket_sim::FileOp;
use hubsync_bitbucket_sim::models::{ModelSpec, generate_model};
use reqwest::StatusCode;

use crate::helpers::{encode_path, error_of, spawn_sim};

#[tokio::test]
async fn raw_returns_the_exact_bytes_of_a_unicode_path_with_spaces() {
    // Arrange
    let app = spawn_sim(1000, 1000).await;
    let repo = app.sim.create_repo("PROJ", "models").expect("repo");
    let path = "models/Kundenübersicht/legacy orders #1.hck.json";
    let old = repo
        .commit_files("main", [(path, "{\"v\": 1}")], "One")
        .expect("commit");
    repo.commit_files("main", [(path, "{\"v\": 2}")], "Two")
        .expect("commit");
    let raw = format!("{}/raw/{}", app.repo_path(&repo), encode_path(path));

    // Act
    let at_old = app.get(&format!("{raw}?at={}", old.to_hash().expect("commit"))).await;
    let at_branch = app.get(&format!("{raw}?at=refs/heads/main")).await;
    let at_default = app.get(&raw).await;

    // Assert
    assert_eq!(at_old.status(), StatusCode::OK);
    assert!(
        at_old.headers()["content-type"]
            .to_str()
            .expect("ascii")
            .starts_with("text/plain")
    );
    assert_eq!(at_old.bytes().await.expect("body").as_ref(), b"{\"v\": 1}");
    assert_eq!(at_branch.bytes().await.expect("body").as_ref(), b"{\"v\": 2}");
    assert_eq!(at_default.bytes().await.expect("body").as_ref(), b"{\"v\": 2}");
}

#[tokio::test]
async fn raw_of_a_missing_path_or_a_directory_is_404_and_binary_is_octet_stream() {
    let app = spawn_sim(1000, 1000).await;
    let repo = app.sim.create_repo("PROJ", "models").expect("repo");
    repo.commit(
        "main",
        &[FileOp::write("dir/bin.dat", vec![0u8, 159, 146, 150])],
        "Binary",
    )
    .expect("commit");
    let base = format!("{}/raw", app.repo_path(&repo));

    let missing = app.get(&format!("{base}/nope.json?at=main")).await;
    let directory = app.get(&format!("{base}/dir?at=main")).await;
    let binary = app.get(&format!("{base}/dir/bin.dat?at=main")).await;

    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    let body = missing.json().await.expect("json");
    assert_eq!(error_of(&body).0, "com.atlassian.bitbucket.content.NoSuchPathException");
    assert_eq!(directory.status(), StatusCode::NOT_FOUND);
    assert_eq!(binary.headers()["content-type"], "application/octet-stream");
    assert_eq!(binary.bytes().await.expect("body").as_ref(), [0u8, 159, 146, 150]);
}

#[tokio::test]
async fn a_twelve_megabyte_model_round_trips_through_git_and_raw() {
    let model = generate_model(&ModelSpec {
        seed: 99,
        name: "Big".into(),
        target_bytes: 12 * 1024 * 1024,
        ..ModelSpec::default()
    });
    let app = spawn_sim(1000, 1000).await;
    let repo = app.sim.create_repo("PROJ", "models").expect("repo");
    repo.commit("main", &[FileOp::write("big.hck.json", model.clone())], "Big")
        .expect("commit");

    let response = app
        .get(&format!("{}/raw/big.hck.json?at=main", app.repo_path(&repo)))
        .await;

    assert_eq!(response.status(), StatusCode::OK);
    let body = response.bytes().await.expect("body");
    assert!(body.len() >= 12 * 1024 * 1024);
    assert!(body.as_ref() == model.as_slice(), "content differs");
}

#[tokio::test]
async fn files_lists_every_file_recursively_paged_and_relative_to_a_directory() {
    // Arrange
    let app = spawn_sim(2, 1000).await;
    let repo = app.sim.create_repo("PROJ", "models").expect("repo");
    repo.commit_files(
        "main",
        [
            ("README.md", "x"),
            ("models/a.hck.json", "{}"),
            ("models/sub dir/b.json", "{}"),
            ("models/ü/c.json", "{}"),
            ("other/d.json", "{}"),
        ],
        "Files",
    )
    .expect("commit");
    let base = format!("{}/files", app.repo_path(&repo));

    // Act
    let (all, pages) = app.get_all_pages(&format!("{base}?at=main")).await;
    let (under, _) = app.get_all_pages(&format!("{base}/models")).await;
    let (file_status, _) = app.get_json(&format!("{base}/README.md")).await;
    let (missing_status, _) = app.get_json(&format!("{base}/nothing")).await;

    // Assert
    assert_eq!(
        all,
        [
            "README.md",
            "models/a.hck.json",
            "models/sub dir/b.json",
            "models/ü/c.json",
            "other/d.json"
        ]
    );
    assert_eq!(pages.len(), 3);
    assert_eq!(under, ["a.hck.json", "sub dir/b.json", "ü/c.json"]);
    assert_eq!(file_status, StatusCode::BAD_REQUEST);
    assert_eq!(missing_status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn an_empty_repository_has_no_default_branch_until_the_first_push() {
    // Arrange
    let app = spawn_sim(1000, 1000).await;
    let repo = app.sim.create_repo("PROJ", "empty").expect("repo");
    let url = format!("{}/default-branch", app.repo_path(&repo));

    // Act
    let (empty_status, empty) = app.get_json(&url).await;
    let push = repo.commit_files("main", [("a.json", "{}")], "First").expect("commit");
    let (status, branch) = app.get_json(&url).await;

    // Assert
    assert_eq!(empty_status, StatusCode::NOT_FOUND);
    assert_eq!(
        error_of(&empty).0,
        "com.atlassian.bitbucket.repository.NoDefaultBranchException"
    );
    assert_eq!(status, StatusCode::OK);
    let head = push.to_hash().expect("commit");
    assert_eq!(
        branch,
        serde_json::json!({
            "id": "refs/heads/main",
            "displayId": "main",
            "type": "BRANCH",
            "latestCommit": head,
            "latestChangeset": head,
            "isDefault": true,
        })
    );
}

#[tokio::test]
async fn another_default_branch_can_be_configured() {
    let app = spawn_sim(1000, 1000).await;
    let repo = app.sim.create_repo("PROJ", "models").expect("repo");
    let push = repo
        .commit_files("develop", [("a.json", "{}")], "First")
        .expect("commit");
    repo.set_default_branch("develop").expect("configured");

    let (status, branch) = app.get_json(&format!("{}/default-branch", app.repo_path(&repo))).await;

    assert_eq!(status, StatusCode::OK);
    assert_eq!(branch["displayId"], "develop");
    assert_eq!(branch["latestCommit"], push.to_hash().expect("commit"));
    assert_eq!(repo.default_branch().expect("read"), "develop");
}

#[tokio::test]
async fn repository_is_served_under_both_prefixes_case_insensitively() {
    let app = spawn_sim(1000, 1000).await;
    let repo = app.sim.create_repo("Proj", "Data Models").expect("repo");

    let (latest_status, latest) = app.get_json("/rest/api/latest/projects/PROJ/repos/data-models").await;
    let (v1_status, v1) = app.get_json("/rest/api/1.0/projects/proj/repos/DATA-MODELS").await;

    assert_eq!(latest_status, StatusCode::OK);
    assert_eq!(v1_status, StatusCode::OK);
    assert_eq!(latest, v1);
    assert_eq!(latest["slug"], "data-models");
    assert_eq!(latest["name"], "Data Models");
    assert_eq!(latest["id"], repo.id());
    assert_eq!(latest["scmId"], "git");
    assert_eq!(latest["state"], "AVAILABLE");
    assert_eq!(latest["project"]["key"], "PROJ");
    assert_eq!(latest["project"]["type"], "NORMAL");
    assert!(latest["links"]["clone"].is_array());
}

#[tokio::test]
async fn personal_repositories_are_found_under_tilde_keys() {
    let app = spawn_sim(1000, 1000).await;
    app.sim.create_repo("~alice", "notes").expect("repo");

    let (status, repo) = app.get_json("/rest/api/1.0/projects/~alice/repos/notes").await;
    let (encoded_status, _) = app.get_json("/rest/api/1.0/projects/%7EALICE/repos/notes").await;

    assert_eq!(status, StatusCode::OK, "{repo}");
    assert_eq!(encoded_status, StatusCode::OK);
    assert_eq!(repo["project"]["key"], "~ALICE");
    assert_eq!(repo["project"]["type"], "PERSONAL");
    assert_eq!(repo["project"]["owner"]["slug"], "alice");
}

#[tokio::test]
async fn unknown_projects_and_repositories_are_404_with_their_exceptions() {
    let app = spawn_sim(1000, 1000).await;
    app.sim.create_repo("PROJ", "models").expect("repo");

    let (repo_status, no_repo) = app
        .get_json("/rest/api/1.0/projects/PROJ/repos/other/changes?until=main")
        .await;
    let (project_status, no_project) = app.get_json("/rest/api/1.0/projects/NOPE/repos/models").await;

    assert_eq!(repo_status, StatusCode::NOT_FOUND);
    assert_eq!(
        error_of(&no_repo).0,
        "com.atlassian.bitbucket.repository.NoSuchRepositoryException"
    );
    assert_eq!(project_status, StatusCode::NOT_FOUND);
    assert_eq!(
        error_of(&no_project).0,
        "com.atlassian.bitbucket.project.NoSuchProjectException"
    );
}

#[tokio::test]
async fn commits_are_described_with_author_parents_and_millisecond_timestamps() {
    let app = spawn_sim(1000, 1000).await;
    let repo = app.sim.create_repo("PROJ", "models").expect("repo");
    let first = repo.commit_files("main", [("a", "1")], "First").expect("commit");
    let second = repo
        .commit_files("main", [("a", "2")], "Second\n\nWith a body")
        .expect("commit");
    let id = second.to_hash().expect("commit");

    let (status, commit) = app.get_json(&format!("{}/commits/{id}", app.repo_path(&repo))).await;

    assert_eq!(status, StatusCode::OK);
    assert_eq!(commit["id"], id);
    assert_eq!(commit["displayId"], &id[..11]);
    assert_eq!(commit["message"], "Second\n\nWith a body");
    assert_eq!(commit["author"]["name"], "Administrator");
    assert_eq!(commit["parents"][0]["id"], first.to_hash().expect("commit"));
    assert!(commit["authorTimestamp"].as_i64().expect("number") > 1_600_000_000_000);
}

#[tokio::test]
async fn an_announced_raw_file_says_its_size_but_sends_only_a_little_of_it() {
    // Arrange
    let app = spawn_sim(1000, 1000).await;
    let repo = app.sim.create_repo("PROJ", "models").expect("repo");
    repo.commit("main", &[FileOp::write("huge.json", "{}")], "Huge")
        .expect("commit");
    let announced: u64 = 3 << 29; // 1.5 GiB
    app.sim.announce_raw(&repo, "huge.json", announced);

    // Act
    let response = app
        .get(&format!("{}/raw/huge.json?at=main", app.repo_path(&repo)))
        .await;
    let length = response.content_length();
    let body = response.bytes().await;

    // Assert
    assert_eq!(length, Some(announced));
    assert!(body.is_err(), "the body is cut short");
    let sent = app.sim.announced_bytes_sent();
    assert!(
        sent <= hubsync_bitbucket_sim::ANNOUNCED_BODY_SENT_AT_MOST,
        "{sent} bytes sent"
    );
}

#[tokio::test]
async fn a_simulator_told_so_sends_raw_files_without_their_length() {
    // Arrange
    let app = crate::helpers::spawn_with(hubsync_bitbucket_sim::SimConfig {
        raw_content_length: false,
        ..hubsync_bitbucket_sim::SimConfig::with_token(crate::helpers::TOKEN)
    })
    .await;
    let repo = app.sim.create_repo("PROJ", "models").expect("repo");
    let content = "x".repeat(200 * 1024);
    let head = repo
        .commit_files("main", [("big.json", content.as_str())], "Big")
        .expect("commit");
    let raw = format!("{}/raw/big.json", app.repo_path(&repo));

    // Act
    let by_id = app.get(&format!("{raw}?at={}", head.to_hash().expect("commit"))).await;
    let by_branch = app.get(&format!("{raw}?at=refs/heads/main")).await;

    // Assert
    for response in [by_id, by_branch] {
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.content_length(), None);
        assert_eq!(response.bytes().await.expect("body").as_ref(), content.as_bytes());
    }
}
