//! What a sync costs the Git host, and a sync that cannot finish before its deadline, against the
//! in-memory adapters: an incremental push fetches only what changed (`.hubignore` is kept with
//! the cursor), and a sync past its deadline completes in slices, each queueing the next, every
//! file fetched once, the cursor moving only at the end.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use hubsync_core::deadline::{Clock, Deadline};
use hubsync_core::ids::{CommitId, RepoRef};
use hubsync_core::ports::{LeaseOwner, ModelStore, PushQueue, RepoRegistry, SyncCursor, SyncStats};
use hubsync_core::push::{MessageKind, PushMessage};
use hubsync_core::sync::{FullSyncReason, NoProgress, SyncEngine, SyncError, SyncMode, SyncOptions, SyncOutcome};
use hubsync_core::testing::fixtures::{files, model, push};
use hubsync_core::testing::memory::{MemoryGitHost, MemoryQueue, MemoryStore};
use tokio_util::sync::CancellationToken;

struct Fixture {
    host: MemoryGitHost,
    store: MemoryStore,
    queue: MemoryQueue,
    repo: RepoRef,
    /// Milliseconds on the test clock: every reading advances it by `tick`.
    now: Arc<AtomicI64>,
    tick: i64,
}

impl Fixture {
    async fn registered() -> Self {
        let f = Self {
            host: MemoryGitHost::default(),
            store: MemoryStore::default(),
            queue: MemoryQueue::default(),
            repo: RepoRef::parse("DATA/models").unwrap(),
            now: Arc::new(AtomicI64::new(0)),
            tick: 25,
        };
        f.store.register(&f.repo).await.unwrap();
        f
    }

    fn engine(&self) -> SyncEngine<'_, MemoryGitHost, MemoryStore> {
        SyncEngine::new(&self.host, &self.store, SyncOptions::default())
    }

    /// A clock that moves `tick` milliseconds each time it is read: the sync reads it once before
    /// starting each file, so time passes with the work done, not with the machine's speed.
    fn clock(&self) -> Clock {
        let (now, tick) = (self.now.clone(), self.tick);
        Clock::new(move || {
            let ms = now.fetch_add(tick, Ordering::SeqCst);
            DateTime::from_timestamp_millis(1_800_000_000_000 + ms).unwrap()
        })
    }

    /// An invocation's deadline: two seconds from now on the test clock.
    fn deadline(&self) -> Deadline {
        Deadline::after(Duration::from_secs(2), self.clock())
    }

    async fn handle(&self, message: &PushMessage) -> SyncOutcome {
        self.engine()
            .handle_push_within(message, &self.deadline(), &self.queue)
            .await
            .unwrap()
    }

    /// Handles the queued messages from `from` on, in order, each in an invocation of its own
    /// (and those they queue), until none is left; how many were handled.
    async fn drain(&self, from: usize) -> usize {
        let mut next = from;
        while let Some(message) = self.queue.messages().get(next).cloned() {
            self.handle(&message).await;
            next += 1;
        }
        next - from
    }

    async fn stored(&self) -> BTreeMap<String, Vec<u8>> {
        let mut stored = BTreeMap::new();
        for summary in self.store.list_models(&self.repo).await.unwrap() {
            let model = self.store.get_model(&self.repo, &summary.path).await.unwrap().unwrap();
            stored.insert(summary.path, model.content.to_vec());
        }
        stored
    }

    /// `hubsync sync --from COMMIT`: no deadline.
    async fn sync_from(&self, since: CommitId) -> SyncOutcome {
        self.engine()
            .sync_request(&self.repo, &hubsync_core::push::SyncRequest::From(since), &NoProgress)
            .await
            .unwrap()
    }

    /// The repository's cursor is at `head` with nothing left to resume, and the store holds `tree`.
    async fn assert_done_at(&self, head: CommitId, tree: &BTreeMap<String, Vec<u8>>) {
        let record = self.store.repo(&self.repo).await.unwrap().unwrap();
        assert_eq!((record.cursor.map(|c| c.commit), record.resume), (Some(head), None));
        assert_eq!(&self.stored().await, tree);
    }

    /// The raw fetches made since the last clear, path by path.
    fn fetches(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for call in self.host.calls() {
            if let Some(path) = call.strip_prefix("raw ") {
                *counts.entry(path.to_owned()).or_default() += 1;
            }
        }
        counts
    }
}

