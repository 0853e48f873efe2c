//! A first sync too long for one invocation, completed in slices (issue 11, goal 6): a repository
//! of 20,000 small models on the Bitbucket Data Center simulator (over loopback, real git) is
//! synced into SQLite by syncs that each get `--slice` seconds on the system clock, as the sync
//! function does with its invocation's deadline: each stops at 80 % of its time, records how far
//! it got and queues its continuation on the local queue, which the next slice takes, until the
//! cursor is at the head. The floor is the same first sync in one piece, measured in the same run;
//! the ratio says what cutting it into slices costs.
//!
//! Prints its results as `hubsync-bench {json}` lines (the table `cargo xtask bench` prints).
//! `cargo bench -p hubsync-cli --bench sliced_sync`; `-- --models N --slice SECONDS` for another
//! size, `--rounds N` for another count of rounds (3 by default: each figure is the median, and the
//! spread of the ratio over the rounds is reported too). Without `--bench` (as `cargo test
//! --all-targets` runs it), one tiny iteration: 60 models in 0.3-second slices, one round.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hubsync_bitbucket::{BitbucketConnector, ClientOptions};
use hubsync_bitbucket_sim::models::{ModelSpec, generate_model};
use hubsync_bitbucket_sim::{FileOp, SimConfig, Simulator};
use hubsync_core::deadline::{Clock, Deadline};
use hubsync_core::ids::{DeliveryId, RepoRef};
use hubsync_core::ports::{ModelStore, RepoRegistry};
use hubsync_core::push::PushMessage;
use hubsync_core::secrets::{HubSecret, StaticSecret};
use hubsync_core::sync::{NoProgress, SyncOptions, SyncOutcome, SyncWorker};
use hubsync_sqlite::SqliteHub;
use secrecy::ExposeSecret;

/// What one run measures.
struct Scenario {
    models: usize,
    slice: Duration,
    /// How many times each sync is timed.
    rounds: usize,
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1));
    let full = args.iter().any(|a| a == "--bench");
    let scenario = Scenario {
        models: match value("--models") {
            Some(n) => n.parse().context("--models N")?,
            None if full => 20_000,
            None => 60,
        },
        slice: match value("--slice") {
            Some(s) => Duration::from_secs_f64(s.parse().context("--slice SECONDS")?),
            None if full => Duration::from_secs(10),
            None => Duration::from_millis(300),
        },
        rounds: match value("--rounds") {
            Some(n) => n.parse::<usize>().context("--rounds N")?.max(1),
            None if full => 3,
            None => 1,
        },
    };
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(run(&scenario))
}

/// One result line of the shared bench protocol.
fn report(figure: &str, value: f64, unit: &str, floor: Option<(&str, f64)>, goal: Option<&str>) {
    let line = serde_json::json!({
        "figure": figure,
        "value": (value * 1000.0).round() / 1000.0,
        "unit": unit,
        "floor": floor.map(|(name, _)| name),
        "floor_value": floor.map(|(_, v)| (v * 1000.0).round() / 1000.0),
        "ratio": floor.map(|(_, v)| ((value / v) * 100.0).round() / 100.0),
        "goal": goal,
    });
    println!("hubsync-bench {line}");
}

async fn run(scenario: &Scenario) -> anyhow::Result<()> {
    let sim = Simulator::start(SimConfig::default()).await?;
    let repo = sim.create_repo("DATA", "models")?;
    let ops: Vec<FileOp> = (0..scenario.models)
        .map(|i| {
            let model = generate_model(&ModelSpec {
                seed: i as u64,
                name: format!("Model {i}"),
                target_bytes: 1_500,
                ..ModelSpec::default()
            });
            FileOp::write(format!("models/{:03}/{i:05}.json", i / 1000), model)
        })
        .collect();
    repo.commit("main", &ops, "many small models")?;
    drop(ops);
    let secret = HubSecret::from_json(
        &serde_json::json!({"baseUrl": sim.base_url(), "accessToken": sim.token().expose_secret(), "webhookSecret": "unused"})
            .to_string(),
    )?;
    let id = RepoRef::parse("DATA/models")?;

    // Each round times the same first sync in one piece (the floor) and in slices, in turns that
    // alternate which goes first, so that neither always has the warmer simulator.
    let mut rounds = Vec::new();
    let (mut measured, mut whole_requests) = (None, 0);
    for round in 0..scenario.rounds {
        let mut times = [Duration::ZERO; 2];
        for which in [round % 2, 1 - round % 2] {
            if which == 0 {
                (times[0], whole_requests) = one_piece(&sim, &secret, &id, scenario).await?;
            } else {
                let (time, counts) = in_slices(&sim, &secret, &id, scenario).await?;
                times[1] = time;
                measured = Some(counts);
            }
        }
        rounds.push(times);
    }
    let (slices, fetched, requests) = measured.context("at least one round")?;
    let median = |which: usize| {
        let mut times: Vec<f64> = rounds.iter().map(|r| r[which].as_secs_f64()).collect();
        times.sort_by(f64::total_cmp);
        times[times.len() / 2]
    };
    let (whole, sliced) = (median(0), median(1));
    let ratios: Vec<f64> = rounds.iter().map(|r| r[1].as_secs_f64() / r[0].as_secs_f64()).collect();
    let spread =
        ratios.iter().copied().fold(f64::NEG_INFINITY, f64::max) - ratios.iter().copied().fold(f64::INFINITY, f64::min);

    let models = scenario.models;
    let slice = scenario.slice.as_secs_f64();
    let n = scenario.rounds;
    report(
        &format!("first sync of {models} models in {slice} s slices (median of {n})"),
        sliced,
        "s",
        Some((
            &format!("the same sync in one piece ({models} models, median of {n})"),
            whole,
        )),
        Some("<= 1.1x one piece"),
    );
    report(
        &format!("spread of that ratio over the {n} rounds (largest - smallest)"),
        spread,
        "x",
        None,
        None,
    );
    report(
        "Bitbucket requests other than model files, the sync in slices",
        requests as f64,
        "requests",
        Some(("the same sync in one piece", whole_requests as f64)),
        None,
    );
    report(
        &format!("slices (invocations) of that first sync, {slice} s each"),
        f64::from(slices),
        "count",
        None,
        Some(">= 2"),
    );
    report(
        "model fetches per model over all the slices",
        fetched as f64 / models as f64,
        "fetches",
        None,
        Some("1.0: no model fetched twice"),
    );
    Ok(())
}

