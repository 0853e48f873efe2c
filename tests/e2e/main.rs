//! End-to-end: pushes to real git repositories behind the Bitbucket Data Center simulator,
//! delivered as signed webhooks, through the webhook entry point, the queue and the sync, into
//! the store. After each step, the store holds exactly the models of the default branch's head,
//! byte for byte. Every scenario runs on both backends (AWS on moto, and local `hubsync serve`).

mod chunks;
mod cost;
mod deliveries;
mod lease;
mod limits;
mod pipeline;
mod slices;

use std::collections::BTreeSet;
use std::process::Command;

use deliveries::the_delivery_log_shows_each_push_with_its_verdict_then_its_outcome;
use hubsync_bitbucket_sim::models::{ModelSpec, generate_model};
use hubsync_bitbucket_sim::{FileOp, Push, Repo};
use hubsync_core::ids::RepoRef;
use hubsync_core::model::ModelStatus;
use hubsync_core::ports::{ModelStore, RepoRegistry};
use pipeline::{AwsPipeline, LocalPipeline, Pipeline, Setup, WEBHOOK_SECRET};

fn model(seed: u64, name: &str, bytes: usize) -> Vec<u8> {
    generate_model(&ModelSpec {
        seed,
        name: name.into(),
        app_target: if seed.is_multiple_of(2) {
            "MONGODB"
        } else {
            "PostgreSQL"
        }
        .into(),
        target_bytes: bytes,
        polyglot_refs: seed.is_multiple_of(3),
        polyglot_model_path: None,
    })
}

/// Independent of the code under test: the generator's models (and the malformed ones these
/// tests write) carry this key; the other JSON files do not.
fn looks_like_model(bytes: &[u8]) -> bool {
    bytes.windows(26).any(|w| w == b"\"persistenceSchemaVersion\"")
}

struct Scene<P: Pipeline> {
    p: P,
    repo: Repo,
    id: RepoRef,
}

impl<P: Pipeline> Scene<P> {
    /// A registered repository with models in nested folders and other files on `main`.
    async fn new(setup: Setup) -> Self {
        let p = P::start(setup).await;
        let repo = p.sim().create_repo("DATA", "models").expect("repository");
        let id = RepoRef::parse("DATA/models").unwrap();
        assert!(p.store().register(&id).await.unwrap());
        let scene = Self { p, repo, id };
        scene
            .commit(
                &[
                    FileOp::write("models/sales/orders.hck.json", model(1, "Orders", 20_000)),
                    FileOp::write("models/hr/people.json", model(2, "People", 8_000)),
                    FileOp::write("root model.json", model(3, "Root", 5_000)),
                    FileOp::write("modèles/données.hck.json", model(4, "Données", 4_000)),
                    FileOp::write(
                        "openapi/api.json",
                        br#"{"openapi":"3.1.0","info":{"title":"x","version":"1"},"paths":{}}"#.to_vec(),
                    ),
                    FileOp::write("package.json", br#"{"name":"models","version":"1.0.0"}"#.to_vec()),
                    FileOp::write("README.md", b"# Data models\n".to_vec()),
                ],
                "initial models",
            )
            .await;
        scene
    }

    /// Commits to main and delivers the push; asserts the webhook accepted it.
    async fn commit(&self, ops: &[FileOp], message: &str) -> Push {
        let push = self.repo.commit("main", ops, message).expect("commit");
        self.deliver(&push).await;
        push
    }

    async fn deliver(&self, push: &Push) {
        let delivery = self
            .p
            .sim()
            .webhook(&self.repo, push, Some(WEBHOOK_SECRET))
            .expect("delivery");
        assert_eq!(
            self.p.deliver(&delivery).await,
            202,
            "{}: the webhook accepts the push",
            P::NAME
        );
    }

    fn head(&self) -> String {
        self.repo.head("main").unwrap().expect("main has a head")
    }

    /// Drains the queue and checks the store holds exactly the models at main's head.
    async fn assert_replicated(&self) {
        assert_eq!(self.p.drain().await, 0, "{}: nothing was dead-lettered", P::NAME);
        self.assert_store_matches_head(&[]).await;
    }

    /// Drains the queue and checks the store holds exactly the models at main's head, except
    /// that each of `refused` (path, reason) is listed as a malformed model with that reason and
    /// without its content.
    async fn assert_replicated_but(&self, refused: &[(&str, &str)]) {
        assert_eq!(self.p.drain().await, 0, "{}: nothing was dead-lettered", P::NAME);
        self.assert_store_matches_head_but(&[], refused).await;
    }

    async fn assert_store_matches_head(&self, ignored_prefixes: &[&str]) {
        self.assert_store_matches_head_but(ignored_prefixes, &[]).await;
    }

    async fn assert_store_matches_head_but(&self, ignored_prefixes: &[&str], refused: &[(&str, &str)]) {
        let head = self.head();
        let mut expected = BTreeSet::new();
        for path in self.repo.files(&head).unwrap() {
            let bytes = self.repo.read_file(&head, &path).unwrap().unwrap();
            if path.ends_with(".json")
                && looks_like_model(&bytes)
                && !ignored_prefixes.iter().any(|p| path.starts_with(p))
            {
                expected.insert(path);
            }
        }
        let stored: BTreeSet<String> = self
            .p
            .store()
            .list_models(&self.id)
            .await
            .unwrap()
            .into_iter()
            .map(|m| m.path)
            .collect();
        assert_eq!(stored, expected, "{}: stored models = models at the head", P::NAME);
        for path in &expected {
            let model = self.p.store().get_model(&self.id, path).await.unwrap().expect("stored");
            if let Some((_, reason)) = refused.iter().find(|(p, _)| p == path) {
                assert_eq!(
                    model.status,
                    ModelStatus::Malformed {
                        error: (*reason).to_owned()
                    },
                    "{}: {path} is listed with its reason",
                    P::NAME
                );
                continue;
            }
            assert!(
                model.content == self.repo.read_file(&head, path).unwrap().unwrap(),
                "{}: {path} is stored byte for byte",
                P::NAME
            );
        }
        let record = self.p.store().repo(&self.id).await.unwrap().unwrap();
        assert_eq!(
            record.cursor.map(|c| c.commit.to_string()),
            Some(head),
            "{}: the cursor is at the head",
            P::NAME
        );
        assert!(record.last_error.is_none(), "{}: {:?}", P::NAME, record.last_error);
    }
}

macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn aws() {
                super::$name::<super::AwsPipeline>().await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn local() {
                super::$name::<super::LocalPipeline>().await
            }
        }
    )*};
}