impl Fixture {
    /// A history for `hubsync sync --from`: `since` (150 models, synced), m/0140.json changed
    /// after it (synced: the cursor), then 100 models changed at `head` (not synced), so that a
    /// sync from `since` to `head` needs slices. Returns `since`, `head` and the head's tree.
    async fn changed_after_a_commit_then_many(&self) -> (CommitId, CommitId, BTreeMap<String, Vec<u8>>) {
        let mut tree = many_models(150);
        let since = self.host.commit(&self.repo, tree.clone());
        self.engine().handle_push(&push(&self.repo, &since)).await.unwrap();
        tree.insert("m/0140.json".into(), model("Changed after the commit"));
        let cursor = self.host.commit(&self.repo, tree.clone());
        self.engine().handle_push(&push(&self.repo, &cursor)).await.unwrap();
        for i in 0..100 {
            tree.insert(format!("m/{i:04}.json"), model(&format!("Model {i}, second version")));
        }
        let head = self.host.commit(&self.repo, tree.clone());
        (since, head, tree)
    }
}

fn many_models(n: usize) -> BTreeMap<String, Vec<u8>> {
    (0..n)
        .map(|i| (format!("m/{i:04}.json"), model(&format!("Model {i}"))))
        .collect()
}

#[tokio::test]
async fn a_push_of_one_model_fetches_that_model_and_nothing_else() {
    // Arrange
    let f = Fixture::registered().await;
    let mut tree = files(&[
        (".hubignore", b"drafts/\n".to_vec()),
        ("a.json", model("A")),
        ("b.json", model("B")),
    ]);
    let first = f.host.commit(&f.repo, tree.clone());
    f.engine().handle_push(&push(&f.repo, &first)).await.unwrap();
    tree.insert("a.json".into(), model("A2"));
    let second = f.host.commit(&f.repo, tree);
    f.host.clear_calls();

    // Act
    let outcome = f.engine().handle_push(&push(&f.repo, &second)).await.unwrap();

    // Assert
    assert!(
        matches!(
            outcome,
            SyncOutcome::Synced {
                mode: SyncMode::Incremental,
                ..
            }
        ),
        "{outcome:?}"
    );
    assert_eq!(f.host.calls(), ["default branch", "changes", "raw a.json"]);
    assert_eq!(f.stored().await["a.json"], model("A2"));
}

#[tokio::test]
async fn a_kept_hubignore_is_still_honoured_and_a_change_to_it_is_read() {
    // Arrange
    let f = Fixture::registered().await;
    let mut tree = files(&[
        (".hubignore", b"drafts/\n".to_vec()),
        ("a.json", model("A")),
        ("drafts/d.json", model("D")),
    ]);
    let first = f.host.commit(&f.repo, tree.clone());
    f.engine().handle_push(&push(&f.repo, &first)).await.unwrap();
    tree.insert("drafts/d.json".into(), model("D2"));
    tree.insert("drafts/e.json".into(), model("E"));
    let second = f.host.commit(&f.repo, tree.clone());

    // Act
    f.engine().handle_push(&push(&f.repo, &second)).await.unwrap();
    let still_ignored: Vec<String> = f.stored().await.into_keys().collect();
    tree.insert(".hubignore".into(), b"# nothing ignored\n".to_vec());
    let third = f.host.commit(&f.repo, tree);
    f.host.clear_calls();
    f.engine().handle_push(&push(&f.repo, &third)).await.unwrap();

    // Assert
    assert_eq!(still_ignored, ["a.json"], "the kept rules still ignore drafts/");
    assert!(
        f.host.calls().contains(&"raw .hubignore".to_owned()),
        "{:?}",
        f.host.calls()
    );
    assert_eq!(
        f.stored().await.into_keys().collect::<Vec<_>>(),
        ["a.json", "drafts/d.json", "drafts/e.json"]
    );
    let cursor = f.store.repo(&f.repo).await.unwrap().unwrap().cursor.unwrap();
    assert_eq!(cursor.hubignore.as_deref(), Some("# nothing ignored\n"));
}

