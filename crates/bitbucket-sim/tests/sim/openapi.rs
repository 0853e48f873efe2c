//! Answers checked against the schemas of Atlassian's REST API document (an extract of
//! `bitbucket-data-center-9.2.openapi.json` in `fixtures/`): every member the schema names is
//! sent unless listed as left out, every member sent is in the schema unless listed as an
//! extra the real server sends, and enum members hold allowed values.

use std::collections::BTreeSet;

use hubsync_bitbucket_sim::FileOp;
use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{error_of, spawn_sim};

fn document() -> Value {
    serde_json::from_str(include_str!("fixtures/openapi-schemas.json")).expect("fixture parses")
}

fn schema(name: &str) -> Value {
    document()["schemas"][name].clone()
}

/// Checks `answer` against `schema`, recursing into inline object members and `$ref` arrays.
/// `extra` and `missing` are dotted member paths (`path.toString`).
fn conforms(answer: &Value, schema: &Value, at: &str, extra: &[&str], missing: &[&str]) {
    let doc = document();
    let properties = schema["properties"].as_object().expect("schema has properties");
    let object = answer
        .as_object()
        .unwrap_or_else(|| panic!("{at}: expected an object, got {answer}"));
    let dotted = |key: &str| {
        if at.is_empty() {
            key.to_owned()
        } else {
            format!("{at}.{key}")
        }
    };
    for key in object.keys() {
        assert!(
            properties.contains_key(key) && properties[key]["writeOnly"] != true
                || extra.contains(&dotted(key).as_str()),
            "{}: not in the schema",
            dotted(key)
        );
    }
    for (key, member) in properties {
        let sent = object.get(key);
        if member["writeOnly"] == true && sent.is_none() {
            continue;
        }
        let Some(sent) = sent else {
            assert!(
                missing.contains(&dotted(key).as_str()),
                "{}: in the schema but not sent",
                dotted(key)
            );
            continue;
        };
        if let Some(allowed) = member["enum"].as_array() {
            assert!(allowed.contains(sent), "{}: {sent} not in {allowed:?}", dotted(key));
        }
        // The document's narrative allows `null` (error `context` and `exceptionName`).
        match member["type"].as_str().filter(|_| !sent.is_null()) {
            Some("boolean") => assert!(sent.is_boolean(), "{}: not a boolean", dotted(key)),
            Some("string") => assert!(sent.is_string(), "{}: not a string", dotted(key)),
            Some("integer" | "number") => {
                assert!(sent.is_number(), "{}: not a number", dotted(key))
            }
            _ => {}
        }
        if member.get("properties").is_some() && member["writeOnly"] != true {
            conforms(sent, member, &dotted(key), extra, missing);
        }
        if let Some(reference) = member["items"]["$ref"].as_str() {
            let name = reference.rsplit('/').next().expect("ref name");
            let items = &doc["schemas"][name];
            // `FileListResource` (the files page's items) is an empty schema: nothing to check.
            if items.get("properties").is_some() {
                for item in sent.as_array().expect("array") {
                    conforms(item, items, &dotted(key), extra, missing);
                }
            }
        }
    }
}

/// Members of `RestRepository` only some repositories have (forks, descriptions, partitions).
const REPOSITORY_MISSING: &[&str] = &[
    "description",
    "origin",
    "partition",
    "relatedLinks",
    "scope",
    "project.avatar",
    "project.description",
    "project.scope",
];

#[tokio::test]
async fn rest_answers_have_the_members_of_their_schemas() {
    // Arrange
    let app = spawn_sim(1000, 1000).await;
    let repo = app.sim.create_repo("PROJ", "models").expect("repo");
    repo.commit_files("main", [("a.json", "1"), ("b.json", "b")], "One")
        .expect("commit");
    let push = repo
        .commit(
            "main",
            &[FileOp::write("a.json", "2"), FileOp::rename("b.json", "c/b.json")],
            "Two",
        )
        .expect("commit");
    let head = push.to_hash().expect("commit");
    let base = app.repo_path(&repo);

    // Act
    let (_, repository) = app.get_json(&base).await;
    let (_, branch) = app.get_json(&format!("{base}/default-branch")).await;
    let (_, changes) = app.get_json(&format!("{base}/changes?until={head}")).await;
    let (_, files) = app.get_json(&format!("{base}/files?at={head}")).await;
    let (_, commit) = app.get_json(&format!("{base}/commits/{head}")).await;
    let (_, commits) = app.get_json(&format!("{base}/commits?until={head}&limit=1")).await;
    let (status, error) = app.get_json(&format!("{base}/raw/nothing")).await;

    // Assert
    conforms(
        &repository,
        &schema("RestRepository"),
        "",
        &["links", "project.links"],
        REPOSITORY_MISSING,
    );
    // The document calls the flag `default`; the real server sends `isDefault`.
    conforms(&branch, &schema("RestBranch"), "", &["isDefault"], &["default"]);
    conforms(
        &changes,
        &document()["pages"]["changes"],
        "",
        &[
            "fromHash",
            "toHash",
            "properties",
            "values.path.toString",
            "values.srcPath.toString",
            "values.links",
            "values.properties",
        ],
        &["nextPageStart", "values.conflict", "values.srcPath"],
    );
    assert!(
        changes["values"]
            .as_array()
            .expect("values")
            .iter()
            .any(|c| c["type"] == "MOVE")
    );
    conforms(&files, &document()["pages"]["files"], "", &[], &["nextPageStart"]);
    assert!(files["values"].as_array().expect("values").iter().all(Value::is_string));
    conforms(&commit, &schema("RestCommit"), "", &[], &[]);
    // Not the last page, so every member of the page schema is sent.
    conforms(&commits, &document()["pages"]["commits"], "", &[], &[]);
    assert_eq!(commits["values"], serde_json::json!([commit]));
    assert_eq!(status, StatusCode::NOT_FOUND);
    error_of(&error);
    conforms(&error["errors"][0], &schema("RestErrorMessage"), "", &[], &[]);
}

