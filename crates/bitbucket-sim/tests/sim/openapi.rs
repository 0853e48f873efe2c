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