#[tokio::test]
async fn a_cursor_that_kept_no_hubignore_reads_it_again() {
    // Arrange
    let f = Fixture::registered().await;
    let mut tree = files(&[(".hubignore", b"drafts/\n".to_vec()), ("a.json", model("A"))]);
    let first = f.host.commit(&f.repo, tree.clone());
    f.engine().handle_push(&push(&f.repo, &first)).await.unwrap();
    // As an earlier version left it.
    f.store.overwrite_cursor(
        &f.repo,
        SyncCursor {
            commit: first,
            synced_at: Utc::now(),
            stats: SyncStats::default(),
            hubignore: None,
        },
    );
    tree.insert("drafts/d.json".into(), model("D"));
    let second = f.host.commit(&f.repo, tree);
    f.host.clear_calls();

    // Act
    f.engine().handle_push(&push(&f.repo, &second)).await.unwrap();

    // Assert
    assert_eq!(f.host.calls(), ["default branch", "changes", "raw .hubignore"]);
    assert_eq!(f.stored().await.into_keys().collect::<Vec<_>>(), ["a.json"]);
}

#[tokio::test]
async fn a_first_sync_past_its_deadline_completes_in_slices_fetching_each_model_once() {
    // Arrange
    let f = Fixture::registered().await;
    let tree = many_models(300);
    let head = f.host.commit(&f.repo, tree.clone());

    // Act
    let first = f.handle(&push(&f.repo, &head)).await;
    let cursor_after_first = f.store.repo(&f.repo).await.unwrap().unwrap().cursor;
    let continuations = f.drain(0).await;

    // Assert
    let SyncOutcome::Sliced { to, after, stats, .. } = &first else {
        panic!("{first:?}")
    };
    assert_eq!(to, &head);
    assert!(
        after.as_str() > "m/0000.json" && after.as_str() < "m/0299.json",
        "{after}"
    );
    assert!(stats.written > 0);
    assert_eq!(cursor_after_first, None, "the cursor moves only with the last slice");
    assert!(continuations >= 3, "{continuations} continuations");
    assert!(
        f.queue.messages().iter().all(|m| m.kind == MessageKind::Continuation),
        "only continuations were queued"
    );
    assert_eq!(f.stored().await, tree, "every model byte-equal to the head");
    let fetches = f.fetches();
    assert_eq!(fetches.len(), 301, "every model and .hubignore");
    assert!(fetches.values().all(|&n| n == 1), "fetched twice: {fetches:?}");
    let record = f.store.repo(&f.repo).await.unwrap().unwrap();
    let cursor = record.cursor.expect("synced");
    assert_eq!((cursor.commit, record.resume), (head, None));
    assert_eq!(cursor.stats.written, 300, "the slices' counts add up");
}

#[tokio::test]
async fn each_next_slice_of_a_full_sync_lists_the_head_only_from_its_resume_point_on() {
    // Arrange: a first sync in slices, its first slice done.
    let f = Fixture::registered().await;
    let tree = many_models(200);
    let head = f.host.commit(&f.repo, tree.clone());
    let SyncOutcome::Sliced { after, .. } = f.handle(&push(&f.repo, &head)).await else {
        panic!("the first slice stops before the end")
    };
    let resume = f.store.repo(&f.repo).await.unwrap().unwrap().resume.unwrap();
    f.host.clear_calls();

    // Act
    f.drain(0).await;

    // Assert
    let done = tree.keys().filter(|p| **p <= after).count() as u64;
    assert_eq!(resume.listed, Some(done), "where the resume point is in the listing");
    let listings: Vec<String> = f.host.calls().into_iter().filter(|c| c.starts_with("files")).collect();
    assert!(listings.len() >= 2, "{listings:?}");
    assert_eq!(listings[0], format!("files from {done}"));
    assert!(listings.iter().all(|c| c.starts_with("files from ")), "{listings:?}");
    assert_eq!(f.stored().await, tree);
    assert!(
        f.fetches().values().all(|&n| n == 1),
        "fetched twice: {:?}",
        f.fetches()
    );
}

#[tokio::test]
async fn a_push_between_slices_is_replicated_after_the_sliced_head() {
    // Arrange
    let f = Fixture::registered().await;
    let mut tree = many_models(200);
    let old = f.host.commit(&f.repo, tree.clone());
    let SyncOutcome::Sliced { after, .. } = f.handle(&push(&f.repo, &old)).await else {
        panic!("the first slice stops before the end")
    };
    let done = tree.keys().find(|p| **p <= after).cloned().unwrap();
    let pending = tree.keys().rev().find(|p| **p > after).cloned().unwrap();
    tree.insert(done.clone(), model("Changed after it was synced"));
    tree.insert(pending.clone(), model("Changed before it was synced"));
    tree.remove("m/0100.json");
    tree.insert("n/new.json".into(), model("New"));
    let new = f.host.commit(&f.repo, tree.clone());

    // Act: the push is queued after the first continuation, and everything is handled in order.
    f.queue.enqueue(&push(&f.repo, &new)).await.unwrap();
    f.drain(0).await;

    // Assert
    f.assert_done_at(new, &tree).await;
}

