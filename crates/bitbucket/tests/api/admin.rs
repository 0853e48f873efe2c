//! The administrator's calls: repositories across pages, errors that name the missing
//! permission, webhooks created and repaired, and Bitbucket's record of their deliveries, against
//! the scripted server and the simulator.

use axum::http::StatusCode;
use hubsync_bitbucket::{
    AdminErrorKind, BitbucketClient, ClientOptions, Permission, ShownSecret, WebhookScope, WebhookSpec,
};
use hubsync_bitbucket_sim::{HookScope, SimConfig, SimWebhook, Simulator, TokenScopes};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

use crate::{Answer, error, options, page_of, repo, spawn_bitbucket};

fn rest_repository(project: &str, slug: &str) -> serde_json::Value {
    json!({"slug": slug, "id": 1, "name": slug.to_uppercase(), "scmId": "git", "state": "AVAILABLE",
           "forkable": true, "archived": false, "public": false,
           "project": {"key": project, "id": 1, "name": "Data", "public": false, "type": "NORMAL"}})
}

#[tokio::test]
async fn repositories_are_read_across_every_page() {
    // Arrange
    let all = vec![
        rest_repository("DATA", "a"),
        rest_repository("DATA", "b"),
        rest_repository("OPS", "c"),
    ];
    let server = spawn_bitbucket(move |seen, _| page_of(&all, seen).into()).await;

    // Act
    let repos = server.client(options()).repositories(None).await.unwrap();

    // Assert
    let names: Vec<String> = repos.iter().map(|r| r.repo.to_string()).collect();
    assert_eq!(names, ["DATA/a", "DATA/b", "OPS/c"]);
    assert_eq!(repos[0].name, "A");
    let seen = server.seen();
    assert_eq!(seen.len(), 2);
    assert!(seen.iter().all(|s| s.path == "/rest/api/latest/repos"));
}

#[tokio::test]
async fn refusals_name_the_permission_the_token_lacks() {
    // Arrange: 401 AuthorisationException, 403, 404, then a wrong token.
    let server = spawn_bitbucket(|_, index| match index {
        0 => Answer::from(error(
            StatusCode::UNAUTHORIZED,
            "com.atlassian.bitbucket.AuthorisationException",
            "You are not permitted to access this resource",
        )),
        1 => Answer::from(error(StatusCode::FORBIDDEN, "", "Forbidden")),
        _ => Answer::from(error(
            StatusCode::NOT_FOUND,
            "com.atlassian.bitbucket.repository.NoSuchRepositoryException",
            "Repository DATA/models does not exist.",
        )),
    })
    .await;
    let client = server.client(options());
    let scope = WebhookScope::Repository(repo());

    // Act
    let unauthorised = client.webhooks(&scope).await.unwrap_err();
    let forbidden = client
        .webhooks(&WebhookScope::Project("DATA".into()))
        .await
        .unwrap_err();
    let missing = client.repository(&repo()).await.unwrap_err();
    let wrong_token = server
        .client_with(&server.origin, "wrong", options())
        .repository(&repo())
        .await
        .unwrap_err();

    // Assert
    assert_eq!(
        unauthorised.kind,
        AdminErrorKind::PermissionDenied(Permission::WebhooksReadWrite)
    );
    assert!(
        unauthorised.to_string().contains("\"Webhooks: Read and write\""),
        "{unauthorised}"
    );
    assert_eq!(
        forbidden.kind,
        AdminErrorKind::PermissionDenied(Permission::ProjectAdmin)
    );
    assert_eq!(missing.kind, AdminErrorKind::NotFound);
    assert!(missing.to_string().contains("does not exist"), "{missing}");
    assert_eq!(wrong_token.kind, AdminErrorKind::Unauthenticated);
}