mod on_demand;

on_both_backends!(
    adds_modifications_deletions_and_moves_are_replicated,
    pushes_to_other_branches_and_tags_change_nothing,
    force_pushes_are_replicated,
    large_models_are_stored_whole,
    a_lost_webhook_is_healed_by_the_next_push,
    a_lost_last_push_is_healed_by_the_reconcile_without_another_push,
    a_duplicate_delivery_is_harmless,
    a_burst_of_twenty_pushes_ends_at_the_last_head,
    a_wrong_token_gives_a_clear_error_and_keeps_the_cursor,
    hubignore_changes_apply_at_once,
    a_diff_over_the_server_cap_falls_back_to_a_full_sync,
    malformed_models_are_recorded_not_dropped,
    unregistered_repositories_are_not_replicated,
    transient_server_errors_are_retried,
    models_get_prints_the_file_at_the_head_byte_for_byte,
    the_cli_registers_syncs_lists_and_removes_repositories,
    a_file_over_the_size_cap_is_listed_with_its_reason_and_the_rest_syncs,
    a_file_announced_over_the_size_cap_is_never_read,
    a_model_name_of_500_kb_is_truncated_with_a_marker,
    the_cli_sync_takes_the_size_cap_from_the_environment,
    a_path_of_1100_bytes_is_replicated,
    a_first_sync_past_its_deadline_completes_in_slices_fetching_each_model_once,
    a_push_between_slices_is_replicated_after_the_sliced_head,
    an_incremental_push_of_k_models_costs_k_plus_3_requests,
    the_delivery_log_shows_each_push_with_its_verdict_then_its_outcome,
);

use cost::an_incremental_push_of_k_models_costs_k_plus_3_requests;
use slices::{
    a_first_sync_past_its_deadline_completes_in_slices_fetching_each_model_once,
    a_push_between_slices_is_replicated_after_the_sliced_head,
};

/// The default size cap: a Hackolade Model Hub accepts nothing larger.
const MAX_MODEL_BYTES: u64 = 32 * 1024 * 1024;

/// Commits an unrelated model and checks the repository syncs on as before.
async fn assert_next_push_syncs<P: Pipeline>(s: &Scene<P>, refused: &[(&str, &str)]) {
    s.commit(
        &[FileOp::write("models/after/next.json", model(99, "Next", 3_000))],
        "an unrelated push",
    )
    .await;
    s.assert_replicated_but(refused).await;
    assert!(
        s.p.store()
            .get_model(&s.id, "models/after/next.json")
            .await
            .unwrap()
            .is_some(),
        "{}: the next push is replicated",
        P::NAME
    );
}