#[tokio::test]
async fn an_incremental_sync_past_its_deadline_keeps_the_old_cursor_until_its_last_slice() {
    // Arrange
    let f = Fixture::registered().await;
    let mut tree = many_models(150);
    let old = f.host.commit(&f.repo, tree.clone());
    f.engine().handle_push(&push(&f.repo, &old)).await.unwrap();
    for (i, content) in tree.values_mut().enumerate() {
        *content = model(&format!("Model {i}, second version"));
    }
    let new = f.host.commit(&f.repo, tree.clone());

    // Act
    let first = f.handle(&push(&f.repo, &new)).await;
    let between = f.store.repo(&f.repo).await.unwrap().unwrap();
    f.drain(0).await;

    // Assert
    assert!(matches!(first, SyncOutcome::Sliced { .. }), "{first:?}");
    assert_eq!(between.cursor.map(|c| c.commit), Some(old));
    let resume = between.resume.expect("a resume point");
    assert_eq!((resume.head, resume.full), (new.clone(), false));
    assert_eq!(f.stored().await, tree);
    let cursor = f.store.repo(&f.repo).await.unwrap().unwrap().cursor.unwrap();
    assert_eq!((cursor.commit, cursor.stats.written), (new, 150));
}

#[tokio::test]
async fn a_sync_without_a_deadline_finishes_a_sliced_one_and_its_continuation_finds_it_done() {
    // Arrange
    let f = Fixture::registered().await;
    let tree = many_models(120);
    let head = f.host.commit(&f.repo, tree.clone());
    f.handle(&push(&f.repo, &head)).await;

    // Act: `hubsync sync` (no deadline) while a continuation is pending.
    let outcome = f.engine().sync_repo(&f.repo, false, &NoProgress).await.unwrap();

    // Assert
    assert!(
        matches!(
            outcome,
            SyncOutcome::Synced {
                mode: SyncMode::Full(FullSyncReason::Continued),
                ..
            }
        ),
        "{outcome:?}"
    );
    assert_eq!(f.stored().await, tree);
    let up_to_date = f.handle(&f.queue.messages()[0]).await;
    assert!(matches!(up_to_date, SyncOutcome::UpToDate { .. }), "{up_to_date:?}");
}

#[tokio::test]
async fn a_requested_full_sync_over_a_pending_slice_starts_over_at_the_new_head() {
    // Arrange
    let f = Fixture::registered().await;
    let mut tree = many_models(120);
    let old = f.host.commit(&f.repo, tree.clone());
    let SyncOutcome::Sliced { .. } = f.handle(&push(&f.repo, &old)).await else {
        panic!("the first slice stops before the end")
    };
    tree.insert("m/0000.json".into(), model("Changed"));
    let new = f.host.commit(&f.repo, tree.clone());
    let request = PushMessage::full_sync(
        f.repo.clone(),
        hubsync_core::ids::DeliveryId::parse("full-1").unwrap(),
        Utc::now(),
    );

    // Act
    let first = f.handle(&request).await;
    let resume = f.store.repo(&f.repo).await.unwrap().unwrap().resume;
    let from = f.queue.messages().len() - 1;
    f.drain(from).await;

    // Assert
    assert!(
        matches!(first, SyncOutcome::Sliced { ref to, .. } if *to == new),
        "{first:?}"
    );
    let resume = resume.expect("the requested sync's own resume point");
    assert_eq!((resume.head, resume.full), (new.clone(), true));
    assert_eq!(f.stored().await, tree);
    let cursor = f.store.repo(&f.repo).await.unwrap().unwrap().cursor.unwrap();
    assert_eq!(cursor.commit, new);
}

