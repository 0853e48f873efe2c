//! What an incremental push costs Bitbucket: `default-branch`, `commits` (its head), `changes`,
//! and one `raw` per changed model, nothing else: k + 3 requests for k models (within one page of
//! changes). `.hubignore` is kept with the cursor and read only when the diff touches it
//! (`hubignore_changes_apply_at_once` checks that the kept rules still apply).

use hubsync_bitbucket_sim::FileOp;

use super::pipeline::{Pipeline, Setup};
use super::{Scene, model};

/// The resources the requests since the last clear asked for (the last path segments).
fn requested<P: Pipeline>(s: &Scene<P>) -> Vec<String> {
    s.p.sim()
        .requests()
        .iter()
        .map(|r| {
            let path = r.path_and_query.split('?').next().unwrap_or_default();
            let (_, resource) = path.split_once("/repos/models/").unwrap_or(("", path));
            resource.to_owned()
        })
        .collect()
}

pub(super) async fn an_incremental_push_of_k_models_costs_k_plus_3_requests<P: Pipeline>() {
    // Arrange
    let s = Scene::<P>::new(Setup::default()).await;
    s.assert_replicated().await;
    s.p.sim().clear_requests();

    // Act
    s.commit(
        &[FileOp::write("models/hr/people.json", model(40, "People v2", 8_000))],
        "one model",
    )
    .await;
    s.assert_replicated().await;
    let one = requested(&s);
    s.p.sim().clear_requests();
    s.commit(
        &[
            FileOp::write("models/hr/people.json", model(41, "People v3", 8_000)),
            FileOp::write("root model.json", model(42, "Root v2", 5_000)),
            FileOp::write("models/new.json", model(43, "New", 3_000)),
        ],
        "three models",
    )
    .await;
    s.assert_replicated().await;
    let three = requested(&s);

    // Assert
    assert_eq!(
        one,
        ["default-branch", "commits", "changes", "raw/models/hr/people.json"],
        "{}",
        P::NAME
    );
    assert_eq!(three.len(), 3 + 3, "{}: {three:?}", P::NAME);
    assert!(
        !three.iter().any(|r| r.contains(".hubignore")),
        "{}: {three:?}",
        P::NAME
    );
}