async fn a_file_over_the_size_cap_is_listed_with_its_reason_and_the_rest_syncs<P: Pipeline>() {
    // Arrange
    let s = Scene::<P>::new(Setup::default()).await;
    s.assert_replicated().await;
    let huge = model(101, "Huge", 40 * 1024 * 1024);
    assert!(huge.len() as u64 > MAX_MODEL_BYTES);
    let reason = format!("too large ({} bytes)", huge.len());

    // Act
    s.commit(
        &[
            FileOp::write("big/forty-megabytes.json", huge),
            FileOp::write("models/beside/small.json", model(102, "Small", 4_000)),
        ],
        "a model over the cap and a small one",
    )
    .await;

    // Assert
    let refused = [("big/forty-megabytes.json", reason.as_str())];
    s.assert_replicated_but(&refused).await;
    assert_next_push_syncs(&s, &refused).await;
}

async fn a_file_announced_over_the_size_cap_is_never_read<P: Pipeline>() {
    // Arrange
    let s = Scene::<P>::new(Setup::default()).await;
    s.assert_replicated().await;
    let announced: u64 = 3 << 29; // 1.5 GiB, announced in Content-Length, never sent
    s.p.sim().announce_raw(&s.repo, "big/announced.hck.json", announced);
    s.p.sim().clear_requests();

    // Act
    s.commit(
        &[
            FileOp::write("big/announced.hck.json", model(111, "Announced", 3_000)),
            FileOp::write("models/beside/small.json", model(112, "Small", 4_000)),
        ],
        "a file announced over the cap",
    )
    .await;

    // Assert
    let reason = format!("too large ({announced} bytes)");
    let refused = [("big/announced.hck.json", reason.as_str())];
    s.assert_replicated_but(&refused).await;
    let sent = s.p.sim().announced_bytes_sent();
    assert!(
        sent <= hubsync_bitbucket_sim::ANNOUNCED_BODY_SENT_AT_MOST,
        "{}: {sent} bytes of the announced body were sent",
        P::NAME
    );
    let asked =
        s.p.sim()
            .requests()
            .iter()
            .filter(|r| r.path_and_query.contains("/raw/big/announced.hck.json"))
            .count();
    assert_eq!(asked, 1, "{}: the file is asked for once, not retried", P::NAME);
    assert_next_push_syncs(&s, &refused).await;
}

async fn a_model_name_of_500_kb_is_truncated_with_a_marker<P: Pipeline>() {
    // Arrange
    let s = Scene::<P>::new(Setup::default()).await;
    s.assert_replicated().await;
    let long_name = "Ω".repeat(250_000); // 500,000 bytes of UTF-8
    let mut named: serde_json::Value = serde_json::from_slice(&model(121, "x", 3_000)).unwrap();
    named["modelName"] = long_name.clone().into();
    let bytes = serde_json::to_vec_pretty(&named).unwrap();

    // Act
    s.commit(
        &[
            FileOp::write("models/long-name.json", bytes),
            FileOp::write("models/beside/small.json", model(122, "Small", 4_000)),
        ],
        "a model with a 500 KB name",
    )
    .await;

    // Assert
    s.assert_replicated().await;
    let stored =
        s.p.store()
            .get_model(&s.id, "models/long-name.json")
            .await
            .unwrap()
            .unwrap();
    let ModelStatus::Valid { facts } = stored.status else {
        panic!("{}: a long name is still a model: {:?}", P::NAME, stored.status)
    };
    assert!(
        facts.model_name.len() <= 4096 && facts.model_name.ends_with("[truncated]"),
        "{}: the name is truncated with a marker ({} bytes)",
        P::NAME,
        facts.model_name.len()
    );
    assert!(long_name.starts_with(facts.model_name.trim_end_matches(|c: char| c != 'Ω')));
    assert_next_push_syncs(&s, &[]).await;
}

async fn adds_modifications_deletions_and_moves_are_replicated<P: Pipeline>() {
    let s = Scene::<P>::new(Setup::default()).await;
    s.assert_replicated().await;

    s.commit(
        &[FileOp::write(
            "models/sales/orders.hck.json",
            model(11, "Orders v2", 25_000),
        )],
        "modify",
    )
    .await;
    s.assert_replicated().await;
    s.commit(
        &[FileOp::write("models/finance/ledger.json", model(12, "Ledger", 9_000))],
        "add",
    )
    .await;
    s.assert_replicated().await;
    s.commit(&[FileOp::delete("models/hr/people.json")], "delete").await;
    s.assert_replicated().await;
    s.commit(
        &[FileOp::rename("models/finance/ledger.json", "archive/2026/ledger.json")],
        "move",
    )
    .await;
    s.assert_replicated().await;
    let stored: Vec<String> =
        s.p.store()
            .list_models(&s.id)
            .await
            .unwrap()
            .into_iter()
            .map(|m| m.path)
            .collect();
    assert!(
        stored.contains(&"archive/2026/ledger.json".to_owned())
            && !stored.iter().any(|p| p.starts_with("models/finance"))
    );
    let orders =
        s.p.store()
            .get_model(&s.id, "models/sales/orders.hck.json")
            .await
            .unwrap()
            .unwrap();
    let ModelStatus::Valid { facts } = orders.status else {
        panic!("orders is a valid model")
    };
    assert_eq!(facts.model_name, "Orders v2");
    assert!(facts.entities > 0);
}