#[tokio::test]
async fn a_requested_full_sync_of_an_unchanged_head_that_stops_where_an_earlier_sync_did_still_finishes() {
    // Arrange: a first sync in slices, done.
    let f = Fixture::registered().await;
    let tree = many_models(120);
    let head = f.host.commit(&f.repo, tree.clone());
    let SyncOutcome::Sliced { after: first_stop, .. } = f.handle(&push(&f.repo, &head)).await else {
        panic!("the first slice stops before the end")
    };
    f.drain(0).await;
    let request = PushMessage::full_sync(
        f.repo.clone(),
        hubsync_core::ids::DeliveryId::parse("full-again").unwrap(),
        Utc::now(),
    );
    let queued_before = f.queue.messages().len();
    f.host.clear_calls();

    // Act: a full sync of the same head, whose first slice stops at the same path.
    let first = f.handle(&request).await;
    f.drain(queued_before).await;

    // Assert
    assert!(
        matches!(&first, SyncOutcome::Sliced { to, after, .. } if *to == head && *after == first_stop),
        "{first:?}"
    );
    let record = f.store.repo(&f.repo).await.unwrap().unwrap();
    assert_eq!(record.resume, None, "no resume point is left behind");
    assert_eq!(record.cursor.map(|c| c.commit), Some(head));
    assert_eq!(f.stored().await, tree);
    let fetches = f.fetches();
    assert_eq!(fetches.len(), 121, "the whole tree compared again: {fetches:?}");
    assert!(fetches.values().all(|&n| n == 1), "fetched twice: {fetches:?}");
}

#[tokio::test]
async fn a_resume_point_whose_continuation_was_lost_at_an_unchanged_head_is_continued_by_the_reconcile() {
    // Arrange: a synced repository, then a full sync of the same head cut into slices whose
    // continuation never arrives (dead-lettered, purged).
    let f = Fixture::registered().await;
    let tree = many_models(120);
    let head = f.host.commit(&f.repo, tree.clone());
    f.engine().handle_push(&push(&f.repo, &head)).await.unwrap();
    let request = PushMessage::full_sync(
        f.repo.clone(),
        hubsync_core::ids::DeliveryId::parse("full-again").unwrap(),
        Utc::now(),
    );
    let elsewhere = MemoryQueue::default();
    let sliced = f.engine().handle_push_within(&request, &f.deadline(), &elsewhere).await;
    assert!(matches!(sliced, Ok(SyncOutcome::Sliced { .. })), "{sliced:?}");
    let queued = f.queue.messages().len();
    f.host.clear_calls();

    // Act
    let report = hubsync_core::reconcile::reconcile(&f.store, &f.host, &f.queue, Utc::now())
        .await
        .unwrap();
    f.drain(queued).await;

    // Assert
    assert_eq!(report.queued, std::slice::from_ref(&f.repo), "{report:?}");
    let record = f.store.repo(&f.repo).await.unwrap().unwrap();
    assert_eq!(record.resume, None, "the requested full sync is finished");
    assert_eq!(record.cursor.map(|c| c.commit), Some(head));
    assert_eq!(f.stored().await, tree);
    let fetches = f.fetches();
    assert!(fetches.values().all(|&n| n == 1), "fetched twice: {fetches:?}");
    assert!(
        !fetches.contains_key("m/0000.json"),
        "the paths done are not fetched again"
    );
}

#[tokio::test]
async fn a_sync_from_a_commit_cut_into_slices_applies_that_commits_changes_in_every_slice() {
    // Arrange: m/0140.json changed after the commit, then many models, so the sync needs slices.
    let f = Fixture::registered().await;
    let (since, head, tree) = f.changed_after_a_commit_then_many().await;
    f.host.clear_calls();

    // Act
    let first = f
        .engine()
        .sync_request_within(
            &f.repo,
            &hubsync_core::push::SyncRequest::From(since),
            &NoProgress,
            &f.deadline(),
            &f.queue,
        )
        .await
        .unwrap();
    f.drain(0).await;

    // Assert
    assert!(matches!(first, SyncOutcome::Sliced { .. }), "{first:?}");
    let fetches = f.fetches();
    assert_eq!(fetches.get("m/0140.json"), Some(&1), "{fetches:?}");
    assert_eq!(fetches.len(), 101, "{fetches:?}");
    assert!(fetches.values().all(|&n| n == 1), "fetched twice: {fetches:?}");
    f.assert_done_at(head, &tree).await;
}