#[tokio::test]
async fn the_delivery_record_is_read_from_the_summary_and_the_latest_invocation() {
    // Arrange
    let server = spawn_bitbucket(|seen, _| {
        if seen.path.ends_with("/statistics/summary") {
            axum::Json(json!({
                "lastSuccess": {"id": 1, "event": "repo:refs_changed", "start": 1000, "finish": 1100, "duration": 100,
                                "result": {"outcome": "SUCCESS", "description": "200"}},
                "lastFailure": {"id": 2, "event": "repo:refs_changed", "start": 2000, "finish": 2050, "duration": 50,
                                "result": {"outcome": "FAILURE", "description": "401"}},
                "counts": {"successes": 3, "failures": 1, "errors": 0}
            }))
            .into()
        } else {
            StatusCode::NO_CONTENT.into()
        }
    })
    .await;

    // Act
    let history = server
        .client(options())
        .webhook_history(&WebhookScope::Repository(repo()), 7)
        .await
        .unwrap();

    // Assert
    assert_eq!(history.last_failure.as_ref().and_then(|i| i.status_code), Some(401));
    assert_eq!(history.last_success.as_ref().map(|i| i.succeeded()), Some(true));
    assert_eq!(history.counts.map(|c| (c.successes, c.failures)), Some((3, 1)));
    assert!(history.latest.is_none());
    let paths: Vec<String> = server.seen().into_iter().map(|s| s.path).collect();
    assert_eq!(
        paths,
        [
            "/rest/api/latest/projects/DATA/repos/models/webhooks/7/statistics/summary",
            "/rest/api/latest/projects/DATA/repos/models/webhooks/7/latest"
        ]
    );
}

#[tokio::test]
async fn a_webhook_is_created_and_updated_on_the_simulator_with_its_secret() {
    // Arrange
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let repository = sim.create_repo("DATA", "models").unwrap();
    sim.add_webhook(
        HookScope::Project("DATA".into()),
        SimWebhook::push("elsewhere", "http://127.0.0.1:9/x", None),
    );
    let client = BitbucketClient::new(
        sim.base_url(),
        SecretString::from(sim.token().expose_secret().to_owned()),
        ClientOptions::default(),
    )
    .unwrap();
    let scope = WebhookScope::Repository(repo());
    let mut spec = WebhookSpec {
        name: "Hackolade Model Hub sync".into(),
        url: "https://hub.example.com/gateway/public/sync".into(),
        active: false,
        events: vec!["repo:refs_changed".into()],
        secret: SecretString::from("hub-webhook-secret"),
    };

    // Act
    let created = client.create_webhook(&scope, &spec).await.unwrap();
    spec.active = true;
    let updated = client.update_webhook(&scope, created.id, &spec).await.unwrap();
    let listed = client.webhooks(&scope).await.unwrap();
    let project = client.webhooks(&WebhookScope::Project("DATA".into())).await.unwrap();

    // Assert
    assert!(!created.active && updated.active);
    assert!(matches!(updated.secret, ShownSecret::Masked));
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].events, ["repo:refs_changed"]);
    assert_eq!(project.len(), 1);
    assert!(!project[0].secret.is_set());
    let stored = sim.webhooks();
    let (_, stored_scope, hook) = stored.iter().find(|(id, ..)| u64::from(*id) == created.id).unwrap();
    assert_eq!(stored_scope, &HookScope::of_repo(&repository));
    assert_eq!(hook.secret.as_deref(), Some("hub-webhook-secret"));
}

#[tokio::test]
async fn a_token_without_the_webhook_permission_is_refused_by_the_simulator_by_name() {
    // Arrange
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    sim.create_repo("DATA", "models").unwrap();
    sim.add_token("read-only", TokenScopes::READ_ONLY);
    let client = BitbucketClient::new(
        sim.base_url(),
        SecretString::from("read-only"),
        ClientOptions::default(),
    )
    .unwrap();

    // Act
    let readable = client.repository(&repo()).await;
    let refused = client.webhooks(&WebhookScope::Repository(repo())).await.unwrap_err();

    // Assert
    assert!(readable.is_ok());
    assert_eq!(
        refused.kind,
        AdminErrorKind::PermissionDenied(Permission::WebhooksReadWrite)
    );
}
