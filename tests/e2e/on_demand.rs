//! Sync on demand and the queue's administration, through the `hubsync` binary, on both
//! backends: `hubsync sync` (whole tree, `--recent`, `--from COMMIT`, `--queue`), `repos add`
//! queueing its initial full sync on AWS, and `hubsync queue` on the SQS dead-letter queue.

use std::time::Duration;

use hubsync_bitbucket_sim::FileOp;
use hubsync_core::ids::RepoRef;
use hubsync_core::ports::{LeaseOwner, ModelStore, RepoRegistry};

use super::{AwsPipeline, LocalPipeline, Pipeline, Scene, Setup, hubsync, model};

on_both_backends!(
    each_sync_mode_changes_exactly_what_it_asks_for,
    a_queued_sync_reaches_the_hub_through_the_worker,
    repos_add_syncs_the_new_repository_at_once,
);

/// Removes the model at `path` from the hub as a person would by hand, outside any sync.
async fn remove_by_hand<P: Pipeline>(s: &Scene<P>, path: &str) {
    let owner = LeaseOwner::generate("a person");
    let lease =
        s.p.store()
            .acquire_lease(&s.id, &owner, Duration::from_secs(60))
            .await
            .unwrap();
    assert!(
        s.p.store().delete_model(&lease, path).await.unwrap(),
        "{path} was stored"
    );
    s.p.store().release_lease(&lease, true).await.unwrap();
}

async fn stored<P: Pipeline>(s: &Scene<P>) -> Vec<String> {
    let models = s.p.store().list_models(&s.id).await.unwrap();
    let mut paths: Vec<String> = models.into_iter().map(|m| m.path).collect();
    paths.sort();
    paths
}

/// The scene's models, then `models/x.json` added (the returned commit), then `x` modified and
/// `models/y.json` added; all replicated, then `root model.json` (older than the commit) and
/// `models/x.json` removed from the hub by hand.
async fn two_more_commits_then_two_models_removed_by_hand<P: Pipeline>(s: &Scene<P>) -> String {
    let second = s
        .commit(&[FileOp::write("models/x.json", model(11, "X", 3_000))], "add x")
        .await;
    s.commit(
        &[
            FileOp::write("models/x.json", model(12, "X2", 3_000)),
            FileOp::write("models/y.json", model(13, "Y", 3_000)),
        ],
        "change x, add y",
    )
    .await;
    s.assert_replicated().await;
    remove_by_hand(s, "root model.json").await;
    remove_by_hand(s, "models/x.json").await;
    second.to_hash().unwrap().to_owned()
}

async fn each_sync_mode_changes_exactly_what_it_asks_for<P: Pipeline>() {
    // Arrange
    let s = Scene::<P>::new(Setup::default()).await;
    let since = two_more_commits_then_two_models_removed_by_hand(&s).await;
    let missing = vec![
        "models/hr/people.json",
        "models/sales/orders.hck.json",
        "models/y.json",
        "modèles/données.hck.json",
    ];
    let elsewhere = s
        .repo
        .write_commit(
            None,
            &[FileOp::write("other.json", model(14, "O", 1_000))],
            "not on main",
        )
        .unwrap();

    // Act + Assert: from the cursor, nothing has changed.
    let (ok, out, err) = hubsync(&s.p, &["sync", "DATA/models", "--recent"]).await;
    assert!(ok && out.contains("is up to date"), "{}: {out}{err}", P::NAME);
    assert_eq!(stored(&s).await, missing);

    // The changes since the second commit: x again (at the head), y; not the root model.
    let (ok, out, err) = hubsync(&s.p, &["sync", "DATA/models", "--from", &since]).await;
    assert!(ok && out.contains("2 written"), "{}: {out}{err}", P::NAME);
    let mut with_x = missing.clone();
    with_x.insert(2, "models/x.json");
    assert_eq!(stored(&s).await, with_x, "{}", P::NAME);
    let x = s.p.store().get_model(&s.id, "models/x.json").await.unwrap().unwrap();
    assert!(x.content == model(12, "X2", 3_000), "{}: x as at the head", P::NAME);

    // A commit that is not there, or not in main's history: a clear error, nothing written.
    let unknown = "f".repeat(40);
    let (ok, _, err) = hubsync(&s.p, &["sync", "DATA/models", "--from", &unknown]).await;
    assert!(
        !ok && err.contains(&format!("has no commit {unknown}")),
        "{}: {err}",
        P::NAME
    );
    let (ok, _, err) = hubsync(&s.p, &["sync", "DATA/models", "--from", &elsewhere]).await;
    assert!(!ok && err.contains("is not an ancestor"), "{}: {err}", P::NAME);

    // The whole repository: the root model is back.
    let (ok, out, err) = hubsync(&s.p, &["sync", "DATA/models"]).await;
    assert!(ok && out.contains("1 written"), "{}: {out}{err}", P::NAME);
    s.assert_store_matches_head(&[]).await;
}