/// The first sync in one piece: its time, and the Bitbucket requests other than model files.
async fn one_piece(
    sim: &Simulator,
    secret: &HubSecret,
    id: &RepoRef,
    scenario: &Scenario,
) -> anyhow::Result<(Duration, usize)> {
    let (_dir, hub) = fresh_hub(id).await?;
    let worker = make_worker(&hub, secret)?;
    sim.clear_requests();
    let started = Instant::now();
    worker.sync_repo(id, true, &NoProgress).await?;
    let time = started.elapsed();
    check(&hub, id, scenario.models).await?;
    Ok((time, not_models(sim)))
}

/// The first sync in slices, each message (the request, then each continuation) given a slice:
/// its time, and the slices, model fetches and other Bitbucket requests it took.
async fn in_slices(
    sim: &Simulator,
    secret: &HubSecret,
    id: &RepoRef,
    scenario: &Scenario,
) -> anyhow::Result<(Duration, (u32, usize, usize))> {
    let (_dir, hub) = fresh_hub(id).await?;
    let worker = make_worker(&hub, secret)?;
    sim.clear_requests();
    let request = PushMessage::full_sync(id.clone(), DeliveryId::parse("bench-first-sync")?, chrono::Utc::now());
    let started = Instant::now();
    let mut slices = 1u32;
    let mut outcome = worker
        .handle_push_within(&request, &Deadline::after(scenario.slice, Clock::system()), &hub)
        .await?;
    while let Some(message) = hub.receive(Duration::from_secs(3600)).await? {
        outcome = worker
            .handle_push_within(&message.push, &Deadline::after(scenario.slice, Clock::system()), &hub)
            .await?;
        hub.ack(&message.receipt).await?;
        slices += 1;
    }
    let time = started.elapsed();
    if !matches!(outcome, SyncOutcome::Synced { .. }) {
        bail!("the last slice did not finish the sync: {outcome:?}");
    }
    check(&hub, id, scenario.models).await?;
    let fetched = sim
        .requests()
        .iter()
        .filter(|r| r.path_and_query.contains("/raw/models/"))
        .count();
    Ok((time, (slices, fetched, not_models(sim))))
}

/// The requests made since the last clear other than model files.
fn not_models(sim: &Simulator) -> usize {
    sim.requests()
        .iter()
        .filter(|r| !r.path_and_query.contains("/raw/models/"))
        .count()
}

async fn fresh_hub(id: &RepoRef) -> anyhow::Result<(tempfile::TempDir, SqliteHub)> {
    let dir = tempfile::tempdir()?;
    let hub = SqliteHub::open(&dir.path().join("hub.db"))?;
    hub.register(id).await?;
    Ok((dir, hub))
}

fn make_worker(
    hub: &SqliteHub,
    secret: &HubSecret,
) -> anyhow::Result<SyncWorker<SqliteHub, StaticSecret, BitbucketConnector>> {
    Ok(SyncWorker {
        store: hub.clone(),
        secrets: StaticSecret::new(secret.clone()),
        connector: BitbucketConnector::new(ClientOptions::default())?,
        options: SyncOptions::default(),
    })
}

/// Every model stored and the cursor moved: the sync is complete.
async fn check(hub: &SqliteHub, id: &RepoRef, models: usize) -> anyhow::Result<()> {
    let stored = hub.list_models(id).await?.len();
    let record = hub.repo(id).await?.context("registered")?;
    if stored != models || record.cursor.is_none() || record.resume.is_some() {
        bail!("incomplete sync: {stored} of {models} models, {record:?}");
    }
    Ok(())
}