#[tokio::test]
async fn a_sync_from_a_commit_asked_for_while_a_sliced_sync_is_pending_applies_that_commits_changes_too_fetching_nothing_twice()
 {
    // Arrange: m/0140.json changed after the commit; a push of many models cut into slices.
    let f = Fixture::registered().await;
    let (since, head, tree) = f.changed_after_a_commit_then_many().await;
    let SyncOutcome::Sliced { .. } = f.handle(&push(&f.repo, &head)).await else {
        panic!("the push's first slice stops before the end")
    };
    f.host.clear_calls();

    // Act: `hubsync sync --from` (no deadline) before the continuation arrives.
    let outcome = f.sync_from(since).await;

    // Assert
    assert!(matches!(outcome, SyncOutcome::Synced { .. }), "{outcome:?}");
    assert_eq!(f.fetches().get("m/0140.json"), Some(&1), "{:?}", f.fetches());
    assert!(
        f.fetches().values().all(|&n| n == 1),
        "the paths in both diffs are fetched once: {:?}",
        f.fetches()
    );
    f.assert_done_at(head, &tree).await;
}

#[tokio::test]
async fn a_sync_from_a_commit_asked_for_while_a_sliced_first_sync_is_pending_fetches_nothing_twice() {
    // Arrange: a commit, then a change, and a first sync of the head cut into slices.
    let f = Fixture::registered().await;
    let mut tree = many_models(120);
    let since = f.host.commit(&f.repo, tree.clone());
    tree.insert("m/0000.json".into(), model("Changed after the commit"));
    let head = f.host.commit(&f.repo, tree.clone());
    let SyncOutcome::Sliced { .. } = f.handle(&push(&f.repo, &head)).await else {
        panic!("the first slice stops before the end")
    };
    f.host.clear_calls();

    // Act: `hubsync sync --from` (no deadline) before the continuation arrives.
    let outcome = f.sync_from(since).await;

    // Assert: the whole tree reconciled at the head holds the commit's changes.
    assert!(matches!(outcome, SyncOutcome::Synced { .. }), "{outcome:?}");
    assert_eq!(
        f.fetches().get("m/0000.json"),
        None,
        "done by the first slice: {:?}",
        f.fetches()
    );
    assert!(
        f.fetches().values().all(|&n| n == 1),
        "fetched twice: {:?}",
        f.fetches()
    );
    f.assert_done_at(head, &tree).await;
}

impl Fixture {
    /// `since` (`n` models, synced), the first `changed` of them changed after it (synced: the
    /// cursor), then the `pushed` after those changed at `head` and pushed, the push's sync cut
    /// into slices (its first slice done). Returns `since`, `head` and the head's tree.
    async fn changed_after_a_commit_then_a_sliced_push(
        &self,
        n: usize,
        changed: usize,
        pushed: usize,
    ) -> (CommitId, CommitId, BTreeMap<String, Vec<u8>>) {
        let mut tree = many_models(n);
        let since = self.host.commit(&self.repo, tree.clone());
        self.engine().handle_push(&push(&self.repo, &since)).await.unwrap();
        for i in 0..changed {
            tree.insert(
                format!("m/{i:04}.json"),
                model(&format!("Model {i}, changed after the commit")),
            );
        }
        let cursor = self.host.commit(&self.repo, tree.clone());
        self.engine().handle_push(&push(&self.repo, &cursor)).await.unwrap();
        for i in changed..changed + pushed {
            tree.insert(format!("m/{i:04}.json"), model(&format!("Model {i}, pushed")));
        }
        let head = self.host.commit(&self.repo, tree.clone());
        self.host.clear_calls();
        let SyncOutcome::Sliced { .. } = self.handle(&push(&self.repo, &head)).await else {
            panic!("the push's first slice stops before the end")
        };
        (since, head, tree)
    }

    /// `hubsync sync --from since --slice`: the first slice, then every continuation queued.
    async fn sliced_sync_from(&self, since: CommitId) -> SyncOutcome {
        let first = self
            .engine()
            .sync_request_within(
                &self.repo,
                &hubsync_core::push::SyncRequest::From(since),
                &NoProgress,
                &self.deadline(),
                &self.queue,
            )
            .await
            .unwrap();
        self.drain(0).await;
        first
    }
}

