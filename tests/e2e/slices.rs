//! A sync that cannot finish before its deadline (the sync function's invocation, or `hubsync
//! serve --slice`) completes in slices, each queueing the next: a first sync with every model
//! byte-equal to the head, none fetched twice, the cursor moving only with the last slice; and an
//! incremental one with a push arriving between slices, replicated after it. The deadline is 2
//! seconds on a clock that moves 50 ms per file started (see [`Setup::slice`]), so the slices are
//! the same on any machine.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hubsync_bitbucket_sim::FileOp;
use hubsync_core::ports::RepoRegistry;

use super::pipeline::{Pipeline, Setup};
use super::{Scene, model};

/// Enough small models for several 2-second slices.
const MODELS: usize = 100;

fn sliced() -> Setup {
    Setup {
        slice: Some(Duration::from_secs(2)),
        ..Setup::default()
    }
}

fn many_models(version: &str) -> Vec<FileOp> {
    (0..MODELS)
        .map(|i| {
            let name = format!("Model {i} {version}");
            FileOp::write(format!("many/{i:04}.json"), model(i as u64, &name, 600))
        })
        .collect()
}

/// How many times each file was fetched (`GET …/raw/{path}`), and how many syncs started (`GET
/// …/default-branch`), since the simulator's log was last cleared.
fn fetches<P: Pipeline>(s: &Scene<P>) -> (BTreeMap<String, usize>, usize) {
    let mut raw = BTreeMap::new();
    let mut syncs = 0;
    for request in s.p.sim().requests() {
        let path = request.path_and_query.split('?').next().unwrap_or_default();
        if let Some((_, file)) = path.split_once("/raw/") {
            *raw.entry(file.to_owned()).or_default() += 1;
        } else if path.ends_with("/default-branch") {
            syncs += 1;
        }
    }
    (raw, syncs)
}

pub(super) async fn a_first_sync_past_its_deadline_completes_in_slices_fetching_each_model_once<P: Pipeline>() {
    // Arrange: a repository registered anew (no cursor), so its next push is a first sync of
    // the whole tree: the scene's models and many more.
    let s = Scene::<P>::new(sliced()).await;
    s.assert_replicated().await;
    assert!(s.p.store().unregister(&s.id).await.unwrap());
    assert!(s.p.store().register(&s.id).await.unwrap());
    s.p.sim().clear_requests();

    // Act
    s.commit(&many_models("v1"), "many models").await;
    s.assert_replicated().await;

    // Assert
    let (raw, syncs) = fetches(&s);
    assert!(syncs >= 3, "{}: {syncs} invocations", P::NAME);
    let many = raw.keys().filter(|p| p.starts_with("many/")).count();
    assert_eq!(many, MODELS, "{}: every model was fetched: {raw:?}", P::NAME);
    let twice: Vec<_> = raw.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "{}: fetched more than once: {twice:?}", P::NAME);
    let record = s.p.store().repo(&s.id).await.unwrap().unwrap();
    assert_eq!(record.resume, None, "{}", P::NAME);
    assert_eq!(
        record.cursor.unwrap().stats.written,
        MODELS as u64 + 4,
        "{}: the slices' counts add up (the scene's 4 models and the many)",
        P::NAME
    );
}

pub(super) async fn a_push_between_slices_is_replicated_after_the_sliced_head<P: Pipeline>() {
    // Arrange: the second sync of the many models' push (its first continuation) is held as it
    // starts, once the first slice has recorded its resume point.
    let s = Scene::<P>::new(sliced()).await;
    s.assert_replicated().await;
    let seen = Arc::new(AtomicUsize::new(0));
    let hold = {
        let seen = seen.clone();
        s.p.sim().hold_next(move |line| {
            line.path_and_query.contains("/default-branch") && seen.fetch_add(1, Ordering::SeqCst) == 1
        })
    };
    s.commit(&many_models("v1"), "many models").await;

    // Act: while the continuation waits, more is pushed: a model of the first slice and one of the
    // last change, one is deleted and one added.
    let push_between = async {
        hold.reached().await;
        let resume = s.p.store().repo(&s.id).await.unwrap().unwrap().resume;
        s.commit(
            &[
                FileOp::write("many/0000.json", model(900, "Changed after its slice", 700)),
                FileOp::write("many/0099.json", model(901, "Changed before its slice", 700)),
                FileOp::delete("many/0050.json"),
                FileOp::write("many/new.json", model(902, "New", 700)),
            ],
            "a push between slices",
        )
        .await;
        hold.release();
        resume
    };
    let (resume, dead) = tokio::join!(push_between, s.p.drain());

    // Assert
    let resume = resume.unwrap_or_else(|| panic!("{}: the first slice recorded a resume point", P::NAME));
    assert!(resume.after.as_str() < "many/0099.json", "{}: {resume:?}", P::NAME);
    assert_eq!(dead, 0, "{}", P::NAME);
    s.assert_replicated().await;
}
