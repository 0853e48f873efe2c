//! The hub's delivery log end to end, on both backends: what `hubsync deliveries` shows of a push
//! (its verdict, then its sync's outcome), of a redelivery, of a wrong signature (nothing), and of
//! a sync that keeps failing (the error and the attempts); its filters and `deliveries show`.

use hubsync_bitbucket_sim::FileOp;
use hubsync_core::deliveries::{DeliveryKind, DeliveryLog, DeliveryQuery, OutcomeStatus};
use serde_json::Value;

use crate::pipeline::{Pipeline, Setup, WEBHOOK_SECRET};
use crate::{Scene, hubsync, model};

/// `hubsync deliveries ARGS --json`, parsed.
async fn listed<P: Pipeline>(p: &P, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["deliveries"];
    all.extend_from_slice(args);
    all.push("--json");
    let (ok, out, err) = hubsync(p, &all).await;
    assert!(ok, "{}: hubsync {all:?} failed: {err}", P::NAME);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{}: not JSON ({e}): {out}", P::NAME))
}

fn ids(entries: &[Value]) -> Vec<&str> {
    entries.iter().map(|e| e["id"].as_str().unwrap_or_default()).collect()
}

pub(crate) async fn the_delivery_log_shows_each_push_with_its_verdict_then_its_outcome<P: Pipeline>() {
    // Arrange: the scene's first push, synced; then a second push, delivered twice.
    let s = Scene::<P>::new(Setup::default()).await;
    s.assert_replicated().await;
    let push = s
        .repo
        .commit(
            "main",
            &[FileOp::write("logged.json", model(71, "Logged", 3_000))],
            "logged",
        )
        .unwrap();
    let delivery = s.p.sim().webhook(&s.repo, &push, Some(WEBHOOK_SECRET)).unwrap();
    let forged = s.p.sim().webhook(&s.repo, &push, Some("not-the-secret")).unwrap();

    // Act
    assert_eq!(s.p.deliver(&delivery).await, 202);
    let queued = listed(&s.p, &["DATA/models", "--limit", "1"]).await;
    assert_eq!(s.p.deliver(&delivery).await, 202, "a redelivery");
    assert_eq!(s.p.deliver(&forged).await, 401, "a wrong signature");
    s.assert_replicated().await;
    let all = listed(&s.p, &[]).await;
    let failed = listed(&s.p, &["--failed"]).await;
    let recent = listed(&s.p, &["--since", "1h"]).await;
    let future = (chrono::Utc::now() + chrono::TimeDelta::hours(1)).to_rfc3339();
    let none_since = listed(&s.p, &["--since", &future]).await;
    let other = listed(&s.p, &["DATA/other"]).await;
    let (shown, text, err) = hubsync(&s.p, &["deliveries", "show", &delivery.delivery_id]).await;

    // Assert: the push was listed as queued at once, newest first.
    assert_eq!(ids(&queued), [delivery.delivery_id.as_str()], "{}", P::NAME);
    assert_eq!(queued[0]["verdict"], "queued");
    assert_eq!(queued[0]["repo"], "DATA/models");
    assert_eq!(queued[0]["eventKey"], "repo:refs_changed");
    // Two entries (the scene's push and this one), the forged one nowhere.
    assert_eq!(all.len(), 2, "{}: {all:#?}", P::NAME);
    let entry = &all[0];
    assert_eq!(entry["id"], delivery.delivery_id.as_str());
    assert_eq!(entry["duplicates"], 1, "{}: the redelivery is counted", P::NAME);
    assert_eq!(entry["verdict"], "queued", "{}: the first verdict stays", P::NAME);
    let outcome = &entry["outcome"];
    assert_eq!(outcome["status"], "synced", "{}: {entry:#}", P::NAME);
    assert_eq!(outcome["commit"], s.head().as_str());
    assert_eq!(outcome["stats"]["written"], 1);
    assert_eq!(outcome["attempts"], 1);
    assert_eq!(
        all[1]["outcome"]["stats"]["written"],
        4,
        "{}: the scene's first push",
        P::NAME
    );
    // Filters.
    assert!(failed.is_empty(), "{}: {failed:#?}", P::NAME);
    assert_eq!(recent.len(), 2);
    assert!(none_since.is_empty(), "{none_since:#?}");
    assert!(other.is_empty());
    // `show` prints the whole entry.
    assert!(shown, "{}: {err}", P::NAME);
    for expected in [
        "verdict      queued",
        "duplicates   1",
        "outcome      synced",
        "repository   DATA/models",
        &format!("commit       {}", s.head()),
    ] {
        assert!(text.contains(expected), "{}: {expected:?} in\n{text}", P::NAME);
    }
    let (found, _, missing) = hubsync(&s.p, &["deliveries", "show", &forged.delivery_id]).await;
    assert!(
        found == (forged.delivery_id == delivery.delivery_id),
        "{}: the forged delivery is not recorded",
        P::NAME
    );
    if !found {
        assert!(missing.contains("no delivery"), "{missing}");
    }
}

/// After a sync that failed until it was dead-lettered (wrong token): `--failed` lists the push
/// with its error and its attempts.
pub(crate) async fn assert_failed_delivery_shows_the_error_and_attempts<P: Pipeline>(s: &Scene<P>) {
    let failed = listed(&s.p, &["--failed"]).await;

    assert_eq!(failed.len(), 1, "{}: {failed:#?}", P::NAME);
    let outcome = &failed[0]["outcome"];
    assert_eq!(outcome["status"], "dead-lettered", "{}: {outcome:#}", P::NAME);
    let error = outcome["error"].as_str().unwrap_or_default();
    assert!(error.contains("401"), "{}: {error}", P::NAME);
    let attempts = outcome["attempts"].as_u64().unwrap_or_default();
    let expected = if P::NAME == "aws" {
        u64::from(hubsync_core::consumer::DEFAULT_MAX_ATTEMPTS)
    } else {
        1
    };
    assert_eq!(attempts, expected, "{}: the attempt that gave up", P::NAME);
    let (_, text, _) = hubsync(&s.p, &["deliveries", "--failed"]).await;
    assert!(text.contains("dead-lettered (attempt"), "{}: {text}", P::NAME);
}

/// After a reconcile healed a lost push: the delivery log lists the reconcile's message (which no
/// webhook delivered) under its own id, with its kind and its sync's outcome.
pub(crate) async fn assert_reconcile_is_listed_under_its_own_id<P: Pipeline>(s: &Scene<P>) {
    let newest =
        s.p.store()
            .deliveries(&DeliveryQuery {
                repo: Some(s.id.clone()),
                limit: 1,
                ..DeliveryQuery::default()
            })
            .await
            .unwrap();

    let entry = newest.first().unwrap_or_else(|| panic!("{}: nothing listed", P::NAME));
    assert_eq!(entry.kind, DeliveryKind::Reconcile, "{}: {entry:#?}", P::NAME);
    assert!(entry.id.as_str().starts_with("reconcile-"), "{}", entry.id);
    let outcome = entry.outcome.as_ref().expect("the sync's outcome is recorded");
    assert_eq!(outcome.status, OutcomeStatus::Synced, "{}: {outcome:#?}", P::NAME);
    assert_eq!(outcome.commit.as_ref().map(ToString::to_string), Some(s.head()));
}