#[tokio::test]
async fn a_sliced_sync_from_a_commit_that_finished_a_pending_sliced_sync_fetches_nothing_that_sync_did_in_its_later_slices()
 {
    // Arrange: m/0000-0099 changed after the commit; m/0100-0199 pushed, that sync cut into
    // slices. The paths it does sort after the ones only the commit's changes need.
    let f = Fixture::registered().await;
    let (since, head, tree) = f.changed_after_a_commit_then_a_sliced_push(200, 100, 100).await;

    // Act: its first slice finishes the push's sync, then starts on the commit's changes.
    let first = f.sliced_sync_from(since).await;

    // Assert
    assert!(matches!(first, SyncOutcome::Sliced { .. }), "{first:?}");
    let fetches = f.fetches();
    assert_eq!(fetches.len(), 200, "the commit's changes and the push's: {fetches:?}");
    assert!(fetches.values().all(|&n| n == 1), "fetched twice: {fetches:?}");
    f.assert_done_at(head, &tree).await;
}

#[tokio::test]
async fn a_sliced_sync_from_a_commit_whose_first_slice_does_not_finish_a_pending_sliced_sync_still_applies_that_commits_changes()
 {
    // Arrange: m/0000-0099 changed after the commit; m/0100-0299 pushed, that sync cut into
    // slices and left with more than a slice to do.
    let f = Fixture::registered().await;
    let (since, head, tree) = f.changed_after_a_commit_then_a_sliced_push(300, 100, 200).await;

    // Act
    let first = f.sliced_sync_from(since).await;

    // Assert
    assert!(matches!(first, SyncOutcome::Sliced { .. }), "{first:?}");
    let fetches = f.fetches();
    assert_eq!(fetches.len(), 300, "the commit's changes and the push's: {fetches:?}");
    assert!(fetches.values().all(|&n| n == 1), "fetched twice: {fetches:?}");
    f.assert_done_at(head, &tree).await;
}

#[tokio::test]
async fn a_resume_point_whose_head_was_force_pushed_away_and_collected_gives_way_to_the_new_head() {
    // Arrange: a push cut into slices, then its head replaced by a force-push and collected.
    let f = Fixture::registered().await;
    let mut tree = many_models(120);
    let old = f.host.commit(&f.repo, tree.clone());
    f.engine().handle_push(&push(&f.repo, &old)).await.unwrap();
    for content in tree.values_mut().take(100) {
        *content = model("Pushed, then force-pushed away");
    }
    let gone = f.host.commit(&f.repo, tree.clone());
    let SyncOutcome::Sliced { .. } = f.handle(&push(&f.repo, &gone)).await else {
        panic!("the push's first slice stops before the end")
    };
    tree.insert("m/0119.json".into(), model("The force-pushed head"));
    let head = f.host.commit(&f.repo, tree.clone());
    f.host.forget(&gone);

    // Act: the continuation, then whatever it queues.
    f.drain(0).await;

    // Assert
    f.assert_done_at(head, &tree).await;
}

impl Fixture {
    /// `earlier` (300 models, synced), m/0000-0049 changed at `later` (synced), m/0050-0099 changed
    /// after it (synced: the cursor), then m/0100-0299 changed at `head` and pushed, that sync cut
    /// into slices; then `hubsync sync --from earlier --slice`, whose first slice does not finish
    /// the pending sync (so `earlier` waits with it; the continuation is left on the queue).
    /// Returns `earlier`, `later`, `head` and the head's tree.
    async fn a_sync_from_a_commit_waiting_behind_a_sliced_push(
        &self,
    ) -> (CommitId, CommitId, CommitId, BTreeMap<String, Vec<u8>>) {
        let mut tree = many_models(300);
        let mut commits = Vec::new();
        for (changed, what) in [
            (0..0, "first"),
            (0..50, "changed at later"),
            (50..100, "changed after later"),
        ] {
            for i in changed {
                tree.insert(format!("m/{i:04}.json"), model(&format!("Model {i}, {what}")));
            }
            let commit = self.host.commit(&self.repo, tree.clone());
            self.engine().handle_push(&push(&self.repo, &commit)).await.unwrap();
            commits.push(commit);
        }
        for i in 100..300 {
            tree.insert(format!("m/{i:04}.json"), model(&format!("Model {i}, pushed")));
        }
        let head = self.host.commit(&self.repo, tree.clone());
        self.host.clear_calls();
        let SyncOutcome::Sliced { .. } = self.handle(&push(&self.repo, &head)).await else {
            panic!("the push's first slice stops before the end")
        };
        let waiting = self
            .engine()
            .sync_request_within(
                &self.repo,
                &hubsync_core::push::SyncRequest::From(commits[0].clone()),
                &NoProgress,
                &self.deadline(),
                &self.queue,
            )
            .await
            .unwrap();
        assert!(matches!(waiting, SyncOutcome::Sliced { .. }), "{waiting:?}");
        let record = self.store.repo(&self.repo).await.unwrap().unwrap();
        assert_eq!(
            record.resume.and_then(|r| r.then_since),
            Some(commits[0].clone()),
            "the first --from waits"
        );
        (commits[0].clone(), commits[1].clone(), head, tree)
    }
}