async fn pushes_to_other_branches_and_tags_change_nothing<P: Pipeline>() {
    let s = Scene::<P>::new(Setup::default()).await;
    s.assert_replicated().await;
    let main_head = s.head();
    let created = s.repo.create_branch("feature/x", &main_head).unwrap();
    s.deliver(&created).await;
    let on_branch = s
        .repo
        .commit(
            "feature/x",
            &[FileOp::write("models/new.json", model(21, "New", 3_000))],
            "wip",
        )
        .unwrap();
    s.deliver(&on_branch).await;
    let tag = s.repo.tag("v1.0.0", on_branch.to_hash().unwrap()).unwrap();
    s.deliver(&tag).await;
    let deleted = s.repo.delete_branch("feature/x").unwrap();
    s.deliver(&deleted).await;
    s.assert_replicated().await;
    assert!(s.p.store().get_model(&s.id, "models/new.json").await.unwrap().is_none());
}

async fn force_pushes_are_replicated<P: Pipeline>() {
    let s = Scene::<P>::new(Setup::default()).await;
    s.assert_replicated().await;
    let first = s.head();
    s.commit(
        &[FileOp::write("models/extra.json", model(31, "Extra", 4_000))],
        "extra",
    )
    .await;
    s.assert_replicated().await;
    // Back to an older commit...
    let back = s.repo.force_push("main", &first).unwrap();
    s.deliver(&back).await;
    s.assert_replicated().await;
    // ...and onto an unrelated history.
    let root = s
        .repo
        .write_commit(
            None,
            &[FileOp::write("fresh/only.hck.json", model(32, "Only", 6_000))],
            "rewrite",
        )
        .unwrap();
    let rewritten = s.repo.force_push("main", &root).unwrap();
    s.deliver(&rewritten).await;
    s.assert_replicated().await;
}

async fn large_models_are_stored_whole<P: Pipeline>() {
    let s = Scene::<P>::new(Setup::default()).await;
    s.assert_replicated().await;
    // Random text does not compress: this one cannot fit one DynamoDB item even gzipped.
    let mut noisy = model(43, "Noisy", 50_000);
    let noise: String = (0..1_200_000u32)
        .map(|i| char::from(b'a' + (i.wrapping_mul(2_654_435_761) >> 27) as u8 % 26))
        .collect();
    let at = noisy.iter().position(|b| *b == b'{').unwrap() + 1;
    noisy.splice(at..at, format!("\"description\": \"{noise}\",").into_bytes());
    s.commit(
        &[
            FileOp::write("big/two-megabytes.hck.json", model(41, "Two", 2 * 1024 * 1024)),
            FileOp::write("big/ten-megabytes.hck.json", model(42, "Ten", 10 * 1024 * 1024)),
            FileOp::write("big/noisy.hck.json", noisy),
        ],
        "large models",
    )
    .await;
    s.assert_replicated().await;
    // Replacing a large model switches to the new version whole.
    s.commit(
        &[FileOp::write(
            "big/ten-megabytes.hck.json",
            model(44, "Ten v2", 10 * 1024 * 1024 + 7),
        )],
        "replace",
    )
    .await;
    s.assert_replicated().await;
}

async fn a_lost_webhook_is_healed_by_the_next_push<P: Pipeline>() {
    let s = Scene::<P>::new(Setup::default()).await;
    s.assert_replicated().await;
    // Bitbucket never delivered this one.
    s.repo
        .commit(
            "main",
            &[
                FileOp::write("lost/one.json", model(51, "Lost", 3_000)),
                FileOp::delete("root model.json"),
            ],
            "lost",
        )
        .unwrap();
    s.commit(&[FileOp::write("found/two.json", model(52, "Found", 3_000))], "next")
        .await;
    s.assert_replicated().await;
    assert!(s.p.store().get_model(&s.id, "lost/one.json").await.unwrap().is_some());
    assert!(s.p.store().get_model(&s.id, "root model.json").await.unwrap().is_none());
}