async fn a_queued_sync_reaches_the_hub_through_the_worker<P: Pipeline>() {
    // Arrange
    let s = Scene::<P>::new(Setup::default()).await;
    let since = two_more_commits_then_two_models_removed_by_hand(&s).await;

    // Act: the changes since the second commit, queued, then synced by the pipeline's worker.
    let (ok, out, err) = hubsync(&s.p, &["sync", "DATA/models", "--from", &since, "--queue"]).await;
    assert!(ok && out.contains("queued a sync from"), "{}: {out}{err}", P::NAME);
    assert_eq!(s.p.drain().await, 0, "{}", P::NAME);

    // Assert: x is back, the root model is not (it changed before that commit).
    let now = stored(&s).await;
    assert!(now.contains(&"models/x.json".to_owned()), "{}: {now:?}", P::NAME);
    assert!(!now.contains(&"root model.json".to_owned()), "{}: {now:?}", P::NAME);

    // Act: the whole repository, queued.
    let (ok, out, err) = hubsync(&s.p, &["sync", "DATA/models", "--queue"]).await;
    assert!(
        ok && out.contains("queued a full sync of DATA/models"),
        "{}: {out}{err}",
        P::NAME
    );
    s.assert_replicated().await;

    // A commit that is not there is refused before anything is queued.
    let unknown = "e".repeat(40);
    let (ok, _, err) = hubsync(&s.p, &["sync", "DATA/models", "--from", &unknown, "--queue"]).await;
    assert!(
        !ok && err.contains("nothing was queued") && err.contains("has no commit"),
        "{}: {err}",
        P::NAME
    );

    // An unregistered repository is refused before anything is queued.
    let (ok, _, err) = hubsync(&s.p, &["sync", "DATA/nope", "--queue"]).await;
    assert!(!ok && err.contains("not registered"), "{}: {err}", P::NAME);
}