#[tokio::test]
async fn webhook_members_have_the_members_of_their_rest_schemas() {
    let app = spawn_sim(1000, 1000).await;
    let repo = app.sim.create_repo("PROJ", "models").expect("repo");
    let push = repo.commit_files("main", [("a", "1")], "One").expect("commit");

    let body = app
        .sim
        .webhook(&repo, &push, None)
        .expect("delivery")
        .json()
        .expect("json");

    conforms(&body["actor"], &schema("RestApplicationUser"), "", &[], &[]);
    conforms(
        &body["repository"],
        &schema("RestRepository"),
        "",
        &[],
        REPOSITORY_MISSING,
    );
    for change in body["changes"].as_array().expect("changes") {
        conforms(change, &schema("RestRefChange"), "", &[], &[]);
    }
    for commit in body["commits"].as_array().expect("commits") {
        conforms(commit, &schema("RestCommit"), "", &[], &[]);
    }
    let members: BTreeSet<&str> = body.as_object().expect("object").keys().map(String::as_str).collect();
    assert_eq!(
        members,
        BTreeSet::from([
            "actor",
            "changes",
            "commits",
            "date",
            "eventKey",
            "repository",
            "toCommit"
        ])
    );
}

/// A receiver on a free port that answers 204 to every delivery.
async fn spawn_receiver() -> String {
    let app = axum::Router::new().route("/hook", axum::routing::post(|| async { StatusCode::NO_CONTENT }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    url
}

/// The real server's members of a webhook that the document's `RestWebhook` leaves out.
const WEBHOOK_EXTRA: &[&str] = &["id", "createdDate", "updatedDate"];
/// `RestInvocationHistory`'s and `RestDetailedInvocation`'s `request` and `result` are empty
/// schemas in the document: what the real server sends in them.
const INVOCATION_EXTRA: &[&str] = &["request.method", "request.url", "result.outcome", "result.description"];

#[tokio::test]
async fn administration_answers_have_the_members_of_their_schemas() {
    // Arrange
    let app = spawn_sim(1000, 1000).await;
    let repo = app.sim.create_repo("PROJ", "models").expect("repo");
    let url = spawn_receiver().await;
    let id = app.sim.add_webhook(
        hubsync_bitbucket_sim::HookScope::of_repo(&repo),
        hubsync_bitbucket_sim::SimWebhook::push("hub", &url, Some("s")),
    );
    let push = repo.commit_files("main", [("a", "1")], "One").expect("commit");
    app.sim.deliver(&repo, &push).await.expect("delivered");
    let base = app.repo_path(&repo);

    // Act
    let (_, repos) = app.get_json("/rest/api/latest/repos?limit=1").await;
    let (_, project_repos) = app.get_json("/rest/api/latest/projects/PROJ/repos").await;
    let (_, webhooks) = app.get_json(&format!("{base}/webhooks")).await;
    let (_, webhook) = app.get_json(&format!("{base}/webhooks/{id}")).await;
    let (_, summary) = app.get_json(&format!("{base}/webhooks/{id}/statistics/summary")).await;
    let (_, latest) = app.get_json(&format!("{base}/webhooks/{id}/latest")).await;

    // Assert
    let in_values = |members: &[&str]| -> Vec<String> { members.iter().map(|m| format!("values.{m}")).collect() };
    let repo_missing = in_values(REPOSITORY_MISSING);
    let repo_missing: Vec<&str> = repo_missing.iter().map(String::as_str).collect();
    for page in [&repos, &project_repos] {
        conforms(
            page,
            &document()["pages"]["repos"],
            "",
            &["values.links", "values.project.links"],
            &[&repo_missing[..], &["nextPageStart"]].concat(),
        );
    }
    let hook_extra = in_values(WEBHOOK_EXTRA);
    let hook_extra: Vec<&str> = hook_extra.iter().map(String::as_str).collect();
    conforms(
        &webhooks,
        &document()["pages"]["webhooks"],
        "",
        &hook_extra,
        &["nextPageStart", "values.credentials"],
    );
    conforms(&webhook, &schema("RestWebhook"), "", WEBHOOK_EXTRA, &["credentials"]);
    assert_eq!(webhook["events"], serde_json::json!(["repo:refs_changed"]));
    let members: BTreeSet<&str> = summary
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(members, BTreeSet::from(["counts", "lastSuccess"]));
    conforms(
        &summary["lastSuccess"],
        &schema("RestDetailedInvocation"),
        "",
        INVOCATION_EXTRA,
        &[],
    );
    conforms(&latest, &schema("RestDetailedInvocation"), "", INVOCATION_EXTRA, &[]);
    assert_eq!(latest["result"]["outcome"], "SUCCESS");
}