async fn a_lost_last_push_is_healed_by_the_reconcile_without_another_push<P: Pipeline>() {
    // Arrange: replicated, then a push whose webhook Bitbucket never delivered.
    let s = Scene::<P>::new(Setup::default()).await;
    s.assert_replicated().await;
    s.repo
        .commit(
            "main",
            &[
                FileOp::write("lost/one.json", model(53, "Lost", 3_000)),
                FileOp::delete("root model.json"),
            ],
            "lost",
        )
        .unwrap();

    // Act: the schedule's reconcile, and the queue's consumer.
    let queued = s.p.reconcile().await;
    s.assert_replicated().await;

    // Assert: one sync was queued, and the store now holds the head (checked above); a second
    // reconcile finds nothing behind.
    assert_eq!(queued, 1, "{}: the repository behind its head is queued", P::NAME);
    assert!(s.p.store().get_model(&s.id, "lost/one.json").await.unwrap().is_some());
    assert!(s.p.store().get_model(&s.id, "root model.json").await.unwrap().is_none());
    assert_eq!(s.p.reconcile().await, 0, "{}: nothing is behind any more", P::NAME);
    deliveries::assert_reconcile_is_listed_under_its_own_id(&s).await;
}

async fn a_duplicate_delivery_is_harmless<P: Pipeline>() {
    let s = Scene::<P>::new(Setup::default()).await;
    let push = s
        .repo
        .commit("main", &[FileOp::write("dup.json", model(61, "Dup", 3_000))], "dup")
        .unwrap();
    let delivery = s.p.sim().webhook(&s.repo, &push, Some(WEBHOOK_SECRET)).unwrap();
    assert_eq!(s.p.deliver(&delivery).await, 202);
    assert_eq!(s.p.deliver(&delivery).await, 202);
    s.assert_replicated().await;
    // A late redelivery after the sync finds the cursor at the head and changes nothing.
    let before = s.p.store().list_models(&s.id).await.unwrap();
    assert_eq!(s.p.deliver(&delivery).await, 202);
    s.assert_replicated().await;
    assert_eq!(s.p.store().list_models(&s.id).await.unwrap(), before);
}

async fn a_burst_of_twenty_pushes_ends_at_the_last_head<P: Pipeline>() {
    let s = Scene::<P>::new(Setup::default()).await;
    for i in 0..20u64 {
        let mut ops = vec![FileOp::write(
            format!("burst/m{i:02}.json"),
            model(100 + i, &format!("Burst {i}"), 2_000),
        )];
        if i % 4 == 3 {
            ops.push(FileOp::delete(format!("burst/m{:02}.json", i - 1)));
        }
        s.commit(&ops, &format!("burst {i}")).await;
    }
    s.assert_replicated().await;
}

async fn a_wrong_token_gives_a_clear_error_and_keeps_the_cursor<P: Pipeline>() {
    let wrong = "BBDC-this-token-is-wrong-0123456789";
    let s = Scene::<P>::new(Setup {
        token: Some(wrong.into()),
        local_max_attempts: 1,
        ..Setup::default()
    })
    .await;
    assert_eq!(
        s.p.drain().await,
        1,
        "{}: the push ends in the dead-letter queue, not lost",
        P::NAME
    );
    let record = s.p.store().repo(&s.id).await.unwrap().unwrap();
    assert!(record.cursor.is_none(), "the cursor did not move");
    let error = record
        .last_error
        .expect("the error is recorded on the repository")
        .message;
    assert!(error.contains("DATA/models") && error.contains("401"), "{error}");
    assert!(!error.contains(wrong), "the token never appears in errors: {error}");
    assert!(s.p.store().list_models(&s.id).await.unwrap().is_empty());
    deliveries::assert_failed_delivery_shows_the_error_and_attempts(&s).await;
}

async fn hubignore_changes_apply_at_once<P: Pipeline>() {
    let s = Scene::<P>::new(Setup::default()).await;
    s.assert_replicated().await;
    s.commit(
        &[FileOp::write(".hubignore", b"# private drafts\nmodels/hr/\n".to_vec())],
        "ignore hr",
    )
    .await;
    assert_eq!(s.p.drain().await, 0);
    s.assert_store_matches_head(&["models/hr/"]).await;
    s.commit(
        &[FileOp::write("models/hr/payroll.json", model(71, "Payroll", 3_000))],
        "ignored add",
    )
    .await;
    assert_eq!(s.p.drain().await, 0);
    s.assert_store_matches_head(&["models/hr/"]).await;
    s.commit(&[FileOp::delete(".hubignore")], "publish hr").await;
    s.assert_replicated().await;
    assert!(
        s.p.store()
            .get_model(&s.id, "models/hr/payroll.json")
            .await
            .unwrap()
            .is_some()
    );
}