async fn repos_add_syncs_the_new_repository_at_once<P: Pipeline>() {
    // Arrange
    let p = P::start(Setup::default()).await;
    let repo = p.sim().create_repo("DATA", "added").unwrap();
    let push = repo
        .commit("main", &[FileOp::write("one.hck.json", model(21, "One", 2_000))], "m")
        .unwrap();
    let id = RepoRef::parse("DATA/added").unwrap();

    // Act: on AWS the initial full sync is queued for the sync function; locally it runs here.
    let (ok, out, err) = hubsync(&p, &["repos", "add", "DATA/added"]).await;
    assert!(ok, "{}: {out}{err}", P::NAME);
    assert_eq!(p.drain().await, 0, "{}", P::NAME);

    // Assert
    let models = p.store().list_models(&id).await.unwrap();
    assert_eq!(models.len(), 1, "{}: {models:?}", P::NAME);
    let record = p.store().repo(&id).await.unwrap().unwrap();
    assert_eq!(
        record.cursor.unwrap().commit.as_str(),
        push.to_hash().unwrap(),
        "{}",
        P::NAME
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_dead_letters_are_listed_without_being_consumed_and_redriven_with_the_cli() {
    // Arrange: a wrong token, so the scene's push is dead-lettered.
    let wrong = "BBDC-wrong-token-for-the-sqs-queue-test";
    let s = Scene::<AwsPipeline>::new(Setup {
        token: Some(wrong.into()),
        ..Setup::default()
    })
    .await;
    assert_eq!(s.p.drain().await, 1);
    let head = s.head();

    // Act + Assert: the counts, then the listing, twice (it consumes nothing).
    let (ok, status, err) = hubsync(&s.p, &["queue", "status"]).await;
    assert!(ok, "{status}{err}");
    assert!(
        status.contains("queue         visible 0  in flight 0  delayed 0"),
        "{status}"
    );
    assert!(
        status.contains("dead letters  visible 1  in flight 0  delayed 0"),
        "{status}"
    );
    for _ in 0..2 {
        let (ok, letters, err) = hubsync(&s.p, &["queue", "dead-letters"]).await;
        assert!(ok, "{letters}{err}");
        assert_eq!(letters.lines().count(), 2, "{letters}");
        assert!(
            letters.ends_with("1 dead letter listed (SQS counts 1 in the dead-letter queue)\n"),
            "{letters}"
        );
        assert!(
            letters.contains("DATA/models") && letters.contains(&head[..12]) && letters.contains("  push  "),
            "{letters}"
        );
        assert!(
            letters.contains("first sent 20") && letters.contains("received "),
            "{letters}"
        );
        assert!(!letters.contains(wrong), "no token in the listing");
    }
    let (_, letters, _) = hubsync(&s.p, &["queue", "dead-letters"]).await;
    let delivery = letters.split_whitespace().next().unwrap().to_owned();

    // An unknown id is an error and moves nothing; the right one is moved.
    let (ok, _, err) = hubsync(&s.p, &["queue", "redrive", "--id", "no-such-delivery"]).await;
    assert!(!ok && err.contains("no dead letter no-such-delivery"), "{err}");
    let (ok, out, err) = hubsync(&s.p, &["queue", "redrive", "--id", &delivery]).await;
    assert!(
        ok && out.contains(&format!("dead letter {delivery} of DATA/models is queued again")),
        "{out}{err}"
    );

    // The push is on the main queue again, in its repository's group, and nowhere else.
    let (_, status, _) = hubsync(&s.p, &["queue", "status"]).await;
    assert!(status.contains("queue         visible 1"), "{status}");
    assert!(status.contains("dead letters  visible 0"), "{status}");
    let queued = s.p.aws().receive_all(&s.p.aws().resources.queue_url).await;
    assert_eq!(queued.len(), 1);
    let body: hubsync_core::push::PushMessage = serde_json::from_str(queued[0].body().unwrap()).unwrap();
    assert_eq!(body.delivery_id.as_str(), delivery);
    let group = queued[0]
        .attributes()
        .and_then(|a| a.get(&aws_sdk_sqs::types::MessageSystemAttributeName::MessageGroupId))
        .cloned();
    assert_eq!(group, Some(s.id.message_group()));
    let (_, none, _) = hubsync(&s.p, &["queue", "redrive"]).await;
    assert!(none.contains("no dead letters"), "{none}");
}

/// Puts a full-sync request of each repository straight on the dead-letter queue, in order, with
/// the delivery ids `dead-00`, `dead-01`... (returned).
async fn dead_lettered(p: &AwsPipeline, repos: impl IntoIterator<Item = &RepoRef>) -> Vec<String> {
    let mut ids = Vec::new();
    for (i, repo) in repos.into_iter().enumerate() {
        let id = format!("dead-{i:02}");
        let delivery = hubsync_core::ids::DeliveryId::parse(&id).unwrap();
        let message = hubsync_core::push::PushMessage::full_sync(repo.clone(), delivery, chrono::Utc::now());
        put_dead_letter(p, &repo.message_group(), &message.to_json(), &id).await;
        ids.push(id);
    }
    ids
}

async fn put_dead_letter(p: &AwsPipeline, group: &str, body: &str, dedup: &str) {
    p.aws()
        .sqs()
        .send_message()
        .queue_url(&p.aws().resources.dead_letter_queue_url)
        .message_body(body)
        .message_group_id(group)
        .message_deduplication_id(dedup)
        .send()
        .await
        .unwrap();
}

/// The first column of a listing's dead-letter lines (the ids `redrive` takes), in order.
fn listed_ids(listing: &str) -> Vec<String> {
    listing
        .lines()
        .filter(|l| !l.ends_with(" in the dead-letter queue)"))
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_dead_letters_beyond_ten_of_one_repository_are_each_listed_once_in_order_left_visible_and_all_redriven() {
    // Arrange: 13 dead letters of one repository (more than SQS hands out of a group at once)
    // and one of another, put straight on the dead-letter queue.
    let p = AwsPipeline::start(Setup::default()).await;
    let (models, infra) = (
        RepoRef::parse("DATA/models").unwrap(),
        RepoRef::parse("OPS/infra").unwrap(),
    );
    let expected = dead_lettered(&p, std::iter::repeat_n(&models, 13).chain([&infra])).await;

    // Act: two listings, then the counts, then a redrive of them all.
    let mut listings = Vec::new();
    for _ in 0..2 {
        let (ok, out, err) = hubsync(&p, &["queue", "dead-letters"]).await;
        assert!(ok, "{out}{err}");
        listings.push(out);
    }
    let (_, status, _) = hubsync(&p, &["queue", "status"]).await;
    let (ok, redriven, err) = hubsync(&p, &["queue", "redrive"]).await;
    let (_, after, _) = hubsync(&p, &["queue", "status"]).await;

    // Assert: every one listed once, in its repository's order, the same in both listings (no
    // receive counted by the listing), with the queue's own count beside them.
    let ids = |listing: &str| -> Vec<String> {
        listing
            .lines()
            .filter(|l| l.starts_with("dead-"))
            .map(|l| l.split_whitespace().next().unwrap().to_owned())
            .collect()
    };
    for listing in &listings {
        let mut listed = ids(listing);
        let of_models: Vec<_> = listed.iter().filter(|id| *id != "dead-13").cloned().collect();
        assert_eq!(of_models, expected[..13], "in the repository's order:\n{listing}");
        listed.sort();
        assert_eq!(listed, expected, "each listed once:\n{listing}");
        assert!(
            listing.lines().last().unwrap_or_default()
                == "14 dead letters listed (SQS counts 14 in the dead-letter queue)",
            "{listing}"
        );
    }
    let without_counts = |listing: &str| -> Vec<String> {
        listing
            .lines()
            .filter(|l| l.starts_with("dead-"))
            .map(|l| l.split("  received ").next().unwrap().to_owned())
            .collect()
    };
    assert_eq!(without_counts(&listings[0]), without_counts(&listings[1]));
    let counts = |listing: &str| -> Vec<String> {
        listing
            .lines()
            .filter(|l| l.starts_with("dead-"))
            .map(|l| l.rsplit("  received ").next().unwrap().to_owned())
            .collect()
    };
    assert_eq!(counts(&listings[0]), counts(&listings[1]), "listing adds no receive");
    assert!(
        status.contains("dead letters  visible 14  in flight 0"),
        "all visible again: {status}"
    );
    assert!(ok, "{redriven}{err}");
    let moved: Vec<_> = redriven
        .lines()
        .filter_map(|l| l.strip_prefix("dead letter "))
        .map(|l| l.split_whitespace().next().unwrap().to_owned())
        .collect();
    let moved_models: Vec<_> = moved.iter().filter(|id| *id != "dead-13").cloned().collect();
    assert_eq!(moved_models, expected[..13], "redriven in order:\n{redriven}");
    assert_eq!(moved.len(), 14, "{redriven}");
    assert!(after.contains("queue         visible 14"), "{after}");
    assert!(after.contains("dead letters  visible 0  in flight 0"), "{after}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_redrive_by_id_reaches_a_dead_letter_beyond_ten_of_its_repository_and_one_whose_body_is_unreadable() {
    // Arrange: 13 dead letters of one repository (more than SQS hands out of a group at once),
    // and one whose body is not a push (listed by its message id), listed once.
    let p = AwsPipeline::start(Setup::default()).await;
    let models = RepoRef::parse("DATA/models").unwrap();
    let mut expected = dead_lettered(&p, std::iter::repeat_n(&models, 13)).await;
    put_dead_letter(&p, "OPS-infra", "not a push", "unreadable").await;
    let (ok, listing, err) = hubsync(&p, &["queue", "dead-letters"]).await;
    assert!(ok, "{listing}{err}");
    let unreadable = listed_ids(&listing).pop().unwrap();
    assert!(listing.contains("  unreadable  "), "{listing}");

    // Act: the 12th of the repository, then the unreadable one by the id the listing printed.
    let twelfth = expected.remove(11);
    let (ok, out, err) = hubsync(&p, &["queue", "redrive", "--id", &twelfth]).await;
    let (ok_unreadable, out_unreadable, err_unreadable) = hubsync(&p, &["queue", "redrive", "--id", &unreadable]).await;
    let (_, after, _) = hubsync(&p, &["queue", "dead-letters"]).await;

    // Assert: both moved to the push queue; the others still listed once each, in order.
    assert!(
        ok && out.contains(&format!("dead letter {twelfth} of DATA/models is queued again")),
        "{out}{err}"
    );
    assert!(
        ok_unreadable && out_unreadable.contains(&format!("dead letter {unreadable} of OPS-infra is queued again")),
        "{out_unreadable}{err_unreadable}"
    );
    assert_eq!(listed_ids(&after), expected, "{after}");
    let queued = p.aws().receive_all(&p.aws().resources.queue_url).await;
    let bodies: Vec<_> = queued.iter().filter_map(|m| m.body()).collect();
    assert_eq!(bodies.len(), 2, "{bodies:?}");
    assert!(
        bodies.iter().any(|b| b.contains(&format!("\"{twelfth}\""))),
        "{bodies:?}"
    );
    assert!(bodies.contains(&"not a push"), "{bodies:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_queue_commands_without_the_dead_letter_queue_url_say_which_setting_is_missing() {
    let p = AwsPipeline::start(Setup::default()).await;

    let (ok, _, err) = super::hubsync_with_env(&p, &["queue", "status"], &[("HUB_DEAD_LETTER_QUEUE_URL", "")]).await;

    assert!(!ok && err.contains("HUB_DEAD_LETTER_QUEUE_URL is not set"), "{err}");
    assert!(err.contains("DeadLetterQueueUrl"), "{err}");
}

/// The local queue refuses an id that is not a number, and keeps its own output.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_redrive_of_an_id_that_is_not_a_number_says_what_an_id_is() {
    let p = LocalPipeline::start(Setup::default()).await;

    let (ok, _, err) = hubsync(&p, &["queue", "redrive", "--id", "abc"]).await;

    assert!(!ok && err.contains("\"abc\" is not a dead letter id"), "{err}");
}
