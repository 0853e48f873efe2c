//! Authentication, fault injection and the request log.

use hubsync_bitbucket_sim::StatusCode as SimStatus;
use reqwest::StatusCode;

use crate::helpers::{TOKEN, error_of, spawn_sim};

#[tokio::test]
async fn requests_without_or_with_a_wrong_token_are_401_and_logged_as_unauthenticated() {
    // Arrange
    let app = spawn_sim(1000, 1000).await;
    let repo = app.sim.create_repo("PROJ", "models").expect("repo");
    let path = app.repo_path(&repo);

    // Act
    let without = app.get_with_token(&path, None).await;
    let wrong = app.get_with_token(&path, Some("not-the-token")).await;
    let right = app.get_with_token(&path, Some(TOKEN)).await;

    // Assert
    assert_eq!(without.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        error_of(&without.json().await.expect("json")).0,
        "com.atlassian.bitbucket.AuthorisationException"
    );
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let (exception, message) = error_of(&wrong.json().await.expect("json"));
    assert_eq!(
        exception,
        "com.atlassian.bitbucket.auth.IncorrectPasswordAuthenticationException"
    );
    assert_eq!(
        message,
        "Authentication failed. Please check your credentials and try again."
    );
    assert_eq!(right.status(), StatusCode::OK);

    let log = app.sim.requests();
    let seen: Vec<(u16, bool)> = log.iter().map(|r| (r.status, r.authenticated)).collect();
    assert_eq!(seen, [(401, false), (401, false), (200, true)]);
    assert!(log.iter().all(|r| r.path_and_query == path && r.method == "GET"));
    assert!(!format!("{log:?}").contains(TOKEN));
    assert!(!format!("{:?}", app.sim.config()).contains(TOKEN));
}

#[tokio::test]
async fn injected_faults_answer_the_next_requests_then_service_resumes() {
    // Arrange
    let app = spawn_sim(1000, 1000).await;
    let repo = app.sim.create_repo("PROJ", "models").expect("repo");
    let path = app.repo_path(&repo);
    app.sim.fail_next(2, SimStatus::TOO_MANY_REQUESTS, Some(7));
    app.sim.fail_next(1, SimStatus::SERVICE_UNAVAILABLE, None);

    // Act
    let first = app.get(&path).await;
    let second = app.get(&path).await;
    let third = app.get(&path).await;
    let fourth = app.get(&path).await;

    // Assert
    assert_eq!(first.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(first.headers()["retry-after"], "7");
    assert!(first.json::<serde_json::Value>().await.expect("json")["errors"].is_array());
    assert_eq!(second.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(third.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(third.headers().get("retry-after").is_none());
    assert_eq!(fourth.status(), StatusCode::OK);
    let injected: Vec<bool> = app.sim.requests().iter().map(|r| r.injected).collect();
    assert_eq!(injected, [true, true, true, false]);
}

#[tokio::test]
async fn cleared_faults_and_requests_are_forgotten() {
    let app = spawn_sim(1000, 1000).await;
    let repo = app.sim.create_repo("PROJ", "models").expect("repo");
    app.sim.fail_next(3, SimStatus::INTERNAL_SERVER_ERROR, None);
    app.sim.clear_faults();

    let response = app.get(&app.repo_path(&repo)).await;
    app.sim.clear_requests();

    assert_eq!(response.status(), StatusCode::OK);
    assert!(app.sim.requests().is_empty());
}

#[tokio::test]
async fn unknown_resources_are_404_with_an_errors_body() {
    let app = spawn_sim(1000, 1000).await;

    let (status, body) = app.get_json("/rest/api/1.0/nothing/here").await;

    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body["errors"][0]["message"].is_string());
}

#[tokio::test]
async fn shutdown_stops_the_server() {
    let app = spawn_sim(1000, 1000).await;
    let url = app.sim.base_url().to_owned();

    app.sim.shutdown().await;

    let result = app.client.get(format!("{url}/rest/api/1.0/x")).send().await;
    assert!(result.is_err(), "the port no longer answers");
}

#[tokio::test]
async fn a_held_request_waits_inside_the_simulator_until_released_while_others_are_answered() {
    // Arrange
    let app = spawn_sim(1000, 1000).await;
    let repo = app.sim.create_repo("PROJ", "models").expect("repo");
    let path = app.repo_path(&repo);
    let held_path = format!("{path}/default-branch");
    let hold = app.sim.hold_next({
        let held_path = held_path.clone();
        move |line| line.method == "GET" && line.path_and_query == held_path
    });

    // Act
    let held = tokio::spawn({
        let (client, url) = (app.client.clone(), format!("{}{held_path}", app.sim.base_url()));
        async move { client.get(url).bearer_auth(TOKEN).send().await.map(|r| r.status()) }
    });
    hold.reached().await;
    let other = app.get(&path).await;
    let answered_while_held = app.sim.requests().len();
    hold.release();
    hold.released().await;
    let held_status = held.await.expect("task").expect("answered");

    // Assert
    assert_eq!(other.status(), StatusCode::OK);
    assert_eq!(answered_while_held, 1, "only the other request was answered while held");
    let log = app.sim.requests();
    assert_eq!(log.len(), 2);
    assert_eq!(log[1].path_and_query, held_path);
    assert_eq!(
        held_status,
        app.get(&held_path).await.status(),
        "answered as if never held"
    );
}

#[tokio::test]
async fn a_dropped_hold_lets_its_request_through() {
    let app = spawn_sim(1000, 1000).await;
    let repo = app.sim.create_repo("PROJ", "models").expect("repo");
    let path = app.repo_path(&repo);
    drop(app.sim.hold_next(|_| true));

    let response = app.get(&path).await;

    assert_eq!(response.status(), StatusCode::OK);
}