async fn a_diff_over_the_server_cap_falls_back_to_a_full_sync<P: Pipeline>() {
    let s = Scene::<P>::new(Setup {
        max_changes: 4,
        ..Setup::default()
    })
    .await;
    s.assert_replicated().await;
    let ops: Vec<FileOp> = (0..10u64)
        .map(|i| FileOp::write(format!("many/m{i}.json"), model(80 + i, &format!("Many {i}"), 1_500)))
        .collect();
    s.commit(&ops, "ten at once").await;
    s.assert_replicated().await;
    assert_eq!(s.p.store().list_models(&s.id).await.unwrap().len(), 14);
}

async fn malformed_models_are_recorded_not_dropped<P: Pipeline>() {
    let s = Scene::<P>::new(Setup::default()).await;
    let broken = br#"{"modelName": "Broken", "persistenceSchemaVersion": "8", "collections": ["#.to_vec();
    s.commit(&[FileOp::write("broken/model.hck.json", broken.clone())], "broken")
        .await;
    s.assert_replicated().await;
    let stored =
        s.p.store()
            .get_model(&s.id, "broken/model.hck.json")
            .await
            .unwrap()
            .expect("recorded");
    assert!(
        matches!(stored.status, ModelStatus::Malformed { .. }),
        "{:?}",
        stored.status
    );
    assert_eq!(stored.content, broken);
}

async fn unregistered_repositories_are_not_replicated<P: Pipeline>() {
    let s = Scene::<P>::new(Setup::default()).await;
    s.assert_replicated().await;
    let other = s.p.sim().create_repo("DATA", "unregistered").unwrap();
    let push = other
        .commit("main", &[FileOp::write("m.json", model(91, "M", 2_000))], "x")
        .unwrap();
    let delivery = s.p.sim().webhook(&other, &push, Some(WEBHOOK_SECRET)).unwrap();
    assert_eq!(s.p.deliver(&delivery).await, 202);
    assert_eq!(s.p.drain().await, 0);
    let other_id = RepoRef::parse("DATA/unregistered").unwrap();
    assert!(s.p.store().list_models(&other_id).await.unwrap().is_empty());
    assert!(s.p.store().repo(&other_id).await.unwrap().is_none());
}

async fn transient_server_errors_are_retried<P: Pipeline>() {
    let s = Scene::<P>::new(Setup::default()).await;
    s.p.sim()
        .fail_next(2, hubsync_bitbucket_sim::StatusCode::SERVICE_UNAVAILABLE, None);
    s.p.sim()
        .fail_next(1, hubsync_bitbucket_sim::StatusCode::TOO_MANY_REQUESTS, Some(0));
    s.assert_replicated().await;
    assert!(
        s.p.sim().requests().iter().any(|r| r.injected),
        "the faults were served"
    );
}

/// The `hubsync` binary, built once per test run.
fn hubsync_binary() -> std::path::PathBuf {
    hubsync_tests::cargo_bin("hubsync-cli", "hubsync")
}

async fn models_get_prints_the_file_at_the_head_byte_for_byte<P: Pipeline>() {
    let s = Scene::<P>::new(Setup::default()).await;
    s.commit(
        &[FileOp::write("big/two.hck.json", model(95, "Two", 2 * 1024 * 1024))],
        "big",
    )
    .await;
    s.assert_replicated().await;
    let bin = tokio::task::spawn_blocking(hubsync_binary).await.unwrap();
    for path in ["big/two.hck.json", "modèles/données.hck.json"] {
        let out = Command::new(&bin)
            .args(["models", "get", "DATA/models", path])
            .envs(s.p.cli_env())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(
            out.stdout == s.repo.read_file(&s.head(), path).unwrap().unwrap(),
            "{}: {path}",
            P::NAME
        );
    }
    let listed = Command::new(&bin)
        .args(["models", "list", "DATA/models"])
        .envs(s.p.cli_env())
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&listed.stdout).contains("big/two.hck.json"));
    let missing = Command::new(&bin)
        .args(["models", "get", "DATA/models", "nope.json"])
        .envs(s.p.cli_env())
        .output()
        .unwrap();
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no model at nope.json"));
}

/// Runs the `hubsync` binary against the pipeline's store; (success, stdout, stderr).
async fn hubsync<P: Pipeline>(p: &P, args: &[&str]) -> (bool, String, String) {
    hubsync_with_env(p, args, &[]).await
}