#[tokio::test]
async fn a_second_sync_from_a_later_commit_while_an_earlier_one_waits_applies_the_changes_since_the_earlier() {
    // Arrange: `--from earlier` waiting behind a sliced push; m/0000-0049 changed between
    // `earlier` and `later`.
    let f = Fixture::registered().await;
    let (_earlier, later, head, tree) = f.a_sync_from_a_commit_waiting_behind_a_sliced_push().await;

    // Act: `hubsync sync --from later` (no deadline).
    let outcome = f.sync_from(later).await;

    // Assert: the changes since `earlier` are applied, each fetched once.
    assert!(matches!(outcome, SyncOutcome::Synced { .. }), "{outcome:?}");
    let fetches = f.fetches();
    assert_eq!(fetches.get("m/0000.json"), Some(&1), "changed between the two commits");
    assert_eq!(
        fetches.len(),
        300,
        "the first --from's changes and the push's: {fetches:?}"
    );
    assert!(fetches.values().all(|&n| n == 1), "fetched twice: {fetches:?}");
    f.assert_done_at(head, &tree).await;
}

#[tokio::test]
async fn a_second_sync_from_a_commit_whose_ancestry_to_the_waiting_one_cannot_be_told_reconciles_the_whole_tree() {
    // Arrange: `--from earlier` waiting behind a sliced push, then `earlier` collected.
    let f = Fixture::registered().await;
    let (earlier, later, head, tree) = f.a_sync_from_a_commit_waiting_behind_a_sliced_push().await;
    f.host.forget(&earlier);

    // Act: `hubsync sync --from later` (no deadline).
    let outcome = f.sync_from(later).await;

    // Assert
    assert!(
        matches!(
            outcome,
            SyncOutcome::Synced {
                mode: SyncMode::Full(FullSyncReason::FromCommitsApart),
                ..
            }
        ),
        "{outcome:?}"
    );
    f.assert_done_at(head, &tree).await;
}

#[tokio::test]
async fn an_abandoned_sync_releases_its_lease_records_no_error_and_the_next_sync_completes_it() {
    // Arrange: a first sync whose host stops answering in the middle of it.
    let f = Fixture::registered().await;
    let tree = many_models(40);
    let head = f.host.commit(&f.repo, tree.clone());
    let stalled = f.host.stall_next_fetch_of("m/0020.json");
    let abandon = CancellationToken::new();
    let deadline = Deadline::after(Duration::from_secs(3_600), f.clock()).abandoned_by(abandon.clone());
    let (engine, message) = (f.engine(), push(&f.repo, &head));

    // Act: the sync is abandoned once it waits for that file.
    let (outcome, ()) = tokio::join!(engine.handle_push_within(&message, &deadline, &f.queue), async {
        stalled.notified().await;
        abandon.cancel();
    });
    let record = f.store.repo(&f.repo).await.unwrap().unwrap();
    let next = f
        .store
        .acquire_lease(&f.repo, &LeaseOwner::generate("next"), Duration::from_secs(60))
        .await;
    if let Ok(lease) = &next {
        f.store.release_lease(lease, !lease.previous_unfinished).await.unwrap();
    }
    let then = f.handle(&push(&f.repo, &head)).await;

    // Assert
    assert!(matches!(outcome, Err(SyncError::Abandoned)), "{outcome:?}");
    assert!(next.is_ok(), "the lease is released: {next:?}");
    assert_eq!(
        (record.cursor, record.last_error),
        (None, None),
        "nothing recorded as a failure"
    );
    assert!(matches!(then, SyncOutcome::Synced { .. }), "{then:?}");
    f.assert_done_at(head, &tree).await;
}
