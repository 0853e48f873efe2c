//! The administration resources: repositories the token can read, webhooks stored per
//! repository and project, token permissions, and the deliveries recorded for each webhook.

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use hubsync_bitbucket_sim::{HookScope, Outcome, SimWebhook, TokenScopes};
use serde_json::{Value, json};

use crate::helpers::{TestSim, error_of, spawn_sim};

/// A receiver on a free port that answers `status` to every delivery, checking nothing.
async fn spawn_receiver(status: StatusCode) -> String {
    let app = Router::new().route("/hook", post(move |_: HeaderMap| async move { status }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    url
}

impl TestSim {
    async fn send_json(&self, method: reqwest::Method, path: &str, token: &str, body: &Value) -> (StatusCode, Value) {
        let response = self
            .client
            .request(method, format!("{}{path}", self.sim.base_url()))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .expect("answered");
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }
}

#[tokio::test]
async fn repositories_are_listed_by_project_and_paged() {
    // Arrange
    let app = spawn_sim(2, 1000).await;
    for (project, name) in [
        ("DATA", "models"),
        ("DATA", "Archive"),
        ("DATA", "legacy"),
        ("OPS", "infra"),
    ] {
        app.sim.create_repo(project, name).expect("repo");
    }

    // Act
    let (all, pages) = app.get_all_pages("/rest/api/latest/repos").await;
    let (data, _) = app.get_all_pages("/rest/api/latest/projects/data/repos").await;
    let (status, missing) = app.get_json("/rest/api/latest/projects/NOPE/repos").await;

    // Assert
    let names = |values: &[Value]| -> Vec<String> {
        values
            .iter()
            .map(|v| {
                format!(
                    "{}/{}",
                    v["project"]["key"].as_str().unwrap(),
                    v["slug"].as_str().unwrap()
                )
            })
            .collect()
    };
    assert_eq!(names(&all), ["DATA/archive", "DATA/legacy", "DATA/models", "OPS/infra"]);
    assert_eq!(pages.len(), 2);
    assert_eq!(names(&data), ["DATA/archive", "DATA/legacy", "DATA/models"]);
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(error_of(&missing).0.ends_with("NoSuchProjectException"));
}

#[tokio::test]
async fn a_token_sees_only_what_its_permissions_allow() {
    // Arrange
    let app = spawn_sim(1000, 1000).await;
    let repo = app.sim.create_repo("DATA", "models").expect("repo");
    app.sim.add_token("read-only", TokenScopes::READ_ONLY);
    app.sim.add_token("nothing", TokenScopes::NONE);
    let hooks = format!("{}/webhooks", app.repo_path(&repo));

    // Act
    let read_hooks = app.get_with_token(&hooks, Some("read-only")).await;
    let read_repo = app.get_with_token(&app.repo_path(&repo), Some("read-only")).await;
    let nothing_repo = app.get_with_token(&app.repo_path(&repo), Some("nothing")).await;
    let nothing_list = app.get_with_token("/rest/api/latest/repos", Some("nothing")).await;

    // Assert
    assert_eq!(read_hooks.status(), StatusCode::UNAUTHORIZED);
    let body: Value = read_hooks.json().await.expect("json");
    assert!(error_of(&body).0.ends_with("AuthorisationException"), "{body}");
    assert_eq!(read_repo.status(), StatusCode::OK);
    assert_eq!(nothing_repo.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(nothing_list.status(), StatusCode::OK);
    let page: Value = nothing_list.json().await.expect("json");
    assert_eq!(page["values"], json!([]));
}

#[tokio::test]
async fn a_webhook_is_created_listed_repaired_and_its_secret_never_shown() {
    // Arrange
    let app = spawn_sim(1000, 1000).await;
    let repo = app.sim.create_repo("DATA", "models").expect("repo");
    let token = app.sim_token();
    let hooks = format!("{}/webhooks", app.repo_path(&repo));
    let body = json!({"name": "Hackolade Model Hub sync", "url": "http://127.0.0.1:9/sync", "active": false,
                      "events": ["repo:refs_changed"], "configuration": {"secret": "hub-secret"}});

    // Act
    let (created_status, created) = app.send_json(reqwest::Method::POST, &hooks, &token, &body).await;
    let id = created["id"].as_u64().expect("id");
    let (_, listed) = app.get_json(&hooks).await;
    let (put_status, repaired) = app
        .send_json(
            reqwest::Method::PUT,
            &format!("{hooks}/{id}"),
            &token,
            &json!({"active": true}),
        )
        .await;
    let (bad_status, bad) = app
        .send_json(
            reqwest::Method::POST,
            &hooks,
            &token,
            &json!({"name": "x", "url": "ftp://h", "events": ["repo:refs_changed"]}),
        )
        .await;

    // Assert
    assert_eq!(created_status, StatusCode::OK);
    assert_eq!(created["configuration"]["secret"], "********");
    assert_eq!(created["active"], false);
    assert_eq!(listed["values"][0]["id"], json!(id));
    assert_eq!(put_status, StatusCode::OK);
    assert_eq!(repaired["active"], true);
    assert_eq!(repaired["configuration"]["secret"], "********");
    assert_eq!(bad_status, StatusCode::BAD_REQUEST);
    assert_eq!(bad["errors"][0]["context"], "url");
    let stored = app.sim.webhooks();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].2.secret.as_deref(), Some("hub-secret"));
    assert!(!format!("{created}{listed}{repaired}").contains("hub-secret"));
}

#[tokio::test]
async fn a_push_is_delivered_to_the_stored_webhooks_and_each_outcome_is_recorded() {
    // Arrange
    let app = spawn_sim(1000, 1000).await;
    let repo = app.sim.create_repo("DATA", "models").expect("repo");
    let ok = spawn_receiver(StatusCode::ACCEPTED).await;
    let refusing = spawn_receiver(StatusCode::UNAUTHORIZED).await;
    let good = app
        .sim
        .add_webhook(HookScope::of_repo(&repo), SimWebhook::push("hub", &ok, Some("s")));
    let bad = app.sim.add_webhook(
        HookScope::Project("DATA".into()),
        SimWebhook::push("old hub", &refusing, Some("wrong")),
    );
    let inactive = app.sim.add_webhook(
        HookScope::of_repo(&repo),
        SimWebhook {
            active: false,
            ..SimWebhook::push("off", &ok, None)
        },
    );
    let push = repo.commit_files("main", [("a.json", "1")], "One").expect("commit");

    // Act
    let made = app.sim.deliver(&repo, &push).await.expect("delivered");
    let (_, good_summary) = app
        .get_json(&format!("{}/webhooks/{good}/statistics/summary", app.repo_path(&repo)))
        .await;
    let (_, bad_summary) = app
        .get_json(&format!(
            "/rest/api/latest/projects/DATA/webhooks/{bad}/statistics/summary"
        ))
        .await;
    let (_, bad_latest) = app
        .get_json(&format!("/rest/api/latest/projects/DATA/webhooks/{bad}/latest"))
        .await;
    let none = app
        .get(&format!("{}/webhooks/{inactive}/latest", app.repo_path(&repo)))
        .await;

    // Assert
    let outcomes: Vec<(u32, Outcome, Option<u16>)> = made.iter().map(|i| (i.webhook_id, i.outcome, i.status)).collect();
    assert_eq!(
        outcomes,
        [(good, Outcome::Success, Some(202)), (bad, Outcome::Failure, Some(401))]
    );
    assert_eq!(
        good_summary["counts"],
        json!({"successes": 1, "failures": 0, "errors": 0})
    );
    assert_eq!(good_summary["lastSuccess"]["result"]["outcome"], "SUCCESS");
    assert!(good_summary.get("lastFailure").is_none());
    assert_eq!(
        bad_summary["lastFailure"]["result"],
        json!({"outcome": "FAILURE", "description": "401"})
    );
    assert_eq!(bad_latest["result"]["outcome"], "FAILURE");
    assert_eq!(bad_latest["eventScope"]["type"], "project");
    assert_eq!(none.status(), StatusCode::NO_CONTENT);
    assert!(app.sim.invocations(inactive).is_empty());
}

#[tokio::test]
async fn a_delivery_nobody_answers_is_recorded_as_an_error() {
    // Arrange
    let app = spawn_sim(1000, 1000).await;
    let repo = app.sim.create_repo("DATA", "models").expect("repo");
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        format!("http://{}/hook", listener.local_addr().expect("addr"))
    };
    let id = app
        .sim
        .add_webhook(HookScope::of_repo(&repo), SimWebhook::push("gone", &closed, Some("s")));
    let push = repo.commit_files("main", [("a.json", "1")], "One").expect("commit");

    // Act
    app.sim.deliver(&repo, &push).await.expect("delivered");

    // Assert
    let recorded = app.sim.invocations(id);
    assert_eq!(recorded.len(), 1);
    assert_eq!((recorded[0].outcome, recorded[0].status), (Outcome::Error, None));
}