async fn hubsync_with_env<P: Pipeline>(p: &P, args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let bin = tokio::task::spawn_blocking(hubsync_binary).await.unwrap();
    let out = Command::new(&bin)
        .args(args)
        .env_remove("HUB_CONFIG")
        .env_remove("HUB_MAX_MODEL_BYTES")
        .env("RUST_LOG", "warn")
        .envs(p.cli_env())
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn the_cli_registers_syncs_lists_and_removes_repositories<P: Pipeline>() {
    let p = P::start(Setup::default()).await;
    let repo = p.sim().create_repo("DATA", "cli-repo").unwrap();
    let push = repo
        .commit(
            "main",
            &[
                FileOp::write("a/one.hck.json", model(1, "One", 3_000)),
                FileOp::write("two.json", model(2, "Two", 3_000)),
            ],
            "m",
        )
        .unwrap();
    let head = push.to_hash().unwrap().to_owned();
    let id = RepoRef::parse("DATA/cli-repo").unwrap();

    let (added, out, err) = hubsync(&p, &["repos", "add", "DATA/cli-repo", "--no-sync"]).await;
    assert!(added, "{out}{err}");
    let (_, listed, _) = hubsync(&p, &["repos", "list"]).await;
    assert!(
        listed.contains("DATA/cli-repo") && listed.contains("never synced"),
        "{listed}"
    );

    let (synced, out, err) = hubsync(&p, &["sync", "DATA/cli-repo"]).await;
    assert!(synced, "{out}{err}");
    assert!(out.contains("2 written"), "{out}");
    let record = p.store().repo(&id).await.unwrap().unwrap();
    assert_eq!(record.cursor.unwrap().commit.to_string(), head);
    let (_, json, _) = hubsync(&p, &["repos", "list", "--json"]).await;
    assert!(json.contains(&head), "{json}");
    let (_, models, _) = hubsync(&p, &["models", "list", "DATA/cli-repo"]).await;
    assert!(
        models.contains("a/one.hck.json") && models.contains("two.json"),
        "{models}"
    );

    let (removed, out, err) = hubsync(&p, &["repos", "remove", "DATA/cli-repo"]).await;
    assert!(removed, "{out}{err}");
    assert!(p.store().repo(&id).await.unwrap().is_none());
    assert!(p.store().list_models(&id).await.unwrap().is_empty());
    let (again, _, err) = hubsync(&p, &["repos", "remove", "DATA/cli-repo"]).await;
    assert!(!again && err.contains("not registered"), "{err}");
    let (bad, _, err) = hubsync(&p, &["repos", "add", "no-slash"]).await;
    assert!(!bad && err.contains("PROJECT/SLUG"), "{err}");
}

async fn a_path_of_1100_bytes_is_replicated<P: Pipeline>() {
    // Arrange
    let s = Scene::<P>::new(Setup::default()).await;
    s.assert_replicated().await;
    let folder = "d".repeat(99);
    let mut path = String::from("deep");
    while path.len() + 100 + "/model.hck.json".len() <= 1100 {
        path.push('/');
        path.push_str(&folder);
    }
    path.push('/');
    path.push_str(&"n".repeat(1100 - path.len() - "/model.hck.json".len()));
    path.push_str("/model.hck.json");
    assert_eq!(path.len(), 1100);

    // Act
    s.commit(
        &[
            FileOp::write(path.clone(), model(131, "Deep", 3_000)),
            FileOp::write("models/beside/small.json", model(132, "Small", 4_000)),
        ],
        "a model at a long path",
    )
    .await;

    // Assert
    s.assert_replicated().await;
    let stored = s.p.store().get_model(&s.id, &path).await.unwrap().expect("stored");
    assert!(
        matches!(stored.status, ModelStatus::Valid { .. }),
        "{:?}",
        stored.status
    );
    assert_next_push_syncs(&s, &[]).await;
}

async fn the_cli_sync_takes_the_size_cap_from_the_environment<P: Pipeline>() {
    // Arrange
    let p = P::start(Setup::default()).await;
    let repo = p.sim().create_repo("DATA", "capped").unwrap();
    let big = model(3, "Big", 20_000);
    repo.commit(
        "main",
        &[
            FileOp::write("small.hck.json", model(1, "Small", 3_000)),
            FileOp::write("big.hck.json", big.clone()),
        ],
        "m",
    )
    .unwrap();
    let id = RepoRef::parse("DATA/capped").unwrap();
    assert!(p.store().register(&id).await.unwrap());

    // Act
    let (synced, out, err) = hubsync_with_env(&p, &["sync", "DATA/capped"], &[("HUB_MAX_MODEL_BYTES", "10000")]).await;

    // Assert
    assert!(synced, "{out}{err}");
    assert!(out.contains("1 written, 0 removed, 1 malformed"), "{out}");
    let stored = p.store().get_model(&id, "big.hck.json").await.unwrap().expect("listed");
    assert_eq!(
        stored.status,
        ModelStatus::Malformed {
            error: format!("too large ({} bytes)", big.len())
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hubsync_init_creates_the_queue_table_and_secret_in_the_emulator() {
    let endpoint = tokio::task::spawn_blocking(|| hubsync_tests::moto::moto().endpoint.clone())
        .await
        .unwrap();
    let bin = tokio::task::spawn_blocking(hubsync_binary).await.unwrap();
    let name = format!("init{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let token = "BBDC-init-test-token-never-printed";
    let out = Command::new(&bin)
        .args([
            "init",
            "--name",
            &name,
            "--base-url",
            "http://127.0.0.1:7990",
            "--token",
            token,
            "--webhook-secret",
            "hook",
        ])
        .env("AWS_ENDPOINT_URL", &endpoint)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(!stdout.contains(token), "the token is not printed");
    let vars: std::collections::BTreeMap<String, String> = stdout
        .lines()
        .filter_map(|l| {
            l.strip_prefix("export ")?
                .split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
        })
        .collect();
    assert_eq!(
        vars.keys().collect::<Vec<_>>(),
        [
            "AWS_ENDPOINT_URL",
            "HUB_DEAD_LETTER_QUEUE_URL",
            "HUB_QUEUE_URL",
            "HUB_SECRET_ID",
            "HUB_TABLE"
        ]
    );

    let sdk = hubsync_tests::aws::sdk_config().await;
    let secrets = hubsync_aws::SecretsManagerSource::new(
        aws_sdk_secretsmanager::Client::new(&sdk),
        vars["HUB_SECRET_ID"].clone(),
    );
    let secret = hubsync_core::ports::SecretSource::hub_secret(&secrets).await.unwrap();
    assert_eq!(secret.base_url, "http://127.0.0.1:7990");
    let store = hubsync_aws::DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), vars["HUB_TABLE"].clone());
    assert!(
        store.register(&RepoRef::parse("P/r").unwrap()).await.unwrap(),
        "the table is usable"
    );
    let queue = aws_sdk_sqs::Client::new(&sdk)
        .get_queue_attributes()
        .queue_url(&vars["HUB_QUEUE_URL"])
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::All)
        .send()
        .await
        .unwrap();
    let attributes = queue.attributes.unwrap_or_default();
    assert_eq!(
        attributes
            .get(&aws_sdk_sqs::types::QueueAttributeName::FifoQueue)
            .map(String::as_str),
        Some("true")
    );
    assert!(attributes.contains_key(&aws_sdk_sqs::types::QueueAttributeName::RedrivePolicy));

    let refused = Command::new(&bin)
        .args([
            "init",
            "--base-url",
            "http://x",
            "--token",
            "t",
            "--webhook-secret",
            "w",
        ])
        .env_remove("AWS_ENDPOINT_URL")
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("AWS_ENDPOINT_URL"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_dead_letters_can_be_listed_and_redriven_with_the_cli() {
    let wrong = "BBDC-wrong-token-for-the-queue-test";
    let s = Scene::<LocalPipeline>::new(Setup {
        token: Some(wrong.into()),
        local_max_attempts: 1,
        ..Setup::default()
    })
    .await;
    assert_eq!(s.p.drain().await, 1);

    let (ok, status, err) = hubsync(&s.p, &["queue", "status"]).await;
    assert!(ok && status.contains("dead letters 1"), "{status}{err}");
    let (_, letters, _) = hubsync(&s.p, &["queue", "dead-letters"]).await;
    assert!(letters.contains("DATA/models") && letters.contains("401"), "{letters}");
    assert!(!letters.contains(wrong), "no token in the listing");
    let listed = letters.split_whitespace().next().unwrap_or_default().to_owned();
    let (by_id, out, err) = hubsync(&s.p, &["queue", "redrive", "--id", &listed]).await;
    assert!(
        by_id && out.contains(&format!("dead letter {listed} is queued again")),
        "the id the listing printed: {out}{err}"
    );
    assert_eq!(s.p.drain().await, 1, "dead-lettered again: the token is still wrong");
    let (redriven, out, err) = hubsync(&s.p, &["queue", "redrive"]).await;
    assert!(redriven && out.contains("queued again"), "{out}{err}");
    let (missing, _, err) = hubsync(&s.p, &["queue", "redrive", "999999"]).await;
    assert!(!missing && err.contains("no dead letter 999999"), "{err}");
}
